"""The runtime end to end, with real LSL, a real Ray runtime and real ONNX Runtime: a simulated stress session
monitored with the shipped demo bundle, recorded to XDF, its prediction stream read by a plain pylsl inlet."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
import pytest
import pyxdf

from biostream.runtime.session import MonitorSession
from devices.errors import StreamMismatchError
from devices.live_sim import LiveSimulation

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_runtime")]

# Seed 11 at a sixth of the usual dwell: baseline until 23 s, stress until 65 s (see devices.simulate.timeline).
SEED, DWELL = 11, 0.15


def _inlet(name: str, timeout_s: float = 5.0) -> pylsl.StreamInlet:
    (info,) = pylsl.resolve_bypred(f"name='{name}'", 1, timeout_s)
    inlet = pylsl.StreamInlet(info, max_buflen=120)
    inlet.open_stream(timeout=timeout_s)
    return inlet


def _drain(inlet: pylsl.StreamInlet, into: list) -> None:
    while True:
        values, stamps = inlet.pull_chunk(timeout=0.0)
        if not stamps:
            return
        into.append((np.asarray(values, dtype=np.float64), np.asarray(stamps)))


def test_simulated_session_monitored_recorded_and_published(tmp_path, unique_id):
    suffix = f"-{unique_id}"
    path = tmp_path / "session.xdf"
    live = LiveSimulation("stress", ["ecg", "ppg"], seed=SEED, name_suffix=suffix, dwell_scale=DWELL)
    with live, MonitorSession(record=path) as session:
        subscription = session.subscribe()
        key = session.add_stream(f"name=Sim BVP{suffix}", bundle="demo", hop_s=2.0)
        prediction_name = next(n for n in _prediction_names() if n.startswith(f"Sim BVP{suffix} stress"))
        witness = _inlet(f"Sim BVP{suffix}")  # what the outlet sends, seen by an independent inlet
        plain = _inlet(prediction_name)  # any LSL app can read the predictions
        runner = threading.Thread(target=live.run, kwargs={"duration_s": 62.0}, daemon=True)
        runner.start()
        raw, published = [], []
        while runner.is_alive():
            _drain(witness, raw)
            _drain(plain, published)
            time.sleep(0.2)
        time.sleep(1.5)
        _drain(witness, raw)
        _drain(plain, published)
        items = subscription.get_all()
        summary = session.stop()
        pushed = dict(zip(live.stream_names, live.player.samples_pushed))

    predictions = [p for kind, p in items if kind == "prediction"]
    assert len(predictions) >= 24 and all(p.stream == key for p in predictions)
    ends = np.array([p.t_end for p in predictions])
    assert np.allclose(np.diff(ends), 2.0, atol=0.05)  # a prediction every hop
    ok = [p for p in predictions if p.ok]
    assert len(ok) >= 0.9 * len(predictions) and all(abs(sum(p.probabilities) - 1) < 1e-4 for p in ok)

    # Agreement with the simulator's true state at each window's end (its marker stream is recorded below too).
    t0 = live.player.t0_lsl
    truth = live.simulator.timeline.states_at(np.array([p.t_end - t0 for p in ok]))
    labels = np.array([p.label_name for p in ok])
    agreement = float(np.mean(labels == truth))
    balanced = float(np.mean([np.mean(labels[truth == state] == state) for state in set(truth)]))
    assert set(truth) == {"baseline", "stress"}
    # Chance is 1/3 for either measure; a model that always said one class would score 0.5 balanced. The model
    # lags a state change by the window plus the body's transition (~15 s), so the first stress windows miss.
    pairs = " ".join(f"{a[0]}{b[0]}" for a, b in zip(truth, labels))
    assert agreement >= 0.5 and balanced >= 0.65, (agreement, balanced, pairs)

    # The summary and the latency breakdown.
    assert summary["windows"] == len(predictions) and summary["predictions"] == len(ok)
    assert summary["provider"] == "CPUExecutionProvider" and summary["restarts"] == 0
    # A sanity bound (the suite's parallel workers share 2 cores); latency is measured by bench/streaming.py.
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"] < 6000
    stages = ok[-1].latency.breakdown_ms()
    assert set(stages) == {"transport", "windowing", "inference", "publish"} and all(v >= -1 for v in stages.values())

    # The prediction stream, read by a plain pylsl inlet: probabilities + label, stamped with the window's end.
    values = np.concatenate([v for v, _ in published])
    stamps = np.concatenate([s for _, s in published])
    assert len(stamps) == len(predictions)
    np.testing.assert_allclose(stamps, ends, atol=1e-6)
    assert values.shape[1] == 4 and np.array_equal(values[:, 3], [p.label for p in predictions])

    # The recording: every raw sample published (count in = count out, values identical), every prediction,
    # the state markers, a header naming the session.
    streams, header = pyxdf.load_xdf(str(path))
    by_name = {s["info"]["name"][0]: s for s in streams}
    ppg = by_name[f"Sim BVP{suffix}"]
    sent = np.concatenate([v for v, _ in raw])
    assert len(ppg["time_stamps"]) == pushed[f"Sim BVP{suffix}"] == len(sent)
    np.testing.assert_array_equal(ppg["time_series"][:, 0], sent[:, 0].astype(np.float32))
    recorded_predictions = by_name[prediction_name]
    assert len(recorded_predictions["time_stamps"]) == len(predictions)
    desc = recorded_predictions["info"]["desc"][0]
    assert desc["task"] == ["stress"] and len(desc["bundle_sha256"][0]) == 64
    assert f"Sim states{suffix}" in by_name, sorted(by_name)
    states = by_name[f"Sim states{suffix}"]
    labels = [row[0] for row in states["time_series"]]
    changes = [label for k, label in enumerate(labels) if k == 0 or label != labels[k - 1]]
    assert changes[:2] == ["baseline", "stress"]  # the simulator also repeats the current state every 5 s
    assert len(labels) > len(changes)
    assert header["info"]["session_id"][0] == session.session_id


def _prediction_names() -> list[str]:
    return [info.name() for info in pylsl.resolve_bypred("type='Predictions'", 0, 1.0)]


def test_a_bundle_that_does_not_fit_the_stream_is_refused_with_the_reason(unique_id):
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(f"ecg-{unique_id}", "ECG", 1, 130.0, "float32", f"e-{unique_id}"))
    with MonitorSession() as session, pytest.raises(StreamMismatchError) as err:
        session.add_stream(f"source_id=e-{unique_id}", bundle="demo")
    assert f"stream 'ecg-{unique_id}' (ECG, 1 ch, 130 Hz) does not fit a model that takes PPG (BVP)" in str(err.value)
    assert "its type 'ECG' is not PPG" in str(err.value)
    del outlet


def _heartpy_ppg_csv(path) -> None:
    """HeartPy's example recording (a person's finger PPG, ~100 Hz, ms-quantised logger stamps, ADC clipping) as
    a biostream CSV recording. Read from the package's data folder without importing the package."""
    import csv
    import datetime
    import importlib.util
    from pathlib import Path

    source = Path(importlib.util.find_spec("heartpy").origin).with_name("data") / "data3.csv"
    rows = list(csv.reader(source.open()))[1:]
    stamps = [datetime.datetime.fromisoformat(r[0]).timestamp() for r in rows]
    with open(path, "w") as f:
        f.write("# sfreq_hz=100\n# name=HeartPy PPG\n# type=PPG\ntimestamp,BVP[a.u.]\n")
        f.writelines(f"{t - stamps[0]:.3f},{r[1]}\n" for t, r in zip(stamps, rows))


def test_a_real_persons_recording_replayed_is_monitored_without_a_crash(tmp_path, unique_id):
    from devices.formats import read_recording
    from devices.replay import RecordingReplay

    path = tmp_path / "heartpy.csv"
    _heartpy_ppg_csv(path)
    recording = read_recording(path)
    with RecordingReplay(recording, name_suffix=f"-{unique_id}", start_s=120.0) as replay:
        with MonitorSession() as session:
            subscription = session.subscribe()
            key = session.add_stream(f"name=HeartPy PPG-{unique_id}", bundle="demo", hop_s=1.0)
            player = threading.Thread(target=replay.run, kwargs={"duration_s": 32.0}, daemon=True)
            player.start()
            player.join()
            time.sleep(1.0)
            items = subscription.get_all()
            health = session.health[key]
            summary = session.stop()
    predictions = [p for kind, p in items if kind == "prediction"]
    assert len(predictions) >= 18 and summary["errors"] == 0 and summary["restarts"] == 0
    assert np.allclose(np.diff([p.t_end for p in predictions]), 1.0, atol=0.05)  # every hop, on time
    assert sum(p.ok for p in predictions) >= 0.5 * len(predictions)
    for p in predictions:  # refusals say why, in terms of the signal, never of our own timestamps
        assert p.ok or (p.reason and "backwards" not in p.reason), p.reason
    assert health.state == "connected" and abs(health.effective_rate_hz / 100.0 - 1) < 0.01
