#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh) and run the main job: a live simulated stress session (an ECG
# chest strap and a PPG wristband; baseline, then stress from about 30 s) monitored with the shipped demo bundle,
# a stress model trained on chest ECG bridged to the wristband's PPG. Predictions print one per line, then a
# summary; the session (raw streams, predictions, true states) is recorded to out/session.xdf.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
venv="${BIOSTREAM_VENV:-.venv}"
bs="$venv/bin/biostream"
out="${OUT_DIR:-out}"
mkdir -p "$out"
duration="${DURATION_S:-60}"
"$bs" simulate --scenario stress --modalities ecg,ppg --duration "$((duration + 15))" --seed 12 --dwell-scale 0.3 \
    --name-suffix "-run" &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
sleep 3
"$bs" streams --wait 2
"$bs" monitor --bundle demo --stream "name=Sim BVP-run" --headless --duration "$duration" --record "$out/session.xdf"
