"""The window record the windower emits, and the seconds-to-samples rounding rule every length follows."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from devices.windowing.quality import QualityFlags


def seconds_to_samples(duration_s: float, sfreq_hz: float) -> int:
    """Return the number of samples in ``duration_s`` at ``sfreq_hz``: nearest integer, halves rounded up.

    A tolerance of 1e-9 samples absorbs float error (``0.0025 * 1000`` counts as 2.5, hence 3).
    """
    return math.floor(duration_s * sfreq_hz + 0.5 + 1e-9)


@dataclass(frozen=True, eq=False)
class Window:
    """One window of a stream, ready for a model.

    Attributes
    ----------
    data : array of shape (n_channels, n_samples)
        Samples at ``sfreq_hz`` (the target rate), finite, in channel units; ``n_samples`` is always
        ``seconds_to_samples(window_s, sfreq_hz)``.
    t_start : float
        Timestamp (s, stream clock) of the window's first input sample.
    t_end : float
        Timestamp (s, stream clock) of the window's last input sample; predictions are stamped with it.
    index : int
        Window number ``k`` since the first sample (or the last reset).
    sample_start, sample_stop : int
        Input sample range ``[sample_start, sample_stop)``; for a partial window from :meth:`Windower.flush`,
        ``sample_stop`` is one past the last real sample.
    quality : QualityFlags
        Findings on the raw input samples of the window (before repair and resampling).
    sfreq_hz : float
        Sampling rate of ``data`` in Hz.
    channel_labels : tuple of str
        One label per row of ``data``.
    partial : bool
        True for the padded last window returned by :meth:`Windower.flush`.
    stream : str
        Key of the stream the window came from (the windower's ``name``).
    arrival_s : float
        When the chunk holding the window's last sample was pulled, in s of the local LSL clock (NaN offline):
        the start of the window's latency breakdown.
    """

    data: np.ndarray
    t_start: float
    t_end: float
    index: int
    sample_start: int
    sample_stop: int
    quality: QualityFlags
    sfreq_hz: float
    channel_labels: tuple[str, ...]
    partial: bool = False
    stream: str = ""
    arrival_s: float = math.nan
