#!/usr/bin/env bash
# Every GPU check in one call (a GPU lease is short): throughput, `vm train`/`vm eval` on the
# full Fashion-MNIST, and the quality benchmark for images, audio and sensors, inside DEADLINE
# seconds. Every step runs under a hard `timeout`; the summary always prints last (also after a
# failed or cut step). Logs and results go to $OUT (at most 8 files come back).
#
# Needs, in .gpu/ (git-ignored; made by benchmarks/prepare_gpu_payload.sh):
#   fmnist/*-idx*-ubyte.{xz,gz}   Fashion-MNIST (Debian dataset-fashion-mnist, recompressed)
#   watch.npz                     the seglearn smartwatch recordings, packed (float32)
#   instruments/                  instrument notes rendered from FluidR3 GM (FLAC)
#   whl/*.whl                     soundfile, soxr, cffi, pycparser for the device's Python
#
#   OUT=/tmp/out bash benchmarks/gpu_checks.sh             # on the GPU machine (~9 minutes)
#   DRY=1 OUT=/tmp/out bash benchmarks/gpu_checks.sh       # the same flow on CPU, tiny settings
#   STEPS="quality" Q_ARGS="..." DEADLINE=300 bash benchmarks/gpu_checks.sh   # one step only
set -u
START=$(date +%s)
DEADLINE=${DEADLINE:-540}
STEPS=${STEPS:-"throughput train quality"}
OUT=${OUT:-$PWD/benchmarks/out/gpu}
WORK=${WORK:-/tmp/vmgpu}
DRY=${DRY:-0}
mkdir -p "$OUT" "$WORK"
LOG="$OUT/gpu.log"
export PYTHONUNBUFFERED=1
left() { echo $((DEADLINE - ($(date +%s) - START))); }
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }
has() { case " $STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# cap SECONDS CMD...: run CMD for at most SECONDS, and never past the deadline (minus 20 s for
# the summary); a step with no time left is not started
cap() {
  local want=$1; shift
  local t; t=$(left); t=$((t - 20)); [ "$want" -lt "$t" ] && t=$want
  if [ "$t" -le 5 ]; then say "not run (deadline): $*"; return 124; fi
  timeout -k 5 "$t" "$@"
}

if [ "$DRY" = 1 ]; then
  PY=python
  IMAGE_DATA=examples/fashion-mnist; AUDIO_DATA=examples/instruments; SENSOR_DATA=examples/watch
  TP_ARGS=${TP_ARGS:-"--quick"}; Q_ARGS=${Q_ARGS:-"--quick"}; TRAIN_ARGS="--epochs 1 --device cpu"
else
  PY=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl >>"$LOG" 2>&1 || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv >>"$LOG" 2>&1
  IMAGE_DATA=$WORK/fashion-mnist; AUDIO_DATA=.gpu/instruments; SENSOR_DATA=$WORK/watch
  TP_ARGS=${TP_ARGS:-"--compile --big-batch 1024 --warmup 5 --steps 15 --chunks 3"}
  Q_ARGS=${Q_ARGS:-"--seeds 2 --epochs image=2,audio=30,sensor=40 --budgets 0.02,0.1,0.2"}
  TRAIN_ARGS="--epochs 3"
fi

summary() {
  set +e
  say "done"
  if has throughput; then
    echo; echo "== throughput =="; sed -n '/^| shape/,$p' "$WORK/throughput.log" 2>/dev/null
  fi
  if has train; then
    echo; echo "== vm train / vm eval on Fashion-MNIST =="
    $PY - "$WORK" "$OUT" <<'PYEOF'
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
t, e = res["train"], res["eval"]
if "error" not in t:
    print(f"train: {t.get('train_samples')} samples, {t.get('epochs')} epochs, {t.get('samples_per_s') or 0:,.0f} samples/s (last epoch), "
          f"{t.get('train_s') or 0:.0f} s, encoder {t.get('encoder')}, {t.get('precision')}, loss {t.get('final_loss')}")
for row in e.get("rows", []):
    print(f"  {row['features']:28s} linear {row.get('linear', 0):.4f}  kNN {row.get('knn', 0):.4f}")
print({k: v for k, v in res.items() if "error" in v} or "")
PYEOF
  fi
  if has quality; then
    echo; echo "== quality =="
    $PY benchmarks/quality.py --merge "$WORK"/q-image/quality.json "$WORK"/q-audio/quality.json "$WORK"/q-sensor/quality.json --out "$WORK/q" >/dev/null 2>>"$LOG"
    cp "$WORK"/q/quality.json "$WORK"/q/quality.md "$OUT"/ 2>/dev/null
    cp "$WORK"/q/budget_sweep.png "$OUT"/ 2>/dev/null
    grep -v "^$" "$OUT/quality.md" 2>/dev/null | head -150
  fi
}
trap summary EXIT

$PY -c "import torch, soundfile, soxr, typer, vmcli; print('torch', torch.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')" 2>&1 | tee -a "$LOG"

# 1. data, from the carried package files (nothing is downloaded)
if [ "$DRY" != 1 ]; then
  say "materialising data"
  if has train || has quality; then
    cap 90 $PY examples/make_fashion_mnist.py --source .gpu/fmnist --full --out "$IMAGE_DATA" >>"$LOG" 2>&1
  fi
  cap 60 $PY benchmarks/make_watch_windows.py --source .gpu/watch.npz --no-baseline --out "$SENSOR_DATA" >>"$LOG" 2>&1
fi

# 2. throughput, alone on the GPU: the paper row, then the default (learned transforms) eager and
#    compiled at batch 256 and 1024 first; the compiled rows of other shapes only if time allows
if has throughput; then
  say "throughput ($(left) s left)"
  # --time-budget: compiled rows (60-90 s warm-up each) start only with 100 s of it left
  cap 230 $PY benchmarks/throughput.py $TP_ARGS --time-budget 215 --out "$OUT/throughput.json" >"$WORK/throughput.log" 2>&1
  cat "$WORK/throughput.log" >>"$LOG"
fi

# 3. the CLI on the full Fashion-MNIST training set, alone (samples/s and linear probe)
if has train; then
  say "vm train / vm eval on $IMAGE_DATA ($(left) s left)"
  cap 100 $PY -m vmcli train "$IMAGE_DATA" $TRAIN_ARGS --out "$WORK/runs" --json -q >"$WORK/fmnist_train.json" 2>>"$LOG"
  cap 60 $PY -m vmcli eval --runs "$WORK/runs" --knn --json >"$WORK/fmnist_eval.json" 2>>"$LOG"
fi

# 4. the quality benchmark: one process per modality, side by side, each under a hard timeout
if has quality; then
  BUDGET=$(($(left) - 30))
  say "quality, three processes, $BUDGET s each"
  for m in image audio sensor; do
    case $m in image) D=$IMAGE_DATA ;; audio) D=$AUDIO_DATA ;; sensor) D=$SENSOR_DATA ;; esac
    cap "$BUDGET" $PY benchmarks/quality.py --modality $m --data $m="$D" $Q_ARGS --time-budget "$((BUDGET - 15))" \
      --out "$WORK/q-$m" --runs-dir "$WORK/q-runs-$m" >"$WORK/q-$m.log" 2>&1 &
  done
  wait
  for m in image audio sensor; do cat "$WORK/q-$m.log" >>"$LOG"; done
  PREVIEW=$(ls -d "$WORK"/q-runs-audio/*/train 2>/dev/null | head -1)
  if [ -n "$PREVIEW" ]; then cp "$PREVIEW/preview.png" "$OUT/preview_audio.png"; fi
fi
