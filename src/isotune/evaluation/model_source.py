"""Load the model that `isotune eval MODEL` names: a model id or folder, a run folder, or a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from sentence_transformers import SentenceTransformer

from isotune.errors import ModelNotFoundError

logger = logging.getLogger(__name__)

CHECKPOINT_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ModelSource:
    """What MODEL refers to: `kind` is `model`, `run` or `checkpoint`; `weights` is set for a checkpoint."""

    kind: str
    model: str
    weights: Path | None = None


def resolve_model_source(argument: str) -> ModelSource:
    """Classify `argument` as a run folder (its `model/`), a checkpoint folder, or a model id or folder.

    A checkpoint is a folder `RUN/checkpoints/step-NNNNNNN` with the Accelerate file `model.safetensors`;
    its architecture and tokenizer come from `RUN/model`.
    """
    path = Path(argument).expanduser()
    if (path / "model" / "modules.json").is_file():
        return ModelSource("run", str(path / "model"))
    if (path / CHECKPOINT_WEIGHTS).is_file() and path.parent.name == "checkpoints":
        run_model = path.parent.parent / "model"
        if not (run_model / "modules.json").is_file():
            raise ModelNotFoundError(
                f"Checkpoint {path} needs the run's model folder {run_model} for its architecture and tokenizer, "
                "but it has no modules.json. Evaluate a checkpoint of a run that finished (or wrote model/)."
            )
        return ModelSource("checkpoint", str(run_model), path / CHECKPOINT_WEIGHTS)
    return ModelSource("model", argument)


def load_checkpoint_weights(model: SentenceTransformer, weights: Path) -> None:
    """Copy the weights that Accelerate saved in a checkpoint into `model`, which has the run's architecture.

    Raises ModelNotFoundError when the checkpoint's parameter names or shapes do not match the model.
    """
    from safetensors.torch import load_file

    state = load_file(str(weights))
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(key for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    if missing or unexpected or mismatched:
        raise ModelNotFoundError(
            f"Checkpoint weights {weights} do not fit the run's model: {len(missing)} missing (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}), {len(mismatched)} of another shape "
            f"(e.g. {mismatched[:2]}). Evaluate the checkpoint together with the run folder it was written in."
        )
    model.load_state_dict(state)


def load_model(argument: str, device: str | None = "cpu") -> tuple[SentenceTransformer, ModelSource]:
    """Load the model that `argument` names (see `resolve_model_source`) and return it with its source."""
    from isotune.encoder import load_encoder

    source = resolve_model_source(argument)
    model = load_encoder(source.model, device=device)
    if source.weights is not None:
        load_checkpoint_weights(model, source.weights)
        logger.info("Loaded checkpoint weights from %s into the architecture of %s.", source.weights, source.model)
    return model, source
