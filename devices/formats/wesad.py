"""Read a WESAD subject (``S<k>/S<k>.pkl``) into a Recording.

The pickle (written by Python 2, latin-1 strings) holds::

    {"signal": {"chest": {"ACC": (n, 3), "ECG": (n, 1), "EMG": (n, 1), "EDA": (n, 1), "Temp": (n, 1),
                          "Resp": (n, 1)},                                    # RespiBAN, all at 700 Hz
                "wrist": {"ACC": (m, 3) at 32 Hz, "BVP": (m, 1) at 64 Hz, "EDA": 4 Hz, "TEMP": 4 Hz}},  # Empatica E4
     "label": (n,) at 700 Hz, "subject": "S2"}

It is untrusted input and is loaded with :func:`devices.formats.safe_pickle.load_untrusted_pickle`.

Returned streams (timestamps in seconds from the start; both devices were synchronised by the dataset):

* ``"S<k> chest"``: 8 channels at 700 Hz, labels/units/types of profile ``wesad_chest``.
* ``"S<k> wrist BVP"``, ``"... ACC"``, ``"... EDA"``, ``"... TEMP"``: profile ``wesad_wrist``. The E4 stores
  acceleration in 1/64 g; it is divided by 64 here so the unit is g, as the profile says.
* ``"S<k> labels"``: a marker stream of label *changes* (the first sample and every change) with the names of
  the dataset's readme: 0 transient, 1 baseline, 2 stress, 3 amusement, 4 meditation, 5/6/7 ignore.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from devices.errors import RecordingFormatError
from devices.formats._files import describe_head, read_head, require_file, sniff
from devices.formats.safe_pickle import load_untrusted_pickle
from devices.profiles import get_profile
from devices.recording import Recording, Stream

logger = logging.getLogger(__name__)

CHEST_RATE_HZ = 700.0
#: Label codes of the WESAD readme.
LABEL_NAMES = {
    0: "transient",
    1: "baseline",
    2: "stress",
    3: "amusement",
    4: "meditation",
    5: "ignore",
    6: "ignore",
    7: "ignore",
}
# Chest channels in the profile's order: (pickle key, number of columns).
_CHEST_KEYS = (("ACC", 3), ("ECG", 1), ("EDA", 1), ("EMG", 1), ("Resp", 1), ("Temp", 1))
# Wrist streams: profile stream type, pickle key, columns, scale to the profile's unit.
_WRIST = (("PPG", "BVP", 1, 1.0), ("ACC", "ACC", 3, 1.0 / 64.0), ("EDA", "EDA", 1, 1.0), ("TEMP", "TEMP", 1, 1.0))
_SUBJECT = re.compile(r"^S(\d+)$")


def wesad_path(path: str | Path, subject: int | None = None) -> Path:
    """Resolve the pickle of a WESAD subject.

    Parameters
    ----------
    path : str or Path
        ``S<k>.pkl`` itself, the ``S<k>/`` folder, or (with ``subject``) the WESAD root holding ``S<k>/``.
    subject : int, optional
        Subject number ``k``.
    """
    path = Path(path).expanduser()
    if subject is not None:
        return path / f"S{int(subject)}" / f"S{int(subject)}.pkl"
    if path.is_dir():
        if not _SUBJECT.match(path.name):
            raise RecordingFormatError(f"'{path}' is not a WESAD subject folder (expected a folder named S<k>)")
        return path / f"{path.name}.pkl"
    return path


def read_wesad(path: str | Path, subject: int | None = None) -> Recording:
    """Read one WESAD subject.

    Parameters
    ----------
    path : str or Path
        ``S<k>/S<k>.pkl``, the ``S<k>/`` folder, or the WESAD root when ``subject`` is given.
    subject : int, optional
        Subject number (``2`` for ``S2``).

    Returns
    -------
    Recording
        Chest stream, four wrist streams and the label marker stream (see the module docstring);
        ``info["subject"]`` is ``"S<k>"``.
    """
    pkl = wesad_path(path, subject)
    if not pkl.exists():
        raise RecordingFormatError(f"WESAD subject file '{pkl}' does not exist")
    pkl = require_file(pkl)
    head = read_head(pkl, 16)
    if sniff(head) != "pickle":
        raise RecordingFormatError(f"'{pkl}' is not a pickle file: {describe_head(head, 'pickle')}")
    content = load_untrusted_pickle(pkl, encoding="latin1")
    if not isinstance(content, dict):
        raise RecordingFormatError(f"'{pkl}' holds a {type(content).__name__}, not the WESAD dict")
    subject_name = str(content.get("subject") or pkl.stem)
    signal = _child(pkl, content, "signal")
    chest = _child(pkl, signal, "chest", "signal/")
    wrist = _child(pkl, signal, "wrist", "signal/")
    label = _array(pkl, content, "label", "", 1).reshape(-1)

    chest_profile = get_profile("wesad_chest").streams[0]
    columns = [_array(pkl, chest, key, "signal/chest/", width) for key, width in _CHEST_KEYS]
    n_chest = columns[0].shape[0]
    lengths = {key: c.shape[0] for (key, _), c in zip(_CHEST_KEYS, columns, strict=True)}
    if len(set(lengths.values())) != 1 or len(label) != n_chest:
        raise RecordingFormatError(
            f"'{pkl}': chest signals and label differ in length ({lengths}, label {len(label)}); expected equal"
        )
    streams = [
        _stream(
            f"{subject_name} chest", chest_profile, np.hstack(columns), CHEST_RATE_HZ, f"wesad-{subject_name}-chest"
        )
    ]
    wrist_profile = get_profile("wesad_wrist")
    for lsl_type, key, width, scale in _WRIST:
        profile = wrist_profile.stream(lsl_type)
        values = _array(pkl, wrist, key, "signal/wrist/", width) * scale
        streams.append(
            _stream(
                f"{subject_name} wrist {profile.name}",
                profile,
                values,
                profile.sfreq_hz,
                f"wesad-{subject_name}-wrist-{profile.name}",
            )
        )
    streams.append(_label_stream(pkl, subject_name, label))
    info = {"source": str(pkl), "format": "wesad", "subject": subject_name}
    return Recording(streams=streams, info=info)


def _stream(name: str, profile: Any, values: np.ndarray, rate_hz: float, source_id: str) -> Stream:
    n = values.shape[0]
    with np.errstate(over="ignore", invalid="ignore"):  # values beyond float32's range become inf, as stored
        data = values.astype(np.float32)
    return Stream(
        name=name,
        type=profile.lsl_type,
        data=data,
        timestamps=np.arange(n, dtype=np.float64) / rate_hz,
        nominal_srate=rate_hz,
        channel_labels=list(profile.channel_labels),
        channel_units=list(profile.channel_units),
        channel_types=list(profile.channel_types),
        channel_format="float32",
        source_id=source_id,
    )


def _label_stream(pkl: Path, subject_name: str, label: np.ndarray) -> Stream:
    if label.size and (not np.all(np.isfinite(label)) or np.any(label != np.round(label))):
        raise RecordingFormatError(f"'{pkl}': label holds non-integer values")
    codes = label.astype(np.int64)
    unknown = sorted(set(np.unique(codes).tolist()) - set(LABEL_NAMES))
    if unknown:
        raise RecordingFormatError(f"'{pkl}': unknown label codes {unknown}; WESAD uses 0-7")
    starts = np.flatnonzero(np.diff(codes) != 0) + 1
    starts = np.concatenate([[0], starts]) if codes.size else starts
    names = np.asarray([LABEL_NAMES[int(c)] for c in codes[starts]], dtype=object).reshape(-1, 1)
    return Stream(
        name=f"{subject_name} labels",
        type="Markers",
        data=names,
        timestamps=starts / CHEST_RATE_HZ,
        nominal_srate=0.0,
        channel_labels=["label"],
        channel_format="string",
        source_id=f"wesad-{subject_name}-labels",
        metadata={"codes": codes[starts].tolist(), "code_names": dict(LABEL_NAMES)},
    )


def _child(pkl: Path, node: Any, key: str, where: str = "") -> dict[str, Any]:
    value = node.get(key) if isinstance(node, dict) else None
    if not isinstance(value, dict):
        raise RecordingFormatError(f"'{pkl}' has no '{where}{key}' dict (not the WESAD layout)")
    return value


def _array(pkl: Path, node: dict[str, Any], key: str, where: str, width: int) -> np.ndarray:
    if key not in node:
        raise RecordingFormatError(f"'{pkl}' is missing channel '{where}{key}'; it has {sorted(node)}")
    value = node[key]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        raise RecordingFormatError(f"'{pkl}': '{where}{key}' is not a numeric array")
    if value.ndim == 1 and width == 1:
        value = value.reshape(-1, 1)
    if value.ndim != 2 or value.shape[1] != width:
        raise RecordingFormatError(f"'{pkl}': '{where}{key}' has shape {value.shape}, expected (n, {width})")
    return value.astype(np.float64)
