"""The one small interface every data modality implements.

A modality (image, audio, sensor...) knows how to
- recognise its files (extensions + a cheap header check),
- decode a folder's files once into one tensor of "raw" samples (`load`),
- build the view spaces it supports: where the viewmaker acts and what the encoder sees,
- read one file at its native size and write a view back in the input's format (`vm augment`),
- draw handcrafted views (the baseline) and a preview a person can look at.

The training loop, runs, augment and eval only talk to this interface, so adding a modality
means adding one module beside this one.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vmcli.config import LoadOptions  # noqa: F401  (re-exported: modalities read it from here)
from vmcli.devices import module_device
from vmcli.errors import ConfigError, DataError


@dataclass(frozen=True)
class Item:
    """One sample's origin: file relative to the data root, split and class (None: unlabeled).

    `offset` is the first row of the sample inside the file when one file holds several
    samples (long sensor recordings cut into windows); 0 otherwise.
    """

    path: Path
    split: str = ""
    label: str | None = None
    offset: int = 0


@dataclass
class TensorData:
    """Decoded samples held in memory; `x[i]` comes from `items[i]`.

    `x` holds the modality's raw representation (uint8 pixels, float waveforms, float
    sensor windows), always channels-first: N × C × H × W or N × C × T.
    `meta` is JSON-able and is what a run stores to rebuild shapes and view spaces.
    """

    x: Tensor
    items: list[Item]
    meta: dict[str, Any]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)


class ViewSpace(nn.Module, ABC):
    """Where the viewmaker acts, and what the encoder sees.

    raw batch ──to_view──▶ viewmaker input ──viewmaker──▶ view ──to_encoder──▶ encoder input
    `from_view` maps a view back to the raw representation where that is possible (images,
    waveforms, sensor signals) so `vm augment` can write files in the input's format; for a
    space that cannot be inverted (spectrograms) it undoes only the normalisation, which is
    what `vm augment` writes (log power in the data's own scale).
    Normalization statistics are fitted on training data (`fit`) and stored in the run.
    """

    name: str = ""
    dims: int = 2  # viewmaker dims
    channels: int = 1  # viewmaker channels
    clamp: tuple[float, float] | None = None
    encoder_dims: int = 2
    invertible: bool = True  # from_view gives raw samples (False: this space, unnormalised)

    def __init__(self, meta: dict[str, Any], stats: dict[str, Any] | None = None):
        super().__init__()
        self.meta = meta
        self.stats: dict[str, Any] = dict(stats or {})

    def fit(self, raw: Tensor) -> dict[str, Any]:
        """Fit normalization statistics on training samples; returns the JSON-able stats."""
        return self.stats

    @abstractmethod
    def to_view(self, raw: Tensor) -> Tensor: ...

    def to_encoder(self, view: Tensor) -> Tensor:
        return view

    def from_view(self, view: Tensor) -> Tensor:
        return view

    def encoder_input_shape(self, raw_shape: tuple[int, ...]) -> tuple[int, ...]:
        """C × spatial shape the encoder receives for one raw sample of `raw_shape`."""
        with torch.no_grad():  # probe on the space's own device (it may sit on a GPU)
            probe = torch.zeros((1, *raw_shape), device=module_device(self))
            return tuple(self.to_encoder(self.to_view(probe)).shape[1:])


Handcrafted = Callable[[Tensor, torch.Generator | None], Tensor]


@dataclass
class FileSample:
    """One file read for `vm augment`: raw samples at native size plus what writing needs."""

    raw: Tensor  # 1 × C × ... (or K × C × T for several windows)
    # what writing needs; under "notes", what the views cannot keep as the input has it (a
    # list of phrases, e.g. "have several frames: ..."): `vm augment` warns once per phrase,
    # with a count of the files and their names
    context: dict[str, Any]
    # 1 × K × ... planes that must line up with the view but are not transformed (an image's
    # alpha, its no-data mask): `vm augment` moves them with the view's content (a learned
    # crop and flip) and hands the moved ones to `write_file`
    planes: Tensor | None = None


class Modality(ABC):
    """The per-modality plug-in; see the module docstring."""

    name: str = ""
    extensions: frozenset[str] = frozenset()
    has_magic: bool = True  # its header alone identifies a file (false for text formats)
    streamable: bool = True  # implements plan() + decode_item(), so it can stream from disk
    meta_type: type = dict  # the TypedDict of this modality's `meta` (what a run records)
    options: tuple[str, ...] = ()  # the LoadOptions fields it reads (others do not apply)
    # view space name → its class, built from (meta, stats); the first one is the default
    spaces: dict[str, type[ViewSpace]] = {}
    default_batch_size: int = 128
    # ε per view space where 0.05 (the paper's) is not the right default; chosen on validation
    # splits against the random-viewmaker control (benchmarks/RESULTS.md)
    default_budgets: dict[str, float] = {}
    # what `--views auto` trains: the viewmaker, unless a modality's benchmark showed a
    # learned family that wins on validation (sensors, audio, images: learned transforms)
    default_views: str = "viewmaker"
    # what `--transforms-budget auto` holds learned transforms to: None (each strength free
    # within its bounds) unless a benchmark showed a budget wins on validation (audio: "recipe")
    default_transforms_budget: float | str | None = None
    # whether `--precision auto` trains in bf16 on a CPU with bf16 hardware: only where the
    # quality benchmark showed no loss against fp32 on such a CPU (benchmarks/RESULTS.md)
    cpu_bf16: bool = False
    # appended to "only N usable training sample(s)": how this kind of data makes more
    few_samples_hint: str = ""

    def default_budget(self, view_space: str) -> float:
        return self.default_budgets.get(view_space, 0.05)

    output_suffix: dict[str, str] = {}  # view space → file suffix when views are not raw
    # view space → suffix of the file `--to-wav` writes beside each view (its name is the
    # view's with this suffix), so that `vm augment` plans those names with the views'
    companion_suffix: dict[str, str] = {}

    @abstractmethod
    def sniff(self, path: Path, head: bytes) -> bool:
        """True if the first bytes look like this modality's format (header check)."""

    def plan(
        self,
        root: Path,
        items: list[Item],
        options: LoadOptions,
        meta: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[Item], list[tuple[Path, str]]]:
        """Decide the dataset's shape from cheap reads (headers) without decoding:
        (meta, usable items, skipped files). With `meta` (from a run), keep that run's shape."""
        raise ConfigError(
            f"{self.name} data cannot be streamed from disk; it is loaded into memory"
        )

    def decode_item(self, root: Path, item: Item, meta: dict[str, Any]) -> Tensor:
        """One sample in the training shape (C × ...), or DataError naming the file."""
        raise ConfigError(
            f"{self.name} data cannot be streamed from disk; it is loaded into memory"
        )

    def load(
        self,
        root: Path,
        items: list[Item],
        options: LoadOptions,
        meta: dict[str, Any] | None = None,
    ) -> TensorData:
        """Decode every item once into one tensor. With `meta` (from a run), reproduce that
        run's shapes. Unusable files are skipped by name."""
        planned, usable, skipped = self.plan(root, items, options, meta)
        return self.decode_all(root, usable, planned, skipped, len(items))

    def decode_all(
        self,
        root: Path,
        usable: list[Item],
        meta: dict[str, Any],
        skipped: list[tuple[Path, str]],
        total: int,
    ) -> TensorData:
        """Decode the planned items (in worker processes when there are many) and stack them;
        report what was skipped."""
        decoded = parallel_map(functools.partial(_decode_or_reason, self, root, meta), usable)
        kept = [(it, d) for it, d in zip(usable, decoded, strict=True) if not isinstance(d, str)]
        skipped = skipped + [
            (root / it.path, d) for it, d in zip(usable, decoded, strict=True) if isinstance(d, str)
        ]
        report_skipped(skipped, total, self.name)
        if not kept:
            raise DataError(f"{root}: none of the {total} {self.name} files could be used")
        x = torch.from_numpy(np.stack([d for _, d in kept]))
        return TensorData(x, [it for it, _ in kept], meta, skipped)

    @property
    def view_spaces(self) -> tuple[str, ...]:
        return tuple(self.spaces)

    def build_space(
        self, name: str, meta: dict[str, Any], stats: dict[str, Any] | None = None
    ) -> ViewSpace:
        """The view space `name` for data described by `meta` (fitted `stats` from a run)."""
        if name not in self.spaces:
            raise ConfigError(
                f"{self.name} data has the view space(s) {', '.join(self.spaces)}; got {name!r}"
            )
        return self.spaces[name](meta, stats)

    @abstractmethod
    def check_meta(self, meta: dict[str, Any], where: str) -> list[int]:
        """The raw sample shape a run's data description implies, every field checked and
        bounded (it comes from a file that may not be ours); `vmcli.untrusted.Untrusted` if not.
        `where` prefixes field names in messages ("data_meta.")."""

    @abstractmethod
    def handcrafted(self, meta: dict[str, Any]) -> Handcrafted:
        """The standard hand-designed augmentation for this modality, on raw device batches."""

    @abstractmethod
    def read_file(self, path: Path, meta: dict[str, Any], options: LoadOptions) -> FileSample: ...

    @abstractmethod
    def write_file(self, raw: Tensor, sample: FileSample, dst: Path) -> None: ...

    def output_path(self, rel: Path, view_space: str, keep_suffix: bool = False) -> Path:
        """Relative output path for a view of `rel`: the same, or with the view space's suffix
        (e.g. .npy) when its views are not files of the input's kind: in place of the input's
        suffix (c0.wav → c0.npy), or after it with `keep_suffix` (c0.wav → c0.wav.npy; what
        `vm augment` uses for inputs that would otherwise share an output name)."""
        suffix = self.output_suffix.get(view_space)
        if not suffix:
            return rel
        return rel.with_name(rel.name + suffix) if keep_suffix else rel.with_suffix(suffix)

    def describe_raw(self, meta: dict[str, Any]) -> str:
        """What a raw batch of this modality looks like, for the Python API's error messages."""
        shape = [int(s) for s in meta["raw_shape"]]
        axes = " × ".join(["T"] if len(shape) == 2 else ["H", "W"])
        return f"B × {shape[0]} × {axes} tensors"

    @abstractmethod
    def preview(
        self, raw: Tensor, views: list[Tensor], deltas: list[Tensor], space: ViewSpace, dst: Path
    ) -> list[Path]:
        """Write files a person can look at (and listen to); returns their paths."""

    def raw_baselines(self, data: TensorData, space: ViewSpace) -> dict[str, Tensor]:
        """Hand-made features for honest probe baselines (name → N × D): here the encoder's
        input itself, flattened (average-pooled down to at most 4096 values)."""
        device = module_device(space)  # evaluation may have moved the space to the GPU
        feats = []
        with torch.no_grad():
            for i in range(0, len(data.x), 512):
                chunk = data.x[i : i + 512].to(device)
                feats.append(_pool_flat(space.to_encoder(space.to_view(chunk))).float().cpu())
        return {"raw inputs": torch.cat(feats)}


def _decode_or_reason(
    modality: Modality, root: Path, meta: dict[str, Any], item: Item
) -> np.ndarray | str:
    """A decoded sample as a numpy array (plain pickling between processes; torch tensors
    would travel as shared-memory file descriptors), or why the file was skipped."""
    try:
        return modality.decode_item(root, item, meta).numpy()
    except DataError as e:
        return str(e).removeprefix(str(root / item.path)).lstrip(":, ")


PARALLEL_MIN_ITEMS = 2000


def parallel_map(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """`[fn(x) for x in items]`, in worker processes when the list is long (Linux).

    Decoding many small files is Python-bound: threads fight over the GIL (slower than one
    thread, measured), processes scale. Workers are forked, not spawned: spawning re-runs the
    caller's script in every worker, and an unguarded script would repeat its side effects.
    The work done in workers (Pillow, libsndfile, soxr, numpy, CSV parsing) starts no OpenMP
    threads, the usual hazard of forking a process that uses torch. Elsewhere: one process.
    """
    workers = min(os.cpu_count() or 1, 16)
    if len(items) < PARALLEL_MIN_ITEMS or workers < 2:
        return [fn(x) for x in items]
    if "fork" not in multiprocessing.get_all_start_methods() or not sys.platform.startswith(
        "linux"
    ):
        return [fn(x) for x in items]
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(fn, items, chunksize=max(1, len(items) // (workers * 8))))
    except BrokenProcessPool:  # a worker died: do the work here instead
        return [fn(x) for x in items]


def report_skipped(skipped: list[tuple[Path, str]], total: int, what: str) -> None:
    """One warning per skipped file (naming it), then the count: what a user needs to fix."""
    from vmcli.console import warn

    for path, reason in skipped:
        if len(reason) > 300:  # a reason quoting a 3,000-column header would fill screens
            reason = reason[:300] + "…"
        warn(f"skipped {path}: {reason}")
    if skipped:
        warn(f"skipped {len(skipped)} unusable {what} file(s) of {total}")


def _pool_flat(x: Tensor, max_dims: int = 4096) -> Tensor:
    """Flatten samples, average-pooling space first when that would exceed `max_dims`."""
    import torch.nn.functional as F

    while x[0].numel() > max_dims:
        x = F.avg_pool2d(x, 2) if x.ndim == 4 else F.avg_pool1d(x, 2)
    return x.flatten(1)
