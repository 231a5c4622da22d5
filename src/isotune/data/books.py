"""Pairs of consecutive sentences from plain-text books (BookCorpus style, as in Quick-Thought)."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

from isotune.data.pair_set import PairSet
from isotune.data.stats import PairStats
from isotune.data.text import (
    check_decoding,
    check_word_bounds,
    describe_word_bounds,
    keep_text,
    read_text_lines,
    split_sentences,
)
from isotune.errors import DataError

BOOK_SUFFIX = ".txt"


def pairs_from_books(
    path: str | PathLike[str],
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    min_words: int = 3,
    max_words: int | None = 64,
) -> PairSet:
    """Pair each sentence of a book with the sentence that follows it in the same book.

    Each file is decoded, empty and whitespace-only lines are skipped and counted, and the hard-wrapped lines
    of a paragraph (paragraphs end at a blank line) are joined with spaces and split into sentences with
    syntok. Sentences with fewer than `min_words` or more than `max_words` whitespace-separated words are
    dropped and counted. Only sentences that are adjacent in the text are paired: a dropped sentence breaks
    the chain, so the sentences before and after it are not paired with each other. Sentences of different
    paragraphs are paired, sentences of different files never.

    Args:
        path: a .txt file, or a folder searched recursively for .txt files (read in sorted path order).
        encoding: Python codec name of the files, such as "utf-8" or "latin-1".
        errors: "strict" to raise on bytes invalid in `encoding`, or "replace" to replace them with U+FFFD
            and count the affected lines.
        min_words: minimum words in a kept sentence.
        max_words: maximum words in a kept sentence, or None for no upper bound.

    Returns:
        The pairs in file order, with counts of lines, sentences and skipped items.

    Raises:
        DataError: the path is missing, a folder contains no .txt file, a file is not valid in `encoding` with
            errors="strict", or no pair is left.
        ConfigError: invalid `encoding`, `errors` or word bounds.
    """
    check_decoding(encoding, errors)
    check_word_bounds(min_words, max_words)
    files = find_book_files(path)
    stats = PairStats()
    pairs: list[tuple[str, str]] = []
    for file in files:
        lines = read_text_lines(file, encoding=encoding, errors=errors, stats=stats)
        pairs.extend(_pairs_from_lines(lines, min_words, max_words, stats))
    stats.pairs = len(pairs)
    if not pairs:
        raise DataError(
            f"No sentence pairs found in {path} ({len(files)} file(s), {stats.sentences} sentence(s) kept, "
            f"{stats.too_short} too short and {stats.too_long} too long with "
            f"{describe_word_bounds(min_words, max_words)}). "
            "Lower min_words, raise max_words, or point the path at files with running text."
        )
    noun = "file" if len(files) == 1 else "files"
    return PairSet(pairs=pairs, stats=stats, source=f"books: {len(files)} {noun} under {path}")


def find_book_files(path: str | PathLike[str]) -> list[Path]:
    """Return `path` itself if it is a file, else the .txt files under it, recursively, in sorted order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"Books path not found: {path}. Pass a {BOOK_SUFFIX} file or a folder of them.")
    files = sorted(file for file in path.rglob(f"*{BOOK_SUFFIX}") if file.is_file())
    if not files:
        raise DataError(
            f"No {BOOK_SUFFIX} files found under {path}: book folders are searched recursively for "
            f"files ending in {BOOK_SUFFIX}. Rename the files or pass a file path."
        )
    return files


def _pairs_from_lines(
    lines: list[str], min_words: int, max_words: int | None, stats: PairStats
) -> list[tuple[str, str]]:
    """Pair adjacent kept sentences of one file's lines, updating `stats`."""
    pairs = []
    previous: str | None = None
    kept_in_file = 0
    for paragraph in _paragraphs(lines, stats):
        for sentence in split_sentences(paragraph):
            if not keep_text(sentence, min_words, max_words, stats):
                previous = None
                continue
            kept_in_file += 1
            if previous is not None:
                pairs.append((previous, sentence))
            previous = sentence
    if kept_in_file < 2:
        stats.single_sentence_files += 1
    return pairs


def _paragraphs(lines: list[str], stats: PairStats) -> list[str]:
    """Join runs of non-blank lines with spaces, counting blank lines (the paragraph breaks) as empty."""
    paragraphs = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped:
            current.append(stripped)
            continue
        stats.empty_lines += 1
        if current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs
