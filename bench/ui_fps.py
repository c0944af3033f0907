"""Desktop app frame rate and CPU with 8 streams × 8 channels × 10 s at 250 Hz on screen (DESIGN §8: ≥ 30 fps
under one core; 60 is the aim).

Part 1, the app end to end. A publisher process opens 8 EEG-like outlets (8 channels, 250 Hz; sines, a slow
drift and noise) and pushes them in real time. The real :class:`ui.main_window.MainWindow` on a real
:class:`~biostream.runtime.session.MonitorSession` (Ray actors reading LSL) monitors all 8, display only, 10-s
span. Over the measured seconds we count the pictures the signal view drew (new snapshots shown; the window asks
for one every 16 ms while none is out) and the paint events of its view, and the CPU of the UI process and of
the runtime's processes (Ray actors and servers) as % of one core.

Part 2, drawing alone, side by side in one window size and on the same data: 64 curves, 10 s at 250 Hz each,
redrawn as fast as the process can (each frame: new data in, synchronous repaint).

* **biostream**: the app's own :class:`~ui.signals_view.SignalsView`, fed the runtime's peak-decimated snapshots
  (a min and a max per pixel column), items built once, ``setData``;
* **viewer-style**: items built once, every raw sample passed to ``setData`` each frame and pyqtgraph's own
  peak downsampling and clip-to-view left to thin them (what LSL stream viewers commonly do);
* **re-plot**: the plots cleared and every curve re-plotted from raw samples each frame, antialiased (the
  reference code's habit).

Reported: frames per second, CPU ms per frame, and the CPU one core would spend at 60 fps; ratios vs biostream.

Run under a display: ``xvfb-run -a -s "-screen 0 1600x1000x24" python bench/ui_fps.py [--seconds 20]
[--json bench/ui_fps_results.json]``.
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LSLAPICFG", str(Path(__file__).resolve().parents[1] / "tests" / "lsl_api.cfg"))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

N_STREAMS, N_CHANNELS, RATE_HZ, SPAN_S = 8, 8, 250.0, 10.0
WINDOW_SIZE = (1600, 1000)


def synthetic(n_samples: int, n_channels: int, seed: int) -> np.ndarray:
    """EEG-like test signal (n_samples, n_channels) in µV: alpha-band sines, a slow drift, noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / RATE_HZ
    freqs = rng.uniform(6.0, 14.0, n_channels)
    data = 30.0 * np.sin(2 * np.pi * freqs * t[:, None]) + 10.0 * np.sin(2 * np.pi * 0.2 * t[:, None])
    return (data + rng.normal(0.0, 8.0, data.shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- publisher
def publish(tag: str, seconds: float, ready, stop) -> None:
    """Child process: 8 outlets of 8 channels at 250 Hz, pushed in real time in 20-ms steps until ``stop``."""
    import pylsl

    from devices.lsl_meta import make_stream_info

    labels = [f"E{c + 1}" for c in range(N_CHANNELS)]
    outlets = [pylsl.StreamOutlet(make_stream_info(f"fps-{tag}-{k}", "EEG", RATE_HZ, labels, ["uV"] * N_CHANNELS,
                                                   source_id=f"fps-{tag}-{k}")) for k in range(N_STREAMS)]
    signal = [synthetic(int(RATE_HZ * 60), N_CHANNELS, seed=k) for k in range(N_STREAMS)]
    ready.set()
    t0, sent = pylsl.local_clock(), 0
    while not stop.is_set() and pylsl.local_clock() - t0 < seconds:
        due = int((pylsl.local_clock() - t0) * RATE_HZ)
        if due > sent:
            idx = np.arange(sent, due) % signal[0].shape[0]
            for k, outlet in enumerate(outlets):
                outlet.push_chunk(np.ascontiguousarray(signal[k][idx]), timestamp=t0 + (due - 1) / RATE_HZ)
            sent = due
        time.sleep(0.02)


# ---------------------------------------------------------------------------------------------- part 1
def _wait(app, predicate, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        app.processEvents()
        time.sleep(0.005)


def _run_for(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.001)


def app_end_to_end(seconds: float) -> dict:
    """Part 1 (see the module docstring)."""
    import psutil
    from PySide6 import QtCore

    from biostream.runtime.session import MonitorSession
    from ui.app import application
    from ui.controller import SessionController
    from ui.main_window import MainWindow

    tag = uuid.uuid4().hex[:6]
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    publisher = ctx.Process(target=publish, args=(tag, 3600.0, ready, stop), daemon=True)
    publisher.start()
    ready.wait(60)

    app = application()
    settings_dir = tempfile.TemporaryDirectory()
    settings = QtCore.QSettings(str(Path(settings_dir.name) / "b.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(SessionController(MonitorSession(display_s=60.0)), settings=settings)
    window.resize(*WINDOW_SIZE)
    window.span.setCurrentIndex(1)  # 10 s
    window.show()
    window.start()
    _wait(app, lambda: window._started, 60)
    for k in range(N_STREAMS):
        window.controller.add_stream(f"name=fps-{tag}-{k}")
    _wait(app, lambda: len(window.signals.plots) == N_STREAMS, 60)
    _wait(app, lambda: all(p.curve is not None for p in window.signals.plots.values()), 60)
    _run_for(app, 5.0)  # the 10-s span fills, scales settle

    counts = {"pictures": 0, "paints": 0}
    window.controller.snapshots.connect(lambda _: counts.__setitem__("pictures", counts["pictures"] + 1))

    class PaintCounter(QtCore.QObject):
        def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
            if event.type() == QtCore.QEvent.Type.Paint:
                counts["paints"] += 1
            return False

    counter = PaintCounter()
    window.signals._graphics.viewport().installEventFilter(counter)
    me = psutil.Process()
    runtime = [p for p in me.children(recursive=True) if p.pid != publisher.pid]
    cpu0 = me.cpu_times()
    rt0 = {p.pid: p.cpu_times() for p in runtime if p.is_running()}
    wall0 = time.monotonic()
    _run_for(app, seconds)
    wall = time.monotonic() - wall0
    cpu1 = me.cpu_times()
    rt_cpu = 0.0
    for p in runtime:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        if p.pid in rt0:
            rt_cpu += (t.user + t.system) - (rt0[p.pid].user + rt0[p.pid].system)
    ui_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    points = window.signals.points_wanted()
    window.close()
    stop.set()
    publisher.join(10)
    return {
        "streams": N_STREAMS, "channels": N_CHANNELS, "rate_hz": RATE_HZ, "span_s": SPAN_S, "seconds": wall,
        "pictures_per_s": counts["pictures"] / wall, "paints_per_s": counts["paints"] / wall,
        "ui_cpu_pct": 100.0 * ui_cpu / wall, "runtime_cpu_pct": 100.0 * rt_cpu / wall,
        "points_per_channel": points, "window": f"{WINDOW_SIZE[0]}x{WINDOW_SIZE[1]}",
    }


# ---------------------------------------------------------------------------------------------- part 2
class Feed:
    """64 rolling channels: 10 s at 250 Hz of each, advancing one 60-fps frame (about 4 samples) per call."""

    def __init__(self) -> None:
        self.signal = [synthetic(int(RATE_HZ * 60), N_CHANNELS, seed=k) for k in range(N_STREAMS)]
        self.n = int(SPAN_S * RATE_HZ)
        self.cursor = self.n
        self.frame = 0

    def next(self) -> tuple[np.ndarray, list[np.ndarray]]:
        """Timestamps (n,) in s and one (n, 8) block per stream."""
        self.frame += 1
        self.cursor = self.n + int(self.frame * RATE_HZ / 60.0)
        idx = np.arange(self.cursor - self.n, self.cursor)
        return idx / RATE_HZ, [s[idx % s.shape[0]] for s in self.signal]


def _measure(app, widget, step, seconds: float) -> dict:
    import psutil

    me = psutil.Process()
    for _ in range(10):  # warm caches, first layouts
        step()
        widget.repaint()
        app.processEvents()
    frames, cpu0, wall0 = 0, me.cpu_times(), time.monotonic()
    while time.monotonic() - wall0 < seconds:
        step()
        widget.repaint()
        app.processEvents()
        frames += 1
    wall, cpu1 = time.monotonic() - wall0, me.cpu_times()
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return {"fps": frames / wall, "cpu_ms_per_frame": 1e3 * cpu_s / frames,
            "cpu_pct_at_60fps": min(100.0 * cpu_s / frames * 60.0, 9999.0)}


def drawing_side_by_side(seconds: float) -> dict:
    """Part 2 (see the module docstring)."""
    import pyqtgraph as pg
    from PySide6 import QtWidgets

    from biostream.runtime.pipeline import peak_decimate
    from ui.app import application
    from ui.signals_view import SignalsView

    app = application()
    results = {}
    labels, units = [f"E{c + 1}" for c in range(N_CHANNELS)], ["uV"] * N_CHANNELS

    # biostream: the app's widget on the runtime's snapshots.
    feed = Feed()
    view = SignalsView()
    view.resize(WINDOW_SIZE[0] - 600, WINDOW_SIZE[1] - 300)  # the centre of the window, docks around it
    view.t0 = 0.0
    keys = [f"stream {k}" for k in range(N_STREAMS)]
    for key in keys:
        view.add_stream(key, "EEG")
    view.show()
    app.processEvents()

    def ours() -> None:
        t, blocks = feed.next()
        points = view.points_wanted()
        snapshots = {}
        for key, block in zip(keys, blocks):
            data, ts = peak_decimate(block, t, points)
            snapshots[key] = {"t": ts, "data": data, "labels": labels, "units": units}
        view.show_snapshots(snapshots, float(t[-1]))

    results["biostream"] = _measure(app, view, ours, seconds)
    view.close()

    def raw_layout(antialias: bool) -> tuple[pg.GraphicsLayoutWidget, list]:
        pg.setConfigOptions(antialias=antialias)
        widget = pg.GraphicsLayoutWidget()
        widget.resize(WINDOW_SIZE[0] - 600, WINDOW_SIZE[1] - 300)
        plots = []
        for k in range(N_STREAMS):
            plot = widget.addPlot(row=k, col=0)
            plot.setMouseEnabled(x=False, y=False)
            plot.disableAutoRange()
            plot.setYRange(-1, N_CHANNELS, padding=0)
            plots.append(plot)
        widget.show()
        app.processEvents()
        return widget, plots

    offsets = np.arange(N_CHANNELS)[::-1] * 1.0

    # viewer-style: items once, raw samples each frame, pyqtgraph thins them.
    feed = Feed()
    widget, plots = raw_layout(antialias=False)
    curves = []
    for plot in plots:
        plot.setDownsampling(auto=True, mode="peak")
        plot.setClipToView(True)
        curves.append([plot.plot(pen=pg.intColor(c, N_CHANNELS)) for c in range(N_CHANNELS)])

    def viewer_style() -> None:
        t, blocks = feed.next()
        for plot, stream_curves, block in zip(plots, curves, blocks):
            scaled = block / 150.0 + offsets
            for c, curve in enumerate(stream_curves):
                curve.setData(t, scaled[:, c])
            plot.setXRange(t[0], t[-1], padding=0)

    results["viewer-style"] = _measure(app, widget, viewer_style, seconds)
    widget.close()

    # re-plot: clear and plot everything again each frame, antialiased.
    feed = Feed()
    widget, plots = raw_layout(antialias=True)

    def replot() -> None:
        t, blocks = feed.next()
        for plot, block in zip(plots, blocks):
            plot.clear()
            scaled = block / 150.0 + offsets
            for c in range(N_CHANNELS):
                plot.plot(t, scaled[:, c], pen=pg.intColor(c, N_CHANNELS))
            plot.setXRange(t[0], t[-1], padding=0)

    results["re-plot"] = _measure(app, widget, replot, seconds)
    widget.close()
    pg.setConfigOptions(antialias=False)
    QtWidgets.QApplication.processEvents()
    return results


# ---------------------------------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per case")
    parser.add_argument("--skip-app", action="store_true", help="only part 2 (no LSL, no Ray)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        sys.exit("bench/ui_fps.py draws a real window: run it under a display, e.g. xvfb-run -a -s "
                 "\"-screen 0 1600x1000x24\" python bench/ui_fps.py")
    from bench._common import machine

    out = {"machine": machine(), "display": os.environ.get("DISPLAY", "")}
    if not args.skip_app:
        e2e = app_end_to_end(args.seconds)
        out["app"] = e2e
        print(f"\nPart 1: the app, {N_STREAMS} streams × {N_CHANNELS} ch × {SPAN_S:g} s at {RATE_HZ:g} Hz, "
              f"window {e2e['window']}, {e2e['seconds']:.0f} s measured")
        print(f"  pictures/s {e2e['pictures_per_s']:6.1f}   paints/s {e2e['paints_per_s']:6.1f}   "
              f"UI process CPU {e2e['ui_cpu_pct']:5.1f}% of a core   runtime CPU {e2e['runtime_cpu_pct']:5.1f}%   "
              f"({e2e['points_per_channel']} points per channel)")
    drawing = drawing_side_by_side(args.seconds)
    out["drawing"] = drawing
    base = drawing["biostream"]
    print(f"\nPart 2: drawing only, 64 curves × {int(SPAN_S * RATE_HZ)} samples, as fast as possible")
    print(f"  {'approach':<14}{'fps':>8}{'CPU ms/frame':>14}{'CPU at 60 fps':>15}{'fps ratio':>11}{'CPU ratio':>11}")
    for name, r in drawing.items():
        print(f"  {name:<14}{r['fps']:8.1f}{r['cpu_ms_per_frame']:14.2f}{r['cpu_pct_at_60fps']:14.0f}%"
              f"{base['fps'] / r['fps']:10.2f}×{r['cpu_ms_per_frame'] / base['cpu_ms_per_frame']:10.2f}×")
    print("  (ratios: biostream's fps over the approach's, the approach's CPU per frame over biostream's)")
    print(f"\n{out['machine']}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
