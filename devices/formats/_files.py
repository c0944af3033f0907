"""File checks shared by the readers: existence, magic bytes, and what a file really is.

Readers call :func:`require_file` and :func:`require_magic` before handing a path to a third-party parser, so a
missing, empty or mislabelled file is reported in one line that names the file ("'x.edf' is not an EDF file:
it starts like an XDF file") instead of a library traceback.
"""

from __future__ import annotations

from pathlib import Path

from devices.errors import RecordingFormatError

#: Leading bytes of the binary formats we know, by format name (longest-first matters only for display).
MAGIC: dict[str, bytes] = {
    "xdf": b"XDF:",
    "edf": b"0       ",  # EDF version field: "0" padded with spaces to 8 bytes
    "bdf": b"\xffBIOSEMI",
    "mat5": b"MATLAB 5.0 MAT-file",
    "mat73": b"MATLAB 7.3 MAT-file",
    "gzip": b"\x1f\x8b",
    "zip": b"PK\x03\x04",
    "hdf5": b"\x89HDF\r\n\x1a\n",
}

#: How the formats are called in messages.
DISPLAY = {
    "xdf": "an XDF",
    "edf": "an EDF",
    "bdf": "a BDF",
    "mat5": "a MATLAB v5",
    "mat73": "a MATLAB v7.3 (HDF5)",
    "gzip": "a gzip",
    "zip": "a zip",
    "hdf5": "an HDF5",
    "pickle": "a pickle",
    "csv": "a CSV",
}

# First opcodes of a pickle: PROTO (protocol >= 2) or the container openers protocols 0/1 start with.
_PICKLE_FIRST = (b"\x80", b"(", b"}", b"]")


def require_file(path: str | Path) -> Path:
    """Return ``path`` as a Path to an existing, non-empty regular file; raise naming the problem otherwise."""
    path = Path(path).expanduser()
    if not path.exists():
        raise RecordingFormatError(f"'{path}' does not exist")
    if path.is_dir():
        raise RecordingFormatError(f"'{path}' is a directory, not a file")
    if path.stat().st_size == 0:
        raise RecordingFormatError(f"'{path}' is empty (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise RecordingFormatError(f"'{path}' cannot be read: {(err.strerror or type(err).__name__).lower()}") from None
    return path


def read_head(path: Path, n_bytes: int = 64) -> bytes:
    """Return the first ``n_bytes`` of ``path`` (fewer if the file is shorter)."""
    with open(path, "rb") as f:
        return f.read(n_bytes)


def sniff(head: bytes) -> str | None:
    """Return the format the leading bytes ``head`` belong to (a key of :data:`MAGIC`, ``"pickle"``), or None."""
    for name, magic in MAGIC.items():
        if head.startswith(magic):
            return name
    if head[:1] in _PICKLE_FIRST:
        return "pickle"
    return None


def looks_like_text(head: bytes) -> bool:
    """Return True when ``head`` has no NUL bytes and decodes as UTF-8 (allowing a character cut at the end)."""
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # a multi-byte character cut by the sniffing window
    return True


def require_magic(path: Path, expected: str) -> None:
    """Raise unless ``path`` starts with the magic bytes of format ``expected`` (a key of :data:`MAGIC`).

    The message names the file, the format it should be and, where recognisable, the format it is.
    """
    head = read_head(path, 64)
    if head.startswith(MAGIC[expected]):
        return
    raise RecordingFormatError(f"'{path}' is not {DISPLAY[expected]} file: {describe_head(head, expected)}")


def describe_head(head: bytes, expected: str) -> str:
    """Say what a file starting with ``head`` looks like, for a 'not an X file' message."""
    actual = sniff(head)
    if actual is not None and actual != expected:
        return f"it starts like {DISPLAY[actual]} file ({head[:8]!r})"
    if len(head) < len(MAGIC.get(expected, b"")):
        return f"it has only {len(head)} bytes"
    return f"it starts with {head[:8]!r} instead of {MAGIC.get(expected, b'')!r}"
