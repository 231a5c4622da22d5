"""Loaders of positive text pairs for contrastive training, with counts of what they read and skipped."""

from isotune.data.books import pairs_from_books
from isotune.data.hf_datasets import pairs_from_hf_dataset
from isotune.data.load import load_pairs
from isotune.data.pair_files import pairs_from_file
from isotune.data.pair_set import PairSet
from isotune.data.simcse import identical_pairs, mix_identical_pairs
from isotune.data.stats import PairStats
from isotune.data.text import read_text_lines

__all__ = [
    "PairSet",
    "PairStats",
    "identical_pairs",
    "load_pairs",
    "mix_identical_pairs",
    "pairs_from_books",
    "pairs_from_file",
    "pairs_from_hf_dataset",
    "read_text_lines",
]
