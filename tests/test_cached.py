"""Gradient caching: same loss, parameter gradients and random state as the uncached computation."""

from __future__ import annotations

import pytest
import torch
from accelerate.state import AcceleratorState

from conftest import tiny_recipe
from isotune.encoder import build_encoder
from isotune.errors import ConfigError
from isotune.recipe import load_recipe
from isotune.training.checkpoint import TrainerState
from isotune.training.loop import _micro_batch, make_accelerator

PAIRS = [
    ("the dog runs in the park", "a dog plays with a ball"),
    ("a cat", "the small cat sleeps"),
    ("the man plays guitar today", "a man sings"),
    ("the child reads a blue book at night and the woman sings", "a child reads"),
    ("red ball", "the big red ball"),
    ("the dog runs in the park", "the dog runs quickly"),  # first text repeats row 0: never a negative
    ("the woman eats food", "a woman walks to the house"),
    ("happy child", "the happy child plays in the street today"),
]


def _gradients(tiny_bert, corpus, tmp_path, *settings: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, float]:
    """Run one micro batch of the training loop; return parameter gradients, loss and the next random draw."""
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", "training.forward_chunk_size=3", *settings)
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = make_accelerator(recipe)
    torch.manual_seed(0)
    model = accelerator.prepare(build_encoder(recipe.model))
    model.train()  # dropout on: cached mode must replay the same masks
    rows = list(range(len(PAIRS)))
    torch.manual_seed(123)
    parts = _micro_batch(recipe, accelerator, model, PAIRS, rows, rows, TrainerState(), micro_batch=0)
    next_draw = torch.rand(1).item()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    AcceleratorState._reset_state(reset_partial_state=True)
    return grads, parts["loss"], next_draw


@pytest.mark.parametrize("objective", ["align_uniform", "info_nce"])
@pytest.mark.parametrize(
    ("precision", "rtol", "atol"),
    [("no", 1e-4, 1e-6), ("bf16", 5e-2, 1e-3)],
)
def test_cached_matches_uncached(tiny_bert, corpus, tmp_path, objective, precision, rtol, atol):
    settings = (f"objective.name={objective}", f"training.precision={precision}")
    plain, plain_loss, plain_draw = _gradients(tiny_bert, corpus, tmp_path, *settings)
    cached, cached_loss, cached_draw = _gradients(tiny_bert, corpus, tmp_path, *settings, "training.cached=true")
    assert torch.allclose(cached_loss, plain_loss, rtol=rtol, atol=atol)
    assert plain.keys() == cached.keys()
    assert len(plain) > 10
    for name in plain:
        assert torch.allclose(cached[name], plain[name], rtol=rtol, atol=atol), name
    assert cached_draw == plain_draw, "cached mode must leave the random state where the uncached pass does"


def test_cached_dropout_replay_matters(tiny_bert, corpus, tmp_path):
    """Without the replayed random state the gradients would differ: the check above can fail."""
    plain, _, _ = _gradients(tiny_bert, corpus, tmp_path)
    other_seed = {}
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", "training.forward_chunk_size=3")
    AcceleratorState._reset_state(reset_partial_state=True)
    accelerator = make_accelerator(recipe)
    torch.manual_seed(0)
    model = accelerator.prepare(build_encoder(recipe.model))
    model.train()
    torch.manual_seed(124)
    rows = list(range(len(PAIRS)))
    _micro_batch(recipe, accelerator, model, PAIRS, rows, rows, TrainerState(), micro_batch=0)
    other_seed = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    AcceleratorState._reset_state(reset_partial_state=True)
    name = next(key for key in plain if key.endswith("word_embeddings.weight"))
    assert not torch.allclose(other_seed[name], plain[name], rtol=1e-4, atol=1e-6)


def test_cached_needs_several_chunks(tiny_bert, corpus, tmp_path):
    with pytest.raises(ConfigError, match="training.cached needs training.forward_chunk_size"):
        load_recipe(None, ["training.cached=true", "training.forward_chunk_size=0"])
    with pytest.raises(ConfigError, match="between 1 and 2 x training.batch_size - 1"):
        load_recipe(None, ["training.cached=true", "training.batch_size=8", "training.forward_chunk_size=16"])
