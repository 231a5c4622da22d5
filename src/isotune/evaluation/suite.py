"""The evaluation task registry and the runner used by `isotune eval` and during training.

Every task reads its files under a data root, the folder that contains
`sts/stsbenchmark/sts-{train,dev}.csv` (original STS Benchmark release), `sts/STS12-en-test/` (SentEval
layout) and `sts/SICK/SICK_{train,trial}.txt`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm.auto import tqdm

from isotune.errors import ConfigError, DataError
from isotune.evaluation.embedding import CachedEmbedder, EmbedFunction
from isotune.evaluation.geometry import evaluate_geometry, sample_sentences
from isotune.evaluation.sts import StsTask, evaluate_sts, load_senteval_sts, load_sick, load_stsb

logger = logging.getLogger(__name__)

# NOTE: relative to the working directory, so it finds the data only when the command runs from the root
# of a checkout that sits next to a `shared/` folder. Other layouts pass `data_root` (`--data-root`).
DEFAULT_DATA_ROOT = Path("../shared/data")

STS_TASKS: dict[str, tuple[str, Callable[[Path], StsTask]]] = {
    "stsb-dev": ("sts/stsbenchmark/sts-dev.csv", load_stsb),
    "stsb-train": ("sts/stsbenchmark/sts-train.csv", load_stsb),
    "sts12": ("sts/STS12-en-test", lambda folder: load_senteval_sts(folder, "sts12")),
    "sick-trial": ("sts/SICK/SICK_trial.txt", load_sick),
    "sick-train": ("sts/SICK/SICK_train.txt", load_sick),
}
"""STS task name -> (path under the data root, loader)."""

GEOMETRY_TASK = "geometry"
KNOWN_TASKS = [*STS_TASKS, GEOMETRY_TASK]
DEFAULT_TASKS = ["stsb-dev", "sts12", "sick-trial", "geometry"]

# Geometry settings. Positive pairs are STS-B dev pairs with a gold score of at least 4, which is "mostly
# equivalent" or better on the 0-5 scale. Uniformity and average cosine use a sample of 2000 sentences.
POSITIVE_MIN_SCORE = 4.0
GEOMETRY_NUM_SENTENCES = 2000

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


def resolve_tasks(tasks: Sequence[str] | str) -> list[str]:
    """Return the task names of `tasks` (a list, or one comma-separated string) without duplicates.

    Raises ConfigError for an unknown name or an empty selection, listing the known tasks.
    """
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    names = list(dict.fromkeys(name.strip() for name in names if name.strip()))
    unknown = [name for name in names if name not in KNOWN_TASKS]
    if unknown or not names:
        problem = f"Unknown evaluation task(s) {unknown}" if unknown else "No evaluation task given"
        raise ConfigError(f"{problem}; known tasks: {', '.join(KNOWN_TASKS)}.")
    return names


def load_sts_task(name: str, data_root: str | Path) -> StsTask:
    """Load the STS task `name` from its files under `data_root`; its name becomes `name`."""
    relative_path, load = STS_TASKS[name]
    path = Path(data_root) / relative_path
    if not path.exists():
        raise DataError(
            f"Data for evaluation task {name!r} not found at {path}; pass --data-root with the folder that "
            f"contains {relative_path}."
        )
    return dataclasses.replace(load(path), name=name)


def _geometry_inputs(
    stsb_dev: StsTask, sentences: list[str] | None, seed: int
) -> tuple[list[tuple[str, str]], list[str]]:
    """Return the positive pairs and the sentence sample of the geometry task."""
    subset = stsb_dev.subsets[0]
    positive_pairs = [
        (first, second)
        for first, second, score in zip(subset.sentences1, subset.sentences2, subset.scores, strict=True)
        if score >= POSITIVE_MIN_SCORE
    ]
    if sentences is None:
        sentences = [*subset.sentences1, *subset.sentences2]
    return positive_pairs, sample_sentences(sentences, GEOMETRY_NUM_SENTENCES, seed)


def run_evaluation(
    embed: EmbedFunction,
    tasks: Sequence[str] | str,
    data_root: str | Path | None = None,
    *,
    sentences: list[str] | None = None,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, dict]:
    """Evaluate `embed` on `tasks` and return `{task: result}` in the order of `tasks`.

    STS results are those of `evaluate_sts` and the geometry result that of `evaluate_geometry`. Geometry
    measures alignment on STS-B dev pairs with gold >= 4, and uniformity and average cosine on a sample of
    2000 distinct sentences drawn with `seed` from `sentences` (for example book sentences), or from the
    sentences of STS-B dev when `sentences` is None.

    Every distinct text of all tasks is embedded once, in a single call of `embed`, before any task is
    scored. `data_root` defaults to `DEFAULT_DATA_ROOT`.
    """
    names = resolve_tasks(tasks)
    data_root = DEFAULT_DATA_ROOT if data_root is None else Path(data_root)
    sts_tasks = {name: load_sts_task(name, data_root) for name in names if name in STS_TASKS}
    geometry_inputs = None
    if GEOMETRY_TASK in names:
        stsb_dev = sts_tasks.get("stsb-dev") or load_sts_task("stsb-dev", data_root)
        geometry_inputs = _geometry_inputs(stsb_dev, sentences, seed)

    texts = [
        text
        for task in sts_tasks.values()
        for subset in task.subsets
        for text in (*subset.sentences1, *subset.sentences2)
    ]
    if geometry_inputs is not None:
        positive_pairs, sample = geometry_inputs
        texts += [text for pair in positive_pairs for text in pair] + sample
    cached_embed = CachedEmbedder(embed)
    start = time.perf_counter()
    count = cached_embed.add(texts)
    logger.info("Embedded %d distinct texts of %d in %.1f s.", count, len(texts), time.perf_counter() - start)

    results: dict[str, dict] = {}
    for name in tqdm(names, desc="evaluation tasks", disable=not show_progress):
        if name == GEOMETRY_TASK:
            positive_pairs, sample = geometry_inputs
            results[name] = evaluate_geometry(
                cached_embed,
                positive_pairs=positive_pairs,
                sentences=sample,
                num_sentences=GEOMETRY_NUM_SENTENCES,
                seed=seed,
            )
        else:
            results[name] = evaluate_sts(cached_embed, sts_tasks[name])
        logger.info("%s: %s", name, _headline(name, results[name]))
    return results


def _headline(name: str, result: dict) -> str:
    if name == GEOMETRY_TASK:
        return (
            f"alignment {result['alignment']:.3f}, uniformity {result['uniformity']:.3f}, "
            f"average cosine {result['average_cosine']:.3f}"
        )
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
