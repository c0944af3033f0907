"""The Ray actors of a monitor session, where each stream runs, and putting them back after a crash.

:class:`ActorPool` creates and tracks:

* **StreamActors** (:class:`~biostream.runtime.stream_group.StreamGroup`): streams are packed into groups of up
  to ``streams_per_actor``, at most ``max_stream_actors`` of them, so the process count does not grow with the
  stream count;
* **InferenceActors** (:class:`~biostream.runtime.inference.InferenceServer`), one per bundle, the bundle loaded
  after start (and again after a restart);
* a **RecorderActor** (:class:`~biostream.runtime.recorder.SessionRecorder`) when recording.

It keeps what each actor should be doing (every stream's :class:`~biostream.runtime.pipeline.StreamSpec`), so
that :meth:`ActorPool.check_restarts` can tell an actor Ray restarted (it answers with another incarnation) and
put its streams or its bundle back. Events for the user go through the ``emit`` callback.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from biostream.lsl import StreamDescription
from biostream.runtime import cluster
from biostream.runtime.pipeline import ModelInput, StreamSpec
from bridges.bundle import Bundle, read_bundle
from devices.errors import BadInputError, StreamMismatchError

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0
#: Extra time the first call to a new actor may take: Ray starts a worker process that imports the runtime and
#: onnxruntime, which took over 30 s on a two-core machine busy training models. Ray reports an actor that fails
#: to start at once, so this bound only ever waits on one that is slow to start.
ACTOR_START_S = 120.0
#: How long the recorder waits for a stream's inlet to open (resolution is slow when many outlets are up).
RECORD_CONNECT_S = 15.0

#: ``emit(kind, message, stream, level)``: how the pool tells the session what happened.
Emit = Callable[[str, str, str, str], None]


@dataclass
class Group:
    """A StreamActor and the keys of the streams it hosts."""

    handle: Any
    incarnation: str = ""
    keys: set[str] = field(default_factory=set)


@dataclass
class Model:
    """An InferenceActor, its bundle, and what it reported when the bundle loaded."""

    bundle: Bundle
    handle: Any
    bytes_ref: Any
    incarnation: str = ""
    provider: str = ""
    provider_note: str = ""
    loading: threading.Lock = field(default_factory=threading.Lock)


def first_line(err: BaseException) -> str:
    """The first line of an error's message that is not traceback (Ray wraps remote errors in one)."""
    for line in str(err).strip().splitlines():
        if line.strip() and not line.startswith(("Traceback", "  ")):
            return line.strip()
    return type(err).__name__


def _bundle_bytes(bundle: Bundle) -> bytes:
    """The bundle file's bytes, checked to be the bundle that was read (it may have changed on disk since)."""
    try:
        data = bundle.path.read_bytes()
    except OSError as err:
        raise BadInputError(f"bundle '{bundle.path}' cannot be read: {err.strerror}") from None
    if hashlib.sha256(data).hexdigest() != bundle.sha256:
        raise BadInputError(f"bundle '{bundle.path}' changed on disk since it was read; open it again")
    return data


class ActorPool:
    """A session's actors (see the module docstring). Every method may block on Ray for a few seconds.

    Parameters
    ----------
    session_id : str
        Names the session's prediction streams.
    emit : callable
        Receives ``(kind, message, stream, level)`` for the user.
    device, threads, streams_per_actor, max_stream_actors, lost_after_s, display_s, max_restarts
        See :class:`~biostream.runtime.session.MonitorSession`.
    """

    def __init__(
        self, session_id: str, emit: Emit, *, device: str, threads: int | None, streams_per_actor: int,
        max_stream_actors: int, lost_after_s: float, display_s: float, max_restarts: int,
    ) -> None:
        self.session_id = session_id
        self._emit = emit
        self.device = device
        self.threads = threads
        self.streams_per_actor = int(streams_per_actor)
        self.max_stream_actors = int(max_stream_actors)
        self.lost_after_s = float(lost_after_s)
        self.display_s = float(display_s)
        self.max_restarts = int(max_restarts)
        self.restarts = 0
        self._lock = threading.RLock()
        self.groups: list[Group] = []
        self.models: dict[str, Model] = {}
        self.specs: dict[str, StreamSpec] = {}
        self.group_of: dict[str, Group] = {}
        self.recorder: Any = None
        self._recorded: set[str] = set()
        self.prediction_streams: dict[str, StreamDescription] = {}

    # ------------------------------------------------------------------ bundles
    def model_input(self, bundle: str | Path | Bundle, hop_s: float | None,
                    channel_map: Mapping[str, str] | None) -> ModelInput:
        """What a stream needs to feed ``bundle``; its InferenceActor is started and loaded the first time."""
        import ray

        from biostream.runtime.inference import InferenceServer

        if not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle)
        manifest = bundle.manifest
        hop = manifest.input.hop_s if hop_s is None else float(hop_s)
        if not (math.isfinite(hop) and hop > 0):
            raise BadInputError(f"--hop-s must be a number > 0, got {hop_s!r}")
        with self._lock:
            if bundle.sha256 not in self.models:
                data_ref = ray.put(_bundle_bytes(bundle))
                actor_cls = ray.remote(max_restarts=self.max_restarts, num_cpus=0)(InferenceServer)
                handle = actor_cls.options(**cluster.inference_actor_options()).remote(
                    device=self.device, threads=self.threads
                )
                self.models[bundle.sha256] = Model(bundle, handle, data_ref)
            model = self.models[bundle.sha256]
        with model.loading:  # concurrent add_stream calls load a bundle once
            if not model.incarnation:
                self._load(model)
                note = f"; {model.provider_note}" if model.provider_note else ""
                self._emit("connected", f"bundle {manifest.task.name} ({bundle.sha256[:12]}) runs on "
                           f"{model.provider}{note}", "", "warning" if note else "info")
        return ModelInput(
            bundle_key=bundle.sha256, task=manifest.task.name, class_names=tuple(manifest.task.class_names),
            spec=manifest.input, hop_s=hop, channel_map=dict(channel_map or {}),
        )

    def _load(self, model: Model) -> None:
        """Load the model's bundle into its inference actor (again, after a restart); raise if it cannot run."""
        import ray

        try:
            status = ray.get(model.handle.load.remote(model.bytes_ref), timeout=120.0)
        except Exception as err:  # noqa: BLE001 - the actor died while loading
            raise BadInputError(f"bundle '{model.bundle.path}' cannot run: {first_line(err)}") from None
        if "error" in status:
            raise BadInputError(f"bundle '{model.bundle.path}' cannot run: {status['error']}")
        model.incarnation, model.provider, model.provider_note = (
            status["incarnation"], status["provider"], status["provider_note"]
        )

    @property
    def providers(self) -> list[str]:
        """The execution providers running the session's bundles."""
        with self._lock:
            return sorted({m.provider for m in self.models.values() if m.provider})

    # ------------------------------------------------------------------ streams
    def add(self, spec: StreamSpec, timeout_s: float) -> None:
        """Place a stream on a StreamActor, connect it there (and record it); raise if it cannot run.

        Safe to call from several threads at once: places are reserved first, so streams spread over actors.
        """
        with self._lock:
            group = self._pick_group()
            self.specs[spec.key] = spec
            self.group_of[spec.key] = group
            group.keys.add(spec.key)
        try:
            self._start_on(group, spec, timeout_s)
        except BaseException:
            self.release(spec.key)
            raise

    def release(self, key: str) -> Group | None:
        """Forget stream ``key``; return the actor that hosted it."""
        with self._lock:
            group = self.group_of.pop(key, None)
            self.specs.pop(key, None)
            self.prediction_streams.pop(key, None)
            if group is not None:
                group.keys.discard(key)
        return group

    def _pick_group(self) -> Group:
        """The least loaded StreamActor with room, or a new one (up to ``max_stream_actors``)."""
        import ray

        from biostream.runtime.stream_group import StreamGroup

        open_groups = [g for g in self.groups if len(g.keys) < self.streams_per_actor]
        if open_groups:
            return min(open_groups, key=lambda g: len(g.keys))
        if len(self.groups) >= self.max_stream_actors:
            return min(self.groups, key=lambda g: len(g.keys))
        actor_cls = ray.remote(max_concurrency=8, max_restarts=self.max_restarts, num_cpus=0)(StreamGroup)
        handle = actor_cls.options(**cluster.stream_actor_options()).remote(
            self.session_id, lost_after_s=self.lost_after_s, display_s=self.display_s
        )
        group = Group(handle)
        self.groups.append(group)
        return group

    def _start_on(self, group: Group, spec: StreamSpec, timeout_s: float) -> dict[str, Any]:
        """Hand a stream to a StreamActor (with its model's inference handle) and to the recorder."""
        import ray

        if spec.model is not None:
            model = self.models[spec.model.bundle_key]
            ray.get(group.handle.set_inference.remote(spec.model.bundle_key, model.handle, model.provider),
                    timeout=CALL_TIMEOUT_S + ACTOR_START_S)
        result = ray.get(group.handle.add_stream.remote(spec, timeout_s), timeout=timeout_s + ACTOR_START_S)
        if not result["ok"]:
            error_cls = StreamMismatchError if result["kind"] == "mismatch" else BadInputError
            raise error_cls(result["error"])
        if not group.incarnation:
            group.incarnation = ray.get(group.handle.status.remote(), timeout=CALL_TIMEOUT_S)["incarnation"]
        if result["prediction_stream"] is not None:
            self.prediction_streams[spec.key] = result["prediction_stream"]
        for description in (spec.description, result["prediction_stream"]):
            if description is not None:
                self._record(description)
        return result

    # ------------------------------------------------------------------ recorder
    def start_recorder(self, path: Path) -> None:
        """Start recording to ``path`` (on a node that sees the LSL streams), the streams already monitored too.

        The recorder is not restarted if it dies: a new one would truncate the file.
        """
        import ray

        from biostream.runtime.recorder import SessionRecorder

        recorder_cls = ray.remote(max_concurrency=4, num_cpus=0, max_restarts=0)(SessionRecorder)
        recorder = recorder_cls.options(**cluster.stream_actor_options()).remote(
            str(path), {"session_id": self.session_id}
        )
        status = ray.get(recorder.status.remote(), timeout=CALL_TIMEOUT_S + ACTOR_START_S)
        if not status["recording"]:  # the file could not be created (full disk, read-only place, ...)
            ray.kill(recorder)
            raise BadInputError(status["reason"])
        self.recorder = recorder
        self._recorded.clear()
        with self._lock:
            known = [s.description for s in self.specs.values()] + list(self.prediction_streams.values())
        for description in known:
            self._record(description)

    def stop_recorder(self) -> dict[str, Any]:
        """Finalise the recording and end the recorder; return the recording's last status."""
        import ray

        recorder, self.recorder = self.recorder, None
        try:
            status = ray.get(recorder.stop.remote(), timeout=30.0)
        except Exception as err:  # noqa: BLE001
            status = {"recording": False,
                      "reason": f"the recorder died ({type(err).__name__}); the file keeps what was written"}
        try:
            ray.kill(recorder)
        except Exception:  # noqa: BLE001 - already gone
            pass
        return status

    def _record(self, description: StreamDescription) -> None:
        import ray

        if self.recorder is None or description.uid in self._recorded:
            return
        answer = ray.get(self.recorder.add_stream.remote(description, RECORD_CONNECT_S),
                         timeout=RECORD_CONNECT_S + CALL_TIMEOUT_S + 10.0)
        if answer["ok"]:
            self._recorded.add(description.uid)
        else:
            self._emit("recording", f"cannot record {description.summary()}: {answer['error']}", "", "warning")

    # ------------------------------------------------------------------ supervision
    def status(self, handle: Any) -> dict[str, Any] | None:
        """An actor's status, or None when it does not answer within 2 s (dead, or being restarted)."""
        import ray

        try:
            return ray.get(cluster.untracked(handle.status).remote(), timeout=2.0)
        except Exception:  # noqa: BLE001
            return None

    def check_restarts(self) -> None:
        """Put back what an actor restarted by Ray has lost: its bundle, or its streams; say so."""
        with self._lock:
            groups, models = list(self.groups), list(self.models.values())
        for model in models:
            self._check_model(model)
        for group in groups:
            self._check_group(group)

    def _check_model(self, model: Model) -> None:
        status = self.status(model.handle)
        if status is None or not model.incarnation or status["incarnation"] == model.incarnation:
            return
        self.restarts += 1
        task = model.bundle.manifest.task.name
        try:
            with model.loading:
                self._load(model)
        except BadInputError as err:
            self._emit("error", f"the inference actor of {task} was restarted but cannot load: {err}", "", "error")
            return
        self._emit("restart", f"the inference actor of {task} was restarted (now pid {status['pid']}); "
                   "predictions resume", "", "warning")

    def _check_group(self, group: Group) -> None:
        import ray

        status = self.status(group.handle)
        if status is None or not group.incarnation or status["incarnation"] == group.incarnation:
            return
        group.incarnation = status["incarnation"]
        self.restarts += 1
        with self._lock:
            specs = [self.specs[k] for k in sorted(group.keys) if k in self.specs]
        self._emit("restart", f"a stream actor was restarted (now pid {status['pid']}); resuming "
                   f"{len(specs)} stream(s)", "", "warning")
        for spec in specs:
            try:
                if spec.model is not None:
                    model = self.models[spec.model.bundle_key]
                    ray.get(group.handle.set_inference.remote(spec.model.bundle_key, model.handle, model.provider),
                            timeout=CALL_TIMEOUT_S)
                result = ray.get(group.handle.add_stream.remote(spec), timeout=CALL_TIMEOUT_S + ACTOR_START_S)
                if not result["ok"]:
                    self._emit("error", f"could not resume: {result['error']}", spec.key, "error")
            except Exception as err:  # noqa: BLE001 - keep supervising the others
                self._emit("error", f"could not resume: {first_line(err)}", spec.key, "error")

    def describe(self) -> list[dict[str, Any]]:
        """Every actor: ``role`` (stream, inference, recorder), ``pid``, ``node_id``, status, node resources.

        ``node_lsl`` says whether the actor's node declares it sees the LSL streams, ``node_gpus`` its GPUs. All
        are asked at once, for up to 2 s; an actor that does not answer is listed with ``pid`` None.
        """
        import ray

        with self._lock:
            roles = [("stream", g.handle, {}) for g in self.groups]
            roles += [("inference", m.handle, {"task": m.bundle.manifest.task.name}) for m in self.models.values()]
            if self.recorder is not None:
                roles.append(("recorder", self.recorder, {}))
        refs = [cluster.untracked(handle.status).remote() for _, handle, _ in roles]
        nodes = {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}
        out = []
        for (role, _, extra), ref in zip(roles, refs):
            try:
                status = ray.get(ref, timeout=2.0)
            except Exception:  # noqa: BLE001 - dead or restarting
                status = {"pid": None, "node_id": ""}
            status.pop("counts", None)
            resources = nodes.get(status.get("node_id", ""), {})
            out.append({"role": role, **extra, **status, "node_lsl": resources.get(cluster.LSL_RESOURCE, 0) > 0,
                        "node_gpus": resources.get("GPU", 0)})
        return out

    def stop(self) -> None:
        """Stop the stream actors; their last results stay to be drained."""
        import ray

        with self._lock:
            groups = list(self.groups)
        for group in groups:
            try:
                ray.get(group.handle.stop.remote(), timeout=CALL_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to stop
                logger.debug("stream actor stop failed", exc_info=True)

    def kill(self) -> None:
        """End every actor's process."""
        import ray

        handles = [g.handle for g in self.groups] + [m.handle for m in self.models.values()] + [self.recorder]
        for handle in handles:
            if handle is not None:
                try:
                    ray.kill(handle)
                except Exception:  # noqa: BLE001 - already gone
                    pass
