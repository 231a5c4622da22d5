"""Alignment, uniformity and InfoNCE losses on L2-normalised embeddings.

Alignment and uniformity are the two properties of contrastive representations identified by
Wang and Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on
the Hypersphere" (ICML 2020). InfoNCE is the contrastive objective of van den Oord et al. (2018) in the
in-batch form that SimCSE (Gao et al., 2021) uses.

Every function takes L2-normalised `[batch, dim]` tensors and computes in float32 whatever the input
dtype or autocast context, because low-precision exponentials and log-sum-exps overflow or lose the
small differences these losses depend on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_batch(name: str, x: torch.Tensor, minimum: int) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} expects embeddings of shape [batch, dim], got shape {tuple(x.shape)}.")
    if x.shape[0] < minimum:
        raise ValueError(
            f"{name} needs a batch of at least {minimum} embeddings, got {x.shape[0]}; increase the batch size."
        )


def _check_pair(name: str, x: torch.Tensor, y: torch.Tensor, minimum: int) -> None:
    _check_batch(name, x, minimum)
    if x.shape != y.shape:
        raise ValueError(f"{name} expects x and y of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}.")


def alignment_loss(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Compute the mean of `||x_i - y_i||^alpha` over positive pairs `(x_i, y_i)`.

    Args:
        x: L2-normalised embeddings, `[batch, dim]`.
        y: L2-normalised embeddings of the positives of `x`, same shape.
        alpha: exponent of the distance, > 0 (2 gives the squared distance).

    Example: unit vectors e1 and e2 are at distance sqrt(2), so their alignment with alpha 2 is 2.0.
    """
    _check_pair("alignment_loss", x, y, minimum=1)
    if alpha <= 0:
        raise ValueError(f"alignment_loss needs alpha > 0, got {alpha}.")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x, y = x.float(), y.float()
        if alpha == 2.0:
            # Squared distance computed directly: its gradient is finite even at distance 0.
            return (x - y).pow(2).sum(dim=1).mean()
        return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def uniformity_loss(x: torch.Tensor, t: float = 2.0, *, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Compute `log mean_{i<j} exp(-t ||x_i - x_j||^2)` over all distinct pairs of the batch.

    The value lies in `[-4t, 0]` on the unit sphere: 0 when all embeddings coincide, lower when they
    spread out. Needs a batch of at least 2.

    Args:
        x: L2-normalised embeddings, `[batch, dim]`.
        t: temperature of the Gaussian potential, > 0.
        exclude: optional boolean `[batch, batch]` mask of pairs to leave out of the mean, such as two
            copies of the same text, which would otherwise be pushed apart.

    Example: e1 and e2 are at squared distance 2, so with t = 2 the uniformity is log(exp(-4)) = -4.0.
    """
    _check_batch("uniformity_loss", x, minimum=2)
    if t <= 0:
        raise ValueError(f"uniformity_loss needs t > 0, got {t}.")
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        batch = x.shape[0]
        # Squared distances from the Gram matrix rather than torch.pdist: pdist's gradient is NaN when two
        # embeddings coincide (sqrt at 0), which happens with duplicate texts or a collapsed model.
        gram = x @ x.T
        norms = gram.diagonal()
        rows, cols = torch.triu_indices(batch, batch, offset=1, device=x.device)
        sq_dist = (norms[rows] + norms[cols] - 2 * gram[rows, cols]).clamp_min(0)
        if exclude is not None:
            _check_mask("uniformity_loss", exclude, batch)
            sq_dist = sq_dist[~exclude[rows, cols]]
            if sq_dist.numel() == 0:
                raise ValueError("uniformity_loss: every pair of the batch is excluded, so no pair is left.")
        count = torch.tensor(float(sq_dist.numel()), device=x.device)
        return torch.logsumexp(-t * sq_dist, dim=0) - count.log()


def info_nce_loss(
    x: torch.Tensor, y: torch.Tensor, temperature: float = 0.05, *, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Compute the in-batch InfoNCE loss: cross-entropy of `cos(x_i, y_j) / temperature` against `j = i`.

    Each `y_i` is the positive of `x_i` and the other `y_j` of the batch are its negatives, as in SimCSE.
    Needs a batch of at least 2, since a single pair has no negative.

    Args:
        x: L2-normalised anchor embeddings, `[batch, dim]`.
        y: L2-normalised positive embeddings, same shape.
        temperature: softmax temperature, > 0.
        exclude: optional boolean `[batch, batch]` mask; `exclude[i, j]` removes `y_j` from the negatives of
            `x_i` (for example a copy of `x_i`'s own text). The diagonal (the positives) is never removed.
    """
    _check_pair("info_nce_loss", x, y, minimum=2)
    if temperature <= 0:
        raise ValueError(f"info_nce_loss needs temperature > 0, got {temperature}.")
    with torch.autocast(device_type=x.device.type, enabled=False):
        logits = (x.float() @ y.float().T) / temperature  # [batch, batch]
        if exclude is not None:
            _check_mask("info_nce_loss", exclude, x.shape[0])
            off_diagonal = exclude & ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
            logits = logits.masked_fill(off_diagonal, float("-inf"))
        labels = torch.arange(x.shape[0], device=x.device)
        return F.cross_entropy(logits, labels)


def _check_mask(name: str, exclude: torch.Tensor, batch: int) -> None:
    if exclude.dtype != torch.bool or tuple(exclude.shape) != (batch, batch):
        raise ValueError(
            f"{name} expects exclude as a boolean [{batch}, {batch}] mask, got {exclude.dtype} {tuple(exclude.shape)}."
        )


def align_uniform_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    alpha: float = 2.0,
    t: float = 2.0,
    lam: float = 1.0,
    exclude_x: torch.Tensor | None = None,
    exclude_y: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Compute `L_align + lam * (L_uniform(x) + L_uniform(y)) / 2` and its parts.

    `exclude_x` and `exclude_y` are optional pair masks for the uniformity of each side (see
    `uniformity_loss`). Returns a dict with `loss` (to minimise), `alignment` and `uniformity` (the mean
    over both sides).
    """
    alignment = alignment_loss(x, y, alpha=alpha)
    uniformity = (uniformity_loss(x, t=t, exclude=exclude_x) + uniformity_loss(y, t=t, exclude=exclude_y)) / 2
    return {"loss": alignment + lam * uniformity, "alignment": alignment, "uniformity": uniformity}


def same_text_mask(first: list[str], second: list[str] | None = None) -> torch.Tensor:
    """Return the boolean `[len(first), len(second)]` mask of positions whose texts are equal.

    Duplicates are found by text, never by embedding similarity, so genuinely similar sentences stay
    negatives. With `second` omitted, compares `first` with itself.
    """
    second = first if second is None else second
    ids: dict[str, int] = {}
    first_ids = torch.tensor([ids.setdefault(text, len(ids)) for text in first])
    second_ids = torch.tensor([ids.setdefault(text, len(ids)) for text in second])
    return first_ids[:, None] == second_ids[None, :]
