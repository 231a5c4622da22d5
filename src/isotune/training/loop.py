"""The training loop: Accelerate, gradient accumulation, schedule, non-finite checks, evaluation, checkpoints."""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, broadcast_object_list, set_seed
from sentence_transformers import SentenceTransformer
from tqdm.auto import tqdm
from transformers import get_scheduler

from isotune.distributed import all_processes_agree
from isotune.encoder import save_encoder
from isotune.errors import ConfigError, TrainingError
from isotune.recipe import Recipe
from isotune.tokens import TokenCache
from isotune.training.batches import PairBatcher
from isotune.training.cached import CachedEmbeddings
from isotune.training.checkpoint import TrainerState, list_checkpoints, load_checkpoint, save_checkpoint
from isotune.training.ema import EmaModel
from isotune.training.embedding import embed_by_length
from isotune.training.objective import compute_global_objective, objective_at_step
from isotune.training.optimizer import make_optimizer
from isotune.training.regularizers import L2SPPenalty, check_regularizers_supported, freeze_lower_layers

logger = logging.getLogger(__name__)

# Scores a model during training: "stsb_dev" (Spearman x100), and "average_cosine" and "uniformity" of the
# geometry sentences when the scorer measures them.
DevScorer = Callable[[SentenceTransformer], dict[str, float]]


def make_accelerator(recipe: Recipe) -> Accelerator:
    """Create the Accelerator; the launch configuration (processes, DDP, FSDP, DeepSpeed) comes from the
    environment that `accelerate launch` sets, and the recipe's precision overrides the launch config's."""
    # Hugging Face encoders carry parameters that sentence embeddings never use (BERT's pooler, for one);
    # DDP raises at the second step unless find_unused_parameters is set.
    ddp_kwargs = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(
        mixed_precision=recipe.training.precision,
        gradient_accumulation_steps=recipe.training.gradient_accumulation_steps,
        kwargs_handlers=[ddp_kwargs],
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes == 1:
        # Each process would train alone and all of them would write the same run folder.
        raise ConfigError(
            f"The launcher started {launched} processes (WORLD_SIZE={launched}), but Accelerate joined them in no "
            "process group. Without a GPU, set ACCELERATE_USE_CPU=true in the environment of accelerate launch "
            "--multi_gpu (see docs/multi_gpu.md)."
        )
    return accelerator


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
    """Train `model` on `pairs` for `recipe.training.max_steps` optimizer steps, on every process of the launch.

    With N processes each optimizer step takes a global batch of N x `batch_size` pairs from one shared,
    seeded order, and process k trains on rows k*batch_size to (k+1)*batch_size. Only the main process
    evaluates and writes the model; checkpoints are written by all processes together.

    The model saved to `run_dir/model` is the evaluated step with the best dev score when
    `training.keep_best` is set and a `dev_scorer` is given, else the last step.

    Raises:
        TrainingError: on a non-finite loss with `training.on_nonfinite=stop`; nothing from that step is saved.
        ConfigError: when the launch cannot run the recipe (cached mode under DeepSpeed, too few pairs).
    """
    config = recipe.training
    # device_specific adds the process index to the seed, so processes draw different dropout masks;
    # with one process the seed is unchanged.
    set_seed(config.seed, device_specific=True)
    _check_launch(recipe, accelerator, len(pairs))
    if config.gradient_accumulation_steps > 1 and accelerator.is_main_process:
        logger.warning(
            "gradient_accumulation_steps=%d: uniformity and InfoNCE compare only the pairs of a micro batch, "
            "so accumulation grows the effective batch for the gradient but not the number of negatives "
            "(training.cached does both).",
            config.gradient_accumulation_steps,
        )
    batcher = PairBatcher(len(pairs), config.batch_size * accelerator.num_processes, config.seed)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        # DeepSpeed reads its micro batch size from a prepared DataLoader, and this loop prepares none.
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = config.batch_size
    check_regularizers_supported(config, accelerator)
    frozen = freeze_lower_layers(model, config.freeze_layers)
    if frozen and accelerator.is_main_process:
        logger.info("Froze %d parameters (training.freeze_layers=%d).", frozen, config.freeze_layers)
    # Made from the model as passed in, the base model even on --resume, since the checkpoint loads later.
    l2sp = L2SPPenalty(model, config.l2sp) if config.l2sp else None
    # Only the main process evaluates and saves, so only it keeps the averaged weights.
    ema = EmaModel(model, config.ema_decay) if config.ema_decay is not None and accelerator.is_main_process else None
    optimizer = make_optimizer(model, config, accelerator)
    tokens = TokenCache(model)  # each distinct text is tokenised once per run
    scheduler = get_scheduler(
        config.scheduler,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * config.max_steps),
        num_training_steps=config.max_steps,
    )
    # The scheduler is stepped once per optimizer step by this loop, not by Accelerate (which steps it once
    # per process). Its state goes into the JSON trainer state: Accelerate would pickle it and unpickle it
    # with weights_only=False on resume, which runs whatever code a tampered checkpoint holds.
    full_copy = copy.deepcopy(model) if _parameters_sharded(accelerator) and accelerator.is_main_process else None
    model, optimizer = accelerator.prepare(model, optimizer)

    checkpoint_root = run_dir / "checkpoints"
    state = TrainerState(recipe_fingerprint=fingerprint, num_processes=accelerator.num_processes)
    if resume:
        checkpoints = list_checkpoints(checkpoint_root)
        if checkpoints:
            state = load_checkpoint(accelerator, checkpoints[-1], fingerprint, allow_other_recipe=allow_other_recipe)
            if state.step > config.max_steps:
                raise ConfigError(
                    f"Checkpoint {checkpoints[-1]} is at step {state.step}, "
                    f"past training.max_steps={config.max_steps}; "
                    f"set training.max_steps to at least {state.step} to continue it."
                )
            scheduler.load_state_dict(state.scheduler)
            if ema is not None:
                ema.restore(checkpoints[-1], accelerator.unwrap_model(model))
            if accelerator.is_main_process:
                logger.info("Resumed from %s at step %d.", checkpoints[-1], state.step)
        elif accelerator.is_main_process:
            logger.warning("--resume: no checkpoint in %s, so training starts again from step 0.", checkpoint_root)

    model.train()
    progress = tqdm(
        total=config.max_steps,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not accelerator.is_main_process,
    )
    while state.step < config.max_steps:
        step_logs = _optimizer_step(recipe, accelerator, model, optimizer, batcher, pairs, state, l2sp, tokens)
        scheduler.step()
        state.step += 1
        state.scheduler = scheduler.state_dict()
        if ema is not None:
            ema.update(accelerator.unwrap_model(model))
        progress.update(1)
        progress.set_postfix(
            loss=f"{step_logs['loss']:.4f}",
            align=f"{step_logs['alignment']:.4f}",
            unif=f"{step_logs['uniformity']:.4f}",
            lr=f"{scheduler.get_last_lr()[0]:.2e}",
        )
        state.history.append({"step": state.step, "lr": scheduler.get_last_lr()[0], **step_logs})

        last = state.step == config.max_steps
        if last or (config.eval_every and state.step % config.eval_every == 0):
            main_model = ema.model if ema is not None else _model_for_main(accelerator, model, full_copy)
            if accelerator.is_main_process:
                _evaluate_and_keep(recipe, main_model, run_dir, state, dev_scorer, last)
            accelerator.wait_for_everyone()
        if config.checkpoint_every and (state.step % config.checkpoint_every == 0 or last):
            write_ema = ema.save if ema is not None else None
            save_checkpoint(accelerator, checkpoint_root, state, keep=config.keep_checkpoints, write_extra=write_ema)
    progress.close()
    if accelerator.is_main_process and state.best_score is not None and not state.best_qualified:
        logger.warning(
            "No evaluated step had an average cosine of at most training.keep_best_max_average_cosine=%g, so the "
            "saved model is the step with the best STS-B dev score of all (step %d).",
            config.keep_best_max_average_cosine,
            state.best_step,
        )
    # Decided on the main process, because the others may not see its files on a multi-machine launch.
    model_missing = [not (run_dir / "model").is_dir()]
    if accelerator.num_processes > 1:
        broadcast_object_list(model_missing)
    if model_missing[0]:
        main_model = ema.model if ema is not None else _model_for_main(accelerator, model, full_copy)
        if accelerator.is_main_process:
            save_encoder(main_model, run_dir / "model")
    accelerator.wait_for_everyone()
    return state


def _check_launch(recipe: Recipe, accelerator: Accelerator, num_pairs: int) -> None:
    config = recipe.training
    if config.cached and accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ConfigError(
            "training.cached is not supported under DeepSpeed, whose backward also steps the optimizer, so the "
            "per-chunk backward passes of cached mode would each take a step. Launch with DDP or FSDP "
            "(recipes/launch/multi_gpu.yaml or fsdp.yaml), or set training.cached=false."
        )
    global_batch = config.batch_size * accelerator.num_processes
    if accelerator.num_processes > 1 and num_pairs < global_batch:
        raise ConfigError(
            f"{num_pairs} pairs are fewer than one global batch of {accelerator.num_processes} processes x "
            f"training.batch_size={config.batch_size}; lower the batch size or provide more pairs."
        )


def _parameters_sharded(accelerator: Accelerator) -> bool:
    """Return True when no single process has the full weights (FSDP, DeepSpeed ZeRO stage 3)."""
    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3


def _model_for_main(
    accelerator: Accelerator, model: torch.nn.Module, full_copy: SentenceTransformer | None
) -> SentenceTransformer | None:
    """Return a model with the full current weights on the main process (None on the others).

    Under FSDP or ZeRO stage 3 every process must take part in gathering the weights, which are then loaded
    into `full_copy`, a copy of the encoder made on the main process before training.
    """
    if not _parameters_sharded(accelerator):
        return accelerator.unwrap_model(model) if accelerator.is_main_process else None
    # NOTE: this path has not been run: FSDP and DeepSpeed need GPUs, and none was available when it was
    # written. DeepSpeed ZeRO 3 also needs stage3_gather_16bit_weights_on_model_save in its config.
    weights = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return None
    full_copy.load_state_dict(weights)
    return full_copy


def _optimizer_step(
    recipe: Recipe,
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batcher: PairBatcher,
    pairs: list[tuple[str, str]],
    state: TrainerState,
    l2sp: L2SPPenalty | None = None,
    tokens: TokenCache | None = None,
) -> dict[str, float]:
    """Run the micro batches of one optimizer step and return the mean of each part of the objective.

    The parts are loss, alignment, uniformity and any other part the objective returns, plus the L2-SP
    penalty when it is on.

    Every process returns the same values: the objective of the global batch when embeddings are gathered,
    else the mean over processes of each process's objective.
    """
    config = recipe.training
    totals = {"loss": 0.0, "alignment": 0.0, "uniformity": 0.0}
    used = 0
    penalty = None
    for micro in range(config.gradient_accumulation_steps):
        micro_batch = state.step * config.gradient_accumulation_steps + micro
        global_rows = batcher.indices(micro_batch)
        start = accelerator.process_index * config.batch_size
        rows = global_rows[start : start + config.batch_size]
        with accelerator.accumulate(model):
            parts = _micro_batch(recipe, accelerator, model, pairs, rows, global_rows, state, micro_batch, tokens)
            if parts is None:
                optimizer.zero_grad(set_to_none=True)
                continue
            if accelerator.sync_gradients and l2sp is not None:
                penalty = l2sp.add_gradient(accelerator.unwrap_model(model), _loss_scale(accelerator))
            if accelerator.sync_gradients and config.max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            if accelerator.sync_gradients and not all_processes_agree(accelerator, _gradients_finite(model)):
                _handle_nonfinite(config.on_nonfinite, parts["loss"], state, micro_batch, rows, where="gradient")
                optimizer.zero_grad(set_to_none=True)
                continue
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for key, value in parts.items():
            totals[key] = totals.get(key, 0.0) + value.item()
        used += 1
    if used:
        means = {key: value / used for key, value in totals.items()}
    else:
        # Every micro batch was skipped, so no loss was computed: log NaN (null in JSON files), not 0.
        means = dict.fromkeys(totals, math.nan)
    if accelerator.num_processes > 1 and not _gathers(recipe, accelerator):
        reduced = accelerator.reduce(torch.tensor(list(means.values()), device=accelerator.device), "mean")
        means = dict(zip(means, reduced.tolist(), strict=True))
    if penalty is not None:
        means["l2sp"] = penalty  # the same on every process, so it is added after the reduction
    return means


def _loss_scale(accelerator: Accelerator) -> float:
    """Return the factor that fp16 loss scaling has applied to the gradients so far (1 without it)."""
    # NOTE: the fp16 case has not run yet, because fp16 needs a GPU; the L2-SP tests cover fp32 on the CPU.
    return accelerator.scaler.get_scale() if accelerator.scaler is not None else 1.0


def _gathers(recipe: Recipe, accelerator: Accelerator) -> bool:
    return recipe.training.gather_across_processes and accelerator.num_processes > 1


def _micro_batch(
    recipe: Recipe,
    accelerator: Accelerator,
    model: torch.nn.Module,
    pairs: list[tuple[str, str]],
    rows: list[int],
    global_rows: list[int],
    state: TrainerState,
    micro_batch: int,
    tokens: TokenCache | None = None,
) -> dict[str, torch.Tensor] | None:
    """Embed this process's pairs, compute the objective and back-propagate it; None when it was skipped."""
    config = recipe.training
    texts = [pairs[i][0] for i in rows] + [pairs[i][1] for i in rows]
    cache = None
    if config.cached:
        cache = CachedEmbeddings(accelerator, model, texts, config.forward_chunk_size, tokens)
        embeddings = cache.embeddings
    else:
        embeddings = embed_by_length(accelerator, model, texts, config.forward_chunk_size, tokens)
    gather = _gathers(recipe, accelerator)
    objective_rows = global_rows if gather else rows
    objective_texts = ([pairs[i][0] for i in objective_rows], [pairs[i][1] for i in objective_rows])
    x, y = embeddings[: len(rows)], embeddings[len(rows) :]  # [batch, dim] each, L2-normalised
    objective = objective_at_step(recipe.objective, state.step)
    parts = compute_global_objective(objective, x, y, objective_texts, gather=gather)
    if recipe.objective.lambda_warmup_steps:
        parts["lambda"] = torch.tensor(objective.lam)  # logged while lambda ramps up
    loss = parts["loss"]
    if not all_processes_agree(accelerator, bool(torch.isfinite(loss))):
        # NOTE: skipping is tested with one process and with 2 CPU processes under DDP (gloo), not under
        # FSDP or DeepSpeed, which need GPUs.
        _handle_nonfinite(config.on_nonfinite, loss, state, micro_batch, rows)
        return None
    # Every process computes the same gathered loss but back-propagates only into its own embeddings, and
    # DDP averages the gradients over processes, so the factor restores the gradient of the global loss.
    scaled = loss * accelerator.num_processes if gather else loss
    if cache is None:
        accelerator.backward(scaled)
    else:
        (embedding_grad,) = torch.autograd.grad(scaled, embeddings)
        cache.backward(accelerator, model, embedding_grad)
    return {key: value.detach() for key, value in parts.items()}


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
    """Score the model on the dev set and save it when it is the best so far (or the last, without keep_best).

    With `training.keep_best_max_average_cosine`, a step whose average cosine is within the bound beats any
    step that is not, and STS-B dev decides between steps on the same side of the bound.
    """
    keep_best = recipe.training.keep_best and dev_scorer is not None
    if dev_scorer is not None:
        scores = dev_scorer(model)
        state.history[-1].update(scores)
        score = scores["stsb_dev"]
        geometry = (
            f", average cosine {scores['average_cosine']:.3f}, uniformity {scores['uniformity']:.3f}"
            if "average_cosine" in scores
            else ""
        )
        logger.info("step %d: STS-B dev Spearman %.2f%s", state.step, score, geometry)
        bound = recipe.training.keep_best_max_average_cosine
        qualified = bound is None or scores.get("average_cosine", math.inf) <= bound
        if keep_best and (state.best_score is None or (qualified, score) > (state.best_qualified, state.best_score)):
            state.best_score, state.best_step, state.best_qualified = score, state.step, qualified
            save_encoder(model, run_dir / "model")
    if last and not keep_best:
        state.best_step = state.step
        save_encoder(model, run_dir / "model")
