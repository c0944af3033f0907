"""Live simulation: a :class:`~devices.simulate.PhysioSimulator` published as LSL outlets in real time.

One outlet per modality (channel metadata from the device profile) plus the ``"Sim states"`` marker stream with
the true state at every change; the same streams :func:`~devices.simulate.simulate_session` returns offline.
Samples are generated a little ahead of the wall clock and pushed in small chunks, each stamped
``t0 + k / rate`` in the LSL clock, so the stamps are exactly regular.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

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
        self._stop = threading.Event()

    def describe(self) -> list[str]:
        """One line per published stream: name, type, channels, rate."""
        lines = []
        for stream, name in zip(self.streams, self.stream_names):
            rate = f"{stream.nominal_srate:g} Hz" if stream.is_regular else "irregular"
            lines.append(f"  {name:<16} {stream.type:<8} {stream.n_channels:>2} ch  {rate:<9} "
                         f"({', '.join(stream.channel_labels)})")
        return lines

    def _feed(self, on_state: Callable[[float, str], None] | None) -> None:
        block = self._first if self._first is not None else self.simulator.next_block(_AHEAD_S)
        self._first = None
        for index, stream in enumerate(block_streams(self.simulator, block)):
            self.player.feed(index, stream.data, stream.timestamps)
        if on_state is not None:
            for t_s, label in block.events:
                on_state(t_s, label)

    def stop(self) -> None:
        """Ask :meth:`run` to return after its current step (thread-safe); the outlets stay until :meth:`close`."""
        self._stop.set()

    def run(self, duration_s: float | None = None, on_state: Callable[[float, str], None] | None = None) -> None:
        """Stream in real time for ``duration_s`` seconds (forever when None) or until :meth:`stop`.

        ``on_state(t_s, label)`` is called at every state change.
        """
        player = self.player
        player.start()
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
