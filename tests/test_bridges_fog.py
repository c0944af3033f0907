"""FOG training windows: the 80% majority-label rule, both directions at the FMs' rates, sources and errors."""

from __future__ import annotations

import numpy as np
import pytest
from _fog_files import fog_session, write_fog_task

from bridges.data import fog_paired, paired_windows_from_recording, simulated_paired
from bridges.data.build import StreamSelect, majority_labels
from bridges.data.sources import FOG_CLASSES, fog_task_files
from bridges.workflow import TransferRun
from devices.errors import BadInputError
from devices.formats.fog import read_fog
from devices.recording import Stream

RATE = 500


def _labels(*runs: tuple[int, float]) -> np.ndarray:
    """Per-sample labels from (code, seconds) runs."""
    return np.concatenate([np.full(round(seconds * RATE), code) for code, seconds in runs])


def _reference_rule(labels: np.ndarray, window: int = 1500, step: int = 150) -> list[tuple[int, int]]:
    """BioX-Bridge's rule on the 500 Hz labels: (window index, majority code) of the windows it keeps."""
    kept = []
    for k in range((len(labels) - window) // step + 1):
        codes, counts = np.unique(labels[k * step: k * step + window], return_counts=True)
        if counts.max() / window >= 0.8:
            kept.append((k, int(codes[np.argmax(counts)])))
    return kept


def test_majority_labels_shares():
    markers = Stream("m", "Markers", np.array([["a"], ["b"], ["a"]], dtype=object), np.array([1.0, 2.0, 2.5]),
                     0.0, ["label"], channel_format="string")
    names, fractions = majority_labels(markers, np.array([0.0, 1.0, 1.5, 2.0, 4.0]), 2.0)
    assert names.tolist() == ["", "a", "a", "a", "a"]
    np.testing.assert_allclose(fractions, [0.5, 0.75, 0.75, 0.75, 1.0])
    # A tie goes to the label in force first.
    names, fractions = majority_labels(markers, np.array([1.5]), 1.0)
    assert names.tolist() == ["a"] and fractions.tolist() == [0.5]


def test_windows_follow_the_80_percent_rule_of_the_reference(tmp_path):
    labels = _labels((0, 7.0), (1, 2.2), (0, 1.3), (1, 5.0), (0, 0.5), (1, 0.4), (0, 6.0))
    path = write_fog_task(tmp_path / "001" / "task_1.txt", fog_session(labels, seed=1))
    recording = read_fog(path)
    windows, report = paired_windows_from_recording(
        recording, StreamSelect("EEG", (), "eeg"), StreamSelect("EMG", (), "emg"), "Markers", FOG_CLASSES, 3.0, 0.3,
        200.0, 130.0, "001", min_label_fraction=0.8,
    )
    reference = _reference_rule(labels)
    assert report.candidates == (len(labels) - 1500) // 150 + 1
    assert report.kept == len(reference) == len(windows) and report.dropped["label_change"] == report.candidates - len(
        reference)
    assert windows.labels.tolist() == [code for _, code in reference]
    assert 0 < windows.labels.sum() < len(windows)  # both classes survive
    assert windows.info["label_rule"] == "majority label covering >= 0.8 of the window"
    # The strict rule (no change inside) keeps fewer windows.
    strict, _ = paired_windows_from_recording(
        recording, StreamSelect("EEG", (), "eeg"), StreamSelect("EMG", (), "emg"), "Markers", FOG_CLASSES, 3.0, 0.3,
        200.0, 130.0, "001",
    )
    assert len(strict) < len(windows)
    with pytest.raises(BadInputError, match=r"'min_label_fraction' must be in \(0, 1\]"):
        paired_windows_from_recording(recording, StreamSelect("EEG"), StreamSelect("EMG"), "Markers", FOG_CLASSES,
                                      3.0, 0.3, 200.0, 130.0, "001", min_label_fraction=0.0)


def _write_root(root, tasks: dict[str, int], seconds: float) -> None:
    for k, (folder, n_tasks) in enumerate(tasks.items()):
        for task in range(1, n_tasks + 1):
            labels = _labels((0, 4.0 + k % 3), (1, 4.0), (0, seconds - 8.0 - k % 3))
            write_fog_task(root / folder / f"task_{task}.txt", fog_session(labels, seed=10 * k + task))


@pytest.fixture(scope="module")
def fog_root(tmp_path_factory):
    """A FOG folder: subjects 001 (two tasks), 003, 005 and 008 (sessions OFF_1, OFF_2), 12 s per task."""
    root = tmp_path_factory.mktemp("fog") / "FOG" / "Filtered Data"
    _write_root(root, {"001": 2, "003": 1, "005": 1, "008/OFF_1": 1, "008/OFF_2": 1}, 12.0)
    return root


@pytest.mark.parametrize("direction", ["eeg->emg", "emg->eeg"])
def test_fog_paired_both_directions(tmp_path, fog_root, direction):
    windows = fog_paired(fog_root.parent, subjects=["001", 8], direction=direction, cache_dir=tmp_path / "cache",
                         progress=False)
    eeg, emg = (windows.old, windows.new) if direction == "eeg->emg" else (windows.new, windows.old)
    assert eeg.shape[1:] == (6, 600) and emg.shape[1:] == (3, 390) and eeg.dtype == np.float32
    channels = (windows.old_channels, windows.new_channels)
    if direction == "emg->eeg":
        channels = channels[::-1]
    assert channels == (["F3", "C3", "O1", "F4", "C4", "O2"], ["EMG1", "EMG2", "EMG3"])
    assert (windows.old_modality, windows.new_modality) == tuple(direction.split("->"))
    rates = {windows.old_modality: windows.old_sfreq_hz, windows.new_modality: windows.new_sfreq_hz}
    assert rates == {"eeg": 200.0, "emg": 130.0}
    assert windows.class_names == ["walking", "freezing"] and set(windows.labels.tolist()) == {0, 1}
    assert sorted(set(windows.subjects.tolist())) == ["001", "008"]  # both sessions of 008 are one subject
    assert set(windows.info["drops_by_subject"]) == {"001/task_1", "001/task_2", "008/OFF_1/task_1",
                                                     "008/OFF_2/task_1"}
    assert windows.info["source"] == "fog" and windows.info["min_label_fraction"] == 0.8
    # Each 12 s file gives (12 - 3) / 0.3 + 1 = 31 candidate windows; the 4 s freezing run spoils some.
    assert windows.info["drops"]["candidates"] == 4 * 31
    assert 0 < windows.info["drops"]["dropped"]["label_change"] < 4 * 31 // 2
    again = fog_paired(fog_root, subjects=["001", 8], direction=direction, cache_dir=tmp_path / "cache",
                       progress=False)  # from the cache
    np.testing.assert_array_equal(again.old, windows.old)


def test_fog_task_files_and_errors(tmp_path):
    root = tmp_path / "Filtered Data"
    _write_root(root, {"002": 2, "008/OFF_2": 1}, 10.0)
    assert list(fog_task_files(root)) == ["002", "008/OFF_2"]
    assert list(fog_task_files(root, subjects=[8])) == ["008/OFF_2"]
    assert [p.name for p in fog_task_files(root, subjects=["002"])["002"]] == ["task_1.txt", "task_2.txt"]
    with pytest.raises(BadInputError, match=r"no task files of subject\(s\) \['003'\]"):
        fog_task_files(root, subjects=["002", "003"])
    with pytest.raises(BadInputError, match=r"FOG subject 'S2' is not a subject number"):
        fog_task_files(root, subjects=["S2"])
    with pytest.raises(BadInputError, match=r"FOG root '.*nowhere' does not exist"):
        fog_paired(tmp_path / "nowhere")
    (tmp_path / "empty" / "001").mkdir(parents=True)
    with pytest.raises(BadInputError, match=r"holds no task files of any subject"):
        fog_task_files(tmp_path / "empty")
    with pytest.raises(BadInputError, match=r"'direction' is 'eeg->ecg'"):
        fog_paired(root, direction="eeg->ecg")


def test_transfer_run_reads_fog_splits_by_subject(tmp_path, fog_root):
    root = fog_root
    config = tmp_path / "fog.toml"
    config.write_text(f"""
[data]
source = "fog"
root = "{root}"
old_modality = "emg"
new_modality = "eeg"
window_s = 3.0
step_s = 0.3
split = [1, 1, 1, 1]

[output]
dir = "run"
""")
    splits = TransferRun(config).splits
    subjects = {name: set(w.subjects.tolist()) for name, w in splits.items()}
    assert set().union(*subjects.values()) == {"001", "003", "005", "008"}
    assert sum(len(s) for s in subjects.values()) == 4  # disjoint
    assert splits["pair"].old.shape[1:] == (3, 390) and splits["pair"].new.shape[1:] == (6, 600)
    config.write_text(config.read_text().replace('step_s = 0.3', 'step_s = 0.3\nclasses = 3'))
    with pytest.raises(BadInputError, match=r"\[data\]: 'classes' is 3, but source 'fog' has 2 \(walking, freezing\)"):
        _ = TransferRun(config).splits


@pytest.mark.parametrize("direction", [("eeg", "emg"), ("emg", "eeg")])
def test_simulated_gait_pairs_fit_labram_and_normwear(tmp_path, direction):
    """Simulated gait sessions give FOG-shaped pairs that a small LaBraM and a small NormWear both run on."""
    import torch

    from bridges.fm.registry import FMSpec, build_fm
    from bridges.preprocess import preprocess_for

    torch.set_num_threads(1)
    old, new = direction
    windows = simulated_paired("gait", old, new, n_subjects=2, duration_s=60.0, seed=4, progress=False)
    by_modality = {old: (windows.old, windows.old_channels, windows.old_sfreq_hz),
                   new: (windows.new, windows.new_channels, windows.new_sfreq_hz)}
    eeg, eeg_channels, eeg_hz = by_modality["eeg"]
    emg, emg_channels, emg_hz = by_modality["emg"]
    assert eeg.shape[1:] == (6, 600) and eeg_hz == 200.0 and eeg_channels == ["F3", "C3", "O1", "F4", "C4", "O2"]
    assert emg.shape[1:] == (3, 390) and emg_hz == 130.0 and emg_channels == ["TA_L", "TA_R", "GS_R"]
    assert windows.class_names == ["walking", "freezing"] and set(windows.labels.tolist()) == {0, 1}
    assert windows.info["window_s"] == 3.0 and windows.info["step_s"] == 0.3
    assert windows.info["min_label_fraction"] == 0.8 and windows.info["devices"] == {"eeg": "fog_rig", "emg": "fog_rig"}

    pick = np.concatenate([np.flatnonzero(windows.labels == c)[:2] for c in (0, 1)])
    labram = build_fm(FMSpec("labram", "small", window_s=3.0, channels=eeg_channels))
    normwear = build_fm(FMSpec("normwear", "small", window_s=3.0, channels=emg_channels))
    for fm, x, tokens in ((labram, eeg, 6 * 3 + 1), (normwear, emg, 3 * 560)):
        pre = preprocess_for(fm.input_spec)
        batch = pre(torch.from_numpy(x[pick]))
        with torch.no_grad():
            h = fm.prefix(batch, upto=0)
            out = fm.suffix(h, start=1)
        assert h.shape[:2] == out.shape[:2] == (4, tokens)
        assert torch.isfinite(out).all() and fm.pool(out).shape == (4, fm.layer_shapes()[-1][1])
    # NormWear's input is the z-score of the raw EMG window (no filter), LaBraM's the band-passed µV / 100.
    assert preprocess_for(normwear.input_spec).spec.steps() == [{"op": "zscore", "axis": "per window, per channel"}]
    assert preprocess_for(labram.input_spec).spec.scale == 0.01
