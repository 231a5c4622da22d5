"""Training speed levers leave the results unchanged: token cache, padding-aware chunks, fused AdamW."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from accelerate.state import AcceleratorState

from conftest import tiny_recipe
from isotune.batching import padding_chunks
from isotune.encoder import build_encoder
from isotune.recipe import ModelConfig, load_recipe
from isotune.tokens import TokenCache
from isotune.training.batches import PairBatcher
from isotune.training.checkpoint import TrainerState
from isotune.training.embedding import embed_chunk
from isotune.training.loop import _optimizer_step, make_accelerator
from isotune.training.optimizer import make_optimizer
from isotune.training.run import load_training_pairs

STEPS = 2


def _train(tiny_bert, corpus, tmp_path, *settings: str, cache: bool = True, fused: bool = False, dropout: bool = True):
    """Run STEPS optimizer steps of the training loop; return the final weights and the loss of each step."""
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", *settings)
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = make_accelerator(recipe)
    torch.manual_seed(0)
    model = build_encoder(recipe.model)
    if not dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    optimizer = make_optimizer(model, recipe.training, accelerator, fused=fused)
    tokens = TokenCache(model) if cache else None
    model, optimizer = accelerator.prepare(model, optimizer)
    model.train()
    pairs = load_training_pairs(recipe.data).pairs
    batcher = PairBatcher(len(pairs), recipe.training.batch_size, recipe.training.seed)
    state = TrainerState()
    torch.manual_seed(1)
    losses = []
    for _ in range(STEPS):
        logs = _optimizer_step(recipe, accelerator, model, optimizer, batcher, pairs, state, None, tokens)
        losses.append(logs["loss"])
        state.step += 1
    weights = {name: p.detach().clone() for name, p in accelerator.unwrap_model(model).named_parameters()}
    AcceleratorState._reset_state(reset_partial_state=True)
    return weights, losses


def test_token_cache_gives_identical_training(tiny_bert, corpus, tmp_path):
    cached, cached_losses = _train(tiny_bert, corpus, tmp_path, cache=True)
    per_batch, per_batch_losses = _train(tiny_bert, corpus, tmp_path, cache=False)
    assert cached_losses == per_batch_losses
    for name, value in per_batch.items():
        assert torch.equal(cached[name], value), name


def test_token_cache_embeds_like_preprocess(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert)))
    model.train()
    accelerator = make_accelerator(load_recipe(None))
    texts = ["the dog runs in the park today", "a cat", "the man plays guitar", "red ball red ball red ball"]
    torch.manual_seed(5)
    from_preprocess = embed_chunk(accelerator, model, texts)
    torch.manual_seed(5)
    from_cache = embed_chunk(accelerator, model, texts, TokenCache(model))
    assert torch.equal(from_preprocess, from_cache)  # same inputs and the same dropout masks


@pytest.mark.parametrize("objective", ["align_uniform", "info_nce"])
def test_fused_adamw_matches_default(tiny_bert, corpus, tmp_path, objective):
    setting = f"objective.name={objective}"
    fused, fused_losses = _train(tiny_bert, corpus, tmp_path, setting, fused=True)
    default, default_losses = _train(tiny_bert, corpus, tmp_path, setting, fused=False)
    assert fused_losses == pytest.approx(default_losses, rel=1e-5, abs=1e-6)
    for name, value in default.items():
        assert torch.allclose(fused[name], value, rtol=1e-5, atol=1e-6), name


def test_fused_adamw_chosen_on_cpu(tiny_bert, corpus, tmp_path):
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run")
    AcceleratorState._reset_state(reset_partial_state=True)
    optimizer = make_optimizer(build_encoder(recipe.model), recipe.training, make_accelerator(recipe))
    assert optimizer.defaults["fused"] is True
    AcceleratorState._reset_state(reset_partial_state=True)


def test_padding_chunks_match_one_pass(tiny_bert, corpus, tmp_path):
    # Dropout off, so that only the grouping into forward passes differs.
    chunked, chunked_losses = _train(tiny_bert, corpus, tmp_path, "training.forward_chunk_size=3", dropout=False)
    whole, whole_losses = _train(tiny_bert, corpus, tmp_path, "training.forward_chunk_size=0", dropout=False)
    assert chunked_losses == pytest.approx(whole_losses, rel=1e-5, abs=1e-6)
    for name, value in whole.items():
        assert torch.allclose(chunked[name], value, rtol=1e-4, atol=1e-6), name


def _cost(chunks: list[list[int]], lengths: list[int], overhead: int) -> int:
    return sum(overhead + len(chunk) * max(lengths[i] for i in chunk) for chunk in chunks)


def _best_cost_by_enumeration(lengths: list[int], chunk_size: int, overhead: int) -> int:
    """Try every way to cut the sorted lengths into contiguous chunks of at most `chunk_size`."""
    ordered = sorted(lengths)
    best = None
    for cuts in itertools.product([False, True], repeat=len(ordered) - 1):
        bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [len(ordered)]
        sizes = [end - start for start, end in itertools.pairwise(bounds)]
        if max(sizes) > chunk_size:
            continue
        cost = sum(overhead + (end - start) * ordered[end - 1] for start, end in itertools.pairwise(bounds))
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_padding_chunks_are_optimal(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(3, 60) for _ in range(9)]
    chunk_size, overhead = rng.choice([(3, 10), (4, 64), (9, 30)])
    chunks = padding_chunks(lengths, chunk_size, overhead)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(len(lengths)))
    assert max(len(chunk) for chunk in chunks) <= chunk_size
    assert _cost(chunks, lengths, overhead) == _best_cost_by_enumeration(lengths, chunk_size, overhead)


def test_padding_chunks_cut_at_length_jump():
    lengths = [60] * 10 + [5] * 10
    chunks = padding_chunks(lengths, chunk_size=32, overhead_tokens=64)
    assert sorted(sorted(chunk) for chunk in chunks) == [list(range(10)), list(range(10, 20))]


def test_padding_chunks_zero_is_one_chunk():
    assert padding_chunks([4, 9, 2], chunk_size=0, overhead_tokens=64) == [[2, 0, 1]]


def test_padding_chunks_reject_negative_size():
    with pytest.raises(ValueError, match="chunk_size must be >= 0"):
        padding_chunks([4, 9], chunk_size=-1, overhead_tokens=64)
