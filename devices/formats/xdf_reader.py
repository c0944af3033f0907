"""Read XDF files (LabRecorder, our own :class:`~devices.formats.xdf_writer.XdfWriter`) into a Recording.

Parsing is pyxdf's. Choices made here:

* **Clock synchronisation on** (``synchronize_clocks=True``): streams recorded from other hosts are mapped onto
  the recorder's clock with the ClockOffset chunks, which is what replay needs to keep streams aligned. The raw
  ``(collection time, offset)`` pairs stay in ``Stream.clock_offsets`` and ``metadata["clock_synchronized"]``
  says they were applied.
* **No dejittering** (``dejitter_timestamps=False``): timestamps are kept as recorded, so a replay reproduces
  the original timing, jitter included, and a file we wrote reads back bit for bit.
* **Every chunk is checked first** (:mod:`devices.formats._xdf_scan`): header, content and stream ids. An
  intact file goes to pyxdf as it is. Otherwise pyxdf gets only the valid chunks:

  * **Truncated files load what is complete.** If the file ends inside a chunk (a recorder killed mid-write),
    ``info["truncated"]``, ``truncated_at_byte`` and ``truncation`` say so. pyxdf alone fails on some cut
    points (inside a header or clock offset).
  * **Damaged files load what is intact**, before and after the damage. A chunk with a damaged header over
    intact content is kept with its header rewritten (``info["repaired"]``); otherwise the damaged bytes are
    skipped up to the next valid chunk or Boundary chunk, and ``info["damaged_bytes"]`` (``[first, last]``
    byte pairs) and ``info["damage"]`` (one line) say which bytes were lost and why.
"""

from __future__ import annotations

import io
import logging
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import pyxdf

from devices.errors import RecordingFormatError
from devices.formats import _xdf_spec as spec
from devices.formats._files import require_file, require_magic
from devices.formats._xdf_scan import scan_chunks
from devices.recording import CHANNEL_FORMATS, Recording, Stream

logger = logging.getLogger(__name__)


def read_xdf(path: str | Path, *, synchronize_clocks: bool = True) -> Recording:
    """Read every stream of an XDF file.

    Parameters
    ----------
    path : str or Path
        The ``.xdf`` file.
    synchronize_clocks : bool
        Apply the ClockOffset chunks to the timestamps (see the module notes).

    Returns
    -------
    Recording
        One :class:`~devices.recording.Stream` per XDF stream, in file order; ``info`` holds the FileHeader
        fields (``version``, ``datetime``, custom fields such as ``bundle_sha256``) plus ``source``, ``format``
        and, for a cut-off file, ``truncated``/``truncated_at_byte``/``truncation``; for a damaged one
        ``damaged_bytes``/``damage`` and ``repaired`` (see the module notes).
    """
    path = require_file(path)
    require_magic(path, "xdf")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        scan = scan_chunks(data)
        if scan.absurd_header:
            raise RecordingFormatError(f"'{path}' cannot be read: {scan.absurd_header}")
        if not scan.has_file_header:
            if scan.truncated and not scan.damaged:
                raise RecordingFormatError(
                    f"'{path}' is truncated: it has no complete XDF FileHeader chunk: {scan.truncation}"
                )
            why = scan.problem or "none found"
            raise RecordingFormatError(f"'{path}' has no readable XDF FileHeader chunk: {why}")
        if scan.intact:
            source: Any = str(path)
        else:
            logger.warning("'%s': %s; reading the %d readable chunks", path, scan.problem, scan.n_chunks)
            pieces = [p if isinstance(p, bytes) else data[p[0] : p[1]] for p in scan.pieces]
            source = io.BytesIO(b"".join([spec.MAGIC, *pieces]))
    # Without ClockOffset chunks there is nothing to apply (and pyxdf would warn about every stream).
    synchronize = synchronize_clocks and scan.tag_counts.get(spec.TAG_CLOCK_OFFSET, 0) > 0
    pyxdf_logger = logging.getLogger("pyxdf.pyxdf")
    pyxdf_logger.addFilter(_drop_segment_notice)
    try:
        raw_streams, file_header = pyxdf.load_xdf(source, synchronize_clocks=synchronize, dejitter_timestamps=False)
    except Exception as err:  # pyxdf raises bare Exceptions, ParseErrors and struct errors alike
        detail = str(err).splitlines()[0] if str(err) else ""
        raise RecordingFormatError(f"'{path}' could not be read as XDF: {type(err).__name__}: {detail}") from None
    finally:
        pyxdf_logger.removeFilter(_drop_segment_notice)
    info: dict[str, Any] = {}
    header = (file_header or {}).get("info") or {}
    if isinstance(header, dict):  # a header of plain text (<info>x</info>) has no fields
        info.update({key: _simplify(value) for key, value in header.items()})
    info.update({"source": str(path), "format": "xdf"})
    if scan.truncated:
        info.update(truncated=True, truncated_at_byte=scan.complete_bytes, truncation=scan.truncation)
    if scan.damaged:
        info.update(
            damaged_bytes=[[d.start, d.end - 1] for d in scan.damaged],
            damage="; ".join(f"{d.describe()} damaged and skipped" for d in scan.damaged),
        )
    if scan.repaired:
        info["repaired"] = list(scan.repaired)
    streams = [_to_stream(path, raw, synchronize) for raw in raw_streams]
    return Recording(streams=streams, info=info)


def _drop_segment_notice(record: logging.LogRecord) -> bool:
    # Without dejittering pyxdf keeps one segment per stream, and for every stream without clock offsets it warns
    # that "segments and clock-segments differ"; that says nothing about the file, so keep it out of the log.
    return "clock-segments differ" not in record.getMessage()


def _to_stream(path: Path, raw: dict[str, Any], synchronized: bool) -> Stream:
    xml = raw["info"]
    name = _text(xml, "name")
    channel_format = _text(xml, "channel_format")
    if channel_format not in CHANNEL_FORMATS:
        raise RecordingFormatError(f"'{path}': stream '{name}' has unknown channel format {channel_format!r}")
    try:
        n_channels = int(_text(xml, "channel_count"))
        srate = float(_text(xml, "nominal_srate") or 0.0)
    except ValueError:
        raise RecordingFormatError(
            f"'{path}': stream '{name}' has a malformed channel_count or nominal_srate"
        ) from None
    stream_type = _text(xml, "type")
    desc = _simplify((xml.get("desc") or [None])[0]) or {}
    if not isinstance(desc, dict):
        desc = {}
    labels, units, types = _channels(desc, n_channels, stream_type)
    stamps = np.asarray(raw["time_stamps"], dtype=np.float64)
    if channel_format == "string":
        series = raw["time_series"]
        data = np.empty((len(series), n_channels), dtype=object)
        for k, row in enumerate(series):
            data[k, :] = row
    else:
        data = np.asarray(raw["time_series"]).reshape(len(stamps), n_channels)
    offsets = np.column_stack([raw.get("clock_times", []), raw.get("clock_values", [])]).astype(np.float64)
    footer = _simplify(((raw.get("footer") or {}).get("info")) or {})
    if not len(offsets) and isinstance(footer, dict):
        offsets = _footer_offsets(footer)
    metadata: dict[str, Any] = {
        key: _simplify(xml[key]) for key in ("created_at", "uid", "session_id", "hostname", "version") if key in xml
    }
    metadata["stream_id"] = int(xml.get("stream_id", 0))
    metadata["effective_srate"] = float(xml.get("effective_srate", 0.0))
    metadata["desc"] = {k: v for k, v in desc.items() if k != "channels"}
    metadata["clock_synchronized"] = bool(synchronized and len(offsets))
    if footer:
        metadata["footer"] = footer
    return Stream(
        name=name,
        type=stream_type,
        data=data,
        timestamps=stamps,
        nominal_srate=srate,
        channel_labels=labels,
        channel_units=units,
        channel_types=types,
        channel_format=channel_format,
        source_id=_text(xml, "source_id"),
        clock_offsets=offsets,
        metadata=metadata,
    )


def _channels(desc: dict[str, Any], n_channels: int, stream_type: str) -> tuple[list[str], list[str], list[str]]:
    """Labels, units and types from ``desc/channels/channel``; defaults where missing or inconsistent."""
    channels = desc.get("channels")
    entries = channels.get("channel") if isinstance(channels, dict) else None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list) or len(entries) != n_channels:
        if entries:
            logger.warning("channel description lists %d channels for %d; using defaults", len(entries), n_channels)
        return [f"ch{k + 1}" for k in range(n_channels)], [""] * n_channels, [stream_type] * n_channels
    labels, units, types = [], [], []
    for k, entry in enumerate(entries):
        entry = entry if isinstance(entry, dict) else {}
        labels.append(str(entry.get("label") or f"ch{k + 1}"))
        units.append(str(entry.get("unit") or ""))
        types.append(str(entry.get("type") or stream_type))
    return labels, units, types


def _footer_offsets(footer: dict[str, Any]) -> np.ndarray:
    offsets = footer.get("clock_offsets")
    entries = offsets.get("offset") if isinstance(offsets, dict) else None
    if isinstance(entries, dict):
        entries = [entries]
    pairs = []
    for entry in entries or []:
        try:
            pairs.append((float(entry["time"]), float(entry["value"])))
        except (KeyError, TypeError, ValueError):
            continue
    return np.asarray(pairs, dtype=np.float64).reshape(-1, 2)


def _text(xml: dict[str, Any], key: str) -> str:
    value = xml.get(key)
    if isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _simplify(node: Any) -> Any:
    """Turn pyxdf's XML dicts (every value a list) into plain ones: one-element lists become their element."""
    if isinstance(node, list):
        items = [_simplify(item) for item in node]
        return items[0] if len(items) == 1 else items
    if isinstance(node, dict):
        return {key: _simplify(value) for key, value in node.items()}
    return node
