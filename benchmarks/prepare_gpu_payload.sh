#!/usr/bin/env bash
# Build .gpu/ (git-ignored), everything benchmarks/gpu_checks.sh needs on a GPU machine that
# has no network: the datasets, compressed to fit a 64 MiB transfer, and the wheels its
# Python lacks. Run on a machine with the Debian packages dataset-fashion-mnist and
# fluid-soundfont-gm, and pip access (for tinysoundfont, seglearn and the wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu/fmnist .gpu/whl
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || echo "/.gpu/" >>.git/info/exclude

# Fashion-MNIST: images recompressed with xz (26 MB instead of 31 MB)
python3 - <<'PY'
import gzip, lzma, shutil
src = "/usr/share/datasets/fashion-mnist/"
for n in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
    with open(f".gpu/fmnist/{n}.xz", "wb") as f:
        f.write(lzma.compress(gzip.open(src + n + ".gz").read(), preset=9))
for n in ("train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
    shutil.copy(src + n + ".gz", f".gpu/fmnist/{n}.gz")
PY

# smartwatch IMU recordings (seglearn, BSD), packed as float32 .npz (5 MB instead of 18 MB)
tmp=$(mktemp -d)
python3 -m pip download -q --no-deps -d "$tmp" seglearn==1.2.5
python3 -m zipfile -e "$tmp"/seglearn-*.whl "$tmp/x"
python3 -c "import sys; sys.path.insert(0, 'benchmarks'); import make_watch_windows as m; from pathlib import Path; m.pack_source(Path('$tmp/x/seglearn/data/watch_dataset.npy'), Path('.gpu/watch.npz'))"

# instrument notes, one velocity (112), FLAC: 25 MB
python3 -m pip install -q --no-deps tinysoundfont
python3 benchmarks/make_instruments.py --out .gpu/instruments --velocities 112 --format flac --overwrite

# wheels missing on the device image (Python 3.12, x86-64)
for pkg in soundfile==0.14.0 soxr==1.1.0 cffi==2.0.0 pycparser==3.12; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .gpu/whl "$pkg"
done
du -sh --apparent-size .gpu
