"""The viewmaker network (Tamkin, Wu, Goodman, ICLR 2021), for 1-D signals and 2-D images.

A style-transfer-style generator (Johnson et al. 2016) maps an input plus fresh uniform noise to
a perturbation δ on an L1 sphere: mean |δ| = budget for every example. The view is x + δ,
clamped to a valid range where the data has one (pixels in [0, 1]).

Layout, as in the paper (widths for the default `width=32`):
    [x, noise] → 9 conv 32 → 3 conv/2 64 → 3 conv/2 128
    → 3 × ([h, noise] → residual block)        widths 129, 130, 131
    → up×2 3 conv 64 → up×2 3 conv 32 → 9 conv C (linear)
Every conv but the last uses reflection padding, affine instance norm and ReLU.

Where we depart from the reference code (each on purpose):
- `dims=1|2`: the same module for signals (conv1d) and images/spectrograms (conv2d).
- Any input size: inputs are padded (replicate) up to a multiple of 4 and at least 8 per side,
  then the output is cropped back; the reference assumed square sides divisible by 4.
- The budget projection divides by mean |tanh(y)| clamped away from zero instead of adding 1e-4,
  so mean |δ| equals the budget exactly (to float precision), not approximately.
- Noise is passed in (or drawn from an explicit generator) so views are reproducible and the
  network itself can be compiled without random-state side effects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Noise = tuple[Tensor, Tensor]  # (input noise B×1×S, block noise R×B×1×S/4), S = padded spatial


def project_to_budget(raw: Tensor, budget: float) -> Tensor:
    """Map an unbounded network output to a perturbation with mean |δ| = `budget` per example.

    δ = budget · tanh(raw) / mean(|tanh(raw)|), the mean taken over every non-batch dimension
    (channels and space), computed in float32 even under autocast.

    >>> d = project_to_budget(torch.randn(4, 3, 8, 8), 0.05)
    >>> torch.allclose(d.abs().mean(dim=(1, 2, 3)), torch.full((4,), 0.05))
    True
    """
    p = torch.tanh(raw.float())
    dims = tuple(range(1, p.ndim))
    scale = p.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
    return p * (budget / scale)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return -grad


def grad_reverse(x: Tensor) -> Tensor:
    """Identity forward, negated gradient backward.

    Placed on δ, one backward pass gives the encoder ∂L/∂θ and the viewmaker −∂L/∂φ, so both
    optimizers *descending* makes the viewmaker *ascend* the contrastive loss: the paper's
    adversarial objective in one pass instead of two.
    """
    return _GradReverse.apply(x)


def upsample_nearest2x(x: Tensor) -> Tensor:
    """Nearest-neighbour ×2 along every spatial dim. Same values as F.interpolate(mode="nearest"),
    written as expand + reshape because that is several times faster on CPU (forward+backward)."""
    if x.ndim == 3:
        b, c, t = x.shape
        return x[:, :, :, None].expand(b, c, t, 2).reshape(b, c, 2 * t)
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)


def _conv(dims: int, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Module:
    pad = kernel // 2
    Pad = nn.ReflectionPad1d if dims == 1 else nn.ReflectionPad2d
    Conv = nn.Conv1d if dims == 1 else nn.Conv2d
    return nn.Sequential(Pad(pad), Conv(cin, cout, kernel, stride))


def _norm(dims: int, channels: int) -> nn.Module:
    Norm = nn.InstanceNorm1d if dims == 1 else nn.InstanceNorm2d
    return Norm(channels, affine=True)


class _ConvBlock(nn.Module):
    """conv → instance norm → ReLU, optionally after a nearest ×2 upsample."""

    def __init__(
        self, dims: int, cin: int, cout: int, kernel: int, stride: int = 1, upsample: bool = False
    ):
        super().__init__()
        self.upsample = upsample
        self.conv = _conv(dims, cin, cout, kernel, stride)
        self.norm = _norm(dims, cout)

    def forward(self, x: Tensor) -> Tensor:
        if self.upsample:
            x = upsample_nearest2x(x)
        return F.relu(self.norm(self.conv(x)))


class _ResidualBlock(nn.Module):
    """conv–IN–ReLU–conv–IN plus identity; no activation after the add (as in the paper)."""

    def __init__(self, dims: int, channels: int):
        super().__init__()
        self.conv1 = _conv(dims, channels, channels, 3)
        self.norm1 = _norm(dims, channels)
        self.conv2 = _conv(dims, channels, channels, 3)
        self.norm2 = _norm(dims, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x)))
        return x + self.norm2(self.conv2(h))


class Viewmaker(nn.Module):
    """Stochastic perturbation network: `viewmaker(x)` is a new view of `x` on every call.

    Args:
        channels: input channels C (3 for RGB, 1 for a log-mel, 6 for a 6-axis IMU window...).
        dims: 2 for B×C×H×W inputs, 1 for B×C×T signals.
        budget: ε, the mean absolute perturbation per example, in the units the network sees.
        width: channels of the first layer; the paper's network is width 32 (32, 64, 128).
        num_res_blocks: residual blocks at 1/4 resolution (the paper: 3).
        clamp: (low, high) range for views, e.g. (0, 1) for pixels; None leaves views unbounded.

    Example:
        >>> vm = Viewmaker(channels=3, budget=0.05, clamp=(0.0, 1.0))
        >>> x = torch.rand(8, 3, 32, 32)
        >>> v1, v2 = vm(x), vm(x)   # two different views of the same batch
    """

    def __init__(
        self,
        channels: int,
        dims: int = 2,
        budget: float = 0.05,
        width: int = 32,
        num_res_blocks: int = 3,
        clamp: tuple[float, float] | None = None,
    ):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"dims must be 1 or 2, got {dims}")
        if budget <= 0:
            raise ValueError(f"budget must be > 0, got {budget}")
        self.channels, self.dims, self.budget = channels, dims, float(budget)
        self.width, self.num_res_blocks = width, num_res_blocks
        self.clamp_range = clamp
        w1, w2, w3 = width, 2 * width, 4 * width
        self.down = nn.Sequential(
            _ConvBlock(dims, channels + 1, w1, 9),
            _ConvBlock(dims, w1, w2, 3, stride=2),
            _ConvBlock(dims, w2, w3, 3, stride=2),
        )
        self.res_blocks = nn.ModuleList(
            _ResidualBlock(dims, w3 + i + 1) for i in range(num_res_blocks)
        )
        self.up = nn.Sequential(
            _ConvBlock(dims, w3 + num_res_blocks, w2, 3, upsample=True),
            _ConvBlock(dims, w2, w1, 3, upsample=True),
        )
        self.out = _conv(dims, w1, channels, 9)

    # -- noise ---------------------------------------------------------------------------------
    def _padded_size(self, size: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(max(8, -(-s // 4) * 4) for s in size)

    def sample_noise(
        self, x: Tensor, generator: torch.Generator | None = None, batch: int | None = None
    ) -> Noise:
        """Fresh uniform [0, 1) noise for one call on `x` (drawn on x's device); `batch`
        overrides the batch size (distributed training draws the global batch's noise)."""
        size = self._padded_size(tuple(x.shape[2:]))
        small = tuple(s // 4 for s in size)
        b = x.shape[0] if batch is None else batch
        kw = dict(device=x.device, dtype=torch.float32, generator=generator)
        return (
            torch.rand((b, 1, *size), **kw),
            torch.rand((self.num_res_blocks, b, 1, *small), **kw),
        )

    # -- forward -------------------------------------------------------------------------------
    def raw_output(self, x: Tensor, noise: Noise) -> Tensor:
        """The network's unbounded output y (same shape as x), before the budget projection."""
        size = tuple(x.shape[2:])
        padded = self._padded_size(size)
        pad: list[int] = []
        for s, p in zip(reversed(size), reversed(padded), strict=True):
            pad += [0, p - s]
        h = F.pad(x, pad, mode="replicate") if any(pad) else x
        input_noise, block_noise = noise
        h = torch.cat([h, input_noise.to(h.dtype)], dim=1)
        h = self.down(h)
        for i, block in enumerate(self.res_blocks):
            h = block(torch.cat([h, block_noise[i].to(h.dtype)], dim=1))
        h = self.out(self.up(h))
        crop = (slice(None), slice(None), *(slice(0, s) for s in size))
        return h[crop]

    def perturbation(
        self, x: Tensor, noise: Noise | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """δ with mean |δ| = budget per example (float32)."""
        if noise is None:
            noise = self.sample_noise(x, generator)
        return project_to_budget(self.raw_output(x, noise), self.budget)

    def apply_perturbation(self, x: Tensor, delta: Tensor) -> Tensor:
        """view = x + δ, clamped to the data's range when it has one."""
        view = x + delta
        if self.clamp_range is not None:
            view = view.clamp(*self.clamp_range)
        return view

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.apply_perturbation(x, self.perturbation(x, generator=generator))

    def extra_repr(self) -> str:
        return (
            f"channels={self.channels}, dims={self.dims}, budget={self.budget}, "
            f"width={self.width}, num_res_blocks={self.num_res_blocks}, clamp={self.clamp_range}"
        )
