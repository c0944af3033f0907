"""``biostream demo``: the embedded default, fully offline — a simulated wearer, the shipped model, live.

A simulated stress session (seed :data:`DEMO_SEED`, states changing about every minute: baseline, stress from
~40 s, amusement from ~115 s, baseline again from ~170 s) publishes a chest-strap ECG, a wristband PPG and the
true state as LSL streams. A :class:`~biostream.runtime.session.MonitorSession` runs the shipped demo bundle — a
stress model trained on chest ECG, bridged to the wristband's PPG — on the PPG stream. This module is the headless
half: it prints each prediction against the simulator's true state at the window's end and ends with
``agreement: <fraction> over <n> windows``. The desktop app (``ui.app``) shows the same session in its window.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TextIO

import numpy as np

from biostream.runtime.records import Prediction
from biostream.runtime.session import MonitorSession
from devices.live_sim import LiveSimulation

DEMO_SEED = 22
DEMO_DWELL_SCALE = 0.3
DEMO_HOP_S = 2.0


@dataclass
class DemoSimulation:
    """The demo's simulated wearer, publishing until stopped."""

    live: LiveSimulation
    thread: threading.Thread

    def true_state(self, t_lsl: float) -> str:
        """The simulator's state at LSL time ``t_lsl``."""
        return str(self.live.simulator.timeline.states_at(np.array([t_lsl - self.live.player.t0_lsl]))[0])

    def stop(self) -> None:
        """Stop publishing and drop the outlets."""
        self.live.stop()
        self.thread.join(timeout=5.0)
        self.live.close()


def open_simulation(seed: int = DEMO_SEED) -> LiveSimulation:
    """The demo's outlets (not yet publishing): ECG chest strap, PPG wristband, true states."""
    return LiveSimulation("stress", ["ecg", "ppg"], seed=seed, dwell_scale=DEMO_DWELL_SCALE,
                          name_suffix=f" (demo {uuid.uuid4().hex[:4]})")


def demo_streams(live: LiveSimulation) -> dict[str, str]:
    """The demo's stream names by role: ``ecg``, ``ppg``, ``states``."""
    return dict(zip(("ecg", "ppg", "states"), live.stream_names, strict=True))


def start_simulation(live: LiveSimulation) -> DemoSimulation:
    """Start publishing (on a thread); return once the simulation's clock has started."""
    thread = threading.Thread(target=live.run, name="biostream-demo-simulation", daemon=True)
    thread.start()
    live.wait_running()
    return DemoSimulation(live, thread)


def format_against_truth(p: Prediction, truth: str, t0: float) -> str:
    """One line: time, the prediction (or why there is none), the true state, and whether they agree."""
    head = f"{p.t_end - t0:7.1f} s  "
    if not p.ok:
        return head + f"no prediction ({p.reason})   truth: {truth}"
    mark = "✓" if p.label_name == truth else "✗"
    return head + f"{p.label_name:<10} {p.confidence:4.0%}   truth: {truth:<10} {mark}"


def run_demo_headless(duration_s: float | None = None, seed: int = DEMO_SEED, out: TextIO | None = None) -> float:
    """Run the demo without a window until ``duration_s`` passes (or Ctrl-C); return the agreement."""
    out = out or sys.stdout
    live = open_simulation(seed)
    names = demo_streams(live)
    session = MonitorSession()
    agree, total = 0, 0
    try:
        session.start()
        subscription = session.subscribe()
        session.add_stream(f"name={names['ppg']}", bundle="demo", hop_s=DEMO_HOP_S)
        simulation = start_simulation(live)  # after the stream is monitored: no window starts mid-air
        t0 = simulation.live.player.t0_lsl
        print(f"demo: a stress model trained on chest ECG, reading the PPG wristband '{names['ppg']}' "
              f"(simulated wearer, seed {seed}); states change about every minute", file=out, flush=True)
        deadline = None if duration_s is None else time.monotonic() + duration_s
        try:
            while deadline is None or time.monotonic() < deadline:
                item = subscription.get(0.2)
                if item is None or item[0] != "prediction":
                    continue
                p = item[1]
                truth = simulation.true_state(p.t_end)
                print(format_against_truth(p, truth, t0), file=out, flush=True)
                if p.ok:
                    total += 1
                    agree += p.label_name == truth
        except KeyboardInterrupt:
            pass
        simulation.stop()
    finally:
        session.stop()
        live.close()
    fraction = agree / total if total else float("nan")
    print(f"agreement: {fraction:.2f} over {total} windows", file=out, flush=True)
    return fraction
