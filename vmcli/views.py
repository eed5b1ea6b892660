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
    return sample_crop(x, theta)


def sample_crop(x: Tensor, theta: Tensor, mode: str = "bilinear") -> Tensor:
    """`x` sampled through one affine crop per sample (`crop_grid`). A non-finite crop (the
    strengths of a diverging run) gives that sample a NaN view, which the divergence check
    then reports: fed to grid_sample, its backward segfaults the process."""
    finite = torch.isfinite(theta).flatten(1).all(dim=1)  # B: the grid is finite where θ is
    theta = torch.where(finite.view(-1, 1, 1), theta, torch.zeros_like(theta))
    grid = crop_grid(theta, x)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)
    return out + torch.where(finite, 0.0, float("nan")).to(out.dtype).view(-1, 1, 1, 1)


def crop_grid(theta: Tensor, x: Tensor) -> Tensor:
    """The sampling grid of one affine map per sample (B × 2 × 3), in fp32 even under bf16
    autocast: autocast would compute it in bf16, whose 8-bit mantissa puts sampling points up
    to 0.4 px off at 224 px and coarsens the gradient of a learned crop size."""
    with torch.autocast(x.device.type, enabled=False):
        grid = F.affine_grid(theta.float(), list(x.shape), align_corners=False)
    return grid.to(x.dtype)


def luma(x: Tensor) -> Tensor:
    """The grey level (ITU-R 601 luma) of B × 3 × H × W pixels; 1-channel images as they are."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def rotate_hue(x: Tensor, angle: Tensor) -> Tensor:
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
    mean = luma(out).mean(dim=(1, 2, 3), keepdim=True)
    out = (
        (out - mean) * _uniform(b, 1 - contrast, 1 + contrast, x, g).view(b, 1, 1, 1) + mean
    ).clamp(0, 1)
    if x.shape[1] == 3:
        gray = luma(out)
        out = (
            (out - gray) * _uniform(b, 1 - saturation, 1 + saturation, x, g).view(b, 1, 1, 1) + gray
        ).clamp(0, 1)
        out = rotate_hue(out, 2 * math.pi * _uniform(b, -hue, hue, x, g)).clamp(0, 1)
    return torch.where(apply, out, x)


def random_grayscale(x: Tensor, g: torch.Generator | None, p: float = 0.2) -> Tensor:
    if x.shape[1] != 3:
        return x
    apply = _bernoulli(x.shape[0], p, x, g).view(-1, 1, 1, 1)
    return torch.where(apply, luma(x).expand_as(x), x)


def simclr_image_views(x: Tensor, g: torch.Generator | None = None) -> Tensor:
    """Random resized crop (scale 0.2–1) + flip, colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8),
    grayscale (p 0.2). `x`: B × C × H × W, uint8 or float in [0, 1]; returns float in [0, 1]."""
    if x.dtype == torch.uint8:
        x = x.float() / 255
    x = random_resized_crop(x, g)
    x = color_jitter(x, g)
    return random_grayscale(x, g)


# --------------------------------------------------------------------------------------------
# Audio: the usual waveform recipe (gain, shift, noise) plus SpecAugment-style masking done in
# the waveform domain (a zeroed time span; a zeroed frequency band via the FFT), so the same
# views feed either view space.
# --------------------------------------------------------------------------------------------


def _shift(x: Tensor, shift: Tensor) -> Tensor:
    """Shift each B × C × T sample by `shift[b]` steps (positive = later), zero-filled."""
    t = x.shape[-1]
    src = torch.arange(t, device=x.device)[None, :] - shift[:, None]  # B × T
    valid = (src >= 0) & (src < t)
    gathered = torch.gather(x, 2, src.clamp(0, t - 1)[:, None, :].expand(-1, x.shape[1], -1))
    return gathered * valid[:, None, :].to(x.dtype)


def _span_mask(
    b: int, t: int, max_fraction: float, like: Tensor, g: torch.Generator | None
) -> Tensor:
    """B × T boolean masks, each one random span of up to `max_fraction` of T."""
    width = (torch.rand(b, device=like.device, generator=g) * max_fraction * t).long()
    start = (torch.rand(b, device=like.device, generator=g) * (t - width + 1)).long()
    pos = torch.arange(t, device=like.device)[None, :]
    return (pos >= start[:, None]) & (pos < (start + width)[:, None])


def audio_views(
    x: Tensor,
    g: torch.Generator | None = None,
    gain_db: float = 6.0,
    max_shift: float = 0.1,
    min_snr_db: float = 10.0,
    max_snr_db: float = 30.0,
    time_masks: int = 2,
    max_time_mask: float = 0.1,
    max_freq_mask: float = 0.15,
) -> Tensor:
    """Random gain (± `gain_db`), time shift (up to `max_shift` of the clip, zero-filled), white
    noise at an SNR in [`min_snr_db`, `max_snr_db`] of each clip's RMS, `time_masks` zeroed
    spans (each up to `max_time_mask` of the clip) and one zeroed frequency band (up to
    `max_freq_mask` of the spectrum). `x`: B × 1 × T waveforms; per-sample parameters."""
    b, c, t = x.shape
    x = x.float() * (10 ** (_uniform(b, -gain_db, gain_db, x, g) / 20)).view(b, 1, 1)
    x = _shift(x, ((2 * torch.rand(b, device=x.device, generator=g) - 1) * max_shift * t).long())
    rms = x.square().mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-8)
    snr = _uniform(b, min_snr_db, max_snr_db, x, g).view(b, 1, 1)
    noise = torch.randn(x.shape, device=x.device, generator=g)
    x = x + noise * rms / (10 ** (snr / 20))
    for _ in range(time_masks):
        x = x * (~_span_mask(b, t, max_time_mask, x, g))[:, None, :].to(x.dtype)
    spec = torch.fft.rfft(x, dim=-1)
    band = _span_mask(b, spec.shape[-1], max_freq_mask, x, g)
    spec = spec * (~band)[:, None, :].to(spec.real.dtype)
    return torch.fft.irfft(spec, n=t, dim=-1)


# --------------------------------------------------------------------------------------------
# Sensors: the standard time-series recipe (Um et al. 2017; tsaug): random crop-resize, time
# warp, segment permutation, magnitude warp, scaling and jitter. Amplitudes are relative to
# each window's own per-channel spread, so the recipe needs no units.
# --------------------------------------------------------------------------------------------


def resample_positions(x: Tensor, pos: Tensor, fill_outside: bool = False) -> Tensor:
    """Linearly interpolate B × C × T signals at fractional positions `pos` (B × T').

    Differentiable with respect to `pos` (through the interpolation weights): the learned
    transforms get their crop, warp, shift and speed gradients this way. Positions outside
    [0, T − 1] take the edge value, or zero with `fill_outside`.
    """
    t = x.shape[-1]
    inside = (pos >= 0) & (pos <= t - 1)
    pos = pos.clamp(0, t - 1)  # NaN stays NaN: a diverging run's view is NaN, and reported
    lo = torch.nan_to_num(pos, nan=0.0).floor().long().clamp(max=t - 1)  # a NaN index crashed
    hi = (lo + 1).clamp(max=t - 1)
    w = (pos - lo.to(pos.dtype))[:, None, :]
    c = x.shape[1]
    take = lambda idx: torch.gather(x, 2, idx[:, None, :].expand(-1, c, -1))  # noqa: E731
    out = take(lo) * (1 - w) + take(hi) * w
    return out * inside[:, None, :].to(out.dtype) if fill_outside else out


def _smooth_curve(
    b: int, c: int, t: int, knots: int, sigma: float, like: Tensor, g: torch.Generator | None
) -> Tensor:
    """B × C × T smooth random curves around 1 (linear through `knots` N(1, sigma) points)."""
    k = 1 + sigma * torch.randn(b * c, 1, knots, device=like.device, generator=g)
    return F.interpolate(k, size=t, mode="linear", align_corners=True).view(b, c, t)


def sensor_views(
    x: Tensor,
    g: torch.Generator | None = None,
    min_crop: float = 0.8,
    warp_sigma: float = 0.2,
    permute_p: float = 0.5,
    segments: int = 4,
    magnitude_sigma: float = 0.2,
    scale_sigma: float = 0.1,
    jitter: float = 0.05,
) -> Tensor:
    """Crop a random span of at least `min_crop` of the window and stretch it back; warp time
    smoothly (speed ~ N(1, `warp_sigma`)); with probability `permute_p` shuffle `segments`
    equal segments; multiply by a smooth curve ~ N(1, `magnitude_sigma`) and a per-channel
    factor ~ N(1, `scale_sigma`); add noise of `jitter` × each channel's std. `x`: B × C × T."""
    x = x.float()
    b, c, t = x.shape
    base = torch.linspace(0, 1, t, device=x.device)[None, :]
    # random crop-resize
    span = _uniform(b, min_crop, 1.0, x, g)[:, None]
    start = torch.rand(b, 1, device=x.device, generator=g) * (1 - span)
    x = resample_positions(x, (start + span * base) * (t - 1))
    # time warp: integrate a smooth positive speed curve, rescale to the window
    speed = _smooth_curve(b, 1, t, 4, warp_sigma, x, g).view(b, t).clamp_min(0.1)
    warp = torch.cumsum(speed, dim=1)
    warp = (warp - warp[:, :1]) / (warp[:, -1:] - warp[:, :1]).clamp_min(1e-6)
    x = resample_positions(x, warp * (t - 1))
    # segment permutation (equal segments; the tail shorter than a segment stays in place)
    seg = t // segments
    if seg > 0:
        order = torch.argsort(torch.rand(b, segments, device=x.device, generator=g), dim=1)
        idx = (order[:, :, None] * seg + torch.arange(seg, device=x.device)).reshape(b, -1)
        idx = torch.cat(
            [idx, torch.arange(seg * segments, t, device=x.device).expand(b, -1)], dim=1
        )
        keep = (torch.rand(b, device=x.device, generator=g) >= permute_p)[:, None]
        idx = torch.where(keep, torch.arange(t, device=x.device).expand(b, -1), idx)
        x = torch.gather(x, 2, idx[:, None, :].expand(-1, c, -1))
    # magnitude warp and scaling around each channel's mean, then jitter
    mean = x.mean(dim=2, keepdim=True)
    std = x.std(dim=2, keepdim=True).clamp_min(1e-6)
    curve = _smooth_curve(b, c, t, 4, magnitude_sigma, x, g)
    scale = 1 + scale_sigma * torch.randn(b, c, 1, device=x.device, generator=g)
    x = mean + (x - mean) * curve * scale
    return x + jitter * std * torch.randn(x.shape, device=x.device, generator=g)
