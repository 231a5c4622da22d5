"""`isotune train`: read pairs, evaluate the base model, train, evaluate the result, write the run folder."""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from sentence_transformers import SentenceTransformer

import isotune
from isotune.data import (
    PairSet,
    identical_pairs,
    mix_identical_pairs,
    pairs_from_books,
    pairs_from_file,
    pairs_from_hf_dataset,
)
from isotune.distributed import run_on_main
from isotune.encoder import build_encoder, make_embedder
from isotune.errors import ConfigError, DataError
from isotune.evaluation.suite import resolve_tasks, run_evaluation
from isotune.fileio import write_json_atomic, write_text_atomic
from isotune.metrics import average_cosine, uniformity
from isotune.recipe import DataConfig, Recipe
from isotune.training.loop import make_accelerator, train
from isotune.training.plots import CosineSamples, cosine_samples, load_geometry_data, write_run_plots
from isotune.training.precision import check_precision
from isotune.training.regularizers import check_freeze_layers
from isotune.training.report import describe_device, render_report, software_versions
from isotune.training.run_folder import (
    RECIPE_FILE,
    check_free_space,
    prepare_run_dir,
    recipe_fingerprint,
    resolved_paths,
)

logger = logging.getLogger(__name__)

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
    recipe: Recipe,
    *,
    resume: bool = False,
    allow_other_recipe: bool = False,
    command: str = "",
    base_results: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the whole job that `recipe` describes and return the metrics written to `metrics.json`.

    `base_results` are the "before" results of a run with the same `base_results_key`: given, the base
    model is not evaluated again (a sweep passes them from its first run to the others). An output folder
    that this call created and that is still empty when it fails is removed.
    """
    run_dir = Path(recipe.output_dir)
    existed = run_dir.exists()
    try:
        return _run_training(recipe, resume, allow_other_recipe, command, base_results)
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # fails, and keeps the folder, once the run has written anything
        raise


def _run_training(
    recipe: Recipe,
    resume: bool,
    allow_other_recipe: bool,
    command: str,
    base_results: dict[str, Any] | None,
) -> dict[str, Any]:
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
    # Geometry sentences come from the pairs before mixing, so they do not depend on data.simcse_ratio.
    sentences = sample_sentences(pair_set.pairs, recipe.evaluation.geometry_sentences, recipe.training.seed)
    pair_set = mix_identical_pairs(pair_set, recipe.data.simcse_ratio, recipe.training.seed)
    model = build_encoder(recipe.model, device=str(device))
    check_freeze_layers(model, recipe.training.freeze_layers)  # before the base model's evaluation
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

    data_root = Path(recipe.evaluation.data_root)
    metrics_path = run_dir / "metrics.json"
    metrics: dict[str, Any] = {}
    plot_data = (
        load_geometry_data(data_root, sentences) if "geometry" in resolve_tasks(recipe.evaluation.tasks) else None
    )
    cosines: dict[str, CosineSamples] = {}
    if is_main:
        metrics = _read_json(metrics_path) if resume and metrics_path.is_file() else {}
        if "before" not in metrics and base_results is not None:
            logger.info("Base model results taken from an earlier run with the same model, data and evaluation")
            metrics["before"] = base_results
            write_json_atomic(metrics_path, metrics)
        if "before" not in metrics:
            logger.info("Evaluating the base model on %s", ", ".join(recipe.evaluation.tasks))
            embed = make_embedder(model, recipe.evaluation.batch_size)
            metrics["before"] = run_evaluation(embed, recipe.evaluation.tasks, data_root, sentences=sentences)
            write_json_atomic(metrics_path, metrics)
            if plot_data is not None:
                cosines["before"] = cosine_samples(embed, plot_data)

    def score_dev(current: Any) -> dict[str, float]:
        embed = make_embedder(current, recipe.evaluation.batch_size)
        result = run_evaluation(embed, ["stsb-dev"], data_root, show_progress=False)
        scores = {"stsb_dev": result["stsb-dev"]["spearman"]["all"]}
        if len(sentences) >= 2:
            # The same sentences and measures as the geometry results, so the bound of
            # training.keep_best_max_average_cosine holds for the saved model's reported average cosine.
            vectors = embed(sentences)
            nonfinite = int((~np.isfinite(vectors)).any(axis=1).sum())
            if nonfinite:
                # Possible with training.on_nonfinite=skip; such a step never meets the average-cosine bound.
                logger.warning(
                    "%d of %d geometry sentences have non-finite embeddings (NaN or inf), so this dev evaluation "
                    "has no average cosine or uniformity.",
                    nonfinite,
                    len(sentences),
                )
                return scores
            scores["average_cosine"] = average_cosine(vectors)
            scores["uniformity"] = uniformity(vectors)
        return scores

    run_info = {
        "isotune_version": isotune.__version__,
        "command": command,
        "precision": recipe.training.precision,
        "device": describe_device(device),
        "processes": accelerator.num_processes,
        "trust_remote_code": recipe.model.trust_remote_code,
        "paths": resolved_paths(recipe),
        "software": software_versions(),
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


def base_results_key(recipe: Recipe) -> str:
    """Return what the "before" results of `recipe` depend on: model, data, evaluation and seed, as JSON.

    Two recipes with the same key evaluate the same base model on the same tasks and sentences (the
    geometry sentences are sampled from the pairs with the seed).
    """
    settings = recipe.to_dict()
    settings["data"].pop("simcse_ratio", None)  # the geometry sentences are sampled before the SimCSE mixing
    return json.dumps(
        [settings["model"], settings["data"], settings["evaluation"], settings["training"]["seed"]], sort_keys=True
    )


def _available_dev(recipe: Recipe) -> list[str]:
    stsb_dev = Path(recipe.evaluation.data_root) / "sts" / "stsbenchmark" / "sts-dev.csv"
    if stsb_dev.is_file():
        return ["stsb-dev"]
    logger.warning("No STS-B dev set at %s: the last step is saved, without periodic evaluation.", stsb_dev)
    return []


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))
