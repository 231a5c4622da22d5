"""The evaluation runner used by `isotune eval` and during training: load the tasks, embed, score.

Tasks are read from a data root (see `isotune.evaluation.tasks`). Loading (`load_suite_data`) is separate
from scoring (`score_suite`), so that `isotune eval` loads the data once and scores several post-processed
variants of one model on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from isotune.errors import ConfigError
from isotune.evaluation.bootstrap import DEFAULT_RESAMPLES
from isotune.evaluation.embedding import CachedEmbedder, EmbedFunction
from isotune.evaluation.geometry import evaluate_geometry, sample_sentences
from isotune.evaluation.missing import MissingDataError
from isotune.evaluation.sts import StsTask, evaluate_sts
from isotune.evaluation.tasks import (
    GEOMETRY_TASK,
    KNOWN_TASKS,
    STS_TASKS,
    TASK_GROUPS,
    TRANSFER_TASKS,
    load_sts_task,
    load_transfer_task,
    resolve_tasks,
)
from isotune.evaluation.transfer import evaluate_transfer
from isotune.evaluation.transfer_data import ClassificationData

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TASKS",
    "GEOMETRY_TASK",
    "KNOWN_TASKS",
    "STS_TASKS",
    "TASK_GROUPS",
    "TRANSFER_TASKS",
    "SuiteData",
    "load_suite_data",
    "markdown_table",
    "resolve_tasks",
    "run_evaluation",
    "score_suite",
    "summary_row",
]

# NOTE: relative to the working directory, so it finds the data only when the command runs from the root
# of a checkout that sits next to a `shared/` folder. Other layouts pass `data_root` (`--data-root`).
DEFAULT_DATA_ROOT = Path("../shared/data")

DEFAULT_TASKS = ["stsb-dev", "sts12", "sick-trial", "geometry"]
"""Tasks of `isotune train`'s before/after evaluation when its recipe names none."""

# Geometry settings. Positive pairs are pairs of an STS task (STS-B dev by default) with a gold score of
# at least 4, which is "mostly equivalent" or better on the 0-5 scale. Uniformity, average cosine and the
# spectral measures use a sample of 2000 sentences.
POSITIVE_MIN_SCORE = 4.0
GEOMETRY_NUM_SENTENCES = 2000
GEOMETRY_PAIRS_TASK = "stsb-dev"

# Headline columns of `summary_row`: column -> (task, metric). STS columns are Spearman x 100 over all
# pairs of the task.
SUMMARY_COLUMNS: dict[str, tuple[str, str]] = {
    "STS-B dev": ("stsb-dev", "spearman"),
    "STS12 all": ("sts12", "spearman"),
    "SICK trial": ("sick-trial", "spearman"),
    "alignment": (GEOMETRY_TASK, "alignment"),
    "uniformity": (GEOMETRY_TASK, "uniformity"),
    "avg cos": (GEOMETRY_TASK, "average_cosine"),
}


@dataclass
class GeometryInputs:
    """The positive pairs and the sentence sample of the geometry task, and the STS task they come from."""

    pairs_task: str
    positive_pairs: list[tuple[str, str]]
    sample: list[str]


@dataclass
class SuiteData:
    """The loaded data of an evaluation: tasks to score in order, their data, and the tasks skipped."""

    tasks: list[str]
    sts: dict[str, StsTask] = field(default_factory=dict)
    transfer: dict[str, ClassificationData] = field(default_factory=dict)
    geometry: GeometryInputs | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every text that scoring embeds, with repeats."""
        texts = [
            text
            for task in self.sts.values()
            for subset in task.subsets
            for text in (*subset.sentences1, *subset.sentences2)
        ]
        for data in self.transfer.values():
            texts += data.texts()
        if self.geometry is not None:
            texts += [text for pair in self.geometry.positive_pairs for text in pair] + self.geometry.sample
        return texts


def _geometry_inputs(pairs_source: StsTask, sentences: list[str] | None, seed: int) -> GeometryInputs:
    """Return the positive pairs (gold >= 4) of `pairs_source` and the sentence sample of the geometry task."""
    positive_pairs = [
        (first, second)
        for subset in pairs_source.subsets
        for first, second, score in zip(subset.sentences1, subset.sentences2, subset.scores, strict=True)
        if score >= POSITIVE_MIN_SCORE
    ]
    if sentences is None:
        sentences = [text for subset in pairs_source.subsets for text in (*subset.sentences1, *subset.sentences2)]
    return GeometryInputs(pairs_source.name, positive_pairs, sample_sentences(sentences, GEOMETRY_NUM_SENTENCES, seed))


def load_suite_data(
    tasks: Sequence[str] | str,
    data_root: str | Path | None = None,
    *,
    sentences: list[str] | None = None,
    seed: int = 0,
    sts_source: str = "local",
    on_missing: str = "raise",
    geometry_pairs: str = GEOMETRY_PAIRS_TASK,
) -> SuiteData:
    """Load the data of `tasks` (names or groups) from `data_root` (default `DEFAULT_DATA_ROOT`).

    STS tasks come from local files or, with `sts_source="hub"`, from their Hugging Face Hub copies.
    The geometry task takes positive pairs from the STS task `geometry_pairs` and its sentence sample
    from `sentences`, or from that task's sentences when `sentences` is None.

    A task whose files are absent raises MissingDataError with `on_missing="raise"`; with
    `on_missing="skip"` it is logged, recorded in `SuiteData.skipped` with the reason, and left out.
    Other data errors (malformed files) always raise.
    """
    if on_missing not in ("raise", "skip"):
        raise ConfigError(f"on_missing must be 'raise' or 'skip', got {on_missing!r}.")
    if geometry_pairs not in STS_TASKS:
        raise ConfigError(f"Unknown geometry pairs task {geometry_pairs!r}; use one of {', '.join(STS_TASKS)}.")
    names = resolve_tasks(tasks)
    data_root = DEFAULT_DATA_ROOT if data_root is None else Path(data_root)
    data = SuiteData(tasks=[])
    for name in names:
        try:
            if name in STS_TASKS:
                data.sts[name] = load_sts_task(name, data_root, sts_source)
            elif name in TRANSFER_TASKS:
                data.transfer[name] = load_transfer_task(name, data_root)
            else:
                pairs_source = data.sts.get(geometry_pairs) or load_sts_task(geometry_pairs, data_root, sts_source)
                data.geometry = _geometry_inputs(pairs_source, sentences, seed)
        except MissingDataError as error:
            if on_missing == "raise":
                raise
            data.skipped[name] = str(error)
            logger.warning("Skipping task %s: %s", name, error)
            continue
        data.tasks.append(name)
    return data


def score_suite(
    embed: EmbedFunction,
    data: SuiteData,
    *,
    seed: int = 0,
    show_progress: bool = True,
    num_resamples: int = DEFAULT_RESAMPLES,
    chunk_size: int = 4096,
) -> dict[str, dict]:
    """Score `embed` on the loaded `data` and return `{task: result}` in the order of `data.tasks`.

    Every distinct text of all tasks is embedded once, `chunk_size` texts per call of `embed` (longest
    first), before any task is scored; a CachedEmbedder passed as `embed` keeps what it cached before.
    STS results are those of `evaluate_sts`, transfer results those of `evaluate_transfer` (classifier
    seeded with `seed`) and the geometry result that of `evaluate_geometry` with `num_resamples`
    bootstrap resamples seeded with `seed`.
    """
    cached_embed = embed if isinstance(embed, CachedEmbedder) else CachedEmbedder(embed)
    texts = data.texts()
    start = time.perf_counter()
    count = cached_embed.add(texts, chunk_size=chunk_size, show_progress=show_progress)
    logger.info("Embedded %d distinct texts of %d in %.1f s.", count, len(texts), time.perf_counter() - start)

    results: dict[str, dict] = {}
    for name in tqdm(data.tasks, desc="evaluation tasks", disable=not show_progress):
        if name == GEOMETRY_TASK:
            results[name] = evaluate_geometry(
                cached_embed,
                positive_pairs=data.geometry.positive_pairs,
                sentences=data.geometry.sample,
                num_sentences=GEOMETRY_NUM_SENTENCES,
                seed=seed,
                num_resamples=num_resamples,
            )
            results[name]["pairs_task"] = data.geometry.pairs_task
        elif name in TRANSFER_TASKS:
            results[name] = evaluate_transfer(cached_embed, data.transfer[name], seed=seed)
        else:
            results[name] = evaluate_sts(cached_embed, data.sts[name])
        logger.info("%s: %s", name, _headline(name, results[name]))
    return results


def run_evaluation(
    embed: EmbedFunction,
    tasks: Sequence[str] | str,
    data_root: str | Path | None = None,
    *,
    sentences: list[str] | None = None,
    seed: int = 0,
    show_progress: bool = True,
    num_resamples: int = DEFAULT_RESAMPLES,
) -> dict[str, dict]:
    """Evaluate `embed` on `tasks` and return `{task: result}` in the order of `tasks`.

    This is `score_suite` on `load_suite_data(tasks, data_root, sentences=sentences, seed=seed)`: a
    task whose data is absent raises MissingDataError. `num_resamples` sets the bootstrap of the
    geometry intervals (0 turns it off). Geometry measures alignment on STS-B dev pairs
    with gold >= 4, and the sentence measures on a sample of 2000 distinct sentences drawn with `seed`
    from `sentences` (for example book sentences), or from the sentences of STS-B dev when `sentences`
    is None.
    """
    data = load_suite_data(tasks, data_root, sentences=sentences, seed=seed)
    return score_suite(embed, data, seed=seed, show_progress=show_progress, num_resamples=num_resamples)


def _headline(name: str, result: dict) -> str:
    if name == GEOMETRY_TASK:
        return (
            f"alignment {result['alignment']:.3f}, uniformity {result['uniformity']:.3f}, "
            f"average cosine {result['average_cosine']:.3f}, isotropy {result['isotropy']:.3f}, "
            f"effective rank {result['effective_rank']:.1f}"
        )
    if name in TRANSFER_TASKS:
        return f"accuracy {result['accuracy']:.2f}" + (f", F1 {result['f1']:.2f}" if "f1" in result else "")
    return f"Spearman x 100 (all pairs) {_format(result['spearman']['all'], 2)}"


def summary_row(results: dict[str, dict]) -> dict[str, float | None]:
    """Return the headline numbers of `run_evaluation` results, keyed by the columns of `SUMMARY_COLUMNS`.

    STS columns are Spearman x 100 over all pairs of the task; geometry columns are the raw metric. A
    column whose task is not in `results`, or whose value is undefined, is None.
    """
    row: dict[str, float | None] = {}
    for column, (task, metric) in SUMMARY_COLUMNS.items():
        result = results.get(task)
        if result is None:
            row[column] = None
        elif task == GEOMETRY_TASK:
            row[column] = result[metric]
        else:
            row[column] = result[metric]["all"]
    return row


def _format(value: float | None, decimals: int) -> str:
    return "n/a" if value is None else f"{value:.{decimals}f}"


def markdown_table(rows: dict[str, dict[str, float | None]]) -> str:
    """Format summary rows, `{label: summary_row(...)}` with labels such as "before", as a Markdown table.

    STS columns show 2 decimals, geometry columns 3, and a missing or None value shows as "n/a".
    """
    columns = list(SUMMARY_COLUMNS)
    lines = [
        "| model | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for label, row in rows.items():
        cells = [
            _format(row.get(column), 3 if SUMMARY_COLUMNS[column][0] == GEOMETRY_TASK else 2) for column in columns
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
