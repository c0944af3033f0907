"""The soak benchmark's short version: eight streams of mixed rates and layouts (and a marker stream) monitored
with three bundles and recorded to XDF for 60 s at real time, by `python bench/soak.py --duration-s 60 --json`
as a script would run it. Nothing may be lost or missing; the JSON keys scripts depend on must be there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_a_60_second_soak_loses_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration-s", "60", "--json", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=480, cwd=ROOT,  # 60 s of soak, setup, load
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    tables = done.stdout[-4000:]  # the report's tables and rate lines, for a failure's message
    assert {"lost_samples", "missing_predictions", "rss_growth_pct", "max_lag_s"} <= set(report)
    assert report["lost_samples"] == 0, tables
    assert report["missing_predictions"] == 0, tables
    assert [r["stream"] for r in report["samples"]] == ["ECG", "PPG", "EEG4", "EEG8", "EMG", "ACC", "Resp", "Markers"]
    assert all(r["pushed"] > 0 and r["recorded_pyxdf"] == r["recorded"] for r in report["samples"])
    assert {w["stream"] for w in report["windows"]} == {"ECG", "PPG", "EEG8"}
    assert all(w["predictions"] > 0 for w in report["windows"])
    assert report["max_lag_s"] < 5.0 and report["restarts"] == 0 and report["errors"] == 0, tables
    assert (tmp_path / "soak.xdf").stat().st_size > 1_000_000
