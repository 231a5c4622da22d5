"""The positive pairs a loader produced, with the counts and source behind them."""

from __future__ import annotations

from dataclasses import dataclass

from isotune.data.stats import PairStats


@dataclass
class PairSet:
    """Positive text pairs for contrastive training.

    Attributes:
        pairs: (anchor, positive) texts, in the order of the source.
        stats: what the loader read, skipped and kept.
        source: human-readable description of where the pairs came from, for logs and model cards.
    """

    pairs: list[tuple[str, str]]
    stats: PairStats
    source: str
