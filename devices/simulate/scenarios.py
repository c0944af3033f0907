"""Scenario tables: the latent states, how long they last, where they lead, and what they do to the body.

Each scenario is data: one :class:`StateSpec` per state holding its duration distribution, its transition
probabilities and its :class:`Physio` targets. The generators read these tables; nothing downstream branches on
state names.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field, fields

import numpy as np

from devices.simulate._validate import choose


@dataclass(frozen=True)
class Physio:
    """What one state does to the body; every field is a number so that states can be blended in transitions.

    Rates of discrete events are in events per second (Hz); EEG amplitudes are RMS in µV before the subject's
    gain; motion amplitudes are in g.
    """

    # cardio-respiratory
    hr_delta_bpm: float = 0.0  #: heart rate relative to the subject's resting rate
    hrv: float = 1.0  #: scale of heart-rate variability (respiratory sinus arrhythmia, Mayer waves, beat jitter)
    resp_bpm: float = 14.0  #: breathing rate, breaths per minute
    resp_depth: float = 1.0  #: tidal amplitude factor
    resp_irregular: float = 0.08  #: relative standard deviation of the breathing rate
    ptt_delta_s: float = 0.0  #: change of pulse transit time (shorter under sympathetic drive)
    ppg_amp: float = 1.0  #: pulse amplitude factor (vasoconstriction lowers it)
    # EEG rhythms, RMS µV
    delta_uv: float = 6.0
    theta_uv: float = 4.0
    alpha_uv: float = 6.0
    beta_uv: float = 3.0
    muscle_uv: float = 1.5  #: broadband > 30 Hz scalp-muscle activity
    # EEG graphoelements, events per second
    spindle_hz: float = 0.0
    kcomplex_hz: float = 0.0
    sawtooth_hz: float = 0.0
    eye_move_hz: float = 0.0
    blink_hz: float = 0.0
    # EMG
    emg_tonic_uv: float = 8.0  #: tonic muscle activity, RMS µV
    twitch_hz: float = 0.0  #: phasic twitches (REM)
    # movement
    step_hz: float = 0.0  #: step cadence (steps per second) before the subject's factor
    gait_amp: float = 0.0  #: strength of stepping (1 = normal walking)
    tremor_amp: float = 0.0  #: 3-8 Hz trembling of the legs (freezing of gait)
    fidget_hz: float = 0.0  #: fidgeting / body movements
    laugh_hz: float = 0.0  #: laughter bursts
    restless_g: float = 0.004  #: continuous small body motion, g RMS


#: Names of the :class:`Physio` fields, in the column order of :meth:`Scenario.physio_matrix`.
PHYSIO_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Physio))


@dataclass(frozen=True)
class StateSpec:
    """One latent state of a scenario.

    Parameters
    ----------
    name : str
        State label (what marker streams carry).
    mean_s, cv, min_s : float
        Duration of one episode: gamma-distributed with mean ``mean_s`` seconds and coefficient of variation
        ``cv``, never shorter than ``min_s``.
    next : dict of str to float
        Transition probabilities to the following state (normalised when used).
    physio : Physio
        Physiological targets while in this state.
    """

    name: str
    mean_s: float
    cv: float
    min_s: float
    next: dict[str, float]
    physio: Physio = field(default_factory=Physio)


@dataclass(frozen=True)
class Scenario:
    """A scenario: its states, the initial one, and how fast the body follows a change of state.

    Parameters
    ----------
    transition_s : float
        Duration of the raised-cosine blend between the physiology of two consecutive states.
    epoch_s : float
        When > 0, episode durations are whole multiples of this (sleep scoring epochs).
    """

    name: str
    states: tuple[StateSpec, ...]
    initial: str
    transition_s: float
    epoch_s: float = 0.0

    @property
    def state_names(self) -> tuple[str, ...]:
        """State labels in table order."""
        return tuple(s.name for s in self.states)

    def physio_matrix(self) -> np.ndarray:
        """Return the physiology targets, array of shape (n_states, n_fields) in :data:`PHYSIO_FIELDS` order."""
        return np.array([astuple(s.physio) for s in self.states], dtype=np.float64)

    def transition_matrix(self) -> np.ndarray:
        """Return row-normalised transition probabilities, array of shape (n_states, n_states)."""
        names = self.state_names
        matrix = np.zeros((len(names), len(names)))
        for i, s in enumerate(self.states):
            for target, p in s.next.items():
                matrix[i, names.index(target)] = p
        return matrix / matrix.sum(axis=1, keepdims=True)


_STRESS = Scenario(
    "stress",
    (
        StateSpec(
            "baseline", 240.0, 0.4, 60.0, {"stress": 0.5, "amusement": 0.5},
            Physio(resp_bpm=13.0, alpha_uv=9.0, beta_uv=3.0, muscle_uv=1.5, blink_hz=0.2, emg_tonic_uv=6.0,
                   fidget_hz=1 / 60, restless_g=0.004),
        ),
        StateSpec(
            "stress", 180.0, 0.4, 60.0, {"baseline": 0.7, "amusement": 0.3},
            Physio(hr_delta_bpm=22.0, hrv=0.45, resp_bpm=19.0, resp_depth=0.8, resp_irregular=0.12,
                   ptt_delta_s=-0.025, ppg_amp=0.65, delta_uv=5.0, alpha_uv=4.0, beta_uv=8.0, muscle_uv=5.0,
                   blink_hz=0.5, emg_tonic_uv=18.0, fidget_hz=0.12, restless_g=0.015),
        ),
        StateSpec(
            "amusement", 150.0, 0.4, 60.0, {"baseline": 0.7, "stress": 0.3},
            Physio(hr_delta_bpm=10.0, hrv=1.4, resp_bpm=15.5, resp_depth=1.1, resp_irregular=0.2,
                   ptt_delta_s=-0.01, ppg_amp=0.9, theta_uv=6.0, alpha_uv=6.0, beta_uv=5.0, muscle_uv=3.0,
                   blink_hz=0.35, emg_tonic_uv=11.0, fidget_hz=0.02, laugh_hz=0.12, restless_g=0.008),
        ),
    ),
    initial="baseline",
    transition_s=20.0,
)

_SLEEP = Scenario(
    "sleep",
    (
        StateSpec(
            "wake", 300.0, 0.8, 30.0, {"N1": 0.8, "N2": 0.2},
            Physio(hr_delta_bpm=4.0, hrv=0.8, resp_bpm=15.0, resp_irregular=0.15, alpha_uv=10.0, beta_uv=4.0,
                   muscle_uv=3.0, blink_hz=0.25,
                   eye_move_hz=0.1, emg_tonic_uv=10.0, fidget_hz=0.05, restless_g=0.012),
        ),
        StateSpec(
            "N1", 120.0, 0.7, 30.0, {"N2": 0.75, "wake": 0.2, "REM": 0.05},
            Physio(hr_delta_bpm=-5.0, resp_bpm=14.0, resp_depth=0.9, resp_irregular=0.1, ppg_amp=1.1,
                   delta_uv=10.0, theta_uv=9.0, alpha_uv=3.0, beta_uv=2.0, muscle_uv=1.0, eye_move_hz=0.05,
                   emg_tonic_uv=6.0, fidget_hz=0.008, restless_g=0.004),
        ),
        StateSpec(
            "N2", 600.0, 0.6, 30.0, {"N3": 0.45, "REM": 0.3, "N1": 0.1, "wake": 0.15},
            Physio(hr_delta_bpm=-8.0, hrv=1.1, resp_bpm=13.5, resp_irregular=0.06, ppg_amp=1.2, delta_uv=15.0,
                   theta_uv=7.0, alpha_uv=2.5, beta_uv=2.0, muscle_uv=0.7, spindle_hz=0.15, kcomplex_hz=0.04,
                   emg_tonic_uv=4.0, fidget_hz=0.002, restless_g=0.002),
        ),
        StateSpec(
            "N3", 480.0, 0.6, 30.0, {"N2": 0.8, "wake": 0.1, "REM": 0.1},
            Physio(hr_delta_bpm=-11.0, hrv=1.25, resp_bpm=13.0, resp_depth=1.15, resp_irregular=0.03,
                   ppg_amp=1.3, delta_uv=40.0, theta_uv=8.0, alpha_uv=2.0, beta_uv=1.5, muscle_uv=0.5,
                   spindle_hz=0.03, emg_tonic_uv=3.0, fidget_hz=0.001, restless_g=0.0015),
        ),
        StateSpec(
            "REM", 480.0, 0.6, 30.0, {"N2": 0.5, "N1": 0.25, "wake": 0.25},
            Physio(hr_delta_bpm=-5.0, hrv=1.3, resp_bpm=16.0, resp_depth=0.8, resp_irregular=0.25, ppg_amp=0.9,
                   delta_uv=7.0, theta_uv=9.0, alpha_uv=4.0, beta_uv=3.5, muscle_uv=0.3, sawtooth_hz=0.12,
                   eye_move_hz=0.4, emg_tonic_uv=1.0, twitch_hz=0.3, restless_g=0.0015),
        ),
    ),
    initial="wake",
    transition_s=10.0,
    epoch_s=30.0,
)

_GAIT = Scenario(
    "gait",
    (
        StateSpec(
            "walking", 20.0, 0.5, 5.0, {"freezing": 1.0},
            Physio(hr_delta_bpm=25.0, hrv=0.6, resp_bpm=20.0, resp_depth=1.2, ptt_delta_s=-0.02, ppg_amp=0.8,
                   theta_uv=4.0, alpha_uv=5.0, beta_uv=7.0, muscle_uv=4.0, blink_hz=0.3, emg_tonic_uv=10.0,
                   step_hz=1.8, gait_amp=1.0, restless_g=0.01),
        ),
        StateSpec(
            "freezing", 6.0, 0.5, 2.0, {"walking": 1.0},
            Physio(hr_delta_bpm=17.0, hrv=0.7, resp_bpm=18.0, resp_irregular=0.2, ptt_delta_s=-0.015,
                   ppg_amp=0.8, delta_uv=7.0, theta_uv=10.0, alpha_uv=4.0, beta_uv=3.5, muscle_uv=3.0,
                   emg_tonic_uv=14.0, step_hz=0.0, gait_amp=0.15, tremor_amp=1.0, restless_g=0.01),
        ),
    ),
    initial="walking",
    transition_s=0.6,
)

#: Scenario tables by name.
SCENARIO_TABLES: dict[str, Scenario] = {s.name: s for s in (_STRESS, _SLEEP, _GAIT)}
#: Known scenario names.
SCENARIOS: tuple[str, ...] = tuple(SCENARIO_TABLES)


def get_scenario(name: str) -> Scenario:
    """Return the scenario table called ``name``; raise :class:`~devices.errors.BadInputError` naming the known ones."""
    return SCENARIO_TABLES[choose(name, SCENARIOS, "scenario")]


def scenario_states(scenario: str) -> tuple[str, ...]:
    """Return the state labels of ``scenario`` in table order (the class names a model of it predicts)."""
    return get_scenario(scenario).state_names
