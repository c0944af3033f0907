"""Read one task file of the multimodal freezing-of-gait data set (FOG) into a Recording.

Data set: Zhang et al., "Multimodal data for the detection of freezing of gait in Parkinson's disease",
Scientific Data 9:606 (2022); files: Li, Hantao (2021), "Multimodal Dataset of Freezing of Gait in Parkinson's
Disease", Mendeley Data r8gmbtv7w2 version 3, folder ``Filtered Data``. BioX-Bridge (chenqi-li/BioX-Bridge,
``dataset_preprocessing/make_FOG.py``) reads the same files for its FOG EEG ↔ EMG directions.

Layout, under the data set's folder::

    <subject>/task_<n>.txt         subjects 001 ... 012, one file per task
    008/OFF_1/task_<n>.txt         subject 008 was recorded twice: sessions OFF_1 and OFF_2
    008/OFF_2/task_<n>.txt

Each file is comma-separated text without a header, one row per sample at 500 Hz, :data:`N_COLUMNS` (61)
columns, numbered from 0 as in the reference code: 0 the row index, 1 the wall-clock time (``HH:MM:SS.fff``),
2–26 EEG (25 channels), 27–31 EMG among other channels, 32–59 the other sensors (acceleration, angular rate, skin
conductance; not read here), 60 the label. Only the columns read are parsed; every row must have 61 cells.

* **EEG.** The EEG block follows the data set's sensor table (FP1, FP2, F3, F4, C3, C4, P3, P4, O1, O2, F7, F8,
  ...), so block offsets 2, 3, 4, 5, 8, 9 (the six BioX-Bridge keeps) are F3, F4, C3, C4, O1, O2; an independent
  analysis of these files names columns 4–11 F3, F4, C3, C4, P3, P4, O1, O2 the same way. The stream holds those
  six in LaBraM's ISRUC order :data:`EEG_CHANNELS` (F3, C3, O1, F4, C4, O2). BioX-Bridge's comment lists the six
  offsets in that ISRUC order instead, i.e. calls offset 3 C3 and offset 4 O1; its LaBraM ran without channel
  positions (``input_chans=None``), so the names never mattered there. Ours embeds each channel by its 10-20 name,
  so we name them by the data set's order.
* **EMG.** Which columns hold the three EMG channels differs between recordings; :data:`EMG_COLUMNS` is
  BioX-Bridge's per-folder table (``column_map`` in ``make_FOG.py``), which puts them in one order for every
  subject. The data set's three muscles are the right gastrocnemius and the left and right tibialis anterior;
  which column is which muscle is stated nowhere, so the channels are called ``EMG1``–``EMG3``.
* **Label** (column 60), per sample: 0 FOG-free (normal gait), 1 freezing of gait, as the data set's processing
  code labels them and BioX-Bridge's two classes read ("0 - No FOG, 1 - FOG"). The marker stream carries the
  simulator's gait state names for them, ``"walking"`` (0) and ``"freezing"`` (1), one marker per change.

Units are not written in the files: EEG is µV (the data set's amplifier; BioX-Bridge scales it by 1/100 for
LaBraM as for µV), EMG comes from the same amplifier and is taken as µV (NormWear z-scores it, so only the shape
matters). Timestamps are ``row / 500`` s; the wall-clock column is not parsed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from devices.errors import RecordingFormatError
from devices.formats._files import describe_head, looks_like_text, read_head, require_file, sniff
from devices.recording import Recording, Stream

logger = logging.getLogger(__name__)

RATE_HZ = 500.0
N_COLUMNS = 61
#: First column of the EEG block (columns 2–26).
EEG_FIRST_COLUMN = 2
#: The six EEG channels kept, in LaBraM's ISRUC order, and their offsets in the EEG block (the data set's order).
EEG_CHANNELS: tuple[str, ...] = ("F3", "C3", "O1", "F4", "C4", "O2")
EEG_OFFSETS: dict[str, int] = {"F3": 2, "F4": 3, "C3": 4, "C4": 5, "O1": 8, "O2": 9}
EEG_COLUMNS: tuple[int, ...] = tuple(EEG_FIRST_COLUMN + EEG_OFFSETS[name] for name in EEG_CHANNELS)
#: Columns of the three EMG channels per recording folder; BioX-Bridge, dataset_preprocessing/make_FOG.py.
EMG_COLUMNS: dict[str, tuple[int, int, int]] = {
    "001": (27, 28, 31),
    "002": (27, 28, 31),
    "003": (28, 27, 31),
    "004": (28, 27, 31),
    "005": (28, 27, 31),
    "006": (27, 28, 31),
    "007": (27, 28, 31),
    "008/OFF_1": (27, 28, 31),
    "008/OFF_2": (27, 31, 28),
    "009": (28, 27, 30),
    "010": (28, 27, 31),
    "011": (28, 27, 31),
    "012": (28, 27, 31),
}
EMG_CHANNELS: tuple[str, ...] = ("EMG1", "EMG2", "EMG3")
LABEL_COLUMN = 60
#: Label codes → marker names (the gait scenario's state names).
LABEL_NAMES: dict[int, str] = {0: "walking", 1: "freezing"}
#: What the codes mean in the data set.
CODE_MEANINGS: dict[int, str] = {0: "FOG-free (normal gait)", 1: "freezing of gait"}


def fog_folder(path: str | Path) -> str:
    """The recording folder id of a task file (a key of :data:`EMG_COLUMNS`): ``"003"`` or ``"008/OFF_2"``.

    Raises
    ------
    RecordingFormatError
        The file does not sit in one of the data set's folders.
    """
    path = Path(path)
    parent = path.parent.name
    folder = f"{path.parent.parent.name}/{parent}" if parent.upper().startswith("OFF") else parent
    if folder not in EMG_COLUMNS:
        raise RecordingFormatError(
            f"'{path}': folder {folder!r} is not a FOG recording folder (one of {list(EMG_COLUMNS)}); "
            "the EMG columns are known per folder"
        )
    return folder


def read_fog(path: str | Path, folder: str | None = None) -> Recording:
    """Read one FOG task file (see the module docstring for the layout).

    Parameters
    ----------
    path : str or Path
        ``<subject>/task_<n>.txt`` (or ``008/OFF_<k>/task_<n>.txt``).
    folder : str, optional
        Recording folder id (a key of :data:`EMG_COLUMNS`) when the path does not say it.

    Returns
    -------
    Recording
        ``"FOG <folder> EEG"`` (6 channels :data:`EEG_CHANNELS`, µV, 500 Hz), ``"FOG <folder> EMG"`` (3 channels,
        µV, 500 Hz) and ``"FOG <folder> labels"``, a marker per label change (``"walking"``/``"freezing"``);
        ``info`` holds ``subject`` (the person: ``"008"`` for both of its sessions), ``folder``, ``task`` and the
        columns read.

    Raises
    ------
    RecordingFormatError
        Not text, a row without 61 cells, a non-numeric, NaN or infinite cell in a column read, a label other
        than 0 or 1, an unknown folder; one line naming the file.
    """
    path = require_file(path)
    if folder is None:
        folder = fog_folder(path)
    elif folder not in EMG_COLUMNS:
        raise RecordingFormatError(f"'{path}': folder {folder!r} is not one of {list(EMG_COLUMNS)}")
    head = read_head(path, 4096)
    if not looks_like_text(head):
        what = describe_head(head, "csv") if sniff(head) else "it contains binary data"
        raise RecordingFormatError(f"'{path}' is not a FOG task file (comma-separated text): {what}")
    lines = _lines(path)
    emg_columns = EMG_COLUMNS[folder]
    columns = (*EEG_COLUMNS, *emg_columns, LABEL_COLUMN)
    table = _numeric_columns(path, lines, columns)
    eeg, emg, codes = table[:, :6], table[:, 6:9], table[:, 9]
    labels = _label_codes(path, codes)

    times = np.arange(len(lines), dtype=np.float64) / RATE_HZ
    tag = f"{folder.replace('/', '-')}-{path.stem}"
    streams = [
        _signal(f"FOG {folder} EEG", "EEG", eeg, times, EEG_CHANNELS, f"fog-{tag}-eeg"),
        _signal(f"FOG {folder} EMG", "EMG", emg, times, EMG_CHANNELS, f"fog-{tag}-emg"),
        _markers(f"FOG {folder} labels", labels, f"fog-{tag}-labels"),
    ]
    info = {
        "source": str(path),
        "format": "fog",
        "subject": folder.split("/")[0],
        "folder": folder,
        "task": path.stem,
        "eeg_columns": list(EEG_COLUMNS),
        "emg_columns": list(emg_columns),
        "label_column": LABEL_COLUMN,
    }
    return Recording(streams=streams, info=info)


def _lines(path: Path) -> list[str]:
    """The file's rows, checked to have :data:`N_COLUMNS` cells each (trailing blank lines dropped)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordingFormatError(f"'{path}' is not UTF-8 text (byte {err.start})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise RecordingFormatError(f"'{path}' holds no rows")
    cells = np.fromiter((line.count(",") + 1 for line in lines), dtype=np.int64, count=len(lines))
    bad = np.flatnonzero(cells != N_COLUMNS)
    if bad.size:
        first = int(bad[0])
        raise RecordingFormatError(
            f"'{path}' line {first + 1}: {int(cells[first])} comma-separated cells, a FOG task file has "
            f"{N_COLUMNS} ({bad.size} such line(s))"
        )
    return lines


def _numeric_columns(path: Path, lines: list[str], columns: tuple[int, ...]) -> np.ndarray:
    """Parse ``columns`` of every row as float64, ``(n_rows, len(columns))``; non-numbers and NaN/inf raise."""
    try:
        table = np.loadtxt(lines, delimiter=",", usecols=columns, dtype=np.float64, ndmin=2, comments=None)
    except ValueError:
        raise _first_bad_cell(path, lines, columns) from None
    finite = np.isfinite(table)
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise RecordingFormatError(
            f"'{path}' line {row + 1}, column {columns[col]}: {float(table[row, col])} is not a finite number "
            f"({int((~finite).sum())} such cell(s) in the columns read)"
        )
    return table


def _first_bad_cell(path: Path, lines: list[str], columns: tuple[int, ...]) -> RecordingFormatError:
    """The error naming the first cell of ``columns`` that is not a number (slow path, only after a failure)."""
    for number, line in enumerate(lines, start=1):
        cells = line.split(",")
        for col in columns:
            try:
                float(cells[col])
            except ValueError:
                hint = " (FOG task files have no header row)" if number == 1 else ""
                return RecordingFormatError(
                    f"'{path}' line {number}, column {col}: {cells[col].strip()[:40]!r} is not a number{hint}"
                )
    return RecordingFormatError(f"'{path}': the columns {list(columns)} could not be read as numbers")


def _label_codes(path: Path, codes: np.ndarray) -> np.ndarray:
    known = np.isin(codes, list(LABEL_NAMES))
    if not known.all():
        row = int(np.argmin(known))
        values = sorted({float(v) for v in np.unique(codes[~known])[:5]})
        raise RecordingFormatError(
            f"'{path}' line {row + 1}, column {LABEL_COLUMN}: label {codes[row]:g} is not 0 (FOG-free) or "
            f"1 (freezing); values seen: {values}"
        )
    return codes.astype(np.int64)


def _signal(name: str, kind: str, data: np.ndarray, times: np.ndarray, labels: tuple[str, ...],
            source_id: str) -> Stream:
    return Stream(
        name=name,
        type=kind,
        data=data.astype(np.float32),
        timestamps=times,
        nominal_srate=RATE_HZ,
        channel_labels=list(labels),
        channel_units=["uV"] * len(labels),
        channel_types=[kind] * len(labels),
        channel_format="float32",
        source_id=source_id,
    )


def _markers(name: str, codes: np.ndarray, source_id: str) -> Stream:
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes) != 0) + 1])
    return Stream(
        name=name,
        type="Markers",
        data=np.asarray([LABEL_NAMES[int(c)] for c in codes[starts]], dtype=object).reshape(-1, 1),
        timestamps=starts / RATE_HZ,
        nominal_srate=0.0,
        channel_labels=["label"],
        channel_format="string",
        source_id=source_id,
        metadata={"codes": codes[starts].tolist(), "code_names": dict(LABEL_NAMES),
                  "code_meanings": dict(CODE_MEANINGS)},
    )
