"""Resumable checkpoints: Accelerate state plus the loop's own state, written atomically.

Each checkpoint is a folder `checkpoints/step-NNNNNNN` that appears in one rename once fully written,
so a crash while writing leaves the previous checkpoint untouched and a hidden `.tmp` folder behind.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import load as load_weights_only

from isotune.errors import ConfigError
from isotune.fileio import atomic_directory, write_json_atomic

logger = logging.getLogger(__name__)

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
    scheduler: dict[str, Any] = field(default_factory=dict)  # LambdaLR.state_dict(): numbers and lists only


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


def load_checkpoint(
    accelerator: Accelerator, path: Path, fingerprint: str, *, allow_other_recipe: bool = False
) -> TrainerState:
    """Restore the Accelerate state from `path` and return the loop state saved with it.

    Weights are read from safetensors; the optimizer and RNG states go through `torch.load` with
    `weights_only=True` (Accelerate's default), so a tampered checkpoint cannot run code on load.

    Raises:
        ConfigError: when the checkpoint was written by a run with a different recipe (unless
            `allow_other_recipe`), or cannot be read safely.
    """
    try:
        state = TrainerState(**json.loads((path / STATE_FILE).read_text(encoding="utf-8")))
    except (json.JSONDecodeError, TypeError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"Checkpoint {path} has an unreadable {STATE_FILE} ({error}); resume from an older one."
        ) from error
    if state.recipe_fingerprint != fingerprint:
        if not allow_other_recipe:
            raise ConfigError(
                f"Checkpoint {path} was written by a run with a different recipe, so resuming it would not "
                "continue that run. Resume with the run's own recipe.yaml, start in a new --output-dir, or pass "
                "--allow-recipe-change to continue from these weights anyway."
            )
        logger.warning("Resuming %s although it was written with a different recipe (--allow-recipe-change).", path)
        state.recipe_fingerprint = fingerprint
    rng_file = path / f"random_states_{accelerator.process_index}.pkl"
    try:
        # Accelerate skips an unreadable RNG file with only a log line, which would make the resumed run
        # silently differ; read it here first so that a missing or tampered file is an error.
        load_weights_only(rng_file)
        accelerator.load_state(str(path))
    except pickle.UnpicklingError as error:
        raise ConfigError(
            f"Checkpoint {path} holds objects that are not plain tensors and numbers, so it was not written by "
            f"isotune or was altered; it was not loaded ({error}). Delete it to resume from an earlier checkpoint."
        ) from error
    except FileNotFoundError as error:
        raise ConfigError(
            f"Checkpoint {path} is incomplete ({error}); delete it to resume from an earlier checkpoint."
        ) from error
    return state
