"""Stateful noise sources and event tracks that continue seamlessly from one call to the next."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import signal


def bandpass_sos(low_hz: float, high_hz: float, sfreq_hz: float, order: int = 2) -> np.ndarray | None:
    """Return a Butterworth band-pass (or low-pass when ``low_hz`` is 0) in SOS form; None if the band is empty.

    The upper edge is clipped to 0.45 of ``sfreq_hz``.
    """
    high_hz = min(high_hz, 0.45 * sfreq_hz)
    if low_hz >= high_hz:
        return None
    if low_hz <= 0:
        return signal.butter(order, high_hz, btype="lowpass", fs=sfreq_hz, output="sos")
    return signal.butter(order, [low_hz, high_hz], btype="bandpass", fs=sfreq_hz, output="sos")


class FilteredNoise:
    """White Gaussian noise through a fixed SOS filter, scaled to unit variance, continuous across calls.

    Parameters
    ----------
    sos : array of shape (n_sections, 6)
        The filter.
    n_channels : int
        Independent noise channels.
    rng : numpy.random.Generator
        Source of the white noise.
    """

    def __init__(self, sos: np.ndarray, n_channels: int, rng: np.random.Generator) -> None:
        self._sos = sos
        self._rng = rng
        self._n_channels = n_channels
        # Parseval: the output variance of unit white noise is the mean of |H|^2 over [0, pi).
        _, response = signal.sosfreqz(sos, worN=1 << 15)
        self._gain = 1.0 / np.sqrt(np.mean(np.abs(response) ** 2))
        self._zi = np.zeros((sos.shape[0], 2, n_channels))
        # Start in the steady state rather than from rest: run a warm-up long enough for the filter to settle.
        self(int(8 / max(1e-3, self._slowest_pole_rate())) + 64)

    def _slowest_pole_rate(self) -> float:
        _, poles, _ = signal.sos2zpk(self._sos)
        return float(1.0 - np.max(np.abs(poles)))

    def __call__(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples, array of shape (n, n_channels)."""
        white = self._rng.standard_normal((n, self._n_channels))
        out, self._zi = signal.sosfilt(self._sos, white, axis=0, zi=self._zi)
        return out * self._gain


class OUNoise:
    """Ornstein-Uhlenbeck (first-order low-pass) noise of unit variance and time constant ``tau_s``.

    Parameters
    ----------
    tau_s : float
        Correlation time (s).
    sfreq_hz : float
        Sampling rate of the output (Hz).
    n_channels : int
        Independent channels.
    rng : numpy.random.Generator
        Source of the driving noise.
    """

    def __init__(self, tau_s: float, sfreq_hz: float, n_channels: int, rng: np.random.Generator) -> None:
        self._a = float(np.exp(-1.0 / (tau_s * sfreq_hz)))
        self._b = np.sqrt(1.0 - self._a**2)
        self._rng = rng
        self._n_channels = n_channels
        self._zi = self._a * rng.standard_normal((1, n_channels))

    def __call__(self, n: int) -> np.ndarray:
        """Return the next ``n`` samples, array of shape (n, n_channels)."""
        white = self._rng.standard_normal((n, self._n_channels))
        out, self._zi = signal.lfilter([self._b], [1.0, -self._a], white, axis=0, zi=self._zi)
        return out


@dataclass
class Event:
    """A discrete event (spindle, blink, fidget, lead-off ...): onset and duration in s, plus drawn values."""

    onset_s: float
    duration_s: float
    values: dict[str, float] = field(default_factory=dict)

    @property
    def end_s(self) -> float:
        """Time the event ends (s)."""
        return self.onset_s + self.duration_s


class EventTrack:
    """Events of a Poisson process whose rate follows the state, drawn interval by interval, in order.

    Parameters
    ----------
    rate_hz : callable
        Maps times (s), array of shape (n,), to the event rate (Hz) in force, array of shape (n,).
    max_rate_hz : float
        An upper bound of ``rate_hz`` (candidates are drawn at this rate and thinned).
    draw : callable
        ``draw(rng, onset_s) -> Event`` draws one event's duration and values.
    rng : numpy.random.Generator
        Source of the events.
    """

    def __init__(
        self,
        rate_hz: Callable[[np.ndarray], np.ndarray],
        max_rate_hz: float,
        draw: Callable[[np.random.Generator, float], Event],
        rng: np.random.Generator,
    ) -> None:
        self._rate_hz = rate_hz
        self._max_rate_hz = max_rate_hz
        self._draw = draw
        self._rng = rng
        self._active: list[Event] = []

    def events(self, t_start_s: float, t_end_s: float) -> list[Event]:
        """Draw the events starting in ``[t_start_s, t_end_s)`` and return all that overlap the interval.

        Calls must cover consecutive intervals.
        """
        self._active = [e for e in self._active if e.end_s > t_start_s]
        if self._max_rate_hz > 0:
            n = int(self._rng.poisson(self._max_rate_hz * (t_end_s - t_start_s)))
            onsets = np.sort(self._rng.uniform(t_start_s, t_end_s, size=n))
            keep = self._rng.random(n) * self._max_rate_hz < self._rate_hz(onsets)
            self._active.extend(self._draw(self._rng, float(t)) for t in onsets[keep])
        return list(self._active)


def hann_envelope(dt_s: np.ndarray, duration_s: float) -> np.ndarray:
    """Return a Hann window over ``[0, duration_s]`` evaluated at ``dt_s`` (zero outside), same shape."""
    inside = (dt_s >= 0) & (dt_s <= duration_s)
    return np.where(inside, 0.5 - 0.5 * np.cos(2 * np.pi * dt_s / duration_s), 0.0)
