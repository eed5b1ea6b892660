"""Are learned views good? One benchmark across images, audio and sensors.

    python benchmarks/quality.py --modality all                 # the full benchmark (GPU)
    python benchmarks/quality.py --modality sensor --seeds 3
    python benchmarks/quality.py --quick                        # CPU smoke run on examples/ (~2 min)

For each modality, on the same data, encoder, epochs and seeds, `vm train` runs with
`--views viewmaker` (every view space), `random` (the same viewmaker frozen at init: the control
that separates learned from random views), `handcrafted`, `both` and `none`; each encoder is then
frozen and probed (linear probe and kNN on pooled features), beside a random-init encoder of
the same architecture and probes on raw features. Splits avoid leakage:
  image   Fashion-MNIST, official train/test (Debian dataset-fashion-mnist)
  audio   instrument notes rendered from FluidR3 GM, 16 families, split by program
  sensor  seglearn smartwatch IMU windows, 7 exercises, split by subject
A validation split is held out of the *training* labels by group (random images, whole
programs, whole subjects) and is the only thing any choice looks at (e.g. the best budget);
test accuracy is reported, never used to choose.

Also: a budget sweep (viewmaker, ε ∈ 0.01 … 0.2) with a plot, and robustness: accuracy of the
probes under common corruptions of the test data. A `--time-budget` keeps the whole run inside
a device lease: work is done in priority order and what did not fit is reported as not run.
Results go to OUT/quality.json (after every run), OUT/quality.md and OUT/budget_sweep.png.
Incremental: run the same command again and finished runs are kept, not redone (`--fresh`
starts over), so a long benchmark can be completed in pieces.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import re
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vmcli.config import TrainConfig, parse_transforms_budget  # noqa: E402
from vmcli.console import console  # noqa: E402
from vmcli.data import MODALITIES, LoadOptions, TensorData, scan  # noqa: E402
from vmcli.devices import resolve_device  # noqa: E402
from vmcli.errors import ConfigError  # noqa: E402
from vmcli.evaluation import extract_features, fit_linear_probe, knn_accuracy  # noqa: E402
from vmcli.nn.transforms import FAMILIES as TRANSFORM_FAMILIES  # noqa: E402
from vmcli.pipeline import FeatureExtractor, build_encoder, load_encoder  # noqa: E402
from vmcli.plots import line_chart  # noqa: E402
from vmcli.session import train  # noqa: E402

BUDGETS = (0.01, 0.02, 0.05, 0.1, 0.2)
TARGETS = {  # learned views must beat their own control (random / fixed) by more than the seed spread
    "image": "viewmaker > random and learned-transforms > fixed-transforms by more than the seed spread; both ≥ handcrafted; every encoder above the random-init encoder",
    "audio": "viewmaker > random and learned-transforms > fixed-transforms by more than the seed spread; the best learned arm ≥ handcrafted",
    "sensor": "viewmaker > random and learned-transforms > fixed-transforms by more than the seed spread; the best learned arm ≥ handcrafted",
}


@dataclass
class Plan:
    modality: str
    data: Path
    view_spaces: tuple[str, ...]
    epochs: int
    batch_size: int | None
    seeds: list[int]
    budgets: tuple[float, ...]
    results: dict[str, Any] = field(default_factory=dict)


# -- data ----------------------------------------------------------------------------------------


def materialize(modality: str, quick: bool, data_root: Path) -> Path:
    """The benchmark's data folder, generated from packages if missing (no downloads)."""
    if quick:
        return (
            ROOT
            / "examples"
            / {"image": "fashion-mnist", "audio": "instruments", "sensor": "watch"}[modality]
        )
    out = (
        data_root / {"image": "fashion-mnist", "audio": "instruments", "sensor": "watch"}[modality]
    )
    if (out / "train").is_dir() and (out / "test").is_dir():
        return out
    scripts = {
        "image": [str(ROOT / "examples" / "make_fashion_mnist.py"), "--full"],
        "audio": [
            str(ROOT / "benchmarks" / "make_instruments.py"),
            "--velocities",
            "112",
            "--format",
            "flac",
        ],
        "sensor": [str(ROOT / "benchmarks" / "make_watch_windows.py"), "--no-baseline"],
    }
    console.print(f"materialising {modality} data into {out}")
    subprocess.run([sys.executable, *scripts[modality], "--out", str(out)], check=True)
    return out


def group_of(path: Path) -> str | None:
    """The leakage group of a file: an instrument program (p012_...) or a subject (s03_...)."""
    m = re.match(r"^([ps]\d+)_", path.name)
    return m.group(1) if m else None


def speaker_of(path: Path) -> str:
    """The file's stem: in layouts where each speaker says every class once (class/speaker.wav,
    e.g. the spoken digits), the stem names the speaker, so validation holds out whole voices."""
    return path.stem


def variant_of(path: Path) -> str:
    """The voice variant of a spoken-digit file (`<accent>_<variant>.wav`): the test split
    holds out whole variants, so validation must too (by stem, a variant held out with one
    accent was still in the fit set with the six others)."""
    return path.stem.split("_", 1)[-1]


def recording_of(path: Path, grouping) -> str | None:
    """What the probe's inner split must keep whole: a recording for sensor windows cut from
    one (`s03_r007_w001`: overlapping windows of one recording look alike), else the
    validation group."""
    m = re.match(r"^(s\d+_r\d+)_w\d+", path.name)
    return m.group(1) if m else grouping(path)


GROUPINGS = {"prefix": group_of, "stem": speaker_of, "variant": variant_of}


def fit_groups(items: list, fit_idx: list[int], grouping) -> torch.Tensor | None:
    """Group ids (`recording_of`) of the probe's fit samples, for its inner split; None where
    some file has no group (random files)."""
    names = [recording_of(items[i].path, grouping) for i in fit_idx]
    if None in names:
        return None
    ids = {n: k for k, n in enumerate(sorted(set(names)))}
    return torch.tensor([ids[n] for n in names])


def validation_split(
    items: list,
    train_idx: list[int],
    fraction: float = 0.15,
    seed: int = 0,
    group_of=group_of,
) -> tuple[list[int], list[int]]:
    """(fit, val) indices out of the training split: whole groups when files have them."""
    g = torch.Generator().manual_seed(seed)
    groups = sorted({group_of(items[i].path) for i in train_idx} - {None})
    if groups:
        order = [groups[i] for i in torch.randperm(len(groups), generator=g).tolist()]
        held: set[str] = set()
        for grp in order:
            if sum(group_of(items[i].path) in held for i in train_idx) >= fraction * len(train_idx):
                break
            held.add(grp)
        val = [i for i in train_idx if group_of(items[i].path) in held]
    else:
        perm = torch.randperm(len(train_idx), generator=g).tolist()
        val = sorted(train_idx[i] for i in perm[: int(fraction * len(train_idx))])
    val_set = set(val)
    return [i for i in train_idx if i not in val_set], val


# -- corruptions for the robustness check ------------------------------------------------------


def corrupt(modality: str, name: str, x: torch.Tensor, meta: dict) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    if modality == "image":
        v = x.float() / 255
        if name == "noise":
            v = v + 0.1 * torch.randn(v.shape, generator=g)
        elif name == "blur":
            k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
            k = (k[:, None] * k[None, :]) / 256
            c = v.shape[1]
            v = F.conv2d(
                F.pad(v, (2, 2, 2, 2), mode="reflect"), k.expand(c, 1, 5, 5).contiguous(), groups=c
            )
        elif name == "contrast":
            mean = v.mean(dim=(1, 2, 3), keepdim=True)
            v = (v - mean) * 0.4 + mean
        elif name == "jpeg":
            out = []
            for img in (v.clamp(0, 1) * 255).round().to(torch.uint8):
                arr = img.permute(1, 2, 0).numpy()
                pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
                buf = io.BytesIO()
                pil.save(buf, format="JPEG", quality=15)
                dec = np.asarray(Image.open(buf))
                out.append(
                    torch.from_numpy(dec[..., None] if dec.ndim == 2 else dec)
                    .permute(2, 0, 1)
                    .float()
                    / 255
                )
            v = torch.stack(out)
        return (v.clamp(0, 1) * 255).round().to(torch.uint8)
    if modality == "audio":
        rms = x.square().mean(dim=(1, 2), keepdim=True).sqrt()
        if name == "noise":  # white noise at 10 dB SNR
            return x + torch.randn(x.shape, generator=g) * rms / (10 ** (10 / 20))
        if name == "gain":  # −12 dB
            return x * 10 ** (-12 / 20)
        if name == "lowpass":  # nothing above 2 kHz
            spec = torch.fft.rfft(x, dim=-1)
            freqs = torch.fft.rfftfreq(x.shape[-1], 1 / int(meta["sample_rate"]))
            return torch.fft.irfft(spec * (freqs <= 2000), n=x.shape[-1], dim=-1)
    if modality == "sensor":
        std = x.std(dim=2, keepdim=True)
        if name == "noise":
            return x + 0.3 * std * torch.randn(x.shape, generator=g)
        if name == "drift":  # a linear ramp up to one channel std across the window
            ramp = torch.linspace(0, 1, x.shape[-1])
            return x + std * ramp * torch.sign(torch.randn(x.shape[0], x.shape[1], 1, generator=g))
        if name == "dropped":  # 20 % of samples lost, held at the last value
            keep = torch.rand(x.shape[0], 1, x.shape[2], generator=g) > 0.2
            keep[..., 0] = True
            idx = torch.where(keep, torch.arange(x.shape[2]), 0).cummax(dim=2).values
            return torch.gather(x, 2, idx.expand_as(x))
    raise ValueError(f"no corruption {name!r} for {modality}")


CORRUPTIONS = {
    "image": ("noise", "blur", "contrast", "jpeg"),
    "audio": ("noise", "gain", "lowpass"),
    "sensor": ("noise", "drift", "dropped"),
}


# -- one modality --------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.t0 = time.perf_counter()
        self.device = resolve_device(args.device)
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.report: dict[str, Any] = {
            "device": torch.cuda.get_device_name(self.device)
            if self.device.type == "cuda"
            else "CPU",
            "torch": torch.__version__,
            "commit": _commit(),
            "command": " ".join(sys.argv),
            "modalities": {},
            "not_run": [],
        }
        previous = self.out / "quality.json"
        if previous.is_file() and not args.fresh:
            # incremental: every finished run was saved as it finished; keep those, redo none
            old = json.loads(previous.read_text())
            self.report["modalities"] = old.get("modalities", {})
            self.report["command"] = old.get("command", "") + " ; " + self.report["command"]
            done = sum(len(r.get("runs", [])) for r in self.report["modalities"].values())
            console.print(f"continuing {previous}: {done} finished runs are kept")

    def left(self) -> float:
        return self.args.time_budget - (time.perf_counter() - self.t0)

    def save(self) -> None:
        self.report["wall_s"] = time.perf_counter() - self.t0
        (self.out / "quality.json").write_text(json.dumps(self.report, indent=2, default=str))

    def train_run(
        self,
        plan: Plan,
        views: str,
        view_space: str | None,
        budget: float,
        seed: int,
        precision: str | None = None,
    ) -> tuple[Path, dict] | None:
        precision = precision or self.args.precision
        label = f"{plan.modality}/{views}{'-' + view_space if view_space else ''}/eps{budget:g}/seed{seed}"
        label += f"/{precision}" if precision != "auto" else ""
        if self.left() < self.args.min_run_seconds:
            self.report["not_run"].append(label)
            console.print(f"[yellow]skip (time budget)[/yellow] {label}")
            return None
        cfg = TrainConfig(
            data=str(plan.data),
            views=views,
            view_space=view_space,
            budget=budget,
            epochs=plan.epochs,
            batch_size=plan.batch_size,
            seed=seed,
            device=str(self.device),
            encoder=self.args.encoder,
            viewmaker_width=self.args.width,
            log_every=10_000,
            preview_samples=4,
            preview_views=2,
            precision=precision,
            compile=self.args.compile,
            viewmaker_lr=self.args.viewmaker_lr,
            transforms_lr=self.args.transforms_lr,
            transforms_budget=self.args.transforms_budget,
            transforms_max=self.args.transforms_max,
            load=LoadOptions(sample_rate=self.args.sample_rate, clip_seconds=self.args.clip_seconds)
            if plan.modality == "audio"
            else LoadOptions(),
        )
        name = label.replace("/", "_")
        console.print(f"[bold]train[/bold] {label}  ({self.left():.0f} s left)")
        summary = train(cfg, out=self.args.runs_dir / name, progress=False)
        return Path(summary["run"]), summary

    def start(self, plan: Plan) -> dict[str, Any] | None:
        """The first run of a modality (viewmaker, default space, first seed), then its data,
        splits and baselines. Returns the context later runs of this modality need."""
        m = plan.modality
        modality = MODALITIES[m]
        res: dict[str, Any] = self.report["modalities"].get(m) or {
            "data": str(plan.data),
            "epochs": plan.epochs,
            "runs": [],
            "baselines": {},
        }
        if res["epochs"] != plan.epochs or res["data"] != str(plan.data):
            raise SystemExit(
                f"{self.out / 'quality.json'} holds {m} runs of {res['epochs']} epochs on {res['data']}; "
                "use another --out or --fresh"
            )
        res["target"] = TARGETS[m]
        self.report["modalities"][m] = res
        views0, space0, budget0, seed0, role0 = self.work(plan)[0]
        known = next((r for r in res["runs"] if (Path(r["run"]) / "config.json").is_file()), None)
        if known is not None:  # continuing: any finished run gives the data's shapes
            run_dir, summary = Path(known["run"]), None
        else:
            first = self.train_run(plan, views0, space0, budget0, seed0)
            if first is None:
                return None
            run_dir, summary = first
        config = json.loads((run_dir / "config.json").read_text())
        index = scan(plan.data, MODALITIES, modality=m)
        labeled = [it for it in index.items if it.label is not None]
        data: TensorData = modality.load(
            index.root, labeled, LoadOptions(), meta=config["data_meta"]
        )
        classes = sorted({it.label for it in data.items})
        y = torch.tensor([classes.index(it.label) for it in data.items])
        train_idx = [i for i, it in enumerate(data.items) if it.split == "train"]
        test_idx = [i for i, it in enumerate(data.items) if it.split == "test"]
        grouping = GROUPINGS[self.args.group_by]
        fit_idx, val_idx = validation_split(data.items, train_idx, group_of=grouping)
        split = {
            "fit": torch.tensor(fit_idx),
            "val": torch.tensor(val_idx),
            "test": torch.tensor(test_idx),
        }
        # the probe picks its L2 strength on a part of `fit`: whole recordings or groups,
        # never windows whose overlapping neighbours it was fit on
        groups = fit_groups(data.items, fit_idx, grouping)
        if groups is not None:
            split["fit_groups"] = groups
        sizes = {k: len(v) for k, v in split.items() if k != "fit_groups"}
        res["split"] = sizes | {"classes": len(classes)}
        res["chance"] = float(torch.bincount(y[split["test"]]).max()) / len(test_idx)
        console.print(
            f"{m}: fit {len(fit_idx)} / val {len(val_idx)} / test {len(test_idx)}, {len(classes)} classes"
        )
        ctx = {"plan": plan, "res": res, "data": data, "y": y, "split": split}
        if summary is not None:
            self.record(ctx, run_dir, summary, views0, space0, budget0, seed0, role0)
        if res["baselines"]:
            return ctx
        extractor = load_encoder(run_dir, self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(plan.seeds[0])
            random_enc = build_encoder(
                config["train"]["encoder"], extractor.space, tuple(config["data_meta"]["raw_shape"])
            )
        feats = extract_features(FeatureExtractor(extractor.space, random_enc), data.x, self.device)
        res["baselines"]["random encoder"] = self.score(ctx, feats)
        for name, feats in modality.raw_baselines(data, extractor.space).items():
            res["baselines"][name] = self.score(ctx, feats)
        self.save()
        return ctx

    def score(
        self, ctx: dict, feats: torch.Tensor, robust_with: FeatureExtractor | None = None
    ) -> dict[str, Any]:
        """Linear probe fitted on `fit`, scored on `val` and `test`; kNN on test; and, for the
        main runs, the same probe on corrupted test inputs."""
        split, y, m = ctx["split"], ctx["y"], ctx["plan"].modality
        probe = fit_linear_probe(
            feats[split["fit"]], y[split["fit"]], 0, self.device, groups=split.get("fit_groups")
        )
        out: dict[str, Any] = {
            "val": probe.accuracy(feats[split["val"]], y[split["val"]]),
            "test": probe.accuracy(feats[split["test"]], y[split["test"]]),
            "knn": knn_accuracy(
                feats[split["fit"]].to(self.device),
                y[split["fit"]],
                feats[split["test"]],
                y[split["test"]],
            ),
        }
        if robust_with is not None and self.args.robustness:
            clean = ctx["data"].x[split["test"]]
            out["robustness"] = {
                name: probe.accuracy(
                    extract_features(
                        robust_with, corrupt(m, name, clean, ctx["data"].meta), self.device
                    ),
                    y[split["test"]],
                )
                for name in CORRUPTIONS[m]
            }
        return out

    def record(
        self,
        ctx: dict,
        run_dir: Path,
        summary: dict,
        views: str,
        space: str | None,
        budget: float,
        seed: int,
        role: str,
    ) -> None:
        extractor = load_encoder(run_dir, self.device)
        feats = extract_features(extractor, ctx["data"].x, self.device)
        uses_vm = _uses_viewmaker(views)
        row = {
            "views": views,
            "view_space": space if uses_vm else None,
            "budget": budget if uses_vm else None,
            "seed": seed,
            "role": role,
            "train_s": summary.get("train_s"),
            "samples_per_s": summary.get("samples_per_s"),
            "final_loss": summary.get("final_loss"),
            "precision": summary.get("precision"),
            "adversary": summary.get("adversary"),
            "transforms": summary.get("transforms"),
            "run": str(run_dir),
            **self.score(
                ctx, feats, extractor if role == "main" and seed == ctx["plan"].seeds[0] else None
            ),
        }
        ctx["res"]["runs"].append(row)
        self.save()
        console.print(f"  → val {row['val']:.4f}  test {row['test']:.4f}  kNN {row['knn']:.4f}")

    @staticmethod
    def find(
        res: dict, views: str, space: str | None, budget: float, seed: int, role: str
    ) -> dict | None:
        """The recorded run of this setting, if one finished earlier."""
        uses_vm = _uses_viewmaker(views)
        for r in res["runs"]:
            if (r["views"], r["seed"], r["role"]) == (views, seed, role) and (
                not uses_vm or (r["view_space"], r["budget"]) == (space, budget)
            ):
                return r
        return None

    def add(
        self, ctx: dict, views: str, space: str | None, budget: float, seed: int, role: str
    ) -> None:
        if self.find(ctx["res"], views, space, budget, seed, role) is not None:
            return  # finished in an earlier invocation
        precision = "fp32" if role == "fp32" else None  # the precision check's reference run
        made = self.train_run(ctx["plan"], views, space, budget, seed, precision)
        if made:
            self.record(ctx, *made, views, space, budget, seed, role)

    def work(self, plan: Plan) -> list[tuple[str, str | None, float, int, str]]:
        """(views, view space, budget, seed, role) in priority order, so a time budget cuts the
        least important work: every arm at the first seed, the precision check and the budget
        sweep, then the other seeds."""
        arms = self.args.arms.split(",")
        space0, budget = plan.view_spaces[0], self.args.budget
        candidates = [
            ("viewmaker", space0),
            ("random", space0),
            *[("viewmaker", s) for s in plan.view_spaces[1:]],
            ("handcrafted", None),
            ("both", space0),
            ("none", None),
            ("learned-transforms", None),
            ("fixed-transforms", None),
            ("learned-transforms+viewmaker", space0),
        ]
        settings = [
            (views, space)
            for views, space in candidates
            if views in arms
            and (space in (None, space0) or self.args.all_spaces)
            and ("transforms" not in views or plan.modality in TRANSFORM_FAMILIES)
        ]
        role = self.args.role
        todo = [(v, sp, budget, plan.seeds[0], role) for v, sp in settings]
        if self.args.precision_check:
            todo.append(("viewmaker", space0, budget, plan.seeds[0], "fp32"))
        todo += [
            ("viewmaker", space0, b, plan.seeds[0], "sweep") for b in plan.budgets if b != budget
        ]
        for seed in plan.seeds[1:]:
            todo += [(v, sp, budget, seed, role) for v, sp in settings]
        return todo

    def run(self, plans: list[Plan]) -> None:
        ctxs = []
        for plan in plans:
            ctx = self._guard(plan.modality, self.start, plan)
            if ctx:
                ctxs.append(ctx)
        queues = {id(c): self.work(c["plan"]) for c in ctxs}
        # round-robin over modalities, so each gets its most important runs first
        while any(queues.values()):
            for ctx in ctxs:
                if queues[id(ctx)]:
                    views, space, budget, seed, role = queues[id(ctx)].pop(0)
                    self._guard(
                        ctx["plan"].modality, self.add, ctx, views, space, budget, seed, role
                    )

    def _guard(self, modality: str, fn, *args):
        """Run one piece of work; a failure is recorded and the benchmark goes on."""
        try:
            return fn(*args)
        except Exception as e:
            msg = f"{type(e).__name__}: {e}"
            self.report.setdefault("errors", []).append(f"{modality}: {msg}"[:500])
            console.print(f"[red]{modality} failed:[/red] {msg}")
            self.save()
            if self.args.quick:
                raise
            return None

    # -- reporting ---------------------------------------------------------------------------
    def markdown(self) -> str:
        return markdown(self.report, time.perf_counter() - self.t0)


def markdown(report: dict, wall_s: float) -> str:
    lines = [
        f"Device: {report['device']}, torch {report['torch']}, commit {report['commit']}; "
        f"wall {wall_s:.0f} s.",
        f"Command: `{report['command']}`",
        "",
    ]
    for m, res in report["modalities"].items():
        lines += [
            f"### {m}  ({res.get('split', {})}, {res['epochs']} epochs, chance {res.get('chance', float('nan')):.3f})",
            "",
            f"Target: {res['target']}.",
            "",
            "| features | seeds | val (linear) | **test (linear)** | test (kNN) | adversary effect |",
            "|---|---|---|---|---|---|",
        ]
        groups: dict[str, list[dict]] = {}
        for r in res["runs"]:
            if r["role"] in ("sweep", "fp32"):
                continue
            key = r["views"] + (f" ({r['view_space']})" if r.get("view_space") else "")
            key += f" [{r['role']}]" if r["role"] != "main" else ""
            groups.setdefault(key, []).append(r)
        for key, rows in groups.items():
            effects = [r["adversary"]["effect"] for r in rows if r.get("adversary")]
            effect = _ms(effects, 3) if effects else "–"
            lines.append(
                f"| vm encoder, views {key} | {len(rows)} | {_ms([r['val'] for r in rows])} | **{_ms([r['test'] for r in rows])}** | {_ms([r['knn'] for r in rows])} | {effect} |"
            )
        for name, b in res["baselines"].items():
            lines.append(f"| {name} | – | {b['val']:.4f} | {b['test']:.4f} | {b['knn']:.4f} | |")
        lines += [
            "",
            "Adversary effect: the final encoder's NT-Xent loss on learned views minus its loss on "
            "views from the same generator at initialisation (same batch and noise; last epoch); "
            "> 0 means the learned views are harder.",
        ]
        learned = [
            r
            for r in res["runs"]
            if r["role"] == "main" and r["views"] == "learned-transforms" and r.get("transforms")
        ]
        if learned:
            names = [t["name"] for t in learned[0]["transforms"]]
            lines += [
                "",
                f"Learned transform strengths ({len(learned)} seeds):",
                "",
                "| transform | initial | learned | bounds | unit |",
                "|---|---|---|---|---|",
            ]
            for i, name in enumerate(names):
                t0 = learned[0]["transforms"][i]
                vals = [r["transforms"][i]["learned"] for r in learned]
                lines.append(
                    f"| {name} | {t0['initial']:.3g} | {_ms(vals, 3)} | {t0['low']:g}–{t0['high']:g} | {t0['unit']} |"
                )
        rob = [
            r
            for r in res["runs"]
            if r.get("robustness") and r["seed"] == min(x["seed"] for x in res["runs"])
        ]
        if rob:
            names = list(rob[0]["robustness"])
            lines += [
                "",
                "Robustness (linear probe, test accuracy on corrupted inputs):",
                "",
                "| views | clean | " + " | ".join(names) + " |",
                "|---" * (len(names) + 2) + "|",
            ]
            for r in rob:
                key = r["views"] + (f" ({r['view_space']})" if r.get("view_space") else "")
                lines.append(
                    f"| {key} | {r['test']:.4f} | "
                    + " | ".join(f"{r['robustness'][n]:.4f}" for n in names)
                    + " |"
                )
        sweep = sorted(
            (
                r
                for r in res["runs"]
                if r["views"] == "viewmaker"
                and r["role"] in ("main", "sweep")
                and r.get("view_space") == (res["runs"][0].get("view_space"))
                and r["seed"] == res["runs"][0]["seed"]
            ),
            key=lambda r: r["budget"],
        )
        if len(sweep) > 1:
            lines += [
                "",
                "Budget sweep (viewmaker, first seed):",
                "",
                "| ε | val | test |",
                "|---|---|---|",
            ]
            lines += [f"| {r['budget']:g} | {r['val']:.4f} | {r['test']:.4f} |" for r in sweep]
            best = max(sweep, key=lambda r: r["val"])
            lines.append(
                f"\nBest ε by validation accuracy: {best['budget']:g} (test {best['test']:.4f})."
            )
        lines.append("")
    for m, res in report["modalities"].items():
        fp32 = [r for r in res.get("runs", []) if r["role"] == "fp32"]
        if fp32:
            fast = next(
                (
                    r
                    for r in res["runs"]
                    if r["role"] == "main"
                    and r["views"] == "viewmaker"
                    and r["seed"] == fp32[0]["seed"]
                    and r.get("view_space") == fp32[0].get("view_space")
                ),
                None,
            )
            if fast:
                lines.append(
                    f"Precision check ({m}, viewmaker {fp32[0].get('view_space')}, seed {fp32[0]['seed']}): "
                    f"fast path ({fast.get('precision')}) test {fast['test']:.4f}, kNN {fast['knn']:.4f} — "
                    f"fp32 test {fp32[0]['test']:.4f}, kNN {fp32[0]['knn']:.4f}."
                )
    if report.get("errors"):
        lines += ["", "Errors: " + "; ".join(report["errors"]), ""]
    if report["not_run"]:
        lines += ["Not run (time budget): " + ", ".join(report["not_run"]), ""]
    return "\n".join(lines)


def _uses_viewmaker(views: str) -> bool:
    """Whether runs of this --views setting have a viewmaker (so ε and the space matter)."""
    return TrainConfig(data="", views=views).uses_viewmaker


def _ms(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], text=True, cwd=ROOT
        ).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def merge(parts: list[Path], out: Path) -> None:
    """Combine quality.json files written by separate processes (per modality, or per arm of
    one modality: their runs are pooled)."""
    reports = [json.loads(p.read_text()) for p in parts if p.is_file()]
    if not reports:
        raise SystemExit("nothing to merge")
    merged = dict(reports[0])
    merged["modalities"], merged["not_run"], merged["errors"] = {}, [], []
    merged["command"] = " ; ".join(r["command"] for r in reports)
    for r in reports:
        for m, res in r["modalities"].items():
            if m not in merged["modalities"]:
                merged["modalities"][m] = json.loads(json.dumps(res))
                continue
            into = merged["modalities"][m]  # the same modality from another process: add runs
            into["runs"] += res.get("runs", [])
            for name, b in res.get("baselines", {}).items():
                into["baselines"].setdefault(name, b)
        merged["not_run"] += r.get("not_run", [])
        merged["errors"] += r.get("errors", [])
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(merged, indent=2, default=str))
    plot_sweep(merged, out / "budget_sweep.png")
    md = markdown(merged, max(r.get("wall_s", 0) for r in reports))
    (out / "quality.md").write_text(md)
    print(md)


def plot_sweep(report: dict, dst: Path) -> None:
    """Test and validation accuracy against ε, one panel line per modality (Pillow only)."""
    series = {}
    for m, res in report["modalities"].items():
        runs = res["runs"]
        if not runs:
            continue
        space, seed = runs[0].get("view_space"), runs[0]["seed"]
        pts = sorted(
            (r["budget"], r["test"], r["val"])
            for r in runs
            if r["views"] == "viewmaker"
            and r["role"] in ("main", "sweep")
            and r.get("view_space") == space
            and r["seed"] == seed
        )
        if len(pts) > 1:
            series[m] = pts
    if not series:
        return
    lines = {}
    for m, pts in series.items():  # x: log10 ε, so 0.01 … 0.2 spread evenly
        lines[f"{m} test"] = [(math.log10(b), t) for b, t, _ in pts]
        lines[f"{m} validation"] = [(math.log10(b), v) for b, _, v in pts]
    line_chart(
        lines,
        "linear-probe accuracy vs budget",
        "log10 budget eps (mean |delta|)",
        size=(640, 400),
    ).save(dst)


def transforms_budget_arg(text: str) -> float | str | None:
    """--transforms-budget, as `vm train` reads it; a bad value is an argparse error."""
    try:
        return parse_transforms_budget(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--modality", default="all", choices=["image", "audio", "sensor", "all"])
    p.add_argument("--quick", action="store_true", help="CPU smoke run on the examples/ folders")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument(
        "--epochs", default="image=5,audio=30,sensor=30", help="per modality, e.g. image=5,audio=30"
    )
    p.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--robustness", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--encoder", default="auto")
    p.add_argument(
        "--width", type=int, default=None, help="viewmaker width (default: 32 GPU / 16 CPU)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", type=Path, default=ROOT / "benchmarks" / "data")
    p.add_argument(
        "--data", action="append", default=[], help="MODALITY=DIR to use an existing folder"
    )
    p.add_argument(
        "--time-budget", type=float, default=float("inf"), help="seconds for the whole benchmark"
    )
    p.add_argument(
        "--min-run-seconds", type=float, default=20.0, help="do not start a run with less time left"
    )
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "quality")
    p.add_argument(
        "--runs-dir", type=Path, default=None, help="where run folders go (default OUT/runs)"
    )
    p.add_argument(
        "--precision-check",
        action="store_true",
        help="also train the main viewmaker setting in fp32 (first seed) to compare with the bf16 fast path",
    )
    p.add_argument(
        "--arms",
        default="viewmaker,random,handcrafted,both,none,learned-transforms,fixed-transforms",
        help="view settings to compare (--views values; transforms arms skip images)",
    )
    p.add_argument(
        "--all-spaces",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the viewmaker in the modality's other view spaces",
    )
    p.add_argument(
        "--precision", default="auto", help="auto | fp32 | bf16 (bf16 works on CPUs too)"
    )
    p.add_argument("--viewmaker-lr", type=float, default=1e-3)
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks (1.5x on the CPU for long runs; minutes to compile)",
    )
    p.add_argument("--budget", type=float, default=0.05, help="ε of the main comparison")
    p.add_argument("--transforms-lr", type=float, default=1e-2)
    p.add_argument(
        "--transforms-budget",
        type=transforms_budget_arg,
        default="auto",
        help="mean transform strength held fixed: a fraction of each range, 'recipe' (the "
        "recipe's own), 'none' (free) or 'auto' (vm train's default: recipe on audio)",
    )
    p.add_argument(
        "--transforms-max",
        default=None,
        help="upper limits on named transform strengths, e.g. time_mask=0.15,noise=0.5",
    )
    p.add_argument(
        "--role",
        default="main",
        help="label for a variant's runs (e.g. eps0.2); tables show it beside the arm",
    )
    p.add_argument(
        "--group-by",
        choices=tuple(GROUPINGS),
        default="prefix",
        help="validation groups: file-name prefixes p012_/s03_ (default; else random files), "
        "the file stem (one speaker per stem across class folders), or the voice variant of "
        "spoken digits (<accent>_<variant>: held out whole, as the test split holds them)",
    )
    p.add_argument("--seed-list", default=None, help="seeds to run, e.g. 1,2 (overrides --seeds)")
    p.add_argument("--sample-rate", type=int, default=None, help="audio: resample to this rate")
    p.add_argument("--clip-seconds", type=float, default=None, help="audio: clip length")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--fresh", action="store_true", help="ignore OUT/quality.json instead of continuing it"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="merge quality.json files of separate processes into OUT, then stop",
    )
    args = p.parse_args()
    if args.runs_dir is None:
        args.runs_dir = args.out / "runs"
    if args.merge:
        merge(args.merge, args.out)
        return
    epochs = dict(kv.split("=") for kv in args.epochs.split(","))
    budgets = tuple(float(b) for b in args.budgets.split(","))
    if args.quick:
        args.device, args.encoder, args.width, args.seeds = "cpu", "small", 8, 1
        epochs = {"image": "1", "audio": "2", "sensor": "2"}
        budgets = (0.02, 0.05, 0.2)
        args.min_run_seconds = 0.0
    given = dict(kv.split("=", 1) for kv in args.data)
    bench = Bench(args)
    modalities = ["image", "audio", "sensor"] if args.modality == "all" else [args.modality]
    plans = []
    for m in modalities:
        data = Path(given[m]) if m in given else materialize(m, args.quick, args.data_root)
        plans.append(
            Plan(
                modality=m,
                data=data,
                view_spaces=MODALITIES[m].view_spaces,
                epochs=int(epochs[m]),
                batch_size=args.batch_size,
                seeds=[int(x) for x in args.seed_list.split(",")]
                if args.seed_list
                else list(range(args.seeds)),
                budgets=() if args.no_sweep else budgets,
            )
        )
    bench.run(plans)
    bench.save()
    plot_sweep(bench.report, args.out / "budget_sweep.png")
    md = bench.markdown()
    (args.out / "quality.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
