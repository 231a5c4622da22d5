"""Tests of the percentile bootstrap and of the geometry intervals built on it."""

import numpy as np
import pytest

from isotune.evaluation.bootstrap import bootstrap_intervals
from isotune.evaluation.geometry import _pair_mean


def test_interval_of_mean_covers_value_and_is_seeded():
    values = np.random.default_rng(0).normal(loc=3.0, size=400)
    low, high = bootstrap_intervals(lambda index: values[index].mean(keepdims=True), len(values), seed=1)
    assert low[0] < values.mean() < high[0]
    # The standard error of the mean is 1 / sqrt(400) = 0.05, so the 95% interval is about 0.2 wide.
    assert 0.12 < high[0] - low[0] < 0.28
    again = bootstrap_intervals(lambda index: values[index].mean(keepdims=True), len(values), seed=1)
    assert (low[0], high[0]) == (again[0][0], again[1][0])


def test_interval_of_constant_is_a_point():
    low, high = bootstrap_intervals(lambda index: np.array([7.0, 1.0]), 5, num_resamples=10)
    np.testing.assert_array_equal(low, [7.0, 1.0])
    np.testing.assert_array_equal(high, [7.0, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"num_resamples": 1}, "num_resamples must be at least 2"), ({"confidence": 1.0}, "strictly between 0 and 1")],
)
def test_invalid_settings_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bootstrap_intervals(lambda index: np.zeros(1), 3, **kwargs)


def test_pair_mean_leaves_out_copies_of_one_sentence():
    kernel = np.array([[1.0, 0.2, 0.4], [0.2, 1.0, 0.6], [0.4, 0.6, 1.0]])
    # The full sample: the mean over the 3 distinct pairs.
    assert _pair_mean(kernel, np.ones(3)) == pytest.approx((0.2 + 0.4 + 0.6) / 3)
    # Sentence 0 drawn twice, sentence 1 once: pairs (0,1) twice; the pair of the two copies is left out.
    assert _pair_mean(kernel, np.array([2.0, 1.0, 0.0])) == pytest.approx(0.2)
    assert np.isnan(_pair_mean(kernel, np.array([3.0, 0.0, 0.0])))
