"""Audio folders: whatever libsndfile reads, mixed to mono, resampled, cut to one length.

Loading (once per run, in parallel): mono mix; resampling to `--sample-rate` (default 16 kHz)
with soxr; every clip centre-cropped or zero-padded to `--clip-seconds` (default: the median
duration). Empty, header-only, truncated, NaN/inf-holding, silent and absurdly long files are
skipped with a warning that names them. Mixed sample rates and channel counts are normal.

Two view spaces:
- `spectrogram` (the paper's route): the 2-D viewmaker perturbs the normalised log-mel
  spectrogram (64 bands, 25 ms windows, 10 ms hop; per-band mean/std from the training data);
  ε is in those normalised units. `vm augment` writes log-mel arrays (.npy) and, with
  `--to-wav`, an approximate waveform (Griffin-Lim).
- `waveform`: the 1-D viewmaker perturbs the waveform (scaled by the dataset's RMS, so ε is
  relative to typical loudness); the encoder sees the normalised log-mel of the perturbed
  waveform, so views are real audio and `vm augment` writes audio files.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import torch
from torch import Tensor

from vmcli import preview as pv
from vmcli import untrusted
from vmcli.config import MIN_CLIP_SECONDS, MIN_SAMPLE_RATE
from vmcli.console import info
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
from vmcli.errors import ConfigError, DataError
from vmcli.runs import atomic_write
from vmcli.spectral import LogMel, griffin_lim
from vmcli.views import audio_views

if TYPE_CHECKING:
    import soundfile as sf

DEFAULT_RATE = 16_000
N_MELS = 64
SILENCE_PEAK = 1e-5
# the loudest sample a float file may hold: spectrograms and the RMS are float32 (max 3.4e38).
# At 1e12, the power of the longest window (25 ms at 768 kHz: 19,200 samples, Hann sum 9,600)
# is at most (9,600 × 1e12)² ≈ 9e31 per bin, summed into a mel band over at most 9,601 bins
# ≈ 9e35; the sum of squares of 10 minutes at 768 kHz is 4.6e8 × 1e24 ≈ 5e32: all finite.
# A float file of 1e18 overflowed them (NaN views, a crashed run); real audio peaks near 1
MAX_PEAK = 1e12
MIN_SECONDS, MAX_DEFAULT_SECONDS = MIN_CLIP_SECONDS, 30.0


CLIPPED_NOTE = (
    "have views that go past full scale (±1): those samples were clipped, as the file's sample "
    "format cannot hold them (a quieter input or a lower --budget keeps them)"
)


class AudioMeta(TypedDict):
    """What a run records about its audio (config.json `data_meta`, export headers)."""

    sample_rate: int  # Hz, after resampling
    clip_samples: int  # fixed clip length, in samples at sample_rate
    n_mels: int  # mel bands of the spectrogram view space


class _LogMelNormalised(ViewSpace):
    """Shared by both audio spaces: log-mel of a waveform, z-scored per band."""

    encoder_dims = 2

    def __init__(self, meta: dict[str, Any], stats: dict[str, Any] | None = None):
        super().__init__(meta, stats)
        self.frontend = LogMel(int(meta["sample_rate"]), int(meta.get("n_mels", N_MELS)))
        n = self.frontend.n_mels
        self.register_buffer(
            "mel_mean",
            torch.tensor(self.stats.get("mel_mean", [0.0] * n)).view(1, 1, n, 1),
            persistent=False,
        )
        self.register_buffer(
            "mel_std",
            torch.tensor(self.stats.get("mel_std", [1.0] * n)).view(1, 1, n, 1),
            persistent=False,
        )
        self.register_buffer(
            "wav_rms", torch.tensor(float(self.stats.get("wav_rms", 1.0))), persistent=False
        )

    def fit(self, raw: Tensor) -> dict[str, Any]:
        s, s2, count, sq = 0.0, 0.0, 0, 0.0
        with torch.no_grad():
            for i in range(0, len(raw), 256):
                chunk = raw[i : i + 256].float()
                sq += float(chunk.square().sum())
                mel = self.frontend(chunk)
                s = s + mel.sum(dim=(0, 1, 3))
                s2 = s2 + mel.square().sum(dim=(0, 1, 3))
                count += mel.shape[0] * mel.shape[3]
        mean = s / count
        std = (s2 / count - mean.square()).clamp_min(1e-6).sqrt()
        rms = max((sq / raw.numel()) ** 0.5, 1e-6)
        self.stats = {"mel_mean": mean.tolist(), "mel_std": std.tolist(), "wav_rms": rms}
        self.mel_mean.copy_(mean.view(self.mel_mean.shape))
        self.mel_std.copy_(std.view(self.mel_std.shape))
        self.wav_rms.fill_(rms)
        return self.stats

    def normalised_log_mel(self, wav: Tensor) -> Tensor:
        return (self.frontend(wav) - self.mel_mean) / self.mel_std

    def log_mel(self, view: Tensor) -> Tensor:
        """A view as plain log-mel (natural log of mel power): what previews and .npy files show."""
        return self.to_encoder(view) * self.mel_std + self.mel_mean


class LogMelSpace(_LogMelNormalised):
    name = "spectrogram"
    dims = 2
    channels = 1
    invertible = False

    def to_view(self, raw: Tensor) -> Tensor:
        return self.normalised_log_mel(raw)

    def from_view(self, view: Tensor) -> Tensor:
        return view * self.mel_std + self.mel_mean


class WaveformSpace(_LogMelNormalised):
    name = "waveform"
    dims = 1
    channels = 1
    invertible = True

    def to_view(self, raw: Tensor) -> Tensor:
        return raw.float() / self.wav_rms

    def to_encoder(self, view: Tensor) -> Tensor:
        return self.normalised_log_mel(view * self.wav_rms)

    def from_view(self, view: Tensor) -> Tensor:
        return view * self.wav_rms


def _mono(data: np.ndarray) -> np.ndarray:
    return data.mean(axis=1) if data.ndim == 2 else data


# a line of libsndfile's header log giving a chunk's size and the size the file has room for:
# `RIFF : 16036 (should be 8014)`, `data`, `FORM`, ` SSND`, `riff` (W64), `  Riff size` (RF64),
# `  Data Size` (AU). It writes "(should be" after other odd fields too (`Bytes/sec : 16001
# (should be 32000)`), which it works around: those files decode whole
_CHUNK_SIZE_LINE = re.compile(
    r"\s*([A-Za-z][\w ]{3}|Data Size|Riff size)\s*: (\d+) \(should be (\d+)\)"
)


def _runs_past_end(line: str) -> bool:
    """True for a chunk that claims more bytes than the file holds: an incomplete copy."""
    match = _CHUNK_SIZE_LINE.match(line)
    return match is not None and int(match.group(2)) > int(match.group(3))


def _check_header(path: Path, max_seconds: float) -> sf._SoundFileInfo | str:
    """The file's header if it describes usable audio, else the reason to skip it."""
    import soundfile as sf  # decoders load on first use: `import vmcli` stays light

    try:
        meta = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError, TypeError) as e:
        return f"cannot be read as audio ({e})"
    if meta.frames <= 0 or meta.samplerate <= 0:
        return "holds no audio samples (empty or header only)"
    truncated = [line.strip() for line in meta.extra_info.splitlines() if _runs_past_end(line)]
    if truncated:
        return f"is truncated (header vs file: {'; '.join(truncated)})"
    if meta.duration > max_seconds:
        return f"is {meta.duration:.0f} s long (over {max_seconds:.0f} s); cut long recordings into clips first"
    return meta


def _header_summary(path: Path, max_seconds: float) -> _Header | str:
    meta = _check_header(path, max_seconds)
    return meta if isinstance(meta, str) else _Header(meta.duration, meta.samplerate)


@dataclass(frozen=True)
class _Header:
    duration: float
    samplerate: int


@dataclass(frozen=True)
class _Decoded:
    mono: np.ndarray  # float32 at the requested rate
    source_rate: int
    original: np.ndarray  # frames × channels as stored, float32
    format: str
    subtype: str


def _decode(path: Path, rate: int, max_seconds: float) -> _Decoded | str:
    """The file read once: mono at `rate`, plus what writing a view back needs; or the
    reason to skip it."""
    import soundfile as sf
    import soxr

    meta = _check_header(path, max_seconds)
    if isinstance(meta, str):
        return meta
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        return f"cannot be decoded ({e})"
    if len(data) == 0:
        return "holds no audio samples (empty or header only)"
    if not np.isfinite(data).all():
        return "holds NaN or infinite samples"
    peak = float(np.abs(data).max())
    if peak > MAX_PEAK:
        return f"holds samples as large as {peak:.3g}, beyond what a float32 spectrogram can hold (±{MAX_PEAK:.0e})"
    mono = _mono(data)
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        return "is silent (peak below 1e-5)"
    if sr != rate:
        mono = soxr.resample(mono, sr, rate, quality="HQ").astype(np.float32)
    if len(mono) == 0:  # a few samples at a far higher rate: nothing left to train on or view
        return f"is shorter than one sample at {rate} Hz ({len(data)} sample(s) at {sr} Hz)"
    return _Decoded(mono, sr, data, meta.format, meta.subtype)


def fit_length(wav: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or zero-pad (both ends evenly) to `length` samples."""
    n = len(wav)
    if n >= length:
        start = (n - length) // 2
        return wav[start : start + length]
    out = np.zeros(length, dtype=np.float32)
    start = (length - n) // 2
    out[start : start + n] = wav
    return out


class AudioModality(Modality):
    name = "audio"
    extensions = frozenset(
        {
            "wav",
            "wave",
            "flac",
            "ogg",
            "oga",
            "opus",
            "mp3",
            "aif",
            "aiff",
            "aifc",
            "au",
            "snd",
            "w64",
            "caf",
            "rf64",
        }
    )
    options = ("sample_rate", "clip_seconds", "max_clip_seconds")
    meta_type = AudioMeta
    spaces = {"spectrogram": LogMelSpace, "waveform": WaveformSpace}
    default_batch_size = 128
    output_suffix = {"spectrogram": ".npy"}
    companion_suffix = {"spectrogram": ".wav"}  # --to-wav: the approximate WAV
    # spectrogram: at 0.05 the adversary went inert on all three seeds of the instrument
    # benchmark (its views no harder than the random control's); at 0.2 validation was higher
    # (0.300 vs 0.280, two and three seeds) and the adversary active on one seed of two
    # (benchmarks/RESULTS.md, H200). The waveform space keeps 0.05: not measured at 0.2.
    default_budgets = {"spectrogram": 0.2}
    # on spoken digits (unseen voices), the one audio benchmark where self-supervision learns,
    # learned transforms score 0.977 on validation (three seeds) against 0.945 for the ε 0.2
    # viewmaker (four); on instrument families every arm is level with an untrained encoder.
    # The viewmaker stays one flag away, and is chosen by --budget
    default_views = "learned-transforms"
    # held at the recipe's own mean strength, the adversary only moves strength between
    # transforms: on spoken digits this beat the fixed recipe on each of three seeds (test
    # 0.978 vs 0.971, validation 0.988 vs 0.981), where free strengths went to their bounds and
    # trailed it (validation 0.977; benchmarks/RESULTS.md)
    default_transforms_budget = "recipe"
    # fp32 even on a CPU with bf16 hardware, though bf16 trains 1.7-2× faster: over four seeds
    # on spoken digits level on test but 0.5 lower on validation, one seed 2.1 lower: not
    # shown to lose nothing (benchmarks/RESULTS.md)
    cpu_bf16 = False

    def sniff(self, path: Path, head: bytes) -> bool:
        return (
            (head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE")
            or head.startswith(b"fLaC")
            or head.startswith(b"OggS")
            or (head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"))
            or head.startswith(b".snd")
            or head.startswith(b"ID3")
            or head.startswith(b"caff")
            or head.startswith(b"riff\x2e\x91\xcf\x11")  # W64
            or (
                len(head) > 1
                and head[0] == 0xFF
                and (head[1] & 0xE0) == 0xE0
                and path.suffix.lower() == ".mp3"
            )
        )

    def plan(
        self,
        root: Path,
        items: list[Item],
        options: LoadOptions,
        meta: dict[str, Any] | None = None,
    ) -> tuple[dict[str, Any], list[Item], list[tuple[Path, str]]]:
        """Headers only: sample rate and clip length (default: the median duration)."""
        rate = int(meta["sample_rate"]) if meta else int(options.sample_rate or DEFAULT_RATE)
        if rate < MIN_SAMPLE_RATE:
            raise ConfigError(
                f"--sample-rate {rate} Hz is too low for audio (use ≥ {MIN_SAMPLE_RATE})"
            )
        paths = [root / it.path for it in items]
        headers = parallel_map(
            functools.partial(_header_summary, max_seconds=options.max_clip_seconds), paths
        )
        skipped = [(p, h) for p, h in zip(paths, headers, strict=True) if isinstance(h, str)]
        ok = [(it, h) for it, h in zip(items, headers, strict=True) if not isinstance(h, str)]
        if not ok:
            report_skipped(skipped, len(items), "audio")
            raise DataError(f"{root}: none of the {len(items)} audio files could be used")
        if meta is not None:
            return dict(meta), [it for it, _ in ok], skipped
        durations = np.array([h.duration for _, h in ok])
        if options.clip_seconds is not None:
            if options.clip_seconds < MIN_SECONDS:
                raise ConfigError(
                    f"--clip-seconds {options.clip_seconds} is too short (use ≥ {MIN_SECONDS})"
                )
            seconds, how = options.clip_seconds, "--clip-seconds"
        else:
            median = float(np.median(durations))
            seconds = float(np.clip(median, MIN_SECONDS, MAX_DEFAULT_SECONDS))
            how = "the median duration" + ("" if seconds == median else f" {median:.2f} s, clamped")
        length = int(round(seconds * rate))
        rates = sorted({h.samplerate for _, h in ok})
        info(
            f"audio: {len(ok)} clips at {rate} Hz (source rates: {', '.join(map(str, rates))}); "
            f"clip length {length / rate:.2f} s ({how}); {int((durations * rate > length).sum())} centre-cropped, "
            f"{int((durations * rate < length).sum())} zero-padded; set --clip-seconds / --sample-rate to change"
        )
        return (
            AudioMeta(sample_rate=rate, clip_samples=length, n_mels=N_MELS),
            [it for it, _ in ok],
            skipped,
        )

    def decode_item(self, root: Path, item: Item, meta: dict[str, Any]) -> Tensor:
        path = root / item.path
        decoded = _decode(path, int(meta["sample_rate"]), float("inf"))
        if isinstance(decoded, str):
            raise DataError(f"{path}: {decoded}")
        return torch.from_numpy(fit_length(decoded.mono, int(meta["clip_samples"])).copy())[
            None
        ]  # 1 × T

    def check_meta(self, meta: dict[str, Any], where: str) -> list[int]:
        untrusted.whole_number(
            meta, "sample_rate", MIN_SAMPLE_RATE, untrusted.MAX_SAMPLE_RATE, where
        )
        if "n_mels" in meta:
            untrusted.whole_number(meta, "n_mels", 1, untrusted.MAX_MELS, where)
        return [1, untrusted.whole_number(meta, "clip_samples", 1, untrusted.MAX_ELEMENTS, where)]

    def handcrafted(self, meta: dict[str, Any]) -> Handcrafted:
        return audio_views

    def describe_raw(self, meta: dict[str, Any]) -> str:
        return f"mono waveforms B × 1 × T at {int(meta['sample_rate'])} Hz"

    # -- augment ------------------------------------------------------------------------------
    def read_file(self, path: Path, meta: dict[str, Any], options: LoadOptions) -> FileSample:
        rate = int(meta["sample_rate"])
        decoded = _decode(path, rate, options.max_clip_seconds)
        if isinstance(decoded, str):
            raise DataError(f"{path}: {decoded}")
        return FileSample(
            torch.from_numpy(decoded.mono.copy())[None, None],
            {
                "rate": rate,
                "source_rate": decoded.source_rate,
                "original": decoded.original,
                "format": decoded.format,
                "subtype": decoded.subtype,
            },
        )

    def write_file(self, raw: Tensor, sample: FileSample, dst: Path) -> None:
        import soundfile as sf
        import soxr

        ctx = sample.context
        if dst.suffix == ".npy":  # spectrogram space: the view's log-mel (n_mels × frames)
            log_mel = raw[0, 0].float().cpu()
            np.save(dst, log_mel.numpy())
            if ctx.get("to_wav"):
                frontend = LogMel(int(ctx["rate"]), log_mel.shape[0])
                length = sample.raw.shape[-1]  # the clip's, at the run's rate
                wav = griffin_lim(log_mel, frontend, length=length).numpy()
                peak = max(1.0, float(np.abs(wav).max()))
                wav_path = dst.with_suffix(self.companion_suffix["spectrogram"])  # as planned
                sf.write(str(wav_path), wav / peak, int(ctx["rate"]), subtype="PCM_16")
            return
        # waveform space: add the perturbation (resampled to the file's rate) to every channel,
        # so stereo stays stereo and content above the model's band is kept.
        view = raw[0, 0].float().cpu().numpy()
        mono = sample.raw[0, 0].numpy()
        delta = view - mono
        if ctx["source_rate"] != ctx["rate"]:
            delta = soxr.resample(delta, ctx["rate"], ctx["source_rate"], quality="HQ")
        original = ctx["original"]
        n = len(original)
        delta = np.pad(delta, (0, max(0, n - len(delta))))[:n]
        out = original + delta[:, None].astype(np.float32)
        subtype = ctx["subtype"] if ctx["subtype"] in sf.available_subtypes(ctx["format"]) else None
        if subtype not in ("FLOAT", "DOUBLE") and np.abs(out).max() > 1.0:
            # integer and compressed formats hold ±1 at most (libsndfile would wrap, not clip)
            out = np.clip(out, -1.0, 1.0)
            if CLIPPED_NOTE not in ctx.setdefault("notes", []):
                ctx["notes"].append(CLIPPED_NOTE)
        fmt = ctx["format"] if ctx["format"] in sf.available_formats() else "WAV"
        sf.write(str(dst), out, int(ctx["source_rate"]), format=fmt, subtype=subtype)

    # -- preview ------------------------------------------------------------------------------
    def preview(
        self, raw: Tensor, views: list[Tensor], deltas: list[Tensor], space: ViewSpace, dst: Path
    ) -> list[Path]:
        """preview.png (log-mel of original | views | δ) and preview_audio/*.wav to listen to."""
        import soundfile as sf

        assert isinstance(space, _LogMelNormalised)
        with torch.no_grad():
            original = space.log_mel(space.to_view(raw))
            shown = [space.log_mel(v) for v in views]
            lo, hi = float(original.min()), float(original.max())
            rows = []
            for i in range(raw.shape[0]):
                row = [pv.upscale(pv.colormap(original[i, 0].flip(0).numpy(), lo, hi), 64)]
                row += [pv.upscale(pv.colormap(v[i, 0].flip(0).numpy(), lo, hi), 64) for v in shown]
                if deltas:
                    d = deltas[0][i : i + 1]
                    if space.dims == 1:  # waveform δ: show the perturbation's own spectrogram
                        tile = pv.colormap(space.frontend(d * space.wav_rms)[0, 0].flip(0).numpy())
                    else:
                        tile = pv.diverging(d[0, 0].flip(0).numpy())
                    row.append(pv.upscale(tile, 64))
                rows.append(row)
        labels = pv.column_labels(len(views), bool(deltas))
        paths = [pv.save_png(pv.grid(rows, labels), dst)]
        folder = dst.parent / "preview_audio"
        folder.mkdir(exist_ok=True)
        rate = int(space.meta["sample_rate"])
        for i in range(min(3, raw.shape[0])):
            clips = {"original": raw[i, 0].numpy()}
            for k, v in enumerate(views[:2]):
                if space.invertible:
                    clips[f"view{k + 1}"] = space.from_view(v[i : i + 1])[0, 0].numpy()
                else:
                    clips[f"view{k + 1}_approx"] = griffin_lim(
                        space.from_view(v[i : i + 1])[0, 0], space.frontend
                    ).numpy()
            for name, wav in clips.items():
                target = folder / f"sample{i}_{name}.wav"
                peak = max(1.0, float(np.abs(wav).max()))
                with atomic_write(target) as tmp:
                    sf.write(str(tmp), wav / peak, rate, format="WAV", subtype="PCM_16")
                paths.append(target)
        return paths
