"""``StreamReader``: one LSL inlet pulled into a preallocated numpy buffer.

It adds clock correction, dejittering, gap/jump detection and recovery when the outlet comes back.

Design choices
--------------
* **Numeric pulls go straight into a preallocated buffer** (``pull_chunk(dest_obj=buf)``); pylsl's list path
  builds a Python float per value and is an order of magnitude slower. :attr:`Chunk.data` is a *copy* of the
  filled rows (the buffer is reused by the next pull, so a view would be overwritten under the consumer).
  String (marker) streams use pylsl's list path and give an object array of ``str``.
* **Clock correction and dejittering are done here, not by liblsl's processing flags**, so that a chunk carries
  the raw values too (``timestamps - clock_offset_s`` is the source clock) and so that gaps and clock jumps are
  detected and reported instead of being smoothed over by ``proc_dejitter``. The offset comes from
  ``inlet.time_correction()``, refreshed every ``clock_refresh_s``; see :mod:`biostream.lsl.dejitter`.
* **Recovery is ours, not liblsl's** (the inlet is opened with ``recover=False``). liblsl's silent recovery
  gives the consumer no disconnect/reconnect events and reattaches to whatever outlet has the same source id,
  even one whose channel count changed. Here a lost stream raises ``LostError``, the reader records a
  :class:`~biostream.lsl.events.DisconnectEvent`, and every later :meth:`StreamReader.pull` polls a
  ``ContinuousResolver`` for the same source id (non-blocking). When it reappears, its layout is checked (a
  change raises :class:`devices.errors.StreamMismatchError`) and a new inlet opens: measured here, the reader
  resumes about 0.8 s after the outlet is recreated (liblsl's own recovery takes about as long).
* **pull() never blocks.** Opening an inlet takes blocking calls (the stream's full info, the first clock
  offset: ~0.65 s). :meth:`~StreamReader.connect` makes them (call it where waiting is fine, e.g. a connect
  thread); a reattachment makes them on a shared opener thread while :meth:`~StreamReader.pull` keeps returning
  at once, and clock refreshes only read liblsl's background estimate. So one flapping outlet cannot stall the
  other streams a process pulls.
* **A reader can be built from a** :class:`~biostream.lsl.discovery.StreamDescription`, which pickles (a
  ``pylsl.StreamInfo`` does not): a stream picked in one process is opened in another.
* **What a stream declares is checked before anything is sized from it.** Anyone on the network can publish a
  stream, so :meth:`~StreamReader.connect` refuses in one line a stream whose channel count, rate or fields are
  beyond :attr:`StreamDescription.problems`' limits, before an inlet (and liblsl's buffers) exists; the full info
  must declare the layout the stream advertised; buffers are capped in bytes; channel metadata is read through
  :func:`devices.lsl_meta.read_channels` (bounded, with notes, see :attr:`StreamReader.notes`). String samples
  are pulled as bytes, decoded leniently and cut to :data:`MAX_STRING_CHARS` characters, at most
  ``_MAX_STRING_VALUES`` values per pull, from an inlet that queues at most 1 s of samples (100 samples for an
  irregular stream; string streams are at most 16 channels and 100 values/s, see
  :attr:`StreamDescription.problems`): biostream keeps little of a stream of huge strings, and invalid UTF-8
  never raises. liblsl itself receives every string whole (LSL has no size limit), so one huge sample still
  costs its size until it is pulled and cut. liblsl's queue for a numeric stream is kept under
  ``_MAX_QUEUE_BYTES`` too.

Not thread-safe: one consumer calls :meth:`~StreamReader.pull`.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LSLTimeoutError

from biostream.lsl.dejitter import Dejitterer
from biostream.lsl.discovery import StreamDescription, pick_successor, resolve_description, resolve_selector
from biostream.lsl.events import DisconnectEvent, GapEvent, ReconnectEvent, StreamEvent
from devices._checks import check_type, ensure_positive
from devices.errors import BadInputError, StreamMismatchError
from devices.lsl_meta import read_channels, safe_text

logger = logging.getLogger(__name__)

# Seconds of data the preallocated buffer holds at first; it doubles (up to _MAX_BUFFER_S) when a pull fills it.
_BUFFER_S = 1.0
_MIN_BUFFER_SAMPLES = 1024
_MAX_BUFFER_S = 60.0
# The pull buffer never grows beyond this many bytes (a wide stream gets fewer seconds of it).
_MAX_BUFFER_BYTES = 64 << 20
#: A string sample longer than this is cut (characters; ground-truth labels and annotations are far shorter).
MAX_STRING_CHARS = 1024
# String values taken per pull, and liblsl's queue for a string inlet (s; x100 samples when irregular): a marker
# stream of 1 MB strings then holds at most ~100 MB in liblsl and 64 MB in one pull.
_MAX_STRING_VALUES = 64
_STRING_BUFLEN = 1
# liblsl's queue for a numeric inlet (max_buflen_s of samples) is shortened so that it holds at most this much.
_MAX_QUEUE_BYTES = 512 << 20
# Events kept in StreamReader.events.
_EVENT_HISTORY = 1000
# Timeout of the blocking calls made while reattaching to a stream that the resolver already sees, in s.
_REATTACH_TIMEOUT_S = 1.0
# Threads that open inlets for reattaching readers (the blocking part of a reconnection), shared by all readers.
_OPENER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="biostream-lsl-open")


@dataclass(frozen=True)
class _Opened:
    """An inlet opened off the pulling thread, ready to install."""

    inlet: pylsl.StreamInlet
    info: pylsl.StreamInfo
    clock_offset_s: float | None


class ReaderState(enum.Enum):
    """Connection state of a :class:`StreamReader`."""

    IDLE = "idle"  #: built, connect() not called yet
    CONNECTED = "connected"  #: inlet open; pull() returns samples
    RECONNECTING = "reconnecting"  #: the outlet went away; pull() keeps looking for it
    FAILED = "failed"  #: the stream came back changed (StreamMismatchError); pull() raises it
    CLOSED = "closed"  #: close() was called


@dataclass(frozen=True)
class Chunk:
    """Samples from one :meth:`StreamReader.pull`, plus the events since the previous chunk.

    Attributes
    ----------
    data : ndarray, shape (n_samples, n_channels)
        Sample values in the stream's own dtype (float32, float64, int8/16/32/64; ``object`` of ``str`` for
        string streams). A copy: the reader's buffer is reused.
    timestamps : ndarray, shape (n_samples,)
        Capture times in s in the *local* LSL clock (``pylsl.local_clock()``): the source's timestamps plus
        ``clock_offset_s``. Not dejittered.
    dejittered_timestamps : ndarray, shape (n_samples,)
        For regular streams, the fitted timestamps (spaced exactly 1 / effective rate within a chunk); for
        irregular streams, equal to ``timestamps``. Use these for windowing.
    clock_offset_s : float
        The time correction added to the source's timestamps, in s.
    events : tuple
        Gap, jump, disconnect and reconnect events since the previous chunk (see :mod:`biostream.lsl.events`).
    n_nonfinite : int
        Samples (rows) holding NaN or ±Inf; they are passed through unchanged.
    """

    data: np.ndarray
    timestamps: np.ndarray
    dejittered_timestamps: np.ndarray
    clock_offset_s: float
    events: tuple[StreamEvent, ...] = ()
    n_nonfinite: int = 0

    @property
    def n_samples(self) -> int:
        """Number of samples in the chunk (may be 0 when the chunk only carries events)."""
        return int(self.timestamps.shape[0])


@dataclass(frozen=True)
class ReaderStats:
    """Counters of a :class:`StreamReader` (a snapshot; see :attr:`StreamReader.stats`).

    Attributes
    ----------
    state : str
        :class:`ReaderState` value.
    samples_received : int
        Samples pulled since :meth:`StreamReader.connect`.
    effective_rate_hz : float
        Measured rate in Hz (nominal until measured, see ``rate_measured``; mean rate for irregular streams).
    rate_measured : bool
        Whether ``effective_rate_hz`` is measured rather than nominal.
    jitter_s : float
        RMS deviation of raw timestamps from the dejitter fit, in s.
    clock_offset_s : float
        Current time correction, in s.
    n_gaps, n_missing : int
        Gaps found and samples estimated missing in them (including across reconnections).
    n_jumps, n_disconnects, n_reconnects : int
        Clock jumps, losses of the outlet, and resumptions.
    n_nonfinite : int
        Samples holding NaN or ±Inf.
    last_timestamp_s : float
        Local-clock timestamp of the last sample (NaN before the first), in s.
    n_truncated : int
        String values cut to :data:`MAX_STRING_CHARS` or holding invalid UTF-8 (replaced characters).
    """

    state: str
    samples_received: int
    effective_rate_hz: float
    rate_measured: bool
    jitter_s: float
    clock_offset_s: float
    n_gaps: int
    n_missing: int
    n_jumps: int
    n_disconnects: int
    n_reconnects: int
    n_nonfinite: int
    last_timestamp_s: float
    n_truncated: int = 0


def _check_layout(old: StreamDescription, new: StreamDescription, what: str) -> None:
    """Raise StreamMismatchError naming what differs (channels, rate, format) between two descriptions."""
    changes = [
        f"{name} {a} -> {b}"
        for name, a, b in (
            ("channels", old.n_channels, new.n_channels),
            ("rate", f"{old.sfreq_hz:g} Hz", f"{new.sfreq_hz:g} Hz"),
            ("format", old.channel_format, new.channel_format),
        )
        if a != b
    ]
    if changes:
        raise StreamMismatchError(
            f"stream '{safe_text(old.name, 64)}' (source_id '{safe_text(old.source_id, 64)}') {what}: "
            f"{', '.join(changes)}"
        )


def _close_opened(future: Future) -> None:
    """Close an inlet that was opened for a reader that no longer wants it."""
    if future.cancelled() or future.exception() is not None:
        return
    _close_quietly(future.result().inlet)


def _close_quietly(inlet: pylsl.StreamInlet) -> None:
    try:
        inlet.close_stream()
    except Exception:  # noqa: BLE001 - the outlet may be gone already; closing must not fail
        logger.debug("close_stream failed", exc_info=True)


class StreamReader:
    """Pull one LSL stream: numpy chunks with local-clock and dejittered timestamps, events, and recovery.

    Parameters
    ----------
    source : str, dict, StreamDescription or pylsl.StreamInfo
        A selector (``"name=Polar H10 ECG"``, ``{"type": "ECG"}``; see
        :func:`biostream.lsl.discovery.parse_selector`) or a description (found by its identity) resolved at
        :meth:`connect`, or an already resolved info.
    require_regular : bool
        Refuse (:class:`~devices.errors.StreamMismatchError`) a string or irregular-rate stream at connect.
    reconnect : bool
        When the outlet disappears, keep looking for a stream with the same source id and resume (default).
        If False the reader stays in ``RECONNECTING`` after the loss without looking.
    max_buflen_s : float
        Data liblsl keeps queued for this inlet when it is not pulled, in s.
    clock_refresh_s : float
        How often the clock offset is re-read from liblsl, in s.
    dejitter_halftime_s, gap_factor, jump_min_s : float
        See :class:`biostream.lsl.dejitter.Dejitterer`.

    Examples
    --------
    >>> with StreamReader("type=ECG", require_regular=True).connect(timeout_s=5.0) as reader:  # doctest: +SKIP
    ...     chunk = reader.pull()
    """

    def __init__(
        self,
        source: str | Mapping[str, str] | StreamDescription | pylsl.StreamInfo,
        *,
        require_regular: bool = False,
        reconnect: bool = True,
        max_buflen_s: float = 360.0,
        clock_refresh_s: float = 5.0,
        dejitter_halftime_s: float = 30.0,
        gap_factor: float = 1.5,
        jump_min_s: float = 1.0,
    ) -> None:
        check_type(source, (str, Mapping, StreamDescription, pylsl.StreamInfo), "source")
        self._source = source
        self.require_regular = bool(require_regular)
        self.reconnect = bool(reconnect)
        self.max_buflen_s = ensure_positive(max_buflen_s, "max_buflen_s")
        self.clock_refresh_s = ensure_positive(clock_refresh_s, "clock_refresh_s")
        self._dejitter_kwargs = {
            "halftime_s": ensure_positive(dejitter_halftime_s, "dejitter_halftime_s"),
            "gap_factor": ensure_positive(gap_factor, "gap_factor"),
            "jump_min_s": ensure_positive(jump_min_s, "jump_min_s"),
        }
        self.events: deque[StreamEvent] = deque(maxlen=_EVENT_HISTORY)
        self._state = ReaderState.IDLE
        self._inlet: pylsl.StreamInlet | None = None
        self._info: pylsl.StreamInfo | None = None
        self._description: StreamDescription | None = None
        self._channels: tuple[list[str], list[str], list[str]] = ([], [], [])
        self._notes: tuple[str, ...] = ()
        self._foreign_seen: set[str] = set()
        self._error: StreamMismatchError | None = None
        self._reset()

    def _reset(self) -> None:
        """Clear every counter and per-connection state (before a fresh connect())."""
        self._pending: list[StreamEvent] = []
        self._resolver: pylsl.ContinuousResolver | None = None
        self._reopening: Future[_Opened] | None = None
        self._disconnected_at_s = math.nan
        self._last_ts_before_loss = math.nan
        self._period_before_loss = math.nan
        self._clock_offset_s = 0.0
        self._clock_read_at_s = -math.inf
        self._samples = 0
        self._n_gaps = self._n_missing = self._n_jumps = 0
        self._n_disconnects = self._n_reconnects = self._n_nonfinite = self._n_truncated = 0
        self._last_ts = math.nan
        self._buffer: np.ndarray | None = None
        self._dejitter: Dejitterer | None = None

    # ---------------------------------------------------------------- lifecycle
    def connect(self, timeout_s: float = 5.0) -> StreamReader:
        """Resolve the stream (if given a selector), open the inlet and read its full description.

        Parameters
        ----------
        timeout_s : float
            Limit for resolving and for each of opening the stream and reading its info, in s.

        Returns
        -------
        self : StreamReader

        Raises
        ------
        BadInputError
            No stream or several match the selector, or the outlet vanished while opening.
        StreamMismatchError
            ``require_regular`` and the stream is a string or irregular stream.
        """
        timeout_s = ensure_positive(timeout_s, "timeout_s")
        if self._state in (ReaderState.CONNECTED, ReaderState.RECONNECTING):
            self._drop_inlet()
        self._reset()
        self.events.clear()
        self._error = None
        if isinstance(self._source, pylsl.StreamInfo):
            info = self._source
        elif isinstance(self._source, StreamDescription):
            info = resolve_description(self._source, timeout_s)
        else:
            info = resolve_selector(self._source, timeout_s)
        desc = StreamDescription.from_info(info)
        desc.check_openable()
        if self.require_regular and (not desc.is_regular or not desc.is_numeric):
            raise StreamMismatchError(
                f"stream {desc.summary()} is {'a string' if not desc.is_numeric else 'an irregular'} stream; "
                "a regular numeric stream is required"
            )
        if isinstance(self._source, StreamDescription):
            _check_layout(self._source, desc, "is not the stream described")
        try:
            self._install(self._open_inlet(info, timeout_s, timeout_s))
        except (LostError, LSLTimeoutError) as err:
            raise BadInputError(f"stream {desc.summary()} could not be opened within {timeout_s:g} s: {err}") from None
        self._state = ReaderState.CONNECTED
        logger.info("Connected to %s", self._description.summary())
        return self

    def _open_inlet(self, info: pylsl.StreamInfo, timeout_s: float, clock_timeout_s: float) -> _Opened:
        """Open an inlet on ``info``, read its full info and first clock offset (blocking; touches no state).

        The first offset takes liblsl ~0.65 s; with ``clock_timeout_s = 0`` it is left to later refreshes.
        """
        advertised = StreamDescription.from_info(info)
        inlet = pylsl.StreamInlet(info, max_buflen=self._queue_s(advertised), recover=False)
        try:
            full = inlet.info(timeout=timeout_s)
            # An outlet may advertise one layout and describe another: everything is sized from what was checked.
            described = StreamDescription.from_info(full)
            _check_layout(advertised, described, "describes another layout than it advertised")
            described.check_openable()
            inlet.open_stream(timeout=timeout_s)
            try:
                offset = float(inlet.time_correction(timeout=clock_timeout_s))
            except LSLTimeoutError:
                offset = None
        except BaseException:
            _close_quietly(inlet)
            raise
        return _Opened(inlet, full, offset)

    def _queue_s(self, desc: StreamDescription) -> int:
        """The queue liblsl keeps for the inlet, in s (x100 samples when irregular), bounded in bytes."""
        if not desc.is_numeric:
            return _STRING_BUFLEN
        values_per_s = desc.n_channels * (desc.sfreq_hz if desc.is_regular else 100.0)
        return max(1, min(round(self.max_buflen_s), int(_MAX_QUEUE_BYTES // (8 * values_per_s))))

    def _install(self, opened: _Opened) -> None:
        """Make an opened inlet the current one: description, channels, clock, dejitterer, buffer."""
        self._inlet = opened.inlet
        self._info = opened.info
        self._description = StreamDescription.from_info(opened.info)
        meta = read_channels(opened.info)
        self._channels = (list(meta.labels), list(meta.units), list(meta.types))
        self._notes = meta.notes
        for note in meta.notes:
            logger.warning("stream %s: %s", self._description.key, note)
        if opened.clock_offset_s is not None:
            self._clock_offset_s = opened.clock_offset_s
            self._clock_read_at_s = pylsl.local_clock()
        else:  # read liblsl's estimate again soon
            self._clock_read_at_s = pylsl.local_clock() - self.clock_refresh_s + 1.0
        rate = self._description.sfreq_hz
        self._dejitter = Dejitterer(rate, label=self._description.name, **self._dejitter_kwargs)
        if self._description.is_numeric:
            n = min(max(_MIN_BUFFER_SAMPLES, math.ceil(_BUFFER_S * rate)), self._max_buffer_rows(opened.inlet))
            self._buffer = np.empty((n, self._description.n_channels), dtype=opened.inlet.np_dtype)

    def _max_buffer_rows(self, inlet: pylsl.StreamInlet) -> int:
        row_bytes = self._description.n_channels * np.dtype(inlet.np_dtype).itemsize
        return max(1, _MAX_BUFFER_BYTES // row_bytes)

    def close(self) -> None:
        """Close the inlet (idempotent). The reader can be connected again."""
        self._drop_inlet()
        self._state = ReaderState.CLOSED

    def _drop_inlet(self) -> None:
        if self._reopening is not None:  # an inlet being opened for us is closed as soon as it is ready
            self._reopening.add_done_callback(_close_opened)
            self._reopening = None
        if self._inlet is not None:
            _close_quietly(self._inlet)
        self._inlet = None
        self._resolver = None

    def __enter__(self) -> StreamReader:
        if self._state not in (ReaderState.CONNECTED, ReaderState.RECONNECTING):
            self.connect()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        what = self._description.summary() if self._description else repr(self._source)
        return f"<StreamReader {what} {self._state.value}>"

    def _check_connected(self, name: str) -> None:
        if self._state in (ReaderState.IDLE, ReaderState.CLOSED):
            raise RuntimeError(
                f"StreamReader is {self._state.value}: call connect() before {name}"
                " (e.g. reader = StreamReader('type=ECG').connect())."
            )

    # ---------------------------------------------------------------- pulling
    def pull(self) -> Chunk | None:
        """Take every sample available now, without blocking.

        Returns
        -------
        chunk : Chunk or None
            The samples and the events since the last chunk; a chunk with 0 samples when only events happened
            (e.g. a disconnection); None when nothing happened.

        Raises
        ------
        RuntimeError
            connect() was not called (or close() was).
        StreamMismatchError
            The stream came back with another channel count, rate or format (raised again on every later pull).
        """
        self._check_connected("pull()")
        if self._state is ReaderState.FAILED:
            raise self._error
        if self._state is ReaderState.RECONNECTING:
            self._try_reattach()
            if self._state is not ReaderState.CONNECTED:
                return self._flush_events()
        try:
            return self._pull_connected()
        except LostError:
            self._on_lost()
            return self._flush_events()

    def _pull_connected(self) -> Chunk | None:
        inlet = self._inlet
        wall_s = pylsl.local_clock()
        if wall_s - self._clock_read_at_s >= self.clock_refresh_s:
            self._refresh_clock()
        buf = self._buffer
        if buf is not None:
            _, ts = inlet.pull_chunk(timeout=0.0, max_samples=buf.shape[0], dest_obj=buf)
            n = len(ts)
            if n == buf.shape[0]:
                self._grow_buffer()
            data = buf[:n].copy()
        else:
            data, ts = self._pull_strings(inlet)
            n = len(ts)
        if n == 0:
            return self._flush_events()
        timestamps = np.asarray(ts, dtype=np.float64) + self._clock_offset_s
        update = self._dejitter.update(timestamps, wall_s)
        events = update.events
        if not math.isnan(self._last_ts_before_loss):
            events.insert(0, self._reconnect_gap(float(timestamps[0])))
        for event in events:
            if isinstance(event, GapEvent):
                self._n_gaps += 1
                self._n_missing += event.n_missing
            else:
                self._n_jumps += 1
        n_bad = 0
        if data.dtype.kind == "f":
            n_bad = n - int(np.isfinite(data).all(axis=1).sum())
            self._n_nonfinite += n_bad
        self._samples += n
        self._last_ts = float(timestamps[-1])
        self._pending.extend(events)
        self.events.extend(events)
        pending, self._pending = tuple(self._pending), []
        return Chunk(data, timestamps, update.dejittered, self._clock_offset_s, pending, n_bad)

    def _pull_strings(self, inlet: pylsl.StreamInlet) -> tuple[np.ndarray, np.ndarray]:
        """Take up to ``_MAX_STRING_VALUES`` string values as an object array of ``str``, each value cut."""
        n_ch = self._description.n_channels
        n_max = max(1, _MAX_STRING_VALUES // n_ch)
        try:
            raw, ts = inlet.pull_chunk(timeout=0.0, max_samples=n_max, as_numpy=True)
        except TypeError:  # pylsl before 1.18 decodes (strictly) by itself
            try:
                raw, ts = inlet.pull_chunk(timeout=0.0, max_samples=n_max)
            except UnicodeDecodeError:
                self._n_truncated += 1
                logger.warning("stream %s sent a string that is not UTF-8; that chunk is dropped", self.name)
                return np.empty((0, n_ch), dtype=object), np.empty(0)
        n = len(ts)
        data = np.empty((n, n_ch), dtype=object)
        if n:
            flat = [self._cut_string(v) for row in raw for v in row]
            data.ravel()[:] = flat
        return data, np.asarray(ts, dtype=np.float64)

    def _cut_string(self, value: bytes | str) -> str:
        """A string value decoded (bad UTF-8 replaced) and cut to :data:`MAX_STRING_CHARS` characters."""
        if isinstance(value, str):
            text = value
        else:
            text = bytes(value[: 4 * MAX_STRING_CHARS]).decode("utf-8", errors="replace")
        cut = len(text) > MAX_STRING_CHARS or len(value) > 4 * MAX_STRING_CHARS or "\ufffd" in text
        if cut:
            self._n_truncated += 1
            text = text[:MAX_STRING_CHARS]
        return text

    def _grow_buffer(self) -> None:
        """A pull filled the buffer, so more was waiting: double it (bounded) so the backlog drains faster."""
        rows, n_channels = self._buffer.shape
        limit = max(_MIN_BUFFER_SAMPLES, math.ceil(_MAX_BUFFER_S * self._description.sfreq_hz))
        limit = min(limit, self._max_buffer_rows(self._inlet))
        if rows < limit:
            self._buffer = np.empty((min(2 * rows, limit), n_channels), dtype=self._buffer.dtype)

    def _refresh_clock(self) -> None:
        # liblsl refreshes the offset in the background; a zero timeout reads its latest estimate without waiting.
        try:
            self._clock_offset_s = float(self._inlet.time_correction(timeout=0.0))
        except LSLTimeoutError:
            logger.debug("no clock offset estimate yet for %s; keeping %.6f s", self.name, self._clock_offset_s)
        self._clock_read_at_s = pylsl.local_clock()

    def _flush_events(self) -> Chunk | None:
        if not self._pending:
            return None
        n_ch = self._description.n_channels
        dtype = self._buffer.dtype if self._buffer is not None else object
        pending, self._pending = tuple(self._pending), []
        empty = np.empty(0)
        return Chunk(np.empty((0, n_ch), dtype=dtype), empty, empty.copy(), self._clock_offset_s, pending, 0)

    def _emit(self, event: StreamEvent) -> None:
        self._pending.append(event)
        self.events.append(event)

    # ---------------------------------------------------------------- recovery
    def _on_lost(self) -> None:
        now = pylsl.local_clock()
        self._last_ts_before_loss = self._last_ts
        self._period_before_loss = self._dejitter.period_s if self._dejitter.regular else math.nan
        self._disconnected_at_s = now
        self._n_disconnects += 1
        self._drop_inlet()
        self._state = ReaderState.RECONNECTING
        event = DisconnectEvent(self.name, now, self._last_ts)
        logger.warning("%s", event.describe())
        self._emit(event)
        if self.reconnect:
            self._resolver = self._make_resolver()

    def _make_resolver(self) -> pylsl.ContinuousResolver | None:
        try:
            return pylsl.ContinuousResolver(pred=self._description.identity_predicate())
        except BadInputError:
            logger.warning("stream '%s' has no source_id and an unquotable name; it cannot be recovered", self.name)
            return None

    def _try_reattach(self) -> None:
        """One non-blocking step of reattaching: install an inlet opened meanwhile, or start opening one."""
        if self._reopening is not None:
            if not self._reopening.done():
                return
            future, self._reopening = self._reopening, None
            try:
                opened = future.result()
            except (LostError, LSLTimeoutError):
                logger.debug("stream '%s' seen but not reachable yet; will retry", self.name)
                return
            except StreamMismatchError as err:  # it advertised the old layout but describes another
                self._fail(err)
                raise
            self._install(opened)
            self._resolver = None
            self._state = ReaderState.CONNECTED
            self._n_reconnects += 1
            event = ReconnectEvent(self.name, self._disconnected_at_s, pylsl.local_clock())
            logger.warning("%s", event.describe())
            self._emit(event)
            return
        if self._resolver is None:
            return
        candidates = self._resolver.results()
        if not candidates:
            return
        old = self._description
        described = [StreamDescription.from_info(i) for i in candidates]
        pick = pick_successor(old, described)
        for d in described:
            if d.uid not in self._foreign_seen and (pick is None or d.uid != described[pick].uid):
                self._foreign_seen.add(d.uid)
                logger.warning("stream %s from host '%s' has the source id of lost stream '%s' (host '%s'): "
                               "not taken for it", d.key, safe_text(d.hostname), self.name, safe_text(old.hostname))
        if pick is None:
            return
        info, new = candidates[pick], described[pick]
        try:
            _check_layout(old, new, "came back changed")
        except StreamMismatchError as err:
            self._fail(err)
            raise
        # The same source keeps its clock: resume on the old offset and let the refreshes update it.
        self._reopening = _OPENER.submit(self._open_inlet, info, _REATTACH_TIMEOUT_S, 0.0)

    def _fail(self, err: StreamMismatchError) -> None:
        self._error = err
        self._state = ReaderState.FAILED
        self._resolver = None
        logger.error("%s", err)

    def _reconnect_gap(self, first_ts: float) -> GapEvent:
        """The gap between the last sample before a loss and the first one after the reconnection."""
        before, period = self._last_ts_before_loss, self._period_before_loss
        self._last_ts_before_loss = math.nan
        if math.isnan(period):  # irregular: no sample grid, report the silence
            return GapEvent(self.name, before, first_ts - before, 0, after_reconnect=True)
        step = first_ts - before
        return GapEvent(self.name, before + period, step - period, max(0, round(step / period) - 1), True)

    # ---------------------------------------------------------------- properties
    @property
    def state(self) -> ReaderState:
        """Connection state."""
        return self._state

    @property
    def connected(self) -> bool:
        """True while an inlet is open and delivering."""
        return self._state is ReaderState.CONNECTED

    @property
    def error(self) -> StreamMismatchError | None:
        """The mismatch that put the reader in ``FAILED`` (None otherwise)."""
        return self._error

    @property
    def info(self) -> pylsl.StreamInfo:
        """Full stream info of the current inlet, with the description (``desc``)."""
        self._check_connected("info")
        return self._info

    @property
    def description(self) -> StreamDescription:
        """Name, type, channel count, nominal rate, format, source id, host and uid of the stream."""
        self._check_connected("description")
        return self._description

    @property
    def name(self) -> str:
        """Stream name ('' before connect())."""
        return self._description.name if self._description else ""

    @property
    def n_channels(self) -> int:
        """Channels per sample."""
        return self.description.n_channels

    @property
    def sfreq_hz(self) -> float:
        """Nominal rate in Hz (0 for irregular streams)."""
        return self.description.sfreq_hz

    @property
    def dtype(self) -> np.dtype:
        """The dtype of :attr:`Chunk.data` (``object`` for string streams)."""
        self._check_connected("dtype")
        return self._buffer.dtype if self._buffer is not None else np.dtype(object)

    @property
    def notes(self) -> tuple[str, ...]:
        """What was odd about the stream's channel description and how it was read (empty when it was clean)."""
        self._check_connected("notes")
        return self._notes

    @property
    def channel_labels(self) -> list[str]:
        """Channel labels from the stream's description (``ch1``… where it has none)."""
        self._check_connected("channel_labels")
        return list(self._channels[0])

    @property
    def channel_units(self) -> list[str]:
        """Channel units from the stream's description ('' where it has none)."""
        self._check_connected("channel_units")
        return list(self._channels[1])

    @property
    def channel_types(self) -> list[str]:
        """Channel types from the stream's description (the stream type where it has none)."""
        self._check_connected("channel_types")
        return list(self._channels[2])

    @property
    def effective_rate_hz(self) -> float:
        """Measured rate in Hz (nominal until about 1 s of data; mean rate for irregular streams)."""
        self._check_connected("effective_rate_hz")
        return self._dejitter.rate_hz

    @property
    def samples_received(self) -> int:
        """Samples pulled since connect()."""
        return self._samples

    @property
    def clock_offset_s(self) -> float:
        """Current time correction added to the source's timestamps, in s."""
        return self._clock_offset_s

    @property
    def stats(self) -> ReaderStats:
        """A snapshot of the counters."""
        dj = self._dejitter
        return ReaderStats(
            state=self._state.value,
            samples_received=self._samples,
            effective_rate_hz=dj.rate_hz if dj else math.nan,
            rate_measured=bool(dj and (dj.measured or not dj.regular)),
            jitter_s=dj.jitter_s if dj else math.nan,
            clock_offset_s=self._clock_offset_s,
            n_gaps=self._n_gaps,
            n_missing=self._n_missing,
            n_jumps=self._n_jumps,
            n_disconnects=self._n_disconnects,
            n_reconnects=self._n_reconnects,
            n_nonfinite=self._n_nonfinite,
            last_timestamp_s=self._last_ts,
            n_truncated=self._n_truncated,
        )
