"""One monitored stream, end to end up to the model: reader → channel match → windower → quality gate, plus health.

:class:`StreamPipeline` is plain Python (no Ray): a :class:`~biostream.runtime.stream_group.StreamGroup` hosts many
of them in one actor and calls :meth:`StreamPipeline.poll` on its poll loop. A poll never blocks (the reader's
pulls do not), so a flapping outlet cannot stall the other streams of the group.

What the reader reports reaches the windows: a gap inside a connection becomes NaN placeholders marked missing
(:meth:`devices.windowing.Windower.push_gap`, the window keeps its true time span and is flagged), a clock jump or
a reconnection restarts the window grid. A window whose quality fails, or that comes while the stream's effective
rate is more than ``rate_tolerance`` off its nominal rate (so windows would hold the wrong span of time), is
marked rejected with the reason: the group turns it into "no prediction" instead of sending it to the model.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pylsl

from biostream.lsl import (
    DisconnectEvent,
    GapEvent,
    JumpEvent,
    ReaderState,
    ReconnectEvent,
    StreamDescription,
    StreamReader,
)
from biostream.runtime.matching import StreamMatch, match_stream
from biostream.runtime.records import Latency, LatencyStats, Marker, Prediction, SessionEvent, StreamHealth
from bridges.bundle import InputInfo
from devices.errors import StreamMismatchError
from devices.windowing import RingBuffer, Window, Windower

logger = logging.getLogger(__name__)

# Seconds after which a problem stops colouring the health amber.
_RECENT_S = 10.0
# Marker samples kept between two take_markers() calls (the oldest go first): a flooding marker stream costs
# at most this many strings of at most biostream.lsl.inlet.MAX_STRING_CHARS characters.
_MAX_MARKERS = 2000
# The display history never holds more than this many bytes (a wide, fast stream keeps fewer seconds).
_MAX_DISPLAY_BYTES = 256 << 20


@dataclass(frozen=True)
class ModelInput:
    """What a stream's windows must be for the bundle attached to it (pickles; crosses into actors).

    Attributes
    ----------
    bundle_key : str
        Which inference actor runs the model (the bundle's SHA-256).
    task : str
        The bundle's task.
    class_names : tuple of str
        Its classes.
    spec : InputInfo
        Its input contract (modality, channels, rate, window, default hop, units).
    hop_s : float
        Hop between windows for this stream (s).
    channel_map : dict
        ``--channel`` overrides, bundle label → stream label.
    """

    bundle_key: str
    task: str
    class_names: tuple[str, ...]
    spec: InputInfo
    hop_s: float
    channel_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamSpec:
    """A stream to monitor: its key, how to find it, and the model it feeds (None: display and record only)."""

    key: str
    description: StreamDescription
    model: ModelInput | None = None


@dataclass(frozen=True)
class ReadyWindow:
    """A window cut by a pipeline: its number in the stream, when it was ready and, if refused, why."""

    window: Window
    ready_s: float
    seq: int
    reject: str = ""
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What became of a window: probabilities (and the label), or None with the reason; when that was known."""

    item: ReadyWindow
    probabilities: tuple[float, ...] | None
    label: int
    reason: str
    codes: tuple[str, ...]
    done_s: float

    def prediction(self, model: ModelInput, published_s: float) -> Prediction:
        """The record of this outcome, published at ``published_s``."""
        w = self.item.window
        return Prediction(
            stream=w.stream, task=model.task, t_start=w.t_start, t_end=w.t_end, probabilities=self.probabilities,
            label=self.label, class_names=model.class_names, reason=self.reason, codes=self.codes,
            latency=Latency(w.t_end, w.arrival_s, self.item.ready_s, self.done_s, published_s),
        )


class StreamPipeline:
    """Reader, windower, quality gate, health and a display history for one stream.

    Parameters
    ----------
    spec : StreamSpec
        The stream and the model it feeds.
    lost_after_s : float
        Reconnecting longer than this reports the stream lost (s); it keeps looking for it.
    display_s : float
        Raw history kept for display snapshots (s).
    rate_tolerance : float
        Largest relative difference between effective and nominal rate before windows are refused.
    """

    def __init__(
        self, spec: StreamSpec, *, lost_after_s: float = 10.0, display_s: float = 60.0, rate_tolerance: float = 0.05
    ) -> None:
        self.spec = spec
        self.key = spec.key
        self.lost_after_s = float(lost_after_s)
        self.display_s = float(display_s)
        self.rate_tolerance = float(rate_tolerance)
        self.reader = StreamReader(spec.description, require_regular=spec.model is not None)
        self.match: StreamMatch | None = None
        self.windower: Windower | None = None
        self._display: RingBuffer | None = None
        self._scales: np.ndarray | None = None
        self.latency = LatencyStats()
        self.counts = dict.fromkeys(("windows", "predictions", "rejected", "dropped", "errors"), 0)
        self._problem_at = -math.inf
        self._problem = ""
        self._lost_reported = False
        self._failed: StreamMismatchError | None = None
        self.provider = ""
        self._waiting: dict[int, Outcome] = {}  # outcomes that arrived before an earlier window's
        self._next_seq = 0
        self._markers: deque[Marker] = deque(maxlen=_MAX_MARKERS)
        self.markers_dropped = 0

    # ------------------------------------------------------------------ set-up
    def connect(self, timeout_s: float = 5.0) -> list[str]:
        """Open the stream and match it to the model (blocking: call it off the poll loop).

        Returns
        -------
        list of str
            Notes on the match a user should see (which of several channels, an assumed unit).

        Raises
        ------
        BadInputError, StreamMismatchError
            The stream is not visible, or does not fit the model (one line saying what is missing).
        """
        reader = self.reader.connect(timeout_s)
        info = reader.description
        notes: list[str] = [f"channel description: {note}" for note in reader.notes]
        model = self.spec.model
        if model is not None:
            spec = model.spec
            try:
                self.match = match_stream(
                    spec, stream_name=info.name, stream_type=info.type, sfreq_hz=info.sfreq_hz,
                    labels=reader.channel_labels, types=reader.channel_types, units=reader.channel_units,
                    overrides=model.channel_map,
                )
            except StreamMismatchError:
                reader.close()
                raise
            notes += list(self.match.notes)
            self._scales = np.asarray(self.match.scales, dtype=np.float32)
            if np.all(self._scales == 1.0):
                self._scales = None
            self.windower = Windower(
                spec.window_s, model.hop_s, info.sfreq_hz, channel_labels=spec.channel_labels,
                target_sfreq_hz=spec.sfreq_hz, name=self.key,
            )
        if info.is_numeric:
            rows = max(1, math.ceil(self.display_s * info.sfreq_hz)) if info.is_regular else 4096
            rows = min(rows, max(1, _MAX_DISPLAY_BYTES // (4 * info.n_channels)))
            self._display = RingBuffer(rows, info.n_channels, dtype=np.float32, name=self.key)
        return notes

    def close(self) -> None:
        """Close the reader."""
        self.reader.close()

    # ------------------------------------------------------------------ polling
    def poll(self) -> tuple[list[ReadyWindow], list[SessionEvent]]:
        """Pull what arrived, feed the windower, and return the windows completed and the events (never blocks)."""
        events: list[SessionEvent] = []
        if self._failed is not None:
            return [], events
        try:
            chunk = self.reader.pull()
        except StreamMismatchError as err:
            self._failed = err
            self._note_problem(str(err))
            return [], [SessionEvent("mismatch", str(err), self.key, "error", pylsl.local_clock())]
        now = pylsl.local_clock()
        if chunk is None:
            self._check_lost(now, events)
            return [], events
        windows: list[Window] = []
        splits = []  # (chunk index, action, event)
        for event in chunk.events:
            events.append(self._describe(event, now))
            if isinstance(event, ReconnectEvent):
                self._lost_reported = False
                if self.windower is not None:
                    self.windower.reset()  # a new connection starts a new grid
            elif isinstance(event, (GapEvent, JumpEvent)) and not getattr(event, "after_reconnect", False):
                splits.append((event.chunk_index, event))
        if chunk.n_samples:
            self._feed(chunk.data, chunk.dejittered_timestamps, splits, now, windows)
        ready_s = pylsl.local_clock()
        return [self._gate(w, ready_s) for w in windows], events

    def _feed(self, data: np.ndarray, ts: np.ndarray, splits: list, arrival_s: float, out: list[Window]) -> None:
        """Push a chunk into the display ring and the windower, splitting it where a gap or a jump falls."""
        if data.dtype == object:  # a marker stream: keep its labels for the driver (bounded; values already cut)
            overflow = len(self._markers) + len(ts) - _MAX_MARKERS
            if overflow > 0:
                if not self.markers_dropped:
                    logger.warning("marker stream %s floods: keeping its newest %d markers", self.key, _MAX_MARKERS)
                self.markers_dropped += overflow
            self._markers.extend(Marker(self.key, float(t), str(row[0])) for t, row in zip(ts, data))
            return
        if self._display is not None:
            self._display.push(data, ts)
        if self.windower is None:
            return
        x = data[:, list(self.match.indices)].astype(np.float32, copy=False)
        if self._scales is not None:
            x = x * self._scales
        start = 0
        for index, event in sorted(splits, key=lambda item: item[0]):
            out += self.windower.push(x[start:index], ts[start:index], arrival_s=arrival_s)
            start = index
            if isinstance(event, JumpEvent):
                self.windower.reset()
            else:
                period = 1.0 / self.reader.effective_rate_hz
                out += self.windower.push_gap(event.n_missing, event.start_s, period, arrival_s=arrival_s)
        out += self.windower.push(x[start:], ts[start:], arrival_s=arrival_s)

    def _gate(self, window: Window, ready_s: float) -> ReadyWindow:
        seq = self.counts["windows"]
        self.counts["windows"] += 1
        if not window.quality.ok:
            return ReadyWindow(window, ready_s, seq, "; ".join(window.quality.reasons), window.quality.codes)
        off = self.rate_error()
        if off is not None:
            return ReadyWindow(window, ready_s, seq, off, ("rate",))
        return ReadyWindow(window, ready_s, seq)

    def in_order(self, outcome: Outcome) -> list[Outcome]:
        """Take a window's outcome; return the outcomes that can now be published, in window order.

        A refused window is known at once, a modelled one only when its batch comes back: published as they
        come, a prediction stream would go back in time. So outcomes wait for every earlier window's.
        """
        self._waiting[outcome.item.seq] = outcome
        ready = []
        while self._next_seq in self._waiting:
            ready.append(self._waiting.pop(self._next_seq))
            self._next_seq += 1
        return ready

    def rate_error(self) -> str | None:
        """Why the effective rate makes windows wrong (None when it is within tolerance or not yet measured)."""
        stats = self.reader.stats
        nominal = self.spec.description.sfreq_hz
        if not stats.rate_measured or nominal <= 0:
            return None
        off = stats.effective_rate_hz / nominal - 1.0
        if abs(off) <= self.rate_tolerance:
            return None
        return (
            f"effective rate {stats.effective_rate_hz:.4g} Hz is {100 * off:+.1f}% off the nominal {nominal:g} Hz "
            "(windows would span the wrong time)"
        )

    # ------------------------------------------------------------------ outcomes
    def record(self, predictions: list[Prediction]) -> None:
        """Count the outcomes of this stream's windows (made, rejected, dropped, failed) and their latencies."""
        latencies = []
        for p in predictions:
            self.counts[p.outcome] += 1
            if p.ok:
                latencies.append(p.latency.total_ms)
            else:
                self._note_problem(p.reason if p.outcome != "rejected" else f"no prediction: {p.reason}")
        self.latency.add(latencies)

    def _note_problem(self, message: str) -> None:
        self._problem_at = pylsl.local_clock()
        self._problem = message

    def _describe(self, event: Any, now: float) -> SessionEvent:
        kind = {GapEvent: "gap", JumpEvent: "jump", DisconnectEvent: "disconnect", ReconnectEvent: "reconnect"}[
            type(event)
        ]
        level = "info" if kind in ("gap", "reconnect") else "warning"
        text = event.describe()
        if kind != "reconnect":
            self._note_problem(text)
        return SessionEvent(kind, text, self.key, level, now)

    def _check_lost(self, now: float, events: list[SessionEvent]) -> None:
        if self.reader.state is not ReaderState.RECONNECTING or self._lost_reported:
            return
        gone_s = now - self.reader.stats.last_timestamp_s if math.isfinite(self.reader.stats.last_timestamp_s) else 0
        if gone_s > self.lost_after_s:
            self._lost_reported = True
            message = f"stream '{self.spec.description.name}' lost: no data for {gone_s:.0f} s (still looking for it)"
            self._note_problem(message)
            events.append(SessionEvent("lost", message, self.key, "error", now))

    # ------------------------------------------------------------------ views
    def health(self, node_id: str = "") -> StreamHealth:
        """A snapshot of how the stream is doing."""
        now = pylsl.local_clock()
        stats = self.reader.stats
        desc = self.spec.description
        state = stats.state
        if self._failed is not None:
            state = "failed"
        elif self._lost_reported:
            state = "lost"
        level, message = "green", ""
        rate_off = self.rate_error()
        if state in ("failed", "lost") or rate_off:
            level, message = "red", str(self._failed or "") or (self._problem if state == "lost" else rate_off)
        elif state in ("reconnecting", "idle") or now - self._problem_at < _RECENT_S:
            level = "amber"
            message = "reconnecting" if state == "reconnecting" else self._problem
        lag = now - stats.last_timestamp_s if math.isfinite(stats.last_timestamp_s) else math.nan
        model = self.spec.model
        return StreamHealth(
            stream=self.key, name=desc.name, type=desc.type, state=state, level=level, message=message,
            nominal_rate_hz=desc.sfreq_hz, effective_rate_hz=float(stats.effective_rate_hz),
            rate_measured=stats.rate_measured, clock_offset_s=stats.clock_offset_s, jitter_s=stats.jitter_s,
            samples=stats.samples_received, gaps=stats.n_gaps, missing_samples=stats.n_missing,
            jumps=stats.n_jumps, disconnects=stats.n_disconnects, reconnects=stats.n_reconnects,
            nonfinite_samples=stats.n_nonfinite, lag_s=lag, latency_p50_ms=self.latency.percentile(50),
            latency_p99_ms=self.latency.percentile(99), provider=self.provider,
            task=model.task if model is not None else "", node_id=node_id, **self.counts,
        )

    def take_markers(self) -> list[Marker]:
        """The marker-stream samples since the last call (marker streams only; [] otherwise)."""
        markers = list(self._markers)
        self._markers.clear()
        return markers

    def snapshot(self, seconds: float, points: int, until_s: float | None = None) -> dict[str, Any]:
        """``seconds`` of raw samples, peak-decimated to at most ``points`` per channel.

        The span ends at the newest sample, or at ``until_s`` (s, local LSL clock) to look back into the history.

        Returns
        -------
        dict
            ``t`` (n,) timestamps in s (local LSL clock), ``data`` (n, n_channels) float32 in channel units,
            ``labels``, ``units``, ``sfreq_hz``; each pair of rows is a bin's min and max once decimated.
        """
        out: dict[str, Any] = {"t": np.zeros(0), "data": np.zeros((0, 0), np.float32), "labels": [], "units": []}
        ring = self._display
        if ring is None or ring.n_available == 0:
            return out
        rate = self.spec.description.sfreq_hz
        if until_s is None:
            n = ring.n_available if rate <= 0 else min(ring.n_available, max(1, math.ceil(seconds * rate)))
            data, ts = ring.latest(n)
        else:  # scrolled back: the span ending at until_s, from what the history still holds
            data, ts = ring.latest()
            lo, hi = np.searchsorted(ts, [until_s - seconds, until_s], side="right")
            data, ts = data[lo:hi], ts[lo:hi]
            n = ts.shape[0]
        if n == 0:
            return out
        data, ts = peak_decimate(data, ts, points)
        out.update(t=ts, data=data, labels=self.reader.channel_labels, units=self.reader.channel_units, sfreq_hz=rate)
        return out


def peak_decimate(data: np.ndarray, ts: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` rows of ``data`` (n, n_channels) for display: each bin's min then max, so peaks survive.

    ``ts`` (n,) in s; each bin's pair of rows is stamped at the bin's centre sample. Unchanged when already short.
    """
    n = ts.shape[0]
    if points < 2 or n <= points:
        return data, ts
    bins = points // 2
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(data, edges[:-1], axis=0)
    hi = np.maximum.reduceat(data, edges[:-1], axis=0)
    centre = ts[(edges[:-1] + edges[1:] - 1) // 2]
    return np.stack([lo, hi], axis=1).reshape(2 * bins, -1), np.repeat(centre, 2)
