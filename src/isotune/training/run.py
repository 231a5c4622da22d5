"""`isotune train`: read pairs, evaluate the base model, train, evaluate the result, write the run folder."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer

import isotune
from isotune.data import PairSet, identical_pairs, pairs_from_books, pairs_from_file, pairs_from_hf_dataset
from isotune.distributed import run_on_main
from isotune.encoder import build_encoder, make_embedder
from isotune.errors import ConfigError, DataError
from isotune.evaluation.suite import markdown_table, resolve_tasks, run_evaluation, summary_row
from isotune.fileio import write_json_atomic, write_text_atomic
from isotune.recipe import DataConfig, Recipe, load_recipe
from isotune.training.loop import make_accelerator, train
from isotune.training.plots import CosineSamples, cosine_samples, load_geometry_data, write_run_plots
from isotune.training.precision import check_precision

logger = logging.getLogger(__name__)

RECIPE_FILE = "recipe.yaml"


PAIR_FILE_SUFFIXES = {".tsv", ".csv", ".jsonl"}


def resolve_source(config: DataConfig) -> str:
    """Return the data source of `config`, deciding `auto` from what `config.path` is.

    Raises:
        DataError: when `auto` meets a path that starts like a local path but does not exist.
    """
    if config.source != "auto":
        return config.source
    path = Path(config.path).expanduser()
    if path.is_dir():
        saved_dataset = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
        return "hf_dataset" if saved_dataset else "books"
    if path.is_file():
        return "pair_file" if path.suffix.lower() in PAIR_FILE_SUFFIXES else "books"
    if config.path.startswith((".", "/", "~")) or path.suffix:
        raise DataError(
            f"data.path {config.path} not found (resolved to {path.resolve()}). Pass an existing file or folder, "
            "or a Hugging Face dataset id such as owner/name."
        )
    return "hf_dataset"


def load_training_pairs(config: DataConfig) -> PairSet:
    """Build the positive pairs that `config` describes."""
    source = resolve_source(config)
    text_options = {"encoding": config.encoding, "errors": config.decode_errors}
    lengths = {"min_words": config.min_words, "max_words": config.max_words}
    if source == "books":
        return pairs_from_books(config.path, **text_options, **lengths)
    if source == "pair_file":
        return pairs_from_file(config.path, columns=config.columns, **text_options, **lengths)
    if source == "simcse":
        return identical_pairs(config.path, **text_options, **lengths)
    text_column = config.text_column
    if text_column is None and config.pair_columns is None:
        text_column = "text"
    return pairs_from_hf_dataset(
        config.path,
        split=config.split,
        config_name=config.config_name,
        text_column=text_column,
        pair_columns=config.pair_columns,
        streaming=config.streaming,
        max_rows=config.max_rows,
        **lengths,
    )


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
_KEYS_ADDED_LATER = {("training", "cached"): False, ("training", "gather_across_processes"): True}


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


def count_truncated(model: Any, texts: list[str], max_length: int) -> int:
    """Count texts with more tokens (special tokens included) than `max_length`."""
    tokenizer = model.tokenizer
    count = 0
    for start in range(0, len(texts), 4096):
        encoded = tokenizer(texts[start : start + 4096], truncation=False, verbose=False)["input_ids"]
        count += sum(len(ids) > max_length for ids in encoded)
    return count


def sample_sentences(pairs: list[tuple[str, str]], count: int, seed: int) -> list[str]:
    """Pick `count` distinct sentences of the training pairs with a seeded generator."""
    unique = sorted({text for pair in pairs for text in pair})
    return random.Random(seed).sample(unique, min(count, len(unique)))


def run_training(
    recipe: Recipe, *, resume: bool = False, allow_other_recipe: bool = False, command: str = ""
) -> dict[str, Any]:
    """Run the whole job that `recipe` describes and return the metrics written to `metrics.json`."""
    started = time.time()
    run_dir = Path(recipe.output_dir)
    accelerator = make_accelerator(recipe)
    is_main = accelerator.is_main_process
    if not is_main:
        # Only the main process logs; the others still report errors.
        logging.getLogger("isotune").setLevel(logging.ERROR)
    device = accelerator.device
    check_precision(recipe.training.precision, device)
    resolve_tasks(recipe.evaluation.tasks)  # an unknown task name fails now, not after training
    run_on_main(accelerator, lambda: prepare_run_dir(recipe, run_dir, resume, allow_other_recipe))

    pair_set = load_training_pairs(recipe.data)
    global_batch = recipe.training.batch_size * accelerator.num_processes
    if len(pair_set.pairs) < global_batch:
        raise ConfigError(
            f"{pair_set.source} gives {len(pair_set.pairs)} pairs, fewer than one batch of {global_batch} "
            f"(training.batch_size={recipe.training.batch_size} x {accelerator.num_processes} process(es)); "
            "lower training.batch_size or provide more pairs."
        )
    model = build_encoder(recipe.model, device=str(device))
    unique_texts = sorted({text for pair in pair_set.pairs for text in pair})
    run_on_main(accelerator, lambda: check_free_space(run_dir, model, recipe.training.keep_checkpoints))
    truncated = 0
    if is_main:
        truncated = count_truncated(model, unique_texts, recipe.model.max_seq_length)
        for key, value in resolved_paths(recipe).items():
            logger.info("Resolved %s: %s", key, value)
        logger.info("Positive pairs from %s\n%s", pair_set.source, pair_set.stats.summary())
        logger.info(
            "Sentences longer than max_seq_length=%d tokens (truncated): %d of %d",
            recipe.model.max_seq_length,
            truncated,
            len(unique_texts),
        )
        write_text_atomic(run_dir / RECIPE_FILE, recipe.to_yaml())

    sentences = sample_sentences(pair_set.pairs, recipe.evaluation.geometry_sentences, recipe.training.seed)
    data_root = Path(recipe.evaluation.data_root)
    metrics_path = run_dir / "metrics.json"
    metrics: dict[str, Any] = {}
    plot_data = (
        load_geometry_data(data_root, sentences) if "geometry" in resolve_tasks(recipe.evaluation.tasks) else None
    )
    cosines: dict[str, CosineSamples] = {}
    if is_main:
        metrics = _read_json(metrics_path) if resume and metrics_path.is_file() else {}
        if "before" not in metrics:
            logger.info("Evaluating the base model on %s", ", ".join(recipe.evaluation.tasks))
            embed = make_embedder(model, recipe.evaluation.batch_size)
            metrics["before"] = run_evaluation(embed, recipe.evaluation.tasks, data_root, sentences=sentences)
            write_json_atomic(metrics_path, metrics)
            if plot_data is not None:
                cosines["before"] = cosine_samples(embed, plot_data)

    def score_dev(current: Any) -> float:
        embed = make_embedder(current, recipe.evaluation.batch_size)
        result = run_evaluation(embed, ["stsb-dev"], data_root, show_progress=False)
        return result["stsb-dev"]["spearman"]["all"]

    run_info = {
        "isotune_version": isotune.__version__,
        "command": command,
        "precision": recipe.training.precision,
        "device": _describe_device(device),
        "processes": accelerator.num_processes,
        "trust_remote_code": recipe.model.trust_remote_code,
        "paths": resolved_paths(recipe),
        "software": _software_versions(),
        "data": {"source": pair_set.source, **pair_set.stats.to_dict(), "truncated_sentences": truncated},
    }
    state = train(
        recipe,
        accelerator,
        model,
        pair_set.pairs,
        run_dir,
        fingerprint=recipe_fingerprint(recipe),
        resume=resume,
        allow_other_recipe=allow_other_recipe,
        dev_scorer=score_dev if "stsb-dev" in _available_dev(recipe) else None,
    )

    def evaluate_and_write() -> dict[str, Any]:
        trained = SentenceTransformer(str(run_dir / "model"), device=str(device))
        logger.info("Evaluating the trained model (step %s)", state.best_step)
        trained_embed = make_embedder(trained, recipe.evaluation.batch_size)
        metrics["after"] = run_evaluation(trained_embed, recipe.evaluation.tasks, data_root, sentences=sentences)
        if plot_data is not None:
            if "before" not in cosines:  # a resumed run: the base model is no longer in memory
                base = build_encoder(recipe.model, device=str(device))
                cosines["before"] = cosine_samples(make_embedder(base, recipe.evaluation.batch_size), plot_data)
            cosines["after"] = cosine_samples(trained_embed, plot_data)
        metrics["saved_step"] = state.best_step
        metrics["history"] = state.history
        metrics["skipped_batches"] = state.skipped_batches
        write_json_atomic(metrics_path, metrics)
        run_info["seconds"] = round(time.time() - started, 1)
        run_info["saved_step"] = state.best_step
        write_json_atomic(run_dir / "run.json", run_info)
        plots = write_run_plots(run_dir / "plots", metrics, cosines)
        write_text_atomic(run_dir / "report.md", render_report(recipe, metrics, run_info, plots))
        return metrics

    # The other processes wait here until the main process has written the report (or failed).
    return run_on_main(accelerator, evaluate_and_write) or {}


def _available_dev(recipe: Recipe) -> list[str]:
    stsb_dev = Path(recipe.evaluation.data_root) / "sts" / "stsbenchmark" / "sts-dev.csv"
    if stsb_dev.is_file():
        return ["stsb-dev"]
    logger.warning("No STS-B dev set at %s: the last step is saved, without periodic evaluation.", stsb_dev)
    return []


def render_report(
    recipe: Recipe, metrics: dict[str, Any], run_info: dict[str, Any], plots: list[Path] | None = None
) -> str:
    """Return the Markdown report of a run: before/after table, data, settings and environment."""
    table = markdown_table({"before": summary_row(metrics["before"]), "after": summary_row(metrics["after"])})
    objective = recipe.objective
    if objective.name == "align_uniform":
        recipe_line = f"alignment + uniformity (alpha {objective.alpha:g}, t {objective.t:g}, lambda {objective.lam:g})"
    else:
        recipe_line = f"InfoNCE (temperature {objective.temperature:g})"
    data = run_info["data"]
    lines = [
        f"# isotune run: {recipe.model.name}",
        "",
        f"Objective: {recipe_line}; {_count(recipe.training.max_steps, 'step')} of "
        f"{recipe.training.batch_size} pairs, learning rate {recipe.training.learning_rate:g}, "
        f"precision {PRECISION_NAMES[run_info['precision']]}.",
        f"Saved model: step {run_info['saved_step']} (of {recipe.training.max_steps}).",
        "",
        "STS: Spearman x100 of cosine similarity, pooled over subsets. Geometry on L2-normalised embeddings: "
        "alignment on STS-B dev pairs with gold >= 4, uniformity (t = 2) and average cosine on sentences "
        "sampled from the training data.",
        "",
        table,
        "",
        f"Data: {data['source']}, {data['pairs']:,} pairs, {data['truncated_sentences']:,} sentences truncated "
        f"at {recipe.model.max_seq_length} tokens.",
        f"Device: {run_info['device']}; {run_info['seconds']:.0f} s in all.",
        "",
        f"Command: `{run_info['command']}`",
        "",
    ]
    if plots:
        lines += ["## Plots", ""] + [f"![{path.stem}](plots/{path.name})" for path in plots] + [""]
    return "\n".join(lines)


PRECISION_NAMES = {"no": "fp32", "bf16": "bf16 mixed precision", "fp16": "fp16 mixed precision"}


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def _describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )


def _software_versions() -> dict[str, str]:
    import accelerate
    import sentence_transformers
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "accelerate": accelerate.__version__,
    }


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
