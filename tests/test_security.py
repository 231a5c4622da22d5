"""Untrusted checkpoints, tokens and paths during training."""

from __future__ import annotations

import json
import logging
import pathlib
from pathlib import Path

import pytest
import torch

from conftest import tiny_recipe
from isotune.errors import ConfigError
from isotune.training.run import run_training

FAKE_TOKEN = "hf_isotuneFakeTokenThatMustNeverBeWritten0123"


class _TouchOnUnpickle:
    """An object whose unpickling creates a file, in place of code planted in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.fixture()
def finished_run(tiny_bert, corpus, tmp_path):
    settings = ("training.max_steps=4", "training.checkpoint_every=2", "training.keep_best=false")
    recipe = tiny_recipe(tiny_bert, corpus, tmp_path / "run", *settings, "training.keep_checkpoints=3")
    run_training(recipe)
    return recipe, tmp_path / "run"


@pytest.mark.parametrize("file_name", ["optimizer.bin", "random_states_0.pkl"])
def test_tampered_checkpoint_does_not_run_code(finished_run, tmp_path, file_name):
    recipe, run_dir = finished_run
    marker = tmp_path / "code-ran"
    latest = run_dir / "checkpoints" / "step-0000004"
    torch.save({"state": _TouchOnUnpickle(marker)}, latest / file_name)
    with pytest.raises(ConfigError, match="was not loaded"):
        run_training(recipe, resume=True)
    assert not marker.exists()


def test_checkpoint_holds_no_pickled_scheduler(finished_run):
    _, run_dir = finished_run
    names = {path.name for path in (run_dir / "checkpoints" / "step-0000004").iterdir()}
    assert not any(name.startswith("custom_checkpoint") for name in names)
    assert "model.safetensors" in names


def test_token_never_written_by_training(tiny_bert, corpus, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    caplog.set_level(logging.DEBUG)
    run_dir = tmp_path / "run"
    run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=2"), command="isotune train r.yaml")
    written = [path for path in run_dir.rglob("*") if path.is_file()]
    assert written
    for path in written:
        assert FAKE_TOKEN.encode() not in path.read_bytes(), path
    assert FAKE_TOKEN not in caplog.text


def test_run_json_reports_resolved_paths(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    run_training(tiny_recipe(tiny_bert, corpus, run_dir, "training.max_steps=2"))
    paths = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["paths"]
    assert paths["output_dir"] == str(run_dir.resolve())
    assert paths["data.path"] == str((corpus / "books").resolve())
    assert paths["model.name"] == str(tiny_bert.resolve())
