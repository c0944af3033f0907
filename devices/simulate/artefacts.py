"""Measurement noise and artefacts: sensor noise, baseline wander, motion, 50 Hz powerline and lead-off."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.simulate.drivers import ControlView
from devices.simulate.noise import Event, EventTrack, OUNoise
from devices.simulate.subject import SubjectParams

#: Mains frequency (Hz) of the simulated environment.
POWERLINE_HZ = 50.0


@dataclass(frozen=True)
class ArtefactSpec:
    """How a modality's sensor picks up noise and artefacts, in the modality's native unit.

    Parameters
    ----------
    noise : float
        White sensor noise, RMS (always present).
    wander : float
        Baseline wander, RMS.
    wander_tau_s : float
        Correlation time of the wander (s).
    motion_gain : float
        Motion artefact per g of body acceleration.
    powerline : float
        Amplitude of the 50 Hz interference (only where the rate resolves it).
    leadoff_hz : float
        Rate of lead-off episodes (flat or saturated segments), per second.
    saturation : float
        The value a saturated channel sticks at.
    """

    noise: float
    wander: float
    wander_tau_s: float
    motion_gain: float
    powerline: float
    leadoff_hz: float
    saturation: float


#: Artefact model per modality; native units: ecg/eeg/emg µV, ppg and resp a.u., acc g.
ARTEFACTS: dict[str, ArtefactSpec] = {
    "ecg": ArtefactSpec(noise=8.0, wander=120.0, wander_tau_s=3.0, motion_gain=400.0, powerline=15.0,
                        leadoff_hz=1 / 900, saturation=5000.0),
    "ppg": ArtefactSpec(noise=0.5, wander=8.0, wander_tau_s=4.0, motion_gain=400.0, powerline=0.0,
                        leadoff_hz=1 / 1200, saturation=500.0),
    "eeg": ArtefactSpec(noise=1.0, wander=8.0, wander_tau_s=4.0, motion_gain=60.0, powerline=3.0,
                        leadoff_hz=1 / 900, saturation=1000.0),
    "emg": ArtefactSpec(noise=1.5, wander=3.0, wander_tau_s=2.0, motion_gain=80.0, powerline=5.0,
                        leadoff_hz=1 / 900, saturation=5000.0),
    "resp": ArtefactSpec(noise=0.005, wander=0.1, wander_tau_s=8.0, motion_gain=2.0, powerline=0.0,
                         leadoff_hz=1 / 1200, saturation=5.0),
    "acc": ArtefactSpec(noise=0.004, wander=0.0, wander_tau_s=1.0, motion_gain=0.0, powerline=0.0,
                        leadoff_hz=0.0, saturation=8.0),
}


def _draw_leadoff(rng: np.random.Generator, onset_s: float) -> Event:
    return Event(onset_s, float(rng.uniform(0.5, 3.0)), {
        "saturated": float(rng.random() < 0.5), "sign": float(rng.choice([-1.0, 1.0])),
    })


class Artefacts:
    """Adds one modality's noise and (when enabled) artefacts to its clean signal, continuously.

    Parameters
    ----------
    modality : str
        Key of :data:`ARTEFACTS`.
    sfreq_hz : float
        Sampling rate (Hz).
    n_channels : int
        Channels of the stream.
    subject : SubjectParams
        Gives the powerline phase.
    rng : numpy.random.Generator
        The modality's own random source.
    enabled : bool
        False keeps only the white sensor noise.
    """

    def __init__(self, modality: str, sfreq_hz: float, n_channels: int, subject: SubjectParams,
                 rng: np.random.Generator, enabled: bool) -> None:
        self.spec = ARTEFACTS[modality]
        self.enabled = enabled
        self._sfreq_hz = sfreq_hz
        self._n_channels = n_channels
        self._rng = rng
        self._phase = subject.powerline_phase + rng.uniform(-0.3, 0.3, size=n_channels)
        self._powerline_amp = self.spec.powerline * rng.uniform(0.5, 1.5, size=n_channels)
        direction = rng.normal(size=(3, n_channels))
        self._motion_coupling = direction / np.linalg.norm(direction, axis=0) * self.spec.motion_gain
        self._wander = OUNoise(self.spec.wander_tau_s, sfreq_hz, n_channels, rng)
        self._leadoff = EventTrack(lambda t: np.full(len(t), self.spec.leadoff_hz), self.spec.leadoff_hz,
                                   _draw_leadoff, rng)

    def apply(self, clean: np.ndarray, times_s: np.ndarray, view: ControlView) -> np.ndarray:
        """Return ``clean`` plus noise and artefacts.

        Parameters
        ----------
        clean : array of shape (n, n_channels)
            The physiological signal, native units.
        times_s : array of shape (n,)
            Sample times (s), consecutive with the previous call's.
        view : ControlView
            Control signals at ``times_s`` (body motion).

        Returns
        -------
        array of shape (n, n_channels)
        """
        n = len(times_s)
        out = clean + self.spec.noise * self._rng.standard_normal((n, self._n_channels))
        if not self.enabled or n == 0:
            return out
        out += self.spec.wander * self._wander(n)
        if self.spec.motion_gain:
            out += view.motion @ self._motion_coupling
        if self._powerline_amp.any() and self._sfreq_hz > 2.2 * POWERLINE_HZ:
            out += self._powerline_amp * np.sin(2 * np.pi * POWERLINE_HZ * times_s[:, None] + self._phase)
        t_end = float(times_s[-1]) + 1.0 / self._sfreq_hz
        for ev in self._leadoff.events(float(times_s[0]), t_end):
            inside = (times_s >= ev.onset_s) & (times_s < ev.end_s)
            if ev.values["saturated"]:
                out[inside] = ev.values["sign"] * self.spec.saturation
            else:
                out[inside] = self.spec.noise * 0.05 * self._rng.standard_normal((int(inside.sum()), 1))
        return out
