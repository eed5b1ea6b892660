"""A training run around `fit()`: read the folder, resolve the settings, build the models,
create the run folder, train, then export weights, preview and summary.

`train(TrainConfig(...))` is what `vm train` calls; under torchrun every rank calls it and rank
0 alone writes. The loop itself is `vmcli.training.fit`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vmcli import __version__, runs, untrusted
from vmcli.config import LoadOptions, TrainConfig
from vmcli.console import console, info, warn
from vmcli.data import MODALITIES, Modality, ViewSpace, get_modality, scan
from vmcli.data.base import Item, report_skipped
from vmcli.data.discover import DataIndex, describe_change, fingerprint, ignored_text
from vmcli.data.loader import FileDataset, StreamedBatches, available_ram_bytes
from vmcli.devices import auto_precision, cpu_computes_bf16, resolve_device, usable_cpu_cores
from vmcli.distributed import (
    World,
    broadcast,
    check_batch_split,
    setup,
    teardown,
    world_from_env,
)
from vmcli.errors import CheckpointError, ConfigError, DataError
from vmcli.nn.transforms import create_transforms
from vmcli.pipeline import build_encoder, build_viewmaker, export_metadata
from vmcli.plots import plot_training
from vmcli.training import (
    INERT_RULE,
    Job,
    adversary_inert,
    fit,
    make_views,
    skipped_while_streaming,
)


def _training_items(index: DataIndex) -> list:
    """Self-supervised training uses the train split (or everything, without split folders)."""
    items = [it for it in index.items if it.split in ("train", "")]
    if not items:
        info(f"no train/ split in {index.root}; training on all {len(index.items)} files")
        items = index.items
    return items


def _resolve_views(cfg: TrainConfig, modality: Modality, world: World) -> None:
    """`--views auto` made concrete; said once where the choice is not the viewmaker's."""
    why = cfg.resolve_views(modality.default_views)
    if why is not None and modality.default_views != "viewmaker" and world.is_main:
        info(f"views: {cfg.views} ({why})")


def _warn_saturating_budget(budget: float, modality: Modality, view_space: str) -> None:
    """A budget of half a clamped range or more leaves views that are mostly clamped noise
    (mean |x + δ − x| cannot pass the range): legal, but almost surely a units mistake."""
    clamp = modality.spaces[view_space].clamp
    if clamp is None:
        return
    lo, hi = clamp
    if budget >= (hi - lo) / 2:
        warn(
            f"--budget {budget:g} is at least half of the {view_space} range [{lo:g}, {hi:g}]: "
            f"views will be mostly clamped to {lo:g} or {hi:g}, with little of the input left "
            f"(the default here is {modality.default_budget(view_space):g}; the paper used 0.05)"
        )


def _warn_unused_view_options(cfg: TrainConfig) -> None:
    """Say so when an option of a view family this run does not use was set (--budget with
    learned transforms, --transforms-max with the viewmaker): config.json records it as
    given, and a user reading it back would believe it shaped the views."""
    defaults = TrainConfig(data="")
    unused = [
        flag
        for flag, field, applies in (
            ("--budget", "budget", cfg.uses_viewmaker),
            ("--viewmaker-width", "viewmaker_width", cfg.uses_viewmaker),
            ("--viewmaker-lr", "viewmaker_lr", cfg.learns_viewmaker),
            ("--transforms-max", "transforms_max", cfg.uses_transforms),
            ("--transforms-budget", "transforms_budget", cfg.uses_transforms),
            ("--transforms-lr", "transforms_lr", cfg.learns_transforms),
            ("--alternating", "alternating", cfg.learns_views),
        )
        if not applies and getattr(cfg, field) != getattr(defaults, field)
    ]
    if unused:
        verb = "does" if len(unused) == 1 else "do"
        warn(f"{', '.join(unused)} {verb} not apply to --views {cfg.views}: ignored")


EMULATED_BF16 = "this CPU has no bf16 hardware (AVX512-BF16 or AMX), so bf16 runs emulated, 8-9× slower than fp32"


def _resolve(
    cfg: TrainConfig, modality: Modality, n_train: int, device: torch.device, world: World = World()
) -> TrainConfig:
    """A copy of `cfg` with every automatic choice made concrete (what config.json records)."""
    r = TrainConfig.from_dict(cfg.to_dict())
    r.modality = modality.name
    _resolve_views(r, modality, world)
    if world.is_main:
        _warn_unused_view_options(r)
    r.alternating = r.alternating and r.learns_views  # no adversary: one pass is all there is
    r.view_space = cfg.view_space or modality.view_spaces[0]
    if r.view_space not in modality.view_spaces:
        raise ConfigError(
            f"--view-space {r.view_space!r} does not apply to {modality.name} data; "
            f"choose one of {', '.join(modality.view_spaces)}"
        )
    if r.budget is None:
        r.budget = modality.default_budget(r.view_space)
    elif r.uses_viewmaker and world.is_main:
        _warn_saturating_budget(r.budget, modality, r.view_space)
    if r.transforms_budget == "auto":
        r.transforms_budget = modality.default_transforms_budget
    r.device = device.type if world.distributed else str(device)
    if r.encoder == "auto":
        r.encoder = "resnet18" if device.type == "cuda" else "small"
        info(
            f"encoder: {r.encoder} (auto: {'GPU' if device.type == 'cuda' else 'CPU'} run; set --encoder to change)"
        )
    if r.viewmaker_width is None:
        r.viewmaker_width = 32 if device.type == "cuda" else 16
    if r.precision == "auto":
        r.precision = auto_precision(device, cpu_opt_in=modality.cpu_bf16)
        if device.type == "cpu" and r.precision == "bf16" and world.is_main:
            info(
                "precision: bf16 (auto: this CPU computes bf16 in hardware; --precision fp32 to change)"
            )
    elif (
        r.precision == "bf16" and device.type == "cpu" and not cpu_computes_bf16() and world.is_main
    ):
        warn(EMULATED_BF16 + ": --precision fp32 (or auto) trains faster here")
    default = modality.default_batch_size
    batch = cfg.batch_size or default - default % world.size  # the default splits evenly
    if batch > n_train:
        usable = n_train - n_train % world.size  # each device takes an equal slice
        if usable >= 2:
            info(f"batch size {batch} > {n_train} training samples: using {usable}")
        batch = usable
    if batch < 2:
        raise DataError(
            f"{cfg.data}: only {n_train} usable training sample(s); contrastive training needs "
            f"at least 2{modality.few_samples_hint}"
        )
    check_batch_split(batch, world.size)
    r.batch_size = batch
    r.data = str(Path(cfg.data).resolve())
    return r


@dataclass
class TrainingData:
    """The training split, decoded into memory or streamed from disk."""

    source: Tensor | StreamedBatches  # what fit() draws batches from
    sample: Tensor  # decoded samples for statistics, shapes and the preview (all, in memory mode)
    items: list[Item]
    meta: dict[str, Any]
    skipped: list[tuple[Path, str]]

    def __len__(self) -> int:
        return len(self.items)


STATS_SAMPLES = 2048  # files decoded for normalisation statistics when streaming


def _warn_inapplicable(options: LoadOptions, modality: Modality) -> None:
    """Say so when a data option was set that this modality does not read (e.g. --window on
    an image folder): silently ignoring it would leave the user believing it took effect."""
    defaults = LoadOptions()
    for f in dataclasses.fields(LoadOptions):
        if f.name in modality.options or getattr(options, f.name) == getattr(defaults, f.name):
            continue
        owner = next((m.name for m in MODALITIES.values() if f.name in m.options), "other")
        warn(
            f"--{f.name.replace('_', '-')} applies to {owner} data; this is {modality.name} "
            "data, so it is ignored"
        )


def load_training_data(
    cfg: TrainConfig, modality: Modality, index: DataIndex, meta: dict[str, Any] | None = None
) -> TrainingData:
    """Decode the training split once into memory, or (`--data-mode stream`, or automatically
    when it would take more than a quarter of the available RAM) set up streaming from disk."""
    items = _training_items(index)
    _warn_inapplicable(cfg.load, modality)
    if not modality.streamable and cfg.data_mode == "stream":
        warn(
            f"{modality.name} data is not streamed from disk (--data-mode stream): it is decoded into memory"
        )
    if not modality.streamable or cfg.data_mode == "memory":
        data = modality.load(index.root, items, cfg.load, meta)
        return TrainingData(data.x, data.x, data.items, data.meta, data.skipped)
    planned, usable, skipped = modality.plan(index.root, items, cfg.load, meta)
    if cfg.data_mode == "auto":
        decoded_bytes = len(usable) * _sample_bytes(modality, index.root, usable, planned)
        if decoded_bytes <= available_ram_bytes() // 4:
            data = modality.decode_all(index.root, usable, planned, skipped, len(items))
            return TrainingData(data.x, data.x, data.items, data.meta, data.skipped)
        info(
            f"decoded data would take {decoded_bytes / 2**30:.1f} GiB (over a quarter of the free RAM): streaming from disk"
        )
    meta = planned
    report_skipped(skipped, len(items), modality.name)
    pick = torch.randperm(len(usable), generator=torch.Generator().manual_seed(cfg.seed))[
        :STATS_SAMPLES
    ]
    stats = modality.decode_all(
        index.root, [usable[i] for i in sorted(pick.tolist())], meta, [], len(items)
    )
    sample = stats.x
    if stats.skipped:  # known bad now: not streamed (they failed again every epoch)
        bad = {p for p, _ in stats.skipped}
        usable = [it for it in usable if index.root / it.path not in bad]
        skipped = skipped + stats.skipped
    workers = cfg.workers
    cores = usable_cpu_cores()
    if workers > cores:  # more decoders than cores only adds memory and switching
        warn(
            f"--workers {workers} is more than the {cores} CPU cores this process may use: using {cores}"
        )
        workers = cores
    source = StreamedBatches(FileDataset(modality, index.root, usable, meta), workers=workers)
    batch = cfg.batch_size or modality.default_batch_size
    bound = source.memory_bound_bytes(batch, sample[0].numel() * sample.element_size())
    info(
        f"streaming {len(usable)} files with {workers} workers × {source.prefetch} batches ahead: "
        f"at most {bound / 2**20:.{0 if bound >= 10 * 2**20 else 2}f} MiB of decoded samples "
        "in memory"
    )
    return TrainingData(source, sample, usable, meta, skipped)


def _sample_bytes(modality: Modality, root: Path, usable: list[Item], meta: dict[str, Any]) -> int:
    """Bytes of one decoded sample: the first of the planned files that decodes (0 if none
    does: then the in-memory path decodes them all and reports each failure)."""
    for item in usable[:20]:
        try:
            x = modality.decode_item(root, item, meta)
        except DataError:
            continue
        return x.numel() * x.element_size()
    return 0


def _build_job(
    cfg: TrainConfig, modality: Modality, data: TrainingData, space: ViewSpace, device: torch.device
) -> Job:
    raw_shape = tuple(data.sample.shape[1:])
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg.encoder, space, raw_shape)
        viewmaker = (
            build_viewmaker(space, cfg.budget, cfg.viewmaker_width, cfg.viewmaker_blocks)
            if cfg.uses_viewmaker
            else None
        )
    handcrafted = modality.handcrafted(data.meta) if cfg.uses_handcrafted else None
    transforms = (
        create_transforms(cfg.modality or "", cfg.transforms_budget, cfg.transforms_max)
        if cfg.uses_transforms
        else None
    )
    return Job(
        cfg,
        data.source,
        space,
        encoder,
        viewmaker,
        handcrafted,
        device,
        transforms=transforms,
        # frozen copies at initialisation: what the adversary's effect is measured against
        reference_viewmaker=copy.deepcopy(viewmaker) if cfg.learns_viewmaker else None,
        reference_transforms=copy.deepcopy(transforms) if cfg.learns_transforms else None,
    )


def _header(cfg: TrainConfig, n: int, run_dir: Path) -> None:
    from rich.table import Table

    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold", overflow="fold")
    t.add_column(overflow="fold")
    t.add_row("run", str(run_dir))
    t.add_row("data", f"{cfg.data}  ({cfg.modality}, {n} training samples)")
    t.add_row(
        "views",
        f"{cfg.views}"
        + (f", budget ε={cfg.budget:g} in {cfg.view_space} units" if cfg.uses_viewmaker else "")
        + (
            f", transforms budget {cfg.transforms_budget} (mean strength, of each range)"
            if cfg.uses_transforms and cfg.transforms_budget is not None
            else ""
        ),
    )
    t.add_row(
        "schedule",
        "alternating (paper, 2 passes)" if cfg.alternating else "one pass, gradient reversal",
    )
    t.add_row(
        "model",
        f"encoder {cfg.encoder}"
        + (
            f", viewmaker width {cfg.viewmaker_width}×{cfg.viewmaker_blocks} blocks"
            if cfg.uses_viewmaker
            else ""
        ),
    )
    t.add_row(
        "training",
        f"{cfg.epochs} epochs, batch {cfg.batch_size}, τ={cfg.temperature:g}, seed {cfg.seed}",
    )
    devices = f" × {world_from_env().size} processes" if world_from_env().distributed else ""
    t.add_row(
        "device",
        f"{cfg.device}{devices}, {cfg.precision}"
        + (", compiled" if cfg.compile else ", compile: auto" if cfg.compile is None else ""),
    )
    console.print(t)


def write_preview(job: Job, raw_all: Tensor, dst: Path) -> list[Path]:
    """Original, K views and δ for a few evenly spaced samples, rendered by the modality."""
    cfg = job.cfg
    n = raw_all.shape[0]
    idx = torch.linspace(0, n - 1, min(cfg.preview_samples, n)).round().long()
    raw = raw_all[idx].to(job.device)
    gen = torch.Generator(job.device).manual_seed(cfg.seed + 2)
    job = dataclasses.replace(job, world=World(), encoder_fn=None, raw_fn=None, transforms_fn=None)
    views, deltas = [], []
    with torch.no_grad():
        for _ in range(cfg.preview_views):
            made = make_views(job, raw, gen, reverse=False)
            views.append(made.views[: len(idx)].float().cpu())
            if made.delta is not None:
                deltas.append(made.delta[: len(idx)].float().cpu())
    modality = get_modality(cfg.modality)
    return modality.preview(raw.cpu(), views, deltas, job.space.cpu(), dst)


def train(
    cfg: TrainConfig,
    out: Path = Path("runs"),
    resume: Path | None = None,
    epochs: int | None = None,
    progress: bool = True,
    allow_data_change: bool = False,
) -> dict[str, Any]:
    """Train a viewmaker and encoder on `cfg.data`; returns the run's summary (also summary.json).

    With `resume`, continue the run in that folder from its checkpoint (optionally to a new
    number of `epochs`); the data is re-read with the run's stored shapes and statistics.
    A data folder whose training files changed since the run started is refused (DataError)
    unless `allow_data_change`.
    Under torchrun every rank calls this; rank 0 alone writes and prints.
    """
    world = world_from_env()  # ranks other than 0 print nothing (vmcli.console)
    finished = False
    try:
        result = _train(cfg, out, resume, epochs, progress, world, allow_data_change)
        finished = True
        return result
    finally:
        if world.distributed and finished:  # after an error, no collective: the others may
            teardown()  # be blocked in another one (the CLI ends a failed rank at once)


def _train(
    cfg: TrainConfig,
    out: Path,
    resume: Path | None,
    epochs: int | None,
    progress: bool,
    world: World,
    allow_data_change: bool = False,
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if resume is not None:
        run_dir = runs.resolve_run(resume)
        saved = runs.read_config(run_dir)
        cfg = TrainConfig.from_dict(saved["train"])
        if epochs is not None:
            cfg.epochs = epochs
        cfg.validate()
        state = runs.load_checkpoint(run_dir / runs.CHECKPOINT)
        if state["epoch"] >= cfg.epochs and not _stopped_before_summary(run_dir, state, cfg):
            raise ConfigError(
                f"{run_dir} already finished {state['epoch']} epochs; pass --epochs N (N > {state['epoch']}) to train on"
            )
        if cfg.device.startswith("cuda") and not torch.cuda.is_available():
            info(f"{run_dir} was trained on {cfg.device}; no GPU here, resuming on the CPU")
            cfg.device = "cpu"
        if cfg.device == "cpu" and cfg.precision == "bf16" and not cpu_computes_bf16():
            info(f"{run_dir} was trained in bf16; resuming in fp32 ({EMULATED_BF16})")
            cfg.precision = "fp32"
        device = _rank_device(resolve_device(cfg.device), world)
        setup(device.type)
        modality = get_modality(cfg.modality or "")
        index = scan(Path(cfg.data), MODALITIES, cfg.modality)
        changed = _check_data_unchanged(saved, index, run_dir, allow_data_change)
        data = load_training_data(cfg, modality, index, meta=saved["data_meta"])
        if cfg.batch_size and len(data) < cfg.batch_size:
            raise DataError(
                f"{run_dir} trains with batch size {cfg.batch_size}, and {cfg.data} now holds "
                f"{len(data)} usable training sample(s); a resumed run keeps its batch size. "
                f"Put the files back, or start a new run: vm train {cfg.data}"
            )
        # fewer usable samples than the run started with (files changed, or ones that decode
        # no longer): an epoch is shorter than the checkpoint's step may assume
        shrank = changed or len(data) != saved.get("data", {}).get("samples", len(data))
        _check_step(state, len(data) // int(cfg.batch_size or 1), shrank, run_dir)
        meta, stats = saved["data_meta"], saved["space_stats"]
        space = untrusted.build_space(
            modality.name, cfg.view_space or "", meta, stats, run_dir / runs.CONFIG
        )
        if state["epoch"] < cfg.epochs:
            info(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
        else:
            info(
                f"{run_dir} trained all {cfg.epochs} epochs but stopped before its summary was "
                "written: writing its exports, preview, plots and summary"
            )
    else:
        cfg.validate()
        runs.check_out_folder(out)  # before the data is read: a bad --out fails at once
        runs.check_outside(out, Path(cfg.data))
        device = _rank_device(resolve_device(cfg.device), world)
        setup(device.type)
        index = scan(Path(cfg.data), MODALITIES, cfg.modality)
        _describe(index)
        modality = get_modality(index.modality)
        cfg = dataclasses.replace(cfg)  # the caller's config stays as given (views "auto")
        _resolve_views(cfg, modality, world)
        if cfg.uses_transforms:  # before loading: a modality without them, a bad limit
            create_transforms(index.modality, None, cfg.transforms_max)
        data = load_training_data(cfg, modality, index)
        cfg = _resolve(cfg, modality, len(data), device, world)
        space = modality.build_space(cfg.view_space or "", data.meta)
        stats = space.fit(data.sample)
        meta = {**data.meta, "raw_shape": list(data.sample.shape[1:])}
    job = _build_job(cfg, modality, data, space, device)  # models and transforms: before a folder
    created = resume is None
    if created:
        run_dir = None
        if world.is_main:
            run_dir = runs.new_run_dir(out)
        run_dir = Path(broadcast(str(run_dir), world))
    try:
        if created and world.is_main:
            runs.write_json(run_dir / runs.CONFIG, _config_record(cfg, meta, stats, index, data))
        _header(cfg, len(data), run_dir)
        job.run_dir, job.state, job.world = run_dir, state, world
        if state:  # a checkpoint that does not fit these models stops here, not inside fit()
            untrusted.fits_models(state, job, run_dir / runs.CHECKPOINT)
            if world.is_main:  # every check passed: the new epochs and data fingerprint are kept
                saved["train"]["epochs"] = cfg.epochs
                runs.write_json(run_dir / runs.CONFIG, saved)
        result = fit(job, progress=progress)
    except BaseException:
        # a run that stopped before its first checkpoint has nothing to resume: the folder this
        # call made would only become the "newest run" that vm augment / eval / info then pick
        if created and world.is_main and runs.remove_unstarted_run(run_dir):
            info(f"removed {run_dir}: the run stopped before its first checkpoint")
        raise
    summary: dict[str, Any] = {}
    if world.is_main:
        summary = _finish(job, data, meta, stats, result)
    return broadcast(summary, world)  # type: ignore[return-value]


def _stopped_before_summary(run_dir: Path, state: dict[str, Any], cfg: TrainConfig) -> bool:
    """A checkpoint at the last epoch without the summary of that epoch: the run was stopped
    between its final checkpoint and summary.json, and a resume only has to finish it."""
    if state["epoch"] != cfg.epochs or state["step"] != 0:
        return False
    summary = runs.read_summary(run_dir)  # eval.json plays no part
    return summary is None or not summary.get("epochs") or summary["epochs"] < state["epoch"]


def _rank_device(device: torch.device, world: World) -> torch.device:
    if world.distributed and device.type == "cuda":
        return torch.device("cuda", world.local_rank)
    return device


def _config_record(
    cfg: TrainConfig, meta: dict, stats: dict, index: DataIndex, data: TrainingData
) -> dict[str, Any]:
    """config.json: the resolved settings and everything needed to rebuild the run."""
    return {
        "vmcli_version": __version__,
        "format": untrusted.RUN_FORMAT,
        "train": cfg.to_dict(),
        "data_meta": meta,
        "space_stats": stats,
        "data": {
            "root": cfg.data,
            "modality": index.modality,
            "samples": len(data),
            "skipped": [[str(p), r] for p, r in data.skipped],
            "classes": sorted({it.label for it in data.items if it.label is not None}),
            "splits": sorted({it.split for it in data.items if it.split}),
            "fingerprint": fingerprint(index),
        },
    }


def _finish(
    job: Job, data: TrainingData, meta: dict, stats: dict, result: dict[str, Any]
) -> dict[str, Any]:
    """Exports, preview and summary.json once training is done (rank 0)."""
    cfg, run_dir = job.cfg, job.run_dir
    metadata = export_metadata(cfg.to_dict(), meta, stats)
    if job.viewmaker is not None:
        runs.save_weights(
            job.viewmaker, run_dir / runs.VIEWMAKER, {"kind": "viewmaker", **metadata}
        )
    strengths = job.transforms.table() if job.transforms is not None else None
    if job.transforms is not None:
        runs.save_weights(
            job.transforms,
            run_dir / runs.TRANSFORMS,
            {
                "kind": "transforms",
                "family": job.transforms.family,
                "transforms_budget": job.transforms.budget,
                "strengths": strengths,
                **metadata,
            },
        )
    runs.save_weights(job.encoder, run_dir / runs.ENCODER, {"kind": "encoder", **metadata})
    previews = write_preview(job, data.sample, run_dir / runs.PREVIEW)
    last = result["metrics"][-1] if result.get("metrics") else {}
    adversary = _adversary_summary(cfg, result.get("metrics", []))
    if result.get("metrics"):
        plot_training(result["metrics"], run_dir / runs.TRAINING_PLOT, cfg.views)
    summary = {
        "run": str(run_dir),
        "modality": cfg.modality,
        "view_space": cfg.view_space,
        "views": cfg.views,
        "budget": cfg.budget if cfg.uses_viewmaker else None,
        "encoder": cfg.encoder,
        "device": cfg.device,
        "devices": job.world.size,
        "precision": cfg.precision,
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "train_samples": len(data),
        "streamed": isinstance(data.source, StreamedBatches),
        # the files left out as unusable (each was named in a warning), for scripts
        "skipped": [[str(p), reason] for p, reason in data.skipped],
        "skipped_while_streaming": skipped_while_streaming(job),
        "final_loss": last.get("loss"),
        "delta_l1": last.get("delta_l1") if cfg.uses_viewmaker else None,
        "view_l1": last.get("view_l1") if cfg.uses_viewmaker else None,
        "samples_per_s": last.get("samples_per_s"),
        "train_s": last.get("elapsed_s"),
        "previews": [p.name for p in previews],
        "adversary": adversary,
        "transforms": strengths,
        # the number in force ("recipe" resolved under the run's bounds)
        "transforms_budget": job.transforms.budget if job.transforms is not None else None,
    }
    runs.write_json(run_dir / runs.SUMMARY, summary)
    if strengths:
        _print_strengths(strengths, cfg.learns_transforms, summary["transforms_budget"])
    if adversary and adversary["inert"]:
        warn(_inert_advice(cfg, adversary))
    summary["files"] = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    return summary


def _adversary_summary(cfg: TrainConfig, metrics: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The adversary's effect over the last epoch: learned views vs their frozen initial copy."""
    if not cfg.learns_views or not metrics or "probe_loss" not in metrics[-1]:
        return None
    m = metrics[-1]
    return {
        "loss_learned_views": m["probe_loss"],
        "loss_initial_views": m["probe_loss_init"],
        "effect": m["adversary_effect"],
        "pos_cos_learned_views": m["pos_cos"],
        "pos_cos_initial_views": m["pos_cos_init"],
        "inert": adversary_inert(m["adversary_effect"], m["probe_loss_init"]),
    }


def _inert_advice(cfg: TrainConfig, adversary: dict[str, Any]) -> str:
    viewmaker_fix = f"a larger --budget (now {cfg.budget:g}), a higher --viewmaker-lr (now {cfg.viewmaker_lr:g})"
    transforms_fix = f"a higher --transforms-lr (now {cfg.transforms_lr:g})"
    # each family's own knobs and control arm; the combinations compare with both parts
    what, fix, control = {
        "viewmaker": ("viewmaker", viewmaker_fix, "--views random"),
        "both": ("viewmaker", viewmaker_fix, "--views handcrafted"),
        "learned-transforms+viewmaker": (
            "transform strengths and viewmaker",
            f"{viewmaker_fix}, {transforms_fix}",
            "--views fixed-transforms, --views random",
        ),
    }.get(cfg.views, ("transform strengths", transforms_fix, "--views fixed-transforms"))
    learned, initial = adversary["loss_learned_views"], adversary["loss_initial_views"]
    return (
        f"learned views are little or no harder for the encoder than the {what} at "
        f"initialisation made (loss {learned:.3f} vs {initial:.3f} on the same batch, a gap "
        f"under {INERT_RULE}): the adversary is inert, so these views are not "
        f"really learned. Try {fix} or more epochs, and compare with the control arm "
        f"({control})"
    )


def _print_strengths(strengths: list[dict[str, Any]], learned: bool, budget: float | None) -> None:
    from rich.table import Table

    title = "transform strengths" + (" (learned" if learned else " (fixed")
    title += f", mean held at {budget:g} of each range)" if budget is not None else ")"
    t = Table(title=title)
    for col in ("transform", "initial", "learned", "bounds", "unit"):
        t.add_column(
            col, justify="right" if col in ("initial", "learned") else "left", overflow="fold"
        )
    for s in strengths:
        t.add_row(
            s["name"],
            f"{s['initial']:.3g}",
            f"{s['learned']:.3g}",
            f"{s['low']:g}–{s['high']:g}",
            str(s["unit"]),
        )
    console.print(t)


def _describe(index: DataIndex) -> None:
    n = len(index.items)
    parts = [f"{n} {index.modality} files"]
    if index.splits:
        per = {s: sum(it.split == s for it in index.items) for s in index.splits}
        parts.append("splits " + ", ".join(f"{k} {v}" for k, v in per.items()))
    classes = {it.label for it in index.items if it.label is not None}
    parts.append(f"{len(classes)} classes" if classes else "unlabeled")
    if index.unrecognized:
        parts.append(ignored_text(index.unrecognized, index.ignored_examples))
    info(f"detected {index.root}: " + "; ".join(parts))
    for note in index.notes:
        info(f"note: {note}")


def _check_step(state: dict[str, Any], steps: int, data_changed: bool, run_dir: Path) -> None:
    """A checkpoint's step lies inside an epoch of the data as it is. Where the data shrank
    (`--allow-data-change`, or files that no longer decode) past a mid-epoch checkpoint, the
    epoch starts again: its batch order was drawn for other data anyway. Otherwise the
    checkpoint was not written by us."""
    if state["step"] < steps:
        return
    if not data_changed:
        raise CheckpointError(
            f"{run_dir / runs.CHECKPOINT}: step {state['step']} is past the end of an epoch "
            f"({steps} steps); is it a file written by `vm train`?"
        )
    info(
        f"epoch {state['epoch'] + 1} starts again from its first step: the checkpoint was at "
        f"step {state['step']}, and an epoch of the data as it is now has {steps}"
    )
    state["step"] = 0


def _check_data_unchanged(
    saved: dict[str, Any], index: DataIndex, run_dir: Path, allow: bool
) -> bool:
    """Resuming on other training files than the run started with is refused unless allowed;
    the fingerprint in `saved` (config.json, written back by the caller) becomes the current
    one. True when the data changed (and that was allowed)."""
    record = saved.setdefault("data", {})
    then, now = record.get("fingerprint"), fingerprint(index)
    record["fingerprint"] = now
    if not isinstance(then, dict):
        info(f"{run_dir} has no record of its data files (an older run): not checked for changes")
        return False
    change = describe_change(then, now)
    if change is None:
        return False
    if not allow:
        raise DataError(
            f"{index.root} changed since {run_dir} started: {change}. Resuming would train on "
            "other data than the checkpoint saw; put the files back, or pass "
            "--allow-data-change to go on with the data as it is"
        )
    info(f"data changed since the run started ({change}); going on (--allow-data-change)")
    return True
