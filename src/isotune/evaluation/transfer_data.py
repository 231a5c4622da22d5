"""Loaders for the SentEval transfer tasks: MR, CR, SUBJ, MPQA, SST-2, TREC and MRPC.

Every file is read with `read_lines`, which decodes each line as UTF-8 and falls back to Latin-1 for a
line that is not valid UTF-8 (with a warning that counts such lines), and drops a UTF-8 byte-order mark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isotune.errors import DataError
from isotune.evaluation.missing import require_file
from isotune.evaluation.textfile import read_lines

logger = logging.getLogger(__name__)

TREC_CLASSES = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")


@dataclass
class Split:
    """Texts (one per example, or a pair per example for MRPC) and their integer labels."""

    texts: list[str] | list[tuple[str, str]]
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.texts) != len(self.labels):
            raise ValueError(f"Split needs one label per example, got {len(self.texts)} and {len(self.labels)}.")

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ClassificationData:
    """A transfer task: either one `all` split (cross-validation) or train, optional dev, and test."""

    name: str
    splits: dict[str, Split]
    pairs: bool = False
    skipped_lines: dict[str, int] = field(default_factory=dict)

    def texts(self) -> list[str]:
        """Every sentence of every split, pairs flattened."""
        if self.pairs:
            return [text for split in self.splits.values() for pair in split.texts for text in pair]
        return [text for split in self.splits.values() for text in split.texts]


def _nonblank(path: Path) -> tuple[list[str], int]:
    lines = read_lines(path)
    kept = [line.strip() for line in lines if line.strip()]
    return kept, len(lines) - len(kept)


def load_binary(name: str, positive: Path, negative: Path) -> ClassificationData:
    """Load a task stored as one file of positive and one of negative examples, one per line (MR, CR, SUBJ, MPQA).

    Label 1 is the positive file. Blank lines are dropped and counted in `skipped_lines`.
    """
    texts: list[str] = []
    labels: list[int] = []
    skipped = {}
    for path, label in ((positive, 1), (negative, 0)):
        lines, blank = _nonblank(require_file(path, f"{name} file"))
        texts += lines
        labels += [label] * len(lines)
        skipped[path.name] = blank
    if not texts:
        raise DataError(f"{positive} and {negative} contain no example.")
    return ClassificationData(name, {"all": Split(texts, np.array(labels))}, skipped_lines=skipped)


def _sst_split(path: Path) -> tuple[Split, int]:
    texts, labels = [], []
    blank = 0
    for line_number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            blank += 1
            continue
        text, _, label = line.rpartition("\t")
        if label.strip() not in ("0", "1") or not text.strip():
            raise DataError(f"{path}, line {line_number}: expected 'text<TAB>0' or 'text<TAB>1', got {line!r}.")
        texts.append(text.strip())
        labels.append(int(label))
    return Split(texts, np.array(labels)), blank


def load_sst2(folder: Path) -> ClassificationData:
    """Load SST-2 from `sentiment-{train,dev,test}` in `folder`: text, tab, label (0 or 1) per line."""
    splits, skipped = {}, {}
    for split in ("train", "dev", "test"):
        path = folder / f"sentiment-{split}"
        require_file(path, f"SST-2 split {split!r}")
        splits[split], skipped[path.name] = _sst_split(path)
    return ClassificationData("sst2", splits, skipped_lines=skipped)


def _trec_split(path: Path) -> tuple[Split, int]:
    texts, labels = [], []
    blank = 0
    for line_number, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            blank += 1
            continue
        label, _, question = line.partition(" ")
        coarse = label.split(":")[0]
        if coarse not in TREC_CLASSES or not question.strip():
            raise DataError(
                f"{path}, line {line_number}: expected 'COARSE:fine question' with COARSE one of "
                f"{', '.join(TREC_CLASSES)}, got {line!r}."
            )
        texts.append(question.strip())
        labels.append(TREC_CLASSES.index(coarse))
    return Split(texts, np.array(labels)), blank


def load_trec(folder: Path) -> ClassificationData:
    """Load TREC question classification (6 coarse classes) from `train_5500.label` and `TREC_10.label`."""
    splits, skipped = {}, {}
    for split, file_name in (("train", "train_5500.label"), ("test", "TREC_10.label")):
        path = folder / file_name
        require_file(path, f"TREC split {split!r}")
        splits[split], skipped[file_name] = _trec_split(path)
    return ClassificationData("trec", splits, skipped_lines=skipped)


def _mrpc_split(path: Path) -> tuple[Split, int]:
    lines = read_lines(path)
    if not lines or not lines[0].startswith("Quality"):
        raise DataError(f"{path}, line 1: expected the MRPC header 'Quality<TAB>#1 ID<TAB>...'.")
    pairs, labels = [], []
    blank = 0
    for line_number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            blank += 1
            continue
        fields = line.split("\t")
        if len(fields) != 5 or fields[0] not in ("0", "1"):
            raise DataError(
                f"{path}, line {line_number}: expected 5 tab-separated fields (quality 0/1, id1, id2, "
                f"string1, string2), got {len(fields)}."
            )
        pairs.append((fields[3].strip(), fields[4].strip()))
        labels.append(int(fields[0]))
    return Split(pairs, np.array(labels)), blank


def load_mrpc(folder: Path) -> ClassificationData:
    """Load MRPC from `msr_paraphrase_{train,test}.txt`: a header, then quality, id1, id2, string1, string2."""
    splits, skipped = {}, {}
    for split in ("train", "test"):
        path = folder / f"msr_paraphrase_{split}.txt"
        require_file(path, f"MRPC split {split!r}")
        splits[split], skipped[path.name] = _mrpc_split(path)
    return ClassificationData("mrpc", splits, pairs=True, skipped_lines=skipped)
