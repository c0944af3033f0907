"""Soak: eight streams of mixed rates and layouts monitored and recorded at real time for minutes.

A publisher process opens eight LSL outlets, the kinds a lab mixes: ECG 130 Hz, PPG 64 Hz, EEG 4 × 256 Hz,
EEG 8 × 250 Hz, EMG 2 × 1 kHz, ACC 3 × 32 Hz, respiration 50 Hz and a string marker stream (a state every 5 s).
Once everything listens it pushes at real time in 40-ms steps, each sample stamped ``t0 + k / rate``. A
``MonitorSession`` (real Ray, real ONNX Runtime) monitors all seven signal streams, runs a bundle on the three a
bundle fits (the shipped demo bundle on PPG; untrained bundles of the real pipeline at small FM sizes on ECG and on
four of the eight EEG channels: they cost what a model costs, their predictions mean nothing), and records the
session to XDF. At the end it compares:

* samples pushed vs samples in the XDF, per stream (read back with biostream's reader and with pyxdf): ``lost``;
* windows expected on each model stream (those ending at least 2 s before its last sample) vs windows with an
  outcome (a prediction, or "no prediction" rejected / dropped with its reason): ``missing``;
* resident memory of every process over time (publisher, driver, stream actors, inference actors, recorder, Ray's
  servers), and its growth after warm-up (the first fifth of the run, at most 2 minutes);
* lag (a window's last sample → its prediction published) over time, and CPU of every process.

Run: python bench/soak.py [--duration-s 600] [--json] [--figure bench/figures/soak.png]
With ``--json`` the last line printed is one JSON object holding at least ``lost_samples``,
``missing_predictions``, ``rss_growth_pct`` and ``max_lag_s``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LSLAPICFG", str(Path(__file__).resolve().parents[1] / "tests" / "lsl_api.cfg"))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

STEP_S = 0.04
MARKER_EVERY_S = 5.0
LAG_WINDOW_S = 5.0  # lag over time: the predictions of this last span (s) at each sample (hops are 2 s)
MARGIN_S = 2.0  # windows ending this close to a stream's last sample may still be in flight when it stops
CYTON = ("Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2")
EEG_MODEL_CHANNELS = ("C3", "C4", "O1", "O2")


@dataclass(frozen=True)
class SoakStream:
    """One outlet of the soak: name suffix, LSL type, rate (Hz; 0 = irregular), channel labels, unit, bundle."""

    name: str
    lsl_type: str
    sfreq_hz: float
    channels: tuple[str, ...]
    unit: str
    bundle: str = ""


STREAMS = (
    SoakStream("ECG", "ECG", 130.0, ("ECG",), "uV", bundle="ecg"),
    SoakStream("PPG", "PPG", 64.0, ("BVP",), "a.u.", bundle="demo"),
    SoakStream("EEG4", "EEG", 256.0, ("TP9", "AF7", "AF8", "TP10"), "uV"),
    SoakStream("EEG8", "EEG", 250.0, CYTON, "uV", bundle="eeg"),
    SoakStream("EMG", "EMG", 1000.0, ("EMG1", "EMG2"), "uV"),
    SoakStream("ACC", "ACC", 32.0, ("X", "Y", "Z"), "g"),
    SoakStream("Resp", "Resp", 50.0, ("Resp",), "a.u."),
    SoakStream("Markers", "Markers", 0.0, ("state",), ""),
)


def stream_name(tag: str, stream: SoakStream) -> str:
    return f"soak-{tag} {stream.name}"


# ---------------------------------------------------------------------------------------------- publisher
def _signals(seconds: float = 120.0) -> dict[str, np.ndarray]:
    """A loop of samples per signal stream, ``(n, channels)`` float32: simulated ECG and PPG, noise + rhythms else."""
    from devices.simulate import simulate_session

    simulated = simulate_session("stress", ["ecg", "ppg"], duration_s=seconds, seed=11)
    rng = np.random.default_rng(12)
    out = {"ECG": simulated.stream("ECG").data, "PPG": simulated.stream("PPG").data}
    for s in STREAMS:
        if s.name not in out and s.sfreq_hz > 0:
            t = np.arange(int(seconds * s.sfreq_hz))[:, None] / s.sfreq_hz
            rhythm = np.sin(2 * np.pi * (1.0 + np.arange(len(s.channels))) * t)
            scale = 20.0 if s.unit == "uV" else 1.0
            out[s.name] = scale * (rhythm + 0.5 * rng.standard_normal(rhythm.shape))
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def publish(tag: str, duration_s: float, ready, go, result) -> None:
    """Child process: open the outlets, set ``ready``; after ``go``, push at real time for ``duration_s``, then put
    the samples pushed per stream name on ``result``."""
    import pylsl

    from devices.lsl_meta import make_stream_info

    signals = _signals()
    outlets = {}
    for s in STREAMS:
        info = make_stream_info(
            stream_name(tag, s), s.lsl_type, s.sfreq_hz, s.channels, [s.unit] * len(s.channels),
            channel_format="string" if s.sfreq_hz == 0 else "float32", source_id=f"soak-{tag}-{s.name}",
        )
        outlets[s.name] = pylsl.StreamOutlet(info)
    sent = dict.fromkeys(outlets, 0)
    ready.set()
    go.wait()
    t0 = pylsl.local_clock()
    while (now := pylsl.local_clock()) - t0 < duration_s:
        for s in STREAMS:
            outlet = outlets[s.name]
            if s.sfreq_hz == 0:
                if now - t0 >= sent[s.name] * MARKER_EVERY_S:
                    outlet.push_sample([f"state {sent[s.name] % 3}"], now)
                    sent[s.name] += 1
                continue
            due = int((now - t0) * s.sfreq_hz)
            if due > sent[s.name]:
                k = np.arange(sent[s.name], due)
                data = signals[s.name]
                outlet.push_chunk(data[k % len(data)], timestamp=(t0 + k / s.sfreq_hz).tolist())
                sent[s.name] = due
        time.sleep(max(0.0, STEP_S - (pylsl.local_clock() - now)))
    result.put({stream_name(tag, s): sent[s.name] for s in STREAMS})
    time.sleep(2.0)  # outlets stay up while the last chunks travel


# ---------------------------------------------------------------------------------------------- bundles
def make_bundles(folder: Path) -> dict[str, str]:
    """The bundle per kind: the shipped demo bundle, and untrained ECG and EEG bundles exported into ``folder``."""
    import torch

    from bench._untrained import ecg_bundle, eeg_bundle

    torch.set_num_threads(1)
    return {"demo": "demo", "ecg": str(ecg_bundle(folder / "ecg.bxb")),
            "eeg": str(eeg_bundle(folder / "eeg.bxb", EEG_MODEL_CHANNELS))}


# ---------------------------------------------------------------------------------------------- the run
def _wait_recorded(session, names: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = session.recording_status() or {}
        if names <= set(status.get("counts", {})):
            return
        time.sleep(0.25)
    raise RuntimeError(f"the recorder never opened every stream: {sorted(names - set(status.get('counts', {})))}")


def run_soak(duration_s: float, folder: Path, sample_every_s: float, quiet: bool = False) -> dict[str, Any]:
    """Publish, monitor and record for ``duration_s``; return the measurements (see the module docstring)."""
    import pylsl

    from bench._processes import Meter, session_processes
    from biostream.lsl import list_streams
    from biostream.runtime.session import MonitorSession

    say = (lambda *a: None) if quiet else (lambda *a: print(*a, flush=True))
    tag = uuid.uuid4().hex[:8]
    t_setup = time.monotonic()
    bundles = make_bundles(folder)
    ctx = mp.get_context("spawn")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    publisher = ctx.Process(target=publish, args=(tag, duration_s, ready, go, result), daemon=True)
    publisher.start()
    if not ready.wait(120):
        raise RuntimeError("the publisher never opened its outlets")
    names = {stream_name(tag, s) for s in STREAMS}
    found: dict[str, Any] = {}
    deadline = time.monotonic() + 30.0
    while len(found) < len(names) and time.monotonic() < deadline:
        found = {d.name: d for d in list_streams(2.0) if d.name in names}
    if len(found) < len(names):
        raise RuntimeError(f"outlets not visible: {sorted(names - set(found))}")

    xdf_path = folder / "soak.xdf"
    session = MonitorSession(record=xdf_path).start()
    subscription = session.subscribe(maxsize=1_000_000)
    keys: dict[str, SoakStream] = {}
    for s in STREAMS:
        if s.sfreq_hz > 0:
            bundle = bundles[s.bundle] if s.bundle else None
            keys[session.add_stream(found[stream_name(tag, s)], bundle=bundle, timeout_s=15.0)] = s
    _wait_recorded(session, names)
    meter = Meter(session_processes(session, publisher.pid))
    setup_s = time.monotonic() - t_setup
    say(f"soak: {len(STREAMS)} streams, {sum(bool(s.bundle) for s in STREAMS)} with a model, recording to "
        f"{xdf_path}; set up in {setup_s:.0f} s; running {duration_s:.0f} s")

    records: list[tuple[str, float, float, str, tuple[str, ...], float]] = []
    timeline: list[dict[str, Any]] = []

    def take() -> None:
        for kind, item in subscription.get_all():
            if kind == "prediction":
                records.append((item.stream, item.t_end, item.latency.published_s, item.outcome, item.codes,
                                item.latency.total_ms / 1e3 if item.ok else float("nan")))

    go.set()
    t_go = time.monotonic()
    while (elapsed := time.monotonic() - t_go) < duration_s:
        time.sleep(min(sample_every_s, max(0.0, duration_s - elapsed)))
        take()
        rss = meter.sample()
        recent_s = max(sample_every_s, LAG_WINDOW_S)
        lags = [r[5] for r in records if r[2] >= pylsl.local_clock() - recent_s and r[3] == "predictions"]
        row = {"t_s": round(time.monotonic() - t_go, 1), "rss_mib": {k: round(v, 1) for k, v in rss.items()},
               "lag_p50_s": float(np.median(lags)) if lags else None, "lag_max_s": max(lags) if lags else None,
               "windows": len(records)}
        timeline.append(row)
        say(f"  {row['t_s']:6.0f} s / {duration_s:.0f}  windows {len(records):5d}  lag p50 "
            f"{_fmt(row['lag_p50_s'], 3)} s max {_fmt(row['lag_max_s'], 3)} s  RSS {sum(rss.values()):7.0f} MiB")
    cpu = meter.cpu_percent()
    pushed = result.get(timeout=60)
    time.sleep(MARGIN_S + 1.0)  # let the last windows and chunks arrive
    take()
    summary = session.stop()
    publisher.join(timeout=30)
    return {"tag": tag, "duration_s": duration_s, "setup_s": round(setup_s, 1), "xdf": str(xdf_path),
            "pushed": pushed, "keys": {k: s.name for k, s in keys.items()}, "bundles": bundles,
            "records": records, "timeline": timeline, "cpu_percent": cpu, "summary": summary}


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# ---------------------------------------------------------------------------------------------- analysis
def recorded_counts(path: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Samples per stream name in the XDF, read by biostream's reader and by pyxdf."""
    import pyxdf

    from devices.formats import read_recording

    ours = {s.name: len(s.timestamps) for s in read_recording(path).streams}
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False)
    theirs = {s["info"]["name"][0]: len(s["time_stamps"]) for s in streams}
    return ours, theirs


def _expected_windows(n_samples: int, rate_hz: float, window_s: float, hop_s: float) -> int:
    usable = n_samples - round(MARGIN_S * rate_hz)
    window, hop = round(window_s * rate_hz), round(hop_s * rate_hz)
    return max(0, (usable - window) // hop + 1)


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """Reduce a run to the per-stream tables and the headline numbers."""
    from bridges.bundle import read_bundle

    tag = run["tag"]
    ours, theirs = recorded_counts(Path(run["xdf"]))
    samples = []
    for s in STREAMS:
        name = stream_name(tag, s)
        pushed = run["pushed"][name]
        samples.append({"stream": s.name, "pushed": pushed, "recorded": ours.get(name, 0),
                        "recorded_pyxdf": theirs.get(name, 0), "lost": max(0, pushed - ours.get(name, 0))})
    windows = []
    by_stream: dict[str, list] = {}
    for record in run["records"]:
        by_stream.setdefault(record[0], []).append(record)
    for key, s in run["keys"].items():
        stream = next(x for x in STREAMS if x.name == s)
        if not stream.bundle:
            continue
        manifest = read_bundle(run["bundles"][stream.bundle]).manifest.input
        expected = _expected_windows(run["pushed"][stream_name(tag, stream)], stream.sfreq_hz, manifest.window_s,
                                     manifest.hop_s)
        got = by_stream.get(key, [])
        outcomes = Counter(r[3] for r in got)
        codes = Counter(c for r in got for c in r[4])
        windows.append({"stream": s, "expected": expected, "predictions": outcomes["predictions"],
                        "rejected": outcomes["rejected"], "dropped": outcomes["dropped"],
                        "missing": max(0, expected - len(got)), "reasons": dict(codes)})
    lags = np.array([r[5] for r in run["records"] if r[3] == "predictions"])
    thirds = np.array_split(lags, 3) if len(lags) >= 3 else [lags] * 3
    timeline = run["timeline"]
    warm_s = min(120.0, run["duration_s"] / 5)
    after = [sum(row["rss_mib"].values()) for row in timeline if row["t_s"] >= warm_s]
    base, end = np.mean(after[:3]), np.mean(after[-3:])
    per_group = {}
    for group in timeline[0]["rss_mib"]:
        series = [row["rss_mib"][group] for row in timeline if row["t_s"] >= warm_s]
        per_group[group] = {"after_warmup_mib": round(float(np.mean(series[:3])), 1),
                            "end_mib": round(float(np.mean(series[-3:])), 1)}
    summary = run["summary"]
    return {
        "duration_s": run["duration_s"],
        "lost_samples": sum(r["lost"] for r in samples),
        "missing_predictions": sum(w["missing"] for w in windows),
        "rss_growth_pct": round(100.0 * (end / base - 1.0), 2),
        "max_lag_s": round(float(lags.max()), 3) if len(lags) else None,
        "lag_p50_s": round(float(np.median(lags)), 3) if len(lags) else None,
        "lag_trend_s": round(float(np.median(thirds[-1]) - np.median(thirds[0])), 4) if len(lags) else None,
        "rss_mib_total_after_warmup": round(float(base), 1),
        "rss_mib_total_end": round(float(end), 1),
        "rss_by_process": per_group,
        "warmup_s": warm_s,
        "cpu_percent": {k: round(v, 1) for k, v in run["cpu_percent"].items()},
        "samples": samples,
        "windows": windows,
        "restarts": summary["restarts"],
        "errors": summary["errors"],
        "recording": {k: summary["recording"].get(k) for k in ("recording", "reason", "bytes")},
        "setup_s": run["setup_s"],
        "timeline": timeline,
    }


def print_tables(report: dict[str, Any]) -> None:
    print(f"\nsamples pushed vs recorded ({report['duration_s']:.0f} s)")
    print("| stream | pushed | in the XDF (biostream) | in the XDF (pyxdf) | lost |")
    print("|---|---|---|---|---|")
    for r in report["samples"]:
        print(f"| {r['stream']} | {r['pushed']} | {r['recorded']} | {r['recorded_pyxdf']} | {r['lost']} |")
    print("\nwindows on the model streams")
    print("| stream | expected | predictions | rejected | dropped | missing | reasons |")
    print("|---|---|---|---|---|---|---|")
    for w in report["windows"]:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(w["reasons"].items())) or "-"
        print(f"| {w['stream']} | {w['expected']} | {w['predictions']} | {w['rejected']} | {w['dropped']} | "
              f"{w['missing']} | {reasons} |")
    print("\nresident memory (MiB) after warm-up → end, and CPU (% of one core)")
    print("| process | RSS after warm-up | RSS at end | CPU % |")
    print("|---|---|---|---|")
    for group, rss in report["rss_by_process"].items():
        print(f"| {group} | {rss['after_warmup_mib']} | {rss['end_mib']} | {report['cpu_percent'].get(group, 0):.1f} |")
    print(f"\nlost samples {report['lost_samples']} · missing predictions {report['missing_predictions']} · "
          f"RSS growth {report['rss_growth_pct']:+.2f}% after {report['warmup_s']:.0f} s warm-up · lag p50 "
          f"{_fmt(report['lag_p50_s'], 3)} s, max {_fmt(report['max_lag_s'], 3)} s, trend "
          f"{_fmt(report['lag_trend_s'], 4)} s · restarts {report['restarts']} · errors {report['errors']}")
    if report["recording"]["reason"]:
        print(f"recording: {report['recording']['reason']}")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["timeline"]
    t = [r["t_s"] / 60 for r in rows]
    fig, (ax_rss, ax_lag) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for group in rows[0]["rss_mib"]:
        ax_rss.plot(t, [r["rss_mib"][group] for r in rows], label=group)
    ax_rss.set_ylabel("RSS (MiB)")
    ax_rss.axvline(report["warmup_s"] / 60, color="grey", ls=":", label="end of warm-up")
    ax_rss.legend(fontsize=8, ncol=2)
    ax_lag.plot(t, [r["lag_p50_s"] for r in rows], label="p50")
    ax_lag.plot(t, [r["lag_max_s"] for r in rows], label="max")
    ax_lag.set_ylabel("lag (s): last sample → prediction")
    ax_lag.set_xlabel("minutes")
    ax_lag.legend(fontsize=8)
    fig.suptitle(f"soak: 8 streams, {report['duration_s'] / 60:.0f} min, {report['lost_samples']} samples lost")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration-s", type=float, default=600.0)
    parser.add_argument("--sample-every-s", type=float, default=None, help="default: duration / 60, 1 to 10 s")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--figure", type=Path, help="write RSS and lag over time as a PNG")
    parser.add_argument("--keep", type=Path, help="keep the XDF and bundles in this folder")
    args = parser.parse_args()
    from bench._common import machine

    every = args.sample_every_s or min(10.0, max(1.0, args.duration_s / 60))
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="biostream-soak-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        report = analyse(run_soak(args.duration_s, folder, every))
    print_tables(report)
    if args.figure:
        plot(report, args.figure)
        print(f"figure: {args.figure}")
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "timeline"}))


if __name__ == "__main__":
    main()
