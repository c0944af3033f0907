"""The main window: signals above, predictions under them on the same clock, streams, model, health and events.

Layout: the Signals panel and the Predictions timeline share the centre (and the time axis), the current states
beside them; the Streams panel (what LSL sees; connect, display, ground truth; replay a recording; start a
simulation) and the Model panel (open a bundle, look, attach) are tabs on the left, Health and Events tabs at the
bottom. The toolbar pauses and resumes the view,
sets the span and the scaling, records. Everything that talks to the runtime goes through the
:class:`~ui.controller.SessionController`, so nothing here waits on Ray or LSL; errors land in the status bar and
the Events list in plain words. Window layout, last bundle, span and scaling persist (QSettings).

Shortcuts: Space pause/resume, Ctrl+O open bundle, Ctrl+R record/stop, Ctrl+N simulation, Ctrl+Shift+O replay a
recording, F5 refresh streams, Ctrl+Q quit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from biostream.lsl import StreamDescription
from ui.controller import SessionController
from ui.health_view import EventLog, HealthTable
from ui.panels import ModelPanel, StreamsPanel
from ui.signals_view import SCALINGS, SignalsView
from ui.sources import Source, SourceManager
from ui.text import shown
from ui.timeline import PredictionTimeline

SPANS_S = (5, 10, 30, 60, 120)
#: Ask for new pictures at up to 60 per second; a request waits while the previous one is still out.
_SNAPSHOT_MS = 16
RECORDING_FILTER = "XDF recordings (*.xdf)"
REPLAY_FILTER = "Recordings (*.xdf *.xdfz *.edf *.bdf *.csv *.pkl *.mat *.txt);;All files (*)"


class MainWindow(QtWidgets.QMainWindow):
    """biostream's desktop app (see the module docstring).

    Parameters
    ----------
    controller : SessionController, optional
        A controller on an existing session; a new session when None.
    settings : QSettings, optional
        Where layout and choices persist (default: the user's biostream settings).
    """

    def __init__(self, controller: SessionController | None = None, settings: QtCore.QSettings | None = None):
        super().__init__()
        self.setWindowTitle("biostream")
        self.controller = controller if controller is not None else SessionController(parent=self)
        self.sources = SourceManager(self)
        self.settings = settings if settings is not None else QtCore.QSettings("biostream", "biostream")
        self.signals = SignalsView()
        self.timeline = PredictionTimeline()
        self.streams = StreamsPanel()
        self.model = ModelPanel()
        self.health = HealthTable()
        self.events = EventLog()
        self._after_start: list[Callable[[], None]] = []
        self._started = False
        self._recording_since: float | None = None
        self._until_s: float | None = None
        self._truth_uid = ""  # the outlet picked as the ground truth
        self._marked: dict[str, list[str]] = {}  # stream key -> uids marked "in use" for it
        self._build()
        self._wire()
        self._restore()

    # ------------------------------------------------------------------ building
    def _build(self) -> None:
        plots = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        plots.addWidget(self.signals)
        plots.addWidget(self.timeline)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 1)
        centre = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(centre)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(plots, 1)
        row.addWidget(self.timeline.state_panel)
        self.setCentralWidget(centre)
        self._docks = {}
        for name, widget, area in (
            ("Streams", self.streams, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Model", self.model, QtCore.Qt.DockWidgetArea.LeftDockWidgetArea),
            ("Health", self.health, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea),
            ("Events", self.events, QtCore.Qt.DockWidgetArea.BottomDockWidgetArea),
        ):
            dock = QtWidgets.QDockWidget(name, self)
            dock.setObjectName(f"dock-{name}")
            dock.setWidget(widget)
            self.addDockWidget(area, dock)
            self._docks[name] = dock
        self.tabifyDockWidget(self._docks["Streams"], self._docks["Model"])
        self.tabifyDockWidget(self._docks["Health"], self._docks["Events"])
        self._docks["Streams"].raise_()
        self._docks["Health"].raise_()

        bar = self.addToolBar("Main")
        bar.setObjectName("toolbar-main")
        self.pause_action = self._action(bar, "Pause", "Space", self._toggle_pause, checkable=True,
                                         tip="Stop following the present; drag the signals back in time")
        bar.addWidget(QtWidgets.QLabel(" span "))
        self.span = QtWidgets.QComboBox()
        self.span.addItems([f"{s} s" for s in SPANS_S])
        self.span.currentIndexChanged.connect(self._span_changed)
        bar.addWidget(self.span)
        bar.addWidget(QtWidgets.QLabel(" scale "))
        self.scaling = QtWidgets.QComboBox()
        self.scaling.addItems(list(SCALINGS))
        self.scaling.setToolTip("auto: each channel fills its row; fixed: a set range per stream type")
        self.scaling.currentTextChanged.connect(self.signals.set_scaling)
        bar.addWidget(self.scaling)
        bar.addSeparator()
        self.record_action = self._action(bar, "Record", "Ctrl+R", self._toggle_recording, checkable=True,
                                          tip="Record every monitored stream, its predictions and the markers to XDF")
        self.record_label = QtWidgets.QLabel("")
        bar.addWidget(self.record_label)
        bar.addSeparator()
        self._action(bar, "Open bundle…", "Ctrl+O", self._open_bundle)
        self._action(bar, "Simulate", "Ctrl+N", self._simulate,
                     tip="Publish a simulated stress session: ECG chest strap, PPG wristband, true states")
        self._action(bar, "Replay…", "Ctrl+Shift+O", self._replay, tip="Replay a recording as live LSL streams")
        self._action(bar, "Refresh", "F5", self.controller.discover, tip="List the LSL streams in view again")
        quit_action = QtGui.QAction("Quit", self)
        quit_action.setShortcut(QtGui.QKeySequence("Ctrl+Q"))
        quit_action.triggered.connect(self.close)
        self.addAction(quit_action)
        self.statusBar().showMessage("starting the runtime…")

    def _action(self, bar: QtWidgets.QToolBar, text: str, shortcut: str, slot: Callable, *, checkable: bool = False,
                tip: str = "") -> QtGui.QAction:
        action = QtGui.QAction(text, self)
        action.setShortcut(QtGui.QKeySequence(shortcut))
        action.setCheckable(checkable)
        action.setToolTip(f"{tip or text} ({shortcut})")
        action.triggered.connect(slot)
        bar.addAction(action)
        return action

    def _wire(self) -> None:
        c = self.controller
        c.started.connect(self._on_started)
        c.failed.connect(lambda text: self.say(text, "error"))
        c.info.connect(lambda text: self.say(text))
        c.streams_visible.connect(self.streams.set_streams)
        c.stream_added.connect(self._on_stream_added)
        c.stream_removed.connect(self._on_stream_removed)
        c.bundle_read.connect(self._on_bundle_read)
        c.predictions.connect(self.timeline.add_predictions)
        c.events.connect(self.events.add_events)
        c.events.connect(self._on_events)
        c.markers.connect(self.timeline.add_markers)
        c.health.connect(self.health.update_health)
        c.snapshots.connect(self._on_snapshots)
        c.recording.connect(self._on_recording)
        self.streams.connect_requested.connect(self._connect_stream)
        self.streams.disconnect_requested.connect(c.remove_stream)
        self.streams.truth_requested.connect(self._use_as_truth)
        self.model.open_requested.connect(self._open_bundle)
        self.model.attach_requested.connect(self._attach)
        self.sources.started.connect(self._on_source)
        self.sources.failed.connect(lambda text: self.say(text, "error"))
        self.signals.view_moved.connect(self._on_view_moved)
        self._snapshot_timer = QtCore.QTimer(self)
        self._snapshot_timer.setInterval(_SNAPSHOT_MS)
        self._snapshot_timer.timeout.connect(self._request_snapshots)
        self._recording_timer = QtCore.QTimer(self)
        self._recording_timer.setInterval(1000)
        self._recording_timer.timeout.connect(self.controller.refresh_recording)

    def _restore(self) -> None:
        s = self.settings
        geometry, state = s.value("geometry"), s.value("window_state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1500, 950)
            self.resizeDocks([self._docks["Streams"]], [380], QtCore.Qt.Orientation.Horizontal)
            self.resizeDocks([self._docks["Health"]], [150], QtCore.Qt.Orientation.Vertical)
        if state is not None:
            self.restoreState(state)
        span = int(s.value("span_s", 10))
        self.span.setCurrentIndex(SPANS_S.index(span) if span in SPANS_S else 1)
        self.scaling.setCurrentText(str(s.value("scaling", "auto")))

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the runtime (off the UI thread); the window is usable at once."""
        self.controller.start()

    def after_start(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the runtime is up (at once if it already is)."""
        if self._started:
            action()
        else:
            self._after_start.append(action)

    def _on_started(self) -> None:
        self._started = True
        t0 = self.controller.session.clock()
        self.signals.t0 = self.timeline.t0 = t0
        self._snapshot_timer.start()
        self.say("runtime ready: connect a stream, or start a simulation (Ctrl+N)")
        for action in self._after_start:
            action()
        self._after_start.clear()

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 - Qt's name
        """Save the layout and choices, stop the sources and the session."""
        s = self.settings
        s.setValue("geometry", self.saveGeometry())
        s.setValue("window_state", self.saveState())
        s.setValue("span_s", SPANS_S[self.span.currentIndex()])
        s.setValue("scaling", self.scaling.currentText())
        self._snapshot_timer.stop()
        self._recording_timer.stop()
        self.statusBar().showMessage("stopping…")
        self.sources.stop_all()
        self.controller.close()
        super().closeEvent(event)

    # ------------------------------------------------------------------ messages
    def say(self, text: str, level: str = "info") -> None:
        """Show a message in the status bar and the Events list (errors in red)."""
        self.statusBar().showMessage(text, 0 if level == "error" else 8000)
        self.events.add_line(text, level)

    def _on_events(self, events: list) -> None:
        important = [e for e in events if e.level != "info"]
        if important:
            last = important[-1]
            where = f"[{last.stream}] " if last.stream else ""
            self.statusBar().showMessage(f"{where}{last.message}", 15000)

    # ------------------------------------------------------------------ streams
    def _connect_stream(self, description: StreamDescription, with_model: bool) -> None:
        bundle = self.model.bundle if with_model else None
        if with_model and bundle is None:
            self.say("open a bundle first (Ctrl+O), or use Display to see the stream without a model", "warning")
            return
        problems = description.problems
        if problems:
            self.say(f"'{shown(description.name)}' cannot be monitored: {'; '.join(problems)}", "warning")
            return
        self.say(f"connecting to '{shown(description.name)}'…")
        self.controller.add_stream(description, bundle=bundle)

    def monitor(self, description: StreamDescription, bundle: Any = None, hop_s: float | None = None) -> None:
        """Monitor a stream (with a bundle on it when given): the programmatic twin of the Streams panel."""
        self.controller.add_stream(description, bundle=bundle, hop_s=hop_s)

    def _use_as_truth(self, description: StreamDescription) -> None:
        if description.is_numeric:
            self.say(f"'{shown(description.name)}' is not a marker stream; the ground truth comes from one",
                     "warning")
            return
        self._truth_uid = description.uid  # the truth is that outlet's, whatever its name shares with others
        self.controller.add_stream(description)

    def _on_stream_added(self, key: str, spec: Any) -> None:
        description = spec.description
        for uid in self._marked.pop(key, []):
            self.streams.mark(uid, "")
        self._marked[key] = [description.uid]
        if not description.is_numeric:
            if description.uid == self._truth_uid:
                self.timeline.set_truth_stream(key)
            is_truth = key == self.timeline.truth_stream
            self.streams.mark(description.uid, "ground truth" if is_truth else "markers", key)
            return
        self.signals.add_stream(key, description.type)
        self.timeline.link_x(self.signals.master_plot)
        if spec.model is not None:
            self.timeline.add_stream(key, spec.model.task, spec.model.class_names)
            self.streams.mark(description.uid, f"model: {spec.model.task}", key)
            own = self.controller.session.prediction_streams.get(key)
            if own is not None:  # our prediction outlet: known by its uid, an impostor's row stays unmarked
                self.streams.mark(own.uid, f"ours: {spec.model.task} predictions of {key}", key)
                self._marked[key].append(own.uid)
        else:
            self.streams.mark(description.uid, "display", key)
        self.model.set_targets(list(self.signals.plots))
        self.say(f"monitoring '{key}'" + (f" with {spec.model.task}" if spec.model else ""))

    def _on_stream_removed(self, key: str) -> None:
        self.signals.remove_stream(key)
        self.timeline.remove_stream(key)
        self.timeline.link_x(self.signals.master_plot)
        self.health.clear_stream(key)
        for uid in self._marked.pop(key, []):
            self.streams.mark(uid, "")
        self.model.set_targets(list(self.signals.plots))

    # ------------------------------------------------------------------ model
    def _open_bundle(self) -> None:
        start = str(self.settings.value("last_bundle", ""))
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open a bridge bundle", start,
                                                        "Bridge bundles (*.bxb);;All files (*)")
        if path:
            self.open_bundle(path)

    def open_bundle(self, path: str | Path) -> None:
        """Read a bundle off the UI thread and show it in the Model panel (or say why it cannot be used)."""
        self.controller.read_bundle(path)

    def reopen_last_bundle(self) -> None:
        """Open the bundle of the previous run again, if it is still there."""
        last = str(self.settings.value("last_bundle", ""))
        if last and Path(last).is_file():
            self.open_bundle(last)

    def _on_bundle_read(self, path: str, bundle: Any) -> None:
        self.settings.setValue("last_bundle", path)
        self.model.show_bundle(bundle)
        self._docks["Model"].raise_()
        self.say(f"bundle {bundle.manifest.task.name} read: {Path(path).name}; attach it to a monitored stream")

    def _attach(self, key: str, hop_s: float) -> None:
        if self.model.bundle is not None:
            self.controller.attach(key, self.model.bundle, hop_s=hop_s)

    # ------------------------------------------------------------------ sources
    def _simulate(self) -> None:
        self.sources.simulate("stress", ("ecg", "ppg"))

    def _replay(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Replay a recording", "", REPLAY_FILTER)
        if path:
            self.sources.replay(path)

    def _on_source(self, source: Source) -> None:
        self.say(f"{source.label} publishing: {', '.join(source.stream_names)}")
        QtCore.QTimer.singleShot(1500, self.controller.discover)

    # ------------------------------------------------------------------ view
    def _toggle_pause(self, paused: bool) -> None:
        self.signals.set_paused(paused)
        self._until_s = None
        self.pause_action.setText("Resume" if paused else "Pause")

    def _span_changed(self, index: int) -> None:
        self.signals.span_s = float(SPANS_S[index])

    def _on_view_moved(self, end_s: float) -> None:
        self._until_s = end_s

    def _request_snapshots(self) -> None:
        keys = list(self.signals.plots)
        if not keys or self.signals.t0 is None:
            return
        if self.signals.paused and self._until_s is None:
            return  # paused and not moved: the picture stays as it is
        until = None if not self.signals.paused else self.signals.t0 + self._until_s
        self.controller.request_snapshots(keys, self.signals.span_s, self.signals.points_wanted(), until)
        if self.signals.paused:
            self._until_s = None

    def _on_snapshots(self, snapshots: dict) -> None:
        now_s = self.controller.session.clock() - (self.signals.t0 or 0.0)
        self.signals.show_snapshots(snapshots, now_s)

    # ------------------------------------------------------------------ recording
    def _toggle_recording(self, on: bool) -> None:
        if not on:
            self.controller.stop_recording()
            self._recording_timer.stop()
            return
        default = str(Path.home() / f"biostream-{time.strftime('%Y%m%d-%H%M%S')}.xdf")
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Record the session to", default, RECORDING_FILTER)
        if not path:
            self.record_action.setChecked(False)
            return
        self.start_recording(path)

    def start_recording(self, path: str | Path) -> None:
        """Record the session to ``path`` (the Record button's action without the file dialog)."""
        self.record_action.setChecked(True)
        self._recording_since = time.monotonic()
        self.controller.start_recording(path)
        self._recording_timer.start()

    def stop_recording(self) -> None:
        """Finish the recording (the Record button's second press)."""
        self.record_action.setChecked(False)
        self._toggle_recording(False)

    def _on_recording(self, status: dict | None) -> None:
        if not status:
            self.record_label.setText("")
            self._recording_since = None
            return
        if not status.get("recording"):
            self.record_action.setChecked(False)
            self._recording_timer.stop()
            self.record_label.setText("")
            if status.get("reason"):
                self.say(status["reason"], "error")
            return
        elapsed = time.monotonic() - (self._recording_since or time.monotonic())
        self.record_label.setText(f" ● REC {int(elapsed) // 60:02d}:{int(elapsed) % 60:02d} · "
                                  f"{status.get('bytes', 0) / 1e6:.1f} MB ")
