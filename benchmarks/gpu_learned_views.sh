#!/usr/bin/env bash
# Learned views against their controls, on long schedules, in one GPU call: every arm of the
# quality benchmark as its own process (the small CPU-default networks leave one GPU mostly
# idle per process, so many run side by side), each under a hard timeout, results merged.
#
#   sensors  7 arms × seeds 0,1,2, 150 epochs (≈ 2,900 steps), and 3 variants (ε 0.2, faster
#            transform learning rate)
#   audio    5 arms × seeds 0,1, 0.5 s clips at 8 kHz, 112 epochs (≈ 1,000 steps)
#   images   4 arms × seeds 0,1, Fashion-MNIST 10k/10k, 26 epochs (≈ 1,000 steps)
#   digits   (PLAN only) spoken digits, 1 s at 8 kHz, 20 epochs (≈ 700 steps), speakers held out
#            for validation; data from $PAYLOAD/digits8k (benchmarks/prepare_gpu_payload.sh)
# Networks: the CPU defaults (small encoder, viewmaker width 16), so the numbers speak for the
# settings a CPU user gets, on schedules 10× longer than a CPU session allows.
# Needs $PAYLOAD (default .gpu/; benchmarks/prepare_gpu_payload.sh). Prints the merged table last.
#
#   OUT=/tmp/out bash benchmarks/gpu_learned_views.sh          # on the GPU machine
#   DRY=1 OUT=/tmp/out bash benchmarks/gpu_learned_views.sh    # the same flow on CPU, tiny
set -u
START=$(date +%s)
DEADLINE=${DEADLINE:-390}
OUT=${OUT:-$PWD/benchmarks/out/gpu-learned}
WORK=${WORK:-/tmp/vmgpu2}
DRY=${DRY:-0}
PAYLOAD=${PAYLOAD:-.gpu}
DIGITS_OPTS="--sample-rate 8000 --clip-seconds 1.0 --group-by stem --epochs image=1,audio=20,sensor=1"
mkdir -p "$OUT" "$WORK"
LOG="$OUT/learned.log"
export PYTHONUNBUFFERED=1
left() { echo $((DEADLINE - ($(date +%s) - START))); }
say() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$LOG"; }

COMMON="--encoder small --width 16 --no-robustness --no-sweep --no-all-spaces"
if [ "$DRY" = 1 ]; then
  PY=python
  SENSOR=examples/watch; AUDIO=examples/instruments; IMAGE=examples/fashion-mnist; DIGITS=$AUDIO
  DIGITS_OPTS="--sample-rate 8000 --clip-seconds 1.0 --epochs image=1,audio=1,sensor=1"
  EPOCHS="image=1,audio=1,sensor=2"; SEEDS_S=0; SEEDS=0; AUDIO_OPTS="--sample-rate 8000 --clip-seconds 0.5"
  COMMON="$COMMON --device cpu"
else
  PY=python3
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PAYLOAD"/whl/*.whl >>"$LOG" 2>&1 || { say "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD
  nvidia-smi --query-gpu=name,memory.total --format=csv >>"$LOG" 2>&1
  SENSOR=$WORK/watch; AUDIO=$PAYLOAD/instruments; IMAGE=$WORK/fmnist10k; DIGITS=$PAYLOAD/digits8k
  say "materialising data"
  [ -f "$PAYLOAD/watch.npz" ] && $PY benchmarks/make_watch_windows.py --source "$PAYLOAD/watch.npz" --no-baseline --out "$SENSOR" >>"$LOG" 2>&1
  [ -d "$PAYLOAD/fmnist" ] && $PY examples/make_fashion_mnist.py --source "$PAYLOAD/fmnist" --train-per-class 1000 --test-per-class 1000 --out "$IMAGE" >>"$LOG" 2>&1
  EPOCHS="image=26,audio=112,sensor=150"; SEEDS_S=0,1,2; SEEDS=0,1; AUDIO_OPTS="--sample-rate 8000 --clip-seconds 0.5"
fi

merge() {  # spoken digits are audio too: merged apart from the instrument families
  set +e
  say "merging"
  local main=$(ls -d "$WORK"/q-{sensor,audio,image}-*/quality.json 2>/dev/null)
  local digits=$(ls -d "$WORK"/q-digits-*/quality.json 2>/dev/null)
  [ -n "$main" ] && $PY benchmarks/quality.py --merge $main --out "$WORK/merged" >/dev/null 2>>"$LOG"
  [ -n "$digits" ] && $PY benchmarks/quality.py --merge $digits --out "$WORK/merged-digits" >/dev/null 2>>"$LOG"
  cp "$WORK"/merged/quality.json "$OUT"/learned_views.json 2>/dev/null
  cp "$WORK"/merged/quality.md "$OUT"/learned_views.md 2>/dev/null
  cp "$WORK"/merged-digits/quality.json "$OUT"/learned_views_digits.json 2>/dev/null
  cp "$WORK"/merged-digits/quality.md "$OUT"/learned_views_digits.md 2>/dev/null
  tar -C "$WORK" -czf "$OUT/logs.tgz" $(cd "$WORK" && ls q-*.log 2>/dev/null) 2>/dev/null
  echo; cat "$OUT/learned_views.md" "$OUT/learned_views_digits.md" 2>/dev/null
}
trap merge EXIT

BUDGET=$(($(left) - 25))
say "launching, $BUDGET s per process"
launch() {  # label modality data arm seeds tag [extra...]
  local label=$1 m=$2 d=$3 arm=$4 seeds=$5 tag=$6; shift 6
  timeout -k 5 "$BUDGET" $PY benchmarks/quality.py --modality "$m" --data "$m=$d" --arms "$arm" \
    --seed-list "$seeds" --epochs "$EPOCHS" $COMMON "$@" --time-budget $((BUDGET - 10)) \
    --min-run-seconds 15 --out "$WORK/q-$label-$arm$tag" --runs-dir "$WORK/runs-$label-$arm$tag" \
    >"$WORK/q-$label-$arm$tag.log" 2>&1 &
}
# PLAN: one process per line, "modality arm seeds tag [quality.py options...]"; the default is
# the full plan above. Set it to run a part, e.g. PLAN="audio viewmaker 1 -s1" for one arm.
DEFAULT_PLAN=""
for arm in viewmaker random learned-transforms fixed-transforms handcrafted both none; do
  DEFAULT_PLAN+="sensor $arm $SEEDS_S -"$'\n'
done
# variants (levers for the defaults; chosen on validation only): a larger budget for both
# viewmaker arms, a faster learning rate for the transform strengths
DEFAULT_PLAN+="sensor viewmaker $SEEDS_S -eps0.2 --budget 0.2 --role eps0.2"$'\n'
DEFAULT_PLAN+="sensor random $SEEDS_S -eps0.2 --budget 0.2 --role eps0.2"$'\n'
DEFAULT_PLAN+="sensor learned-transforms $SEEDS_S -lr0.1 --transforms-lr 0.1 --role lr0.1"$'\n'
for arm in viewmaker random learned-transforms fixed-transforms handcrafted; do
  DEFAULT_PLAN+="audio $arm $SEEDS -"$'\n'
done
for arm in viewmaker random handcrafted both; do
  DEFAULT_PLAN+="image $arm $SEEDS -"$'\n'
done
PLAN=${PLAN:-$DEFAULT_PLAN}
while read -r m arm seeds tag extra; do
  [ -z "$m" ] && continue
  [ "$tag" = "-" ] && tag=""
  case $m in
    sensor) launch sensor sensor "$SENSOR" "$arm" "$seeds" "$tag" $extra ;;
    audio) launch audio audio "$AUDIO" "$arm" "$seeds" "$tag" $AUDIO_OPTS $extra ;;
    image) launch image image "$IMAGE" "$arm" "$seeds" "$tag" $extra ;;
    digits) launch digits audio "$DIGITS" "$arm" "$seeds" "$tag" $DIGITS_OPTS $extra ;;
  esac
done <<<"$PLAN"
wait
say "all processes ended"
