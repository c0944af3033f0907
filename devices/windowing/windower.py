"""Cut a live stream, fed in arbitrary chunks, into fixed windows with a hop; resample and quality-check each.

Window boundaries live on the *input sample index grid*: counting samples from the first one pushed (index 0),
window ``k`` covers input samples ``[start_k, start_k + win_n)`` with ``start_k = seconds_to_samples(k * hop_s,
sfreq_hz)`` (:func:`~devices.windowing.cut.window_start`) and ``win_n = seconds_to_samples(window_s, sfreq_hz)``.
So the windows are identical however the input is chunked, and they drift neither with chunk sizes nor with
timestamp jitter. ``hop_s > window_s`` leaves gaps between windows; ``hop_s < window_s`` overlaps them.

Each window is made by :meth:`~devices.windowing.cut.WindowCutter.cut`, the one path training shares (quality on
the raw samples, NaN/Inf repair, resampling with left context from the samples before the window).

**Gaps keep the grid on time.** A reader that finds samples missing (a gap it measured) says so with
:meth:`Windower.push_gap`: the missing samples take their places on the grid as NaN placeholders marked missing,
so a window covers its true time span and a window with a hole is flagged ``gap``. Windows that would hold only
missing samples are skipped (counted in :attr:`Windower.n_skipped`), so an hour-long outage costs nothing. After a
clock jump or a reconnection the caller :meth:`~Windower.reset` s the windower: the grid starts again at the next
sample.

Memory is bounded: samples go through a :class:`~devices.windowing.ring.RingBuffer` of
``context + win_n + max_chunk_samples`` samples; a larger chunk is fed in pieces of ``max_chunk_samples``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence

import numpy as np

from devices._checks import ensure_int, ensure_positive
from devices.errors import BadInputError, StreamMismatchError
from devices.windowing.cut import WindowCutter, window_start
from devices.windowing.quality import QualityThresholds
from devices.windowing.ring import RingBuffer
from devices.windowing.window import Window, seconds_to_samples

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
        Bound on the resampling ratio's denominator (see :func:`~devices.windowing.resample.rational_ratio`).

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
        self.hop_samples = seconds_to_samples(self.hop_s, self.sfreq_hz)
        if self.hop_samples < 1:
            raise BadInputError(
                f"stream '{self.name}': 'hop_s' = {hop_s!r} s is {self.hop_samples} samples at {self.sfreq_hz:g} Hz; "
                "it must map to at least 1 sample"
            )
        self.stream_channel_labels, self._selection = self._resolve_channels(channel_labels, n_channels, channels)
        self.channel_labels = tuple(self.stream_channel_labels[k] for k in self._selection)
        self._select_all = self._selection == list(range(len(self.stream_channel_labels)))
        self.clip_limits = self._resolve_clip_limits(clip_limits)
        self.cutter = WindowCutter(
            self.window_s,
            self.sfreq_hz,
            self.channel_labels,
            target_sfreq_hz=target_sfreq_hz,
            thresholds=thresholds,
            clip_limits=self.clip_limits,
            dtype=dtype,
            max_denominator=max_denominator,
            name=self.name,
        )
        self.target_sfreq_hz = self.cutter.target_sfreq_hz
        self.thresholds = self.cutter.thresholds
        self.window_samples = self.cutter.window_samples
        self.output_samples = self.cutter.output_samples
        self._context = self.cutter.context_samples
        if max_chunk_samples is None:
            max_chunk_samples = max(self.hop_samples, round(self.sfreq_hz), 1)
        self.max_chunk_samples = ensure_int(max_chunk_samples, "max_chunk_samples", minimum=1)
        # Between pushes fewer than win_n samples are pending; one piece adds at most max_chunk_samples, and the
        # resampler wants `context` samples before the oldest pending window start.
        capacity = self._context + self.window_samples + self.max_chunk_samples
        self._ring = RingBuffer(capacity, len(self.channel_labels), dtype=dtype, name=self.name)
        self._gaps: deque[tuple[int, int]] = deque()  # [first, stop) absolute indices of samples marked missing
        self._next_index = 0
        self._n_windows = 0
        self._n_skipped = 0
        logger.debug(
            "windower '%s': %d-sample windows, hop %g s at %g Hz -> %d samples at %g Hz, ring %d samples",
            self.name,
            self.window_samples,
            self.hop_s,
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
    def n_skipped(self) -> int:
        """Windows skipped because all their samples were missing (long gaps), since construction or reset."""
        return self._n_skipped

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
        self._gaps.clear()
        self._next_index = 0
        self._n_windows = 0
        self._n_skipped = 0

    # ------------------------------------------------------------------ feeding
    def push(self, data: np.ndarray, timestamps: np.ndarray, *, arrival_s: float = math.nan) -> list[Window]:
        """Feed a chunk and return every window it completes, oldest first.

        Parameters
        ----------
        data : array of shape (n_samples, n_stream_channels)
            Samples in channel units, all the stream's channels (selection happens here). A 1-D array is accepted
            for a single-channel stream.
        timestamps : array of shape (n_samples,)
            Sample times in seconds (finite).
        arrival_s : float
            When the chunk was pulled (s, local LSL clock); stamped on the windows it completes.

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
            self._emit_ready(windows, arrival_s)
        return windows

    def push_gap(
        self, n_missing: int, first_timestamp_s: float, period_s: float, *, arrival_s: float = math.nan
    ) -> list[Window]:
        """Mark ``n_missing`` samples as missing at the end of the stream so far; return the windows completed.

        The missing samples get NaN placeholders stamped ``first_timestamp_s + k * period_s``. Windows holding
        some of them are flagged (``quality.codes`` has ``"gap"``); windows holding nothing else are skipped.
        Placeholders are written only while a pending window still holds real samples, so the cost is bounded by
        the window length whatever the gap's.

        Parameters
        ----------
        n_missing : int
            Samples lost (>= 0).
        first_timestamp_s : float
            Time the first of them would have had, in s.
        period_s : float
            Sample period, in s (1 / effective rate).
        arrival_s : float
            When the samples after the gap were pulled (s); stamped on the windows completed.
        """
        n_missing = ensure_int(n_missing, "n_missing", minimum=0)
        windows: list[Window] = []
        if n_missing == 0:
            return windows
        first = self._ring.n_pushed
        stop = first + n_missing
        self._gaps.append((first, stop))
        n_channels = len(self.channel_labels)
        written = 0
        # Fill while the next window starts before the gap: it holds real samples and must come out, flagged.
        while written < n_missing and window_start(self._next_index, self.hop_s, self.sfreq_hz) < first:
            piece = min(n_missing - written, self.max_chunk_samples)
            fill = np.full((piece, n_channels), np.nan, dtype=self._ring.dtype)
            self._ring.push(fill, first_timestamp_s + period_s * np.arange(written, written + piece))
            written += piece
            self._emit_ready(windows, arrival_s)
        if written < n_missing:  # the rest holds no real sample: count it, keep only the ring's worth
            self._ring.push_fill(n_missing - written, np.nan, first_timestamp_s + period_s * written, period_s)
            self._emit_ready(windows, arrival_s)
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
        start = window_start(self._next_index, self.hop_s, self.sfreq_hz)
        n_seen = self._ring.n_pushed
        out: list[Window] = []
        if start < n_seen:
            out.append(self._make_window(self._next_index, start, n_seen, math.nan))
        self.reset()
        return out

    # ------------------------------------------------------------------ windows
    def _emit_ready(self, windows: list[Window], arrival_s: float) -> None:
        """Append every window that the samples pushed so far complete (skipping all-missing ones)."""
        n_seen = self._ring.n_pushed
        while True:
            start = window_start(self._next_index, self.hop_s, self.sfreq_hz)
            stop = start + self.window_samples
            if stop > n_seen:
                return
            if self._all_missing(start, stop):
                self._n_skipped += 1
            else:
                windows.append(self._make_window(self._next_index, start, stop, arrival_s))
                self._n_windows += 1
            self._next_index += 1

    def _all_missing(self, start: int, stop: int) -> bool:
        """True when one recorded gap covers input samples ``[start, stop)``; prunes gaps out of the ring."""
        oldest = self._ring.first_index
        while self._gaps and self._gaps[0][1] <= oldest:
            self._gaps.popleft()
        return any(first <= start and stop <= end for first, end in self._gaps)

    def _missing_mask(self, start: int, stop: int) -> np.ndarray | None:
        """Rows of ``[start, stop)`` marked missing, or None when none are."""
        mask = None
        for first, end in self._gaps:
            lo, hi = max(first, start), min(end, stop)
            if lo < hi:
                if mask is None:
                    mask = np.zeros(stop - start, dtype=bool)
                mask[lo - start : hi - start] = True
        return mask

    def _make_window(self, index: int, start: int, stop: int, arrival_s: float) -> Window:
        """Build window ``index`` from input samples ``[start, stop)`` (``stop`` short of a full window on flush)."""
        context = self.cutter.context_for(start)
        block, ts = self._ring.get(start - context, stop)
        n_real = stop - start
        missing = self._missing_mask(start, start + self.window_samples)
        if n_real < self.window_samples:
            pad_n = self.window_samples - n_real
            pad = np.full((pad_n, block.shape[1]), np.nan, dtype=np.result_type(block.dtype, np.float32))
            block = np.concatenate([block, pad], axis=0)
            ts = np.concatenate([ts, ts[-1] + np.arange(1, pad_n + 1) / self.sfreq_hz])
            return self.cutter.cut(block, ts, context, index=index, start=start, missing=missing, n_real=n_real)
        return self.cutter.cut(block, ts, context, index=index, start=start, missing=missing, arrival_s=arrival_s)

    def __repr__(self) -> str:
        return (
            f"Windower(name={self.name!r}, window_s={self.window_s}, hop_s={self.hop_s}, sfreq_hz={self.sfreq_hz}, "
            f"target_sfreq_hz={self.target_sfreq_hz}, channels={list(self.channel_labels)})"
        )
