#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh) and run the whole test suite, then lint and the package-stack check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
venv="${BIOSTREAM_VENV:-.venv}"
export QT_QPA_PLATFORM=offscreen
"$venv/bin/ruff" check .
"$venv/bin/python" -m pytest -ra "$@"
