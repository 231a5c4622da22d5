"""Tests of the pair-file loader, SimCSE identical pairs and `load_pairs`."""

from pathlib import Path

import pytest

from isotune.data import identical_pairs, load_pairs, pairs_from_file
from isotune.errors import ConfigError, DataError

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "pairs"
GUITAR_PAIR = ("A man is playing a guitar.", "Someone plays the guitar.")


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_tsv_fixture_without_header():
    result = pairs_from_file(FIXTURES / "pairs.tsv")
    assert result.pairs[0] == GUITAR_PAIR
    assert result.stats.pairs == 3


def test_tsv_columns_read_header(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", "label\tleft\tright\n1\tA cat sleeps.\tA cat is asleep.\n")
    result = pairs_from_file(path, columns=["left", "right"])
    assert result.pairs == [("A cat sleeps.", "A cat is asleep.")]


def test_tsv_quotes_kept_literally(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", 'He said "hi.\tShe said "bye".\n')
    result = pairs_from_file(path)
    assert result.pairs == [('He said "hi.', 'She said "bye".')]


def test_tsv_missing_column_raises(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", "left\tright\nA cat sleeps.\tA cat is asleep.\n")
    with pytest.raises(DataError) as error:
        pairs_from_file(path, columns=("left", "positive"))
    message = str(error.value)
    assert "'positive'" in message
    assert str(path) in message
    assert "left, right" in message


def test_tsv_short_row_raises(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", "A cat sleeps.\tA cat is asleep.\nOnly one field\n")
    with pytest.raises(DataError, match="line 2 has 1 field"):
        pairs_from_file(path)


def test_tsv_blank_lines_counted(tmp_path):
    path = write_text(tmp_path / "pairs.tsv", "A cat sleeps.\tA cat is asleep.\n\n  \nA dog barks.\tA dog is loud.\n")
    result = pairs_from_file(path)
    assert result.stats.empty_lines == 2
    assert result.stats.pairs == 2


def test_csv_fixture_default_columns():
    result = pairs_from_file(FIXTURES / "pairs.csv")
    assert result.pairs[0] == GUITAR_PAIR
    assert result.pairs[1] == ("A woman slices an onion, slowly.", "An onion is being cut by a woman.")
    assert "columns sentence1, sentence2" in result.source


def test_csv_anchor_positive_columns(tmp_path):
    path = write_text(tmp_path / "pairs.csv", "positive,anchor\nA cat is asleep.,A cat sleeps.\n")
    result = pairs_from_file(path)
    assert result.pairs == [("A cat sleeps.", "A cat is asleep.")]


def test_csv_first_two_columns(tmp_path):
    path = write_text(tmp_path / "pairs.csv", "query,answer,score\nA cat sleeps.,A cat is asleep.,5\n")
    result = pairs_from_file(path)
    assert result.pairs == [("A cat sleeps.", "A cat is asleep.")]


def test_csv_multiline_quoted_field(tmp_path):
    path = write_text(tmp_path / "pairs.csv", 'sentence1,sentence2\n"Line one\nline two.",A short one.\n')
    result = pairs_from_file(path)
    assert result.pairs == [("Line one\nline two.", "A short one.")]


def test_csv_missing_column_raises(tmp_path):
    path = write_text(tmp_path / "pairs.csv", "sentence1,sentence2\nA cat sleeps.,A cat is asleep.\n")
    with pytest.raises(DataError, match=r"'hypothesis' not found .*sentence1, sentence2"):
        pairs_from_file(path, columns=("sentence1", "hypothesis"))


def test_csv_empty_field_counted(tmp_path):
    text = "sentence1,sentence2\nA cat sleeps.,A cat is asleep.\nA dog barks., \n,A bird sings.\n"
    result = pairs_from_file(write_text(tmp_path / "pairs.csv", text))
    assert result.stats.empty_fields == 2
    assert result.stats.pairs == 1


def test_csv_word_bounds_drop_rows(tmp_path):
    text = "sentence1,sentence2\nA cat sleeps.,A cat is asleep.\nHi,A dog is loud.\n"
    result = pairs_from_file(write_text(tmp_path / "pairs.csv", text), min_words=2)
    assert result.stats.too_short == 1
    assert result.pairs == [("A cat sleeps.", "A cat is asleep.")]


def test_jsonl_fixture_anchor_positive():
    result = pairs_from_file(FIXTURES / "pairs.jsonl")
    assert result.pairs[0] == GUITAR_PAIR
    assert result.stats.pairs == 3


def test_jsonl_text1_text2_keys(tmp_path):
    path = write_text(tmp_path / "pairs.jsonl", '{"text1": "A cat sleeps.", "text2": "A cat is asleep."}\n')
    result = pairs_from_file(path)
    assert result.pairs == [("A cat sleeps.", "A cat is asleep.")]


def test_jsonl_malformed_line_raises(tmp_path):
    text = '{"sentence1": "A cat.", "sentence2": "A cat sleeps."}\n\n{"sentence1": "A dog.", "sentence2": \n'
    path = write_text(tmp_path / "pairs.jsonl", text)
    with pytest.raises(DataError, match=r"line 3 is not valid JSON") as error:
        pairs_from_file(path)
    assert str(path) in str(error.value)


def test_jsonl_non_object_raises(tmp_path):
    path = write_text(tmp_path / "pairs.jsonl", '["A cat.", "A cat sleeps."]\n')
    with pytest.raises(DataError, match="line 1 is a JSON list, not an object"):
        pairs_from_file(path)


def test_jsonl_empty_and_null_fields_counted(tmp_path):
    text = (
        '{"anchor": "A cat.", "positive": "A cat sleeps."}\n'
        '{"anchor": "", "positive": "A dog barks."}\n'
        '{"anchor": "A bird.", "positive": null}\n'
    )
    result = pairs_from_file(write_text(tmp_path / "pairs.jsonl", text))
    assert result.stats.empty_fields == 2
    assert result.stats.pairs == 1


def test_jsonl_missing_key_raises(tmp_path):
    text = '{"anchor": "A cat.", "positive": "A cat sleeps."}\n{"anchor": "A dog."}\n'
    with pytest.raises(DataError, match=r"'positive' not found .*line 2.*anchor"):
        pairs_from_file(write_text(tmp_path / "pairs.jsonl", text))


def test_jsonl_unknown_keys_raise(tmp_path):
    path = write_text(tmp_path / "pairs.jsonl", '{"premise": "A cat.", "hypothesis": "A cat sleeps."}\n')
    with pytest.raises(DataError, match="its keys are premise, hypothesis. Set data.columns"):
        pairs_from_file(path)


def test_jsonl_number_text_raises(tmp_path):
    path = write_text(tmp_path / "pairs.jsonl", '{"anchor": "A cat.", "positive": 7}\n')
    with pytest.raises(DataError, match="'positive' is a JSON int"):
        pairs_from_file(path)


def test_pair_file_unsupported_suffix_raises(tmp_path):
    path = write_text(tmp_path / "pairs.xlsx", "not a pair file")
    with pytest.raises(DataError, match=r"'\.xlsx' is not one of \.tsv, \.csv, \.jsonl"):
        pairs_from_file(path)


def test_pair_file_invalid_columns_raises():
    with pytest.raises(ConfigError, match="give two column names"):
        pairs_from_file(FIXTURES / "pairs.csv", columns="sentence1")


def test_pair_file_no_pairs_raises(tmp_path):
    path = write_text(tmp_path / "pairs.csv", "sentence1,sentence2\n,\n")
    with pytest.raises(DataError, match="No pairs found"):
        pairs_from_file(path)


def test_pair_file_latin1(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_bytes(b"Un caf\xe9.\tA coffee.\n")
    result = pairs_from_file(path, encoding="latin-1")
    assert result.pairs == [("Un café.", "A coffee.")]


def test_simcse_pairs_from_file(tmp_path):
    path = write_text(tmp_path / "sentences.txt", "A cat sleeps.\n\n   \nA dog barks loudly.\n")
    result = identical_pairs(path)
    assert result.pairs == [
        ("A cat sleeps.", "A cat sleeps."),
        ("A dog barks loudly.", "A dog barks loudly."),
    ]
    assert result.stats.empty_lines == 2


def test_simcse_pairs_from_list():
    result = identical_pairs(["A cat sleeps.", "", "Hi", "A dog barks loudly."], min_words=2)
    assert result.pairs == [
        ("A cat sleeps.", "A cat sleeps."),
        ("A dog barks loudly.", "A dog barks loudly."),
    ]
    assert result.stats.too_short == 1
    assert result.stats.empty_lines == 1


def test_simcse_no_sentences_raises():
    with pytest.raises(DataError, match="No sentences found"):
        identical_pairs(["", "  "])


def test_simcse_non_string_raises():
    with pytest.raises(ConfigError, match="index 1: expected a string, got int"):
        identical_pairs(["A cat sleeps.", 3])


def test_load_pairs_pair_file():
    result = load_pairs("pair_file", str(FIXTURES / "pairs.csv"), columns=["sentence1", "sentence2"])
    assert result.pairs[0] == GUITAR_PAIR


def test_load_pairs_decode_errors_alias(tmp_path):
    path = tmp_path / "sentences.txt"
    path.write_bytes(b"Un caf\xe9 noir.\n")
    result = load_pairs("simcse", str(path), decode_errors="replace")
    assert result.stats.undecodable_lines == 1


def test_load_pairs_unknown_source_raises():
    with pytest.raises(ConfigError, match="'wiki'.*books, pair_file, hf_dataset, simcse"):
        load_pairs("wiki", "corpus.txt")


def test_load_pairs_unknown_option_raises():
    with pytest.raises(ConfigError, match="'colums' for data source 'pair_file'.*columns"):
        load_pairs("pair_file", str(FIXTURES / "pairs.csv"), colums=["a", "b"])


def test_tsv_known_header_is_not_a_pair(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("sentence1\tsentence2\na cat sat down\ta cat was sitting\n", encoding="utf-8")
    pair_set = pairs_from_file(path)
    assert pair_set.pairs == [("a cat sat down", "a cat was sitting")]
