"""EMG, respiration and acceleration: the body's muscles, breathing and movement."""

from __future__ import annotations

import numpy as np

from devices.simulate.drivers import Drivers
from devices.simulate.noise import Event, EventTrack, FilteredNoise, bandpass_sos, hann_envelope
from devices.simulate.scenarios import PHYSIO_FIELDS

#: Stride phase (0..1, from heel strike of the same leg) at which each muscle bursts during walking.
_BURST_PHASES = {"TA": (0.0, 0.7), "GS": (0.4,)}
_BURST_KAPPA = 10.0  # concentration of the von Mises bump: a burst lasts about a tenth of a stride
_BURST_UV = 120.0
_TREMOR_UV = 50.0
_MOVE_UV_PER_G = 300.0
_LAUGH_UV = 40.0


def muscle_of(label: str, index: int) -> tuple[str, int]:
    """Return a channel's muscle (``"TA"`` shin or ``"GS"`` calf) and side (0 left, 1 right).

    Labels like ``"TA_L"`` are read; otherwise channels alternate muscle, then side.
    """
    upper = label.upper()
    if "TA" in upper or "TIB" in upper:
        muscle = "TA"
    elif any(key in upper for key in ("GS", "GA", "SOL", "CALF")):
        muscle = "GS"
    else:
        muscle = ("TA", "GS")[index % 2]
    if upper.endswith(("_R", "-R", " R")) or upper.startswith("R"):
        side = 1
    elif upper.endswith(("_L", "-L", " L")) or upper.startswith("L"):
        side = 0
    else:
        side = (index // 2) % 2
    return muscle, side


class EMGRenderer:
    """Renders surface EMG (µV): band-limited noise under an envelope set by tone, gait, tremor and movement.

    Parameters
    ----------
    drivers : Drivers
        Shared drivers.
    channel_labels : sequence of str
        Muscle labels (see :func:`muscle_of`).
    sfreq_hz : float
        Sampling rate (Hz).
    rng : numpy.random.Generator
        The modality's random source.
    """

    def __init__(self, drivers: Drivers, channel_labels, sfreq_hz: float, rng: np.random.Generator) -> None:
        self._drivers = drivers
        n_channels = len(channel_labels)
        self._muscles = [muscle_of(label, k) for k, label in enumerate(channel_labels)]
        self._gain = drivers.subject.emg_gain * rng.uniform(0.8, 1.2, size=n_channels)
        sos = bandpass_sos(20.0, 150.0, sfreq_hz) if sfreq_hz > 50 else bandpass_sos(0.0, 0.45 * sfreq_hz, sfreq_hz)
        self._carrier = FilteredNoise(sos, n_channels, rng)
        column = PHYSIO_FIELDS.index("twitch_hz")
        max_rate = float(drivers.timeline.scenario.physio_matrix()[:, column].max())
        self._twitches = EventTrack(
            lambda t: drivers.timeline.physio_at(t)[:, column], max_rate,
            lambda g, onset: Event(onset, float(g.uniform(0.05, 0.3)), {
                "amp": float(g.uniform(20.0, 80.0)), "channel": float(g.integers(n_channels)),
            }),
            rng,
        )

    def render(self, times_s: np.ndarray) -> np.ndarray:
        """Return the clean EMG at ``times_s``, array of shape (n, n_channels) in µV."""
        n = len(times_s)
        view = self._drivers.view(times_s)
        envelope = np.empty((n, len(self._muscles)))
        stride = view["gait_phase"] / 2.0  # two steps per stride
        tremor = view["tremor_phase"]
        for k, (muscle, side) in enumerate(self._muscles):
            phase = 2 * np.pi * (stride + 0.5 * side)
            bursts = sum(np.exp(_BURST_KAPPA * (np.cos(phase - 2 * np.pi * c) - 1)) for c in _BURST_PHASES[muscle])
            # Freezing: shin and calf tremble in alternation at the tremor frequency.
            offset = 0.0 if muscle == "TA" else np.pi
            trembling = 0.5 + 0.5 * np.sin(tremor + offset + np.pi * side * 0.3)
            envelope[:, k] = (view["emg_tonic_uv"] + view["gait_amp"] * _BURST_UV * bursts
                              + view["tremor_amp"] * _TREMOR_UV * trembling
                              + _MOVE_UV_PER_G * view["move_env"] + _LAUGH_UV * view["laugh_env"])
        t_end = float(times_s[-1]) + (times_s[-1] - times_s[-2] if n > 1 else 0.0)
        for ev in self._twitches.events(float(times_s[0]), t_end):
            envelope[:, int(ev.values["channel"])] += ev.values["amp"] * hann_envelope(times_s - ev.onset_s,
                                                                                        ev.duration_s)
        return self._carrier(n) * envelope * self._gain[None, :]


class RespRenderer:
    """Renders a respiration belt signal (a.u.): inhalation rises faster than exhalation falls; laughter shakes it.

    Parameters
    ----------
    drivers : Drivers
        Shared drivers.
    n_channels : int
        Channels (scaled copies).
    rng : numpy.random.Generator
        The modality's random source.
    """

    def __init__(self, drivers: Drivers, n_channels: int, rng: np.random.Generator) -> None:
        self._drivers = drivers
        self._gains = rng.uniform(0.7, 1.3, size=n_channels)

    def render(self, times_s: np.ndarray) -> np.ndarray:
        """Return the clean respiration at ``times_s``, array of shape (n, n_channels) in a.u."""
        view = self._drivers.view(times_s)
        phase = view["resp_phase"]
        breath = view["resp_amp"] * (np.sin(phase) + 0.25 * np.sin(2 * phase + 0.7))
        laugh = -0.4 * view["laugh_env"] + 0.3 * view["laugh_osc"]  # laughter: staccato exhalations
        return (breath + laugh)[:, None] * self._gains[None, :]


class ACCRenderer:
    """Renders acceleration (g): gravity plus body motion, both rotated into the sensor's axes.

    Parameters
    ----------
    drivers : Drivers
        Shared drivers.
    n_channels : int
        Axes; 3 for x, y, z (more channels repeat the axes).
    rng : numpy.random.Generator
        The modality's random source.
    """

    def __init__(self, drivers: Drivers, n_channels: int, rng: np.random.Generator) -> None:
        self._drivers = drivers
        self._axes = np.arange(n_channels) % 3
        del rng  # the accelerometer adds no randomness of its own beyond sensor noise

    def render(self, times_s: np.ndarray) -> np.ndarray:
        """Return the clean acceleration at ``times_s``, array of shape (n, n_channels) in g."""
        view = self._drivers.view(times_s)
        body = view.motion + np.array([0.0, 0.0, 1.0])
        sensor = body @ self._drivers.subject.orientation.T
        return sensor[:, self._axes]
