"""Health at a glance, and the session's events in plain words.

:class:`HealthTable` has one row per monitored stream: a coloured dot (green, amber, red) with what is wrong,
effective vs nominal rate, gaps, reconnects, clock offset, windows refused and dropped, latency p50/p99 and the
execution provider. :class:`EventLog` lists gaps, reconnections, restarts, mismatches and errors as they come,
newest first, coloured by level.
"""

from __future__ import annotations

import math
import time

from PySide6 import QtCore, QtGui, QtWidgets

from biostream.runtime.records import SessionEvent, StreamHealth
from ui.text import TIP_CHARS, shown, tooltip

LEVEL_COLOURS = {"green": "#2E7D32", "amber": "#F9A825", "red": "#C62828"}
EVENT_COLOURS = {"info": None, "warning": "#F9A825", "error": "#C62828"}
COLUMNS = ("stream", "status", "rate (eff / nominal)", "gaps", "reconnects", "clock offset", "refused",
           "dropped", "latency p50 / p99", "provider")
_MAX_EVENTS = 500


def _number(value: float, fmt: str, unit: str = "") -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:{fmt}}{unit}"


def health_cells(h: StreamHealth) -> list[str]:
    """The table's cells for one stream's health."""
    if not h.message:
        status = h.state
    else:  # the runtime's messages often start with the state already ("lost: no data for 10 s")
        status = h.message if h.message.startswith(h.state) else f"{h.state}: {h.message}"
    if h.nominal_rate_hz > 0:
        rate = f"{_number(h.effective_rate_hz, '.4g')} / {h.nominal_rate_hz:g} Hz"
        rate += "" if h.rate_measured else " (nominal)"
    else:
        rate = f"{_number(h.effective_rate_hz, '.2g')}/s (irregular)"
    return [
        h.stream, status, rate, str(h.gaps), str(h.reconnects), _number(1e3 * h.clock_offset_s, ".2f", " ms"),
        str(h.rejected), str(h.dropped),
        f"{_number(h.latency_p50_ms, '.0f')} / {_number(h.latency_p99_ms, '.0f')} ms", h.provider or "–",
    ]


class HealthTable(QtWidgets.QTableWidget):
    """One row per stream, coloured by health level."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.verticalHeader().setVisible(False)
        self.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.levels: dict[str, str] = {}

    def update_health(self, health: list[StreamHealth]) -> None:
        """Show the newest health of every stream (rows of streams gone are removed)."""
        health = sorted(health, key=lambda h: h.stream)
        self.setRowCount(len(health))
        self.levels = {h.stream: h.level for h in health}
        for row, h in enumerate(health):
            for col, text in enumerate(health_cells(h)):
                item = self.item(row, col)
                if item is None:
                    item = QtWidgets.QTableWidgetItem()
                    self.setItem(row, col, item)
                item.setText(text)
                item.setToolTip(tooltip(h.message if col == 1 and h.message else text))
            dot = self.item(row, 1)
            dot.setIcon(_dot(LEVEL_COLOURS.get(h.level, "#9E9E9E")))

    def clear_stream(self, key: str) -> None:
        """Forget a stream that is no longer monitored."""
        self.levels.pop(key, None)
        for row in range(self.rowCount()):
            if self.item(row, 0) is not None and self.item(row, 0).text() == key:
                self.removeRow(row)
                return


class EventLog(QtWidgets.QListWidget):
    """The session's events, newest first, in plain words."""

    def add_events(self, events: list[SessionEvent]) -> None:
        """Prepend events (the oldest beyond the limit go)."""
        for event in events:
            self.add_line(event.message, event.level, event.stream)
        while self.count() > _MAX_EVENTS:
            self.takeItem(self.count() - 1)

    def add_line(self, message: str, level: str = "info", stream: str = "") -> None:
        """Prepend one line (also used for the window's own messages)."""
        where = f"[{stream}] " if stream else ""
        item = QtWidgets.QListWidgetItem(shown(f"{time.strftime('%H:%M:%S')}  {where}{message}", TIP_CHARS))
        colour = EVENT_COLOURS.get(level)
        if colour:
            item.setForeground(QtGui.QColor(colour))
        self.insertItem(0, item)


def _dot(colour: str) -> QtGui.QIcon:
    pixmap = QtGui.QPixmap(12, 12)
    pixmap.fill(QtCore.Qt.GlobalColor.transparent)
    painter = QtGui.QPainter(pixmap)
    painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
    painter.setBrush(QtGui.QColor(colour))
    painter.setPen(QtCore.Qt.PenStyle.NoPen)
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QtGui.QIcon(pixmap)
