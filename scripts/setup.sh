#!/usr/bin/env bash
# Install scorelab and its test tools into the current Python environment.
# Torch is installed first as the pinned CPU build when it is missing: an unpinned
# `pip install torch` would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test]"
