"""Hand results from worker threads to the UI thread without touching Qt off it.

Workers :meth:`UiInbox.post` a callback and its argument into a plain queue; a UI-thread timer runs them. Emitting
a Qt signal from a plain Python thread is legal Qt, but it makes the binding's thread handling part of every
result's path; with the inbox, worker threads never call into PySide at all and every widget update happens
where Qt wants it, on the UI thread.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from PySide6 import QtCore


class UiInbox(QtCore.QObject):
    """A queue of ``(callback, argument)`` that a UI-thread timer empties every ``interval_ms``.

    Parameters
    ----------
    parent : QObject
        Owner; the inbox must be made on the UI thread.
    interval_ms : int
        How often the timer looks (a finished operation shows at most this late).
    """

    def __init__(self, parent: QtCore.QObject, interval_ms: int = 50) -> None:
        super().__init__(parent)
        self._items: queue.SimpleQueue[tuple[Callable[[Any], None], Any]] = queue.SimpleQueue()
        self._timer = QtCore.QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.drain)
        self._timer.start()

    def post(self, callback: Callable[[Any], None], argument: Any = None) -> None:
        """Run ``callback(argument)`` on the UI thread soon (safe from any thread)."""
        self._items.put((callback, argument))

    def drain(self) -> None:
        """Run what was posted (UI thread)."""
        while True:
            try:
                callback, argument = self._items.get_nowait()
            except queue.Empty:
                return
            callback(argument)

    def stop(self) -> None:
        """Stop looking; what is still queued is dropped (the owner is closing)."""
        self._timer.stop()
