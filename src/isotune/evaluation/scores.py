"""Headline scores of a set of result rows: STS avg, transfer avg and geometry, for ranking and correlation.

STS avg is defined here and only here: the mean, over the STS tasks that every row has a pooled score
for, of the task's Spearman x 100 over all its pairs (`spearman["all"]`). Transfer avg is the mean
accuracy x 100 over the transfer tasks that every row has. Only tasks common to all rows count, so that
every average in one table covers the same tasks. A task that one row lacks therefore drops out of the
average of every row, and the tasks used are listed with the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from isotune.errors import ConfigError
from isotune.evaluation.tasks import GEOMETRY_TASK, STS_TASKS, TRANSFER_TASKS

STS_AVG = "sts_avg"
TRANSFER_AVG = "transfer_avg"
GEOMETRY_KEYS = ("alignment", "uniformity", "average_cosine")

# Display names of the scores that are not task names.
SCORE_NAMES = {
    STS_AVG: "STS avg",
    TRANSFER_AVG: "transfer avg",
    "alignment": "alignment",
    "uniformity": "uniformity",
    "average_cosine": "avg cos",
}

# Scores where a lower value ranks higher; every other score (STS and transfer) ranks higher when larger.
LOWER_IS_BETTER = {"alignment", "uniformity"}


@dataclass
class RowScores:
    """Per-row scores of a set of rows, and the tasks that STS avg and transfer avg average over.

    `values[label][score]` is None where the row lacks the score. Scores are the common STS task names,
    `sts_avg`, the common transfer task names, `transfer_avg` and the keys of `GEOMETRY_KEYS`.
    """

    sts_tasks: list[str] = field(default_factory=list)
    transfer_tasks: list[str] = field(default_factory=list)
    values: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def column(self, score: str) -> dict[str, float | None]:
        """Return `{label: value}` of one score over all rows."""
        return {label: scores.get(score) for label, scores in self.values.items()}

    def has(self, score: str) -> bool:
        """Return True when at least one row has a value for `score`."""
        return any(value is not None for value in self.column(score).values())


def score_name(score: str) -> str:
    """Return the display name of a score: `STS avg`, `avg cos`, or the task name itself."""
    return SCORE_NAMES.get(score, score)


def score_rows(rows: dict[str, dict[str, dict]]) -> RowScores:
    """Compute the scores of `{label: {task: result}}` rows, averaging over the tasks common to every row."""
    sts_tasks = _common(rows, STS_TASKS, _sts_score)
    transfer_tasks = _common(rows, TRANSFER_TASKS, _transfer_score)
    values: dict[str, dict[str, float | None]] = {}
    for label, results in rows.items():
        scores: dict[str, float | None] = {task: _sts_score(results, task) for task in sts_tasks}
        scores[STS_AVG] = _mean(scores[task] for task in sts_tasks)
        transfer = {task: _transfer_score(results, task) for task in transfer_tasks}
        scores.update(transfer)
        scores[TRANSFER_AVG] = _mean(transfer.values())
        geometry = results.get(GEOMETRY_TASK) or {}
        for key in GEOMETRY_KEYS:
            scores[key] = geometry.get(key)
        values[label] = scores
    return RowScores(sts_tasks, transfer_tasks, values)


def rankable_scores() -> list[str]:
    """Return every score name that `rank_labels` accepts."""
    return [STS_AVG, TRANSFER_AVG, *STS_TASKS, *TRANSFER_TASKS, *sorted(LOWER_IS_BETTER)]


def rank_labels(scores: RowScores, score: str) -> list[str]:
    """Return the labels that have `score`, best first (ties keep their row order).

    Raises:
        ConfigError: when `score` is not rankable, or when no row has it (naming the scores that rows have).
    """
    if score not in rankable_scores():
        raise ConfigError(f"Unknown score {score!r} to rank by; use one of {', '.join(rankable_scores())}.")
    column = scores.column(score)
    present = [label for label, value in column.items() if value is not None]
    if not present:
        available = [name for name in rankable_scores() if scores.has(name)]
        raise ConfigError(
            f"No row has the score {score!r} to rank by (for STS avg or transfer avg: no task that every row has). "
            f"Scores the rows have: {', '.join(available) or 'none'}."
        )
    sign = 1.0 if score in LOWER_IS_BETTER else -1.0
    return sorted(present, key=lambda label: sign * column[label])


def _common(rows: dict[str, dict[str, dict]], tasks: Iterable[str], score) -> list[str]:
    """Return the tasks (in registry order) for which every row has a score; none when there are no rows."""
    if not rows:
        return []
    return [task for task in tasks if all(score(results, task) is not None for results in rows.values())]


def _sts_score(results: dict[str, dict], task: str) -> float | None:
    result = results.get(task)
    return None if result is None else result.get("spearman", {}).get("all")


def _transfer_score(results: dict[str, dict], task: str) -> float | None:
    result = results.get(task)
    return None if result is None else result.get("accuracy")


def _mean(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None
