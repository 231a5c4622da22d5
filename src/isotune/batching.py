"""Grouping texts of known token counts into forward passes that pad little.

A forward pass pads every text to the longest one it contains, so texts are sorted by token count and cut
into groups of similar length. More cuts mean less padding but more passes, and each pass has a fixed cost
(Python, kernel launches, thread synchronisation) on top of its tokens. `padding_chunks` places the cuts
where the sum of both costs is lowest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def padding_chunks(lengths: Sequence[int], chunk_size: int, overhead_tokens: float) -> list[list[int]]:
    """Split the positions of `lengths` (token counts) into chunks of at most `chunk_size` similar lengths.

    The positions are sorted by length and cut where the cuts minimise the padded tokens of all chunks
    (each chunk padded to its longest text) plus `overhead_tokens` per chunk, by dynamic programming over
    the cut points: O(len(lengths) x chunk_size) time. `chunk_size=0` gives one chunk of the whole batch.
    Chunks come shortest first; among cuts of equal cost, the one with fewer, larger chunks is taken.
    """
    if chunk_size < 0:
        raise ValueError(f"chunk_size must be >= 0 (0: one chunk), got {chunk_size}.")
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    if chunk_size == 0 or len(order) <= 1:
        return [order.tolist()]
    sorted_lengths = np.asarray(lengths, dtype=np.float64)[order]
    # best_cost[end]: the lowest cost of chunking the first `end` sorted texts; cut_at[end]: its last cut.
    best_cost = np.zeros(len(order) + 1)
    cut_at = np.zeros(len(order) + 1, dtype=np.int64)
    for end in range(1, len(order) + 1):
        first = max(0, end - chunk_size)
        starts = np.arange(first, end)
        # A chunk from `start` to `end` is padded to sorted_lengths[end - 1], its longest text.
        costs = best_cost[first:end] + overhead_tokens + (end - starts) * sorted_lengths[end - 1]
        best = int(np.argmin(costs))
        best_cost[end], cut_at[end] = costs[best], first + best
    chunks = []
    end = len(order)
    while end > 0:
        chunks.append(order[cut_at[end] : end].tolist())
        end = int(cut_at[end])
    return chunks[::-1]


def fixed_chunks(lengths: Sequence[int], chunk_size: int) -> list[list[int]]:
    """Cut the positions of `lengths`, sorted longest first, every `chunk_size` texts (0: one chunk)."""
    if chunk_size < 0:
        raise ValueError(f"chunk_size must be >= 0 (0: one chunk), got {chunk_size}.")
    order = sorted(range(len(lengths)), key=lambda index: -lengths[index])
    if chunk_size == 0:
        return [order]
    return [order[start : start + chunk_size] for start in range(0, len(order), chunk_size)]


def same_length_chunks(lengths: Sequence[int], chunk_size: int) -> list[list[int]]:
    """Group the positions of `lengths` by equal length, longest first, at most `chunk_size` per group.

    No group needs padding, but a rare length gets a small group of its own, so a sample with many
    distinct lengths makes many small forward passes.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    chunks: list[list[int]] = []
    current: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda index: -lengths[index]):
        if current and (len(current) == chunk_size or lengths[index] != lengths[current[0]]):
            chunks.append(current)
            current = []
        current.append(index)
    if current:
        chunks.append(current)
    return chunks
