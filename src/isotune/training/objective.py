"""The training objective from the embeddings of a batch of pairs: alignment + uniformity, InfoNCE, or
InfoNCE + uniformity, with an optional linear warmup of the uniformity weight lambda."""

from __future__ import annotations

import dataclasses

import torch

from isotune.distributed import gather_with_grad
from isotune.losses import align_uniform_loss, alignment_loss, info_nce_loss, same_text_mask, uniformity_loss
from isotune.recipe import ObjectiveConfig


def compute_objective(
    config: ObjectiveConfig, x: torch.Tensor, y: torch.Tensor, texts: tuple[list[str], list[str]] | None = None
) -> dict[str, torch.Tensor]:
    """Return `loss` (to minimise) plus `alignment` and `uniformity` of the batch for monitoring.

    `info_nce_uniform` also returns its contrastive term as `info_nce`. Its loss is
    `L_InfoNCE + lambda * (L_uniform(x) + L_uniform(y)) / 2`: uniformity has a gradient there, and alignment
    is only monitored.

    Args:
        config: the objective section of the recipe.
        x: L2-normalised embeddings of the first sentences of the pairs, `[batch, dim]`.
        y: L2-normalised embeddings of their positives, `[batch, dim]`.
        texts: the texts behind `x` and `y`. When given, copies of the same text in a batch are never
            treated as each other's negatives: they are left out of uniformity, and InfoNCE drops `y_j`
            from the negatives of `x_i` when `y_j` has the text of `x_i` or of `y_i`.
    """
    exclude_x = exclude_y = exclude_nce = None
    if texts is not None:
        first, second = texts
        exclude_x = same_text_mask(first).to(x.device)
        exclude_y = same_text_mask(second).to(x.device)
        exclude_nce = (exclude_y | same_text_mask(first, second)).to(x.device)
        exclude_x, exclude_y = _only_if_any(exclude_x), _only_if_any(exclude_y)
    if config.name == "align_uniform":
        return align_uniform_loss(
            x, y, alpha=config.alpha, t=config.t, lam=config.lam, exclude_x=exclude_x, exclude_y=exclude_y
        )
    if config.name == "info_nce":
        loss = info_nce_loss(x, y, temperature=config.temperature, exclude=exclude_nce)
        with torch.no_grad():
            alignment = alignment_loss(x, y, alpha=config.alpha)
            uniformity = (
                uniformity_loss(x, t=config.t, exclude=exclude_x) + uniformity_loss(y, t=config.t, exclude=exclude_y)
            ) / 2
        return {"loss": loss, "alignment": alignment, "uniformity": uniformity}
    if config.name == "info_nce_uniform":
        contrastive = info_nce_loss(x, y, temperature=config.temperature, exclude=exclude_nce)
        uniformity = (
            uniformity_loss(x, t=config.t, exclude=exclude_x) + uniformity_loss(y, t=config.t, exclude=exclude_y)
        ) / 2
        with torch.no_grad():
            alignment = alignment_loss(x, y, alpha=config.alpha)
        loss = contrastive + config.lam * uniformity
        return {"loss": loss, "alignment": alignment, "uniformity": uniformity, "info_nce": contrastive}
    raise ValueError(f"Unknown objective {config.name!r}; use 'align_uniform', 'info_nce' or 'info_nce_uniform'.")


def objective_at_step(config: ObjectiveConfig, step: int) -> ObjectiveConfig:
    """Return `config` with lambda ramped linearly from 0 over `lambda_warmup_steps` optimizer steps.

    `step` counts the optimizer steps already taken, so the first step uses lambda 0 and step
    `lambda_warmup_steps` onwards uses the full value. With `lambda_warmup_steps` 0, `config` is returned as is.
    """
    if config.lambda_warmup_steps <= 0 or step >= config.lambda_warmup_steps:
        return config
    return dataclasses.replace(config, lam=config.lam * step / config.lambda_warmup_steps)


def _only_if_any(same_text: torch.Tensor) -> torch.Tensor | None:
    """Return the off-diagonal part of a same-text mask, or None when the batch has no duplicate text."""
    off_diagonal = same_text & ~torch.eye(same_text.shape[0], dtype=torch.bool, device=same_text.device)
    return off_diagonal if off_diagonal.any() else None


def compute_global_objective(
    config: ObjectiveConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    texts: tuple[list[str], list[str]],
    *,
    gather: bool,
) -> dict[str, torch.Tensor]:
    """Compute the objective on the pairs of all processes (`gather`) or on this process's pairs only.

    With `gather`, the embeddings of every process are concatenated in rank order (see `gather_with_grad`)
    and the objective is computed over the global batch of `world_size * batch` pairs, so uniformity and InfoNCE use
    every process's embeddings as negatives. Back-propagate `loss * world_size()` so that the gradients
    averaged by DDP equal those of one process on the global batch.

    Args:
        config: the objective section of the recipe.
        x, y: this process's L2-normalised embeddings, `[batch, dim]` each.
        texts: the texts behind the embeddings the objective sees: the global batch in rank order with
            `gather` (every process derives it from the shared data order, so no texts are exchanged),
            else this process's texts. Copies of a text are never negatives, across processes too.
    """
    if gather:
        x, y = gather_with_grad(x), gather_with_grad(y)
    if len(texts[0]) != x.shape[0] or len(texts[1]) != y.shape[0]:
        raise ValueError(
            f"compute_global_objective got {len(texts[0])} and {len(texts[1])} texts for {x.shape[0]} and "
            f"{y.shape[0]} embeddings; pass the texts of the global batch when gather is on."
        )
    return compute_objective(config, x, y, texts=texts)
