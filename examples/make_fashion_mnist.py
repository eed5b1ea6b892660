"""Write a small labelled Fashion-MNIST image folder (PNG) from the Debian package's files.

    sudo apt-get install dataset-fashion-mnist      # MIT licence, ships the original IDX files
    python examples/make_fashion_mnist.py --out examples/fashion-mnist --train-per-class 80 --test-per-class 20
    python examples/make_fashion_mnist.py --out data/fmnist --full     # all 60,000 + 10,000

Layout: OUT/train/<class>/<index>.png and OUT/test/<class>/<index>.png (ImageFolder style),
taken from the official train and test sets. The first N of each class, so it is reproducible.
"""

from __future__ import annotations

import argparse
import gzip
import lzma
from pathlib import Path

import numpy as np
from PIL import Image

SOURCE = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "T-shirt_top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle_boot",
]


def read_idx(path: Path) -> np.ndarray:
    """An IDX array from `path` (.gz as Debian ships it, or .xz when recompressed smaller)."""
    if not path.exists() and path.with_suffix(".xz").exists():
        path = path.with_suffix(".xz")
    opener = lzma.open if path.suffix == ".xz" else gzip.open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def write_split(images: np.ndarray, labels: np.ndarray, out: Path, per_class: int | None) -> int:
    count = 0
    for c, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == c)
        if per_class is not None:
            idx = idx[:per_class]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in idx:
            # the small sample is committed: squeeze it; the full set is for benchmarks: be quick
            Image.fromarray(images[i], "L").save(
                folder / f"{i:05d}.png", optimize=per_class is not None
            )
            count += 1
    return count


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--source", type=Path, default=SOURCE)
    p.add_argument("--train-per-class", type=int, default=80)
    p.add_argument("--test-per-class", type=int, default=20)
    p.add_argument("--full", action="store_true", help="write the whole dataset")
    a = p.parse_args()
    if not any((a.source / f"train-images-idx3-ubyte.{ext}").is_file() for ext in ("gz", "xz")):
        raise SystemExit(
            f"{a.source}: Fashion-MNIST not found; install it with: apt-get install dataset-fashion-mnist"
        )
    for split, prefix, per in (
        ("train", "train", a.train_per_class),
        ("test", "t10k", a.test_per_class),
    ):
        images = read_idx(a.source / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(a.source / f"{prefix}-labels-idx1-ubyte.gz")
        n = write_split(images, labels, a.out / split, None if a.full else per)
        print(f"{split}: {n} images → {a.out / split}")


if __name__ == "__main__":
    main()
