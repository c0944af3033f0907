"""Live simulation: a :class:`~devices.simulate.PhysioSimulator` published as LSL outlets in real time.

One outlet per modality (channel metadata from the device profile) plus the ``"Sim states"`` marker stream with
the true state at every change; the same streams :func:`~devices.simulate.simulate_session` returns offline. LSL
gives a new inlet only what is pushed after it connects, so the marker stream also repeats the current state
every ``state_repeat_s`` while it holds: a viewer that connects late knows the truth within that time.
Samples are generated a little ahead of the wall clock and pushed in small chunks, each stamped
``t0 + k / rate`` in the LSL clock, so the stamps are exactly regular.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from devices.player import LslPlayer
from devices.simulate import PhysioSimulator, block_streams

logger = logging.getLogger(__name__)

#: Generate this far ahead of the wall clock (s); also the length of each generated block.
_AHEAD_S = 0.25


class LiveSimulation:
    """Publish simulated paired signals and their state markers until stopped.

    Parameters
    ----------
    scenario : str
        ``"stress"``, ``"sleep"`` or ``"gait"``.
    modalities : sequence of str
        Any of ``ecg, ppg, eeg, emg, resp, acc``.
    seed : int
        Subject seed.
    devices : dict of str to str
        Device profile per modality (defaults from :data:`devices.profiles.SIMULATED_DEVICE`).
    artefacts : bool
        Add noise and artefacts.
    name_suffix : str
        Appended to stream names and source ids.
    dwell_scale : float
        Factor on the duration of every state episode (0.3: states change about every minute in ``stress``).
    state_repeat_s : float or None
        Repeat the current state on the marker stream this often while it holds (None: only at changes).
    """

    def __init__(
        self,
        scenario: str,
        modalities: Sequence[str],
        *,
        seed: int = 0,
        devices: dict[str, str] | None = None,
        artefacts: bool = True,
        name_suffix: str = "",
        dwell_scale: float = 1.0,
        state_repeat_s: float | None = 5.0,
    ) -> None:
        self.simulator = PhysioSimulator(
            scenario, list(modalities), seed=seed, devices=devices, artefacts=artefacts, dwell_scale=dwell_scale
        )
        self.player = LslPlayer()
        self._first = self.simulator.next_block(_AHEAD_S)
        self.streams = block_streams(self.simulator, self._first)
        self.stream_names = [s.name + name_suffix for s in self.streams]
        for stream, name in zip(self.streams, self.stream_names):
            self.player.add_outlet(stream, name=name, source_id=stream.source_id + name_suffix)
        self.state_repeat_s = state_repeat_s
        self._announced_s = 0.0  # simulation time of the last state marker
        self._stop = threading.Event()
        self._running = threading.Event()

    def describe(self) -> list[str]:
        """One line per published stream: name, type, channels, rate."""
        lines = []
        for stream, name in zip(self.streams, self.stream_names):
            rate = f"{stream.nominal_srate:g} Hz" if stream.is_regular else "irregular"
            lines.append(f"  {name:<16} {stream.type:<8} {stream.n_channels:>2} ch  {rate:<9} "
                         f"({', '.join(stream.channel_labels)})")
        return lines

    def _feed(self, on_state: Callable[[float, str], None] | None) -> None:
        start_s = self.simulator.elapsed_s
        block = self._first if self._first is not None else self.simulator.next_block(_AHEAD_S)
        if self._first is not None:
            start_s, self._first = 0.0, None
        streams = block_streams(self.simulator, block)
        if block.events:
            self._announced_s = block.events[-1][0]
        elif self.state_repeat_s is not None and start_s - self._announced_s >= self.state_repeat_s:
            state = self.simulator.states_at(np.array([start_s]))
            streams[-1] = dataclasses.replace(streams[-1], data=state.reshape(1, 1), timestamps=np.array([start_s]))
            self._announced_s = start_s
        for index, stream in enumerate(streams):
            self.player.feed(index, stream.data, stream.timestamps)
        if on_state is not None:
            for t_s, label in block.events:
                on_state(t_s, label)

    def wait_running(self, timeout_s: float = 5.0) -> bool:
        """Wait until :meth:`run` has started the clock (``player.t0_lsl`` is set); False on timeout."""
        return self._running.wait(timeout_s)

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current step (thread-safe); the outlets stay until :meth:`close`."""
        self._stop.set()

    def run(self, duration_s: float | None = None, on_state: Callable[[float, str], None] | None = None) -> None:
        """Stream in real time for ``duration_s`` seconds (forever when None) or until :meth:`stop`.

        ``on_state(t_s, label)`` is called at every state change.
        """
        player = self.player
        player.start()
        self._running.set()
        while not self._stop.is_set():
            elapsed = player.elapsed_rel_s()
            if duration_s is not None and elapsed >= duration_s:
                break
            while self.simulator.elapsed_s < elapsed + _AHEAD_S:
                self._feed(on_state)
            player.step()
            player.sleep_step()
        player.step()

    def close(self) -> None:
        """Drop the outlets."""
        self.player.close()

    def __enter__(self) -> LiveSimulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
