"""Per-subject variation: the constants that make one simulated person differ from another."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SubjectParams:
    """One simulated subject, drawn from a seed.

    Attributes
    ----------
    hr_rest_bpm : float
        Resting heart rate (beats per minute).
    hrv_scale : float
        Individual scale of heart-rate variability.
    resp_offset_bpm : float
        Offset added to every state's breathing rate (breaths per minute).
    ptt_s : float
        Pulse transit time from the ECG R peak to the PPG pulse foot at rest (s).
    ecg_r_uv : float
        R-peak amplitude (µV).
    ecg_t_ratio : float
        T-wave amplitude relative to the R peak.
    ppg_amp : float
        Pulse amplitude (a.u.).
    alpha_hz, spindle_hz, tremor_hz : float
        Individual alpha peak frequency, sleep-spindle frequency and freezing tremor frequency (Hz).
    eeg_gain, emg_gain : float
        Individual amplitude factors of EEG and EMG.
    cadence : float
        Factor on the step cadence of walking.
    powerline_phase : float
        Phase of the 50 Hz interference (rad).
    orientation : array of shape (3, 3)
        Rotation from body axes (x forward, y left, z up) to the accelerometer's axes.
    """

    hr_rest_bpm: float
    hrv_scale: float
    resp_offset_bpm: float
    ptt_s: float
    ecg_r_uv: float
    ecg_t_ratio: float
    ppg_amp: float
    alpha_hz: float
    spindle_hz: float
    tremor_hz: float
    eeg_gain: float
    emg_gain: float
    cadence: float
    powerline_phase: float
    orientation: np.ndarray

    @classmethod
    def draw(cls, rng: np.random.Generator) -> SubjectParams:
        """Draw a subject from ``rng``."""
        # A small random rotation: the sensor sits roughly, not exactly, upright.
        angles = rng.normal(0.0, 0.25, size=3)
        cx, cy, cz = np.cos(angles)
        sx, sy, sz = np.sin(angles)
        rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
        return cls(
            hr_rest_bpm=float(np.clip(rng.normal(66.0, 5.0), 50.0, 85.0)),
            hrv_scale=float(np.exp(rng.normal(0.0, 0.25))),
            resp_offset_bpm=float(np.clip(rng.normal(0.0, 1.2), -3.0, 3.0)),
            ptt_s=float(rng.uniform(0.20, 0.30)),
            ecg_r_uv=float(rng.uniform(800.0, 1500.0)),
            ecg_t_ratio=float(rng.uniform(0.2, 0.35)),
            ppg_amp=float(rng.uniform(40.0, 120.0)),
            alpha_hz=float(np.clip(rng.normal(10.0, 0.7), 8.5, 11.5)),
            spindle_hz=float(rng.uniform(12.0, 14.0)),
            tremor_hz=float(rng.uniform(4.0, 7.0)),
            eeg_gain=float(np.exp(rng.normal(0.0, 0.2))),
            emg_gain=float(np.exp(rng.normal(0.0, 0.2))),
            cadence=float(np.clip(rng.normal(1.0, 0.06), 0.85, 1.15)),
            powerline_phase=float(rng.uniform(0.0, 2 * np.pi)),
            orientation=rot_z @ rot_y @ rot_x,
        )
