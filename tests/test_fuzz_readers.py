"""Property-based fuzzing of every reader: a valid small file, made here, then damaged.

The property, for each reader (EDF, BDF, CSV, WESAD pickle, ISRUC .mat + labels, XDF, bridge bundle): reading
either gives a usable result or raises :class:`~devices.errors.BadInputError` (``RecordingFormatError``,
``BundleError``) whose one-line message names the file, within :data:`TIME_BOUND_S`; never another exception,
a hang, or memory taken because a header declared it. Damage: a cut at every record/chunk/opcode/element boundary
(and one byte either side) and at random offsets, flipped bits, overwritten bytes, and absurd values in the fields
that declare sizes, counts and rates.

Examples are bounded (``max_examples`` 30-60) so each test takes a few seconds; the catalogue of what was tried
is in the test names and in the ``_ABSURD`` lists.
"""

from __future__ import annotations

import functools
import io
import pickle
import pickletools
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyedflib
import pytest
import scipy.io
from _wesad_pickle import Py2StylePickler
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bundle import bridge_state, make_manifest, make_onnx

from bridges.bundle import Bundle, BundleError, read_bundle, write_bundle
from devices.errors import BadInputError, RecordingFormatError
from devices.formats import XdfWriter, read_recording, read_xdf
from devices.formats import _xdf_spec as spec
from devices.recording import Recording

#: Most seconds one read may take (the files here are a few kB; a refusal should be immediate).
TIME_BOUND_S = 5.0


def fuzz(max_examples: int = 40) -> settings:
    """Bounded examples, no per-example deadline (two shared cores), fixtures reused across examples."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


#: Values written into numeric header fields: sizes and counts of 10^9, 10^6 channels, negative, NaN, infinite.
_ABSURD_NUMBERS = [
    "1000000000", "999999999", "1000000", "99999999", "-1", "-5", "0", "nan", "NaN", "inf", "-inf", "1e308",
    "1e-300", "-0.5", "0.0001", "3.5", "abc", "", "0x10", "+-1",
]


# ---------------------------------------------------------------------------------------------- shared helpers


def _damage(data: st.DataObject, blob: bytes, boundaries: Sequence[int]) -> bytes:
    """Cut at a boundary (or a byte either side), cut anywhere, flip bits, or overwrite 1-16 bytes."""
    kind = data.draw(st.sampled_from(["cut at a boundary", "cut", "flip", "overwrite"]), label="damage")
    damaged = bytearray(blob)
    if kind == "cut at a boundary":
        at = data.draw(st.sampled_from(list(boundaries))) + data.draw(st.integers(-1, 1))
        return bytes(damaged[: min(max(at, 1), len(blob) - 1)])
    if kind == "cut":
        return bytes(damaged[: data.draw(st.integers(1, len(blob) - 1))])
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            at = data.draw(st.integers(0, len(blob) - 1))
            damaged[at] ^= 1 << data.draw(st.integers(0, 7))
        return bytes(damaged)
    size = data.draw(st.integers(1, 16))
    at = data.draw(st.integers(0, len(blob) - size))
    damaged[at : at + size] = data.draw(st.binary(min_size=size, max_size=size))
    return bytes(damaged)


def _loads_or_refuses(path: Path, read: Callable[[Path], Any] = read_recording, named: Path | None = None) -> Any:
    """Read ``path``; return the result, or None after checking the refusal names ``named`` (default: the path)."""
    started = time.monotonic()
    try:
        result = read(path)
    except BadInputError as err:
        message = str(err)
        assert str(named or path) in message, message
        assert "\n" not in message.strip(), message
        result = None
    elapsed = time.monotonic() - started
    assert elapsed < TIME_BOUND_S, f"reading took {elapsed:.1f} s"
    if isinstance(result, Recording):
        for stream in result.streams:  # what loads is usable: times are times, shapes and labels agree
            assert stream.data.ndim == 2 and stream.data.shape[0] == stream.timestamps.shape[0]
            assert np.isfinite(stream.timestamps).all()
            assert np.isfinite(stream.nominal_srate) and stream.nominal_srate >= 0
            assert len(stream.channel_labels) == stream.data.shape[1] or stream.n_samples == 0
    return result


# ------------------------------------------------------------------------------------------------- EDF / BDF


def _edf_file(path: Path, kind: str) -> tuple[bytes, list[int]]:
    """An EDF+ or BDF+ file of 4 one-second records (2 signals at 64 and 8 Hz, annotations); its record edges."""
    rng = np.random.default_rng(1)
    digital = (-8388608, 8388607) if kind == "bdf" else (-32768, 32767)
    headers = [
        dict(label=label, dimension="uV", sample_frequency=rate, physical_max=100.0, physical_min=-100.0,
             digital_max=digital[1], digital_min=digital[0])
        for label, rate in (("ECG", 64), ("Resp", 8))
    ]
    file_type = pyedflib.FILETYPE_BDFPLUS if kind == "bdf" else pyedflib.FILETYPE_EDFPLUS
    writer = pyedflib.EdfWriter(str(path), 2, file_type=file_type)
    try:
        writer.setSignalHeaders(headers)
        writer.writeSamples([np.clip(rng.normal(0, 30, 64 * 4), -100, 100), np.linspace(-90, 90, 8 * 4)])
        writer.writeAnnotation(1.5, -1, "stim")
    finally:
        writer.close()
    blob = path.read_bytes()
    header_bytes = int(blob[184:192])
    record = (len(blob) - header_bytes) // 4
    return blob, [header_bytes + k * record for k in range(5)]


@pytest.fixture(scope="module")
def edf_files(tmp_path_factory) -> dict[str, tuple[bytes, list[int]]]:
    folder = tmp_path_factory.mktemp("edf")
    return {kind: _edf_file(folder / f"good.{kind}", kind) for kind in ("edf", "bdf")}


@pytest.mark.parametrize("kind", ["edf", "bdf"])
@fuzz()
@given(data=st.data())
def test_damaged_edf_and_bdf_files_load_or_fail_in_one_named_line(tmp_path, edf_files, kind, data):
    blob, records = edf_files[kind]
    path = tmp_path / f"damaged.{kind}"
    path.write_bytes(_damage(data, blob, [0, 256, 256 * 3, *records]))
    _loads_or_refuses(path)


def _edf_fields(n_signals: int) -> dict[str, tuple[int, int]]:
    """Header field → (offset, width) for a file with ``n_signals`` signals (annotations included)."""
    fields = {"startdate": (168, 8), "starttime": (176, 8), "header bytes": (184, 8), "reserved": (192, 44),
              "records": (236, 8), "record duration": (244, 8), "signals": (252, 4)}
    offset = 256
    for name, width in (("label", 16), ("transducer", 80), ("dimension", 8), ("physical min", 8),
                        ("physical max", 8), ("digital min", 8), ("digital max", 8), ("prefilter", 80),
                        ("samples per record", 8), ("signal reserved", 32)):
        for k in range(n_signals):
            fields[f"{name} {k}"] = (offset + k * width, width)
        offset += n_signals * width
    return fields


_EDF_FIELDS = _edf_fields(3)


@fuzz(60)
@given(
    kind=st.sampled_from(["edf", "bdf"]),
    field=st.sampled_from(sorted(_EDF_FIELDS)),
    value=st.one_of(
        st.sampled_from(_ABSURD_NUMBERS),
        st.integers(-(10**7), 10**9).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.sampled_from(["EDF+D", "EDF+C", "BDF+C", "EDF Annotations", "BDF Annotations", "\xff\x00"]),
    ),
)
def test_edf_headers_declaring_absurd_values_are_refused_or_read(tmp_path, edf_files, kind, field, value):
    blob, _ = edf_files[kind]
    offset, width = _EDF_FIELDS[field]
    damaged = bytearray(blob)
    damaged[offset : offset + width] = value.encode("latin-1").ljust(width)[:width]
    path = tmp_path / f"absurd.{kind}"
    path.write_bytes(bytes(damaged))
    _loads_or_refuses(path)


def test_edf_declaring_a_billion_records_or_samples_is_refused_from_its_size(tmp_path, edf_files):
    blob, _ = edf_files["edf"]
    for field in ("records", "samples per record 0", "samples per record 2"):
        offset, width = _EDF_FIELDS[field]
        damaged = bytearray(blob)
        damaged[offset : offset + width] = b"99999999"
        path = tmp_path / "big.edf"
        path.write_bytes(bytes(damaged))
        with pytest.raises(RecordingFormatError, match=r"big\.edf' is truncated: its header promises"):
            read_recording(path)


# ------------------------------------------------------------------------------------------------------- CSV

_CSV = "\n".join(
    ["# sfreq_hz=50", "# name=Polar", "timestamp,ECG[uV],Resp,label"]
    + [f"{k / 50:.3f},{np.sin(k / 5):.4f},{k % 7},{'baseline' if k < 60 else 'stress'}" for k in range(120)]
) + "\n"
_CSV_CELLS = ["nan", "inf", "-inf", "1e309", "", "x", "9" * 400, "0x1p3", "1_000", "--1", '"', "1,2", "\x00", "\u00e9"]


@fuzz(50)
@given(data=st.data())
def test_damaged_csv_files_load_or_fail_in_one_named_line(tmp_path, data):
    blob = _CSV.encode()
    if data.draw(st.booleans(), label="text edit"):
        lines = _CSV.split("\n")
        k = data.draw(st.integers(0, len(lines) - 2), label="line")
        if k < 2:
            lines[k] = f"# sfreq_hz={data.draw(st.sampled_from(_ABSURD_NUMBERS))}"
        else:
            cells = lines[k].split(",")
            cells[data.draw(st.integers(0, len(cells) - 1))] = data.draw(st.sampled_from(_CSV_CELLS))
            lines[k] = ",".join(cells)
        blob = "\n".join(lines).encode("utf-8")
    else:
        starts = [0] + [k + 1 for k, byte in enumerate(blob) if byte == 0x0A]
        blob = _damage(data, blob, starts)
    path = tmp_path / "damaged.csv"
    path.write_bytes(blob)
    _loads_or_refuses(path)


# ----------------------------------------------------------------------------------------------- WESAD pickle


def _wesad_content() -> dict:
    rng = np.random.default_rng(2)
    n = 700
    return {
        "signal": {
            "chest": {key: rng.normal(0, 1, (n, width)) for key, width in
                      (("ACC", 3), ("ECG", 1), ("EMG", 1), ("EDA", 1), ("Temp", 1), ("Resp", 1))},
            "wrist": {"ACC": rng.normal(0, 1, (32, 3)), "BVP": rng.normal(0, 1, (64, 1)),
                      "EDA": rng.normal(0, 1, (4, 1)), "TEMP": rng.normal(0, 1, (4, 1))},
        },
        "label": np.repeat(np.array([0, 1, 2, 7], dtype=np.int32), n // 4),
        "subject": "S2",
    }


@pytest.fixture(scope="module")
def wesad_pickles() -> dict[str, bytes]:
    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(_wesad_content())
    python2 = buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
    return {"python2": python2, "protocol5": pickle.dumps(_wesad_content(), protocol=5)}


# Opcodes whose argument is a length or a memo index, and the argument's width in bytes.
_LENGTH_OPCODES = {"BINUNICODE": 4, "BINBYTES": 4, "BINSTRING": 4, "LONG4": 4, "LONG_BINGET": 4, "LONG_BINPUT": 4,
                   "FRAME": 8, "BINBYTES8": 8, "BINUNICODE8": 8, "BYTEARRAY8": 8, "SHORT_BINBYTES": 1,
                   "SHORT_BINSTRING": 1, "SHORT_BINUNICODE": 1, "BINGET": 1, "BINPUT": 1}


@pytest.mark.parametrize("flavour", ["python2", "protocol5"])
@fuzz(50)
@given(data=st.data())
def test_damaged_wesad_pickles_load_or_fail_in_one_named_line(tmp_path, wesad_pickles, flavour, data):
    blob = wesad_pickles[flavour]
    opcodes = list(pickletools.genops(blob))
    if data.draw(st.booleans(), label="absurd length"):
        op, _, at = data.draw(st.sampled_from([o for o in opcodes if o[0].name in _LENGTH_OPCODES]))
        width = _LENGTH_OPCODES[op.name]
        value = data.draw(st.sampled_from([(1 << (8 * width)) - 1, 1 << (8 * width - 1), 0, 10**9 % (1 << 8 * width)]))
        damaged = bytearray(blob)
        damaged[at + 1 : at + 1 + width] = value.to_bytes(width, "little")
        blob = bytes(damaged)
    else:
        blob = _damage(data, blob, [at for _, _, at in opcodes])
    folder = tmp_path / "S2"
    folder.mkdir(exist_ok=True)
    (folder / "S2.pkl").write_bytes(blob)
    _loads_or_refuses(folder / "S2.pkl")


@pytest.mark.parametrize(
    "put", [b"r" + struct.pack("<I", 10**9), b"r" + struct.pack("<I", 2**32 - 1), b"p1000000000\n"],
    ids=["LONG_BINPUT 10^9", "LONG_BINPUT 2^32-1", "PUT 10^9"],
)
def test_a_pickle_storing_its_first_object_under_a_huge_memo_index_is_refused(tmp_path, put):
    """Found by the fuzz test above (one flipped bit turned REDUCE into LONG_BINPUT 1260916849): the C unpickler
    grows its memo table to the index and clears it, 16 GB and 50 s for a 5-byte opcode."""
    folder = tmp_path / "S2"
    folder.mkdir()
    path = folder / "S2.pkl"
    path.write_bytes(b"\x80\x02]" + put + b".")
    started = time.monotonic()
    with pytest.raises(RecordingFormatError, match=r"S2\.pkl' is not a readable pickle: memo index \d+ at byte 3 is "
                                                   r"far ahead of the 1 objects stored so far"):
        read_recording(path)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("shape", [(10**9,), (10**9, 10**6), (2**62,), (3, 2**63 - 1), (-1,)])
@pytest.mark.parametrize("dtype", ["<f8", "V1000000000"])
def test_wesad_arrays_declaring_absurd_shapes_are_refused_without_allocating(tmp_path, shape, dtype):
    reduce = np.zeros(3).__reduce__()
    state = list(reduce[2])
    state[1], state[2] = shape, np.dtype(dtype)

    class Declared:
        def __reduce__(self):
            return reduce[0], reduce[1], tuple(state)

    folder = tmp_path / "S2"
    folder.mkdir()
    path = folder / "S2.pkl"
    path.write_bytes(pickle.dumps({"signal": {"chest": {"ACC": Declared()}, "wrist": {}}, "label": Declared()}, 2))
    tracemalloc.start()
    try:
        with pytest.raises(RecordingFormatError, match=r"S2\.pkl"):
            read_recording(path)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------------------------------------- ISRUC

_ISRUC_VARIABLES = ["F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1", "X2", "LOC_A2"]


def _mat_elements(blob: bytes) -> list[int]:
    """Start of every top-level element of a little-endian MAT v5 file."""
    starts, offset = [], 128
    while offset + 8 <= len(blob):
        starts.append(offset)
        offset += 8 + struct.unpack_from("<I", blob, offset + 4)[0]
    return starts


@pytest.fixture(scope="module")
def isruc_subjects() -> dict[str, tuple[bytes, bytes]]:
    """A subject's .mat (2 epochs of 8 channels), stored plain and compressed, and its label file."""
    rng = np.random.default_rng(3)
    variables = {name: rng.normal(0, 30, (2, 6000)) for name in _ISRUC_VARIABLES}
    labels = ("\n".join(str(code) for code in [0, 1, 2, 3, 5, 2, 4, 0] * 4) + "\n").encode()
    subjects = {}
    for kind, compress in (("plain", False), ("compressed", True)):
        buffer = io.BytesIO()
        scipy.io.savemat(buffer, variables, do_compression=compress)
        subjects[kind] = buffer.getvalue(), labels
    return subjects


def _isruc_layout(root: Path, mat: bytes, labels: bytes) -> Path:
    (root / "ExtractedChannels").mkdir(parents=True, exist_ok=True)
    (root / "RawData" / "1").mkdir(parents=True, exist_ok=True)
    (root / "RawData" / "1" / "1_1.txt").write_bytes(labels)
    path = root / "ExtractedChannels" / "subject1.mat"
    path.write_bytes(mat)
    return path


@pytest.mark.parametrize("storage", ["plain", "compressed"])
@fuzz()
@given(data=st.data())
def test_damaged_isruc_subjects_load_or_fail_in_one_named_line(tmp_path, isruc_subjects, storage, data):
    mat, labels = isruc_subjects[storage]
    if data.draw(st.sampled_from(["mat", "labels"]), label="file") == "mat":
        mat = _damage(data, mat, [0, 116, 126, *_mat_elements(mat)])
    else:
        labels = _damage(data, labels, [0] + [k + 1 for k, byte in enumerate(labels) if byte == 0x0A])
    path = _isruc_layout(tmp_path, mat, labels)
    _loads_or_refuses(path)


def _compressed_variable(name: str, shape: tuple[int, int], fill: bytes) -> bytes:
    """An miCOMPRESSED element holding a double matrix ``name`` of ``shape``, every value ``fill`` (8 bytes)."""
    name_raw = name.encode()
    n_bytes = shape[0] * shape[1] * 8
    matrix = struct.pack("<II", 6, 8) + struct.pack("<II", 6, 0)  # array flags: mxDOUBLE_CLASS
    matrix += struct.pack("<II", 5, 8) + struct.pack("<ii", *shape)  # dimensions
    matrix += struct.pack("<II", 1, len(name_raw)) + name_raw.ljust(-(-len(name_raw) // 8) * 8, b"\0")
    matrix += struct.pack("<II", 9, n_bytes)  # miDOUBLE data follows
    compressor = zlib.compressobj(1)
    body = [compressor.compress(struct.pack("<II", 14, len(matrix) + n_bytes) + matrix)]
    block = fill * (1 << 17)
    for _ in range(n_bytes // len(block)):
        body.append(compressor.compress(block))
    body.append(compressor.compress(fill * ((n_bytes % len(block)) // 8)))
    body.append(compressor.flush())
    compressed = b"".join(body)
    return struct.pack("<II", 15, len(compressed)) + compressed


def test_a_compressed_channel_declaring_more_than_a_day_is_refused_before_it_is_inflated(tmp_path, isruc_subjects):
    mat, labels = isruc_subjects["plain"]
    header = mat[:128]
    bomb = header + _compressed_variable("F3_A2", (2881, 6000), b"\0" * 8)  # 138 MB of zeros in < 1 MB
    for name in _ISRUC_VARIABLES[1:]:
        bomb += _compressed_variable(name, (2, 6000), b"\0" * 8)
    assert len(bomb) < 1 << 20
    path = _isruc_layout(tmp_path, bomb, labels)
    tracemalloc.start()
    try:
        with pytest.raises(RecordingFormatError, match=r"subject1\.mat': variable 'F3_A2' declares 2881 epochs"):
            read_recording(path)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
    finally:
        tracemalloc.stop()
    # The same channel within the limit is read (so the refusal above is about the size, not the writing).
    ok = header + b"".join(_compressed_variable(name, (2, 6000), struct.pack("<d", 1.5)) for name in _ISRUC_VARIABLES)
    path.write_bytes(ok)
    assert float(read_recording(path).stream("EEG").data[0, 0]) == 1.5


@pytest.mark.parametrize("dims", [(10**9, 6000), (2**31 - 1, 2**31 - 1), (3, 7), (-1, 6000)])
def test_isruc_variables_declaring_absurd_dimensions_are_refused(tmp_path, isruc_subjects, dims):
    mat, labels = isruc_subjects["plain"]
    element = bytearray(zlib.decompress(_compressed_variable("F3_A2", (2, 6000), b"\0" * 8)[8:]))
    element[32:40] = struct.pack("<ii", *dims)  # after the matrix tag (8) and the array flags (16): the dimensions
    packed = zlib.compress(bytes(element))
    forged = mat[:128] + struct.pack("<II", 15, len(packed)) + packed
    forged += b"".join(_compressed_variable(name, (2, 6000), b"\0" * 8) for name in _ISRUC_VARIABLES[1:])
    path = _isruc_layout(tmp_path, forged, labels)
    with pytest.raises(RecordingFormatError, match=r"subject1\.mat'"):
        read_recording(path)


# ----------------------------------------------------------------------------------------------------- XDF


@pytest.fixture(scope="module")
def xdf_file(tmp_path_factory) -> tuple[bytes, list[int]]:
    """Three streams (float32, string markers, int16) in interleaved chunks with clock offsets and boundaries."""
    path = tmp_path_factory.mktemp("xdf") / "good.xdf"
    rng = np.random.default_rng(4)
    with XdfWriter(path, boundary_interval_s=3.0) as writer:
        eeg = writer.add_stream("eeg", "EEG", ["a", "b", "c"], 100.0, "float32")
        events = writer.add_stream("events", "Markers", ["m"], 0.0, "string")
        misc = writer.add_stream("misc", "Misc", ["x"], 50.0, "int16")
        for k in range(12):
            writer.write_samples(eeg, rng.normal(size=(25, 3)).astype(np.float32), k + np.arange(25) / 100)
            writer.write_samples(events, [f"event {k}"], [k + 0.5])
            writer.write_samples(misc, np.arange(10, dtype=np.int16).reshape(-1, 1), k + np.arange(10) / 50)
            writer.write_clock_offset(eeg, float(k), -0.01)
    blob = path.read_bytes()
    starts, pos = [], 4
    while pos < len(blob):
        starts.append(pos)
        pos += 1 + blob[pos] + int.from_bytes(blob[pos + 1 : pos + 1 + blob[pos]], "little")
    return blob, starts


@fuzz(60)
@given(data=st.data())
def test_damaged_xdf_chunks_load_or_fail_in_one_named_line(tmp_path, xdf_file, data):
    blob, starts = xdf_file
    if data.draw(st.booleans(), label="absurd header field"):
        at = data.draw(st.sampled_from(starts[1:]))
        width = blob[at]
        damaged = bytearray(blob)
        where = data.draw(st.sampled_from(["width", "length", "tag", "count"]))
        if where == "width":
            damaged[at] = data.draw(st.sampled_from([0, 2, 7, 255, 1, 4, 8]))
        elif where == "length":
            value = data.draw(st.sampled_from([0, 1, 2**31, 2**63, 7, 10**9]))
            damaged[at + 1 : at + 1 + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
        elif where == "tag":
            damaged[at + 1 + width : at + 3 + width] = data.draw(st.integers(0, 0xFFFF)).to_bytes(2, "little")
        else:  # a sample count (or a string length) of 2**60 behind an 8-byte width
            count = at + 1 + width + 2 + 4
            damaged[count : count + 1 + blob[count]] = b"\x08" + (2**60).to_bytes(8, "little")
        blob = bytes(damaged)
    elif data.draw(st.booleans(), label="absurd stream field"):
        field = data.draw(st.sampled_from(["channel_count", "nominal_srate", "channel_format"]))
        value = data.draw(st.sampled_from([*_ABSURD_NUMBERS, "65536", "65537", "2147483648", "float16", "string"]))
        blob = _rewrite_stream_header(blob, starts, field, value)
    else:
        blob = _damage(data, blob, starts)
    path = tmp_path / "damaged.xdf"
    path.write_bytes(blob)
    recording = _loads_or_refuses(path)
    written = {"eeg": 300, "events": 12, "misc": 120}
    for stream in recording.streams if recording is not None else []:
        # Recovered samples are samples that were written (a damaged header may have renamed the stream).
        assert stream.n_samples <= written.get(stream.name, max(written.values()))


def test_an_xdf_where_every_chunk_fails_late_is_given_up_in_bounded_time(tmp_path):
    """Damaged Samples chunks every 64 bytes, each declaring samples up to the end of the file, a boundary after
    each: checked naively, every chunk would be read to the end (quadratic); the scan's work budget stops it."""
    head = spec.MAGIC + spec.encode_chunk(spec.TAG_FILE_HEADER, spec.info_xml({"version": "1.0"}).encode())
    fields = {"name": "x", "type": "t", "channel_count": "1", "nominal_srate": "10", "channel_format": "int8"}
    head += spec.encode_chunk(spec.TAG_STREAM_HEADER, struct.pack("<I", 1) + spec.info_xml(fields).encode())
    n_units, unit = 16000, 64
    total = len(head) + n_units * unit
    body = bytearray()
    boundary = spec.encode_chunk(spec.TAG_BOUNDARY, spec.BOUNDARY_UUID)
    for _ in range(n_units):
        remaining = total - len(head) - len(body)
        chunk = b"\x08" + struct.pack("<Q", remaining + 4) + b"\x03\x00" + struct.pack("<I", 1)  # 5 bytes too long
        chunk += b"\x08" + struct.pack("<Q", (remaining - 20) // 10 + 3)  # a sample count up to the end
        body += chunk + b"\x08" * (unit - len(chunk) - len(boundary)) + boundary
    path = tmp_path / "dense.xdf"
    path.write_bytes(bytes(head + body))
    recording = _loads_or_refuses(path)
    assert recording is not None and recording.stream("x").n_samples == 0
    assert "damage too dense to check any further" in recording.info["damage"]


def _rewrite_stream_header(blob: bytes, starts: list[int], field: str, value: str) -> bytes:
    """The file with ``<field>`` of the first StreamHeader set to ``value`` (the chunk re-encoded to fit)."""
    start = next(k for k in starts if blob[k + 1 + blob[k] : k + 3 + blob[k]] == b"\x02\x00")
    width = blob[start]
    end = start + 1 + width + int.from_bytes(blob[start + 1 : start + 1 + width], "little")
    content = blob[start + 1 + width + 2 : end]
    opened, closed = f"<{field}>".encode(), f"</{field}>".encode()
    head, rest = content.split(opened, 1)
    content = head + opened + value.encode() + closed + rest.split(closed, 1)[1]
    return blob[:start] + spec.encode_chunk(spec.TAG_STREAM_HEADER, content) + blob[end:]


# ---------------------------------------------------------------------------------------------------- bundle


@pytest.fixture(scope="module")
def bundle_blob(tmp_path_factory) -> bytes:
    manifest = make_manifest()
    path = tmp_path_factory.mktemp("bundle") / "good.bxb"
    return write_bundle(path, manifest, make_onnx(), bridge_state(manifest)).read_bytes()


def _zip_records(blob: bytes) -> dict[str, list[int]]:
    """Offsets of the local headers, central-directory entries and end-of-directory record of a zip."""
    return {
        "local": [k for k in range(len(blob)) if blob.startswith(b"PK\x03\x04", k)],
        "central": [k for k in range(len(blob)) if blob.startswith(b"PK\x01\x02", k)],
        "end": [blob.rfind(b"PK\x05\x06")],
    }


# (record, offset in it, width) of the fields that declare versions, flags, methods, sizes, counts and offsets.
_ZIP_FIELDS = [
    ("local", 4, 2), ("local", 6, 2), ("local", 8, 2), ("local", 14, 4), ("local", 18, 4), ("local", 22, 4),
    ("local", 26, 2), ("local", 28, 2),
    ("central", 6, 2), ("central", 8, 2), ("central", 10, 2), ("central", 16, 4), ("central", 20, 4),
    ("central", 24, 4), ("central", 28, 2), ("central", 30, 2), ("central", 42, 4),
    ("end", 8, 2), ("end", 10, 2), ("end", 12, 4), ("end", 16, 4), ("end", 20, 2),
]


@fuzz(60)
@given(data=st.data())
def test_damaged_bundles_load_or_fail_in_one_named_line(tmp_path, bundle_blob, data):
    records = _zip_records(bundle_blob)
    if data.draw(st.booleans(), label="absurd zip field"):
        record, offset, width = data.draw(st.sampled_from(_ZIP_FIELDS))
        at = data.draw(st.sampled_from(records[record])) + offset
        value = data.draw(st.sampled_from([0, 1, 8, 12, 14, 99, 0x800, (1 << (8 * width)) - 1, 1 << (8 * width - 1)]))
        damaged = bytearray(bundle_blob)
        damaged[at : at + width] = value.to_bytes(width, "little")
        blob = bytes(damaged)
    else:
        blob = _damage(data, bundle_blob, [k for starts in records.values() for k in starts])
    path = tmp_path / "damaged.bxb"
    path.write_bytes(blob)
    result = _loads_or_refuses(path, read_bundle)
    assert result is None or isinstance(result, Bundle)


def _rezip(blob: bytes, compression: int = zipfile.ZIP_DEFLATED, members: dict[str, bytes] | None = None) -> bytes:
    """The bundle's members (some replaced by ``members``) in a new zip compressed with ``compression``."""
    with zipfile.ZipFile(io.BytesIO(blob)) as source:
        contents = {name: source.read(name) for name in source.namelist()}
    contents.update(members or {})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, value in contents.items():
            archive.writestr(name, value)
    return out.getvalue()


def test_a_member_whose_entry_understates_its_size_is_not_inflated(tmp_path, bundle_blob):
    """A deflate bomb behind a directory entry that says 100 bytes: zipfile's read() would inflate it whole."""
    spaces = b" " * (64 << 20)  # 64 MiB, about 64 kB deflated
    blob = bytearray(_rezip(bundle_blob, members={"manifest.json": spaces}))
    for record in ("local", "central"):
        for start in _zip_records(bytes(blob))[record]:
            name_at = start + (30 if record == "local" else 46)
            if blob[name_at : name_at + 13] == b"manifest.json":
                size_at = start + (22 if record == "local" else 24)
                blob[size_at : size_at + 4] = struct.pack("<I", 100)
    path = tmp_path / "lying.bxb"
    path.write_bytes(bytes(blob))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=r"lying\.bxb': member 'manifest\.json' is corrupt"):
            read_bundle(path)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20  # before the fix: 141 MiB for this 66 kB file
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_members_compressed_with_unbounded_methods_are_refused_unread(tmp_path, bundle_blob, method):
    path = tmp_path / "bz.bxb"
    path.write_bytes(_rezip(bundle_blob, method))
    with pytest.raises(BundleError, match=rf"bz\.bxb': member '.*' uses compression method {method}"):
        read_bundle(path)


def _odd_zip(blob: bytes, kind: str) -> bytes:
    if kind == "non-UTF-8 name flagged UTF-8":
        blob = blob.replace(b"manifest.json", b"\xffanifest.json")
        for start in _zip_records(blob)["central"]:  # general purpose flag bit 11: zipfile decodes names strictly
            blob = _set(blob, start + 8, struct.pack("<H", 0x800))
        return blob
    if kind == "directory offset past the end":
        return _set(blob, blob.rfind(b"PK\x05\x06") + 16, struct.pack("<I", 0xFFFFFFFF))
    return _set(blob, blob.find(b"PK\x01\x02") + 10, struct.pack("<H", 12))  # bzip2, in the directory only


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("non-UTF-8 name flagged UTF-8", "damaged zip archive: 'utf-8' codec can't decode"),  # UnicodeDecodeError
        ("directory offset past the end", r"member .* is corrupt or unreadable \(negative seek"),  # ValueError
        ("bzip2 method in the directory", "uses compression method 12"),  # OSError: Invalid data stream
    ],
)
def test_zip_damage_that_zipfile_reports_with_other_exceptions_is_one_line(tmp_path, bundle_blob, kind, match):
    path = tmp_path / "odd.bxb"
    path.write_bytes(_odd_zip(bundle_blob, kind))
    with pytest.raises(BundleError, match=match) as refused:
        read_bundle(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)


def _set(blob: bytes, at: int, value: bytes) -> bytes:
    return blob[:at] + value + blob[at + len(value) :]


# ------------------------------------------------------------------------------------ every boundary, every reader


def _boundary_cases(request: pytest.FixtureRequest, kind: str) -> tuple[str, bytes, list[int]]:
    """(file name, valid bytes, every record/chunk/opcode/element/line boundary) of one format."""
    if kind in ("edf", "bdf"):
        blob, records = request.getfixturevalue("edf_files")[kind]
        return f"a.{kind}", blob, [256, 768, *records]
    if kind == "csv":
        csv = _CSV.encode()
        return "a.csv", csv, [k + 1 for k, byte in enumerate(csv) if byte == 0x0A]
    if kind.startswith("wesad"):
        blob = request.getfixturevalue("wesad_pickles")[kind.split()[1]]
        return "S2/S2.pkl", blob, [at for _, _, at in pickletools.genops(blob)]
    if kind.startswith("isruc"):
        mat, _ = request.getfixturevalue("isruc_subjects")[kind.split()[1]]
        return "isruc", mat, [116, 126, 128, *_mat_elements(mat)]
    if kind == "xdf":
        blob, starts = request.getfixturevalue("xdf_file")
        return "a.xdf", blob, starts
    blob = request.getfixturevalue("bundle_blob")
    return "a.bxb", blob, [k for starts in _zip_records(blob).values() for k in starts]


@pytest.mark.parametrize(
    "kind",
    ["edf", "bdf", "csv", "wesad python2", "wesad protocol5", "isruc plain", "isruc compressed", "xdf", "bundle"],
)
def test_cuts_at_every_boundary_load_or_fail_in_one_named_line(request, tmp_path, kind):
    """Not a sample of the boundaries but all of them, and one byte either side."""
    name, blob, boundaries = _boundary_cases(request, kind)
    (tmp_path / "S2").mkdir()
    read: Callable[[Path], Any] = read_recording
    if name.endswith(".bxb"):
        read = read_bundle
    elif name.endswith(".xdf"):  # pyxdf's clock fit takes 30 ms a file; the damage tests above keep it on
        read = functools.partial(read_xdf, synchronize_clocks=False)
    cuts = sorted({b + d for b in boundaries for d in (-1, 0, 1)} & set(range(1, len(blob))))
    for cut in cuts:
        if name == "isruc":
            path = _isruc_layout(tmp_path / "isruc", blob[:cut], b"0\n" * 40)
        else:
            path = tmp_path / name
            path.write_bytes(blob[:cut])
        _loads_or_refuses(path, read)
    assert len(cuts) >= 10
