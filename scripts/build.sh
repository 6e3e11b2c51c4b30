#!/usr/bin/env bash
# Configures and builds qlora into build/ (Release, Ninja, ccache, precompiled torch headers).
# Extra arguments go to cmake's configure step, e.g. -DQLORA_CUDA=OFF.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${QLORA_VENV:-$HOME/.cache/qlora/venv}
build=${QLORA_BUILD_DIR:-$here/build}
export PATH="$venv/bin:$PATH"
export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/qlora/ccache}
# ccache caches compiles that use the torch precompiled header only with this sloppiness.
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}
jobs=${QLORA_JOBS:-$(nproc)}
if [ ! -f "$build/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S "$here" -B "$build" -G Ninja "$@" >&2
fi
cmake --build "$build" -j "$jobs" >&2
echo "$build/bin/qlora"
