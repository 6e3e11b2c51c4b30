#!/usr/bin/env bash
# Runs the given test binaries with every CPU kernel library capped at AVX2: ATen's own dispatch
# (ATEN_CPU_CAPABILITY), MKL (MKL_ENABLE_INSTRUCTIONS) and oneDNN (ONEDNN_MAX_CPU_ISA). On an AVX-512
# machine this reproduces the summation orders of an AVX2-only CPU, so one CI run checks that the parity
# tolerances hold on both kinds of machine (issue 17); on an AVX2 machine it repeats the native run.
set -uo pipefail
export ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2
status=0
for binary in "$@"; do
  if ! "$binary" --gtest_brief=1 > "/tmp/qlora_avx2_$(basename "$binary").$$.log" 2>&1; then
    echo "FAILED with AVX2 kernels: $binary (log below)"
    grep -E "Failure|FAILED|parity" -A3 "/tmp/qlora_avx2_$(basename "$binary").$$.log" | head -80
    status=1
  else
    echo "passed with AVX2 kernels: $binary"
  fi
  rm -f "/tmp/qlora_avx2_$(basename "$binary").$$.log"
done
exit $status
