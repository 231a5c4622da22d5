"""Positive pairs read from TSV, CSV or JSON Lines files with two text columns."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from isotune.data.pair_set import PairSet
from isotune.data.stats import PairStats
from isotune.data.text import (
    check_decoding,
    check_word_bounds,
    describe_word_bounds,
    keep_pairs,
    read_text_lines,
)
from isotune.errors import ConfigError, DataError

PAIR_FILE_SUFFIXES = (".tsv", ".csv", ".jsonl")
# Column names tried in order when `columns` is None, for CSV headers and JSON Lines keys.
CSV_DEFAULT_COLUMNS = (("sentence1", "sentence2"), ("anchor", "positive"))
JSONL_DEFAULT_COLUMNS = (("sentence1", "sentence2"), ("anchor", "positive"), ("text1", "text2"))

logger = logging.getLogger(__name__)


def pairs_from_file(
    path: str | PathLike[str],
    *,
    columns: Sequence[str] | None = None,
    encoding: str = "utf-8",
    errors: str = "strict",
    min_words: int = 1,
    max_words: int | None = None,
) -> PairSet:
    """Read one positive pair per row from a .tsv, .csv or .jsonl file.

    The format follows the suffix:

    - .tsv: tab-separated, no quoting. Without `columns` the first two fields are the pair, and a first
      row that reads sentence1/sentence2, anchor/positive or text1/text2 is taken as a header. With
      `columns`, the first non-empty row is a header that must contain them.
    - .csv: comma-separated with a header row. Without `columns`, the pair is sentence1/sentence2 if the
      header has them, else anchor/positive, else the first two columns.
    - .jsonl: one JSON object per line. Without `columns`, the first object decides between
      sentence1/sentence2, anchor/positive and text1/text2.

    Texts are stripped of surrounding whitespace. Rows where a text is empty (or JSON null) are skipped and
    counted in `stats.empty_fields`. The word-count filter applies to each text, and a row is dropped when
    either text is out of bounds. Blank lines are skipped and counted.

    Args:
        path: the pair file.
        columns: names of the anchor and positive columns, or None for the defaults above.
        encoding: Python codec name of the file.
        errors: "strict" to raise on bytes invalid in `encoding`, or "replace" to replace them with U+FFFD.
        min_words: minimum words in each text of a kept pair.
        max_words: maximum words in each text of a kept pair, or None for no upper bound.

    Raises:
        DataError: missing file, unsupported suffix, missing column, malformed row or JSON line, or no pair.
        ConfigError: `columns` not two names, or invalid `encoding`, `errors` or word bounds.
    """
    check_decoding(encoding, errors)
    check_word_bounds(min_words, max_words)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in PAIR_FILE_SUFFIXES:
        raise DataError(
            f"Unsupported pair file {path}: the suffix {suffix or '(none)'!r} is not one of "
            f"{', '.join(PAIR_FILE_SUFFIXES)}. Rename the file or convert it to one of these formats."
        )
    if not path.is_file():
        raise DataError(f"Pair file not found: {path}.")
    columns = _check_columns(columns)
    stats = PairStats()
    lines = read_text_lines(path, encoding=encoding, errors=errors, stats=stats)
    if suffix == ".jsonl":
        used_columns, rows = _read_jsonl(lines, path, columns, stats)
    else:
        used_columns, rows = _read_delimited(lines, path, columns, suffix, stats)
    pairs = keep_pairs(rows, min_words, max_words, stats)
    stats.pairs = len(pairs)
    if not pairs:
        raise DataError(
            f"No pairs found in {path} ({stats.lines} line(s), {stats.empty_fields} row(s) with an empty "
            f"text, {stats.too_short + stats.too_long} text(s) outside "
            f"{describe_word_bounds(min_words, max_words)}). "
            "Check the file has rows with two non-empty texts, or change the word bounds."
        )
    source = f"pair file: {path} ({suffix[1:]}, columns {used_columns[0]}, {used_columns[1]})"
    return PairSet(pairs=pairs, stats=stats, source=source)


# One row's anchor and positive text before stripping; None for a JSON null.
RawPair = tuple["str | None", "str | None"]


def _check_columns(columns: Sequence[str] | None) -> tuple[str, str] | None:
    if columns is None:
        return None
    if isinstance(columns, str) or len(columns) != 2 or not all(isinstance(name, str) for name in columns):
        raise ConfigError(f"Invalid columns {columns!r}: give two column names, the anchor and the positive.")
    return (columns[0], columns[1])


def _read_delimited(
    lines: list[str], path: Path, columns: tuple[str, str] | None, suffix: str, stats: PairStats
) -> tuple[tuple[str, str], list[RawPair]]:
    """Parse a TSV or CSV file into the pair columns used and one raw pair per row, counting blank lines."""
    if suffix == ".tsv":
        reader = csv.reader((line + "\n" for line in lines), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(line + "\n" for line in lines)
    has_header = suffix == ".csv" or columns is not None
    used_columns, indices = (None, None) if has_header else (("field 1", "field 2"), (0, 1))
    rows: list[RawPair] = []
    first_row = True
    try:
        for fields in reader:
            if not any(field.strip() for field in fields):
                stats.empty_lines += 1
                continue
            if first_row and not has_header and _is_known_header(fields):
                # A header-less TSV whose first row names the usual pair columns: read it as a header,
                # not as a training pair.
                used_columns = (fields[0].strip(), fields[1].strip())
                logger.info("%s: first row %s read as a header.", path, "/".join(used_columns))
                first_row = False
                continue
            first_row = False
            if indices is None:
                used_columns, indices = _choose_header_columns(fields, columns, path)
            elif len(fields) <= max(indices):
                raise DataError(
                    f"{path}: line {reader.line_num} has {len(fields)} field(s), but the pair is in fields "
                    f"{indices[0] + 1} and {indices[1] + 1}. Fix or remove that line."
                )
            else:
                rows.append((fields[indices[0]], fields[indices[1]]))
    except csv.Error as error:
        raise DataError(f"{path}: line {reader.line_num} is not valid {suffix[1:].upper()}: {error}.") from None
    if used_columns is None:
        raise DataError(f"{path} has no header row: the file is empty or blank.")
    return used_columns, rows


def _is_known_header(fields: list[str]) -> bool:
    names = tuple(field.strip().lower() for field in fields[:2])
    return names in {tuple(candidate) for candidate in JSONL_DEFAULT_COLUMNS}


def _choose_header_columns(
    header: list[str], columns: tuple[str, str] | None, path: Path
) -> tuple[tuple[str, str], tuple[int, int]]:
    """Return the requested or default pair columns and their indices in `header`."""
    header = [name.strip() for name in header]
    if columns is None:
        columns = _default_header_columns(header, path)
    _require_columns(columns, header, path, "header")
    return columns, (header.index(columns[0]), header.index(columns[1]))


def _default_header_columns(header: list[str], path: Path) -> tuple[str, str]:
    for candidate in CSV_DEFAULT_COLUMNS:
        if all(name in header for name in candidate):
            return candidate
    if len(header) < 2:
        raise DataError(f"{path} has {len(header)} column in its header ({header[0]}); a pair file needs two.")
    return (header[0], header[1])


def _read_jsonl(
    lines: list[str], path: Path, columns: tuple[str, str] | None, stats: PairStats
) -> tuple[tuple[str, str], list[RawPair]]:
    """Parse a JSON Lines file into the pair keys used and one raw pair per object, counting blank lines."""
    rows: list[RawPair] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            stats.empty_lines += 1
            continue
        record = _parse_json_object(line, path, number)
        if columns is None:
            columns = _choose_jsonl_columns(record, path, number)
        _require_columns(columns, list(record), path, f"line {number}")
        rows.append((_json_text(record, columns[0], path, number), _json_text(record, columns[1], path, number)))
    if columns is None:
        raise DataError(f"{path} contains no JSON object: the file is empty or blank.")
    return columns, rows


def _parse_json_object(line: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: line {number} is not valid JSON ({error.msg}, column {error.colno}). "
            "Each line must contain one JSON object."
        ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"{path}: line {number} is a JSON {type(record).__name__}, not an object. "
            "Each line must contain one JSON object."
        )
    return record


def _choose_jsonl_columns(record: dict, path: Path, number: int) -> tuple[str, str]:
    for candidate in JSONL_DEFAULT_COLUMNS:
        if all(name in record for name in candidate):
            return candidate
    defaults = " or ".join("/".join(candidate) for candidate in JSONL_DEFAULT_COLUMNS)
    raise DataError(
        f"{path}: line {number} has none of the default key pairs {defaults}; its keys are "
        f"{', '.join(record) or '(none)'}. Set data.columns to the two keys that contain the pair."
    )


def _json_text(record: dict, key: str, path: Path, number: int) -> str | None:
    value = record[key]
    if value is None or isinstance(value, str):
        return value
    raise DataError(
        f"{path}: line {number}: key {key!r} is a JSON {type(value).__name__}, not a string. "
        "Pair texts must be strings."
    )


def _require_columns(columns: tuple[str, str], available: list[str], path: Path, where: str) -> None:
    for name in columns:
        if name not in available:
            raise DataError(
                f"Column {name!r} not found in {path} ({where}); the columns are "
                f"{', '.join(available) or '(none)'}. Set data.columns to two of these."
            )
