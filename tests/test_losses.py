"""Losses against hand-computed values and against slow reference loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from isotune.losses import align_uniform_loss, alignment_loss, info_nce_loss, same_text_mask, uniformity_loss
from isotune.recipe import ObjectiveConfig
from isotune.training.objective import compute_objective


def _random_unit(rows: int, dim: int = 8, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(rows, dim, generator=generator, dtype=torch.float64), dim=1).float()


def _reference_alignment(x: torch.Tensor, y: torch.Tensor, alpha: float) -> float:
    total = 0.0
    for i in range(x.shape[0]):
        distance = math.sqrt(sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], y[i], strict=True)))
        total += distance**alpha
    return total / x.shape[0]


def _reference_uniformity(x: torch.Tensor, t: float) -> float:
    values = []
    for i in range(x.shape[0]):
        for j in range(i + 1, x.shape[0]):
            squared = sum((float(a) - float(b)) ** 2 for a, b in zip(x[i], x[j], strict=True))
            values.append(math.exp(-t * squared))
    return math.log(sum(values) / len(values))


def _reference_info_nce(x: torch.Tensor, y: torch.Tensor, temperature: float) -> float:
    total = 0.0
    for i in range(x.shape[0]):
        logits = [float(x[i] @ y[j]) / temperature for j in range(y.shape[0])]
        total += -logits[i] + math.log(sum(math.exp(value) for value in logits))
    return total / x.shape[0]


def test_alignment_of_e1_e2_is_two():
    e = torch.eye(2)
    assert alignment_loss(e[:1], e[1:]).item() == pytest.approx(2.0)


def test_uniformity_of_e1_e2_is_minus_four():
    assert uniformity_loss(torch.eye(2)).item() == pytest.approx(-4.0)


def test_uniformity_of_identical_vectors_is_zero():
    x = torch.tensor([[0.6, 0.8], [0.6, 0.8]], requires_grad=True)
    loss = uniformity_loss(x)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(x.grad).all()


def test_alignment_of_identical_vectors_has_finite_gradient():
    x = torch.tensor([[0.6, 0.8]], requires_grad=True)
    alignment_loss(x, x.detach()).backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("alpha", [1.0, 2.0, 3.0])
def test_alignment_matches_reference_loop(alpha):
    x, y = _random_unit(6, seed=1), _random_unit(6, seed=2)
    assert alignment_loss(x, y, alpha=alpha).item() == pytest.approx(_reference_alignment(x, y, alpha), rel=1e-5)


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_matches_reference_loop(t):
    x = _random_unit(7, seed=3)
    assert uniformity_loss(x, t=t).item() == pytest.approx(_reference_uniformity(x, t), rel=1e-5)


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_info_nce_matches_reference_loop(temperature):
    x, y = _random_unit(5, seed=4), _random_unit(5, seed=5)
    expected = _reference_info_nce(x, y, temperature)
    assert info_nce_loss(x, y, temperature=temperature).item() == pytest.approx(expected, rel=1e-4)


def test_align_uniform_combines_parts():
    x, y = _random_unit(4, seed=6), _random_unit(4, seed=7)
    parts = align_uniform_loss(x, y, alpha=2.0, t=2.0, lam=0.5)
    expected = alignment_loss(x, y) + 0.5 * (uniformity_loss(x) + uniformity_loss(y)) / 2
    assert parts["loss"].item() == pytest.approx(expected.item())
    assert parts["uniformity"].item() == pytest.approx(((uniformity_loss(x) + uniformity_loss(y)) / 2).item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_compute_in_float32(dtype):
    x, y = _random_unit(6, seed=8), _random_unit(6, seed=9)
    low_x, low_y = x.to(dtype), y.to(dtype)
    assert uniformity_loss(low_x).dtype == torch.float32
    assert info_nce_loss(low_x, low_y, temperature=0.02).dtype == torch.float32
    # Inputs rounded to low precision; the loss itself must not add further error.
    reference = uniformity_loss(low_x.float()).item()
    assert uniformity_loss(low_x).item() == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_info_nce_low_precision_matches_fp32(dtype):
    # At temperature 0.02 the logits reach 50, whose exponential overflows fp16 (max 65504).
    x = _random_unit(32, seed=19)
    y = F.normalize(x + 0.05 * _random_unit(32, seed=20), dim=1)
    low = info_nce_loss(x.to(dtype), y.to(dtype), temperature=0.02)
    reference = info_nce_loss(x.to(dtype).float(), y.to(dtype).float(), temperature=0.02)
    assert torch.isfinite(low)
    assert low.item() == pytest.approx(reference.item(), rel=1e-5)


def test_info_nce_under_autocast_stays_finite():
    x, y = _random_unit(16, seed=10), _random_unit(16, seed=11)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = info_nce_loss(x, y, temperature=0.02)
    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)


def test_uniformity_rejects_single_embedding():
    with pytest.raises(ValueError, match="at least 2"):
        uniformity_loss(torch.eye(2)[:1])


def test_info_nce_rejects_single_pair():
    e = torch.eye(2)
    with pytest.raises(ValueError, match="at least 2"):
        info_nce_loss(e[:1], e[1:])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda e: uniformity_loss(e, t=0), "t > 0"),
        (lambda e: uniformity_loss(e, t=-1), "t > 0"),
        (lambda e: info_nce_loss(e, e, temperature=0), "temperature > 0"),
        (lambda e: alignment_loss(e, e, alpha=0), "alpha > 0"),
        (lambda e: alignment_loss(e, e[:1]), "same shape"),
        (lambda e: uniformity_loss(e[0]), r"\[batch, dim\]"),
    ],
)
def test_invalid_arguments_are_rejected(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.eye(3))


def test_uniformity_exclude_leaves_pairs_out():
    x = _random_unit(4, seed=12)
    exclude = torch.zeros(4, 4, dtype=torch.bool)
    exclude[0, 2] = exclude[2, 0] = True
    kept = [(i, j) for i in range(4) for j in range(i + 1, 4) if (i, j) != (0, 2)]
    expected = math.log(sum(math.exp(-2 * float((x[i] - x[j]).pow(2).sum())) for i, j in kept) / len(kept))
    assert uniformity_loss(x, exclude=exclude).item() == pytest.approx(expected, rel=1e-5)


def test_uniformity_rejects_all_pairs_excluded():
    with pytest.raises(ValueError, match="every pair"):
        uniformity_loss(torch.eye(2), exclude=torch.ones(2, 2, dtype=torch.bool))


def test_info_nce_exclude_drops_negatives_but_not_positive():
    x, y = _random_unit(3, seed=13), _random_unit(3, seed=14)
    exclude = torch.ones(3, 3, dtype=torch.bool)  # every negative removed: each row keeps only its positive
    assert info_nce_loss(x, y, exclude=exclude).item() == pytest.approx(0.0, abs=1e-6)


def test_same_text_mask_finds_duplicates_by_text():
    mask = same_text_mask(["a", "b", "a"], ["b", "c", "a"])
    expected = torch.tensor([[False, False, True], [True, False, False], [False, False, True]])
    assert torch.equal(mask, expected)


def test_objective_ignores_duplicate_texts_as_negatives():
    x, y = _random_unit(4, seed=15), _random_unit(4, seed=16)
    first = ["a", "b", "a", "c"]
    second = ["p", "q", "r", "s"]
    with_texts = compute_objective(ObjectiveConfig(), x, y, texts=(first, second))
    exclude = same_text_mask(first) & ~torch.eye(4, dtype=torch.bool)
    expected = (uniformity_loss(x, exclude=exclude) + uniformity_loss(y)) / 2
    assert with_texts["uniformity"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_info_nce_objective_drops_anchor_text_from_negatives():
    # Consecutive pairs (a, b), (b, c): y_0 has the text of x_1, so it must not be a negative of x_1.
    x, y = _random_unit(2, seed=17), _random_unit(2, seed=18)
    config = ObjectiveConfig(name="info_nce", temperature=0.1)
    parts = compute_objective(config, x, y, texts=(["a", "b"], ["b", "c"]))
    logits = (x @ y.T) / 0.1
    expected = (-logits[0, 0] + torch.logsumexp(logits[0], dim=0) + 0.0) / 2  # row 1 keeps only its positive
    assert parts["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
