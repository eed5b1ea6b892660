"""Line charts a person would rather look at than read as CSV (Pillow only, no matplotlib).

`plot_training` draws a run's training.png: the contrastive loss per epoch and, for learned
views, the encoder's loss on learned views against views from the same generator at its
initialisation (the gap is what learning the views bought).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vmcli.runs import atomic_write

COLOURS = [(33, 102, 172), (178, 24, 43), (27, 120, 55), (118, 42, 131), (230, 97, 1)]


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    x_label: str,
    size: tuple[int, int] = (560, 300),
) -> Image.Image:
    """One panel: each series a coloured line of (x, y) points, with a legend and axis ticks."""
    w, h = size
    left, right, top, bottom = 60, 16, 34, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 10), title, fill="black")
    pts = [p for s in series.values() for p in s if math.isfinite(p[1])]
    if not pts:
        d.text((left, h // 2), "no data", fill="black")
        return img
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pad = 0.05 * (y1 - y0 or abs(y1) or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    px = lambda x: left + (x - x0) / (x1 - x0) * (w - left - right)  # noqa: E731
    py = lambda y: h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)  # noqa: E731
    d.rectangle([left, top, w - right, h - bottom], outline=(170, 170, 170))
    for k in range(5):
        y = y0 + k * (y1 - y0) / 4
        d.line([(left - 4, py(y)), (left, py(y))], fill="black")
        d.text((4, py(y) - 6), f"{y:.3g}", fill="black")
    for k in range(5):
        x = x0 + k * (x1 - x0) / 4
        d.line([(px(x), h - bottom), (px(x), h - bottom + 4)], fill="black")
        d.text((px(x) - 8, h - bottom + 6), f"{x:.4g}", fill="black")
    d.text((w // 2 - 20, h - 16), x_label, fill="black")
    if y0 < 0 < y1:
        d.line([(left, py(0)), (w - right, py(0))], fill=(200, 200, 200))
    for i, (name, s) in enumerate(series.items()):
        c = COLOURS[i % len(COLOURS)]
        line = [(px(x), py(y)) for x, y in s if math.isfinite(y)]
        if len(line) > 1:
            d.line(line, fill=c, width=2)
        for x, y in line:
            d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
        d.text((left + 8, top + 4 + 13 * i), name, fill=c)
    return img


def plot_training(metrics: list[dict[str, Any]], dst: Path, views: str) -> Path:
    """training.png: loss per epoch; for learned views, also the loss on learned vs initial
    views and their gap (the adversary's effect)."""
    epochs = [float(m["epoch"]) for m in metrics]
    panels = [
        line_chart(
            {
                "training loss (NT-Xent)": list(
                    zip(epochs, [m["loss"] for m in metrics], strict=True)
                )
            },
            f"training loss, views {views}",
            "epoch",
        )
    ]
    if all("probe_loss" in m for m in metrics):
        panels.append(
            line_chart(
                {
                    "loss on learned views": [
                        (e, m["probe_loss"]) for e, m in zip(epochs, metrics, strict=True)
                    ],
                    "loss on views from the generator at init": [
                        (e, m["probe_loss_init"]) for e, m in zip(epochs, metrics, strict=True)
                    ],
                    "gap (adversary's effect)": [
                        (e, m["adversary_effect"]) for e, m in zip(epochs, metrics, strict=True)
                    ],
                },
                "is the adversary active? (same encoder, batch and noise)",
                "epoch",
            )
        )
    out = Image.new("RGB", (panels[0].width, sum(p.height for p in panels)), "white")
    y = 0
    for p in panels:
        out.paste(p, (0, y))
        y += p.height
    with atomic_write(dst) as tmp:
        out.save(tmp, format="PNG")
    return dst
