"""``MonitorSession``: the driver-side API of the runtime, used by ``biostream monitor`` and the desktop app.

A session starts (or joins) Ray and runs its actors through an :class:`~biostream.runtime.actors.ActorPool`
(stream actors hosting groups of streams, one inference actor per bundle, a recorder). Two background threads
keep the caller from ever blocking on Ray: a *collector* drains predictions, events and (every second) health
from the stream actors into subscriber queues and the session's totals, and a *supervisor* asks the pool to put
back what an actor restarted by Ray has lost. Callers read results through :meth:`MonitorSession.subscribe`
queues or the latest :attr:`MonitorSession.health`, without waiting. Adding a stream waits for it to connect
(seconds at most; several may be added at once from threads); the desktop app calls it off its UI thread.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pylsl

from biostream.lsl import StreamDescription, resolve_selector
from biostream.runtime import cluster
from biostream.runtime.actors import CALL_TIMEOUT_S, ActorPool
from biostream.runtime.pipeline import StreamSpec
from biostream.runtime.records import LatencyStats, Marker, Prediction, SessionEvent, StreamHealth
from biostream.runtime.subscription import Subscription
from bridges.bundle import Bundle
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

_DRAIN_EVERY_S = 0.05
_HEALTH_EVERY_S = 1.0
_SUPERVISE_EVERY_S = 0.5


class MonitorSession:
    """Run bridged models on live LSL streams (see the module docstring).

    Parameters
    ----------
    ray_address : str, optional
        Join this Ray cluster (``HOST:PORT``); default: a private local Ray on loopback.
    record : str or Path, optional
        Record the session to this XDF file.
    device : str
        Inference device: ``"auto"`` (CUDA where the inference actor's node has a GPU), ``"cpu"``, ``"cuda"``.
    threads : int or None
        ONNX Runtime threads per inference actor.
    streams_per_actor : int
        Streams packed into one StreamActor before another is started.
    max_stream_actors : int, optional
        Most StreamActors (default: the number of CPUs Ray has, at least 1).
    lost_after_s : float
        A stream gone longer than this is reported lost (it is still looked for).
    display_s : float
        Raw history each stream keeps for display snapshots (s).
    max_restarts : int
        How often Ray restarts a crashed actor.
    """

    def __init__(
        self,
        *,
        ray_address: str | None = None,
        record: str | Path | None = None,
        device: str = "auto",
        threads: int | None = 1,
        streams_per_actor: int = 32,
        max_stream_actors: int | None = None,
        lost_after_s: float = 10.0,
        display_s: float = 60.0,
        max_restarts: int = 5,
    ) -> None:
        self.session_id = uuid.uuid4().hex
        self.ray_address = ray_address
        self.record_path = Path(record).expanduser() if record is not None else None
        self.device = device
        self.threads = threads
        self.streams_per_actor = int(streams_per_actor)
        self.max_stream_actors = max_stream_actors
        self.lost_after_s = float(lost_after_s)
        self.display_s = float(display_s)
        self.max_restarts = int(max_restarts)
        self._lock = threading.RLock()
        self._pool: ActorPool | None = None
        self._subscribers: list[Subscription] = []
        self._health: dict[str, StreamHealth] = {}
        self._latency = LatencyStats(capacity=100_000)
        self._totals = dict.fromkeys(("windows", "predictions", "rejected", "dropped", "errors"), 0)
        self._events: deque[SessionEvent] = deque(maxlen=1000)
        self._owns_ray = False
        self._running = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._recording_status: dict[str, Any] | None = None
        self._placement: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> MonitorSession:
        """Start (or join) Ray, the recorder if recording, and the collector and supervisor threads."""
        if self._running:
            return self
        if self.record_path is not None and not self.record_path.parent.is_dir():
            raise BadInputError(
                f"cannot record to '{self.record_path}': folder '{self.record_path.parent}' does not exist"
            )
        self._owns_ray = cluster.connect(self.ray_address)
        import ray

        if self.max_stream_actors is None:
            self.max_stream_actors = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self._pool = ActorPool(
            self.session_id, self._event, device=self.device, threads=self.threads,
            streams_per_actor=self.streams_per_actor, max_stream_actors=self.max_stream_actors,
            lost_after_s=self.lost_after_s, display_s=self.display_s, max_restarts=self.max_restarts,
        )
        self._running = True
        if self.record_path is not None:
            self.start_recording(self.record_path)
        for target, name in ((self._collect_loop, "collector"), (self._supervise_loop, "supervisor")):
            thread = threading.Thread(target=target, name=f"biostream-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __enter__(self) -> MonitorSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _check_running(self, call: str) -> None:
        if not self._running:
            raise RuntimeError(f"MonitorSession is not running: call start() before {call}.")

    def stop(self) -> dict[str, Any]:
        """Stop every actor (after a last drain), finalise the recording, and return :meth:`summary` (idempotent)."""
        if not self._running:
            return self.summary()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._placement = self._pool.describe()
        self._pool.stop()
        self._drain_all(with_health=False)
        self.stop_recording()
        self._pool.kill()
        self._running = False
        if self._owns_ray:
            cluster.shutdown()
        return self.summary()

    # ------------------------------------------------------------------ streams and bundles
    def add_stream(
        self,
        source: str | Mapping[str, str] | StreamDescription,
        *,
        bundle: str | Path | Bundle | None = None,
        hop_s: float | None = None,
        channel_map: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
    ) -> str:
        """Monitor a stream, optionally running a bundle on it; return the stream's key.

        Parameters
        ----------
        source : str, dict or StreamDescription
            A selector (``"type=PPG"``, ``{"name": "Polar H10 ECG"}``) or a stream picked from discovery.
        bundle : str, Path or Bundle, optional
            A ``*.bxb`` path, ``"demo"``, or a read bundle; None monitors (displays, records) without a model.
        hop_s : float, optional
            Hop between windows (s); default: the bundle's.
        channel_map : mapping, optional
            Bundle channel label → stream channel label (``--channel``).
        timeout_s : float
            How long to look for the stream and to open it (s).

        Several calls may run at once (from threads): streams connect in parallel.

        Raises
        ------
        BadInputError
            The stream is not visible, or the bundle is unreadable.
        StreamMismatchError
            The stream does not fit the bundle (the message says what is missing).
        """
        self._check_running("add_stream()")
        description = source if isinstance(source, StreamDescription) else StreamDescription.from_info(
            resolve_selector(source, timeout_s)
        )
        model = self._pool.model_input(bundle, hop_s, channel_map) if bundle is not None else None
        with self._lock:
            key = self._unique_key(description)
            spec = StreamSpec(key, description, model)
            self._pool.specs[key] = spec  # reserved: a concurrent call picks another key
        self._pool.add(spec, timeout_s)
        return key

    def remove_stream(self, key: str) -> None:
        """Stop monitoring ``key``."""
        import ray

        group = self._pool.release(key)
        with self._lock:
            self._health.pop(key, None)
        if group is not None:
            ray.get(group.handle.remove_stream.remote(key), timeout=CALL_TIMEOUT_S)

    def attach(self, key: str, bundle: str | Path | Bundle, *, hop_s: float | None = None,
               channel_map: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> None:
        """Run ``bundle`` on the monitored stream ``key`` (replacing any model it had)."""
        specs = self.streams
        if key not in specs:
            raise BadInputError(f"no monitored stream {key!r}; monitored: {sorted(specs)}")
        description = specs[key].description
        self.remove_stream(key)
        self.add_stream(description, bundle=bundle, hop_s=hop_s, channel_map=channel_map, timeout_s=timeout_s)

    @property
    def streams(self) -> dict[str, StreamSpec]:
        """The monitored streams by key."""
        return dict(self._pool.specs) if self._pool is not None else {}

    @property
    def prediction_streams(self) -> dict[str, StreamDescription]:
        """The session's own prediction outlets, by the key of the stream they predict on.

        Tell them from other streams by ``uid`` (liblsl draws one at random for every outlet): a name or a
        source id can be copied by anyone who sees them.
        """
        return dict(self._pool.prediction_streams) if self._pool is not None else {}

    def _unique_key(self, description: StreamDescription) -> str:
        key, k = description.name, 2
        while key in self._pool.specs:
            key, k = f"{description.name} ({k})", k + 1
        return key

    # ------------------------------------------------------------------ results
    def subscribe(self, maxsize: int = 10_000) -> Subscription:
        """A queue that receives every prediction, event and health update from now on."""
        subscription = Subscription(maxsize)
        with self._lock:
            self._subscribers.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop feeding ``subscription``."""
        with self._lock:
            if subscription in self._subscribers:
                self._subscribers.remove(subscription)

    @property
    def health(self) -> dict[str, StreamHealth]:
        """The latest health of every stream (refreshed about every second)."""
        with self._lock:
            return dict(self._health)

    @property
    def events(self) -> list[SessionEvent]:
        """The most recent session events (up to 1,000)."""
        with self._lock:
            return list(self._events)

    def snapshot(
        self, keys: list[str] | None = None, seconds: float = 10.0, points: int = 2000, until_s: float | None = None
    ) -> dict[str, Any]:
        """Display snapshots of streams (all when ``keys`` is None).

        ``seconds`` of raw samples, peak-decimated to at most ``points`` per channel, ending now or at ``until_s``
        (s, LSL clock; scroll-back within the session's ``display_s``). Streams whose actor does not answer
        within 2 s are left out.
        """
        import ray

        wanted = set(self.streams if keys is None else keys)
        calls = [(g, sorted(wanted & g.keys)) for g in list(self._pool.groups)]
        refs = [cluster.untracked(g.handle.snapshot).remote(k, seconds, points, until_s) for g, k in calls if k]
        out: dict[str, Any] = {}
        for ref in refs:
            try:
                out.update(ray.get(ref, timeout=2.0))
            except Exception:  # noqa: BLE001 - a restarting actor: no picture this time
                logger.debug("snapshot failed", exc_info=True)
        return out

    def start_recording(self, path: str | Path) -> None:
        """Record from now on to the XDF file ``path``: every monitored stream, its predictions, the markers."""
        self._check_running("start_recording()")
        path = Path(path).expanduser()
        if not path.parent.is_dir():
            raise BadInputError(f"cannot record to '{path}': folder '{path.parent}' does not exist")
        if self._pool.recorder is not None:
            raise BadInputError(f"already recording to '{self.record_path}'; stop that recording first")
        self.record_path = path
        self._recording_status = None
        self._pool.start_recorder(path)

    def stop_recording(self) -> dict[str, Any] | None:
        """Finish the recording (footers written, file closed); return its final status (None if not recording)."""
        if self._pool is None or self._pool.recorder is None:
            return None
        status = self._pool.stop_recorder()
        self._recording_status = {"path": str(self.record_path), **status}
        return self._recording_status

    def recording_status(self) -> dict[str, Any] | None:
        """Path, bytes, whether still recording (and why not), samples per stream; None when not recording."""
        if self._recording_status is not None or self._pool is None or self._pool.recorder is None:
            return self._recording_status
        status = self._pool.status(self._pool.recorder)
        return status or {"path": str(self.record_path), "recording": False, "reason": "the recorder does not answer"}

    def actors(self) -> list[dict[str, Any]]:
        """Every actor of the session with its process and node (see :meth:`ActorPool.describe`)."""
        return self._pool.describe() if self._running else list(self._placement)

    def summary(self) -> dict[str, Any]:
        """Totals since start: windows, predictions, rejected, dropped, errors, restarts, latency, provider, streams.

        After :meth:`stop`, ``actors`` lists where each actor ran (see :meth:`actors`).
        """
        providers = self._pool.providers if self._pool is not None else []
        with self._lock:
            return {
                **self._totals,
                "restarts": self.restarts,
                "latency_p50_ms": _rounded(self._latency.percentile(50)),
                "latency_p99_ms": _rounded(self._latency.percentile(99)),
                "provider": ",".join(providers),
                "streams": {k: h.to_json() for k, h in self._health.items()},
                "recording": self._recording_status,
                "actors": self._placement,
            }

    @staticmethod
    def clock() -> float:
        """The runtime's clock: the local LSL clock (s), the one every prediction and snapshot is stamped in."""
        return pylsl.local_clock()

    @property
    def restarts(self) -> int:
        """Actor restarts since start."""
        return self._pool.restarts if self._pool is not None else 0

    # ------------------------------------------------------------------ background threads
    def _collect_loop(self) -> None:
        next_health = 0.0
        while not self._stop.wait(_DRAIN_EVERY_S):
            now = time.monotonic()
            with_health = now >= next_health
            if with_health:
                next_health = now + _HEALTH_EVERY_S
            self._drain_all(with_health)

    def _drain_all(self, with_health: bool) -> None:
        import ray

        refs = [cluster.untracked(g.handle.drain).remote(with_health) for g in list(self._pool.groups)]
        for ref in refs:
            try:
                result = ray.get(ref, timeout=CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - dead or restarting: the supervisor deals with it
                continue
            self._dispatch(result["predictions"], result["events"], result["health"], result["markers"])
        recorder = self._pool.recorder
        if recorder is not None and self._recording_status is None:
            try:
                events = ray.get(cluster.untracked(recorder.events).remote(), timeout=CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                events = []
            self._dispatch([], events, None)

    def _dispatch(self, predictions: list[Prediction], events: list[SessionEvent],
                  health: list[StreamHealth] | None, markers: list[Marker] = ()) -> None:
        with self._lock:
            for p in predictions:
                self._totals["windows"] += 1
                self._totals[p.outcome] += 1
                if p.ok:
                    self._latency.add([p.latency.total_ms])
            self._events.extend(events)
            if health is not None:
                for h in health:
                    self._health[h.stream] = h
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            for p in predictions:
                subscriber.put(("prediction", p))
            for e in events:
                subscriber.put(("event", e))
            for m in markers:
                subscriber.put(("marker", m))
            if health is not None:
                subscriber.put(("health", health))

    def _event(self, kind: str, message: str, stream: str = "", level: str = "info") -> None:
        event = SessionEvent(kind, message, stream, level, pylsl.local_clock())
        getattr(logger, "warning" if level != "info" else "info")("%s", message)
        self._dispatch([], [event], None)

    def _supervise_loop(self) -> None:
        while not self._stop.wait(_SUPERVISE_EVERY_S):
            self._pool.check_restarts()


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)

