"""Time–frequency transforms on tensors (torch.stft): log-mel for audio, log spectrograms for
sensor channels, and Griffin-Lim to listen to a spectrogram (approximately).

Everything runs in float32 with autocast off: STFTs and logs need the precision, and these
transforms cost little next to the networks.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

LOG_FLOOR = 1e-6  # power floor before the log: silence maps to log(1e-6) ≈ −13.8, not −inf


def hz_to_mel(f: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> Tensor:
    """Triangular HTK-mel filters, (n_fft // 2 + 1) × n_mels, peak 1 each."""
    f_max = f_max or sample_rate / 2
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(
        torch.linspace(
            hz_to_mel(torch.tensor(f_min)),
            hz_to_mel(torch.tensor(f_max)),
            n_mels + 2,
            dtype=torch.float64,
        )
    )
    lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
    up = (freqs[:, None] - lo) / (mid - lo)
    down = (hi - freqs[:, None]) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0).float()


def fp32(x: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off (spectra stay fp32 under bf16 training). A `meta` tensor, used to work out
    shapes without data, has no autocast: nothing to turn off."""
    if x.device.type in ("cpu", "cuda"):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


class Stft(nn.Module):
    """Power spectrogram of B × C × T signals → B × C × (n_fft//2+1) × frames (Hann window)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t = x.shape
        with fp32(x):
            flat = x.float().reshape(b * c, t)
            pad_mode = "reflect" if t > self.n_fft // 2 else "constant"
            spec = torch.stft(
                flat,
                self.n_fft,
                self.hop,
                window=self.window,
                center=True,
                pad_mode=pad_mode,
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
        return power.reshape(b, c, *power.shape[1:])


class LogMel(nn.Module):
    """B × 1 × T waveform → B × 1 × n_mels × frames natural-log mel power (floored)."""

    def __init__(
        self, sample_rate: int, n_mels: int = 64, win_ms: float = 25.0, hop_ms: float = 10.0
    ):
        super().__init__()
        self.sample_rate, self.n_mels = sample_rate, n_mels
        n_fft = int(round(sample_rate * win_ms / 1000))
        self.stft = Stft(n_fft, max(1, int(round(sample_rate * hop_ms / 1000))))
        self.register_buffer(
            "filters", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False
        )

    def forward(self, wav: Tensor) -> Tensor:
        power = self.stft(wav)  # B × 1 × F × frames
        with fp32(wav):
            mel = torch.einsum("bcft,fm->bcmt", power, self.filters)
            return torch.log(mel.clamp_min(LOG_FLOOR))


class LogSpectrogram(nn.Module):
    """B × C × T signals → B × C × bins × frames log power, one spectrogram per channel
    (the paper's sensor route: per-channel spectrograms stacked as image channels)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.stft = Stft(n_fft, hop)

    def forward(self, x: Tensor) -> Tensor:
        with fp32(x):
            return torch.log(self.stft(x).clamp_min(LOG_FLOOR))


def griffin_lim(
    log_mel: Tensor, frontend: LogMel, n_iter: int = 32, seed: int = 0, length: int | None = None
) -> Tensor:
    """An *approximate* waveform for an n_mels × frames log-mel: the mel filterbank is inverted
    by least squares, then the phase is estimated by Griffin-Lim. For listening, not for data.

    `length`: the clip's own length in samples (default hop × (frames − 1)), kept to one that
    gives as many frames: a clip of one frame would otherwise come back empty."""
    stft = frontend.stft
    power_mel = torch.exp(log_mel.float())
    inverse = torch.linalg.pinv(frontend.filters)  # n_mels × F
    magnitude = (inverse.T @ power_mel).clamp_min(0).sqrt()  # F × frames
    frames = magnitude.shape[-1]
    shortest, longest = stft.hop * (frames - 1), stft.hop * frames - 1
    length = max(1, min(max(length or shortest, shortest), longest))
    # as Stft pads it: reflect padding needs more samples than half a window
    pad_mode = "reflect" if length > stft.n_fft // 2 else "constant"
    g = torch.Generator().manual_seed(seed)
    angles = torch.exp(2j * math.pi * torch.rand(magnitude.shape, generator=g))
    window = stft.window.cpu()
    wav = torch.zeros(length)
    for _ in range(n_iter):
        wav = torch.istft(
            magnitude * angles, stft.n_fft, stft.hop, window=window, center=True, length=length
        )
        rebuilt = torch.stft(
            wav,
            stft.n_fft,
            stft.hop,
            window=window,
            center=True,
            pad_mode=pad_mode,
            return_complex=True,
        )
        angles = rebuilt / rebuilt.abs().clamp_min(1e-8)
    return torch.istft(
        magnitude * angles, stft.n_fft, stft.hop, window=window, center=True, length=length
    )
