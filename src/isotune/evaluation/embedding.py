"""The embed-function contract of the evaluation package, and a cache that embeds each text once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import numpy as np
from tqdm.auto import tqdm

from isotune.metrics import normalize

logger = logging.getLogger(__name__)

EmbedFunction = Callable[[list[str]], np.ndarray]
"""A function from a list of n texts to their embeddings, a `[n, dim]` array (L2-normalised float32 rows)."""


def embed_texts(embed: EmbedFunction, texts: list[str]) -> np.ndarray:
    """Call `embed(texts)`, check that it returns one row per text and return the rows L2-normalised.

    The rows are normalised again even though the contract requires normalised rows, so that an encoder
    that skips normalisation still gets cosine-based scores.
    """
    vectors = np.asarray(embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(
            f"The embed function returned shape {vectors.shape} for {len(texts)} texts; expected [{len(texts)}, dim]."
        )
    if not np.isfinite(vectors).all():
        raise ValueError("The embed function returned non-finite values (NaN or inf); check the encoder.")
    return normalize(vectors)


class CachedEmbedder:
    """An embed function that remembers the embedding of every text it has seen.

    Calling it embeds the texts not yet in the cache (each distinct text once, in one call of the wrapped
    function) and returns the cached rows in the order of the request. Rows are L2-normalised float32.
    """

    def __init__(self, embed: EmbedFunction) -> None:
        self._embed = embed
        self._rows: dict[str, np.ndarray] = {}
        self._dim: int | None = None
        self.num_calls = 0
        """Number of calls made to the wrapped embed function."""

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, texts: Iterable[str], *, chunk_size: int | None = None, show_progress: bool = False) -> int:
        """Embed the texts that are not cached yet and return how many there were.

        With `chunk_size=None` they go to the wrapped function in one call. Otherwise they are sorted by
        length, longest first, and embedded `chunk_size` at a time, so that each chunk pads little and a
        tqdm bar (with `show_progress`) can count the texts done.
        """
        missing = list(dict.fromkeys(text for text in texts if text not in self._rows))
        if not missing:
            return 0
        if chunk_size is None:
            self._embed_batch(missing)
            return len(missing)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1 or None, got {chunk_size}.")
        missing.sort(key=len, reverse=True)
        with tqdm(total=len(missing), desc="embedding", unit="text", disable=not show_progress) as progress:
            for start in range(0, len(missing), chunk_size):
                chunk = missing[start : start + chunk_size]
                self._embed_batch(chunk)
                progress.update(len(chunk))
        return len(missing)

    def _embed_batch(self, texts: list[str]) -> None:
        vectors = embed_texts(self._embed, texts)
        self.num_calls += 1
        if self._dim is not None and vectors.shape[1] != self._dim:
            raise ValueError(
                f"The embed function returned dimension {vectors.shape[1]}, but earlier calls returned {self._dim}."
            )
        self._dim = vectors.shape[1]
        self._rows.update(zip(texts, vectors, strict=True))

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.add(texts)
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return np.stack([self._rows[text] for text in texts])
