"""Training throughput: the paper's schedule against vm's, side by side, on one device.

    python benchmarks/throughput.py                   # every shape and lever on this device
    python benchmarks/throughput.py --compile         # also torch.compile (slow to warm up)
    python benchmarks/throughput.py --quick           # tiny CPU smoke run (checks the script)

Shapes (data resident on the device, random values, the real vm training step):
  image   3×32×32 pixels, batch 256: the paper's viewmaker + CIFAR ResNet-18
  audio   1 s of 16 kHz audio → 64-band log-mel (spectrogram view space), batch 128
  sensor  6 channels × 128 steps (signal view space, 1-D ResNet-18), batch 128

Levers, each added to the previous row: one pass with gradient reversal instead of the paper's
two passes; bf16 autocast; channels-last memory; torch.compile; a bigger batch. For every
shape, a last row times what `vm train` does by default (`--views auto`): learned
transforms instead of the viewmaker, same encoder, the device's default precision (on a CPU
also in the other one: the pair behind `--precision auto`). For every row:
samples/s (median of timed chunks after warm-up), the ratio to the paper's schedule, the share
of step time spent gathering the batch (the data path), and the fraction of the device's
measured bf16 matrix-multiply peak (FLOPs counted once per step by torch.utils.flop_counter).
Prints a table last; `--out FILE.json` keeps every number.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmcli.config import TrainConfig  # noqa: E402
from vmcli.data import get_modality  # noqa: E402
from vmcli.data.audio import LogMelSpace  # noqa: E402
from vmcli.data.image import PixelSpace  # noqa: E402
from vmcli.data.sensor import SignalSpace  # noqa: E402
from vmcli.devices import auto_precision, cpu_computes_bf16, resolve_device  # noqa: E402
from vmcli.nn.transforms import create_transforms  # noqa: E402
from vmcli.pipeline import build_encoder, build_viewmaker  # noqa: E402
from vmcli.training import Compiler, Job, prepare, train_step  # noqa: E402


@dataclass(frozen=True)
class Variant:
    name: str
    alternating: bool = False
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    batch: int | None = None  # None: the shape's default
    views: str = "viewmaker"  # or learned-transforms: what --views auto trains on every shape


PAPER = Variant("paper: 2 passes, fp32", alternating=True)  # fp32 rows: TF32 off
LADDER = [
    PAPER,
    Variant("1 pass (grad reversal), fp32"),
    Variant("1 pass, bf16", precision="bf16"),
    Variant("1 pass, bf16, channels-last", precision="bf16", channels_last=True),
]


def shapes(quick: bool) -> dict[str, dict]:
    if quick:
        return {
            "image": {
                "space": PixelSpace({"channels": 3, "size": 16}),
                "raw": (3, 16, 16),
                "uint8": True,
                "batch": 8,
                "n": 32,
            },
            "audio": {
                "space": LogMelSpace({"sample_rate": 8000, "clip_samples": 4000, "n_mels": 32}),
                "raw": (1, 4000),
                "uint8": False,
                "batch": 8,
                "n": 32,
            },
            "sensor": {
                "space": SignalSpace({"columns": list("abcdef"), "window": 64}),
                "raw": (6, 64),
                "uint8": False,
                "batch": 8,
                "n": 32,
            },
        }
    return {
        "image": {
            "space": PixelSpace({"channels": 3, "size": 32}),
            "raw": (3, 32, 32),
            "uint8": True,
            "batch": 256,
            "n": 8192,
        },
        "audio": {
            "space": LogMelSpace({"sample_rate": 16000, "clip_samples": 16000, "n_mels": 64}),
            "raw": (1, 16000),
            "uint8": False,
            "batch": 128,
            "n": 2048,
        },
        "sensor": {
            "space": SignalSpace({"columns": list("abcdef"), "window": 128}),
            "raw": (6, 128),
            "uint8": False,
            "batch": 128,
            "n": 4096,
        },
    }


def make_job(
    shape: dict, variant: Variant, device: torch.device, encoder: str, width: int
) -> tuple[Job, torch.Tensor, int]:
    g = torch.Generator().manual_seed(0)
    n = shape["n"]
    if shape["uint8"]:
        x = torch.randint(0, 256, (n, *shape["raw"]), generator=g, dtype=torch.uint8)
    else:
        x = 0.1 * torch.randn((n, *shape["raw"]), generator=g)
    # each variant gets its own CPU copy of the view space: prepare() moves the space it is
    # given to the device, and a shared one would leave the next variant's fit() mismatched
    space = copy.deepcopy(shape["space"])
    space.fit(x[:512])
    batch = variant.batch or shape["batch"]
    cfg = TrainConfig(
        data="",
        views=variant.views,
        batch_size=batch,
        encoder=encoder,
        viewmaker_width=width,
        alternating=variant.alternating,
        precision=variant.precision,
        channels_last=variant.channels_last,
        compile=variant.compile,
        device=str(device),
    )
    torch.manual_seed(0)
    enc = build_encoder(encoder, space, tuple(x.shape[1:]))
    if variant.views == "learned-transforms":
        modality = {LogMelSpace: "audio", PixelSpace: "image"}.get(type(space), "sensor")
        # the budget `vm train` gives this modality on auto (the recipe's total for audio)
        tf = create_transforms(modality, get_modality(modality).default_transforms_budget)
        job = Job(cfg, x, space, enc, None, None, device, transforms=tf)
        job.reference_transforms = copy.deepcopy(tf)
        return job, x.to(device), batch
    vm = build_viewmaker(space, 0.05, width)
    job = Job(cfg, x, space, enc, vm, None, device)
    return job, x.to(device), batch


def ready(job: Job) -> object:
    """prepare() the job as `vm train` does, and compile its networks when the variant asks:
    compilation lives in training's Compiler, not in prepare(), so a compiled row must ask
    for it here (without this, a "compiled" row would time the eager step)."""
    opt = prepare(job)
    if job.cfg.compile:
        # each compiled row starts from nothing: Dynamo would otherwise reuse the previous
        # row's graphs, or recompile them with dynamic shapes, and time neither as `vm train`
        # (one process, one shape) runs them
        torch._dynamo.reset()
        Compiler(job)
    return opt


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(job: Job, x: torch.Tensor, batch: int, opt, autocast) -> float:
    """FLOPs of one training step (both passes for the paper's schedule), per sample."""
    from torch.utils.flop_counter import FlopCounterMode

    gen = torch.Generator(x.device).manual_seed(1)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(job, x[:batch], gen, opt, autocast)
    return counter.get_total_flops() / batch


def set_tf32(device: torch.device, allowed: bool) -> None:
    """Rows labelled fp32 run true fp32: PyTorch's default lets cuDNN convolutions use TF32."""
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = allowed
        torch.backends.cuda.matmul.allow_tf32 = allowed


def viewmaker_share(job: Job, x: torch.Tensor, batch: int, autocast, steps: int) -> float:
    """Share of a step's time spent in the viewmaker: forward + backward of the viewmaker
    alone on both views of a batch, over a whole step, timed the same way."""
    vm, device = job.viewmaker, x.device
    gen = torch.Generator(device).manual_seed(3)

    def vm_only() -> None:
        with autocast:
            inputs = job.space.to_view(torch.cat([x[:batch], x[:batch]]))
            y = vm.raw_output(inputs, vm.sample_noise(inputs, gen))
        y.float().sum().backward()

    for _ in range(2):
        vm_only()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        vm_only()
    sync(device)
    vm.zero_grad(set_to_none=True)
    return (time.perf_counter() - t0) / steps


def time_variant(shape: dict, variant: Variant, device: torch.device, args) -> dict:
    set_tf32(device, variant.precision != "fp32")
    job, x, batch = make_job(shape, variant, device, args.encoder, args.width)
    opt = ready(job)
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=variant.precision == "bf16"
    )
    gen = torch.Generator(device).manual_seed(1)
    n = x.shape[0]
    steps_per_epoch = n // batch

    def batches():
        g = torch.Generator(device).manual_seed(2)
        while True:
            perm = torch.randperm(n, generator=g, device=device)
            for s in range(steps_per_epoch):
                yield x[perm[s * batch : (s + 1) * batch]]

    it = batches()
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        train_step(job, next(it), gen, opt, autocast)
    sync(device)
    warmup_s = time.perf_counter() - t0
    rates = []
    for _ in range(args.chunks):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            train_step(job, next(it), gen, opt, autocast)
        sync(device)
        rates.append(args.steps * batch / (time.perf_counter() - t0))
    # the data path alone: the same index gathers and conversion, nothing else
    sync(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        raw = next(it)
        job.space.to_view(raw)
    sync(device)
    gather_s = (time.perf_counter() - t0) / args.steps
    step_s = batch / statistics.median(rates)
    vm_s = None
    if not variant.compile and not variant.alternating and job.viewmaker is not None:
        vm_s = viewmaker_share(job, x, batch, autocast, args.steps)
    flops = None
    if not variant.compile:
        flops = count_flops(job, x, batch, opt, autocast)
    return {
        "variant": variant.name,
        "views": variant.views,
        "batch": batch,
        "samples_per_s": statistics.median(rates),
        "spread": (min(rates), max(rates)),
        "data_share": gather_s / step_s,
        "viewmaker_share": vm_s / step_s if vm_s is not None else None,
        "gflop_per_sample": flops / 1e9 if flops else None,
        "warmup_s": warmup_s,
    }


def compiled(v: Variant) -> Variant:
    return replace(v, name=v.name + ", compiled", compile=True)


def at_batch(v: Variant, batch: int) -> Variant:
    return replace(v, name=f"{v.name}, batch {batch}", batch=batch)


def plan_rows(
    names: list[str],
    on_cpu: bool,
    compiled_rows: bool,
    big_batch: int,
    bf16: bool,
    cpu_bf16: bool = False,
) -> list[tuple[str, Variant]]:
    """Which (shape, variant) rows to time, in order.

    Per shape: the eager ladder and the default (`--views auto`: learned transforms, at the
    device's default precision). Images lead with the paper's schedule and the default at both
    batches, eager then compiled, so the rows the speed targets are about start while time is
    left; then the viewmaker's ladder and its compiled rows. The compiled rows of the other
    shapes (60-90 s warm-up each) come last, run only if the time budget allows."""

    def defaults(name: str) -> list[Variant]:
        """The default step in `vm train`'s auto precision for this shape and, on the CPU
        (unless bf16 rows are left out), in the other one: the pair `--precision auto` on a
        CPU rests on."""
        device = torch.device("cpu") if on_cpu else torch.device("cuda", 0)
        precision = auto_precision(device, get_modality(name).cpu_bf16, cpu_has_bf16=cpu_bf16)
        auto = Variant(
            f"views auto: learned transforms, 1 pass, {precision}"
            + ("" if on_cpu else ", channels-last"),
            precision=precision,
            channels_last=not on_cpu,
            views="learned-transforms",
        )
        other = "fp32" if precision == "bf16" else "bf16"
        contrast = replace(auto, name=auto.name.replace(precision, other), precision=other)
        return [auto, contrast] if on_cpu and bf16 else [auto]

    ladder = [v for v in LADDER if bf16 or v.precision != "bf16"]
    fastest = ladder[-1]  # the viewmaker's last lever: its compiled and big-batch rows build on it
    todo: list[tuple[str, Variant]] = []
    later: list[tuple[str, Variant]] = []
    for name in names:
        autos = defaults(name)
        auto = autos[0]
        if name != "image":
            todo += [(name, v) for v in (*ladder, *autos)]
            if compiled_rows:
                later.append((name, compiled(auto)))
            continue
        rows = [ladder[0], *autos]
        if big_batch:
            rows.append(at_batch(auto, big_batch))
        if compiled_rows:
            rows.append(compiled(auto))
            if big_batch:
                rows.append(at_batch(compiled(auto), big_batch))
        rows += ladder[1:]
        if compiled_rows:
            rows.append(compiled(fastest))
        if big_batch:
            rows.append(at_batch(fastest, big_batch))
            if compiled_rows:
                rows.append(at_batch(compiled(fastest), big_batch))
        todo += [(name, v) for v in rows]
    return todo + later


def bf16_peak(device: torch.device) -> float | None:
    """Measured dense bf16 matmul rate (FLOP/s), 8192³, median of 10 after warm-up."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    stream = torch.cuda.current_stream(device)  # the events must time `device`, not cuda:0
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        a @ b
        end.record(stream)
        torch.cuda.synchronize(device)
        times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192**3 / statistics.median(times)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, cwd=Path(__file__).parent
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--shapes", default="image,audio,sensor")
    p.add_argument(
        "--compile", action="store_true", help="add torch.compile rows (60-90 s warm-up each)"
    )
    p.add_argument(
        "--big-batch", type=int, default=1024, help="extra image row at this batch (0: none)"
    )
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--width", type=int, default=32, help="viewmaker width (the paper: 32)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--steps", type=int, default=20, help="steps per timed chunk")
    p.add_argument("--chunks", type=int, default=3)
    p.add_argument(
        "--quick", action="store_true", help="tiny shapes and steps on the CPU: checks the script"
    )
    p.add_argument(
        "--no-bf16",
        action="store_true",
        help="leave out the bf16 rows (CPUs without native bf16 emulate it, 8-9x slower)",
    )
    p.add_argument(
        "--only",
        default="",
        help="time only the rows whose name contains this text (and the paper's, for the ratio)",
    )
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--time-budget",
        type=float,
        default=float("inf"),
        help="seconds; compiled rows need ~100 s and are skipped past it",
    )
    args = p.parse_args()
    if args.quick:
        args.device, args.encoder, args.width = "cpu", "small", 8
        args.warmup, args.steps, args.chunks, args.big_batch = 1, 2, 2, 16
    device = resolve_device(args.device)
    peak = bf16_peak(device)
    results = {
        "device": device_name(device),
        "torch": torch.__version__,
        "commit": commit(),
        "bf16_peak_tflops": peak / 1e12 if peak else None,
        "rows": [],
    }
    print(
        f"device: {results['device']}  torch {torch.__version__}  commit {results['commit']}"
        + (f"  measured bf16 peak {peak / 1e12:.0f} TFLOP/s" if peak else ""),
        flush=True,
    )
    all_shapes = shapes(args.quick)
    todo = plan_rows(
        args.shapes.split(","),
        on_cpu=device.type == "cpu",
        compiled_rows=args.compile,
        big_batch=args.big_batch,
        bf16=not args.no_bf16,
        cpu_bf16=device.type == "cpu" and cpu_computes_bf16(),
    )
    if args.only:
        todo = [(n, v) for n, v in todo if v is PAPER or args.only in v.name]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))  # `timeout` → still print the table
    t0 = time.perf_counter()
    try:
        for name, variant in todo:
            if variant.compile and time.perf_counter() - t0 > args.time_budget - 100:
                results["rows"].append(
                    {"shape": name, "variant": variant.name, "error": "not run: time budget"}
                )
                continue
            try:
                row = time_variant(all_shapes[name], variant, device, args)
            except Exception as e:  # keep measuring the other rows; report the failure
                row = {"variant": variant.name, "error": f"{type(e).__name__}: {e}"[:300]}
            row["shape"] = name
            if "samples_per_s" in row:
                paper = next(
                    (
                        r
                        for r in results["rows"]
                        if r.get("shape") == name
                        and r["variant"] == PAPER.name
                        and "samples_per_s" in r
                    ),
                    None,
                )
                if variant is PAPER:
                    paper = row
                row["vs_paper"] = row["samples_per_s"] / paper["samples_per_s"] if paper else None
                gflop = row["gflop_per_sample"] or next(
                    (
                        r["gflop_per_sample"]
                        for r in results["rows"]
                        if r.get("shape") == name
                        and r.get("gflop_per_sample")
                        and r["variant"] != PAPER.name
                        and r.get("views") == variant.views
                    ),
                    None,
                )
                row["peak_fraction"] = (
                    row["samples_per_s"] * gflop * 1e9 / peak if (peak and gflop) else None
                )
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2))
    finally:
        print_table(results)


def print_table(results: dict) -> None:
    print()
    print(
        "| shape | schedule | batch | samples/s | × paper | data share | viewmaker share | GFLOP/sample | of bf16 peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results["rows"]:
        if "error" in r:
            print(f"| {r['shape']} | {r['variant']} | | {r['error'][:80]} | | | | | |")
            continue
        frac = f"{100 * r['peak_fraction']:.1f} %" if r.get("peak_fraction") else "—"
        gf = f"{r['gflop_per_sample']:.2f}" if r.get("gflop_per_sample") else "—"
        vs = f"{r['vs_paper']:.2f}" if r.get("vs_paper") else "—"
        vms = f"{100 * r['viewmaker_share']:.0f} %" if r.get("viewmaker_share") else "—"
        print(
            f"| {r['shape']} | {r['variant']} | {r['batch']} | {r['samples_per_s']:,.0f} | {vs} | {100 * r['data_share']:.1f} % | {vms} | {gf} | {frac} |"
        )
    print(
        f"\n{results['device']}, torch {results['torch']}, commit {results['commit']}", flush=True
    )


if __name__ == "__main__":
    main()
