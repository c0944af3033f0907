"""The runtime's plain parts, without Ray: stream ↔ bundle matching (as real tools publish), the inference engine
on the shipped bundle, and one stream's pipeline over real LSL (gaps, NaN bursts, rate drift, reconnects)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
import pytest

from biostream.lsl import StreamDescription, list_streams
from biostream.runtime.engine import InferenceEngine
from biostream.runtime.matching import match_stream
from biostream.runtime.pipeline import ModelInput, StreamPipeline, StreamSpec
from bridges.bundle import InputInfo, read_bundle
from devices.errors import BadInputError, StreamMismatchError
from devices.lsl_meta import make_stream_info

PPG = InputInfo("ppg", ("BVP",), 125.0, 10.0, 2.0, ("a.u.",),
                ({"op": "fir_bandpass", "low_hz": 0.5, "high_hz": 12.0},))
EEG = InputInfo("eeg", ("F3", "C3", "O1", "F4", "C4", "O2"), 200.0, 30.0, 30.0, ("uV",) * 6)


def _match(spec, name, type_, rate, labels, types=None, units=None, overrides=None):
    return match_stream(spec, stream_name=name, stream_type=type_, sfreq_hz=rate, labels=labels,
                        types=types or [type_] * len(labels), units=units or [""] * len(labels), overrides=overrides)


# ------------------------------------------------------------------------------------------------ matching
def test_ppg_model_takes_the_ppg_channel_of_what_real_tools_publish():
    assert _match(PPG, "Sim BVP", "PPG", 64.0, ["BVP"]).indices == (0,)  # our simulator and replays
    assert _match(PPG, "bvp", "BVP", 64.0, ["ch1"]).indices == (0,)  # E4 bridge typed BVP, no description
    muse = _match(PPG, "Muse", "PPG", 64.0, ["PPG1", "PPG2", "PPG3"])  # muselsl: ambient, infrared, red
    assert muse.stream_labels == ("PPG2",) and "choose another with --channel BVP=" in muse.notes[0]
    chosen = _match(PPG, "Muse", "PPG", 64.0, ["PPG1", "PPG2", "PPG3"], overrides={"BVP": "ppg3"})
    assert chosen.indices == (2,)
    bluemuse = _match(PPG, "Muse-41D2 PPG", "PPG", 64.0, ["PPG1", "PPG2", "PPG3", "Secondary Timestamp"],
                      types=["PPG", "PPG", "PPG", "timestamp"])
    assert bluemuse.stream_labels == ("PPG2",)


def test_ppg_model_refuses_what_does_not_fit_and_says_what_is_missing():
    with pytest.raises(StreamMismatchError, match=r"obci_eeg1.*its type 'EEG' is not PPG \(accepted: PPG, BVP"):
        _match(PPG, "obci_eeg1", "EEG", 250.0, [f"ch{k}" for k in range(1, 9)])  # OpenBCI GUI, no labels
    with pytest.raises(StreamMismatchError, match="rate is too low to carry the model's band"):
        _match(PPG, "gsr", "GSR", 4.0, ["ch1"])
    with pytest.raises(StreamMismatchError, match=r"channel\(s\) \['BVP'\] not found among \['OPT0'"):
        _match(PPG, "Muse", "PPG", 64.0, [f"OPT{k}" for k in range(16)])  # Athena optics: which one is a guess
    assert _match(PPG, "Muse", "PPG", 64.0, [f"OPT{k}" for k in range(16)], overrides={"BVP": "OPT5"}).indices == (5,)
    with pytest.raises(StreamMismatchError, match=r"--channel BVP=IR names no channel of the stream"):
        _match(PPG, "Muse", "PPG", 64.0, ["PPG1", "PPG2"], overrides={"BVP": "IR"})
    with pytest.raises(StreamMismatchError, match=r"--channel names \['ECG'\]"):
        _match(PPG, "Muse", "PPG", 64.0, ["PPG1"], overrides={"ECG": "PPG1"})
    with pytest.raises(StreamMismatchError, match="no regular rate"):
        _match(PPG, "hr", "PPG", 0.0, ["BVP"])


def test_eeg_montage_matches_by_electrode_through_references_and_old_names():
    isruc = _match(EEG, "PSG EEG", "EEG", 200.0, ["F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1"],
                   units=["uV"] * 6)
    assert isruc.indices == (0, 1, 2, 3, 4, 5) and isruc.scales == (1.0,) * 6
    shuffled = _match(EEG, "cap", "EXG", 250.0, ["EEG O2", "C4", "F4", "O1", "C3", "F3", "Fz"],
                      units=["mV"] * 7)  # a BrainFlow bridge: type EXG, labels say it all; millivolts
    assert shuffled.indices == (5, 4, 3, 2, 1, 0) and shuffled.scales == pytest.approx((1000.0,) * 6)
    with pytest.raises(StreamMismatchError, match=r"channel\(s\) \['F3', 'C3', 'O1', 'F4', 'C4', 'O2'\] not found"):
        _match(EEG, "Muse", "EEG", 256.0, ["TP9", "AF7", "AF8", "TP10", "Right AUX"], units=["microvolts"] * 5)
    unlabeled = _match(EEG, "x", "EEG", 250.0, ["F3", "C3", "O1", "F4", "C4", "O2"])
    assert len(unlabeled.notes) == 6 and "declares no voltage unit" in unlabeled.notes[0]


# ------------------------------------------------------------------------------------------------ engine
def test_engine_runs_the_shipped_bundle_on_the_cpu_provider():
    engine = InferenceEngine("demo", device="cpu")
    assert engine.provider == "CPUExecutionProvider" and engine.provider_note == ""
    rng = np.random.default_rng(0)
    probs = engine.predict(rng.standard_normal((5, 1, 1250)).astype(np.float32))
    assert probs.shape == (5, 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert engine.predict(np.zeros((0, 1, 1250), np.float32)).shape == (0, 3)
    with pytest.raises(BadInputError, match=r"takes windows of shape \(n, 1, 1250\), got \(2, 1, 1000\)"):
        engine.predict(np.zeros((2, 1, 1000), np.float32))
    bad = rng.standard_normal((1, 1, 1250)).astype(np.float32)
    bad[0, 0, 7] = np.nan
    with pytest.raises(BadInputError, match="NaN/Inf must not reach the model"):
        engine.predict(bad)
    same = InferenceEngine(read_bundle("demo").path.read_bytes(), device="cpu")  # from bytes, as actors get it
    np.testing.assert_allclose(same.predict(np.ones((1, 1, 1250), np.float32)),
                               engine.predict(np.ones((1, 1, 1250), np.float32)), rtol=1e-5)


# ------------------------------------------------------------------------------------------------ pipeline
SMALL = InputInfo("ppg", ("BVP",), 50.0, 2.0, 1.0, ("a.u.",))


def _model(hop_s=1.0):
    return ModelInput("sha", "stress", ("baseline", "stress"), SMALL, hop_s)


def _outlet(name, sid, rate=100.0):
    return pylsl.StreamOutlet(make_stream_info(name, "PPG", rate, ["BVP"], ["a.u."], source_id=sid))


def _description(sid):
    (found,) = [d for d in list_streams(1.0) if d.source_id == sid]
    return found


def _poll_for(pipeline, seconds):
    ready, events, deadline = [], [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, e = pipeline.poll()
        ready += r
        events += e
        time.sleep(0.01)
    return ready, events


def test_pipeline_flags_gaps_and_nan_bursts_and_keeps_windows_on_time(unique_id):
    sid = f"pipe-{unique_id}"
    outlet = _outlet(f"pipe-{unique_id}", sid)
    pipeline = StreamPipeline(StreamSpec("pipe", _description(sid), _model()))
    assert pipeline.connect(3.0) == []
    assert outlet.wait_for_consumers(2.0)
    t0 = pylsl.local_clock() - 8.0
    k = np.arange(800)
    values = np.sin(2 * np.pi * 1.3 * k / 100.0).astype(np.float32)[:, None]
    values[500:520] = np.nan  # a NaN burst at 5.0-5.2 s
    keep = (k < 200) | (k >= 250)  # 0.5 s of samples never sent at 2.0 s
    for start in range(0, int(keep.sum()), 40):
        idx = np.flatnonzero(keep)[start:start + 40]
        outlet.push_chunk(values[idx], timestamp=(t0 + k[idx] / 100.0).tolist())
    ready, events = _poll_for(pipeline, 1.5)
    pipeline.close()
    assert [e.kind for e in events] == ["gap"] and "~50 samples" in events[0].message
    windows = [r.window for r in ready]
    assert [w.sample_start for w in windows] == [100 * i for i in range(len(windows))] and len(windows) == 7
    for w in windows:
        assert w.t_end - w.t_start == pytest.approx(1.99, abs=2e-3)  # the gap does not stretch windows
    by_start = {r.window.sample_start: r for r in ready}
    assert "gap" in by_start[100].codes and "gap" in by_start[200].codes and not by_start[0].reject
    assert "nonfinite" in by_start[400].codes and "NaN/Inf" in by_start[400].reject
    assert not by_start[300].reject and not by_start[600].reject
    health = pipeline.health()
    assert health.gaps == 1 and health.missing_samples == 50 and health.level == "amber"


def test_pipeline_refuses_windows_of_a_stream_running_off_its_rate(unique_id):
    sid = f"fast-{unique_id}"
    outlet = _outlet(f"fast-{unique_id}", sid)
    pipeline = StreamPipeline(StreamSpec("fast", _description(sid), _model()))
    pipeline.connect(3.0)
    assert outlet.wait_for_consumers(2.0)
    n = 1000
    stamps = pylsl.local_clock() - 10.0 + np.arange(n) / 110.0  # declares 100 Hz, runs at 110 Hz
    outlet.push_chunk(np.random.default_rng(1).standard_normal((n, 1)).astype(np.float32), timestamp=stamps.tolist())
    ready, _ = _poll_for(pipeline, 1.0)
    pipeline.close()
    assert ready and all(r.codes == ("rate",) for r in ready[-3:])
    assert "+10.0% off the nominal 100 Hz" in ready[-1].reject
    assert pipeline.health().level == "red"


def test_pipeline_restarts_the_window_grid_after_a_reconnection(unique_id):
    sid = f"back-{unique_id}"
    outlet = _outlet(f"back-{unique_id}", sid)
    pipeline = StreamPipeline(StreamSpec("back", _description(sid), _model()))
    pipeline.connect(3.0)
    stop = threading.Event()

    def push(target):
        next_t = time.perf_counter()
        while not stop.is_set():
            if target[0] is not None:
                target[0].push_chunk(np.random.default_rng().standard_normal((5, 1)).astype(np.float32))
            next_t += 0.05
            time.sleep(max(0.0, next_t - time.perf_counter()))

    target = [outlet]
    pusher = threading.Thread(target=push, args=(target,), daemon=True)
    pusher.start()
    before, _ = _poll_for(pipeline, 3.5)
    target[0] = None
    del outlet
    _poll_for(pipeline, 1.0)
    target[0] = _outlet(f"back-{unique_id}", sid)
    after, events = _poll_for(pipeline, 4.5)
    stop.set()
    pusher.join()
    pipeline.close()
    kinds = [e.kind for e in events]
    assert "disconnect" in kinds or "reconnect" in kinds
    assert "reconnect" in kinds and len(before) >= 1
    assert after and after[0].window.sample_start == 0  # a new grid from the first sample after the return
    assert all(not r.reject for r in after)


def test_a_description_that_is_no_longer_there_is_a_clear_error(unique_id):
    gone = StreamDescription("gone", "PPG", 1, 64.0, "float32", f"gone-{unique_id}", "host", "uid")
    pipeline = StreamPipeline(StreamSpec("gone", gone, _model()))
    with pytest.raises(BadInputError, match=r"stream 'gone' \(PPG, 1 ch, 64 Hz.*is not visible within 0.5 s"):
        pipeline.connect(0.5)


def test_pipeline_restarts_the_grid_after_a_clock_jump(unique_id):
    sid = f"jump-{unique_id}"
    outlet = _outlet(f"jump-{unique_id}", sid)
    pipeline = StreamPipeline(StreamSpec("jump", _description(sid), _model()))
    pipeline.connect(3.0)
    assert outlet.wait_for_consumers(2.0)
    t0 = pylsl.local_clock() - 20.0
    first = t0 + np.arange(450) / 100.0
    second = first[-1] + 10.0 + np.arange(1, 451) / 100.0  # the source's clock leaps 10 s forward
    data = np.random.default_rng(2).standard_normal((900, 1)).astype(np.float32)
    outlet.push_chunk(data, timestamp=np.concatenate([first, second]).tolist())
    ready, events = _poll_for(pipeline, 1.0)
    pipeline.close()
    assert [e.kind for e in events] == ["jump"] and "jumped forward by 10.0" in events[0].message
    starts = [r.window.sample_start for r in ready]
    assert starts == [0, 100, 200, 0, 100, 200]  # the grid restarts after the jump; no window spans it
    assert all(r.window.t_end - r.window.t_start < 2.0 for r in ready) and not any(r.reject for r in ready)
