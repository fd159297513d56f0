#!/usr/bin/env bash
# Install scorelab and its test tools into a virtual environment: the active one
# ($VIRTUAL_ENV) if there is one, else .venv in the repository, created here by
# `${PYTHON:-python3} -m venv` (Debian/Ubuntu's system Python refuses pip installs, PEP 668).
# Torch is installed first as the pinned CPU build when it is missing: an unpinned
# `pip install torch` would pull several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VIRTUAL_ENV:-.venv}
PY=$VENV/bin/python
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    if [ -n "${VIRTUAL_ENV:-}" ]; then
        echo "error: the active environment VIRTUAL_ENV=$VIRTUAL_ENV has no working" \
            "'$PY -m pip'; repair it ('$PY -m ensurepip'), or 'deactivate' to use .venv" >&2
        exit 1
    fi
    echo "creating the virtual environment .venv"
    "${PYTHON:-python3}" -m venv .venv || {
        echo "error: '${PYTHON:-python3} -m venv' failed; install the venv module" \
            "(Debian/Ubuntu: apt-get install python3-venv) and run this again" >&2
        exit 1
    }
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0"
fi
"$PY" -m pip install --quiet -e ".[test]"
echo "scorelab is installed in $VENV: run $VENV/bin/scorelab, or 'source $VENV/bin/activate'" \
    "and then scorelab"
