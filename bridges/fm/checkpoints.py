"""Loading published FM checkpoints safely: no pickled code, one-line errors that name the file and the keys.

``torch.load`` unpickles, and unpickling can run arbitrary code, so every ``.pt``/``.pth`` here goes through
``torch.load(weights_only=True)`` (tensors, containers and plain builtins only). Checkpoints that pickle a config
object can have that object read as an inert :class:`PickledRecord` (attributes only, no constructor or method
of the original class runs). Trusting the file (``trust_pickle=True``) is an explicit opt-in.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import pickletools
import re
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = [
    "CheckpointError",
    "PickledRecord",
    "UnsafeCheckpointError",
    "check_state_keys",
    "file_sha256",
    "load_safetensors",
    "load_torch_checkpoint",
    "load_torch_state",
    "pickled_globals",
    "state_sha256",
    "strip_prefix",
]

# Longest list of key names quoted in one error message; the rest are counted.
_MAX_KEYS_SHOWN = 6


class CheckpointError(BadInputError):
    """A checkpoint file that is missing, unreadable or does not fit the model it is loaded into."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint whose pickle asks for code (a class or function outside the allowlist); refused unread."""


class PickledRecord:
    """Inert stand-in for an object pickled in a checkpoint (e.g. a config): its attributes and nothing else.

    Unpickling one only creates an empty instance and updates its ``__dict__``; no code of the original class
    runs. ``pickled_name`` is the fully qualified name the pickle asked for.
    """

    pickled_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Return the pickled attributes as a plain dict."""
        return dict(vars(self))

    def __repr__(self) -> str:
        return f"PickledRecord({self.pickled_name}, {len(vars(self))} attributes)"


def _record_class(full_name: str) -> type[PickledRecord]:
    short = full_name.rsplit(".", 1)[-1]
    return type(f"PickledRecord_{short}", (PickledRecord,), {"pickled_name": full_name})


def _refused_code(message: str) -> str | None:
    """Return what torch's 'Weights only load failed' message says was refused; None if not code."""
    pattern = r"(Unsupported global: GLOBAL [\w.]+|Trying to [^\n]*?(?=\.?\n|\.?$)|Can only [^\n]*)"
    match = re.search(pattern, message)
    return match.group(1).rstrip(". ") if match else None


def pickled_globals(path: str | Path) -> list[str]:
    """List the globals (``"module.name"``) the pickle of a zip-format ``torch.save`` file refers to, unexecuted.

    The pickle opcodes are only disassembled (``pickletools.genops``), never run, so this is safe on any file. It
    lets a loader decide which config classes to read as :class:`PickledRecord` before loading.

    Parameters
    ----------
    path : str or Path
        The checkpoint file.

    Returns
    -------
    list of str
        Names in order of first appearance; empty for legacy (non-zip) files or unreadable pickles.
    """
    path = Path(path).expanduser()
    try:
        with zipfile.ZipFile(path) as archive:
            member = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
            if member is None:
                return []
            data = archive.read(member)
    except (OSError, zipfile.BadZipFile):
        return []
    names: list[str] = []
    strings: list[str] = []  # string pushes so far, for protocol-4 STACK_GLOBAL (module, name)
    memo: dict[int, str | None] = {}
    last: str | None = None  # the value the previous opcode pushed, when it was a string
    try:
        for opcode, arg, _ in pickletools.genops(data):
            pushed: str | None = None
            if opcode.name == "GLOBAL":
                module, name = str(arg).split(" ", 1)
                names.append(f"{module}.{name}")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            elif opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                pushed = str(arg)
            elif opcode.name in ("BINGET", "LONG_BINGET", "GET"):
                pushed = memo.get(int(arg))
            elif opcode.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                # Storing into the memo pushes nothing: the top of the stack stays what it was.
                memo[len(memo) if opcode.name == "MEMOIZE" else int(arg)] = last
                continue
            if pushed is not None:
                strings.append(pushed)
            last = pushed
    except Exception:  # noqa: BLE001 - a damaged pickle: report what was seen; torch.load will name the damage
        logger.debug("Pickle of '%s' could not be fully disassembled.", path)
    return list(dict.fromkeys(names))


def load_torch_checkpoint(
    path: str | Path,
    *,
    trust_pickle: bool = False,
    records: Iterable[str] = (),
) -> Any:
    """Load a ``torch.save`` file without executing pickled code.

    Parameters
    ----------
    path : str or Path
        The ``.pt``/``.pth``/``.bin`` file.
    trust_pickle : bool
        When True, load with ``weights_only=False``: the file may run arbitrary code. Only for files you trust.
    records : iterable of str
        Fully qualified class names (``"package.module.Class"``) that may appear in the pickle; each is read as an
        inert :class:`PickledRecord` holding the pickled attributes instead of an instance of that class.
        (Allowlisting goes through ``torch.serialization.safe_globals``, process-wide for the duration of the
        load, so do not load untrusted files from other threads at the same time.)

    Returns
    -------
    object
        Whatever was saved (usually a dict of tensors or of nested dicts), tensors on the CPU.

    Raises
    ------
    CheckpointError
        The file is missing or not a torch checkpoint.
    UnsafeCheckpointError
        The pickle refers to a global outside the allowlist and ``trust_pickle`` is False.
    """
    path = _existing_file(path)
    if trust_pickle:
        logger.warning("Loading '%s' with full unpickling (trust_pickle=True): it may run code.", path)
        try:
            return torch.load(path, map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001 - any failure of a trusted load is still a bad file
            raise CheckpointError(f"Checkpoint '{path}' could not be read: {type(err).__name__}: {err}") from None
    allowed = [(_record_class(name), name) for name in records]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _refused_code(str(err))
        if reason is None:
            detail = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"Checkpoint '{path}' is not a readable torch checkpoint: {detail}") from None
        raise UnsafeCheckpointError(
            f"Checkpoint '{path}' was refused unread: its pickle needs code ({reason}); "
            "pass trust_pickle=True only if you trust the file."
        ) from None
    except Exception as err:  # noqa: BLE001 - the weights-only unpickler runs no file code; any failure = bad file
        first = str(err).splitlines()[0] if str(err) else ""
        detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
        raise CheckpointError(f"Checkpoint '{path}' is not a readable torch checkpoint: {detail}") from None


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def load_torch_state(
    path: str | Path,
    trust_pickle: bool = False,
    *,
    keys: Sequence[str] = ("state_dict", "model_state_dict", "model"),
    records: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """Load a state dict (name → tensor) from a ``torch.save`` file, without executing pickled code.

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    trust_pickle : bool
        Allow full unpickling (see :func:`load_torch_checkpoint`).
    keys : sequence of str
        When the file holds a dict of sub-objects rather than a state dict, the first of these top-level keys
        whose value is a state dict is used.
    records : iterable of str
        Class names to read as inert records (see :func:`load_torch_checkpoint`).

    Returns
    -------
    dict of str to Tensor
        Parameter and buffer tensors on the CPU.
    """
    obj = load_torch_checkpoint(path, trust_pickle=trust_pickle, records=records)
    if _is_state_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in keys:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key])
        top = ", ".join(repr(k) for k in list(obj)[:_MAX_KEYS_SHOWN])
        raise CheckpointError(
            f"Checkpoint '{path}' holds no state dict under any of {list(keys)}; its top-level keys are {top}."
        )
    raise CheckpointError(f"Checkpoint '{path}' holds a {type(obj).__name__}, not a state dict.")


def _existing_file(path: str | Path) -> Path:
    """``path`` (``~`` expanded) if it is a file; else CheckpointError naming it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Checkpoint '{path}' does not exist or is not a file.")
    return path


def load_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load every tensor of a ``.safetensors`` file onto the CPU (no pickle involved).

    Raises
    ------
    CheckpointError
        The file is missing or not a valid safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = _existing_file(path)
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"Checkpoint '{path}' is not a readable safetensors file: {detail}") from None


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` header (empty when it has none).

    Raises
    ------
    CheckpointError
        The file is missing or not a valid safetensors file.
    """
    from safetensors import SafetensorError, safe_open

    path = _existing_file(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"Checkpoint '{path}' is not a readable safetensors file: {detail}") from None


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from the start of every key that has it; other keys are kept unchanged.

    Parameters
    ----------
    state : mapping of str to Tensor
        A state dict.
    prefix : str
        E.g. ``"module."`` or ``"student."``.

    Returns
    -------
    dict of str to Tensor
        A new dict (tensors are shared, not copied).
    """
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}


def _quote(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_KEYS_SHOWN])
    extra = len(names) - _MAX_KEYS_SHOWN
    return f"{shown} (+{extra} more)" if extra > 0 else shown


def check_state_keys(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise one error naming every missing, unexpected and mis-shaped key of ``state`` for ``module``.

    Parameters
    ----------
    module : nn.Module
        The model the state dict is meant for.
    state : mapping of str to Tensor
        The state dict to check (after any renaming).
    what : str
        What the state came from, for the message (e.g. the checkpoint path).

    Raises
    ------
    CheckpointError
        Keys or shapes do not match; the message is one line.
    """
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected)
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_quote(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_quote(unexpected)}")
    if misshaped:
        problems.append(f"{len(misshaped)} mis-shaped (file vs model): {_quote(misshaped)}")
    if problems:
        raise CheckpointError(f"Checkpoint {what} does not fit {type(module).__name__}: " + "; ".join(problems) + ".")


def file_sha256(path: str | Path, *, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (checkpoints can be GBs).

    Raises
    ------
    CheckpointError
        The file does not exist.
    """
    path = _existing_file(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def state_sha256(state: Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 of a state dict's tensors, independent of how they are stored.

    Each tensor in name order contributes its name, dtype, shape and raw bytes (on the CPU, contiguous,
    native byte order). A module's ``state_dict()`` and the ``.safetensors`` file it was saved to hash the same,
    so a bundle's recorded weights hash can be checked against the run's artefacts.

    Parameters
    ----------
    state : mapping of str to Tensor
        Tensors by name (e.g. ``module.state_dict()`` or :func:`safetensors.torch.load_file`).

    Returns
    -------
    str
        64 lowercase hex digits.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
