"""Run by test_distributed under torchrun: one training step on a folder, loss and gradients
saved by rank 0. Also importable, to make the same step in a single process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from vmcli.config import TrainConfig
from vmcli.data import MODALITIES, scan
from vmcli.distributed import World, setup, teardown, world_from_env
from vmcli.session import _build_job, _resolve, load_training_data
from vmcli.training import _average_transform_grads, _contrastive_loss, make_views, prepare


def one_step(folder: Path, world: World, views: str) -> dict:
    cfg = TrainConfig(
        data=str(folder),
        epochs=1,
        batch_size=8,
        encoder="small",
        viewmaker_width=8,
        device="cpu",
        views=views,
        # contiguous convolutions: channels-last CPU kernels pick algorithms by batch size, so
        # a batch of 4 and one of 8 would differ by float noise the exact checks here forbid
        channels_last=False,
    )
    index = scan(folder, MODALITIES)
    modality = MODALITIES[index.modality]
    data = load_training_data(cfg, modality, index)
    cfg = _resolve(cfg, modality, len(data), torch.device("cpu"), world)
    space = modality.build_space(cfg.view_space, data.meta)
    space.fit(data.sample)
    job = _build_job(cfg, modality, data, space, torch.device("cpu"))
    job.world = world
    opt = prepare(job)
    job.encoder.train()
    gen = torch.Generator().manual_seed(1)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    made = make_views(job, data.sample[perm[:8]], gen, reverse=True)
    loss = _contrastive_loss(job, made.views)
    loss.backward()
    _average_transform_grads(job, opt)  # what train_step does for the transform strengths
    global_loss = loss.detach().clone()
    if world.distributed:
        torch.distributed.all_reduce(global_loss)
        global_loss /= world.size
    grads = {f"encoder.{n}": p.grad.clone() for n, p in job.encoder.named_parameters()}
    if job.viewmaker is not None:
        grads.update(
            {f"viewmaker.{n}": p.grad.clone() for n, p in job.viewmaker.named_parameters()}
        )
    if job.transforms is not None:
        grads["transforms.logits"] = job.transforms.logits.grad.clone()
    return {"loss": global_loss, "grads": grads}


if __name__ == "__main__":
    folder, out, views = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    world = world_from_env()
    setup("cpu")
    torch.set_num_threads(1)
    result = one_step(folder, world, views)
    if world.is_main:
        torch.save(result, out)
    teardown()
    # the process group must be gone once torn down: one still alive (held by a reference)
    # has its gloo threads killed at interpreter exit, which now and then aborts the process
    threads = [
        Path(f"/proc/self/task/{t}/comm").read_text().strip() for t in os.listdir("/proc/self/task")
    ]
    if any("gloo" in name for name in threads):
        sys.exit(f"rank {world.rank}: gloo threads still running after teardown: {threads}")
