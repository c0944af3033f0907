"""Starting or joining Ray for a monitor session, and where its actors go.

By default a session starts its own local Ray (``address="local"``, so it never attaches to another program's
cluster) with the dashboard off and every Ray server on loopback: Ray's node address is the loopback address
when ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is in the environment before Ray is imported, which this module
sets (nothing then listens beyond 127.0.0.1; without it Ray 2.60 binds its servers to the machine's network
address). ``--ray-address HOST:PORT`` joins an existing cluster instead (started with ``ray start``; a cluster
of several nodes cannot be loopback-only, and Ray's token authentication must be on for every node and for the
monitor alike: ``RAY_AUTH_MODE=token`` and the same ``~/.ray/auth_token``); the address is checked with a plain
TCP connect first, so an unreachable one is one line, not a minute of retries.

Placement on a cluster: StreamActors need a node that sees the LSL streams. A node started with
``ray start ... --resources '{"lsl": 1}'`` says it does; when any node has that resource, stream actors ask for
a sliver of it and so go there. Inference actors ask for a share of a GPU when the cluster has GPUs, and so go
where the GPUs are; without GPUs they go anywhere.

Ray's servers and workers are started with ``PR_SET_PDEATHSIG`` (they die with their parent), and on Linux the
parent is the *thread* that forked them: a local Ray started from a worker thread that later ends (a thread
pool shutting down, the desktop app's worker closing) would lose every Ray process at that moment, with the
driver hanging on its next control-store call. So a local Ray started off the main thread is started from a
dedicated thread that lives until :func:`shutdown`.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from devices.errors import BadInputError

logger = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: The custom resource a node advertises when it sees the LSL streams.
LSL_RESOURCE = "lsl"
#: Share of a GPU one inference actor takes (four bundles per GPU).
GPU_SHARE = 0.25
_CONNECT_TIMEOUT_S = 3.0
#: Set to let the thread that started the local Ray end (after :func:`shutdown`).
_ray_parent_release: threading.Event | None = None


def _host_port(address: str) -> tuple[str, int]:
    text = address.split("://", 1)[-1]
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BadInputError(f"--ray-address {address!r} must be HOST:PORT (the head node's GCS address)")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = _CONNECT_TIMEOUT_S) -> None:
    """Raise BadInputError naming the address unless a TCP connection to it opens within ``timeout_s``."""
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise BadInputError(
            f"cannot reach the Ray cluster at {address}: {reason} (is `ray start --head` running there?)"
        ) from None


def connect(address: str | None = None, *, num_cpus: int | None = None) -> bool:
    """Start a private local Ray, or join the cluster at ``address``; return True when this call started Ray.

    An already initialised Ray (e.g. a test session's) is used as it is and False returned.
    """
    if address is None:
        if "ray" in sys.modules and os.environ.get(LOOPBACK_ENV) != "0":
            logger.warning("Ray was imported before biostream could keep it on loopback; it may listen beyond it")
        os.environ.setdefault(LOOPBACK_ENV, "0")
    import ray

    if ray.is_initialized():
        return False
    if address is not None:
        check_reachable(address)
    options: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.ERROR,  # Ray's start-up chatter (token auth is on, as it should be) stays quiet
        "namespace": "biostream",
    }
    if address is None:
        _from_lasting_thread(lambda: ray.init(address="local", num_cpus=num_cpus, **options))
    else:
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError) as err:
            raise BadInputError(f"cannot join the Ray cluster at {address}: {str(err).splitlines()[0]}") from None
    return True


def _from_lasting_thread(start: Callable[[], Any]) -> None:
    """Run ``start`` (it forks Ray's processes) on a thread that outlives the caller's (see the module docstring)."""
    global _ray_parent_release
    if threading.current_thread() is threading.main_thread():
        start()  # the main thread lasts as long as the process
        return
    started: Future = Future()
    release = threading.Event()

    def parent() -> None:
        try:
            start()
        except BaseException as err:  # noqa: BLE001 - handed to the caller
            started.set_exception(err)
            return
        started.set_result(None)
        release.wait()

    threading.Thread(target=parent, name="biostream-ray-parent", daemon=True).start()
    started.result()
    _ray_parent_release = release


def shutdown() -> None:
    """Stop the Ray this process started (:func:`connect` returned True) and let its parent thread end."""
    global _ray_parent_release
    import ray

    ray.shutdown()
    if _ray_parent_release is not None:
        _ray_parent_release.set()
        _ray_parent_release = None


def stream_actor_options() -> dict[str, Any]:
    """Ray options that place a StreamActor on a node seeing the LSL streams (when any node says it does)."""
    import ray

    if ray.cluster_resources().get(LSL_RESOURCE, 0) > 0:
        return {"resources": {LSL_RESOURCE: 0.001}}
    return {}


def inference_actor_options() -> dict[str, Any]:
    """Ray options that place an InferenceActor on a GPU node when the cluster has GPUs."""
    import ray

    return {"num_gpus": GPU_SHARE} if ray.cluster_resources().get("GPU", 0) > 0 else {}


def current_node_id() -> str:
    """The Ray node this process runs on ('' outside Ray).

    Outside Ray it does not ask (``get_runtime_context`` would start or join a cluster to answer).
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return ""
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - not in a Ray worker or driver
        return ""


def untracked(method: Any) -> Any:
    """An actor method that Ray does not record task events for (``method.options(enable_task_events=False)``).

    The runtime calls a few methods many times a second for hours (inference, drains, status); Ray would keep an
    event record of each call in its control store, a memory cost that grows with the session for nothing we use.
    """
    return method.options(enable_task_events=False)
