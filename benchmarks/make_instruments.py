"""Render a labelled instrument-family audio dataset from a General-MIDI SoundFont.

Every melodic General-MIDI program (0..127) is played one note at a time, offline, with the
PyPI package ``tinysoundfont`` (no audio device is opened) and written as a mono clip. The label
is the GM instrument family (16 families of 8 consecutive programs).

Usage::

    sudo apt-get install fluid-soundfont-gm          # FluidR3_GM.sf2, MIT licence
    pip install tinysoundfont                        # MIT licence
    python benchmarks/make_instruments.py --out benchmarks/data/instruments
    python benchmarks/make_instruments.py --out examples/instruments --small

Full set (defaults): 128 programs x 13 pitches (MIDI notes 48..72 step 2, i.e. C3..C5 in
whole tones) x 2 velocities (64, 112), each clip ``--seconds`` 1.0 long at 16 kHz mono, 16-bit
WAV. The note is switched on at t=0 and off at 80 % of the clip (0.8 s); the release tail that
follows stays inside the clip and the last 50 ms get a half-cosine fade-out, so every clip ends
in silence even for pads with long releases. Audio is rendered at ``--render-rate`` (48 kHz)
and resampled with soxr, which avoids the aliasing of rendering directly at 16 kHz; stereo is
downmixed to mono by averaging. One fixed synth gain (-6 dB) is used for all clips (no per-clip
normalisation, so the velocity layers keep their loudness difference); the few samples that
would still exceed full scale are clipped and counted.

FluidR3_GM has no samples above MIDI note 57 for program 43 (Contrabass), so its 8 notes
58..72 render as silence: clips whose peak is below 1e-4 are skipped and listed. (The spread
``--pitches 33:57:2`` sounds for every program, at the cost of pushing treble instruments far
below their natural range.)

Split by program, since the notes of one program are near duplicates: within each family the
programs at family offsets 2 and 6 (e.g. 2 Electric Grand Piano, 6 Harpsichord) go to test/,
the other six to train/. With ``--programs-per-family-test K`` the test offsets are
``round(2 + i * 8 / K) % 8`` for i < K.

Layout: OUT/{train,test}/<family>/p<program:03d>_n<note>_v<velocity>.wav

``--small`` writes the tiny subset kept in the repository: the 8 families piano, organ,
guitar, bass, strings, brass, reed, pipe; per family 1 test program (offset 2) and 3 train
programs (offsets 0, 1, 3); pitches 48, 52, 56; velocity 112; 0.5 s clips (note-off at 0.4 s);
FLAC.

Licences: FluidR3_GM.sf2 by Frank Wen, MIT licence (Debian package fluid-soundfont-gm);
tinysoundfont (pip) MIT licence. The rendered clips are derived from the SoundFont and can be
redistributed under its MIT licence.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

DEFAULT_SF2 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
FAMILIES = [
    "piano",
    "chromatic_percussion",
    "organ",
    "guitar",
    "bass",
    "strings",
    "ensemble",
    "brass",
    "reed",
    "pipe",
    "synth_lead",
    "synth_pad",
    "synth_effects",
    "ethnic",
    "percussive",
    "sound_effects",
]
SMALL_FAMILIES = ["piano", "organ", "guitar", "bass", "strings", "brass", "reed", "pipe"]
DEFAULT_PITCHES = list(range(48, 73, 2))  # 13 notes, C3..C5
DEFAULT_VELOCITIES = [64, 112]
SMALL_PITCHES = [48, 52, 56]
SMALL_VELOCITIES = [112]
SILENCE_PEAK = 1e-4
SYNTH_GAIN_DB = -6.0
FADE_SECONDS = 0.05
NOTE_OFF_FRACTION = 0.8
FLUSH_SECONDS = 0.1


def parse_ints(text: str) -> list[int]:
    """Parse ``"48,55,60"`` or a range ``"48:72:2"`` (inclusive end) into a list of ints."""
    if ":" in text:
        parts = [int(p) for p in text.split(":")]
        if len(parts) not in (2, 3):
            raise argparse.ArgumentTypeError(f"expected START:END[:STEP], got {text!r}")
        step = parts[2] if len(parts) == 3 else 1
        return list(range(parts[0], parts[1] + 1, step))
    return [int(p) for p in text.split(",") if p.strip()]


def test_offsets(k: int) -> list[int]:
    """Family offsets (0..7) of the programs held out for test; k=2 gives [2, 6]."""
    return sorted({round(2 + i * 8 / k) % 8 for i in range(k)}) if k > 0 else []


class Renderer:
    """Offline note renderer around one tinysoundfont.Synth (never starts audio playback)."""

    def __init__(self, sf2: Path, render_rate: int, sample_rate: int) -> None:
        import tinysoundfont

        self.synth = tinysoundfont.Synth(gain=SYNTH_GAIN_DB, samplerate=render_rate)
        self.sfid = self.synth.sfload(str(sf2))
        self.render_rate = render_rate
        self.sample_rate = sample_rate

    def preset_name(self, program: int) -> str:
        return self.synth.sfpreset_name(self.sfid, 0, program) or "?"

    def render(self, program: int, note: int, velocity: int, seconds: float) -> np.ndarray:
        """One mono float32 clip of ``seconds`` at ``sample_rate``: note-on at 0, off at 80 %."""
        s = self.synth
        s.sounds_off()  # quick release (~20 ms) of anything still sounding, then flush it
        s.generate(int(FLUSH_SECONDS * self.render_rate))
        s.program_select(0, self.sfid, 0, program)
        total = int(round(seconds * self.render_rate))
        on = int(round(seconds * NOTE_OFF_FRACTION * self.render_rate))
        s.noteon(0, note, velocity)
        held = np.frombuffer(s.generate(on), dtype=np.float32)
        s.noteoff(0, note)
        tail = np.frombuffer(s.generate(total - on), dtype=np.float32)
        stereo = np.concatenate([held, tail]).reshape(-1, 2)
        mono = stereo.mean(axis=1, dtype=np.float64)
        if self.render_rate != self.sample_rate:
            mono = soxr.resample(mono, self.render_rate, self.sample_rate, quality="HQ")
        n = int(round(seconds * self.sample_rate))
        mono = np.pad(mono[:n], (0, max(0, n - len(mono))))
        fade = min(n, int(round(FADE_SECONDS * self.sample_rate)))
        if fade > 0:
            mono[n - fade :] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, fade)))
        return mono.astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (gets train/ and test/)")
    p.add_argument(
        "--sf2", type=Path, default=DEFAULT_SF2, help=f"SoundFont (default {DEFAULT_SF2})"
    )
    p.add_argument(
        "--sample-rate", type=int, default=16000, help="output sample rate (default 16000)"
    )
    p.add_argument(
        "--render-rate",
        type=int,
        default=48000,
        help="synth rate before resampling (default 48000)",
    )
    p.add_argument(
        "--seconds", type=float, default=None, help="clip length (default 1.0; 0.5 with --small)"
    )
    p.add_argument(
        "--pitches", type=parse_ints, default=None, help="MIDI notes, '48:72:2' or '48,60,72'"
    )
    p.add_argument("--velocities", type=parse_ints, default=None, help="velocities, e.g. '64,112'")
    p.add_argument(
        "--programs-per-family-test",
        type=int,
        default=None,
        help="test programs per family (default 2; 1 with --small)",
    )
    p.add_argument(
        "--format", choices=["wav", "flac"], default=None, help="default wav; flac with --small"
    )
    p.add_argument(
        "--small", action="store_true", help="tiny subset for the repository's examples/"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete existing OUT/train and OUT/test first"
    )
    a = p.parse_args()

    seconds = a.seconds if a.seconds is not None else (0.5 if a.small else 1.0)
    pitches = a.pitches or (SMALL_PITCHES if a.small else DEFAULT_PITCHES)
    velocities = a.velocities or (SMALL_VELOCITIES if a.small else DEFAULT_VELOCITIES)
    k_test = a.programs_per_family_test
    if k_test is None:
        k_test = 1 if a.small else 2
    if not 0 <= k_test < 8:
        p.error("--programs-per-family-test must be in 0..7")
    fmt = a.format or ("flac" if a.small else "wav")
    families = SMALL_FAMILIES if a.small else FAMILIES
    offsets_test = test_offsets(k_test)
    offsets_train = [o for o in range(8) if o not in offsets_test]
    if a.small:
        offsets_train = offsets_train[:3]
    if not all(0 <= n <= 127 for n in pitches) or not all(1 <= v <= 127 for v in velocities):
        p.error("pitches must be in 0..127 and velocities in 1..127")
    if not a.sf2.is_file():
        raise SystemExit(
            f"{a.sf2}: SoundFont not found; install it with: sudo apt-get install fluid-soundfont-gm"
        )
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        raise SystemExit(
            "tinysoundfont is missing; install it with: pip install tinysoundfont"
        ) from None

    for split in ("train", "test"):
        d = a.out / split
        if d.exists() and any(d.iterdir()):
            if not a.overwrite:
                raise SystemExit(f"{d} is not empty; pass --overwrite to replace it")
            shutil.rmtree(d)

    t0 = time.perf_counter()
    r = Renderer(a.sf2, a.render_rate, a.sample_rate)
    subtype = "PCM_16"
    counts: dict[str, Counter[str]] = {"train": Counter(), "test": Counter()}
    programs: dict[str, int] = Counter()
    skipped: list[str] = []
    clipped = 0
    print(f"pitches {pitches}, velocities {velocities}, {seconds:g} s at {a.sample_rate} Hz, {fmt}")
    print(f"test programs at family offsets {offsets_test}, train at {offsets_train}")
    for fam_index, family in enumerate(FAMILIES):
        if family not in families:
            continue
        for offset in offsets_test + offsets_train:
            program = fam_index * 8 + offset
            split = "test" if offset in offsets_test else "train"
            folder = a.out / split / family
            folder.mkdir(parents=True, exist_ok=True)
            programs[split] += 1
            for note in pitches:
                for velocity in velocities:
                    clip = r.render(program, note, velocity, seconds)
                    peak = float(np.abs(clip).max())
                    name = f"p{program:03d}_n{note}_v{velocity}"
                    if peak < SILENCE_PEAK:
                        skipped.append(
                            f"{split}/{family}/{name} ({r.preset_name(program)}, peak {peak:.1e})"
                        )
                        continue
                    if peak > 1.0:
                        clipped += 1
                        clip = np.clip(clip, -1.0, 1.0)
                    sf.write(
                        folder / f"{name}.{fmt}",
                        clip,
                        a.sample_rate,
                        subtype=subtype,
                        format=fmt.upper(),
                    )
                    counts[split][family] += 1
    elapsed = time.perf_counter() - t0

    for split in ("train", "test"):
        c = counts[split]
        print(
            f"{split}: {sum(c.values())} clips from {programs[split]} programs in {len(c)} families → {a.out / split}"
        )
        print("   " + ", ".join(f"{f} {n}" for f, n in c.items()))
    if skipped:
        print(f"skipped {len(skipped)} silent notes (peak < {SILENCE_PEAK:g}):")
        for s in skipped:
            print(f"   {s}")
    if clipped:
        print(f"{clipped} clips exceeded full scale and were clipped", file=sys.stderr)
    print(f"done in {elapsed:.1f} s")


if __name__ == "__main__":
    main()
