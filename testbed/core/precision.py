"""Training precision: ``--precision fp32|bf16`` of `testbed train codec` and `testbed train akb`.

``bf16``: the forward pass runs under ``torch.autocast`` with bfloat16 (convolutions and matrix
products in bfloat16, weights, optimiser state, loss and gradients' accumulation in float32), and
model and batch use the channels-last memory layout that the CPU's bfloat16 convolution kernels
want. On this machine's CPU (AVX512-BF16) it trains codec v1 1.6x and the AKB codec 1.4x faster
than ``fp32`` (BENCHMARKS.md, "Training speed"); a CPU without bfloat16 instructions emulates them.
Validation, export and everything after training run in float32.
"""
from __future__ import annotations

import contextlib
import logging

import torch

from .trainargs import PRECISIONS


log = logging.getLogger(__name__)


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"--precision: must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("--precision bf16: this CUDA device does not support bfloat16")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("--precision bf16: this CPU has no bfloat16 instructions (avx512_bf16/amx_bf16); "
                    "training will be slower than with fp32")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bfloat16 instructions (AVX512-BF16 or AMX; Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def prepare(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The model in the memory layout of ``precision`` (channels-last for bf16)."""
    return model.to(memory_format=torch.channels_last) if precision == "bf16" else model


def batch(x: torch.Tensor, precision: str) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if precision == "bf16" else x


def autocast(precision: str, device: torch.device):
    """The context of a training forward pass."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
