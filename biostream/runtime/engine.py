"""The inference engine: one bundle, one ONNX Runtime session, windows in, class probabilities out.

Plain Python (no Ray), so it is easy to test and reuse; :mod:`biostream.runtime.inference` batches requests to
it inside an actor. torch is never imported here: a bundle is read with :func:`bridges.bundle.parse_bundle` and
its graph opened with :func:`bridges.ort_session.open_session`, the one way every bridged pipeline is run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from bridges.bundle import Bundle, parse_bundle, read_bundle
from bridges.ort_session import OrtSession, open_session
from devices.errors import BadInputError

logger = logging.getLogger(__name__)


class InferenceError(RuntimeError):
    """A batch the model could not run, or whose output is unusable (one line)."""


class InferenceEngine:
    """Run a bundle's bridged pipeline on batches of windows.

    Parameters
    ----------
    bundle : Bundle, bytes, str or Path
        A read bundle, a bundle's bytes, a ``*.bxb`` path or ``"demo"``.
    device : str
        ``"auto"`` (the CUDA provider where a GPU is present, else CPU), ``"cpu"`` or ``"cuda"``.
    threads : int or None
        ONNX Runtime intra-op threads (None: one per core).

    Attributes
    ----------
    bundle : Bundle
        The bundle.
    provider : str
        The execution provider running the graph.
    provider_note : str
        Why it is not the one asked for first ('' when it is).
    """

    def __init__(self, bundle: Bundle | bytes | str | Path, *, device: str = "auto", threads: int | None = 1) -> None:
        if isinstance(bundle, (bytes, bytearray)):
            bundle = parse_bundle(bytes(bundle), "<bundle bytes>", check_onnx=False)
        elif not isinstance(bundle, Bundle):
            bundle = read_bundle(bundle, check_onnx=False)  # the session below is the real check of the graph
        self.bundle = bundle
        spec = bundle.manifest.input
        self.input_shape = (spec.n_channels, spec.n_samples)
        self.n_classes = bundle.manifest.task.n_classes
        ort = open_session(bundle.onnx_bytes, device=device, threads=threads)
        self._ort: OrtSession = ort
        self.provider = ort.provider
        self.provider_note = ort.note
        self.n_windows = 0
        self.busy_s = 0.0

    def predict(self, windows: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch of windows.

        Parameters
        ----------
        windows : array of shape (n, n_channels, n_samples)
            Raw windows at the bundle's rate and length, finite (the quality gate keeps others out).

        Returns
        -------
        array of shape (n, n_classes), float32
            Rows of probabilities.

        Raises
        ------
        BadInputError
            Wrong shape or non-finite values (a bug upstream: the runtime never sends those).
        InferenceError
            ONNX Runtime failed, or gave non-finite probabilities.
        """
        x = np.ascontiguousarray(windows, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self.input_shape:
            raise BadInputError(
                f"bundle '{self.bundle.manifest.task.name}' takes windows of shape (n, {self.input_shape[0]}, "
                f"{self.input_shape[1]}), got {x.shape}"
            )
        if x.shape[0] == 0:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        if not np.isfinite(x).all():
            raise BadInputError("windows with NaN/Inf must not reach the model")
        start = time.perf_counter()
        try:
            (out,) = self._ort.session.run([self.bundle.output_name], {self.bundle.input_name: x})
        except Exception as err:  # onnxruntime raises its own types; one line is what the user needs
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise InferenceError(f"ONNX Runtime failed on a batch of {x.shape[0]}: {first}") from None
        self.busy_s += time.perf_counter() - start
        self.n_windows += x.shape[0]
        if out.shape != (x.shape[0], self.n_classes) or not np.isfinite(out).all():
            raise InferenceError(f"the model returned unusable probabilities (shape {out.shape}, non-finite values)")
        return out.astype(np.float32, copy=False)
