"""Embedding a batch's texts in length-sorted chunks, with or without keeping the autograd graph.

A batch of book sentences mixes lengths from 5 to 64 tokens, and one forward pass would pad every text
to the longest. The texts are therefore sorted by token count and cut into chunks (`padding_chunks`), each
padded only to its own longest text. The token ids come from a `TokenCache`, so each text is tokenised
once per batch, or once per run when the training loop keeps the cache across steps.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator

from isotune.batching import padding_chunks
from isotune.tokens import TokenCache, UnsupportedTokenizationError

# The fixed cost of one more forward and backward pass, in padded tokens, against which `padding_chunks`
# weighs the padding that a cut saves. NOTE: chosen from 1-thread CPU timings of all-MiniLM-L6-v2 on book
# pairs, where padding-aware chunks of at most 32 texts beat fixed chunks of 32 and of 16. A GPU, where a
# pass costs more relative to a token, may prefer a larger value.
CHUNK_OVERHEAD_TOKENS = 64


def length_chunks(texts: list[str], chunk_size: int) -> list[list[int]]:
    """Split the positions of `texts` into chunks of `chunk_size` texts of similar character count (0: one chunk).

    The chunking for models whose inputs `TokenCache` cannot store, so token counts are unknown.
    """
    if chunk_size <= 0 or chunk_size >= len(texts):
        return [list(range(len(texts)))]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    return [order[start : start + chunk_size] for start in range(0, len(order), chunk_size)]


def batch_chunks(
    model: torch.nn.Module, texts: list[str], chunk_size: int, tokens: TokenCache | None
) -> tuple[list[list[int]], TokenCache | None]:
    """Choose the chunks of `texts` and the token cache to embed them with.

    Without `tokens`, a cache for this batch alone is made, so the batch is tokenised in one call. When the
    model's inputs cannot be cached, the chunks come from character counts and the cache is None.
    """
    if tokens is None:
        tokens = TokenCache(model)
    try:
        return padding_chunks(tokens.lengths(texts), chunk_size, CHUNK_OVERHEAD_TOKENS), tokens
    except UnsupportedTokenizationError:
        return length_chunks(texts, chunk_size), None


def embed_chunk(
    accelerator: Accelerator, model: torch.nn.Module, texts: list[str], tokens: TokenCache | None = None
) -> torch.Tensor:
    """Run one forward pass over `texts`; return their sentence embeddings, `[len(texts), dim]`.

    The inputs come from `tokens` when given, else from the model's `preprocess`; both give equal tensors.
    """
    if tokens is not None:
        features = tokens.features(texts, device=accelerator.device)
    else:
        features = accelerator.unwrap_model(model).preprocess(texts)
        features = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in features.items()}
    return model(features)["sentence_embedding"]


def restore_order(pieces: list[torch.Tensor], chunks: list[list[int]]) -> torch.Tensor:
    """Concatenate per-chunk embeddings and put the rows back in the order of the input texts."""
    embeddings = torch.cat(pieces)
    positions = torch.tensor([i for rows in chunks for i in rows], device=embeddings.device)
    return embeddings[torch.argsort(positions)]


def embed_by_length(
    accelerator: Accelerator,
    model: torch.nn.Module,
    texts: list[str],
    chunk_size: int,
    tokens: TokenCache | None = None,
) -> torch.Tensor:
    """Embed `texts` in forward passes over chunks of similar length; return `[len(texts), dim]` in input order.

    Attention and pooling are masked, so the embeddings are those of one forward pass over the whole batch.
    `tokens` is a cache kept across batches (see `TokenCache`); without it the batch is tokenised here.
    """
    chunks, tokens = batch_chunks(accelerator.unwrap_model(model), texts, chunk_size, tokens)
    pieces = [embed_chunk(accelerator, model, [texts[i] for i in rows], tokens) for rows in chunks]
    return restore_order(pieces, chunks)
