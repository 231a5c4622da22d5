"""Deterministic batch order: a seeded permutation per epoch, so any step can be rebuilt on resume."""

from __future__ import annotations

import torch


class PairBatcher:
    """Yield the pair indices of micro batch `m` of a run: epoch `m // batches_per_epoch`, shuffled by seed.

    Only full batches are used; the pairs left over at the end of an epoch come back in the next epoch's
    shuffle. The order depends on `(seed, epoch)` alone, so resuming at micro batch `m` needs no saved state.
    """

    def __init__(self, num_pairs: int, batch_size: int, seed: int) -> None:
        if num_pairs < batch_size:
            raise ValueError(
                f"{num_pairs} pairs are fewer than training.batch_size={batch_size}; "
                "lower the batch size or provide more pairs."
            )
        self.num_pairs = num_pairs
        self.batch_size = batch_size
        self.seed = seed
        self.batches_per_epoch = num_pairs // batch_size
        self._epoch = -1
        self._order: torch.Tensor | None = None

    def indices(self, micro_batch: int) -> list[int]:
        epoch, position = divmod(micro_batch, self.batches_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._order = torch.randperm(self.num_pairs, generator=generator)
            self._epoch = epoch
        start = position * self.batch_size
        return self._order[start : start + self.batch_size].tolist()
