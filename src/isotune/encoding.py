"""Fast sentence embeddings for evaluation: tokenise once, then embed batches of texts of similar token length.

`encode(model, texts)` returns the rows of `SentenceTransformer.encode(texts, normalize_embeddings=True)`
(within float rounding, about 1e-7) in less time, because

- all texts are tokenised before any forward pass, with the model's own `preprocess` (`TokenCache`);
- the texts are sorted by token count, not by characters, and cut into batches where a cut saves more
  padding than one more forward pass costs, so batches pad far less than fixed batches of `batch_size`.
  A batch of equal lengths needs no attention mask, which lets transformers' SDPA attention run
  PyTorch's fused kernel.

bench/bench_encode.py measures both on the same texts (BENCHMARKS.md has the numbers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm

from isotune.batching import fixed_chunks, padding_chunks, same_length_chunks
from isotune.tokens import TokenCache, UnsupportedTokenizationError

logger = logging.getLogger(__name__)

_warned_fallback: set[str] = set()

BATCHINGS = ("padding", "same_length", "fixed")
# The fixed cost of one more forward pass, in padded tokens, for `padding` batching. NOTE: chosen from CPU
# timings of all-MiniLM-L6-v2 on book sentences (2-core AMD EPYC shared with other jobs, torch 2.13). There,
# 256 was as fast as same-length batches with 1 thread and stayed fast with 2 contended threads. Other
# hardware may prefer another value.
BATCH_OVERHEAD_TOKENS = 256


def plan_batches(lengths: Sequence[int], batch_size: int, batching: str) -> list[list[int]]:
    """Group the positions of `lengths` (token counts) into batches of at most `batch_size`; see `encode`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if batching == "padding":
        return padding_chunks(lengths, batch_size, BATCH_OVERHEAD_TOKENS)
    if batching == "same_length":
        return same_length_chunks(lengths, batch_size)
    if batching == "fixed":
        return fixed_chunks(lengths, batch_size)
    raise ValueError(f"Invalid batching {batching!r}; use one of {', '.join(BATCHINGS)}.")


def encode(
    model: SentenceTransformer,
    texts: Sequence[str],
    *,
    batch_size: int = 128,
    batching: str = "padding",
    show_progress: bool = False,
) -> np.ndarray:
    """Embed `texts` with `model` and return L2-normalised float32 rows, `[len(texts), dim]`, in input order.

    Args:
        model: a sentence-transformers model; it runs in eval mode under `torch.inference_mode` and is put
            back in its previous mode afterwards.
        texts: the texts to embed; duplicates are embedded once.
        batch_size: the maximum texts per forward pass.
        batching: how texts sorted by token count are cut into batches. `padding` (the default) cuts where
            a cut saves more padding than one more forward pass costs (`padding_chunks`). `same_length` never
            mixes lengths, so no batch is padded, but rare lengths make many small passes, which are slow
            when the CPU threads are contended. `fixed` cuts every `batch_size` texts, as
            `SentenceTransformer.encode` does (which sorts by characters instead).
        show_progress: show a tqdm bar counting texts.

    Models whose `preprocess` returns more than right-padded token ids (a prompt, left padding, images) go
    through `SentenceTransformer.encode` instead, with a warning the first time for each model class.
    """
    if batching not in BATCHINGS:
        raise ValueError(f"Invalid batching {batching!r}; use one of {', '.join(BATCHINGS)}.")
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
        unique_rows = _embed_batches(model, tokens, unique, plan_batches(lengths, batch_size, batching), show_progress)
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
