"""Array folders: one NumPy sample per `.npy` / `.npz` file (EEG, spectra, simulations...).

For data that is already numbers: no decoding beyond NumPy's own format, read with
`allow_pickle=False` (object arrays and pickles are never loaded; such files are skipped).

A file holds one sample, channels first:
- a vector of T values is 1 × T; a 2-D array is C × T (channels × time, the usual layout of
  EEG and multichannel signals), or a 1 × H × W image with `--array-layout hw`;
- a 3-D array is C × H × W. (Channels-last H × W × C arrays must be transposed first.)
- an `.npz` must hold exactly one array, or one array named `x` (other arrays, e.g. labels,
  are ignored for training and copied unchanged by `vm augment`).
Integer and floating dtypes are read as float32. All files must agree on the sample shape: the
majority shape wins and files of other shapes are skipped by name (no majority: an error that
lists the shapes), like files with NaN/inf values, other dtypes or more dimensions.

One view space, `values`: the viewmaker (1-D for C × T samples, 2-D for C × H × W) perturbs
the per-channel z-scored values (mean/std from the training data, stored in the run), so ε is in
channel standard deviations. It is invertible: `vm augment` writes each file back in the input's
units, shape and (floating) dtype, `.npy` as `.npy` and `.npz` as `.npz` with the same key, at
each file's own length or size (the viewmaker is fully convolutional).

Handcrafted views (`--views handcrafted|both`): 1-D samples get the sensor recipe
(`views.sensor_views`); 2-D samples a random resized crop with flip (`views.random_resized_crop`,
scale 0.2–1) and Gaussian jitter of 5 % of each sample's per-channel std.
"""

from __future__ import annotations

import functools
import io
import math
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from vmcli import preview as pv
from vmcli import untrusted
from vmcli.console import info
from vmcli.data.base import (
    FileSample,
    Handcrafted,
    Item,
    LoadOptions,
    Modality,
    TensorData,
    ViewSpace,
    parallel_map,
    report_skipped,
)
from vmcli.data.sensor import channel_plot_row
from vmcli.errors import ConfigError, DataError, library_says
from vmcli.views import random_resized_crop, sensor_views

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members / an empty zip
LAYOUTS = ("ct", "hw")  # how a 2-D array is read: channels × time, or a 1-channel image
MIN_SIDE = 8  # shortest length / side a training sample may have
MAX_VALUES = 2**26  # values per sample (256 MiB as float32): larger files are skipped
PREVIEW_CHANNELS = 6  # channels drawn per sample in preview.png
PREVIEW_SIDE = 128  # 2-D previews are average-pooled down to about this many pixels


def _shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return " × ".join(str(s) for s in shape)


def sample_shape(shape: tuple[int, ...], layout: str) -> tuple[int, ...] | str:
    """A file's array shape → the sample's channels-first shape, or why it cannot be one."""
    if len(shape) == 0:
        return "holds a single number (a 0-d array); vm reads T, C × T, H × W or C × H × W arrays"
    if len(shape) > 3:
        return (
            f"has {len(shape)} dimensions ({_shape_text(shape)}); vm reads one sample per file: "
            "T, C × T, H × W or C × H × W"
        )
    if 0 in shape:
        return f"is empty (shape {_shape_text(shape)})"
    if len(shape) == 1:
        return (1, shape[0])
    if len(shape) == 2:
        return (1, *shape) if layout == "hw" else tuple(shape)
    return tuple(shape)


def _dtype_problem(dtype: np.dtype) -> str | None:
    if dtype.hasobject:
        return (
            "holds Python objects (a pickled object array); vm loads arrays with "
            "allow_pickle=False and never unpickles"
        )
    if dtype.fields is not None:
        return f"is a structured array (fields {', '.join(dtype.names or ())}); save a plain numeric array"
    if dtype.kind == "c":
        return "holds complex values; save real and imaginary parts (or magnitudes) as channels"
    if dtype.kind not in "fiu":
        return f"holds {dtype} values, not numbers"
    return None


def _read_header(f: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a .npy header (never reads the data, never unpickles)."""
    version = np.lib.format.read_magic(f)
    if version not in ((1, 0), (2, 0)):  # 3.0 only exists for structured dtypes with
        # non-ASCII field names
        raise ValueError(f".npy format version {version[0]}.{version[1]} is not a plain array")
    read = (
        np.lib.format.read_array_header_1_0
        if version == (1, 0)
        else np.lib.format.read_array_header_2_0
    )
    try:
        shape, _, dtype = read(f)
    except Exception as e:
        if str(e).startswith("EOF"):  # numpy's own words for a file that ends in its header
            raise ValueError("is cut short: the file ends inside its .npy header") from None
        # numpy parses the header as a Python literal: a damaged one surfaces as whatever the
        # parser raised (ValueError with "<ast.Call object ...>", SyntaxError, TokenError,
        # TypeError for a bad dtype), none of which says what is wrong with the file
        raise ValueError(
            "is not a NumPy array: its .npy header is damaged (it must be a dict with "
            "'descr', 'fortran_order' and 'shape')"
        ) from e
    if any(not isinstance(n, int) or n < 0 for n in shape):
        raise ValueError(f"is not a NumPy array: its .npy header gives the shape {shape}")
    return tuple(shape), dtype


def _npz_member(z: zipfile.ZipFile) -> str:
    """The .npz member vm reads: the only array, or the one named `x`."""
    names = [n for n in z.namelist() if n.endswith(".npy")]
    if len(names) == 1:
        return names[0]
    if "x.npy" in names:
        return "x.npy"
    if not names:
        raise ValueError("holds no arrays")
    listed = ", ".join(n.removesuffix(".npy") for n in names[:8])
    raise ValueError(
        f"holds {len(names)} arrays ({listed}); vm reads one per file: the only array, or one named x"
    )


@dataclass
class _Probe:
    shape: tuple[int, ...]  # the sample's channels-first shape
    file_shape: tuple[int, ...]
    dtype: str


READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)


def _kind(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head[:4] in ZIP_MAGIC:
        return "npz"
    raise ValueError("is neither a .npy nor an .npz file (no NUMPY or zip header)")


def _probe(path: Path, layout: str) -> _Probe | str:
    """Cheap check of one file from its header: its sample shape, or why it is skipped."""
    try:
        if _kind(path) == "npy":
            with path.open("rb") as f:
                shape, dtype = _read_header(f)
        else:
            with zipfile.ZipFile(path) as z, z.open(_npz_member(z)) as f:
                shape, dtype = _read_header(f)
    except READ_ERRORS as e:
        return _reason(e)
    problem = _dtype_problem(dtype)
    if problem:
        return problem
    if math.prod(shape) > MAX_VALUES:  # exact: a damaged header's shape can overflow int64
        return f"holds {_shape_text(shape)} values (over {MAX_VALUES:,} per sample); cut it into samples"
    sample = sample_shape(shape, layout)
    if isinstance(sample, str):
        return sample
    return _Probe(sample, shape, str(dtype))


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, ValueError) and text.startswith(("holds", "is ")):
        return text
    return f"cannot be read as a NumPy array ({library_says(e)})"


@dataclass
class _Loaded:
    array: np.ndarray  # as stored (dtype and shape of the file)
    key: str | None  # the .npz member's name (without .npy); None for .npy files
    compressed: bool  # the .npz member was deflated


def _load(path: Path) -> _Loaded:
    """The file's array (allow_pickle=False), checked: numeric, not too big, finite."""
    try:
        if _kind(path) == "npy":
            with path.open("rb") as f:
                shape, dtype = _read_header(f)
                _check(shape, dtype, path)
                f.seek(0)
                array = np.lib.format.read_array(f, allow_pickle=False)
            loaded = _Loaded(array, None, False)
        else:
            with zipfile.ZipFile(path) as z:
                name = _npz_member(z)
                with z.open(name) as f:
                    shape, dtype = _read_header(f)
                _check(shape, dtype, path)
                with z.open(name) as f:
                    array = np.lib.format.read_array(f, allow_pickle=False)
                compressed = z.getinfo(name).compress_type != zipfile.ZIP_STORED
            loaded = _Loaded(array, name.removesuffix(".npy"), compressed)
    except READ_ERRORS as e:
        raise DataError(f"{path}: {_reason(e)}") from None
    if loaded.array.dtype.kind == "f" and not np.isfinite(loaded.array).all():
        raise DataError(f"{path}: holds NaN or infinite values")
    return loaded


def _check(shape: tuple[int, ...], dtype: np.dtype, path: Path) -> None:
    problem = _dtype_problem(dtype)
    if problem is None and math.prod(shape) > MAX_VALUES:
        problem = f"holds {_shape_text(shape)} values (over {MAX_VALUES:,} per sample)"
    if problem:
        raise DataError(f"{path}: {problem}")


def _to_float32(array: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    with np.errstate(over="ignore"):  # overflow becomes inf: reported below
        out = np.ascontiguousarray(array.reshape(shape), dtype=np.float32)
    if not np.isfinite(out).all():
        raise DataError(f"{path}: holds values beyond float32's range (about ±3.4e38)")
    return out


class ArrayMeta(TypedDict):
    """What a run records about its arrays (config.json `data_meta`, export headers)."""

    shape: list[int]  # one sample: C × T or C × H × W
    layout: str  # how 2-D arrays were read: "ct" (channels × time) or "hw" (1-channel image)


class ValuesSpace(ViewSpace):
    """Per-channel z-scored values; the viewmaker's dims follow the sample's rank (C × T: 1-D,
    C × H × W: 2-D). ε is in channel standard deviations. Invertible."""

    name = "values"
    invertible = True

    def __init__(self, meta: dict[str, Any], stats: dict[str, Any] | None = None):
        super().__init__(meta, stats)
        shape = [int(s) for s in meta["shape"]]
        self.channels = shape[0]
        self.dims = self.encoder_dims = len(shape) - 1
        view = (1, self.channels) + (1,) * self.dims
        mean = self.stats.get("mean", [0.0] * self.channels)
        std = self.stats.get("std", [1.0] * self.channels)
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(view), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(view), persistent=False
        )

    def fit(self, raw: Tensor) -> dict[str, Any]:
        """Per-channel mean and std in float64, a chunk at a time (no float64 copy of it all).
        A constant channel keeps std 1."""
        reduce = (0, *range(2, raw.ndim))
        count = raw.numel() // raw.shape[1]
        total = torch.zeros(raw.shape[1], dtype=torch.float64)
        for i in range(0, len(raw), 256):
            total += raw[i : i + 256].double().sum(dim=reduce).cpu()
        mean = total / count
        squares = torch.zeros_like(mean)
        shape = (1, -1) + (1,) * (raw.ndim - 2)
        for i in range(0, len(raw), 256):
            chunk = raw[i : i + 256].double() - mean.to(raw.device).view(shape)
            squares += chunk.square().sum(dim=reduce).cpu()
        std = (squares / max(count - 1, 1)).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.stats = {"mean": mean.tolist(), "std": std.tolist()}
        self.mean.copy_(mean.float().view(self.mean.shape))
        self.std.copy_(std.float().view(self.std.shape))
        return self.stats

    def to_view(self, raw: Tensor) -> Tensor:
        return (raw.float() - self.mean) / self.std

    def from_view(self, view: Tensor) -> Tensor:
        return view * self.std + self.mean


def array_image_views(x: Tensor, g: torch.Generator | None = None, jitter: float = 0.05) -> Tensor:
    """Handcrafted views of C × H × W arrays: a random resized crop with flip (scale 0.2–1,
    aspect 3/4–4/3, `views.random_resized_crop`), then Gaussian noise of `jitter` × each
    sample's per-channel std. Works in the data's units."""
    x = random_resized_crop(x.float(), g)
    std = x.std(dim=(2, 3), keepdim=True)
    return x + jitter * std * torch.randn(x.shape, device=x.device, generator=g)


class ArrayModality(Modality):
    name = "array"
    extensions = frozenset({"npy", "npz"})
    options = ("array_layout",)
    meta_type = ArrayMeta
    spaces = {"values": ValuesSpace}
    default_batch_size = 128

    def sniff(self, path: Path, head: bytes) -> bool:
        # any zip starts like an .npz: claim one only by its extension (not a .zip or .docx)
        return head.startswith(NPY_MAGIC) or (
            head[:4] in ZIP_MAGIC and path.suffix.lower() == ".npz"
        )

    # -- loading -----------------------------------------------------------------------------
    def plan(
        self,
        root: Path,
        items: list[Item],
        options: LoadOptions,
        meta: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[Item], list[tuple[Path, str]]]:
        """Headers only: each file's sample shape; the majority shape (or the run's) wins."""
        layout = meta["layout"] if meta else (options.array_layout or "ct")
        if layout not in LAYOUTS:
            raise ConfigError(
                f"--array-layout must be ct (C × T) or hw (H × W images); got {layout!r}"
            )
        paths = [root / it.path for it in items]
        probes = parallel_map(functools.partial(_probe, layout=layout), paths)
        skipped = [(p, r) for p, r in zip(paths, probes, strict=True) if isinstance(r, str)]
        ok = [(it, r) for it, r in zip(items, probes, strict=True) if not isinstance(r, str)]
        if not ok:
            report_skipped(skipped, len(items), "array")
            raise DataError(f"{root}: none of the {len(items)} array files could be used")
        shapes = Counter(r.shape for _, r in ok)
        if meta is not None:
            shape, like = tuple(int(s) for s in meta["shape"]), "the run's data"
        else:
            shape, count = shapes.most_common(1)[0]
            like = "most files"
            if len(shapes) > 1 and count <= len(ok) / 2:
                listing = "; ".join(
                    f"{n} files: {_shape_text(s)}" for s, n in shapes.most_common(5)
                )
                report_skipped(skipped, len(items), "array")
                raise DataError(
                    f"{root}: the array files disagree on their shape ({listing}); "
                    "vm needs one sample shape (no shape is held by most files)"
                )
            self._check_trainable_shape(root, shape, ok)
            self._describe(shape, layout, ok)
        for it, r in ok:
            if r.shape != shape:
                skipped.append(
                    (
                        root / it.path,
                        f"has shape {_shape_text(r.shape)}, not {_shape_text(shape)} like {like}",
                    )
                )
        usable = [it for it, r in ok if r.shape == shape]
        return ArrayMeta(shape=list(shape), layout=layout), usable, skipped

    def _check_trainable_shape(
        self, root: Path, shape: tuple[int, ...], ok: list[tuple[Item, _Probe]]
    ) -> None:
        if min(shape[1:]) >= MIN_SIDE:
            return
        hint = ""
        if len(shape) == 2 and shape[0] > shape[1]:
            hint = (
                f"; rows are channels: if yours are time steps × {shape[1]} channels, save "
                "the transpose (x.T)"
            )
        raise DataError(
            f"{root}: samples of {_shape_text(shape)} are too short "
            f"(each length or side needs ≥ {MIN_SIDE}){hint}"
        )

    def _describe(self, shape: tuple[int, ...], layout: str, ok: list[tuple[Item, _Probe]]) -> None:
        n = sum(r.shape == shape for _, r in ok)
        if len(shape) == 2:
            what = f"{shape[0]} channel(s) × {shape[1]} steps (1-D viewmaker)"
        else:
            what = f"{shape[0]} channel(s) × {shape[1]} × {shape[2]} (2-D viewmaker)"
        dtypes = sorted({r.dtype for _, r in ok if r.shape == shape})
        info(f"array: {n} files of {what}; dtype {', '.join(dtypes)}")
        ranks = {len(r.file_shape) for _, r in ok if r.shape == shape}
        if 2 in ranks:
            info(
                "array: 2-D arrays are read as "
                + (
                    "1 × H × W images (--array-layout hw)"
                    if layout == "hw"
                    else "channels × time; --array-layout hw reads them as H × W images"
                )
            )
        if len(shape) == 3 and shape[2] in (3, 4) and shape[0] > 4:
            info(
                f"array: {_shape_text(shape)} looks channels-last; vm reads C × H × W "
                "(save np.moveaxis(x, -1, 0) if the last axis is the channels)"
            )

    def decode_item(self, root: Path, item: Item, meta: dict[str, Any]) -> Tensor:
        path = root / item.path
        loaded = _load(path)
        shape = tuple(int(s) for s in meta["shape"])
        sample = sample_shape(loaded.array.shape, meta["layout"])
        if sample != shape:
            got = sample if isinstance(sample, str) else f"has shape {_shape_text(sample)}"
            raise DataError(f"{path}: {got}, not {_shape_text(shape)}")
        return torch.from_numpy(_to_float32(loaded.array, shape, path))

    def check_meta(self, meta: dict[str, Any], where: str) -> list[int]:
        dims = meta.get("shape")
        if (
            not isinstance(dims, list)
            or len(dims) not in (2, 3)
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims)
        ):
            raise untrusted.Untrusted(
                f"{where}shape is {untrusted.shown(dims)}, not C × T or C × H × W sizes"
            )
        if dims[0] > untrusted.MAX_COLUMNS:
            raise untrusted.Untrusted(
                f"{where}shape has {dims[0]} channels, more than {untrusted.MAX_COLUMNS}"
            )
        untrusted.one_of(meta, "layout", ("ct", "hw"), where)
        return list(dims)

    def handcrafted(self, meta: dict[str, Any]) -> Handcrafted:
        return sensor_views if len(meta["shape"]) == 2 else array_image_views

    def raw_baselines(self, data: TensorData, space: ViewSpace) -> dict[str, Tensor]:
        """The flattened z-scored samples (pooled when large) and per-channel statistics."""
        baselines = super().raw_baselines(data, space)
        x = data.x.float().flatten(2)
        stats = torch.cat([x.mean(2), x.std(2), x.amin(2), x.amax(2)], dim=1)
        baselines["channel mean/std/min/max"] = stats
        return baselines

    def describe_raw(self, meta: dict[str, Any]) -> str:
        shape = [int(s) for s in meta["shape"]]
        axes = "T" if len(shape) == 2 else "H × W"
        return (
            f"arrays B × {shape[0]} × {axes} in the files' units (trained on {_shape_text(shape)})"
        )

    # -- augment: one file at its own size -------------------------------------------------
    def read_file(self, path: Path, meta: dict[str, Any], options: LoadOptions) -> FileSample:
        loaded = _load(path)
        expected = [int(s) for s in meta["shape"]]
        sample = sample_shape(loaded.array.shape, meta["layout"])
        if isinstance(sample, str):
            raise DataError(f"{path}: {sample}")
        if len(sample) != len(expected) or sample[0] != expected[0]:
            raise DataError(
                f"{path}: has shape {_shape_text(loaded.array.shape)}; the run was trained on "
                f"{_shape_text(expected)} samples ({expected[0]} channel(s), {len(expected) - 1}-D)"
            )
        raw = torch.from_numpy(_to_float32(loaded.array, sample, path))[None]
        return FileSample(raw, {"loaded": loaded, "source": path})

    def write_file(self, raw: Tensor, sample: FileSample, dst: Path) -> None:
        """The view in the input's units, shape and floating dtype (float32 for integer
        inputs): the input plus the view's change, added in float64 so the unchanged part of a
        float64 array stays exact. .npz files keep their other members byte for byte."""
        loaded: _Loaded = sample.context["loaded"]
        original = loaded.array
        change = (raw[0].detach().float().cpu() - sample.raw[0].float()).double().numpy()
        dtype = original.dtype if original.dtype.kind == "f" else np.dtype(np.float32)
        out = original.astype(np.float64) + change.reshape(original.shape)
        # a view past the dtype's largest value (float16 data near ±65504) would turn to ±inf:
        # it is held at that value instead, and the file says so once
        top = float(np.finfo(dtype).max)
        if np.isfinite(original).all() and (np.abs(out) > top).any():
            note = f"had view values beyond {dtype}'s range: held at ±{top:g}, not written as ±inf"
            notes = sample.context.setdefault("notes", [])
            if note not in notes:  # one note per file, whatever --views-per-input
                notes.append(note)
            out = np.clip(out, -top, top)
        out = out.astype(dtype)
        if loaded.key is None:
            with dst.open("wb") as f:
                np.lib.format.write_array(f, out, allow_pickle=False)
            return
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, out, allow_pickle=False)
        member = f"{loaded.key}.npy"
        compression = zipfile.ZIP_DEFLATED if loaded.compressed else zipfile.ZIP_STORED
        with (
            zipfile.ZipFile(sample.context["source"]) as src,
            zipfile.ZipFile(dst, "w", compression, allowZip64=True) as zout,
        ):
            for entry in src.infolist():
                if entry.filename == member:
                    zout.writestr(member, buffer.getvalue())
                else:
                    zout.writestr(entry, src.read(entry))

    # -- preview ----------------------------------------------------------------------------
    def preview(
        self, raw: Tensor, views: list[Tensor], deltas: list[Tensor], space: ViewSpace, dst: Path
    ) -> list[Path]:
        """1-D: a line plot per channel (the original in grey under each view); 2-D: each
        channel as a colour map on the original's scale; δ in blue (−) / red (+). At most
        PREVIEW_CHANNELS channels per sample."""
        with torch.no_grad():
            original = space.to_view(raw.float())[:, :PREVIEW_CHANNELS]
        views = [v[:, :PREVIEW_CHANNELS].float() for v in views]
        deltas = [d[:, :PREVIEW_CHANNELS].float() for d in deltas]
        rows = []
        for i in range(original.shape[0]):
            if space.dims == 1:
                row = channel_plot_row(original, views, deltas, i)
            else:
                lo, hi = float(original[i].min()), float(original[i].max())
                row = [_colour_tiles(original[i], lo, hi)]
                row += [_colour_tiles(v[i], lo, hi) for v in views]
                if deltas:
                    row.append(_colour_tiles(deltas[0][i], None, None))
            rows.append(row)
        labels = pv.column_labels(len(views), bool(deltas))
        return [pv.save_png(pv.grid(rows, labels), dst)]


def _colour_tiles(x: Tensor, lo: float | None, hi: float | None) -> np.ndarray:
    """C × H × W → one tile per channel stacked vertically (viridis on [lo, hi], or the
    diverging map when lo/hi are None), pooled down for big arrays, enlarged for small ones."""
    factor = -(-max(x.shape[1:]) // PREVIEW_SIDE)
    if factor > 1:
        x = F.avg_pool2d(x[None], factor, ceil_mode=True)[0]
    tiles = [
        pv.upscale(pv.diverging(c.numpy()) if lo is None else pv.colormap(c.numpy(), lo, hi), 64)
        for c in x
    ]
    return np.concatenate(tiles, axis=0)
