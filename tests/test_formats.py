"""The format registry: detection by extension, layout and magic bytes; one-line errors for bad paths."""

from __future__ import annotations

import numpy as np
import pytest

from devices.errors import BadInputError, RecordingFormatError
from devices.formats import FORMAT_NAMES, READERS, XdfWriter, detect_format, read_recording


def _xdf(path):
    with XdfWriter(path, header={"bundle_sha256": "ab"}) as w:
        sid = w.add_stream("ecg", "ECG", ["ECG"], 100.0, channel_units=["uV"])
        w.write_samples(sid, np.arange(10, dtype=np.float32).reshape(-1, 1), np.arange(10) / 100.0)
    return path


def test_registry_lists_every_format():
    assert set(READERS) == {"xdf", "edf", "bdf", "csv", "wesad", "isruc", "fog"}
    assert FORMAT_NAMES[0] == "auto"


def test_auto_and_explicit_format_read_the_same(tmp_path):
    path = _xdf(tmp_path / "s.xdf")
    auto = read_recording(path)
    explicit = read_recording(str(path), format="XDF")
    assert auto.info["format"] == explicit.info["format"] == "xdf"
    assert auto.info["source"] == str(path) and auto.info["bundle_sha256"] == "ab"
    np.testing.assert_array_equal(auto.stream("ecg").data, explicit.stream("ecg").data)
    # An XDF file under a made-up extension is recognised by its magic bytes.
    odd = tmp_path / "s.session"
    odd.write_bytes(path.read_bytes())
    assert detect_format(odd) == "xdf" and read_recording(odd).stream("ECG").n_samples == 10


def test_layout_detection(tmp_path):
    (tmp_path / "S2").mkdir()
    (tmp_path / "isruc" / "ExtractedChannels").mkdir(parents=True)
    (tmp_path / "isruc" / "RawData" / "7").mkdir(parents=True)
    (tmp_path / "isruc" / "RawData" / "7" / "7_1.txt").write_text("0\n")
    (tmp_path / "isruc" / "ExtractedChannels" / "subject7.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    (tmp_path / "S2" / "S2.pkl").write_bytes(b"\x80\x02}q\x00.")
    assert detect_format(tmp_path / "S2") == "wesad"
    assert detect_format(tmp_path / "S2" / "S2.pkl") == "wesad"
    assert detect_format(tmp_path / "isruc") == "isruc"
    assert detect_format(tmp_path / "isruc" / "RawData" / "7") == "isruc"
    assert detect_format(tmp_path / "isruc" / "RawData" / "7" / "7_1.txt") == "isruc"
    assert detect_format(tmp_path / "isruc" / "ExtractedChannels" / "subject7.mat") == "isruc"


@pytest.mark.parametrize(
    ("name", "content", "fmt", "message"),
    [
        ("missing.xdf", None, "auto", r"'.*missing.xdf' does not exist"),
        ("rec.xdf", b"XDF:", "parquet", r"unknown recording format 'parquet'; has to be one of \['auto', 'xdf'"),
        ("rec.dat", b"\x00\x01garbage", "auto", r"rec.dat': unknown recording extension '.dat'"),
        ("rec.edf", b"XDF:\x01\x10\x01", "auto", r"rec.edf' is not an EDF file: it starts like an XDF file"),
        ("rec.xdf", b"MATLAB 5.0 MAT-file, Platform", "auto", r"rec.xdf' is not an XDF file: it starts like a MATLAB"),
        ("rec.xdf", b"XD", "auto", r"rec.xdf' is not an XDF file: it has only 2 bytes"),
        ("rec.bdf", b"0       header", "bdf", r"rec.bdf' is not a BDF file: it starts like an EDF file"),
        ("data.pkl", b"\x80\x02}q\x00.", "auto", r"data.pkl': pickles are read only in the WESAD layout"),
        ("data.mat", b"MATLAB 5.0 MAT-file", "auto", r"data.mat': .mat files are read only in the ISRUC layout"),
        ("plain", None, "auto", r"plain' is a folder but neither a WESAD subject"),
    ],
)
def test_bad_paths_give_one_line_errors(tmp_path, name, content, fmt, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    elif name == "plain":
        path.mkdir()
    with pytest.raises(RecordingFormatError, match=message) as info:
        read_recording(path, format=fmt)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, BadInputError)  # the CLI maps these to exit code 2
