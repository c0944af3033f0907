#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh) and run the main job: `biostream demo`, the embedded default — a
# simulated wearer (chest-strap ECG, PPG wristband, stress states changing about every minute) and the shipped
# demo bundle (a stress model trained on chest ECG, bridged to the wristband's PPG) running live. With a display
# it opens the desktop window (close it to finish; DURATION_S closes it after that many seconds); without one it
# runs headless for DURATION_S (default 120) seconds, printing predictions against the true state and ending with
# `agreement: <fraction> over <n> windows`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
venv="${BIOSTREAM_VENV:-.venv}"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    exec "$venv/bin/biostream" demo ${DURATION_S:+--duration "$DURATION_S"}
fi
exec "$venv/bin/biostream" demo --duration "${DURATION_S:-120}"
