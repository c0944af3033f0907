"""The predictions timeline: under the signals, on the same clock, one row per stream a model runs on.

Each window's outcome is a bar from the previous window's end to its own: class probabilities stacked as coloured
bands (so the band heights read as the model's confidence), or a grey bar for "no prediction" with the reason's
short code written on it (``gap``, ``clipped``, ``dropped``...; the full reason is in the events list). Above the
bands runs the ground-truth track when a marker stream carries the true state (a simulation, a labelled replay):
coloured segments between marker times, in the class colours. :class:`StatePanel` (beside the signals and the
timeline, so it takes no width from either and the time axes line up) shows each row's current state in large
type with its confidence, or why there is none, the true state when there is one, and the class colours.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from biostream.runtime.records import Marker, Prediction
from ui.signals_view import new_time_plot, show_time_axis_on_last
from ui.text import html_text, tooltip

#: Class colours: a colour-blind-safe palette (Okabe-Ito), in class order.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#999999")
NO_PREDICTION = "#9E9E9E"
#: Predictions kept per stream (an hour at a 1-s hop).
_HISTORY = 3600
_TRUTH_Y = (1.06, 1.22)


def class_colour(names: tuple[str, ...], name: str) -> str:
    """The colour of class ``name`` among ``names`` (grey when it is not one of them)."""
    return PALETTE[names.index(name) % len(PALETTE)] if name in names else NO_PREDICTION


@dataclass
class Row:
    """One stream's timeline."""

    key: str
    task: str
    class_names: tuple[str, ...]
    plot: pg.PlotItem
    state: QtWidgets.QLabel
    predictions: deque = field(default_factory=lambda: deque(maxlen=_HISTORY))
    bars: list[Any] = field(default_factory=list)
    texts: list[Any] = field(default_factory=list)
    truth: Any = None


def legend_html(class_names: tuple[str, ...]) -> str:
    """The class colours as a line of coloured squares with the class names (escaped)."""
    return " ".join(f"<span style='color:{class_colour(class_names, n)}'>&#9632;</span>&nbsp;{html_text(n)}"
                    for n in class_names)


class StatePanel(QtWidgets.QWidget):
    """The current state of each timeline row, in large type (see the module docstring)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QtWidgets.QVBoxLayout(self)
        self._layout.addStretch(1)  # the states sit at the bottom, beside the timeline rows
        self.setMinimumWidth(200)
        self.setMaximumWidth(280)

    def new_label(self) -> QtWidgets.QLabel:
        """A state label, added below the others."""
        label = QtWidgets.QLabel("waiting for the first window…")
        label.setWordWrap(True)
        label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        self._layout.addWidget(label)
        return label


class PredictionTimeline(QtWidgets.QWidget):
    """Stacked class probabilities over time, "no prediction" spans, ground truth (see the module docstring).

    Its :attr:`state_panel` is a separate widget for the window to place beside the plots.
    """

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.t0: float | None = None
        self.rows: dict[str, Row] = {}
        self.truth: deque = deque(maxlen=_HISTORY)  # (t, label) at each change of the ground truth
        self.truth_stream = ""
        self.state_panel = StatePanel()
        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.ci.setSpacing(2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._graphics)
        self._link: pg.PlotItem | None = None
        self._rows_used = 0

    def link_x(self, plot: pg.PlotItem | None) -> None:
        """Share the time axis with ``plot`` (the signals')."""
        self._link = plot
        for row in self.rows.values():
            row.plot.setXLink(plot)

    def add_stream(self, key: str, task: str, class_names: tuple[str, ...]) -> None:
        """Give a stream a row (replacing its old one, e.g. after another bundle was attached)."""
        self.remove_stream(key)
        self._rows_used += 1  # a fresh layout row: rows of removed plots stay empty (zero height)
        plot = new_time_plot(self._graphics.ci, self._rows_used, f"{key}: {task}")
        plot.setMouseEnabled(x=False, y=False)
        plot.setYRange(0, _TRUTH_Y[1], padding=0)
        ticks = [(0.5, "class probabilities")] + ([(sum(_TRUTH_Y) / 2, "truth")] if self.truth_stream else [])
        plot.getAxis("left").setTicks([ticks, []])
        plot.setXLink(self._link)
        self.rows[key] = Row(key, task, tuple(class_names), plot, self.state_panel.new_label())
        self._show_state(self.rows[key])
        show_time_axis_on_last([r.plot for r in self.rows.values()])
        self._draw_truth()

    def remove_stream(self, key: str) -> None:
        """Drop ``key``'s row."""
        row = self.rows.pop(key, None)
        if row is not None:
            self._graphics.removeItem(row.plot)
            row.state.deleteLater()
            show_time_axis_on_last([r.plot for r in self.rows.values()])

    def add_predictions(self, predictions: list[Prediction]) -> None:
        """Add outcomes of windows, redraw the rows they belong to, and update the current states."""
        touched = set()
        for p in predictions:
            row = self.rows.get(p.stream)
            if row is not None:
                row.predictions.append(p)
                touched.add(p.stream)
        for key in touched:
            self._draw(self.rows[key])

    def set_truth_stream(self, key: str) -> None:
        """Show the marker stream ``key`` as the ground truth."""
        self.truth_stream = key
        self.truth.clear()
        for row in self.rows.values():
            row.plot.getAxis("left").setTicks([[(0.5, "class probabilities"), (sum(_TRUTH_Y) / 2, "truth")], []])

    def add_markers(self, markers: list[Marker]) -> None:
        """Add ground-truth markers (those of the chosen stream; repeats of the current state are folded in)."""
        changed = False
        for m in markers:
            if m.stream != self.truth_stream or (self.truth and self.truth[-1][1] == m.label):
                continue
            self.truth.append((m.at_s, m.label))
            changed = True
        if changed:
            self._draw_truth()
            for row in self.rows.values():
                self._show_state(row)

    def truth_at(self, t_s: float) -> str | None:
        """The true state at session-clock time ``t_s`` (None before the first marker or without truth)."""
        label = None
        for at_s, name in self.truth:
            if at_s > t_s:
                break
            label = name
        return label

    # ------------------------------------------------------------------ drawing
    def _draw(self, row: Row) -> None:
        if self.t0 is None or not row.predictions:
            return
        for item in row.bars + row.texts:
            row.plot.removeItem(item)
        row.bars, row.texts = [], []
        ends = np.array([p.t_end for p in row.predictions]) - self.t0
        starts = np.empty_like(ends)
        starts[1:] = ends[:-1]
        starts[0] = ends[0] - (ends[1] - ends[0] if len(ends) > 1 else 1.0)
        ok = np.array([p.ok for p in row.predictions])
        if ok.any():
            probs = np.array([p.probabilities for p in row.predictions if p.ok])
            bottom = np.zeros(len(probs))
            for c, name in enumerate(row.class_names):
                bar = pg.BarGraphItem(x0=starts[ok], x1=ends[ok], y0=bottom, height=probs[:, c], pen=None,
                                      brush=class_colour(row.class_names, name))
                row.plot.addItem(bar)
                row.bars.append(bar)
                bottom = bottom + probs[:, c]
        if (~ok).any():
            gray = pg.BarGraphItem(x0=starts[~ok], x1=ends[~ok], y0=0.0, height=1.0, pen=None,
                                   brush=pg.mkBrush(NO_PREDICTION))
            row.plot.addItem(gray)
            row.bars.append(gray)
            self._label_spans(row, starts, ends, ok)
        self._show_state(row)

    def _label_spans(self, row: Row, starts: np.ndarray, ends: np.ndarray, ok: np.ndarray) -> None:
        """Write the reason's short code on each run of "no prediction" windows."""
        predictions = list(row.predictions)
        k = 0
        while k < len(predictions):
            if ok[k]:
                k += 1
                continue
            first = k
            while k < len(predictions) and not ok[k]:
                k += 1
            code = (predictions[first].codes or ("none",))[0]
            text = pg.TextItem(code, color="#FFFFFF", anchor=(0.5, 0.5))
            text.setPos((starts[first] + ends[k - 1]) / 2.0, 0.5)
            row.plot.addItem(text)
            row.texts.append(text)

    def _show_state(self, row: Row) -> None:
        small = "font-size:small;font-weight:normal"
        lines = []
        last: Prediction | None = row.predictions[-1] if row.predictions else None
        if last is None:
            lines.append(f"<span style='font-size:x-large;color:{NO_PREDICTION}'>waiting…</span>")
            lines.append(f"<span style='{small}'>the first window fills in</span>")
        elif last.ok:
            colour = class_colour(row.class_names, last.label_name)
            lines.append(f"<span style='font-size:xx-large;font-weight:bold;color:{colour}'>"
                         f"{html_text(last.label_name)}</span>"
                         f" <span style='font-size:large'>{last.confidence:.0%}</span>")
        else:
            lines.append(f"<span style='font-size:x-large;font-weight:bold;color:{NO_PREDICTION}'>"
                         f"no prediction</span>")
            lines.append(f"<span style='{small}'>{html_text(last.reason, 300)}</span>")
        if self.truth_stream and last is not None:
            truth = self.truth_at(last.t_end)
            if truth is not None:
                mark = "" if not last.ok else (" ✓" if truth == last.label_name else " ✗")
                lines.append(f"<span style='{small}'>truth: <b style='color:{class_colour(row.class_names, truth)}'>"
                             f"{html_text(truth)}</b>{mark}</span>")
        lines.append(f"<span style='{small}'>{html_text(row.key)} · {html_text(row.task)}</span>")
        lines.append(f"<span style='{small}'>{legend_html(row.class_names)}</span>")
        row.state.setText("<br>".join(lines))
        if last is not None:
            row.state.setToolTip(tooltip(last.reason or f"{row.task}: {last.label_name} ({last.confidence:.1%})"))

    def _draw_truth(self) -> None:
        if self.t0 is None or not self.truth:
            return
        x0 = np.array([t for t, _ in self.truth]) - self.t0
        x1 = np.append(x0[1:], x0[-1] + 3600.0)  # the last state holds until the next marker
        labels = [label for _, label in self.truth]
        for row in self.rows.values():
            if row.truth is not None:
                row.plot.removeItem(row.truth)
            brushes = [pg.mkBrush(class_colour(row.class_names, label)) for label in labels]
            row.truth = pg.BarGraphItem(x0=x0, x1=x1, y0=_TRUTH_Y[0], height=_TRUTH_Y[1] - _TRUTH_Y[0], pen=None,
                                        brushes=brushes)
            row.plot.addItem(row.truth)

    def latest(self, key: str) -> Prediction | None:
        """The newest outcome of stream ``key`` (None before its first window)."""
        row = self.rows.get(key)
        return row.predictions[-1] if row is not None and row.predictions else None

    def n_windows(self, key: str) -> int:
        """How many window outcomes the row of ``key`` shows."""
        row = self.rows.get(key)
        return len(row.predictions) if row is not None else 0
