"""A wristband PPG outlet for the monitoring tests: pushes a simulated recording in real time, and can be spoiled
(a NaN burst) or unplugged and plugged back like a real device."""

from __future__ import annotations

import threading

import numpy as np
import pylsl

from devices.lsl_meta import make_stream_info
from devices.simulate import simulate_session

RATE = 64.0


class Publisher:
    """A wristband PPG outlet pushing a simulated recording in real time, whose tests can spoil or unplug it."""

    def __init__(self, name: str, source_id: str, seed: int = 3) -> None:
        recording = simulate_session("stress", ["ppg"], duration_s=120.0, seed=seed)
        self.data = recording.stream("PPG").data.astype(np.float32)
        self.info_args = (name, "PPG", RATE, ["BVP"], ["a.u."])
        self.source_id = source_id
        self.outlet: pylsl.StreamOutlet | None = self._new_outlet()
        self.burst_from = self.burst_to = -1
        self.burst_value = np.nan
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _new_outlet(self) -> pylsl.StreamOutlet:
        return pylsl.StreamOutlet(make_stream_info(*self.info_args, source_id=self.source_id))

    def start(self) -> Publisher:
        self.t0 = pylsl.local_clock()
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            due = int((pylsl.local_clock() - self.t0) * RATE)
            if due <= self.sent:
                continue
            k = np.arange(self.sent, due)
            chunk = self.data[k % len(self.data)].copy()
            chunk[(k >= self.burst_from) & (k < self.burst_to)] = self.burst_value
            outlet = self.outlet
            if outlet is not None:  # while unplugged, the samples are produced and lost, as on a real device
                outlet.push_chunk(chunk, timestamp=(self.t0 + k / RATE).tolist())
            self.sent = due

    def burst(self, seconds: float, value: float = np.nan) -> None:
        """From about a second from now, send ``value`` for ``seconds`` (NaN; or a sensor held at its rail)."""
        self.burst_value = value
        self.burst_from = self.sent + int(RATE)
        self.burst_to = self.burst_from + int(seconds * RATE)

    def unplug(self) -> None:
        self.outlet = None

    def plug_back(self) -> float:
        self.outlet = self._new_outlet()
        return pylsl.local_clock()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
