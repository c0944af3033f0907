#!/usr/bin/env bash
# The README's picture: the real demo window after SECONDS (default 75) of a real demo run, under a virtual display
# (Xvfb), saved to docs/demo-window.png. Needs xvfb-run (Debian/Ubuntu: apt-get install xvfb) and the set-up of
# scripts/bootstrap.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BIOSTREAM_VENV:-.venv}"
command -v xvfb-run >/dev/null || { echo "screenshot.sh: xvfb-run not found (apt-get install xvfb)" >&2; exit 2; }
xvfb-run -a -s "-screen 0 1600x1000x24" "$venv/bin/python" -m ui.screenshot --seconds "${SECONDS_S:-75}" \
    --span "${SPAN_S:-30}" --out "${OUT:-docs/demo-window.png}"
