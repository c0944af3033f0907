"""The one in-memory model of a recorded session that every reader returns and every writer takes.

A :class:`Recording` holds :class:`Stream` objects. A stream's samples are stored ``(n_samples, n_channels)``
with one timestamp per sample in seconds (the LSL clock for live data, seconds from the start of the file for
formats without one). Marker streams are streams with ``channel_format == "string"``: one channel, one string
per event; labels and annotations are carried that way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.errors import RecordingFormatError

#: LSL channel formats, by the names XDF and pylsl use.
CHANNEL_FORMATS = ("float32", "double64", "string", "int32", "int16", "int8", "int64")
NUMPY_DTYPES = {
    "float32": np.float32,
    "double64": np.float64,
    "int32": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "int64": np.int64,
    "string": object,
}


@dataclass
class Stream:
    """One stream of samples.

    Parameters
    ----------
    name : str
        Stream name (LSL ``name``).
    type : str
        Content type (LSL ``type``): ``"ECG"``, ``"PPG"``, ``"EEG"``, ``"Markers"``, ...
    data : array of shape (n_samples, n_channels)
        Samples in ``channel_units``; an object array of ``str`` for marker streams.
    timestamps : array of shape (n_samples,)
        Sample times in seconds, non-decreasing.
    nominal_srate : float
        Nominal rate in Hz; ``0.0`` for irregular streams (markers, beat-to-beat series).
    channel_labels, channel_units, channel_types : list of str
        One entry per channel (``desc/channels/channel/{label,unit,type}`` in LSL/XDF).
    channel_format : str
        One of :data:`CHANNEL_FORMATS`.
    source_id : str
        LSL source id; identifies a device across reconnects.
    clock_offsets : array of shape (n_offsets, 2)
        ``(collection time, offset)`` pairs in seconds, as LSL measures them; empty when unknown.
    metadata : dict
        Anything else a reader found (manufacturer, hostname, original header fields).
    """

    name: str
    type: str
    data: np.ndarray
    timestamps: np.ndarray
    nominal_srate: float
    channel_labels: list[str]
    channel_units: list[str] = field(default_factory=list)
    channel_types: list[str] = field(default_factory=list)
    channel_format: str = "float32"
    source_id: str = ""
    clock_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.channel_format not in CHANNEL_FORMATS:
            raise RecordingFormatError(
                f"stream '{self.name}': channel format {self.channel_format!r} is not one of {list(CHANNEL_FORMATS)}"
            )
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        data = np.asarray(self.data, dtype=NUMPY_DTYPES[self.channel_format])
        if data.ndim == 1:
            data = data.reshape(-1, 1)
        if data.ndim != 2:
            raise RecordingFormatError(
                f"stream '{self.name}': data must be 2-D (n_samples, n_channels), got {data.shape}"
            )
        self.data = data
        n_channels = data.shape[1]
        if len(self.timestamps) != data.shape[0]:
            raise RecordingFormatError(
                f"stream '{self.name}': {data.shape[0]} samples but {len(self.timestamps)} timestamps"
            )
        if not self.channel_labels:
            self.channel_labels = [f"ch{k + 1}" for k in range(n_channels)]
        if not self.channel_units:
            self.channel_units = [""] * n_channels
        if not self.channel_types:
            self.channel_types = [self.type] * n_channels
        for what in ("channel_labels", "channel_units", "channel_types"):
            values = getattr(self, what)
            if len(values) != n_channels and data.shape[0] > 0:
                raise RecordingFormatError(
                    f"stream '{self.name}': {len(values)} {what.replace('_', ' ')} for {n_channels} channels"
                )
            setattr(self, what, [str(v) for v in values])
        self.nominal_srate = float(self.nominal_srate)
        if not (math.isfinite(self.nominal_srate) and self.nominal_srate >= 0.0):
            raise RecordingFormatError(
                f"stream '{self.name}': nominal rate {self.nominal_srate!r} Hz is not a finite rate >= 0"
            )
        bad = ~np.isfinite(self.timestamps)
        if bad.any():  # a sample without a time cannot be placed, replayed or windowed
            raise RecordingFormatError(
                f"stream '{self.name}': {int(bad.sum())} of {bad.size} timestamps are NaN or infinite "
                f"(first at sample {int(np.argmax(bad))})"
            )
        self.clock_offsets = np.asarray(self.clock_offsets, dtype=np.float64).reshape(-1, 2)

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return len(self.channel_labels)

    @property
    def n_samples(self) -> int:
        """Number of samples."""
        return int(self.data.shape[0])

    @property
    def is_marker(self) -> bool:
        """True for string-valued event streams."""
        return self.channel_format == "string"

    @property
    def is_regular(self) -> bool:
        """True when the stream has a nominal rate (not irregular)."""
        return self.nominal_srate > 0

    @property
    def duration_s(self) -> float:
        """Time from first to last sample in seconds (0 for fewer than two samples)."""
        return float(self.timestamps[-1] - self.timestamps[0]) if self.n_samples > 1 else 0.0

    def channel_index(self, labels: list[str]) -> list[int]:
        """Return the indices of ``labels``; raise naming the missing ones and what the stream has."""
        missing = [label for label in labels if label not in self.channel_labels]
        if missing:
            raise RecordingFormatError(
                f"stream '{self.name}' has no channel(s) {missing}; it has {self.channel_labels}"
            )
        return [self.channel_labels.index(label) for label in labels]


@dataclass
class Recording:
    """A recorded session: its streams (signals and markers) and file-level information.

    Parameters
    ----------
    streams : list of Stream
        Signal and marker streams, in file order.
    info : dict
        File-level header fields (e.g. ``{"source": path, "format": "xdf", "bundle_sha256": ...}``).
    """

    streams: list[Stream]
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Stream]:
        return iter(self.streams)

    def __len__(self) -> int:
        return len(self.streams)

    @property
    def signal_streams(self) -> list[Stream]:
        """Numeric streams."""
        return [s for s in self.streams if not s.is_marker]

    @property
    def marker_streams(self) -> list[Stream]:
        """String event streams (labels, annotations, state changes)."""
        return [s for s in self.streams if s.is_marker]

    def stream(self, key: str) -> Stream:
        """Return the stream whose name (or else type) is ``key``; raise naming what exists."""
        for attr in ("name", "type"):
            for s in self.streams:
                if getattr(s, attr) == key:
                    return s
        names = [s.name for s in self.streams]
        raise RecordingFormatError(f"recording has no stream named or typed {key!r}; it has {names}")

    @property
    def t_start(self) -> float:
        """Earliest timestamp over all non-empty streams (s)."""
        starts = [s.timestamps[0] for s in self.streams if s.n_samples]
        return float(min(starts)) if starts else 0.0

    @property
    def t_end(self) -> float:
        """Latest timestamp over all non-empty streams (s)."""
        ends = [s.timestamps[-1] for s in self.streams if s.n_samples]
        return float(max(ends)) if ends else 0.0


def labels_at(markers: Stream, times_s: np.ndarray, default: str = "") -> np.ndarray:
    """Return the label in force at each of ``times_s`` from a marker stream of state changes.

    A marker at time t sets the label from t (inclusive) until the next marker.

    Parameters
    ----------
    markers : Stream
        Marker stream, one string per event.
    times_s : array of shape (n,)
        Query times in seconds, on the same clock as ``markers.timestamps``.
    default : str
        Label before the first marker.

    Returns
    -------
    array of shape (n,) of str (object dtype)
    """
    times_s = np.asarray(times_s, dtype=np.float64)
    values = np.asarray([default] + [str(v) for v in markers.data[:, 0]], dtype=object)
    index = np.searchsorted(markers.timestamps, times_s, side="right")
    return values[index]
