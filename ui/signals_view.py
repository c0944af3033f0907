"""The signal panel: one scrolling plot per monitored stream, its channels stacked, on the session's clock.

Plot items are built once per stream and only fed new arrays afterwards (``setData``), with clip-to-view and
antialiasing off, as pyqtgraph's scrolling examples do. The data arrive already peak-decimated by the runtime
(min/max pairs, about two points per pixel), so many channels at high rates stay smooth.

Each channel gets one row. Its scale is **auto** (the row spans the channel's 0.5th-99.5th percentile range over the
visible span) or **fixed** (a range per stream type in the channel's unit, e.g. ±100 µV for EEG), and the row's
label says which range it shows, in the channel's unit. Time runs in seconds since the session started. Paused,
the plots stop following and can be dragged back over the history the runtime keeps (5 minutes by default).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from ui.text import html_text

#: Default half-range per row in fixed scaling, by stream type (in the unit the key names).
FIXED_HALF_RANGE = {"eeg": ("uV", 100.0), "ecg": ("uV", 1500.0), "emg": ("uV", 200.0), "acc": ("g", 2.0)}
_UNIT_FACTORS = {"uv": 1.0, "µv": 1.0, "microvolts": 1.0, "mv": 1e3, "millivolts": 1e3, "v": 1e6}
SCALINGS = ("auto", "fixed")
#: Width of every plot's left axis (signals and timeline alike), so their time axes line up pixel for pixel.
AXIS_WIDTH_PX = 150
_HUES = 12
#: Row scales follow the signal this often (s); between updates the rows keep theirs, which also keeps them still.
_RESCALE_EVERY_S = 0.25


def stream_pen(hue: int) -> Any:
    """A stream's pen: a hue of a palette readable on light and dark backgrounds."""
    return pg.mkPen(pg.intColor(hue, hues=_HUES, maxValue=210, minValue=150), width=1)


def new_time_plot(layout: pg.GraphicsLayout, row: int, title: str) -> pg.PlotItem:
    """A plot on the session clock: titled, no menu or buttons, left axis :data:`AXIS_WIDTH_PX` wide.

    ``title`` is plain text (pyqtgraph renders titles as HTML, so it is escaped here).
    """
    plot = layout.addPlot(row=row, col=0)
    plot.setTitle(html_text(title, 160), size="9pt")
    plot.setMenuEnabled(False)
    plot.hideButtons()
    plot.getAxis("left").setWidth(AXIS_WIDTH_PX)
    plot.setLabel("bottom", "time", units="s")
    plot.getAxis("bottom").enableAutoSIPrefix(False)  # seconds stay seconds, and the label is not re-set per frame
    return plot


def show_time_axis_on_last(plots: list[pg.PlotItem]) -> None:
    """Plots stacked on one clock need one time axis: the bottom one's."""
    for k, plot in enumerate(plots):
        plot.showAxis("bottom", k == len(plots) - 1)


def fixed_half_range(stream_type: str, unit: str) -> float | None:
    """The fixed-scale half-range of a row for a stream type, converted to ``unit``; None when there is none."""
    entry = FIXED_HALF_RANGE.get(stream_type.lower())
    if entry is None:
        return None
    base_unit, half = entry
    if unit.lower() == base_unit.lower():
        return half
    have, want = _UNIT_FACTORS.get(unit.lower().replace(" ", "")), _UNIT_FACTORS.get(base_unit.lower())
    return None if have is None or want is None else half * want / have


@dataclass
class StreamPlot:
    """The plot of one stream."""

    key: str
    plot: pg.PlotItem
    stream_type: str
    curve: Any = None
    labels: list[str] = field(default_factory=list)
    units: list[str] = field(default_factory=list)
    scaling: str = "auto"
    half_ranges: list[float] = field(default_factory=list)
    hue: int = 0
    _ticks: list = field(default_factory=list)
    _centres: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _scaled_at: float = -math.inf

    def ensure_channels(self, labels: list[str], units: list[str]) -> None:
        """Build the stream's curve the first time its channel layout is known (once)."""
        if self.curve is not None or not labels:
            return
        self.labels, self.units = list(labels), list(units) + [""] * (len(labels) - len(units))
        # One curve for all channels, rows joined end to end and not connected across: one item to update,
        # bound and paint per stream instead of one per channel. It is a PlotCurveItem, not a PlotDataItem: the
        # data come decimated to the view, so nothing is left to thin or clip.
        self.curve = pg.PlotCurveItem(pen=stream_pen(self.hue))
        self.plot.addItem(self.curve)
        self.half_ranges = [math.nan] * len(labels)
        self.plot.setYRange(-0.6, len(labels) - 0.4, padding=0)

    def update(self, snapshot: dict[str, Any], t0: float) -> None:
        """Show a snapshot: ``t`` (n,), ``data`` (n, n_channels), ``labels``, ``units``; time relative to ``t0``."""
        data, t = snapshot.get("data"), snapshot.get("t")
        if data is None or t is None or len(t) == 0:
            return
        self.ensure_channels(list(snapshot.get("labels", [])), list(snapshot.get("units", [])))
        n_rows = len(self.labels)
        data = np.asarray(data, dtype=np.float64)[:, :n_rows]
        n, n_ch = data.shape
        now = time.monotonic()
        if now - self._scaled_at >= _RESCALE_EVERY_S or self._centres.shape != (n_ch,):
            self._rescale(data)
            self._scaled_at = now
        half = np.nan_to_num(np.asarray(self.half_ranges[:n_ch]), nan=1.0)
        rows = n_rows - 1 - np.arange(n_ch)
        y = np.full((n + 1, n_ch), np.nan)  # a NaN row after each channel: rows are not joined to each other
        y[:n] = (data - self._centres) / (2.2 * half) + rows  # each channel on its row; gaps stay NaN
        x = np.append(np.asarray(t, dtype=np.float64) - t0, np.nan)
        self.curve.setData(np.tile(x, n_ch), y.T.ravel(), connect="finite")
        self._set_ticks()

    def rescale_now(self) -> None:
        """Take new row scales from the next snapshot (the scaling mode changed)."""
        self._scaled_at = -math.inf

    def _rescale(self, data: np.ndarray) -> None:
        """Centre and half-height of each channel's row from the visible data (n, n_ch; NaN where missing)."""
        n_ch = data.shape[1]
        finite = np.isfinite(data)
        if finite.all():  # one call for every channel: the common case
            lo, hi = np.percentile(data, [0.5, 99.5], axis=0)
        else:
            lo, hi = np.full(n_ch, np.nan), np.full(n_ch, np.nan)
            for c in np.flatnonzero(finite.any(axis=0)):
                lo[c], hi[c] = np.percentile(data[finite[:, c], c], [0.5, 99.5])
        self._centres = np.nan_to_num((lo + hi) / 2.0)
        for c in range(n_ch):
            if math.isfinite(lo[c]):
                self._half_range(c, float(hi[c] - lo[c]) / 2.0)
            else:  # nothing recorded in view: the row stays empty and its label says nothing
                self.half_ranges[c] = math.nan

    def _half_range(self, c: int, visible_half: float) -> float:
        """Channel ``c``'s row half-height in its unit: fixed per type, or the visible half-range held steady."""
        fixed = fixed_half_range(self.stream_type, self.units[c]) if self.scaling == "fixed" else None
        if fixed is not None:
            half = fixed
        else:
            half = max(visible_half, 1e-12)
            previous = self.half_ranges[c]
            if math.isfinite(previous) and 0.8 * previous <= half <= 1.25 * previous:
                half = previous  # hold the scale still unless the signal really changed size
        self.half_ranges[c] = half
        return half

    def _set_ticks(self) -> None:
        n_ch = len(self.labels)
        ticks = [(n_ch - 1 - c, f"{self.labels[c]} ±{self.half_ranges[c]:.3g} {self.units[c] or 'a.u.'}")
                 for c in range(n_ch) if math.isfinite(self.half_ranges[c])]
        if ticks != self._ticks:  # new ticks redraw the axis: only when a label changed
            self._ticks = ticks
            self.plot.getAxis("left").setTicks([ticks, []])


class SignalsView(QtWidgets.QWidget):
    """Scrolling plots of the monitored streams (see the module docstring).

    Signals
    -------
    view_moved(float)
        While paused, the user moved the view; its right edge in session seconds.
    """

    view_moved = QtCore.Signal(float)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.span_s = 10.0
        self.t0: float | None = None
        self.paused = False
        self.scaling = "auto"
        self.plots: dict[str, StreamPlot] = {}
        self._graphics = pg.GraphicsLayoutWidget()
        self._graphics.ci.setSpacing(2)
        self._placeholder = QtWidgets.QLabel(
            "No stream monitored yet: connect one from the Streams panel, or start a simulation (Ctrl+N)."
        )
        self._placeholder.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout = QtWidgets.QStackedLayout(self)
        layout.addWidget(self._placeholder)
        layout.addWidget(self._graphics)
        self._stack = layout
        self._master: pg.PlotItem | None = None
        self._rows_used = 0

    @property
    def master_plot(self) -> pg.PlotItem | None:
        """The plot every other time axis (the predictions timeline's too) is linked to."""
        return self._master

    def add_stream(self, key: str, stream_type: str) -> None:
        """Give ``key`` a plot (idempotent)."""
        if key in self.plots:
            return
        self._rows_used += 1  # a fresh layout row: rows of removed plots stay empty (zero height)
        plot = new_time_plot(self._graphics.ci, self._rows_used, key)
        plot.setMouseEnabled(x=self.paused, y=False)
        plot.disableAutoRange()  # ranges are set here; asking every curve for its bounds each frame is wasted
        if self._master is None:
            self._master = plot
            plot.sigXRangeChanged.connect(self._on_range)
        else:
            plot.setXLink(self._master)
        # Neighbouring streams in clearly different hues.
        self.plots[key] = StreamPlot(key, plot, stream_type, scaling=self.scaling, hue=5 * len(self.plots))
        show_time_axis_on_last([p.plot for p in self.plots.values()])
        self._stack.setCurrentWidget(self._graphics)

    def remove_stream(self, key: str) -> None:
        """Drop ``key``'s plot."""
        stream_plot = self.plots.pop(key, None)
        if stream_plot is None:
            return
        self._graphics.removeItem(stream_plot.plot)
        if stream_plot.plot is self._master:
            self._master = None
            for other in self.plots.values():
                if self._master is None:
                    self._master = other.plot
                    other.plot.setXLink(None)
                    other.plot.sigXRangeChanged.connect(self._on_range)
                else:
                    other.plot.setXLink(self._master)
        show_time_axis_on_last([p.plot for p in self.plots.values()])
        if not self.plots:
            self._stack.setCurrentWidget(self._placeholder)

    def set_scaling(self, scaling: str) -> None:
        """``"auto"`` or ``"fixed"`` for every stream."""
        self.scaling = scaling
        for stream_plot in self.plots.values():
            stream_plot.scaling = scaling
            stream_plot.rescale_now()

    def set_paused(self, paused: bool) -> None:
        """Stop following the present (the view can then be dragged back), or follow it again."""
        self.paused = paused
        for stream_plot in self.plots.values():
            stream_plot.plot.setMouseEnabled(x=paused, y=False)

    def show_snapshots(self, snapshots: dict[str, dict[str, Any]], now_s: float) -> None:
        """Draw the newest snapshots; ``now_s`` is the present in session seconds (the right edge when following)."""
        if self.t0 is None:
            return
        for key, snapshot in snapshots.items():
            stream_plot = self.plots.get(key)
            if stream_plot is not None:
                stream_plot.update(snapshot, self.t0)
        if not self.paused and self._master is not None:
            self._master.setXRange(now_s - self.span_s, now_s, padding=0)

    def points_wanted(self) -> int:
        """How many points per channel a snapshot needs: a min and a max per pixel column of the plots."""
        if self._master is None:
            return 2000
        return max(200, 2 * int(self._master.getViewBox().width()))

    def visible_end_s(self) -> float | None:
        """The right edge of the view in session seconds (None without plots)."""
        if self._master is None:
            return None
        return float(self._master.viewRange()[0][1])

    def _on_range(self, _view: Any, _range: Any) -> None:
        if self.paused:
            end = self.visible_end_s()
            if end is not None:
                self.view_moved.emit(end)
