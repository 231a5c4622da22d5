"""Decoding of text files line by line, sentence splitting and the word-count filter shared by all loaders."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

import syntok.segmenter

from isotune.data.stats import PairStats
from isotune.errors import ConfigError, DataError

DECODE_ERRORS = ("strict", "replace")
_UTF8_BOM = codecs.BOM_UTF8


def check_decoding(encoding: str, errors: str) -> str:
    """Validate an encoding name and error mode, and return the codec's canonical name.

    Raises:
        ConfigError: unknown encoding, an encoding in which a newline is not the byte 0x0A (such as
            UTF-16, whose files cannot be split into lines before decoding), or `errors` not in
            `DECODE_ERRORS`.
    """
    if errors not in DECODE_ERRORS:
        raise ConfigError(f"Invalid decode_errors {errors!r}: use one of {', '.join(DECODE_ERRORS)}.")
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(
            f"Unknown encoding {encoding!r}: use a Python codec name such as utf-8, latin-1 or cp1252."
        ) from None
    try:
        newline_is_0x0a = b"a\r\n".decode(codec.name) == "a\r\n"
    except UnicodeDecodeError:
        newline_is_0x0a = False
    if not newline_is_0x0a:
        raise ConfigError(
            f"Encoding {encoding!r} is not supported because it does not encode a newline as the byte 0x0A. "
            "Convert the file to UTF-8 first (for example with iconv)."
        )
    return codec.name


def read_text_lines(path: str | PathLike[str], *, encoding: str, errors: str, stats: PairStats) -> list[str]:
    """Decode a text file into its lines, without line endings.

    Lines end at LF, CRLF or CR. A UTF-8 byte-order mark at the start is removed. Each line is decoded on its
    own, so an invalid byte is reported with its line and byte offset. Adds 1 to `stats.files`, the line count
    to `stats.lines` and, with errors="replace", the number of lines that had invalid bytes to
    `stats.undecodable_lines`. Empty lines are returned, not counted: they may mark paragraph breaks.

    Args:
        path: the file to read.
        encoding: Python codec name; it must encode a newline as 0x0A (utf-8, latin-1, cp1252, ...).
        errors: "strict" to raise on invalid bytes, or "replace" to replace them with U+FFFD.
        stats: counters to update.

    Raises:
        ConfigError: invalid `encoding` or `errors` (see `check_decoding`).
        DataError: the file is missing or unreadable, or it contains invalid bytes and errors="strict".
    """
    codec_name = check_decoding(encoding, errors)
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"Cannot read text file {path}: {error.strerror or error}.") from None
    offset = 0
    if codec_name.startswith("utf-8") and data.startswith(_UTF8_BOM):
        offset = len(_UTF8_BOM)
    lines = []
    for number, raw_line in enumerate(data[offset:].splitlines(keepends=True), start=1):
        lines.append(_decode_line(raw_line, path, number, offset, encoding, errors, stats))
        offset += len(raw_line)
    stats.files += 1
    stats.lines += len(lines)
    return lines


def _decode_line(
    raw_line: bytes, path: Path, number: int, offset: int, encoding: str, errors: str, stats: PairStats
) -> str:
    """Decode one line (`offset` is its first byte's position in the file), stripping its line ending."""
    raw_line = raw_line.rstrip(b"\r\n")
    try:
        return raw_line.decode(encoding)
    except UnicodeDecodeError as error:
        if errors == "replace":
            stats.undecodable_lines += 1
            return raw_line.decode(encoding, errors="replace")
        bad_bytes = raw_line[error.start : error.end].hex(" ")
        raise DataError(
            f"{path}: line {number} is not valid {encoding}: byte(s) {bad_bytes} at byte offset "
            f"{offset + error.start} ({error.reason}). Set the file's encoding (for example "
            "--set data.encoding=latin-1), or --set data.decode_errors=replace to replace invalid bytes with U+FFFD."
        ) from None


def split_sentences(paragraph: str) -> list[str]:
    """Split one paragraph into sentences with syntok, each with its whitespace collapsed to single spaces."""
    sentences = []
    for syntok_paragraph in syntok.segmenter.process(paragraph):
        for tokens in syntok_paragraph:
            text = " ".join("".join(str(token) for token in tokens).split())
            if text:
                sentences.append(text)
    return sentences


def check_word_bounds(min_words: int, max_words: int | None) -> None:
    """Raise ConfigError unless 0 <= min_words <= max_words (max_words None means no upper bound)."""
    if min_words < 0:
        raise ConfigError(f"Invalid min_words {min_words}: use 0 or more.")
    if max_words is not None and max_words < max(min_words, 1):
        raise ConfigError(
            f"Invalid max_words {max_words} with min_words {min_words}: "
            "max_words must be at least 1 and at least min_words, or None for no upper bound."
        )


def keep_text(text: str, min_words: int, max_words: int | None, stats: PairStats) -> bool:
    """Return whether `text` has between min_words and max_words whitespace-separated words.

    Counts the text in `stats.sentences` when kept, else in `stats.too_short` or `stats.too_long`.
    """
    word_count = len(text.split())
    if word_count < min_words:
        stats.too_short += 1
        return False
    if max_words is not None and word_count > max_words:
        stats.too_long += 1
        return False
    stats.sentences += 1
    return True


def describe_word_bounds(min_words: int, max_words: int | None) -> str:
    """Format the word-count settings for messages, e.g. "min_words=3, max_words=64"."""
    return f"min_words={min_words}, max_words={max_words}"


def keep_pairs(
    rows: Iterable[tuple[str | None, str | None]], min_words: int, max_words: int | None, stats: PairStats
) -> list[tuple[str, str]]:
    """Drop rows with an empty text or a text outside the word bounds, counting each reason."""
    pairs = []
    for anchor, positive in rows:
        anchor = (anchor or "").strip()
        positive = (positive or "").strip()
        if not anchor or not positive:
            stats.empty_fields += 1
            continue
        anchor_kept = keep_text(anchor, min_words, max_words, stats)
        positive_kept = keep_text(positive, min_words, max_words, stats)
        if anchor_kept and positive_kept:
            pairs.append((anchor, positive))
    return pairs
