"""Resumable checkpoints: Accelerate state plus the loop's own state, written atomically.

Each checkpoint is a folder `checkpoints/step-NNNNNNN` that appears in one rename once fully written,
so a crash while writing leaves the previous checkpoint untouched and a hidden `.tmp` folder behind.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from isotune.errors import ConfigError
from isotune.fileio import atomic_directory, write_json_atomic

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{7})$")


@dataclass
class TrainerState:
    """What the training loop needs besides the Accelerate state to continue exactly."""

    step: int = 0
    best_score: float | None = None
    best_step: int | None = None
    skipped_batches: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    recipe_fingerprint: str = ""


def save_checkpoint(accelerator: Accelerator, root: Path, state: TrainerState, keep: int) -> Path:
    """Write the model, optimizer, scheduler and RNG states plus `state` to `root/step-NNNNNNN`."""
    path = root / f"step-{state.step:07d}"
    # NOTE: only single-process runs are supported here; several processes would each stage a folder.
    with atomic_directory(path) as staging:
        accelerator.save_state(str(staging))
        write_json_atomic(staging / STATE_FILE, asdict(state))
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def list_checkpoints(root: Path) -> list[Path]:
    """Return the complete checkpoints under `root`, oldest first; staging folders are ignored."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def load_checkpoint(accelerator: Accelerator, path: Path, fingerprint: str) -> TrainerState:
    """Restore the Accelerate state from `path` and return the loop state saved with it.

    Raises:
        ConfigError: when the checkpoint was written by a run with a different recipe.
    """
    raw = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
    state = TrainerState(**raw)
    if state.recipe_fingerprint != fingerprint:
        raise ConfigError(
            f"Checkpoint {path} was written by a run with a different recipe, so resuming it would not "
            "continue that run. Resume with the run's own recipe.yaml, or start in a new --output-dir."
        )
    accelerator.load_state(str(path))
    return state
