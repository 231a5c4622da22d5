"""The Markdown report of a training run: before/after table, settings, data, environment and plots."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

from isotune.evaluation.suite import markdown_table, summary_row
from isotune.recipe import Recipe


def render_report(
    recipe: Recipe, metrics: dict[str, Any], run_info: dict[str, Any], plots: list[Path] | None = None
) -> str:
    """Return the Markdown report of a run: before/after table, data, settings and environment."""
    table = markdown_table({"before": summary_row(metrics["before"]), "after": summary_row(metrics["after"])})
    objective = recipe.objective
    if objective.name == "align_uniform":
        recipe_line = f"alignment + uniformity (alpha {objective.alpha:g}, t {objective.t:g}, lambda {objective.lam:g})"
    elif objective.name == "info_nce_uniform":
        recipe_line = (
            f"InfoNCE + uniformity (temperature {objective.temperature:g}, t {objective.t:g}, lambda {objective.lam:g})"
        )
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
        *_lever_lines(recipe),
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


# Recipe keys against the narrow cone that the report lists when they differ from their defaults.
LEVER_KEYS = (
    ("objective", "lambda_warmup_steps"),
    ("training", "freeze_layers"),
    ("training", "l2sp"),
    ("data", "simcse_ratio"),
    ("training", "ema_decay"),
    ("training", "keep_best_max_average_cosine"),
)


def _lever_lines(recipe: Recipe) -> list[str]:
    """Return one report line naming the lever keys set away from their defaults, or no line."""
    settings, defaults = recipe.to_dict(), Recipe().to_dict()
    changed = [
        f"{section}.{key} {settings[section][key]}"
        for section, key in LEVER_KEYS
        if settings[section][key] != defaults[section][key]
    ]
    return [f"Levers: {', '.join(changed)}."] if changed else []


PRECISION_NAMES = {"no": "fp32", "bf16": "bf16 mixed precision", "fp16": "fp16 mixed precision"}


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    )


def software_versions() -> dict[str, str]:
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
