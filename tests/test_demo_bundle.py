"""The shipped demo bundle: it loads by name, and predicts stress states of subjects it never saw.

Fresh simulated subjects (new seeds) go through the runtime's own windowing (Empatica BVP at 64 Hz resampled to
the bundle's rate) into an ONNX Runtime session, as `biostream monitor --bundle demo` will run them.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score

from bridges.bundle import read_bundle
from bridges.ort_session import open_session
from devices.recording import labels_at
from devices.simulate import simulate_session
from devices.windowing import Windower

FRESH_SEEDS = (90001, 90002, 90003)


def test_demo_resolves_by_name_and_validates():
    bundle = read_bundle("demo")
    manifest = bundle.manifest
    assert manifest.input.modality == "ppg"
    assert list(manifest.task.class_names) == ["baseline", "stress", "amusement"]
    assert bundle.path.stat().st_size <= 20 * 1024 * 1024
    assert manifest.provenance.trainable_parameters > 0


@pytest.mark.slow
def test_demo_predicts_fresh_subjects_well_above_chance():
    bundle = read_bundle("demo")
    spec = bundle.manifest.input
    classes = list(bundle.manifest.task.class_names)
    session = open_session(bundle.onnx_bytes, device="cpu").session
    y_true, y_pred = [], []
    for seed in FRESH_SEEDS:
        recording = simulate_session("stress", ["ppg"], duration_s=1200.0, seed=seed)
        ppg, states = recording.stream("PPG"), recording.stream("Markers")
        windower = Windower(spec.window_s, 5.0, ppg.nominal_srate, channel_labels=ppg.channel_labels,
                            target_sfreq_hz=spec.sfreq_hz)
        windows = windower.push(ppg.data, ppg.timestamps)
        starts = np.array([w.t_start for w in windows])
        ends = np.array([w.t_end for w in windows])
        first, last = labels_at(states, starts), labels_at(states, ends)
        keep = [k for k in range(len(windows)) if first[k] == last[k] and windows[k].quality.ok]
        batch = np.stack([windows[k].data for k in keep]).astype(np.float32)
        probabilities = session.run(None, {"window": batch})[0]
        y_pred.extend(probabilities.argmax(axis=1).tolist())
        y_true.extend(classes.index(str(first[k])) for k in keep)
    balanced = balanced_accuracy_score(y_true, y_pred)
    macro_f1 = f1_score(y_true, y_pred, average="macro")
    assert balanced >= 0.6, (balanced, macro_f1)  # chance: 1/3
    assert macro_f1 >= 0.5, (balanced, macro_f1)
