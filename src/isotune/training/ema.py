"""An exponential moving average (EMA) of the weights, kept in a copy of the model, for evaluation and saving.

The average gives most weight to the last 1 / (1 - decay) steps or so, which smooths out the noise of
small-batch updates. With `training.ema_decay` set, every dev evaluation and the saved model use the average
instead of the raw weights.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer

from isotune.errors import ConfigError

logger = logging.getLogger(__name__)

EMA_FILE = "ema.safetensors"


class EmaModel:
    """A copy of the model whose trainable weights follow `average = decay * average + (1 - decay) * weights`
    after each optimizer step, starting from the weights when it is created (the base model's, before training).

    Frozen parameters and buffers keep their values from creation, since training does not change them.
    Costs one more copy of the model in memory.
    """

    def __init__(self, model: SentenceTransformer, decay: float) -> None:
        if not 0 < decay < 1:
            raise ConfigError(f"Invalid EMA decay {decay}: use a value between 0 and 1 (training.ema_decay).")
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)
        trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
        self._average = {name: parameter for name, parameter in self.model.named_parameters() if name in trainable}

    def update(self, model: torch.nn.Module) -> None:
        """Move the average one step towards the current weights of `model` (the unwrapped training model)."""
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                average = self._average.get(name)
                if average is not None:
                    average.lerp_(parameter.detach(), 1 - self.decay)

    def save(self, folder: Path) -> None:
        """Write the averaged weights to `folder/ema.safetensors`, as part of a checkpoint."""
        save_file({name: average.detach().contiguous() for name, average in self._average.items()}, folder / EMA_FILE)

    def restore(self, folder: Path, model: torch.nn.Module) -> None:
        """Load the average saved in checkpoint `folder`, so a resumed run continues it exactly.

        A checkpoint written without EMA (resumed with --allow-recipe-change) has no average: it then starts
        again from the resumed weights of `model`, with a warning.

        Raises:
            ConfigError: when the saved average does not match the model's trainable parameters.
        """
        path = folder / EMA_FILE
        if not path.is_file():
            logger.warning(
                "Checkpoint %s has no %s, so the EMA weights start from the resumed weights.", folder, EMA_FILE
            )
            self.update_from(model)
            return
        saved = load_file(str(path), device=str(next(iter(self._average.values())).device))
        if saved.keys() != self._average.keys():
            missing = sorted(self._average.keys() - saved.keys())[:3]
            unexpected = sorted(saved.keys() - self._average.keys())[:3]
            raise ConfigError(
                f"{path} does not match the model's trainable parameters (missing {missing}, unexpected "
                f"{unexpected}); it was written with other settings. Resume with the run's own recipe."
            )
        with torch.no_grad():
            for name, average in self._average.items():
                average.copy_(saved[name])

    def update_from(self, model: torch.nn.Module) -> None:
        """Set the average to the current weights of `model`."""
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in self._average:
                    self._average[name].copy_(parameter.detach())
