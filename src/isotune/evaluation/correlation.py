"""Rank correlation of alignment and uniformity with downstream accuracy over a set of models, and ranking.

Wang and Isola (2020, "Understanding Contrastive Representation Learning through Alignment and Uniformity
on the Hypersphere") report that both measures agree strongly with downstream accuracy across the encoders
they trained. `isotune compare` and `isotune sweep` measure that agreement over their own rows: Spearman's
rho of each geometry score against STS avg and transfer avg (defined in `isotune.evaluation.scores`),
with a two-sided permutation p-value. The permutation test replaces the asymptotic p-value of
`scipy.stats.spearmanr`, which the scipy 1.17 documentation calls accurate only for samples of more than
500, while a sweep has a handful of runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from isotune.evaluation.scores import (
    LOWER_IS_BETTER,
    STS_AVG,
    TRANSFER_AVG,
    RowScores,
    rank_labels,
    score_name,
)

GEOMETRY_SCORES = ("alignment", "uniformity")
ACCURACY_SCORES = (STS_AVG, TRANSFER_AVG)
MIN_ROWS = 3
# Permutations of the p-value: every pairing is enumerated when n! is at most this (n <= 7), else this
# many random pairings are drawn with a fixed seed, so the p-value is reproducible.
PERMUTATION_RESAMPLES = 9999


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho of one geometry score against one accuracy score, over the rows that have both.

    `rho` and `p_value` are None when the correlation is undefined, and `undefined` then gives the reason.
    """

    geometry: str
    accuracy: str
    n: int
    rho: float | None = None
    p_value: float | None = None
    undefined: str | None = None


def spearman_with_permutation_p(x: list[float], y: list[float], seed: int = 0) -> tuple[float, float]:
    """Return Spearman's rho of `x` and `y` and its two-sided permutation p-value.

    The p-value is the share of pairings of `x` with `y` (all of them for n <= 7, else
    `PERMUTATION_RESAMPLES` random ones drawn with `seed`) whose rho is at least as far from 0 as the
    observed one. Needs at least 2 values in each list, neither constant.
    """
    rho = float(stats.spearmanr(x, y).statistic)
    ranks_x = stats.rankdata(x)
    centred_y = stats.rankdata(y) - (len(y) + 1) / 2

    def rank_correlation(permuted_x: np.ndarray, axis: int = -1) -> np.ndarray:
        # Pearson correlation of ranks, which is Spearman's rho, for a batch of permutations of x's ranks.
        centred_x = permuted_x - permuted_x.mean(axis=axis, keepdims=True)
        covariance = (centred_x * centred_y).sum(axis=axis)
        return covariance / np.sqrt((centred_x**2).sum(axis=axis) * (centred_y**2).sum())

    result = stats.permutation_test(
        (ranks_x,),
        rank_correlation,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=PERMUTATION_RESAMPLES,
        rng=np.random.default_rng(seed),
    )
    return rho, float(result.pvalue)


def correlate(scores: RowScores, geometry: str, accuracy: str) -> Correlation:
    """Correlate one geometry score with one accuracy score over the rows of `scores` that have both."""
    pairs = [
        (values[geometry], values[accuracy])
        for values in scores.values.values()
        if values.get(geometry) is not None and values.get(accuracy) is not None
    ]
    n = len(pairs)
    if n < MIN_ROWS:
        reason = (
            f"only {n} row{'' if n == 1 else 's'} {'has' if n == 1 else 'have'} both {score_name(geometry)} and "
            f"{score_name(accuracy)}, and Spearman's rho needs at least {MIN_ROWS}"
        )
        return Correlation(geometry, accuracy, n, undefined=reason)
    x, y = [pair[0] for pair in pairs], [pair[1] for pair in pairs]
    for name, column in ((geometry, x), (accuracy, y)):
        if max(column) == min(column):
            reason = f"{score_name(name)} is the same ({column[0]:g}) in all {n} rows, so it has no ranking"
            return Correlation(geometry, accuracy, n, undefined=reason)
    rho, p_value = spearman_with_permutation_p(x, y)
    return Correlation(geometry, accuracy, n, rho=rho, p_value=p_value)


def correlations(scores: RowScores) -> list[Correlation]:
    """Correlate alignment and uniformity with STS avg and with transfer avg, each where any row has it."""
    accuracies = [score for score in ACCURACY_SCORES if scores.has(score)]
    return [correlate(scores, geometry, accuracy) for accuracy in accuracies for geometry in GEOMETRY_SCORES]


def correlation_section(scores: RowScores, rows_described: str) -> str:
    """Return the Markdown section that states each correlation, with n and p-value, or why it is undefined.

    `rows_described` completes "Spearman's rho over ..." and names the rows used.
    """
    lines = ["## Correlation with downstream accuracy", ""]
    if not scores.sts_tasks and not scores.transfer_tasks:
        lines.append(
            "Undefined: the rows have no STS or transfer task in common, so they have no accuracy to correlate.\n"
        )
        return "\n".join(lines)
    found = correlations(scores)
    lines += [
        f"Spearman's rho over {rows_described}, with a two-sided permutation p-value. {_averages_line(scores)} "
        "Lower alignment and uniformity are better, so a negative rho means that better geometry goes with "
        "higher accuracy.",
        "",
        "| geometry | accuracy | n | Spearman rho | p-value |",
        "|---|---|---:|---:|---:|",
    ]
    for item in found:
        rho = "undefined" if item.rho is None else f"{item.rho:+.3f}"
        p_value = "n/a" if item.p_value is None else f"{item.p_value:.3g}"
        lines.append(f"| {score_name(item.geometry)} | {score_name(item.accuracy)} | {item.n} | {rho} | {p_value} |")
    undefined = [item for item in found if item.undefined is not None]
    if undefined:
        lines.append("")
        lines += [
            f"- {score_name(item.geometry)} vs {score_name(item.accuracy)} is undefined: {item.undefined}."
            for item in undefined
        ]
    return "\n".join(lines) + "\n"


def ranking_section(scores: RowScores, score: str) -> str:
    """Return the Markdown section that ranks the rows by `score`, best first, with their headline scores.

    Raises:
        ConfigError: from `rank_labels`, when `score` is unknown or no row has it.
    """
    order = rank_labels(scores, score)
    columns = list(dict.fromkeys([score, STS_AVG, TRANSFER_AVG, *GEOMETRY_SCORES]))
    columns = [name for name in columns if scores.has(name)]
    direction = "lowest" if score in LOWER_IS_BETTER else "highest"
    missing = len(scores.values) - len(order)
    lines = [
        f"## Ranking by {score_name(score)}",
        "",
        f"{direction.capitalize()} {score_name(score)} first. {_averages_line(scores)}"
        + (f" {missing} row(s) without {score_name(score)} are left out." if missing else ""),
        "",
        "| rank | model | " + " | ".join(score_name(name) for name in columns) + " |",
        "|---:|---|" + "---:|" * len(columns),
    ]
    for rank, label in enumerate(order, start=1):
        cells = [format_score(name, scores.values[label].get(name)) for name in columns]
        lines.append(f"| {rank} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_score(score: str, value: float | None) -> str:
    """Format a score for a table: geometry with 3 decimals, STS and transfer (x 100) with 2, None as n/a."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3f}" if score in (*GEOMETRY_SCORES, "average_cosine") else f"{value:.2f}"


def _averages_line(scores: RowScores) -> str:
    """Say which tasks STS avg and transfer avg average over."""
    sts = ", ".join(scores.sts_tasks) if scores.sts_tasks else "none, so it is undefined"
    line = f"STS avg is the mean Spearman x 100 (all pairs) of the STS tasks that every row has: {sts}."
    if scores.transfer_tasks:
        line += f" Transfer avg is the mean accuracy of {', '.join(scores.transfer_tasks)}."
    return line
