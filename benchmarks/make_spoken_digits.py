"""Synthesise a spoken-digit dataset (ten classes, "zero" … "nine") with eSpeak NG.

Speech is where learned views were reported to help most, and no speech corpus can be
downloaded here, so this script makes one from a Debian package: each *speaker* is an English
accent of eSpeak NG combined with one of its voice variants (formant sets such as ``m3``,
``f2``, ``klatt4``, ``croak``), and says every digit once at a random rate and pitch. Speakers
are split by **variant**: the variants used for test/ never occur in train/, so the test set is
new voices, as a held-out-speaker split would be.

Usage::

    sudo apt-get install espeak-ng                   # GPL-3, Debian package
    python benchmarks/make_spoken_digits.py --out benchmarks/data/digits

Defaults: the 7 English accents below × every installed variant (about 100; a fixed quarter of
them, chosen by a seeded shuffle, go to test/), one clip per digit per speaker, rate 130–210
words/min and pitch 25–75 (eSpeak's 0–99 scale) drawn per clip. eSpeak writes 22,050 Hz; clips
are resampled with soxr to ``--sample-rate`` (16 kHz), trimmed of leading and trailing silence
(below 1 % of the peak), peak-normalised to 0.5, placed at a random start in the first 100 ms
and zero-padded to ``--seconds`` (1.0 s); the few words longer than that are cut and counted.

Layout: OUT/{train,test}/<digit>/<accent>_<variant>.wav (16-bit mono WAV), the layout
``vm train`` reads (labels from folder names, splits from train/ and test/).

The clips are synthetic speech: clean, one word each, with the variety of a formant
synthesiser rather than of people. They are a stand-in to rank view families on speech, not a
replacement for a real corpus.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
ACCENTS = [
    "en",
    "en-us",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
]
VOICE_DIRS = [
    Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v"),
    Path("/usr/lib/aarch64-linux-gnu/espeak-ng-data/voices/!v"),
    Path("/usr/share/espeak-ng-data/voices/!v"),
]


def variants() -> list[str]:
    """The installed eSpeak NG voice variants (file names), sorted."""
    for d in VOICE_DIRS:
        if d.is_dir():
            return sorted(p.name for p in d.iterdir() if p.is_file() and " " not in p.name)
    sys.exit("no eSpeak NG voice variants found: sudo apt-get install espeak-ng")


def speak(word: str, accent: str, variant: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
    """One word as float samples and eSpeak's sample rate."""
    wav = subprocess.run(
        [
            "espeak-ng",
            "-v",
            f"{accent}+{variant}",
            "-s",
            str(rate),
            "-p",
            str(pitch),
            "--stdout",
            word,
        ],
        check=True,
        capture_output=True,
    ).stdout
    data, rate_hz = sf.read(io.BytesIO(wav), dtype="float32")
    return (data if data.ndim == 1 else data.mean(axis=1)), rate_hz


def to_clip(x: np.ndarray, rate_in: int, rate: int, seconds: float, rng: random.Random):
    """Resample, trim silence, normalise, place in a fixed-length clip. (clip, was_cut)."""
    x = soxr.resample(x, rate_in, rate)
    loud = np.flatnonzero(np.abs(x) > 0.01 * np.abs(x).max())
    x = x[loud[0] : loud[-1] + 1] if len(loud) else x
    x = 0.5 * x / max(float(np.abs(x).max()), 1e-9)
    n = int(round(seconds * rate))
    start = rng.randrange(0, int(0.1 * rate))
    clip = np.zeros(n, dtype=np.float32)
    take = min(len(x), n - start)
    clip[start : start + take] = x[:take]
    return clip, take < len(x)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (gets train/ and test/)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--seconds", type=float, default=1.0)
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of variants in test/")
    p.add_argument("--max-variants", type=int, default=0, help="use at most this many (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    args = p.parse_args()
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed: sudo apt-get install espeak-ng")
    if args.out.exists() and not args.overwrite:
        sys.exit(f"{args.out} exists; pass --overwrite to replace it")

    rng = random.Random(args.seed)
    names = variants()
    rng.shuffle(names)
    if args.max_variants:
        names = names[: args.max_variants]
    n_test = max(1, round(args.test_fraction * len(names)))
    split = {v: ("test" if i < n_test else "train") for i, v in enumerate(names)}
    tmp = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "test": 0}
    cut = 0
    for variant in sorted(names):
        for accent in ACCENTS:
            for digit in DIGITS:
                x, rate_in = speak(
                    digit, accent, variant, rng.randint(130, 210), rng.randint(25, 75)
                )
                clip, was_cut = to_clip(x, rate_in, args.sample_rate, args.seconds, rng)
                cut += was_cut
                path = tmp / split[variant] / digit / f"{accent}_{variant}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, clip, args.sample_rate, subtype="PCM_16")
                counts[split[variant]] += 1
    # all or nothing: a failed run leaves OUT as it was, never half-written or gone
    shutil.rmtree(args.out, ignore_errors=True)
    tmp.rename(args.out)
    print(
        f"wrote {args.out}: train {counts['train']} clips ({len(names) - n_test} variants), "
        f"test {counts['test']} clips ({n_test} variants) × {len(ACCENTS)} accents; "
        f"{cut} words longer than {args.seconds} s were cut"
    )


if __name__ == "__main__":
    main()
