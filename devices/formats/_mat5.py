"""What the variables of a MATLAB v5 .mat file declare, read without loading (or inflating) their data.

``scipy.io.loadmat`` allocates what a variable's dimensions declare and inflates compressed variables whole, and
``scipy.io.whosmat`` inflates them too: a few MB of zlib-compressed zeros can declare gigabytes. The ISRUC reader
walks the top-level elements here first, reads each variable's name, class and dimensions (inflating at most
:data:`_HEADER_BYTES` of a compressed one) and refuses sizes no recording has before scipy reads anything.

Layout (MAT-file format, level 5): a 128-byte header ending in the endian indicator ``IM`` (little-endian) or
``MI``, then data elements, each an 8-byte tag ``[type: uint32][byte count: uint32]`` and its bytes. A variable
is an ``miMATRIX`` (14) element, or an ``miCOMPRESSED`` (15) element holding a zlib stream of one. An
``miMATRIX`` starts with the array-flags sub-element (class in the low byte, complex flag ``0x800``), then the
dimensions (int32s) and the name (int8s); a sub-element whose tag's upper 16 bits are non-zero is "small": type
and byte count share the first four bytes and up to four data bytes follow.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

MI_INT8 = 1
MI_INT32 = 5
MI_UINT32 = 6
MI_MATRIX = 14
MI_COMPRESSED = 15
#: Bytes per element of the numeric MATLAB array classes (mxDOUBLE_CLASS = 6 ... mxUINT64_CLASS = 15).
CLASS_ITEMSIZE = {6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}
_COMPLEX_FLAG = 0x800
_HEADER_BYTES = 1 << 16  # how much of a compressed variable is inflated to read its header
_MAX_DIMS = 64


class MatHeaderError(ValueError):
    """The element structure of the file is not that of a MAT v5 file (cut or damaged); the message says where."""


@dataclass(frozen=True)
class MatVariable:
    """One top-level variable as declared.

    Attributes
    ----------
    name : str
        Variable name.
    class_id : int
        MATLAB array class (6 double, 7 single, ... 15 uint64; 1 cell, 2 struct, 4 char, 5 sparse).
    shape : tuple of int
        Declared dimensions.
    declared_bytes : int or None
        Bytes the data takes once loaded (numeric classes only; None for others).
    offset : int
        Where its element starts in the file (bytes).
    compressed : bool
        Whether it is stored in an ``miCOMPRESSED`` element.
    """

    name: str
    class_id: int
    shape: tuple[int, ...]
    declared_bytes: int | None
    offset: int
    compressed: bool


def read_variable_headers(path: Path) -> list[MatVariable]:
    """Return the declared name, class and shape of every top-level variable of the MAT v5 file ``path``.

    Raises
    ------
    MatHeaderError
        The header or an element is cut or impossible (the message names the byte offset).
    """
    with open(path, "rb") as f:
        header = f.read(128)
        if len(header) < 128:
            raise MatHeaderError(f"the 128-byte MAT header is cut at byte {len(header)}")
        endian = {b"IM": "<", b"MI": ">"}.get(header[126:128])
        if endian is None:
            raise MatHeaderError(f"the endian indicator is {header[126:128]!r}, not 'IM' or 'MI'")
        f.seek(0, 2)
        size = f.tell()
        variables = []
        offset = 128
        while offset < size:
            f.seek(offset)
            tag = f.read(8)
            if len(tag) < 8:
                raise MatHeaderError(f"the element at byte {offset} is cut inside its tag")
            mdtype, n_bytes = struct.unpack(endian + "II", tag)
            end = offset + 8 + n_bytes
            if n_bytes == 0 or end > size:
                raise MatHeaderError(
                    f"the element at byte {offset} declares {n_bytes} bytes; the file has {size - offset - 8} left"
                )
            if mdtype == MI_COMPRESSED:
                body = _inflate_head(f.read(min(n_bytes, _HEADER_BYTES)), offset)
                variables.append(_matrix_header(body, endian, offset, compressed=True))
            elif mdtype == MI_MATRIX:
                body = tag + f.read(min(n_bytes, _HEADER_BYTES))
                variables.append(_matrix_header(body, endian, offset, compressed=False))
            else:
                raise MatHeaderError(f"the element at byte {offset} has type {mdtype}, not a variable (14 or 15)")
            offset = end
    return variables


def _inflate_head(compressed: bytes, offset: int) -> bytes:
    """Inflate at most :data:`_HEADER_BYTES` of the start of a zlib stream (never the whole variable)."""
    try:
        return zlib.decompressobj().decompress(compressed, _HEADER_BYTES)
    except zlib.error as err:
        raise MatHeaderError(f"the compressed variable at byte {offset} is damaged ({err})") from None


def _matrix_header(body: bytes, endian: str, offset: int, *, compressed: bool) -> MatVariable:
    """Parse the ``miMATRIX`` element that ``body`` starts with (its tag included)."""
    mdtype, _ = _unpack(endian + "II", body, 0, offset)
    if mdtype != MI_MATRIX:
        raise MatHeaderError(f"the variable at byte {offset} holds element type {mdtype}, not a matrix (14)")
    position = 8
    flags, position = _sub_element(body, endian, position, offset, "array flags")
    if len(flags) < 8:
        raise MatHeaderError(f"the variable at byte {offset} has cut array flags")
    flag_word = struct.unpack(endian + "I", flags[:4])[0]
    class_id = flag_word & 0xFF
    dims_raw, position = _sub_element(body, endian, position, offset, "dimensions")
    n_dims = len(dims_raw) // 4
    if not 2 <= n_dims <= _MAX_DIMS or len(dims_raw) % 4:
        raise MatHeaderError(f"the variable at byte {offset} declares {len(dims_raw)} bytes of dimensions")
    shape = struct.unpack(endian + "i" * n_dims, dims_raw)
    if min(shape) < 0:
        raise MatHeaderError(f"the variable at byte {offset} declares negative dimensions {shape}")
    name_raw, _ = _sub_element(body, endian, position, offset, "name")
    name = name_raw.decode("latin-1")
    declared = None
    if class_id in CLASS_ITEMSIZE:
        declared = CLASS_ITEMSIZE[class_id] * (2 if flag_word & _COMPLEX_FLAG else 1)
        for dim in shape:
            declared *= dim
    return MatVariable(name, class_id, tuple(shape), declared, offset, compressed)


def _sub_element(body: bytes, endian: str, position: int, offset: int, what: str) -> tuple[bytes, int]:
    """Return the data of the sub-element at ``position`` and where the next one starts (8-byte aligned)."""
    first, second = _unpack(endian + "II", body, position, offset, what)
    if first >> 16:  # small data element: [bytes: uint16][type: uint16] packed in the first word
        n_bytes = first >> 16
        if n_bytes > 4:
            raise MatHeaderError(f"the {what} of the variable at byte {offset} is a small element of {n_bytes} bytes")
        return body[position + 4 : position + 4 + n_bytes], position + 8
    start = position + 8
    if start + second > len(body):
        raise MatHeaderError(f"the {what} of the variable at byte {offset} declare {second} bytes, past its header")
    return body[start : start + second], start + second + (-second % 8)


def _unpack(fmt: str, body: bytes, position: int, offset: int, what: str = "tag") -> tuple[int, ...]:
    try:
        return struct.unpack_from(fmt, body, position)
    except struct.error:
        raise MatHeaderError(f"the variable at byte {offset} is cut inside its {what}") from None
