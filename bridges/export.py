"""Export a bridged pipeline to ONNX, check it against torch with ONNX Runtime, and write the bundle.

The pipeline is any ``nn.Module`` mapping a raw new-modality window ``(B, C, L)`` to class probabilities
``(B, K)`` (preprocessing, new-FM layers 0..i, bridge, old-FM layers j..end, head, softmax). The graph's input is
named ``"window"`` and its output ``"probabilities"``; the batch axis is dynamic.

Two exporters exist in torch 2.13:

- ``"dynamo"`` (``torch.onnx.export(..., dynamo=True)``, torch's default since 2.9): traces with
  ``torch.export``, so shape arithmetic is evaluated exactly and only the batch axis stays symbolic. It needs the
  ``onnxscript`` package.
- ``"torchscript"`` (``dynamo=False``): deprecated but still present. It records Python integer arithmetic on
  traced sizes as graph ops and exports ``//`` as ONNX ``Div``, which truncates: ``-(-n // s)`` (a ceiling
  division, as in PaPaGei's SAME padding) becomes ``floor`` for odd ``n``, and the graph breaks there.

``"auto"`` picks ``dynamo`` when ``onnxscript`` is importable, else ``torchscript``. Whichever runs,
:func:`export_bundle` compares ONNX Runtime against torch and refuses to write a bundle that disagrees.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridges.bundle import (
    INPUT_NAME,
    OUTPUT_NAME,
    Bundle,
    Manifest,
    read_bundle,
    write_bundle,
)
from bridges.ort_session import SessionError, open_session
from devices._checks import check_value
from devices.atomic import write_bytes_atomic
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TOLERANCE",
    "EXPORTERS",
    "OPSET_VERSION",
    "ExportError",
    "default_exporter",
    "export_bundle",
    "export_onnx",
    "verify_export",
]

EXPORTERS = ("auto", "dynamo", "torchscript")
OPSET_VERSION = 18
DEFAULT_TOLERANCE = 1e-4
_BATCH_AXIS = "batch"


class ExportError(BadInputError):
    """A pipeline that cannot be exported, or whose ONNX graph disagrees with torch. One-line message."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def default_exporter() -> str:
    """``"dynamo"`` when ``onnxscript`` is installed, else ``"torchscript"`` (see the module notes)."""
    return "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"


def _check_window(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[0] < 1 or x.dtype != torch.float32:
        what = f"{tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ExportError(f"'{name}' must be a float32 tensor (batch >= 1, channels, samples), got {what}.")


#: Loggers of the exporters' internals; while exporting they pass errors only.
_EXPORTER_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch._dynamo", "torch._subclasses",
                     "torch.fx", "torch._functorch", "onnxscript", "onnx_ir", "torchvision")
#: Modules whose warnings during export are the exporter's business, not the user's.
_EXPORTER_MODULES = r"(torch|onnxscript|onnx_ir|onnx|torchvision|transformers)(\.|$)"


@contextlib.contextmanager
def _exporter_chatter_silenced() -> Iterator[None]:
    """Silence the exporters' own progress, deprecation notices and internal warnings (errors still raise).

    The dynamo exporter prints its stages (``[torch.onnx] Obtain model graph ...``) unless ``verbose=False``,
    which the callers pass; this also keeps its FutureWarnings and DeprecationWarnings (and those of the
    libraries it imports, such as torchvision when installed), the TorchScript tracer's warnings about Python
    numbers it records, its UserWarnings, and the internal loggers below ERROR from reaching the user.
    UserWarnings raised from the user's own modules still show.
    """
    loggers = [logging.getLogger(name) for name in _EXPORTER_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(max(log.getEffectiveLevel(), logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=UserWarning, module=_EXPORTER_MODULES)
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


def _export_dynamo(model: nn.Module, example: torch.Tensor) -> bytes:
    with _exporter_chatter_silenced():
        program = torch.onnx.export(
            model,
            (example,),
            None,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET_VERSION,
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim(_BATCH_AXIS)},),
            verbose=False,
        )
    return program.model_proto.SerializeToString()


def _export_torchscript(model: nn.Module, example: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    # The exporter announces its own deprecation, and the tracer warns about every Python int it records.
    with _exporter_chatter_silenced():
        torch.onnx.export(
            model,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET_VERSION,
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: _BATCH_AXIS}, OUTPUT_NAME: {0: _BATCH_AXIS}},
        )
    return buffer.getvalue()


def export_onnx(
    model: nn.Module, example: torch.Tensor, path: str | Path | None = None, *, exporter: str = "auto"
) -> bytes:
    """Export ``model`` to ONNX with a dynamic batch axis.

    Parameters
    ----------
    model : nn.Module
        Raw window ``(B, C, L)`` → probabilities ``(B, K)``; exported in eval mode (its mode is restored after).
    example : Tensor
        An example window, shape ``(1, C, L)`` (any batch size works), float32; fixes ``C`` and ``L``.
    path : str or Path, optional
        Also write the graph there.
    exporter : {"auto", "dynamo", "torchscript"}
        See the module notes; ``"dynamo"`` needs ``onnxscript``.

    Returns
    -------
    bytes
        The serialised ONNX model (opset :data:`OPSET_VERSION`, input ``"window"``, output ``"probabilities"``).

    Raises
    ------
    ExportError
        The exporter failed (its first message line is kept) or is unavailable.
    """
    check_value(exporter, EXPORTERS, "exporter")
    _check_window(example, "example")
    chosen = default_exporter() if exporter == "auto" else exporter
    if chosen == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise ExportError("The 'dynamo' ONNX exporter needs the onnxscript package; install it or use 'torchscript'.")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            data = _export_dynamo(model, example) if chosen == "dynamo" else _export_torchscript(model, example)
    except ExportError:
        raise
    except Exception as err:  # exporters raise many types; the user needs the first line, not the trace
        raise ExportError(f"ONNX export ({chosen}) of {type(model).__name__} failed: {_first_line(err)}") from None
    finally:
        model.train(was_training)
    logger.info("Exported %s to ONNX with the %s exporter (%d bytes).", type(model).__name__, chosen, len(data))
    if path is not None:
        write_bytes_atomic(Path(path).expanduser(), data)
    return data


def _run_both(model: nn.Module, onnx_bytes: bytes, inputs: torch.Tensor) -> tuple[float, np.ndarray]:
    """Max |ONNX Runtime − torch| over ``inputs`` as one batch and the first window alone; the ONNX output."""
    _check_window(inputs, "inputs")
    try:
        session = open_session(onnx_bytes, device="cpu", threads=None).session  # as the runtime runs it
    except SessionError as err:
        raise ExportError(str(err).replace("the graph", "the exported graph", 1)) from None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = model(inputs).detach().cpu().numpy()
    finally:
        model.train(was_training)
    batches = [(inputs, reference)] + ([(inputs[:1], reference[:1])] if inputs.shape[0] > 1 else [])
    worst, full = 0.0, None
    for batch, ref in batches:
        try:
            (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch.detach().cpu().numpy()})
        except Exception as err:
            raise ExportError(f"ONNX Runtime failed on a batch of {batch.shape[0]}: {_first_line(err)}") from None
        if out.shape != ref.shape:
            raise ExportError(f"ONNX output has shape {out.shape}, torch gives {ref.shape}.")
        diff = float(np.max(np.abs(out.astype(np.float64) - ref))) if out.size else 0.0
        worst = max(worst, diff if math.isfinite(diff) else math.inf)
        full = out if full is None else full
    return worst, full


def verify_export(model: nn.Module, onnx_bytes: bytes, inputs: torch.Tensor) -> float:
    """Largest absolute difference between ONNX Runtime (CPU provider) and torch on ``inputs``.

    The session is set up as the runtime's: default graph optimisations less
    :data:`bridges.bundle.ORT_DISABLED_OPTIMIZERS`.

    Parameters
    ----------
    model : nn.Module
        The torch pipeline (run in eval mode; its mode is restored after).
    onnx_bytes : bytes
        Its exported graph.
    inputs : Tensor
        Windows ``(N, C, L)``, float32; run as one batch and, when ``N > 1``, the first alone (the batch axis
        must be dynamic).

    Returns
    -------
    float
        ``max |onnx − torch|`` over all outputs; ``inf`` when either side produced NaN or infinity.

    Raises
    ------
    ExportError
        ONNX Runtime cannot load or run the graph, or the output shapes differ.
    """
    return _run_both(model, onnx_bytes, inputs)[0]


def export_bundle(
    path: str | Path,
    model: nn.Module,
    manifest: Manifest,
    bridge_module: nn.Module,
    *,
    inputs: torch.Tensor | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    exporter: str = "auto",
    random_state: int = 0,
) -> Bundle:
    """Export ``model``, verify the graph with ONNX Runtime, and write the bundle (nothing written on failure).

    Parameters
    ----------
    path : str or Path
        Destination ``*.bxb``.
    model : nn.Module
        The bridged pipeline: raw window ``(B, C, L)`` → class probabilities ``(B, K)``.
    manifest : Manifest
        Its manifest; ``C``, ``L`` (``window_s × sfreq_hz``) and ``K`` must match the model.
    bridge_module : nn.Module
        The trained bridge, whose ``state_dict()`` (``A``, ``B``, ``prototypes``) goes into ``bridge.safetensors``.
    inputs : Tensor, optional
        Windows ``(N, C, L)`` to verify on (real windows are best); default 4 standard-normal windows.
    tolerance : float
        Largest allowed ``max |onnx − torch|`` on the probabilities.
    exporter : {"auto", "dynamo", "torchscript"}
        See :func:`export_onnx`.
    random_state : int
        Seed of the default verification windows.

    Returns
    -------
    Bundle
        The written bundle, read back and checked by :func:`read_bundle`.

    Raises
    ------
    ExportError
        Export failed, ONNX and torch disagree beyond ``tolerance``, or the output is not probabilities.
    BundleError
        The graph or bridge weights do not fit the manifest.
    """
    spec = manifest.input
    shape = (spec.n_channels, spec.n_samples)
    if inputs is None:
        generator = torch.Generator().manual_seed(random_state)
        inputs = torch.randn((4, *shape), generator=generator)
    _check_window(inputs, "inputs")
    if tuple(inputs.shape[1:]) != shape:
        raise ExportError(
            f"'inputs' windows are {tuple(inputs.shape[1:])}, the manifest's input is {shape} "
            f"({spec.n_channels} channels × {spec.window_s:g} s at {spec.sfreq_hz:g} Hz)."
        )
    # The manifest names the input scaling; the graph must do that one (the runtime applies none of its own).
    done = getattr(getattr(getattr(model, "new_preprocess", None), "spec", None), "input_scaling", None)
    if spec.input_scaling is not None and done is not None and done != spec.input_scaling:
        raise ExportError(
            f"the manifest's input scaling is {spec.input_scaling!r}, but the model's preprocessing does {done!r}; "
            f"bundle '{path}' not written."
        )
    onnx_bytes = export_onnx(model, inputs[:1], exporter=exporter)
    diff, probabilities = _run_both(model, onnx_bytes, inputs)
    if not diff <= tolerance:
        raise ExportError(
            f"ONNX Runtime and torch disagree by {diff:.3g} (> {tolerance:g}) on {inputs.shape[0]} windows; "
            f"bundle '{path}' not written."
        )
    row_sums = probabilities.sum(axis=1)
    if probabilities.min() < -1e-6 or np.max(np.abs(row_sums - 1.0)) > 1e-3:
        raise ExportError(
            f"the model's output is not class probabilities (rows sum to {row_sums.min():.3g}..{row_sums.max():.3g}); "
            "end the pipeline with a softmax."
        )
    n_trainable = sum(p.numel() for p in bridge_module.parameters() if p.requires_grad)
    if n_trainable != manifest.provenance.trainable_parameters:
        logger.warning(
            "Manifest says %d trainable parameters; the bridge module has %d.",
            manifest.provenance.trainable_parameters,
            n_trainable,
        )
    logger.info("ONNX Runtime matches torch within %.2g on %d windows.", diff, inputs.shape[0])
    write_bundle(path, manifest, onnx_bytes, bridge_module.state_dict())
    return read_bundle(Path(path))
