#!/usr/bin/env bash
# Installs everything qlora needs on Debian 12, idempotently: Debian packages, then a Python
# virtual environment holding torch==2.11.0, whose bundled libtorch the C++ build links.
#   scripts/setup.sh           build + test dependencies
#   scripts/setup.sh --tools   also the pinned reference stack of tools/requirements.txt
# QLORA_VENV overrides the environment's location (default ~/.cache/qlora/venv).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
with_tools=0
for arg in "$@"; do
  case "$arg" in
    --tools) with_tools=1 ;;
    *) echo "setup.sh: unknown option '$arg' (known: --tools)" >&2; exit 2 ;;
  esac
done

apt_packages=(build-essential cmake ninja-build ccache pkg-config git python3 python3-venv python3-pip
              libsentencepiece-dev nlohmann-json3-dev libcli11-dev libspdlog-dev libyaml-cpp-dev
              libutf8proc-dev libgtest-dev libgmock-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >&2
fi

venv=${QLORA_VENV:-$HOME/.cache/qlora/venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating Python environment $venv" >&2
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv"
fi
torch_version=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true)
if [ "$torch_version" != "2.11.0" ]; then
  echo "setup: installing torch==2.11.0 into $venv (about 3 GB with its CUDA libraries)" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q torch==2.11.0 numpy >&2
fi
if [ "$with_tools" -eq 1 ]; then
  "$venv/bin/pip" install -q -r "$here/tools/requirements.txt" >&2
fi
echo "setup: ready (venv $venv, torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'))" >&2
