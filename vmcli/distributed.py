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
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


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
            )
            for r in range(devices)
        ]
        code, killed = _wait_for_ranks(procs)
        if code and (procs[0].returncode == 0 or 0 in killed):  # rank 0 did not say why
            for r in range(1, devices):
                note = os.path.join(errors, f"rank{r}")
                if os.path.exists(note):
                    from vmcli.console import error

                    with open(note) as f:
                        error(f"rank {r}: {f.read()}")
                    return procs[r].returncode
        return code


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_ranks(procs: list[subprocess.Popen]) -> tuple[int, set[int]]:
    """Wait for every rank: (rank 0's exit code where it failed, else the first failure's (a
    signal as 128 + its number), 130 after Ctrl-C, 0 when all succeeded; the ranks stopped
    here because another had failed)."""
    import time

    interrupted, failed_at, killed = False, None, set()
    while True:
        try:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes):
                break
            if failed_at is None and any(c not in (None, 0) for c in codes):
                failed_at = time.monotonic()
            if failed_at is not None and time.monotonic() - failed_at > FAILED_RANK_GRACE_S:
                for r, p in enumerate(procs):
                    if p.poll() is None:
                        p.kill()
                        killed.add(r)
            time.sleep(0.05)
        except KeyboardInterrupt:  # the ranks got it too: they checkpoint and stop
            interrupted = True
    if interrupted:
        return 130, killed
    codes = [128 - c if c < 0 else c for c in codes]  # -9 (killed) → 137
    return codes[0] or next((c for c in codes if c), 0), killed
