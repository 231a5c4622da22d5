"""Sweep plots (matplotlib, Agg backend): the alignment-uniformity plane coloured by an accuracy score, and
accuracy against each varied hyperparameter."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen before pyplot is imported)
import numpy as np  # noqa: E402

from isotune.evaluation.plots import _save  # noqa: E402 (lays out, writes and closes a figure)


def plot_plane_by_score(points: Sequence[tuple[str, float, float, float]], score: str, path: Path) -> Path | None:
    """Plot each `(tag, uniformity, alignment, value)` point, coloured by `value`, tagged with `tag`.

    Returns None when `points` is empty.
    """
    if not points:
        return None
    figure, axes = plt.subplots(figsize=(6.5, 4.5))
    tags, uniformity, alignment, values = zip(*points, strict=True)
    drawn = axes.scatter(uniformity, alignment, c=values, cmap="viridis", s=50, edgecolors="black", linewidths=0.4)
    for tag, x, y in zip(tags, uniformity, alignment, strict=True):
        axes.annotate(tag, (x, y), fontsize=8, xytext=(4, 4), textcoords="offset points")
    figure.colorbar(drawn, ax=axes, label=score)
    axes.set_xlabel("uniformity (lower is better)")
    axes.set_ylabel("alignment (lower is better)")
    axes.set_title(f"alignment-uniformity plane, coloured by {score}")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_scores_against_key(
    key: str, points: Sequence[tuple[Any, str, dict[str, float | None]]], scores: Sequence[str], path: Path
) -> Path | None:
    """Plot each score against the values of one grid key: a point per run and a line through the means.

    `points` contains `(value of the key, group, {score: value})` per run. Each group (the objective when a
    sweep has several) gets its own colour and line. Numeric values share a numeric axis, which is
    logarithmic when all values are positive and span a factor of 10 or more. Other values are placed in
    order of appearance. Returns None when no run has a value for any of `scores`.
    """
    scores = [score for score in scores if any(values.get(score) is not None for _, _, values in points)]
    if not points or not scores:
        return None
    keys = [value for value, _, _ in points]
    numeric = all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in keys)
    categories = list(dict.fromkeys(map(str, keys)))
    figure, axes_row = plt.subplots(1, len(scores), figsize=(5 * len(scores), 4), squeeze=False)
    for axes, score in zip(axes_row[0], scores, strict=True):
        for group in dict.fromkeys(group for _, group, _ in points):
            chosen = [
                (value if numeric else categories.index(str(value)), values[score])
                for value, member, values in points
                if member == group and values.get(score) is not None
            ]
            if not chosen:
                continue
            xs, ys = np.array([x for x, _ in chosen], dtype=float), np.array([y for _, y in chosen])
            drawn = axes.scatter(xs, ys, s=30, alpha=0.7, label=group)
            means = sorted((x, ys[xs == x].mean()) for x in set(xs.tolist()))
            axes.plot([x for x, _ in means], [y for _, y in means], color=drawn.get_facecolor()[0], alpha=0.8)
        if numeric and min(keys) > 0 and max(keys) >= 10 * min(keys):
            axes.set_xscale("log")
        if numeric:
            ticks = sorted(set(keys))
            axes.set_xticks(ticks, [f"{tick:g}" for tick in ticks], rotation=20)
            axes.minorticks_off()
        else:
            axes.set_xticks(range(len(categories)), categories, rotation=20)
        axes.set_xlabel(key)
        axes.set_ylabel(score)
        axes.set_title(f"{score} against {key}")
        axes.grid(alpha=0.3)
        if len({group for _, group, _ in points}) > 1:
            axes.legend(fontsize=8)
    return _save(figure, path)
