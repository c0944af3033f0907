"""Streaming runtime: latency, scale, CPU, memory and processes vs stream count; ONNX Runtime vs torch eager.

Part 1, the runtime at scale. A publisher process opens N wristband PPG outlets (64 Hz, 1 channel, a simulated
recording each) and pushes them at real time in 40-ms steps, logging when each step's push started. Streams
start spread over one hop, as independent devices do (``--aligned-count N`` also runs N streams started at
once, so every window of every stream is due in the same instant: the worst case). A
``MonitorSession`` (real Ray, real ONNX Runtime) runs the shipped demo bundle on every stream with a 1-s hop.
For each N we report, over the measured span after the first windows:

* latency: a window's last sample pushed → its prediction published on LSL (p50/p99), from the publisher's push
  log (the start of the push loop that carried the sample: an upper bound by at most the loop's own length) and
  the runtime's publish times;
* whether real time was kept: windows made vs expected, windows dropped, and the lag trend (p50 latency of the
  last third minus the first third; growing lag means falling behind);
* CPU of every process (publisher, driver, each actor, Ray's own servers) as % of one core, resident memory and
  its growth from the first to the last third, and the process count.

Part 2, the bridged pipeline alone: the demo bundle's architecture (same FMs, layers, bridge) in torch eager vs
its ONNX export in ONNX Runtime, CPU, one thread, batch 1 and batch 32, as a ratio.

Run: python bench/streaming.py [--counts 1,8,50,200] [--duration-s 60] [--long-count 200 --long-duration-s 300]
     [--skip-onnx] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LSLAPICFG", str(Path(__file__).resolve().parents[1] / "tests" / "lsl_api.cfg"))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

RATE_HZ, STEP_S, HOP_S = 64.0, 0.04, 1.0


# ---------------------------------------------------------------------------------------------- publisher
def stream_offset_s(k: int, n_streams: int, aligned: bool) -> float:
    """When stream ``k`` starts after the publisher's t0: spread over one hop (independent devices), or all at 0."""
    return 0.0 if aligned else HOP_S * k / n_streams


def publish(tag: str, n_streams: int, duration_s: float, aligned: bool, log_path: str, ready, go) -> None:
    """Child process: N PPG outlets; after ``go``, push at real time in 40-ms steps; log each step's start.

    Stream ``k`` starts :func:`stream_offset_s` after t0. Each push gives liblsl the last sample's stamp only (its
    fast path); liblsl stamps the others back from the nominal rate, so the stamps are exactly regular, as with a
    clocked device.
    """
    import pylsl

    from devices.lsl_meta import make_stream_info
    from devices.simulate import simulate_session

    signal = simulate_session("stress", ["ppg"], duration_s=120.0, seed=7).stream("PPG").data.astype(np.float32)
    outlets = [
        pylsl.StreamOutlet(make_stream_info(f"bench-{tag}-{k}", "PPG", RATE_HZ, ["BVP"], ["a.u."],
                                            source_id=f"bench-{tag}-{k}"))
        for k in range(n_streams)
    ]
    offsets = [stream_offset_s(k, n_streams, aligned) for k in range(n_streams)]
    starts = np.random.default_rng(0).integers(0, len(signal) - 4096, n_streams)
    sent = [0] * n_streams
    ready.set()
    go.wait()
    t0 = pylsl.local_clock()
    log = [t0]
    while True:
        now = pylsl.local_clock()
        if now - t0 > duration_s:
            break
        log.append(now)
        for k, outlet in enumerate(outlets):
            due = max(0, int((now - t0 - offsets[k]) * RATE_HZ))
            if due > sent[k]:
                j = (starts[k] + sent[k]) % (len(signal) - 4096)
                outlet.push_chunk(signal[j : j + due - sent[k]], timestamp=t0 + offsets[k] + (due - 1) / RATE_HZ)
                sent[k] = due
        time.sleep(max(0.0, STEP_S - (pylsl.local_clock() - now)))
    np.save(log_path, np.asarray(log, dtype=np.float64))


# ---------------------------------------------------------------------------------------------- one stream count
def run_count(n_streams: int, duration_s: float, warmup_s: float, aligned: bool = False) -> dict:
    import pylsl

    from bench._processes import Meter, session_processes
    from biostream.lsl import list_streams
    from biostream.runtime.session import MonitorSession

    tag = uuid.uuid4().hex[:8]
    ctx = mp.get_context("spawn")
    ready, go = ctx.Event(), ctx.Event()
    log_path = f"/tmp/bench-streaming-{tag}.npy"
    total_s = warmup_s + duration_s
    publisher = ctx.Process(target=publish, args=(tag, n_streams, total_s + 5.0, aligned, log_path, ready, go),
                            daemon=True)
    publisher.start()
    ready.wait(120)
    deadline = time.monotonic() + 30
    found = []
    while len(found) < n_streams and time.monotonic() < deadline:
        found = [d for d in list_streams(2.0) if d.name.startswith(f"bench-{tag}-")]
    assert len(found) == n_streams, f"{len(found)} of {n_streams} outlets visible"
    session = MonitorSession().start()
    subscription = session.subscribe(maxsize=100_000)
    from concurrent.futures import ThreadPoolExecutor

    t_setup = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        keys = list(pool.map(lambda d: session.add_stream(d, bundle="demo", hop_s=HOP_S, timeout_s=30.0), found))
    setup_s = time.monotonic() - t_setup
    actors = session.actors()
    groups = session_processes(session, publisher.pid)
    records = []  # compact (stream, window end, published, ok, dropped, stage ms): the bench keeps no objects

    def take() -> None:
        for kind, p in subscription.get_all():
            if kind == "prediction":
                stages = p.latency.breakdown_ms() if p.ok else None
                records.append((p.stream, p.t_end, p.latency.published_s, p.ok, "dropped" in p.codes, stages))

    go.set()
    t_go = pylsl.local_clock()
    warm_end = time.monotonic() + warmup_s
    while time.monotonic() < warm_end:
        time.sleep(1.0)
        take()
    records.clear()
    meter = Meter(groups)
    t_measure = pylsl.local_clock()
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        meter.sample()
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
        take()
    cpu = meter.cpu_percent()
    t_end = pylsl.local_clock()
    take()
    summary = session.stop()
    publisher.join(timeout=30)
    log = np.load(log_path)
    os.unlink(log_path)

    predictions = [r for r in records if t_measure <= r[2] <= t_end]
    t0, loops = log[0], log[1:]
    index_of = {key: int(session.streams[key].description.name.rsplit("-", 1)[1]) for key in keys}
    latency = []
    for stream, window_end, published, _, _, _ in predictions:
        offset = stream_offset_s(index_of[stream], n_streams, aligned)
        last = round((window_end - t0 - offset) * RATE_HZ)  # the window's last sample index in its stream
        due = np.floor((loops - t0 - offset) * RATE_HZ)
        step = int(np.searchsorted(due, last, side="right"))  # the first push loop that carried it
        if step < len(loops):
            latency.append(1e3 * (published - loops[step]))
    latency = np.asarray(latency)
    thirds = np.array_split(latency, 3) if len(latency) >= 3 else [latency] * 3
    expected = n_streams * duration_s / HOP_S
    rss = meter.rss
    stages = {k: round(float(np.median([r[5][k] for r in predictions if r[3]])), 1)
              for k in ("transport", "windowing", "inference", "publish")} if predictions else {}
    return {
        "streams": n_streams,
        "aligned": aligned,
        "stages_median_ms": stages,
        "setup_s": round(setup_s, 1),
        "windows": len(predictions),
        "expected": int(expected),
        "ok": sum(r[3] for r in predictions),
        "dropped": sum(r[4] for r in predictions),
        "latency_p50_ms": float(np.percentile(latency, 50)) if len(latency) else None,
        "latency_p99_ms": float(np.percentile(latency, 99)) if len(latency) else None,
        "lag_trend_ms": float(np.median(thirds[-1]) - np.median(thirds[0])) if len(latency) else None,
        "cpu_percent": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_total_percent": round(sum(cpu.values()), 1),
        "rss_mib_start": {k: round(v, 1) for k, v in rss[0].items()},
        "rss_mib_end": {k: round(v, 1) for k, v in rss[-1].items()},
        "rss_growth_pct": round(100.0 * (sum(rss[-1].values()) / sum(rss[len(rss) // 3].values()) - 1.0), 2),
        "processes": {k: len(v) for k, v in groups.items()},
        "actor_processes": sum(1 for a in actors),
        "restarts": summary["restarts"],
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "t_go": t_go,
    }


# ---------------------------------------------------------------------------------------------- ORT vs torch
def onnx_vs_torch(repeats: int = 200) -> list[dict]:
    """The demo bundle's bridged architecture in torch eager vs its ONNX export in ONNX Runtime (1 thread)."""
    import torch

    from bridges.bridge import BridgeConfig, PrototypeBridge
    from bridges.bundle import read_bundle
    from bridges.export import export_onnx
    from bridges.models import BridgedModel, make_head
    from bridges.ort_session import open_session
    from bridges.recipes.demo import CONFIG
    from bridges.workflow import TransferRun

    torch.set_num_threads(1)
    torch.manual_seed(0)
    prov = read_bundle("demo").manifest.provenance
    run = TransferRun(CONFIG)
    new_fm, new_pre = run.build_fm_and_preprocess("new")
    old_fm, _ = run.build_fm_and_preprocess("old")
    b = prov.bridge
    bridge = PrototypeBridge(BridgeConfig(b.d_in, b.n_tokens, b.d_out, b.rank, b.n_prototypes, init="rand_P"))
    head = make_head(b.d_out, 3)
    model = BridgedModel(new_pre, new_fm, bridge, old_fm, head, i=prov.layer_i, j=prov.layer_j).eval()
    spec = read_bundle("demo").manifest.input
    session = open_session(export_onnx(model, torch.zeros(2, spec.n_channels, spec.n_samples)), device="cpu",
                           threads=1).session
    rows = []
    for batch in (1, 32):
        x = torch.randn(batch, spec.n_channels, spec.n_samples)
        xn = x.numpy()
        n = max(10, repeats // batch)
        with torch.no_grad():
            for _ in range(3):
                model(x)
                session.run(None, {"window": xn})
            t = time.perf_counter()
            for _ in range(n):
                model(x)
            torch_ms = 1e3 * (time.perf_counter() - t) / (n * batch)
        t = time.perf_counter()
        for _ in range(n):
            session.run(None, {"window": xn})
        ort_ms = 1e3 * (time.perf_counter() - t) / (n * batch)
        rows.append({"batch": batch, "torch_ms_per_window": torch_ms, "ort_ms_per_window": ort_ms,
                     "speedup": torch_ms / ort_ms})
    return rows


# ---------------------------------------------------------------------------------------------- main
def _print_scale(rows: list[dict]) -> None:
    print("| streams | windows / expected | dropped | latency p50 / p99 ms | lag trend ms | CPU % (total: publisher, "
          "driver, stream actors, inference, Ray servers) | RSS MiB end (growth) | processes (actors) | setup s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["cpu_percent"]
        parts = ", ".join(f"{c.get(k, 0.0):.0f}" for k in ("publisher", "driver", "stream actors",
                                                          "inference actors", "ray servers"))
        rss = sum(r["rss_mib_end"].values())
        procs = sum(r["processes"].values())
        label = f"{r['streams']}" + (" (all aligned)" if r["aligned"] else "") + (
            f" ({r['duration_s'] / 60:.0f} min)" if r["duration_s"] >= 120 else "")
        print(f"| {label} | {r['windows']} / {r['expected']} | {r['dropped']} | {r['latency_p50_ms']:.1f} / "
              f"{r['latency_p99_ms']:.1f} | {r['lag_trend_ms']:+.1f} | {r['cpu_total_percent']:.0f} ({parts}) | "
              f"{rss:.0f} ({r['rss_growth_pct']:+.1f}%) | {procs} ({r['actor_processes']}) | {r['setup_s']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,8,50,200")
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--warmup-s", type=float, default=15.0)
    parser.add_argument("--long-count", type=int, default=0, help="also run this many streams for --long-duration-s")
    parser.add_argument("--long-duration-s", type=float, default=300.0)
    parser.add_argument("--aligned-count", type=int, default=0,
                        help="also run this many streams all starting at once (every window due together)")
    parser.add_argument("--skip-onnx", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from bench._common import machine
    from biostream.runtime import cluster

    print(f"machine: {machine()}")
    cluster.connect(None)
    results: dict = {"scale": [], "aligned": None, "long": None, "onnx_vs_torch": None, "machine": machine()}
    for n in [int(c) for c in args.counts.split(",") if c]:
        row = run_count(n, args.duration_s, args.warmup_s)
        results["scale"].append(row)
        print(json.dumps({k: row[k] for k in ("streams", "windows", "expected", "latency_p50_ms",
                                              "latency_p99_ms", "cpu_total_percent", "stages_median_ms")}),
              flush=True)
    if args.aligned_count:
        results["aligned"] = run_count(args.aligned_count, args.duration_s, args.warmup_s, aligned=True)
    if args.long_count:
        results["long"] = run_count(args.long_count, args.long_duration_s, args.warmup_s)
    print("\nStreaming (demo bundle, PPG 64 Hz, hop 1 s; latency = last sample pushed -> prediction published):\n")
    _print_scale(results["scale"] + [results[k] for k in ("aligned", "long") if results.get(k)])
    if not args.skip_onnx:
        results["onnx_vs_torch"] = onnx_vs_torch()
        print("\nBridged pipeline (demo architecture), CPU, 1 thread:\n")
        print("| batch | torch eager ms/window | ONNX Runtime ms/window | ORT speed-up |")
        print("|---|---|---|---|")
        for r in results["onnx_vs_torch"]:
            print(f"| {r['batch']} | {r['torch_ms_per_window']:.3f} | {r['ort_ms_per_window']:.3f} | "
                  f"{r['speedup']:.2f}× |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
