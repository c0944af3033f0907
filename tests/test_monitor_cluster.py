"""`biostream monitor --ray-address` on a two-node Ray cluster started here with `ray start`: a head that declares
a GPU (Ray's placement is by declared resources; with no real GPU the inference falls back to the CPU provider
and says so), and a worker node that says it sees the LSL streams (resource `lsl`). Stream actors must go to the
worker, the inference actor to the GPU node."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ray_start(args, env, log):
    # Its own process group: stopping the group stops every server the node started.
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus", "1", *args], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
            time.sleep(1.0)
        except subprocess.TimeoutExpired:
            continue


def _wait_for_nodes(address, env, n, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True, text=True)
        if done.stdout.count("node_") >= n:
            return
        time.sleep(1.0)
    raise AssertionError(f"the cluster never showed {n} nodes: {done.stdout} {done.stderr}")


def test_monitor_joins_a_two_node_cluster_and_places_actors(tmp_path, unique_id):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    env = dict(os.environ, RAY_AUTH_MODE="token")  # Ray's token auth, on for every node and the monitor
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    env.pop("BIOSTREAM_RAISE_STREAM_ERRORS", None)
    log = (tmp_path / "ray.log").open("w")
    head = _ray_start(["--head", "--port", str(port), "--include-dashboard=false", "--num-gpus", "1"], env, log)
    worker = None
    sim = None
    try:
        time.sleep(8.0)
        worker = _ray_start(["--address", address, "--resources", '{"lsl": 1}'], env, log)
        _wait_for_nodes(address, env, 2)
        sim = subprocess.Popen(
            [sys.executable, "-m", "biostream", "simulate", "--scenario", "stress", "--modalities", "ppg",
             "--duration", "60", "--name-suffix", f"-{unique_id}"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)
        done = subprocess.run(
            [sys.executable, "-m", "biostream", "monitor", "--bundle", "demo", "--stream",
             f"name=Sim BVP-{unique_id}", "--headless", "--json", "--duration", "14", "--ray-address", address],
            env=env, capture_output=True, text=True, timeout=120,
        )
    finally:
        for process in (sim,):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
        for node in (worker, head):
            if node is not None:
                _stop(node)
        log.close()
    assert done.returncode == 0, done.stderr + (tmp_path / "ray.log").read_text()[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    summary = lines[-1]
    assert summary["predictions"] >= 2 and len(lines) - 1 == summary["windows"]
    actors = {a["role"]: a for a in summary["actors"]}
    assert actors["stream"]["node_lsl"] and not actors["stream"]["node_gpus"]  # the node that sees the streams
    assert actors["inference"]["node_gpus"] == 1 and not actors["inference"]["node_lsl"]  # where the GPU is
    assert actors["inference"]["provider"] == "CPUExecutionProvider"  # declared, not real: CUDA is not asked for
    assert summary["provider"] == "CPUExecutionProvider"
