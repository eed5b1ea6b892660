#!/usr/bin/env bash
# The benchmarks at CPU scale, for sessions without a GPU: real data, the CPU defaults
# (small encoder, viewmaker width 16, fp32), fewer epochs and smaller image/audio sets so the
# whole run takes about 1.5 hours on 2 cores. Results are CPU-scale evidence, not the GPU
# protocol of benchmarks/gpu_checks.sh.
#
#   bash benchmarks/cpu_checks.sh            # writes benchmarks/out/cpu/
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/out/cpu}
DATA=${DATA:-benchmarks/data}
mkdir -p "$OUT"
PY=${PY:-python}
COMMON="--device cpu --encoder small --width 16"

# data: Fashion-MNIST with 1,000 training images per class (the full 10,000-image test set),
# the smartwatch windows (full), instrument notes of 0.5 s (one velocity)
[ -d "$DATA/fmnist-10k/train" ] || $PY examples/make_fashion_mnist.py --out "$DATA/fmnist-10k" --train-per-class 1000 --test-per-class 1000
[ -d "$DATA/watch/train" ] || $PY benchmarks/make_watch_windows.py --no-baseline --out "$DATA/watch"
[ -d "$DATA/instruments-0.5s/train" ] || $PY benchmarks/make_instruments.py --out "$DATA/instruments-0.5s" --velocities 112 --format flac --seconds 0.5

$PY benchmarks/throughput.py --device cpu --encoder small --width 16 --warmup 2 --steps 5 --chunks 2 --big-batch 0 \
  --out "$OUT/throughput.json" >"$OUT/throughput.log" 2>&1

$PY benchmarks/quality.py --modality sensor --data sensor="$DATA/watch" $COMMON --seeds 2 --epochs sensor=15 \
  --time-budget 3000 --out "$OUT/q-sensor" --runs-dir /tmp/vm-cpu-runs/sensor >"$OUT/q-sensor.log" 2>&1
$PY benchmarks/quality.py --modality image --data image="$DATA/fmnist-10k" $COMMON --seeds 1 --epochs image=5 \
  --budgets 0.02,0.05,0.1 --time-budget 2400 --out "$OUT/q-image" --runs-dir /tmp/vm-cpu-runs/image >"$OUT/q-image.log" 2>&1
$PY benchmarks/quality.py --modality audio --data audio="$DATA/instruments-0.5s" $COMMON --seeds 1 --epochs audio=5 \
  --no-sweep --time-budget 2400 --out "$OUT/q-audio" --runs-dir /tmp/vm-cpu-runs/audio >"$OUT/q-audio.log" 2>&1
$PY benchmarks/quality.py --merge "$OUT"/q-sensor/quality.json "$OUT"/q-image/quality.json "$OUT"/q-audio/quality.json --out "$OUT"
