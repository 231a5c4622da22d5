"""Identical pairs for unsupervised SimCSE: each sentence is its own positive."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
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
)
from isotune.errors import ConfigError, DataError


def identical_pairs(
    path_or_sentences: str | PathLike[str] | Sequence[str],
    *,
    encoding: str = "utf-8",
    errors: str = "strict",
    min_words: int = 1,
    max_words: int | None = None,
) -> PairSet:
    """Pair each sentence with itself, for unsupervised SimCSE.

    The two texts of a pair are equal; dropout in the encoder makes their two embeddings differ. Lines or
    strings are stripped, empty ones are skipped and counted, and sentences outside the word bounds are
    dropped and counted. Lines are not split further into sentences.

    Args:
        path_or_sentences: a text file with one sentence per line, or a sequence of sentences.
        encoding: Python codec name of the file (ignored for a sequence).
        errors: "strict" to raise on bytes invalid in `encoding`, or "replace" to replace them with U+FFFD.
        min_words: minimum words in a kept sentence.
        max_words: maximum words in a kept sentence, or None for no upper bound.

    Raises:
        DataError: the file is missing or not valid in `encoding`, or no sentence is left.
        ConfigError: a sequence item is not a string, or invalid `encoding`, `errors` or word bounds.
    """
    check_decoding(encoding, errors)
    check_word_bounds(min_words, max_words)
    stats = PairStats()
    if isinstance(path_or_sentences, (str, PathLike)):
        path = Path(path_or_sentences)
        if not path.is_file():
            raise DataError(f"Sentence file not found: {path}. Pass a text file with one sentence per line.")
        lines = read_text_lines(path, encoding=encoding, errors=errors, stats=stats)
        where = str(path)
    else:
        lines = _check_sentences(path_or_sentences)
        stats.lines = len(lines)
        where = f"{len(lines):,} given sentences"
    pairs = []
    for line in lines:
        sentence = line.strip()
        if not sentence:
            stats.empty_lines += 1
        elif keep_text(sentence, min_words, max_words, stats):
            pairs.append((sentence, sentence))
    stats.pairs = len(pairs)
    if not pairs:
        raise DataError(
            f"No sentences found in {where} ({stats.lines} line(s), {stats.empty_lines} empty, "
            f"{stats.too_short + stats.too_long} outside {describe_word_bounds(min_words, max_words)}). "
            "Pass non-empty sentences or change the word bounds."
        )
    return PairSet(pairs=pairs, stats=stats, source=f"SimCSE identical pairs: {where}")


def mix_identical_pairs(pair_set: PairSet, ratio: float, seed: int) -> PairSet:
    """Replace a share `ratio` of the pairs by identical pairs, each pair's first text with itself.

    Mixes unsupervised SimCSE positives (two dropout views of one sentence) into other pairs such as
    consecutive sentences. The replaced rows are `round(ratio * len(pairs))` rows drawn with a generator
    seeded by `seed`, so a run and its resume replace the same rows. The order of the pairs is kept, and the
    returned stats count the replaced pairs in `simcse_pairs`.

    Raises:
        ConfigError: when `ratio` is outside [0, 1].
    """
    if not 0 <= ratio <= 1:
        raise ConfigError(f"Invalid SimCSE pair ratio {ratio}: use a share between 0 and 1 (data.simcse_ratio).")
    count = round(ratio * len(pair_set.pairs))
    if count == 0:
        return pair_set
    pairs = list(pair_set.pairs)
    for row in random.Random(seed).sample(range(len(pairs)), count):
        pairs[row] = (pairs[row][0], pairs[row][0])
    stats = dataclasses.replace(pair_set.stats, simcse_pairs=pair_set.stats.simcse_pairs + count)
    source = f"{pair_set.source}, {count:,} of them replaced by SimCSE identical pairs"
    return PairSet(pairs=pairs, stats=stats, source=source)


def _check_sentences(sentences: Sequence[str]) -> list[str]:
    sentences = list(sentences)
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise ConfigError(f"Invalid sentence at index {index}: expected a string, got {type(sentence).__name__}.")
    return sentences
