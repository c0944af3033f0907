"""TOML configuration for the method's steps: one file, one section per step, command-line flags override.

Each section maps onto a frozen dataclass; a key the dataclass does not have is an error naming it (and the keys
that exist), and a value of the wrong type is an error naming the key. Paths are resolved relative to the
config file.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from devices.errors import BadInputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

T = TypeVar("T")


class ConfigError(BadInputError):
    """A configuration file or override that does not fit its schema."""


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing or malformed file gives a one-line :class:`ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file '{path}' is not text (byte {err.start} is not UTF-8); a TOML file is "
                          "expected") from None
    except IsADirectoryError:
        raise ConfigError(f"config file '{path}' is a directory") from None
    except PermissionError:
        raise ConfigError(f"config file '{path}' cannot be read: permission denied") from None
    except OSError as err:  # name too long, I/O error, ...: the file, not our code
        raise ConfigError(f"config file '{path}' cannot be read: {err.strerror or type(err).__name__}") from None


def _matches(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_matches(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def build_section(cls: type[T], values: dict[str, Any], *, where: str) -> T:
    """Instantiate dataclass ``cls`` from ``values``; unknown keys and ill-typed values raise :class:`ConfigError`.

    Parameters
    ----------
    cls : dataclass type
        The section's schema.
    values : dict
        Keys and values read from the file (and overrides).
    where : str
        Where the values come from, for messages (e.g. ``"run.toml [train]"``).
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]  # init=False: derived, not a key
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys are {names}")
    for key, value in values.items():
        if not _matches(value, hints[key]):
            raise ConfigError(f"{where}: '{key}' must be {hints[key]}, got {value!r}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None


def load_sections(
    path: str | Path | None, schema: dict[str, type], overrides: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Read the config file (optional) and build every section of ``schema``, applying ``overrides`` on top.

    Parameters
    ----------
    path : str, Path or None
        TOML file; None uses the schema's defaults.
    schema : dict of str to dataclass type
        Section name → schema. A section absent from the file takes its defaults.
    overrides : dict of str to dict
        Per-section values from command-line flags; ``None`` values are ignored (flag not given).

    Returns
    -------
    dict of str to dataclass instance
    """
    raw = read_toml(path) if path is not None else {}
    where_file = str(path) if path is not None else "defaults"
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ConfigError(f"{where_file}: unknown section(s) {unknown}; known sections are {sorted(schema)}")
    sections = {}
    for name, cls in schema.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{where_file}: [{name}] must be a table, got {type(table).__name__} {table!r}")
        values = dict(table)
        flags = {key: value for key, value in (overrides or {}).get(name, {}).items() if value is not None}
        values.update(flags)
        where = f"{where_file} [{name}]" + (" with command-line flags" if flags else "")
        sections[name] = build_section(cls, values, where=where)
    return sections


def to_dict(section: Any) -> dict[str, Any]:
    """A section as a plain dict (for JSON results)."""
    return dataclasses.asdict(section)
