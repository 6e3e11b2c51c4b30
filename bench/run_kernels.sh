#!/usr/bin/env bash
# GPU kernel benchmarks (bench/bench_kernels.cpp): device copy bandwidth, dequantize_4bit, the batch-1
# GEMV and the tiled 4-bit training matmul vs dense bf16 matmul, as ratios with their targets.
#
#   bench/run_kernels.sh [--build DIR] [--warmup 5] [--iters 20]
#
# DIR (default $QLORA_BENCH_BUILD or build-kern) must be configured with CUDA on and
# -DQLORA_BUILD_BENCH=ON; bench_kernels is (re)built there. The JSON lines are kept in
# DIR/bench-results/<time>-kernels.jsonl. Exit status: the benchmark's (2 without a CUDA device), or 1
# when a target is missed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${QLORA_BENCH_BUILD:-$ROOT/build-kern}
WARMUP=5
ITERS=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --iters) ITERS=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run_kernels.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

[[ -f "$BUILD/build.ninja" ]] || { echo "run_kernels.sh: $BUILD is not a configured Ninja build" >&2; exit 2; }
cmake --build "$BUILD" --target bench_kernels >/dev/null
OUT="$BUILD/bench-results"
mkdir -p "$OUT"
LOG="$OUT/$(date +%Y%m%d-%H%M%S)-kernels.jsonl"
set +e
"$BUILD/bin/bench_kernels" --warmup "$WARMUP" --iters "$ITERS" | tee "$LOG.out"
status=${PIPESTATUS[0]}
set -e
grep '^{' "$LOG.out" >"$LOG" || true
rm -f "$LOG.out"
[[ $status -ne 0 ]] && exit "$status"
echo "results in $LOG"
if grep -q '"pass":false' "$LOG"; then
  echo "run_kernels.sh: a target was missed (see the table)" >&2
  exit 1
fi
