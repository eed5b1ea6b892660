"""Line charts a person would rather look at than read as CSV (Pillow only, no matplotlib).

`plot_training` draws a run's training.png: the contrastive loss per epoch and, for learned
views, the encoder's loss on learned views against views from the same generator at its
initialisation, and their gap beside the line under which `vm train` calls the adversary
inert (the gap is what learning the views bought).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vmcli.runs import atomic_write

COLOURS = [(33, 102, 172), (178, 24, 43), (27, 120, 55), (118, 42, 131), (230, 97, 1)]
GREY = (150, 150, 150)
LEGEND_ROW = 13  # px per legend row; the legend sits above the plot, never over a line


def nice_ticks(lo: float, hi: float, target: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 × 10^k apart) covering [lo, hi]: readable labels
    ("2, 4, 6", not "3.25, 5.5"); whole numbers only when `integer` (epochs)."""
    span = hi - lo
    if not math.isfinite(span) or span <= 0:
        return [lo]
    mag = 10 ** math.floor(math.log10(span / target))
    steps = [m * mag for m in (1, 2, 2.5, 5, 10, 20)]
    if integer:
        steps = sorted({max(1.0, float(round(st))) for st in steps})

    def count(st: float) -> int:  # ticks that land inside [lo, hi] at this spacing
        return math.floor(hi / st + 1e-9) - math.ceil(lo / st - 1e-9) + 1

    # the spacing whose tick count is closest to the target (ties: the wider spacing)
    step = min(steps, key=lambda st: (abs(count(st) - target), -st))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + 1e-9 * abs(step):
        ticks.append(round(first + k * step, 12) + 0.0)  # + 0.0: no "-0" label
        k += 1
    return ticks or [lo]


def _label(v: float, step: float) -> str:
    """A tick label with as many decimals as the tick spacing needs (no "-0.249")."""
    decimals = 0
    while (
        decimals < 8 and step > 0 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6
    ):
        decimals += 1  # 0.25 → 2 decimals, 0.5 → 1, 2 → 0
    return f"{v:.{decimals}f}"


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    title: str,
    x_label: str,
    size: tuple[int, int] = (560, 300),
    integer_x: bool = False,
    styles: dict[str, tuple[int, int, int]] | None = None,
) -> Image.Image:
    """One panel: each series a coloured line of (x, y) points, a legend band under the
    title and round axis ticks. `styles` gives named series their own colour (a reference
    line in grey)."""
    w, h = size
    left, right, bottom = 60, 16, 40
    top = 30 + LEGEND_ROW * len(series)
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((left, 8), title, fill="black")
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
    yt = nice_ticks(y0, y1)
    for y in yt:
        d.line([(left - 4, py(y)), (left, py(y))], fill="black")
        text = _label(y, yt[1] - yt[0] if len(yt) > 1 else 0)
        d.text((left - 8 - 6 * len(text), py(y) - 6), text, fill="black")
    xt = nice_ticks(x0, x1, integer=integer_x)
    for x in xt:
        d.line([(px(x), h - bottom), (px(x), h - bottom + 4)], fill="black")
        text = _label(x, xt[1] - xt[0] if len(xt) > 1 else 1)
        d.text((px(x) - 3 * len(text), h - bottom + 6), text, fill="black")
    d.text((w // 2 - 3 * len(x_label), h - 16), x_label, fill="black")
    if y0 < 0 < y1:
        d.line([(left, py(0)), (w - right, py(0))], fill=(220, 220, 220))
    styles = styles or {}
    for i, (name, s) in enumerate(series.items()):
        c = styles.get(name, COLOURS[i % len(COLOURS)])
        line = [(px(x), py(y)) for x, y in s if math.isfinite(y)]
        if len(line) > 1:
            d.line(line, fill=c, width=1 if c == GREY else 2)
        if c != GREY:
            for x, y in line:
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=c)
        ly = 26 + LEGEND_ROW * i
        d.line([(left, ly + 6), (left + 14, ly + 6)], fill=c, width=2)
        d.text((left + 20, ly), name, fill=c)
    return img


def plot_training(metrics: list[dict[str, Any]], dst: Path, views: str) -> Path:
    """training.png: loss per epoch; for learned views, also the loss on learned vs initial
    views, and their gap (the adversary's effect) beside the inert line."""
    from vmcli.training import INERT_RULE, inert_threshold

    epochs = [float(m["epoch"]) for m in metrics]
    integer_x = all(e == int(e) for e in epochs)

    def series(key: str) -> list[tuple[float, float]]:
        return [(e, float(m[key])) for e, m in zip(epochs, metrics, strict=True)]

    panels = [
        line_chart(
            {"training loss (NT-Xent)": series("loss")},
            f"training loss, views {views}",
            "epoch",
            integer_x=integer_x,
        )
    ]
    if all("probe_loss" in m for m in metrics):
        initial = "strengths" if "transforms" in views else "generator"
        panels.append(
            line_chart(
                {
                    "loss on learned views": series("probe_loss"),
                    f"loss on views from the {initial} at initialisation": series(
                        "probe_loss_init"
                    ),
                },
                "learned vs initial views (same encoder, batch and random numbers)",
                "epoch",
                integer_x=integer_x,
            )
        )
        inert = f"inert below this line ({INERT_RULE})"
        inert_line = [
            (e, inert_threshold(float(m["probe_loss_init"])))
            for e, m in zip(epochs, metrics, strict=True)
        ]
        panels.append(
            line_chart(
                {
                    "gap: learned minus initial (the adversary's effect)": series(
                        "adversary_effect"
                    ),
                    inert: inert_line,
                },
                "is the adversary active?",
                "epoch",
                integer_x=integer_x,
                styles={inert: GREY},
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
