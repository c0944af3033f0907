"""LSL ingestion cost: our numpy path (StreamReader.pull) vs pylsl's list path, on real loopback LSL.

Two modes, both over the same stream sets — (a) one stream 64 ch x 1 kHz, (b) 8 streams x 250 Hz x 4 ch:

* real time: outlets in a separate process push at the nominal rate (10 ms chunks) for --duration s; the
  reader polls every --poll-ms and we report the reader process's CPU time (time.process_time) per second of
  data: the CPU it costs to keep up.
* throughput: the outlet process pushes --samples samples per stream as fast as it can; once they sit in the
  inlets' buffers, we time draining them (wall and CPU) and report samples/s.

Paths: "numpy" = biostream StreamReader.pull() (pull_chunk into a preallocated buffer, copy, clock correction,
dejitter, gap checks, NaN count); "raw-np" = bare inlet.pull_chunk(dest_obj=buf) (no bookkeeping);
"list" = inlet.pull_chunk() returning Python lists, converted to numpy arrays (values and timestamps) as any
consumer that windows or filters them must do: the pull mechanism itself compared, without our bookkeeping.

Run: python bench/ingest.py [--duration 10] [--samples 100000] [--poll-ms 20]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import shlex
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LSLAPICFG", str(Path(__file__).resolve().parents[1] / "tests" / "lsl_api.cfg"))

import pylsl  # noqa: E402

from biostream.lsl import StreamReader  # noqa: E402

SCENARIOS = {"1 x 64ch @ 1 kHz": (1, 64, 1000.0), "8 x 4ch @ 250 Hz": (8, 4, 250.0)}
PATHS = ("numpy", "raw-np", "list")
# Inlet queue, s: must hold all of --samples at the lowest rate (liblsl drops the oldest beyond it).
BUFLEN_S = 3600


def _pusher(tag, n_streams, n_ch, rate, mode, duration_s, n_samples, ready, go, done, finished):
    """Child process: create outlets, wait for `go`, push in real time or as fast as possible."""
    outlets = [
        pylsl.StreamOutlet(pylsl.StreamInfo(f"bench-{tag}-{k}", "EEG", n_ch, rate, pylsl.cf_float32, f"{tag}-{k}"))
        for k in range(n_streams)
    ]
    ready.set()
    go.wait()
    rng = np.random.default_rng(0)
    if mode == "realtime":
        step = max(1, int(rate * 0.01))
        block = rng.standard_normal((step, n_ch)).astype(np.float32)
        t_start = time.perf_counter()
        sent = 0
        while sent < duration_s * rate:
            for o in outlets:
                o.push_chunk(block)
            sent += step
            time.sleep(max(0.0, t_start + sent / rate - time.perf_counter()))
    else:
        # Explicit, regular timestamps: liblsl's default stamps each chunk "now" and back-dates its samples at
        # the nominal rate, which for chunks pushed faster than real time would look like clock jumps.
        block = rng.standard_normal((1000, n_ch)).astype(np.float32)
        t0 = pylsl.local_clock() - n_samples / rate
        for i in range(n_samples // 1000):
            for o in outlets:
                o.push_chunk(block, timestamp=t0 + ((i + 1) * 1000 - 1) / rate)
    done.set()
    finished.wait(120)  # keep outlets alive until the reader has drained them


def _open(tag, n_streams, path):
    if path == "numpy":
        return [StreamReader(f"source_id={tag}-{k}", max_buflen_s=BUFLEN_S).connect(10.0) for k in range(n_streams)]
    inlets = []
    for k in range(n_streams):
        info = pylsl.resolve_byprop("source_id", f"{tag}-{k}", 1, 10.0)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=BUFLEN_S, recover=False)
        inlet.open_stream(10.0)
        inlets.append((inlet, np.empty((65536, info.channel_count()), np.float32)))
    return inlets


def _pull_all(handles, path):
    got = 0
    for h in handles:
        if path == "numpy":
            chunk = h.pull()
            got += chunk.n_samples if chunk is not None else 0
        elif path == "raw-np":
            inlet, buf = h
            _, ts = inlet.pull_chunk(timeout=0.0, max_samples=buf.shape[0], dest_obj=buf)
            got += len(ts)
        else:
            values, ts = h[0].pull_chunk(timeout=0.0, max_samples=65536)
            if ts:
                np.asarray(values, dtype=np.float32)
                np.asarray(ts, dtype=np.float64)
            got += len(ts)
    return got


def run_case(n_streams, n_ch, rate, path, mode, args):
    tag = uuid.uuid4().hex[:8]
    ctx = mp.get_context("spawn")
    ready, go, done, finished = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Event()
    proc = ctx.Process(
        target=_pusher, args=(tag, n_streams, n_ch, rate, mode, args.duration, args.samples, ready, go, done, finished)
    )
    proc.start()
    ready.wait(30)
    handles = _open(tag, n_streams, path)
    time.sleep(0.5)
    expected = n_streams * (int(args.duration * rate) if mode == "realtime" else (args.samples // 1000) * 1000)
    got = 0
    if mode == "realtime":
        go.set()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while got < expected and time.perf_counter() - wall0 < args.duration + 5:
            got += _pull_all(handles, path)
            time.sleep(args.poll_ms / 1000)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    else:
        go.set()
        done.wait(120)
        time.sleep(1.0)  # let the last pushes reach the inlets' buffers
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while got < expected and time.perf_counter() - wall0 < 20:
            got += _pull_all(handles, path)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finished.set()
    proc.join(10)
    if proc.is_alive():
        proc.terminate()
    return {"got": got, "expected": expected, "cpu": cpu, "wall": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="real-time push duration per case, s")
    parser.add_argument("--samples", type=int, default=100_000, help="samples per stream in throughput mode")
    parser.add_argument("--poll-ms", type=float, default=20.0, help="reader poll interval in real-time mode, ms")
    parser.add_argument("--mode", choices=["both", "realtime", "throughput"], default="both")
    args = parser.parse_args()

    print("command:", shlex.join([sys.executable, *sys.argv]))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} cores={cores} "
        f"(os.cpu_count={os.cpu_count()}), Python {platform.python_version()}, numpy {np.__version__}, "
        f"pylsl {pylsl.__version__}, liblsl {pylsl.library_version()}"
    )
    modes = ["realtime", "throughput"] if args.mode == "both" else [args.mode]
    for mode in modes:
        if mode == "realtime":
            print(
                f"\nreal time: {args.duration:g} s pushed at the nominal rate, reader polls every {args.poll_ms:g} ms"
            )
            print(
                f"{'scenario':<18} {'path':<7} {'samples':>9} {'CPU s':>7} {'CPU %':>6} {'CPU us/sample':>14}", end=""
            )
            print(f" {'list/this':>10}")
        else:
            print(f"\nthroughput: {args.samples} samples per stream pre-buffered, then drained as fast as possible")
            print(f"{'scenario':<18} {'path':<7} {'samples':>9} {'wall s':>7} {'Msamples/s':>11} {'CPU s':>7}", end="")
            print(f" {'list/this':>10}")
        for label, (n_streams, n_ch, rate) in SCENARIOS.items():
            results = {path: run_case(n_streams, n_ch, rate, path, mode, args) for path in PATHS}
            base = results["list"]
            for path in PATHS:
                r = results[path]
                flag = "" if r["got"] == r["expected"] else f"  (got {r['got']} of {r['expected']})"
                if mode == "realtime":
                    ratio = base["cpu"] / r["cpu"] if r["cpu"] > 0 else float("nan")
                    print(
                        f"{label:<18} {path:<7} {r['got']:>9} {r['cpu']:>7.3f} {100 * r['cpu'] / r['wall']:>6.1f} "
                        f"{1e6 * r['cpu'] / max(r['got'], 1):>14.3f} {ratio:>10.1f}{flag}"
                    )
                else:
                    ratio = base["wall"] / r["wall"] if r["wall"] > 0 else float("nan")
                    print(
                        f"{label:<18} {path:<7} {r['got']:>9} {r['wall']:>7.3f} {r['got'] / r['wall'] / 1e6:>11.2f} "
                        f"{r['cpu']:>7.3f} {ratio:>10.1f}{flag}"
                    )
    print("\nlist/this: how many times more CPU (real time) or wall time (throughput) the list path takes.")


if __name__ == "__main__":
    main()
