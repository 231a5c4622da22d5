"""Fast sentence embeddings for evaluation: tokenise once, then embed batches of texts of one token length.

`encode(model, texts)` returns the rows of `SentenceTransformer.encode(texts, normalize_embeddings=True)`
(within float rounding, about 1e-7) in less time, because

- all texts are tokenised before any forward pass, with the model's own `preprocess` (`TokenCache`);
- texts are grouped by their token count, and each batch holds texts of one length only, so no batch is
  padded. A batch without padding has an all-ones attention mask, which transformers drops for SDPA
  attention, so PyTorch can run its fused attention kernel instead of the masked one.

`SentenceTransformer.encode` sorts by character count and pads each batch to its longest text.
bench/bench_encode.py measures both on the same texts (BENCHMARKS.md has the numbers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from isotune.tokens import TokenCache, UnsupportedTokenizationError

logger = logging.getLogger(__name__)

_warned_fallback: set[str] = set()


def length_batches(lengths: Sequence[int], batch_size: int, *, same_length: bool = True) -> list[list[int]]:
    """Split the positions of `lengths` into batches of at most `batch_size`, longest texts first.

    With `same_length`, a batch never mixes token lengths, so it needs no padding; a length with more than
    `batch_size` texts fills several batches, and a rare length gets a small batch of its own. Without it,
    the length-sorted positions are cut every `batch_size` texts (the layout of `SentenceTransformer.encode`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    if not same_length:
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        if current and (len(current) == batch_size or lengths[index] != lengths[current[0]]):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = 128,
    same_length: bool = True,
    show_progress: bool = False,
) -> np.ndarray:
    """Embed `texts` with `model` and return L2-normalised float32 rows, `[len(texts), dim]`, in input order.

    Args:
        model: a sentence-transformers model; it runs in eval mode under `torch.inference_mode` and is put
            back in its previous mode afterwards.
        texts: the texts to embed; duplicates are embedded once.
        batch_size: the maximum texts per forward pass.
        same_length: batch only texts of equal token length (no padding). False cuts the length-sorted texts
            every `batch_size` texts and pads each batch, as `SentenceTransformer.encode` does.
        show_progress: show a tqdm bar counting texts.

    Models whose `preprocess` returns more than right-padded token ids (a prompt, left padding, images) go
    through `SentenceTransformer.encode` instead, with a warning the first time for each model class.
    """
    texts = list(texts)
    dimension = model.get_embedding_dimension()
    if not texts:
        return np.zeros((0, dimension or 0), dtype=np.float32)
    unique = list(dict.fromkeys(texts))
    tokens = TokenCache(model)
    try:
        _check_plain_encode(model)
        lengths = tokens.lengths(unique)
    except UnsupportedTokenizationError as error:
        _warn_fallback(model, error)
        return _encode_with_sentence_transformers(model, texts, batch_size, show_progress)

    was_training = model.training
    model.eval()
    try:
        unique_rows = _embed_batches(
            model, tokens, unique, length_batches(lengths, batch_size, same_length=same_length), show_progress
        )
    finally:
        model.train(was_training)
    if len(unique) == len(texts):
        return unique_rows
    position = {text: index for index, text in enumerate(unique)}
    return unique_rows[[position[text] for text in texts]]


@torch.inference_mode()
def _embed_batches(
    model: SentenceTransformer,
    tokens: TokenCache,
    texts: list[str],
    batches: list[list[int]],
    show_progress: bool,
) -> np.ndarray:
    """Run one forward pass per batch and write its normalised rows into a `[len(texts), dim]` array."""
    device = model.device
    output: torch.Tensor | None = None
    with tqdm(total=len(texts), desc="embedding", unit="text", disable=not show_progress) as progress:
        for rows in batches:
            features = tokens.features([texts[index] for index in rows], device=device)
            embeddings = model(features)["sentence_embedding"]  # [len(rows), dim]
            embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1).cpu()
            if output is None:
                output = torch.empty(len(texts), embeddings.shape[1], dtype=torch.float32)
            output[torch.tensor(rows)] = embeddings
            progress.update(len(rows))
    return output.numpy()


def _check_plain_encode(model: SentenceTransformer) -> None:
    """Raise when `SentenceTransformer.encode` would add a default prompt or truncate the embeddings."""
    if getattr(model, "default_prompt_name", None) is not None:
        raise UnsupportedTokenizationError(f"the model has a default prompt ({model.default_prompt_name!r}).")
    if getattr(model, "truncate_dim", None) is not None:
        raise UnsupportedTokenizationError(f"the model truncates embeddings to {model.truncate_dim} dimensions.")


def _encode_with_sentence_transformers(
    model: SentenceTransformer, texts: list[str], batch_size: int, show_progress: bool
) -> np.ndarray:
    was_training = model.training
    try:
        embeddings = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
    finally:
        model.train(was_training)
    return embeddings.astype(np.float32, copy=False)


def _warn_fallback(model: SentenceTransformer, error: UnsupportedTokenizationError) -> None:
    name = type(model[0]).__name__ if len(model) else type(model).__name__
    if name not in _warned_fallback:
        _warned_fallback.add(name)
        logger.warning(
            "isotune.encode cannot tokenise once for this model (%s): %s Using SentenceTransformer.encode, "
            "which gives the same embeddings more slowly.",
            name,
            error,
        )
