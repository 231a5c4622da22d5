"""The run folder: what may be written where, checks before a run starts, and the recipe fingerprint."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import torch

from isotune.errors import ConfigError
from isotune.recipe import Recipe, load_recipe

RECIPE_FILE = "recipe.yaml"


def resolved_paths(recipe: Recipe) -> dict[str, str]:
    """Return the absolute form of every local path the recipe names, for the log and run.json."""
    paths = {"output_dir": str(Path(recipe.output_dir).resolve())}
    for key, value in (("data.path", recipe.data.path), ("evaluation.data_root", recipe.evaluation.data_root)):
        if Path(value).expanduser().exists():
            paths[key] = str(Path(value).expanduser().resolve())
    if Path(recipe.model.name).expanduser().exists():
        paths["model.name"] = str(Path(recipe.model.name).expanduser().resolve())
    return paths


# Keys added after the first release, left out of the fingerprint at their default value, so that checkpoints
# written before they existed can still be resumed.
_KEYS_ADDED_LATER = {
    ("training", "cached"): False,
    ("training", "gather_across_processes"): True,
    ("objective", "lambda_warmup_steps"): 0,
    ("training", "freeze_layers"): 0,
    ("training", "l2sp"): 0.0,
    ("data", "simcse_ratio"): 0.0,
    ("training", "ema_decay"): None,
    ("training", "keep_best_max_average_cosine"): None,
}


def recipe_fingerprint(recipe: Recipe) -> str:
    """Hash of every setting that shapes the trained weights (all but the output folder and evaluation)."""
    settings = recipe.to_dict()
    settings.pop("output_dir")
    settings.pop("evaluation")
    for (section, key), default in _KEYS_ADDED_LATER.items():
        if settings[section][key] == default:
            del settings[section][key]
    return hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()[:16]


def prepare_run_dir(recipe: Recipe, run_dir: Path, resume: bool, allow_other_recipe: bool = False) -> None:
    """Check that `run_dir` can take this run, before any expensive work.

    Raises:
        ConfigError: when the folder contains another run (and `resume` is off), when `resume` is on but the
            folder contains no run of this recipe (unless `allow_other_recipe`), or when the folder is not writable.
    """
    recipe_file = run_dir / RECIPE_FILE
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"Output folder {run_dir} is a file; choose another --output-dir.")
    if resume:
        if not recipe_file.is_file():
            raise ConfigError(
                f"--resume: {run_dir} contains no run ({RECIPE_FILE} is missing); drop --resume to start one."
            )
        stored = load_recipe(recipe_file)
        if recipe_fingerprint(stored) != recipe_fingerprint(recipe) and not allow_other_recipe:
            changed = _changed_keys(stored, recipe)
            raise ConfigError(
                f"--resume: the run in {run_dir} was trained with a different recipe (changed: {', '.join(changed)}). "
                f"Resume with its own recipe ({recipe_file}), start in a new --output-dir, or pass "
                "--allow-recipe-change to continue from its weights anyway."
            )
    elif run_dir.exists() and run_dir.is_dir() and not _only_unstarted_run(run_dir) and any(run_dir.iterdir()):
        raise ConfigError(
            f"Output folder {run_dir} is not empty and may hold another run. Choose a new --output-dir, "
            "pass --resume to continue the run in it, or delete it."
        )
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"0")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"Output folder {run_dir} is not writable ({error}); choose another --output-dir.") from error


# Files that a run writes before its first training step: a folder with only these belongs to a run that
# stopped before training (for example on bad data), and may be reused by the next attempt.
_UNSTARTED_RUN_FILES = {RECIPE_FILE, "metrics.json"}


def _only_unstarted_run(run_dir: Path) -> bool:
    names = {path.name for path in run_dir.iterdir()}
    return bool(names) and names <= _UNSTARTED_RUN_FILES


def _changed_keys(old: Recipe, new: Recipe) -> list[str]:
    old_dict, new_dict = old.to_dict(), new.to_dict()
    changed = []
    for section in ("model", "data", "objective", "training"):
        for key, value in new_dict[section].items():
            if old_dict[section].get(key) != value:
                changed.append(f"{section}.{key}")
    return changed


def check_free_space(run_dir: Path, model: torch.nn.Module, keep_checkpoints: int) -> None:
    """Fail early when the disk cannot hold the model and its checkpoints (weights plus 2 AdamW moments)."""
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    needed = weight_bytes * (1 + 3 * (keep_checkpoints + 1)) + (64 << 20)
    free = shutil.disk_usage(run_dir).free
    if free < needed:
        raise ConfigError(
            f"Only {free / 2**20:.0f} MiB free under {run_dir}, but the model and {keep_checkpoints} checkpoints "
            f"need about {needed / 2**20:.0f} MiB. Free space, lower training.keep_checkpoints, or choose another "
            "--output-dir."
        )
