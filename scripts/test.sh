#!/usr/bin/env bash
# Set up, lint, and run the default test suite (slow tests: add `-m slow`) in the environment
# setup.sh installs into: the active virtual environment, else .venv in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Headless Chromium renders the HTML report and demo gallery in their tests (Debian package;
# installed when running as root, as CI does; elsewhere those tests skip).
if ! command -v chromium chromium-browser google-chrome >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq chromium >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
            || echo "note: installing chromium failed; the HTML rendering tests will skip"
    else
        echo "note: no chromium; the HTML rendering tests will skip" \
            "(install it: sudo apt-get install chromium)"
    fi
fi
PY=${VIRTUAL_ENV:-.venv}/bin/python
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m pytest "$@"
