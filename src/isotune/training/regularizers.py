"""Ways to keep a fine-tuned encoder close to its base weights: frozen lower layers and the L2-SP penalty.

Both aim at the same trade-off: the uniformity term spreads the embeddings, and the closer the weights stay to
the base model, the less of its similarity structure (and STS accuracy) the spreading costs.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType
from transformers import PreTrainedModel

from isotune.errors import ConfigError
from isotune.recipe import TrainingConfig


def check_regularizers_supported(config: TrainingConfig, accelerator: Accelerator) -> None:
    """Reject L2-SP and EMA weights under FSDP and DeepSpeed, whose parameters and gradients are sharded.

    Raises:
        ConfigError: naming the key to unset or the launch to use instead.
    """
    sharded = accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    if not sharded:
        return
    for key, value, default in (("l2sp", config.l2sp, 0.0), ("ema_decay", config.ema_decay, None)):
        if value != default:
            raise ConfigError(
                f"training.{key}={value} is not supported under {accelerator.distributed_type.value}, which shards "
                "the parameters, so no process holds the whole weights to compare or average. Launch with DDP "
                f"(recipes/launch/multi_gpu.yaml) or set training.{key}={default if default is not None else 'null'}."
            )


def _transformer(model: torch.nn.Module) -> PreTrainedModel:
    transformer = next((module for module in model.modules() if isinstance(module, PreTrainedModel)), None)
    if transformer is None:
        raise ConfigError(
            "training.freeze_layers needs a Hugging Face transformer inside the model, and none was found; "
            "set training.freeze_layers=0."
        )
    return transformer


def _layers(transformer: PreTrainedModel) -> torch.nn.ModuleList:
    """Return the stack of transformer layers: the first ModuleList with `num_hidden_layers` entries."""
    count = transformer.config.num_hidden_layers
    # NOTE: this finds the layer stack of BERT-style encoders (encoder.layer, transformer.layer, layers). A model
    # with another ModuleList of the same length before its layers would get the wrong modules frozen.
    for module in transformer.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ConfigError(
        f"training.freeze_layers: no list of {count} layers found in {type(transformer).__name__}; "
        "set training.freeze_layers=0."
    )


def _embeddings(transformer: PreTrainedModel) -> torch.nn.Module:
    """Return the module with the input embeddings: the parent of the token embedding table (word, position
    and token-type embeddings and their LayerNorm in BERT), or the table alone when it sits at the top level."""
    table = transformer.get_input_embeddings()
    name = next(name for name, module in transformer.named_modules() if module is table)
    parent = name.rpartition(".")[0]
    return transformer.get_submodule(parent) if parent else table


def check_freeze_layers(model: torch.nn.Module, count: int) -> None:
    """Check that `count` layers of `model` can be frozen (0 always can).

    Raises:
        ConfigError: when `count` is negative or not below the model's number of layers.
    """
    if count == 0:
        return
    transformer = _transformer(model)
    check_freeze_count(count, transformer.config.num_hidden_layers, type(transformer).__name__)


def check_freeze_count(count: int, total: int, model_name: str) -> None:
    """Check that `count` frozen layers leave at least one of the `total` layers of `model_name` to train.

    Raises:
        ConfigError: when `count` is negative or not below `total`.
    """
    if not 0 <= count < total:
        raise ConfigError(
            f"Invalid training.freeze_layers={count}: {model_name} has {total} layers, so use 0 "
            f"(freeze nothing) to {total - 1}. Freezing all {total} would leave no layer to train."
        )


def freeze_lower_layers(model: torch.nn.Module, count: int) -> int:
    """Stop gradients to the input embeddings and the lowest `count` transformer layers; return the number of
    parameters frozen. `count` 0 freezes nothing.

    Call before the optimizer and `accelerator.prepare`, because DDP only synchronises the parameters that
    require gradients when it wraps the model.

    Raises:
        ConfigError: when `count` is negative or not below the model's number of layers.
    """
    check_freeze_layers(model, count)
    if count == 0:
        return 0
    transformer = _transformer(model)
    frozen = [*_embeddings(transformer).parameters()]
    for layer in _layers(transformer)[:count]:
        frozen.extend(layer.parameters())
    for parameter in frozen:
        parameter.requires_grad_(False)
    return sum(parameter.numel() for parameter in frozen)


class L2SPPenalty:
    """The L2-SP penalty `weight * sum ||theta - theta_0||^2` over the trainable parameters, where `theta_0`
    are the weights when the penalty was created (the base model's, when created before training starts).

    Xuhong Li, Yves Grandvalet and Franck Davoine, "Explicit Inductive Bias for Transfer Learning with
    Convolutional Networks", ICML 2018, arXiv:1802.01483. Keeps a copy of the trainable weights, as much
    memory as the model.
    """

    def __init__(self, model: torch.nn.Module, weight: float) -> None:
        self.weight = weight
        self.reference = {
            name: parameter.detach().clone() for name, parameter in model.named_parameters() if parameter.requires_grad
        }

    def add_gradient(self, model: torch.nn.Module, grad_scale: float = 1.0) -> float:
        """Add the penalty's gradient `2 * weight * (theta - theta_0)` to each parameter gradient; return the
        penalty before this step's update.

        Call once per optimizer step, after the gradients are complete (and all-reduced) and before clipping,
        so the penalty counts once whatever the gradient accumulation and the process count. `grad_scale` is
        the fp16 loss scale when the gradients are still scaled. Parameters without a gradient are left alone:
        AdamW does not move them, so they stay at `theta_0`.
        """
        squares = []
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                reference = self.reference.get(name)
                if reference is None:
                    continue
                difference = parameter - reference
                squares.append(difference.pow(2).sum())
                if parameter.grad is not None:
                    parameter.grad.add_(difference, alpha=2 * self.weight * grad_scale)
        return self.weight * float(torch.stack(squares).sum()) if squares else 0.0
