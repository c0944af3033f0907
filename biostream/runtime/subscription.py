"""A subscriber's queue of session results: bounded, never blocking the session, never blocking its reader."""

from __future__ import annotations

import queue
from typing import Any


class Subscription:
    """What a subscriber receives, newest last, in a bounded queue (the oldest go when it is full).

    Items are ``("prediction", Prediction)``, ``("event", SessionEvent)`` and ``("health", list[StreamHealth])``.
    """

    def __init__(self, maxsize: int) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self.n_dropped = 0

    def put(self, item: tuple[str, Any]) -> None:
        """Add an item, dropping the oldest when full (a slow reader loses history, never blocks the session)."""
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.n_dropped += 1
                except queue.Empty:
                    pass

    def get(self, timeout_s: float | None = None) -> tuple[str, Any] | None:
        """The next item, waiting up to ``timeout_s`` (None: not at all); None when there is none."""
        try:
            return self._queue.get(timeout=timeout_s) if timeout_s else self._queue.get_nowait()
        except queue.Empty:
            return None

    def get_all(self) -> list[tuple[str, Any]]:
        """Every item waiting now (never blocks)."""
        items = []
        while (item := self.get()) is not None:
            items.append(item)
        return items
