"""Several processes, one training run (DistributedDataParallel).

`vm train --devices N` re-launches itself as N processes with torchrun's worker environment
(`launch`; or start it under torchrun yourself). Every rank holds the dataset and draws the same global batch order and the
same random streams; each rank computes views and gradients for its slice of the global batch,
NT-Xent gathers negatives from all ranks with gradients, batch norm is synchronised, and DDP
averages gradients. So N processes on a global batch of B make the same update as one process
on that batch of B (up to float rounding; tested with 2 CPU processes). `--batch-size` is the
global batch. Rank 0 alone writes the run folder and prints.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from vmcli.errors import ConfigError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    return World(
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
        int(os.environ.get("LOCAL_RANK", 0)),
    )


def _import_before_the_group_exists() -> None:
    """Import `torch.distributed.nn` while no process group exists.

    Its functions take `group=group.WORLD` as a default argument, evaluated at import. DDP's
    constructor imports it (through torch._dynamo); imported after `init_process_group`, those
    defaults pin the group for the life of the interpreter, destroy_process_group cannot free
    it, and its gloo threads are killed during interpreter shutdown, which now and then ends a
    finished run in "terminate called without an active exception" (SIGABRT) instead of exit
    code 0. Imported first, the defaults are None and the group dies at teardown.
    """
    import torch.distributed.nn  # noqa: F401


def setup(device_type: str) -> World:
    """Join the process group torchrun prepared (a no-op for a single process)."""
    world = world_from_env()
    if not world.distributed:
        return world
    if not dist.is_initialized():
        _import_before_the_group_exists()
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(world.local_rank)
        dist.init_process_group(backend)
    return world


def teardown() -> None:
    """Leave the process group once every rank has finished. Not after an error: a rank that
    failed alone would wait in the barrier (or in destroying the group) for ranks blocked in
    another collective, and they for it; the run hung. `console.end_failed_rank` ends it."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def is_peer_failure(e: BaseException) -> bool:
    """A collective that failed because another rank stopped (its connection closed): that
    rank's own error is the one to report, and the launcher does."""
    names = {type(c).__name__ for c in type(e).__mro__}
    text = str(e)
    return bool(names & {"DistBackendError", "DistNetworkError"}) or any(
        s in text for s in ("Connection closed by peer", "Connection reset by peer", "Broken pipe")
    )


def broadcast(obj: object, world: World) -> object:
    """Rank 0's `obj` on every rank."""
    if not world.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean(t: Tensor, world: World) -> Tensor:
    if world.distributed:
        dist.all_reduce(t)
        t /= world.size
    return t


def _summed_copy(t: Tensor) -> Tensor:
    """A contiguous copy of `t` summed over ranks (the collectives work in place; autograd
    must not see its input changed)."""
    t = t.clone(memory_format=torch.contiguous_format)
    dist.all_reduce(t)
    return t


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, with the gradient summed back over ranks.

    Ours rather than `torch.distributed.nn.functional`'s: recent torch marks that module
    deprecated (a FutureWarning per rank and call site) and its suggested replacement is
    private. These work on every supported torch (≥ 2.2), on gloo and NCCL alike.
    """

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return _summed_copy(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _summed_copy(grad)


class _AllGatherRows(torch.autograd.Function):
    """Every rank's rows, concatenated in rank order; each rank gets back the gradient of its
    own rows summed over ranks (an all-reduce then a slice: works on gloo, which has no
    reduce-scatter, and costs nothing next to a step for a batch of embeddings)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x)
        ctx.rows, ctx.rank = x.shape[0], dist.get_rank()
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _summed_copy(grad)[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def all_reduce_sum_with_grad(x: Tensor) -> Tensor:
    """The sum of `x` over ranks, differentiable (every rank must call it with the same shape)."""
    return _AllReduceSum.apply(x)


def all_gather_with_grad(x: Tensor) -> Tensor:
    """All ranks' rows of `x` (same shape on every rank), concatenated, differentiable."""
    return _AllGatherRows.apply(x)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose statistics span every rank, with exact gradients, on any backend.

    torch's SyncBatchNorm needs CUDA; this one uses autograd-aware all_reduce so it also runs
    on CPU processes (gloo). Same parameters and buffers as BatchNorm1d/2d.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.ndim)]
        count = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        moments = torch.stack([x.sum(dims), x.square().sum(dims)])  # 2 × C
        moments = all_reduce_sum_with_grad(moments)
        n = all_reduce_sum_with_grad(count)
        mean = moments[0] / n
        var = moments[1] / n - mean.square()
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / (n - 1))
            self.num_batches_tracked += 1
        shape = [1, -1] + [1] * (x.ndim - 2)
        y = (x - mean.view(shape)) / torch.sqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def synchronise_batchnorm(module: nn.Module, device_type: str) -> nn.Module:
    """Replace every batch norm by its cross-rank version (SyncBatchNorm on CUDA)."""
    if device_type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            new = GlobalBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            new.load_state_dict(child.state_dict())
            setattr(module, name, new.to(child.weight.device if child.affine else "cpu"))
        else:
            synchronise_batchnorm(child, device_type)
    return module


def check_batch_split(batch_size: int, devices: int) -> None:
    """Each process takes an equal slice of the global batch: a ConfigError where it cannot."""
    if batch_size % devices:
        raise ConfigError(
            f"--batch-size {batch_size} (the global batch) must divide by the {devices} devices"
        )


ALTERNATING_DDP = "--alternating is not supported with several devices; use the default schedule"


def check_devices(
    devices: int, batch_size: int | None = None, device: str = "auto", alternating: bool = False
) -> None:
    """What the processes would each find wrong, found once, before they are started: a
    global batch that does not split evenly, a device vm does not run on, more processes than
    GPUs (or, on the CPU, than cores: they would only slow each other down)."""
    from vmcli.devices import resolve_device, usable_cpu_cores

    if devices < 1:
        raise ConfigError(f"--devices must be at least 1 (processes to train with); got {devices}")
    if batch_size is not None:
        check_batch_split(batch_size, devices)
    if alternating and devices > 1:
        raise ConfigError(ALTERNATING_DDP)
    kind = resolve_device(device).type
    if kind == "cuda" and devices > torch.cuda.device_count():
        raise ConfigError(f"--devices {devices}: only {torch.cuda.device_count()} GPU(s) visible")
    cores = usable_cpu_cores()
    if kind == "cpu" and devices > cores:
        raise ConfigError(
            f"--devices {devices}: this machine has {cores} CPU core(s); more CPU processes "
            "than cores only slow each other down"
        )


FAILED_RANK_GRACE_S = 30.0  # after one rank fails, how long the others get to stop alone


def launch(
    devices: int,
    argv: list[str],
    batch_size: int | None = None,
    device: str = "auto",
    alternating: bool = False,
) -> int:
    """Re-run this `vm train` command as `devices` processes on this machine, with the
    environment torchrun gives its workers (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT;
    one OpenMP thread each unless OMP_NUM_THREADS is set), checked first with
    `check_devices`, so a mistake is one message, not one per process.

    Ours rather than torchrun's launcher, so that what a run ends with is vm's: rank 0's one
    error line and its exit code (torchrun turned every error into its own traceback and
    exit 1), 130 after Ctrl-C (every rank gets it, checkpoints and stops at a step boundary),
    and no launcher banner. Where one rank fails and the others are left waiting in a
    collective, they are stopped after FAILED_RANK_GRACE_S."""
    import tempfile

    check_devices(devices, batch_size, device, alternating)
    with tempfile.TemporaryDirectory(prefix="vm-ranks-") as errors:
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(_free_port()),
            "WORLD_SIZE": str(devices),
            "LOCAL_WORLD_SIZE": str(devices),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "VM_RANK_ERRORS": errors,
        }
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "vmcli", *argv],
                env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                start_new_session=True,  # signals reach them through the launcher, once
                preexec_fn=_die_with_parent,
            )
            for r in range(devices)
        ]
        code, order, killed = _wait_for_ranks(procs)
        # a rank that failed for a reason of its own (not a lost peer, not stopped here)
        # speaks for the run: rank 0 if it did (it has printed its error), else the first
        real = [
            r
            for r in order
            if r not in killed and not os.path.exists(os.path.join(errors, f"peer{r}"))
        ]
        first = 0 if 0 in real or not real else real[0]
        if code and first != 0:
            from vmcli.console import error, print_json

            note = os.path.join(errors, f"rank{first}")
            rc = _exit_code(procs[first].returncode)
            if os.path.exists(note):
                with open(note) as f:
                    message = f"rank {first}: {f.read()}"
            else:
                message = f"rank {first} stopped with exit code {rc} (its output is above)"
            error(message)
            if "--json" in argv:  # rank 0 printed no document: the launcher's is the one
                print_json({"error": message, "exit_code": rc})
            return rc
        return code


def _die_with_parent() -> None:
    """In a rank, before it starts: be sent SIGTERM if the launcher dies (Linux), so a killed
    `vm train --devices N` leaves no ranks training on as orphans."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_code(c: int) -> int:
    return 128 - c if c < 0 else c  # killed by signal N: 128 + N, as a shell reports it


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_ranks(procs: list[subprocess.Popen]) -> tuple[int, list[int], set[int]]:
    """Wait for every rank, passing Ctrl-C (SIGINT) and SIGTERM on to them once: on Ctrl-C
    they checkpoint and stop at a step boundary; a second Ctrl-C kills them. Ranks left
    running FAILED_RANK_GRACE_S after another failed are killed. Returns (the run's exit
    code: rank 0's where it failed, else the first failure's, 130 after Ctrl-C, 143 after
    SIGTERM, 0 when all succeeded; the failed ranks in the order they failed; the ranks
    killed here)."""
    import signal
    import time

    stopped: list[int] = []  # signals passed on

    def pass_on(signum: int, frame: object) -> None:
        again = signum in stopped
        stopped.append(signum)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL if again else signum)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGINT, signal.SIGTERM)}
    order: list[int] = []
    killed: set[int] = set()
    failed_at = None
    try:
        while True:
            codes = [p.poll() for p in procs]
            order += [r for r, c in enumerate(codes) if c not in (None, 0) and r not in order]
            if all(c is not None for c in codes):
                break
            if failed_at is None and order:
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > FAILED_RANK_GRACE_S:
                for r, p in enumerate(procs):
                    if p.poll() is None:
                        p.kill()
                        killed.add(r)
            time.sleep(0.05)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopped:
        return (130 if stopped[0] == signal.SIGINT else 143), order, killed
    codes = [_exit_code(c) for c in codes]
    return codes[0] or next((c for c in codes if c), 0), order, killed
