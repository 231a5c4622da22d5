"""Counters of what a pair loader read, skipped and kept, reported at the start of training."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Label of each counter in `PairStats.summary`, in report order.
_LABELS = {
    "pairs": "pairs used",
    "files": "files read",
    "lines": "lines read",
    "sentences": "sentences kept",
    "empty_lines": "empty lines skipped",
    "undecodable_lines": "lines with undecodable bytes (replaced with U+FFFD)",
    "too_short": "sentences dropped as too short",
    "too_long": "sentences dropped as too long",
    "empty_fields": "rows skipped for an empty text field",
    "single_sentence_files": "files with fewer than 2 sentences (no pair)",
    "simcse_pairs": "pairs replaced by identical (SimCSE) pairs",
}


@dataclass
class PairStats:
    """Counts of a pair loader's input, skipped items and output.

    For datasets, `lines` counts rows read. For pair files and two-column datasets the length filter
    applies to each text, so `sentences`, `too_short` and `too_long` count texts, not rows. `simcse_pairs`
    counts the pairs that `mix_identical_pairs` replaced by identical pairs (data.simcse_ratio).
    """

    files: int = 0
    lines: int = 0
    empty_lines: int = 0
    undecodable_lines: int = 0
    sentences: int = 0
    too_short: int = 0
    too_long: int = 0
    empty_fields: int = 0
    single_sentence_files: int = 0
    pairs: int = 0
    simcse_pairs: int = 0

    def summary(self) -> str:
        """Format the counters as one "label: count" line each: pairs always, the others when nonzero."""
        counts = self.to_dict()
        lines = [f"{_LABELS['pairs']}: {self.pairs:,}"]
        for name, label in _LABELS.items():
            if name != "pairs" and counts[name]:
                lines.append(f"{label}: {counts[name]:,}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, int]:
        """Return the counters as a plain dict, in field order."""
        return asdict(self)
