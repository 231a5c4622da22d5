"""The evaluation task registry: task names, groups, where each task's files sit under a data root, loaders.

The data root is the folder that contains `sts/` (STS Benchmark csv files, STS12-16 in SentEval's
layout, SICK) and `transfer/` (SentEval's MR, CR, SUBJ, MPQA, SST/binary, TREC and MRPC folders).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from isotune.errors import ConfigError
from isotune.evaluation.missing import MissingDataError
from isotune.evaluation.sts import StsTask, load_senteval_sts, load_sick, load_stsb
from isotune.evaluation.sts_hub import HubSource, load_hub_task
from isotune.evaluation.transfer_data import ClassificationData, load_binary, load_mrpc, load_sst2, load_trec

# Scales that map the Hub copies' scores to the 0-5 scale of the local files.
STSB_HUB_SCALE = 5.0


@dataclass(frozen=True)
class StsTaskSpec:
    """An STS task: its path under the data root, the loader of that path, and its Hub copy if any."""

    path: str
    load: Callable[[Path], StsTask]
    hub: HubSource | None = None


def _senteval(name: str) -> Callable[[Path], StsTask]:
    return lambda folder: load_senteval_sts(folder, name)


def _sick_train_trial(folder: Path) -> StsTask:
    """SICK train and trial as the two subsets of one task, so that "all" pools their 5,000 pairs."""
    paths = [folder / name for name in ("SICK_train.txt", "SICK_trial.txt")]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise MissingDataError(
            f"Data for evaluation task 'sick-train-trial' not found: {', '.join(missing)}; pass --data-root with "
            "the folder that contains sts/SICK/SICK_train.txt and sts/SICK/SICK_trial.txt."
        )
    return StsTask("sick-train-trial", [load_sick(path).subsets[0] for path in paths])


STS_TASKS: dict[str, StsTaskSpec] = {
    "stsb-dev": StsTaskSpec(
        "sts/stsbenchmark/sts-dev.csv", load_stsb, HubSource("sentence-transformers/stsb", "validation", STSB_HUB_SCALE)
    ),
    "stsb-train": StsTaskSpec(
        "sts/stsbenchmark/sts-train.csv", load_stsb, HubSource("sentence-transformers/stsb", "train", STSB_HUB_SCALE)
    ),
    "stsb-test": StsTaskSpec(
        "sts/stsbenchmark/sts-test.csv", load_stsb, HubSource("sentence-transformers/stsb", "test", STSB_HUB_SCALE)
    ),
    **{
        f"sts{year}": StsTaskSpec(
            f"sts/STS{year}-en-test", _senteval(f"sts{year}"), HubSource(f"mteb/sts{year}-sts", "test")
        )
        for year in range(12, 17)
    },
    "sick-trial": StsTaskSpec("sts/SICK/SICK_trial.txt", load_sick),
    "sick-train": StsTaskSpec("sts/SICK/SICK_train.txt", load_sick),
    "sick-train-trial": StsTaskSpec("sts/SICK", _sick_train_trial),
    # NOTE: mteb/sickr-sts is assumed to hold the SICK test pairs; if it holds all of SICK, its scores
    # differ from those of the local test file.
    "sick-test": StsTaskSpec("sts/SICK/SICK_test_annotated.txt", load_sick, HubSource("mteb/sickr-sts", "test")),
}
"""STS task name -> spec. The first entry is the task that `isotune train` scores during training."""


def _binary(name: str, positive: str, negative: str) -> Callable[[Path], ClassificationData]:
    return lambda folder: load_binary(name, folder / positive, folder / negative)


TRANSFER_TASKS: dict[str, tuple[str, Callable[[Path], ClassificationData]]] = {
    "mr": ("transfer/MR", _binary("mr", "rt-polarity.pos", "rt-polarity.neg")),
    "cr": ("transfer/CR", _binary("cr", "custrev.pos", "custrev.neg")),
    "subj": ("transfer/SUBJ", _binary("subj", "subj.subjective", "subj.objective")),
    "mpqa": ("transfer/MPQA", _binary("mpqa", "mpqa.pos", "mpqa.neg")),
    "sst2": ("transfer/SST/binary", load_sst2),
    "trec": ("transfer/TREC", load_trec),
    "mrpc": ("transfer/MRPC", load_mrpc),
}
"""Transfer task name -> (folder under the data root, loader of that folder)."""

GEOMETRY_TASK = "geometry"
KNOWN_TASKS = [*STS_TASKS, *TRANSFER_TASKS, GEOMETRY_TASK]
TASK_GROUPS = {"sts": list(STS_TASKS), "transfer": list(TRANSFER_TASKS)}
STS_SOURCES = ("local", "hub")


def resolve_tasks(tasks: Sequence[str] | str) -> list[str]:
    """Return the task names of `tasks` (a list, or one comma-separated string) without duplicates.

    The group names `sts` and `transfer` expand to all their tasks. Raises ConfigError for an unknown
    name or an empty selection, listing the known tasks and groups.
    """
    names = tasks.split(",") if isinstance(tasks, str) else list(tasks)
    expanded = []
    for name in (name.strip() for name in names):
        expanded += TASK_GROUPS.get(name, [name] if name else [])
    expanded = list(dict.fromkeys(expanded))
    unknown = [name for name in expanded if name not in KNOWN_TASKS]
    if unknown or not expanded:
        problem = f"Unknown evaluation task(s) {unknown}" if unknown else "No evaluation task given"
        raise ConfigError(f"{problem}; known tasks: {', '.join(KNOWN_TASKS)}; groups: {', '.join(TASK_GROUPS)}.")
    return expanded


def load_sts_task(name: str, data_root: str | Path, source: str = "local") -> StsTask:
    """Load the STS task `name` from its files under `data_root`, or from its Hub copy with `source="hub"`.

    The task is renamed `name`. Raises MissingDataError when the files or the Hub copy do not exist.
    """
    if source not in STS_SOURCES:
        raise ConfigError(f"Unknown STS source {source!r}; expected one of {', '.join(STS_SOURCES)}.")
    spec = STS_TASKS[name]
    if source == "hub":
        if spec.hub is None:
            raise MissingDataError(f"Task {name!r} has no Hub copy; evaluate it from local files (--sts-source local).")
        return load_hub_task(name, spec.hub)
    path = Path(data_root) / spec.path
    if not path.exists():
        raise MissingDataError(
            f"Data for evaluation task {name!r} not found at {path}; pass --data-root with the folder that "
            f"contains {spec.path}."
        )
    return dataclasses.replace(spec.load(path), name=name)


def load_transfer_task(name: str, data_root: str | Path) -> ClassificationData:
    """Load the transfer task `name` from its folder under `data_root`; raise MissingDataError if absent."""
    relative_path, load = TRANSFER_TASKS[name]
    folder = Path(data_root) / relative_path
    if not folder.is_dir():
        raise MissingDataError(
            f"Data for evaluation task {name!r} not found at {folder}; pass --data-root with the folder that "
            f"contains {relative_path}."
        )
    return load(folder)


def corpus_texts(corpus: str, data_root: str | Path, sts_source: str = "local") -> list[str]:
    """Return the distinct sentences of `corpus`: a task name (its sentences) or a text file (one per line).

    Used as the fit corpus of post-processing. Blank lines of a text file are dropped. Raises ConfigError
    when `corpus` is neither a known task nor an existing file.
    """
    from isotune.evaluation.textfile import read_lines

    if corpus in STS_TASKS:
        task = load_sts_task(corpus, data_root, sts_source)
        texts = [text for subset in task.subsets for text in (*subset.sentences1, *subset.sentences2)]
    elif corpus in TRANSFER_TASKS:
        texts = load_transfer_task(corpus, data_root).texts()
    elif Path(corpus).is_file():
        texts = [line.strip() for line in read_lines(Path(corpus)) if line.strip()]
    else:
        raise ConfigError(
            f"Fit corpus {corpus!r} is neither a task ({', '.join([*STS_TASKS, *TRANSFER_TASKS])}) nor an existing "
            "text file with one sentence per line."
        )
    return list(dict.fromkeys(texts))
