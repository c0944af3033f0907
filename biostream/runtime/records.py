"""What the runtime hands out: predictions with their latency breakdown, per-stream health, and session events.

Plain frozen dataclasses of Python numbers and strings, so they pickle cheaply across Ray and turn into JSON
lines as they are. Every time is in seconds of the local LSL clock (``pylsl.local_clock()``) of the machine that
measured it; durations are in milliseconds where the name says ``_ms``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

#: Health levels, worst last.
LEVELS = ("green", "amber", "red")
#: A window's last sample older than this when its prediction is published is taken as stamped on another clock.
_MAX_PLAUSIBLE_AGE_S = 60.0


@dataclass(frozen=True)
class Latency:
    """When a window's prediction passed each stage (s, local LSL clock).

    Attributes
    ----------
    sample_s : float
        Timestamp of the window's last sample (its capture time as the outlet stamped it, clock-corrected).
    arrival_s : float
        When the chunk holding that sample was pulled.
    ready_s : float
        When the window was cut, checked and resampled.
    done_s : float
        When the inference result came back (``ready_s`` for a window that was not sent to a model).
    published_s : float
        When the prediction was pushed to its LSL outlet.
    """

    sample_s: float
    arrival_s: float
    ready_s: float
    done_s: float
    published_s: float

    @property
    def total_ms(self) -> float:
        """Age of the window's last sample when its prediction was published, in ms.

        From the sample's timestamp where that is on this clock; from its arrival where the outlet stamps in
        another clock (e.g. Unix time), which the age would otherwise turn into nonsense.
        """
        age = self.published_s - self.sample_s
        start = self.sample_s if 0.0 <= age < _MAX_PLAUSIBLE_AGE_S else self.arrival_s
        return 1e3 * (self.published_s - start)

    def breakdown_ms(self) -> dict[str, float]:
        """Milliseconds spent in each stage: to arrival, windowing, inference (queue included), publishing."""
        return {
            "transport": 1e3 * (self.arrival_s - self.sample_s),
            "windowing": 1e3 * (self.ready_s - self.arrival_s),
            "inference": 1e3 * (self.done_s - self.ready_s),
            "publish": 1e3 * (self.published_s - self.done_s),
        }


@dataclass(frozen=True)
class Prediction:
    """One window's outcome: class probabilities, or "no prediction" with the reason.

    Attributes
    ----------
    stream : str
        Key of the monitored stream.
    task : str
        The bundle's task (e.g. ``"stress"``).
    t_start, t_end : float
        Times of the window's first and last samples (s, local LSL clock); predictions are stamped ``t_end``.
    probabilities : tuple of float or None
        One per class, in ``class_names`` order; None for no prediction.
    label : int
        Index of the most probable class; -1 for no prediction.
    class_names : tuple of str
        The bundle's classes.
    reason : str
        Why there is no prediction ('' when there is one): the window's quality findings, a dropped window, an
        inference error.
    codes : tuple of str
        Machine-readable form of ``reason`` (quality codes, ``"dropped"``, ``"inference_error"``, ``"rate"``).
    latency : Latency
        The stages the window went through.
    """

    stream: str
    task: str
    t_start: float
    t_end: float
    probabilities: tuple[float, ...] | None
    label: int
    class_names: tuple[str, ...]
    reason: str
    codes: tuple[str, ...]
    latency: Latency

    @property
    def ok(self) -> bool:
        """True when the model gave probabilities."""
        return self.probabilities is not None

    @property
    def label_name(self) -> str | None:
        """The predicted class name; None for no prediction."""
        return self.class_names[self.label] if self.label >= 0 else None

    @property
    def confidence(self) -> float:
        """Probability of the predicted class (NaN for no prediction)."""
        return self.probabilities[self.label] if self.probabilities is not None else math.nan

    @property
    def outcome(self) -> str:
        """The counter this window goes to: ``predictions``, ``dropped``, ``errors`` or ``rejected``."""
        if self.probabilities is not None:
            return "predictions"
        if "dropped" in self.codes:
            return "dropped"
        return "errors" if "inference_error" in self.codes else "rejected"

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines record: ``stream``, ``t``, ``label``, ``probs``, ``latency_ms`` and the rest."""
        return {
            "stream": self.stream,
            "task": self.task,
            "t": self.t_end,
            "t_start": self.t_start,
            "label": self.label_name,
            "confidence": None if self.probabilities is None else round(self.confidence, 6),
            "probs": None
            if self.probabilities is None
            else {name: round(p, 6) for name, p in zip(self.class_names, self.probabilities)},
            "reason": self.reason or None,
            "latency_ms": round(self.latency.total_ms, 3),
            "latency_breakdown_ms": {k: round(v, 3) for k, v in self.latency.breakdown_ms().items()},
        }


@dataclass(frozen=True)
class StreamHealth:
    """How one monitored stream is doing (a snapshot).

    Attributes
    ----------
    stream : str
        Key of the stream.
    name, type : str
        LSL name and type.
    state : str
        ``connecting``, ``connected``, ``reconnecting``, ``lost`` (gone longer than the lost timeout),
        ``failed`` (came back changed) or ``stopped``.
    level : str
        ``green``, ``amber`` or ``red`` (see :data:`LEVELS`).
    message : str
        What is wrong, in plain words ('' when all is well).
    nominal_rate_hz, effective_rate_hz : float
        Declared and measured rate.
    rate_measured : bool
        Whether ``effective_rate_hz`` is measured (else nominal).
    clock_offset_s, jitter_s : float
        Clock correction and timestamp jitter.
    samples, gaps, missing_samples, jumps, disconnects, reconnects, nonfinite_samples : int
        Counters since the stream was added.
    windows, predictions, rejected, dropped, errors : int
        Windows cut; predictions made; windows refused by the quality gate; windows dropped because inference
        fell behind (or was unavailable); windows whose batch failed in inference.
    lag_s : float
        How far behind the present the newest sample is (s); NaN before the first.
    latency_p50_ms, latency_p99_ms : float
        Over the recent predictions (NaN before the first).
    provider : str
        The execution provider running this stream's model ('' when none is attached).
    task : str
        The attached bundle's task ('' when none).
    node_id : str
        Ray node hosting the stream's actor.
    """

    stream: str
    name: str
    type: str
    state: str
    level: str
    message: str
    nominal_rate_hz: float
    effective_rate_hz: float
    rate_measured: bool
    clock_offset_s: float
    jitter_s: float
    samples: int
    gaps: int
    missing_samples: int
    jumps: int
    disconnects: int
    reconnects: int
    nonfinite_samples: int
    windows: int
    predictions: int
    rejected: int
    dropped: int
    errors: int
    lag_s: float
    latency_p50_ms: float
    latency_p99_ms: float
    provider: str = ""
    task: str = ""
    node_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class SessionEvent:
    """Something a user should hear about: a gap, a reconnection, a restart, a refused window or bundle.

    Attributes
    ----------
    kind : str
        One of :attr:`KINDS`.
    message : str
        One line in plain words.
    stream : str
        Key of the stream concerned ('' for session-wide events).
    level : str
        ``info``, ``warning`` or ``error``.
    at_s : float
        When it happened (s, local LSL clock of the machine that saw it).
    """

    KINDS: ClassVar[tuple[str, ...]] = (
        "connected", "gap", "jump", "disconnect", "reconnect", "lost", "mismatch", "rejected", "dropped",
        "inference_error", "restart", "recording", "error", "stopped",
    )

    kind: str
    message: str
    stream: str = ""
    level: str = "info"
    at_s: float = math.nan

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict with ``"event"`` naming the kind."""
        return {"event": self.kind, "stream": self.stream, "level": self.level, "message": self.message,
                "t": self.at_s}


@dataclass(frozen=True)
class Marker:
    """One sample of a marker (string) stream: an annotation, a label, a state the simulator or a replay reports.

    Attributes
    ----------
    stream : str
        Key of the marker stream.
    at_s : float
        Its timestamp (s, local LSL clock): the moment it marks.
    label : str
        The text.
    """

    stream: str
    at_s: float
    label: str


@dataclass
class LatencyStats:
    """Recent prediction latencies of one stream (a bounded window), with percentiles."""

    capacity: int = 512
    _values: list[float] = field(default_factory=list)

    def add(self, values_ms: Sequence[float]) -> None:
        """Record latencies (ms), keeping the newest ``capacity``."""
        self._values.extend(values_ms)
        if len(self._values) > self.capacity:
            del self._values[: len(self._values) - self.capacity]

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) in ms; NaN when empty."""
        if not self._values:
            return math.nan
        ordered = sorted(self._values)
        rank = min(len(ordered) - 1, max(0, math.ceil(q / 100.0 * len(ordered)) - 1))
        return ordered[rank]
