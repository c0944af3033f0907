"""One way to open an ONNX Runtime session on a bundle's graph, shared by export's verification and the runtime.

Every session that runs a bridged pipeline must be set up alike: the graph rewrites in
:data:`bridges.bundle.ORT_DISABLED_OPTIMIZERS` switched off, a known thread count, and a provider chain that asks
for CUDA only where a GPU is present (onnxruntime-gpu lists the CUDA provider on any machine, and asking for it
without a GPU or without CUDA 13 / cuDNN 9 prints a loud error before it falls back). After creating the session
we read which provider actually runs, so a failed CUDA load is detected and said, never assumed away.

No torch here: the runtime opens sessions without it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridges.bundle import ORT_DISABLED_OPTIMIZERS
from devices._checks import check_value

logger = logging.getLogger(__name__)

#: What :func:`open_session` accepts as ``device``.
DEVICES = ("auto", "cpu", "cuda")
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


class SessionError(RuntimeError):
    """ONNX Runtime could not load the graph (one line)."""


@dataclass(frozen=True)
class OrtSession:
    """An open session and what it runs on.

    Attributes
    ----------
    session : onnxruntime.InferenceSession
        The session.
    provider : str
        The execution provider that runs the graph (``"CUDAExecutionProvider"`` or ``"CPUExecutionProvider"``).
    requested : tuple of str
        The provider chain asked for.
    note : str
        Why the provider differs from the first one asked for ('' when it does not).
    """

    session: Any
    provider: str
    requested: tuple[str, ...]
    note: str = ""

    @property
    def on_gpu(self) -> bool:
        """True when the CUDA provider runs the graph."""
        return self.provider == CUDA_PROVIDER


def gpu_present() -> bool:
    """Whether this machine shows an NVIDIA GPU to its driver (without importing torch or CUDA libraries)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or Path("/dev/nvidia0").exists()


def provider_chain(device: str = "auto") -> tuple[str, ...]:
    """The providers to ask for: CUDA then CPU where a GPU is present (``"auto"``), or as ``device`` forces."""
    import onnxruntime as ort

    check_value(device, DEVICES, "device")
    cuda_built = CUDA_PROVIDER in ort.get_available_providers()
    if device == "cuda" or (device == "auto" and cuda_built and gpu_present()):
        return (CUDA_PROVIDER, CPU_PROVIDER)
    return (CPU_PROVIDER,)


def open_session(onnx_bytes: bytes, *, device: str = "auto", threads: int | None = 1) -> OrtSession:
    """Open an ONNX Runtime session set up as every bridged pipeline must run.

    Parameters
    ----------
    onnx_bytes : bytes
        The serialised graph (a bundle's ``model.onnx``).
    device : str
        ``"auto"`` (CUDA where a GPU is present, else CPU), ``"cpu"`` or ``"cuda"`` (CUDA asked for whatever the
        machine; a failed load falls back to CPU and says so).
    threads : int or None
        Intra-op threads (None: ONNX Runtime's default, one per core).

    Returns
    -------
    OrtSession

    Raises
    ------
    SessionError
        The graph does not load.
    """
    import onnxruntime as ort

    requested = provider_chain(device)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only; which provider runs is read back and reported by us
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(
            onnx_bytes, options, providers=list(requested), disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS)
        )
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SessionError(f"ONNX Runtime cannot load the graph: {first}") from None
    provider = session.get_providers()[0]
    note = ""
    if provider != requested[0]:
        note = f"{requested[0]} did not load (no usable GPU, CUDA 13 or cuDNN 9); running on {provider}"
        logger.warning("%s", note)
    logger.info("ONNX Runtime session on %s (%s threads)", provider, threads if threads is not None else "default")
    return OrtSession(session, provider, requested, note)
