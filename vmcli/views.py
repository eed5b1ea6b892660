"""Handcrafted views: the augmentations a user would otherwise write by hand, per modality.

They are the honest baseline for learned views (`--views handcrafted`) and the first stage of
`--views both`. Every function works on a batch already on the device, draws independent
parameters per sample from an explicit `torch.Generator` (same seed → same views), and keeps
its parameters in the units of the data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _uniform(n: int, low: float, high: float, like: Tensor, g: torch.Generator | None) -> Tensor:
    return low + (high - low) * torch.rand(n, device=like.device, generator=g)


def _bernoulli(n: int, p: float, like: Tensor, g: torch.Generator | None) -> Tensor:
    return torch.rand(n, device=like.device, generator=g) < p


# --------------------------------------------------------------------------------------------
# Images: the SimCLR recipe (Chen et al. 2020), as used for the paper's image baseline.
# --------------------------------------------------------------------------------------------


def random_resized_crop(
    x: Tensor,
    g: torch.Generator | None,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> Tensor:
    """Crop a random area fraction in `scale` with aspect in `ratio`, resize back, maybe flip.

    One affine grid per sample; bilinear resampling. Crops that would exceed the image are
    shrunk to fit (torchvision retries instead; the distribution differs only at the edges).
    """
    b = x.shape[0]
    area = _uniform(b, *scale, x, g)
    log_r = _uniform(b, math.log(ratio[0]), math.log(ratio[1]), x, g)
    r = torch.exp(log_r)
    w = torch.sqrt(area * r).clamp(max=1.0)  # fraction of the width
    h = torch.sqrt(area / r).clamp(max=1.0)
    cx = (2 * torch.rand(b, device=x.device, generator=g) - 1) * (1 - w)
    cy = (2 * torch.rand(b, device=x.device, generator=g) - 1) * (1 - h)
    sign = torch.where(_bernoulli(b, flip_p, x, g), -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = w * sign
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="reflection", align_corners=False)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def _rotate_hue(x: Tensor, angle: Tensor) -> Tensor:
    """Rotate hue by `angle` (radians, per sample) in YIQ space: a cheap, smooth hue shift."""
    y = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    i = 0.596 * x[:, 0] - 0.274 * x[:, 1] - 0.322 * x[:, 2]
    q = 0.211 * x[:, 0] - 0.523 * x[:, 1] + 0.312 * x[:, 2]
    c, s = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    i, q = c * i - s * q, s * i + c * q
    r = y + 0.956 * i + 0.621 * q
    gr = y - 0.272 * i - 0.647 * q
    b = y - 1.106 * i + 1.703 * q
    return torch.stack([r, gr, b], dim=1)


def color_jitter(
    x: Tensor,
    g: torch.Generator | None,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
) -> Tensor:
    """SimCLR colour jitter, applied to each sample with probability `p` (pixels in [0, 1])."""
    b = x.shape[0]
    apply = _bernoulli(b, p, x, g).view(b, 1, 1, 1)
    out = x * _uniform(b, 1 - brightness, 1 + brightness, x, g).view(b, 1, 1, 1)
    out = out.clamp(0, 1)
    mean = _gray(out).mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * _uniform(b, 1 - contrast, 1 + contrast, x, g).view(b, 1, 1, 1) + mean).clamp(0, 1)
    if x.shape[1] == 3:
        gray = _gray(out)
        out = ((out - gray) * _uniform(b, 1 - saturation, 1 + saturation, x, g).view(b, 1, 1, 1) + gray).clamp(0, 1)
        out = _rotate_hue(out, 2 * math.pi * _uniform(b, -hue, hue, x, g)).clamp(0, 1)
    return torch.where(apply, out, x)


def random_grayscale(x: Tensor, g: torch.Generator | None, p: float = 0.2) -> Tensor:
    if x.shape[1] != 3:
        return x
    apply = _bernoulli(x.shape[0], p, x, g).view(-1, 1, 1, 1)
    return torch.where(apply, _gray(x).expand_as(x), x)


def simclr_image_views(x: Tensor, g: torch.Generator | None = None) -> Tensor:
    """Random resized crop (scale 0.2–1) + flip, colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8),
    grayscale (p 0.2). `x`: B × C × H × W, uint8 or float in [0, 1]; returns float in [0, 1]."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    x = random_resized_crop(x, g)
    x = color_jitter(x, g)
    return random_grayscale(x, g)
