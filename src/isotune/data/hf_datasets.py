"""Positive pairs from a Hugging Face dataset: a local folder or data file, or a dataset on the Hub."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from os import PathLike
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetNotFoundError, DatasetsError

from isotune.data.pair_set import PairSet
from isotune.data.stats import PairStats
from isotune.data.text import check_word_bounds, describe_word_bounds, keep_pairs, keep_text
from isotune.errors import ConfigError, DataError
from isotune.hub import hub_unreachable_reason

# Builder of `datasets.load_dataset` for each local data file suffix, with its extra arguments.
DATA_FILE_BUILDERS: dict[str, tuple[str, dict[str, str]]] = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".parquet": ("parquet", {}),
    ".arrow": ("arrow", {}),
    ".txt": ("text", {}),
}
# Files that `Dataset.save_to_disk` and `DatasetDict.save_to_disk` write; their folders need `load_from_disk`.
_SAVED_DATASET_MARKERS = ("state.json", "dataset_dict.json")

AnyDataset = datasets.Dataset | datasets.IterableDataset


def pairs_from_hf_dataset(
    name_or_path: str | PathLike[str],
    *,
    split: str = "train",
    config_name: str | None = None,
    text_column: str | None = None,
    pair_columns: Sequence[str] | None = None,
    streaming: bool = False,
    max_rows: int | None = None,
    min_words: int = 1,
    max_words: int | None = None,
) -> PairSet:
    """Build positive pairs from one split of a Hugging Face dataset.

    With `text_column`, row i is paired with row i + 1 (consecutive sentences of a corpus). A row whose text
    is empty or outside the word bounds breaks the chain, so the rows around it are not paired with each
    other. With `pair_columns`, each row gives one (anchor, positive) pair and is dropped when either text
    is empty or outside the word bounds.

    `name_or_path` is tried in this order. A folder written by `save_to_disk` is read with
    `datasets.load_from_disk`, and any other folder with `datasets.load_dataset`. A local file is loaded with
    the builder for its suffix in `DATA_FILE_BUILDERS`. Anything else is taken as a Hub dataset id, and the
    Hub is checked for reachability first, so an offline user gets an error within seconds.

    Args:
        name_or_path: local folder or file, or a Hub dataset id such as "owner/name".
        split: the split to read. A single local file is loaded as this split.
        config_name: the dataset configuration (subset), for Hub datasets and folders of data files.
        text_column: column of consecutive texts to pair row by row.
        pair_columns: two columns, the anchor and the positive text of each row.
        streaming: iterate the dataset lazily as a `datasets.IterableDataset` instead of loading it.
        max_rows: read at most this many rows, or None for all.
        min_words: minimum words in a kept text.
        max_words: maximum words in a kept text, or None for no upper bound.

    Raises:
        ConfigError: not exactly one of `text_column` and `pair_columns`, or invalid `max_rows`, word bounds
            or `config_name` for a saved dataset or a single file.
        DataError: the dataset cannot be found or loaded, the Hub is unreachable, a column or split is
            missing, a text is not a string, or no pair is left.
    """
    columns = _check_column_options(text_column, pair_columns)
    check_word_bounds(min_words, max_words)
    if max_rows is not None and max_rows < 1:
        raise ConfigError(f"Invalid max_rows {max_rows}: use 1 or more, or None to read every row.")
    dataset = load_hf_dataset(name_or_path, split=split, config_name=config_name, streaming=streaming)
    _require_columns(dataset, columns, name_or_path)
    rows: Iterable[dict[str, Any]] = dataset.select_columns(list(columns))
    if max_rows is not None:
        rows = islice(rows, max_rows)
    stats = PairStats()
    if text_column is not None:
        pairs = _consecutive_pairs(rows, text_column, min_words, max_words, stats)
        layout = f"consecutive rows of column {text_column}"
    else:
        pairs = _row_pairs(rows, columns, min_words, max_words, stats)
        layout = f"columns {columns[0]}, {columns[1]}"
    stats.pairs = len(pairs)
    if not pairs:
        raise DataError(
            f"No pairs found in dataset {name_or_path} (split {split}, {layout}): {stats.lines} row(s) read, "
            f"{stats.empty_fields} empty, {stats.too_short + stats.too_long} outside "
            f"{describe_word_bounds(min_words, max_words)}. Check the columns, max_rows and word bounds."
        )
    return PairSet(pairs=pairs, stats=stats, source=f"Hugging Face dataset: {name_or_path} (split {split}, {layout})")


def load_hf_dataset(
    name_or_path: str | PathLike[str], *, split: str, config_name: str | None, streaming: bool
) -> AnyDataset:
    """Load one split of a local or Hub dataset (see `pairs_from_hf_dataset` for how the path is read).

    Raises:
        ConfigError: `config_name` given for a saved dataset or a single file.
        DataError: the dataset or split cannot be found or loaded, or the Hub is unreachable.
    """
    path = Path(name_or_path)
    if path.is_dir() and any((path / marker).is_file() for marker in _SAVED_DATASET_MARKERS):
        _reject_config_name(config_name, path)
        return _load_saved_dataset(path, split, streaming)
    if path.is_dir():
        return _call_load_dataset(name_or_path, str(path), name=config_name, split=split, streaming=streaming)
    if path.is_file():
        _reject_config_name(config_name, path)
        builder, options = _data_file_builder(path)
        data_files = {split: str(path)}
        return _call_load_dataset(
            name_or_path, builder, data_files=data_files, split=split, streaming=streaming, **options
        )
    if _looks_like_local_path(str(name_or_path)):
        raise DataError(f"Dataset path not found: {name_or_path}. Check the path, or pass a Hub dataset id.")
    reason = hub_unreachable_reason()
    if reason is not None:
        raise DataError(
            f"Cannot load dataset {name_or_path!r}: it is not a local path, and the Hugging Face Hub "
            f"cannot be used ({reason}). Connect to the network (and unset HF_HUB_OFFLINE), or pass a "
            "local folder written by save_to_disk or a .jsonl, .csv or .parquet file."
        )
    return _call_load_dataset(name_or_path, str(name_or_path), name=config_name, split=split, streaming=streaming)


def _check_column_options(text_column: str | None, pair_columns: Sequence[str] | None) -> tuple[str, ...]:
    if (text_column is None) == (pair_columns is None):
        raise ConfigError(
            "Set exactly one of text_column (pair each row's text with the next row's) and pair_columns "
            f"(two columns that contain each row's pair); got text_column={text_column!r}, "
            f"pair_columns={pair_columns!r}."
        )
    if text_column is not None:
        return (text_column,)
    if isinstance(pair_columns, str) or len(pair_columns) != 2:
        raise ConfigError(f"Invalid pair_columns {pair_columns!r}: give two column names, the anchor and the positive.")
    return (pair_columns[0], pair_columns[1])


def _reject_config_name(config_name: str | None, path: Path) -> None:
    if config_name is not None:
        raise ConfigError(
            f"config_name {config_name!r} does not apply to {path}: a saved dataset or a single data file "
            "has no configurations. Remove config_name."
        )


def _load_saved_dataset(path: Path, split: str, streaming: bool) -> AnyDataset:
    """Load a `save_to_disk` folder; for a DatasetDict, select `split`."""
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(
                f"Split {split!r} not found in the saved dataset {path}; its splits are {', '.join(loaded)}. "
                "Set split to one of these."
            )
        loaded = loaded[split]
    return loaded.to_iterable_dataset() if streaming else loaded


def _data_file_builder(path: Path) -> tuple[str, dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix not in DATA_FILE_BUILDERS:
        raise DataError(
            f"Unsupported data file {path}: the suffix {suffix or '(none)'!r} is not one of "
            f"{', '.join(DATA_FILE_BUILDERS)}. Convert the file, or save the dataset with save_to_disk."
        )
    return DATA_FILE_BUILDERS[suffix]


def _looks_like_local_path(name: str) -> bool:
    """Return whether a missing `name` was meant as a path: it starts like one or ends in a data suffix."""
    return name.startswith((".", "/", "~")) or Path(name).suffix.lower() in DATA_FILE_BUILDERS


def _call_load_dataset(name_or_path: str | PathLike[str], path: str, **options: Any) -> AnyDataset:
    """Call `datasets.load_dataset`, turning its not-found and loading errors into DataError."""
    try:
        return datasets.load_dataset(path, **options)
    except DatasetNotFoundError as error:
        raise DataError(f"Dataset {name_or_path} not found: {error}. Check the dataset id or path.") from None
    except (DatasetsError, FileNotFoundError, ValueError) as error:
        cause = error.__cause__ or error
        raise DataError(f"Cannot load dataset {name_or_path} (split {options.get('split')}): {cause}.") from None


def _require_columns(dataset: AnyDataset, columns: Sequence[str], name_or_path: str | PathLike[str]) -> None:
    available = dataset.column_names
    if available is None:
        # NOTE: a streamed dataset with unknown features only reveals its columns in its first row.
        available = list(next(iter(dataset), {}))
    for column in columns:
        if column not in available:
            raise DataError(
                f"Column {column!r} not found in dataset {name_or_path}; its columns are "
                f"{', '.join(available) or '(none)'}. Set text_column or pair_columns to existing columns."
            )


def _consecutive_pairs(
    rows: Iterable[dict[str, Any]], column: str, min_words: int, max_words: int | None, stats: PairStats
) -> list[tuple[str, str]]:
    """Pair each kept text with the next row's text when that is kept too."""
    pairs = []
    previous: str | None = None
    for text in _texts(rows, column, stats):
        if not text:
            stats.empty_fields += 1
            previous = None
        elif not keep_text(text, min_words, max_words, stats):
            previous = None
        else:
            if previous is not None:
                pairs.append((previous, text))
            previous = text
    return pairs


def _row_pairs(
    rows: Iterable[dict[str, Any]],
    columns: Sequence[str],
    min_words: int,
    max_words: int | None,
    stats: PairStats,
) -> list[tuple[str, str]]:
    """Take each row's two texts as a pair, dropping rows with an empty or out-of-bounds text."""
    texts = ((_row_text(row, columns[0]), _row_text(row, columns[1])) for row in _counted(rows, stats))
    return keep_pairs(texts, min_words, max_words, stats)


def _texts(rows: Iterable[dict[str, Any]], column: str, stats: PairStats) -> Iterator[str]:
    for row in _counted(rows, stats):
        yield _row_text(row, column)


def _counted(rows: Iterable[dict[str, Any]], stats: PairStats) -> Iterator[dict[str, Any]]:
    """Yield the rows, counting each in `stats.lines`."""
    for row in rows:
        stats.lines += 1
        yield row


def _row_text(row: dict[str, Any], column: str) -> str:
    """Return the stripped text of `column`, with None read as empty."""
    value = row[column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DataError(
            f"Column {column!r} contains {type(value).__name__} values, not strings. "
            "Choose a text column for text_column or pair_columns."
        )
    return value.strip()
