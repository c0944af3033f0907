"""The window's link to the runtime: every call that may block runs off the UI thread, results come back as signals.

:class:`SessionController` owns a :class:`biostream.runtime.session.MonitorSession`. Its operations (start,
add or remove a stream, read or attach a bundle, record, discover streams) run on a small worker pool. Workers
never touch Qt: a finished operation, or its error as one plain line, goes through a :class:`ui.inbox.UiInbox`
and its signal is emitted on the UI thread. Results that stream in (predictions, events, health, markers) are
read from the session's subscription by a UI-thread timer: that read never waits. Display snapshots are fetched by
one worker at a time, so requests never pile up when the runtime is busy. So the UI thread never blocks on Ray
or LSL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from biostream.lsl import StreamDescription, list_streams
from biostream.runtime.actors import first_line
from biostream.runtime.session import MonitorSession
from bridges.bundle import Bundle, read_bundle
from ui.inbox import UiInbox

logger = logging.getLogger(__name__)

_POLL_MS = 100
_DISCOVER_EVERY_MS = 2500


class SessionController(QtCore.QObject):
    """Run a monitor session for the window (see the module docstring).

    Parameters
    ----------
    session : MonitorSession, optional
        The session to drive; a new one (display history 5 minutes) when None.
    parent : QObject, optional
        Qt parent.
    """

    started = QtCore.Signal()
    failed = QtCore.Signal(str)  #: an operation failed: one plain line
    info = QtCore.Signal(str)  #: an operation finished: one plain line
    streams_visible = QtCore.Signal(list)  #: list[StreamDescription]
    stream_added = QtCore.Signal(str, object)  #: key, StreamSpec
    stream_removed = QtCore.Signal(str)
    bundle_read = QtCore.Signal(str, object)  #: path, Bundle
    predictions = QtCore.Signal(list)  #: list[Prediction]
    events = QtCore.Signal(list)  #: list[SessionEvent]
    markers = QtCore.Signal(list)  #: list[Marker]
    health = QtCore.Signal(list)  #: list[StreamHealth]
    snapshots = QtCore.Signal(dict)  #: key -> snapshot dict
    recording = QtCore.Signal(object)  #: recording status dict, or None when not recording

    def __init__(self, session: MonitorSession | None = None, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session if session is not None else MonitorSession(display_s=300.0)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="biostream-ui")
        self._subscription = None
        self._snapshot_busy = threading.Event()
        self._discovering = threading.Event()
        self._closed = False
        self._inbox = UiInbox(self)
        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(_POLL_MS)
        self._poll.timeout.connect(self._read_results)
        self._discover = QtCore.QTimer(self)
        self._discover.setInterval(_DISCOVER_EVERY_MS)
        self._discover.timeout.connect(self.discover)

    # ------------------------------------------------------------------ plumbing
    def _run(self, work: Callable[[], Any], done: Callable[[Any], None] | None = None, what: str = "") -> None:
        """Run ``work`` on the worker pool; then, on the UI thread, ``done(result)`` or ``failed`` with the error."""
        if self._closed:
            return

        def job() -> None:
            try:
                result = work()
            except Exception as err:  # noqa: BLE001 - every failure is shown, none escapes the worker
                logger.debug("%s failed", what or "operation", exc_info=True)
                self._inbox.post(self._report_failure, f"{what}: {first_line(err)}" if what else first_line(err))
                return
            if done is not None:
                self._inbox.post(done, result)

        self._pool.submit(job)

    def _report_failure(self, message: str) -> None:
        self.failed.emit(message)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the session (Ray, its threads) off the UI thread; ``started`` when it is up."""

        def work() -> None:
            self.session.start()
            self._subscription = self.session.subscribe()

        def done(_: Any) -> None:
            self.started.emit()

        self._run(work, done, "starting the runtime")
        self._poll.start()
        self._discover.start()
        self.discover()

    def close(self) -> dict[str, Any] | None:
        """Stop the timers and the session (this one call waits: the window is closing)."""
        self._closed = True
        self._inbox.stop()
        self._poll.stop()
        self._discover.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            return self.session.stop()
        except Exception:  # noqa: BLE001 - closing must not fail
            logger.warning("stopping the session failed", exc_info=True)
            return None

    # ------------------------------------------------------------------ operations
    def discover(self) -> None:
        """List the LSL streams in view (``streams_visible``); skipped while a listing is already running."""
        if self._discovering.is_set():
            return
        self._discovering.set()

        def work() -> list[StreamDescription]:
            try:
                return list_streams(wait_s=1.0)
            finally:
                self._discovering.clear()

        self._run(work, self.streams_visible.emit, "listing streams")

    def add_stream(self, source: StreamDescription | str, *, bundle: Bundle | str | Path | None = None,
                   hop_s: float | None = None, channel_map: Mapping[str, str] | None = None) -> None:
        """Monitor a stream (with a bundle on it, or display-only); ``stream_added`` or ``failed``."""

        def work() -> tuple[str, Any]:
            key = self.session.add_stream(source, bundle=bundle, hop_s=hop_s, channel_map=channel_map)
            return key, self.session.streams[key]

        name = source.name if isinstance(source, StreamDescription) else str(source)
        self._run(work, lambda result: self.stream_added.emit(*result), f"connecting to '{name}'")

    def remove_stream(self, key: str) -> None:
        """Stop monitoring ``key``; ``stream_removed``."""
        self._run(lambda: self.session.remove_stream(key), lambda _: self.stream_removed.emit(key),
                  f"disconnecting '{key}'")

    def read_bundle(self, path: str | Path) -> None:
        """Read and validate a bundle for a look before attaching it; ``bundle_read`` or ``failed``."""
        self._run(lambda: read_bundle(path), lambda bundle: self.bundle_read.emit(str(path), bundle),
                  f"opening bundle '{Path(path).name}'")

    def attach(self, key: str, bundle: Bundle, hop_s: float | None = None,
               channel_map: Mapping[str, str] | None = None) -> None:
        """Run ``bundle`` on the monitored stream ``key`` (the runtime's matching decides; a mismatch says why)."""

        def work() -> tuple[str, Any]:
            self.session.attach(key, bundle, hop_s=hop_s, channel_map=channel_map)
            return key, self.session.streams[key]

        def done(result: tuple[str, Any]) -> None:
            self.stream_added.emit(*result)
            self.info.emit(f"{bundle.manifest.task.name} now runs on '{key}'")

        self._run(work, done, f"attaching {bundle.manifest.task.name} to '{key}'")

    def start_recording(self, path: str | Path) -> None:
        """Record the session to an XDF file; ``recording`` reports its status from then on."""

        def done(_: Any) -> None:
            self.info.emit(f"recording to {path}")
            self.refresh_recording()

        self._run(lambda: self.session.start_recording(path), done, "starting the recording")

    def stop_recording(self) -> None:
        """Finish the recording; ``recording`` with its final status."""

        def done(status: Any) -> None:
            self.recording.emit(None)
            if status:
                self.info.emit(f"recording saved: {status['path']} ({status.get('bytes', 0) / 1e6:.2f} MB)"
                               + (f" - {status['reason']}" if status.get("reason") else ""))

        self._run(self.session.stop_recording, done, "stopping the recording")

    def refresh_recording(self) -> None:
        """Ask for the recording's elapsed size and state (``recording``)."""
        self._run(self.session.recording_status, self.recording.emit)

    def request_snapshots(self, keys: list[str], seconds: float, points: int, until_s: float | None = None) -> None:
        """Fetch display snapshots (``snapshots``) unless a fetch is still running."""
        if self._snapshot_busy.is_set() or not keys:
            return
        self._snapshot_busy.set()

        def work() -> dict:
            try:
                return self.session.snapshot(keys, seconds, points, until_s)
            finally:
                self._snapshot_busy.clear()

        self._run(work, self.snapshots.emit)

    # ------------------------------------------------------------------ results
    def _read_results(self) -> None:
        """UI-thread timer: take what the session delivered since the last tick (never waits)."""
        if self._subscription is None or self._closed:
            return
        by_kind: dict[str, list] = {"prediction": [], "event": [], "marker": []}
        latest_health = None
        for kind, value in self._subscription.get_all():
            if kind == "health":
                latest_health = value
            else:
                by_kind[kind].append(value)
        if by_kind["prediction"]:
            self.predictions.emit(by_kind["prediction"])
        if by_kind["event"]:
            self.events.emit(by_kind["event"])
        if by_kind["marker"]:
            self.markers.emit(by_kind["marker"])
        if latest_health is not None:
            self.health.emit(latest_health)
