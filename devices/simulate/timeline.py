"""The latent state timeline: a semi-Markov chain of episodes, drawn lazily and extended as far as asked."""

from __future__ import annotations

import numpy as np

from devices._checks import ensure_positive
from devices.simulate.scenarios import Scenario


class StateTimeline:
    """Episodes of a scenario's states from time 0 on, with physiology targets blended across changes.

    Parameters
    ----------
    scenario : Scenario
        The table of states.
    rng : numpy.random.Generator
        Used only for episode durations and transitions, in order, so the timeline depends on the seed alone.
    dwell_scale : float
        Factor on every episode's duration (e.g. 0.3 for a demo whose states change about every minute).
    """

    def __init__(self, scenario: Scenario, rng: np.random.Generator, dwell_scale: float = 1.0) -> None:
        self.scenario = scenario
        self._rng = rng
        self.dwell_scale = ensure_positive(dwell_scale, "dwell_scale")
        self._names = scenario.state_names
        self._transitions = scenario.transition_matrix()
        self._physio = scenario.physio_matrix()
        self._starts: list[float] = [0.0]
        self._states: list[int] = [self._names.index(scenario.initial)]
        self._end = self._draw_duration(self._states[0])

    def _draw_duration(self, state: int) -> float:
        spec = self.scenario.states[state]
        shape = 1.0 / spec.cv**2
        duration = self.dwell_scale * max(spec.min_s, float(self._rng.gamma(shape, spec.mean_s / shape)))
        if self.scenario.epoch_s > 0:
            duration = max(1.0, round(duration / self.scenario.epoch_s)) * self.scenario.epoch_s
        return duration

    def extend_to(self, t_s: float) -> None:
        """Draw episodes until the timeline covers ``t_s`` seconds."""
        while self._end <= t_s:
            nxt = int(self._rng.choice(len(self._names), p=self._transitions[self._states[-1]]))
            self._starts.append(self._end)
            self._states.append(nxt)
            self._end += self._draw_duration(nxt)

    def changes_between(self, t_start_s: float, t_end_s: float) -> list[tuple[float, str]]:
        """Return the state changes in ``[t_start_s, t_end_s)`` as (time in s, new state) pairs.

        The initial state counts as a change at time 0.
        """
        self.extend_to(t_end_s)
        starts = np.asarray(self._starts)
        lo, hi = np.searchsorted(starts, [t_start_s, t_end_s], side="left")
        return [(float(starts[k]), self._names[self._states[k]]) for k in range(lo, hi)]

    def state_index_at(self, times_s: np.ndarray) -> np.ndarray:
        """Return the index (into the scenario's states) in force at each time, array of shape (n,)."""
        times_s = np.asarray(times_s, dtype=np.float64)
        if times_s.size:
            self.extend_to(float(times_s.max()))
        index = np.searchsorted(np.asarray(self._starts), times_s, side="right") - 1
        return np.asarray(self._states)[np.clip(index, 0, None)]

    def states_at(self, times_s: np.ndarray) -> np.ndarray:
        """Return the state label at each time, object array of shape (n,)."""
        return np.asarray(self._names, dtype=object)[self.state_index_at(times_s)]

    def physio_at(self, times_s: np.ndarray) -> np.ndarray:
        """Return the blended physiology targets at each time, array of shape (n, n_fields).

        Each change of state starts a raised-cosine blend of ``scenario.transition_s`` seconds from the previous
        values to the new ones; blends of changes closer together than that overlap and add up.
        """
        times_s = np.asarray(times_s, dtype=np.float64)
        if times_s.size == 0:
            return np.zeros((0, self._physio.shape[1]))
        self.extend_to(float(times_s.max()))
        starts = np.asarray(self._starts)
        values = self._physio[np.asarray(self._states)]
        tau = self.scenario.transition_s
        current = np.searchsorted(starts, times_s, side="right") - 1
        settled = np.clip(np.searchsorted(starts, times_s - tau, side="right") - 1, 0, None)
        out = values[settled].copy()
        for step in range(1, int((current - settled).max(initial=0)) + 1):
            k = settled + step
            active = k <= current
            if not active.any():
                break
            k_act = k[active]
            frac = np.clip((times_s[active] - starts[k_act]) / tau, 0.0, 1.0)
            ramp = 0.5 - 0.5 * np.cos(np.pi * frac)
            out[active] += (values[k_act] - values[k_act - 1]) * ramp[:, None]
        return out
