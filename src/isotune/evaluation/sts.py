"""Semantic textual similarity (STS): data loaders and the correlation of cosine similarity with gold scores.

A model is scored by the Spearman (and Pearson) correlation, multiplied by 100, between two values per
sentence pair: the cosine similarity of the two sentence embeddings and the human similarity score.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import pearsonr, spearmanr

from isotune.errors import DataError
from isotune.evaluation.embedding import EmbedFunction, embed_texts
from isotune.evaluation.textfile import read_lines

logger = logging.getLogger(__name__)


@dataclass
class StsSubset:
    """Sentence pairs with gold similarity scores, one per pair, from one source file or genre.

    `skipped` counts pairs of the source that were left out because they have no gold score.
    """

    name: str
    sentences1: list[str]
    sentences2: list[str]
    scores: np.ndarray
    skipped: int = 0

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        sizes = (len(self.sentences1), len(self.sentences2), len(self.scores))
        if len(set(sizes)) != 1:
            raise ValueError(f"STS subset {self.name!r} needs as many sentences1, sentences2 and scores, got {sizes}.")

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class StsTask:
    """An STS benchmark: named subsets, evaluated separately and pooled."""

    name: str
    subsets: list[StsSubset]


def _parse_score(text: str, path: Path, line_number: int) -> float:
    try:
        score = float(text)
    except ValueError:
        score = math.nan
    if not math.isfinite(score):
        raise DataError(f"{path}, line {line_number}: invalid gold score {text!r}; expected a number.")
    return score


def _require_fields(fields: list[str], minimum: int, path: Path, line_number: int) -> None:
    if len(fields) < minimum:
        raise DataError(
            f"{path}, line {line_number}: expected at least {minimum} tab-separated fields, got {len(fields)}."
        )


def _require_pairs(subset: StsSubset, path: Path) -> StsSubset:
    if len(subset) == 0:
        raise DataError(f"{path} contains no sentence pair with a gold score ({subset.skipped} without).")
    return subset


def load_stsb(path: str | Path) -> StsTask:
    """Load one file of the original STS Benchmark release (for example `sts-dev.csv`) as a one-subset task.

    Each line contains tab-separated genre, file, year, id, score, sentence1, sentence2 and sometimes extra
    trailing columns, which are ignored. Lines are split on tabs without CSV quoting, because sentences
    contain unbalanced quotes. A blank line, or a row whose score is empty, counts as skipped.
    """
    path = Path(path)
    sentences1, sentences2, scores = [], [], []
    skipped = 0
    for line_number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if not line.strip() or (len(fields) > 4 and not fields[4].strip()):
            skipped += 1
            continue
        _require_fields(fields, 7, path, line_number)
        scores.append(_parse_score(fields[4], path, line_number))
        sentences1.append(fields[5])
        sentences2.append(fields[6])
    subset = StsSubset(path.stem, sentences1, sentences2, np.array(scores), skipped)
    return StsTask(path.stem, [_require_pairs(subset, path)])


def _senteval_subset(input_path: Path, gold_path: Path, subset_name: str) -> StsSubset:
    input_lines, gold_lines = read_lines(input_path), read_lines(gold_path)
    if len(input_lines) != len(gold_lines):
        raise DataError(
            f"{input_path} has {len(input_lines)} lines but {gold_path} has {len(gold_lines)}; "
            "each pair needs a gold line (blank when not annotated) on the same line number."
        )
    sentences1, sentences2, scores = [], [], []
    skipped = 0
    for line_number, (pair, gold) in enumerate(zip(input_lines, gold_lines, strict=True), start=1):
        if not gold.strip():
            skipped += 1
            continue
        fields = pair.split("\t")
        _require_fields(fields, 2, input_path, line_number)
        # Fields after a tab on a gold line, if any, are ignored.
        scores.append(_parse_score(gold.split("\t")[0], gold_path, line_number))
        sentences1.append(fields[0])
        sentences2.append(fields[1])
    subset = StsSubset(subset_name, sentences1, sentences2, np.array(scores), skipped)
    return _require_pairs(subset, gold_path)


def load_senteval_sts(folder: str | Path, name: str) -> StsTask:
    """Load an STS folder in SentEval's layout (such as STS12-en-test), one subset per input file.

    `STS.input.NAME.txt` contains tab-separated sentence pairs and `STS.gs.NAME.txt` the gold score of each
    pair on the same line number. A blank gold line marks a pair without a gold score: it is left out on
    both sides and counted in `skipped`. Aggregate gold files such as `STS.gs.ALL.txt` have no input file
    and are therefore not read. Subsets are sorted by NAME.
    """
    folder = Path(folder)
    input_paths = sorted(folder.glob("STS.input.*.txt"))
    if not input_paths:
        raise DataError(f"{folder} contains no STS.input.*.txt file; expected an STS folder in SentEval layout.")
    subsets = []
    for input_path in input_paths:
        subset_name = input_path.name.removeprefix("STS.input.").removesuffix(".txt")
        gold_path = folder / f"STS.gs.{subset_name}.txt"
        if not gold_path.is_file():
            raise DataError(f"{input_path} has no gold file: {gold_path} not found.")
        subsets.append(_senteval_subset(input_path, gold_path, subset_name))
    return StsTask(name, subsets)


def load_sick(path: str | Path) -> StsTask:
    """Load a SICK file (for example `SICK_trial.txt`) as a one-subset task scored by relatedness (1-5).

    The first line is a tab-separated header that must name the columns `sentence_A`, `sentence_B` and
    `relatedness_score`. A blank line, or a row whose score is empty, counts as skipped.
    """
    path = Path(path)
    lines = read_lines(path)
    if not lines:
        raise DataError(f"{path} is empty; expected a SICK file with a header line.")
    header = lines[0].split("\t")
    required = ("sentence_A", "sentence_B", "relatedness_score")
    missing = [column for column in required if column not in header]
    if missing:
        raise DataError(f"{path}, line 1: header {header} is missing the SICK columns {missing}.")
    first, second, score = (header.index(column) for column in required)

    sentences1, sentences2, scores = [], [], []
    skipped = 0
    for line_number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if not line.strip() or (len(fields) > score and not fields[score].strip()):
            skipped += 1
            continue
        _require_fields(fields, len(header), path, line_number)
        scores.append(_parse_score(fields[score], path, line_number))
        sentences1.append(fields[first])
        sentences2.append(fields[second])
    subset = StsSubset(path.stem, sentences1, sentences2, np.array(scores), skipped)
    return StsTask(path.stem, [_require_pairs(subset, path)])


def _correlations(predicted: np.ndarray, gold: np.ndarray) -> tuple[float | None, float | None]:
    """Return (Spearman, Pearson) x 100, or (None, None) when a correlation is undefined."""
    if len(gold) < 2 or np.all(predicted == predicted[0]) or np.all(gold == gold[0]):
        return None, None
    spearman = float(spearmanr(predicted, gold).statistic) * 100
    pearson = float(pearsonr(predicted, gold).statistic) * 100
    return spearman, pearson


def _weighted_mean(values: dict[str, float | None], sizes: dict[str, int]) -> float | None:
    defined = {name: value for name, value in values.items() if value is not None}
    if not defined:
        return None
    total = sum(sizes[name] for name in defined)
    return sum(value * sizes[name] for name, value in defined.items()) / total


def _warn_zero_norm(task_name: str, texts: list[str], vectors: np.ndarray) -> None:
    """Warn about texts whose embedding has norm 0: `embed_texts` keeps them as zeros, so their cosine is 0."""
    zero = np.flatnonzero(np.linalg.norm(vectors, axis=1) == 0)
    if len(zero):
        logger.warning(
            "%s: %d sentences have an embedding of norm 0 (first: %r); their pairs get cosine 0.",
            task_name,
            len(zero),
            texts[zero[0]],
        )


def evaluate_sts(embed: EmbedFunction, task: StsTask) -> dict:
    """Score `embed` on `task`: correlation x 100 of pair cosine similarities with the gold scores.

    All sentences of the task are embedded in one call of `embed`. Returns a dict with

    - `spearman` and `pearson`: the correlation of each subset, plus `all` and `wmean`. `all` is the
      correlation over the pairs of all subsets concatenated, so it also rewards a similarity scale that is
      consistent across subsets. `wmean` is the mean of the subset values weighted by their number of pairs.
    - `pairs` and `skipped`: the number of pairs scored and left out (no gold score) per subset.
    - `undefined`: the subsets whose correlation is undefined.

    A correlation is None when it is undefined because the cosines or the gold scores of the subset are
    constant (or there are fewer than two pairs). Such a subset is left out of `wmean` with a warning.
    A sentence whose embedding has norm 0 gives cosine 0 in each of its pairs, with a warning.
    """
    names = [subset.name for subset in task.subsets]
    reserved = sorted(set(names) & {"all", "wmean"})
    if reserved or len(set(names)) != len(names):
        raise ValueError(
            f"STS task {task.name!r} needs distinct subset names other than 'all' and 'wmean', got {names}."
        )
    texts = [text for subset in task.subsets for text in (*subset.sentences1, *subset.sentences2)]
    vectors = embed_texts(embed, texts)
    _warn_zero_norm(task.name, texts, vectors)

    cosines: dict[str, np.ndarray] = {}
    start = 0
    for subset in task.subsets:
        size = len(subset)
        first = vectors[start : start + size].astype(np.float64)
        second = vectors[start + size : start + 2 * size].astype(np.float64)
        cosines[subset.name] = (first * second).sum(axis=1)
        start += 2 * size

    spearman: dict[str, float | None] = {}
    pearson: dict[str, float | None] = {}
    sizes = {subset.name: len(subset) for subset in task.subsets}
    for subset in task.subsets:
        spearman[subset.name], pearson[subset.name] = _correlations(cosines[subset.name], subset.scores)
        if spearman[subset.name] is None:
            logger.warning(
                "%s/%s: correlation undefined (constant cosines or gold scores over %d pairs); "
                "it is reported as None and left out of wmean.",
                task.name,
                subset.name,
                len(subset),
            )

    pooled_cosines = np.concatenate([cosines[subset.name] for subset in task.subsets])
    pooled_gold = np.concatenate([subset.scores for subset in task.subsets])
    pooled_spearman, pooled_pearson = _correlations(pooled_cosines, pooled_gold)
    if pooled_spearman is None:
        logger.warning("%s: pooled correlation undefined (constant cosines or gold scores).", task.name)
    spearman_wmean, pearson_wmean = _weighted_mean(spearman, sizes), _weighted_mean(pearson, sizes)
    return {
        "spearman": {**spearman, "all": pooled_spearman, "wmean": spearman_wmean},
        "pearson": {**pearson, "all": pooled_pearson, "wmean": pearson_wmean},
        "pairs": sizes,
        "skipped": {subset.name: subset.skipped for subset in task.subsets},
        "undefined": [name for name, value in spearman.items() if value is None],
    }
