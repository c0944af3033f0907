"""Crash logs: where the traceback of an unexpected failure (a bug in biostream) is written.

The command line prints one line pointing to the file; the file holds the command, the versions and the whole
traceback, ready to attach to a bug report. The folder is ``$BIOSTREAM_LOG_DIR`` when set, otherwise the per-user
state folder (``$XDG_STATE_HOME/biostream/logs``, by default ``~/.local/state/biostream/logs``; on macOS
``~/Library/Logs/biostream``; on Windows ``%LOCALAPPDATA%/biostream/logs``). One file per crash, named after
the time and the command.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import tempfile
import traceback
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

#: Environment variable naming the crash log folder (it is created when missing).
LOG_DIR_ENV = "BIOSTREAM_LOG_DIR"


def crash_log_dir() -> Path:
    """The folder crash logs go to (not created here)."""
    override = os.environ.get(LOG_DIR_ENV)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Logs" / "biostream"
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else home / "AppData" / "Local") / "biostream" / "logs"
    state = os.environ.get("XDG_STATE_HOME")
    return (Path(state) if state else home / ".local" / "state") / "biostream" / "logs"


def _slug(command: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", command).strip("-")[:40] or "biostream"


def _report(err: BaseException, argv: Sequence[str], when: datetime) -> str:
    try:
        from importlib.metadata import version

        ours = version("biostream")
    except Exception:  # noqa: BLE001 - not installed (a source checkout): the report still has the rest
        ours = "unknown"
    lines = [
        f"biostream {ours} crashed at {when.isoformat(timespec='seconds')}",
        f"command: biostream {' '.join(argv)}",
        f"python {platform.python_version()} on {platform.platform()}",
        f"working directory: {os.getcwd()}",
        "",
    ]
    return "\n".join(lines) + "\n" + "".join(traceback.format_exception(type(err), err, err.__traceback__))


def write_crash_log(err: BaseException, argv: Sequence[str], command: str) -> Path:
    """Write ``err``'s traceback to a new file in :func:`crash_log_dir`; return its path.

    Parameters
    ----------
    err : BaseException
        The unexpected failure (its ``__traceback__`` is written).
    argv : sequence of str
        The command line's arguments, recorded in the file.
    command : str
        The subcommand (e.g. ``"bridge train"``), part of the file name.

    Returns
    -------
    Path
        The file written. Where the folder cannot be created or written, the system's temporary folder is used.

    Raises
    ------
    OSError
        Neither folder could be written.
    """
    when = datetime.now()
    name = f"crash-{when:%Y%m%d-%H%M%S-%f}-{_slug(command)}-{os.getpid()}.log"
    text = _report(err, argv, when)
    failure: OSError | None = None
    for folder in (crash_log_dir(), Path(tempfile.gettempdir()) / "biostream-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            with path.open("x", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError as exc:
            failure = exc
    assert failure is not None
    raise failure
