"""Read an ISRUC-Sleep (subgroup 1) subject from the dataset's own layout into a Recording.

Layout, under the subgroup's root folder::

    ExtractedChannels/subject<k>.mat   MATLAB v5; variables F3_A2, C3_A2, O1_A2, F4_A1, C4_A1, O2_A1 (EEG),
                                       X2 (ECG), ... each (n_epochs, 6000): 30 s epochs at 200 Hz, in uV
    RawData/<k>/<k>_1.txt              stage per 30 s epoch by scorer 1, one integer per line:
                                       0 W, 1 N1, 2 N2, 3 N3, 5 REM (4, R&K stage 4, is merged into N3)

Epoch alignment. The label file is longer than the extracted channels: following the published protocol the
last :data:`IGNORED_TAIL_EPOCHS` (30) labels are dropped, which makes the counts equal for the real data. If
they still differ, both are cut to the shorter (labels and epochs are aligned from the first epoch) and
``Recording.info["alignment"]`` says what was cut; ``labels_in_file``, ``epochs_in_file`` and ``epochs_used``
are recorded too.

Returned streams (timestamps in seconds from the first epoch): ``"ISRUC <k> EEG"`` (6 channels, profile
``isruc_psg``), ``"ISRUC <k> ECG"`` (X2) and ``"ISRUC <k> stages"``, a marker per epoch at its start with the
stage name (W, N1, N2, N3, REM).
"""

from __future__ import annotations

import logging
import re
import zlib
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from devices.errors import RecordingFormatError
from devices.formats._files import describe_head, read_head, require_file
from devices.formats._mat5 import MatHeaderError, MatVariable, read_variable_headers
from devices.profiles import StreamProfile, get_profile
from devices.recording import Recording, Stream

logger = logging.getLogger(__name__)

RATE_HZ = 200.0
EPOCH_S = 30.0
SAMPLES_PER_EPOCH = int(RATE_HZ * EPOCH_S)
IGNORED_TAIL_EPOCHS = 30
#: Most epochs a channel may declare (24 h): a variable is allocated as declared, so a few MB of compressed zeros
#: could otherwise ask for gigabytes.
MAX_EPOCHS = 2880
STAGE_NAMES = {0: "W", 1: "N1", 2: "N2", 3: "N3", 4: "N3", 5: "REM"}
ECG_VARIABLE = "X2"
_MAT_NAME = re.compile(r"^subject(\d+)\.mat$")


def isruc_paths(root: str | Path, subject: int) -> tuple[Path, Path]:
    """Return ``(ExtractedChannels/subject<k>.mat, RawData/<k>/<k>_1.txt)`` under ``root``."""
    root = Path(root).expanduser()
    k = int(subject)
    return root / "ExtractedChannels" / f"subject{k}.mat", root / "RawData" / str(k) / f"{k}_1.txt"


def locate_isruc(path: str | Path) -> tuple[Path, int]:
    """Find ``(root, subject)`` from a path into the ISRUC layout.

    Accepted: ``.../ExtractedChannels/subject<k>.mat``, the label file ``.../RawData/<k>/<k>_1.txt``, the
    folder ``.../RawData/<k>``, or the root itself when its ``ExtractedChannels`` holds exactly one subject.
    """
    path = Path(path).expanduser()
    match = _MAT_NAME.match(path.name)
    if match and path.is_file():
        return path.parent.parent, int(match[1])
    if path.is_file() and path.parent.parent.name == "RawData" and path.name == f"{path.parent.name}_1.txt":
        return path.parent.parent.parent, int(path.parent.name)
    if path.is_dir() and path.name.isdigit() and path.parent.name == "RawData":
        return path.parent.parent, int(path.name)
    if path.is_dir() and (path / "ExtractedChannels").is_dir():
        subjects = sorted(
            int(m[1]) for m in (_MAT_NAME.match(p.name) for p in (path / "ExtractedChannels").iterdir()) if m
        )
        if len(subjects) == 1:
            return path, subjects[0]
        raise RecordingFormatError(
            f"'{path}' holds ISRUC subjects {subjects}; pass one subject's ExtractedChannels/subject<k>.mat"
        )
    raise RecordingFormatError(
        f"'{path}' is not in the ISRUC layout (ExtractedChannels/subject<k>.mat with RawData/<k>/<k>_1.txt)"
    )


def read_isruc_path(path: str | Path) -> Recording:
    """Read the ISRUC subject a path points into (see :func:`locate_isruc`)."""
    root, subject = locate_isruc(path)
    return read_isruc(root, subject)


def read_isruc(root: str | Path, subject: int) -> Recording:
    """Read ISRUC-Sleep subgroup 1 subject ``subject`` under ``root``.

    Parameters
    ----------
    root : str or Path
        Folder holding ``ExtractedChannels/`` and ``RawData/``.
    subject : int
        Subject number ``k``.

    Returns
    -------
    Recording
        EEG stream (6 ch, uV, 200 Hz), ECG stream (1 ch), stage marker stream (one per 30 s epoch).
    """
    mat_path, label_path = isruc_paths(root, subject)
    missing = [str(p) for p in (mat_path, label_path) if not p.is_file()]
    if missing:
        raise RecordingFormatError(f"ISRUC subject {subject}: missing {', '.join(repr(m) for m in missing)}")
    eeg_profile = get_profile("isruc_psg").stream("EEG")
    ecg_profile = get_profile("isruc_psg").stream("ECG")
    eeg_variables = [label.replace("-", "_") for label in eeg_profile.channel_labels]
    wanted = [*eeg_variables, ECG_VARIABLE]
    signals = _load_mat(require_file(mat_path), wanted)
    stages = _load_labels(require_file(label_path))
    arrays = {name: _epochs(mat_path, name, signals[name]) for name in wanted}
    epoch_counts = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(epoch_counts.values())) != 1:
        raise RecordingFormatError(f"'{mat_path}': channels differ in epoch count {epoch_counts}")
    n_epochs_file = next(iter(epoch_counts.values()))
    kept_labels = stages[:-IGNORED_TAIL_EPOCHS] if len(stages) > IGNORED_TAIL_EPOCHS else stages[:0]
    n_epochs = min(n_epochs_file, len(kept_labels))
    if n_epochs == 0:
        raise RecordingFormatError(
            f"ISRUC subject {subject}: no epochs left ({n_epochs_file} epochs, {len(stages)} labels of which the "
            f"last {IGNORED_TAIL_EPOCHS} are dropped)"
        )
    alignment = f"dropped the last {IGNORED_TAIL_EPOCHS} of {len(stages)} labels"
    if len(kept_labels) != n_epochs_file:
        alignment += (
            f"; then {len(kept_labels)} labels vs {n_epochs_file} epochs: kept the first {n_epochs} of both"
        )
        logger.warning("ISRUC subject %d: %s", subject, alignment)

    def continuous(names: list[str]) -> np.ndarray:
        # (epochs, 6000) per channel → (epochs * 6000, n_channels): epochs are consecutive in time.
        stacked = np.stack([arrays[n][:n_epochs].reshape(-1) for n in names], axis=1)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32's range: inf, as stored
            return stacked.astype(np.float32)

    n_samples = n_epochs * SAMPLES_PER_EPOCH
    times = np.arange(n_samples, dtype=np.float64) / RATE_HZ
    streams = [
        _signal_stream(f"ISRUC {subject} EEG", eeg_profile, continuous(eeg_variables), times, subject),
        _signal_stream(f"ISRUC {subject} ECG", ecg_profile, continuous([ECG_VARIABLE]), times, subject),
        Stream(
            name=f"ISRUC {subject} stages",
            type="Markers",
            data=np.asarray([STAGE_NAMES[c] for c in kept_labels[:n_epochs]], dtype=object).reshape(-1, 1),
            timestamps=np.arange(n_epochs, dtype=np.float64) * EPOCH_S,
            nominal_srate=0.0,
            channel_labels=["stage"],
            channel_format="string",
            source_id=f"isruc-{subject}-stages",
            metadata={"codes": kept_labels[:n_epochs], "epoch_s": EPOCH_S, "scorer": 1},
        ),
    ]
    info = {
        "source": str(mat_path),
        "format": "isruc",
        "subject": int(subject),
        "labels_file": str(label_path),
        "labels_in_file": len(stages),
        "epochs_in_file": n_epochs_file,
        "epochs_used": n_epochs,
        "alignment": alignment,
    }
    return Recording(streams=streams, info=info)


def _signal_stream(name: str, profile: StreamProfile, data: np.ndarray, times: np.ndarray, subject: int) -> Stream:
    return Stream(
        name=name,
        type=profile.lsl_type,
        data=data,
        timestamps=times,
        nominal_srate=RATE_HZ,
        channel_labels=list(profile.channel_labels),
        channel_units=list(profile.channel_units),
        channel_types=list(profile.channel_types),
        channel_format="float32",
        source_id=f"isruc-{subject}-{profile.lsl_type.lower()}",
    )


def _load_mat(path: Path, wanted: list[str]) -> dict[str, np.ndarray]:
    """Load the variables ``wanted`` after checking what they declare (see :mod:`devices.formats._mat5`)."""
    head = read_head(path, 128)
    if head.startswith(b"MATLAB 7.3 MAT-file") or head.startswith(b"\x89HDF"):
        raise RecordingFormatError(f"'{path}' is a MATLAB v7.3 (HDF5) file; ISRUC extracted channels are v5")
    if not head.startswith(b"MATLAB 5.0 MAT-file"):
        raise RecordingFormatError(f"'{path}' is not a MATLAB v5 .mat file: {describe_head(head, 'mat5')}")
    try:
        declared = {variable.name: variable for variable in read_variable_headers(path)}
    except MatHeaderError as err:
        raise RecordingFormatError(f"'{path}' could not be read (truncated or damaged .mat?): {err}") from None
    absent = [name for name in wanted if name not in declared]
    if absent:
        raise RecordingFormatError(f"'{path}' is missing channel(s) {absent}; it has {sorted(declared)}")
    for name in wanted:
        _check_declared(path, declared[name])
    try:
        return scipy.io.loadmat(str(path), variable_names=wanted)
    except (MatReadError, OSError, ValueError, TypeError, NotImplementedError, MemoryError, zlib.error) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise RecordingFormatError(f"'{path}' could not be read (truncated or damaged .mat?): {message}") from None


def _check_declared(path: Path, variable: MatVariable) -> None:
    """Refuse a variable that is not numeric (n_epochs, 6000) of at most :data:`MAX_EPOCHS` epochs, before loading."""
    shape, n_bytes = variable.shape, variable.declared_bytes
    if n_bytes is None or len(shape) != 2 or shape[1] != SAMPLES_PER_EPOCH:
        raise RecordingFormatError(
            f"'{path}': variable {variable.name!r} is declared with shape {shape} (MATLAB class "
            f"{variable.class_id}); expected numeric (n_epochs, {SAMPLES_PER_EPOCH}) = 30 s epochs at 200 Hz"
        )
    if shape[0] > MAX_EPOCHS:
        raise RecordingFormatError(
            f"'{path}': variable {variable.name!r} declares {shape[0]} epochs ({n_bytes} bytes); at most "
            f"{MAX_EPOCHS} (24 h) are read"
        )


def _epochs(path: Path, name: str, value: object) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf" or array.ndim != 2 or array.shape[1] != SAMPLES_PER_EPOCH:
        raise RecordingFormatError(
            f"'{path}': variable {name!r} has shape {array.shape} ({array.dtype}); expected numeric "
            f"(n_epochs, {SAMPLES_PER_EPOCH}) = 30 s epochs at 200 Hz"
        )
    return array


def _load_labels(path: Path) -> list[int]:
    codes = []
    with open(path, encoding="ascii", errors="replace") as f:
        for line_number, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                code = int(text)
            except ValueError:
                raise RecordingFormatError(f"'{path}' line {line_number}: {text!r} is not a stage code") from None
            if code not in STAGE_NAMES:
                raise RecordingFormatError(
                    f"'{path}' line {line_number}: stage code {code} is not one of {sorted(STAGE_NAMES)}"
                )
            codes.append(code)
    return codes
