import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from vmcli.data import MODALITIES, LoadOptions, scan
from vmcli.data.audio import AudioModality, LogMelSpace, WaveformSpace
from vmcli.errors import DataError
from vmcli.spectral import LogMel, griffin_lim
from vmcli.views import audio_views

M = AudioModality()


def tone(freq: float, seconds: float, rate: int, amp: float = 0.3, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def load(root: Path, **opts):
    index = scan(root, MODALITIES)
    assert index.modality == "audio"
    return M.load(root, index.items, LoadOptions(**opts))


def test_mixed_rates_and_channels_become_mono_fixed_length(tmp_path):
    sf.write(tmp_path / "a.wav", tone(440, 0.5, 8000), 8000)
    sf.write(tmp_path / "b.flac", tone(440, 1.0, 22050, channels=2), 22050)
    sf.write(tmp_path / "c.ogg", tone(440, 0.75, 44100), 44100)
    data = load(tmp_path)
    assert data.x.shape == (3, 1, 12000)  # median 0.75 s at 16 kHz
    assert data.meta == {"sample_rate": 16000, "clip_samples": 12000, "n_mels": 64}
    # the 0.5 s clip is zero-padded symmetrically; the 1 s clip centre-cropped
    a = data.x[[it.path.name for it in data.items].index("a.wav"), 0]
    assert a[:1900].abs().max() == 0 and a[2100:9900].abs().max() > 0.25
    data = load(tmp_path, sample_rate=8000, clip_seconds=0.25)
    assert data.x.shape == (3, 1, 2000)


def test_bad_audio_is_skipped_by_name(tmp_path, capsys):
    rate = 16000
    sf.write(tmp_path / "good.wav", tone(300, 0.5, rate), rate)
    sf.write(tmp_path / "good2.wav", tone(600, 0.5, rate), rate)
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), rate)  # header only
    sf.write(tmp_path / "silent.wav", np.zeros(8000, np.float32), rate)
    nan = tone(300, 0.5, rate)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, rate, subtype="FLOAT")
    whole = (tmp_path / "good.wav").read_bytes()
    (tmp_path / "truncated.wav").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "zero.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("RIFF but not really")
    sf.write(tmp_path / "long.wav", tone(300, 3.0, rate), rate)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    data = load(tmp_path, max_clip_seconds=2.0)
    assert sorted(it.path.name for it in data.items) == ["good.wav", "good2.wav"]
    reasons = {p.name: r for p, r in data.skipped}
    assert set(reasons) == {
        "empty.wav",
        "silent.wav",
        "nan.wav",
        "truncated.wav",
        "zero.wav",
        "text.wav",
        "long.wav",
    }
    assert "no audio samples" in reasons["empty.wav"]
    assert "silent" in reasons["silent.wav"]
    assert "NaN" in reasons["nan.wav"]
    assert "truncated" in reasons["truncated.wav"]
    assert "cut long recordings" in reasons["long.wav"]
    err = capsys.readouterr().err
    assert "truncated.wav" in err and "skipped 7" in err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("fmt", ["WAV", "W64", "RF64", "AIFF", "AU"])
def test_only_a_chunk_past_the_end_of_the_file_is_truncation(tmp_path, fmt):
    """libsndfile writes "(should be ...)" after any header field it finds inconsistent; a
    complete file whose byte rate field is wrong decodes fine and is kept. A copy cut in half
    (its chunk sizes run past the end of the file) is still skipped, in every container."""
    rate = 16000
    sf.write(tmp_path / "good.wav", tone(300, 0.5, rate), rate)
    wrong = bytearray((tmp_path / "good.wav").read_bytes())
    wrong[28:32] = struct.pack("<I", 16001)  # Bytes/sec: should be 32000
    (tmp_path / "byte_rate.wav").write_bytes(bytes(wrong))
    assert "(should be" in sf.info(str(tmp_path / "byte_rate.wav")).extra_info
    sf.write(tmp_path / "whole.bin", tone(600, 0.5, rate), rate, format=fmt)
    whole = (tmp_path / "whole.bin").read_bytes()
    (tmp_path / "whole.bin").unlink()
    (tmp_path / f"cut.{fmt.lower()}").write_bytes(whole[: len(whole) // 2])

    data = load(tmp_path)
    assert sorted(it.path.name for it in data.items) == ["byte_rate.wav", "good.wav"]
    assert [(p.name, "truncated" in r) for p, r in data.skipped] == [(f"cut.{fmt.lower()}", True)]
    kept = data.x[[it.path.name for it in data.items].index("byte_rate.wav"), 0]
    torch.testing.assert_close(kept, torch.from_numpy(tone(300, 0.5, rate)), atol=1e-4, rtol=0)


def test_nothing_usable_is_an_error(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(800, np.float32), 16000)
    with pytest.raises(DataError, match="none of the 1 audio files"):
        load(tmp_path)


def test_log_mel_puts_a_tone_in_the_right_band():
    mel = LogMel(16000, 64)
    for freq in (200.0, 1000.0, 5000.0):
        wav = torch.from_numpy(tone(freq, 0.5, 16000))[None, None]
        spec = mel(wav)[0, 0]  # 64 × frames
        assert spec.shape == (64, 51)
        band = int(spec.mean(1).argmax())
        centres = torch.linspace(0, 8000, 201) @ (mel.filters / mel.filters.sum(0))
        assert abs(float(centres[band]) - freq) / freq < 0.15


def test_spaces_round_trip_and_normalise():
    meta = {"sample_rate": 8000, "clip_samples": 4000, "n_mels": 32}
    raw = torch.randn(6, 1, 4000) * 0.1
    wave = WaveformSpace(meta)
    stats = wave.fit(raw)
    torch.testing.assert_close(wave.from_view(wave.to_view(raw)), raw)
    assert stats["wav_rms"] == pytest.approx(float(raw.square().mean().sqrt()), rel=1e-4)
    enc = wave.to_encoder(wave.to_view(raw))
    assert enc.shape == (6, 1, 32, 51)
    torch.testing.assert_close(enc.mean(dim=(0, 1, 3)), torch.zeros(32), atol=1e-3, rtol=0)
    spec = LogMelSpace(meta, stats)
    v = spec.to_view(raw)
    torch.testing.assert_close(v, enc)
    torch.testing.assert_close(spec.from_view(v), spec.frontend(raw), rtol=1e-5, atol=1e-4)


def test_audio_views_are_seeded_per_sample_and_keep_shape():
    x = torch.from_numpy(tone(440, 0.5, 8000))[None, None].repeat(4, 1, 1)
    a = audio_views(x, torch.Generator().manual_seed(0))
    b = audio_views(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert len({round(float(s), 4) for s in a.abs().sum(dim=(1, 2))}) == 4


def test_griffin_lim_sounds_like_the_target():
    mel = LogMel(8000, 32)
    wav = torch.from_numpy(tone(500, 0.5, 8000) + tone(1500, 0.5, 8000, amp=0.1))
    target = mel(wav[None, None])[0, 0]
    rebuilt = griffin_lim(target, mel, n_iter=16)
    assert rebuilt.shape[0] == mel.stft.hop * (target.shape[1] - 1)
    again = mel(rebuilt[None, None])[0, 0]
    corr = torch.corrcoef(torch.stack([target.flatten(), again.flatten()]))[0, 1]
    assert corr > 0.8
    same_peak = (target.argmax(0) == again.argmax(0)).float().mean()
    assert same_peak > 0.9  # the loudest band of (nearly) every frame is where it should be


def test_waveform_view_written_at_input_rate_channels_and_format(tmp_path):
    src = tmp_path / "in.flac"
    stereo = tone(440, 0.4, 22050, channels=2)
    sf.write(src, stereo, 22050, subtype="PCM_16")
    meta = {"sample_rate": 16000, "clip_samples": 8000, "n_mels": 64}
    sample = M.read_file(src, meta, LoadOptions())
    assert sample.raw.shape == (1, 1, 6400)
    delta = 0.01 * torch.sign(torch.randn(1, 1, 6400))
    dst = tmp_path / "out.flac"
    M.write_file(sample.raw + delta, sample, dst)
    info_in, info_out = sf.info(str(src)), sf.info(str(dst))
    assert (
        info_out.samplerate,
        info_out.channels,
        info_out.frames,
        info_out.format,
        info_out.subtype,
    ) == (info_in.samplerate, info_in.channels, info_in.frames, info_in.format, info_in.subtype)
    out, _ = sf.read(dst, dtype="float32")
    ref, _ = sf.read(src, dtype="float32")
    diff = out - ref
    assert np.allclose(diff[:, 0], diff[:, 1], atol=1e-4), "the same perturbation on both channels"
    assert 0.005 < np.abs(diff).mean() < 0.02


def test_augment_keeps_every_view_of_inputs_that_differ_only_in_extension(tmp_path):
    """Spectrogram views are .npy: c0.wav, c0.flac and c0.ogg would all be c0.npy. Each keeps
    its extension in the name instead (only those three), and the count is the files written."""
    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    data = tmp_path / "clips"
    data.mkdir()
    for i in range(4):
        sf.write(data / f"c{i}.wav", tone(200 + 100 * i, 0.3, 16000), 16000)
    sf.write(data / "c0.flac", tone(999, 0.3, 16000), 16000)
    sf.write(data / "c0.ogg", tone(1500, 0.3, 16000), 16000)
    summary = train(
        fast_config(data, view_space="spectrogram"), out=tmp_path / "runs", progress=False
    )
    out = tmp_path / "views"
    result = augment_folder(
        data,
        out,
        Path(summary["run"]),
        views_per_input=2,
        device="cpu",
        to_wav=True,
        progress=False,
    )
    stems = [f"{s}_view{k}" for s in ("c1", "c2", "c3") for k in (0, 1)]
    stems += [f"c0_view{k}.{ext}" for ext in ("wav", "flac", "ogg") for k in (0, 1)]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}.npy" for s in stems] + [f"{s}.wav" for s in stems]
    )
    assert result["views_written"] == 12 == len(list(out.glob("*.npy")))
    assert result["kept_extension"] == ["c0.flac", "c0.ogg", "c0.wav"]
    views = [np.load(out / f"c0_view0.{ext}.npy") for ext in ("wav", "flac", "ogg")]
    peaks = [int(v.mean(axis=1).argmax()) for v in views]  # each is its own tone's view
    assert len(set(peaks)) == 3


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "ULAW"), ("WAV", "FLOAT")])
def test_a_view_past_full_scale_is_clipped_and_said_where_the_format_cannot_hold_it(
    tmp_path, fmt, subtype
):
    """A loud input plus δ goes past ±1: integer and companded formats hold ±1 at most (and
    libsndfile wraps rather than clips), so those samples are clipped, with a note that
    `vm augment` turns into a warning with a count; a float file keeps them."""
    from vmcli.data.audio import CLIPPED_NOTE

    src = tmp_path / "loud.wav"
    sf.write(src, tone(440, 0.25, 8000, amp=0.999), 8000, format=fmt, subtype=subtype)
    meta = {"sample_rate": 8000, "clip_samples": 2000, "n_mels": 64}
    sample = M.read_file(src, meta, LoadOptions())
    dst = tmp_path / "out.wav"
    M.write_file(sample.raw + 0.05 * torch.sign(sample.raw), sample, dst)  # pushed outwards
    out, _ = sf.read(dst, dtype="float32")
    ref, _ = sf.read(src, dtype="float32")
    if subtype == "FLOAT":
        assert np.abs(out).max() > 1.0
        assert "notes" not in sample.context
    else:
        assert np.abs(out).max() <= 1.0
        assert (np.sign(out) == np.sign(ref))[np.abs(ref) > 0.5].all()  # clipped, not wrapped
        assert sample.context["notes"] == [CLIPPED_NOTE]


def test_spectrogram_views_are_written_as_log_mel_power_within_the_budget(tmp_path):
    """The .npy views are "natural log of mel power" (README), not the z-scores the viewmaker
    works in: they were written z-scored, and `--to-wav` inverted those as if log power.
    Undoing the run's per-band normalisation, a view is its input's log-mel plus a δ of mean
    |δ| = ε in z-score units (the L1 sphere), exactly."""
    import json

    from conftest import fast_config

    from vmcli.augment import augment_folder
    from vmcli.session import train

    data = tmp_path / "clips"
    data.mkdir()
    for i in range(8):
        sf.write(data / f"c{i}.wav", tone(200 + 90 * i, 0.5, 8000, amp=0.1 + 0.05 * i), 8000)
    summary = train(
        fast_config(data, view_space="spectrogram", views="viewmaker", budget=0.05),
        out=tmp_path / "runs",
        progress=False,
    )
    run = Path(summary["run"])
    out = tmp_path / "views"
    augment_folder(data, out, run, device="cpu", progress=False)
    config = json.loads((run / "config.json").read_text())
    stats, meta = config["space_stats"], config["data_meta"]
    mean = torch.tensor(stats["mel_mean"]).view(-1, 1)
    std = torch.tensor(stats["mel_std"]).view(-1, 1)
    for i in (0, 5):
        sample = M.read_file(data / f"c{i}.wav", meta, LoadOptions())
        log_mel = LogMel(int(meta["sample_rate"]), int(meta["n_mels"]))(sample.raw)[0, 0]
        view = torch.from_numpy(np.load(out / f"c{i}.npy"))
        assert view.shape == log_mel.shape
        assert float(((view - log_mel) / std).abs().mean()) == pytest.approx(0.05, rel=1e-3)
        assert float((view - mean).abs().mean()) > 1.0  # not z-scores around 0


@pytest.fixture(scope="module")
def spectrogram_run(tmp_path_factory) -> tuple[Path, Path]:
    """Six 8 kHz tones and a spectrogram run trained on them (once for the module)."""
    from conftest import fast_config

    from vmcli.config import LoadOptions as Load
    from vmcli.session import train

    root = tmp_path_factory.mktemp("audio_run")
    data = root / "clips"
    data.mkdir()
    for i in range(6):
        sf.write(data / f"c{i}.wav", tone(200 + 150 * i, 0.5, 8000), 8000)
    cfg = fast_config(data, view_space="spectrogram", load=Load(sample_rate=8000, clip_seconds=0.5))
    summary = train(cfg, out=root / "runs", progress=False)
    return data, Path(summary["run"])


def with_good_clips(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        sf.write(folder / f"ok{i}.wav", tone(300 + 200 * i, 0.5, 8000), 8000)
    return folder


def skipped_in_training_and_augment(
    folder: Path, out: Path, run: Path, name: str, reason: str
) -> dict:
    """`name` is the one file training skips (for `reason`) beside ok0/ok1, and vm augment
    writes the views of the others only; returns augment's result."""
    data = load(folder, sample_rate=8000, clip_seconds=0.5)
    assert sorted(it.path.name for it in data.items) == ["ok0.wav", "ok1.wav"]
    [(path, why)] = data.skipped
    assert path.name == name and reason in why
    result = augment(folder, out, run)
    assert sorted(p.name for p in out.iterdir()) == ["ok0.npy", "ok1.npy"]
    return result


def augment(src: Path, out: Path, run: Path, **kw) -> dict:
    from vmcli.augment import augment_folder

    return augment_folder(src, out, run, device="cpu", progress=False, **kw)


def test_a_clip_shorter_than_one_sample_at_the_run_rate_is_skipped_by_name(
    spectrogram_run, tmp_path
):
    """3 samples at 192 kHz are 0 samples at 8 kHz: skipped by name, in training (it was kept
    as a silent clip) and in vm augment (it aborted the folder with an error naming no file)."""
    folder = with_good_clips(tmp_path / "in")
    sf.write(folder / "blip.wav", np.array([0.5, -0.5, 0.5], np.float32), 192_000)
    result = skipped_in_training_and_augment(
        folder,
        tmp_path / "out",
        spectrogram_run[1],
        "blip.wav",
        "shorter than one sample at 8000 Hz",
    )
    assert result["views_written"] == 2
    [(name, reason)] = result["skipped"]
    assert name == "blip.wav" and "blip.wav" in reason and "shorter than one sample" in reason


def test_a_file_its_views_cannot_be_made_of_is_skipped_by_name(
    spectrogram_run, tmp_path, monkeypatch
):
    """A file that reads but that the run refuses (here: one read as 0 samples) is skipped by
    name like a file that cannot be read; the other files' views are written."""
    from vmcli.data.audio import AudioModality

    read = AudioModality.read_file

    def read_empty(self, path, meta, options):
        sample = read(self, path, meta, options)
        if path.name == "ok1.wav":
            sample.raw = sample.raw[..., :0]
        return sample

    monkeypatch.setattr(AudioModality, "read_file", read_empty)
    folder = with_good_clips(tmp_path / "in", 3)
    result = augment(folder, tmp_path / "out", spectrogram_run[1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.npy", "ok2.npy"]
    assert result["views_written"] == 2
    [(name, reason)] = result["skipped"]
    assert name == "ok1.wav" and reason.startswith(str(folder / "ok1.wav")) and "size 0" in reason


def test_a_file_whose_later_view_fails_leaves_none_of_its_views(
    spectrogram_run, tmp_path, monkeypatch
):
    """Views are written as they are made (holding every view of a big file cost memory the
    out-of-memory advice said it did not); when view 2 of a file fails, its views 0 and 1
    (and their approximate WAVs) are removed: the file is skipped whole."""
    import vmcli.augment as A
    from vmcli.errors import DataError

    real = A._make_view

    def failing(augmenter, raw, planes, seed, rel, k):
        if rel.name == "ok1.wav" and k == 2:
            raise DataError("its view 2 has NaN or infinite values (an overflow); not written")
        return real(augmenter, raw, planes, seed, rel, k)

    monkeypatch.setattr(A, "_make_view", failing)
    folder = with_good_clips(tmp_path / "in", 3)
    result = augment(folder, tmp_path / "out", spectrogram_run[1], views_per_input=3, to_wav=True)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(
        f"ok{i}_view{k}.{e}" for i in (0, 2) for k in range(3) for e in ("npy", "wav")
    )
    assert result["views_written"] == 6
    [(name, reason)] = result["skipped"]
    assert name == "ok1.wav" and reason.startswith(str(folder / "ok1.wav"))


def test_samples_too_loud_for_a_float32_spectrogram_are_skipped_by_name(spectrogram_run, tmp_path):
    """Finite float samples of 1e18 overflow float32 spectrogram power: training crashed and
    vm augment wrote an all-NaN view. They are skipped by name like NaN samples; the limit
    (1e12) keeps the power of the longest window and the RMS of a whole file finite."""
    folder = with_good_clips(tmp_path / "in")
    sf.write(folder / "loud.wav", tone(440, 0.5, 8000, amp=1e18), 8000, subtype="FLOAT")
    result = skipped_in_training_and_augment(
        folder, tmp_path / "out", spectrogram_run[1], "loud.wav", "1e+18"
    )
    assert [name for name, _ in result["skipped"]] == ["loud.wav"]
    for path in (tmp_path / "out").iterdir():
        assert np.isfinite(np.load(path)).all()

    # at the limit, the largest window (768 kHz: 19,200 samples) stays finite, at 0 Hz and at
    # Nyquist; so does the sum of squares of 10 minutes at that rate
    from vmcli.data.audio import MAX_PEAK

    rate = 768_000
    mel = LogMel(rate, 64)
    flat = torch.full((1, 1, rate // 20), MAX_PEAK)
    alternating = flat * torch.tensor([1.0, -1.0]).repeat(rate // 40)
    for loudest in (flat, alternating):
        assert torch.isfinite(mel(loudest)).all()
    assert MAX_PEAK**2 * 600 * rate < torch.finfo(torch.float32).max / 1e5


def test_vm_augment_never_writes_a_view_that_is_not_finite(spectrogram_run, tmp_path, monkeypatch):
    """Should a file still overflow the view (here: the loudness limit lifted), it is skipped
    by name rather than written as NaN."""
    import vmcli.data.audio as audio

    monkeypatch.setattr(audio, "MAX_PEAK", float("inf"), raising=False)
    folder = with_good_clips(tmp_path / "in")
    sf.write(folder / "loud.wav", tone(440, 0.5, 8000, amp=1e18), 8000, subtype="FLOAT")
    result = augment(folder, tmp_path / "out", spectrogram_run[1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ok0.npy", "ok1.npy"]
    [(name, reason)] = result["skipped"]
    assert name == "loud.wav" and "NaN" in reason


@pytest.mark.parametrize("n", [1, 50, 79, 80, 90, 101, 170, 250])
def test_griffin_lim_of_a_clip_of_one_or_two_frames_has_the_clip_length(n):
    """A clip of under 2 hops has 1 or 2 frames: hop × (frames − 1) samples were 0 or fewer
    than the STFT's reflect padding needs (a crash). Given the clip's length, it comes back."""
    mel = LogMel(8000, 64)
    wav = torch.from_numpy(np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32))
    target = mel(wav[None, None])[0, 0]
    rebuilt = griffin_lim(target, mel, n_iter=4, length=n)
    assert rebuilt.shape == (n,) and torch.isfinite(rebuilt).all()
    if n >= 50:  # as loud as it should be, roughly
        assert 0.05 < float(rebuilt.abs().max()) < 5


def test_to_wav_writes_an_approximate_wav_of_every_short_clip(spectrogram_run, tmp_path):
    """vm augment --to-wav crashed on clips of 1 to ~100 samples, and wrote nothing for the
    folder; each gets its .npy and an approximate WAV of its own length."""
    folder = with_good_clips(tmp_path / "in")
    lengths = {"one": 1, "fifty": 50, "ninety": 90}
    for name, n in lengths.items():
        noise = np.random.default_rng(n).uniform(-0.5, 0.5, n).astype(np.float32)
        sf.write(folder / f"{name}.wav", noise, 8000)
    result = augment(folder, tmp_path / "out", spectrogram_run[1], to_wav=True)
    assert result["skipped"] == [] and result["views_written"] == 5
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stems = ["fifty", "ninety", "ok0", "ok1", "one"]
    assert names == sorted([f"{s}.npy" for s in stems] + [f"{s}.wav" for s in stems])
    for name, n in {**lengths, "ok0": 4000}.items():
        wav, rate = sf.read(tmp_path / "out" / f"{name}.wav", dtype="float32")
        assert rate == 8000 and len(wav) == n and np.isfinite(wav).all()
        assert np.load(tmp_path / "out" / f"{name}.npy").shape == (64, 1 + n // 80)


def test_to_wav_names_are_planned_with_the_views(spectrogram_run, tmp_path):
    """x.flac's approximate WAV, x.wav, is the name of the folder x.wav/ that another input's
    views go to: a FileExistsError half-way, nothing written. The plan counts the WAVs, so
    x.flac keeps its extension (x.flac.npy, x.flac.wav); the folder's views are unaffected."""
    from vmcli.augment import plan_outputs

    folder = tmp_path / "in"
    (folder / "x.wav").mkdir(parents=True)
    sf.write(folder / "x.flac", tone(300, 0.5, 8000), 8000)
    sf.write(folder / "x.wav" / "y.wav", tone(900, 0.5, 8000), 8000)

    def outputs(out: Path) -> list[str]:
        return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())

    result = augment(folder, tmp_path / "out", spectrogram_run[1], to_wav=True)
    assert outputs(tmp_path / "out") == ["x.flac.npy", "x.flac.wav", "x.wav/y.npy", "x.wav/y.wav"]
    assert result["kept_extension"] == ["x.flac"] and result["views_written"] == 2
    # without --to-wav nothing clashes: the short names
    result = augment(folder, tmp_path / "out2", spectrogram_run[1])
    assert outputs(tmp_path / "out2") == ["x.npy", "x.wav/y.npy"]
    assert result["kept_extension"] == []
    # several views: every view's WAV is planned too
    rels = [Path("x.flac"), Path("x_view0.wav/y.wav")]
    plan, kept = plan_outputs(M, rels, "spectrogram", 2, to_wav=True)
    assert kept == [Path("x.flac")] and plan[(Path("x.flac"), 0)] == Path("x_view0.flac.npy")
