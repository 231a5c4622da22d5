"""The training loop: Accelerate, gradient accumulation, schedule, non-finite checks, evaluation, checkpoints."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm
from transformers import get_scheduler

from isotune.encoder import save_encoder
from isotune.errors import TrainingError
from isotune.recipe import Recipe
from isotune.training.batches import PairBatcher
from isotune.training.checkpoint import TrainerState, list_checkpoints, load_checkpoint, save_checkpoint
from isotune.training.objective import compute_objective

logger = logging.getLogger(__name__)

# Returns the score to maximise (STS-B dev Spearman x100) for the model in its current state.
DevScorer = Callable[[SentenceTransformer], float]


def make_accelerator(recipe: Recipe) -> Accelerator:
    return Accelerator(
        mixed_precision=recipe.training.precision,
        gradient_accumulation_steps=recipe.training.gradient_accumulation_steps,
    )


def train(
    recipe: Recipe,
    accelerator: Accelerator,
    model: SentenceTransformer,
    pairs: list[tuple[str, str]],
    run_dir: Path,
    *,
    fingerprint: str,
    resume: bool = False,
    allow_other_recipe: bool = False,
    dev_scorer: DevScorer | None = None,
) -> TrainerState:
    """Train `model` on `pairs` for `recipe.training.max_steps` optimizer steps.

    The model saved to `run_dir/model` is the evaluated step with the best dev score when
    `training.keep_best` is set and a `dev_scorer` is given, else the last step.

    Raises:
        TrainingError: on a non-finite loss with `training.on_nonfinite=stop`; nothing from that step is saved.
    """
    config = recipe.training
    set_seed(config.seed)
    if config.gradient_accumulation_steps > 1:
        logger.warning(
            "gradient_accumulation_steps=%d: uniformity and InfoNCE compare only the %d pairs of a micro batch, "
            "so accumulation grows the effective batch for the gradient but not the number of negatives.",
            config.gradient_accumulation_steps,
            config.batch_size,
        )
    batcher = PairBatcher(len(pairs), config.batch_size, config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * config.max_steps),
        num_training_steps=config.max_steps,
    )
    # The scheduler is stepped once per optimizer step by this loop, not by Accelerate (which steps it once
    # per process). Its state goes into the JSON trainer state: Accelerate would pickle it and unpickle it
    # with weights_only=False on resume, which runs whatever code a tampered checkpoint holds.
    model, optimizer = accelerator.prepare(model, optimizer)

    checkpoint_root = run_dir / "checkpoints"
    state = TrainerState(recipe_fingerprint=fingerprint)
    if resume:
        checkpoints = list_checkpoints(checkpoint_root)
        if checkpoints:
            state = load_checkpoint(accelerator, checkpoints[-1], fingerprint, allow_other_recipe=allow_other_recipe)
            scheduler.load_state_dict(state.scheduler)
            logger.info("Resumed from %s at step %d.", checkpoints[-1], state.step)

    unwrapped = accelerator.unwrap_model(model)
    model.train()
    progress = tqdm(
        total=config.max_steps,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not accelerator.is_local_main_process,
    )
    while state.step < config.max_steps:
        step_logs = _optimizer_step(recipe, accelerator, model, optimizer, batcher, pairs, state)
        scheduler.step()
        state.step += 1
        state.scheduler = scheduler.state_dict()
        progress.update(1)
        progress.set_postfix(
            loss=f"{step_logs['loss']:.4f}",
            align=f"{step_logs['alignment']:.4f}",
            unif=f"{step_logs['uniformity']:.4f}",
            lr=f"{scheduler.get_last_lr()[0]:.2e}",
        )
        state.history.append({"step": state.step, "lr": scheduler.get_last_lr()[0], **step_logs})

        last = state.step == config.max_steps
        if accelerator.is_main_process and (last or (config.eval_every and state.step % config.eval_every == 0)):
            _evaluate_and_keep(recipe, unwrapped, run_dir, state, dev_scorer, last)
        if config.checkpoint_every and (state.step % config.checkpoint_every == 0 or last):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(accelerator, checkpoint_root, state, keep=config.keep_checkpoints)
    progress.close()
    if accelerator.is_main_process and not (run_dir / "model").is_dir():
        save_encoder(unwrapped, run_dir / "model")
    return state


def _optimizer_step(
    recipe: Recipe,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batcher: PairBatcher,
    pairs: list[tuple[str, str]],
    state: TrainerState,
) -> dict[str, float]:
    """Run the micro batches of one optimizer step; return their mean loss, alignment and uniformity."""
    config = recipe.training
    totals = {"loss": 0.0, "alignment": 0.0, "uniformity": 0.0}
    used = 0
    for micro in range(config.gradient_accumulation_steps):
        micro_batch = state.step * config.gradient_accumulation_steps + micro
        rows = batcher.indices(micro_batch)
        with accelerator.accumulate(model):
            parts = _forward(recipe, accelerator, model, [pairs[i] for i in rows])
            loss = parts["loss"]
            if not torch.isfinite(loss):
                _handle_nonfinite(config.on_nonfinite, loss, state, micro_batch, rows)
                optimizer.zero_grad(set_to_none=True)
                continue
            accelerator.backward(loss)
            if accelerator.sync_gradients and config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if accelerator.sync_gradients and not _gradients_finite(model):
                _handle_nonfinite(config.on_nonfinite, loss, state, micro_batch, rows, where="gradient")
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for key in totals:
            totals[key] += parts[key].item()
        used += 1
    return {key: value / max(used, 1) for key, value in totals.items()}


def _forward(
    recipe: Recipe, accelerator: Accelerator, model: torch.nn.Module, batch: list[tuple[str, str]]
) -> dict[str, torch.Tensor]:
    """Embed both sides of the pairs and compute the objective on the whole batch."""
    texts = [a for a, _ in batch] + [b for _, b in batch]
    embeddings = _embed_by_length(accelerator, model, texts, recipe.training.forward_chunk_size)
    x, y = embeddings[: len(batch)], embeddings[len(batch) :]  # [batch, dim] each, L2-normalised
    return compute_objective(recipe.objective, x, y, texts=(texts[: len(batch)], texts[len(batch) :]))


def _embed_by_length(
    accelerator: Accelerator, model: torch.nn.Module, texts: list[str], chunk_size: int
) -> torch.Tensor:
    """Embed `texts` in forward passes over chunks of similar length; return `[len(texts), dim]` in input order.

    Each chunk is padded only to its own longest text, which cuts the padded tokens of a batch of book
    sentences roughly in half. Attention and pooling are masked, so the embeddings are those of one
    forward pass over the whole batch; the loss still sees every embedding of the batch at once.
    """
    tokenizer_owner = accelerator.unwrap_model(model)
    if chunk_size <= 0 or chunk_size >= len(texts):
        chunks = [list(range(len(texts)))]
    else:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        chunks = [order[start : start + chunk_size] for start in range(0, len(order), chunk_size)]
    pieces = []
    for rows in chunks:
        features = tokenizer_owner.preprocess([texts[i] for i in rows])
        features = {k: v.to(accelerator.device) if torch.is_tensor(v) else v for k, v in features.items()}
        pieces.append(model(features)["sentence_embedding"])
    embeddings = torch.cat(pieces)
    positions = torch.tensor([i for rows in chunks for i in rows], device=embeddings.device)
    return embeddings[torch.argsort(positions)]


def _gradients_finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _handle_nonfinite(
    policy: str,
    loss: torch.Tensor,
    state: TrainerState,
    micro_batch: int,
    rows: list[int],
    where: str = "loss",
) -> None:
    shown = ", ".join(str(r) for r in rows[:8]) + (", ..." if len(rows) > 8 else "")
    message = (
        f"Non-finite {where} (loss {loss.item()}) at step {state.step + 1}, micro batch {micro_batch}, "
        f"pair rows {shown}."
    )
    if policy == "stop":
        raise TrainingError(
            f"{message} Training stopped; no weights from this step were saved. Lower training.learning_rate, "
            "use training.precision=no, or set training.on_nonfinite=skip to skip such batches."
        )
    state.skipped_batches += 1
    logger.warning("%s Skipped this micro batch (training.on_nonfinite=skip).", message)


def _evaluate_and_keep(
    recipe: Recipe,
    model: SentenceTransformer,
    run_dir: Path,
    state: TrainerState,
    dev_scorer: DevScorer | None,
    last: bool,
) -> None:
    """Score the model on the dev set and save it when it is the best so far (or the last, without keep_best)."""
    keep_best = recipe.training.keep_best and dev_scorer is not None
    if dev_scorer is not None:
        score = dev_scorer(model)
        state.history[-1]["stsb_dev"] = score
        logger.info("step %d: STS-B dev Spearman %.2f", state.step, score)
        if keep_best and (state.best_score is None or score > state.best_score):
            state.best_score, state.best_step = score, state.step
            save_encoder(model, run_dir / "model")
    if last and not keep_best:
        state.best_step = state.step
        save_encoder(model, run_dir / "model")
