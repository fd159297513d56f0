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
# Headless Chromium renders the HTML report and demo gallery in their tests (Debian package).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq chromium >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }) \
        || echo "note: chromium not installed; the HTML rendering tests will skip"
fi
