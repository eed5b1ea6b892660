"""Which device to run on: one place, so augment and evaluation need not import the loop.

`resolve_device` always returns an *indexed* CUDA device (`cuda:0`, never bare `cuda`):
tensors report `cuda:0`, and `torch.device("cuda") != torch.device("cuda:0")`, so comparing
a tensor's device with an unindexed one silently says "elsewhere".
"""

from __future__ import annotations

import os

import torch
from torch import nn

from vmcli.errors import ConfigError

SUPPORTED = ("cpu", "cuda")  # device types vm is built and tested for (not mps, xpu, meta...)


def usable_cpu_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one: a container or
    `taskset` may allow fewer than the machine has)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_device(name: str) -> torch.device:
    """`auto` → the current GPU when there is one, else the CPU; `cuda` → `cuda:<current>`.
    A ConfigError for a device vm does not run on or that is not there."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"--device {name!r} is not a device PyTorch knows (use auto, cpu or cuda)"
        ) from None
    if device.type not in SUPPORTED:
        raise ConfigError(
            f"--device {name!r}: vm runs on the CPU or a CUDA GPU only (use auto, cpu, cuda or "
            "cuda:N)"
        )
    if device.type == "cuda" and device.index is not None:
        count = torch.cuda.device_count()
        if device.index >= count:
            raise ConfigError(
                f"--device {name}: PyTorch sees {count} CUDA GPU(s) (cuda:0 to cuda:{count - 1})"
            )
    return with_index(device)


def with_index(device: torch.device) -> torch.device:
    """`cuda` → `cuda:<current device>`; anything else unchanged."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def module_device(module: nn.Module) -> torch.device:
    """Where a module's parameters and buffers live (the CPU for a module that has none)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic in hardware (AVX512-BF16 or AMX). Without it,
    PyTorch emulates bf16 and autocast runs 8-9× slower than fp32 (benchmarks/RESULTS.md),
    so this decides whether bf16 is even worth considering on the CPU."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def auto_precision(
    device: torch.device, cpu_opt_in: bool = True, cpu_has_bf16: bool | None = None
) -> str:
    """What `--precision auto` trains in: bf16 autocast wherever the hardware computes bf16
    (CUDA GPUs; CPUs with AVX512-BF16 or AMX), fp32 elsewhere. `cpu_opt_in` False keeps such
    a CPU in fp32 too: a modality whose quality benchmark lost accuracy there says so
    (`Modality.cpu_bf16`). `cpu_has_bf16` None asks this CPU (`cpu_computes_bf16`); a
    benchmark planning for one passes the answer. The budget projection and the loss stay
    fp32 either way."""
    if device.type == "cuda":
        return "bf16"
    if device.type != "cpu" or not cpu_opt_in:
        return "fp32"
    has_bf16 = cpu_computes_bf16() if cpu_has_bf16 is None else cpu_has_bf16
    return "bf16" if has_bf16 else "fp32"
