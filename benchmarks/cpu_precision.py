"""Does bf16 autocast (or channels-last) speed up CPU training? Measured, not assumed.

    python benchmarks/cpu_precision.py                 # image and sensor shapes, CPU defaults
    python benchmarks/cpu_precision.py --threads 2 --repeats 5

One forward + backward of the CPU-default networks (viewmaker width 16, small encoder) on one
batch, per precision and memory format, interleaved (so a busy machine slows every row
alike); seconds per step (median of repeats) and the viewmaker's share. A CPU with native
bf16 (avx512_bf16 / AMX) is what makes bf16 worth trying; the answer depends on the kernels
PyTorch has for these small convolutions, so it is measured per machine.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmcli.nn.encoders import create_encoder  # noqa: E402
from vmcli.nn.viewmaker import Viewmaker  # noqa: E402

SHAPES = {"image": (2, (256, 1, 28, 28)), "sensor": (1, (128, 6, 128))}


def cpu_flags() -> str:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    return ", ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512f") if f in flags) or "none"


def step(vm, enc, x: torch.Tensor, bf16: bool, cl: bool, encoder: bool) -> float:
    """Seconds for one forward + backward (viewmaker, then the encoder if asked)."""
    fmt = torch.channels_last if cl else torch.contiguous_format
    vm.to(memory_format=fmt)
    enc.to(memory_format=fmt)
    xx = x.contiguous(memory_format=fmt)
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = vm(xx)
        if encoder:
            out = enc(out)
    out.float().sum().backward()
    dt = time.perf_counter() - t0
    vm.zero_grad(set_to_none=True)
    enc.zero_grad(set_to_none=True)
    return dt


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--shapes", default="image,sensor")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"CPU {platform.processor() or platform.machine()}, {args.threads} threads, flags: "
        f"{cpu_flags()}, torch {torch.__version__}"
    )
    print("| shape | variant | s/step (vm + encoder) | s/step (vm only) | vs fp32 |")
    print("|---|---|---|---|---|")
    for name in args.shapes.split(","):
        dims, shape = SHAPES[name]
        torch.manual_seed(0)
        vm = Viewmaker(channels=shape[1], dims=dims, budget=0.05, width=16)
        enc = create_encoder("small", dims=dims, in_channels=shape[1], input_size=shape[2:])
        x = torch.rand(*shape)
        variants = {"fp32": (False, False), "bf16 autocast": (True, False)}
        if dims == 2:
            variants["fp32 channels-last"] = (False, True)

        times: dict[str, dict[str, list[float]]] = {v: {"all": [], "vm": []} for v in variants}
        for bf16, cl in variants.values():  # warm-up
            step(vm, enc, x, bf16, cl, True)
        for _ in range(args.repeats):
            for v, (bf16, cl) in variants.items():
                times[v]["all"].append(step(vm, enc, x, bf16, cl, True))
                times[v]["vm"].append(step(vm, enc, x, bf16, cl, False))
        base = statistics.median(times["fp32"]["all"])
        for v in variants:
            a, m = statistics.median(times[v]["all"]), statistics.median(times[v]["vm"])
            print(
                f"| {name} {tuple(shape)} | {v} | {a:.3f} | {m:.3f} ({100 * m / a:.0f} %) | {base / a:.2f}× |"
            )


if __name__ == "__main__":
    main()
