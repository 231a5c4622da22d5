"""Run a sweep: find which runs are finished, which to resume and which are new, then train what is left.

Runs train one after another in this process with `run_training`, or print as `isotune train` commands
to be launched as separate jobs. A run counts as finished when its metrics.json has "after" results. A
run folder with a recipe.yaml but no "after" results is resumed from its latest checkpoint, or from step 0
when it has none (which `run_training` logs).
"""

from __future__ import annotations

import gc
import json
import logging
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isotune.errors import ConfigError, TrainingError
from isotune.recipe import Recipe, load_recipe
from isotune.sweep.grid import SweepRun, changed_keys, load_run_recipe
from isotune.training.run_folder import RECIPE_FILE

logger = logging.getLogger(__name__)

FINISHED, RESUME, NEW = "finished", "resume", "new"
LAUNCHERS = {"isotune": ["isotune"], "accelerate": ["accelerate", "launch", "-m", "isotune.cli"]}


@dataclass
class PlannedRun:
    """A sweep run with its full recipe (output_dir set to its folder) and its status: finished, resume or new."""

    run: SweepRun
    recipe: Recipe
    folder: Path
    status: str


def run_status(folder: Path, recipe: Recipe) -> str:
    """Return FINISHED, RESUME or NEW for the run of `recipe` in `folder`.

    Raises:
        ConfigError: when `folder` is a file, contains files but no recipe.yaml, or contains a run of another
            recipe.
    """
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"Sweep run folder {folder} is a file; delete it or choose another --output-dir.")
    if not folder.is_dir() or not any(folder.iterdir()):
        return NEW
    if not (folder / RECIPE_FILE).is_file():
        raise ConfigError(
            f"Sweep run folder {folder} is not empty but {RECIPE_FILE} is missing, so it is not a run of this sweep; "
            "delete it or choose another --output-dir."
        )
    changed = changed_keys(load_recipe(folder / RECIPE_FILE), recipe)
    if changed:
        raise ConfigError(
            f"Sweep run folder {folder} contains a run of another recipe (changed: {', '.join(changed)}). Delete the "
            "folder to train this run again, or choose another --output-dir."
        )
    metrics = folder / "metrics.json"
    if metrics.is_file() and "after" in _read_metrics(metrics):
        return FINISHED
    return RESUME


def plan_runs(
    sweep_folder: Path, runs: list[SweepRun], recipe_path: Path, base_overrides: list[str]
) -> list[PlannedRun]:
    """Give each run its recipe and folder under `sweep_folder`, and check its status before any training."""
    planned = []
    for run in runs:
        folder = sweep_folder / run.name
        recipe = load_run_recipe(recipe_path, base_overrides, run, output_dir=folder)
        planned.append(PlannedRun(run, recipe, folder, run_status(folder, recipe)))
    return planned


def check_run_models(planned: list[PlannedRun]) -> None:
    """Check each unfinished run's model settings against the model's configuration, before any run trains.

    `isotune train` finds these errors only when it loads the model: a model that is not found, a
    `training.freeze_layers` that leaves no layer to train, and a `model.max_seq_length` beyond the model's
    positions. Checking them here keeps a sweep from training its first runs and then stopping at a later one.

    Raises:
        ModelNotFoundError: when a run's model is not found.
        ConfigError: naming the run and the invalid key.
    """
    from transformers import AutoConfig

    from isotune.encoder import resolve_model_path
    from isotune.training.regularizers import check_freeze_count

    configs: dict[tuple[str, str | None, bool], Any] = {}
    for item in planned:
        if item.status == FINISHED:
            continue
        model = item.recipe.model
        key = (model.name, model.revision, model.trust_remote_code)
        if key not in configs:
            path = resolve_model_path(model.name, model.revision)
            try:
                configs[key] = AutoConfig.from_pretrained(str(path), trust_remote_code=model.trust_remote_code)
            except (OSError, ValueError):
                # The run reports this when it loads the model, with the message of `isotune train`.
                configs[key] = None
        config = configs[key]
        if config is None:
            continue
        try:
            layers = getattr(config, "num_hidden_layers", None)
            if layers is not None:
                check_freeze_count(item.recipe.training.freeze_layers, layers, model.name)
            positions = getattr(config, "max_position_embeddings", None)
            if positions is not None and model.max_seq_length > positions:
                raise ConfigError(
                    f"model.max_seq_length={model.max_seq_length} exceeds the {positions} positions of "
                    f"{model.name}; use at most {positions}."
                )
        except ConfigError as error:
            raise ConfigError(f"Sweep run {item.run.name} is invalid: {error}") from error


def train_command(recipe_path: Path, base_overrides: list[str], planned: PlannedRun, launcher: str = "isotune") -> str:
    """Return the shell command that trains (or resumes) one sweep run as a job of its own."""
    words = [*LAUNCHERS[launcher], "train", str(recipe_path)]
    for override in (*base_overrides, *planned.run.overrides):
        words += ["--set", override]
    words += ["--output-dir", str(planned.folder)]
    if planned.status == RESUME:
        words.append("--resume")
    return shlex.join(words)


def train_runs(planned: list[PlannedRun], command_for: Callable[[PlannedRun], str]) -> dict[str, str]:
    """Train every run that is not finished, in order, and return `{run name: error}` of the runs that stopped.

    A run that stops with a TrainingError (a non-finite loss, for example) is logged and left as it is, and
    the sweep goes on with the next run. Any other exception ends the sweep. Finished runs are skipped.
    """
    from isotune.training.run import base_results_key, run_training

    failures: dict[str, str] = {}
    # "before" results by base_results_key: the runs of a sweep mostly share their base model evaluation.
    base_results: dict[str, dict] = {}
    for index, item in enumerate(planned, start=1):
        prefix = f"Sweep run {index} of {len(planned)}, {item.run.name}"
        key = base_results_key(item.recipe)
        if item.status == FINISHED:
            logger.info("%s: skipped, finished before (its metrics.json has after results).", prefix)
            finished_before = _read_metrics(item.folder / "metrics.json").get("before")
            if finished_before:
                base_results.setdefault(key, finished_before)
            continue
        logger.info("%s: %s.", prefix, "resuming from its latest checkpoint" if item.status == RESUME else "training")
        try:
            metrics = run_training(
                item.recipe,
                resume=item.status == RESUME,
                command=command_for(item),
                base_results=base_results.get(key),
            )
            base_results.setdefault(key, metrics["before"])
        except TrainingError as error:
            logger.error("%s stopped: %s", prefix, error)
            failures[item.run.name] = str(error)
        else:
            item.status = FINISHED
        gc.collect()  # release the run's model and optimizer before the next one loads
    return failures


def _read_metrics(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"Failed to read {path}: {error}. Delete the run folder to train the run again.") from error
    return content if isinstance(content, dict) else {}
