"""One entry point for every recording format: a registry of readers and format detection.

``read_recording(path)`` picks the reader from the file's extension or folder layout and checks the file's
leading bytes, so a file whose content does not match its extension is reported rather than misread. A file
with an unknown extension is read by its magic bytes when they are unambiguous (XDF, EDF, BDF: e.g. ISRUC's
EDF+ ``.rec`` files).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from devices.errors import RecordingFormatError
from devices.formats._files import read_head, sniff
from devices.formats.csv_reader import read_csv
from devices.formats.edf import read_bdf, read_edf
from devices.formats.fog import read_fog
from devices.formats.isruc import read_isruc_path
from devices.formats.wesad import read_wesad
from devices.formats.xdf_reader import read_xdf
from devices.recording import Recording

logger = logging.getLogger(__name__)

Reader = Callable[[Path], Recording]

#: Format name → reader taking a path.
READERS: dict[str, Reader] = {
    "xdf": read_xdf,
    "edf": read_edf,
    "bdf": read_bdf,
    "csv": read_csv,
    "wesad": read_wesad,
    "isruc": read_isruc_path,
    "fog": read_fog,  # a task file of the freezing-of-gait set; .txt, so only by name (format="fog")
}
#: Names accepted for ``format``: the readers plus ``auto``.
FORMAT_NAMES = ("auto", *READERS)
#: File extension → format.
EXTENSIONS = {".xdf": "xdf", ".edf": "edf", ".bdf": "bdf", ".csv": "csv", ".tsv": "csv"}
_WESAD_FILE = re.compile(r"^S\d+\.pkl$")
_WESAD_DIR = re.compile(r"^S\d+$")
_ISRUC_FILE = re.compile(r"^subject\d+\.mat$")
# Magic-byte formats a file of unknown extension may be read as.
_SNIFFABLE = ("xdf", "edf", "bdf")


def detect_format(path: str | Path) -> str:
    """Return the format name of ``path`` from its extension or layout (and, failing those, its magic bytes).

    Raises
    ------
    RecordingFormatError
        The path does not exist or matches no known format.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise RecordingFormatError(f"'{path}' does not exist")
    if path.is_dir():
        return _detect_dir(path)
    suffix = path.suffix.lower()
    if path.parent.parent.name == "RawData" and path.name == f"{path.parent.name}_1.txt":
        return "isruc"  # an ISRUC label file: read the subject it belongs to
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if suffix == ".pkl":
        if _WESAD_FILE.match(path.name):
            return "wesad"
        raise RecordingFormatError(f"'{path}': pickles are read only in the WESAD layout S<k>/S<k>.pkl")
    if suffix == ".mat":
        if _ISRUC_FILE.match(path.name):
            return "isruc"
        raise RecordingFormatError(f"'{path}': .mat files are read only in the ISRUC layout subject<k>.mat")
    kind = sniff(read_head(path, 64))
    if kind in _SNIFFABLE:
        logger.info("'%s': unknown extension %r, reading it as %s by its magic bytes", path, suffix, kind)
        return kind
    known = sorted({*EXTENSIONS, ".pkl", ".mat"})
    raise RecordingFormatError(
        f"'{path}': unknown recording extension {suffix or '(none)'!r} (known: {', '.join(known)}); "
        f"pass format= one of {list(READERS)}"
    )


def _detect_dir(path: Path) -> str:
    if _WESAD_DIR.match(path.name):
        return "wesad"
    if (path / "ExtractedChannels").is_dir() or (path.name.isdigit() and path.parent.name == "RawData"):
        return "isruc"
    raise RecordingFormatError(
        f"'{path}' is a folder but neither a WESAD subject (S<k>/S<k>.pkl) nor an ISRUC layout "
        "(ExtractedChannels/subject<k>.mat, RawData/<k>/<k>_1.txt)"
    )


def read_recording(path: str | Path, format: str = "auto") -> Recording:  # noqa: A002 - CLI option name
    """Read a recording of any supported format into a :class:`~devices.recording.Recording`.

    Parameters
    ----------
    path : str or Path
        A file (``.xdf``, ``.edf``, ``.bdf``, ``.csv``, WESAD ``S<k>.pkl``, ISRUC ``subject<k>.mat``) or a
        folder (WESAD ``S<k>/``, ISRUC ``RawData/<k>/`` or a root holding one subject).
    format : str
        ``"auto"`` (detect) or one of :data:`READERS`.

    Returns
    -------
    Recording
        ``info["source"]`` and ``info["format"]`` are always set.

    Raises
    ------
    RecordingFormatError
        Unknown format or extension, missing file, truncated file, wrong content for the extension, missing
        channels, malformed CSV (:class:`~devices.errors.UnsafePickleError` for a refused pickle); the message
        is one line naming the file.
    """
    name = str(format).lower()
    if name not in FORMAT_NAMES:
        raise RecordingFormatError(f"unknown recording format {format!r}; has to be one of {list(FORMAT_NAMES)}")
    path = Path(path).expanduser()
    try:
        if not path.exists():
            raise RecordingFormatError(f"'{path}' does not exist")
        if name == "auto":
            name = detect_format(path)
        recording = READERS[name](path)
    except RecordingFormatError as err:
        if str(path) in str(err) or path.name in str(err):
            raise
        raise RecordingFormatError(f"'{path}': {err}") from None  # the message names the file, always
    except PermissionError:
        raise RecordingFormatError(f"'{path}' cannot be read: permission denied") from None
    except OSError as err:  # a name too long, an I/O error, a vanished mount: the system's word for it
        raise RecordingFormatError(f"'{path}' cannot be read: {err.strerror or err}") from None
    recording.info.setdefault("source", str(path))
    recording.info.setdefault("format", name)
    logger.info("read '%s' as %s: %d streams", path, name, len(recording))
    return recording
