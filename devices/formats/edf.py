"""Read EDF/EDF+ and BDF/BDF+ files (via pyedflib) into a Recording.

* Signals are grouped by sampling rate: one :class:`~devices.recording.Stream` per distinct rate, channels in
  file order, values in physical units (``getPhysicalDimension``) as float64.
* Timestamps are seconds from the start of the file (``i / rate``); the start date/time goes into
  ``Recording.info["start_datetime"]`` (ISO 8601, to the microsecond), with the patient/recording header fields.
  An EDF+/BDF+ start that falls between two seconds is read from the time-keeping annotation of the first data
  record here, not from pyedflib (see :func:`_start_datetime`).
* EDF+/BDF+ annotations become one marker stream (``type="Markers"``) at their onsets; their durations
  (``-1`` when none) are in ``metadata["durations_s"]``.
* Channel types are guessed from the labels (``ECG``, ``EMG``, ``EOG``, ``Resp``, ``PPG``, ...; ``EEG`` for
  10-20 electrode names; ``Misc`` otherwise); a stream's type is its channels' common type, else ``ExG``.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib

from devices.errors import RecordingFormatError
from devices.formats._files import require_file, require_magic
from devices.recording import Recording, Stream

logger = logging.getLogger(__name__)

_TYPE_KEYWORDS = (
    (("ECG", "EKG"), "ECG"),
    (("EMG", "CHIN", "LEG"), "EMG"),
    (("EOG", "LOC", "ROC"), "EOG"),
    (("RESP", "THOR", "ABD", "AIRFLOW", "FLOW", "NASAL"), "Resp"),
    (("SAO2", "SPO2", "PLETH", "PPG", "BVP"), "PPG"),
    (("TEMP",), "TEMP"),
    (("ACC",), "ACC"),
    (("EDA", "GSR"), "EDA"),
    (("EEG",), "EEG"),
)
_TEN_TWENTY = re.compile(r"^(FP|AF|F|FC|FT|C|CP|T|TP|P|PO|O|A|M)(Z|\d{1,2})([-_ ].*)?$")
_HEADER_FIELDS = (
    "technician", "recording_additional", "patientname", "patient_additional", "patientcode",
    "equipment", "admincode", "sex", "birthdate",
)


def read_edf(path: str | Path) -> Recording:
    """Read an EDF or EDF+ file.

    Parameters
    ----------
    path : str or Path
        The ``.edf`` file (EDF+ files such as ISRUC's ``.rec`` are read the same way).

    Returns
    -------
    Recording
        One stream per sampling rate, plus an annotation marker stream if the file has annotations.
    """
    return _read(require_file(path), "edf")


def read_bdf(path: str | Path) -> Recording:
    """Read a BDF or BDF+ file (24-bit BioSemi variant of EDF); see :func:`read_edf`."""
    return _read(require_file(path), "bdf")


def _read(path: Path, kind: str) -> Recording:
    require_magic(path, kind)
    _check_size(path, kind)
    try:
        reader = pyedflib.EdfReader(str(path))
    except OSError as err:
        message = str(err).splitlines()[0] if str(err) else "unreadable"
        message = message.removeprefix(f"{path}: ")  # edflib's messages start with the path we name already
        raise RecordingFormatError(f"'{path}' could not be read as {kind.upper()}: {message}") from None
    try:
        return _to_recording(path, kind, reader)
    finally:
        reader.close()


def _to_recording(path: Path, kind: str, reader: pyedflib.EdfReader) -> Recording:
    n_signals = reader.signals_in_file
    labels = [str(label).strip() for label in reader.getSignalLabels()]
    rates = [float(rate) for rate in reader.getSampleFrequencies()]
    groups: dict[float, list[int]] = {}
    for index, rate in enumerate(rates):
        groups.setdefault(rate, []).append(index)
    streams: list[Stream] = []
    for rate, indices in groups.items():
        n_samples = min(int(reader.getNSamples()[i]) for i in indices)
        data = np.empty((n_samples, len(indices)), dtype=np.float64)
        for column, index in enumerate(indices):
            data[:, column] = reader.readSignal(index)[:n_samples]
        types = [_channel_type(labels[i]) for i in indices]
        stream_type = types[0] if len(set(types)) == 1 else "ExG"
        name = path.stem if len(groups) == 1 else f"{path.stem} {rate:g}Hz"
        streams.append(
            Stream(
                name=name,
                type=stream_type,
                data=data,
                timestamps=np.arange(n_samples, dtype=np.float64) / rate,
                nominal_srate=rate,
                channel_labels=[labels[i] for i in indices],
                channel_units=[str(reader.getPhysicalDimension(i)).strip() for i in indices],
                channel_types=types,
                channel_format="double64",
                metadata={"signal_headers": [_jsonable(reader.getSignalHeader(i)) for i in indices]},
            )
        )
    onsets, durations, descriptions = reader.readAnnotations()
    if len(onsets):
        streams.append(
            Stream(
                name=f"{path.stem} annotations",
                type="Markers",
                data=np.asarray([str(d) for d in descriptions], dtype=object).reshape(-1, 1),
                timestamps=np.asarray(onsets, dtype=np.float64),
                nominal_srate=0.0,
                channel_labels=["annotation"],
                channel_format="string",
                metadata={"durations_s": [float(d) for d in durations]},
            )
        )
    # Not reader.getHeader(): it calls getStartdatetime(), which fails on a start before the header's second.
    info: dict[str, Any] = {key: _header_field(reader, key) for key in _HEADER_FIELDS}
    info.update(
        source=str(path),
        format=kind,
        start_datetime=_start_datetime(path, kind, reader).isoformat(),
        file_duration_s=float(reader.getFileDuration()),
        datarecord_duration_s=float(reader.datarecord_duration),
        n_signals=int(n_signals),
    )
    logger.debug("'%s': %d signals in %d rate groups, %d annotations", path, n_signals, len(groups), len(onsets))
    return Recording(streams=streams, info=info)


def _header_field(reader: pyedflib.EdfReader, key: str) -> str:
    getter = {"sex": "getSex", "birthdate": "getBirthdate", "patient_additional": "getPatientAdditional",
              "recording_additional": "getRecordingAdditional", "patientname": "getPatientName",
              "patientcode": "getPatientCode", "admincode": "getAdmincode"}.get(key, "get" + key.capitalize())
    return str(getattr(reader, getter)()).strip()


def _start_datetime(path: Path, kind: str, reader: pyedflib.EdfReader) -> datetime:
    r"""The date and time of the first sample, to the microsecond.

    The header holds the start to the second; EDF+ puts the fraction in the onset of the first data record's
    time-keeping annotation (``+0.25\x14\x14\x00``: the first record starts 0.25 s after the header's time).
    edflib reads that onset into ``starttime_subsecond`` in units of 100 ns, but pyedflib's ``getStartdatetime``
    divides it by 100 as if it were nanoseconds, which makes the fraction 10 times too small (0.025 s for 0.25 s),
    and fails outright on a negative onset. So the onset is read here from the file itself (exactly, as a decimal),
    with edflib's value, correctly scaled, as the fallback.
    """
    try:
        base = datetime(
            reader.startdate_year, reader.startdate_month, reader.startdate_day,
            reader.starttime_hour, reader.starttime_minute, reader.starttime_second,
        )
    except ValueError as err:
        raise RecordingFormatError(f"'{path}' has an impossible start date or time: {err}") from None
    onset = _first_record_onset(path, kind)
    if onset is None:
        onset = Decimal(int(reader.starttime_subsecond)) / _EDFLIB_SUBSECOND_PER_S
    return base + timedelta(microseconds=int((onset * 1_000_000).to_integral_value(ROUND_HALF_EVEN)))


#: edflib's unit of ``starttime_subsecond``: 100 ns.
_EDFLIB_SUBSECOND_PER_S = 10_000_000
_ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
_TIMEKEEPING = re.compile(rb"([+-]\d+(?:\.\d*)?)\x14\x14")


def _first_record_onset(path: Path, kind: str) -> Decimal | None:
    """The onset (s) of the time-keeping annotation in the first data record, or None (plain EDF/BDF, none found).

    The first data record's onset says how long after the header's start date/time the record, and so the file,
    starts; edflib accepts onsets in (-1, 1) for continuous files and refuses discontinuous ones (EDF+D).
    """
    try:
        with open(path, "rb") as f:
            fixed = f.read(256)
            if not fixed[192:236].startswith((b"EDF+", b"BDF+")):
                return None
            header_bytes = int(fixed[184:192].decode("ascii"))
            n_signals = int(fixed[252:256].decode("ascii"))
            labels = [f.read(16).decode("latin-1").strip() for _ in range(n_signals)]
            f.seek(256 + 216 * n_signals)
            per_record = [int(f.read(8).decode("ascii")) for _ in range(n_signals)]
            annotation = next(i for i, label in enumerate(labels) if label in _ANNOTATION_LABELS)
            bytes_per_sample = 3 if kind == "bdf" else 2
            f.seek(header_bytes + bytes_per_sample * sum(per_record[:annotation]))
            tal = f.read(bytes_per_sample * per_record[annotation])
    except (ValueError, StopIteration):  # the header was accepted by edflib: this is only the fallback's way in
        return None
    match = _TIMEKEEPING.match(tal)
    if match is None:
        return None
    onset = Decimal(match[1].decode("ascii"))
    return onset if abs(onset) < 1 else onset - int(onset)


def _check_size(path: Path, kind: str) -> None:
    """Compare the file size with what the fixed header promises, to report truncation in our words."""
    with open(path, "rb") as f:
        fixed = f.read(256)
        try:
            header_bytes = int(fixed[184:192].decode("ascii").strip())
            n_records = int(fixed[236:244].decode("ascii").strip())
            n_signals = int(fixed[252:256].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise RecordingFormatError(f"'{path}' has a malformed {kind.upper()} header") from None
        if len(fixed) < 256 or n_signals <= 0 or header_bytes != 256 * (n_signals + 1):
            raise RecordingFormatError(f"'{path}' has a malformed or truncated {kind.upper()} header")
        f.seek(256 + 216 * n_signals)
        field = f.read(8 * n_signals)
    if len(field) < 8 * n_signals:
        raise RecordingFormatError(f"'{path}' is truncated inside its {kind.upper()} header")
    try:
        per_record = sum(int(field[8 * i : 8 * i + 8].decode("ascii").strip()) for i in range(n_signals))
    except (UnicodeDecodeError, ValueError):
        raise RecordingFormatError(f"'{path}' has malformed samples-per-record fields") from None
    if n_records < 0:
        return  # "-1": the writer never finished the header; pyedflib decides what it can read
    bytes_per_sample = 3 if kind == "bdf" else 2
    expected = header_bytes + n_records * per_record * bytes_per_sample
    actual = path.stat().st_size
    if actual < expected:
        raise RecordingFormatError(
            f"'{path}' is truncated: its header promises {n_records} data records ({expected} bytes) "
            f"but the file has {actual} bytes"
        )


def _channel_type(label: str) -> str:
    upper = label.upper()
    for keywords, channel_type in _TYPE_KEYWORDS:
        if any(k in upper for k in keywords):
            return channel_type
    if _TEN_TWENTY.match(upper.replace("EEG ", "")):
        return "EEG"
    return "Misc"


def _jsonable(header: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in header.items()}
