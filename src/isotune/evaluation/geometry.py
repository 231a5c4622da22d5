"""Geometry of an embedding model on text: alignment, uniformity, average cosine and anisotropy measures.

Every measure is taken on L2-normalised embeddings and reported with a percentile bootstrap interval:
alignment resamples the positive pairs, the other measures resample the sentences of the sample.

NOTE: a resample repeats about a third of the sentences, which lowers the effective rank and can shift
the isotropy, so their intervals are biased and may not contain the full-sample value. Pair measures
(uniformity, average cosine) leave out pairs of two copies of one sentence and are not affected this way.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from isotune import metrics
from isotune.evaluation.bootstrap import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_intervals
from isotune.evaluation.embedding import EmbedFunction, embed_texts

logger = logging.getLogger(__name__)

SENTENCE_MEASURES = ("uniformity", "average_cosine", "isotropy", "effective_rank", "top_component_share")


def sample_sentences(sentences: list[str], num_sentences: int, seed: int = 0) -> list[str]:
    """Return up to `num_sentences` distinct sentences of `sentences`, in their original order.

    Duplicates are dropped first, because repeated texts would sit at distance 0 and raise the uniformity.
    When more distinct sentences remain than requested, a uniform sample without replacement is drawn with
    a generator seeded with `seed`.
    """
    if num_sentences < 2:
        raise ValueError(f"num_sentences must be at least 2, got {num_sentences}.")
    distinct = list(dict.fromkeys(sentences))
    if len(distinct) <= num_sentences:
        return distinct
    chosen = np.random.default_rng(seed).choice(len(distinct), size=num_sentences, replace=False)
    return [distinct[index] for index in sorted(chosen)]


def _pair_mean(kernel: np.ndarray, counts: np.ndarray) -> float:
    """Mean of `kernel[i, j]` over ordered pairs of resampled items that come from different sentences.

    `counts[i]` is how often sentence i was drawn. Pairs of two copies of one sentence are left out, as
    the full-sample measures leave out i == j. Returns NaN when the resample contains one sentence only.
    """
    total = counts @ kernel @ counts - (counts**2 * np.diag(kernel)).sum()
    num_pairs = counts.sum() ** 2 - (counts**2).sum()
    return float(total / num_pairs) if num_pairs > 0 else float("nan")


def _sentence_statistic(vectors: np.ndarray, t: float):
    """Return a function from a resample of sentence indices to the values of `SENTENCE_MEASURES`."""
    rows = vectors.astype(np.float64)
    cosines = rows @ rows.T  # [n, n]
    # ||x - y||^2 = 2 - 2 cos(x, y) for unit vectors.
    gaussian = np.exp(-t * (2.0 - 2.0 * cosines))

    def statistic(indices: np.ndarray) -> np.ndarray:
        counts = np.bincount(indices, minlength=len(rows)).astype(np.float64)
        spectral = metrics.spectral_measures(rows[indices])
        share = spectral["top_component_share"]
        return np.array(
            [
                np.log(_pair_mean(gaussian, counts)),
                _pair_mean(cosines, counts),
                spectral["isotropy"],
                spectral["effective_rank"],
                np.nan if share is None else share,
            ]
        )

    return statistic


def _interval(low: float, high: float) -> list[float] | None:
    return None if np.isnan(low) or np.isnan(high) else [float(low), float(high)]


def evaluate_geometry(
    embed: EmbedFunction,
    *,
    positive_pairs: list[tuple[str, str]],
    sentences: list[str],
    alpha: float = 2.0,
    t: float = 2.0,
    num_sentences: int = 2000,
    seed: int = 0,
    num_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
) -> dict:
    """Measure the geometry of `embed` on positive pairs and on a sample of sentences.

    Args:
        embed: the embed function to measure.
        positive_pairs: text pairs that should embed close together, for example STS-B dev pairs with a
            gold score of at least 4. `alignment` is their mean `||f(a) - f(b)||^alpha` (Wang and Isola, 2020).
        sentences: texts for the sentence measures, taken on a sample drawn by
            `sample_sentences(sentences, num_sentences, seed)`: `uniformity` (temperature `t`) and
            `average_cosine` over all distinct pairs of the sample, then `isotropy`, `effective_rank` and
            `top_component_share` of the sample matrix (see `isotune.metrics`).
        num_resamples: bootstrap resamples per interval; 0 reports no intervals.
        confidence: coverage of the percentile intervals.
        seed: seeds the sample and the bootstrap.

    Returns a dict with one value per measure, `singular_values` of the sample matrix (largest first),
    `intervals` (measure -> [low, high], None where undefined), `bootstrap` (its settings), and the sizes
    used: `num_positive_pairs`, `num_sentences`, `num_zero_norm` (embeddings of norm 0, left out with the
    pairs that contain them). All texts are embedded in one call of `embed`.
    """
    if not positive_pairs:
        raise ValueError("evaluate_geometry needs at least one positive pair, got none.")
    if num_resamples < 0:
        raise ValueError(f"num_resamples must be >= 0 (0 turns the bootstrap off), got {num_resamples}.")
    sample = sample_sentences(sentences, num_sentences, seed)
    if len(sample) < 2:
        raise ValueError(f"evaluate_geometry needs at least 2 distinct sentences, got {len(sample)}.")

    texts = [first for first, _ in positive_pairs] + [second for _, second in positive_pairs] + sample
    vectors = embed_texts(embed, texts)
    num_pairs = len(positive_pairs)
    first, second = vectors[:num_pairs], vectors[num_pairs : 2 * num_pairs]
    sample_vectors = vectors[2 * num_pairs :]

    pair_keep = (np.linalg.norm(first, axis=1) > 0) & (np.linalg.norm(second, axis=1) > 0)
    sample_keep = np.linalg.norm(sample_vectors, axis=1) > 0
    num_zero_norm = int((~sample_keep).sum() + (~pair_keep).sum())
    if num_zero_norm:
        logger.warning(
            "Geometry: %d positive pairs and %d sample sentences have an embedding of norm 0 and are left out.",
            int((~pair_keep).sum()),
            int((~sample_keep).sum()),
        )
    first, second, sample_vectors = first[pair_keep], second[pair_keep], sample_vectors[sample_keep]
    if len(first) == 0 or len(sample_vectors) < 2:
        raise ValueError("evaluate_geometry has too few embeddings of non-zero norm left; check the encoder.")

    distances = np.linalg.norm(first.astype(np.float64) - second.astype(np.float64), axis=1) ** alpha
    spectral = metrics.spectral_measures(sample_vectors)
    result = {
        "alignment": metrics.alignment(first, second, alpha=alpha),
        "uniformity": metrics.uniformity(sample_vectors, t=t),
        "average_cosine": metrics.average_cosine(sample_vectors),
        "isotropy": spectral["isotropy"],
        "effective_rank": spectral["effective_rank"],
        "top_component_share": spectral["top_component_share"],
        "singular_values": [float(value) for value in spectral["singular_values"]],
        "num_positive_pairs": int(len(first)),
        "num_sentences": int(len(sample_vectors)),
        "num_zero_norm": num_zero_norm,
        "intervals": {},
        "bootstrap": {"num_resamples": num_resamples, "confidence": confidence, "seed": seed},
    }
    if num_resamples == 0:
        return result

    # One BLAS thread: on a busy 2-core machine, two threads made each resample about 10 times slower
    # (measured on 2000 x 384 embeddings).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        # A resample can leave a value undefined (NaN); nanpercentile then warns about an all-NaN column.
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = bootstrap_intervals(
            lambda indices: distances[indices].mean(keepdims=True),
            len(distances),
            num_resamples=num_resamples,
            confidence=confidence,
            seed=seed,
        )
        result["intervals"]["alignment"] = _interval(low[0], high[0])
        low, high = bootstrap_intervals(
            _sentence_statistic(sample_vectors, t),
            len(sample_vectors),
            num_resamples=num_resamples,
            confidence=confidence,
            seed=seed,
        )
    for index, name in enumerate(SENTENCE_MEASURES):
        result["intervals"][name] = _interval(low[index], high[index])
    return result
