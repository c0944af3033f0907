"""A group of monitored streams in one process: the body of a StreamActor.

One poll thread serves every stream of the group, so 200 streams on a 2-core machine are a few processes, not
200. Each turn of the loop

1. polls every :class:`~biostream.runtime.pipeline.StreamPipeline` (non-blocking pulls, windowing, quality gate)
   on an interval that grows with the number of streams (:func:`poll_interval_s`);
2. publishes "no prediction" at once for windows the gate refused, and queues the others per bundle;
3. sends each bundle's queue as one batch to its inference actor, with a bound on batches in flight; a queue
   that outgrows ``max_pending`` windows, or windows older than ``max_wait_s``, are dropped oldest-first and
   counted, so memory never grows with time when inference falls behind;
4. meanwhile a second thread waits on the results in flight (``ray.wait``) and publishes each the moment it comes
   back, on the stream's LSL prediction outlet, keeping it for the driver to :meth:`StreamGroup.drain`; so a long
   poll of many streams never holds a finished prediction back.

Methods called by the driver (add or remove a stream, drain, snapshots, status) run on Ray's other threads and
share state with the loop under one lock; nothing they do blocks the loop (connecting a stream happens in the
calling thread). Errors come back as values, so the driver shows one line, not a remote traceback.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pylsl
import ray

from biostream.runtime.cluster import current_node_id, untracked
from biostream.runtime.outlet import PredictionOutlet
from biostream.runtime.pipeline import ModelInput, Outcome, ReadyWindow, StreamPipeline, StreamSpec
from biostream.runtime.records import Prediction, SessionEvent
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

# Results and events kept for the driver between drains (oldest dropped beyond).
_MAX_OUTBOX = 20_000
_MAX_EVENTS = 2_000
# After an inference actor fails a call, wait this long before sending it more (it is probably restarting).
_RETRY_AFTER_S = 0.25


def poll_interval_s(n_streams: int) -> float:
    """How often the group polls its streams (s): 5 ms for a few, 1 ms more per stream, 200 ms at most.

    A pull costs about 0.1-0.2 ms whatever its size (the reader's bookkeeping), so the interval grows with the
    number of streams to keep the loop's CPU share bounded (~20% of a core at 100 streams), while a few streams
    are polled often enough for prediction latencies of tens of milliseconds.
    """
    return min(0.2, max(0.005, 0.001 * n_streams))


@dataclass
class _BundleQueue:
    """Windows of one bundle waiting for inference, and the batches in flight."""

    handle: Any
    pending: deque = field(default_factory=deque)  # of ReadyWindow
    in_flight: int = 0
    paused_until: float = 0.0


class StreamGroup:
    """Host many monitored streams: poll, window, gate, batch to inference, publish (see the module docstring).

    Parameters
    ----------
    session_id : str
        The monitor session's id (prediction stream names carry it).
    max_batch : int
        Most windows per inference call.
    max_in_flight : int
        Most inference calls in flight per bundle.
    max_pending : int
        Most windows queued per bundle before the oldest are dropped.
    max_wait_s : float
        A window still queued after this long is dropped (its prediction would come too late to matter).
    lost_after_s, display_s : float
        See :class:`~biostream.runtime.pipeline.StreamPipeline`.
    """

    def __init__(
        self,
        session_id: str,
        *,
        max_batch: int = 256,
        max_in_flight: int = 2,
        max_pending: int = 512,
        max_wait_s: float = 5.0,
        lost_after_s: float = 10.0,
        display_s: float = 60.0,
    ) -> None:
        self.session_id = session_id
        self.max_batch = int(max_batch)
        self.max_in_flight = int(max_in_flight)
        self.max_pending = int(max_pending)
        self.max_wait_s = float(max_wait_s)
        self._pipeline_kwargs = {"lost_after_s": lost_after_s, "display_s": display_s}
        self.incarnation = uuid.uuid4().hex
        self.pid = os.getpid()
        self.node_id = current_node_id()
        self._lock = threading.RLock()
        self._pipelines: dict[str, StreamPipeline] = {}
        self._outlets: dict[str, PredictionOutlet] = {}
        self._bundles: dict[str, _BundleQueue] = {}
        self._in_flight: dict[Any, tuple[str, list[ReadyWindow]]] = {}
        self._outbox: deque[Prediction] = deque(maxlen=_MAX_OUTBOX)
        self._events: deque[SessionEvent] = deque(maxlen=_MAX_EVENTS)
        self._providers: dict[str, str] = {}
        self._stop = threading.Event()
        self._results_ready = threading.Condition(self._lock)
        self.poll_seconds = 0.0  # time spent polling, for the benchmark's CPU accounting
        self._thread = threading.Thread(target=self._run, name="biostream-poll", daemon=True)
        self._thread.start()
        self._collector = threading.Thread(target=self._collect_loop, name="biostream-results", daemon=True)
        self._collector.start()

    # ------------------------------------------------------------------ driver API
    def status(self) -> dict[str, Any]:
        """Identity of this incarnation (changes when Ray restarts the actor), its process, node and load."""
        with self._lock:
            return {
                "incarnation": self.incarnation, "pid": self.pid, "node_id": self.node_id,
                "streams": sorted(self._pipelines), "poll_seconds": self.poll_seconds,
                "alive": self._thread.is_alive(),
            }

    def set_inference(self, bundle_key: str, handle: Any, provider: str = "") -> None:
        """Use ``handle`` (an InferenceActor) for the windows of bundle ``bundle_key``."""
        with self._lock:
            queue = self._bundles.get(bundle_key)
            if queue is None:
                self._bundles[bundle_key] = _BundleQueue(handle)
            else:
                queue.handle = handle
            self._providers[bundle_key] = provider
            for pipeline in self._pipelines.values():
                if pipeline.spec.model is not None and pipeline.spec.model.bundle_key == bundle_key:
                    pipeline.provider = provider

    def add_stream(self, spec: StreamSpec, connect_timeout_s: float = 5.0) -> dict[str, Any]:
        """Connect a stream, match it to its model, open its prediction outlet, and start polling it.

        Returns
        -------
        dict
            ``ok``; on success ``notes`` (match notes) and ``prediction_stream`` (its StreamDescription, or None);
            on failure ``error`` (one line) and ``kind`` (``"mismatch"`` or ``"bad_input"``).
        """
        pipeline = StreamPipeline(spec, **self._pipeline_kwargs)
        try:
            notes = pipeline.connect(connect_timeout_s)
        except BadInputError as err:  # StreamMismatchError included
            kind = "mismatch" if type(err).__name__ == "StreamMismatchError" else "bad_input"
            return {"ok": False, "error": str(err).splitlines()[0], "kind": kind}
        outlet = None
        if spec.model is not None:
            outlet = PredictionOutlet(spec.description, spec.model, self.session_id)
            pipeline.provider = self._providers.get(spec.model.bundle_key, "")
        with self._lock:
            old = self._pipelines.pop(spec.key, None)
            if old is not None:
                old.close()
            self._pipelines[spec.key] = pipeline
            if outlet is not None:
                self._outlets[spec.key] = outlet
        now = pylsl.local_clock()
        message = f"monitoring {spec.description.summary()}"
        if spec.model is not None:
            message += f" with {spec.model.task} ({pipeline.match.describe(spec.model.spec.channel_labels)})"
        self._events.append(SessionEvent("connected", message, spec.key, "info", now))
        for note in notes:
            self._events.append(SessionEvent("connected", note, spec.key, "warning", now))
        return {"ok": True, "notes": notes, "prediction_stream": outlet.description if outlet else None}

    def remove_stream(self, key: str) -> bool:
        """Stop monitoring ``key`` (its prediction outlet goes away); False when it was not here."""
        with self._lock:
            pipeline = self._pipelines.pop(key, None)
            outlet = self._outlets.pop(key, None)
        if pipeline is None:
            return False
        pipeline.close()
        if outlet is not None:
            outlet.close()
        self._events.append(SessionEvent("stopped", "no longer monitored", key, "info", pylsl.local_clock()))
        return True

    def drain(self, with_health: bool = False) -> dict[str, Any]:
        """Take the predictions, events and marker samples since the last drain (and, if asked, health)."""
        with self._lock:
            predictions = list(self._outbox)
            self._outbox.clear()
            events = list(self._events)
            self._events.clear()
            markers = [m for p in self._pipelines.values() for m in p.take_markers()]
            health = [p.health(self.node_id) for p in self._pipelines.values()] if with_health else None
        return {"predictions": predictions, "events": events, "markers": markers, "health": health,
                "incarnation": self.incarnation}

    def snapshot(
        self, keys: list[str], seconds: float, points: int, until_s: float | None = None
    ) -> dict[str, dict[str, Any]]:
        """Display snapshots of several streams in one call (see :meth:`StreamPipeline.snapshot`)."""
        with self._lock:
            return {k: self._pipelines[k].snapshot(seconds, points, until_s) for k in keys if k in self._pipelines}

    def stop(self) -> None:
        """Stop the loop, close every reader and prediction outlet (idempotent)."""
        self._stop.set()
        with self._lock:
            self._results_ready.notify_all()
        self._thread.join(timeout=5.0)
        self._collector.join(timeout=5.0)
        with self._lock:
            for pipeline in self._pipelines.values():
                pipeline.close()
            for outlet in self._outlets.values():
                outlet.close()
            self._pipelines.clear()
            self._outlets.clear()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        next_poll = time.perf_counter()
        while not self._stop.is_set():
            try:
                now = time.perf_counter()
                n_streams = self._poll_all()
                spent = time.perf_counter() - now
                self.poll_seconds += spent
                self._submit()
                next_poll = now + max(poll_interval_s(n_streams), 2.0 * spent)
                self._stop.wait(max(0.0, next_poll - time.perf_counter()))
            except Exception:  # noqa: BLE001 - the loop must survive anything one stream or batch does
                self._loop_error("poll")

    def _collect_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._collect(0.05)
            except Exception:  # noqa: BLE001
                self._loop_error("results")

    def _loop_error(self, which: str) -> None:
        logger.exception("stream group %s loop error", which)
        self._events.append(SessionEvent("error", f"internal error in the {which} loop (see the actor's log)",
                                         level="error", at_s=pylsl.local_clock()))
        time.sleep(0.05)

    def _poll_all(self) -> int:
        with self._lock:
            pipelines = list(self._pipelines.values())
        for pipeline in pipelines:
            try:
                with self._lock:  # one stream at a time: snapshots and health read the same state
                    ready, events = pipeline.poll()
            except Exception as err:  # noqa: BLE001 - one stream's failure must not stop the others
                logger.exception("stream %s: poll failed", pipeline.key)
                events, ready = [SessionEvent("error", f"poll failed: {err}", pipeline.key, "error",
                                              pylsl.local_clock())], []
            self._events.extend(events)
            model = pipeline.spec.model
            if model is None:
                continue
            for item in ready:
                if item.reject:
                    self._complete(pipeline, Outcome(item, None, -1, item.reject, item.codes, item.ready_s))
                else:
                    self._enqueue(pipeline, item, model)
        return len(pipelines)

    def _enqueue(self, pipeline: StreamPipeline, item: ReadyWindow, model: ModelInput) -> None:
        with self._lock:
            queue = self._bundles.get(model.bundle_key)
        if queue is None:
            self._drop(item, "dropped: no inference for this bundle")
            return
        queue.pending.append(item)
        while len(queue.pending) > self.max_pending:
            old = queue.pending.popleft()
            self._drop(old, "dropped: inference fell behind (queue full)")

    def _drop(self, item: ReadyWindow, reason: str) -> None:
        with self._lock:
            pipeline = self._pipelines.get(item.window.stream)
        if pipeline is not None:
            self._complete(pipeline, Outcome(item, None, -1, reason, ("dropped",), pylsl.local_clock()))

    def _submit(self) -> None:
        now = time.perf_counter()
        lsl_now = pylsl.local_clock()
        with self._lock:
            queues = list(self._bundles.items())
        for bundle_key, queue in queues:
            while queue.pending and lsl_now - queue.pending[0].ready_s > self.max_wait_s:
                self._drop(queue.pending.popleft(), f"dropped: waited over {self.max_wait_s:g} s for inference")
            while queue.pending and queue.in_flight < self.max_in_flight and now >= queue.paused_until:
                batch = [queue.pending.popleft() for _ in range(min(self.max_batch, len(queue.pending)))]
                ref = untracked(queue.handle.infer).remote(np.stack([item.window.data for item in batch]))
                with self._lock:
                    queue.in_flight += 1
                    self._in_flight[ref] = (bundle_key, batch)
                    self._results_ready.notify()

    def _collect(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for results in flight and publish every one that is back."""
        with self._lock:
            refs = list(self._in_flight)
            if not refs:
                self._results_ready.wait(timeout_s)
                return
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout_s)
        if not ready:
            return
        remaining = [r for r in refs if r not in ready]
        if remaining:
            more, _ = ray.wait(remaining, num_returns=len(remaining), timeout=0)
            ready = ready + more
        for ref in ready:
            with self._lock:
                bundle_key, batch = self._in_flight.pop(ref)
                queue = self._bundles.get(bundle_key)
                if queue is not None:
                    queue.in_flight -= 1
            try:
                result = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a dead or restarting actor: drop, count, go on
                if queue is not None:
                    queue.paused_until = time.perf_counter() + _RETRY_AFTER_S
                reason = f"dropped: inference unavailable ({type(err).__name__})"
                for item in batch:
                    self._drop(item, reason)
                continue
            self._publish_results(batch, result)

    # ------------------------------------------------------------------ publishing
    def _publish_results(self, batch: list[ReadyWindow], result: dict[str, Any]) -> None:
        done_s = pylsl.local_clock()
        probabilities = result.get("probabilities")
        for row, item in enumerate(batch):
            with self._lock:
                pipeline = self._pipelines.get(item.window.stream)
            if pipeline is None:
                continue  # removed meanwhile
            if probabilities is None:
                codes = ("dropped",) if result.get("dropped") else ("inference_error",)
                outcome = Outcome(item, None, -1, result.get("error") or "inference failed", codes, done_s)
            else:
                probs = tuple(float(p) for p in probabilities[row])
                outcome = Outcome(item, probs, int(np.argmax(probabilities[row])), "", (), done_s)
            self._complete(pipeline, outcome)

    def _complete(self, pipeline: StreamPipeline, outcome: Outcome) -> None:
        """Record a window's outcome and publish, in window order, every outcome of the stream now due."""
        model = pipeline.spec.model
        if model is None:
            return
        with self._lock:  # publishing under the lock keeps each prediction stream in time order
            if self._pipelines.get(pipeline.key) is not pipeline:
                return  # the stream was removed or re-added meanwhile
            outlet = self._outlets.get(pipeline.key)
            for due in pipeline.in_order(outcome):
                t_end = due.item.window.t_end
                published = outlet.push(due.probabilities, due.label, t_end) if outlet else pylsl.local_clock()
                prediction = due.prediction(model, published)
                pipeline.record([prediction])
                self._outbox.append(prediction)
