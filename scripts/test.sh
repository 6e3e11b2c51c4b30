#!/usr/bin/env bash
# Builds and runs every test (GoogleTest suites and the CLI end-to-end script) through ctest.
# GPU tests skip visibly on a machine without a CUDA device.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${QLORA_BUILD_DIR:-$here/build}
"$here/scripts/build.sh" >/dev/null
cd "$build"
ctest --output-on-failure -j "${QLORA_JOBS:-$(nproc)}" --timeout 900
