"""Image folders: any Pillow-readable file, any mode, to a fixed channel count and size.

- Grayscale data (every file L, LA, 1, I, I;16 or F) stays 1-channel; anything else is RGB.
- 16-bit, 32-bit and float images are scaled to 8 bits by their range (not clipped) for
  training; `vm augment` keeps their precision and writes views back in their own units.
- Training size: shorter side resized to `--image-size` (default: the median shorter side,
  clamped to 16..224), then a centre crop, so the batch is one tensor.
- `vm augment` works at each file's native size (the viewmaker is fully convolutional) and
  writes the same format, mode, bit depth and alpha channel as the input; the alpha channel
  and a float image's NaN (no-data) pixels move with the content (a learned crop and flip).
  16-bit colour is read as 8 bits (Pillow's limit) and said so.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from vmcli import preview as pv
from vmcli import untrusted
from vmcli.config import MIN_IMAGE_SIZE
from vmcli.console import first_few, info, warn
from vmcli.data.base import (
    FileSample,
    Handcrafted,
    Item,
    LoadOptions,
    Modality,
    ViewSpace,
    parallel_map,
    report_skipped,
)
from vmcli.errors import DataError, library_says
from vmcli.views import simclr_image_views

GRAY_MODES = {"L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}
WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
READ_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
    EOFError,
)
MIN_SIZE, MAX_SIZE = 16, 224


class ImageMeta(TypedDict):
    """What a run records about its images (config.json `data_meta`, export headers)."""

    size: int  # side of the square training crop
    channels: int  # 1 (gray) or 3 (RGB)


def _wide_range(img: Image.Image) -> tuple[float, float]:
    """The values a 16-bit / 32-bit / float grayscale image's [0, 1] stands for: (lo, hi).
    16-bit: 0..65535; 32-bit integer: 0..65535, or up to its maximum when larger; float:
    0..1, or up to its maximum when larger. A negative minimum extends lo (scaled, not
    clipped). `vm augment` maps views back through the same range, in the input's units."""
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        return 0.0, 65535.0
    finite = a[np.isfinite(a)]
    lo, top = min(0.0, float(finite.min(initial=0))), float(finite.max(initial=0))
    if img.mode == "I":
        return lo, 65535.0 if top <= 65535 else top
    return lo, top if top > 1 else 1.0  # F


def _wide_to_unit(img: Image.Image) -> np.ndarray:
    """16-bit / 32-bit / float grayscale → float64 in [0, 1], scaled by `_wide_range`."""
    lo, hi = _wide_range(img)
    unit = (np.asarray(img).astype(np.float64) - lo) / (hi - lo)
    return np.nan_to_num(np.clip(unit, 0, 1), nan=0.0)


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    return _as_8bit(_wide_to_unit(img))


def _key(img: Image.Image) -> Any:
    """The one colour an RGB, L, 1-bit or 16-bit gray image marks transparent (a PNG tRNS
    chunk), or None."""
    key = img.info.get("transparency")
    keyed = img.mode in ("RGB", "L", "1") or img.mode.startswith("I;16")
    return key if keyed and isinstance(key, int | tuple) else None


def _alpha(img: Image.Image) -> np.ndarray | None:
    """The alpha channel, also where transparency is a palette entry or a key colour (found
    here: the image library misses 16-bit keys over 255)."""
    key = _key(img)
    if key is not None:
        return np.where(_on_key(np.asarray(img), key), 0, 255).astype(np.uint8)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        img.mode == "P" and "transparency" in img.info
    ):
        return np.asarray(img.convert("RGBA"))[..., 3].copy()
    return None


def _key_value(px: np.ndarray, key: Any) -> np.ndarray:
    """The key colour in the pixels' dtype (a 1-bit image's key as a bool)."""
    return np.asarray(bool(key) if px.dtype == bool else key, dtype=px.dtype)


def _on_key(px: np.ndarray, key: Any) -> np.ndarray:
    """H × W: where pixels (H × W, or H × W × 3) are the key colour."""
    want = _key_value(px, key)
    return px == want if px.ndim == 2 else (px == want).all(axis=-1)


def _keyed(img: Image.Image, key: Any, alpha: np.ndarray) -> Image.Image:
    """A view in the mode of an input with a transparent key colour, transparent where its
    (moved) alpha is: those pixels get exactly the key, and opaque pixels that landed on it
    move one level off it (a 1-bit pixel flips), so they stay opaque. Without this the
    transparency was dropped: every pixel opaque."""
    px = np.asarray(img).copy()
    want = _key_value(px, key)
    opaque = alpha >= 128
    nudge = opaque & _on_key(px, key)
    first = px if px.ndim == 2 else px[..., 0]  # a view: one channel is enough to move
    if px.dtype == bool:
        first[nudge] = not bool(key)
    else:
        k = int(want if px.ndim == 2 else want[0])
        first[nudge] = k + 1 if k < np.iinfo(px.dtype).max else k - 1
    px[~opaque] = want
    out = Image.fromarray(px)
    out.info["transparency"] = key
    return out


COLOUR_SKIPPED_NOTE = "the only colour files could not be decoded: the images used are gray"
FRAMES_NOTE = "have several frames (animated GIF, multi-page TIFF...): only the first was augmented and written"
DEEP_COLOUR_NOTE = (
    "have more than 8 bits per colour channel, which the image library reads as 8: their "
    "views are made from and written with 8 bits per channel"
)
NAN_NOTE = (
    "have NaN pixels (no data): the view was made with them at the range's low end, and "
    "they are NaN again in the written view"
)
INF_NOTE = (
    "have infinite pixels: the view was made with them at the range's ends (+inf at the top, "
    "-inf at the bottom), and they are written as those finite values"
)
TRAIN_INF_NOTE = "have infinite pixels: they are read at the range's ends"
TRAIN_FRAMES_NOTE = "have several frames (animated GIF, multi-page TIFF...): only the first is used"
TRAIN_NAN_NOTE = "have NaN pixels (no data): they are read at the range's low end"
GRAY_RUN_NOTE = "are in colour but the run was trained on grayscale images: their views are gray (in the input's mode)"


def _deep_colour(img: Image.Image) -> bool:
    """Colour (or gray + alpha) stored with more than 8 bits per channel, on an image not yet
    loaded: Pillow opens 16-bit RGB(A) PNGs and TIFFs as 8-bit modes without a word, so the
    loss is ours to report."""
    if img.mode in WIDE_MODES:  # gray 16/32-bit and float: kept at full precision
        return False
    if img.format == "PNG":  # before loading: the tile's raw mode, e.g. "RGB;16B"
        return any(";16" in str(tile[3]) for tile in img.tile)
    tags = getattr(img, "tag_v2", None)
    if tags is not None:
        per_sample = tags.get(258, (8,))  # BitsPerSample
        per_sample = per_sample if isinstance(per_sample, tuple) else (per_sample,)
        return any(int(b) > 8 for b in per_sample)
    return False


def _mode_family(mode: str) -> str:
    """Modes that store the same thing (16-bit in either byte order)."""
    return "I;16" if mode.startswith("I;16") else mode


def _wide_image(
    gray: np.ndarray,
    mode: str,
    value_range: tuple[float, float],
    holes: np.ndarray | None = None,
) -> Image.Image:
    """A [0, 1] gray view back in a 16-bit / 32-bit / float image's own units; a float
    image's NaN (no-data) pixels, `holes`, are NaN again."""
    lo, hi = value_range
    a = gray.astype(np.float64) * (hi - lo) + lo
    if mode == "F":
        if holes is not None and holes.shape == a.shape:
            a[holes] = np.nan
        return Image.fromarray(a.astype(np.float32))  # F
    if mode == "I":
        return Image.fromarray(np.round(a).clip(-(2**31), 2**31 - 1).astype(np.int32))  # I
    return Image.fromarray(np.round(a).clip(0, 65535).astype(np.uint16))  # I;16


def _to_palette(img: Image.Image, ctx: dict[str, Any], alpha: np.ndarray | None) -> Image.Image:
    """A view (L/RGB, with alpha when the input had transparency) mapped to the input's own
    palette: nearest colour, no dithering; a transparent index stays the transparent pixels'.
    Per-index alpha (several transparent entries) cannot be kept: then RGBA."""
    transparency = ctx["transparency"]
    if (transparency is not None and not isinstance(transparency, int)) or not ctx["palette"]:
        return img
    palette_img = Image.new("P", (1, 1))
    palette_img.putpalette(ctx["palette"])
    out = img.convert("RGB").quantize(palette=palette_img, dither=Image.Dither.NONE)
    if transparency is None:
        return out
    index = np.asarray(out).copy()
    colours = np.asarray(ctx["palette"], dtype=np.int64).reshape(-1, 3)
    assert alpha is not None  # an input with a transparent index has an alpha plane
    opaque = alpha >= 128
    stolen = opaque & (index == transparency)  # opaque pixels nearest the transparent colour
    if stolen.any() and len(colours) > 1:
        rgb = np.asarray(img.convert("RGB"), dtype=np.int64)[stolen]
        dist = ((rgb[:, None, :] - colours[None]) ** 2).sum(-1)
        dist[:, transparency] = np.iinfo(np.int64).max
        index[stolen] = dist.argmin(1)
    index[~opaque] = transparency
    result = Image.fromarray(index.astype(np.uint8), "P")
    result.putpalette(out.getpalette())
    result.info["transparency"] = transparency
    return result


def to_channels(img: Image.Image, channels: int) -> np.ndarray:
    """Any mode → H × W × channels uint8 (alpha dropped; kept aside by the augment path)."""
    if img.mode in WIDE_MODES:
        img = _to_8bit_gray(img)
    if channels == 1:
        if img.mode != "L":
            try:
                img = img.convert("L")
            except ValueError:  # no direct conversion (LAB, HSV): through RGB
                img = img.convert("RGB").convert("L")
        return np.asarray(img)[..., None]
    return np.asarray(img.convert("RGB"))


# vm reports what this means for the file itself (training drops alpha; a view is RGBA)
HANDLED_PILLOW_WARNINGS = ("Palette images with Transparency expressed in bytes",)


@contextlib.contextmanager
def _pillow_warnings(path: Path, report: bool = True) -> Iterator[None]:
    """The image library's Python warnings about `path` (a very large image, malformed TIFF
    tags...) as one vm warning naming the file, instead of two lines quoting the library's
    source that do not say which file; `report=False` drops them (said already). Other
    warnings pass through."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    said: list[str] = []
    for w in caught:
        if f"{os.sep}PIL{os.sep}" not in w.filename:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
            continue
        text = " ".join(str(w.message).split())
        if not text.startswith(HANDLED_PILLOW_WARNINGS) and text not in said:
            said.append(text)
    if said and report:
        warn(f"{path}: the image library says: {'; '.join(said)}")


def _open(path: Path) -> Image.Image:
    img = Image.open(path)
    _scale_low_bit_key(img)
    return _upright(img)


def _scale_low_bit_key(img: Image.Image) -> None:
    """A 2- or 4-bit gray PNG's transparent level in the 0..255 its pixels are read in (the
    image library scales the pixels but not the key: no pixel matched it). Before loading."""
    key = img.info.get("transparency")
    rawmode = img.tile[0].args if img.format == "PNG" and img.tile else None
    bits = {"L;2": 2, "L;4": 4}.get(rawmode) if isinstance(rawmode, str) else None
    if img.mode == "L" and bits and isinstance(key, int):
        img.info["transparency"] = key * 255 // (2**bits - 1)


EXIF_ORIENTATION = 0x0112


def _encoding(img: Image.Image, path: Path) -> dict[str, Any]:
    """How the input file was encoded, to write its view the same way: a JPEG's quantisation
    tables and chroma subsampling (its quality: a fixed quality 95 tripled a quality-75 file),
    progressive scan, the ICC profile, DPI, a TIFF's compression, a WebP's losslessness, and
    the metadata: EXIF (camera, time, GPS...; its orientation is dropped, the view is stored
    upright, and so is its thumbnail of the input) and a PNG's text chunks."""
    info, opts = img.info, {}
    if info.get("icc_profile"):
        opts["icc_profile"] = info["icc_profile"]
    if info.get("dpi"):
        with contextlib.suppress(TypeError, ValueError):
            opts["dpi"] = tuple(float(d) for d in info["dpi"])
    if img.format in ("JPEG", "MPO", "PNG", "WEBP"):  # a TIFF's EXIF is its own tag directory
        with contextlib.suppress(Exception):  # malformed EXIF: the view goes without it
            exif = img.getexif()  # the image's own: put its orientation back for _upright
            orientation = exif.pop(EXIF_ORIENTATION, None)
            try:
                if len(exif):
                    opts["exif"] = exif.tobytes()
            finally:
                if orientation is not None:
                    exif[EXIF_ORIENTATION] = orientation
    if img.format == "PNG" and getattr(img, "text", None):
        from PIL import PngImagePlugin

        text = PngImagePlugin.PngInfo()
        for key, value in img.text.items():
            text.add_text(key, value)
        opts["pnginfo"] = text
    if img.format == "WEBP" and _webp_is_lossless(path):
        opts["lossless"] = True
    if img.format in ("JPEG", "MPO"):  # MPO: a camera JPEG with an embedded preview
        from PIL import JpegImagePlugin

        if getattr(img, "quantization", None):
            opts["qtables"] = dict(img.quantization)
        sampling = JpegImagePlugin.get_sampling(img)
        if sampling >= 0:
            opts["subsampling"] = sampling
        if info.get("progressive") or info.get("progression"):
            opts["progressive"] = True
    if img.format == "TIFF" and info.get("compression") not in (None, "raw"):
        opts["compression"] = info["compression"]
    return opts


def _webp_is_lossless(path: Path) -> bool:
    """Whether a WebP file's (first) image is VP8L (lossless) rather than VP8 (lossy): the
    image library does not say, and a lossy view of a lossless file would add JPEG-like
    artefacts larger than a small budget. Walks the RIFF chunks (into an animation's frames)."""
    with contextlib.suppress(OSError), open(path, "rb") as f:
        if f.read(12)[8:12] != b"WEBP":
            return False
        end = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                return False
            kind, size = head[:4], int.from_bytes(head[4:], "little")
            if kind in (b"VP8L", b"VP8 "):
                return kind == b"VP8L"
            if kind == b"ANMF":  # a frame: 16 bytes of placement, then its image chunks
                f.seek(16, 1)
                end = f.tell() + size - 16
                continue
            f.seek(size + (size & 1), 1)  # chunks are padded to even sizes
            if end is not None and f.tell() >= end:
                return False
    return False


def _upright(img: Image.Image) -> Image.Image:
    """An opened image decoded, turned as its EXIF orientation says."""
    img.load()
    return ImageOps.exif_transpose(img) if img.format in ("JPEG", "TIFF", "WEBP", "PNG") else img


def _resize_center(arr: np.ndarray, size: int) -> np.ndarray:
    """Shorter side → `size` (bicubic, antialiased), then a centre crop to size × size.
    Where the resized image would be much larger than the crop (a 1 × 20000 strip resized
    whole was 224 × 4.5M pixels), only the crop is resampled (the filter still reads the
    pixels around it); ordinary images are resized whole, as ever, so their training
    inputs stay the same to the bit (the image library's crop-only resize rounds its two
    passes in another order: a few levels apart on noise)."""
    h, w = arr.shape[:2]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        top, left = (nh - size) // 2, (nw - size) // 2
        img = Image.fromarray(arr[..., 0], "L") if arr.shape[2] == 1 else Image.fromarray(arr)
        if nh * nw > WHOLE_RESIZE_MAX * size * size:
            box = (left * w / nw, top * h / nh, (left + size) * w / nw, (top + size) * h / nh)
            arr = np.asarray(img.resize((size, size), Image.BICUBIC, box=box))
        else:
            arr = np.asarray(img.resize((nw, nh), Image.BICUBIC))[
                top : top + size, left : left + size
            ]
        arr = arr[..., None] if arr.ndim == 2 else arr
    return arr


WHOLE_RESIZE_MAX = 4  # resized image / crop, in pixels: more is resampled crop-only


def _save_format(fmt: str | None, dst: Path | None) -> str | None:
    """The format a view is written in: its input's real one, whatever the file is called (a
    16-bit PNG named .jpg written as a JPEG came out white). MPO (a camera JPEG with a
    preview) is written as JPEG; a format the image library only reads goes by the name."""
    if fmt == "MPO":
        return "JPEG"
    if fmt not in Image.SAVE:
        Image.init()  # every plugin: the writers are registered lazily
    if fmt in Image.SAVE or dst is None:
        return fmt
    return Image.registered_extensions().get(dst.suffix.lower(), fmt)


def _as_8bit(view: np.ndarray) -> Image.Image:
    """A wide (16-bit, 32-bit, float) view that must be stored with 8 bits: the view's own
    [0, 1] values scaled to 0..255, as training reads it (converting clips: all white or
    black)."""
    gray = view.mean(axis=2) if view.ndim == 3 else view
    return Image.fromarray((np.clip(gray, 0, 1) * 255 + 0.5).astype(np.uint8), "L")


class PixelSpace(ViewSpace):
    """The viewmaker acts on pixels in [0, 1]; dataset mean/std normalisation comes after it
    (as in the paper), so the budget is in raw pixel units."""

    name = "pixels"
    dims = 2
    clamp = (0.0, 1.0)
    encoder_dims = 2

    def __init__(self, meta: dict[str, Any], stats: dict[str, Any] | None = None):
        super().__init__(meta, stats)
        self.channels = int(meta["channels"])
        mean = self.stats.get("mean", [0.5] * self.channels)
        std = self.stats.get("std", [0.25] * self.channels)
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False
        )

    def fit(self, raw: Tensor) -> dict[str, Any]:
        x = raw.float() / 255 if raw.dtype == torch.uint8 else raw.float()
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        self.stats = {"mean": mean.tolist(), "std": std.tolist()}
        self.mean.copy_(mean.view(1, -1, 1, 1))
        self.std.copy_(std.view(1, -1, 1, 1))
        return self.stats

    def to_view(self, raw: Tensor) -> Tensor:
        """Pixels in [0, 1] as float32, whatever float type they came in (the networks' own)."""
        return raw.float() / 255 if raw.dtype == torch.uint8 else raw.float()

    def to_encoder(self, view: Tensor) -> Tensor:
        return (view - self.mean.to(view.dtype)) / self.std.to(view.dtype)


class ImageProbe(NamedTuple):
    """One file as `plan` sees it, from its header (and, for float images, its pixels)."""

    width: int
    height: int
    mode: str
    frames: bool  # several frames (animated GIF, multi-page TIFF): training uses the first
    holes: bool  # NaN (no-data) pixels, read at the range's low end
    infinite: bool  # ±inf pixels, read at the range's ends


class ImageModality(Modality):
    name = "image"
    extensions = frozenset({"png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"})
    options = ("image_size",)
    meta_type = ImageMeta
    spaces = {"pixels": PixelSpace}
    default_batch_size = 256
    # pixels: Fashion-MNIST is half exact-zero pixels, so clamping eats negative δ; at 0.05 the
    # adversary went inert within 10 epochs of the quick start, at 0.1 it stays active, and the
    # budget sweep picked 0.1 on validation (benchmarks/RESULTS.md)
    default_budgets = {"pixels": 0.1}
    # learned SimCLR-recipe strengths: on Fashion-MNIST (26 epochs, five seeds) validation 0.868
    # against 0.806 for the viewmaker, and 7-10x faster per step on a CPU (no generator network);
    # the viewmaker stays one flag away (--views viewmaker, or any --budget)
    default_views = "learned-transforms"
    # bf16 on a CPU with bf16 hardware: the default step 1.8× faster, learned transforms as
    # accurate as in fp32 over three seeds (benchmarks/RESULTS.md)
    cpu_bf16 = True

    def sniff(self, path: Path, head: bytes) -> bool:
        return (
            head.startswith(b"\x89PNG\r\n\x1a\n")
            or head.startswith(b"\xff\xd8\xff")
            or head[:6] in (b"GIF87a", b"GIF89a")
            or head.startswith(b"BM")
            or head[:4] in (b"II*\x00", b"MM\x00*")
            or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        )

    # -- loading -----------------------------------------------------------------------------
    def _probe(self, path: Path) -> ImageProbe | str:
        """What the header tells; only a float image is decoded here, to find its NaN
        (no-data) and infinite pixels, which training reads at the range's ends: rare enough
        to pay for, worth a word."""
        try:
            with _pillow_warnings(path), Image.open(path) as img:
                frames = int(getattr(img, "n_frames", 1)) > 1
                a = np.asarray(img) if img.mode == "F" else None
                holes = a is not None and bool(np.isnan(a).any())
                infinite = a is not None and bool(np.isinf(a).any())
                return ImageProbe(img.size[0], img.size[1], img.mode, frames, holes, infinite)
        except READ_ERRORS as e:
            return library_says(e)

    def plan(
        self,
        root: Path,
        items: list[Item],
        options: LoadOptions,
        meta: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[Item], list[tuple[Path, str]]]:
        """Read the headers: channel count and training size (from `meta` when given). Only
        a float image (for NaN) and, in a folder of gray and colour files, the first colour
        file that decodes are decoded here."""
        paths = [root / it.path for it in items]
        probes = parallel_map(self._probe, paths)
        skipped = [
            (p, f"cannot be read as an image ({r})")
            for p, r in zip(paths, probes, strict=True)
            if isinstance(r, str)
        ]
        ok = [(it, r) for it, r in zip(items, probes, strict=True) if not isinstance(r, str)]
        if not ok:
            report_skipped(skipped, len(items), "image")
            raise DataError(f"{root}: none of the {len(items)} image files could be read")
        for flag, note in (
            ("frames", TRAIN_FRAMES_NOTE),
            ("holes", TRAIN_NAN_NOTE),
            ("infinite", TRAIN_INF_NOTE),
        ):
            flagged = [str(it.path) for it, r in ok if getattr(r, flag)]
            if flagged:
                warn(f"{len(flagged)} file(s) {note} ({first_few(flagged[:3], len(flagged))})")
        gray = [r.mode in GRAY_MODES for _, r in ok]
        mixed = any(gray) and not all(gray)
        if mixed:  # the same files kept whether planned here or from a run (resume)
            ok, broken = self._drop_colour_that_does_not_decode(root, ok)
            skipped += broken
        if meta is not None:
            size, channels = int(meta["size"]), int(meta["channels"])
            colour = [str(it.path) for it, r in ok if r.mode not in GRAY_MODES]
            if channels == 1 and colour:  # `vm eval --data` on colour images of a gray run
                shown = first_few(colour[:3], len(colour))
                warn(
                    f"{len(colour)} file(s) are in colour but the run was trained on grayscale "
                    f"images: they are read as gray ({shown})"
                )
        else:
            channels = 1 if all(r.mode in GRAY_MODES for _, r in ok) else 3
            if mixed and channels == 1:
                info(f"channels: 1 ({COLOUR_SKIPPED_NOTE})")
            if options.image_size is not None:
                size = options.image_size
            else:
                median = int(np.median([min(r.width, r.height) for _, r in ok]))
                size = int(np.clip(median, MIN_SIZE, MAX_SIZE))
                clamped = (
                    ""
                    if size == median
                    else f" (median shorter side {median}, clamped to {MIN_SIZE}..{MAX_SIZE})"
                )
                info(f"image size {size}×{size}{clamped}; set --image-size to change it")
        if size < MIN_IMAGE_SIZE:
            raise DataError(
                f"--image-size {size} is too small; use at least {MIN_IMAGE_SIZE} pixels"
            )
        return ImageMeta(size=size, channels=channels), [it for it, _ in ok], skipped

    def _drop_colour_that_does_not_decode(
        self, root: Path, ok: list[tuple[Item, ImageProbe]]
    ) -> tuple[list[tuple[Item, ImageProbe]], list[tuple[Path, str]]]:
        """In a folder of gray and colour files, the colour files are decoded in order until
        one decodes: a colour header over pixels that do not decode (a truncated colour file in
        a gray folder) must not make the run three equal channels, in memory or streamed. The
        ones that fail are skipped here, as decoding would skip them; in a colour folder this
        costs one decode. (kept, skipped)"""
        kept: list[tuple[Item, ImageProbe]] = []
        skipped: list[tuple[Path, str]] = []
        colour_decodes = False
        for it, r in ok:
            if not colour_decodes and r.mode not in GRAY_MODES:
                try:
                    with _pillow_warnings(root / it.path, report=False):  # said by _probe
                        _open(root / it.path)
                except READ_ERRORS as e:
                    reason = f"cannot be decoded ({library_says(e)})"
                    skipped.append((root / it.path, reason))
                    continue
                colour_decodes = True
            kept.append((it, r))
        return kept, skipped

    def decode_item(self, root: Path, item: Item, meta: dict[str, Any]) -> Tensor:
        path = root / item.path
        try:
            with _pillow_warnings(path, report=False):  # said by _probe, once per file
                img = to_channels(_open(path), int(meta["channels"]))
            arr = _resize_center(img, int(meta["size"]))
        except READ_ERRORS as e:
            raise DataError(f"{path}: cannot be decoded ({library_says(e)})") from None
        return torch.from_numpy(arr.transpose(2, 0, 1).copy())  # C × H × W uint8

    def check_meta(self, meta: dict[str, Any], where: str) -> list[int]:
        c = untrusted.whole_number(meta, "channels", 1, 4, where)
        if c not in (1, 3):
            raise untrusted.Untrusted(f"{where}channels is {c}, not 1 or 3")
        side = untrusted.whole_number(meta, "size", 8, untrusted.MAX_IMAGE_SIDE, where)
        return [c, side, side]

    def handcrafted(self, meta: dict[str, Any]) -> Handcrafted:
        return simclr_image_views

    def describe_raw(self, meta: dict[str, Any]) -> str:
        return f"images B × {int(meta['channels'])} × H × W, float in [0, 1] or uint8"

    # -- augment: one file at native size ---------------------------------------------------
    def read_file(self, path: Path, meta: dict[str, Any], options: LoadOptions) -> FileSample:
        with _pillow_warnings(path):
            return self._read_file(path, meta)

    def _read_file(self, path: Path, meta: dict[str, Any]) -> FileSample:
        channels = int(meta["channels"])
        try:
            opened = Image.open(path)  # once: its frame count, then its (first) frame
            _scale_low_bit_key(opened)
            frames = int(getattr(opened, "n_frames", 1))
            deep = _deep_colour(opened)  # before anything loads the pixels
            opened.load()  # a decode error is raised here, not swallowed by reading the EXIF
            encoding = _encoding(opened, path)
            img = _upright(opened)
            wide = img.mode in WIDE_MODES
            holes = None  # a float image's NaN (no-data) pixels, NaN again in its views
            infinite = False
            if wide:  # keep 16-bit / 32-bit / float precision: [0, 1] floats, not 8 bits
                unit = torch.from_numpy(_wide_to_unit(img).astype(np.float32))[None, None]
                raw = unit.expand(1, channels, *unit.shape[2:]).contiguous()
                value_range = _wide_range(img)
                if img.mode == "F":
                    values = np.asarray(img)
                    nan = np.isnan(values)
                    holes = nan if nan.any() else None
                    infinite = bool(np.isinf(values).any())
            else:
                arr = to_channels(img, channels)
                raw = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]  # 1 × C × H × W uint8
                value_range = None
        except READ_ERRORS as e:
            raise DataError(f"{path}: cannot be read as an image ({library_says(e)})") from None
        notes = []
        if frames > 1:
            notes.append(FRAMES_NOTE)
        if deep:
            notes.append(DEEP_COLOUR_NOTE)
        if holes is not None:
            notes.append(NAN_NOTE)
        if infinite:
            notes.append(INF_NOTE)
        if channels == 1 and img.mode not in GRAY_MODES:
            notes.append(GRAY_RUN_NOTE)
        alpha = _alpha(img)
        planes = {  # what moves with the view's content, values kept (see FileSample)
            name: torch.from_numpy(plane.astype(np.float32) / scale)
            for name, plane, scale in (("alpha", alpha, 255), ("holes", holes, 1))
            if plane is not None
        }
        context = {
            "mode": img.mode,
            "planes": list(planes),
            "wide": wide,
            "range": value_range,
            "format": opened.format,  # an upright copy has none
            "encoding": encoding,
            "gray_input": img.mode in GRAY_MODES,
            "palette": img.getpalette() if img.mode == "P" else None,
            "transparency": img.info.get("transparency") if img.mode == "P" else None,
            "key": _key(img),  # a transparent colour (RGB, L...): kept as one
            "notes": notes,
        }
        stacked = torch.stack(list(planes.values()))[None] if planes else None
        return FileSample(raw, context, stacked)

    @staticmethod
    def _planes(sample: FileSample) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The (moved) alpha channel as uint8 and the no-data mask as bool, where the input
        had them."""
        names = sample.context["planes"]
        if sample.planes is None or not names:
            return None, None
        plane = {
            name: sample.planes[0, i].detach().float().cpu().numpy() for i, name in enumerate(names)
        }
        alpha = plane.get("alpha")
        holes = plane.get("holes")
        return (
            None if alpha is None else np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8),
            None if holes is None else holes >= 0.5,
        )

    def write_file(self, raw: Tensor, sample: FileSample, dst: Path) -> None:
        """Write a view (1 × C × H × W in [0, 1]) in the input's format (its content's, under
        the view's name, whatever its extension says), mode and bit depth:
        16-bit, 32-bit and float images in their own units; 1-bit thresholded at the middle;
        palette images mapped to the input's own palette (nearest colour, no dithering);
        CMYK, LAB... converted back from RGB. Where the file is not written in the input's
        mode after all, a note says so (`vm augment` warns once, with a count)."""
        ctx = sample.context
        alpha, holes = self._planes(sample)
        v = raw[0].detach().float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0)  # H × W × C
        if v.shape[2] == 3 and ctx["gray_input"]:
            v = v.mean(axis=2, keepdims=True)
        mode = ctx["mode"]
        if ctx["wide"]:
            img = _wide_image(v[..., 0], mode, ctx["range"], holes)
        else:
            u8 = np.round(v * 255).astype(np.uint8)
            img = (
                Image.fromarray(u8[..., 0], "L") if u8.shape[2] == 1 else Image.fromarray(u8, "RGB")
            )
            if img.mode == "L" and not ctx["gray_input"]:  # a grayscale run's view of colour
                img = img.convert("RGB")
            if alpha is not None:
                img.putalpha(Image.fromarray(alpha, "L"))
            if mode == "P":
                img = _to_palette(img, ctx, alpha)
            elif mode == "1":
                img = img.convert("L").convert("1", dither=Image.Dither.NONE)
            elif mode != img.mode:
                with contextlib.suppress(ValueError):
                    img = img.convert(mode)
        if (
            ctx.get("key") is not None
            and alpha is not None
            and _mode_family(img.mode) == _mode_family(mode)
        ):
            img = _keyed(img, ctx["key"], alpha)
        fmt = _save_format(ctx["format"], dst)
        if fmt == "JPEG" and img.mode not in ("L", "RGB", "CMYK"):
            img = _as_8bit(v) if ctx["wide"] else img.convert("RGB")
        kwargs: dict[str, Any] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
        same = fmt == _save_format(ctx["format"], None)
        encoding = dict(ctx.get("encoding") or {}) if same else {}
        if _mode_family(img.mode) != _mode_family(mode):
            encoding.pop("icc_profile", None)  # a profile describes the input's colour space
        if "qtables" in encoding:  # the input's own tables set the quality
            encoding = {k: v for k, v in kwargs.items() if k != "quality"} | encoding
        else:
            encoding = kwargs | encoding
        try:
            try:
                img.save(dst, format=fmt, **encoding)
            except (OSError, ValueError, KeyError, TypeError):  # an encoding this mode refuses
                if encoding == kwargs:
                    raise
                img.save(dst, format=fmt, **kwargs)
        except (OSError, ValueError, KeyError, TypeError):  # the format cannot hold this mode
            fallback = "L" if img.mode in GRAY_MODES else "RGBA" if alpha is not None else "RGB"
            if ctx["wide"]:
                img = _as_8bit(v)
            img.convert(fallback).save(dst, format=fmt, **kwargs)
        with _pillow_warnings(dst, report=False), Image.open(dst) as written:  # said on reading
            got = written.mode
        if _mode_family(got) != _mode_family(mode):
            note = f"written as {got}, not {mode} like the input"
            if note not in ctx["notes"]:
                ctx["notes"].append(note)
            if got != "F" and NAN_NOTE in ctx["notes"]:  # no NaN in an integer file
                ctx["notes"].remove(NAN_NOTE)

    # -- preview ----------------------------------------------------------------------------
    def preview(
        self, raw: Tensor, views: list[Tensor], deltas: list[Tensor], space: ViewSpace, dst: Path
    ) -> list[Path]:
        """Rows: original | views | δ of the first view (blue −, red +, scaled to its max)."""

        def tile(x: Tensor) -> np.ndarray:
            a = (
                (x.float().clamp(0, 1).cpu().numpy().transpose(1, 2, 0) * 255)
                .round()
                .astype(np.uint8)
            )
            return pv.upscale(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a, 96)

        original = space.to_view(raw)
        rows = []
        for i in range(original.shape[0]):
            row = [tile(original[i])] + [tile(v[i]) for v in views]
            if deltas:
                row.append(pv.upscale(pv.diverging(deltas[0][i].float().mean(0).cpu().numpy()), 96))
            rows.append(row)
        labels = pv.column_labels(len(views), bool(deltas))
        return [pv.save_png(pv.grid(rows, labels), dst)]
