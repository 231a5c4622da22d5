"""Tests of isotune.metrics on hand-built vectors, against plain loops over pairs."""

import itertools
import logging
import math

import numpy as np
import pytest
import torch

from isotune import metrics


def _random_unit_rows(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _uniformity_loop(x: np.ndarray, t: float) -> float:
    pairs = itertools.combinations(range(len(x)), 2)
    values = [math.exp(-t * float(np.sum((x[i] - x[j]) ** 2))) for i, j in pairs]
    return math.log(sum(values) / len(values))


def _average_cosine_loop(x: np.ndarray) -> float:
    values = [float(x[i] @ x[j]) for i, j in itertools.combinations(range(len(x)), 2)]
    return sum(values) / len(values)


def test_alignment_of_orthogonal_pair():
    e1, e2 = np.eye(3, dtype=np.float32)[:1], np.eye(3, dtype=np.float32)[1:2]
    assert metrics.alignment(e1, e2) == pytest.approx(2.0)
    assert metrics.alignment(e1, e2, alpha=1.0) == pytest.approx(math.sqrt(2))
    assert metrics.alignment(e1, e1) == pytest.approx(0.0)


def test_uniformity_of_orthogonal_pair():
    basis = np.eye(2, dtype=np.float32)
    assert metrics.uniformity(basis) == pytest.approx(-4.0)
    assert metrics.uniformity(basis, t=1.0) == pytest.approx(-2.0)


def test_uniformity_matches_pair_loop():
    x = _random_unit_rows(12, 5)
    assert metrics.uniformity(x) == pytest.approx(_uniformity_loop(x, 2.0), abs=1e-5)
    assert metrics.uniformity(x, t=0.5) == pytest.approx(_uniformity_loop(x, 0.5), abs=1e-5)


def test_average_cosine_orthonormal_and_identical():
    assert metrics.average_cosine(np.eye(4, dtype=np.float32)) == pytest.approx(0.0, abs=1e-7)
    identical = np.tile(_random_unit_rows(1, 6), (5, 1))
    assert metrics.average_cosine(identical) == pytest.approx(1.0, abs=1e-6)


def test_average_cosine_matches_pair_loop():
    x = _random_unit_rows(15, 4)
    assert metrics.average_cosine(x) == pytest.approx(_average_cosine_loop(x), abs=1e-6)


def test_average_cosine_sampled_pairs():
    x = _random_unit_rows(30, 3, seed=1)
    sampled = metrics.average_cosine(x, num_pairs=20000, seed=3)
    assert sampled == pytest.approx(_average_cosine_loop(x), abs=0.02)
    assert sampled == metrics.average_cosine(x, num_pairs=20000, seed=3)
    # Two rows: every sampled pair is the distinct pair, never a row with itself.
    two = np.eye(2, dtype=np.float32)
    assert metrics.average_cosine(two, num_pairs=50) == pytest.approx(0.0)


def test_torch_and_numpy_inputs_agree():
    x, y = _random_unit_rows(8, 4, seed=2), _random_unit_rows(8, 4, seed=3)
    x_tensor = torch.from_numpy(x).requires_grad_()
    assert metrics.alignment(x_tensor, torch.from_numpy(y)) == pytest.approx(metrics.alignment(x, y))
    assert metrics.uniformity(x_tensor) == pytest.approx(metrics.uniformity(x))
    assert metrics.average_cosine(x_tensor) == pytest.approx(metrics.average_cosine(x))
    assert metrics.uniformity(x_tensor.to(torch.bfloat16)) == pytest.approx(metrics.uniformity(x), abs=0.02)


@pytest.mark.parametrize(
    "call",
    [
        lambda: metrics.uniformity(np.ones(4, dtype=np.float32)),
        lambda: metrics.uniformity(np.eye(1, dtype=np.float32)),
        lambda: metrics.average_cosine(np.zeros((3, 0), dtype=np.float32)),
        lambda: metrics.alignment(np.eye(3, dtype=np.float32), np.eye(2, 3, dtype=np.float32)),
        lambda: metrics.average_cosine(np.eye(3, dtype=np.float32), num_pairs=0),
        lambda: metrics.uniformity([[1.0, 0.0], [0.0, 1.0]]),
    ],
    ids=["one-dimensional", "single-row", "zero-dim", "shape-mismatch", "zero-pairs", "list-input"],
)
def test_invalid_input_raises(call):
    with pytest.raises(ValueError):
        call()


def test_unnormalised_rows_raise():
    with pytest.raises(ValueError, match="row 1 has norm 2.0000"):
        metrics.uniformity(np.array([[1.0, 0.0], [0.0, 2.0]], dtype=np.float32))


def test_non_finite_rows_raise():
    with pytest.raises(ValueError, match="non-finite"):
        metrics.average_cosine(np.array([[1.0, 0.0], [np.nan, 0.0]], dtype=np.float32))


def test_normalize_numpy_keeps_zero_rows(caplog):
    x = np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])
    with caplog.at_level(logging.WARNING, logger="isotune.metrics"):
        result = metrics.normalize(x)
    assert result.dtype == np.float32
    np.testing.assert_allclose(result, [[0.6, 0.8], [0.0, 0.0], [0.0, -1.0]])
    assert "1 of 3 embeddings have norm 0" in caplog.text


def test_normalize_torch_keeps_type():
    x = torch.tensor([[0.0, 5.0], [1.0, 1.0]], dtype=torch.float64)
    result = metrics.normalize(x)
    assert isinstance(result, torch.Tensor)
    assert result.dtype == torch.float64
    torch.testing.assert_close(result.norm(dim=1), torch.ones(2, dtype=torch.float64))


def _isotropy_reference(x: np.ndarray) -> float:
    """Partition-function ratio over the eigenvectors of x^T x and their negatives, by a plain loop."""
    _, vectors = np.linalg.eigh(x.T.astype(np.float64) @ x)
    partitions = []
    for column in range(vectors.shape[1]):
        for sign in (1.0, -1.0):
            direction = sign * vectors[:, column]
            partitions.append(sum(math.exp(float(direction @ row)) for row in x))
    return min(partitions) / max(partitions)


def test_isotropy_matches_reference_loop():
    x = _random_unit_rows(40, 5, seed=4)
    assert metrics.isotropy(x) == pytest.approx(_isotropy_reference(x), rel=1e-9)


def test_isotropy_orders_spread_and_cone():
    spread = np.concatenate([np.eye(3), -np.eye(3)]).astype(np.float32)
    assert metrics.isotropy(spread) == pytest.approx(1.0)
    cone = metrics.normalize(_random_unit_rows(50, 4, seed=5) + np.array([3.0, 0, 0, 0], dtype=np.float32))
    assert metrics.isotropy(cone) < 0.5


def test_effective_rank_extremes():
    assert metrics.effective_rank(np.eye(4, dtype=np.float32)) == pytest.approx(4.0)
    parallel = np.tile(np.array([[0.6, 0.8, 0.0]], dtype=np.float32), (5, 1))
    assert metrics.effective_rank(parallel) == pytest.approx(1.0, abs=1e-4)


def test_effective_rank_matches_svd_entropy():
    x = _random_unit_rows(30, 6, seed=6)
    values = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    shares = values / values.sum()
    expected = math.exp(-float((shares * np.log(shares)).sum()))
    assert metrics.effective_rank(x) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(metrics.singular_values(x), values, rtol=1e-6)


def test_top_component_share_matches_pca():
    x = _random_unit_rows(25, 4, seed=7)
    centred = x.astype(np.float64) - x.mean(axis=0)
    variances = np.linalg.eigvalsh(np.cov(centred.T))
    assert metrics.top_component_share(x) == pytest.approx(variances[-1] / variances.sum(), rel=1e-6)
    # Rows on one line through the origin vary along one direction only.
    line = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]], dtype=np.float32)
    assert metrics.top_component_share(line) == pytest.approx(1.0)


def test_top_component_share_of_identical_rows_raises():
    identical = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (3, 1))
    with pytest.raises(ValueError, match="undefined: all embeddings coincide"):
        metrics.top_component_share(identical)


def test_spectral_measures_reject_unnormalised_rows():
    with pytest.raises(ValueError, match="L2-normalised rows"):
        metrics.isotropy(np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32))
