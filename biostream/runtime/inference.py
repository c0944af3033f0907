"""The body of an InferenceActor: one bundle's engine behind a batching queue that many stream groups call.

Requests (a batch of windows from one stream group's poll) wait in one queue; whenever the engine is free it takes
everything queued, up to ``max_batch`` windows, as one batch. So batches grow with the load and a lone request
waits for nothing (no fixed batching delay). ONNX Runtime runs on a worker thread while the event loop keeps
taking requests. A queue holding more than ``max_queued`` windows drops the oldest requests, answered as
dropped, so memory never grows with time. A batch that fails is answered with the error; the next one runs.

Answers are plain dicts (errors as values): ``probabilities`` (n, n_classes) or None, ``error``, ``dropped``,
``queue_ms``, ``compute_ms``, ``batch`` (windows in the batch it ran in).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from biostream.runtime.cluster import current_node_id
from biostream.runtime.engine import InferenceEngine, InferenceError
from devices.errors import BadInputError

logger = logging.getLogger(__name__)


class InferenceServer:
    """Batch requests across callers onto one :class:`~biostream.runtime.engine.InferenceEngine`.

    The bundle comes with :meth:`load` rather than the constructor, so that a restart (which runs the constructor
    again) is visible: the session loads the bundle again and reports the restart. Until then requests are
    answered as dropped.

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`bridges.ort_session.open_session`).
    threads : int or None
        ONNX Runtime intra-op threads.
    max_batch : int
        Most windows per engine call.
    max_queued : int
        Most windows waiting before the oldest requests are dropped.
    """

    def __init__(
        self, *, device: str = "auto", threads: int | None = 1, max_batch: int = 256, max_queued: int = 2048
    ) -> None:
        self.device = device
        self.threads = threads
        self.engine: InferenceEngine | None = None
        self.max_batch = int(max_batch)
        self.max_queued = int(max_queued)
        self.incarnation = uuid.uuid4().hex
        self.pid = os.getpid()
        self._queue: deque[tuple[np.ndarray, asyncio.Future, float]] = deque()
        self._queued_windows = 0
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="biostream-ort")
        self.n_batches = 0
        self.n_dropped = 0

    def load(self, bundle: bytes) -> dict[str, Any]:
        """Open the bundle's graph (a bundle file's bytes) and return :meth:`status`.

        A failure comes back as ``{"error": ...}``.
        """
        try:
            self.engine = InferenceEngine(bundle, device=self.device, threads=self.threads)
        except Exception as err:  # noqa: BLE001 - a bad graph: one line back to the session
            return {"error": str(err).splitlines()[0] if str(err) else type(err).__name__}
        return self.status()

    def status(self) -> dict[str, Any]:
        """Incarnation, process, provider and load counters."""
        node_id = current_node_id()
        engine = self.engine
        return {
            "incarnation": self.incarnation, "pid": self.pid, "node_id": node_id, "loaded": engine is not None,
            "provider": engine.provider if engine else "", "provider_note": engine.provider_note if engine else "",
            "windows": engine.n_windows if engine else 0, "busy_s": engine.busy_s if engine else 0.0,
            "batches": self.n_batches, "dropped": self.n_dropped,
        }

    async def infer(self, windows: np.ndarray) -> dict[str, Any]:
        """Queue a batch of windows (n, n_channels, n_samples) and answer when the model has run on it."""
        if self.engine is None:
            return {"probabilities": None, "dropped": True, "error": "dropped: the model is not loaded (restarting)"}
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._serve())
        future = loop.create_future()
        self._queue.append((windows, future, time.perf_counter()))
        self._queued_windows += len(windows)
        while self._queued_windows > self.max_queued and len(self._queue) > 1:
            old, old_future, _ = self._queue.popleft()
            self._queued_windows -= len(old)
            self.n_dropped += len(old)
            old_future.set_result({"probabilities": None, "dropped": True,
                                   "error": "dropped: the model fell behind (queue full)"})
        self._wake.set()
        return await future

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                taken, n = [], 0
                while self._queue and (not taken or n + len(self._queue[0][0]) <= self.max_batch):
                    item = self._queue.popleft()
                    taken.append(item)
                    n += len(item[0])
                self._queued_windows -= n
                start = time.perf_counter()
                try:
                    batch = np.concatenate([item[0] for item in taken]) if len(taken) > 1 else taken[0][0]
                    probabilities = await loop.run_in_executor(self._executor, self.engine.predict, batch)
                    error = ""
                except (InferenceError, BadInputError, ValueError) as err:
                    probabilities, error = None, f"inference error: {str(err).splitlines()[0]}"
                    logger.warning("%s", error)
                compute_ms = 1e3 * (time.perf_counter() - start)
                self.n_batches += 1
                row = 0
                for windows, future, queued_at in taken:
                    part = None if probabilities is None else probabilities[row : row + len(windows)]
                    row += len(windows)
                    if not future.done():
                        future.set_result({
                            "probabilities": part, "error": error, "dropped": False, "batch": n,
                            "queue_ms": 1e3 * (start - queued_at), "compute_ms": compute_ms,
                        })
