"""``biostream monitor`` without a window: predictions as lines (or JSON lines), events on stderr, a summary last.

Text mode prints one line per window, ``t`` relative to the session start::

      12.0 s  Sim BVP  stress: baseline 0.91  (baseline 0.91, stress 0.05, amusement 0.04)  21 ms
      14.0 s  Sim BVP  stress: no prediction: channel 'BVP' is flat  2 ms

``--json`` prints one object per window (``stream``, ``t`` in the LSL clock, ``label`` or null, ``probs``,
``latency_ms``, ``reason``...) and, last, one summary object (``windows``, ``predictions``, ``rejected``,
``dropped``, ``errors``, ``restarts``, ``latency_p50_ms``, ``latency_p99_ms``, ``provider``, ``streams``,
``recording``). Scripts depend on these keys. Ctrl-C or SIGTERM stop cleanly: the recording is finalised and the
summary printed.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import pylsl

from biostream.lsl import StreamDescription, list_streams, resolve_selector
from biostream.runtime.cluster import check_reachable
from biostream.runtime.matching import MODALITY_TYPES
from biostream.runtime.records import Prediction, SessionEvent
from biostream.runtime.session import MonitorSession
from bridges.bundle import read_bundle
from devices.errors import BadInputError

logger = logging.getLogger(__name__)


def default_streams(modality: str, wait_s: float = 1.5) -> list[StreamDescription]:
    """Every visible stream whose type is the bundle's modality (by its aliases, any case).

    The streams themselves, not selectors to resolve again: a selector by source id would be ambiguous where
    several outlets share one (pylsl's example outlets all use ``myuid34234``).
    """
    accepted = MODALITY_TYPES.get(modality.lower(), (modality.lower(),))
    found = [d for d in list_streams(wait_s=wait_s) if d.type.lower() in accepted and d.is_regular and not d.problems]
    if not found:
        raise BadInputError(
            f"no visible stream of type {'/'.join(t.upper() for t in accepted)} for this {modality.upper()} model; "
            "start one (e.g. `biostream simulate --scenario stress --modalities ecg,ppg`) or pass --stream KEY=VALUE"
        )
    return found


def format_prediction(p: Prediction, t0: float) -> str:
    """One text line for a window's outcome."""
    head = f"{p.t_end - t0:8.1f} s  {p.stream}  {p.task}: "
    tail = f"  {p.latency.total_ms:.0f} ms"
    if not p.ok:
        return head + f"no prediction: {p.reason}" + tail
    probs = ", ".join(f"{name} {prob:.2f}" for name, prob in zip(p.class_names, p.probabilities))
    return head + f"{p.label_name} {p.confidence:.2f}  ({probs})" + tail


def format_summary(summary: Mapping[str, Any]) -> list[str]:
    """The closing summary as text lines."""
    p50, p99 = summary.get("latency_p50_ms"), summary.get("latency_p99_ms")
    lines = [
        f"summary: {summary['windows']} windows, {summary['predictions']} predictions, {summary['rejected']} "
        f"rejected, {summary['dropped']} dropped, {summary['errors']} errors, {summary['restarts']} restarts",
        "latency (last sample -> prediction published): "
        + (f"p50 {p50:.1f} ms, p99 {p99:.1f} ms" if p50 is not None else "no predictions")
        + f"; provider {summary.get('provider') or '-'}",
    ]
    for key, h in summary.get("streams", {}).items():
        lines.append(
            f"stream {key}: {h['state']}, {h['samples']} samples at {h['effective_rate_hz']:.4g} Hz "
            f"(nominal {h['nominal_rate_hz']:g}), {h['gaps']} gaps, {h['reconnects']} reconnects"
            + (f" [{h['level']}: {h['message']}]" if h["message"] else "")
        )
    rec = summary.get("recording")
    if rec:
        counts = ", ".join(f"{name} {n}" for name, n in rec.get("counts", {}).items())
        lines.append(f"recording: {rec['path']} ({rec.get('bytes', 0) / 1e6:.2f} MB; {counts})"
                     + (f" - {rec['reason']}" if rec.get("reason") else ""))
    return lines


def run_monitor(
    *,
    bundle: str,
    selectors: Sequence[str],
    duration_s: float | None = None,
    record_path: str | None = None,
    as_json: bool = False,
    hop_s: float | None = None,
    channel_map: Mapping[str, str] | None = None,
    ray_address: str | None = None,
    device: str = "auto",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run ``biostream monitor`` headless until ``duration_s`` passes or a signal comes; return the exit code.

    Raises
    ------
    BadInputError
        A bundle, stream or option that cannot work (the CLI prints it in one line, exit code 2).
    """
    out = out or sys.stdout
    err = err or sys.stderr
    if duration_s is not None and not duration_s > 0:
        raise BadInputError(f"--duration must be > 0, got {duration_s!r}")
    # Fail fast, before Ray starts: a bad bundle, a recording folder that is not there, an unreachable cluster,
    # a stream not in view.
    read = read_bundle(bundle)
    if record_path is not None and not Path(record_path).expanduser().parent.is_dir():
        raise BadInputError(f"cannot record to '{record_path}': its folder does not exist")
    if ray_address is not None:
        check_reachable(ray_address)
    chosen = (
        [StreamDescription.from_info(resolve_selector(selector)) for selector in selectors]
        or default_streams(read.manifest.input.modality)
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    session = MonitorSession(ray_address=ray_address, record=record_path, device=device)
    try:
        session.start()
        subscription = session.subscribe()
        for selector in chosen:
            key = session.add_stream(selector, bundle=read, hop_s=hop_s, channel_map=channel_map)
            print(f"biostream: monitoring {key} with {read.manifest.task.name}", file=err)
        t0 = pylsl.local_clock()
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                item = subscription.get(0.1)
                if item is not None:
                    _emit(item, t0, as_json, out, err)
        except KeyboardInterrupt:
            pass
        summary = session.stop()
        for item in subscription.get_all():
            _emit(item, t0, as_json, out, err)
    finally:
        signal.signal(signal.SIGTERM, previous)
        session.stop()
    if as_json:
        print(json.dumps(summary, default=_json_default), file=out, flush=True)
    else:
        for line in format_summary(summary):
            print(line, file=out)
        out.flush()
    return 0


def _emit(item: tuple[str, Any], t0: float, as_json: bool, out: TextIO, err: TextIO) -> None:
    kind, value = item
    if kind == "prediction":
        text = json.dumps(value.to_json(), default=_json_default) if as_json else format_prediction(value, t0)
        print(text, file=out, flush=True)
    elif kind == "event" and isinstance(value, SessionEvent) and value.kind != "connected":
        where = f"[{value.stream}] " if value.stream else ""
        print(f"biostream: {value.level}: {where}{value.message}", file=err, flush=True)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
