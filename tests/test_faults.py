"""Faults during training: SIGKILL at any moment, leftovers of an interrupted checkpoint write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_recipe
from isotune.errors import ConfigError
from isotune.training.checkpoint import list_checkpoints
from isotune.training.run import run_training

SETTINGS = (
    "training.max_steps=90",
    "training.checkpoint_every=3",
    "training.keep_checkpoints=2",
    "training.keep_best=false",
    "training.eval_every=0",
    "evaluation.tasks=[stsb-dev]",
)


def _latest_step(run_dir: Path) -> int:
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    return int(checkpoints[-1].name.split("-")[1]) if checkpoints else 0


def _train_and_kill(recipe_file: Path, run_dir: Path, kill_after_step: int, resume: bool) -> bool:
    """Start `isotune train` in a subprocess and SIGKILL it once a checkpoint past `kill_after_step` exists.

    Returns False when the run finished before it could be killed.
    """
    command = [sys.executable, "-m", "isotune.cli", "train", str(recipe_file), "--output-dir", str(run_dir)]
    if resume:
        command.append("--resume")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if _latest_step(run_dir) > kill_after_step:
                # Let it run a little further so the kill can land inside a later checkpoint write.
                time.sleep(0.05 * (kill_after_step % 7))
                process.send_signal(signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.02)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return False


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tiny_bert, corpus, tmp_path):
    straight = tmp_path / "straight"
    run_training(tiny_recipe(tiny_bert, corpus, straight, *SETTINGS))

    interrupted = tmp_path / "interrupted"
    recipe = tiny_recipe(tiny_bert, corpus, interrupted, *SETTINGS)
    recipe_file = tmp_path / "recipe.yaml"
    recipe_file.write_text(recipe.to_yaml(), encoding="utf-8")
    killed = [_train_and_kill(recipe_file, interrupted, kill_after_step=12, resume=False)]
    for kill_after_step in (40, 64):
        killed.append(_train_and_kill(recipe_file, interrupted, kill_after_step, resume=True))
    assert killed[0], "the first run finished before it could be killed; raise training.max_steps"
    assert not (interrupted / "model").exists() or _latest_step(interrupted) < 90

    run_training(recipe, resume=True)
    expected, actual = _weights(straight), _weights(interrupted)
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_interrupted_checkpoint_write_is_ignored(tiny_bert, corpus, tmp_path):
    run_dir = tmp_path / "run"
    settings = ("training.max_steps=8", "training.checkpoint_every=4", "training.keep_best=false")
    recipe = tiny_recipe(tiny_bert, corpus, run_dir, *settings, "training.keep_checkpoints=3")
    run_training(recipe)
    straight = _weights(run_dir)
    # What a crash in the middle of writing checkpoint 8 leaves: a half-written staging folder, no step-8.
    checkpoints = run_dir / "checkpoints"
    os.rename(checkpoints / "step-0000008", checkpoints / ".step-0000008.abc123.tmp")
    (checkpoints / ".step-0000008.abc123.tmp" / "optimizer.bin").write_bytes(b"truncated")
    (checkpoints / ".step-0000008.abc123.tmp" / "trainer_state.json").unlink()
    # A folder that only looks like a checkpoint, without the state file written last, is skipped too.
    (checkpoints / "step-0000009").mkdir()

    assert [p.name for p in list_checkpoints(checkpoints)] == ["step-0000004"]
    run_training(recipe, resume=True)
    resumed = _weights(run_dir)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key


def test_resume_without_run_is_rejected(tiny_bert, corpus, tmp_path):
    with pytest.raises(ConfigError, match="contains no run"):
        run_training(tiny_recipe(tiny_bert, corpus, tmp_path / "empty"), resume=True)


def test_unwritable_output_dir_fails_before_training(tiny_bert, corpus, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder", encoding="utf-8")
    with pytest.raises(ConfigError, match="not writable"):
        run_training(tiny_recipe(tiny_bert, corpus, blocker / "run"))


@pytest.fixture()
def small_disk(tmp_path):
    """A 2 MiB tmpfs mounted for the test (needs root; skipped elsewhere)."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_full_disk_fails_before_training(tiny_bert, corpus, small_disk):
    run_dir = small_disk / "run"
    with pytest.raises(ConfigError, match="MiB free"):
        run_training(tiny_recipe(tiny_bert, corpus, run_dir))
    assert not run_dir.exists()  # created by this run and left empty, so removed
