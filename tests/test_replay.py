"""Replay over real LSL: an XDF written by our writer comes back with exact values and timing; EDF and FOG task
files replay."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pyedflib
import pylsl
import pytest
from _fog_files import fog_table, write_fog_task

from devices.errors import RecordingFormatError
from devices.formats import read_recording, write_xdf
from devices.recording import Recording, Stream
from devices.replay import RecordingReplay


def _test_recording(rng: np.random.Generator) -> Recording:
    n_a = 250
    a = Stream(
        "ReplayA", "EEG", rng.normal(0, 20, (n_a, 3)).astype(np.float32), 1000.0 + np.arange(n_a) / 100.0, 100.0,
        ["C3", "C4", "Cz"], ["uV"] * 3, channel_format="float32", source_id="rep-a",
    )
    n_b = 60
    b = Stream(
        "ReplayB", "PPG", rng.normal(0, 1, (n_b, 1)), 1000.3 + np.arange(n_b) / 37.0, 37.0, ["BVP"], ["a.u."],
        channel_format="double64", source_id="rep-b",
    )
    beat_times = 1000.1 + np.cumsum(rng.uniform(0.3, 0.5, 5))
    beats = Stream(
        "ReplayRR", "RR", rng.uniform(0.6, 1.0, (5, 1)).astype(np.float32), beat_times, 0.0, ["RR"], ["s"],
        source_id="rep-rr",
    )
    labels = Stream(
        "ReplayLabels", "Markers", np.array([["baseline"], ["stress"], ["amusement"]], dtype=object),
        np.array([1000.0, 1000.9, 1001.8]), 0.0, ["label"], channel_format="string", source_id="rep-labels",
    )
    return Recording([a, b, beats, labels], {"subject": "S99"})


def _open_inlets(names: list[str]) -> dict[str, pylsl.StreamInlet]:
    inlets = {}
    for name in names:
        found = pylsl.resolve_byprop("name", name, minimum=1, timeout=5.0)
        assert found, f"stream {name!r} not visible"
        inlet = pylsl.StreamInlet(found[0], max_buflen=60, processing_flags=pylsl.proc_clocksync)
        inlet.open_stream(timeout=5.0)
        inlets[name] = inlet
    return inlets


def _drain(inlets: dict[str, pylsl.StreamInlet], until: threading.Thread, settle_s: float = 0.5):
    received = {name: ([], []) for name in inlets}
    deadline = None
    while True:
        for name, inlet in inlets.items():
            values, stamps = inlet.pull_chunk(timeout=0.0, max_samples=4096)
            if stamps:
                received[name][0].extend(values)
                received[name][1].extend(stamps)
        if not until.is_alive():
            deadline = deadline or time.monotonic() + settle_s
            if time.monotonic() > deadline:
                break
        time.sleep(0.01)
    return {name: (vals, np.asarray(ts)) for name, (vals, ts) in received.items()}


@pytest.mark.slow
def test_xdf_roundtrip_replay_exact_values_and_timing(tmp_path, unique_id):
    original = _test_recording(np.random.default_rng(7))
    path = write_xdf(tmp_path / "session.xdf", original)
    recording = read_recording(path)
    suffix = f"-{unique_id}"
    with RecordingReplay(recording, name_suffix=suffix) as replay:
        names = [s.name + suffix for s in recording.streams]
        inlets = _open_inlets(names)
        runner = threading.Thread(target=replay.run, kwargs={"linger_s": 0.3})
        runner.start()
        received = _drain(inlets, runner)
        runner.join()
    first_original = original.t_start
    first_received = min(ts[0] for _, ts in received.values())
    for stream in original.streams:
        values, stamps = received[stream.name + suffix]
        assert len(stamps) == stream.n_samples, stream.name
        if stream.is_marker:
            assert [v[0] for v in values] == list(stream.data[:, 0])
        else:
            np.testing.assert_array_equal(np.asarray(values, dtype=stream.data.dtype), stream.data)
        # Relative timing: within the stream and against the recording's start, across streams.
        np.testing.assert_allclose(stamps - first_received, stream.timestamps - first_original, atol=0.005)


@pytest.mark.slow
def test_replay_loops_with_boundary_marker(unique_id):
    rng = np.random.default_rng(3)
    stream = Stream("LoopA", "ECG", rng.normal(size=(50, 1)).astype(np.float32), np.arange(50) / 100.0, 100.0, ["ECG"])
    recording = Recording([stream], {"source": f"loop-{unique_id}"})
    suffix = f"-{unique_id}"
    with RecordingReplay(recording, loop=True, name_suffix=suffix) as replay:
        events_name = replay.events_name
        inlets = _open_inlets([f"LoopA{suffix}", events_name])
        runner = threading.Thread(target=replay.run, kwargs={"duration_s": 1.3, "linger_s": 0.3})
        runner.start()
        received = _drain(inlets, runner)
        runner.join()
    values, stamps = received[f"LoopA{suffix}"]
    assert len(stamps) >= 100  # at least two passes of 0.5 s
    data = np.asarray(values, dtype=np.float32)
    np.testing.assert_array_equal(data[50:100], stream.data)  # the second pass repeats the first
    assert np.all(np.diff(stamps) > 0)  # loop passes are stamped one after another
    np.testing.assert_allclose(np.diff(stamps[:100]), 0.01, atol=1e-6)
    events = [v[0] for v in received[events_name][0]]
    assert events[0] == "start" and "loop 1" in events and events[-1] == "end"


@pytest.mark.slow
def test_pyedflib_bundled_edf_replays(unique_id):
    path = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"
    recording = read_recording(path)
    stream = recording.signal_streams[0]
    suffix = f"-{unique_id}"
    with RecordingReplay(recording, name_suffix=suffix, start_s=0.0) as replay:
        inlets = _open_inlets([stream.name + suffix])
        runner = threading.Thread(target=replay.run, kwargs={"duration_s": 1.0, "linger_s": 0.3})
        runner.start()
        received = _drain(inlets, runner)
        runner.join()
    values, stamps = received[stream.name + suffix]
    n = len(stamps)
    assert n >= 0.8 * stream.nominal_srate  # about one second of it arrived
    np.testing.assert_allclose(np.asarray(values), stream.data[:n].astype(np.float32), rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(np.diff(stamps), 1.0 / stream.nominal_srate, atol=1e-6)


@pytest.mark.slow
def test_fog_task_file_replays_eeg_emg_and_labels(tmp_path, unique_id):
    labels = np.array([0] * 250 + [1] * 350)  # 1.2 s at 500 Hz: walking, then freezing
    path = write_fog_task(tmp_path / "Filtered Data" / "003" / "task_1.txt", fog_table(labels, seed=5))
    recording = read_recording(path, format="fog")
    suffix = f"-{unique_id}"
    with RecordingReplay(recording, name_suffix=suffix) as replay:
        inlets = _open_inlets([s.name + suffix for s in recording.streams])
        runner = threading.Thread(target=replay.run, kwargs={"linger_s": 0.3})
        runner.start()
        received = _drain(inlets, runner)
        runner.join()
    for kind, n_channels in (("EEG", 6), ("EMG", 3)):
        stream = recording.stream(kind)
        values, stamps = received[stream.name + suffix]
        data = np.asarray(values, dtype=stream.data.dtype)
        assert data.shape == (600, n_channels)
        np.testing.assert_array_equal(data, stream.data)
        np.testing.assert_allclose(np.diff(stamps), 1 / 500.0, atol=1e-6)
    markers = recording.stream("Markers")
    values, stamps = received[markers.name + suffix]
    assert [v[0] for v in values] == ["walking", "freezing"]
    eeg_stamps = received[recording.stream("EEG").name + suffix][1]
    assert stamps[1] - eeg_stamps[0] == pytest.approx(250 / 500.0, abs=0.005)


def test_replay_refuses_empty_recording_and_bad_start():
    empty = Recording([Stream("E", "EEG", np.zeros((0, 1), np.float32), np.zeros(0), 100.0, ["C3"])], {"source": "x"})
    with pytest.raises(RecordingFormatError, match="no samples"):
        RecordingReplay(empty)
    one = Recording([Stream("S", "EEG", np.zeros((10, 1), np.float32), np.arange(10) / 10, 10.0, ["C3"])])
    with pytest.raises(RecordingFormatError, match="past the end"):
        RecordingReplay(one, start_s=5.0)
