#!/usr/bin/env bash
# What to run on a GPU host for the CUDA kernels (kernels/): the GPU tests of test_quant and test_nn (which
# skip on machines without a device), compute-sanitizer memcheck over test_quant's GPU tests, then the
# kernel benchmarks (bench/run_kernels.sh).
#
#   scripts/gpu_kernel_checks.sh BUILD_DIR [--skip-bench]
#
# BUILD_DIR must already be configured with CUDA on and -DQLORA_BUILD_BENCH=ON, e.g.
#   cmake -S . -B build-kern -G Ninja -DCMAKE_BUILD_TYPE=Release -DQLORA_BUILD_BENCH=ON
# (on a host without network, carry the C++ dependencies as ../shared/tools/README.md describes). From
# the device tool, carry the configured build dir and call this script with it. Fails when a GPU test
# is skipped here: on a GPU host they must all run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:?usage: scripts/gpu_kernel_checks.sh BUILD_DIR [--skip-bench]}
SKIP_BENCH=${2:-}
BUILD=$(cd "$BUILD" && pwd)
GPU_TESTS='*Cuda*'

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
grep -q 'nf4_dequantize\.cu' "$BUILD/build.ninja" ||
  { echo "gpu_kernel_checks.sh: $BUILD was configured without CUDA" >&2; exit 2; }

echo "== build"
cmake --build "$BUILD" --target test_quant test_nn bench_kernels

run_gpu_tests() {
  local exe=$1 out
  echo "== $exe (all tests, GPU ones included)"
  out=$("$BUILD/tests/$exe" 2>&1) || { echo "$out" | grep -v '^\[ *\(RUN\|OK\) *\]'; return 1; }
  echo "$out" | tail -n 3
  if echo "$out" | grep -q '^\[  SKIPPED \]'; then
    echo "$out" | grep '^\[  SKIPPED \]' | sort -u
    echo "gpu_kernel_checks.sh: $exe skipped tests on a GPU host" >&2
    return 1
  fi
}
run_gpu_tests test_quant
run_gpu_tests test_nn

echo "== compute-sanitizer memcheck: test_quant $GPU_TESTS"
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# No --leak-check: torch's caching allocator keeps its blocks until exit by design.
"$SANITIZER" --tool memcheck --error-exitcode 1 \
  "$BUILD/tests/test_quant" --gtest_filter="$GPU_TESTS" --gtest_brief=1

if [[ "$SKIP_BENCH" != "--skip-bench" ]]; then
  echo "== benchmarks"
  "$ROOT/bench/run_kernels.sh" --build "$BUILD"
fi
