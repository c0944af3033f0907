"""An append-only XDF writer: what a session recorder uses to store LSL streams as they arrive.

Every chunk goes to the file at once (no buffer), so a process killed mid-session leaves a file that ``pyxdf``
and :func:`devices.formats.read_xdf` read up to the last whole chunk; a write that fails part-way (full disk,
file-size limit) is cut back to the last whole chunk. Every sample carries its timestamp explicitly (8-byte
double), so timestamps read back exactly as they were written. ``write_samples`` may be called from several
threads (one per inlet): chunks are serialised by a lock.

The layout follows the XDF 1.0 specification (see :mod:`devices.formats._xdf_spec`); stream headers carry the
LSL ``<info>`` fields and ``desc/channels/channel/{label,unit,type}``, footers carry the first/last timestamp,
the sample count and the clock offsets, as LabRecorder writes them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import socket
import struct
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from devices.errors import BadInputError
from devices.formats import _xdf_spec as spec
from devices.recording import CHANNEL_FORMATS, Recording

logger = logging.getLogger(__name__)

# Header fields the writer sets itself (or that describe how a Recording was read, not the session).
_RESERVED_HEADER = frozenset({"version", "datetime"})
_NOT_HEADER = frozenset(
    {"source", "format", "truncated", "truncated_at_byte", "truncation", "damaged_bytes", "damage", "repaired"}
)


@dataclass
class _StreamState:
    name: str
    channel_format: str
    n_channels: int
    value_dtype: np.dtype | None
    first_timestamp: float | None = None
    last_timestamp: float | None = None
    sample_count: int = 0
    clock_offsets: list[tuple[float, float]] = field(default_factory=list)


class XdfWriter:
    """Write an XDF file chunk by chunk.

    Parameters
    ----------
    path : str or Path
        File to create (overwritten if it exists).
    header : dict of str to str, optional
        Extra FileHeader fields, e.g. ``{"bundle_sha256": "..."}``; keys must be valid XML element names.
        ``version`` (1.0) and ``datetime`` (now, ISO 8601) are always written.
    boundary_interval_s : float or None
        Write a Boundary chunk before a Samples chunk once the samples are this many seconds (of their own
        timestamps) past the previous boundary, as LabRecorder does every 10 s. A reader that meets damage skips
        only to the next boundary. None: only :meth:`write_boundary` writes them.
    boundary_interval_bytes : int or None
        Likewise once this many bytes were written since the previous boundary (fast streams fill 10 s quickly).

    Examples
    --------
    >>> with XdfWriter("session.xdf", header={"bundle_sha256": sha}) as w:  # doctest: +SKIP
    ...     sid = w.add_stream("Polar H10 ECG", "ECG", ["ECG"], 130.0, channel_units=["uV"])
    ...     w.write_samples(sid, chunk, stamps)
    """

    def __init__(
        self,
        path: str | Path,
        header: dict[str, str] | None = None,
        *,
        boundary_interval_s: float | None = 10.0,
        boundary_interval_bytes: int | None = 1 << 20,
    ) -> None:
        self._path = Path(path)
        for name, value in (("boundary_interval_s", boundary_interval_s),
                            ("boundary_interval_bytes", boundary_interval_bytes)):
            if value is not None and not (np.isfinite(value) and value > 0):
                raise BadInputError(f"'{name}' must be a positive number or None, got {value!r} instead.")
        self._boundary_s = boundary_interval_s
        self._boundary_bytes = boundary_interval_bytes
        self._last_boundary_s: float | None = None  # sample time of the previous boundary (or the first sample)
        self._bytes_since_boundary = 0
        fields = {str(k): str(v) for k, v in (header or {}).items()}
        for key in fields:
            spec.check_xml_name(key, f"header field {key!r}")
            if key in _RESERVED_HEADER:
                raise BadInputError(f"XDF header field {key!r} is set by the writer; choose another name")
        self._lock = threading.Lock()
        self._streams: dict[int, _StreamState] = {}
        self._closed = False
        self._size = 0  # bytes in the file, always at the end of a whole chunk
        try:
            self._file = open(self._path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise BadInputError(f"cannot create XDF file '{self._path}': {err.strerror}") from None
        now = _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat()
        xml = spec.info_xml({"version": "1.0", "datetime": now, **fields})
        try:
            self._append(spec.MAGIC)
            self._write_chunk(spec.TAG_FILE_HEADER, xml.encode("utf-8"))
        except OSError as err:  # e.g. a full disk: nothing useful was written
            self._closed = True
            self._file.close()
            raise BadInputError(f"cannot write XDF file '{self._path}': {err.strerror or err}") from None

    @property
    def path(self) -> Path:
        """The file being written."""
        return self._path

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    def sample_count(self, stream_id: int) -> int:
        """Return the number of samples written so far to stream ``stream_id``."""
        return self._state(stream_id).sample_count

    def add_stream(
        self,
        name: str,
        type: str,  # noqa: A002 - the LSL field is called "type"
        channel_labels: Sequence[str],
        nominal_srate: float,
        channel_format: str = "float32",
        channel_units: Sequence[str] | None = None,
        channel_types: Sequence[str] | None = None,
        source_id: str = "",
        desc: dict[str, Any] | None = None,
    ) -> int:
        """Declare a stream (writes its StreamHeader chunk) and return its stream id.

        Parameters
        ----------
        name, type : str
            LSL stream name and content type.
        channel_labels : sequence of str
            One label per channel; its length is the channel count.
        nominal_srate : float
            Nominal rate in Hz, 0 for irregular streams (markers).
        channel_format : str
            One of ``float32, double64, string, int32, int16, int8, int64``.
        channel_units, channel_types : sequence of str, optional
            One per channel; units default to ``""``, types to ``type``.
        source_id : str
            LSL source id.
        desc : dict, optional
            Extra ``<desc>`` content: values are strings, nested dicts (child elements) or lists (repeated
            elements). ``channels`` is reserved for the channel list built from the arguments.

        Returns
        -------
        int
            The stream id to pass to :meth:`write_samples` and :meth:`write_clock_offset`.
        """
        self._check_open("add_stream()")
        if channel_format not in CHANNEL_FORMATS:
            raise BadInputError(
                f"stream '{name}': channel format {channel_format!r} is not one of {list(CHANNEL_FORMATS)}"
            )
        labels = [str(v) for v in channel_labels]
        n = len(labels)
        if n == 0:
            raise BadInputError(f"stream '{name}': at least one channel label is needed")
        units = [str(v) for v in channel_units] if channel_units is not None else [""] * n
        types = [str(v) for v in channel_types] if channel_types is not None else [str(type)] * n
        if len(units) != n or len(types) != n:
            raise BadInputError(f"stream '{name}': {n} labels but {len(units)} units and {len(types)} types")
        srate = float(nominal_srate)
        if not np.isfinite(srate) or srate < 0:
            raise BadInputError(f"stream '{name}': nominal rate must be a finite number >= 0, got {nominal_srate!r}")
        extra = dict(desc or {})
        if "channels" in extra:
            raise BadInputError(f"stream '{name}': desc key 'channels' is reserved for the channel list")
        info = {
            "name": str(name),
            "type": str(type),
            "channel_count": str(n),
            "channel_format": channel_format,
            "source_id": str(source_id),
            "nominal_srate": repr(srate),
            "version": "1.1",
            "created_at": repr(pylsl.local_clock()),
            "uid": str(uuid.uuid4()),
            "session_id": "default",
            "hostname": socket.gethostname(),
        }
        channels = [{"label": lab, "unit": u, "type": t} for lab, u, t in zip(labels, units, types, strict=True)]
        desc_xml = spec.element_xml("desc", {**extra, "channels": {"channel": channels}})
        xml = spec.info_xml(info, tail=desc_xml)
        dtype = None if channel_format == "string" else np.dtype(spec.VALUE_DTYPES[channel_format])
        with self._lock:
            stream_id = len(self._streams) + 1
            self._write_chunk(spec.TAG_STREAM_HEADER, struct.pack("<I", stream_id) + xml.encode("utf-8"))
            self._streams[stream_id] = _StreamState(str(name), channel_format, n, dtype)
        logger.debug("XDF '%s': stream %d '%s' (%d ch, %s Hz)", self._path, stream_id, name, n, srate)
        return stream_id

    def write_samples(self, stream_id: int, data: Any, timestamps: Any) -> None:
        """Append samples to a stream as one Samples chunk (in the file before returning).

        Parameters
        ----------
        stream_id : int
            From :meth:`add_stream`.
        data : array of shape (n_samples, n_channels), or list of str
            Sample values in the stream's format; for a one-channel string stream a flat list of ``n_samples``
            strings is accepted.
        timestamps : array of shape (n_samples,)
            Sample times in seconds (written exactly, as 8-byte doubles).
        """
        self._check_open("write_samples()")
        state = self._state(stream_id)
        stamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(stamps)):
            raise BadInputError(f"stream '{state.name}': timestamps must be finite")
        if state.value_dtype is None:
            payload = _string_samples(state, data, stamps)
        else:
            payload = _numeric_samples(state, data, stamps)
        if not len(stamps):
            return
        content = struct.pack("<I", stream_id) + spec.encode_varlen(len(stamps)) + payload
        with self._lock:
            self._check_open("write_samples()")
            self._boundary_if_due(float(stamps[0]))
            self._write_chunk(spec.TAG_SAMPLES, content)
            if state.first_timestamp is None:
                state.first_timestamp = float(stamps[0])
            state.last_timestamp = float(stamps[-1])
            state.sample_count += len(stamps)

    def write_clock_offset(self, stream_id: int, collection_time_s: float, offset_s: float) -> None:
        """Append a ClockOffset chunk: at local time ``collection_time_s`` the stream's clock was ``offset_s`` off.

        Parameters
        ----------
        collection_time_s : float
            When the offset was measured, in the recorder's LSL clock (s).
        offset_s : float
            Value to add to the stream's timestamps to map them onto the recorder's clock (s), as returned by
            ``pylsl.StreamInlet.time_correction()``.
        """
        self._check_open("write_clock_offset()")
        state = self._state(stream_id)
        pair = (float(collection_time_s), float(offset_s))
        if not all(np.isfinite(pair)):
            raise BadInputError(f"stream '{state.name}': clock offset must be finite, got {pair}")
        with self._lock:
            self._check_open("write_clock_offset()")
            self._write_chunk(spec.TAG_CLOCK_OFFSET, struct.pack("<Idd", stream_id, *pair))
            state.clock_offsets.append(pair)

    def write_boundary(self) -> None:
        """Append a Boundary chunk, which lets readers resynchronise after a damaged region."""
        self._check_open("write_boundary()")
        with self._lock:
            self._write_chunk(spec.TAG_BOUNDARY, spec.BOUNDARY_UUID)

    def _boundary_if_due(self, first_stamp_s: float) -> None:
        # Callers hold the lock. The first sample only starts the clock: a boundary right after the headers
        # would protect nothing.
        if self._last_boundary_s is None:
            self._last_boundary_s = first_stamp_s
            return
        due_s = self._boundary_s is not None and first_stamp_s - self._last_boundary_s >= self._boundary_s
        due_bytes = self._boundary_bytes is not None and self._bytes_since_boundary >= self._boundary_bytes
        if due_s or due_bytes:
            self._write_chunk(spec.TAG_BOUNDARY, spec.BOUNDARY_UUID)
            self._last_boundary_s = first_stamp_s

    def close(self) -> None:
        """Write every stream's StreamFooter and close the file. Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            try:
                for stream_id, state in self._streams.items():
                    footer = _footer_xml(state)
                    self._write_chunk(spec.TAG_STREAM_FOOTER, struct.pack("<I", stream_id) + footer.encode("utf-8"))
            finally:
                self._closed = True
                self._file.close()

    def __enter__(self) -> XdfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write_chunk(self, tag: int, content: bytes) -> None:
        # Callers hold the lock (or are the constructor).
        chunk = spec.encode_chunk(tag, content)
        self._append(chunk)
        self._bytes_since_boundary = 0 if tag == spec.TAG_BOUNDARY else self._bytes_since_boundary + len(chunk)

    def _append(self, data: bytes) -> None:
        # Straight to the file, unbuffered: a killed process leaves at most one partial chunk at the end. A write
        # that fails part-way (a full disk, a file-size limit) is cut back to the previous chunk's end, so the
        # file stays readable by every reader (pyxdf fails on some partial chunks) and nothing is left in a
        # buffer to be written after the cut.
        view = memoryview(data)
        try:
            while view:
                view = view[self._file.write(view):]
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), self._size)
                self._file.seek(self._size)
            raise
        self._size += len(data)

    def _state(self, stream_id: int) -> _StreamState:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise BadInputError(
                f"XDF '{self._path}': no stream with id {stream_id!r}; ids are {list(self._streams)}"
            ) from None

    def _check_open(self, call: str) -> None:
        if self._closed:
            raise RuntimeError(f"XdfWriter for '{self._path}' is closed; {call} needs an open writer")


def write_xdf(
    path: str | Path,
    recording: Recording,
    header: dict[str, str] | None = None,
    *,
    chunk_s: float | None = None,
    boundary_interval_s: float | None = 10.0,
) -> Path:
    """Write a whole :class:`~devices.recording.Recording` to an XDF file.

    Parameters
    ----------
    path : str or Path
        Output file.
    recording : Recording
        Streams to write, with their clock offsets.
    header : dict, optional
        FileHeader fields. Scalar entries of ``recording.info`` with XML-safe names (other than the reader's
        bookkeeping: ``source``, ``format``, ``truncated*``, ``damage*``, ``repaired``, ``version``,
        ``datetime``) are written too; ``header`` overrides them.
    chunk_s : float, optional
        Write the samples as a recorder does: chunks of at most this many seconds, all streams interleaved in
        time order, with Boundary chunks between them (see ``boundary_interval_s``). None (default): one Samples
        chunk per stream, in stream order.
    boundary_interval_s : float or None
        As for :class:`XdfWriter`.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Streams read with clock synchronisation (``metadata["clock_synchronized"]``) already have their offsets
    applied to the timestamps; their offsets are not written again, so reading the file back does not apply
    them twice.
    """
    fields: dict[str, str] = {}
    for key, value in recording.info.items():
        if (
            isinstance(value, (str, int, float))
            and not isinstance(value, bool)
            and key not in _RESERVED_HEADER | _NOT_HEADER
            and spec.is_xml_name(str(key))
        ):
            fields[str(key)] = str(value)
    fields.update({str(k): str(v) for k, v in (header or {}).items()})
    if chunk_s is not None and not (np.isfinite(chunk_s) and chunk_s > 0):
        raise BadInputError(f"'chunk_s' must be a positive number of seconds or None, got {chunk_s!r} instead.")
    with XdfWriter(path, header=fields, boundary_interval_s=boundary_interval_s) as writer:
        ids = []
        for stream in recording.streams:
            desc = stream.metadata.get("desc")
            desc = {k: v for k, v in desc.items() if k != "channels"} if isinstance(desc, dict) else None
            sid = writer.add_stream(
                stream.name,
                stream.type,
                stream.channel_labels,
                stream.nominal_srate,
                channel_format=stream.channel_format,
                channel_units=stream.channel_units,
                channel_types=stream.channel_types,
                source_id=stream.source_id,
                desc=desc,
            )
            ids.append(sid)
            if chunk_s is None and stream.n_samples:
                writer.write_samples(sid, stream.data, stream.timestamps)
        if chunk_s is not None:
            _write_interleaved(writer, recording, ids, chunk_s)
        for sid, stream in zip(ids, recording.streams, strict=True):
            if stream.metadata.get("clock_synchronized"):
                continue
            for collection_time_s, offset_s in stream.clock_offsets:
                writer.write_clock_offset(sid, collection_time_s, offset_s)
    return Path(path)


def _write_interleaved(writer: XdfWriter, recording: Recording, ids: list[int], chunk_s: float) -> None:
    """Write every stream in chunks of at most ``chunk_s`` seconds, interleaved in time order."""
    cursors = [0] * len(ids)
    while True:
        pending = [s.timestamps[c] for s, c in zip(recording.streams, cursors, strict=True) if c < s.n_samples]
        if not pending:
            return
        edge = min(pending) + chunk_s  # every pass writes at least the earliest pending sample
        for k, (sid, stream) in enumerate(zip(ids, recording.streams, strict=True)):
            stop = int(np.searchsorted(stream.timestamps, edge, side="left"))
            if cursors[k] < stream.n_samples and stream.timestamps[cursors[k]] < edge:
                stop = max(stop, cursors[k] + 1)  # progress even where timestamps go back in time
            if stop > cursors[k]:
                writer.write_samples(sid, stream.data[cursors[k] : stop], stream.timestamps[cursors[k] : stop])
                cursors[k] = stop


def _numeric_samples(state: _StreamState, data: Any, stamps: np.ndarray) -> bytes:
    values = np.asarray(data)
    if values.ndim == 1 and state.n_channels == 1:
        values = values.reshape(-1, 1)
    if values.ndim != 2 or values.shape != (len(stamps), state.n_channels):
        raise BadInputError(
            f"stream '{state.name}': data of shape {values.shape} does not match {len(stamps)} timestamps "
            f"x {state.n_channels} channels"
        )
    dtype = state.value_dtype
    assert dtype is not None
    if dtype.kind == "i" and values.dtype.kind != "i":
        # Storing 1.5 or 70000 in an int16 stream would silently change the data: refuse instead.
        info = np.iinfo(dtype)
        as_float = values.astype(np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)) or (
            as_float.size and (as_float.min() < info.min or as_float.max() > info.max)
        ):
            raise BadInputError(
                f"stream '{state.name}': values are not all integers within {state.channel_format} range"
            )
    elif dtype.kind == "i" and values.size and (
        values.min() < np.iinfo(dtype).min or values.max() > np.iinfo(dtype).max
    ):
        raise BadInputError(f"stream '{state.name}': values exceed the {state.channel_format} range")
    record = np.empty(len(stamps), dtype=[("ts_bytes", "u1"), ("ts", "<f8"), ("values", dtype, (state.n_channels,))])
    record["ts_bytes"] = 8
    record["ts"] = stamps
    record["values"] = values
    return record.tobytes()


def _string_samples(state: _StreamState, data: Any, stamps: np.ndarray) -> bytes:
    rows = list(data) if not isinstance(data, np.ndarray) else data.tolist()
    if state.n_channels == 1:
        rows = [row if isinstance(row, (list, tuple)) else [row] for row in rows]
    if len(rows) != len(stamps) or any(len(row) != state.n_channels for row in rows):
        raise BadInputError(
            f"stream '{state.name}': {len(rows)} string samples do not match {len(stamps)} timestamps "
            f"x {state.n_channels} channels"
        )
    parts = []
    for stamp, row in zip(stamps.tolist(), rows, strict=True):
        parts.append(b"\x08" + struct.pack("<d", stamp))
        for value in row:
            raw = str(value).encode("utf-8")
            parts.append(spec.encode_varlen(len(raw)) + raw)
    return b"".join(parts)


def _footer_xml(state: _StreamState) -> str:
    offsets = "".join(
        f"<offset><time>{t!r}</time><value>{v!r}</value></offset>" for t, v in state.clock_offsets
    )
    fields = {
        "first_timestamp": repr(state.first_timestamp if state.first_timestamp is not None else 0.0),
        "last_timestamp": repr(state.last_timestamp if state.last_timestamp is not None else 0.0),
        "sample_count": str(state.sample_count),
    }
    return spec.info_xml(fields, tail=f"<clock_offsets>{offsets}</clock_offsets>")
