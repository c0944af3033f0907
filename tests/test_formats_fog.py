"""The FOG task-file reader: columns, channel names, EMG columns per folder, labels as markers, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _fog_files import fog_table, write_fog_task

from devices.errors import RecordingFormatError
from devices.formats import FORMAT_NAMES, read_recording
from devices.formats.fog import EEG_CHANNELS, EMG_COLUMNS, read_fog
from devices.recording import labels_at

REPO = Path(__file__).resolve().parents[1]


def _tagged(n: int, labels: np.ndarray | None = None) -> np.ndarray:
    """A table whose cell (row, col) is ``col * 1000 + row``: any column mix-up shows."""
    labels = np.zeros(n, dtype=int) if labels is None else labels
    return fog_table(labels, {col: col * 1000.0 + np.arange(n) for col in range(2, 60)})


@pytest.mark.parametrize(("folder", "emg"), [("003", (28, 27, 31)), ("008/OFF_2", (27, 31, 28)),
                                             ("009", (28, 27, 30))])
def test_columns_channels_and_folders(tmp_path, folder, emg):
    path = write_fog_task(tmp_path / "Filtered Data" / folder / "task_2.txt", _tagged(40))
    rec = read_recording(path, format="fog")
    eeg, emg_stream = rec.stream("EEG"), rec.stream("EMG")
    assert eeg.channel_labels == list(EEG_CHANNELS) == ["F3", "C3", "O1", "F4", "C4", "O2"]
    # The data set's EEG order FP1, FP2, F3, F4, C3, C4, P3, P4, O1, O2 from column 2 on.
    expected = {"F3": 4, "F4": 5, "C3": 6, "C4": 7, "O1": 10, "O2": 11}
    for k, name in enumerate(EEG_CHANNELS):
        np.testing.assert_allclose(eeg.data[:, k], expected[name] * 1000.0 + np.arange(40), rtol=1e-6)
    assert emg_stream.channel_labels == ["EMG1", "EMG2", "EMG3"] and EMG_COLUMNS[folder] == emg
    for k, col in enumerate(emg):
        np.testing.assert_allclose(emg_stream.data[:, k], col * 1000.0 + np.arange(40), rtol=1e-6)
    for stream in (eeg, emg_stream):
        assert stream.nominal_srate == 500.0 and stream.channel_units == ["uV"] * stream.n_channels
        np.testing.assert_allclose(stream.timestamps, np.arange(40) / 500.0)
    assert rec.info["format"] == "fog" and rec.info["folder"] == folder and rec.info["task"] == "task_2"
    assert rec.info["subject"] == folder.split("/")[0]
    assert eeg.name == f"FOG {folder} EEG" and eeg.source_id != emg_stream.source_id


def test_labels_become_walking_and_freezing_markers(tmp_path):
    labels = np.array([0] * 10 + [1] * 15 + [0] * 5)
    rec = read_fog(write_fog_task(tmp_path / "001" / "task_1.txt", fog_table(labels)))
    markers = rec.stream("Markers")
    assert markers.is_marker and markers.data[:, 0].tolist() == ["walking", "freezing", "walking"]
    np.testing.assert_allclose(markers.timestamps, [0.0, 10 / 500, 25 / 500])
    assert markers.metadata["codes"] == [0, 1, 0]
    times = np.arange(30) / 500.0
    assert (labels_at(markers, times) == np.where(labels == 1, "freezing", "walking")).all()
    # An explicit folder overrides the path (a file copied out of the layout).
    loose = tmp_path / "copy.txt"
    loose.write_bytes((tmp_path / "001" / "task_1.txt").read_bytes())
    assert read_fog(loose, folder="009").info["emg_columns"] == [28, 27, 30]


def _lines(tmp_path: Path, n: int = 8) -> tuple[Path, list[str]]:
    path = write_fog_task(tmp_path / "004" / "task_1.txt", fog_table(np.zeros(n, dtype=int)))
    return path, path.read_text().splitlines()


def _set_cell(lines: list[str], row: int, col: int, value: str) -> list[str]:
    cells = lines[row].split(",")
    cells[col] = value
    return [*lines[:row], ",".join(cells), *lines[row + 1:]]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda ls: [*ls[:3], ls[3] + ",7", *ls[4:]], r"line 4: 62 comma-separated cells, a FOG task file has 61"),
        (lambda ls: [*ls[:2], ",".join(ls[2].split(",")[:40]), *ls[3:]], r"line 3: 40 comma-separated cells"),
        (lambda ls: _set_cell(ls, 5, 6, "abc"), r"line 6, column 6: 'abc' is not a number"),
        (lambda ls: _set_cell(ls, 2, 28, ""), r"line 3, column 28: '' is not a number"),
        (lambda ls: _set_cell(ls, 4, 10, "nan"), r"line 5, column 10: nan is not a finite number"),
        (lambda ls: _set_cell(ls, 1, 31, "-inf"), r"line 2, column 31: -inf is not a finite number"),
        (lambda ls: _set_cell(ls, 6, 60, "2"), r"line 7, column 60: label 2 is not 0 \(FOG-free\) or 1"),
        (lambda ls: _set_cell(ls, 0, 60, "0.5"), r"line 1, column 60: label 0.5"),
        (lambda ls: [",".join(f"c{k}" for k in range(61)), *ls], r"line 1, column 4: 'c4' is not a number "
                                                                  r"\(FOG task files have no header row\)"),
        (lambda ls: [], r"holds no rows"),
    ],
    ids=["extra-cell", "short-row", "text", "empty-cell", "nan", "inf", "label-2", "label-half", "header",
         "no-rows"],
)
def test_bad_input_is_one_line_naming_the_file(tmp_path, edit, match):
    path, lines = _lines(tmp_path)
    path.write_text("\n".join(edit(lines)) + "\n")
    with pytest.raises(RecordingFormatError, match=match) as info:
        read_recording(path, format="fog")
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_unread_columns_may_hold_anything_and_trailing_blank_lines_are_fine(tmp_path):
    path, lines = _lines(tmp_path)
    lines = _set_cell(lines, 3, 45, "n/a")  # another sensor's column: not read
    path.write_text("\n".join(lines) + "\n\n\n")
    rec = read_fog(path)
    assert rec.stream("EEG").n_samples == 8


def test_unknown_folder_binary_and_empty_files(tmp_path):
    path = write_fog_task(tmp_path / "013" / "task_1.txt", fog_table(np.zeros(4, dtype=int)))
    with pytest.raises(RecordingFormatError, match=r"folder '013' is not a FOG recording folder"):
        read_recording(path, format="fog")
    off = write_fog_task(tmp_path / "007" / "OFF_1" / "task_1.txt", fog_table(np.zeros(4, dtype=int)))
    with pytest.raises(RecordingFormatError, match=r"folder '007/OFF_1' is not"):
        read_fog(off)
    with pytest.raises(RecordingFormatError, match=r"folder 'x' is not one of"):
        read_fog(off, folder="x")
    binary = tmp_path / "002" / "task_1.txt"
    binary.parent.mkdir()
    binary.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(RecordingFormatError, match="is not a FOG task file"):
        read_fog(binary)
    empty = tmp_path / "002" / "task_2.txt"
    empty.write_bytes(b"")
    with pytest.raises(RecordingFormatError, match=r"is empty \(0 bytes\)"):
        read_recording(empty, format="fog")


def test_cli_replay_offers_every_format_and_reports_a_bad_fog_file(tmp_path):
    from biostream.cli import cli

    option = next(p for p in cli.commands["replay"].params if p.name == "fmt")
    assert list(option.type.choices) == list(FORMAT_NAMES)
    path, lines = _lines(tmp_path)
    path.write_text("\n".join(_set_cell(lines, 2, 5, "oops")) + "\n")
    env = {**os.environ, "BIOSTREAM_LOG_DIR": str(tmp_path / "logs")}
    result = subprocess.run([sys.executable, "-m", "biostream", "replay", str(path), "--format", "fog"],
                            capture_output=True, text=True, timeout=120, cwd=REPO, env=env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert str(path) in line and "line 3, column 5: 'oops' is not a number" in line
