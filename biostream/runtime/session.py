"""``MonitorSession``: the driver-side API of the runtime, used by ``biostream monitor`` and the desktop app.

A session owns the Ray actors and keeps what they should be doing:

* **StreamActors** (:class:`~biostream.runtime.stream_group.StreamGroup`): streams are packed into groups of up
  to ``streams_per_actor``, at most ``max_stream_actors`` of them (default: one per CPU), so the process count
  does not grow with the stream count;
* **InferenceActors** (:class:`~biostream.runtime.inference.InferenceServer`), one per bundle;
* a **RecorderActor** (:class:`~biostream.runtime.recorder.SessionRecorder`) when recording.

Two background threads keep the caller from ever blocking on Ray: a *collector* drains predictions, events and
(every second) health from the stream actors into subscriber queues, and a *supervisor* pings every actor; when
Ray has restarted one (it changes incarnation), the session says so and puts its streams back. Callers read
results through :meth:`MonitorSession.subscribe` queues or the latest :attr:`MonitorSession.health`, without
waiting. Adding a stream waits for it to connect (seconds at most); the desktop app calls it off its UI thread.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylsl

from biostream.lsl import StreamDescription, resolve_selector
from biostream.runtime import cluster
from biostream.runtime.pipeline import ModelInput, StreamSpec
from biostream.runtime.records import LatencyStats, Prediction, SessionEvent, StreamHealth
from bridges.bundle import Bundle, read_bundle
from devices.errors import BadInputError, StreamMismatchError

logger = logging.getLogger(__name__)

_DRAIN_EVERY_S = 0.05
_HEALTH_EVERY_S = 1.0
_SUPERVISE_EVERY_S = 0.5
_CALL_TIMEOUT_S = 5.0


@dataclass
class _Group:
    handle: Any
    incarnation: str = ""
    keys: set[str] = field(default_factory=set)


@dataclass
class _Model:
    bundle: Bundle
    handle: Any
    bytes_ref: Any
    incarnation: str = ""
    provider: str = ""
    provider_note: str = ""
    loading: threading.Lock = field(default_factory=threading.Lock)


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
        self._groups: list[_Group] = []
        self._models: dict[str, _Model] = {}
        self._specs: dict[str, StreamSpec] = {}
        self._group_of: dict[str, _Group] = {}
        self._recorder: Any = None
        self._recorded: list[StreamDescription] = []
        self._subscribers: list[Subscription] = []
        self._health: dict[str, StreamHealth] = {}
        self._latency = LatencyStats(capacity=100_000)
        self._totals = dict.fromkeys(("windows", "predictions", "rejected", "dropped", "errors"), 0)
        self.restarts = 0
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
        if self.record_path is not None:
            from biostream.runtime.recorder import SessionRecorder

            recorder_cls = ray.remote(max_concurrency=4, num_cpus=0, max_restarts=0)(SessionRecorder)
            self._recorder = recorder_cls.options(**cluster.stream_actor_options()).remote(
                str(self.record_path), {"session_id": self.session_id}
            )
        self._running = True
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
        import ray

        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._placement = self.actors()
        with self._lock:
            groups = list(self._groups)
        for group in groups:
            try:
                ray.get(group.handle.stop.remote(), timeout=_CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to stop
                logger.debug("stream actor stop failed", exc_info=True)
        self._drain_all(with_health=False)
        if self._recorder is not None:
            try:
                self._recording_status = ray.get(self._recorder.stop.remote(), timeout=30.0)
            except Exception as err:  # noqa: BLE001
                self._recording_status = {
                    "path": str(self.record_path), "recording": False,
                    "reason": f"the recorder died ({type(err).__name__}); the file keeps what was written",
                }
        for handle in [g.handle for g in groups] + [m.handle for m in self._models.values()] + [self._recorder]:
            if handle is not None:
                try:
                    ray.kill(handle)
                except Exception:  # noqa: BLE001
                    pass
        self._running = False
        if self._owns_ray:
            ray.shutdown()
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
        model = self._model_input(bundle, hop_s, channel_map) if bundle is not None else None
        with self._lock:  # reserve the key and a place, so concurrent calls spread over the actors
            key = self._unique_key(description)
            spec = StreamSpec(key, description, model)
            group = self._pick_group()
            self._specs[key] = spec
            self._group_of[key] = group
            group.keys.add(key)
        try:
            self._start_on(group, spec, timeout_s)
        except BaseException:
            with self._lock:
                self._specs.pop(key, None)
                self._group_of.pop(key, None)
                group.keys.discard(key)
            raise
        return key

    def remove_stream(self, key: str) -> None:
        """Stop monitoring ``key``."""
        import ray

        with self._lock:
            group = self._group_of.pop(key, None)
            self._specs.pop(key, None)
            self._health.pop(key, None)
            if group is not None:
                group.keys.discard(key)
        if group is not None:
            ray.get(group.handle.remove_stream.remote(key), timeout=_CALL_TIMEOUT_S)

    def attach(self, key: str, bundle: str | Path | Bundle, *, hop_s: float | None = None,
               channel_map: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> None:
        """Run ``bundle`` on the monitored stream ``key`` (replacing any model it had)."""
        with self._lock:
            if key not in self._specs:
                raise BadInputError(f"no monitored stream {key!r}; monitored: {sorted(self._specs)}")
            description = self._specs[key].description
        self.remove_stream(key)
        self.add_stream(description, bundle=bundle, hop_s=hop_s, channel_map=channel_map, timeout_s=timeout_s)

    @property
    def streams(self) -> dict[str, StreamSpec]:
        """The monitored streams by key."""
        with self._lock:
            return dict(self._specs)

    def _unique_key(self, description: StreamDescription) -> str:
        key, k = description.name, 2
        while key in self._specs:
            key, k = f"{description.name} ({k})", k + 1
        return key

    def _model_input(self, bundle: str | Path | Bundle, hop_s: float | None,
                     channel_map: Mapping[str, str] | None) -> ModelInput:
        import ray

        if not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle)
        manifest = bundle.manifest
        hop = manifest.input.hop_s if hop_s is None else float(hop_s)
        if not (math.isfinite(hop) and hop > 0):
            raise BadInputError(f"--hop-s must be a number > 0, got {hop_s!r}")
        with self._lock:
            if bundle.sha256 not in self._models:
                from biostream.runtime.inference import InferenceServer

                data_ref = ray.put(_bundle_bytes(bundle))
                actor_cls = ray.remote(max_restarts=self.max_restarts, num_cpus=0)(InferenceServer)
                handle = actor_cls.options(**cluster.inference_actor_options()).remote(
                    device=self.device, threads=self.threads
                )
                self._models[bundle.sha256] = _Model(bundle, handle, data_ref)
            model = self._models[bundle.sha256]
        with model.loading:  # concurrent add_stream calls load a bundle once
            if not model.incarnation:
                self._load(model)
                self._event(
                    "connected", f"bundle {manifest.task.name} ({bundle.sha256[:12]}) runs on {model.provider}"
                    + (f"; {model.provider_note}" if model.provider_note else ""),
                    level="warning" if model.provider_note else "info",
                )
        return ModelInput(
            bundle_key=bundle.sha256, task=manifest.task.name, class_names=tuple(manifest.task.class_names),
            spec=manifest.input, hop_s=hop, channel_map=dict(channel_map or {}),
        )

    def _load(self, model: _Model) -> dict[str, Any]:
        """Load the model's bundle into its inference actor (again, after a restart); raise if it cannot run."""
        import ray

        try:
            status = ray.get(model.handle.load.remote(model.bytes_ref), timeout=120.0)
        except Exception as err:  # noqa: BLE001 - the actor died while loading
            raise BadInputError(f"bundle '{model.bundle.path}' cannot run: {_first_line(err)}") from None
        if "error" in status:
            raise BadInputError(f"bundle '{model.bundle.path}' cannot run: {status['error']}")
        model.incarnation, model.provider, model.provider_note = (
            status["incarnation"], status["provider"], status["provider_note"]
        )
        return status

    def _pick_group(self) -> _Group:
        """The least loaded StreamActor with room, or a new one (up to ``max_stream_actors``)."""
        import ray

        from biostream.runtime.stream_group import StreamGroup

        open_groups = [g for g in self._groups if len(g.keys) < self.streams_per_actor]
        if open_groups:
            return min(open_groups, key=lambda g: len(g.keys))
        if len(self._groups) >= self.max_stream_actors:
            return min(self._groups, key=lambda g: len(g.keys))
        actor_cls = ray.remote(max_concurrency=8, max_restarts=self.max_restarts, num_cpus=0)(StreamGroup)
        handle = actor_cls.options(**cluster.stream_actor_options()).remote(
            self.session_id, lost_after_s=self.lost_after_s, display_s=self.display_s
        )
        group = _Group(handle)
        self._groups.append(group)
        return group

    def _start_on(self, group: _Group, spec: StreamSpec, timeout_s: float) -> None:
        """Hand a stream to a StreamActor (with its model's inference handle) and to the recorder."""
        import ray

        if spec.model is not None:
            model = self._models[spec.model.bundle_key]
            ray.get(group.handle.set_inference.remote(spec.model.bundle_key, model.handle, model.provider),
                    timeout=_CALL_TIMEOUT_S + 30.0)
        result = ray.get(group.handle.add_stream.remote(spec, timeout_s), timeout=timeout_s + 30.0)
        if not result["ok"]:
            error_cls = StreamMismatchError if result["kind"] == "mismatch" else BadInputError
            raise error_cls(result["error"])
        if not group.incarnation:
            group.incarnation = ray.get(group.handle.status.remote(), timeout=_CALL_TIMEOUT_S)["incarnation"]
        if self._recorder is not None:
            for description in (spec.description, result["prediction_stream"]):
                if description is not None:
                    self._record(description)

    def _record(self, description: StreamDescription) -> None:
        import ray

        if any(d.uid == description.uid for d in self._recorded):
            return
        answer = ray.get(self._recorder.add_stream.remote(description), timeout=_CALL_TIMEOUT_S + 10.0)
        if answer["ok"]:
            self._recorded.append(description)
        else:
            self._event("recording", f"cannot record {description.summary()}: {answer['error']}", level="warning")

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

    def snapshot(self, keys: list[str] | None = None, seconds: float = 10.0, points: int = 2000) -> dict[str, Any]:
        """Display snapshots of streams (all when ``keys`` is None).

        Streams whose actor does not answer within 2 s are left out.
        """
        import ray

        with self._lock:
            wanted = set(self._specs if keys is None else keys)
            calls = [(g, sorted(wanted & g.keys)) for g in self._groups]
        refs = [cluster.untracked(g.handle.snapshot).remote(k, seconds, points) for g, k in calls if k]
        out: dict[str, Any] = {}
        for ref in refs:
            try:
                out.update(ray.get(ref, timeout=2.0))
            except Exception:  # noqa: BLE001 - a restarting actor: no picture this time
                logger.debug("snapshot failed", exc_info=True)
        return out

    def recording_status(self) -> dict[str, Any] | None:
        """Path, bytes, whether still recording (and why not), samples per stream; None when not recording."""
        if self._recording_status is not None or self._recorder is None:
            return self._recording_status
        import ray

        try:
            return ray.get(self._recorder.status.remote(), timeout=2.0)
        except Exception:  # noqa: BLE001
            return {"path": str(self.record_path), "recording": False, "reason": "the recorder does not answer"}

    def actors(self) -> list[dict[str, Any]]:
        """Every actor of the session: ``role`` (stream, inference, recorder), ``pid``, ``node_id`` and its status.

        Asks them all at once and waits up to 2 s; an actor that does not answer is listed with ``pid`` None.
        The node's custom resources come with it (``lsl``: whether the node says it sees the LSL streams).
        """
        import ray

        with self._lock:
            roles = [("stream", g.handle, {}) for g in self._groups]
            roles += [("inference", m.handle, {"task": m.bundle.manifest.task.name}) for m in self._models.values()]
            if self._recorder is not None:
                roles.append(("recorder", self._recorder, {}))
        refs = [handle.status.remote() for _, handle, _ in roles]
        nodes = {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}
        out = []
        for (role, _, extra), ref in zip(roles, refs):
            try:
                status = ray.get(ref, timeout=2.0)
            except Exception:  # noqa: BLE001 - dead or restarting
                status = {"pid": None, "node_id": ""}
            status.pop("counts", None)
            node = status.get("node_id", "")
            out.append({"role": role, **extra, **status,
                        "node_lsl": nodes.get(node, {}).get(cluster.LSL_RESOURCE, 0) > 0,
                        "node_gpus": nodes.get(node, {}).get("GPU", 0)})
        return out

    def summary(self) -> dict[str, Any]:
        """Totals since start: windows, predictions, rejected, dropped, errors, restarts, latency, provider, streams.

        After :meth:`stop`, ``actors`` lists where each actor ran (see :meth:`actors`).
        """
        with self._lock:
            providers = sorted({m.provider for m in self._models.values() if m.provider})
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

        with self._lock:
            groups = list(self._groups)
        refs = [cluster.untracked(g.handle.drain).remote(with_health) for g in groups]
        for ref in refs:
            try:
                result = ray.get(ref, timeout=_CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - dead or restarting: the supervisor deals with it
                continue
            self._dispatch(result["predictions"], result["events"], result["health"])
        if self._recorder is not None and self._recording_status is None:
            try:
                events = ray.get(cluster.untracked(self._recorder.events).remote(), timeout=_CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001
                events = []
            self._dispatch([], events, None)

    def _dispatch(self, predictions: list[Prediction], events: list[SessionEvent],
                  health: list[StreamHealth] | None) -> None:
        with self._lock:
            for p in predictions:
                self._totals["windows"] += 1
                if p.ok:
                    self._totals["predictions"] += 1
                    self._latency.add([p.latency.total_ms])
                elif "dropped" in p.codes:
                    self._totals["dropped"] += 1
                elif "inference_error" in p.codes:
                    self._totals["errors"] += 1
                else:
                    self._totals["rejected"] += 1
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
            if health is not None:
                subscriber.put(("health", health))

    def _event(self, kind: str, message: str, stream: str = "", level: str = "info") -> None:
        event = SessionEvent(kind, message, stream, level, pylsl.local_clock())
        getattr(logger, "warning" if level != "info" else "info")("%s", message)
        self._dispatch([], [event], None)

    def _supervise_loop(self) -> None:
        while not self._stop.wait(_SUPERVISE_EVERY_S):
            with self._lock:
                groups = list(self._groups)
                models = list(self._models.values())
            for model in models:
                self._check_model(model)
            for group in groups:
                self._check_group(group)

    def _status(self, handle: Any) -> dict[str, Any] | None:
        import ray

        try:
            return ray.get(cluster.untracked(handle.status).remote(), timeout=2.0)
        except Exception:  # noqa: BLE001 - dead, or restarting right now
            return None

    def _check_model(self, model: _Model) -> None:
        status = self._status(model.handle)
        if status is None or not model.incarnation or status["incarnation"] == model.incarnation:
            return
        self.restarts += 1
        task = model.bundle.manifest.task.name
        try:
            with model.loading:
                self._load(model)
        except BadInputError as err:
            self._event("error", f"the inference actor of {task} was restarted but cannot load: {err}", level="error")
            return
        self._event("restart", f"the inference actor of {task} was restarted (now pid {status['pid']}); "
                    "predictions resume", level="warning")

    def _check_group(self, group: _Group) -> None:
        import ray

        status = self._status(group.handle)
        if status is None or not group.incarnation or status["incarnation"] == group.incarnation:
            return
        group.incarnation = status["incarnation"]
        self.restarts += 1
        with self._lock:
            specs = [self._specs[k] for k in sorted(group.keys) if k in self._specs]
        self._event("restart", f"a stream actor was restarted (now pid {status['pid']}); resuming "
                    f"{len(specs)} stream(s)", level="warning")
        for spec in specs:
            try:
                if spec.model is not None:
                    model = self._models[spec.model.bundle_key]
                    ray.get(group.handle.set_inference.remote(spec.model.bundle_key, model.handle, model.provider),
                            timeout=_CALL_TIMEOUT_S)
                result = ray.get(group.handle.add_stream.remote(spec), timeout=_CALL_TIMEOUT_S + 30.0)
                if not result["ok"]:
                    self._event("error", f"could not resume: {result['error']}", spec.key, "error")
            except Exception as err:  # noqa: BLE001 - keep supervising the others
                self._event("error", f"could not resume: {_first_line(err)}", spec.key, "error")


def _bundle_bytes(bundle: Bundle) -> bytes:
    """The bundle file's bytes, checked to be the bundle that was read (it may have changed on disk since)."""
    import hashlib

    try:
        data = bundle.path.read_bytes()
    except OSError as err:
        raise BadInputError(f"bundle '{bundle.path}' cannot be read: {err.strerror}") from None
    if hashlib.sha256(data).hexdigest() != bundle.sha256:
        raise BadInputError(f"bundle '{bundle.path}' changed on disk since it was read; open it again")
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("Traceback", "  ")):
            return line.strip()
    return type(err).__name__


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)

