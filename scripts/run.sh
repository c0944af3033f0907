#!/usr/bin/env bash
# Set up the environment (scripts/bootstrap.sh) and run the main job: a live simulated stress session (ECG chest
# strap, PPG wristband, EEG headband, respiration) published over LSL, listed by `biostream streams`, recorded
# for a few seconds, then the shipped pyedflib EDF test recording replayed as live streams.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
venv="${BIOSTREAM_VENV:-.venv}"
bs="$venv/bin/biostream"
"$bs" simulate --scenario stress --modalities ecg,ppg,eeg,resp --duration "${DURATION_S:-20}" --seed 1 &
sim=$!
sleep 3
"$bs" streams --wait 2
edf=$("$venv/bin/python" -c 'import pyedflib, pathlib; print(pathlib.Path(pyedflib.__file__).parent / "data" / "test_generator.edf")')
"$bs" replay "$edf" --duration 10
wait "$sim"
