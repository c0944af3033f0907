"""The physiological simulator: profiles, continuity, shared beats, determinism, bad input, learnability."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from devices.errors import BadInputError
from devices.profiles import MODALITIES, simulated_stream_profile
from devices.recording import labels_at
from devices.simulate import (
    SCENARIO_TABLES,
    SCENARIOS,
    STATE_STREAM_NAME,
    PhysioSimulator,
    scenario_states,
    simulate_session,
)
from devices.simulate.cardio import PPGRenderer

ALL = list(MODALITIES)


# -- profiles, shapes, units --------------------------------------------------------------------------------------
def test_session_streams_follow_profiles():
    rec = simulate_session("stress", ALL, duration_s=10.0, seed=3, t0_s=100.0)
    assert rec.info["scenario"] == "stress" and rec.info["seed"] == 3 and rec.info["modalities"] == ALL
    for modality in ALL:
        profile = simulated_stream_profile(modality)
        stream = rec.stream(f"Sim {profile.name}")
        assert stream.type == profile.lsl_type
        assert stream.nominal_srate == profile.sfreq_hz
        assert stream.data.dtype == np.float32
        assert stream.data.shape == (round(10.0 * profile.sfreq_hz), profile.n_channels)
        assert stream.channel_labels == list(profile.channel_labels)
        assert stream.channel_units == list(profile.channel_units)
        assert np.allclose(stream.timestamps, 100.0 + np.arange(stream.n_samples) / profile.sfreq_hz)
        assert np.isfinite(stream.data).all()
        assert "3" in stream.source_id and modality in stream.source_id
    markers = rec.stream(STATE_STREAM_NAME)
    assert markers.is_marker and markers.type == "Markers"
    assert markers.timestamps[0] == 100.0 and markers.data[0, 0] == "baseline"
    assert len({s.source_id for s in rec.streams}) == len(rec.streams)


def test_realistic_amplitudes_in_microvolts():
    rec = simulate_session("stress", ["ecg", "eeg", "emg", "acc"], duration_s=20.0, seed=1, artefacts=False)
    ecg = rec.stream("ECG").data[:, 0]
    assert 600 < np.percentile(ecg, 99.9) < 2000  # R peaks near 1 mV
    eeg_rms = rec.stream("EEG").data.std(axis=0)
    assert np.all((5 < eeg_rms) & (eeg_rms < 100))  # tens of µV
    acc = rec.stream("ACC").data
    assert 0.9 < np.linalg.norm(acc.mean(axis=0)) < 1.1  # gravity, in g


def test_device_override():
    sim = PhysioSimulator("sleep", ["eeg", "ecg"], seed=0, devices={"eeg": "isruc_psg", "ecg": "isruc_psg"})
    assert sim.stream_profiles["eeg"].n_channels == 6 and sim.stream_profiles["eeg"].sfreq_hz == 200.0
    block = sim.next_block(3.0)
    assert block.data["eeg"].shape == (600, 6)
    assert block.data["ecg"].shape == (600, 1)


# -- continuity and determinism -----------------------------------------------------------------------------------
def test_blocks_are_continuous_and_partition_free():
    whole = PhysioSimulator("gait", ALL, seed=7).next_block(60.0)
    sim = PhysioSimulator("gait", ALL, seed=7)
    rng = np.random.default_rng(0)
    durations = list(rng.uniform(0.005, 3.0, size=60))
    durations = [d for d in np.cumsum(durations) if d < 60.0]
    edges = [0.0, *durations, 60.0]
    parts = [sim.next_block(b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    for modality in ALL:
        joined = np.concatenate([p.data[modality] for p in parts])
        assert joined.shape == whole.data[modality].shape
        np.testing.assert_array_equal(joined, whole.data[modality])
        stamps = np.concatenate([p.timestamps(modality) for p in parts])
        np.testing.assert_allclose(stamps, whole.timestamps(modality))
    assert [e for p in parts for e in p.events] == list(whole.events)
    assert whole.events[0] == (0.0, "walking") and len(whole.events) > 2


def test_block_sample_counts_carry_remainder():
    sim = PhysioSimulator("stress", ["ecg", "ppg", "resp"], seed=1)
    counts = {m: 0 for m in sim.modalities}
    total = 0.0
    for _ in range(500):
        block = sim.next_block(0.0137)
        total += 0.0137
        for m in sim.modalities:
            assert block.first_index[m] == counts[m]
            counts[m] += block.data[m].shape[0]
    for m, profile in sim.stream_profiles.items():
        assert counts[m] == round(total * profile.sfreq_hz)


def test_seed_determinism_and_variation():
    a = simulate_session("sleep", ["ecg", "eeg"], 30.0, seed=11)
    b = simulate_session("sleep", ["ecg", "eeg"], 30.0, seed=11)
    c = simulate_session("sleep", ["ecg", "eeg"], 30.0, seed=12)
    for name in ("ECG", "EEG"):
        np.testing.assert_array_equal(a.stream(name).data, b.stream(name).data)
        assert not np.allclose(a.stream(name).data, c.stream(name).data)
    # Adding a modality leaves the others untouched.
    d = simulate_session("sleep", ["ecg", "eeg", "acc"], 30.0, seed=11)
    np.testing.assert_array_equal(a.stream("ECG").data, d.stream("ECG").data)


def test_markers_give_state_at_any_time():
    rec = simulate_session("gait", ["acc"], duration_s=120.0, seed=5, t0_s=50.0)
    sim = PhysioSimulator("gait", ["acc"], seed=5)
    times = np.linspace(0.0, 119.9, 997)
    truth = sim.states_at(times)
    assert list(labels_at(rec.stream(STATE_STREAM_NAME), 50.0 + times)) == list(truth)
    assert set(truth) == {"walking", "freezing"}


def test_state_timeline_tables():
    assert SCENARIOS == ("stress", "sleep", "gait")
    assert scenario_states("sleep") == ("wake", "N1", "N2", "N3", "REM")
    assert scenario_states("stress") == ("baseline", "stress", "amusement")
    sleep = PhysioSimulator("sleep", ["resp"], seed=2)
    changes = sleep.timeline.changes_between(0.0, 8 * 3600.0)
    starts = np.array([t for t, _ in changes])
    assert np.allclose(starts % 30.0, 0.0)  # whole 30 s epochs
    assert {s for _, s in changes} == set(scenario_states("sleep"))
    gait = PhysioSimulator("gait", ["acc"], seed=2).timeline.changes_between(0.0, 3600.0)
    times = np.array([t for t, _ in gait] + [3600.0])
    freezing = np.diff(times)[[s == "freezing" for _, s in gait]]
    assert 2.0 <= freezing.min() and np.median(freezing) < 10.0  # short episodes of a few seconds


# -- shared heart beats -------------------------------------------------------------------------------------------
def _r_peaks(ecg: np.ndarray, rate: float) -> np.ndarray:
    peaks, _ = signal.find_peaks(ecg, height=0.5 * np.percentile(ecg, 99.5), distance=int(0.3 * rate))
    return peaks / rate


def _refine(x: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """Sub-sample peak positions by fitting a parabola through each peak and its neighbours."""
    left, mid, right = x[peaks - 1], x[peaks], x[peaks + 1]
    return peaks + 0.5 * (left - right) / (left - 2 * mid + right)


def test_ecg_and_ppg_share_beat_times():
    sim = PhysioSimulator("stress", ["ecg", "ppg"], seed=4, artefacts=False)
    block = sim.next_block(55.0)  # inside the first (baseline) episode: no PTT change
    assert all(label == "baseline" for _, label in block.events)
    ecg_rate, ppg_rate = block.sfreq_hz["ecg"], block.sfreq_hz["ppg"]
    ecg = block.data["ecg"][:, 0].astype(float)
    ppg = block.data["ppg"][:, 0].astype(float)
    r = _refine(ecg, (_r_peaks(ecg, ecg_rate) * ecg_rate).round().astype(int)) / ecg_rate
    p_idx, _ = signal.find_peaks(ppg, distance=int(0.3 * ppg_rate), prominence=0.3 * np.ptp(ppg))
    p = _refine(ppg, p_idx) / ppg_rate
    lags = np.array([p[np.searchsorted(p, t)] - t for t in r[:-2]])
    expected = sim.subject.ptt_s + PPGRenderer.RISE_S
    assert abs(np.median(lags) - expected) < 0.03
    assert lags.std() < 0.015  # consistent: the same beat drives both
    # Beat-to-beat intervals agree, so heart-rate variability is shared.
    rr = np.diff(r)
    pp = np.diff([p[np.searchsorted(p, t)] for t in r[:-2]])
    assert np.corrcoef(rr[: len(pp)], pp)[0, 1] > 0.9
    assert rr.std() > 0.01  # and there is variability to share


# -- bad input ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"scenario": "party"}, "'scenario' is 'party', but has to be one of"),
        ({"modalities": ["ecg", "eda"]}, "'modality' is 'eda'"),
        ({"modalities": []}, "'modalities' is empty"),
        ({"modalities": ["ecg", "ecg"]}, "repeats"),
        ({"devices": {"ecg": "nope"}}, "'device' is 'nope'"),
        ({"devices": {"ecg": "wesad_chest"}}, "wesad_chest.*no 'ECG' stream"),
        ({"devices": {"eeg": "muse"}}, "'devices key"),
        ({"seed": -1}, "'seed' must be >= 0"),
    ],
)
def test_bad_input_is_refused(kwargs, match):
    args = {"scenario": "stress", "modalities": ["ecg"], "seed": 0} | kwargs
    with pytest.raises(BadInputError, match=match):
        PhysioSimulator(**args)


@pytest.mark.parametrize("duration", [0.0, -1.0, float("nan")])
def test_bad_duration_is_refused(duration):
    with pytest.raises(BadInputError, match="'duration_s' must be a finite number > 0"):
        simulate_session("stress", ["ecg"], duration)
    with pytest.raises(BadInputError, match="'duration_s'"):
        PhysioSimulator("stress", ["ecg"]).next_block(duration)


# -- learnability -------------------------------------------------------------------------------------------------
def _band_powers(x: np.ndarray, rate: float, bands: list[tuple[float, float]], segment_s: float,
                 absolute: bool = True) -> np.ndarray:
    """Absolute (optional) and relative log band powers per channel of one window, flattened."""
    freqs, psd = signal.welch(x, fs=rate, nperseg=min(len(x), int(rate * segment_s)), axis=0)
    masks = [(freqs >= lo) & (freqs < hi) for lo, hi in bands]
    # Bands the window is too short to resolve, or above Nyquist, are left out (the same for every window).
    logs = np.array([np.log(psd[m].mean(axis=0) + 1e-12) for m in masks if m.any()])  # (n_bands, n_channels)
    # Absolute and relative (spectral shape, free of the subject's gain) log powers.
    relative = (logs - logs.mean(axis=0)).ravel()
    return np.concatenate([logs.ravel(), relative]) if absolute else relative


def _beat_features(x: np.ndarray, rate: float, band: tuple[float, float]) -> np.ndarray:
    """Heart rate, RR variability and successive differences from peaks of the band-passed signal."""
    sos = signal.butter(2, [band[0], min(band[1], 0.45 * rate)], btype="bandpass", fs=rate, output="sos")
    y = signal.sosfiltfilt(sos, x)
    peaks, _ = signal.find_peaks(y, distance=int(0.33 * rate), prominence=0.3 * np.percentile(np.abs(y), 99))
    rr = np.diff(peaks) / rate
    if len(rr) < 2:
        return np.zeros(3)
    return np.array([60.0 / np.median(rr), np.log(rr.std() + 1e-3), np.log(np.abs(np.diff(rr)).mean() + 1e-3)])


_BANDS = {
    "ecg": [(0.5, 3), (3, 8), (8, 20), (20, 45), (45, 60)],
    "ppg": [(0.1, 0.5), (0.5, 1.5), (1.5, 3), (3, 8), (8, 20)],
    "eeg": [(0.5, 2.5), (2.5, 4), (4, 8), (8, 12), (12, 15), (15, 30), (30, 45), (55, 100)],
    "emg": [(0.5, 10), (10, 20), (20, 60), (60, 150), (150, 240)],
    "resp": [(0.05, 0.2), (0.2, 0.28), (0.28, 0.38), (0.38, 0.6), (0.6, 2), (2, 8)],
    "acc": [(0.1, 0.5), (0.5, 1.5), (1.5, 2.5), (2.5, 4), (4, 8), (8, 20)],
}


def _features(modality: str, x: np.ndarray, rate: float) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.mean(axis=0)
    # Breathing needs the whole window to resolve its rate; the rest is smoothed over 4 s segments.
    # Cardiac waveforms: their spectral shape only, as beat features carry the rate and amplitude varies by subject.
    segment_s = len(x) / rate if modality == "resp" else 4.0
    feats = [_band_powers(x, rate, _BANDS[modality], segment_s, absolute=modality not in ("ecg", "ppg"))]
    if modality == "ecg":
        feats.append(_beat_features(x[:, 0], rate, (5.0, 30.0)))
    if modality == "ppg":
        feats.append(_beat_features(x[:, 0], rate, (0.5, 8.0)))
    return np.concatenate(feats)


# scenario -> (subjects, duration s, window s, step s, label map for non-EEG modalities)
_PLAN = {
    "stress": (6, 1200.0, 30.0, 15.0, None),
    "gait": (6, 240.0, 3.0, 1.5, None),
    "sleep": (6, 3000.0, 30.0, 30.0, {"wake": "wake", "N1": "sleep", "N2": "sleep", "N3": "sleep", "REM": "sleep"}),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_states_are_learnable_from_every_modality(scenario):
    """A plain classifier on simple features beats chance by far, per modality, on subjects it did not see."""
    n_subjects, duration, window, step, merge = _PLAN[scenario]
    feats = {m: [] for m in ALL}
    labels, groups = [], []
    for subject in range(n_subjects):
        sim = PhysioSimulator(scenario, ALL, seed=1000 + subject)
        block = sim.next_block(duration)
        starts = np.arange(0.0, duration - window + 1e-9, step)
        for start in starts:
            edge_states = sim.states_at(np.array([start, start + window / 2, start + window - 1e-6]))
            if len(set(edge_states)) > 1:
                continue  # the window spans a change of state
            for m in ALL:
                rate = block.sfreq_hz[m]
                x = block.data[m][round(start * rate): round(start * rate) + round(window * rate)]
                feats[m].append(_features(m, x, rate))
            labels.append(edge_states[1])
            groups.append(subject)
    labels, groups = np.array(labels), np.array(groups)
    scores = {}
    for m in ALL:
        y = labels if (merge is None or m == "eeg") else np.array([merge[s] for s in labels])
        X = np.array(feats[m])
        predicted = np.empty(len(y), dtype=object)
        for train, test in GroupKFold(n_splits=3).split(X, y, groups):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5, class_weight="balanced"))
            predicted[test] = model.fit(X[train], y[train]).predict(X[test])
        n_classes = len(set(y))
        scores[m] = (balanced_accuracy_score(y.astype(str), predicted.astype(str)), 1.0 / n_classes)
    failing = {m: s for m, s in scores.items() if s[0] < s[1] + 0.25}
    assert not failing, f"{scenario}: balanced accuracy (score, chance) below chance + 0.25: {scores}"
    assert len(set(labels)) == len(SCENARIO_TABLES[scenario].states)


def test_beat_just_before_start_does_not_crash():
    # Regression: a subject whose first R peak falls just before t = 0 asked for control signals before the
    # simulation start and raised. Seeds 2026-2060 include such subjects.
    for seed in range(2026, 2061):
        recording = simulate_session("stress", ["ecg"], 20.0, seed=seed)
        assert np.all(np.isfinite(recording.stream("ECG").data))
