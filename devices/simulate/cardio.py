"""ECG and PPG from the shared beat times: every R peak is followed, one pulse transit time later, by a pulse."""

from __future__ import annotations

import numpy as np

from devices.simulate.drivers import Drivers
from devices.simulate.noise import FilteredNoise, bandpass_sos

# ECG waves as (offset from R at RR = 1 s in s, width in s, amplitude relative to R). T's timing and width
# follow Bazett's sqrt(RR) scaling; the other waves barely change with rate.
_ECG_WAVES = np.array([
    (-0.17, 0.025, 0.12),  # P
    (-0.030, 0.010, -0.10),  # Q
    (0.0, 0.011, 1.0),  # R
    (0.035, 0.012, -0.22),  # S
    (0.28, 0.05, 1.0),  # T (amplitude replaced by the subject's T ratio)
])
_SCALES_WITH_RR = np.array([False, False, False, False, True])
#: Time before / after an R peak that its ECG waves reach (s).
_ECG_SPAN_S = (-0.3, 0.6)
#: Trunk-muscle noise in the ECG: relative to the state's EMG tone, during laughter and walking (µV RMS).
_TRUNK_TONIC = 1.0
_TRUNK_LAUGH_UV = 60.0
_TRUNK_GAIT_UV = 15.0  # trunk muscles brace at each step
#: Time after the pulse foot that a PPG pulse reaches (s).
_PPG_SPAN_S = 1.1


class ECGRenderer:
    """Renders ECG (µV) from the drivers' beats.

    Parameters
    ----------
    drivers : Drivers
        Shared drivers.
    n_channels : int
        Leads; the first has gain 1, the others a random gain and polarity.
    sfreq_hz : float
        Sampling rate (Hz).
    rng : numpy.random.Generator
        The modality's random source.
    """

    def __init__(self, drivers: Drivers, n_channels: int, sfreq_hz: float, rng: np.random.Generator) -> None:
        self._drivers = drivers
        subject = drivers.subject
        self._amps = _ECG_WAVES[:, 2].copy()
        self._amps[4] = subject.ecg_t_ratio
        self._amps *= subject.ecg_r_uv
        gains = rng.uniform(0.4, 1.2, size=n_channels) * rng.choice([-1.0, 1.0], size=n_channels)
        gains[0] = 1.0
        self._gains = gains
        # Chest leads pick up the trunk's muscles: tonic tension and the diaphragm's spasms when laughing.
        self._muscle = FilteredNoise(bandpass_sos(20.0, 60.0, sfreq_hz), 1, rng)

    def render(self, times_s: np.ndarray) -> np.ndarray:
        """Return the clean ECG at ``times_s``, array of shape (n, n_channels) in µV."""
        view = self._drivers.view(times_s)
        muscle = self._muscle(len(times_s))[:, 0] * (
            _TRUNK_TONIC * view["emg_tonic_uv"] + _TRUNK_LAUGH_UV * view["laugh_env"]
            + _TRUNK_GAIT_UV * view["gait_amp"] * (1 + np.cos(2 * np.pi * view["gait_phase"])))
        beats, rr = self._drivers.beats(times_s[0] + _ECG_SPAN_S[0] - 0.5, times_s[-1] - _ECG_SPAN_S[0])
        if beats.size == 0:
            return muscle[:, None] * self._gains[None, :]
        at_beat = self._drivers.view(beats)
        # Breathing rotates the heart's electrical axis: the QRS amplitude follows respiration (EDR).
        beat_gain = 1.0 + 0.08 * at_beat["resp_amp"] * np.sin(at_beat["resp_phase"])
        scale = np.sqrt(np.clip(rr, 0.3, 2.0))
        centres = _ECG_WAVES[:, 0][None, :] * np.where(_SCALES_WITH_RR, scale[:, None], 1.0)
        widths = _ECG_WAVES[:, 1][None, :] * np.where(_SCALES_WITH_RR, scale[:, None], 1.0)
        dt = times_s[:, None, None] - beats[None, :, None] - centres[None]  # (n, beats, waves)
        waves = np.exp(-0.5 * (dt / widths[None]) ** 2) * (self._amps[None, None, :] * beat_gain[None, :, None])
        ecg = waves.sum(axis=(1, 2)) + muscle
        return ecg[:, None] * self._gains[None, :]


class PPGRenderer:
    """Renders PPG (a.u.): a systolic pulse and a dicrotic wave per beat, one pulse transit time after its R peak.

    Parameters
    ----------
    drivers : Drivers
        Shared drivers.
    n_channels : int
        Channels (each a scaled copy).
    rng : numpy.random.Generator
        The modality's random source.
    """

    #: Time from the pulse foot to the systolic peak (s).
    RISE_S = 0.13

    def __init__(self, drivers: Drivers, n_channels: int, rng: np.random.Generator) -> None:
        self._drivers = drivers
        self._gains = rng.uniform(0.8, 1.2, size=n_channels)
        self._gains[0] = 1.0

    def render(self, times_s: np.ndarray) -> np.ndarray:
        """Return the clean PPG at ``times_s``, array of shape (n, n_channels) in a.u."""
        subject = self._drivers.subject
        view = self._drivers.view(times_s)
        # Breathing modulates venous return: a slow intensity wave under the pulses.
        base = 0.1 * subject.ppg_amp * view["resp_amp"] * np.sin(view["resp_phase"] + 1.0)
        beats, rr = self._drivers.beats(times_s[0] - _PPG_SPAN_S - 0.5, times_s[-1] + 1e-9)
        if beats.size:
            at_beat = self._drivers.view(beats)
            foot = beats + subject.ptt_s + at_beat["ptt_delta_s"]
            amp = subject.ppg_amp * at_beat["ppg_amp"] * (1 + 0.1 * at_beat["resp_amp"] * np.sin(at_beat["resp_phase"]))
            scale = np.sqrt(np.clip(rr, 0.3, 2.0))
            u = times_s[:, None] - foot[None, :]  # (n, beats)
            rise = u - self.RISE_S
            systolic = np.exp(-0.5 * (rise / np.where(rise < 0, 0.05, 0.11 * scale)) ** 2)
            # Constricted, stiffer vessels (low ppg_amp: stress) return a weaker reflected (dicrotic) wave.
            reflection = 0.35 * np.clip(at_beat["ppg_amp"], 0.2, 1.5) ** 2
            dicrotic = reflection * np.exp(-0.5 * ((u - 0.36 * scale) / (0.07 * scale)) ** 2)
            base = base + ((systolic + dicrotic) * np.where(u > -0.2, 1.0, 0.0)) @ amp
        return base[:, None] * self._gains[None, :]
