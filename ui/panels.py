"""The side panels: the LSL streams in view (connect, disconnect, ground truth) and the model (look, then attach).

:class:`StreamsPanel` lists every stream LSL shows, refreshed live, with what the session does with each:
monitored with a model, displayed, ground truth (a marker stream), or not used. :class:`ModelPanel` shows a bundle
read from disk — task, classes, input, provenance and metrics, as ``biostream info`` prints them — before it is
attached to a stream; the runtime's matching decides whether it fits, and a mismatch says what is missing.
"""

from __future__ import annotations

import html
from typing import Any

from PySide6 import QtCore, QtWidgets

from biostream.lsl import StreamDescription
from bridges.bundle import Bundle, bundle_summary
from ui.text import shown, tooltip
from ui.timeline import legend_html

#: Metric names as a reader knows them, in the order they are shown.
_METRIC_NAMES = {"f1_macro": "macro-F1", "balanced_accuracy": "balanced acc.", "accuracy": "accuracy",
                 "cohen_kappa": "κ", "n": "windows"}


def metrics_html(metrics: dict[str, Any]) -> str:
    """Test metrics as short lines (``bridge_test: macro-F1 0.779 · accuracy 0.863 ...``); the rest as values."""
    lines = []
    for name, value in metrics.items():
        if isinstance(value, dict):
            parts = [f"{label} {value[key]:.3g}" if isinstance(value[key], float) else f"{label} {value[key]}"
                     for key, label in _METRIC_NAMES.items() if key in value]
            lines.append(f"<b>{html.escape(name)}</b>: {' · '.join(parts) or '–'}")
        else:
            lines.append(f"<b>{html.escape(name)}</b>: {value:,}" if isinstance(value, int)
                         else f"<b>{html.escape(name)}</b>: {html.escape(str(value))}")
    return "<br>".join(lines)


def bundle_html(bundle: Bundle) -> str:
    """What ``biostream info`` prints about a bundle, as a two-column table with the class colours."""
    rows = []
    for line in bundle_summary(bundle):
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "metrics":
            text = metrics_html(bundle.manifest.provenance.metrics)
        elif key == "task":
            task = bundle.manifest.task
            text = f"<b>{html.escape(task.name)}</b><br>{legend_html(tuple(task.class_names))}"
        elif key == "sha256":
            text = f"<span title='{value}'>{value[:16]}…</span>"
        else:
            text = html.escape(value)
        rows.append(f"<tr><td style='padding-right:8px;vertical-align:top'><i>{html.escape(key)}</i></td>"
                    f"<td>{text}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


class StreamsPanel(QtWidgets.QWidget):
    """The streams in view and the actions on them.

    Signals
    -------
    connect_requested(StreamDescription, bool)
        Monitor this stream; with the open bundle on it when the flag is set.
    disconnect_requested(str)
        Stop monitoring this stream key.
    truth_requested(StreamDescription)
        Use this marker stream as the ground truth.

    Streams are told apart by their ``uid`` (liblsl's random id of each outlet), never by name: another outlet
    with the name or source id of a monitored stream, or of this session's own prediction streams, is a row of
    its own with nothing in "in use". Names and labels are shown as plain text (see :mod:`ui.text`).
    """

    connect_requested = QtCore.Signal(object, bool)
    disconnect_requested = QtCore.Signal(str)
    truth_requested = QtCore.Signal(object)
    HEADERS = ("name", "type", "ch", "rate", "in use", "host")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.tree = QtWidgets.QTreeWidget()
        self.tree.setHeaderLabels(list(self.HEADERS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.itemDoubleClicked.connect(lambda *_: self._connect(with_model=True))
        self.visible: dict[str, StreamDescription] = {}  # uid -> description
        self.in_use: dict[str, str] = {}  # uid -> what the session does with that outlet
        self.keys: dict[str, str] = {}  # uid -> the monitored stream's key
        buttons = QtWidgets.QHBoxLayout()
        self.with_model = QtWidgets.QPushButton("Run model")
        self.with_model.setToolTip("Monitor the selected stream with the open bundle (double-click does the same)")
        self.display = QtWidgets.QPushButton("Display")
        self.display.setToolTip("Monitor the selected stream without a model: signals, health, recording")
        self.truth = QtWidgets.QPushButton("Ground truth")
        self.truth.setToolTip("Show the selected marker stream as the true state under the predictions")
        self.disconnect = QtWidgets.QPushButton("Disconnect")
        for button in (self.with_model, self.display, self.truth, self.disconnect):
            buttons.addWidget(button)
        self.with_model.clicked.connect(lambda: self._connect(with_model=True))
        self.display.clicked.connect(lambda: self._connect(with_model=False))
        self.truth.clicked.connect(self._truth)
        self.disconnect.clicked.connect(self._disconnect)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.tree)
        layout.addLayout(buttons)

    def set_streams(self, streams: list[StreamDescription]) -> None:
        """Show what LSL sees now, keeping the selection."""
        selected = self.selected()
        self.visible = {d.uid: d for d in streams}
        self.tree.clear()
        for d in sorted(streams, key=lambda d: (d.name, d.type)):
            rate = f"{d.sfreq_hz:g} Hz" if d.is_regular else "irregular"
            use = self.in_use.get(d.uid, "")
            item = QtWidgets.QTreeWidgetItem([shown(d.name), shown(d.type), str(d.n_channels), rate, use,
                                              shown(d.hostname)])
            item.setData(0, QtCore.Qt.ItemDataRole.UserRole, d.uid)
            problems = d.problems
            item.setToolTip(0, tooltip(f"{d.summary()}, uid {d.uid}"
                                       + (f"; cannot be monitored: {'; '.join(problems)}" if problems else "")))
            if problems:
                item.setForeground(0, QtCore.Qt.GlobalColor.gray)
            self.tree.addTopLevelItem(item)
            if selected is not None and d.uid == selected.uid:
                item.setSelected(True)
        for col in range(len(self.HEADERS)):
            self.tree.resizeColumnToContents(col)

    def mark(self, uid: str, use: str, key: str = "") -> None:
        """Say what the session does with the outlet ``uid`` ('' for nothing), monitored under ``key``."""
        if use:
            self.in_use[uid] = use
            if key:
                self.keys[uid] = key
        else:
            self.in_use.pop(uid, None)
            self.keys.pop(uid, None)
        for k in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(k)
            if item.data(0, QtCore.Qt.ItemDataRole.UserRole) == uid:
                item.setText(self.HEADERS.index("in use"), use)

    def use_of(self, name: str) -> list[str]:
        """What the session does with each visible stream called ``name`` ('' where nothing)."""
        return [self.in_use.get(d.uid, "") for d in self.visible.values() if d.name == name]

    def selected(self) -> StreamDescription | None:
        """The selected stream (None when none is)."""
        items = self.tree.selectedItems()
        return self.visible.get(items[0].data(0, QtCore.Qt.ItemDataRole.UserRole)) if items else None

    def _connect(self, with_model: bool) -> None:
        description = self.selected()
        if description is not None:
            self.connect_requested.emit(description, with_model)

    def _truth(self) -> None:
        description = self.selected()
        if description is not None:
            self.truth_requested.emit(description)

    def _disconnect(self) -> None:
        description = self.selected()
        if description is not None:
            self.disconnect_requested.emit(self.keys.get(description.uid, description.name))


class ModelPanel(QtWidgets.QWidget):
    """The open bundle: everything about it, and where to attach it.

    Signals
    -------
    open_requested()
        The user wants to choose a bundle file.
    attach_requested(str, float)
        Attach the open bundle to this monitored stream key, with this hop (s).
    """

    open_requested = QtCore.Signal()
    attach_requested = QtCore.Signal(str, float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.bundle: Bundle | None = None
        self.text = QtWidgets.QTextBrowser()
        self.text.setPlaceholderText("No bundle open. Open a .bxb (Ctrl+O) to see its task, classes, input, "
                                     "provenance and metrics before attaching it to a stream.")
        open_button = QtWidgets.QPushButton("Open bundle…")
        open_button.clicked.connect(self.open_requested.emit)
        self.target = QtWidgets.QComboBox()
        self.target.setToolTip("A monitored stream to run the open bundle on")
        self.hop = QtWidgets.QDoubleSpinBox()
        self.hop.setRange(0.1, 600.0)
        self.hop.setDecimals(1)
        self.hop.setSuffix(" s hop")
        self.attach = QtWidgets.QPushButton("Attach")
        self.attach.clicked.connect(self._attach)
        self.attach.setEnabled(False)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(self.target, 1)
        row.addWidget(self.hop)
        row.addWidget(self.attach)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(open_button)
        layout.addWidget(self.text, 1)
        layout.addLayout(row)

    def show_bundle(self, bundle: Bundle) -> None:
        """Show a bundle that was read and checked."""
        self.bundle = bundle
        self.text.setHtml(bundle_html(bundle))
        self.hop.setValue(bundle.manifest.input.hop_s)
        self.attach.setEnabled(self.target.count() > 0)

    def set_targets(self, keys: list[str]) -> None:
        """The monitored streams the bundle can be attached to."""
        current = self.target.currentText()
        self.target.clear()
        self.target.addItems(sorted(keys))
        if current in keys:
            self.target.setCurrentText(current)
        self.attach.setEnabled(self.bundle is not None and bool(keys))

    def _attach(self) -> None:
        if self.bundle is not None and self.target.currentText():
            self.attach_requested.emit(self.target.currentText(), float(self.hop.value()))
