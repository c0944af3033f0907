"""Channel metadata in LSL stream descriptions (``desc/channels/channel/{label,unit,type}``).

Outlets built here carry labels, units and types; inlets read them back with :func:`read_channels` (which needs
the full info of an opened inlet, ``inlet.info()``: resolved infos carry no description).

Anyone on the network can publish a stream, so what a description says is read as untrusted text: a description
over :data:`MAX_DESC_BYTES` is ignored, labels, units and types lose control characters and are cut to
:data:`MAX_LABEL_CHARS`, duplicated labels are numbered, and a channel list that does not fit the channel count
is ignored. Each of these falls back to generic values and leaves a note saying so (:class:`ChannelMeta`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pylsl

#: pylsl format constants by XDF/LSL format name.
LSL_FORMATS = {
    "float32": pylsl.cf_float32,
    "double64": pylsl.cf_double64,
    "string": pylsl.cf_string,
    "int32": pylsl.cf_int32,
    "int16": pylsl.cf_int16,
    "int8": pylsl.cf_int8,
    "int64": pylsl.cf_int64,
}
FORMAT_NAMES = {code: name for name, code in LSL_FORMATS.items()}

#: Full stream info (XML) larger than this is not read for channel metadata (bytes). 1 KiB per channel of a
#: 1024-channel stream; real descriptions (labels, units, types, locations) are a few hundred bytes per channel.
MAX_DESC_BYTES = 1 << 20
#: Channel labels, units and types longer than this are cut (characters).
MAX_LABEL_CHARS = 64

# Characters never shown as they are: C0/C1 controls (newlines, escapes, NUL), lone surrogates, non-characters,
# and the bidirectional overrides that make text display in another order than it reads.
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe_text(value: object, limit: int = 80) -> str:
    """``value`` as one line of printable text: unsafe characters become U+FFFD, and it is cut to ``limit``.

    For showing text that came from the network (stream names, labels) in logs, terminals and widgets; it does
    not escape HTML (a widget that renders rich text must still escape it).

    Examples
    --------
    >>> safe_text("x" * 100, 10)
    'xxxxxxxxx…'
    """
    text = _UNSAFE_CHARS.sub("\ufffd", str(value))
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


@dataclass(frozen=True)
class ChannelMeta:
    """Channel labels, units and types read from a stream's description, and what was odd about it.

    Attributes
    ----------
    labels, units, types : tuple of str
        One per channel: ``ch1``… labels, '' units and the stream type where the description gives none.
    notes : tuple of str
        One line per fallback or repair (description ignored, labels cut or renamed); empty when it was clean.
    """

    labels: tuple[str, ...]
    units: tuple[str, ...]
    types: tuple[str, ...]
    notes: tuple[str, ...] = ()


def make_stream_info(
    name: str,
    lsl_type: str,
    sfreq_hz: float,
    channel_labels: Sequence[str],
    channel_units: Sequence[str] | None = None,
    channel_types: Sequence[str] | None = None,
    *,
    channel_format: str = "float32",
    source_id: str = "",
    manufacturer: str = "",
    extra: dict[str, str] | None = None,
) -> pylsl.StreamInfo:
    """Build a ``pylsl.StreamInfo`` whose description lists every channel's label, unit and type.

    Parameters
    ----------
    sfreq_hz : float
        Nominal rate in Hz (0 for irregular streams).
    extra : dict
        Additional ``desc`` children written as ``<key>value</key>``.
    """
    n = len(channel_labels)
    info = pylsl.StreamInfo(name, lsl_type, n, float(sfreq_hz), LSL_FORMATS[channel_format], source_id)
    desc = info.desc()
    if manufacturer:
        desc.append_child_value("manufacturer", manufacturer)
    for key, value in (extra or {}).items():
        desc.append_child_value(key, str(value))
    channels = desc.append_child("channels")
    units = list(channel_units) if channel_units else [""] * n
    types = list(channel_types) if channel_types else [lsl_type] * n
    for label, unit, ctype in zip(channel_labels, units, types):
        ch = channels.append_child("channel")
        ch.append_child_value("label", str(label))
        ch.append_child_value("unit", str(unit))
        ch.append_child_value("type", str(ctype))
    return info


def read_channels(info: pylsl.StreamInfo, max_desc_bytes: int = MAX_DESC_BYTES) -> ChannelMeta:
    """Read channel labels, units and types from a full stream info, falling back to safe values (see module).

    A channel's label is its ``<label>``, else its ``<name>`` (as some Polar H10 bridges write it). Only the direct
    ``<channel>`` children of the first ``desc/channels`` are read, and at most one more than the channel count.

    Parameters
    ----------
    info : pylsl.StreamInfo
        The full info of an opened inlet (``inlet.info()``).
    max_desc_bytes : int
        A description larger than this (the info's XML, in bytes) is ignored.

    Returns
    -------
    ChannelMeta
    """
    n = int(info.channel_count())
    stream_type = safe_text(info.type(), MAX_LABEL_CHARS)
    generic = ChannelMeta(tuple(f"ch{k + 1}" for k in range(n)), ("",) * n, (stream_type,) * n)
    notes: list[str] = []
    size = len(info.as_xml().encode("utf-8", "replace"))
    if size > max_desc_bytes:
        note = f"its description is {size:,} bytes (over {max_desc_bytes:,}): ignored, channels named ch1…ch{n}"
        return ChannelMeta(generic.labels, generic.units, generic.types, (note,))
    raw: list[tuple[str, str, str]] = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty() and len(raw) <= n:
        raw.append((ch.child_value("label") or ch.child_value("name"), ch.child_value("unit"), ch.child_value("type")))
        ch = ch.next_sibling("channel")
    if not raw:
        return generic  # no channel description at all: common (OpenBCI GUI, pylsl examples), nothing odd
    if len(raw) != n:
        count = f"more than {n}" if len(raw) > n else str(len(raw))
        note = f"its description lists {count} channel entries for {n} channels: ignored, channels named ch1…ch{n}"
        return ChannelMeta(generic.labels, generic.units, generic.types, (note,))
    labels, units, types = [], [], []
    unnamed: list[int] = []
    cut = 0
    seen: dict[str, int] = {}
    for k, (label, unit, ctype) in enumerate(raw):
        cleaned = [safe_text(v, MAX_LABEL_CHARS) for v in (label, unit, ctype)]
        cut += sum(c != v for c, v in zip(cleaned, (label, unit, ctype)))
        label, unit, ctype = cleaned
        if not label.strip():
            unnamed.append(k)
            label = f"ch{k + 1}"
        labels.append(label)
        units.append(unit)
        types.append(ctype or stream_type)
    if unnamed:
        notes.append(f"{len(unnamed)} channel(s) have no label: named {', '.join(labels[k] for k in unnamed[:4])}"
                     + ("…" if len(unnamed) > 4 else ""))
    if cut:
        notes.append(f"{cut} label/unit/type value(s) held control characters or were over {MAX_LABEL_CHARS} "
                     "characters: cleaned")
    renamed = []
    taken = {label.strip().lower() for label in labels}
    for k, label in enumerate(labels):
        key = label.strip().lower()
        if key not in seen:
            seen[key] = 1
            continue
        seen[key] += 1
        while f"{key}#{seen[key]}" in taken:  # "ECG#2" may be a label already
            seen[key] += 1
        labels[k] = f"{label}#{seen[key]}"
        taken.add(labels[k].strip().lower())
        renamed.append(labels[k])
    if renamed:
        notes.append(f"duplicated channel labels renamed: {', '.join(renamed[:4])}" + ("…" if len(renamed) > 4 else ""))
    return ChannelMeta(tuple(labels), tuple(units), tuple(types), tuple(notes))


def channels_from_info(info: pylsl.StreamInfo) -> tuple[list[str], list[str], list[str]]:
    """Read ``(labels, units, types)`` from a full stream info (see :func:`read_channels`, whose notes it drops)."""
    meta = read_channels(info)
    return list(meta.labels), list(meta.units), list(meta.types)
