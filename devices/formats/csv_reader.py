"""Read a CSV recording: one signal stream per file, plus marker streams from label columns.

Column convention::

    # sfreq_hz=256          <- optional comment lines "# key=value" before the header:
    # name=Polar ECG        <-   sfreq_hz (nominal rate), name (stream name, default: file stem),
    # type=ECG              <-   type (LSL content type, default "Signal"), source_id
    timestamp,ECG[uV],Resp[a.u.],label
    0.000,12.5,0.31,baseline
    0.004,13.1,0.30,baseline
    ...

* The first column is the time in seconds and must be named ``timestamp``, ``time``, ``t`` or ``time_s``
  (optionally with a unit, ``time[s]``).
* Every other column is a channel, headed ``label`` or ``label[unit]``; cells must be numbers (an empty cell
  or ``nan`` reads as NaN).
* Columns named ``label``, ``marker``, ``event`` or ``annotation`` (any case) hold strings and become marker
  streams (``type="Markers"``) of their *changes*: an event at the first row and wherever the value differs
  from the row before; empty cells emit nothing.
* The rate is ``sfreq_hz`` if given, else estimated as 1 / median timestamp step (rounded to 1e-6 Hz), else 0.
* Separators: ``,`` (``;`` or a tab are detected from the header line). Blank lines are skipped.

Malformed files (a header that is missing or lacks the time column, rows with the wrong number of cells,
non-numbers where numbers are expected, decreasing timestamps) raise
:class:`~devices.errors.RecordingFormatError` naming the file and the line.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np

from devices.errors import RecordingFormatError
from devices.formats._files import describe_head, looks_like_text, read_head, require_file, sniff
from devices.recording import Recording, Stream

logger = logging.getLogger(__name__)

TIME_COLUMNS = ("timestamp", "time", "t", "time_s", "timestamp_s")
MARKER_COLUMNS = ("label", "marker", "markers", "event", "events", "annotation", "annotations")
_LABEL_UNIT = re.compile(r"^(?P<label>.*?)\s*\[(?P<unit>[^\]]*)\]\s*$")
_META = re.compile(r"^#\s*(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")


def read_csv(path: str | Path) -> Recording:
    """Read a CSV recording (see the module docstring for the column convention).

    Parameters
    ----------
    path : str or Path
        The ``.csv`` file (UTF-8).

    Returns
    -------
    Recording
        The signal stream (float64, ``(n_samples, n_channels)``), then one marker stream per label column.
    """
    path = require_file(path)
    head = read_head(path, 4096)
    if not looks_like_text(head):
        kind = sniff(head)
        what = describe_head(head, "csv") if kind else "it contains binary data"
        raise RecordingFormatError(f"'{path}' is not a CSV file: {what}")
    meta, header, header_line, rows = _parse_lines(path)
    time_name = _split_label(header[0])[0].strip().lower()
    if time_name not in TIME_COLUMNS:
        raise RecordingFormatError(
            f"'{path}' line {header_line}: first column must be the time in seconds, named one of "
            f"{list(TIME_COLUMNS)}; got {header[0]!r}"
        )
    if len(header) < 2:
        raise RecordingFormatError(f"'{path}' line {header_line}: no channel columns after {header[0]!r}")
    line_numbers = np.asarray([line for line, _ in rows], dtype=np.int64)
    cells = [row for _, row in rows]
    marker_cols = [k for k, name in enumerate(header) if k > 0 and name.strip().lower() in MARKER_COLUMNS]
    signal_cols = [k for k in range(1, len(header)) if k not in marker_cols]
    timestamps = _numeric_column(path, cells, line_numbers, 0, header[0], allow_empty=False)
    if len(timestamps) > 1:
        with np.errstate(over="ignore"):  # -1e308 then 1e308: an infinite step is still a step forward
            steps = np.diff(timestamps)
        if np.any(steps < 0):
            bad = int(np.argmax(steps < 0)) + 1
            raise RecordingFormatError(
                f"'{path}' line {line_numbers[bad]}: timestamp {float(timestamps[bad])!r} is before the previous one"
            )
    data = np.empty((len(cells), len(signal_cols)), dtype=np.float64)
    labels, units = [], []
    for column, k in enumerate(signal_cols):
        data[:, column] = _numeric_column(path, cells, line_numbers, k, header[k], allow_empty=True)
        label, unit = _split_label(header[k])
        labels.append(label)
        units.append(unit)
    srate = _rate(path, meta, timestamps)
    name = meta.get("name") or path.stem
    stream_type = meta.get("type") or "Signal"
    streams = []
    if signal_cols:
        streams.append(
            Stream(
                name=name,
                type=stream_type,
                data=data,
                timestamps=timestamps,
                nominal_srate=srate,
                channel_labels=labels,
                channel_units=units,
                channel_format="double64",
                source_id=meta.get("source_id", ""),
                metadata={"csv_comments": meta},
            )
        )
    for k in marker_cols:
        streams.append(_marker_stream(f"{name} {header[k].strip()}", [row[k] for row in cells], timestamps))
    return Recording(streams=streams, info={"source": str(path), "format": "csv", **meta})


def _parse_lines(path: Path) -> tuple[dict[str, str], list[str], int, list[tuple[int, list[str]]]]:
    """Return the ``# key=value`` comments, the header cells, the header's line number and numbered rows."""
    meta: dict[str, str] = {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as err:
        raise RecordingFormatError(f"'{path}' is not UTF-8 text (byte {err.start})") from None
    header: list[str] | None = None
    header_index = 0
    for index, line in enumerate(lines):
        header_index = index
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            match = _META.match(stripped)
            if match:
                meta[match["key"]] = match["value"]
            continue
        delimiter = max((",", ";", "\t"), key=line.count)
        header = [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))]
        break
    rows: list[tuple[int, list[str]]] = []
    header_line = header_index + 1
    if header is not None:
        try:
            body = csv.reader(lines[header_index + 1 :], delimiter=delimiter)
            for row in body:
                line_number = header_line + body.line_num  # line_num counts the lines consumed so far
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if len(row) != len(header):
                    raise RecordingFormatError(
                        f"'{path}' line {line_number}: {len(row)} cells but the header has {len(header)} columns"
                    )
                rows.append((line_number, row))
        except csv.Error as err:
            raise RecordingFormatError(f"'{path}': malformed CSV ({err})") from None
    if header is None:
        raise RecordingFormatError(f"'{path}' has no header row (expected e.g. 'timestamp,ECG[uV]')")
    if not rows:
        raise RecordingFormatError(f"'{path}' has a header but no data rows")
    return meta, header, header_line, rows


def _numeric_column(
    path: Path, cells: list[list[str]], line_numbers: np.ndarray, k: int, title: str, *, allow_empty: bool
) -> np.ndarray:
    values = [row[k].strip() for row in cells]
    if allow_empty:
        values = [v if v else "nan" for v in values]
    try:
        return np.asarray(values, dtype=np.float64)
    except ValueError:
        pass
    # The bulk conversion failed: find the first offending cell to name its line.
    for index, value in enumerate(values):
        try:
            float(value)
        except ValueError:
            shown = repr(value) if value else "an empty cell"
            raise RecordingFormatError(
                f"'{path}' line {line_numbers[index]}: column {title!r} needs a number, got {shown}"
            ) from None
    raise RecordingFormatError(f"'{path}': column {title!r} is not numeric")  # pragma: no cover


def _rate(path: Path, meta: dict[str, str], timestamps: np.ndarray) -> float:
    if "sfreq_hz" in meta:
        try:
            rate = float(meta["sfreq_hz"])
        except ValueError:
            raise RecordingFormatError(f"'{path}': '# sfreq_hz={meta['sfreq_hz']}' is not a number") from None
        if not np.isfinite(rate) or rate < 0:
            raise RecordingFormatError(f"'{path}': sfreq_hz must be >= 0, got {meta['sfreq_hz']!r}")
        return rate
    if len(timestamps) < 2:
        return 0.0
    with np.errstate(over="ignore"):
        step = float(np.median(np.diff(timestamps)))
    return round(1.0 / step, 6) if step > 0 else 0.0


def _marker_stream(name: str, values: list[str], timestamps: np.ndarray) -> Stream:
    events, stamps = [], []
    previous = None
    for value, stamp in zip(values, timestamps, strict=True):
        value = value.strip()
        if value and value != previous:
            events.append(value)
            stamps.append(stamp)
        previous = value
    return Stream(
        name=name,
        type="Markers",
        data=np.asarray(events, dtype=object).reshape(-1, 1),
        timestamps=np.asarray(stamps, dtype=np.float64),
        nominal_srate=0.0,
        channel_labels=["label"],
        channel_format="string",
    )


def _split_label(title: str) -> tuple[str, str]:
    match = _LABEL_UNIT.match(title.strip())
    if match:
        return match["label"].strip(), match["unit"].strip()
    return title.strip(), ""
