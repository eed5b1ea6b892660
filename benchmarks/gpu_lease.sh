#!/usr/bin/env bash
# One GPU lease, one call: benchmarks/gpu_checks.sh (throughput and `vm train` alone on the GPU,
# then its quality step), and, from the moment that quality step starts, a learned-views PLAN
# beside it (benchmarks/gpu_learned_views.sh). Everything comes back as one tarball plus the
# two summaries (the device returns at most 8 files).
#
#   OUT=$OUT TOTAL=540 PLAN=$'audio viewmaker 1 -s1\naudio random 1 -s1' bash benchmarks/gpu_lease.sh
#   DRY=1 OUT=/tmp/out TOTAL=200 bash benchmarks/gpu_lease.sh     # the same flow on CPU, tiny
set -u
START=$(date +%s)
TOTAL=${TOTAL:-540}
OUT=${OUT:?set OUT}
W=${W:-/tmp/vmlease}
mkdir -p "$OUT" "$W/checks" "$W/learned"
elapsed() { echo $(($(date +%s) - START)); }

OUT="$W/checks" DEADLINE=$TOTAL bash benchmarks/gpu_checks.sh >"$W/checks/summary.txt" 2>&1 &
CHECKS=$!
if [ -n "${PLAN:-}" ]; then
  # the learned-views processes start only once throughput and `vm train` are done
  while kill -0 $CHECKS 2>/dev/null && ! grep -q "quality, three processes" "$W/checks/gpu.log" 2>/dev/null; do sleep 2; done
  LEFT=$((TOTAL - $(elapsed) - 5))
  if [ "$LEFT" -gt 60 ]; then
    OUT="$W/learned" DEADLINE=$LEFT bash benchmarks/gpu_learned_views.sh >"$W/learned/summary.txt" 2>&1
  else
    echo "learned views not run: $LEFT s left" >"$W/learned/summary.txt"
  fi
fi
wait $CHECKS
tar -C "$W" -czf "$OUT/lease.tgz" checks learned
cp "$W/checks/summary.txt" "$OUT/checks_summary.txt"
cp "$W/learned/summary.txt" "$OUT/learned_summary.txt" 2>/dev/null
echo "== gpu_checks.sh =="; cat "$W/checks/summary.txt"
echo; echo "== learned views =="; cat "$W/learned/summary.txt" 2>/dev/null
