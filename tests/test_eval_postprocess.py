"""Tests of centring, whitening and all-but-the-top, and of parsing their specifications."""

import numpy as np
import pytest

from isotune.errors import ConfigError, DataError
from isotune.evaluation.postprocess import PostprocessSpec, fit_postprocessor, parse_postprocess


def _correlated(count: int = 500, dim: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim))
    return (rng.normal(size=(count, dim)) @ mixing + 3.0).astype(np.float32)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("whiten", PostprocessSpec("whiten")),
        ("whiten:128", PostprocessSpec("whiten", 128)),
        ("abtt:3", PostprocessSpec("abtt", 3)),
        ("center", PostprocessSpec("center")),
    ],
)
def test_parse_valid_specs(text, expected):
    spec = parse_postprocess(text)
    assert spec == expected
    assert spec.label == text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pca", "Unknown post-processing 'pca'"),
        ("abtt", "abtt needs the number of directions"),
        ("whiten:0", "Invalid dimension in post-processing 'whiten:0'"),
        ("abtt:x", "Invalid dimension in post-processing 'abtt:x'"),
        ("center:2", "center takes no dimension"),
    ],
)
def test_parse_invalid_specs_raise(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_postprocess(text)


def test_center_removes_only_the_mean():
    vectors = _correlated()
    centred = fit_postprocessor(PostprocessSpec("center"), vectors)(vectors)
    np.testing.assert_allclose(centred.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(centred, vectors - vectors.astype(np.float64).mean(axis=0), atol=1e-4)


def test_whitening_gives_identity_covariance():
    vectors = _correlated()
    transform = fit_postprocessor(PostprocessSpec("whiten"), vectors)
    whitened = transform(vectors).astype(np.float64)
    np.testing.assert_allclose(whitened.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(whitened.T), np.eye(6), atol=1e-4)
    assert transform.num_fit == 500


def test_whitening_to_k_keeps_top_directions():
    vectors = _correlated()
    transform = fit_postprocessor(PostprocessSpec("whiten", 2), vectors)
    whitened = transform(vectors).astype(np.float64)
    assert whitened.shape == (500, 2)
    np.testing.assert_allclose(np.cov(whitened.T), np.eye(2), atol=1e-4)


def test_whitening_drops_directions_without_variance(caplog):
    vectors = _correlated(dim=4)
    flat = np.concatenate([vectors, np.full((len(vectors), 1), 0.5, dtype=np.float32)], axis=1)
    with caplog.at_level("WARNING", logger="isotune.evaluation.postprocess"):
        transform = fit_postprocessor(PostprocessSpec("whiten"), flat)
    assert transform(flat).shape == (500, 4)
    assert "1 of 5 principal directions of the fit corpus have no variance" in caplog.text
    with pytest.raises(DataError, match="only 4 directions with non-zero variance, too few to whiten to 5"):
        fit_postprocessor(PostprocessSpec("whiten", 5), flat)


def test_abtt_removes_mean_and_top_directions():
    vectors = _correlated()
    transform = fit_postprocessor(PostprocessSpec("abtt", 2), vectors)
    result = transform(vectors).astype(np.float64)
    assert result.shape == vectors.shape
    np.testing.assert_allclose(result.mean(axis=0), 0.0, atol=1e-4)
    centred = vectors.astype(np.float64) - vectors.mean(axis=0)
    _, _, right = np.linalg.svd(centred, full_matrices=False)
    np.testing.assert_allclose(result @ right[:2].T, 0.0, atol=1e-4)
    # The remaining directions are untouched.
    np.testing.assert_allclose(result @ right[2:].T, centred @ right[2:].T, atol=1e-4)


def test_dimension_above_model_raises():
    with pytest.raises(ConfigError, match="abtt:6 asks for 6 dimensions, but the model has 6; use at most 5"):
        fit_postprocessor(PostprocessSpec("abtt", 6), _correlated())
    with pytest.raises(ConfigError, match="whiten:7 asks for 7 dimensions, but the model has 6; use at most 6"):
        fit_postprocessor(PostprocessSpec("whiten", 7), _correlated())


def test_fit_corpus_of_one_sentence_raises():
    with pytest.raises(DataError, match="at least 2 sentences, got 1"):
        fit_postprocessor(PostprocessSpec("abtt", 1), _correlated(count=1))
