"""Tests of the transfer-task loaders and the SentEval classifier protocol on small fixture files."""

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

from isotune.errors import DataError
from isotune.evaluation.missing import MissingDataError
from isotune.evaluation.tasks import TRANSFER_TASKS, load_transfer_task
from isotune.evaluation.transfer import C_GRID, evaluate_transfer, pair_features
from isotune.evaluation.transfer_data import load_mrpc, load_sst2, load_trec

FIXTURE_ROOT = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "eval" / "root"
POSITIVE = {"good", "great", "fine", "lovely"}
NEGATIVE = {"bad", "awful", "poor", "dull"}
TREC_WORDS = ["abbreviation", "describe", "entity", "person", "place", "number"]


def keyword_embed(texts: list[str]) -> np.ndarray:
    """Embed sentiment and TREC keywords as separate axes, plus 4 hashed noise axes."""
    rows = []
    for text in texts:
        words = set(text.lower().split())
        noise = np.random.default_rng(int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)).normal(size=4) * 0.1
        row = [float(bool(words & POSITIVE)), float(bool(words & NEGATIVE))]
        row += [float(word in words) for word in TREC_WORDS]
        rows.append(np.concatenate([row, noise]))
    return np.array(rows, dtype=np.float32)


@pytest.mark.parametrize("name", ["mr", "cr", "subj", "mpqa"])
def test_binary_task_loads_both_classes(name):
    data = load_transfer_task(name, FIXTURE_ROOT)
    split = data.splits["all"]
    assert len(split) == 40
    assert list(np.bincount(split.labels)) == [20, 20]
    # Label 1 is the positive (or subjective) file, which contains the positive words in the fixtures.
    assert all(
        set(text.split()) & POSITIVE for text, label in zip(split.texts, split.labels, strict=True) if label == 1
    )


def test_binary_task_cross_validation():
    data = load_transfer_task("mpqa", FIXTURE_ROOT)
    result = evaluate_transfer(keyword_embed, data, seed=3)
    assert result["accuracy"] == pytest.approx(100.0)
    assert len(result["fold_accuracies"]) == 10
    assert len(result["chosen_C"]) == 10
    assert set(result["chosen_C"]) <= set(C_GRID)
    assert result["num_examples"] == 40
    assert result["protocol"] == "10-fold cross-validation"
    assert result["classifier"]["seed"] == 3
    assert result["classifier"]["C_grid"] == C_GRID


def test_cr_blank_line_dropped_and_counted():
    data = load_transfer_task("cr", FIXTURE_ROOT)
    assert data.skipped_lines == {"custrev.pos": 1, "custrev.neg": 0}
    assert "" not in data.splits["all"].texts


def test_transfer_is_deterministic_per_seed():
    data = load_transfer_task("mr", FIXTURE_ROOT)

    def noisy_embed(texts):
        # Mostly noise, so that the folds and C choices matter for the score.
        return keyword_embed(texts) * np.array([0.05, 0.05] + [0] * 6 + [1] * 4, dtype=np.float32)

    first = evaluate_transfer(noisy_embed, data, seed=1)
    second = evaluate_transfer(noisy_embed, data, seed=1)
    assert first == second
    other = evaluate_transfer(noisy_embed, data, seed=2)
    assert other["fold_accuracies"] != first["fold_accuracies"]


def test_sst2_chooses_c_on_dev():
    data = load_sst2(FIXTURE_ROOT / "transfer" / "SST" / "binary")
    assert {name: len(split) for name, split in data.splits.items()} == {"train": 40, "dev": 10, "test": 10}
    result = evaluate_transfer(keyword_embed, data)
    assert result["accuracy"] == pytest.approx(100.0)
    assert result["chosen_C"] in C_GRID
    assert result["num_train"] == 40
    assert result["num_dev"] == 10
    assert result["num_test"] == 10
    assert "dev" in result["protocol"]


def test_trec_six_classes_and_latin1_line(caplog):
    with caplog.at_level(logging.WARNING, logger="isotune.evaluation.textfile"):
        data = load_trec(FIXTURE_ROOT / "transfer" / "TREC")
    assert "1 of 12 lines are not valid UTF-8" in caplog.text
    assert data.splits["test"].texts[0] == "What abbreviation is the café ?"
    assert sorted(set(data.splits["train"].labels)) == [0, 1, 2, 3, 4, 5]
    result = evaluate_transfer(keyword_embed, data)
    assert result["accuracy"] == pytest.approx(100.0)
    assert result["num_train"] == 36
    assert result["num_test"] == 12
    assert "f1" not in result


def test_trec_unknown_class_raises(tmp_path):
    (tmp_path / "train_5500.label").write_text("COLOR:x What color is it ?\n")
    (tmp_path / "TREC_10.label").write_text("NUM:x How many ?\n")
    with pytest.raises(DataError, match="train_5500.label, line 1: expected 'COARSE:fine question'"):
        load_trec(tmp_path)


def test_mrpc_bom_pairs_and_f1():
    data = load_mrpc(FIXTURE_ROOT / "transfer" / "MRPC")
    assert data.pairs
    assert len(data.splits["train"]) == 30
    assert len(data.splits["test"]) == 10
    first, second = data.splits["train"].texts[1]
    assert first == second  # quality 1 rows of the fixture repeat the sentence
    # Identical sentences give |u - v| = 0, which the pair features expose.
    result = evaluate_transfer(keyword_embed, data)
    assert result["accuracy"] == pytest.approx(100.0)
    assert result["f1"] == pytest.approx(100.0)
    assert "train/test" in result["protocol"]


def test_mrpc_bad_row_raises(tmp_path):
    (tmp_path / "msr_paraphrase_train.txt").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t2\tonly\n")
    (tmp_path / "msr_paraphrase_test.txt").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n")
    with pytest.raises(DataError, match="line 2: expected 5 tab-separated fields"):
        load_mrpc(tmp_path)


def test_pair_features_layout():
    u = np.array([[1.0, -2.0]])
    v = np.array([[3.0, 1.0]])
    np.testing.assert_allclose(pair_features(u, v), [[1, -2, 3, 1, 2, 3, 3, -2]])


def test_missing_split_is_missing_data(tmp_path):
    folder = tmp_path / "transfer" / "SST" / "binary"
    folder.mkdir(parents=True)
    (folder / "sentiment-train").write_text("good film\t1\n")
    with pytest.raises(MissingDataError, match="SST-2 split 'dev' not found"):
        load_transfer_task("sst2", tmp_path)


def test_missing_task_folder_is_missing_data(tmp_path):
    for name in TRANSFER_TASKS:
        with pytest.raises(MissingDataError, match=f"'{name}' not found at .*; pass --data-root"):
            load_transfer_task(name, tmp_path)
