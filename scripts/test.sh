#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh), lint, and run the whole test suite on parallel workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
venv="${BIOSTREAM_VENV:-.venv}"
export QT_QPA_PLATFORM=offscreen
"$venv/bin/ruff" check .
# Parallel workers: most tests wait on real-time LSL streams, so three share two cores well (each worker starts
# its own local Ray). BIOSTREAM_TEST_WORKERS=0 runs the suite in one process.
"$venv/bin/python" -m pytest -ra --durations=15 -n "${BIOSTREAM_TEST_WORKERS:-3}" --dist loadgroup "$@"
