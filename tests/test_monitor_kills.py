"""Processes killed outright (SIGKILL: no cleanup, as the OOM killer or a crash would), with real LSL, Ray, ONNX
Runtime and files: the publishers (`biostream simulate`, `biostream replay`) under a running monitor, and the
monitor itself while it records. Killed actors are covered in test_monitor_faults.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import psutil
import pylsl
import pytest
import pyxdf
from _publisher import Publisher
from _watch import collect, events_of, predictions, wait_health

from biostream.runtime.session import MonitorSession
from devices.formats import read_recording, write_xdf
from devices.simulate import simulate_session

pytestmark = [pytest.mark.slow]
BIOSTREAM = [sys.executable, "-m", "biostream"]


def _start(args, **kwargs):
    return subprocess.Popen(BIOSTREAM + args, start_new_session=True, **kwargs)


def _kill_group(process):
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


@pytest.mark.usefixtures("ray_runtime")
def test_killed_simulator_and_replay_processes_are_reported_lost_and_the_rest_goes_on(tmp_path, unique_id):
    write_xdf(tmp_path / "session.xdf", simulate_session("stress", ["ppg"], duration_s=120.0, seed=14))
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    publishers = {
        "sim": _start(["simulate", "--scenario", "stress", "--modalities", "ppg", "--name-suffix",
                       f"-sim-{unique_id}"], **quiet),
        "rep": _start(["replay", str(tmp_path / "session.xdf"), "--name-suffix", f"-rep-{unique_id}"], **quiet),
    }
    staying = Publisher(f"stay-{unique_id}", f"stay-{unique_id}", seed=15).start()
    try:
        with MonitorSession(lost_after_s=2.0) as session:
            subscription = session.subscribe()
            keys = {which: session.add_stream(f"name=Sim BVP-{which}-{unique_id}", timeout_s=20.0)
                    for which in publishers}
            stay = session.add_stream(f"source_id=stay-{unique_id}", bundle="demo", hop_s=1.0)
            assert predictions(collect(subscription, 20.0, until=lambda item: item[0] == "prediction"))
            for key in keys.values():
                wait_health(session, key, lambda h: h.samples > 64)
            for which, process in publishers.items():
                process.send_signal(signal.SIGKILL)  # the publisher alone, as a crash would take it
                process.wait(timeout=10)
                killed_at = pylsl.local_clock()
                items = collect(subscription, 10.0, until=lambda item, k=keys[which]: item[0] == "event"
                                and item[1].kind == "lost" and item[1].stream == k)
                assert [e.stream for e in events_of(items, "disconnect")] == [keys[which]]
                (lost,) = events_of(items, "lost")
                assert lost.level == "error" and lost.at_s - killed_at < 5.0
                health = wait_health(session, keys[which], lambda h: h.state == "lost")
                assert health.level == "red" and "lost" in health.message
            # The stream nobody killed: predictions all along.
            later = [p for p in predictions(collect(subscription, 3.0)) if p.stream == stay]
            assert later and all(p.ok for p in later) and session.health[stay].level == "green"
            summary = session.stop()
    finally:
        staying.stop()
        for process in publishers.values():
            _kill_group(process)
    assert summary["restarts"] == 0 and summary["errors"] == 0


def _alive(pids):
    """Command names of the processes among ``pids`` still running, Ray's node agents left out."""
    alive = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            name = " ".join(process.cmdline()[:1])
            if process.status() != psutil.STATUS_ZOMBIE and not name.endswith(("DashboardAgent", "RuntimeEnvAgent")):
                alive.append(name)
        except psutil.Error:
            pass
    return alive


def _lines(stream, into):
    for line in stream:
        into.put(line)


def test_a_monitor_killed_while_recording_leaves_a_readable_file_and_no_processes(tmp_path, unique_id):
    publisher = Publisher(f"kill-{unique_id}", f"kill-{unique_id}", seed=16).start()
    path = tmp_path / "session.xdf"
    monitor = _start(["monitor", "--bundle", "demo", "--stream", f"source_id=kill-{unique_id}", "--headless",
                      "--json", "--hop-s", "1", "--record", str(path)],
                     stdout=subprocess.PIPE, stderr=(tmp_path / "stderr.txt").open("w"), text=True,
                     env={k: v for k, v in os.environ.items() if k != "BIOSTREAM_RAISE_STREAM_ERRORS"})
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(monitor.stdout, lines), daemon=True).start()
    try:
        made, deadline = [], time.monotonic() + 60.0
        while len(made) < 3 and time.monotonic() < deadline:
            try:
                record = json.loads(lines.get(timeout=1.0))
            except queue.Empty:
                continue
            if "probs" in record:
                made.append(record)
        assert len(made) == 3, (tmp_path / "stderr.txt").read_text()[-2000:]
        family = [monitor.pid] + [p.pid for p in psutil.Process(monitor.pid).children(recursive=True)]
        monitor.send_signal(signal.SIGKILL)
        killed_at = pylsl.local_clock()
        monitor.wait(timeout=10)
    finally:
        publisher.stop()
    # Everything the monitor started (Ray's servers, the actors, the recorder) goes with it, soon. Ray's two
    # node agents are the exception: they outlive a killed raylet by the 60 s they spend trying to tell the
    # (dead) GCS, then exit by themselves (ray/_private/process_watcher.py).
    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline and (left := _alive(family)):
        time.sleep(0.5)
    assert not left, left
    # The file holds everything up to the last flush (a quarter second before the kill, plus transport; the
    # recorder, in a Ray worker, may outlive the driver by a moment and write a little more).
    recording = read_recording(path)
    raw = recording.stream(f"kill-{unique_id}")
    assert killed_at - 1.5 < raw.timestamps[-1] < killed_at + 2.0
    assert raw.timestamps[-1] - raw.timestamps[0] > 10.0
    (ours,) = [s for s in recording.streams if s.type == "Predictions" or "prediction" in s.name.lower()]
    assert len(ours.timestamps) >= 3
    streams, _ = pyxdf.load_xdf(str(path))
    assert {s["info"]["name"][0] for s in streams} >= {f"kill-{unique_id}", ours.name}
