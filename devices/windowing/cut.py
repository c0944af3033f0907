"""One window from raw samples: the quality check, NaN repair and resampling that training and the live runtime share.

A model must see at run time exactly what it saw in training. So there is one path from raw samples to a
model-ready :class:`~devices.windowing.window.Window`, :meth:`WindowCutter.cut`, and two ways to feed it:

* live, :class:`~devices.windowing.windower.Windower` keeps a ring of the newest samples of a stream and cuts each
  window as soon as its last sample arrives;
* offline, :func:`cut_windows` cuts windows at given sample indices from a whole recorded stream (how paired
  training sets are built, :mod:`bridges.data.build`).

Both hand :meth:`WindowCutter.cut` the same block: the window's raw samples plus up to
:attr:`WindowCutter.context_samples` samples before it (the resampler's left context, which depends only on the
window's absolute start index), so a window at the same position of the same samples comes out bit-identical.

Window positions follow one rule, :func:`window_start`: window ``k`` starts at input sample
``seconds_to_samples(k * hop_s, sfreq_hz)``. For a whole number of samples per hop that is ``k * hop_n``; for
e.g. a 0.3-s hop at 64 Hz (19.2 samples) the starts stay on time instead of drifting by 4 %.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from devices.errors import BadInputError
from devices.windowing.quality import QualityThresholds, assess_quality, fill_nonfinite
from devices.windowing.resample import PolyphaseResampler
from devices.windowing.window import Window, seconds_to_samples


def window_start(index: int, hop_s: float, sfreq_hz: float) -> int:
    """First input sample of window ``index``: ``seconds_to_samples(index * hop_s, sfreq_hz)``."""
    return seconds_to_samples(index * hop_s, sfreq_hz)


def _positive(value: float, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadInputError(f"'{name}' must be a number, got {value!r} instead.") from None
    if not (math.isfinite(number) and number > 0):
        raise BadInputError(f"'{name}' must be a finite number > 0, got {value!r} instead.")
    return number


class WindowCutter:
    """Make model-ready windows of ``window_s`` seconds from raw blocks at ``sfreq_hz``.

    Parameters
    ----------
    window_s : float
        Window length in s; must map to at least 1 input and 1 output sample.
    sfreq_hz : float
        Input rate in Hz.
    channel_labels : sequence of str
        Labels of the block's channels (after any selection).
    target_sfreq_hz : float, optional
        Output rate in Hz; no resampling when None.
    thresholds : QualityThresholds, optional
        Quality thresholds; ``QualityThresholds()`` when None.
    clip_limits : (low, high), optional
        Saturation limits per block channel (see :func:`~devices.windowing.quality.assess_quality`).
    dtype : numpy dtype
        Dtype of ``Window.data``.
    max_denominator : int
        Bound on the resampling ratio's denominator.
    name : str
        Stream name (messages) and the ``stream`` of every window.
    """

    def __init__(
        self,
        window_s: float,
        sfreq_hz: float,
        channel_labels: Sequence[str],
        *,
        target_sfreq_hz: float | None = None,
        thresholds: QualityThresholds | None = None,
        clip_limits: tuple[np.ndarray, np.ndarray] | None = None,
        dtype: np.dtype | type = np.float32,
        max_denominator: int = 1000,
        name: str = "stream",
    ) -> None:
        self.name = str(name)
        self.window_s = _positive(window_s, "window_s")
        self.sfreq_hz = _positive(sfreq_hz, "sfreq_hz")
        self.target_sfreq_hz = (
            self.sfreq_hz if target_sfreq_hz is None else _positive(target_sfreq_hz, "target_sfreq_hz")
        )
        self.channel_labels = tuple(str(c) for c in channel_labels)
        self.thresholds = thresholds if thresholds is not None else QualityThresholds()
        self.clip_limits = clip_limits
        self.dtype = np.dtype(dtype)
        self.window_samples = seconds_to_samples(self.window_s, self.sfreq_hz)
        self.output_samples = seconds_to_samples(self.window_s, self.target_sfreq_hz)
        for n, rate in ((self.window_samples, self.sfreq_hz), (self.output_samples, self.target_sfreq_hz)):
            if n < 1:
                raise BadInputError(
                    f"stream '{self.name}': 'window_s' = {window_s!r} s is {n} samples at {rate:g} Hz; "
                    "it must map to at least 1 sample"
                )
        self.resampler = (
            None
            if math.isclose(self.target_sfreq_hz, self.sfreq_hz, rel_tol=1e-12)
            else PolyphaseResampler(self.sfreq_hz, self.target_sfreq_hz, max_denominator=max_denominator)
        )

    @property
    def n_channels(self) -> int:
        """Channels per window."""
        return len(self.channel_labels)

    @property
    def context_samples(self) -> int:
        """Most input samples of left context a window uses (0 without resampling)."""
        return self.resampler.context_samples if self.resampler is not None else 0

    def context_for(self, start: int) -> int:
        """Left context (input samples) of a window starting at absolute input index ``start``."""
        return self.resampler.context_for(start) if self.resampler is not None else 0

    def cut(
        self,
        block: np.ndarray,
        timestamps: np.ndarray,
        context: int,
        *,
        index: int,
        start: int,
        missing: np.ndarray | None = None,
        n_real: int | None = None,
        arrival_s: float = math.nan,
    ) -> Window:
        """Assess, repair and resample one window.

        Parameters
        ----------
        block : array of shape (context + window_samples, n_channels)
            Raw samples: ``context`` samples before the window (:meth:`context_for` its start), then the window.
        timestamps : array of shape (context + window_samples,)
            Their times in s.
        context : int
            Leading context samples in ``block``.
        index, start : int
            Window number and absolute input index of its first sample.
        missing : array of shape (window_samples,), bool, optional
            Window rows standing for samples that never arrived (NaN placeholders).
        n_real : int, optional
            Real samples when the window is a padded partial one (the rest is NaN padding); None for a full one.
        arrival_s : float
            When the window's last sample was pulled, in s (local LSL clock); NaN offline.

        Returns
        -------
        Window
        """
        partial = n_real is not None and n_real < self.window_samples
        n_real = self.window_samples if n_real is None else n_real
        raw_ts = timestamps[context:]
        quality = assess_quality(
            block[context:],
            raw_ts,
            self.sfreq_hz,
            channel_labels=self.channel_labels,
            thresholds=self.thresholds,
            clip_limits=self.clip_limits,
            missing=missing,
        )
        if partial:
            quality = dataclasses.replace(
                quality,
                ok=False,
                reasons=[f"partial window: {n_real} of {self.window_samples} samples", *quality.reasons],
                codes=("partial", *quality.codes),
            )
        block = fill_nonfinite(block)
        if self.resampler is not None:
            samples = self.resampler.resample(block, context, self.output_samples)
        else:
            samples = block[context:]
        return Window(
            data=np.ascontiguousarray(samples.T, dtype=self.dtype),
            t_start=float(raw_ts[0]),
            t_end=float(raw_ts[n_real - 1]),
            index=index,
            sample_start=start,
            sample_stop=start + n_real,
            quality=quality,
            sfreq_hz=self.target_sfreq_hz,
            channel_labels=self.channel_labels,
            partial=partial,
            stream=self.name,
            arrival_s=arrival_s,
        )


def cut_windows(
    data: np.ndarray, timestamps: np.ndarray, starts: Sequence[int] | np.ndarray, cutter: WindowCutter
) -> list[Window]:
    """Cut the windows starting at ``starts`` out of a whole recorded stream.

    Parameters
    ----------
    data : array of shape (n_samples, n_channels)
        The stream's raw samples (the cutter's channels), sample 0 first.
    timestamps : array of shape (n_samples,)
        Their times in s.
    starts : sequence of int
        Absolute input index of each window's first sample; every window must fit in the stream.
    cutter : WindowCutter
        How to make each window.

    Returns
    -------
    list of Window
        ``Window.index`` is the position in ``starts``. A window equals the live windower's window at the same
        start on the same samples.
    """
    n = cutter.window_samples
    windows = []
    for k, start in enumerate(np.asarray(starts, dtype=np.int64).tolist()):
        if start < 0 or start + n > data.shape[0]:
            raise BadInputError(
                f"stream '{cutter.name}': window at samples [{start}, {start + n}) is outside the {data.shape[0]} "
                "samples recorded"
            )
        context = cutter.context_for(start)
        lo = start - context
        windows.append(cutter.cut(data[lo : start + n], timestamps[lo : start + n], context, index=k, start=start))
    return windows
