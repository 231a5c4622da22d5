"""STS tasks from their Hugging Face Hub copies, converted to the tasks that the local loaders return.

sentence-transformers/stsb has the columns sentence1, sentence2 and score, with the STS Benchmark score
divided by 5 (0-1), in the splits train, validation and test, as its dataset card states.
NOTE: the MTEB copies (mteb/sts12-sts ... mteb/sickr-sts) are assumed to have sentence1, sentence2 and
score on the original scale (0-5, SICK 1-5), as the card of mteb/llm-eval-sts12 shows. This module has
not been run against the Hub (no network where it was written); `task_from_rows` names any missing column.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from isotune.errors import DataError
from isotune.evaluation.sts import StsSubset, StsTask
from isotune.hub import hub_offline, hub_unreachable_reason

logger = logging.getLogger(__name__)

# Scores are rounded after rescaling so that 0.8 * 5 compares equal to 4.0, as in the local files,
# which give at most 3 decimals.
SCORE_DECIMALS = 6


@dataclass(frozen=True)
class HubSource:
    """Where a task lives on the Hub: dataset id, split, and the factor that maps its score to 0-5."""

    dataset_id: str
    split: str
    score_scale: float = 1.0


def task_from_rows(name: str, rows, score_scale: float) -> StsTask:
    """Convert a `datasets.Dataset` (or any mapping of columns) with sentence1, sentence2, score to a task.

    The scores are multiplied by `score_scale` (5 for sentence-transformers/stsb) and rounded to
    `SCORE_DECIMALS` decimals. A row with a missing score counts as skipped, as a blank gold line does in
    the local files. The task has one subset, named after the task, because the Hub copies do not say
    which source file each pair came from.
    """
    missing = [column for column in ("sentence1", "sentence2", "score") if column not in rows.column_names]
    if missing:
        raise DataError(
            f"Hub copy of {name!r} lacks the columns {missing} (has {rows.column_names}); "
            "expected sentence1, sentence2 and score."
        )
    sentences1, sentences2, scores = [], [], []
    skipped = 0
    for first, second, score in zip(rows["sentence1"], rows["sentence2"], rows["score"], strict=True):
        if score is None:
            skipped += 1
            continue
        sentences1.append(first)
        sentences2.append(second)
        scores.append(round(float(score) * score_scale, SCORE_DECIMALS))
    if not scores:
        raise DataError(f"Hub copy of {name!r} contains no pair with a score ({skipped} without).")
    return StsTask(name, [StsSubset(name, sentences1, sentences2, np.array(scores), skipped)])


def load_hub_task(name: str, source: HubSource) -> StsTask:
    """Download (or read from the cache) the Hub copy of task `name` and convert it with `task_from_rows`.

    Raises DataError within seconds when the Hub cannot be reached. With HF_HUB_OFFLINE=1 a copy in the
    local `datasets` cache is used, and a missing one is reported as such.
    """
    import datasets

    reason = hub_unreachable_reason()
    if reason is not None and not hub_offline():
        raise DataError(
            f"Cannot load {source.dataset_id} for task {name!r}: {reason}. Use the local files (--sts-source "
            "local with --data-root), or set HF_HUB_OFFLINE=1 to read a copy downloaded before."
        )
    try:
        rows = datasets.load_dataset(source.dataset_id, split=source.split)
    except (OSError, ValueError, ConnectionError) as error:
        hint = " (HF_HUB_OFFLINE is set, so only a copy in the datasets cache can be used)" if hub_offline() else ""
        raise DataError(
            f"Failed to load {source.dataset_id} split {source.split!r} for task {name!r}{hint}: {error}"
        ) from error
    logger.info("Loaded %s split %s (%d rows) for %s.", source.dataset_id, source.split, len(rows), name)
    return task_from_rows(name, rows, source.score_scale)
