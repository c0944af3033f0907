"""Validation helpers shared by every package (the ground floor, so anyone may import them).

Messages follow one pattern: "'name' must be <what>, got <value>!r instead."
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def check_type(value: Any, types: type | tuple[type | None, ...], name: str) -> Any:
    """Raise TypeError unless ``value`` is an instance of ``types`` (``None`` allowed in the tuple)."""
    if not isinstance(types, tuple):
        types = (types,)
    resolved = tuple(type(None) if t is None else t for t in types)
    if not isinstance(value, resolved):
        names = ", ".join("None" if t is None else t.__name__ for t in types)
        raise TypeError(f"'{name}' must be an instance of {names}, got {type(value).__name__} instead.")
    return value


def ensure_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as int; raise if it is not integral or below ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"'{name}' must be an integer, got {value!r} instead.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"'{name}' must be >= {minimum}, got {value!r} instead.")
    return value


def ensure_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a finite float > 0 (or >= 0 with ``allow_zero``)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"'{name}' must be a number, got {value!r} instead.") from None
    ok = math.isfinite(number) and (number >= 0 if allow_zero else number > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"'{name}' must be a finite number {bound}, got {value!r} instead.")
    return number


def check_value(value: Any, allowed: Iterable[Any], name: str) -> Any:
    """Raise ValueError unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"'{name}' is {value!r}, but has to be one of {allowed}.")
    return value


def ensure_path(path: Any, *, must_exist: bool) -> Path:
    """Return ``path`` as a Path; raise FileNotFoundError naming it if it must exist and does not."""
    path = Path(path).expanduser()
    if must_exist and not path.exists():
        raise FileNotFoundError(f"No such file or directory: '{path}'.")
    return path
