"""Per-window polyphase resampling to a model's sampling rate.

The rate ratio ``target / source`` is approximated by a fraction ``up / down`` whose denominator is at most
``max_denominator`` (:func:`rational_ratio`); exact for the usual rates (130 -> 100 is 10/13, 64 -> 125 is
125/64). :class:`PolyphaseResampler` designs the anti-aliasing FIR filter once (``scipy.signal.firwin`` with a
Kaiser window, the same design ``scipy.signal.resample_poly`` uses by default) and reuses it for every window.

Edge handling. A window is resampled together with up to :attr:`PolyphaseResampler.context_samples` real input
samples that precede it (half the filter's reach, rounded up to a multiple of ``down`` so the window's first
sample falls exactly on an output sample); the context is then cut off. Beyond the block's ends, the signal is
continued by point reflection about the end sample (``padtype="antireflect"``), which keeps value and slope
continuous; that is what the right edge (no future samples without adding latency) and the very first window of
a stream rely on. On a sine this leaves edge errors around 1e-3 of the amplitude at most rate pairs and a few
percent on the last one or two output samples when upsampling.

Output length. The caller asks for exactly ``n_out`` samples; polyphase output that comes out one sample longer
(because of rounding ``window_s * sfreq_hz`` and ``window_s * target_sfreq_hz`` separately) is cut, and output
that comes out shorter is extended by repeating its last sample.
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction

import numpy as np
from scipy.signal import firwin, resample_poly

from devices.errors import BadInputError

logger = logging.getLogger(__name__)


def rational_ratio(source_sfreq_hz: float, target_sfreq_hz: float, max_denominator: int = 1000) -> tuple[int, int]:
    """Approximate ``target_sfreq_hz / source_sfreq_hz`` by ``up / down`` in lowest terms.

    Parameters
    ----------
    source_sfreq_hz, target_sfreq_hz : float
        Input and output sampling rates in Hz (> 0).
    max_denominator : int
        Largest ``down`` allowed (``fractions.Fraction.limit_denominator``).

    Returns
    -------
    up, down : int
        The resampling factors, both >= 1.
    """
    for name, value in (("source_sfreq_hz", source_sfreq_hz), ("target_sfreq_hz", target_sfreq_hz)):
        if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value) and value > 0):
            raise BadInputError(f"'{name}' must be a finite number > 0, got {value!r} instead.")
    ratio = (Fraction(target_sfreq_hz) / Fraction(source_sfreq_hz)).limit_denominator(max_denominator)
    if ratio.numerator == 0:
        raise BadInputError(
            f"cannot resample {source_sfreq_hz} Hz -> {target_sfreq_hz} Hz with a denominator <= {max_denominator}"
        )
    return ratio.numerator, ratio.denominator


class PolyphaseResampler:
    """Resample windows from ``source_sfreq_hz`` to ``target_sfreq_hz`` with a fixed polyphase FIR filter.

    Parameters
    ----------
    source_sfreq_hz, target_sfreq_hz : float
        Input and output sampling rates in Hz.
    max_denominator : int
        Bound on ``down`` in the rational approximation (see :func:`rational_ratio`).
    window : str or tuple
        FIR design window for ``scipy.signal.firwin``.

    Attributes
    ----------
    up, down : int
        Resampling factors; the effective output rate is ``source_sfreq_hz * up / down``.
    context_samples : int
        Input samples of left context wanted before each window (a multiple of ``down``; 0 when up == down).
    """

    def __init__(
        self,
        source_sfreq_hz: float,
        target_sfreq_hz: float,
        *,
        max_denominator: int = 1000,
        window: str | tuple = ("kaiser", 5.0),
    ) -> None:
        self.source_sfreq_hz = float(source_sfreq_hz)
        self.target_sfreq_hz = float(target_sfreq_hz)
        self.up, self.down = rational_ratio(source_sfreq_hz, target_sfreq_hz, max_denominator)
        effective = self.source_sfreq_hz * self.up / self.down
        if not math.isclose(effective, self.target_sfreq_hz, rel_tol=1e-9):
            logger.info(
                "resampling %.6g Hz -> %.6g Hz as %d/%d gives %.9g Hz",
                self.source_sfreq_hz,
                self.target_sfreq_hz,
                self.up,
                self.down,
                effective,
            )
        if self.is_identity:
            self.taps = np.ones(1)
            self.context_samples = 0
            return
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate  # filter reach in the upsampled domain (scipy's default design)
        self.taps = firwin(2 * half_len + 1, 1.0 / max_rate, window=window)
        reach_in = -(-half_len // self.up)  # filter reach in input samples, rounded up
        self.context_samples = -(-reach_in // self.down) * self.down

    @property
    def is_identity(self) -> bool:
        """True when the rates are equal (up == down == 1) and samples pass through unchanged."""
        return self.up == 1 and self.down == 1

    def context_for(self, start_index: int) -> int:
        """Left context (input samples) usable for a window starting at absolute input index ``start_index``.

        The full :attr:`context_samples` when that many samples precede the window, otherwise the largest
        multiple of ``down`` that does (keeps the output grid aligned with the window's first sample).
        """
        if self.is_identity:
            return 0
        return min(self.context_samples, (start_index // self.down) * self.down)

    def resample(self, block: np.ndarray, n_context: int, n_out: int) -> np.ndarray:
        """Resample one window given with its left context.

        Parameters
        ----------
        block : array of shape (n_context + n_window, n_channels)
            Finite input samples at ``source_sfreq_hz``: the context, then the window.
        n_context : int
            Leading context samples in ``block``; a multiple of ``down`` (see :meth:`context_for`).
        n_out : int
            Output samples wanted.

        Returns
        -------
        array of shape (n_out, n_channels)
            float64 samples at ``target_sfreq_hz``; output sample ``j`` lies ``j / target_sfreq_hz`` s after the
            window's first input sample.
        """
        if n_context % self.down:
            raise ValueError(f"n_context must be a multiple of down={self.down}, got {n_context}")
        x = np.asarray(block, dtype=np.float64)
        if self.is_identity:
            y = x[n_context:]
        elif x.shape[0] < 2:
            # One sample carries no frequency content; also, scipy's antireflect padding of a length-1 signal
            # dies with SIGFPE (scipy 1.17), so never hand it one.
            y = np.repeat(x, n_out, axis=0)
        else:
            y = resample_poly(x, self.up, self.down, axis=0, window=self.taps, padtype="antireflect")
            y = y[n_context * self.up // self.down :]
        if y.shape[0] >= n_out:
            return y[:n_out]
        # A few samples short at most (the two window lengths are rounded separately): hold the last value.
        return np.concatenate([y, np.repeat(y[-1:], n_out - y.shape[0], axis=0)], axis=0)
