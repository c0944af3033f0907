"""Replay a :class:`~devices.recording.Recording` as live LSL streams with its original timing.

Every stream (regular, irregular and marker streams alike) becomes one outlet. Times are taken relative to the
recording's earliest sample, so offsets between streams are kept. An extra marker stream,
``"<file stem> replay events"``, announces ``start``, ``loop <k>`` at each loop boundary and ``end``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from devices._checks import ensure_positive
from devices.errors import RecordingFormatError
from devices.player import LslPlayer
from devices.recording import Recording, Stream

logger = logging.getLogger(__name__)

#: Queue the next loop pass this long (recording seconds) before the current one runs out.
_LOOP_LEAD_S = 2.0


def _stable_source_id(recording: Recording, stream: Stream) -> str:
    if stream.source_id:
        return stream.source_id
    key = f"{recording.info.get('source', '')}|{stream.name}|{stream.type}".encode()
    return "replay-" + hashlib.sha1(key).hexdigest()[:12]


class RecordingReplay:
    """Publish a recording's streams and push their samples on the wall clock.

    Parameters
    ----------
    recording : Recording
        What to replay; it needs at least one non-empty stream.
    speed : float
        Playback speed (see :class:`~devices.player.LslPlayer`).
    loop : bool
        Start over at the end, forever (until :meth:`stop` or ``duration_s``); each pass is stamped after the
        previous one (one sample period later), and the events stream says ``loop <k>``.
    start_s : float
        Skip this much of the recording (s from its earliest sample).
    name_suffix : str
        Appended to every outlet name and source id (to run several replays of one file side by side).
    """

    def __init__(
        self,
        recording: Recording,
        *,
        speed: float = 1.0,
        loop: bool = False,
        start_s: float = 0.0,
        name_suffix: str = "",
    ) -> None:
        streams = [s for s in recording.streams if s.n_samples]
        source = recording.info.get("source", "recording")
        if not streams:
            raise RecordingFormatError(f"'{source}' holds no samples to replay")
        start_s = ensure_positive(start_s, "start_s", allow_zero=True)
        span_s = recording.t_end - recording.t_start
        if start_s >= span_s and span_s > 0:
            raise RecordingFormatError(f"start offset {start_s:g} s is past the end of '{source}' ({span_s:.3f} s)")
        self.recording = recording
        self.loop = loop
        self.player = LslPlayer(speed)
        self._t_origin = recording.t_start + start_s
        sample_period_s = max((1.0 / s.nominal_srate for s in streams if s.is_regular), default=0.001)
        self.pass_span_s = recording.t_end - self._t_origin + sample_period_s
        self._streams = streams
        self._outlets = [
            self.player.add_outlet(
                s, name=s.name + name_suffix, source_id=_stable_source_id(recording, s) + name_suffix
            )
            for s in streams
        ]
        self.events_name = f"{Path(str(source)).stem} replay events{name_suffix}"
        events = Stream(
            name=self.events_name,
            type="Markers",
            data=np.zeros((0, 1), dtype=object),
            timestamps=np.zeros(0),
            nominal_srate=0.0,
            channel_labels=["event"],
            channel_format="string",
        )
        events_id = "replay-events-" + hashlib.sha1(str(source).encode()).hexdigest()[:12] + name_suffix
        self._events = self.player.add_outlet(events, source_id=events_id)
        self.passes_queued = 0
        self._stop = threading.Event()

    @property
    def outlet_names(self) -> list[str]:
        """Names of the published data and label streams (the events stream excluded)."""
        return [s.name for s in self._streams]

    def _queue_pass(self) -> None:
        k = self.passes_queued
        offset = k * self.pass_span_s
        for stream, index in zip(self._streams, self._outlets):
            first = int(np.searchsorted(stream.timestamps, self._t_origin, side="left"))
            self.player.feed(index, stream.data[first:], stream.timestamps[first:] - self._t_origin + offset)
        label = "start" if k == 0 else f"loop {k}"
        self.player.feed(self._events, np.array([[label]], dtype=object), np.array([offset]))
        self.passes_queued += 1

    def stop(self) -> None:
        """Ask :meth:`run` to finish after its current step (thread-safe)."""
        self._stop.set()

    def run(
        self,
        duration_s: float | None = None,
        on_progress: Callable[[float, float], None] | None = None,
        linger_s: float = 0.5,
    ) -> float:
        """Replay until the end (or forever with ``loop``), ``duration_s`` of wall time, or :meth:`stop`.

        Parameters
        ----------
        duration_s : float or None
            Wall-clock limit in seconds.
        on_progress : callable(position_s, pass_span_s) or None
            Called about every 100 ms with the position inside the current pass (recording seconds).
        linger_s : float
            Keep the outlets open this long after the last sample so consumers can drain them.

        Returns
        -------
        float
            Recording seconds replayed.
        """
        player = self.player
        self._queue_pass()
        player.start()
        last_report = 0.0
        while not self._stop.is_set():
            player.step()
            elapsed = player.elapsed_rel_s()
            if self.loop and player.queued_until_rel_s() - elapsed < _LOOP_LEAD_S * player.speed:
                self._queue_pass()
            if not player.pending():
                break
            if duration_s is not None and elapsed / player.speed >= duration_s:
                break
            if on_progress is not None and elapsed - last_report >= 0.1 * player.speed:
                on_progress(min(elapsed % self.pass_span_s, self.pass_span_s), self.pass_span_s)
                last_report = elapsed
            player.sleep_step()
        elapsed = min(player.elapsed_rel_s(), player.queued_until_rel_s())
        player.discard_pending()
        player.feed(self._events, np.array([["end"]], dtype=object), np.array([max(elapsed, 0.0)]))
        player.step()
        self._stop.wait(linger_s)
        return max(elapsed, 0.0)

    def close(self) -> None:
        """Drop the outlets."""
        self.player.close()

    def __enter__(self) -> RecordingReplay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
