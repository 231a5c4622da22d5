"""Post-hoc transforms of sentence embeddings, fitted on a corpus: centring, whitening and all-but-the-top.

Both are baselines for training: they change the geometry of a frozen model's embeddings without any
gradient step. The transformed rows are L2-normalised again by the evaluation (`embed_texts`).

- `center`: `x - mu`, the mean of the fit corpus removed and nothing else; it shows what removing a
  corpus's common direction alone does to a task.
- `whiten[:k]`: `(x - mu) W`, where `W = U diag(1 / sqrt(s))` from the SVD `U diag(s) U^T` of the
  covariance of the fit corpus, keeping the first k columns when k is given, and otherwise every
  direction of non-zero variance. Reference: Jianlin Su,
  Jiarun Cao, Weijie Liu and Yangyiwen Ou, "Whitening Sentence Representations for Better Semantics and
  Faster Retrieval", 2021.
- `abtt:d`: `(x - mu) - sum_{i <= d} (u_i^T (x - mu)) u_i`, removing the mean and the top d principal
  directions u_i of the fit corpus. Reference: Jiaqi Mu and Pramod Viswanath, "All-but-the-Top: Simple
  and Effective Postprocessing for Word Representations", ICLR 2018.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from isotune.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

METHODS = ("center", "whiten", "abtt")
# A principal direction whose variance is below this share of the largest one counts as absent
# (numerically zero). The all-MiniLM-L6-v2 embeddings of STS-B train have such a direction (variance 2.5e-18).
RANK_TOLERANCE = 1e-10


@dataclass(frozen=True)
class PostprocessSpec:
    """A post-processing method and its dimension: k kept (whiten, None keeps all) or d removed (abtt)."""

    method: str
    dims: int | None = None

    @property
    def label(self) -> str:
        return self.method if self.dims is None else f"{self.method}:{self.dims}"


def parse_postprocess(text: str) -> PostprocessSpec:
    """Parse `center`, `whiten`, `whiten:k` or `abtt:d` (k, d positive integers); raise ConfigError otherwise."""
    method, _, dims_text = text.strip().partition(":")
    usage = "expected center, whiten, whiten:K or abtt:D with positive integers K and D"
    if method not in METHODS:
        raise ConfigError(f"Unknown post-processing {text!r}; {usage}.")
    if method == "center":
        if dims_text:
            raise ConfigError(f"center takes no dimension; got {text!r}, use plain center.")
        return PostprocessSpec(method)
    if not dims_text:
        if method == "abtt":
            raise ConfigError(f"abtt needs the number of directions to remove, e.g. abtt:3; got {text!r}.")
        return PostprocessSpec(method)
    try:
        dims = int(dims_text)
    except ValueError:
        dims = 0
    if dims < 1:
        raise ConfigError(f"Invalid dimension in post-processing {text!r}; {usage}.")
    return PostprocessSpec(method, dims)


class LinearPostprocessor:
    """The affine map `(x - mean) @ projection`, fitted by `fit_postprocessor`; maps `[n, dim]` to `[n, out]`."""

    def __init__(self, spec: PostprocessSpec, mean: np.ndarray, projection: np.ndarray, num_fit: int) -> None:
        self.spec = spec
        self.mean = mean
        self.projection = projection
        self.num_fit = num_fit

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        return ((vectors.astype(np.float64) - self.mean) @ self.projection).astype(np.float32)


def fit_postprocessor(spec: PostprocessSpec, vectors: np.ndarray) -> LinearPostprocessor:
    """Fit `spec` on the embeddings `vectors` (`[n, dim]`) of the fit corpus.

    Raises DataError when the corpus is too small for the transform: whitening divides by the standard
    deviation of each principal direction it keeps, so each must have positive variance. Plain `whiten`
    drops the directions without variance, with a warning.
    """
    rows = np.asarray(vectors, dtype=np.float64)
    count, dim = rows.shape
    if spec.dims is not None and spec.dims >= dim + (spec.method == "whiten"):
        limit = dim if spec.method == "whiten" else dim - 1
        raise ConfigError(
            f"{spec.label} asks for {spec.dims} dimensions, but the model has {dim}; use at most {limit}."
        )
    if count < 2:
        raise DataError(f"{spec.label} needs a fit corpus of at least 2 sentences, got {count}.")
    mean = rows.mean(axis=0)
    if spec.method == "center":
        return LinearPostprocessor(spec, mean, np.eye(dim), count)
    centred = rows - mean
    if spec.method == "abtt":
        _, _, right = np.linalg.svd(centred, full_matrices=False)
        top = right[: spec.dims].T  # [dim, d], the top principal directions
        return LinearPostprocessor(spec, mean, np.eye(dim) - top @ top.T, count)

    covariance = centred.T @ centred / (count - 1)
    left, variances, _ = np.linalg.svd(covariance)
    rank = int((variances > RANK_TOLERANCE * variances[0]).sum())
    keep = spec.dims or rank
    if keep > rank:
        raise DataError(
            f"{spec.label}: the covariance of the fit corpus ({count} sentences) has only {rank} directions with "
            f"non-zero variance, too few to whiten to {keep}; use whiten:K with K <= {rank}, or a larger fit corpus."
        )
    if spec.dims is None and rank < dim:
        logger.warning(
            "whiten: %d of %d principal directions of the fit corpus have no variance and are dropped, so the "
            "whitened embeddings have %d dimensions.",
            dim - rank,
            dim,
            rank,
        )
    projection = left[:, :keep] / np.sqrt(variances[:keep])
    return LinearPostprocessor(spec, mean, projection, count)
