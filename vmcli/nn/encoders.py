"""Encoders: one constructor signature for every architecture, 1-D or 2-D.

`create_encoder(name, dims=..., in_channels=..., input_size=...)` builds any registered encoder.
Every encoder maps a batch to a 128-d embedding (`forward`, the contrastive output; the paper
used no separate projection head) and exposes `features(x)`, the pooled penultimate features
that the linear probe reads.

Registered:
- `resnet18`: ResNet-18 (the paper's encoder). Small inputs (shortest side ≤ 64) get the CIFAR
  stem (3×3 stride 1, no max-pool), larger ones the standard stem (7×7 stride 2 + max-pool).
- `small`: a 4-stage conv net (~0.4 M parameters) for quick CPU runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vmcli.errors import ConfigError

EMBED_DIM = 128


class _Conv1dAs2d(nn.Conv1d):
    """A Conv1d — the same parameters and state dict — computed as a 1 × k 2-D convolution on
    B × C × 1 × T tensors. oneDNN's channels-last 2-D kernels train the small sensor encoder
    about 1.25× faster on a CPU than its 1-D path (benchmarks/RESULTS.md), and exports made
    with plain Conv1d layers load unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            (1, self.stride[0]),
            (0, self.padding[0]),  # type: ignore[index]
            (1, self.dilation[0]),
            self.groups,
        )


def _max_pool_1xk(kernel: int, stride: int, padding: int) -> nn.Module:
    return nn.MaxPool2d((1, kernel), (1, stride), (0, padding))


def _layers(dims: int) -> tuple[Callable[..., nn.Module], ...]:
    """Conv, Norm, MaxPool, AdaptiveAvgPool for 1-D or 2-D inputs. 1-D encoders run on
    B × C × 1 × T tensors (see `_Conv1dAs2d`); BatchNorm2d has BatchNorm1d's state dict."""
    if dims == 1:
        return _Conv1dAs2d, nn.BatchNorm2d, _max_pool_1xk, nn.AdaptiveAvgPool2d
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d
    raise ValueError(f"dims must be 1 or 2, got {dims}")


class Encoder(nn.Module):
    """Backbone → global average pool → linear to 128-d."""

    def __init__(self, backbone: nn.Module, feature_dim: int, dims: int, out_dim: int = EMBED_DIM):
        super().__init__()
        self.backbone = backbone
        self.pool = _layers(dims)[3](1)
        self.fc = nn.Linear(feature_dim, out_dim)
        self.feature_dim = feature_dim
        self.dims = dims

    def features(self, x: Tensor) -> Tensor:
        """Pooled penultimate features (B × feature_dim): what the linear probe sees."""
        if self.dims == 1:  # B × C × T → B × C × 1 × T, channels-last (see _Conv1dAs2d)
            x = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        return self.pool(self.backbone(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.features(x))


class _BasicBlock(nn.Module):
    def __init__(self, dims: int, cin: int, cout: int, stride: int):
        super().__init__()
        Conv, Norm, _, _ = _layers(dims)
        self.conv1 = Conv(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = Norm(cout)
        self.conv2 = Conv(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = Norm(cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(Conv(cin, cout, 1, stride, bias=False), Norm(cout))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


def _resnet_backbone(
    dims: int, in_channels: int, small_input: bool, blocks: Sequence[int]
) -> nn.Module:
    Conv, Norm, Pool, _ = _layers(dims)
    if small_input:  # CIFAR stem: keep resolution
        stem: list[nn.Module] = [Conv(in_channels, 64, 3, 1, 1, bias=False), Norm(64), nn.ReLU()]
    else:
        stem = [Conv(in_channels, 64, 7, 2, 3, bias=False), Norm(64), nn.ReLU(), Pool(3, 2, 1)]
    layers: list[nn.Module] = [*stem]
    cin = 64
    for stage, n in enumerate(blocks):
        cout = 64 * 2**stage
        for i in range(n):
            layers.append(_BasicBlock(dims, cin, cout, stride=2 if (i == 0 and stage > 0) else 1))
            cin = cout
    return nn.Sequential(*layers)


def resnet18(dims: int, in_channels: int, input_size: Sequence[int]) -> Encoder:
    small_input = min(input_size) <= 64
    return Encoder(_resnet_backbone(dims, in_channels, small_input, (2, 2, 2, 2)), 512, dims)


def small(dims: int, in_channels: int, input_size: Sequence[int]) -> Encoder:
    """Four conv–BN–ReLU stages (32, 64, 128, 256), each halving resolution after the first."""
    Conv, Norm, _, _ = _layers(dims)
    layers: list[nn.Module] = []
    cin = in_channels
    for i, cout in enumerate((32, 64, 128, 256)):
        layers += [Conv(cin, cout, 3, 1 if i == 0 else 2, 1, bias=False), Norm(cout), nn.ReLU()]
        cin = cout
    return Encoder(nn.Sequential(*layers), 256, dims)


ENCODERS: dict[str, Callable[[int, int, Sequence[int]], Encoder]] = {
    "resnet18": resnet18,
    "small": small,
}


def create_encoder(name: str, *, dims: int, in_channels: int, input_size: Sequence[int]) -> Encoder:
    """Build a registered encoder for inputs of shape B × in_channels × *input_size."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    return ENCODERS[name](dims, in_channels, input_size)
