"""Geometry of an embedding model on text: alignment of positive pairs, uniformity and average cosine."""

from __future__ import annotations

import numpy as np

from isotune import metrics
from isotune.evaluation.embedding import EmbedFunction, embed_texts


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


def evaluate_geometry(
    embed: EmbedFunction,
    *,
    positive_pairs: list[tuple[str, str]],
    sentences: list[str],
    alpha: float = 2.0,
    t: float = 2.0,
    num_sentences: int = 2000,
    seed: int = 0,
) -> dict:
    """Measure alignment, uniformity and average cosine of `embed` (Wang and Isola, 2020).

    Args:
        embed: the embed function to measure.
        positive_pairs: text pairs that should embed close together, for example STS-B dev pairs with a
            gold score of at least 4. `alignment` is their mean `||f(a) - f(b)||^alpha`.
        sentences: texts for `uniformity` (with temperature `t`) and `average_cosine`, both over all
            distinct pairs of a sample drawn by `sample_sentences(sentences, num_sentences, seed)`.

    Returns a dict with `alignment`, `uniformity`, `average_cosine` and the sizes used,
    `num_positive_pairs` and `num_sentences`. All texts are embedded in one call of `embed`.
    """
    if not positive_pairs:
        raise ValueError("evaluate_geometry needs at least one positive pair, got none.")
    sample = sample_sentences(sentences, num_sentences, seed)
    if len(sample) < 2:
        raise ValueError(f"evaluate_geometry needs at least 2 distinct sentences, got {len(sample)}.")

    texts = [first for first, _ in positive_pairs] + [second for _, second in positive_pairs] + sample
    vectors = embed_texts(embed, texts)
    num_pairs = len(positive_pairs)
    first, second = vectors[:num_pairs], vectors[num_pairs : 2 * num_pairs]
    sample_vectors = vectors[2 * num_pairs :]
    return {
        "alignment": metrics.alignment(first, second, alpha=alpha),
        "uniformity": metrics.uniformity(sample_vectors, t=t),
        "average_cosine": metrics.average_cosine(sample_vectors),
        "num_positive_pairs": num_pairs,
        "num_sentences": len(sample),
    }
