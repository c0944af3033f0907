"""Signal sources the window can start itself, so a person without a device can try everything.

A simulation (:class:`devices.live_sim.LiveSimulation`) or the replay of a recording
(:class:`devices.replay.RecordingReplay`, every format ``biostream replay`` reads) publishes LSL outlets from a
background thread of this process, exactly as ``biostream simulate`` / ``biostream replay`` would from another;
the window then finds them among the streams in view like any device. Reading a recording can take a while, so
that happens on the thread too; its outcome reaches the UI thread through a :class:`ui.inbox.UiInbox`, and
failures come back as one plain line.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6 import QtCore

from biostream.runtime.actors import first_line
from devices.formats import read_recording
from devices.live_sim import LiveSimulation
from devices.replay import RecordingReplay
from ui.inbox import UiInbox

logger = logging.getLogger(__name__)


@dataclass
class Source:
    """A running source: what it is, the streams it publishes, its thread."""

    label: str
    runner: Any
    stream_names: list[str] = field(default_factory=list)
    thread: threading.Thread | None = None

    def stop(self) -> None:
        """Stop publishing and drop the outlets."""
        self.runner.stop()
        if self.thread is not None:
            self.thread.join(timeout=5.0)
        self.runner.close()


class SourceManager(QtCore.QObject):
    """Start and stop simulations and replays from the window (see the module docstring)."""

    started = QtCore.Signal(object)  #: Source
    failed = QtCore.Signal(str)

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.sources: list[Source] = []
        self._inbox = UiInbox(self)

    def simulate(self, scenario: str = "stress", modalities: Sequence[str] = ("ecg", "ppg"), *, seed: int = 0,
                 dwell_scale: float = 0.3, suffix: str | None = None,
                 then: Callable[[Source], None] | None = None) -> None:
        """Start a live simulation, built off the UI thread (it takes a moment).

        Emits ``started`` with it and then calls ``then(source)``, both on the UI thread; or emits ``failed``.
        """
        suffix = f"-{uuid.uuid4().hex[:4]}" if suffix is None else suffix

        def work() -> None:
            try:
                live = LiveSimulation(scenario, list(modalities), seed=seed, dwell_scale=dwell_scale,
                                      name_suffix=suffix)
            except (ValueError, OSError) as err:
                self._inbox.post(self._report_failure, f"cannot start the simulation: {first_line(err)}")
                return
            source = Source(f"simulation {scenario} ({', '.join(modalities)})", live, list(live.stream_names),
                            thread=threading.current_thread())
            self.sources.append(source)
            self._inbox.post(lambda started: self._report_started(started, then), source)
            live.run()

        threading.Thread(target=work, name="biostream-simulation", daemon=True).start()

    def replay(self, path: str | Path, *, loop: bool = True) -> None:
        """Replay a recording (read on a thread); ``started`` once its outlets are up, or ``failed``."""
        suffix = f"-{uuid.uuid4().hex[:4]}"

        def work() -> None:
            try:
                replay = RecordingReplay(read_recording(path), loop=loop, name_suffix=suffix)
            except Exception as err:  # noqa: BLE001 - a bad file is a message, not a crash
                self._inbox.post(self._report_failure, f"cannot replay '{Path(path).name}': {first_line(err)}")
                return
            names = [s.name + suffix for s in replay.recording.streams if s.n_samples]
            source = Source(f"replay of {Path(path).name}", replay, names, thread=threading.current_thread())
            self.sources.append(source)
            self._inbox.post(self._report_started, source)
            replay.run()

        threading.Thread(target=work, name="biostream-replay", daemon=True).start()

    def _report_failure(self, message: str) -> None:
        self.failed.emit(message)

    def _report_started(self, source: Source, then: Callable[[Source], None] | None = None) -> None:
        self.started.emit(source)
        if then is not None:
            then(source)

    def stop_all(self) -> None:
        """Stop every source (the window is closing)."""
        for source in self.sources:
            try:
                source.stop()
            except Exception:  # noqa: BLE001
                logger.debug("stopping %s failed", source.label, exc_info=True)
        self.sources.clear()
