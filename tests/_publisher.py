"""A wristband PPG outlet for the monitoring tests: pushes a simulated recording in real time, and can be spoiled
like a real device: a NaN or saturated burst, unplugged and plugged back, a clock that jumps, a crystal that runs
off its nominal rate, or a radio that holds samples and sends them in bursts."""

from __future__ import annotations

import threading

import numpy as np
import pylsl

from devices.lsl_meta import make_stream_info
from devices.simulate import simulate_session

RATE = 64.0


class Publisher:
    """A wristband PPG outlet pushing a simulated recording in real time, whose tests can spoil or unplug it.

    Parameters
    ----------
    rate_factor : float
        The true rate is ``RATE * rate_factor`` (the outlet still declares ``RATE``); samples are stamped on the
        true grid, as a device whose crystal runs fast or slow.
    hold_s : float
        Push only every ``hold_s`` seconds, all samples due at once (a device that buffers over its radio).
    """

    def __init__(self, name: str, source_id: str, seed: int = 3, rate_factor: float = 1.0, hold_s: float = 0.0):
        recording = simulate_session("stress", ["ppg"], duration_s=120.0, seed=seed)
        self.data = recording.stream("PPG").data.astype(np.float32)
        self.info_args = (name, "PPG", RATE, ["BVP"], ["a.u."])
        self.source_id = source_id
        self.true_rate_hz = RATE * rate_factor
        self.hold_s = hold_s
        self.outlet: pylsl.StreamOutlet | None = self._new_outlet()
        self.burst_from = self.burst_to = -1
        self.burst_value = np.nan
        self.jumps: list[tuple[int, float]] = []  # (first sample, clock shift in s from it on)
        self.sent = 0
        self.pushes: list[float] = []  # when each push happened (LSL clock)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _new_outlet(self) -> pylsl.StreamOutlet:
        return pylsl.StreamOutlet(make_stream_info(*self.info_args, source_id=self.source_id))

    def start(self) -> Publisher:
        self.t0 = pylsl.local_clock()
        self._thread.start()
        return self

    def _run(self) -> None:
        last_push = self.t0
        while not self._stop.wait(0.02):
            now = pylsl.local_clock()
            due = int((now - self.t0) * self.true_rate_hz)
            if due <= self.sent or now - last_push < self.hold_s:
                continue
            k = np.arange(self.sent, due)
            chunk = self.data[k % len(self.data)].copy()
            chunk[(k >= self.burst_from) & (k < self.burst_to)] = self.burst_value
            stamps = self.t0 + k / self.true_rate_hz
            for first, shift_s in self.jumps:
                stamps[k >= first] += shift_s
            outlet = self.outlet
            if outlet is not None:  # while unplugged, the samples are produced and lost, as on a real device
                outlet.push_chunk(chunk, timestamp=stamps.tolist())
                self.pushes.append(now)
            self.sent, last_push = due, now

    def burst(self, seconds: float, value: float = np.nan) -> None:
        """From about a second from now, send ``value`` for ``seconds`` (NaN; or a sensor held at its rail)."""
        self.burst_value = value
        self.burst_from = self.sent + int(RATE)
        self.burst_to = self.burst_from + int(seconds * RATE)

    def jump(self, shift_s: float) -> float:
        """From the next sample on, the device's clock reads ``shift_s`` later; return the sample's true time."""
        first = self.sent + 1
        self.jumps.append((first, shift_s))
        return self.t0 + first / self.true_rate_hz

    def unplug(self) -> None:
        self.outlet = None

    def plug_back(self) -> float:
        self.outlet = self._new_outlet()
        return pylsl.local_clock()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
