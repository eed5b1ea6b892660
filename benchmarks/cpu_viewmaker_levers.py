"""Cheaper viewmaker on the CPU? Time one forward + backward of the CPU-default viewmaker
(width 16, channels-last) under levers that keep what it can express, on the same batch and
noise, and check each gives the same δ.

    python benchmarks/cpu_viewmaker_levers.py --threads 1            # eager levers
    python benchmarks/cpu_viewmaker_levers.py --threads 1 --compile  # + torch.compile (minutes)

Levers: GroupNorm(C, C) for InstanceNorm (the same normalisation, another kernel), nearest ×2
upsampling by F.interpolate instead of expand + reshape, reflection padding by slicing and
concatenation (keeps channels-last) instead of ReflectionPad2d, and torch.compile (inductor).
Prints one row per lever: seconds per step (best of the timed repeats) and the speed-up.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import vmcli.nn.viewmaker as V


class _CatReflect(nn.Module):
    """Reflection padding by slicing + concatenation (the output keeps the input's layout)."""

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dim in range(2, x.ndim):
            n = x.shape[dim]
            lo = x.narrow(dim, 1, self.pad).flip(dim)
            hi = x.narrow(dim, n - 1 - self.pad, self.pad).flip(dim)
            x = torch.cat([lo, x, hi], dim=dim)
        return x


def _interp_up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _cat_conv(dims: int, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
    conv = nn.Conv1d if dims == 1 else nn.Conv2d
    return nn.Sequential(_CatReflect(kernel // 2), conv(cin, cout, kernel, stride))


LEVERS = {
    "baseline (InstanceNorm, expand upsample, ReflectionPad)": {},
    "GroupNorm(C, C)": {"_norm": lambda dims, c: nn.GroupNorm(c, c)},
    "F.interpolate upsample": {"upsample_nearest2x": _interp_up},
    "slice+cat reflection padding": {"_conv": _cat_conv},
}


ORIGINAL = {k: getattr(V, k) for k in ("_norm", "upsample_nearest2x", "_conv")}


def patched(patch: dict) -> None:
    """Swap the viewmaker module's helpers (build-time ones and the call-time upsample)."""
    for k, v in {**ORIGINAL, **patch}.items():
        setattr(V, k, v)


def build(channels: int) -> nn.Module:
    torch.manual_seed(0)
    vm = V.Viewmaker(channels, 2, 0.1, width=16, clamp=(0, 1))
    return vm.to(memory_format=torch.channels_last)


def time_steps(fn, x, noise, repeats: int) -> tuple[float, torch.Tensor]:
    w = torch.linspace(0, 1, x.shape[-1])
    times, d = [], None
    for _ in range(repeats + 1):  # the first call warms up
        t = time.perf_counter()
        d = fn(x, noise)
        (d * w).sum().backward()
        times.append(time.perf_counter() - t)
    return min(times[1:] or times), d.detach()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x = torch.rand(a.batch, a.channels, a.size, a.size).contiguous(
        memory_format=torch.channels_last
    )
    rows, ref = [], None
    for name, patch in LEVERS.items():
        patched(patch)
        try:
            vm = build(a.channels)
            noise = vm.sample_noise(x, torch.Generator().manual_seed(0))
            s, d = time_steps(vm.perturbation, x, noise, a.repeats)
        finally:
            patched({})
        ref = ref if ref is not None else (s, d)
        rows.append((name, s, (d - ref[1]).abs().max().item()))
    if a.compile:
        vm = build(a.channels)
        noise = vm.sample_noise(x, torch.Generator().manual_seed(0))
        fn = torch.compile(vm.perturbation)
        t = time.perf_counter()
        time_steps(fn, x, noise, 0)
        first = time.perf_counter() - t
        s, d = time_steps(fn, x, noise, a.repeats)
        rows.append(
            (f"torch.compile (first call {first:.0f} s)", s, (d - ref[1]).abs().max().item())
        )
    print(f"viewmaker fwd+bwd, {a.batch}×{a.channels}×{a.size}×{a.size}, {a.threads} thread(s)")
    print(f"{'lever':58s} {'s/step':>7s} {'speed-up':>8s} {'max |Δδ|':>9s}")
    for name, s, diff in rows:
        print(f"{name:58s} {s:7.3f} {ref[0] / s:7.2f}× {diff:9.1e}")


if __name__ == "__main__":
    main()
