"""Live simulation: a :class:`~devices.simulate.PhysioSimulator` published as LSL outlets in real time.

One outlet per modality (channel metadata from the device profile) plus a marker stream with the true state at
every change. Samples are generated a little ahead of the wall clock and pushed in small chunks, each sample
stamped ``t0 + k / rate`` in the LSL clock, so the stamps are exactly regular.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from devices.player import LslPlayer
from devices.recording import Stream
from devices.simulate import PhysioSimulator

logger = logging.getLogger(__name__)

#: Generate this far ahead of the wall clock (s); also the size of each generated block.
_AHEAD_S = 0.25


def _empty_stream(name: str, lsl_type: str, sfreq_hz: float, labels: Sequence[str], units: Sequence[str],
                  types: Sequence[str], source_id: str, channel_format: str = "float32") -> Stream:
    dtype = object if channel_format == "string" else np.float32
    return Stream(
        name=name, type=lsl_type, data=np.zeros((0, len(labels)), dtype=dtype), timestamps=np.zeros(0),
        nominal_srate=sfreq_hz, channel_labels=list(labels), channel_units=list(units), channel_types=list(types),
        channel_format=channel_format, source_id=source_id,
    )


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
    ) -> None:
        self.simulator = PhysioSimulator(scenario, list(modalities), seed=seed, devices=devices, artefacts=artefacts)
        self.player = LslPlayer()
        self.scenario = scenario
        self._outlets: dict[str, int] = {}
        self._rates: dict[str, float] = {}
        self._generated: dict[str, int] = {}
        self.stream_names: list[str] = []
        for modality, profile in self.simulator.stream_profiles.items():
            name = f"Sim {modality.upper()}{name_suffix}"
            stream = _empty_stream(
                name, profile.lsl_type, profile.sfreq_hz, profile.channel_labels, profile.channel_units,
                profile.channel_types, f"biostream-sim-{scenario}-{seed}-{modality}{name_suffix}",
            )
            self._outlets[modality] = self.player.add_outlet(stream)
            self._rates[modality] = profile.sfreq_hz
            self._generated[modality] = 0
            self.stream_names.append(name)
        markers = _empty_stream(
            f"Sim states{name_suffix}", "Markers", 0.0, ["state"], [""], ["Markers"],
            f"biostream-sim-{scenario}-{seed}-states{name_suffix}", channel_format="string",
        )
        self._markers = self.player.add_outlet(markers)
        self.stream_names.append(markers.name)
        self._generated_s = 0.0

    def describe(self) -> list[str]:
        """One line per published stream: name, type, channels, rate."""
        lines = []
        for modality, profile in self.simulator.stream_profiles.items():
            lines.append(
                f"  Sim {modality.upper():<5} {profile.lsl_type:<6} {profile.n_channels:>2} ch  {profile.sfreq_hz:g} Hz"
                f"  ({', '.join(profile.channel_labels)})"
            )
        lines.append(f"  Sim states  Markers  scenario '{self.scenario}'")
        return lines

    def _generate_block(self, on_state: Callable[[float, str], None] | None) -> None:
        block = self.simulator.next_block(_AHEAD_S)
        for modality, data in block.data.items():
            rate = self._rates[modality]
            start = self._generated[modality]
            t_rel = (start + np.arange(len(data))) / rate
            self.player.feed(self._outlets[modality], data, t_rel)
            self._generated[modality] = start + len(data)
        for t_s, label in block.events:
            self.player.feed(self._markers, np.array([[label]], dtype=object), np.array([t_s]))
            if on_state is not None:
                on_state(t_s, label)
        self._generated_s += _AHEAD_S

    def run(self, duration_s: float | None = None, on_state: Callable[[float, str], None] | None = None) -> None:
        """Stream in real time for ``duration_s`` seconds (forever when None); ``on_state(t_s, label)`` per change."""
        self.player.start()
        while True:
            elapsed = self.player.elapsed_rel_s()
            if duration_s is not None and elapsed >= duration_s:
                break
            while self._generated_s < elapsed + _AHEAD_S and (duration_s is None or self._generated_s < duration_s):
                self._generate_block(on_state)
            self.player.step()
            self.player.sleep_step()
        self.player.step()

    def close(self) -> None:
        """Drop the outlets."""
        self.player.close()

    def __enter__(self) -> LiveSimulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
