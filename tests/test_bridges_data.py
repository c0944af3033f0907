"""Paired data sets: WESAD and ISRUC in their published layouts, simulated sessions, drops, splits, cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from _wesad_pickle import write_wesad_subject

from bridges.data import (
    DROP_REASONS,
    PairedWindows,
    isruc_paired,
    simulated_paired,
    split_subjects,
    wesad_paired,
)
from devices.errors import BadInputError

# --- WESAD: S<k>/S<k>.pkl written as the dataset's Python 2 pickles are -------------------------------------------
WESAD_S = 240  # seconds
ECG_HZ, BVP_HZ = 1.7, 1.1  # test tones (Hz), so resampled values can be checked against the formula
# Label timeline (s): transient [0, 10), baseline [10, 100), stress [100, 170), meditation [170, 240).
WESAD_SEGMENTS = ((0, 10, 0), (10, 100, 1), (100, 170, 2), (170, 240, 4))


def _wesad_subject(root: Path, k: int, spoil: bool = True) -> Path:
    """Write ``S<k>/S<k>.pkl``; with ``spoil``: NaN in ECG at 12 s, ECG at the rail over [30, 32) s, BVP flat
    over [100, 165) s."""
    rng = np.random.default_rng(k)
    n = 700 * WESAD_S
    t = np.arange(n) / 700
    label = np.zeros(n, dtype=np.int32)
    for start, stop, code in WESAD_SEGMENTS:
        label[start * 700: stop * 700] = code
    ecg = np.sin(2 * np.pi * ECG_HZ * t)[:, None]
    tb = np.arange(64 * WESAD_S) / 64
    bvp = 40 * np.sin(2 * np.pi * BVP_HZ * tb)[:, None]
    if spoil:
        ecg[12 * 700] = np.nan
        ecg[30 * 700: 32 * 700] = 3.0  # stuck at the ADC rail (the recording's maximum) for 2 s
        bvp[100 * 64: 165 * 64] = 7.0
    content = {
        "signal": {
            "chest": {"ACC": rng.normal(0, 0.1, (n, 3)), "ECG": ecg, "EMG": rng.normal(0, 0.01, (n, 1)),
                      "EDA": rng.uniform(1, 5, (n, 1)), "Temp": np.full((n, 1), 34.0, np.float32),
                      "Resp": rng.normal(0, 3, (n, 1))},
            "wrist": {"ACC": rng.integers(-64, 64, (32 * WESAD_S, 3)).astype(np.float64), "BVP": bvp,
                      "EDA": rng.uniform(0.1, 2, (4 * WESAD_S, 1)), "TEMP": rng.uniform(30, 34, (4 * WESAD_S, 1))},
        },
        "label": label,
        "subject": f"S{k}",
    }
    return write_wesad_subject(root, k, content)


@pytest.fixture(scope="module")
def wesad_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("WESAD")
    _wesad_subject(root, 2, spoil=True)
    _wesad_subject(root, 3, spoil=False)
    return root


def _reference_labels(starts: np.ndarray) -> list[str]:
    """Per-window outcome by a plain loop over the label timeline (independent of the vectorised code)."""
    names = {1: "baseline", 2: "stress", 3: "amusement"}
    out = []
    for t in starts:
        codes = {code for start, stop, code in WESAD_SEGMENTS if start < t + 60 and stop > t}
        out.append("label_change" if len(codes) > 1 else names.get(codes.pop(), "label_excluded"))
    return out


def test_wesad_windows_labels_rates_and_drops(wesad_root):
    windows = wesad_paired(wesad_root, direction="ecg->ppg", progress=False)
    assert windows.class_names == ["baseline", "stress", "amusement"]
    assert (windows.old_modality, windows.new_modality) == ("ecg", "ppg")
    assert (windows.old_sfreq_hz, windows.new_sfreq_hz) == (100.0, 125.0)
    assert windows.old_channels == ["ECG"] and windows.new_channels == ["BVP"]
    assert windows.old.shape[1:] == (1, 6000) and windows.new.shape[1:] == (1, 7500)  # 60 s at 100 / 125 Hz

    starts = np.arange(0, WESAD_S - 60 + 1, 5)
    reference = _reference_labels(starts)
    assert len(starts) == 37 and reference.count("label_change") == 24 and reference.count("label_excluded") == 3
    clean = windows.of_subjects(["S3"])
    expected = [r for r in reference if r in ("baseline", "stress")]
    assert [clean.class_names[k] for k in clean.labels] == expected == ["baseline"] * 7 + ["stress"] * 3
    assert windows.info["drops_by_subject"]["S3"] == {"candidates": 37, "kept": 10, "dropped": {
        "label_change": 24, "label_excluded": 3, "gap": 0, "backwards": 0, "nonfinite": 0, "clipped": 0,
        "flat": 0}}
    # S2: NaN at 12 s spoils the kept window at 10 s; the 2 s at the rail (clipped, and held for over a second)
    # the windows at 15-30 s; the BVP held flat over [100, 165) s the stress windows at 100-110 s (a held run of
    # a second or more is flat, as it is live). Left: baseline at 35 and 40 s.
    assert windows.info["drops_by_subject"]["S2"] == {"candidates": 37, "kept": 2, "dropped": {
        "label_change": 24, "label_excluded": 3, "gap": 0, "backwards": 0, "nonfinite": 1, "clipped": 4,
        "flat": 3}}
    spoiled = windows.of_subjects(["S2"])
    assert list(spoiled.labels) == [0, 0]
    assert windows.info["drops"]["kept"] == len(windows) == 12 and set(windows.info["drops"]["dropped"]) == set(
        DROP_REASONS)

    # Timing: the resampled tones are where the formula puts them (window starts 35 and 40 s).
    for row, t0 in enumerate((35.0, 40.0)):
        t_ecg = t0 + np.arange(6000) / 100
        t_bvp = t0 + np.arange(7500) / 125
        np.testing.assert_allclose(spoiled.old[row, 0], np.sin(2 * np.pi * ECG_HZ * t_ecg), atol=2e-3)
        np.testing.assert_allclose(spoiled.new[row, 0], 40 * np.sin(2 * np.pi * BVP_HZ * t_bvp), atol=0.05)
    assert np.isfinite(windows.old).all() and np.isfinite(windows.new).all()

    swapped = wesad_paired(wesad_root, subjects=["S3"], direction="ppg->ecg", progress=False)
    assert swapped.old.shape[1:] == (1, 7500) and swapped.old_modality == "ppg"
    np.testing.assert_array_equal(swapped.old, clean.new)


def test_wesad_missing_subject_and_bad_direction(wesad_root, tmp_path):
    with pytest.raises(BadInputError, match=r"missing subject file\(s\) S5 \('.*S5/S5.pkl'\)"):
        wesad_paired(wesad_root, subjects=[2, "S5"], progress=False)
    with pytest.raises(BadInputError, match="'direction' is 'ecg->eeg'"):
        wesad_paired(wesad_root, direction="ecg->eeg", progress=False)
    with pytest.raises(BadInputError, match="holds no subject folders"):
        wesad_paired(tmp_path, progress=False)


# --- ISRUC: ExtractedChannels/subject<k>.mat + RawData/<k>/<k>_1.txt --------------------------------------------
EEG_VARS = ["F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1"]
STAGES = [0, 0, 1, 2, 5, 3]


def _isruc_subject(root: Path, k: int, nan_epoch: int | None = None) -> dict:
    rng = np.random.default_rng(k)
    n_epochs = len(STAGES)
    variables = {name: rng.normal(0, 30, (n_epochs, 6000)) for name in [*EEG_VARS, "LOC_A2", "X1"]}
    t = np.arange(n_epochs * 6000) / 200
    variables["X2"] = (500 * np.sin(2 * np.pi * 1.2 * t)).reshape(n_epochs, 6000)
    if nan_epoch is not None:
        variables["X2"][nan_epoch, 100] = np.nan
    (root / "ExtractedChannels").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "ExtractedChannels" / f"subject{k}.mat", variables)
    labels = STAGES + [2] * 30  # the last 30 epochs' labels are dropped by the protocol
    (root / "RawData" / str(k)).mkdir(parents=True, exist_ok=True)
    (root / "RawData" / str(k) / f"{k}_1.txt").write_text("\n".join(map(str, labels)) + "\n")
    return variables


def test_isruc_epochs_classes_and_drops(tmp_path):
    variables = _isruc_subject(tmp_path, 1)
    _isruc_subject(tmp_path, 2, nan_epoch=3)
    five = isruc_paired(tmp_path, classes=5, progress=False)
    assert five.class_names == ["W", "N1", "N2", "N3", "REM"]
    assert five.old.shape == (11, 6, 6000) and five.new.shape == (11, 1, 3000)  # EEG 200 Hz, ECG 100 Hz
    assert five.old_channels == ["F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1"] and five.new_channels == ["X2"]
    one = five.of_subjects(["1"])
    assert list(one.labels) == [0, 0, 1, 2, 4, 3]
    np.testing.assert_allclose(one.old[2, 3], variables["F4_A1"][2], rtol=1e-6)  # epoch 2, channel F4-A1
    t = 60.0 + np.arange(3000) / 100
    np.testing.assert_allclose(one.new[2, 0], 500 * np.sin(2 * np.pi * 1.2 * t), atol=1.0)
    assert five.info["drops_by_subject"]["2"]["dropped"]["nonfinite"] == 1
    assert list(five.of_subjects(["2"]).labels) == [0, 0, 1, 4, 3]  # epoch 3 (N2) dropped

    two = isruc_paired(tmp_path, subjects=[1], classes=2, direction="ecg->eeg", progress=False)
    assert two.class_names == ["wake", "sleep"] and list(two.labels) == [0, 0, 1, 1, 1, 1]
    assert two.old_modality == "ecg" and two.old.shape[1:] == (1, 3000) and two.new.shape[1:] == (6, 6000)

    with pytest.raises(BadInputError, match=r"missing file\(s\) of subject\(s\) 7 \('.*subject7.mat'\), 7"):
        isruc_paired(tmp_path, subjects=[1, 7], progress=False)
    with pytest.raises(BadInputError, match="'classes' is 3"):
        isruc_paired(tmp_path, classes=3, progress=False)


# --- Simulated sessions -------------------------------------------------------------------------------------------
def test_simulated_stress_and_sleep_pairs():
    stress = simulated_paired("stress", "ecg", "ppg", n_subjects=2, duration_s=180, seed=5, window_s=30, step_s=30,
                              progress=False)
    assert stress.class_names == ["baseline", "stress", "amusement"]
    assert stress.old.shape[1:] == (1, 3000) and stress.new.shape[1:] == (1, 3750)
    assert sorted(set(stress.subjects)) == ["sim5", "sim6"]
    assert stress.info["drops"]["candidates"] == 12 and len(stress) == stress.info["drops"]["kept"]
    assert (stress.labels >= 0).all() and np.isfinite(stress.old).all()

    sleep = simulated_paired("sleep", "eeg", "ecg", n_subjects=2, duration_s=180, seed=1, classes=2, progress=False)
    assert sleep.class_names == ["wake", "sleep"] and sleep.old_channels[0] == "F3-A2"  # isruc_psg montage
    assert sleep.old.shape[1:] == (6, 6000) and sleep.new.shape[1:] == (1, 3000)
    with pytest.raises(BadInputError, match="'classes' is 4"):
        simulated_paired("sleep", "eeg", "ecg", n_subjects=1, duration_s=60, classes=4, progress=False)


def test_cache_hit_and_miss(tmp_path, wesad_root):
    args = {"scenario": "stress", "old_modality": "ppg", "new_modality": "ecg", "n_subjects": 2, "duration_s": 90,
            "window_s": 30, "step_s": 15, "progress": False, "cache_dir": tmp_path / "cache"}
    first = simulated_paired(**args)
    assert first.info["cache"]["hit"] is False
    again = simulated_paired(**args)
    assert again.info["cache"]["hit"] is True
    for name in ("old", "new", "labels", "subjects"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    assert again.info["drops"] == first.info["drops"] and again.class_names == first.class_names
    changed = simulated_paired(**{**args, "step_s": 30})
    assert changed.info["cache"]["hit"] is False and len(changed) < len(first)
    files = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.endswith(".npz") and ".tmp" not in f for f in files)
    assert isinstance(PairedWindows.load(tmp_path / "cache" / files[0]), PairedWindows)

    # A source file that changes (size, mtime) misses the cache.
    cache = tmp_path / "wesad-cache"
    wesad_paired(wesad_root, subjects=[3], cache_dir=cache, progress=False)
    assert wesad_paired(wesad_root, subjects=[3], cache_dir=cache, progress=False).info["cache"]["hit"] is True
    pkl = wesad_root / "S3" / "S3.pkl"
    stat = pkl.stat()
    os.utime(pkl, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert wesad_paired(wesad_root, subjects=[3], cache_dir=cache, progress=False).info["cache"]["hit"] is False


# --- Splits --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "sizes"), [(15, [5, 2, 5, 3]), (99, [33, 11, 33, 22]), (7, None), (4, [1, 1, 1, 1])])
def test_subject_splits_are_disjoint_and_cover(n, sizes):
    subjects = [f"S{k}" for k in range(2, n + 2)]
    splits = split_subjects(subjects, random_state=3)
    assert list(splits) == ["train", "val", "pair", "test"]
    everyone = [s for part in splits.values() for s in part]
    assert sorted(everyone) == sorted(subjects) and len(set(everyone)) == n
    assert all(len(part) >= 1 for part in splits.values())
    if sizes is not None:
        assert [len(part) for part in splits.values()] == sizes
    assert split_subjects(subjects, random_state=3) == splits
    assert split_subjects(subjects, random_state=4) != splits or n == 4


def test_split_counts_and_errors():
    splits = split_subjects(range(10), counts=(4, 2, 2, 2), random_state=0)
    assert [len(v) for v in splits.values()] == [4, 2, 2, 2]
    fractions = split_subjects(range(10), counts=(0.5, 0.1, 0.3, 0.1), random_state=0)
    assert [len(v) for v in fractions.values()] == [5, 1, 3, 1]
    with pytest.raises(BadInputError, match="summing to 10 subjects"):
        split_subjects(range(10), counts=(4, 2, 2, 1))
    with pytest.raises(BadInputError, match="need at least 4 subjects"):
        split_subjects(["a", "b", "c"])
    with pytest.raises(BadInputError, match=r"subject ids repeat: \['a'\]"):
        split_subjects(["a", "a", "b", "c", "d"])
