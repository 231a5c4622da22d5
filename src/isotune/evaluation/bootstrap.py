"""Percentile bootstrap intervals for statistics of a sample (Efron and Tibshirani, 1993)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

DEFAULT_RESAMPLES = 200
DEFAULT_CONFIDENCE = 0.95


def bootstrap_intervals(
    statistic: Callable[[np.ndarray], np.ndarray],
    size: int,
    *,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the percentile bootstrap interval `(low, high)` of each value that `statistic` returns.

    Args:
        statistic: maps an index array (a resample of `range(size)`, with repeats) to a 1-d array of
            values. It may return NaN for a resample where a value is undefined; such resamples are left
            out of that value's interval.
        size: the number of items (sentences or pairs) in the sample.
        num_resamples: how many resamples of `size` items to draw with replacement.
        confidence: the interval covers the central `confidence` share of the resampled values, so 0.95
            gives the 2.5th and 97.5th percentiles.
        seed: seed of the numpy generator, so that two runs give the same interval.

    Reference: Bradley Efron and Robert Tibshirani, "An Introduction to the Bootstrap", 1993, chapter 13.
    """
    if size < 1:
        raise ValueError(f"bootstrap_intervals needs a sample of at least 1 item, got {size}.")
    if num_resamples < 2:
        raise ValueError(f"num_resamples must be at least 2, got {num_resamples}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}.")
    generator = np.random.default_rng(seed)
    values = np.stack(
        [np.asarray(statistic(generator.integers(0, size, size=size)), dtype=np.float64) for _ in range(num_resamples)]
    )  # [num_resamples, num_values]
    tail = (1 - confidence) / 2 * 100
    low = np.nanpercentile(values, tail, axis=0)
    high = np.nanpercentile(values, 100 - tail, axis=0)
    return low, high
