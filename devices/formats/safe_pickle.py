"""Load untrusted pickles that should hold only numpy arrays inside builtin containers.

A pickle can name any importable callable and have it called while loading (``os.system`` included). The
:class:`RestrictedUnpickler` resolves only an allow-list of globals: the ones numpy arrays and scalars need
to be rebuilt, whether written by Python 2 / numpy 1 (``numpy.core.multiarray``) or numpy 2
(``numpy._core.multiarray``), plus ``_codecs.encode``, which protocol 0-2 pickles written by Python 3 use to
carry ``bytes``. Anything else raises :class:`~devices.errors.UnsafePickleError` before it is imported or
called. Dicts, lists, tuples, strings and numbers need no globals at all.
"""

from __future__ import annotations

import codecs
import pickle
import pickletools
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from devices.errors import RecordingFormatError, UnsafePickleError

try:
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy < 2 has only the old names
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric  # type: ignore[no-redef]

#: (module, name) → object, for every global a pickled numpy array/scalar may reference.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED_GLOBALS[(_module, "_reconstruct")] = _multiarray._reconstruct
    ALLOWED_GLOBALS[(_module, "scalar")] = _multiarray.scalar
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED_GLOBALS[(_module, "_frombuffer")] = _numeric._frombuffer


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside :data:`ALLOWED_GLOBALS`.

    Parameters
    ----------
    file : binary file
        The pickle stream.
    source : str
        What to call the pickle in error messages (usually its path).
    encoding : str
        How to decode Python 2 ``str`` objects; ``"latin1"`` keeps numpy's byte buffers intact.
    """

    def __init__(self, file: Any, source: str, encoding: str = "latin1") -> None:
        super().__init__(file, encoding=encoding)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return an allowed global; raise :class:`UnsafePickleError` for anything else (never imported)."""
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"'{self._source}' was refused: the pickle asks for {module}.{name}, which is not a numpy "
                "array or builtin (only numpy arrays in dicts/lists are accepted)"
            ) from None


def load_untrusted_pickle(path: str | Path, encoding: str = "latin1") -> Any:
    """Load a pickle file with :class:`RestrictedUnpickler`.

    Parameters
    ----------
    path : str or Path
        The pickle file.
    encoding : str
        Decoding of Python 2 strings (``"latin1"`` for numpy data written by Python 2, as WESAD's).

    Raises
    ------
    UnsafePickleError
        The pickle references a global outside the allow-list (nothing was executed).
    RecordingFormatError
        The file is truncated or not a pickle.
    """
    path = Path(path)
    with open(path, "rb") as f:
        problem = declared_size_problem(f, path.stat().st_size)
        if problem:
            raise RecordingFormatError(f"'{path}' is not a readable pickle: {problem}")
        f.seek(0)
        try:
            return RestrictedUnpickler(f, str(path), encoding=encoding).load()
        except UnsafePickleError:
            raise
        except EOFError:
            raise RecordingFormatError(f"'{path}' is truncated: the pickle ends before its STOP opcode") from None
        except (MemoryError, OverflowError):
            # The C unpickler allocates what a length field declares before reading it: a 14-byte file can ask
            # for 2**50 bytes. Nothing was read into that memory; say what the file claims.
            size = path.stat().st_size
            raise RecordingFormatError(
                f"'{path}' is not a readable pickle: it declares more data than its {size} bytes hold"
            ) from None
        except (pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise RecordingFormatError(f"'{path}' is not a readable pickle: {message}") from None


#: Memo indices a pickle may use ahead of the objects it has stored: picklers number them 0, 1, 2, ... in order.
_MEMO_SLACK = 1024
_LENGTH_WIDTHS = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_TWO_LINES = {"GLOBAL", "INST"}


def declared_size_problem(f: BinaryIO, size: int) -> str:
    """What a pickle declares that its ``size`` bytes cannot hold, or ``""``; nothing is unpickled.

    The C unpickler allocates what the opcodes declare before reading it: a data length (``BINBYTES8``, a
    ``FRAME``) of petabytes, or a memo index of a billion, which makes it allocate and clear a table of 16 GB
    for one 5-byte opcode. The opcodes are walked here, payloads skipped, and a length past the end of the
    file or a memo index far ahead of the objects stored so far is reported with its byte offset.

    Parameters
    ----------
    f : binary file
        The pickle, positioned at its start (left at an unspecified position).
    size : int
        The file's size in bytes.
    """
    puts = 0
    while True:
        at = f.tell()
        code = f.read(1)
        if not code:
            return ""  # cut before STOP: the unpickler says so
        op = _CODES.get(code)
        if op is None or op.name == "STOP":
            return ""  # an unknown opcode is the unpickler's to report
        if op.name in _PUTS:
            puts += 1
        argument = op.arg
        if argument is None:
            continue
        if argument.n == pickletools.UP_TO_NEWLINE:
            lines = [f.readline() for _ in range(2 if op.name in _TWO_LINES else 1)]
            if op.name == "PUT" and lines[0].strip().isdigit() and int(lines[0]) > puts + _MEMO_SLACK:
                return f"memo index {int(lines[0])} at byte {at} is far ahead of the {puts} objects stored so far"
            continue
        if argument.n >= 0:
            raw = f.read(argument.n)
            if op.name in ("BINPUT", "LONG_BINPUT") and len(raw) == argument.n:
                index = int.from_bytes(raw, "little")
                if index > puts + _MEMO_SLACK:
                    return f"memo index {index} at byte {at} is far ahead of the {puts} objects stored so far"
            if op.name == "FRAME" and len(raw) == 8 and int.from_bytes(raw, "little") > size - f.tell():
                return f"it declares more data than its {size} bytes hold (a frame at byte {at})"
            continue
        width, signed = _LENGTH_WIDTHS[argument.n]
        raw = f.read(width)
        if len(raw) < width:
            return ""
        length = int.from_bytes(raw, "little", signed=signed)
        if length < 0 or length > size - f.tell():
            return f"it declares more data than its {size} bytes hold ({length} bytes at byte {at})"
        f.seek(length, 1)


_CODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}
