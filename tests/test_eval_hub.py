"""Tests of the Hub copies of STS tasks: conversion matches the local files, and offline use fails fast."""

import time
from pathlib import Path

import numpy as np
import pytest

from isotune.errors import DataError
from isotune.evaluation.sts import evaluate_sts, load_senteval_sts, load_stsb
from isotune.evaluation.sts_hub import HubSource, load_hub_task, task_from_rows
from isotune.evaluation.tasks import load_sts_task

FIXTURE_STS = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "eval" / "root" / "sts"


def _saved_dataset(tmp_path: Path, task, score_scale: float) -> Path:
    """Save the pairs of `task` as a datasets.Dataset in the Hub layout (sentence1, sentence2, score)."""
    from datasets import Dataset

    rows = {"sentence1": [], "sentence2": [], "score": []}
    for subset in task.subsets:
        rows["sentence1"] += subset.sentences1
        rows["sentence2"] += subset.sentences2
        rows["score"] += [float(score) / score_scale for score in subset.scores]
    path = tmp_path / "dataset"
    Dataset.from_dict(rows).save_to_disk(str(path))
    return path


def _hash_embed(texts: list[str]) -> np.ndarray:
    rows = [np.random.default_rng(abs(hash(text)) % 2**32).normal(size=8) for text in texts]
    return np.array(rows, dtype=np.float32).reshape(len(texts), 8)


def test_stsb_hub_copy_gives_identical_results(tmp_path):
    from datasets import load_from_disk

    local = load_stsb(FIXTURE_STS / "stsbenchmark" / "sts-dev.csv")
    # sentence-transformers/stsb stores score / 5.
    hub = task_from_rows("stsb-dev", load_from_disk(str(_saved_dataset(tmp_path, local, 5.0))), 5.0)
    np.testing.assert_array_equal(hub.subsets[0].scores, local.subsets[0].scores)
    assert evaluate_sts(_hash_embed, hub)["spearman"]["all"] == evaluate_sts(_hash_embed, local)["spearman"]["all"]
    assert evaluate_sts(_hash_embed, hub)["pearson"]["all"] == pytest.approx(
        evaluate_sts(_hash_embed, local)["pearson"]["all"], abs=1e-9
    )


def test_mteb_copy_pools_like_local_all(tmp_path):
    from datasets import load_from_disk

    local = load_senteval_sts(FIXTURE_STS / "STS12-en-test", "sts12")
    hub = task_from_rows("sts12", load_from_disk(str(_saved_dataset(tmp_path, local, 1.0))), 1.0)
    assert len(hub.subsets) == 1
    assert len(hub.subsets[0]) == sum(len(subset) for subset in local.subsets)
    hub_result, local_result = evaluate_sts(_hash_embed, hub), evaluate_sts(_hash_embed, local)
    assert hub_result["spearman"]["all"] == pytest.approx(local_result["spearman"]["all"], abs=1e-12)
    assert hub_result["pearson"]["all"] == pytest.approx(local_result["pearson"]["all"], abs=1e-12)


def test_missing_score_row_counts_as_skipped():
    from datasets import Dataset

    rows = Dataset.from_dict({"sentence1": ["a", "b", "c"], "sentence2": ["d", "e", "f"], "score": [0.8, None, 0.2]})
    subset = task_from_rows("t", rows, 5.0).subsets[0]
    assert subset.skipped == 1
    np.testing.assert_array_equal(subset.scores, [4.0, 1.0])


def test_wrong_columns_raise():
    from datasets import Dataset

    rows = Dataset.from_dict({"text1": ["a"], "text2": ["b"], "label": [1.0]})
    with pytest.raises(DataError, match=r"lacks the columns \['sentence1', 'sentence2', 'score'\]"):
        task_from_rows("t", rows, 1.0)


def test_offline_hub_fails_within_seconds(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    start = time.perf_counter()
    with pytest.raises(DataError, match="Failed to load mteb/sts13-sts split 'test' for task 'sts13'.*HF_HUB_OFFLINE"):
        load_hub_task("sts13", HubSource("mteb/sts13-sts", "test"))
    assert time.perf_counter() - start < 30


def test_task_without_hub_copy_raises():
    with pytest.raises(DataError, match="'sick-trial' has no Hub copy"):
        load_sts_task("sick-trial", FIXTURE_STS.parent, "hub")
