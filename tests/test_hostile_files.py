"""Hostile and broken recordings: absurd declared sizes, impossible rates, timestamps that are not times, and
random damage to a real file. Each is one error that names the file (exit code 2 on the command line) — never a
traceback, a hang, or memory blown by what a header declares."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.errors import RecordingFormatError
from devices.formats import _xdf_spec as spec
from devices.formats import read_recording, write_xdf
from devices.recording import Stream
from devices.simulate import simulate_session


def _xdf(path, channel_count: str, nominal_srate: str = "64"):
    header = spec.info_xml({"version": "1.0"}).encode()
    stream = spec.info_xml({"name": "evil", "type": "EEG", "channel_count": channel_count,
                            "nominal_srate": nominal_srate, "channel_format": "float32"}).encode()
    samples = struct.pack("<I", 1) + bytes([1, 1]) + bytes([8]) + struct.pack("<d", 1.0) + b"\x00" * 4
    path.write_bytes(spec.MAGIC + spec.encode_chunk(spec.TAG_FILE_HEADER, header)
                     + spec.encode_chunk(spec.TAG_STREAM_HEADER, struct.pack("<I", 1) + stream)
                     + spec.encode_chunk(spec.TAG_SAMPLES, samples))
    return path


@pytest.mark.parametrize(("count", "rate", "expected"), [
    ("2147483648", "64", "channel_count '2147483648' (1 to 65536 accepted)"),
    ("0", "64", "channel_count '0'"),
    ("-3", "64", "channel_count '-3'"),
    ("4", "nan", "nominal_srate 'nan'"),
    ("4", "-250", "nominal_srate '-250'"),
    ("4", "1e309", "nominal_srate '1e309'"),
])
def test_an_xdf_declaring_an_impossible_stream_is_refused_before_it_is_parsed(tmp_path, count, rate, expected):
    path = _xdf(tmp_path / "evil.xdf", count, rate)
    assert path.stat().st_size < 400
    started = time.monotonic()
    with pytest.raises(RecordingFormatError) as err:
        read_recording(path)
    assert str(path) in str(err.value) and expected in str(err.value)
    assert time.monotonic() - started < 2.0


def test_timestamps_that_are_not_times_are_refused_with_the_file_named(tmp_path):
    path = tmp_path / "nan_time.csv"
    path.write_text("timestamp,PPG\n0.0,1\n0.1,2\nnan,3\n0.3,4\ninf,5\n", encoding="utf-8")
    with pytest.raises(RecordingFormatError, match=r"nan_time\.csv.*2 of 5 timestamps are NaN or infinite "
                                                   r"\(first at sample 2\)"):
        read_recording(path)
    with pytest.raises(RecordingFormatError, match="nominal rate nan Hz is not a finite rate >= 0"):
        Stream("s", "PPG", np.zeros((3, 1)), np.arange(3.0), float("nan"), ["PPG"])


@pytest.mark.slow
def test_replaying_a_csv_with_a_nan_timestamp_is_one_line_not_a_hang(tmp_path):
    path = tmp_path / "nan_time.csv"
    path.write_text("timestamp,PPG\n0.0,1\n0.1,2\nnan,3\n0.3,4\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "biostream", "replay", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("biostream: error:")]
    assert len(errors) == 1 and "nan_time.csv" in errors[0] and "NaN or infinite" in errors[0]
    assert "Traceback" not in done.stderr


def test_a_path_the_system_refuses_is_one_line_naming_it(tmp_path):
    too_long = tmp_path / ("x" * 300 + ".xdf")  # past NAME_MAX: the system refuses to even look it up
    with pytest.raises(RecordingFormatError, match=r"x{300}\.xdf' cannot be read: File name too long"):
        read_recording(too_long)


@pytest.fixture(scope="module")
def good_xdf(tmp_path_factory):
    recording = simulate_session("stress", ["ppg"], duration_s=4.0, seed=2)
    return write_xdf(tmp_path_factory.mktemp("xdf") / "good.xdf", recording).read_bytes()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_xdf_files_load_or_fail_in_one_named_line(tmp_path, good_xdf, data):
    damaged = bytearray(good_xdf)
    kind = data.draw(st.sampled_from(["truncate", "flip", "overwrite"]))
    if kind == "truncate":
        damaged = damaged[: data.draw(st.integers(1, len(damaged) - 1))]
    elif kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(damaged) - 1))
            damaged[at] ^= 1 << data.draw(st.integers(0, 7))
    else:
        at = data.draw(st.integers(0, len(damaged) - 9))
        damaged[at: at + 8] = data.draw(st.binary(min_size=8, max_size=8))
    path = tmp_path / "damaged.xdf"
    path.write_bytes(bytes(damaged))
    try:
        recording = read_recording(path)
    except RecordingFormatError as err:
        assert "damaged.xdf" in str(err) and "\n" not in str(err).strip()
        return
    for stream in recording.streams:  # what loads is usable: times are times, shapes agree
        assert np.isfinite(stream.timestamps).all() and stream.data.shape[0] == stream.timestamps.shape[0]


@pytest.mark.parametrize("opcode", [b"\x8e", b"\x95"])  # BINBYTES8 of 2**50 bytes; FRAME of 2**62 bytes
def test_a_tiny_wesad_pickle_declaring_petabytes_is_refused(tmp_path, opcode):
    folder = tmp_path / "S2"
    folder.mkdir()
    path = folder / "S2.pkl"
    size = 2**50 if opcode == b"\x8e" else 2**62
    path.write_bytes(b"\x80\x04" + opcode + size.to_bytes(8, "little") + b".")
    with pytest.raises(RecordingFormatError, match=r"S2\.pkl' is not a readable pickle: it declares more data "
                                                   r"than its 12 bytes hold"):
        read_recording(path)


def test_a_binary_or_folder_config_is_one_line_naming_it(tmp_path):
    from bridges.config import ConfigError, read_toml

    binary = tmp_path / "run.toml"
    binary.write_bytes(b"\x00\xff\xfe\x80 not text")
    with pytest.raises(ConfigError, match=r"config file '.*run\.toml' is not text \(byte 1 is not UTF-8\)"):
        read_toml(binary)
    with pytest.raises(ConfigError, match="is a directory"):
        read_toml(tmp_path)
