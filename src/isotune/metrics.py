"""Geometry metrics of a set of sentence embeddings, for analysis rather than training.

`alignment` and `uniformity` are the two measures of Wang and Isola, "Understanding Contrastive
Representation Learning through Alignment and Uniformity on the Hypersphere" (ICML 2020), and lower is
better for both. `average_cosine` is the mean cosine similarity of distinct embeddings, a common measure of
anisotropy. It is near 0 for embeddings spread over the sphere and near 1 when they collapse into a narrow
cone.

Every function takes a numpy array or torch tensor of shape `[n, dim]` whose rows are L2-normalised (use
`normalize` first), computes in float32 or float64 without gradients and returns a Python float.
"""

from __future__ import annotations

import logging
from typing import TypeVar

import numpy as np
import torch

from isotune.losses import alignment_loss, uniformity_loss

logger = logging.getLogger(__name__)

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

# Largest accepted deviation of a row norm from 1. It admits rows normalised in bfloat16 (relative
# precision about 4e-3) and rejects rows that were never normalised.
NORM_TOLERANCE = 1e-2


def _to_matrix(name: str, x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert `x` to a float32 CPU tensor without gradient and check it is a non-empty `[n, dim]` matrix."""
    if isinstance(x, torch.Tensor):
        matrix = x.detach().to(device="cpu", dtype=torch.float32)
    elif isinstance(x, np.ndarray):
        matrix = torch.from_numpy(np.asarray(x, dtype=np.float32))
    else:
        raise ValueError(f"{name} expects a numpy array or torch tensor, got {type(x).__name__}.")
    if matrix.dim() != 2 or matrix.shape[1] == 0:
        raise ValueError(f"{name} expects embeddings of shape [n, dim], got shape {tuple(matrix.shape)}.")
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name} got non-finite embedding values (NaN or inf); check the encoder output.")
    return matrix


def _check_unit_rows(name: str, matrix: torch.Tensor) -> None:
    deviation = (matrix.norm(dim=1) - 1).abs()
    worst = int(deviation.argmax()) if matrix.shape[0] else 0
    if matrix.shape[0] and deviation[worst] > NORM_TOLERANCE:
        raise ValueError(
            f"{name} expects L2-normalised rows, but row {worst} has norm {float(matrix[worst].norm()):.4f}; "
            "apply isotune.metrics.normalize first."
        )


def _check_min_rows(name: str, matrix: torch.Tensor, minimum: int) -> None:
    if matrix.shape[0] < minimum:
        raise ValueError(f"{name} needs at least {minimum} embeddings, got {matrix.shape[0]}.")


def normalize(x: ArrayLike) -> ArrayLike:
    """Scale each row of `x` (`[n, dim]`) to unit L2 norm, returning the same kind of array as the input.

    A numpy input gives a float32 numpy array and a torch tensor gives a tensor of its own dtype and
    device. A row of norm 0 stays all zeros (there is no direction to keep), and the number of such rows is
    logged as a warning, because the metrics of this module reject them afterwards.
    """
    if isinstance(x, torch.Tensor):
        if x.dim() != 2:
            raise ValueError(f"normalize expects shape [n, dim], got shape {tuple(x.shape)}.")
        norms = x.norm(dim=1, keepdim=True)
        zero_rows = int((norms == 0).sum())
        result = x / norms.clamp_min(torch.finfo(norms.dtype).tiny)
    elif isinstance(x, np.ndarray):
        if x.ndim != 2:
            raise ValueError(f"normalize expects shape [n, dim], got shape {x.shape}.")
        matrix = np.asarray(x, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        zero_rows = int((norms == 0).sum())
        result = matrix / np.maximum(norms, np.finfo(np.float32).tiny)
    else:
        raise ValueError(f"normalize expects a numpy array or torch tensor, got {type(x).__name__}.")
    if zero_rows:
        logger.warning("%d of %d embeddings have norm 0 and stay all zeros.", zero_rows, len(x))
    return result


def alignment(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, alpha: float = 2.0) -> float:
    """Compute the alignment `mean_i ||x_i - y_i||^alpha` of positive pairs (Wang and Isola, 2020).

    Args:
        x: L2-normalised embeddings, `[n, dim]`.
        y: L2-normalised embeddings of the positives of `x`, same shape.
        alpha: exponent of the distance, > 0.

    The value lies in `[0, 2^alpha]`: 0 when each pair coincides. Unit vectors e1 and e2 give 2.0 with
    alpha 2.
    """
    x_matrix, y_matrix = _to_matrix("alignment", x), _to_matrix("alignment", y)
    if x_matrix.shape != y_matrix.shape:
        raise ValueError(
            f"alignment expects x and y of the same shape, got {tuple(x_matrix.shape)} and {tuple(y_matrix.shape)}."
        )
    _check_min_rows("alignment", x_matrix, 1)
    _check_unit_rows("alignment", x_matrix)
    _check_unit_rows("alignment", y_matrix)
    with torch.no_grad():
        return float(alignment_loss(x_matrix, y_matrix, alpha=alpha))


def uniformity(x: np.ndarray | torch.Tensor, t: float = 2.0) -> float:
    """Compute the uniformity `log mean_{i<j} exp(-t ||x_i - x_j||^2)` over all distinct pairs.

    From Wang and Isola (2020). Args: `x`, L2-normalised embeddings `[n, dim]` with n >= 2, and `t`, the
    temperature of the Gaussian potential (> 0). The value lies in `[-4t, 0]`: 0 when all rows coincide.
    Memory grows as n^2: an estimated 40 bytes per pair, about 80 MB for 2000 rows.
    """
    matrix = _to_matrix("uniformity", x)
    _check_min_rows("uniformity", matrix, 2)
    _check_unit_rows("uniformity", matrix)
    with torch.no_grad():
        return float(uniformity_loss(matrix, t=t))


def average_cosine(x: np.ndarray | torch.Tensor, num_pairs: int | None = None, seed: int = 0) -> float:
    """Compute the mean cosine similarity of pairs of distinct rows of `x` (`[n, dim]`, L2-normalised).

    With `num_pairs=None` the mean is exact over all n(n-1)/2 pairs i < j, computed in O(n * dim) from the
    sum of the rows: `(||sum_i x_i||^2 - sum_i ||x_i||^2) / (n(n-1))`. Otherwise `num_pairs` pairs (i, j)
    with i != j are drawn uniformly with replacement from a generator seeded with `seed`.
    """
    matrix = _to_matrix("average_cosine", x)
    _check_min_rows("average_cosine", matrix, 2)
    _check_unit_rows("average_cosine", matrix)
    rows = matrix.double()
    count = rows.shape[0]
    if num_pairs is None:
        total = rows.sum(dim=0)
        off_diagonal = total.dot(total) - rows.pow(2).sum()
        return float(off_diagonal / (count * (count - 1)))

    if num_pairs < 1:
        raise ValueError(f"average_cosine needs num_pairs >= 1 or None for all pairs, got {num_pairs}.")
    generator = np.random.default_rng(seed)
    first = generator.integers(0, count, size=num_pairs)
    # Draw the second index from the other count - 1 rows, so that it never equals the first.
    second = generator.integers(0, count - 1, size=num_pairs)
    second = second + (second >= first)
    first_rows, second_rows = rows[torch.from_numpy(first)], rows[torch.from_numpy(second)]
    return float((first_rows * second_rows).sum(dim=1).mean())
