"""CSV recordings: the column convention, rate from comment or timestamps, label changes, malformed files."""

from __future__ import annotations

import numpy as np
import pytest

from devices.errors import RecordingFormatError
from devices.formats import read_csv, read_recording


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_signals_units_rate_comment_and_label_changes(tmp_path):
    rows = []
    labels = ["baseline"] * 3 + ["stress"] * 4 + [""] + ["baseline"] * 2
    for k, label in enumerate(labels):
        rows.append(f"{k / 4:.2f},{k * 1.5},{-k},{label}")
    path = _write(
        tmp_path / "s1.csv",
        "# sfreq_hz=4\n# name=Chest strap\n# type=ECG\n# free text is ignored\n"
        "timestamp,ECG[mV],Resp [a.u.],label\n" + "\n".join(rows) + "\n\n",
    )
    rec = read_recording(path)
    assert rec.info["format"] == "csv" and rec.info["sfreq_hz"] == "4"
    signal, markers = rec.streams
    assert signal.name == "Chest strap" and signal.type == "ECG" and signal.nominal_srate == 4.0
    assert signal.channel_labels == ["ECG", "Resp"] and signal.channel_units == ["mV", "a.u."]
    np.testing.assert_array_equal(signal.data[:, 0], np.arange(10) * 1.5)
    np.testing.assert_array_equal(signal.timestamps, np.round(np.arange(10) / 4, 2))
    assert markers.is_marker and markers.name == "Chest strap label"
    assert list(markers.data[:, 0]) == ["baseline", "stress", "baseline"]
    np.testing.assert_array_equal(markers.timestamps, [0.0, 0.75, 2.0])


def test_rate_is_estimated_from_timestamps_and_empty_cells_are_nan(tmp_path):
    t = 100.0 + np.arange(50) / 256.0
    t[10] += 0.0005  # jitter must not move the median estimate
    lines = [f"{float(x)!r},{float(np.sin(x))!r}" for x in t]
    lines[5] = f"{float(t[5])!r},"
    path = _write(tmp_path / "ppg.csv", "time,BVP\n" + "\n".join(lines))
    stream = read_csv(path).streams[0]
    assert stream.nominal_srate == 256.0 and stream.name == "ppg" and stream.channel_units == [""]
    np.testing.assert_array_equal(stream.timestamps, t)
    assert np.isnan(stream.data[5, 0]) and np.isfinite(np.delete(stream.data[:, 0], 5)).all()


def test_semicolon_separator(tmp_path):
    path = _write(tmp_path / "semi.csv", "t;EMG[uV]\n0;1\n0.5;2\n1.0;3\n")
    stream = read_csv(path).streams[0]
    assert stream.nominal_srate == 2.0 and stream.channel_labels == ["EMG"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timestamp,a,b\n0,1,2\n0.1,1\n", r"line 3: 2 cells but the header has 3 columns"),
        ("timestamp,a\n0,1\n0.1,oops\n", r"line 3: column 'a' needs a number, got 'oops'"),
        ("# sfreq_hz=10\ntimestamp,a\n0,1\n,2\n", r"line 4: column 'timestamp' needs a number, got an empty cell"),
        ("timestamp,a\n0,1\n1,1\n0.5,1\n", r"line 4: timestamp 0.5 is before the previous one"),
        ("value,a\n0,1\n", r"line 1: first column must be the time in seconds"),
        ("# only a comment\n", r"has no header row"),
        ("timestamp,a\n", r"has a header but no data rows"),
        ("# sfreq_hz=fast\ntimestamp,a\n0,1\n", r"'# sfreq_hz=fast' is not a number"),
    ],
)
def test_malformed_csv_gives_one_line_error_with_line_number(tmp_path, text, message):
    path = _write(tmp_path / "bad.csv", text)
    with pytest.raises(RecordingFormatError, match=message) as info:
        read_recording(path)
    assert "\n" not in str(info.value) and "bad.csv" in str(info.value)


def test_binary_file_with_csv_extension(tmp_path):
    path = tmp_path / "rec.csv"
    path.write_bytes(b"XDF:\x01\x02\x00\x00binary")
    with pytest.raises(RecordingFormatError, match=r"rec.csv' is not a CSV file: it starts like an XDF file"):
        read_recording(path)
