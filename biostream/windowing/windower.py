"""Cut a live stream, fed in arbitrary chunks, into fixed windows with a hop; resample and quality-check each.

Window boundaries live on the *input sample index grid*: counting samples from the first one pushed (index 0),
window ``k`` covers input samples ``[k * hop_n, k * hop_n + win_n)`` with ``win_n = seconds_to_samples(window_s,
sfreq_hz)`` and ``hop_n = seconds_to_samples(hop_s, sfreq_hz)`` (nearest sample, halves rounded up). So the
windows are identical however the input is chunked, and they drift neither with chunk sizes nor with timestamp
jitter. ``hop_s > window_s`` leaves gaps between windows; ``hop_s < window_s`` overlaps them.

Each emitted :class:`Window` went through, in this order: quality assessment on the raw input samples
(:func:`~biostream.windowing.quality.assess_quality`), NaN/Inf repair (linear interpolation, ends held, see
:func:`~biostream.windowing.quality.fill_nonfinite`) so that non-finite values never reach a model, and
resampling to ``target_sfreq_hz`` (:class:`~biostream.windowing.resample.PolyphaseResampler`, with left context
taken from the samples preceding the window).

Memory is bounded: samples go through a :class:`~biostream.windowing.ring.RingBuffer` of
``context + win_n + max_chunk_samples`` samples; a larger chunk is fed in pieces of ``max_chunk_samples``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np

from biostream.windowing.quality import QualityThresholds, assess_quality, fill_nonfinite
from biostream.windowing.resample import PolyphaseResampler
from biostream.windowing.ring import RingBuffer
from biostream.windowing.window import Window, seconds_to_samples
from devices._checks import ensure_int, ensure_positive
from devices.errors import BadInputError, StreamMismatchError

logger = logging.getLogger(__name__)


def _positive(value: float, name: str) -> float:
    """``ensure_positive`` with the error raised as BadInputError (the CLI reports it with exit code 2)."""
    try:
        return ensure_positive(value, name)
    except (TypeError, ValueError) as err:
        raise BadInputError(str(err)) from None


class Windower:
    """Window a stream fed in arbitrary chunks.

    Parameters
    ----------
    window_s : float
        Window length in seconds; must map to at least 1 input sample and 1 output sample.
    hop_s : float
        Distance between window starts in seconds; must map to at least 1 input sample.
    sfreq_hz : float
        Nominal input sampling rate in Hz.
    channel_labels : sequence of str, optional
        The stream's channel labels (required when ``channels`` is given).
    n_channels : int, optional
        The stream's channel count, when there are no labels (labels become ``ch1``, ``ch2``, ...).
    channels : sequence of str, optional
        Labels of the channels to keep, in the order wanted; all channels when None.
    target_sfreq_hz : float, optional
        Output rate in Hz; no resampling when None.
    thresholds : QualityThresholds, optional
        Quality thresholds; ``QualityThresholds()`` when None.
    clip_limits : (low, high), optional
        Saturation limits in channel units, scalars or arrays with one value per *stream* channel.
    max_chunk_samples : int, optional
        Chunk piece size the ring is sized for; default ``max(hop_n, round(sfreq_hz))``. Larger chunks are
        accepted and fed in pieces.
    name : str
        Stream name for error messages.
    dtype : numpy dtype
        Dtype of the ring and of ``Window.data``.
    max_denominator : int
        Bound on the resampling ratio's denominator (see :func:`~biostream.windowing.resample.rational_ratio`).

    Raises
    ------
    BadInputError
        For a window or hop that maps to no samples, non-positive rates or inconsistent channel arguments.
    StreamMismatchError
        When a requested channel is not in ``channel_labels``.
    """

    def __init__(
        self,
        window_s: float,
        hop_s: float,
        sfreq_hz: float,
        *,
        channel_labels: Sequence[str] | None = None,
        n_channels: int | None = None,
        channels: Sequence[str] | None = None,
        target_sfreq_hz: float | None = None,
        thresholds: QualityThresholds | None = None,
        clip_limits: tuple[float | np.ndarray, float | np.ndarray] | None = None,
        max_chunk_samples: int | None = None,
        name: str = "stream",
        dtype: np.dtype | type = np.float32,
        max_denominator: int = 1000,
    ) -> None:
        self.name = str(name)
        self.window_s = _positive(window_s, "window_s")
        self.hop_s = _positive(hop_s, "hop_s")
        self.sfreq_hz = _positive(sfreq_hz, "sfreq_hz")
        self.target_sfreq_hz = (
            self.sfreq_hz if target_sfreq_hz is None else _positive(target_sfreq_hz, "target_sfreq_hz")
        )
        self.thresholds = thresholds if thresholds is not None else QualityThresholds()

        self.window_samples = seconds_to_samples(self.window_s, self.sfreq_hz)
        self.hop_samples = seconds_to_samples(self.hop_s, self.sfreq_hz)
        self.output_samples = seconds_to_samples(self.window_s, self.target_sfreq_hz)
        for what, seconds, n, rate in (
            ("window_s", self.window_s, self.window_samples, self.sfreq_hz),
            ("hop_s", self.hop_s, self.hop_samples, self.sfreq_hz),
            ("window_s", self.window_s, self.output_samples, self.target_sfreq_hz),
        ):
            if n < 1:
                raise BadInputError(
                    f"stream '{self.name}': '{what}' = {seconds!r} s is {n} samples at {rate:g} Hz; "
                    "it must map to at least 1 sample"
                )

        self.stream_channel_labels, self._selection = self._resolve_channels(channel_labels, n_channels, channels)
        self.channel_labels = tuple(self.stream_channel_labels[k] for k in self._selection)
        self._select_all = self._selection == list(range(len(self.stream_channel_labels)))
        self.clip_limits = self._resolve_clip_limits(clip_limits)

        self._resampler = (
            None
            if math.isclose(self.target_sfreq_hz, self.sfreq_hz, rel_tol=1e-12)
            else PolyphaseResampler(self.sfreq_hz, self.target_sfreq_hz, max_denominator=max_denominator)
        )
        self._context = self._resampler.context_samples if self._resampler is not None else 0
        if max_chunk_samples is None:
            max_chunk_samples = max(self.hop_samples, round(self.sfreq_hz), 1)
        self.max_chunk_samples = ensure_int(max_chunk_samples, "max_chunk_samples", minimum=1)
        # Between pushes fewer than win_n samples are pending; one piece adds at most max_chunk_samples, and the
        # resampler wants `context` samples before the oldest pending window start.
        capacity = self._context + self.window_samples + self.max_chunk_samples
        self._ring = RingBuffer(capacity, len(self.channel_labels), dtype=dtype, name=self.name)
        self._next_index = 0
        self._n_windows = 0
        logger.debug(
            "windower '%s': %d-sample windows, hop %d at %g Hz -> %d samples at %g Hz, ring %d samples",
            self.name,
            self.window_samples,
            self.hop_samples,
            self.sfreq_hz,
            self.output_samples,
            self.target_sfreq_hz,
            capacity,
        )

    # ------------------------------------------------------------------ set-up helpers
    def _resolve_channels(
        self, channel_labels: Sequence[str] | None, n_channels: int | None, channels: Sequence[str] | None
    ) -> tuple[tuple[str, ...], list[int]]:
        """Return the stream's labels and the indices of the selected channels."""
        if channel_labels is not None:
            labels = tuple(str(label) for label in channel_labels)
            if not labels:
                raise BadInputError(f"stream '{self.name}': 'channel_labels' is empty")
            if n_channels is not None and int(n_channels) != len(labels):
                raise BadInputError(
                    f"stream '{self.name}': n_channels={n_channels} but {len(labels)} channel labels were given"
                )
        elif n_channels is not None:
            try:
                count = ensure_int(n_channels, "n_channels", minimum=1)
            except (TypeError, ValueError) as err:
                raise BadInputError(f"stream '{self.name}': {err}") from None
            labels = tuple(f"ch{k + 1}" for k in range(count))
            if channels is not None:
                raise BadInputError(f"stream '{self.name}': selecting channels by label needs 'channel_labels'")
        else:
            raise BadInputError(f"stream '{self.name}': give 'channel_labels' or 'n_channels'")
        if channels is None:
            return labels, list(range(len(labels)))
        wanted = [channels] if isinstance(channels, str) else [str(c) for c in channels]
        if not wanted:
            raise BadInputError(f"stream '{self.name}': 'channels' is empty")
        missing = [c for c in wanted if c not in labels]
        if missing:
            raise StreamMismatchError(
                f"stream '{self.name}': channel(s) {missing} not found; the stream has {list(labels)}"
            )
        # A label that appears twice in the stream resolves to its first occurrence.
        return labels, [labels.index(c) for c in wanted]

    def _resolve_clip_limits(
        self, clip_limits: tuple[float | np.ndarray, float | np.ndarray] | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Broadcast clip limits to one (low, high) pair per selected channel."""
        if clip_limits is None:
            return None
        n_stream = len(self.stream_channel_labels)
        try:
            low, high = clip_limits
            low = np.broadcast_to(np.asarray(low, dtype=np.float64), (n_stream,))[self._selection]
            high = np.broadcast_to(np.asarray(high, dtype=np.float64), (n_stream,))[self._selection]
        except (TypeError, ValueError):
            raise BadInputError(
                f"stream '{self.name}': 'clip_limits' must be (low, high) with scalars or {n_stream} values each, "
                f"got {clip_limits!r} instead."
            ) from None
        if np.any(low >= high):
            raise BadInputError(f"stream '{self.name}': 'clip_limits' low must be below high, got {clip_limits!r}")
        return low, high

    # ------------------------------------------------------------------ state
    @property
    def n_channels(self) -> int:
        """Number of channels in each window (after selection)."""
        return len(self.channel_labels)

    @property
    def n_pushed(self) -> int:
        """Input samples pushed since construction or the last reset."""
        return self._ring.n_pushed

    @property
    def n_windows(self) -> int:
        """Windows emitted since construction or the last reset."""
        return self._n_windows

    @property
    def next_index(self) -> int:
        """Index of the next window to be emitted."""
        return self._next_index

    @property
    def capacity_samples(self) -> int:
        """Size of the internal ring in input samples (the memory bound)."""
        return self._ring.capacity_samples

    @property
    def context_samples(self) -> int:
        """Input samples of left context given to the resampler before each window (0 without resampling)."""
        return self._context

    def reset(self) -> None:
        """Forget all samples; the next sample pushed is index 0 and the next window is index 0."""
        self._ring.reset()
        self._next_index = 0
        self._n_windows = 0

    # ------------------------------------------------------------------ feeding
    def push(self, data: np.ndarray, timestamps: np.ndarray) -> list[Window]:
        """Feed a chunk and return every window it completes, oldest first.

        Parameters
        ----------
        data : array of shape (n_samples, n_stream_channels)
            Samples in channel units, all the stream's channels (selection happens here). A 1-D array is accepted
            for a single-channel stream.
        timestamps : array of shape (n_samples,)
            Sample times in seconds (finite).

        Returns
        -------
        list of Window
            Possibly empty.

        Raises
        ------
        StreamMismatchError
            If the chunk has the wrong number of channels.
        BadInputError
            If the chunk is malformed (not 2-D, timestamp count differs, non-finite timestamps).
        """
        data = np.asarray(data)
        n_stream = len(self.stream_channel_labels)
        if data.ndim == 1 and n_stream == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise BadInputError(
                f"stream '{self.name}': a chunk must be 2-D (n_samples, n_channels), got shape {data.shape}"
            )
        if data.shape[1] != n_stream:
            raise StreamMismatchError(f"stream '{self.name}': expected {n_stream} channels, got {data.shape[1]}")
        timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        n = data.shape[0]
        if timestamps.shape[0] != n:
            raise BadInputError(f"stream '{self.name}': {n} samples but {timestamps.shape[0]} timestamps")
        if n == 0:
            return []
        if not np.isfinite(timestamps).all():
            raise BadInputError(f"stream '{self.name}': chunk has non-finite timestamps")
        if not self._select_all:
            data = data[:, self._selection]
        windows: list[Window] = []
        for pos in range(0, n, self.max_chunk_samples):
            stop = pos + self.max_chunk_samples
            self._ring.push(data[pos:stop], timestamps[pos:stop])
            self._emit_ready(windows)
        return windows

    def flush(self) -> list[Window]:
        """End the stream: return the pending incomplete window, if any, then :meth:`reset`.

        The pending window is the next one whose first sample has arrived. It is padded to full length as
        missing samples (NaN, so they count towards the NaN/Inf fraction and are repaired by holding the last
        value), marked ``partial=True`` with a reason ``"partial window: a of b samples"``, and so usually ``bad``.

        Returns
        -------
        list of Window
            Zero or one window.
        """
        start = self._next_index * self.hop_samples
        n_seen = self._ring.n_pushed
        out: list[Window] = []
        if start < n_seen:
            out.append(self._make_window(self._next_index, start, n_seen))
        self.reset()
        return out

    # ------------------------------------------------------------------ windows
    def _emit_ready(self, windows: list[Window]) -> None:
        """Append every window that the samples pushed so far complete."""
        n_seen = self._ring.n_pushed
        while True:
            start = self._next_index * self.hop_samples
            stop = start + self.window_samples
            if stop > n_seen:
                return
            windows.append(self._make_window(self._next_index, start, stop))
            self._next_index += 1
            self._n_windows += 1

    def _make_window(self, index: int, start: int, stop: int) -> Window:
        """Build window ``index`` from input samples ``[start, stop)`` (``stop`` short of a full window on flush)."""
        context = self._resampler.context_for(start) if self._resampler is not None else 0
        block, ts = self._ring.get(start - context, stop)
        n_real = stop - start
        partial = n_real < self.window_samples
        if partial:
            missing = self.window_samples - n_real
            pad = np.full((missing, block.shape[1]), np.nan, dtype=np.result_type(block.dtype, np.float32))
            block = np.concatenate([block, pad], axis=0)
            ts = np.concatenate([ts, ts[-1] + np.arange(1, missing + 1) / self.sfreq_hz])
        t_start, t_end = float(ts[context]), float(ts[context + n_real - 1])
        quality = assess_quality(
            block[context:],
            ts[context:],
            self.sfreq_hz,
            channel_labels=self.channel_labels,
            thresholds=self.thresholds,
            clip_limits=self.clip_limits,
        )
        if partial:
            quality = dataclasses.replace(
                quality,
                ok=False,
                reasons=[f"partial window: {n_real} of {self.window_samples} samples", *quality.reasons],
            )
        block = fill_nonfinite(block)
        if self._resampler is not None:
            samples = self._resampler.resample(block, context, self.output_samples)
        else:
            samples = block  # already a copy out of the ring
        data = np.ascontiguousarray(samples.T, dtype=self._ring.dtype)
        return Window(
            data=data,
            t_start=t_start,
            t_end=t_end,
            index=index,
            sample_start=start,
            sample_stop=stop,
            quality=quality,
            sfreq_hz=self.target_sfreq_hz,
            channel_labels=self.channel_labels,
            partial=partial,
        )

    def __repr__(self) -> str:
        return (
            f"Windower(name={self.name!r}, window_s={self.window_s}, hop_s={self.hop_s}, sfreq_hz={self.sfreq_hz}, "
            f"target_sfreq_hz={self.target_sfreq_hz}, channels={list(self.channel_labels)})"
        )
