"""Tests of the Hugging Face dataset loader on local folders and files, and of its offline Hub error."""

import json
import time
from pathlib import Path

import datasets
import pytest

from isotune.data import pairs_from_hf_dataset
from isotune.errors import ConfigError, DataError

TEXTS = ["The sun rises early.", "", "Birds begin to sing.", "The town wakes up.", "Shops open their doors."]


@pytest.fixture(autouse=True)
def offline_hub(tmp_path, monkeypatch):
    """Switch the Hub off and keep the datasets cache inside the test's folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture
def saved_dataset(tmp_path) -> Path:
    path = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": TEXTS, "label": list(range(len(TEXTS)))}).save_to_disk(str(path))
    return path


@pytest.fixture
def jsonl_file(tmp_path) -> Path:
    rows = [
        {"sentence1": "A cat sleeps.", "sentence2": "A cat is asleep.", "text": "The sun rises early."},
        {"sentence1": "A dog barks.", "sentence2": "", "text": "Birds begin to sing."},
        {"sentence1": "A bird sings.", "sentence2": "A bird is singing.", "text": "The town wakes up."},
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_saved_dataset_text_column(saved_dataset):
    result = pairs_from_hf_dataset(saved_dataset, text_column="text")
    assert result.pairs == [
        ("Birds begin to sing.", "The town wakes up."),
        ("The town wakes up.", "Shops open their doors."),
    ]
    assert result.stats.empty_fields == 1
    assert result.stats.lines == 5


def test_saved_dataset_dict_split(tmp_path):
    path = tmp_path / "saved_dict"
    split = datasets.Dataset.from_dict({"text": ["First line here.", "Second line here."]})
    datasets.DatasetDict({"validation": split}).save_to_disk(str(path))
    result = pairs_from_hf_dataset(path, split="validation", text_column="text")
    assert result.pairs == [("First line here.", "Second line here.")]


def test_saved_dataset_missing_split_raises(tmp_path):
    path = tmp_path / "saved_dict"
    split = datasets.Dataset.from_dict({"text": ["First line here.", "Second line here."]})
    datasets.DatasetDict({"validation": split}).save_to_disk(str(path))
    with pytest.raises(DataError, match="Split 'train' not found .*validation"):
        pairs_from_hf_dataset(path, text_column="text")


def test_saved_dataset_max_rows(saved_dataset):
    result = pairs_from_hf_dataset(saved_dataset, text_column="text", max_rows=4)
    assert result.stats.lines == 4
    assert result.stats.pairs == 1


def test_saved_dataset_streaming(saved_dataset):
    result = pairs_from_hf_dataset(saved_dataset, text_column="text", streaming=True)
    assert result.stats.pairs == 2


def test_jsonl_pair_columns(jsonl_file):
    result = pairs_from_hf_dataset(jsonl_file, pair_columns=["sentence1", "sentence2"])
    assert result.pairs == [("A cat sleeps.", "A cat is asleep."), ("A bird sings.", "A bird is singing.")]
    assert result.stats.empty_fields == 1


def test_jsonl_text_column(jsonl_file):
    result = pairs_from_hf_dataset(jsonl_file, text_column="text")
    assert result.pairs == [
        ("The sun rises early.", "Birds begin to sing."),
        ("Birds begin to sing.", "The town wakes up."),
    ]


def test_jsonl_streaming_max_rows(jsonl_file):
    result = pairs_from_hf_dataset(jsonl_file, text_column="text", streaming=True, max_rows=2)
    assert result.pairs == [("The sun rises early.", "Birds begin to sing.")]


def test_word_bounds_break_chain(tmp_path):
    path = tmp_path / "saved"
    texts = ["Three words here.", "Two words.", "Three more words.", "And three more."]
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(path))
    result = pairs_from_hf_dataset(path, text_column="text", min_words=3)
    assert result.stats.too_short == 1
    assert result.pairs == [("Three more words.", "And three more.")]


def test_missing_column_raises(saved_dataset):
    with pytest.raises(DataError, match="'sentence' not found .*its columns are text, label"):
        pairs_from_hf_dataset(saved_dataset, text_column="sentence")


def test_non_text_column_raises(saved_dataset):
    with pytest.raises(DataError, match="'label' contains int values"):
        pairs_from_hf_dataset(saved_dataset, text_column="label")


def test_column_options_both_raise(saved_dataset):
    with pytest.raises(ConfigError, match="exactly one of text_column"):
        pairs_from_hf_dataset(saved_dataset, text_column="text", pair_columns=["text", "label"])


def test_column_options_neither_raise(saved_dataset):
    with pytest.raises(ConfigError, match="exactly one of text_column"):
        pairs_from_hf_dataset(saved_dataset)


def test_missing_local_path_raises(tmp_path):
    with pytest.raises(DataError, match="Dataset path not found"):
        pairs_from_hf_dataset(str(tmp_path / "missing.jsonl"), text_column="text")


def test_hub_id_offline_raises_fast():
    start = time.monotonic()
    with pytest.raises(DataError, match="'someone/some-corpus'.*not a local path.*HF_HUB_OFFLINE"):
        pairs_from_hf_dataset("someone/some-corpus", text_column="text")
    assert time.monotonic() - start < 5


def test_folder_of_data_files(tmp_path, jsonl_file):
    folder = tmp_path / "corpus"
    folder.mkdir()
    jsonl_file.rename(folder / "rows.jsonl")
    result = pairs_from_hf_dataset(folder, pair_columns=["sentence1", "sentence2"])
    assert result.stats.pairs == 2


def test_malformed_jsonl_raises(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "A first row."}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match="Cannot load dataset .*rows.jsonl"):
        pairs_from_hf_dataset(path, text_column="text")
