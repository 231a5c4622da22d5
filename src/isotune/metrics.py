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


def _to_float64(name: str, x: np.ndarray | torch.Tensor, minimum_rows: int) -> np.ndarray:
    """Check `x` like the other metrics (finite, `[n, dim]`, unit rows) and return it as a float64 numpy array."""
    matrix = _to_matrix(name, x)
    _check_min_rows(name, matrix, minimum_rows)
    _check_unit_rows(name, matrix)
    return matrix.double().numpy()


def spectral_measures(x: np.ndarray | torch.Tensor) -> dict[str, float | None | np.ndarray]:
    """Compute `isotropy`, `effective_rank`, `top_component_share` and `singular_values` of `x` at once.

    `x` is `[n, dim]` with L2-normalised rows and n >= 2. All four come from one eigendecomposition of
    `W^T W` (`W` = `x`, not centred) and one of the covariance, which is why bootstrap loops call this
    instead of the single-metric functions. `top_component_share` is None when all rows coincide.
    """
    matrix = _to_float64("spectral_measures", x, 2)
    gram = matrix.T @ matrix  # [dim, dim]
    eigenvalues, eigenvectors = np.linalg.eigh(gram)  # ascending; one eigenvector per column
    values = np.sqrt(np.clip(eigenvalues[::-1], 0.0, None))  # singular values of W, largest first

    projections = matrix @ eigenvectors  # [n, dim]: c^T w_i for each eigenvector c
    # |c^T w_i| <= 1 for unit vectors c and w_i, so exp cannot overflow. -c gives exp(-c^T w_i).
    partition = np.concatenate([np.exp(projections).sum(axis=0), np.exp(-projections).sum(axis=0)])

    probabilities = values / values.sum()
    probabilities = probabilities[probabilities > 0]

    mean = matrix.mean(axis=0)
    covariance = gram / len(matrix) - np.outer(mean, mean)
    variances = np.linalg.eigvalsh(covariance)
    total = variances.sum()
    return {
        "isotropy": float(partition.min() / partition.max()),
        "effective_rank": float(np.exp(-(probabilities * np.log(probabilities)).sum())),
        "top_component_share": float(variances[-1] / total) if total > 1e-12 else None,
        "singular_values": values,
    }


def isotropy(x: np.ndarray | torch.Tensor) -> float:
    """Compute the isotropy `I(W) = min_c Z(c) / max_c Z(c)` of Mu and Viswanath (2018).

    `W` is `x` (`[n, dim]`, L2-normalised rows w_i, not centred, n >= 2) and `Z(c) = sum_i exp(c^T w_i)`
    is the partition function in direction c. Here c ranges over the `dim` unit eigenvectors of `W^T W`
    and their negatives, so the value does not depend on the sign that the eigensolver picks. The value
    lies in (0, 1]: near 1 when the rows are balanced around the origin, near 0 when they share a common
    direction.

    Reference: Jiaqi Mu and Pramod Viswanath, "All-but-the-Top: Simple and Effective Postprocessing for
    Word Representations", ICLR 2018.
    """
    return spectral_measures(x)["isotropy"]


def singular_values(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Return the singular values of `x` (`[n, dim]`, L2-normalised rows, not centred, n >= 2), largest first.

    They are the square roots of the eigenvalues of `x^T x`, so there are `dim` of them (zeros included).
    """
    return spectral_measures(x)["singular_values"]


def effective_rank(x: np.ndarray | torch.Tensor) -> float:
    """Compute the effective rank `exp(-sum_k p_k log p_k)` with `p_k = s_k / sum_j s_j` (Roy and Vetterli, 2007).

    `s_k` are the singular values of `x` itself (`[n, dim]`, L2-normalised rows, not centred, n >= 2), so
    a common mean direction counts as one dimension. The value lies in `[1, min(n, dim)]`: 1 when all
    rows are parallel, `dim` when the singular values are equal.

    Reference: Olivier Roy and Martin Vetterli, "The effective rank: A measure of effective
    dimensionality", EUSIPCO 2007.
    """
    return spectral_measures(x)["effective_rank"]


def top_component_share(x: np.ndarray | torch.Tensor) -> float:
    """Compute the share of the total variance along the first principal component of `x` (`[n, dim]`).

    The rows (L2-normalised, n >= 2) are centred first, so this is the largest eigenvalue of their
    covariance divided by its trace, in `[1/dim, 1]`. A value near 1 means the embeddings vary along one
    direction only. Raises ValueError when all rows coincide, because the share is then 0 / 0.
    """
    share = spectral_measures(x)["top_component_share"]
    if share is None:
        raise ValueError("top_component_share is undefined: all embeddings coincide (zero variance).")
    return share
