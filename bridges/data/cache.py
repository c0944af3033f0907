"""On-disk cache of built paired windows, keyed by the source files' identity and the build parameters."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bridges.data.windows import PairedWindows
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

#: Bump when the way windows are built changes, so old caches are not reused.
CACHE_VERSION = 2  # 2: windows cut by devices.windowing, as live (quality, per-window resampling)


def cache_key(name: str, params: Mapping[str, Any], files: Sequence[str | Path] = ()) -> str:
    """SHA-256 (hex) of the builder name, its parameters and each file's (path, size, mtime).

    Parameters
    ----------
    name : str
        Builder name (``"wesad"``, ``"isruc"``, ``"simulated"``).
    params : mapping
        JSON-serialisable build parameters.
    files : sequence of path
        Source files; a changed size or modification time gives a new key.
    """
    identity = []
    for f in files:
        path = Path(f).expanduser().resolve()
        stat = path.stat()
        identity.append([str(path), stat.st_size, stat.st_mtime_ns])
    payload = {"name": name, "version": CACHE_VERSION, "params": params, "files": identity}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cached(
    cache_dir: str | Path | None,
    name: str,
    params: Mapping[str, Any],
    files: Sequence[str | Path],
    build: Callable[[], PairedWindows],
) -> PairedWindows:
    """Return the cached windows for (name, params, files), or build, save (atomically) and return them.

    With ``cache_dir=None`` this just calls ``build``. An unreadable cache file is rebuilt and replaced.
    """
    if cache_dir is None:
        return build()
    path = Path(cache_dir).expanduser() / f"{name}-{cache_key(name, params, files)[:24]}.npz"
    if path.is_file():
        try:
            windows = PairedWindows.load(path)
        except BadInputError as err:
            logger.warning("ignoring unreadable cache %s (%s); rebuilding", path, err)
        else:
            logger.info("paired windows from cache %s (%d windows)", path, len(windows))
            windows.info["cache"] = {"path": str(path), "hit": True}
            return windows
    windows = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    windows.save(path)
    logger.info("paired windows cached to %s (%d windows)", path, len(windows))
    windows.info["cache"] = {"path": str(path), "hit": False}
    return windows
