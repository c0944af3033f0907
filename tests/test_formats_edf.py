"""EDF/BDF: pyedflib's bundled test file and files written here with pyedflib.EdfWriter."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyedflib
import pytest

from devices.errors import RecordingFormatError
from devices.formats import read_bdf, read_edf, read_recording

BUNDLED = Path(os.path.dirname(pyedflib.__file__)) / "data" / "test_generator.edf"


def _headers(digital: tuple[int, int]) -> list[dict]:
    dmin, dmax = digital
    return [
        dict(label="ECG", dimension="mV", sample_frequency=256, physical_max=5.0, physical_min=-5.0,
             digital_max=dmax, digital_min=dmin),
        dict(label="EEG Fz", dimension="uV", sample_frequency=256, physical_max=500.0, physical_min=-500.0,
             digital_max=dmax, digital_min=dmin),
        dict(label="Resp", dimension="a.u.", sample_frequency=32, physical_max=10.0, physical_min=-10.0,
             digital_max=dmax, digital_min=dmin),
    ]


def _write(path: Path, file_type: int, digital: tuple[int, int], seconds: int = 4) -> tuple[list[np.ndarray], list]:
    rng = np.random.default_rng(3)
    data = [
        np.clip(rng.normal(0, 1.5, 256 * seconds), -5, 5),
        np.clip(rng.normal(0, 100, 256 * seconds), -500, 500),
        np.linspace(-9, 9, 32 * seconds),
    ]
    headers = _headers(digital)
    writer = pyedflib.EdfWriter(str(path), len(headers), file_type=file_type)
    try:
        writer.setSignalHeaders(headers)
        writer.writeSamples(data)
        writer.writeAnnotation(1.5, -1, "stim A")
        writer.writeAnnotation(2.25, 0.5, "stim B")
    finally:
        writer.close()
    return data, headers


def _resolution(header: dict) -> float:
    return (header["physical_max"] - header["physical_min"]) / (header["digital_max"] - header["digital_min"])


@pytest.mark.parametrize(
    ("suffix", "file_type", "digital"),
    [(".edf", pyedflib.FILETYPE_EDFPLUS, (-32768, 32767)), (".bdf", pyedflib.FILETYPE_BDFPLUS, (-8388608, 8388607))],
)
def test_written_file_groups_by_rate_with_units_and_annotations(tmp_path, suffix, file_type, digital):
    path = tmp_path / f"rec{suffix}"
    data, headers = _write(path, file_type, digital)
    rec = read_recording(path)
    assert rec.info["format"] == suffix[1:]
    fast, slow, notes = rec.streams
    assert fast.nominal_srate == 256.0 and slow.nominal_srate == 32.0
    assert fast.channel_labels == ["ECG", "EEG Fz"] and fast.channel_units == ["mV", "uV"]
    assert fast.channel_types == ["ECG", "EEG"] and slow.channel_types == ["Resp"]
    assert slow.channel_labels == ["Resp"] and slow.channel_units == ["a.u."]
    for stream, columns in ((fast, (0, 1)), (slow, (2,))):
        for j, k in enumerate(columns):
            # Values survive within one digital step (plus float slack) of the file's resolution.
            np.testing.assert_allclose(stream.data[:, j], data[k], rtol=0, atol=_resolution(headers[k]) * 1.01)
        np.testing.assert_allclose(stream.timestamps, np.arange(stream.n_samples) / stream.nominal_srate)
    assert fast.n_samples == 1024 and slow.n_samples == 128
    assert notes.is_marker and list(notes.data[:, 0]) == ["stim A", "stim B"]
    np.testing.assert_allclose(notes.timestamps, [1.5, 2.25])
    assert notes.metadata["durations_s"] == [-1.0, 0.5]
    assert "start_datetime" in rec.info and rec.info["file_duration_s"] == 4.0


def test_bundled_pyedflib_file():
    rec = read_edf(BUNDLED)
    assert len(rec.signal_streams) == 1
    stream = rec.signal_streams[0]
    assert stream.nominal_srate == 200.0 and stream.n_channels == 11
    assert stream.channel_labels[0] == "squarewave" and set(stream.channel_units) == {"uV"}
    assert stream.n_samples == 120000 and stream.duration_s == pytest.approx(600 - 1 / 200)
    reader = pyedflib.EdfReader(str(BUNDLED))
    try:
        expected = reader.readSignal(4)
        header = reader.getSignalHeader(4)
    finally:
        reader.close()
    np.testing.assert_allclose(stream.data[:, 4], expected, atol=_resolution(header))
    # A 1 Hz sine: one period per 200 samples, amplitude within the physical range.
    assert np.max(np.abs(stream.data[:, 4])) <= 1000.0
    assert rec.info["start_datetime"].startswith("2011-04-04T12:57:02")
    assert list(rec.marker_streams[0].data[:, 0]) == ["Recording starts", "Recording ends"]


def test_truncated_and_mislabelled_files(tmp_path):
    path = tmp_path / "rec.edf"
    _write(path, pyedflib.FILETYPE_EDFPLUS, (-32768, 32767))
    blob = path.read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(blob[: len(blob) - 100])
    with pytest.raises(RecordingFormatError, match=r"cut.edf' is truncated: its header promises"):
        read_recording(cut)
    cut.write_bytes(blob[:300])
    with pytest.raises(RecordingFormatError, match="truncated"):
        read_recording(cut)
    as_bdf = tmp_path / "really_edf.bdf"
    as_bdf.write_bytes(blob)
    with pytest.raises(RecordingFormatError, match=r"really_edf.bdf' is not a BDF file: it starts like an EDF file"):
        read_recording(as_bdf)
    with pytest.raises(RecordingFormatError, match="is not a BDF file"):
        read_bdf(path)
    # An unknown extension with EDF magic (ISRUC ships EDF+ as .rec) is read by its content.
    rec_file = tmp_path / "1.rec"
    rec_file.write_bytes(blob)
    assert read_recording(rec_file).info["format"] == "edf"


def edf_plus_bytes(first_onset: str, kind: str = "edf", n_records: int = 3, spr: int = 10) -> bytes:
    """A minimal EDF+C / BDF+C file, byte by byte: one signal and the annotation signal, 1-s data records.

    ``first_onset`` is the onset of the first record's time-keeping annotation (``"+0.25"``: the file starts 0.25 s
    after the header's start time); record ``r`` starts ``r`` seconds later. pyedflib's writer cannot store such
    a start exactly (it scales the fraction by 100 instead of 10), so the bytes are written here.
    """
    bdf = kind == "bdf"
    width = 3 if bdf else 2
    digital = (-8388608, 8388607) if bdf else (-32768, 32767)
    ann_bytes = 60

    def field(value, size: int) -> bytes:
        return str(value).encode("ascii").ljust(size)[:size]

    def per_signal(values, size: int) -> bytes:
        return b"".join(field(v, size) for v in values)

    header = (b"\xffBIOSEMI" if bdf else field(0, 8)) + field("X X X X", 80)
    header += field("Startdate 02-JAN-2024 X X X", 80) + b"02.01.24" + b"03.04.05"
    header += field(256 * 3, 8) + field("BDF+C" if bdf else "EDF+C", 44)
    header += field(n_records, 8) + field(1, 8) + field(2, 4)  # records, seconds per record, signals
    header += per_signal(["ECG", "BDF Annotations" if bdf else "EDF Annotations"], 16) + per_signal(["", ""], 80)
    header += per_signal(["mV", ""], 8) + per_signal([-5, -1], 8) + per_signal([5, 1], 8)
    header += per_signal([digital[0]] * 2, 8) + per_signal([digital[1]] * 2, 8) + per_signal(["", ""], 80)
    header += per_signal([spr, ann_bytes // width], 8) + per_signal(["", ""], 32)
    assert len(header) == 768
    records = []
    for r in range(n_records):
        onset = Decimal(first_onset) + r
        tal = f"{'+' if onset >= 0 else ''}{onset}".encode("ascii") + b"\x14\x14\x00"
        samples = np.arange(spr, dtype="<i4").view(np.uint8).reshape(spr, 4)[:, :width].tobytes()
        records.append(samples + tal.ljust(ann_bytes, b"\x00"))
    return header + b"".join(records)


@pytest.mark.parametrize(
    ("kind", "onset", "expected"),
    [
        ("edf", "+0.25", "2024-01-02T03:04:05.250000"),  # pyedflib alone: 03:04:05.025000
        ("edf", "+0.123456789", "2024-01-02T03:04:05.123457"),  # pyedflib alone: 03:04:05.012346
        ("edf", "+0", "2024-01-02T03:04:05"),
        ("edf", "-0.25", "2024-01-02T03:04:04.750000"),  # pyedflib alone: ValueError (microsecond < 0)
        ("bdf", "+0.5", "2024-01-02T03:04:05.500000"),
    ],
)
def test_a_start_between_two_seconds_is_read_from_the_first_record(tmp_path, kind, onset, expected):
    path = tmp_path / f"sub.{kind}"
    path.write_bytes(edf_plus_bytes(onset, kind))
    rec = read_recording(path)
    assert rec.info["start_datetime"] == expected
    stream = rec.signal_streams[0]
    assert stream.n_samples == 30 and stream.nominal_srate == 10.0
    dmin, dmax = (-8388608, 8388607) if kind == "bdf" else (-32768, 32767)
    np.testing.assert_allclose(stream.data[:10, 0], -5 + (np.arange(10) - dmin) * 10 / (dmax - dmin), atol=1e-9)
    reader = pyedflib.EdfReader(str(path))  # what the workaround is for: edflib's 100-ns units read as ns
    try:
        assert reader.starttime_subsecond == int(Decimal(onset) * 10_000_000)
    finally:
        reader.close()
