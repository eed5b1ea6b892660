"""Cut seglearn's smartwatch IMU dataset into labelled CSV windows (sensor-modality benchmark).

Source: ``seglearn/data/watch_dataset.npy`` from the PyPI package seglearn (BSD licence; data
by David Burns et al., "Shoulder physiotherapy exercise recognition: machine learning the
inertial signals from a smartwatch", https://arxiv.org/abs/1802.01489). 140 recordings of 10
subjects doing 7 shoulder exercises (2 recordings per subject and exercise, one per arm), 6-axis
IMU at 50 Hz: accelerometer ax, ay, az and gyroscope wx, wy, wz. The CSV columns follow the
file's X_labels order, which the script checks is exactly ax, ay, az, wx, wy, wz.

Usage::

    pip download --no-deps -d /tmp/seg seglearn && cd /tmp/seg && python -m zipfile -e seglearn-*.whl x
    python benchmarks/make_watch_windows.py --source /tmp/seg/x/seglearn/data/watch_dataset.npy \\
        --out benchmarks/data/watch
    python benchmarks/make_watch_windows.py --out examples/watch --small     # seglearn installed
    python benchmarks/make_watch_windows.py --out /tmp/watch_long --long     # whole recordings

Without ``--source`` the file is looked up in an installed seglearn (found with
importlib.util.find_spec, without importing it): ``pip install --no-deps seglearn``.

Windows: ``--window`` 128 samples (2.56 s) every ``--hop`` 64 samples; a recording's trailing
samples that do not fill a window are dropped. Values are written with 6 decimals, as stored.
Classes (y_labels, lowercased): pen (pendulum), abd (abduction), fel (forward elevation),
ir (internal rotation), er (external rotation), trap (trapezius extension), row (upright row).

Split by subject: subjects 8, 9 and 10 (the three highest ids) are test, subjects 1..7 train.

Layout: OUT/{train,test}/<class>/s<subject:02d>_r<recording:03d>_w<window:03d>.csv, where
recording is the index (0..139) in the source file. ``--long`` writes one CSV per whole
recording instead: OUT/{train,test}/<class>/s<subject:02d>_r<recording:03d>.csv.

``--small`` writes the subset kept in the repository: all 7 classes, train subjects 1 and 2 and
test subject 8, only the first recording of each (subject, class) in file order, windows of
128 with hop 128, at most 4 windows per recording.

Unless ``--no-baseline``, prints test accuracy of two multinomial logistic regressions (torch
LBFGS, L2 1e-3, trained on the train windows, standardised with train statistics): (a) raw
flattened windows (128 x 6 = 768 inputs), (b) per-channel mean/std/min/max (24 inputs).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

COLUMNS = ["ax", "ay", "az", "wx", "wy", "wz"]
TEST_SUBJECTS = (8, 9, 10)
SMALL_TRAIN_SUBJECTS = (1, 2)
SMALL_TEST_SUBJECTS = (8,)
SMALL_MAX_WINDOWS = 4


def load_source(path: Path) -> dict:
    """The seglearn dict from watch_dataset.npy, or from a compact .npz made by `pack_source`
    (float32, no pickle: small enough to carry to a machine without seglearn)."""
    if path.suffix == ".npz":
        z = np.load(path)
        cuts = np.cumsum(z["lengths"])[:-1]
        return {
            "X": np.split(z["X"].astype(np.float64), cuts),
            "y": z["y"],
            "subject": z["subject"],
            "y_labels": [str(v) for v in z["y_labels"]],
            "X_labels": [str(v) for v in z["X_labels"]],
        }
    return np.load(path, allow_pickle=True).item()


def pack_source(src: Path, dst: Path) -> None:
    """Write the compact .npz form of watch_dataset.npy."""
    d = np.load(src, allow_pickle=True).item()
    np.savez_compressed(
        dst,
        X=np.concatenate([np.asarray(x, dtype=np.float32) for x in d["X"]]),
        lengths=np.array([len(x) for x in d["X"]]),
        y=np.asarray(d["y"]),
        subject=np.asarray(d["subject"]),
        y_labels=np.array([str(v) for v in d["y_labels"]]),
        X_labels=np.array([str(v) for v in d["X_labels"]]),
    )


def find_source() -> Path:
    """watch_dataset.npy inside an installed seglearn, located without importing the package."""
    spec = importlib.util.find_spec("seglearn")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            path = Path(loc) / "data" / "watch_dataset.npy"
            if path.is_file():
                return path
    raise SystemExit(
        "watch_dataset.npy not found: pass --source PATH/watch_dataset.npy or install the package "
        "that ships it with: pip install --no-deps seglearn"
    )


def sanitise(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def windows(x: np.ndarray, size: int, hop: int) -> np.ndarray:
    """(n, size, channels) windows of a (T, channels) recording; a short tail is dropped."""
    n = 0 if len(x) < size else 1 + (len(x) - size) // hop
    return (
        np.stack([x[i * hop : i * hop + size] for i in range(n)])
        if n
        else np.empty((0, size, x.shape[1]))
    )


def write_csv(path: Path, x: np.ndarray) -> None:
    np.savetxt(path, x, fmt="%.6f", delimiter=",", header=",".join(COLUMNS), comments="")


def features(w: np.ndarray) -> np.ndarray:
    """Per-channel mean, std, min, max of (n, T, C) windows → (n, 4C)."""
    return np.concatenate([w.mean(1), w.std(1), w.min(1), w.max(1)], axis=1)


def logreg_accuracy(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, l2: float = 1e-3
) -> float:
    """Multinomial logistic regression (torch LBFGS, float64, zero init); test accuracy."""
    import torch

    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    a = torch.tensor((xtr - mu) / sd, dtype=torch.float64)
    b = torch.tensor((xte - mu) / sd, dtype=torch.float64)
    y = torch.tensor(ytr, dtype=torch.long)
    k = int(max(ytr.max(), yte.max())) + 1
    w = torch.zeros(a.shape[1], k, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, c],
        lr=1.0,
        max_iter=1000,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ w + c, y) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + c).argmax(1).numpy() == yte).mean())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (gets train/ and test/)")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="watch_dataset.npy (default: from installed seglearn)",
    )
    p.add_argument("--window", type=int, default=128, help="window length in samples (default 128)")
    p.add_argument(
        "--hop", type=int, default=None, help="hop in samples (default 64; 128 with --small)"
    )
    p.add_argument(
        "--test-subjects",
        type=lambda s: tuple(int(v) for v in s.split(",")),
        default=TEST_SUBJECTS,
        help="comma list (default 8,9,10)",
    )
    p.add_argument(
        "--long", action="store_true", help="one CSV per whole recording instead of windows"
    )
    p.add_argument(
        "--small", action="store_true", help="tiny subset for the repository's examples/"
    )
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the logistic-regression baselines"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="delete existing OUT/train and OUT/test first"
    )
    a = p.parse_args()
    hop = a.hop if a.hop is not None else (a.window if a.small else a.window // 2)
    if a.window < 1 or hop < 1:
        p.error("--window and --hop must be positive")

    source = a.source or find_source()
    if not source.is_file():
        raise SystemExit(f"{source}: not found; get it with: pip install --no-deps seglearn")
    data = load_source(source)
    xlabels = [str(v) for v in data["X_labels"]]
    if xlabels != COLUMNS:
        raise SystemExit(f"unexpected channel order {xlabels}, expected {COLUMNS}")
    classes = [sanitise(v) for v in data["y_labels"]]
    recs = [np.asarray(x, dtype=np.float64) for x in data["X"]]
    labels = np.asarray(data["y"], dtype=int)
    subjects = np.asarray(data["subject"], dtype=int)

    for split in ("train", "test"):
        d = a.out / split
        if d.exists() and any(d.iterdir()):
            if not a.overwrite:
                raise SystemExit(f"{d} is not empty; pass --overwrite to replace it")
            shutil.rmtree(d)

    seen: set[tuple[int, int]] = set()
    counts: dict[str, Counter[str]] = {"train": Counter(), "test": Counter()}
    rec_counts: dict[str, Counter[str]] = {"train": Counter(), "test": Counter()}
    wins: dict[str, list[np.ndarray]] = {"train": [], "test": []}
    ys: dict[str, list[int]] = {"train": [], "test": []}
    for r, (x, y, s) in enumerate(zip(recs, labels, subjects, strict=True)):
        split = "test" if s in a.test_subjects else "train"
        if a.small:
            keep = SMALL_TEST_SUBJECTS if split == "test" else SMALL_TRAIN_SUBJECTS
            if s not in keep or (s, y) in seen:
                continue
            seen.add((s, y))
        folder = a.out / split / classes[y]
        folder.mkdir(parents=True, exist_ok=True)
        w = windows(x, a.window, hop)
        if a.small:
            w = w[:SMALL_MAX_WINDOWS]
        wins[split].append(w)
        ys[split] += [y] * len(w)
        rec_counts[split][classes[y]] += 1
        if a.long:
            write_csv(folder / f"s{s:02d}_r{r:03d}.csv", x)
            counts[split][classes[y]] += 1
        else:
            for i, win in enumerate(w):
                write_csv(folder / f"s{s:02d}_r{r:03d}_w{i:03d}.csv", win)
            counts[split][classes[y]] += len(w)

    what = "recordings" if a.long else f"windows ({a.window} samples, hop {hop})"
    for split in ("train", "test"):
        if a.small:
            subj = list(SMALL_TEST_SUBJECTS if split == "test" else SMALL_TRAIN_SUBJECTS)
        else:
            subj = sorted({int(s) for s in subjects if (s in a.test_subjects) == (split == "test")})
        c = counts[split]
        total = sum(c.values())
        origin = "" if a.long else f" from {sum(rec_counts[split].values())} recordings"
        print(f"{split}: {total} {what}{origin} of subjects {subj} → {a.out / split}")
        for name in classes:
            print(f"   {name:5s} {c[name]:5d}  ({c[name] / max(total, 1):.1%})")

    if not a.no_baseline:
        xtr, xte = np.concatenate(wins["train"]), np.concatenate(wins["test"])
        ytr, yte = np.asarray(ys["train"]), np.asarray(ys["test"])
        print(
            f"baselines on {len(xtr)} train / {len(xte)} test windows ({a.window} samples, hop {hop}); "
            f"majority class {np.bincount(yte).max() / len(yte):.3f}"
        )
        acc_raw = logreg_accuracy(xtr.reshape(len(xtr), -1), ytr, xte.reshape(len(xte), -1), yte)
        print(f"   logistic regression, raw standardised windows ({xtr[0].size}-d): {acc_raw:.3f}")
        acc_feat = logreg_accuracy(features(xtr), ytr, features(xte), yte)
        print(f"   logistic regression, per-channel mean/std/min/max (24-d):   {acc_feat:.3f}")


if __name__ == "__main__":
    main()
