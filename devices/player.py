"""Publish sample arrays to LSL outlets on the wall clock: the engine behind replay and live simulation.

Each stream gets one outlet and a queue of pending segments with times relative to the session start (s).
:meth:`LslPlayer.step` pushes every sample whose time has come, stamped ``t0 + t_rel / speed`` in the LSL clock,
so relative timing within and across streams is kept exactly in the stamps and to within one step (~10 ms) in
the wall-clock moment of the push.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pylsl

from devices._checks import ensure_positive
from devices.lsl_meta import make_stream_info
from devices.recording import Stream

logger = logging.getLogger(__name__)


@dataclass
class _Feed:
    outlet: pylsl.StreamOutlet
    is_marker: bool
    segments: deque = field(default_factory=deque)  # of [data (n, ch), t_rel (n,), cursor]
    samples_pushed: int = 0
    last_t_rel: float = float("-inf")


class LslPlayer:
    """Push queued samples to LSL outlets as the wall clock reaches their time.

    Parameters
    ----------
    speed : float
        Playback speed; 2.0 pushes twice as fast and compresses the stamps by the same factor (the declared
        nominal rate is unchanged, so each window still holds the recording's samples).
    step_s : float
        Sleep between pushes in :meth:`run_until` (s).
    """

    def __init__(self, speed: float = 1.0, step_s: float = 0.01) -> None:
        self.speed = ensure_positive(speed, "speed")
        self.step_s = ensure_positive(step_s, "step_s")
        self._feeds: list[_Feed] = []
        self._t0_lsl: float | None = None

    def add_outlet(self, stream: Stream, *, name: str | None = None, source_id: str | None = None) -> int:
        """Create an outlet described by ``stream`` (name, type, rate, format, channel metadata); return its index.

        The stream's samples are not queued; call :meth:`feed` for that.
        """
        extra = {"replay_speed": f"{self.speed:g}"} if self.speed != 1.0 else None
        info = make_stream_info(
            name or stream.name,
            stream.type,
            stream.nominal_srate,
            stream.channel_labels,
            stream.channel_units,
            stream.channel_types,
            channel_format=stream.channel_format,
            source_id=stream.source_id if source_id is None else source_id,
            manufacturer=str(stream.metadata.get("manufacturer", "")),
            extra=extra,
        )
        # A marker stream gets a 1-sample chunk size so every event goes out at once.
        outlet = pylsl.StreamOutlet(info, chunk_size=1 if stream.is_marker else 0)
        self._feeds.append(_Feed(outlet, stream.is_marker))
        return len(self._feeds) - 1

    def feed(self, index: int, data: np.ndarray, t_rel_s: np.ndarray) -> None:
        """Queue samples for outlet ``index``.

        Parameters
        ----------
        data : array of shape (n_samples, n_channels)
            Samples (object array of str for marker outlets).
        t_rel_s : array of shape (n_samples,)
            Times relative to the session start in seconds, non-decreasing and after anything queued before.
        """
        t_rel_s = np.asarray(t_rel_s, dtype=np.float64)
        if len(t_rel_s) == 0:
            return
        feed = self._feeds[index]
        feed.segments.append([data, t_rel_s, 0])
        feed.last_t_rel = float(t_rel_s[-1])

    def start(self, lead_s: float = 0.05) -> LslPlayer:
        """Fix the session start ``t0`` in the LSL clock, ``lead_s`` from now, and return self."""
        self._t0_lsl = pylsl.local_clock() + lead_s
        return self

    @property
    def t0_lsl(self) -> float:
        """Session start in the LSL clock (s); :meth:`start` must have been called."""
        if self._t0_lsl is None:
            raise RuntimeError("The player is not started. Please call start() first.")
        return self._t0_lsl

    def elapsed_rel_s(self) -> float:
        """Session time reached now, in recording seconds (wall time since start × speed)."""
        return (pylsl.local_clock() - self.t0_lsl) * self.speed

    def step(self) -> int:
        """Push every queued sample whose time has come; return how many samples were pushed."""
        now_rel = self.elapsed_rel_s()
        pushed = 0
        for feed in self._feeds:
            while feed.segments:
                segment = feed.segments[0]
                data, t_rel, cursor = segment
                stop = int(np.searchsorted(t_rel, now_rel, side="right"))
                if stop > cursor:
                    stamps = self.t0_lsl + t_rel[cursor:stop] / self.speed
                    self._push(feed, data[cursor:stop], stamps)
                    pushed += stop - cursor
                    feed.samples_pushed += stop - cursor
                    segment[2] = stop
                if stop < len(t_rel):
                    break
                feed.segments.popleft()
        return pushed

    @staticmethod
    def _push(feed: _Feed, data: np.ndarray, stamps: np.ndarray) -> None:
        if feed.is_marker:
            for row, stamp in zip(data, stamps):
                feed.outlet.push_sample([str(v) for v in row], float(stamp))
        else:
            feed.outlet.push_chunk(np.ascontiguousarray(data), stamps.tolist())

    def queued_until_rel_s(self) -> float:
        """The latest queued time over all outlets (recording seconds); -inf when nothing was ever queued."""
        return max((f.last_t_rel for f in self._feeds), default=float("-inf"))

    def pending(self) -> bool:
        """True while some queued sample has not been pushed yet."""
        return any(f.segments for f in self._feeds)

    def discard_pending(self) -> None:
        """Forget every queued sample not pushed yet (e.g. a loop pass queued ahead when stopping)."""
        for feed in self._feeds:
            feed.segments.clear()
            feed.last_t_rel = float("-inf")

    def sleep_step(self) -> None:
        """Sleep one step (s), so a loop of ``step(); sleep_step()`` pushes about every ``step_s``."""
        time.sleep(self.step_s)

    @property
    def samples_pushed(self) -> list[int]:
        """Samples pushed so far, per outlet."""
        return [f.samples_pushed for f in self._feeds]

    def close(self) -> None:
        """Drop every outlet (they vanish from the network)."""
        self._feeds.clear()

    def __enter__(self) -> LslPlayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
