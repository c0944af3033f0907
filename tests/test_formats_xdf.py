"""XDF: our writer against pyxdf (the reference reader) and our reader, including killed-writer files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import pyxdf

from devices.errors import BadInputError, RecordingFormatError
from devices.formats import XdfWriter, read_recording, read_xdf, write_xdf
from devices.recording import Recording, Stream

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _load(path: Path, **kwargs):
    kwargs.setdefault("synchronize_clocks", False)
    kwargs.setdefault("dejitter_timestamps", False)
    streams, header = pyxdf.load_xdf(str(path), **kwargs)
    return {s["info"]["name"][0]: s for s in streams}, header


def _channels(stream: dict) -> list[dict]:
    return [
        {k: (v[0] or "") for k, v in ch.items()}
        for ch in stream["info"]["desc"][0]["channels"][0]["channel"]
    ]


@pytest.fixture
def sample_streams():
    rng = np.random.default_rng(0)
    t0 = 12345.678901234
    return {
        "f32": (
            rng.standard_normal((157, 3)).astype(np.float32),
            t0 + np.arange(157) / 256.0 + rng.normal(0, 1e-4, 157),
        ),
        "f64": (rng.standard_normal((40, 2)) * 1e6, t0 + np.arange(40) / 10.0),
        "i16": (rng.integers(-32768, 32767, (64, 4)).astype(np.int16), t0 + np.arange(64) / 128.0),
        "mk": (["start", "wörld ünïcode", "", "a,b<c>&d"], np.array([t0, t0 + 0.5, t0 + 0.5, t0 + 9.0])),
    }


def _write_all(path: Path, streams: dict, chunk: int = 25) -> list[tuple[int, str, int]]:
    """Write every stream in interleaved chunks; return (file size after the call, stream, samples so far)."""
    ends: list[tuple[int, str, int]] = []
    with XdfWriter(path, header={"bundle_sha256": SHA, "operator": "test & <co>"}) as w:
        ids = {
            "f32": w.add_stream("f32", "EEG", ["Fz", "Cz", "Pz"], 256.0, "float32", ["uV"] * 3, None, "src-f32",
                                desc={"manufacturer": "ACME", "nested": {"a": "1"}}),
            "f64": w.add_stream("f64", "ECG", ["ECG", "Resp"], 10.0, "double64", ["mV", "a.u."], ["ECG", "Resp"]),
            "i16": w.add_stream("i16", "Misc", ["a", "b", "c", "d"], 128.0, "int16"),
            "mk": w.add_stream("mk", "Markers", ["label"], 0.0, "string", source_id="src-mk"),
        }
        ends.append((path.stat().st_size, "", 0))
        written = dict.fromkeys(streams, 0)
        progressing = True
        while progressing:
            progressing = False
            for key, (data, stamps) in streams.items():
                start = written[key]
                if start >= len(stamps):
                    continue
                stop = min(start + chunk, len(stamps))
                w.write_samples(ids[key], data[start:stop], stamps[start:stop])
                written[key] = stop
                ends.append((path.stat().st_size, key, stop))
                progressing = True
            if progressing:
                w.write_clock_offset(ids["f32"], 100.0 + len(ends), -0.25)
                ends.append((path.stat().st_size, "", 0))
                w.write_boundary()
                ends.append((path.stat().st_size, "", 0))
        assert w.sample_count(ids["f32"]) == len(streams["f32"][1])
    return ends


def test_round_trip_through_pyxdf_is_exact(tmp_path, sample_streams):
    path = tmp_path / "rt.xdf"
    _write_all(path, sample_streams)
    streams, header = _load(path)
    assert header["info"]["bundle_sha256"] == [SHA]
    assert header["info"]["operator"] == ["test & <co>"]
    assert header["info"]["version"] == ["1.0"]
    for key in ("f32", "f64", "i16"):
        data, stamps = sample_streams[key]
        got = streams[key]
        assert got["time_series"].dtype == data.dtype
        np.testing.assert_array_equal(got["time_series"], data)
        np.testing.assert_array_equal(got["time_stamps"], stamps)  # bit-exact, not approx
    assert [row[0] for row in streams["mk"]["time_series"]] == sample_streams["mk"][0]
    np.testing.assert_array_equal(streams["mk"]["time_stamps"], sample_streams["mk"][1])

    info = streams["f32"]["info"]
    assert info["channel_format"] == ["float32"] and info["source_id"] == ["src-f32"]
    assert float(info["nominal_srate"][0]) == 256.0 and info["channel_count"] == ["3"]
    assert _channels(streams["f32"]) == [{"label": c, "unit": "uV", "type": "EEG"} for c in ("Fz", "Cz", "Pz")]
    assert info["desc"][0]["manufacturer"] == ["ACME"]
    assert _channels(streams["f64"])[1] == {"label": "Resp", "unit": "a.u.", "type": "Resp"}
    assert float(streams["mk"]["info"]["nominal_srate"][0]) == 0.0

    offsets = streams["f32"]
    assert len(offsets["clock_times"]) == 7 and set(offsets["clock_values"]) == {-0.25}
    footer = streams["f32"]["footer"]["info"]
    assert footer["sample_count"] == ["157"]
    assert float(footer["first_timestamp"][0]) == sample_streams["f32"][1][0]
    assert float(footer["last_timestamp"][0]) == sample_streams["f32"][1][-1]
    assert len(footer["clock_offsets"][0]["offset"]) == 7


def test_our_reader_matches_and_applies_clock_offsets(tmp_path, sample_streams):
    path = tmp_path / "ours.xdf"
    _write_all(path, sample_streams)
    raw = read_xdf(path, synchronize_clocks=False)
    synced = read_recording(path)
    assert synced.info["bundle_sha256"] == SHA and synced.info["format"] == "xdf"
    f32 = raw.stream("f32")
    np.testing.assert_array_equal(f32.data, sample_streams["f32"][0])
    np.testing.assert_array_equal(f32.timestamps, sample_streams["f32"][1])
    assert f32.channel_units == ["uV"] * 3 and f32.source_id == "src-f32" and f32.nominal_srate == 256.0
    assert f32.clock_offsets.shape == (7, 2) and np.all(f32.clock_offsets[:, 1] == -0.25)
    assert f32.metadata["desc"] == {"manufacturer": "ACME", "nested": {"a": "1"}}
    # A constant offset of -0.25 s moves every timestamp by -0.25 s once synchronised.
    np.testing.assert_allclose(synced.stream("f32").timestamps, sample_streams["f32"][1] - 0.25, atol=1e-9)
    assert synced.stream("f32").metadata["clock_synchronized"] is True
    # Streams without offsets keep their timestamps exactly.
    np.testing.assert_array_equal(synced.stream("i16").timestamps, sample_streams["i16"][1])
    assert synced.stream("i16").data.dtype == np.int16
    markers = synced.stream("mk")
    assert markers.is_marker and list(markers.data[:, 0]) == sample_streams["mk"][0]


def test_truncated_files_load_every_complete_chunk(tmp_path, sample_streams):
    """Simulate a killed writer: keep the first N bytes for N across the file, including every chunk edge."""
    full = tmp_path / "full.xdf"
    ends = _write_all(full, sample_streams, chunk=40)
    blob = full.read_bytes()
    edges = sorted({e for e, _, _ in ends})
    rng = np.random.default_rng(1)
    cuts = {e + d for e in edges for d in (-1, 0, 1)} | set(rng.integers(edges[0], len(blob), 60).tolist())
    cut_path = tmp_path / "cut.xdf"
    for n in sorted(c for c in cuts if edges[0] <= c < len(blob)):
        cut_path.write_bytes(blob[:n])
        expected = dict.fromkeys(sample_streams, 0)
        for end, key, count in ends:
            if end <= n and key:
                expected[key] = count
        rec = read_xdf(cut_path, synchronize_clocks=False)
        assert rec.info.get("truncated", False) == (n not in edges and n != len(blob)), n
        for key, (data, stamps) in sample_streams.items():
            got = rec.stream(key)
            k = expected[key]
            assert got.n_samples == k, (n, key)
            np.testing.assert_array_equal(got.timestamps, stamps[:k])
            if key != "mk":
                np.testing.assert_array_equal(got.data, data[:k])


def test_pyxdf_alone_reads_a_file_cut_inside_a_samples_chunk(tmp_path, sample_streams):
    full = tmp_path / "full.xdf"
    ends = _write_all(full, sample_streams, chunk=40)
    blob = full.read_bytes()
    sample_ends = [(i, e) for i, (e, key, _) in enumerate(ends) if key]
    cut_path = tmp_path / "cut.xdf"
    for i, end in sample_ends[1::3]:
        previous = ends[i - 1][0]
        for n in (previous + 3, (previous + end) // 2, end - 1):
            cut_path.write_bytes(blob[:n])
            streams, header = _load(cut_path)
            assert header["info"]["bundle_sha256"] == [SHA]
            for key, (data, stamps) in sample_streams.items():
                complete = max([c for e, k, c in ends if k == key and e <= n], default=0)
                got = streams[key]["time_stamps"]
                assert len(got) >= complete  # pyxdf may keep a partly read last sample; ours does not
                np.testing.assert_array_equal(got[:complete], stamps[:complete])
                if key != "mk":
                    np.testing.assert_array_equal(streams[key]["time_series"][:complete], data[:complete])


# Run in a child process: a file-size limit (RLIMIT_FSIZE, as a quota or a full disk would) makes one Samples
# chunk fail part-way, at a different byte for each file; then the limit is lifted and the same samples are
# written again.
_WRITE_PAST_A_LIMIT = """
import errno, json, os, resource, sys
import numpy as np
from devices.formats import XdfWriter

folder, cuts = sys.argv[1], json.loads(sys.argv[2])
data = np.arange(128, dtype=np.float32).reshape(64, 2)
stamps = np.arange(64) / 64.0
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
failures = []
for k, room in enumerate(cuts):
    w = XdfWriter(os.path.join(folder, f"cut{k}.xdf"), boundary_interval_s=None, boundary_interval_bytes=None)
    sid = w.add_stream("ppg", "PPG", ["a", "b"], 64.0)
    w.write_samples(sid, data[:16], stamps[:16])
    resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(w.path) + room, hard))
    try:
        w.write_samples(sid, data[16:], stamps[16:])
        failures.append(None)
    except OSError as err:
        failures.append(errno.errorcode[err.errno])
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    w.write_samples(sid, data[16:], stamps[16:])
    w.close()
print(json.dumps(failures))
"""


def test_a_write_that_fails_part_way_is_cut_back_and_the_file_goes_on(tmp_path):
    """A failed write leaves no partial chunk: pyxdf and our reader open the file, and later writes land whole."""
    cuts = [0, 1, 2, 3, 4, 5, 8, 9, 17, 100, 500, 800]  # bytes of room left inside a ~830-byte Samples chunk
    done = subprocess.run([sys.executable, "-c", _WRITE_PAST_A_LIMIT, str(tmp_path), json.dumps(cuts)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["EFBIG"] * len(cuts)
    data = np.arange(128, dtype=np.float32).reshape(64, 2)
    for k in range(len(cuts)):
        path = tmp_path / f"cut{k}.xdf"
        rec = read_xdf(path, synchronize_clocks=False)
        assert not rec.info.get("truncated", False) and "damage" not in rec.info, cuts[k]
        np.testing.assert_array_equal(rec.stream("ppg").data, data)
        streams, _ = _load(path)
        np.testing.assert_array_equal(streams["ppg"]["time_series"], data)
        np.testing.assert_array_equal(streams["ppg"]["time_stamps"], np.arange(64) / 64.0)


def test_file_left_by_a_killed_process_is_readable(tmp_path, sample_streams):
    """The file is readable while the writer is still open (no footer yet), as after a crash."""
    path = tmp_path / "open.xdf"
    w = XdfWriter(path)
    sid = w.add_stream("ecg", "ECG", ["ECG"], 130.0)
    data = np.arange(260, dtype=np.float32).reshape(-1, 1)
    w.write_samples(sid, data[:130], np.arange(130) / 130.0)
    w.write_samples(sid, data[130:], np.arange(130, 260) / 130.0)
    copy = tmp_path / "copy.xdf"
    shutil.copyfile(path, copy)  # what is on disk now, without close()
    rec = read_recording(copy)
    np.testing.assert_array_equal(rec.stream("ecg").data, data)
    assert "footer" not in rec.stream("ecg").metadata
    w.close()
    w.close()  # idempotent
    assert read_recording(path).stream("ecg").metadata["footer"]["sample_count"] == "260"
    with pytest.raises(RuntimeError, match="is closed"):
        w.write_samples(sid, data[:1], [0.0])


def test_concurrent_writers_do_not_interleave_chunks(tmp_path):
    path = tmp_path / "threads.xdf"
    n_threads, n_chunks, chunk = 6, 40, 17
    with XdfWriter(path) as w:
        ids = [w.add_stream(f"s{k}", "EEG", [f"c{j}" for j in range(k + 1)], 100.0) for k in range(n_threads)]

        def pump(k: int) -> None:
            for c in range(n_chunks):
                base = c * chunk
                values = np.full((chunk, k + 1), k, dtype=np.float32) + np.arange(base, base + chunk)[:, None]
                w.write_samples(ids[k], values, (base + np.arange(chunk)) / 100.0)

        threads = [threading.Thread(target=pump, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    streams, _ = _load(path)
    for k in range(n_threads):
        got = streams[f"s{k}"]
        expected = k + np.arange(n_chunks * chunk, dtype=np.float32)[:, None].repeat(k + 1, axis=1)
        np.testing.assert_array_equal(got["time_series"], expected)
        np.testing.assert_array_equal(got["time_stamps"], np.arange(n_chunks * chunk) / 100.0)


def test_write_xdf_round_trips_a_recording(tmp_path):
    stamps = 50.0 + np.arange(20) / 4.0
    rec = Recording(
        streams=[
            Stream("ppg", "PPG", np.linspace(0, 1, 20), stamps, 4.0, ["BVP"], ["a.u."], source_id="e4",
                   clock_offsets=[[50.0, 0.1], [55.0, 0.1]]),
            Stream("ev", "Markers", np.array(["a", "b"], dtype=object), [50.0, 52.0], 0.0, ["label"],
                   channel_format="string"),
        ],
        info={"subject": "S2", "source": "elsewhere", "n": 3},
    )
    out = write_xdf(tmp_path / "r.xdf", rec, header={"bundle_sha256": SHA})
    back = read_xdf(out, synchronize_clocks=False)
    assert back.info["subject"] == "S2" and back.info["n"] == "3" and back.info["bundle_sha256"] == SHA
    assert back.info["source"] == str(out)
    ppg = back.stream("ppg")
    np.testing.assert_array_equal(ppg.data[:, 0], np.linspace(0, 1, 20).astype(np.float32))
    np.testing.assert_array_equal(ppg.timestamps, stamps)
    np.testing.assert_array_equal(ppg.clock_offsets, [[50.0, 0.1], [55.0, 0.1]])
    assert list(back.stream("ev").data[:, 0]) == ["a", "b"]
    # Re-writing a synchronised recording must not apply the offsets a second time.
    synced = read_xdf(out)
    again = read_xdf(write_xdf(tmp_path / "again.xdf", synced))
    np.testing.assert_allclose(again.stream("ppg").timestamps, synced.stream("ppg").timestamps)


def test_writer_rejects_bad_input(tmp_path):
    with XdfWriter(tmp_path / "bad.xdf") as w:
        sid = w.add_stream("x", "EEG", ["a", "b"], 10.0, "int16")
        with pytest.raises(BadInputError, match="stream 'x': data of shape"):
            w.write_samples(sid, np.zeros((3, 3)), np.zeros(3))
        with pytest.raises(BadInputError, match="not all integers"):
            w.write_samples(sid, np.full((2, 2), 1.5), np.zeros(2))
        with pytest.raises(BadInputError, match="range"):
            w.write_samples(sid, np.full((2, 2), 70000), np.zeros(2))
        with pytest.raises(BadInputError, match="no stream with id 9"):
            w.write_samples(9, np.zeros((1, 2)), [0.0])
        with pytest.raises(BadInputError, match="channel format"):
            w.add_stream("y", "EEG", ["a"], 10.0, "float16")
        with pytest.raises(BadInputError, match="timestamps must be finite"):
            w.write_samples(sid, np.zeros((1, 2)), [np.nan])
    with pytest.raises(BadInputError, match="set by the writer"):
        XdfWriter(tmp_path / "h.xdf", header={"version": "2"})
    with pytest.raises(BadInputError, match="not a valid XML element name"):
        XdfWriter(tmp_path / "h.xdf", header={"bad key": "1"})


def test_reader_reports_damaged_files(tmp_path):
    not_xdf = tmp_path / "x.xdf"
    not_xdf.write_bytes(b"0       EDF header pretending")
    with pytest.raises(RecordingFormatError, match=r"'.*x.xdf' is not an XDF file: it starts like an EDF file"):
        read_recording(not_xdf)
    header_only = tmp_path / "h.xdf"
    with XdfWriter(header_only):
        pass
    cut = tmp_path / "cut.xdf"
    cut.write_bytes(header_only.read_bytes()[:20])
    with pytest.raises(RecordingFormatError, match="is truncated: it has no complete XDF FileHeader"):
        read_recording(cut)
    empty = tmp_path / "e.xdf"
    empty.write_bytes(b"")
    with pytest.raises(RecordingFormatError, match="is empty"):
        read_recording(empty)
    assert os.path.getsize(header_only) > 4 and len(read_recording(header_only)) == 0


# ------------------------------------------------------------------------------------ damage in the middle


def _chunks(blob: bytes) -> list[tuple[int, int, int]]:
    """``(start, end, tag)`` of every chunk of an intact file."""
    out, pos = [], 4
    while pos < len(blob):
        width = blob[pos]
        length = int.from_bytes(blob[pos + 1 : pos + 1 + width], "little")
        tag = int.from_bytes(blob[pos + 1 + width : pos + 3 + width], "little")
        out.append((pos, pos + 1 + width + length, tag))
        pos += 1 + width + length
    return out


@pytest.fixture(scope="module")
def recorded_like_labrecorder(tmp_path_factory):
    """A minute of PPG, ECG and state markers written as a recorder writes: 0.5-s chunks, a boundary every 5 s."""
    from devices.simulate import simulate_session

    recording = simulate_session("stress", ["ppg", "ecg"], duration_s=60.0, seed=4, dwell_scale=0.1)
    path = write_xdf(tmp_path_factory.mktemp("xdf") / "session.xdf", recording, chunk_s=0.5, boundary_interval_s=5.0)
    return recording, path.read_bytes()


def _pyxdf_counts(path: Path) -> dict[str, int]:
    try:
        streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    except Exception:  # pyxdf gives up on some damage altogether
        return {}
    return {s["info"]["name"][0]: len(s["time_stamps"]) for s in streams}


def test_the_writer_puts_boundary_chunks_between_chunks_of_interleaved_streams(recorded_like_labrecorder):
    recording, blob = recorded_like_labrecorder
    tags = [tag for _, _, tag in _chunks(blob)]
    assert 10 <= tags.count(5) <= 13  # 60 s of samples, a boundary every 5 s
    assert tags.count(3) > 200  # 0.5-s chunks of every stream
    assert blob.count(bytes.fromhex("43A546DCCBF5410FB30ED5467383CBE4")) == tags.count(5)


@pytest.mark.parametrize(
    "damage",
    [
        "tag", "width byte", "width read as 1", "length too long", "length too short", "length huge",
        "header and content",
    ],
)
def test_damage_in_the_middle_keeps_what_comes_before_and_after(tmp_path, recorded_like_labrecorder, damage):
    recording, blob = recorded_like_labrecorder
    chunks = _chunks(blob)
    samples = [(start, end) for start, end, tag in chunks if tag == 3]
    start, end = samples[len(samples) // 2]  # a Samples chunk in the middle of the file
    width = blob[start]
    damaged = bytearray(blob)
    if damage == "tag":
        damaged[start + 1 + width : start + 3 + width] = b"\x77\x77"
    elif damage == "width byte":
        damaged[start] = 7
    elif damage == "width read as 1":
        damaged[start] = 1 if width != 1 else 4
    elif damage.startswith("length"):
        length = end - start - 1 - width
        new = {"length too long": length + 37, "length too short": length - 5, "length huge": 2**31}[damage]
        damaged[start + 1 : start + 1 + width] = (new % (1 << (8 * width))).to_bytes(width, "little")
    else:
        damaged[start : start + 24] = b"\xff" * 24  # header and the first samples: nothing to repair
    path = tmp_path / "damaged.xdf"
    path.write_bytes(bytes(damaged))

    rec = read_xdf(path, synchronize_clocks=False)
    theirs = _pyxdf_counts(path)
    assert "truncated" not in rec.info
    for stream in recording.streams:
        got = rec.stream(stream.name)
        assert got.n_samples >= theirs.get(stream.name, 0), (stream.name, got.n_samples, theirs)
        # Everything after the damage is there: the stream ends where it ended.
        assert got.timestamps[-1] == stream.timestamps[-1]
    lost = sum(s.n_samples for s in recording.streams) - sum(s.n_samples for s in rec.streams)
    if damage == "header and content":
        (first, last), = rec.info["damaged_bytes"]
        assert first == start and blob[last + 1 : last + 5] == b"\x01\x12\x05\x00"  # resumed at a Boundary
        assert f"bytes {start}–{last} (" in rec.info["damage"] and "damaged and skipped" in rec.info["damage"]
        assert 0 < lost < sum(s.n_samples for s in recording.streams) / 8  # at most one boundary interval
    else:
        assert lost == 0 and "damaged_bytes" not in rec.info  # the chunk is kept with a rewritten header
        assert rec.info["repaired"][0].startswith(f"Samples chunk at byte {start}:")
