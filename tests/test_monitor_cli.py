"""`biostream monitor` as a user runs it: beside `biostream simulate`, twice at once, and on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from bridges.bundle import read_bundle

pytestmark = pytest.mark.slow

BIOSTREAM = [sys.executable, "-m", "biostream"]


def _env():
    env = dict(os.environ)
    env.pop("BIOSTREAM_RAISE_STREAM_ERRORS", None)
    return env


def _run(args, timeout_s=60.0):
    return subprocess.run(BIOSTREAM + args, capture_output=True, text=True, timeout=timeout_s, env=_env())


def test_two_monitors_beside_a_simulator_print_json_predictions_and_a_summary(unique_id):
    suffix = f"-{unique_id}"
    sim = subprocess.Popen(
        BIOSTREAM + ["simulate", "--scenario", "stress", "--modalities", "ecg,ppg", "--duration", "60",
                     "--name-suffix", suffix],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
    )
    monitor_args = ["monitor", "--bundle", "demo", "--stream", f"name=Sim BVP{suffix}", "--headless", "--json",
                    "--duration", "25", "--hop-s", "1"]
    try:
        time.sleep(1.0)
        monitors = [subprocess.Popen(BIOSTREAM + monitor_args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=_env()) for _ in range(2)]
        # Each monitor's prediction stream shows up once its Ray is up (seconds to tens of seconds, with load).
        prediction_streams: set[str] = set()
        while len(prediction_streams) < 2 and any(m.poll() is None for m in monitors):
            listing = _run(["streams", "--json", "--wait", "2"]).stdout
            prediction_streams |= {s["name"] for s in map(json.loads, listing.splitlines())
                                   if s["type"] == "Predictions" and suffix in s["name"]}
        outputs = [m.communicate(timeout=90) for m in monitors]
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    assert len(prediction_streams) == 2  # two monitors, two prediction streams, names that do not collide

    for monitor, (out, err) in zip(monitors, outputs):
        assert monitor.returncode == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        predictions, summary = lines[:-1], lines[-1]
        assert len(predictions) >= 14, err
        for p in predictions:
            assert {"stream", "t", "label", "probs", "latency_ms"} <= set(p)
            assert p["stream"] == f"Sim BVP{suffix}" and set(p["probs"]) == {"baseline", "stress", "amusement"}
        assert {"windows", "predictions", "rejected", "dropped", "restarts", "latency_p50_ms", "latency_p99_ms",
                "provider"} <= set(summary)
        assert summary["predictions"] == len(predictions) and summary["restarts"] == 0
        assert summary["provider"] == "CPUExecutionProvider"
        # Two Ray runtimes, a simulator and the suite's other workers share 2 cores here: a sanity bound. DESIGN's
        # 50 ms at 8 streams is measured by bench/streaming.py (bench/RESULTS.md).
        assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"] < 3000


def test_text_output_and_recording_from_the_command_line(tmp_path, unique_id):
    suffix = f"-{unique_id}"
    sim = subprocess.Popen(
        BIOSTREAM + ["simulate", "--scenario", "stress", "--modalities", "ppg", "--duration", "40",
                     "--name-suffix", suffix],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(),
    )
    try:
        time.sleep(1.0)
        path = tmp_path / "cli.xdf"
        done = _run(["monitor", "--bundle", "demo", "--stream", f"name=Sim BVP{suffix}", "--headless",
                     "--duration", "14", "--record", str(path)], timeout_s=90)
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(f"Sim BVP{suffix}  stress: " in line for line in lines)
    first = next(k for k, line in enumerate(lines) if line.startswith("summary: "))
    assert "latency (last sample -> prediction published): p50" in lines[first + 1]
    assert lines[first + 2].startswith(f"stream Sim BVP{suffix}: connected")
    assert lines[-1].startswith(f"recording: {path}") and path.stat().st_size > 1000


@pytest.mark.parametrize(
    "case", ["corrupt bundle", "mismatch", "string stream", "no stream", "unreachable ray", "bad record path"]
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, unique_id, case):
    import pylsl

    args = ["monitor", "--bundle", "demo", "--headless", "--duration", "5"]
    outlet = None
    if case == "corrupt bundle":
        bad = tmp_path / "bad.bxb"
        bad.write_bytes(read_bundle("demo").path.read_bytes()[:5000])
        args[2] = str(bad)
        expected = "not a bridge bundle"
    elif case == "mismatch":
        outlet = pylsl.StreamOutlet(pylsl.StreamInfo(f"ecg-{unique_id}", "ECG", 1, 130.0, "float32", unique_id))
        args += ["--stream", f"source_id={unique_id}"]
        expected = "its type 'ECG' is not PPG"
    elif case == "string stream":
        outlet = pylsl.StreamOutlet(pylsl.StreamInfo(f"mk-{unique_id}", "PPG", 1, 0.0, "string", unique_id))
        args += ["--stream", f"source_id={unique_id}"]
        expected = "is a string stream; a regular numeric stream is required"
    elif case == "no stream":
        args += ["--stream", f"name=nothing-{unique_id}"]
        expected = f"no LSL stream matches name='nothing-{unique_id}'"
    elif case == "unreachable ray":
        args += ["--stream", "type=PPG", "--ray-address", "127.0.0.1:9"]
        expected = "cannot reach the Ray cluster at 127.0.0.1:9"
    else:
        args += ["--stream", "type=PPG", "--record", str(tmp_path / "missing" / "x.xdf")]
        expected = "does not exist"
    started = time.monotonic()
    done = _run(args, timeout_s=90)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("biostream: error:")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    if case == "unreachable ray":
        assert time.monotonic() - started < 20
    del outlet


def test_demo_without_a_display_says_so_and_runs_headless_against_the_true_state():
    env = _env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run(BIOSTREAM + ["demo", "--duration", "25"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert done.returncode == 0, done.stderr
    assert "biostream demo: no display (DISPLAY and WAYLAND_DISPLAY are not set); running headless" in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("demo: a stress model trained on chest ECG, reading the PPG wristband")
    predicted = [line for line in lines[1:-1] if "truth:" in line]
    assert predicted and all(line.split()[2] in ("baseline", "stress", "amusement", "no") for line in predicted)
    fraction, n = lines[-1].removeprefix("agreement: ").split(" over ")
    assert n.endswith(" windows") and int(n.split()[0]) >= 3
    # The first 25 s of the demo wearer are baseline; the shipped model gets most of them right.
    assert float(fraction) >= 0.5


def test_gui_without_a_display_is_one_line_and_exit_code_2():
    env = _env()
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run(BIOSTREAM + ["gui"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2
    assert "the desktop app needs a display (DISPLAY or WAYLAND_DISPLAY is not set)" in done.stderr
    assert "Traceback" not in done.stderr
