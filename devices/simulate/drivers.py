"""The shared latent drivers of one simulated body, at a fixed control rate.

Every modality renders from the same drivers: the blended state physiology, the heart rate and the beat times
(so ECG and PPG share every beat), the breathing phase, the gait and tremor phases and the body's motion. The
drivers are computed frame by frame (``FRAME_S`` seconds at ``CONTROL_HZ``) in a fixed order, so their values
depend on the seed and the time only, not on how callers cut their requests.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from devices.simulate.noise import Event, EventTrack, FilteredNoise, OUNoise, bandpass_sos, hann_envelope
from devices.simulate.scenarios import PHYSIO_FIELDS
from devices.simulate.subject import SubjectParams
from devices.simulate.timeline import StateTimeline

#: Rate of the control signals (Hz).
CONTROL_HZ = 100.0
#: Length of one generation frame (s); every stateful generator advances in these steps.
FRAME_S = 4.0
_FRAME_N = int(round(FRAME_S * CONTROL_HZ))
#: Time constant of the heart rate following its target (s).
_HR_TAU_S = 3.0
#: Heart-rate rise during a burst of laughter (beats per minute).
_LAUGH_HR_BPM = 15.0
#: Heart-rate rise per g of fidgeting or body movement (beats per minute per g).
_MOVE_HR_BPM_PER_G = 80.0

DERIVED = (
    "hr_bpm",  # smoothed heart rate, beats per minute
    "resp_phase",  # unwrapped breathing phase (rad)
    "resp_amp",  # breathing depth including its irregularity
    "gait_phase",  # unwrapped step phase (steps)
    "tremor_phase",  # unwrapped tremor phase (rad)
    "motion_x", "motion_y", "motion_z",  # body acceleration without gravity (g), body axes
    "move_env",  # envelope of fidgeting and laughter (g), drives EMG bursts
    "laugh_env",  # envelope of laughter (0..1)
    "laugh_osc",  # laughter oscillation (-1..1)
)
#: Column names of the control matrix.
COLUMNS: tuple[str, ...] = PHYSIO_FIELDS + DERIVED
COL = {name: k for k, name in enumerate(COLUMNS)}


class ControlView:
    """Control signals linearly interpolated at given times; ``view["hr_bpm"]`` is an array of shape (n,).

    Columns are interpolated on first access only, since most renderers read a few of them.
    """

    def __init__(self, matrix: np.ndarray, index: np.ndarray, weight: np.ndarray) -> None:
        self._matrix = matrix
        self._index = index
        self._weight = weight
        self._cache: dict[str, np.ndarray] = {}

    def _columns(self, start: int, stop: int) -> np.ndarray:
        low = self._matrix[self._index, start:stop]
        high = self._matrix[self._index + 1, start:stop]
        return low + (high - low) * self._weight[:, None]

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._columns(COL[name], COL[name] + 1)[:, 0]
        return self._cache[name]

    @property
    def motion(self) -> np.ndarray:
        """Body acceleration without gravity (g), array of shape (n, 3) in body axes (forward, left, up)."""
        if "motion" not in self._cache:
            self._cache["motion"] = self._columns(COL["motion_x"], COL["motion_z"] + 1)
        return self._cache["motion"]


def _draw_fidget(rng: np.random.Generator, onset_s: float) -> Event:
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    return Event(onset_s, float(rng.uniform(1.0, 4.0)), {
        "amp": float(rng.uniform(0.05, 0.2)), "freq": float(rng.uniform(1.0, 3.5)),
        "phase": float(rng.uniform(0, 2 * np.pi)), "dx": direction[0], "dy": direction[1], "dz": direction[2],
    })


def _draw_laugh(rng: np.random.Generator, onset_s: float) -> Event:
    return Event(onset_s, float(rng.uniform(1.5, 4.0)), {
        "amp": float(rng.uniform(0.04, 0.1)), "freq": float(rng.uniform(4.0, 6.0)),
    })


class Drivers:
    """Shared control signals and heart beats of one subject in one scenario.

    Parameters
    ----------
    timeline : StateTimeline
        The latent states.
    subject : SubjectParams
        The subject's constants.
    rng : numpy.random.Generator
        Source of the drivers' own randomness (separate from the timeline's and the modalities').
    """

    def __init__(self, timeline: StateTimeline, subject: SubjectParams, rng: np.random.Generator) -> None:
        self.timeline = timeline
        self.subject = subject
        self._rng = rng
        physio = timeline.scenario.physio_matrix()
        max_rate = dict(zip(PHYSIO_FIELDS, physio.max(axis=0), strict=True))
        self._fidgets = EventTrack(self._rate("fidget_hz"), max_rate["fidget_hz"], _draw_fidget, rng)
        self._laughs = EventTrack(self._rate("laugh_hz"), max_rate["laugh_hz"], _draw_laugh, rng)
        self._resp_noise = OUNoise(4.0, CONTROL_HZ, 2, rng)
        self._heart_noise = OUNoise(0.7, CONTROL_HZ, 1, rng)
        self._mayer_noise = OUNoise(10.0, CONTROL_HZ, 1, rng)
        self._tremor_noise = OUNoise(1.0, CONTROL_HZ, 2, rng)
        self._restless = FilteredNoise(bandpass_sos(0.3, 4.0, CONTROL_HZ), 3, rng)
        self._hr_a = float(np.exp(-1.0 / (_HR_TAU_S * CONTROL_HZ)))
        self._hr_zi: np.ndarray | None = None
        self._resp_phase = float(rng.uniform(0, 2 * np.pi))
        self._heart_phase = float(rng.uniform(0, 1))
        self._gait_phase = float(rng.uniform(0, 1))
        self._tremor_phase = 0.0
        self._last_beat_s = -1.0
        self._next_frame = 0
        self._first_frame = 0
        self._frames: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None  # the frames concatenated, rebuilt when they change
        self._beat_t: list[np.ndarray] = []
        self._beat_rr: list[np.ndarray] = []

    def _rate(self, name: str):
        column = PHYSIO_FIELDS.index(name)
        return lambda times: self.timeline.physio_at(times)[:, column]

    # -- generation ------------------------------------------------------------------------------------------
    def _compute_frame(self, k: int) -> None:
        subject = self.subject
        tc = (k * _FRAME_N + np.arange(_FRAME_N)) / CONTROL_HZ
        physio = self.timeline.physio_at(tc)
        p = {name: physio[:, i] for i, name in enumerate(PHYSIO_FIELDS)}
        out = np.empty((_FRAME_N, len(COLUMNS)))
        out[:, : len(PHYSIO_FIELDS)] = physio

        target_hr = subject.hr_rest_bpm + p["hr_delta_bpm"]
        if self._hr_zi is None:
            self._hr_zi = np.array([self._hr_a * target_hr[0]])
        hr, self._hr_zi = signal.lfilter([1 - self._hr_a], [1.0, -self._hr_a], target_hr, zi=self._hr_zi)

        resp_noise = self._resp_noise(_FRAME_N)
        resp_hz = np.maximum(0.05, (p["resp_bpm"] + subject.resp_offset_bpm) / 60.0
                             * (1 + p["resp_irregular"] * resp_noise[:, 0]))
        resp_phase = self._resp_phase + np.cumsum(resp_hz) * (2 * np.pi / CONTROL_HZ)
        self._resp_phase = float(resp_phase[-1])
        resp_amp = p["resp_depth"] * np.maximum(0.2, 1 + 1.5 * p["resp_irregular"] * resp_noise[:, 1])

        gait_phase = self._gait_phase + np.cumsum(p["step_hz"] * subject.cadence) / CONTROL_HZ
        self._gait_phase = float(gait_phase[-1])
        tremor_noise = self._tremor_noise(_FRAME_N)
        tremor_phase = self._tremor_phase + np.cumsum(
            subject.tremor_hz * (1 + 0.05 * tremor_noise[:, 0])) * (2 * np.pi / CONTROL_HZ)
        self._tremor_phase = float(tremor_phase[-1])

        motion, move_env, laugh_env, laugh_osc = self._motion(tc, p, gait_phase, tremor_phase, tremor_noise,
                                                              resp_phase, resp_amp)

        # Heart: integral pulse-frequency modulation. Respiratory sinus arrhythmia, Mayer waves (~0.1 Hz) and
        # fast jitter modulate the instantaneous rate; a beat fires whenever the phase passes an integer.
        hrv = p["hrv"] * subject.hrv_scale
        mayer = np.sin(2 * np.pi * 0.1 * tc + 0.8 * self._mayer_noise(_FRAME_N)[:, 0])
        modulation = 0.035 * np.sin(resp_phase) + 0.025 * mayer + 0.015 * self._heart_noise(_FRAME_N)[:, 0]
        # Laughing and body movements (arousals) raise the heart rate for their duration.
        surge = _LAUGH_HR_BPM * laugh_env + _MOVE_HR_BPM_PER_G * move_env
        heart_hz = np.maximum(0.5, (hr + surge) / 60.0 * (1 + hrv * modulation))
        previous = self._heart_phase
        phase = previous + np.cumsum(heart_hz) / CONTROL_HZ
        self._heart_phase = float(phase[-1])
        before = np.concatenate([[previous], phase[:-1]])
        crossing = np.flatnonzero(np.floor(phase) > np.floor(before))
        frac = (np.floor(phase[crossing]) - before[crossing]) / (phase[crossing] - before[crossing])
        beats = tc[crossing] - (1 - frac) / CONTROL_HZ
        rr = np.diff(np.concatenate([[self._last_beat_s], beats]))
        if self._last_beat_s < 0 and beats.size:
            rr[0] = 60.0 / hr[crossing[0]]
        if beats.size:
            self._last_beat_s = float(beats[-1])

        for name, values in (
            ("hr_bpm", hr), ("resp_phase", resp_phase), ("resp_amp", resp_amp), ("gait_phase", gait_phase),
            ("tremor_phase", tremor_phase), ("motion_x", motion[:, 0]), ("motion_y", motion[:, 1]),
            ("motion_z", motion[:, 2]), ("move_env", move_env), ("laugh_env", laugh_env), ("laugh_osc", laugh_osc),
        ):
            out[:, COL[name]] = values
        self._frames.append(out)
        self._matrix = None
        self._beat_t.append(beats)
        self._beat_rr.append(rr)

    def _motion(self, tc, p, gait_phase, tremor_phase, tremor_noise, resp_phase, resp_amp):
        t0, t1 = float(tc[0]), float(tc[-1]) + 1 / CONTROL_HZ
        step = 2 * np.pi * gait_phase
        gait = p["gait_amp"][:, None] * np.stack([
            0.12 * np.sin(step + 0.8),
            0.08 * np.sin(step / 2),  # side sway follows the stride (two steps)
            0.22 * (np.cos(step) + 0.35 * np.cos(2 * step + 0.6)),
        ], axis=1)
        tremor = (p["tremor_amp"] * 0.06 * (1 + 0.3 * tremor_noise[:, 1]) * np.sin(tremor_phase))[:, None] \
            * np.array([0.5, 0.4, 1.0])
        motion = gait + tremor + p["restless_g"][:, None] * self._restless(len(tc))
        motion[:, 0] += 0.003 * resp_amp * np.sin(resp_phase)  # chest wall moves with breathing
        move_env = np.zeros(len(tc))
        for ev in self._fidgets.events(t0, t1):
            dt = tc - ev.onset_s
            v = ev.values
            env = v["amp"] * hann_envelope(dt, ev.duration_s)
            wave = env * np.sin(2 * np.pi * v["freq"] * dt + v["phase"])
            motion += wave[:, None] * np.array([v["dx"], v["dy"], v["dz"]])
            move_env += env
        laugh_env = np.zeros(len(tc))
        laugh_osc = np.zeros(len(tc))
        for ev in self._laughs.events(t0, t1):
            dt = tc - ev.onset_s
            env = hann_envelope(dt, ev.duration_s)
            osc = np.sin(2 * np.pi * ev.values["freq"] * dt)
            motion += (ev.values["amp"] * env * osc)[:, None] * np.array([0.6, 0.2, 0.8])
            move_env += ev.values["amp"] * env
            laugh_env += env
            laugh_osc += env * osc
        return motion, move_env, laugh_env, laugh_osc

    # -- access ----------------------------------------------------------------------------------------------
    def _ensure(self, t_s: float) -> None:
        """Compute frames until the control grid reaches past ``t_s`` by one control step."""
        needed = int(np.floor(t_s * CONTROL_HZ)) // _FRAME_N + 1
        while self._next_frame <= needed:
            self._compute_frame(self._next_frame)
            self._next_frame += 1

    def view(self, times_s: np.ndarray) -> ControlView:
        """Return the control signals linearly interpolated at ``times_s`` (s), array of shape (n,)."""
        times_s = np.asarray(times_s, dtype=np.float64)
        if times_s.size == 0:
            return ControlView(np.zeros((2, len(COLUMNS))), np.zeros(0, np.int64), np.zeros(0))
        self._ensure(float(times_s.max()))
        if self._matrix is None:
            self._matrix = np.concatenate(self._frames)
        matrix = self._matrix
        position = times_s * CONTROL_HZ - self._first_frame * _FRAME_N
        if position.min() < 0:
            if self._first_frame > 0:
                raise RuntimeError(f"control signals before {self._first_frame * FRAME_S} s were released")
            # A beat just before the start (its waves reach into the first samples) holds the first values.
            position = np.maximum(position, 0.0)
        index = np.minimum(position.astype(np.int64), len(matrix) - 2)
        return ControlView(matrix, index, position - index)

    def beats(self, t_start_s: float, t_end_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Return R-peak times (s) in ``[t_start_s, t_end_s)`` and their preceding RR intervals (s).

        Returns
        -------
        times : array of shape (n_beats,)
        rr : array of shape (n_beats,)
        """
        self._ensure(t_end_s)
        times = np.concatenate(self._beat_t)
        rr = np.concatenate(self._beat_rr)
        keep = (times >= t_start_s) & (times < t_end_s)
        return times[keep], rr[keep]

    def release_before(self, t_s: float) -> None:
        """Forget control frames that end before ``t_s`` (s); later requests must not reach back before it."""
        frame = int(np.floor(t_s / FRAME_S))
        while self._first_frame < frame and len(self._frames) > 2:
            self._frames.pop(0)
            self._beat_t.pop(0)
            self._beat_rr.pop(0)
            self._first_frame += 1
            self._matrix = None
