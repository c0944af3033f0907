"""Tiny WESAD and ISRUC-Sleep subjects in the data sets' own layouts, holding simulated physiology.

The signals come from :func:`devices.simulate.simulate_session` (stress for WESAD, sleep for ISRUC), so the labels
follow the physiology (heart rate, EEG rhythms) as in the real sets; they are written at the data sets' rates and
units, in their files: WESAD's ``S<k>/S<k>.pkl`` (Python 2 style pickle, chest at 700 Hz, wrist BVP at 64 Hz, a
label per chest sample) and ISRUC's ``ExtractedChannels/subject<k>.mat`` (each channel (epochs, 6000) at 200 Hz) with
``RawData/<k>/<k>_1.txt`` (one stage code per 30 s epoch, 30 more than epochs, as the published files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import scipy.io
from _wesad_pickle import write_wesad_subject
from scipy.signal import resample_poly

from devices.recording import Recording, labels_at
from devices.simulate import simulate_session

WESAD_CHEST_HZ = 700
WESAD_BVP_HZ = 64
#: WESAD's label codes of the stress scenario's states.
WESAD_CODES = {"baseline": 1, "stress": 2, "amusement": 3}
ISRUC_HZ = 200
ISRUC_EPOCH_S = 30
ISRUC_EEG_VARIABLES = ("F3_A2", "C3_A2", "O1_A2", "F4_A1", "C4_A1", "O2_A1")
#: ISRUC's stage codes of the sleep scenario's states (4 is unused: N4 was merged into N3).
ISRUC_CODES = {"wake": 0, "N1": 1, "N2": 2, "N3": 3, "REM": 5}
#: Labels past the last epoch in the published label files (the data set says to drop the last 30).
ISRUC_TAIL_LABELS = 30


def _stream(recording: Recording, lsl_type: str):
    return next(s for s in recording.streams if s.type == lsl_type)


def simulated_wesad_subject(root: Path, k: int, duration_s: float, *, seed: int, dwell_scale: float = 1.0) -> Path:
    """Write ``S<k>/S<k>.pkl`` under ``root`` from a simulated stress session of ``duration_s`` seconds.

    Chest ECG (simulated at the Polar H10's 130 Hz in µV) is resampled to 700 Hz and written in mV; the wrist BVP
    is simulated on the E4 profile at 64 Hz; the other chest and wrist channels are zero. Returns the path.
    """
    recording = simulate_session("stress", ["ecg", "ppg"], duration_s, seed=seed, devices={"ppg": "wesad_wrist"},
                                 artefacts=False, dwell_scale=dwell_scale)
    ecg, bvp, states = _stream(recording, "ECG"), _stream(recording, "PPG"), _stream(recording, "Markers")
    n_chest = int(round(duration_s * WESAD_CHEST_HZ))
    up, down = WESAD_CHEST_HZ, int(ecg.nominal_srate)
    chest_ecg = resample_poly(ecg.data[:, 0].astype(np.float64), up, down)[:n_chest] / 1000.0  # µV -> mV
    names = labels_at(states, np.arange(n_chest) / WESAD_CHEST_HZ)
    label = np.array([WESAD_CODES[str(name)] for name in names], dtype=np.int32)
    n_bvp, n_acc, n_slow = (int(round(duration_s * rate)) for rate in (WESAD_BVP_HZ, 32, 4))  # E4 rates
    zeros = np.zeros((n_chest, 1), np.float32)
    content = {
        "signal": {
            "chest": {"ACC": np.zeros((n_chest, 3), np.float32), "ECG": chest_ecg.reshape(-1, 1), "EMG": zeros,
                      "EDA": zeros, "Temp": zeros, "Resp": zeros},
            "wrist": {"ACC": np.zeros((n_acc, 3), np.float32), "BVP": bvp.data[:n_bvp].astype(np.float64),
                      "EDA": np.zeros((n_slow, 1), np.float32), "TEMP": np.zeros((n_slow, 1), np.float32)},
        },
        "label": label,
        "subject": f"S{k}",
    }
    return write_wesad_subject(root, k, content)


def write_isruc_subject(root: Path, k: int, variables: Mapping[str, np.ndarray], stages: Sequence[int]) -> None:
    """Write ISRUC subject ``k``: ``variables`` (name -> (epochs, 6000)) to the ``.mat`` and ``stages`` (one code per
    epoch, ``ISRUC_TAIL_LABELS`` more appended) to the label file, as the published subgroup 1 has them."""
    (root / "ExtractedChannels").mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(root / "ExtractedChannels" / f"subject{k}.mat", dict(variables))
    labels = [*stages, *[stages[-1]] * ISRUC_TAIL_LABELS]
    (root / "RawData" / str(k)).mkdir(parents=True, exist_ok=True)
    (root / "RawData" / str(k) / f"{k}_1.txt").write_text("\n".join(map(str, labels)) + "\n")


def simulated_isruc_subject(root: Path, k: int, n_epochs: int, *, seed: int, dwell_scale: float = 1.0) -> list[int]:
    """Write ISRUC subject ``k`` from a simulated night of ``n_epochs`` 30 s epochs; return its stage codes.

    EEG on the ISRUC montage and ECG (``X2``) at 200 Hz in µV; an eye channel (``LOC_A2``) and a chin EMG (``X1``)
    as zeros, which the readers must skip. Stage changes of the sleep scenario fall on epoch boundaries.
    """
    duration_s = n_epochs * ISRUC_EPOCH_S
    recording = simulate_session("sleep", ["eeg", "ecg"], duration_s, seed=seed,
                                 devices={"eeg": "isruc_psg", "ecg": "isruc_psg"}, artefacts=False,
                                 dwell_scale=dwell_scale)
    eeg, ecg, states = _stream(recording, "EEG"), _stream(recording, "ECG"), _stream(recording, "Markers")
    n = n_epochs * ISRUC_EPOCH_S * ISRUC_HZ

    def epochs(column: np.ndarray) -> np.ndarray:
        return column[:n].astype(np.float64).reshape(n_epochs, ISRUC_EPOCH_S * ISRUC_HZ)

    variables = {name: epochs(eeg.data[:, c]) for c, name in enumerate(ISRUC_EEG_VARIABLES)}
    variables["X2"] = epochs(ecg.data[:, 0])
    variables["LOC_A2"] = variables["X1"] = np.zeros((n_epochs, ISRUC_EPOCH_S * ISRUC_HZ))
    middles = (np.arange(n_epochs) + 0.5) * ISRUC_EPOCH_S
    stages = [ISRUC_CODES[str(name)] for name in labels_at(states, middles)]
    write_isruc_subject(root, k, variables, stages)
    return stages
