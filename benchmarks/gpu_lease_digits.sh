#!/usr/bin/env bash
# One GPU lease for audio evidence and compiled throughput: a learned-views PLAN (spoken digits
# and instrument families, benchmarks/gpu_learned_views.sh) with the GPU to itself, then, in the
# time left, benchmarks/throughput.py with its torch.compile rows (alone on the GPU, so the
# samples/s are clean). One tarball back. Needs $PAYLOAD: whl/, digits8k/ (and instruments/ for
# audio lines) — benchmarks/prepare_gpu_payload.sh.
#
#   OUT=$OUT TOTAL=560 LEARN=380 PAYLOAD=.gpu2 PLAN=$'digits viewmaker 0 -s0\n...' bash benchmarks/gpu_lease_digits.sh
#   DRY=1 OUT=/tmp/out TOTAL=200 LEARN=120 PLAN='digits fixed-transforms 0 -' bash benchmarks/gpu_lease_digits.sh
set -u
START=$(date +%s)
TOTAL=${TOTAL:-560}
LEARN=${LEARN:-380}
OUT=${OUT:?set OUT}
W=${W:-/tmp/vmlease}
mkdir -p "$OUT" "$W/learned" "$W/throughput"
elapsed() { echo $(($(date +%s) - START)); }

OUT="$W/learned" DEADLINE=$LEARN WORK="$W/work" bash benchmarks/gpu_learned_views.sh >"$W/learned/summary.txt" 2>&1
LEFT=$((TOTAL - $(elapsed) - 10))
if [ "${DRY:-0}" = 1 ]; then ARGS="--quick"; BIG=0; PY=python; else ARGS="--warmup 5 --steps 15 --chunks 3"; PY=python3; fi
echo "[$(elapsed) s] throughput with compiled rows, $LEFT s" >"$W/throughput/summary.txt"
if [ "$LEFT" -gt 60 ]; then
  PYTHONPATH=/tmp/site:$PWD timeout -k 5 "$LEFT" $PY benchmarks/throughput.py --compile --big-batch "${BIG:-1024}" \
    --shapes "${SHAPES:-image}" $ARGS --time-budget $((LEFT - 5)) \
    --out "$W/throughput/throughput.json" >>"$W/throughput/summary.txt" 2>&1
fi
tar -C "$W" -czf "$OUT/lease.tgz" learned throughput
cp "$W/learned/summary.txt" "$OUT/learned_summary.txt"
cp "$W/throughput/summary.txt" "$OUT/throughput_summary.txt"
echo "== learned views =="; cat "$W/learned/summary.txt"
echo; echo "== throughput =="; tail -40 "$W/throughput/summary.txt"
