#!/usr/bin/env bash
# Every GPU check in one call (a GPU lease is short): throughput, `vm train`/`vm eval` on the
# full Fashion-MNIST, and the quality benchmark for images, audio and sensors, inside DEADLINE
# seconds. Prints a short summary last; logs and results go to $OUT (at most 8 files).
#
# Needs, in .gpu/ (git-ignored; made by benchmarks/prepare_gpu_payload.sh):
#   fmnist/*-idx*-ubyte.{xz,gz}   Fashion-MNIST (Debian dataset-fashion-mnist, recompressed)
#   watch.npz                     the seglearn smartwatch recordings, packed (float32)
#   instruments/                  instrument notes rendered from FluidR3 GM (FLAC)
#   whl/*.whl                     soundfile, soxr, cffi, pycparser for the device's Python
#
#   OUT=/tmp/out bash benchmarks/gpu_checks.sh             # on the GPU machine
#   DRY=1 OUT=/tmp/out bash benchmarks/gpu_checks.sh       # the same flow on CPU, tiny settings
set -u
START=$(date +%s)
DEADLINE=${DEADLINE:-550}
OUT=${OUT:-$PWD/benchmarks/out/gpu}
WORK=${WORK:-/tmp/vmgpu}
DRY=${DRY:-0}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu.log"
export PYTHONUNBUFFERED=1
left() { echo $((DEADLINE - ($(date +%s) - START))); }
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

if [ "$DRY" = 1 ]; then
  PY=python
  IMAGE_DATA=examples/fashion-mnist; AUDIO_DATA=examples/instruments; SENSOR_DATA=examples/watch
  TP_ARGS="--quick"; Q_ARGS="--quick"; TRAIN_ARGS="--epochs 1 --device cpu"
else
  PY=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl >>"$LOG" 2>&1 || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv >>"$LOG" 2>&1
  IMAGE_DATA=$WORK/fashion-mnist; AUDIO_DATA=.gpu/instruments; SENSOR_DATA=$WORK/watch
  TP_ARGS="--compile --big-batch 1024 --warmup 5 --steps 15 --chunks 3"
  Q_ARGS="--seeds 2 --epochs image=2,audio=30,sensor=40"
  TRAIN_ARGS="--epochs 3"
fi
$PY -c "import torch, soundfile, soxr, typer, vmcli; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"

# 1. data, from the carried package files (nothing is downloaded)
if [ "$DRY" != 1 ]; then
  say "materialising data"
  $PY examples/make_fashion_mnist.py --source .gpu/fmnist --full --out "$IMAGE_DATA" >>"$LOG" 2>&1
  $PY benchmarks/make_watch_windows.py --source .gpu/watch.npz --no-baseline --out "$SENSOR_DATA" >>"$LOG" 2>&1
fi

# 2. throughput, alone on the GPU (issue: fast on one GPU)
say "throughput ($(left) s left)"
timeout 170 $PY benchmarks/throughput.py $TP_ARGS --time-budget 150 --out "$OUT/throughput.json" >"$WORK/throughput.log" 2>&1
cat "$WORK/throughput.log" >>"$LOG"

# 3. the CLI on the full Fashion-MNIST training set, alone (samples/s and linear probe)
say "vm train / vm eval on $IMAGE_DATA ($(left) s left)"
timeout 120 $PY -m vmcli train "$IMAGE_DATA" $TRAIN_ARGS --out "$WORK/runs" --json -q >"$WORK/fmnist_train.json" 2>>"$LOG"
timeout 90 $PY -m vmcli eval --runs "$WORK/runs" --knn --json >"$WORK/fmnist_eval.json" 2>>"$LOG"
$PY - "$WORK" "$OUT" <<'EOF' 2>>"$LOG"
import json, shutil, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
res = {}
for name in ("train", "eval"):
    try:
        res[name] = json.loads((work / f"fmnist_{name}.json").read_text())
    except Exception as e:
        res[name] = {"error": repr(e)}
(out / "fmnist.json").write_text(json.dumps(res, indent=2))
if (work / "runs" / "train" / "preview.png").is_file():
    shutil.copy(work / "runs" / "train" / "preview.png", out / "preview_image.png")
EOF

# 4. the quality benchmark: one process per modality, side by side, in the time left
BUDGET=$(($(left) - 25))
say "quality, three processes, $BUDGET s each"
for m in image audio sensor; do
  case $m in image) D=$IMAGE_DATA ;; audio) D=$AUDIO_DATA ;; sensor) D=$SENSOR_DATA ;; esac
  EXTRA=""
  [ $m = sensor ] && EXTRA="--precision-check"
  $PY benchmarks/quality.py --modality $m --data $m="$D" $Q_ARGS $EXTRA --time-budget "$BUDGET" \
    --out "$WORK/q-$m" --runs-dir "$WORK/q-runs-$m" >"$WORK/q-$m.log" 2>&1 &
done
wait
for m in image audio sensor; do cat "$WORK/q-$m.log" >>"$LOG"; done
$PY benchmarks/quality.py --merge "$WORK"/q-image/quality.json "$WORK"/q-audio/quality.json "$WORK"/q-sensor/quality.json --out "$WORK/q" >/dev/null 2>>"$LOG"
cp "$WORK"/q/quality.json "$WORK"/q/quality.md "$OUT"/ 2>/dev/null
cp "$WORK"/q/budget_sweep.png "$OUT"/ 2>/dev/null
PREVIEW=$(ls -d "$WORK"/q-runs-audio/*/train 2>/dev/null | head -1)
[ -n "$PREVIEW" ] && cp "$PREVIEW/preview.png" "$OUT/preview_audio.png"

# 5. summary (the reply shows the end of the output)
say "done"
echo; echo "== throughput =="; sed -n '/^| shape/,$p' "$WORK/throughput.log"
echo; echo "== vm train / vm eval on Fashion-MNIST =="
$PY - "$OUT/fmnist.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t, e = r.get("train", {}), r.get("eval", {})
if "error" not in t:
    print(f"train: {t.get('train_samples')} samples, {t.get('epochs')} epochs, {t.get('samples_per_s', 0):,.0f} samples/s (last epoch), "
          f"{t.get('train_s', 0):.0f} s, encoder {t.get('encoder')}, {t.get('precision')}, loss {t.get('final_loss')}")
for row in e.get("rows", []):
    print(f"  {row['features']:28s} linear {row.get('linear', 0):.4f}  kNN {row.get('knn', 0):.4f}")
print({k: v for k, v in r.items() if "error" in v} or "")
EOF
echo; echo "== quality =="; cat "$OUT/quality.md" 2>/dev/null | grep -v "^$" | head -150
