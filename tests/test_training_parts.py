"""Parts of the training loop: batch order, length-sorted forward chunks, source detection."""

from __future__ import annotations

import pytest
import torch

from isotune.encoder import build_encoder
from isotune.errors import DataError
from isotune.recipe import DataConfig, ModelConfig, load_recipe
from isotune.training.batches import PairBatcher
from isotune.training.embedding import embed_by_length
from isotune.training.loop import make_accelerator
from isotune.training.run import resolve_source

TEXTS = [
    "the dog runs",
    "the small happy dog runs quickly in the big park today",
    "a cat",
    "the child reads a blue book at night and the woman sings",
    "red ball",
    "the man plays guitar",
]


def test_batcher_covers_each_pair_once_per_epoch():
    batcher = PairBatcher(num_pairs=10, batch_size=3, seed=1)
    seen = [row for micro in range(3) for row in batcher.indices(micro)]
    assert len(seen) == 9
    assert len(set(seen)) == 9


def test_batcher_order_depends_only_on_seed_and_step():
    first = PairBatcher(num_pairs=50, batch_size=4, seed=7)
    second = PairBatcher(num_pairs=50, batch_size=4, seed=7)
    assert [first.indices(m) for m in range(30)] == [second.indices(m) for m in (range(30))]
    assert second.indices(17) == PairBatcher(50, 4, 7).indices(17)


def test_batcher_rejects_fewer_pairs_than_batch():
    with pytest.raises(ValueError, match="fewer than training.batch_size=8"):
        PairBatcher(num_pairs=5, batch_size=8, seed=0)


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
def test_length_chunks_match_single_forward(tiny_bert, chunk_size):
    model = build_encoder(ModelConfig(name=str(tiny_bert)))
    model.eval()
    accelerator = make_accelerator(load_recipe(None))
    with torch.no_grad():
        whole = embed_by_length(accelerator, model, TEXTS, chunk_size=0)
        chunked = embed_by_length(accelerator, model, TEXTS, chunk_size=chunk_size)
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_auto_source_detects_books_and_pair_files(tmp_path):
    (tmp_path / "book.txt").write_text("One sentence here. Another one.", encoding="utf-8")
    (tmp_path / "pairs.tsv").write_text("a b c\td e f\n", encoding="utf-8")
    assert resolve_source(DataConfig(path=str(tmp_path))) == "books"
    assert resolve_source(DataConfig(path=str(tmp_path / "book.txt"))) == "books"
    assert resolve_source(DataConfig(path=str(tmp_path / "pairs.tsv"))) == "pair_file"


def test_auto_source_treats_hub_id_as_dataset():
    assert resolve_source(DataConfig(path="bookcorpus/bookcorpus")) == "hf_dataset"


def test_auto_source_reports_missing_path(tmp_path):
    with pytest.raises(DataError, match="not found"):
        resolve_source(DataConfig(path=str(tmp_path / "missing")))


def test_fingerprint_ignores_new_keys_at_defaults():
    from isotune.recipe import Recipe
    from isotune.training.run_folder import recipe_fingerprint

    default = recipe_fingerprint(Recipe())
    settings = Recipe().to_dict()
    assert "cached" in settings["training"]
    cached = Recipe()
    cached.training.cached = True
    local_only = Recipe()
    local_only.training.gather_across_processes = False
    assert recipe_fingerprint(cached) != default
    assert recipe_fingerprint(local_only) != default
