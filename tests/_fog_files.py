"""Write task files in the exact layout of the FOG data set's ``Filtered Data`` (for tests that build fake subjects).

61 comma-separated columns, no header, 500 Hz: 0 row index, 1 wall-clock time ``HH:MM:SS.fff``, 2–26 EEG, 27–31
EMG and others, 32–59 other sensors, 60 the label (0 FOG-free, 1 freezing). See :mod:`devices.formats.fog`.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

RATE_HZ = 500.0
N_COLUMNS = 61


def fog_table(labels: np.ndarray, columns: Mapping[int, np.ndarray] | None = None, seed: int = 0) -> np.ndarray:
    """A ``(n, 61)`` float table: noise everywhere, ``columns`` where given, row index in 0 and ``labels`` in 60."""
    labels = np.asarray(labels)
    n = len(labels)
    table = np.random.default_rng(seed).normal(0.0, 10.0, size=(n, N_COLUMNS))
    for col, values in (columns or {}).items():
        table[:, col] = values
    table[:, 0] = np.arange(n)
    table[:, 60] = labels
    return table


def write_fog_task(path: str | Path, table: np.ndarray, start_s: float = 12 * 3600 + 4 * 60 + 38.0) -> Path:
    """Write ``table`` (n, 61) as a task file; column 1 becomes the wall-clock time from ``start_s``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = io.StringIO()
    np.savetxt(body, table[:, 2:60], fmt="%.6g", delimiter=",")
    lines = []
    for k, (row, cells) in enumerate(zip(table, body.getvalue().splitlines(), strict=True)):
        t = start_s + k / RATE_HZ
        clock = f"{int(t // 3600):02d}:{int(t // 60 % 60):02d}:{t % 60:06.3f}"
        lines.append(f"{int(row[0])},{clock},{cells},{int(row[60])}")
    path.write_text("\n".join(lines) + "\n")
    return path


def fog_session(labels: np.ndarray, seed: int = 0, eeg_uv: float = 20.0, emg_uv: float = 50.0) -> np.ndarray:
    """A task table with EEG-like and EMG-like columns whose rhythm depends on the label (for pipeline tests).

    Freezing (1) adds a 6 Hz tremor burst to the EMG columns 27–31 and a theta rhythm to the EEG columns 2–26.
    """
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE_HZ
    freezing = (labels == 1).astype(float)
    columns = {}
    for col in range(2, 27):
        alpha = np.sin(2 * np.pi * 10.0 * t + rng.uniform(0, 2 * np.pi))
        theta = np.sin(2 * np.pi * 5.0 * t + rng.uniform(0, 2 * np.pi))
        columns[col] = eeg_uv * ((1 - freezing) * alpha + 2 * freezing * theta) + rng.normal(0, 3.0, n)
    for col in range(27, 32):
        tremor = 1.0 + np.sin(2 * np.pi * 6.0 * t + rng.uniform(0, 2 * np.pi))
        columns[col] = emg_uv * rng.normal(0, 1.0, n) * (1.0 + 3.0 * freezing * tremor)
    return fog_table(labels, columns, seed=seed)
