"""ISRUC-Sleep subgroup 1: a tiny fake subject in the dataset's layout, written with scipy.io.savemat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from devices.errors import RecordingFormatError
from devices.formats import read_isruc, read_recording
from devices.profiles import get_profile

EEG_VARS = ["F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1"]


def _make_subject(root: Path, k: int, n_epochs: int = 4, n_labels: int | None = None, skip: str = "") -> dict:
    rng = np.random.default_rng(k)
    variables = {name: rng.normal(0, 30, (n_epochs, 6000)) for name in [*EEG_VARS, "X2", "LOC_A2", "X1"]}
    variables.pop(skip, None)
    (root / "ExtractedChannels").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "ExtractedChannels" / f"subject{k}.mat", variables)
    n_labels = n_epochs + 30 if n_labels is None else n_labels
    stages = [0, 1, 2, 3, 5, 2, 4, 0] * (n_labels // 8 + 1)
    (root / "RawData" / str(k)).mkdir(parents=True, exist_ok=True)
    (root / "RawData" / str(k) / f"{k}_1.txt").write_text("\n".join(str(s) for s in stages[:n_labels]) + "\n\n")
    return variables


def test_fake_subject_streams_and_stage_markers(tmp_path):
    variables = _make_subject(tmp_path, 1, n_epochs=4)
    rec = read_isruc(tmp_path, 1)
    eeg, ecg, stages = rec.streams
    profile = get_profile("isruc_psg")
    assert eeg.channel_labels == list(profile.stream("EEG").channel_labels) == ["F3-A2", "C3-A2", "O1-A2",
                                                                                  "F4-A1", "C4-A1", "O2-A1"]
    assert eeg.channel_units == ["uV"] * 6 and eeg.nominal_srate == 200.0 and eeg.type == "EEG"
    assert eeg.n_samples == 4 * 6000 and ecg.n_channels == 1 and ecg.channel_labels == ["X2"]
    # Epoch e of channel F4_A1 is samples e*6000 ... (e+1)*6000 of column 3.
    np.testing.assert_allclose(eeg.data[6000:12000, 3], variables["F4_A1"][1], rtol=1e-6)
    np.testing.assert_allclose(ecg.data[:, 0], variables["X2"].reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(eeg.timestamps[[0, 6000, -1]], [0.0, 30.0, (4 * 6000 - 1) / 200])
    assert stages.is_marker and list(stages.data[:, 0]) == ["W", "N1", "N2", "N3"]
    np.testing.assert_array_equal(stages.timestamps, [0.0, 30.0, 60.0, 90.0])
    assert rec.info["labels_in_file"] == 34 and rec.info["epochs_used"] == 4
    assert rec.info["alignment"] == "dropped the last 30 of 34 labels"


def test_more_labels_than_epochs_are_aligned_from_the_start(tmp_path):
    _make_subject(tmp_path, 2, n_epochs=3, n_labels=40)  # 40 - 30 = 10 labels for 3 epochs
    rec = read_recording(tmp_path / "ExtractedChannels" / "subject2.mat")
    assert rec.info["format"] == "isruc" and rec.info["epochs_used"] == 3
    assert "10 labels vs 3 epochs: kept the first 3 of both" in rec.info["alignment"]
    assert list(rec.stream("Markers").data[:, 0]) == ["W", "N1", "N2"]
    _make_subject(tmp_path / "other", 3, n_epochs=8, n_labels=36)  # 6 labels for 8 epochs: signals are cut
    rec = read_recording(tmp_path / "other" / "RawData" / "3")
    assert rec.stream("ISRUC 3 EEG").n_samples == 6 * 6000
    assert list(rec.stream("ISRUC 3 stages").data[:, 0]) == ["W", "N1", "N2", "N3", "REM", "N2"]


def test_missing_files_channels_and_bad_labels(tmp_path):
    with pytest.raises(RecordingFormatError, match=r"ISRUC subject 9: missing '.*subject9.mat', '.*9_1.txt'"):
        read_isruc(tmp_path, 9)
    _make_subject(tmp_path, 4, skip="O2_A1")
    with pytest.raises(RecordingFormatError, match=r"subject4.mat' is missing channel\(s\) \['O2_A1'\]"):
        read_isruc(tmp_path, 4)
    _make_subject(tmp_path, 5)
    (tmp_path / "RawData" / "5" / "5_1.txt").write_text("0\n1\nN2\n")
    with pytest.raises(RecordingFormatError, match=r"5_1.txt' line 3: 'N2' is not a stage code"):
        read_isruc(tmp_path, 5)
    _make_subject(tmp_path, 6)
    mat = tmp_path / "ExtractedChannels" / "subject6.mat"
    mat.write_bytes(mat.read_bytes()[:5000])
    with pytest.raises(RecordingFormatError, match="subject6.mat' could not be read"):
        read_isruc(tmp_path, 6)
    with pytest.raises(RecordingFormatError, match=r"holds ISRUC subjects \[4, 5, 6\]"):
        read_recording(tmp_path)
