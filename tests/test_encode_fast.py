"""isotune.encoding.encode and TokenCache against SentenceTransformer.encode and preprocess."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from conftest import WORDS
from isotune.batching import fixed_chunks, same_length_chunks
from isotune.encoder import build_encoder, load_encoder, make_embedder
from isotune.encoding import encode, plan_batches
from isotune.recipe import ModelConfig
from isotune.tokens import TokenCache


def _texts(count: int, seed: int = 0, max_words: int = 40) -> list[str]:
    """Sentences of 1 to `max_words` words, so some exceed a 32-token limit and are truncated."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(count)]


def _reference(model, texts: list[str], batch_size: int = 16) -> np.ndarray:
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
@pytest.mark.parametrize("batching", ["padding", "same_length", "fixed"])
def test_encode_matches_sentence_transformers(tiny_bert, pooling, batching):
    model = build_encoder(ModelConfig(name=str(tiny_bert), pooling=pooling, max_seq_length=32))
    texts = _texts(80)
    fast = encode(model, texts, batch_size=16, batching=batching)
    assert fast.dtype == np.float32
    assert fast.shape == (len(texts), model.get_embedding_dimension())
    np.testing.assert_allclose(fast, _reference(model, texts), atol=1e-5, rtol=0)


def test_encode_keeps_order_and_duplicates(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    texts = _texts(20, seed=1)
    repeated = texts + texts[::-1] + texts[:3]
    fast = encode(model, repeated, batch_size=4)
    np.testing.assert_allclose(fast, _reference(model, repeated), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(fast[: len(texts)], fast[len(texts) : 2 * len(texts)][::-1])


def test_encode_empty_list(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    assert encode(model, []).shape == (0, model.get_embedding_dimension())


def test_encode_restores_training_mode(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    model.train()
    first = encode(model, _texts(10))
    second = encode(model, _texts(10))
    assert model.training
    np.testing.assert_array_equal(first, second)  # dropout was off during both calls


def test_encode_falls_back_for_default_prompt(tiny_bert, caplog):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    model.prompts = {"query": "man dog "}
    model.default_prompt_name = "query"
    texts = _texts(12, seed=2)
    with caplog.at_level(logging.WARNING, logger="isotune.encoding"):
        fast = encode(model, texts, batch_size=4)
    np.testing.assert_allclose(fast, _reference(model, texts), atol=1e-5, rtol=0)
    assert "default prompt" in caplog.text


def test_make_embedder_uses_fast_path(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    texts = _texts(30, seed=3)
    embed = make_embedder(model, batch_size=8)
    np.testing.assert_allclose(embed(texts), _reference(model, texts), atol=1e-5, rtol=0)


def test_token_cache_features_equal_preprocess(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    texts = _texts(40, seed=4)
    cache = TokenCache(model, tokenize_chunk=7)  # several preprocess calls, each padded differently
    cache.add(texts)
    subset = texts[5:17]
    expected = model.preprocess(subset)
    features = cache.features(subset)
    assert set(features) == set(expected)
    for key, value in expected.items():
        if torch.is_tensor(value):
            assert torch.equal(features[key], value), key
        else:
            assert features[key] == value, key


def test_token_cache_tokenises_each_text_once(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=32))
    cache = TokenCache(model)
    texts = _texts(10, seed=5)
    assert cache.add(texts + texts) == 10
    assert cache.add(texts) == 0
    assert len(cache) == 10


def test_same_length_chunks_never_mix_lengths():
    lengths = [5, 3, 5, 7, 3, 3, 5, 5, 5, 9]
    batches = same_length_chunks(lengths, chunk_size=3)
    assert sorted(index for batch in batches for index in batch) == list(range(len(lengths)))
    assert all(len(batch) <= 3 for batch in batches)
    assert all(len({lengths[index] for index in batch}) == 1 for batch in batches)
    assert [lengths[batch[0]] for batch in batches] == [9, 7, 5, 5, 3]


def test_fixed_chunks_cut_every_size():
    lengths = [5, 3, 5, 7, 3, 3, 5]
    batches = fixed_chunks(lengths, chunk_size=3)
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert [lengths[index] for batch in batches for index in batch] == [7, 5, 5, 5, 3, 3, 3]


def test_plan_batches_padding_merges_rare_lengths():
    lengths = [40] * 100 + list(range(5, 25))  # one full length, then 20 lengths of one text each
    batches = plan_batches(lengths, batch_size=128, batching="padding")
    assert len(batches) < 5
    assert len(plan_batches(lengths, batch_size=128, batching="same_length")) == 21


def test_plan_batches_rejects_bad_input():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        plan_batches([3, 4], batch_size=0, batching="padding")
    with pytest.raises(ValueError, match="Invalid batching 'sorted'"):
        plan_batches([3, 4], batch_size=2, batching="sorted")


@pytest.mark.slow
def test_encode_matches_bundled_model_on_books(shared_data):
    from isotune.recipe import DataConfig
    from isotune.training.run import load_training_pairs

    pairs = load_training_pairs(DataConfig(path=str(shared_data / "books"), encoding="latin-1")).pairs
    texts = random.Random(0).sample(sorted({text for pair in pairs for text in pair}), 400)
    model = load_encoder("all-MiniLM-L6-v2")
    fast = encode(model, texts, batch_size=64)
    reference = _reference(model, texts, batch_size=64)
    assert np.abs(fast - reference).max() < 1e-5
