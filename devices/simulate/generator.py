"""The continuous simulator: one simulated subject, several modalities, delivered block by block.

Internally everything advances in fixed frames of :data:`~devices.simulate.drivers.FRAME_S` seconds, always in
the same order, and blocks are cut from those frames. So the samples depend on the seed and the time only: one
60 s block and a hundred odd-sized blocks adding up to 60 s give the same values.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from devices.errors import BadInputError
from devices.profiles import MODALITIES, SIMULATED_DEVICE, StreamProfile, simulated_stream_profile
from devices.simulate._validate import choose, positive, seed_int
from devices.simulate.artefacts import Artefacts
from devices.simulate.body import ACCRenderer, EMGRenderer, RespRenderer
from devices.simulate.cardio import ECGRenderer, PPGRenderer
from devices.simulate.drivers import FRAME_S, Drivers
from devices.simulate.neural import EEGRenderer
from devices.simulate.scenarios import get_scenario
from devices.simulate.subject import SubjectParams
from devices.simulate.timeline import StateTimeline

logger = logging.getLogger(__name__)

# Renderer factory per modality: (drivers, profile, rng) -> object with render(times_s) -> (n, n_channels).
_RENDERERS = {
    "ecg": lambda d, p, g: ECGRenderer(d, p.n_channels, p.sfreq_hz, g),
    "ppg": lambda d, p, g: PPGRenderer(d, p.n_channels, g),
    "eeg": lambda d, p, g: EEGRenderer(d, p.channel_labels, p.sfreq_hz, g),
    "emg": lambda d, p, g: EMGRenderer(d, p.channel_labels, p.sfreq_hz, g),
    "resp": lambda d, p, g: RespRenderer(d, p.n_channels, g),
    "acc": lambda d, p, g: ACCRenderer(d, p.n_channels, g),
}
# Factor from the renderers' native unit (µV for electrical signals, g for acceleration) to a profile's unit.
_UNIT_FACTORS = {
    "uV": 1.0, "µV": 1.0, "mV": 1e-3, "V": 1e-6,
    "g": 1.0, "m/s^2": 9.80665, "m/s2": 9.80665, "mg": 1e3,
}
_NATIVE_UNITS = {"ecg": "uV", "eeg": "uV", "emg": "uV", "acc": "g"}


def _rng(seed: int, key: str) -> np.random.Generator:
    """Return an independent generator for one part of the simulation (adding a modality changes no other)."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(key.encode())]))


def _unit_factors(modality: str, profile: StreamProfile) -> np.ndarray:
    if modality not in _NATIVE_UNITS:
        return np.ones(profile.n_channels)
    factors = []
    for unit in profile.channel_units:
        if unit not in _UNIT_FACTORS:
            raise BadInputError(
                f"simulated {modality} stream '{profile.name}': unit {unit!r} is not one of {list(_UNIT_FACTORS)}"
            )
        factors.append(_UNIT_FACTORS[unit])
    return np.asarray(factors)


def resolve_profiles(modalities: Sequence[str], devices: Mapping[str, str] | None = None) -> dict[str, StreamProfile]:
    """Return the stream profile of each simulated modality, taking device overrides into account.

    Parameters
    ----------
    modalities : sequence of str
        Modalities from :data:`devices.profiles.MODALITIES`, no repeats.
    devices : mapping of str to str, optional
        Device profile key per modality (e.g. ``{"eeg": "isruc_psg"}``); the device must have a stream of the
        modality's type.

    Raises
    ------
    BadInputError
        Unknown modality or device, repeated modality, override for a modality not simulated, or a device without
        a stream of that type.
    """
    if isinstance(modalities, str):
        modalities = [m.strip() for m in modalities.split(",") if m.strip()]
    modalities = list(modalities)
    if not modalities:
        raise BadInputError(f"'modalities' is empty; choose from {list(MODALITIES)}")
    for modality in modalities:
        choose(modality, MODALITIES, "modality")
    if len(set(modalities)) != len(modalities):
        raise BadInputError(f"'modalities' repeats a modality: {modalities}")
    devices = dict(devices or {})
    for modality in devices:
        choose(modality, modalities, "devices key (a simulated modality)")
    profiles = {}
    for modality in modalities:
        device = devices.get(modality)
        try:
            profiles[modality] = simulated_stream_profile(modality, device)
        except ValueError as err:
            raise BadInputError(f"cannot simulate {modality} as device {device!r}: {err}") from None
    return profiles


@dataclass(frozen=True)
class SimBlock:
    """The samples of every modality over one block of simulated time, and the state changes in it.

    Attributes
    ----------
    t_start_s, t_end_s : float
        The block covers ``[t_start_s, t_end_s)`` in seconds from the simulation start.
    data : dict of str to array of shape (n, n_channels), float32
        Samples per modality, in the units of its stream profile.
    first_index : dict of str to int
        Index (from the simulation start) of each modality's first sample in this block.
    sfreq_hz : dict of str to float
        Sampling rate per modality (Hz).
    events : tuple of (float, str)
        State changes in the block as (time in s from the simulation start, new state); the initial state is
        a change at time 0 and so belongs to the first block.
    """

    t_start_s: float
    t_end_s: float
    data: dict[str, np.ndarray]
    first_index: dict[str, int]
    sfreq_hz: dict[str, float]
    events: tuple[tuple[float, str], ...]

    def timestamps(self, modality: str) -> np.ndarray:
        """Return the sample times of ``modality`` in this block (s from the simulation start), shape (n,)."""
        n = self.data[modality].shape[0]
        return (self.first_index[modality] + np.arange(n)) / self.sfreq_hz[modality]


class PhysioSimulator:
    """A simulated subject streaming several modalities driven by one latent state timeline.

    Parameters
    ----------
    scenario : str
        One of :data:`~devices.simulate.scenarios.SCENARIOS` (``"stress"``, ``"sleep"``, ``"gait"``).
    modalities : sequence of str
        Modalities from :data:`devices.profiles.MODALITIES` (``"ecg"``, ``"ppg"``, ``"eeg"``, ``"emg"``,
        ``"resp"``, ``"acc"``); a comma-separated string is accepted too.
    seed : int
        Non-negative; fixes the subject, the state timeline and every signal.
    devices : mapping of str to str, optional
        Device profile key per modality overriding :data:`devices.profiles.SIMULATED_DEVICE`.
    artefacts : bool
        Add baseline wander, motion artefacts, 50 Hz powerline and rare lead-off segments. Sensor noise is
        always present.
    dwell_scale : float
        Factor on the duration of every state episode (see :class:`~devices.simulate.timeline.StateTimeline`).

    Raises
    ------
    BadInputError
        Unknown scenario, modality or device, a negative seed, or a ``dwell_scale`` that is not > 0.
    """

    def __init__(self, scenario: str, modalities: Sequence[str], seed: int = 0,
                 devices: Mapping[str, str] | None = None, artefacts: bool = True, dwell_scale: float = 1.0) -> None:
        self.scenario = get_scenario(scenario).name
        self.seed = seed_int(seed)
        self._profiles = resolve_profiles(modalities, devices)
        self.modalities: tuple[str, ...] = tuple(self._profiles)
        self.devices: dict[str, str] = {m: (devices or {}).get(m) or SIMULATED_DEVICE[m][0] for m in self.modalities}
        self.artefacts = bool(artefacts)
        self.timeline = StateTimeline(get_scenario(scenario), _rng(self.seed, "timeline"),
                                      positive(dwell_scale, "dwell_scale"))
        self.subject = SubjectParams.draw(_rng(self.seed, "subject"))
        self._drivers = Drivers(self.timeline, self.subject, _rng(self.seed, "drivers"))
        self._renderers = {}
        self._artefacts = {}
        self._factors = {}
        for m, profile in self._profiles.items():
            rng = _rng(self.seed, f"modality:{m}")
            self._renderers[m] = _RENDERERS[m](self._drivers, profile, rng)
            self._artefacts[m] = Artefacts(m, profile.sfreq_hz, profile.n_channels, self.subject, rng, artefacts)
            self._factors[m] = _unit_factors(m, profile)
        self._frame = 0
        self._generated = dict.fromkeys(self.modalities, 0)
        self._emitted = dict.fromkeys(self.modalities, 0)
        self._buffers: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        self._elapsed_s = 0.0
        logger.debug("simulator %s seed %d: %s", self.scenario, self.seed, self.devices)

    @property
    def stream_profiles(self) -> dict[str, StreamProfile]:
        """The stream profile (rate, channels, units, LSL type) of each modality, in modality order."""
        return dict(self._profiles)

    @property
    def elapsed_s(self) -> float:
        """Simulated time delivered so far (s)."""
        return self._elapsed_s

    def states_at(self, times_s: np.ndarray) -> np.ndarray:
        """Return the true state at each of ``times_s`` (s from the start), object array of shape (n,)."""
        return self.timeline.states_at(np.asarray(times_s, dtype=np.float64))

    def _generate_frame(self) -> None:
        t0, t1 = self._frame * FRAME_S, (self._frame + 1) * FRAME_S
        for m, profile in self._profiles.items():
            rate = profile.sfreq_hz
            n0, n1 = round(t0 * rate), round(t1 * rate)
            if n1 <= n0:
                continue
            times = (n0 + np.arange(n1 - n0)) / rate
            clean = self._renderers[m].render(times)
            noisy = self._artefacts[m].apply(clean, times, self._drivers.view(times))
            self._buffers[m].append((noisy * self._factors[m]).astype(np.float32))
            self._generated[m] = n1
        # Renderers reach back at most ~2 s before a frame (PPG pulse tails), so older controls can go.
        self._drivers.release_before(t0 - FRAME_S)
        self._frame += 1

    def next_block(self, duration_s: float) -> SimBlock:
        """Return the next ``duration_s`` seconds of every modality, continuing where the last block ended.

        Each modality gets ``round(t_end * rate) - round(t_start * rate)`` samples, so the counts of consecutive
        blocks add up to ``round(total_time * rate)``.

        Parameters
        ----------
        duration_s : float
            Length of the block (s), > 0.

        Returns
        -------
        SimBlock
        """
        duration_s = positive(duration_s, "duration_s")
        t_start = self._elapsed_s
        t_end = t_start + duration_s
        targets = {m: round(t_end * p.sfreq_hz) for m, p in self._profiles.items()}
        while any(self._generated[m] < targets[m] for m in self.modalities):
            self._generate_frame()
        data, first = {}, {}
        for m in self.modalities:
            n = targets[m] - self._emitted[m]
            buffered = np.concatenate(self._buffers[m]) if self._buffers[m] else np.zeros(
                (0, self._profiles[m].n_channels), np.float32)
            data[m], rest = buffered[:n], buffered[n:]
            self._buffers[m] = [rest] if len(rest) else []
            first[m] = self._emitted[m]
            self._emitted[m] = targets[m]
        self._elapsed_s = t_end
        events = tuple(self.timeline.changes_between(t_start, t_end))
        return SimBlock(t_start, t_end, data, first, {m: p.sfreq_hz for m, p in self._profiles.items()}, events)
