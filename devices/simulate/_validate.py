"""Argument checks for the simulator, raising :class:`~devices.errors.BadInputError` (exit code 2 in the CLI)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from devices._checks import check_value, ensure_int, ensure_positive
from devices.errors import BadInputError


def choose(value: Any, allowed: Iterable[Any], name: str) -> Any:
    """Return ``value`` if it is one of ``allowed``; raise BadInputError naming the allowed values otherwise."""
    try:
        return check_value(value, allowed, name)
    except ValueError as err:
        raise BadInputError(str(err)) from None


def positive(value: Any, name: str) -> float:
    """Return ``value`` as a finite float > 0; raise BadInputError otherwise."""
    try:
        return ensure_positive(value, name)
    except (TypeError, ValueError) as err:
        raise BadInputError(str(err)) from None


def seed_int(value: Any) -> int:
    """Return ``value`` as a non-negative integer seed; raise BadInputError otherwise."""
    try:
        return ensure_int(value, "seed", minimum=0)
    except (TypeError, ValueError) as err:
        raise BadInputError(str(err)) from None
