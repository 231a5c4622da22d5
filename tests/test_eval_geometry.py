"""Tests of evaluate_geometry and sample_sentences on embeddings built by hand."""

import numpy as np
import pytest

from isotune.evaluation.geometry import evaluate_geometry, sample_sentences


def _table_embed(table: dict[str, list[float]]):
    def embed(texts: list[str]) -> np.ndarray:
        return np.array([table[text] for text in texts], dtype=np.float32)

    return embed


def test_geometry_on_basis_vectors():
    table = {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1], "x again": [1, 0, 0]}
    result = evaluate_geometry(
        _table_embed(table),
        positive_pairs=[("x", "y"), ("x", "x again")],
        sentences=["x", "y", "z"],
    )
    # Pair distances squared are 2 and 0, so the mean is 1.
    assert result["alignment"] == pytest.approx(1.0)
    assert result["uniformity"] == pytest.approx(-4.0)
    assert result["average_cosine"] == pytest.approx(0.0)
    assert result["num_positive_pairs"] == 2
    assert result["num_sentences"] == 3


def test_geometry_normalises_embed_output():
    table = {"a": [3, 0], "b": [0, 0.5]}
    result = evaluate_geometry(_table_embed(table), positive_pairs=[("a", "b")], sentences=["a", "b"], t=1.0)
    assert result["alignment"] == pytest.approx(2.0)
    assert result["uniformity"] == pytest.approx(-2.0)


def test_geometry_drops_duplicate_sentences():
    table = {"a": [1, 0], "b": [0, 1]}
    sentences = ["a", "b", "a", "b"]
    result = evaluate_geometry(_table_embed(table), positive_pairs=[("a", "a")], sentences=sentences)
    assert result["num_sentences"] == 2
    assert result["uniformity"] == pytest.approx(-4.0)


def test_geometry_without_pairs_raises():
    with pytest.raises(ValueError, match="at least one positive pair"):
        evaluate_geometry(_table_embed({}), positive_pairs=[], sentences=["a", "b"])


def test_geometry_with_one_sentence_raises():
    table = {"a": [1, 0]}
    with pytest.raises(ValueError, match="at least 2 distinct sentences, got 1"):
        evaluate_geometry(_table_embed(table), positive_pairs=[("a", "a")], sentences=["a", "a"])


def test_sample_sentences_is_seeded_subset():
    sentences = [f"sentence {index}" for index in range(100)]
    sample = sample_sentences(sentences, 10, seed=5)
    assert len(sample) == 10
    assert sample == sample_sentences(sentences, 10, seed=5)
    assert sample != sample_sentences(sentences, 10, seed=6)
    # The sample keeps the order of the input.
    assert sample == sorted(sample, key=sentences.index)


def test_sample_sentences_small_input_kept_whole():
    assert sample_sentences(["b", "a", "b"], 10) == ["b", "a"]
