"""A model sees at run time what it saw in training: the training windows of a recording and the live windows of
the same recording (chunked as a live stream, and replayed over real LSL into a StreamReader) are identical."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from biostream.lsl import StreamReader
from bridges.data.build import StreamSelect, paired_windows_from_recording
from devices.replay import RecordingReplay
from devices.simulate import simulate_session
from devices.windowing import Windower

WINDOW_S, STEP_S, OLD_HZ, NEW_HZ = 10.0, 2.0, 100.0, 125.0


@pytest.fixture(scope="module")
def recording():
    return simulate_session("stress", ["ecg", "ppg"], duration_s=40.0, seed=11)


def _training_windows(recording):
    paired, report = paired_windows_from_recording(
        recording, StreamSelect("Sim ECG", (), "ecg"), StreamSelect("Sim BVP", (), "ppg"), None,
        ["baseline", "stress", "amusement"], WINDOW_S, STEP_S, OLD_HZ, NEW_HZ, "s11",
    )
    return paired, report


def _live_windower(stream, target_hz):
    return Windower(WINDOW_S, STEP_S, stream.nominal_srate, channel_labels=stream.channel_labels,
                    target_sfreq_hz=target_hz, name=stream.name)


def _kept(ecg_windows, ppg_windows):
    """Stack the live windows of the positions where both streams' windows pass quality (training's rule)."""
    n = min(len(ecg_windows), len(ppg_windows))
    keep = [k for k in range(n) if ecg_windows[k].quality.ok and ppg_windows[k].quality.ok]
    return keep, np.stack([ecg_windows[k].data for k in keep]), np.stack([ppg_windows[k].data for k in keep])


def test_training_windows_equal_live_windows_of_the_same_recording(recording):
    paired, report = _training_windows(recording)
    rng = np.random.default_rng(3)
    live = []
    for stream, hz in ((recording.stream("Sim ECG"), OLD_HZ), (recording.stream("Sim BVP"), NEW_HZ)):
        windower, windows, pos = _live_windower(stream, hz), [], 0
        while pos < stream.n_samples:  # arbitrary chunks, as a live inlet delivers them
            n = int(rng.integers(1, 300))
            windows += windower.push(stream.data[pos : pos + n], stream.timestamps[pos : pos + n])
            pos += n
        live.append(windows)
    keep, ecg, ppg = _kept(*live)
    assert report.candidates == len(live[1]) == 16 and report.kept == len(keep) >= 10
    np.testing.assert_array_equal(paired.old, ecg)  # bit for bit, both modalities
    np.testing.assert_array_equal(paired.new, ppg)


@pytest.mark.slow
def test_windows_replayed_over_lsl_equal_the_training_windows(unique_id):
    recording = simulate_session("stress", ["ecg", "ppg"], duration_s=16.0, seed=12)
    paired, _ = _training_windows(recording)
    assert len(paired) == 4
    with RecordingReplay(recording, name_suffix=f"-{unique_id}") as replay:
        ppg = recording.stream("Sim BVP")
        reader = StreamReader(f"name=Sim BVP-{unique_id}", require_regular=True).connect(3.0)
        windower = _live_windower(ppg, NEW_HZ)
        player = threading.Thread(target=replay.run, kwargs={"linger_s": 1.0}, daemon=True)
        player.start()
        windows, received, deadline = [], 0, time.monotonic() + 16.0 + 8.0
        while received < ppg.n_samples and time.monotonic() < deadline:
            chunk = reader.pull()
            if chunk is not None and chunk.n_samples:  # as the runtime feeds its windowers
                received += chunk.n_samples
                windows += windower.push(chunk.data, chunk.dejittered_timestamps)
                assert not chunk.events
            time.sleep(0.005)
        player.join()
        reader.close()
    assert received == ppg.n_samples
    ecg_windows = _live_windower(recording.stream("Sim ECG"), OLD_HZ).push(
        recording.stream("Sim ECG").data, recording.stream("Sim ECG").timestamps
    )
    _, _, ppg_live = _kept(ecg_windows, windows)
    np.testing.assert_array_equal(paired.new, ppg_live)
