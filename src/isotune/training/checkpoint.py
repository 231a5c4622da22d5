"""Resumable checkpoints: Accelerate state plus the loop's own state, written atomically.

Each checkpoint is a folder `checkpoints/step-NNNNNNN` that appears in one rename once fully written,
so a crash while writing leaves the previous checkpoint untouched and a hidden `.tmp` folder behind.
Under several processes, all of them write into the main process's staging folder (each writes its own
`random_states_{process_index}.pkl`, and FSDP or DeepSpeed write their shards), and the main process
renames it once every process has finished. The checkpoint folder must therefore be on a file system that
every process can reach, as Accelerate's `save_state` requires.
"""

from __future__ import annotations

import contextlib
import json
import logging
import pickle
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from accelerate.utils import load as load_weights_only

from isotune.errors import ConfigError
from isotune.fileio import atomic_directory, write_json_atomic

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{7})$")


@dataclass
class TrainerState:
    """Loop state, beside the Accelerate state, that a resumed run needs to continue exactly."""

    step: int = 0
    best_score: float | None = None
    best_step: int | None = None
    # Whether the best step met training.keep_best_max_average_cosine (always True without that bound).
    best_qualified: bool = True
    skipped_batches: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    recipe_fingerprint: str = ""
    scheduler: dict[str, Any] = field(default_factory=dict)  # LambdaLR.state_dict(): numbers and lists only
    # Processes of the launch that wrote the state (1 for checkpoints written before this field existed).
    num_processes: int = 1


def save_checkpoint(
    accelerator: Accelerator,
    root: Path,
    state: TrainerState,
    keep: int,
    write_extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write the model, optimizer, scheduler and RNG states plus `state` to `root/step-NNNNNNN`.

    Must be called on every process of the launch. The main process stages the folder, every process
    writes its part into it, and the main process writes `state` last and renames the folder into place.
    `write_extra`, when given, is called on the main process with the staging folder to add more files
    (such as the EMA weights) before `state`.
    """
    path = root / f"step-{state.step:07d}"
    # NOTE: an exception on one process while writing leaves the others waiting at the barrier below until
    # the process group times out. The staging folder is removed either way.
    with atomic_directory(path) if accelerator.is_main_process else contextlib.nullcontext() as staging:
        staging_name = [str(staging) if staging is not None else None]
        if accelerator.num_processes > 1:
            broadcast_object_list(staging_name)
        accelerator.save_state(staging_name[0])
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if write_extra is not None:
                write_extra(staging)
            write_json_atomic(staging / STATE_FILE, asdict(state))
    if accelerator.is_main_process:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
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

    Weights are read from safetensors. The optimizer and RNG states go through `torch.load` with
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
    if state.num_processes != accelerator.num_processes:
        raise ConfigError(
            f"Checkpoint {path} was written by {state.num_processes} processes, but this launch has "
            f"{accelerator.num_processes}; the data order, batch sharding and random states depend on the "
            f"process count. Resume with accelerate launch --num_processes {state.num_processes}."
        )
    rng_file = path / f"random_states_{accelerator.process_index}.pkl"
    try:
        # Accelerate skips an unreadable RNG file with only a log line, which would make the resumed run
        # silently differ; read it here first so that a missing or tampered file is an error.
        load_weights_only(rng_file)
        accelerator.load_state(str(path))
    except pickle.UnpicklingError as error:
        raise ConfigError(
            f"Checkpoint {path} contains objects that are not plain tensors and numbers, so it was not written by "
            f"isotune or was altered; it was not loaded ({error}). Delete it to resume from an earlier checkpoint."
        ) from error
    except FileNotFoundError as error:
        raise ConfigError(
            f"Checkpoint {path} is incomplete ({error}); delete it to resume from an earlier checkpoint."
        ) from error
    return state
