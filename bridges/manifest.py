"""The bundle manifest (``manifest.json``, DESIGN.md §5): task, input contract and provenance of a bridge bundle.

Frozen dataclasses that check and normalise their fields on construction (lists become tuples, numpy scalars
become Python numbers, NaN is refused), and :meth:`Manifest.from_dict` that also refuses missing and unknown
keys. Every error is one line naming the key by its dotted path (``'input.sfreq_hz'``). No torch here: the
runtime reads manifests without it.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from bridges.input_scaling import INPUT_SCALINGS, scaling_from_steps
from devices.errors import BadInputError

__all__ = [
    "RANDOM_INIT",
    "SCHEMA_VERSION",
    "BridgeInfo",
    "BundleError",
    "FMInfo",
    "InputInfo",
    "Manifest",
    "ManifestError",
    "Provenance",
    "TaskInfo",
]

SCHEMA_VERSION = 1
RANDOM_INIT = "random-init"
_SHA256 = re.compile(r"[0-9a-f]{64}")

#: Most samples per channel one model window may hold (an hour at 2 kHz); more is a broken manifest.
MAX_WINDOW_SAMPLES = 7_200_000


class BundleError(BadInputError):
    """A bundle that cannot be used: unreadable, incomplete, inconsistent or not built. One-line message."""


class ManifestError(BundleError):
    """A manifest key that is missing, unknown or ill-typed; :attr:`key` is its dotted path."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"manifest key '{key}' {problem}")

    def within(self, section: str) -> ManifestError:
        """The same error with ``section.`` prefixed to the key."""
        return ManifestError(f"{section}.{self.key}", self.problem)


# ---------------------------------------------------------------------------------------------- field checks


def _bad(key: str, what: str, value: Any) -> ManifestError:
    return ManifestError(key, f"must be {what}, got {value!r} instead.")


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _bad(key, "a non-empty string", value)
    return value


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise _bad(key, f"an integer >= {minimum}", value)
    return int(value)


def _positive(value: Any, key: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise _bad(key, "a finite number > 0", value)
    return float(value)


def _strings(value: Any, key: str, *, min_len: int = 0) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) < min_len:
        raise _bad(key, f"a list of at least {min_len} strings", value)
    return tuple(_str(item, f"{key}[{k}]") for k, item in enumerate(value))


def _json(value: Any, key: str, *, numbers_only: bool = False) -> Any:
    """Canonical JSON form of ``value`` (tuples → lists, numpy scalars → Python), refusing NaN and non-JSON."""
    if isinstance(value, Mapping):
        out = {}
        for name, item in value.items():
            if not isinstance(name, str):
                raise _bad(key, "an object with string keys", value)
            out[name] = _json(item, f"{key}.{name}", numbers_only=numbers_only)
        return out
    if isinstance(value, (list, tuple)):
        return [_json(item, f"{key}[{k}]", numbers_only=numbers_only) for k, item in enumerate(value)]
    if isinstance(value, bool):
        if numbers_only:
            raise _bad(key, "a finite number", value)
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not math.isfinite(value):
            raise _bad(key, "a finite number", value)
        return float(value)
    if numbers_only or not (value is None or isinstance(value, str)):
        raise _bad(key, "a finite number" if numbers_only else "a JSON value", value)
    return value


def _object(value: Any, key: str, *, numbers_only: bool = False) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _bad(key, "an object", value)
    return _json(value, key, numbers_only=numbers_only)


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # frozen dataclasses store their normalised fields this way


def _from_dict(cls: type, data: Any, key: str = "") -> Any:
    """Build dataclass ``cls`` from ``data`` after checking for missing and unknown keys.

    ``key`` is the dotted path of ``data`` in the manifest (``""`` at the top); errors name keys from the top.
    """
    if not isinstance(data, Mapping):
        raise _bad(key or "manifest", "an object", data)
    names = [f.name for f in fields(cls)]
    optional = getattr(cls, "_OPTIONAL", ())
    missing = [n for n in names if n not in data and n not in optional]
    unknown = sorted(set(data) - set(names))
    try:
        if missing:
            raise ManifestError(missing[0], "is missing.")
        if unknown:
            raise ManifestError(unknown[0], f"is unknown (known keys: {', '.join(names)}).")
        nested = getattr(cls, "_NESTED", {})
        kwargs = {n: _from_dict(nested[n], data[n], n) if n in nested else data[n] for n in names if n in data}
        return cls(**kwargs)
    except ManifestError as err:
        raise (err.within(key) if key else err) from None


def _now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _installed_version() -> str:
    try:
        return metadata.version("biostream")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------- manifest


@dataclass(frozen=True)
class TaskInfo:
    """What the model predicts.

    Parameters
    ----------
    name : str
        Task name (e.g. ``"stress"``, ``"sleep-wake"``).
    class_names : tuple of str
        Class names in the order of the model's output columns; at least 2, unique.
    """

    name: str
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        _set(self, "name", _str(self.name, "name"))
        names = _strings(self.class_names, "class_names", min_len=2)
        if len(set(names)) != len(names):
            raise _bad("class_names", "unique names", list(names))
        _set(self, "class_names", names)

    @property
    def n_classes(self) -> int:
        """Number of classes (columns of the output)."""
        return len(self.class_names)


@dataclass(frozen=True)
class InputInfo:
    """The raw window the model takes.

    Parameters
    ----------
    modality : str
        ``"ppg"``, ``"ecg"``, ``"eeg"``, ...
    channel_labels : tuple of str
        One label per channel, in the order of the window's channel axis.
    sfreq_hz : float
        Sampling rate of the window (Hz); streams are resampled to it.
    window_s : float
        Window length (s); ``window_s × sfreq_hz`` must be a whole number of samples.
    hop_s : float
        Default step between windows (s).
    units : tuple of str
        Unit of each channel (e.g. ``"mV"``), as the stream delivers it; ``""`` for arbitrary units.
    preprocessing : tuple of dict
        Steps the graph applies to the raw window, for information (each a dict with an ``"op"`` string, e.g.
        ``{"op": "bandpass", "low_hz": 0.5, "high_hz": 12.0}``); the runtime does not apply them again.
    input_scaling : str, optional
        Name of the input scaling among those steps (a key of ``bridges.input_scaling.INPUT_SCALINGS``, e.g.
        ``"minmax_pm1"``); it must agree with the steps. Optional: manifests written before it was recorded lack
        it, and :attr:`scaling` reads it from their steps (a ``zscore`` step: ``"zscore"``).
    """

    #: Keys a manifest may leave out (added to schema 1 later); left out of ``manifest.json`` when None.
    _OPTIONAL = ("input_scaling",)

    modality: str
    channel_labels: tuple[str, ...]
    sfreq_hz: float
    window_s: float
    hop_s: float
    units: tuple[str, ...]
    preprocessing: tuple[dict[str, Any], ...] = ()
    input_scaling: str | None = None

    def __post_init__(self) -> None:
        _set(self, "modality", _str(self.modality, "modality"))
        labels = _strings(self.channel_labels, "channel_labels", min_len=1)
        _set(self, "channel_labels", labels)
        for name in ("sfreq_hz", "window_s", "hop_s"):
            _set(self, name, _positive(getattr(self, name), name))
        samples = self.window_s * self.sfreq_hz
        if not samples <= MAX_WINDOW_SAMPLES:  # also catches inf: 1e308 Hz × 10 s
            raise ManifestError(
                "window_s", f"({self.window_s:g} s) at {self.sfreq_hz:g} Hz is {samples:g} samples per channel, "
                f"over the {MAX_WINDOW_SAMPLES:,} a window may hold."
            )
        if abs(samples - round(samples)) > 1e-6 * max(1.0, samples):
            raise ManifestError(
                "window_s", f"({self.window_s:g} s) at {self.sfreq_hz:g} Hz is {samples:g} samples, not a whole number."
            )
        units = self.units
        if isinstance(units, str) or not isinstance(units, (list, tuple)) or len(units) != len(labels):
            raise _bad("units", f"a list of {len(labels)} strings (one per channel)", units)
        if not all(isinstance(u, str) for u in units):
            raise _bad("units", "a list of strings", units)
        _set(self, "units", tuple(units))
        steps = self.preprocessing
        if isinstance(steps, (str, Mapping)) or not isinstance(steps, (list, tuple)):
            raise _bad("preprocessing", "a list of objects", steps)
        checked = []
        for k, step in enumerate(steps):
            step = _object(step, f"preprocessing[{k}]")
            _str(step.get("op"), f"preprocessing[{k}].op")
            checked.append(step)
        _set(self, "preprocessing", tuple(checked))
        if self.input_scaling is not None:
            if self.input_scaling not in INPUT_SCALINGS:
                raise _bad("input_scaling", f"one of {list(INPUT_SCALINGS)}", self.input_scaling)
            described = scaling_from_steps(checked)
            if described != self.input_scaling:
                steps_do = repr(described) if described else "no named scaling"
                raise ManifestError("input_scaling", f"is {self.input_scaling!r}, but the preprocessing steps do "
                                    f"{steps_do}.")

    @property
    def scaling(self) -> str | None:
        """The input scaling: :attr:`input_scaling`, else the one the steps describe (None without steps)."""
        if self.input_scaling is not None:
            return self.input_scaling
        return scaling_from_steps(self.preprocessing) if self.preprocessing else None

    @property
    def n_channels(self) -> int:
        """Channels per window."""
        return len(self.channel_labels)

    @property
    def n_samples(self) -> int:
        """Samples per channel in one window, ``round(window_s × sfreq_hz)``."""
        return round(self.window_s * self.sfreq_hz)


@dataclass(frozen=True)
class FMInfo:
    """One foundation model in the pipeline.

    Parameters
    ----------
    name : str
        Adapter name (``"hubert-ecg"``, ``"papagei"``, ``"labram"``) with its size, e.g. ``"hubert-ecg-small"``.
    checkpoint_sha256 : str
        SHA-256 (64 lowercase hex digits) of the checkpoint file it was loaded from, or ``"random-init"``.
    weights_sha256 : str, optional
        SHA-256 of the weights the bundle was built from (:func:`bridges.fm.checkpoints.state_sha256` of the
        state: for the old FM, FM and task head together, as ``fit-head`` left them). Optional: bundles written
        before it was recorded lack it.
    fine_tuned : bool, optional
        Whether those weights were trained after loading (the old FM unfrozen with its head). Optional, as
        ``weights_sha256``.
    pretrained : bool, optional
        Whether the FM was pretrained without labels in the run that built the bundle (``biostream bridge
        pretrain``), starting from ``checkpoint_sha256``, before any fine-tuning. Optional, as ``weights_sha256``.
    input_scaling : str, optional
        The input scaling the FM was fed in training (a key of ``bridges.input_scaling.INPUT_SCALINGS``).
        Optional, as ``weights_sha256``.
    """

    #: Keys a manifest may leave out (added to schema 1 later); left out of ``manifest.json`` when None.
    _OPTIONAL = ("weights_sha256", "fine_tuned", "pretrained", "input_scaling")

    name: str
    checkpoint_sha256: str = RANDOM_INIT
    weights_sha256: str | None = None
    fine_tuned: bool | None = None
    pretrained: bool | None = None
    input_scaling: str | None = None

    def __post_init__(self) -> None:
        _set(self, "name", _str(self.name, "name"))
        sha = self.checkpoint_sha256
        if not (sha == RANDOM_INIT or (isinstance(sha, str) and _SHA256.fullmatch(sha))):
            raise _bad("checkpoint_sha256", f"64 lowercase hex digits or {RANDOM_INIT!r}", sha)
        weights = self.weights_sha256
        if not (weights is None or (isinstance(weights, str) and _SHA256.fullmatch(weights))):
            raise _bad("weights_sha256", "64 lowercase hex digits", weights)
        for flag in ("fine_tuned", "pretrained"):
            if not (getattr(self, flag) is None or isinstance(getattr(self, flag), bool)):
                raise _bad(flag, "true or false", getattr(self, flag))
        if not (self.input_scaling is None or self.input_scaling in INPUT_SCALINGS):
            raise _bad("input_scaling", f"one of {list(INPUT_SCALINGS)}", self.input_scaling)


@dataclass(frozen=True)
class BridgeInfo:
    """Shape of the prototype low-rank bridge (``bridge.safetensors`` holds ``A``, ``B``, ``prototypes``).

    Parameters
    ----------
    rank : int
        Rank ``r``.
    n_prototypes : int
        Prototypes ``P``.
    n_tokens : int
        Tokens ``T`` of the old FM's layer-*j* input.
    d_in : int
        Width of the new FM's layer *i*.
    d_out : int
        Width of the old FM's layer-*j* input.
    """

    rank: int
    n_prototypes: int
    n_tokens: int
    d_in: int
    d_out: int

    def __post_init__(self) -> None:
        for f in fields(self):
            _set(self, f.name, _int(getattr(self, f.name), f.name, 1))

    @classmethod
    def from_config(cls, config: Any) -> BridgeInfo:
        """From a :class:`bridges.bridge.BridgeConfig` (read by attribute, so this module needs no torch)."""
        return cls(config.rank, config.n_prototypes, config.n_tokens, config.d_in, config.d_out)

    def tensor_shapes(self) -> dict[str, tuple[int, int]]:
        """Expected shapes of the bridge tensors: ``A`` (r, d_in), ``B`` (P·T, r), ``prototypes`` (d_out, P)."""
        return {
            "A": (self.rank, self.d_in),
            "B": (self.n_prototypes * self.n_tokens, self.rank),
            "prototypes": (self.d_out, self.n_prototypes),
        }


@dataclass(frozen=True)
class Provenance:
    """Where the bundle came from.

    Parameters
    ----------
    old_fm, new_fm : FMInfo
        The labeled-modality FM (layers *j*..end and the head) and the new-modality FM (stem and layers 0..*i*).
    layer_i : int
        New-FM layer whose output (mean-pooled) feeds the bridge.
    layer_j : int
        Old-FM layer whose input the bridge produces.
    bridge : BridgeInfo
        Bridge shape.
    training_data : dict
        Summary of the data (JSON values), e.g. ``{"source": "simulated stress", "n_pairs": 480}``.
    metrics : dict
        Test metrics: finite numbers, or nested objects / lists of them (e.g. a confusion matrix).
    trainable_parameters : int
        Parameters trained for this bundle (the bridge's).
    created_at : str
        ISO 8601 time of export (default: now, UTC).
    biostream_version : str
        Version of biostream that wrote the bundle (default: the installed one).
    """

    _NESTED = {"old_fm": FMInfo, "new_fm": FMInfo, "bridge": BridgeInfo}

    old_fm: FMInfo
    new_fm: FMInfo
    layer_i: int
    layer_j: int
    bridge: BridgeInfo
    training_data: dict[str, Any]
    metrics: dict[str, Any]
    trainable_parameters: int
    created_at: str = field(default_factory=_now_utc)
    biostream_version: str = field(default_factory=_installed_version)

    def __post_init__(self) -> None:
        for name, cls in self._NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise _bad(name, f"a {cls.__name__}", getattr(self, name))
        _set(self, "layer_i", _int(self.layer_i, "layer_i", 0))
        _set(self, "layer_j", _int(self.layer_j, "layer_j", 0))
        _set(self, "training_data", _object(self.training_data, "training_data"))
        _set(self, "metrics", _object(self.metrics, "metrics", numbers_only=True))
        _set(self, "trainable_parameters", _int(self.trainable_parameters, "trainable_parameters", 0))
        try:
            datetime.fromisoformat(_str(self.created_at, "created_at").replace("Z", "+00:00"))
        except ValueError:
            raise _bad("created_at", "an ISO 8601 time", self.created_at) from None
        _set(self, "biostream_version", _str(self.biostream_version, "biostream_version"))


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``: what the model predicts, from what input, and where it came from.

    Parameters
    ----------
    task : TaskInfo
        Classes.
    input : InputInfo
        The raw window contract.
    provenance : Provenance
        FMs, layers, bridge, data, metrics.
    schema_version : int
        Manifest schema; only :data:`SCHEMA_VERSION` is read.
    """

    _NESTED = {"task": TaskInfo, "input": InputInfo, "provenance": Provenance}

    task: TaskInfo
    input: InputInfo
    provenance: Provenance
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        for name, cls in self._NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise _bad(name, f"a {cls.__name__}", getattr(self, name))
        _check_schema(self.schema_version)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, not tuples); ``from_dict(to_dict(m)) == m``."""
        data = _json(asdict(self), "manifest")
        # Optional keys are left out when unset, as manifests were before them.
        for part, cls in ((data["provenance"]["old_fm"], FMInfo), (data["provenance"]["new_fm"], FMInfo),
                          (data["input"], InputInfo)):
            for key in cls._OPTIONAL:
                if part.get(key) is None:
                    part.pop(key, None)
        return {"schema_version": data.pop("schema_version"), **data}

    @classmethod
    def from_dict(cls, data: Any) -> Manifest:
        """Validate and build from a parsed ``manifest.json``.

        Raises
        ------
        BundleError
            Unknown schema version; :class:`ManifestError` for a missing, unknown or ill-typed key (named).
        """
        if not isinstance(data, Mapping):
            raise BundleError(f"manifest must be a JSON object, got {type(data).__name__} instead.")
        if "schema_version" not in data:
            raise ManifestError("schema_version", "is missing.")
        _check_schema(data["schema_version"])
        return _from_dict(cls, data)

    def to_json(self) -> str:
        """``manifest.json`` text (UTF-8, indented, NaN refused)."""
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def _check_schema(version: Any) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise _bad("schema_version", "an integer", version)
    if version != SCHEMA_VERSION:
        raise BundleError(f"unknown manifest schema version {version} (this biostream reads {SCHEMA_VERSION}).")
