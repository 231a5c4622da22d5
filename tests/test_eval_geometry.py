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


def _random_table(count: int, dim: int, seed: int, shift: float = 0.0) -> dict[str, list[float]]:
    rows = np.random.default_rng(seed).normal(size=(count, dim))
    rows[:, 0] += shift
    return {f"s{index}": list(row) for index, row in enumerate(rows)}


def test_geometry_reports_spectral_measures_with_intervals():
    table = _random_table(60, 6, seed=0)
    sentences = list(table)
    pairs = [(sentences[index], sentences[index + 1]) for index in range(0, 20, 2)]
    result = evaluate_geometry(_table_embed(table), positive_pairs=pairs, sentences=sentences, num_resamples=50)
    for name in ("alignment", "uniformity", "average_cosine", "top_component_share"):
        low, high = result["intervals"][name]
        assert low <= result[name] <= high, name
    # Resamples repeat sentences, which lowers the effective rank, so its interval may end below the value.
    low, high = result["intervals"]["effective_rank"]
    assert low < high <= 6.0
    assert result["effective_rank"] - high < 0.1
    low, high = result["intervals"]["isotropy"]
    assert 0 < low < high <= 1.0
    assert len(result["singular_values"]) == 6
    assert result["bootstrap"] == {"num_resamples": 50, "confidence": 0.95, "seed": 0}
    assert result["num_zero_norm"] == 0


def test_geometry_intervals_seeded():
    table = _random_table(30, 4, seed=1)
    sentences = list(table)
    pairs = [(sentences[0], sentences[1]), (sentences[2], sentences[3])]
    kwargs = {"positive_pairs": pairs, "sentences": sentences, "num_resamples": 20}
    first = evaluate_geometry(_table_embed(table), seed=4, **kwargs)
    assert first == evaluate_geometry(_table_embed(table), seed=4, **kwargs)
    assert first["intervals"] != evaluate_geometry(_table_embed(table), seed=5, **kwargs)["intervals"]


def test_geometry_without_bootstrap_has_no_intervals():
    table = {"x": [1, 0], "y": [0, 1]}
    result = evaluate_geometry(_table_embed(table), positive_pairs=[("x", "y")], sentences=["x", "y"], num_resamples=0)
    assert result["intervals"] == {}
    assert result["isotropy"] == pytest.approx(metrics_isotropy(np.eye(2, dtype=np.float32)))


def metrics_isotropy(x):
    from isotune import metrics

    return metrics.isotropy(x)


def test_geometry_cone_is_anisotropic():
    spread = _random_table(80, 5, seed=2)
    cone = _random_table(80, 5, seed=2, shift=4.0)
    kwargs = {"positive_pairs": [("s0", "s1")], "sentences": list(spread), "num_resamples": 0}
    wide = evaluate_geometry(_table_embed(spread), **kwargs)
    narrow = evaluate_geometry(_table_embed(cone), **kwargs)
    assert narrow["average_cosine"] > wide["average_cosine"] + 0.5
    assert narrow["isotropy"] < wide["isotropy"]
    assert narrow["effective_rank"] < wide["effective_rank"]
    assert narrow["uniformity"] > wide["uniformity"]


def test_geometry_drops_zero_norm_embeddings(caplog):
    table = {"a": [1, 0], "b": [0, 1], "c": [-1, 0], "empty": [0, 0]}
    with caplog.at_level("WARNING", logger="isotune.evaluation.geometry"):
        result = evaluate_geometry(
            _table_embed(table),
            positive_pairs=[("a", "b"), ("a", "empty")],
            sentences=["a", "b", "c", "empty"],
            num_resamples=0,
        )
    assert result["num_zero_norm"] == 2
    assert result["num_positive_pairs"] == 1
    assert result["num_sentences"] == 3
    assert "1 positive pairs and 1 sample sentences have an embedding of norm 0" in caplog.text
