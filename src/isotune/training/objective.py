"""The training objective: alignment + uniformity, or InfoNCE, from the embeddings of a batch of pairs."""

from __future__ import annotations

import torch

from isotune.losses import align_uniform_loss, alignment_loss, info_nce_loss, uniformity_loss
from isotune.recipe import ObjectiveConfig


def compute_objective(config: ObjectiveConfig, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return `loss` (to minimise) plus `alignment` and `uniformity` of the batch for monitoring.

    Args:
        config: the objective section of the recipe.
        x: L2-normalised embeddings of the first sentences of the pairs, `[batch, dim]`.
        y: L2-normalised embeddings of their positives, `[batch, dim]`.
    """
    if config.name == "align_uniform":
        return align_uniform_loss(x, y, alpha=config.alpha, t=config.t, lam=config.lam)
    if config.name == "info_nce":
        loss = info_nce_loss(x, y, temperature=config.temperature)
        with torch.no_grad():
            alignment = alignment_loss(x, y, alpha=config.alpha)
            uniformity = (uniformity_loss(x, t=config.t) + uniformity_loss(y, t=config.t)) / 2
        return {"loss": loss, "alignment": alignment, "uniformity": uniformity}
    raise ValueError(f"Unknown objective {config.name!r}; use 'align_uniform' or 'info_nce'.")
