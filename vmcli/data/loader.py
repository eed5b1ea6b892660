"""Where training batches come from: resident tensors, or files streamed from disk.

- `ResidentBatches` (the default): the dataset was decoded once into one tensor; it lives on
  the GPU when it fits in a quarter of the free GPU memory (batches are index gathers, no host
  round trip), otherwise in pinned host memory (one non-blocking copy per batch).
- `StreamedBatches` (`--data-mode stream`, or automatically when the decoded dataset would
  take more than a quarter of the available RAM): a DataLoader with worker processes decodes
  files on the fly. Memory is bounded: at most `workers × prefetch` batches are decoded ahead
  of the step that consumes them (`memory_bound_bytes`), whatever the dataset's size.

Both take the epoch's global permutation, so batch order, resume and distributed training
behave the same way in either mode.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from vmcli.console import info, warn
from vmcli.data.base import Item, Modality
from vmcli.devices import with_index
from vmcli.errors import DataError


def available_ram_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else physical memory, else 8 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


class ResidentBatches:
    """Batches gathered from a tensor held on the device (or in host memory when it does not
    fit on the GPU: then each batch is gathered, pinned and copied without blocking)."""

    def __init__(self, x: Tensor, device: torch.device):
        self.device = with_index(device)
        self.data_wait_s = 0.0
        self.resident = True  # the whole dataset lives on self.device
        if self.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(self.device)
            self.resident = x.numel() * x.element_size() < free // 4
            if not self.resident:
                info(
                    f"dataset ({x.numel() * x.element_size() / 2**30:.1f} GiB) kept in host memory; batches pinned and copied per step"
                )
        # host fallback: keep the dataset as it is and pin each gathered batch (pinning the
        # whole dataset as well would double its host memory for nothing)
        self.x = x.to(self.device) if self.resident else x.cpu()
        self.n = x.shape[0]

    def epoch(self, perm: Tensor, batch: int, start_step: int) -> Iterator[Tensor]:
        steps = self.n // batch
        if not self.resident:
            perm = perm.cpu()
        for step in range(start_step, steps):
            idx = perm[step * batch : (step + 1) * batch]
            t0 = time.perf_counter()
            raw = self.x[idx]
            if not self.resident:
                raw = raw.pin_memory().to(self.device, non_blocking=True)
            self.data_wait_s += time.perf_counter() - t0
            yield raw


SHOWN_STREAM_SKIPS = 10  # per worker process: a vanished folder is not 10,000 lines


class FileDataset(Dataset):
    """Decodes one file per item on demand (in DataLoader workers). A file that fails to
    decode is replaced by the next one, with a warning naming it (it is not fatal mid-run)."""

    def __init__(self, modality: Modality, root: Path, items: list[Item], meta: dict[str, Any]):
        self.modality, self.root, self.items, self.meta = modality, root, items, meta
        # items that failed in this process (its warnings are counted against it)
        self.failed: set[int] = set()
        # every item that failed in any worker or epoch so far (one byte per item, shared):
        # not tried or warned about again, so a file deleted mid-run costs one warning in
        # the whole run, not one per worker and epoch; the main process reports the total
        self.failed_shared = multiprocessing.RawArray("b", max(1, len(items)))

    def skipped_total(self) -> int:
        """Files that failed to decode in any worker so far."""
        return sum(self.failed_shared[: len(self.items)])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Tensor:
        for attempt in range(len(self.items)):
            i = (index + attempt) % len(self.items)
            if self.failed_shared[i]:
                continue
            try:
                return self.modality.decode_item(self.root, self.items[i], self.meta)
            except DataError as e:
                self.failed.add(i)
                self.failed_shared[i] = 1
                if len(self.failed) <= SHOWN_STREAM_SKIPS:
                    warn(f"skipped while streaming: {e}")
                if len(self.failed) == SHOWN_STREAM_SKIPS:
                    warn(
                        f"{SHOWN_STREAM_SKIPS} files skipped while streaming in this worker; "
                        "further ones are skipped without a warning each"
                    )
        raise DataError(
            f"{self.root}: none of its {len(self.items)} training files can be decoded any more "
            "(deleted or changed while training?)"
        )


class _EpochBatches(Sampler[list[int]]):
    def __init__(self, perm: list[int], batch: int, start_step: int):
        self.perm, self.batch, self.start = perm, batch, start_step

    def __len__(self) -> int:
        return len(self.perm) // self.batch - self.start

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, len(self.perm) // self.batch):
            yield self.perm[step * self.batch : (step + 1) * self.batch]


class StreamedBatches:
    """Batches decoded from disk by `workers` processes, `prefetch` batches ahead each."""

    def __init__(
        self,
        dataset: FileDataset,
        workers: int = 4,
        prefetch: int = 2,
        device: torch.device | None = None,
    ):
        self.dataset, self.device = dataset, device or torch.device("cpu")
        self.workers, self.prefetch = workers, prefetch
        self.n = len(dataset)
        self.data_wait_s = 0.0
        self.skipped_reported = 0

    def report_skipped(self) -> None:
        """After an epoch: how many files have failed while streaming, in all (the workers
        name at most SHOWN_STREAM_SKIPS each)."""
        total = self.dataset.skipped_total()
        if total > self.skipped_reported:  # only when it grew: not the same line every epoch
            warn(
                f"{total} of {self.n} training files skipped while streaming so far (deleted, "
                "changed or unreadable since the run started); each was replaced by another"
            )
            self.skipped_reported = total

    def memory_bound_bytes(self, batch: int, sample_bytes: int) -> int:
        """Decoded samples alive at once: the prefetched batches plus the one in use."""
        ahead = self.workers * self.prefetch if self.workers > 0 else 1
        return (ahead + 1) * batch * sample_bytes

    def epoch(self, perm: Tensor, batch: int, start_step: int) -> Iterator[Tensor]:
        loader = DataLoader(
            self.dataset,
            batch_sampler=_EpochBatches(perm.cpu().tolist(), batch, start_step),
            num_workers=self.workers,
            prefetch_factor=self.prefetch if self.workers > 0 else None,
            pin_memory=self.device.type == "cuda",
        )
        it = iter(loader)
        while True:
            t0 = time.perf_counter()
            try:
                raw = next(it)
            except StopIteration:
                self.report_skipped()
                return
            except DataError as e:  # raised in a worker: DataLoader wraps it in its traceback
                last = (str(e).strip().splitlines() or [""])[-1]
                raise DataError(last.split("DataError: ", 1)[-1]) from None
            raw = raw.to(self.device, non_blocking=True)
            self.data_wait_s += time.perf_counter() - t0
            yield raw
