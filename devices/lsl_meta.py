"""Channel metadata in LSL stream descriptions (``desc/channels/channel/{label,unit,type}``).

Outlets built here carry labels, units and types; inlets read them back with :func:`channels_from_info`
(which needs the full info of an opened inlet, ``inlet.info()``: resolved infos carry no description).
"""

from __future__ import annotations

from collections.abc import Sequence

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


def channels_from_info(info: pylsl.StreamInfo) -> tuple[list[str], list[str], list[str]]:
    """Read ``(labels, units, types)`` from a full stream info; generic names where the description has none.

    A channel's label is its ``<label>``, else its ``<name>`` (as some Polar H10 bridges write it).
    """
    n = info.channel_count()
    labels, units, types = [], [], []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty() and len(labels) < n:
        labels.append(ch.child_value("label") or ch.child_value("name"))  # some bridges (Polar) write <name>
        units.append(ch.child_value("unit"))
        types.append(ch.child_value("type"))
        ch = ch.next_sibling("channel")
    if len(labels) != n:
        return [f"ch{k + 1}" for k in range(n)], [""] * n, [info.type()] * n
    labels = [label or f"ch{k + 1}" for k, label in enumerate(labels)]
    types = [t or info.type() for t in types]
    return labels, units, types
