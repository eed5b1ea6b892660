"""Training: `fit()` is the one loop (`vmcli.session.train` sets a run up around it).

One step (default, `alternating=False`):
    raw batch → [handcrafted views] → view space → viewmaker (δ with reversed gradient) →
    encoder → symmetric NT-Xent; one backward; both optimizers step.
The gradient-reversal layer on δ gives the viewmaker exactly −∂L/∂φ, so it ascends the loss
the encoder descends: the paper's adversarial objective (viewmaker loss = −encoder loss) in one
pass. `alternating=True` is the paper's exact schedule: an encoder step on fresh views, then a
viewmaker step on fresh views with the encoder frozen (two forward/backward passes).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vmcli import runs
from vmcli.config import AUTO_COMPILE_MINUTES, CheckpointCadence, TrainConfig
from vmcli.console import TrainProgress, budget_text, info, warn
from vmcli.data import ViewSpace
from vmcli.data.base import Handcrafted
from vmcli.data.loader import ResidentBatches, StreamedBatches
from vmcli.distributed import (
    ALTERNATING_DDP,
    World,
    all_reduce_mean,
    check_batch_split,
    synchronise_batchnorm,
)
from vmcli.errors import ConfigError, DataError, TrainingInterrupted
from vmcli.losses import nt_xent
from vmcli.nn.encoders import Encoder
from vmcli.nn.transforms import LearnedTransforms, Transform
from vmcli.nn.viewmaker import Viewmaker, grad_reverse, project_to_budget

METRIC_FIELDS = [
    "epoch",
    "step",
    "samples",
    "loss",
    "delta_l1",
    "view_l1",
    "samples_per_s",
    "data_wait_share",  # share of the wall time the step loop waited for batches
    # the adversary's effect (learned views only): the encoder's NT-Xent loss and positive-pair
    # cosine on views from the current view generator vs the same generator at its
    # initialisation, on the same batch and noise (epoch means of the log windows)
    "probe_loss",
    "probe_loss_init",
    "adversary_effect",  # probe_loss − probe_loss_init: > 0 when learned views are harder
    "pos_cos",
    "pos_cos_init",
    "elapsed_s",
]


@dataclass
class Job:
    """Everything `fit()` needs, built by `train()` (or by a test)."""

    cfg: TrainConfig
    data: Tensor | StreamedBatches  # raw training samples (N × C × ...) or a streaming source
    space: ViewSpace
    encoder: Encoder
    viewmaker: Viewmaker | None
    handcrafted: Handcrafted | None
    device: torch.device
    run_dir: Path | None = None
    state: dict[str, Any] = field(default_factory=dict)  # from a checkpoint when resuming
    world: World = field(default_factory=World)
    # what a step calls: the networks, or their compiled / DistributedDataParallel wrappers
    encoder_fn: Callable[[Tensor], Tensor] | None = None
    raw_fn: Callable[[Tensor, Any], Tensor] | None = None
    transforms: LearnedTransforms | None = None  # learned (or fixed) transform strengths
    # the transforms' pure part (`LearnedTransforms.transform`), compiled; None: eager
    transforms_fn: Transform | None = None
    # frozen copies of the learned parts at their initialisation: the adversary's control
    reference_viewmaker: Viewmaker | None = None
    reference_transforms: LearnedTransforms | None = None


class _RawOutput(nn.Module):
    """The viewmaker's unbounded output as a module's forward, so DDP and torch.compile wrap
    the call the step makes (a bare method call would bypass DDP's gradient hooks)."""

    def __init__(self, viewmaker: Viewmaker):
        super().__init__()
        self.viewmaker = viewmaker

    def forward(self, x: Tensor, noise: Any) -> Tensor:
        return self.viewmaker.raw_output(x, noise)


@dataclass
class _Optimizers:
    encoder: torch.optim.Optimizer
    viewmaker: torch.optim.Optimizer | None
    transforms: torch.optim.Optimizer | None = None

    @property
    def adversaries(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.viewmaker, self.transforms) if o is not None]

    def zero_grad(self) -> None:
        for o in (self.encoder, *self.adversaries):
            o.zero_grad(set_to_none=True)


def make_optimizers(job: Job) -> _Optimizers:
    """Paper settings: encoder SGD (lr 0.03, momentum 0.9, wd 1e-4), viewmaker Adam (lr 1e-3)."""
    cfg, fused = job.cfg, job.device.type == "cuda"
    enc = torch.optim.SGD(
        job.encoder.parameters(),
        lr=cfg.encoder_lr,
        momentum=cfg.encoder_momentum,
        weight_decay=cfg.encoder_weight_decay,
        **({"fused": True} if fused else {}),
    )
    vm = None
    if job.viewmaker is not None and cfg.learns_viewmaker:
        vm = torch.optim.Adam(
            job.viewmaker.parameters(), lr=cfg.viewmaker_lr, **({"fused": True} if fused else {})
        )
    tf = None
    if job.transforms is not None and cfg.learns_transforms:
        tf = torch.optim.Adam(job.transforms.parameters(), lr=cfg.transforms_lr)
    return _Optimizers(enc, vm, tf)


class Views(NamedTuple):
    views: Tensor  # 2B × ...: view 1 of every sample, then view 2 (view space)
    delta: Tensor | None  # the viewmaker's perturbation (None without a viewmaker)
    inputs: Tensor  # what the viewmaker perturbed (after handcrafted views, view space)


def _local_rows(world: World, b_local: int, b_global: int, device: torch.device) -> Tensor:
    """This rank's rows of a stacked [view 1 of all B; view 2 of all B] global batch."""
    mine = torch.arange(world.rank * b_local, (world.rank + 1) * b_local, device=device)
    return torch.cat([mine, mine + b_global])


def make_views(
    job: Job, raw: Tensor, gen: torch.Generator, reverse: bool, reference: bool = False
) -> Views:
    """Two views of each sample, stacked (view 1 of all, then view 2 of all), and δ.

    raw → [handcrafted views | learned transforms] → view space → [viewmaker δ] → view.
    Both views go through the viewmaker as one batch. `raw` is the *global* batch: in
    distributed training every rank draws the global batch's random numbers (the same on
    every rank) and keeps its own rows, so N ranks make exactly the views one process would.
    `reverse` puts the gradient-reversal layer on every learned part; `reference` uses the
    frozen copies at initialisation instead (the adversary's control).
    """
    world = job.world
    vm, tf = job.viewmaker, job.transforms
    if reference and job.reference_viewmaker is not None:
        vm = job.reference_viewmaker
    if reference and job.reference_transforms is not None:
        tf = job.reference_transforms
    rows = None
    if world.distributed:
        rows = _local_rows(world, raw.shape[0] // world.size, raw.shape[0], raw.device)
    # both views in one call on the doubled batch: every parameter is drawn per sample, so
    # this is two independent views each, at half the kernel launches of two calls
    # (transforms are dozens of small ops, which bound a GPU step at small image sizes)
    both = torch.cat([raw, raw])
    if tf is not None and job.handcrafted is None:
        # learned transforms draw for all rows and transform only this rank's
        x = tf(both, gen, job.transforms_fn, rows=rows)
        if reverse and tf is job.transforms and job.cfg.learns_transforms:
            x = grad_reverse(x)
    else:
        x = job.handcrafted(both, gen) if job.handcrafted is not None else both
        if rows is not None:
            x = x[rows]
    inputs = job.space.to_view(x)
    if vm is None:
        return Views(inputs, None, inputs)
    noise = vm.sample_noise(inputs, gen, batch=2 * raw.shape[0])
    if rows is not None:
        noise = (noise[0][rows], noise[1][:, rows])
    raw_fn = job.raw_fn if job.raw_fn is not None and vm is job.viewmaker else vm.raw_output
    # the viewmaker's input carries no gradient to the transforms: they learn through the
    # view itself (otherwise δ's reversed gradient would reach them reversed twice)
    vin = inputs.detach()
    if vin.ndim == 4 and job.cfg.channels_last and vin.device.type == "cpu":
        vin = vin.contiguous(memory_format=torch.channels_last)
    delta = project_to_budget(raw_fn(vin, noise), vm.budget)
    if reverse:
        delta = grad_reverse(delta)
    return Views(vm.apply_perturbation(inputs, delta), delta, inputs)


def _embed(job: Job, views: Tensor, encoder: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    e = job.space.to_encoder(views)
    if job.cfg.channels_last and e.ndim == 4:
        e = e.contiguous(memory_format=torch.channels_last)
    if encoder is None:
        encoder = job.encoder_fn if job.encoder_fn is not None else job.encoder
    return encoder(e)


def _contrastive_loss(job: Job, views: Tensor) -> Tensor:
    z = _embed(job, views)
    b = z.shape[0] // 2
    return nt_xent(z[:b], z[b:], job.cfg.temperature, gather=job.world.distributed)


@torch.no_grad()
def adversary_probe(job: Job, raw: Tensor, step: int, autocast) -> Tensor:
    """[loss, loss at init, positive cosine, positive cosine at init] on one batch.

    The encoder scores views from the current view generator and from its frozen copy at
    initialisation, made from the same batch with the same random numbers; the loss gap is
    what learning the views has bought. Batch norm normalises with batch statistics, as in
    training (eval-mode running statistics are poor early on and would distort the gap), and
    its running statistics are restored afterwards, so the probe changes nothing. It costs two
    forward passes per log window (≈ 1–2 % of training at log_every 50).
    """
    # a 64-bit seed whatever --seed is (unchanged for seeds below 2**63 / 1_000_003)
    gen = torch.Generator(raw.device).manual_seed((job.cfg.seed * 1_000_003 + step) % 2**63)
    start = gen.get_state()
    plain = dataclasses.replace(job, encoder_fn=None, raw_fn=None, transforms_fn=None)
    norms = [m for m in job.encoder.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    out = []
    try:
        for reference in (False, True):
            gen.set_state(start)
            with autocast:
                made = make_views(plain, raw, gen, reverse=False, reference=reference)
                z = _embed(plain, made.views, job.encoder)
            z = z.float()
            b = z.shape[0] // 2
            zn = torch.nn.functional.normalize(z, dim=1)
            out += [
                # negatives from every rank, as in training: per-rank slices alone gave
                # another loss (and "inert" verdict) than one process on the same batch
                nt_xent(z[:b], z[b:], job.cfg.temperature, gather=job.world.distributed),
                (zn[:b] * zn[b:]).sum(dim=1).mean(),
            ]
    finally:
        for m, state in zip(norms, saved, strict=True):
            m.load_state_dict(state)
    loss, cos, loss0, cos0 = out
    return torch.stack([loss, loss0, cos, cos0])


INERT_NATS, INERT_FRACTION = 0.02, 0.05
# the rule in words, for the warning and training.png (one place, so they cannot drift apart)
INERT_RULE = f"{INERT_NATS:g} nats or {INERT_FRACTION * 100:g} % of the loss"


def inert_threshold(loss_init: float) -> float:
    """The gap (learned minus initial views' loss) under which the adversary is inert."""
    return max(INERT_NATS, INERT_FRACTION * abs(loss_init))


def adversary_inert(effect: float, loss_init: float) -> bool:
    """Learned views no harder than the control's: a gap under 0.02 nats or 5 % of the loss."""
    return effect < inert_threshold(loss_init)


class _GracefulStop:
    """Ctrl-C during training: finish the current step, checkpoint, stop. A second Ctrl-C aborts.

    Stopping only at a step boundary keeps the checkpoint consistent (never an encoder that has
    stepped with a viewmaker that has not). Signal handlers only work in the main thread; in
    another thread a KeyboardInterrupt simply propagates.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> _GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def train_step(
    job: Job, raw: Tensor, gen: torch.Generator, opt: _Optimizers, autocast
) -> tuple[Tensor, Views]:
    """One update of both networks on one (global) batch; returns the loss and the views."""
    if job.cfg.alternating and opt.adversaries:
        return _alternating_step(job, raw, gen, opt, autocast)
    with autocast:
        made = make_views(job, raw, gen, reverse=True)
        loss = _contrastive_loss(job, made.views)
    opt.zero_grad()
    loss.backward()
    _average_transform_grads(job, opt)
    opt.encoder.step()
    for adversary in opt.adversaries:
        adversary.step()
    return loss, made


def _average_transform_grads(job: Job, opt: _Optimizers) -> None:
    """The transform strengths are not wrapped in DDP (a few scalars): average their gradient
    across ranks by hand, as DDP does for the networks."""
    if opt.transforms is None or not job.world.distributed:
        return
    for p in job.transforms.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= job.world.size


def _alternating_step(
    job: Job, raw: Tensor, gen, opt: _Optimizers, autocast
) -> tuple[Tensor, Views]:
    """The paper's schedule: encoder step on fresh views, then viewmaker step (encoder frozen)."""
    with torch.no_grad(), autocast:
        made = make_views(job, raw, gen, reverse=False)
    with autocast:
        loss = _contrastive_loss(job, made.views)
    opt.encoder.zero_grad(set_to_none=True)
    loss.backward()
    opt.encoder.step()
    job.encoder.requires_grad_(False)
    try:
        with autocast:
            fresh = make_views(job, raw, gen, reverse=False)
            vm_loss = -_contrastive_loss(job, fresh.views)
        for adversary in opt.adversaries:
            adversary.zero_grad(set_to_none=True)
        vm_loss.backward()
        for adversary in opt.adversaries:
            adversary.step()
    finally:
        job.encoder.requires_grad_(True)
    return loss, made


def prepare(job: Job) -> _Optimizers:
    """Put the job on its device and wrap what the step calls: channels-last memory, DDP
    (with synchronised batch norm), torch.compile. Returns the optimizers."""
    cfg, device, world = job.cfg, job.device, job.world
    if world.distributed:
        if cfg.alternating:
            raise ConfigError(ALTERNATING_DDP)
        job.encoder = synchronise_batchnorm(job.encoder, device.type)
    job.encoder.to(device)
    job.space.to(device)
    if device.type == "cuda":
        # every step has the same shapes (partial batches are dropped), so cuDNN's one-off
        # search for the fastest convolution algorithms pays back from the first epoch
        torch.backends.cudnn.benchmark = True
    # channels-last 2-D convolutions: faster for the encoder on CUDA and the CPU, and for the
    # viewmaker on the CPU (1.24× for a whole CPU step, benchmarks/cpu_precision.py)
    if cfg.channels_last and job.space.encoder_dims == 2:
        job.encoder.to(memory_format=torch.channels_last)
    if cfg.channels_last and device.type == "cpu" and job.space.dims == 2:
        for vm in (job.viewmaker, job.reference_viewmaker):
            if vm is not None:
                vm.to(memory_format=torch.channels_last)
    encoder_fn: nn.Module = job.encoder
    raw_fn: nn.Module | None = None
    if job.viewmaker is not None:
        job.viewmaker.to(device)
        # the `random` control: frozen at initialisation (no gradient, no optimizer)
        job.viewmaker.requires_grad_(cfg.learns_viewmaker)
        raw_fn = _RawOutput(job.viewmaker)
    if job.transforms is not None:
        job.transforms.to(device).requires_grad_(cfg.learns_transforms)
    for frozen in (job.reference_viewmaker, job.reference_transforms):
        if frozen is not None:
            frozen.to(device).requires_grad_(False)
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        encoder_fn = DDP(encoder_fn, device_ids=ids)
        if raw_fn is not None and cfg.learns_viewmaker:  # a frozen module needs no DDP
            raw_fn = DDP(raw_fn, device_ids=ids)
    job.encoder_fn, job.raw_fn = encoder_fn, raw_fn
    return make_optimizers(job)


class Compiler:
    """torch.compile for what a step calls: now (`--compile`), or, left on auto, once a
    single-process CPU or CUDA run is measured to have more than AUTO_COMPILE_MINUTES to go (a
    1–2 minute compile buys 1.5× faster steps on the CPU; on an H200, 40–52 s buys 1.27× at
    batch 256 and 1.6× at 1024, benchmarks/RESULTS.md). Should the first compiled step fail (no C++ compiler, an
    unsupported op), training goes on eagerly with a warning, the step redone."""

    def __init__(self, job: Job):
        self.job = job
        self.eager: tuple[Any, Any] | None = None  # set until a compiled step succeeds
        self.decided = job.cfg.compile is not None  # on/off given: nothing left to decide
        if job.cfg.compile:
            self.compile()

    def compile(self) -> None:
        job = self.job
        self.eager = (job.encoder_fn, job.raw_fn, job.transforms_fn)
        # static shapes: a run feeds one batch shape (partial batches are dropped), and a
        # second shape in the same process would otherwise switch to slower dynamic kernels
        job.encoder_fn = torch.compile(job.encoder_fn, dynamic=False)
        job.raw_fn = torch.compile(job.raw_fn, dynamic=False) if job.raw_fn is not None else None
        if job.transforms is not None:  # the same pure function serves the frozen copy too
            job.transforms_fn = torch.compile(job.transforms.transform, dynamic=False)

    def consider(self, steps_done: int, steps_left: int, seconds: float) -> None:
        """On auto, decide once from the measured pace (`steps_done` in `seconds`)."""
        if self.decided or steps_done < 2:
            return
        self.decided = True
        job = self.job
        left_min = seconds / steps_done * steps_left / 60
        if job.device.type not in ("cpu", "cuda") or job.world.distributed:
            return
        if left_min <= AUTO_COMPILE_MINUTES:
            return
        if job.world.is_main:
            where = "on the CPU" if job.device.type == "cpu" else "on the GPU"
            info(
                f"about {left_min:.0f} min of training left {where}: compiling the networks "
                "(torch.compile; a minute or two now, then faster steps; --no-compile to keep "
                "eager)"
            )
        self.compile()

    def step(self, *args: Any) -> tuple[Tensor, Views]:
        try:
            out = train_step(*args)
        except Exception as e:  # noqa: BLE001 - any failure of a fresh compile falls back
            if self.eager is None:
                raise
            first_line = (str(e).splitlines() or [""])[0][:200]
            warn(
                f"torch.compile failed ({type(e).__name__}: {first_line}); "
                "training goes on without it"
            )
            self.job.encoder_fn, self.job.raw_fn, self.job.transforms_fn = self.eager
            self.eager = None
            return train_step(*args)
        self.eager = None
        return out


@dataclass
class Position:
    """Where training stands: epoch, step within it, samples seen, seconds trained before."""

    epoch: int = 0
    step: int = 0
    samples: int = 0
    elapsed0: float = 0.0


def _batch_source(job: Job) -> tuple[ResidentBatches | StreamedBatches, int, int]:
    """The batch source for `job.data`, the global batch size and the steps per epoch."""
    cfg, world = job.cfg, job.world
    if isinstance(job.data, StreamedBatches):
        source = job.data
        source.device = job.device
    else:
        source = ResidentBatches(job.data, job.device)
    b = int(cfg.batch_size or 2)
    if source.n // b < 1:
        raise ConfigError(f"batch size {b} is larger than the {source.n} training samples")
    check_batch_split(b, world.size)
    return source, b, source.n // b


def _restore(
    job: Job, opt: _Optimizers, order_gen: torch.Generator, view_gen: torch.Generator
) -> tuple[Position, list[dict[str, Any]]]:
    """Load a resumed run's state (`job.state`, from its checkpoint) into the job."""
    st = job.state
    if not st:
        return Position(), []
    job.encoder.load_state_dict(st["encoder"])
    opt.encoder.load_state_dict(st["encoder_opt"])
    if job.viewmaker is not None:
        job.viewmaker.load_state_dict(st["viewmaker"])
    if opt.viewmaker is not None:
        opt.viewmaker.load_state_dict(st["viewmaker_opt"])
    if job.transforms is not None and st.get("transforms"):
        job.transforms.load_state_dict(st["transforms"])
    if opt.transforms is not None and st.get("transforms_opt"):
        opt.transforms.load_state_dict(st["transforms_opt"])
    try:
        order_gen.set_state(st["order_gen"])
        view_gen.set_state(st["view_gen"])
    except RuntimeError:  # checkpoint from another device type: its RNG states do not fit
        info("random streams restarted (checkpoint came from another device type)")
    at = Position(st["epoch"], st["step"], st["samples"], st["elapsed_s"])
    return at, list(st["metrics"])


def _restore_window(window: MetricWindow, st: dict[str, Any]) -> None:
    """The epoch's metric sums so far, so a resumed epoch's row covers the whole epoch
    (checkpoints written before the sums were kept restart the window, as they did)."""
    if st.get("metric_window"):
        window.load_state_dict(st["metric_window"])


def training_state(
    job: Job,
    opt: _Optimizers,
    at: Position,
    elapsed: float,
    order_state: Tensor,
    view_gen: torch.Generator,
    metrics: list[dict[str, Any]],
    window: MetricWindow | None = None,
) -> dict[str, Any]:
    """Everything a resumed run needs, at a step boundary (`order_state` regenerates the
    current epoch's batch order; `window` holds the epoch's metric sums so far)."""
    state = lambda m: m.state_dict() if m is not None else {}  # noqa: E731
    return {
        "epoch": at.epoch,
        "step": at.step,
        "samples": at.samples,
        "elapsed_s": elapsed,
        "encoder": job.encoder.state_dict(),
        "encoder_opt": opt.encoder.state_dict(),
        "viewmaker": state(job.viewmaker),
        "viewmaker_opt": state(opt.viewmaker),
        "transforms": state(job.transforms),
        "transforms_opt": state(opt.transforms),
        "order_gen": order_state,
        "view_gen": view_gen.get_state(),
        "metrics": metrics,
        "metric_window": window.state_dict() if window is not None else {},
        "skipped_while_streaming": skipped_while_streaming(job),
    }


def skipped_while_streaming(job: Job) -> int:
    """Files that failed while streaming, over the whole run: the resumed checkpoint's count
    plus this process's (a resume restarted it from 0)."""
    now = job.data.dataset.skipped_total() if isinstance(job.data, StreamedBatches) else 0
    return int(job.state.get("skipped_while_streaming", 0)) + now


class MetricWindow:
    """Per-step metrics summed on the device and read (one host sync) once per log window;
    the adversary probe at each log point (averaged over ranks there), averaged per epoch.
    Its sums go into checkpoints, so a resumed epoch's row is the uninterrupted run's."""

    def __init__(self, job: Job, source, bar: TrainProgress, autocast):
        self.job, self.source, self.bar, self.autocast = job, source, bar, autocast
        device = job.device
        self.sums = torch.zeros(3, device=device)  # loss, |δ|, |view − input|
        self.probes = torch.zeros(4, device=device)  # adversary probe sums over the epoch
        self.n_probes, self.steps, self.last = 0, 0, {}
        self.timed = 0  # steps since t0 (a resumed window's earlier steps were timed before)
        self.t0, self.wait0 = time.perf_counter(), 0.0

    def state_dict(self) -> dict[str, Any]:
        """The open window and epoch sums. With several ranks a window's loss sums are this
        rank's (they are averaged over ranks only at log points); the probes are global."""
        return {
            "sums": self.sums.detach().cpu().clone(),
            "steps": self.steps,
            "probes": self.probes.detach().cpu().clone(),
            "n_probes": self.n_probes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums.copy_(state["sums"])
        self.probes.copy_(state["probes"])
        self.steps, self.n_probes = int(state["steps"]), int(state["n_probes"])

    @torch.no_grad()
    def add(self, loss: Tensor, made: Views) -> None:
        self.sums[0] += loss.detach()
        if made.delta is not None:
            self.sums[1] += made.delta.detach().abs().mean()
            self.sums[2] += (made.views.detach().float() - made.inputs.float()).abs().mean()
        self.steps += 1
        self.timed += 1

    def finite(self) -> bool:
        return bool(torch.isfinite(self.sums).all())

    def log(self, raw: Tensor, at: Position, done: int, batch: int, elapsed: float) -> None:
        """Close the window: probe the adversary, read the sums, update the progress bar."""
        job, world = self.job, self.job.world
        if job.device.type == "cuda":  # the GPU runs behind: time its work, not the queue
            torch.cuda.synchronize(job.device)
        now = time.perf_counter()  # samples/s counts training steps, not the probe below
        # averaged over ranks first: every rank sees a NaN any rank had, and all stop together
        means = all_reduce_mean(self.sums / self.steps, world)
        if not bool(torch.isfinite(means).all()):  # before the probe uses diverged strengths
            raise _diverged(done, means[0].item())
        if job.cfg.learns_views:
            probe = all_reduce_mean(adversary_probe(job, raw, done, self.autocast), world)
            if not bool(torch.isfinite(probe).all()):  # the last update left NaN weights
                raise _diverged(done, probe[0].item())
            self.probes += probe
            self.n_probes += 1
        self.last = _log_window(
            means,
            at.epoch,
            done,
            at.samples,
            self.timed * batch / max(now - self.t0, 1e-9),
            elapsed,
            job,
            self.bar,
            self.probes / self.n_probes if self.n_probes else None,
        )
        self.last["data_wait_share"] = (self.source.data_wait_s - self.wait0) / max(
            now - self.t0, 1e-9
        )
        self.sums.zero_()
        self.steps, self.timed = 0, 0
        self.t0, self.wait0 = time.perf_counter(), self.source.data_wait_s

    def end_epoch(self) -> dict[str, Any]:
        """The epoch's metrics row: the last window's, plus the epoch's probe mean."""
        if self.n_probes:
            self.last.update(_probe_row(self.probes / self.n_probes))
            self.probes.zero_()
            self.n_probes = 0
        return dict(self.last)


def fit(job: Job, progress: bool = True) -> dict[str, Any]:
    """Train `job.encoder` (and the view generator) on `job.data`; returns the final metrics.

    `job.data` is a tensor (kept resident on the device when it fits: batches are index
    gathers, no host round trip) or a batch source from `vmcli.data.loader` (streaming).
    Metrics accumulate on the device and are read (one host sync) every `log_every` steps.
    Checkpoints are written at every epoch's end and, per `--checkpoint-every`, at step
    boundaries inside it. Ctrl-C stops at the next step boundary, writes a resumable
    checkpoint (when there is a run folder) and raises TrainingInterrupted.
    """
    cfg, device, world = job.cfg, job.device, job.world
    source, b, steps_per_epoch = _batch_source(job)
    opt = prepare(job)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    # the same streams on every rank: batch order, and the noise / handcrafted parameters
    order_gen = torch.Generator(device).manual_seed(cfg.seed)
    view_gen = torch.Generator(device).manual_seed(cfg.seed + 1)
    at, metrics = _restore(job, opt, order_gen, view_gen)
    job.encoder.train()
    writes = job.run_dir is not None and world.is_main
    cadence = CheckpointCadence.parse(cfg.checkpoint_every)  # mid-epoch checkpoints
    t_start = time.perf_counter()
    elapsed = lambda: at.elapsed0 + time.perf_counter() - t_start  # noqa: E731

    def save(order_state: Tensor) -> None:
        if writes:
            if device.type == "cuda":  # the queued steps are training time, not the save's
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            state = training_state(job, opt, at, elapsed(), order_state, view_gen, metrics, window)
            runs.save_checkpoint(job.run_dir / runs.CHECKPOINT, state)
            cadence.written()
            window.t0 += time.perf_counter() - t0  # samples/s counts training steps only

    total = cfg.epochs * steps_per_epoch
    bar = TrainProgress(total, at.epoch * steps_per_epoch + at.step, progress and world.is_main)
    window = MetricWindow(job, source, bar, autocast)
    _restore_window(window, job.state)
    compiler = Compiler(job)
    first_done = at.epoch * steps_per_epoch + at.step
    with _GracefulStop() as stop:
        try:
            while at.epoch < cfg.epochs:
                epoch_order = order_gen.get_state()
                perm = torch.randperm(source.n, generator=order_gen, device=device)
                for raw in source.epoch(perm, b, at.step):
                    loss, made = compiler.step(job, raw, view_gen, opt, autocast)
                    window.add(loss, made)
                    at.step, at.samples = at.step + 1, at.samples + b
                    done = at.epoch * steps_per_epoch + at.step
                    if window.steps == cfg.log_every or at.step == steps_per_epoch:
                        window.log(raw, at, done, b, elapsed())
                        compiler.consider(
                            done - first_done, total - done, time.perf_counter() - t_start
                        )
                    if at.step == steps_per_epoch:
                        continue
                    if writes and cadence.due(done) and window.finite():  # not if diverging
                        save(epoch_order)
                    # distributed: ranks agree only at log points, so only there is Ctrl-C read
                    at_log_point = window.steps == 0 or not world.distributed
                    if at_log_point and _stop_requested(stop, world):
                        save(epoch_order)
                        raise KeyboardInterrupt
                metrics.append(window.end_epoch())
                at.epoch, at.step = at.epoch + 1, 0
                if writes:
                    write_metrics(job.run_dir / runs.METRICS, metrics)
                    save(order_gen.get_state())
                if _stop_requested(stop, world) and at.epoch < cfg.epochs:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            where = f"; resume with: vm train --resume {job.run_dir}" if job.run_dir else ""
            raise TrainingInterrupted(
                f"interrupted at epoch {at.epoch + 1}, step {at.step}{where}"
            ) from None
        finally:
            bar.close()
    return {**window.last, "metrics": metrics, "wall_s": time.perf_counter() - t_start}


def _probe_row(means: Tensor) -> dict[str, float]:
    loss, loss0, cos, cos0 = means.tolist()
    return {
        "probe_loss": loss,
        "probe_loss_init": loss0,
        "adversary_effect": loss - loss0,
        "pos_cos": cos,
        "pos_cos_init": cos0,
    }


def _stop_requested(stop: _GracefulStop, world: World) -> bool:
    """Ctrl-C on any rank stops every rank at the same step (when distributed, checked at log
    points only, so it costs no per-step host sync)."""
    if not world.distributed:
        return stop.requested
    flag = torch.tensor(
        [float(stop.requested)], device="cuda" if dist.get_backend() == "nccl" else "cpu"
    )
    dist.all_reduce(flag)
    return bool(flag.item())


def _diverged(done: int, loss: float) -> DataError:
    return DataError(
        f"training diverged at step {done} (loss {loss}); check the data for extreme values "
        "or lower --budget / learning rates"
    )


def _log_window(
    means: Tensor,
    epoch: int,
    done: int,
    samples: int,
    rate: float,
    elapsed: float,
    job: Job,
    bar: TrainProgress,
    probe: Tensor | None = None,
) -> dict[str, Any]:
    """Read the window's device-side sums (the host sync) into a metrics row; update progress."""
    loss, delta_l1, view_l1 = means.tolist()  # finite: `MetricWindow.log` checked them
    has_vm = job.viewmaker is not None
    status = f"epoch {epoch + 1}/{job.cfg.epochs}  loss {loss:.4f}"
    if has_vm:
        status += "  " + budget_text(delta_l1, job.viewmaker.budget, view_l1)
    if probe is not None:  # this epoch so far, all ranks: how much harder than at init
        status += f"  vs init {probe[0] - probe[1]:+.3f}"
    bar.update(done, status + f"  {rate:,.0f} samples/s")
    return {
        "epoch": epoch + 1,
        "step": done,
        "samples": samples,
        "loss": loss,
        "delta_l1": delta_l1 if has_vm else math.nan,
        "view_l1": view_l1 if has_vm else math.nan,
        "samples_per_s": rate,
        "elapsed_s": elapsed,
    }


def write_metrics(dst: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with runs.atomic_write(dst) as tmp:
        tmp.write_text(buf.getvalue())
