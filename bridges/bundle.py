"""The bridge bundle (``*.bxb``, DESIGN.md §5): one zip the runtime loads without executing code.

A bundle holds exactly three members: ``manifest.json`` (:class:`Manifest`: task, input contract, provenance),
``model.onnx`` (the whole bridged pipeline, raw window ``(batch, n_channels, n_samples)`` named ``"window"`` in →
class probabilities ``(batch, n_classes)`` named ``"probabilities"`` out) and ``bridge.safetensors`` (the bridge's
own weights, for inspection and fine-tuning; the ONNX graph already contains them).

Anything else in the zip is refused, not ignored: nothing reads it, so it can only be a mistake or tampering,
and refusing keeps "a bundle is these three inert files" checkable. This module imports neither torch nor ONNX
Runtime (the runtime reads bundles without torch); ``onnx`` is imported only when a graph is checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import struct
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bridges.input_scaling import INPUT_SCALINGS
from bridges.manifest import (
    RANDOM_INIT,
    SCHEMA_VERSION,
    BridgeInfo,
    BundleError,
    FMInfo,
    InputInfo,
    Manifest,
    ManifestError,
    Provenance,
    TaskInfo,
)
from devices.atomic import atomic_output

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_BUNDLE_NAME",
    "INPUT_NAME",
    "MEMBERS",
    "ORT_DISABLED_OPTIMIZERS",
    "OUTPUT_NAME",
    "RANDOM_INIT",
    "SCHEMA_VERSION",
    "BridgeInfo",
    "Bundle",
    "BundleError",
    "FMInfo",
    "InputInfo",
    "Manifest",
    "ManifestError",
    "Provenance",
    "TaskInfo",
    "bundle_summary",
    "check_onnx_graph",
    "demo_bundle_path",
    "parse_bundle",
    "read_bundle",
    "resolve_bundle_path",
    "write_bundle",
]

MANIFEST_MEMBER = "manifest.json"
MODEL_MEMBER = "model.onnx"
BRIDGE_MEMBER = "bridge.safetensors"
MEMBERS = (MANIFEST_MEMBER, MODEL_MEMBER, BRIDGE_MEMBER)
INPUT_NAME = "window"
OUTPUT_NAME = "probabilities"
DEMO_BUNDLE_NAME = "demo"

# ONNX Runtime graph rewrites that every session running a bundle must switch off (pass as
# ``InferenceSession(..., disabled_optimizers=list(ORT_DISABLED_OPTIMIZERS))``). "Pad_Fusion" folds a zero Pad into
# the next MaxPool's pads, but MaxPool pads with -inf, so any pooled window that is all negative changes (seen with
# ONNX Runtime 1.31 on PaPaGei's downsampling shortcut, which zero-pads and then max-pools).
ORT_DISABLED_OPTIMIZERS = ("Pad_Fusion",)

# Uncompressed size caps, checked before a member is read (a zip bomb is refused, not inflated). ONNX's protobuf
# cannot exceed 2 GiB anyway.
_MAX_BYTES = {MANIFEST_MEMBER: 1 << 20, MODEL_MEMBER: 2 << 30, BRIDGE_MEMBER: 1 << 30}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same content gives the same file hash


@dataclass(frozen=True)
class Bundle:
    """A bundle read and checked by :func:`read_bundle`.

    Attributes
    ----------
    path : Path
        The file read.
    manifest : Manifest
        Its manifest.
    onnx_bytes : bytes
        ``model.onnx``, to hand to ONNX Runtime.
    bridge_state : dict of str to ndarray
        ``bridge.safetensors``: ``A`` (r, d_in), ``B`` (P·T, r), ``prototypes`` (d_out, P), float.
    sha256 : str
        SHA-256 of the whole file (what a recording's header names).
    input_name, output_name : str
        Graph input and output names (:data:`INPUT_NAME`, :data:`OUTPUT_NAME`).
    input_shape, output_shape : tuple
        Graph shapes, a string for a symbolic axis: ``("batch", n_channels, n_samples)``, ``("batch", n_classes)``.
        Read from the graph when ``onnx_checked``, else the manifest's expectation.
    onnx_checked : bool
        Whether ``model.onnx`` was parsed and checked.
    """

    path: Path
    manifest: Manifest
    onnx_bytes: bytes = field(repr=False)
    bridge_state: dict[str, np.ndarray] = field(repr=False)
    sha256: str
    input_name: str
    output_name: str
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    onnx_checked: bool


def _graph_io(model: Any) -> tuple[list[tuple[str, int, tuple[int | str | None, ...]]], list[tuple[str, ...]]]:
    """``[(name, elem_type, shape)]`` of the graph's real inputs (initialisers excluded) and of its outputs."""

    def describe(value: Any) -> tuple[str, int, tuple[int | str | None, ...]]:
        tensor = value.type.tensor_type
        dims = []
        for dim in tensor.shape.dim if tensor.HasField("shape") else ():
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            else:
                dims.append(dim.dim_param or None)
        return value.name, tensor.elem_type, tuple(dims)

    initialisers = {init.name for init in model.graph.initializer}
    inputs = [describe(v) for v in model.graph.input if v.name not in initialisers]
    return inputs, [describe(v) for v in model.graph.output]


def _shape_text(shape: tuple[int | str | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def check_onnx_graph(onnx_bytes: bytes, manifest: Manifest) -> tuple[tuple[int | str, ...], tuple[int | str, ...]]:
    """Check that ``onnx_bytes`` loads and its I/O matches ``manifest``.

    The graph must have one float32 input :data:`INPUT_NAME` of shape ``(batch, n_channels, n_samples)`` and one
    float32 output :data:`OUTPUT_NAME` of shape ``(batch, n_classes)``, with a symbolic (dynamic) batch axis.

    Returns
    -------
    input_shape, output_shape : tuple
        As declared in the graph (a string for the symbolic batch axis).

    Raises
    ------
    BundleError
        One line saying what does not load or fit.
    """
    import onnx  # here, not at module level: a bundle can be read without parsing its graph

    try:
        model = onnx.load_model_from_string(onnx_bytes)
    except Exception as err:  # protobuf DecodeError: not a graph at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"{MODEL_MEMBER} is not a loadable ONNX model ({first}).") from None
    _check_self_contained(model)  # before the checker, which would try to open external files itself
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # onnx ValidationError and kin: not a usable graph
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BundleError(f"{MODEL_MEMBER} is not a loadable ONNX model ({first}).") from None
    inputs, outputs = _graph_io(model)
    spec, n_classes = manifest.input, manifest.task.n_classes
    expected = {INPUT_NAME: (spec.n_channels, spec.n_samples), OUTPUT_NAME: (n_classes,)}
    for role, found, name in (("input", inputs, INPUT_NAME), ("output", outputs, OUTPUT_NAME)):
        names = [item[0] for item in found]
        if names != [name]:
            raise BundleError(f"{MODEL_MEMBER} must have one {role} named {name!r}, it has {names}.")
        _, elem_type, shape = found[0]
        if elem_type != onnx.TensorProto.FLOAT:
            raise BundleError(f"{MODEL_MEMBER} {role} {name!r} must be float32, got ONNX type {elem_type}.")
        want = expected[name]
        want_text = _shape_text(("batch", *want))
        if len(shape) != len(want) + 1 or tuple(shape[1:]) != want:
            raise BundleError(
                f"{MODEL_MEMBER} {role} {name!r} has shape {_shape_text(shape)}, but the manifest needs {want_text} "
                f"({spec.n_channels} channels × {spec.window_s:g} s at {spec.sfreq_hz:g} Hz, {n_classes} classes)."
            )
        if not isinstance(shape[0], str):
            raise BundleError(
                f"{MODEL_MEMBER} {role} {name!r} has a fixed batch axis {_shape_text(shape)}; it must be dynamic."
            )
    return inputs[0][2], outputs[0][2]


#: Operator domains a bundle's graph may use: the standard ones ONNX Runtime implements itself.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


def _check_self_contained(model: Any) -> None:
    """Refuse a graph that would make the runtime read another file or load code: a bundle is data only.

    Tensors stored as external data name files that ONNX Runtime would open beside the working directory;
    operators of custom domains need a custom-op library to be loaded. Neither belongs in a bundle.
    """
    import onnx

    def tensors(graph: Any):
        yield from graph.initializer
        yield from graph.sparse_initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                if attribute.HasField("g"):
                    yield from tensors(attribute.g)
                for sub in attribute.graphs:
                    yield from tensors(sub)

    for tensor in tensors(model.graph):
        values = getattr(tensor, "values", tensor)  # sparse tensors keep their data in .values
        if values.data_location == onnx.TensorProto.EXTERNAL or len(values.external_data):
            raise BundleError(
                f"{MODEL_MEMBER} keeps tensor {values.name!r} in an external file; a bundle must hold all its data."
            )
    domains = {op.domain for op in model.opset_import} | {node.domain for node in _all_nodes(model.graph)}
    domains |= {f.domain for f in model.functions}
    custom = sorted(domains - STANDARD_DOMAINS)
    if custom:
        raise BundleError(
            f"{MODEL_MEMBER} uses operators of custom domain(s) {custom}; a bundle may use only standard operators."
        )


def _all_nodes(graph: Any):
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for sub in attribute.graphs:
                yield from _all_nodes(sub)


def _check_bridge_state(state: Mapping[str, np.ndarray], bridge: BridgeInfo) -> None:
    want = bridge.tensor_shapes()
    if set(state) != set(want):
        raise BundleError(f"{BRIDGE_MEMBER} must hold tensors {sorted(want)}, it holds {sorted(state)}.")
    for name, shape in want.items():
        if tuple(state[name].shape) != shape:
            raise BundleError(
                f"{BRIDGE_MEMBER} tensor {name!r} has shape {tuple(state[name].shape)}, the manifest's bridge "
                f"needs {shape}."
            )


def _load_bridge_state(data: bytes) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        return load(data)
    except (SafetensorError, ValueError) as err:
        raise BundleError(f"{BRIDGE_MEMBER} is not a safetensors file ({err}).") from None


def _bridge_bytes(bridge_state: Mapping[str, Any] | bytes) -> tuple[bytes, dict[str, np.ndarray]]:
    """Serialise a state dict (torch tensors or arrays) to safetensors bytes, or check given bytes."""
    from safetensors.numpy import save

    if isinstance(bridge_state, (bytes, bytearray)):
        data = bytes(bridge_state)
        return data, _load_bridge_state(data)
    arrays = {}
    for name, value in bridge_state.items():
        if hasattr(value, "detach"):  # a torch tensor; converted without importing torch here
            value = value.detach().cpu().contiguous().numpy()
        arrays[str(name)] = np.ascontiguousarray(value)
    return save(arrays, metadata={"format": "np"}), arrays


def write_bundle(
    path: str | Path, manifest: Manifest, onnx_bytes: bytes, bridge_state: Mapping[str, Any] | bytes
) -> Path:
    """Write a bundle atomically (a temporary file in the same folder, renamed into place).

    The graph and the bridge weights are checked against the manifest first, so a bundle that
    :func:`read_bundle` would refuse is never written.

    Parameters
    ----------
    path : str or Path
        Destination (``*.bxb``); its folder must exist.
    manifest : Manifest
        The manifest.
    onnx_bytes : bytes
        The serialised ONNX pipeline.
    bridge_state : dict of str to Tensor or ndarray, or bytes
        The bridge's state dict (``A``, ``B``, ``prototypes``), or ready ``bridge.safetensors`` bytes.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    BundleError
        The graph or the bridge weights do not fit the manifest, or the folder does not exist.
    """
    path = Path(path).expanduser()
    if not isinstance(manifest, Manifest):
        raise TypeError(f"'manifest' must be a Manifest, got {type(manifest).__name__} instead.")
    check_onnx_graph(onnx_bytes, manifest)
    bridge_bytes, arrays = _bridge_bytes(bridge_state)
    _check_bridge_state(arrays, manifest.provenance.bridge)
    if not path.parent.is_dir():
        raise BundleError(f"Cannot write bundle '{path}': folder '{path.parent}' does not exist.")
    with atomic_output(path) as temp, zipfile.ZipFile(temp, "w") as archive:
        contents = (manifest.to_json().encode("utf-8"), onnx_bytes, bridge_bytes)
        for name, data in zip(MEMBERS, contents, strict=True):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    logger.info("Wrote bundle '%s' (%d bytes).", path, path.stat().st_size)
    return path


#: How a member may be stored. bzip2 and LZMA members are refused: zipfile inflates each of their reads in one call,
#: with no bound on the output, so a few kB of them could expand to gigabytes before any size is checked.
_COMPRESSIONS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
# What zipfile raises for a damaged archive besides BadZipFile: impossible offsets (ValueError, OSError), a name
# that is not UTF-8 (UnicodeDecodeError, a ValueError), unknown versions and methods (NotImplementedError), cut
# records (EOFError, struct.error), encryption (RuntimeError), deflate errors (zlib.error).
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError, ValueError, OSError,
               struct.error)


def _read_members(data: bytes) -> dict[str, bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BundleError("not a bridge bundle (not a zip archive, or a truncated one).") from None
    except _ZIP_ERRORS as err:
        raise BundleError(f"not a bridge bundle (a damaged zip archive: {_first_line(err)}).") from None
    with archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        extra = sorted(set(names) - set(MEMBERS))
        if extra:
            raise BundleError(f"unexpected member {extra[0]!r} (a bundle holds only {', '.join(MEMBERS)}).")
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise BundleError(f"member {duplicated[0]!r} appears more than once.")
        missing = [n for n in MEMBERS if n not in names]
        if missing:
            raise BundleError(f"lacks member {missing[0]!r}.")
        members = {}
        for info in infos:
            limit = _MAX_BYTES[info.filename]
            if info.file_size > limit:
                raise BundleError(f"member {info.filename!r} is {info.file_size} bytes uncompressed, over the limit.")
            if info.compress_type not in _COMPRESSIONS:
                raise BundleError(
                    f"member {info.filename!r} uses compression method {info.compress_type}; a bundle's members are "
                    f"{' or '.join(_COMPRESSIONS.values())}."
                )
            members[info.filename] = _read_member(archive, info)
    return members


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """Read one member, inflating at most one byte more than its declared size (which was checked against the cap).

    ``ZipFile.read`` asks the decompressor for up to 2 GiB in one call and only then cuts the output to the declared
    size, so a member whose directory entry understates its size would be inflated whole; a bounded ``read(n)`` is
    not. The CRC is checked by zipfile when the declared size has been read.
    """
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size)
            more = member.read(1)
    except _ZIP_ERRORS as err:
        raise BundleError(f"member {info.filename!r} is corrupt or unreadable ({_first_line(err)}).") from None
    if more or len(data) != info.file_size:
        raise BundleError(
            f"member {info.filename!r} is corrupt: it does not hold the {info.file_size} bytes its entry declares."
        )
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _parse_manifest(data: bytes) -> Manifest:
    def refuse_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        parsed = json.loads(data.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError) as err:
        raise BundleError(f"{MANIFEST_MEMBER} is not valid JSON ({err}).") from None
    except RecursionError:
        raise BundleError(f"{MANIFEST_MEMBER} is nested too deeply to be a manifest.") from None
    return Manifest.from_dict(parsed)


def read_bundle(name_or_path: str | Path, *, check_onnx: bool = True) -> Bundle:
    """Read and validate a bundle; no code in it runs.

    Parameters
    ----------
    name_or_path : str or Path
        A ``*.bxb`` path, or ``"demo"`` for the shipped demo bundle (see :func:`resolve_bundle_path`).
    check_onnx : bool
        Parse ``model.onnx`` and check its input and output against the manifest (see :func:`check_onnx_graph`).

    Returns
    -------
    Bundle

    Raises
    ------
    BundleError
        One line naming the file and the reason: missing file, not a zip, missing or extra member, bad JSON,
        unknown schema version, missing / unknown / ill-typed manifest key, window not a whole number of samples,
        bridge weights that do not fit, ONNX not loadable or with I/O that disagrees with the manifest.
    """
    path = resolve_bundle_path(name_or_path)
    try:
        if not path.is_file():
            raise BundleError(f"Bundle '{path}': no such file.")
        data = path.read_bytes()  # one read: hash and content agree
    except OSError as err:  # permission denied, name too long, I/O error: the file, not our code
        raise BundleError(f"Bundle '{path}' cannot be read: {(err.strerror or type(err).__name__).lower()}.") from None
    return parse_bundle(data, path, check_onnx=check_onnx)


def parse_bundle(data: bytes, path: str | Path = "<bytes>", *, check_onnx: bool = True) -> Bundle:
    """Validate a bundle given as bytes (e.g. sent to another process); :func:`read_bundle` reads the file.

    Parameters
    ----------
    data : bytes
        The whole ``*.bxb`` file.
    path : str or Path
        Where it came from, for messages and :attr:`Bundle.path`.
    check_onnx : bool
        As for :func:`read_bundle`.

    Raises
    ------
    BundleError
        As for :func:`read_bundle`.
    """
    path = Path(path)
    try:
        members = _read_members(data)
        manifest = _parse_manifest(members[MANIFEST_MEMBER])
        bridge_state = _load_bridge_state(members[BRIDGE_MEMBER])
        _check_bridge_state(bridge_state, manifest.provenance.bridge)
        spec = manifest.input
        if check_onnx:
            input_shape, output_shape = check_onnx_graph(members[MODEL_MEMBER], manifest)
        else:
            input_shape = ("batch", spec.n_channels, spec.n_samples)
            output_shape = ("batch", manifest.task.n_classes)
    except BundleError as err:
        raise BundleError(f"Bundle '{path}': {err}") from None
    return Bundle(
        path=path,
        manifest=manifest,
        onnx_bytes=members[MODEL_MEMBER],
        bridge_state=bridge_state,
        sha256=hashlib.sha256(data).hexdigest(),
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_shape=tuple(input_shape),
        output_shape=tuple(output_shape),
        onnx_checked=check_onnx,
    )


# ---------------------------------------------------------------------------------------------- names, summary


def demo_bundle_path() -> Path:
    """Where the shipped demo bundle lives (``bridges/data/demo.bxb`` in the installed package), built or not."""
    return Path(str(resources.files("bridges").joinpath("data", "demo.bxb")))


def resolve_bundle_path(name_or_path: str | Path, *, data_dir: str | Path | None = None) -> Path:
    """Turn a bundle name or path into a path.

    Parameters
    ----------
    name_or_path : str or Path
        ``"demo"`` (the shipped demo bundle); any other value is a path (not checked for existence here).
    data_dir : str or Path, optional
        Folder holding named bundles (default: the package's ``bridges/data``).

    Raises
    ------
    BundleError
        ``"demo"`` asked for and the demo bundle has not been built.
    """
    if isinstance(name_or_path, str) and name_or_path == DEMO_BUNDLE_NAME:
        path = demo_bundle_path() if data_dir is None else Path(data_dir) / "demo.bxb"
        if not path.is_file():
            raise BundleError(
                f"The demo bundle is not built: '{path}' does not exist (run the demo bundle recipe to build it)."
            )
        return path
    return Path(name_or_path).expanduser()


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_format_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def _format_step(step: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k}={_format_value(v)}" for k, v in step.items() if k != "op")
    return f"{step['op']}({params})" if params else str(step["op"])


def bundle_summary(bundle: Bundle) -> list[str]:
    """Human-readable lines describing ``bundle`` (for ``biostream info``), without trailing newlines."""
    m = bundle.manifest
    spec, prov, bridge = m.input, m.provenance, m.provenance.bridge
    n_bytes = len(bundle.onnx_bytes)
    size = f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e6 else f"{n_bytes / 1e3:.0f} kB"
    channels = ", ".join(f"{label} [{unit or 'a.u.'}]" for label, unit in zip(spec.channel_labels, spec.units))
    steps = "; ".join(_format_step(step) for step in spec.preprocessing) or "none declared"

    def fm(info: FMInfo) -> str:
        origin = "random init" if info.checkpoint_sha256 == RANDOM_INIT else f"checkpoint {info.checkpoint_sha256}"
        if info.pretrained:
            origin += ", then pretrained without labels"
        if info.fine_tuned:
            origin += ", then fine-tuned"
        scaling = f", input {info.input_scaling}" if info.input_scaling else ""
        return f"{info.name} ({origin}){scaling}"

    scaling = spec.scaling
    if scaling is None:
        scaling_text = "not recorded"
    else:
        scaling_text = f"{scaling} ({INPUT_SCALINGS[scaling].description}"
        scaling_text += ")" if spec.input_scaling else "; read from the preprocessing steps)"

    def weights(info: FMInfo, what: str) -> list[str]:
        return [f"               weights sha256 {info.weights_sha256} ({what})"] if info.weights_sha256 else []

    lines = [
        f"bundle:        {bundle.path}",
        f"sha256:        {bundle.sha256}",
        f"task:          {m.task.name}: {m.task.n_classes} classes ({', '.join(m.task.class_names)})",
        f"input:         {spec.modality}, {spec.n_channels} channel(s): {channels}",
        f"window:        {spec.window_s:g} s at {spec.sfreq_hz:g} Hz ({spec.n_samples} samples), hop {spec.hop_s:g} s",
        f"preprocessing: {steps} (inside the graph)",
        f"input scaling: {scaling_text}",
        f"model:         {bundle.input_name} {_shape_text(bundle.input_shape)} -> "
        f"{bundle.output_name} {_shape_text(bundle.output_shape)}, {size} ONNX"
        + ("" if bundle.onnx_checked else " (graph not checked)"),
        f"new FM:        {fm(prov.new_fm)}, layers 0..{prov.layer_i}",
        *weights(prov.new_fm, "the FM"),
        f"old FM:        {fm(prov.old_fm)}, layers {prov.layer_j}..end + head",
        *weights(prov.old_fm, "the FM with its head"),
        f"bridge:        rank {bridge.rank}, {bridge.n_prototypes} prototypes, {bridge.n_tokens} tokens × "
        f"{bridge.d_out} (from {bridge.d_in}); {prov.trainable_parameters:,} trainable parameters",
        "training data: " + (", ".join(f"{k}={_format_value(v)}" for k, v in prov.training_data.items()) or "-"),
        "metrics:       " + (", ".join(f"{k}={_format_value(v)}" for k, v in prov.metrics.items()) or "-"),
        f"created:       {prov.created_at} by biostream {prov.biostream_version} (schema {m.schema_version})",
    ]
    return lines
