"""Pictures a person can look at: image grids, spectrogram tiles, line plots (Pillow only).

Every preview is a grid: one row per sample, columns `original | view 1..K | δ (amplified)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vmcli.runs import atomic_write

# A perceptually ordered dark→bright ramp (viridis anchor colours), for spectrograms.
_RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)
LABEL_HEIGHT = 14


def colormap(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Map a 2-D array to H × W × 3 uint8 through the ramp; `low`/`high` fix the colour scale."""
    lo = float(np.min(values)) if low is None else low
    hi = float(np.max(values)) if high is None else high
    t = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(int), len(_RAMP) - 2)
    f = (t - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    return rgb.astype(np.uint8)


def diverging(values: np.ndarray) -> np.ndarray:
    """Signed values → blue (negative) / white (0) / red (positive), scaled to the max |value|."""
    scale = max(float(np.abs(values).max()), 1e-12)
    t = np.clip(values / scale, -1, 1)[..., None]
    white = np.array([255.0, 255.0, 255.0])
    red, blue = np.array([178.0, 24.0, 43.0]), np.array([33.0, 102.0, 172.0])
    rgb = np.where(t >= 0, white + (red - white) * t, white + (blue - white) * (-t))
    return rgb.astype(np.uint8)


def upscale(tile: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour enlarge small tiles so single pixels stay visible."""
    factor = max(1, -(-min_side // min(tile.shape[:2])))
    return tile.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else tile


def column_labels(n_views: int, with_delta: bool) -> list[str]:
    return (
        ["original"] + [f"view {k + 1}" for k in range(n_views)] + (["delta"] if with_delta else [])
    )


def grid(rows: list[list[np.ndarray]], labels: list[str], pad: int = 2) -> Image.Image:
    """Compose H × W × 3 uint8 tiles into a labelled grid (all tiles the same size)."""
    th, tw = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    width = ncol * (tw + pad) + pad
    height = LABEL_HEIGHT + len(rows) * (th + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, label in enumerate(labels[:ncol]):
        draw.text((pad + c * (tw + pad) + 2, 1), label, fill=(0, 0, 0))
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            canvas.paste(
                Image.fromarray(tile), (pad + c * (tw + pad), LABEL_HEIGHT + pad + r * (th + pad))
            )
    return canvas


def line_plot(
    series: list[tuple[np.ndarray, tuple[int, int, int]]],
    size: tuple[int, int] = (220, 60),
    limits: tuple[float, float] | None = None,
) -> np.ndarray:
    """Draw 1-D series (value arrays with colours) into one H × W × 3 tile with a zero line."""
    w, h = size
    img = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    values = np.concatenate([s for s, _ in series]) if series else np.zeros(1)
    lo, hi = limits if limits is not None else (float(values.min()), float(values.max()))
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1

    def ypix(v: np.ndarray) -> np.ndarray:
        return (h - 3) - (v - lo) / (hi - lo) * (h - 6)

    if lo < 0 < hi:
        y0 = float(ypix(np.array(0.0)))
        draw.line([(0, y0), (w, y0)], fill=(220, 220, 220))
    for values_i, colour in series:
        n = len(values_i)
        xs = np.linspace(1, w - 2, n)
        ys = ypix(values_i)
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=1)
    draw.rectangle([(0, 0), (w - 1, h - 1)], outline=(200, 200, 200))
    return np.asarray(img)


def save_png(image: Image.Image, dst: Path) -> Path:
    with atomic_write(dst) as tmp:
        image.save(tmp, format="PNG")
    return dst
