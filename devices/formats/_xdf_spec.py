"""Facts of the XDF 1.0 container format shared by our writer and reader (https://github.com/sccn/xdf).

A file is the magic ``b"XDF:"`` followed by chunks. Each chunk is::

    [NumLengthBytes: 1, 4 or 8 (1 byte)] [Length (that many bytes, little-endian)] [Tag (uint16)] [Content]

where ``Length`` counts the tag and the content. Tags: 1 FileHeader (XML), 2 StreamHeader (uint32 stream id +
XML), 3 Samples (stream id + samples), 4 ClockOffset (stream id + collection time + offset, two doubles),
5 Boundary (a fixed 16-byte UUID that lets a reader resynchronise), 6 StreamFooter (stream id + XML).
All numbers are little-endian. Header and footer XML is built by :func:`info_xml` and :func:`element_xml`.
"""

from __future__ import annotations

import re
import struct
from typing import Any
from xml.sax.saxutils import escape

from devices.errors import BadInputError

MAGIC = b"XDF:"

TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6
TAGS = {
    TAG_FILE_HEADER: "FileHeader",
    TAG_STREAM_HEADER: "StreamHeader",
    TAG_SAMPLES: "Samples",
    TAG_CLOCK_OFFSET: "ClockOffset",
    TAG_BOUNDARY: "Boundary",
    TAG_STREAM_FOOTER: "StreamFooter",
}

_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Characters XML 1.0 cannot hold at all (even escaped): most C0 controls, lone surrogates, U+FFFE/U+FFFF.
_NOT_XML_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

#: The Boundary chunk's content (a UUID fixed by the specification).
BOUNDARY_UUID = bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")

#: Little-endian sample value types by channel format.
VALUE_DTYPES = {
    "float32": "<f4",
    "double64": "<f8",
    "int8": "<i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
}


def encode_varlen(value: int) -> bytes:
    """Encode a non-negative integer as XDF's variable-length integer (a width byte 1/4/8, then the value)."""
    if value < 0:
        raise ValueError(f"XDF lengths are non-negative, got {value}")
    if value < 1 << 8:
        return bytes((1, value))
    if value < 1 << 32:
        return b"\x04" + struct.pack("<I", value)
    return b"\x08" + struct.pack("<Q", value)


def encode_chunk(tag: int, content: bytes) -> bytes:
    """Return a whole chunk: length field, tag and ``content`` (which includes the stream id, if any)."""
    body = struct.pack("<H", tag) + content
    return encode_varlen(len(body)) + body


#: Most channels a stream may declare (a 1024-electrode grid fits; 2³¹ would be allocated per sample).
MAX_CHANNELS = 65536


def xml_text(value: Any) -> str:
    """``value`` as XML character data: escaped, and characters XML cannot hold replaced by U+FFFD.

    Text may come from a stream's metadata (anyone's); one control character would make the whole file
    unreadable to XML parsers.
    """
    return escape(_NOT_XML_CHARS.sub("\ufffd", str(value)))


def info_xml(fields: dict[str, str], tail: str = "") -> str:
    """Return ``<?xml ...?><info>`` with one text element per field, then the raw XML ``tail``."""
    body = "".join(f"<{k}>{xml_text(v)}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0"?><info>{body}{tail}</info>'


def element_xml(tag: str, value: Any) -> str:
    """Serialise ``value`` as XML: str → text, dict → child elements, list → repeated ``tag`` elements."""
    check_xml_name(tag, f"desc element {tag!r}")
    if isinstance(value, list):
        return "".join(element_xml(tag, item) for item in value)
    if isinstance(value, dict):
        return f"<{tag}>{''.join(element_xml(k, v) for k, v in value.items())}</{tag}>"
    if value is None:
        return f"<{tag}/>"
    return f"<{tag}>{xml_text(value)}</{tag}>"


def check_xml_name(name: str, what: str) -> None:
    """Raise :class:`~devices.errors.BadInputError` unless ``name`` can be an XML element name."""
    if not is_xml_name(name):
        raise BadInputError(f"XDF {what} is not a valid XML element name")


def is_xml_name(name: str) -> bool:
    """Return True when ``name`` is a safe XML element name (letters, digits, ``_.-``; not ``xml...``)."""
    return bool(_XML_NAME.match(name)) and not name.lower().startswith("xml")
