"""What a stream reader reports besides samples: gaps, clock jumps, disconnections and reconnections.

Every event is a small frozen dataclass with the stream's name, a ``kind`` string (for logs and JSON) and a
one-line ``describe()``. Times are in seconds of the local LSL clock (``pylsl.local_clock()``), the same clock as
:attr:`biostream.lsl.inlet.Chunk.timestamps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class GapEvent:
    """A stretch of missing samples in a regular stream.

    Attributes
    ----------
    stream : str
        Stream name.
    start_s : float
        Time the first missing sample would have had (last sample before the gap + one period), in s.
    duration_s : float
        Length of the missing stretch (step between the samples around it minus one period), in s.
    n_missing : int
        Estimated number of samples lost (step × effective rate − 1, rounded).
    after_reconnect : bool
        True when the gap spans a disconnection (the first samples after a :class:`ReconnectEvent`).
    chunk_index : int
        Samples of the chunk that carries the event that come before the gap (where to split the chunk).
    """

    kind: ClassVar[str] = "gap"
    stream: str
    start_s: float
    duration_s: float
    n_missing: int
    after_reconnect: bool = False
    chunk_index: int = 0

    def describe(self) -> str:
        """One line for logs."""
        why = " across a reconnection" if self.after_reconnect else ""
        return (
            f"stream '{self.stream}': gap of {self.duration_s * 1e3:.1f} ms (~{self.n_missing} samples) "
            f"at t={self.start_s:.3f} s{why}"
        )


@dataclass(frozen=True)
class JumpEvent:
    """A timestamp discontinuity that is not a gap; the dejitter fit restarts after it.

    The clock went backwards, or leapt forward faster than wall time passed (e.g. the source restarted its
    clock).

    Attributes
    ----------
    stream : str
        Stream name.
    at_s : float
        Timestamp of the last sample before the jump, in s.
    size_s : float
        How far the source's clock moved, in s (negative: backwards): the step from that sample to the next
        minus one sample period, so a device clock set back 10 s reads -10.
    chunk_index : int
        Samples of the chunk that carries the event that come before the jump (where to split the chunk).
    """

    kind: ClassVar[str] = "jump"
    stream: str
    at_s: float
    size_s: float
    chunk_index: int = 0

    @property
    def backwards(self) -> bool:
        """True when the clock went backwards."""
        return self.size_s < 0

    def describe(self) -> str:
        """One line for logs."""
        way = "backwards" if self.backwards else "forward"
        return f"stream '{self.stream}': timestamps jumped {way} by {abs(self.size_s):.3f} s at t={self.at_s:.3f} s"


@dataclass(frozen=True)
class DisconnectEvent:
    """The outlet went away (the inlet reported the stream lost).

    Attributes
    ----------
    stream : str
        Stream name.
    at_s : float
        Local LSL clock when the loss was noticed, in s.
    last_timestamp_s : float
        Timestamp of the last sample received before it (NaN if none), in s.
    """

    kind: ClassVar[str] = "disconnect"
    stream: str
    at_s: float
    last_timestamp_s: float

    def describe(self) -> str:
        """One line for logs."""
        return f"stream '{self.stream}': disconnected at t={self.at_s:.3f} s; re-resolving"


@dataclass(frozen=True)
class ReconnectEvent:
    """An outlet with the same source id came back and the reader resumed.

    Attributes
    ----------
    stream : str
        Stream name.
    disconnected_at_s, reconnected_at_s : float
        Local LSL clock when the loss was noticed and when the new inlet was open, in s.
    """

    kind: ClassVar[str] = "reconnect"
    stream: str
    disconnected_at_s: float
    reconnected_at_s: float

    @property
    def outage_s(self) -> float:
        """Time without a connection, in s."""
        return self.reconnected_at_s - self.disconnected_at_s

    def describe(self) -> str:
        """One line for logs."""
        return (
            f"stream '{self.stream}': reconnected at t={self.reconnected_at_s:.3f} s after "
            f"{self.outage_s:.3f} s without a connection"
        )


StreamEvent = GapEvent | JumpEvent | DisconnectEvent | ReconnectEvent
