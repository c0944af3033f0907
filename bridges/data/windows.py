"""Paired windows: the one in-memory data set every step of the method takes.

Each item is a pair of windows recorded at the same time, one per modality, already at each FM's input rate and
length (resampled, but raw: band-pass, normalisation and scaling are a torch module inside the model, so the
exported graph takes the same raw window the runtime has), plus the label in force over the window (-1 when
unknown) and the subject it came from. Splits are subject-wise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.atomic import atomic_output
from devices.errors import BadInputError

SPLITS = ("train", "val", "pair", "test")


@dataclass
class PairedWindows:
    """Windows of two modalities recorded together.

    Parameters
    ----------
    old : array of shape (n_windows, n_channels_old, n_samples_old), float32
        Old-modality windows at the old FM's rate.
    new : array of shape (n_windows, n_channels_new, n_samples_new), float32
        New-modality windows at the new FM's rate.
    labels : array of shape (n_windows,), int64
        Class index per window; -1 where unknown.
    subjects : array of shape (n_windows,), str (object)
        Subject id per window.
    class_names : list of str
        Name of each class index.
    old_modality, new_modality : str
        ``"ecg"``, ``"ppg"``, ``"eeg"``, ...
    old_sfreq_hz, new_sfreq_hz : float
        Rates of ``old`` and ``new`` (Hz).
    old_channels, new_channels : list of str
        Channel labels.
    info : dict
        Provenance (source, window/step seconds, preprocessing, dropped-window counts).
    """

    old: np.ndarray
    new: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    class_names: list[str]
    old_modality: str
    new_modality: str
    old_sfreq_hz: float
    new_sfreq_hz: float
    old_channels: list[str] = field(default_factory=list)
    new_channels: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.old = np.asarray(self.old, dtype=np.float32)
        self.new = np.asarray(self.new, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.subjects = np.asarray(self.subjects, dtype=object).reshape(-1)
        n = len(self.labels)
        if self.old.ndim != 3 or self.new.ndim != 3:
            raise BadInputError(
                f"paired windows must be 3-D (n, channels, samples); got {self.old.shape}, {self.new.shape}"
            )
        if not (self.old.shape[0] == self.new.shape[0] == n == len(self.subjects)):
            raise BadInputError(
                f"paired windows disagree on the count: old {self.old.shape[0]}, new {self.new.shape[0]}, "
                f"labels {n}, subjects {len(self.subjects)}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def subset(self, mask: np.ndarray) -> PairedWindows:
        """Return the windows where ``mask`` (bool array or index array) selects."""
        return PairedWindows(
            self.old[mask], self.new[mask], self.labels[mask], self.subjects[mask], list(self.class_names),
            self.old_modality, self.new_modality, self.old_sfreq_hz, self.new_sfreq_hz,
            list(self.old_channels), list(self.new_channels), dict(self.info),
        )

    def of_subjects(self, subjects: list[str]) -> PairedWindows:
        """Return the windows of the given subjects."""
        return self.subset(np.isin(self.subjects, np.asarray(subjects, dtype=object)))

    def save(self, path: str | Path) -> Path:
        """Write to one ``.npz`` (arrays) with the metadata as JSON inside; atomic (temp file, then rename)."""
        path = Path(path)
        meta = {
            "class_names": self.class_names, "old_modality": self.old_modality, "new_modality": self.new_modality,
            "old_sfreq_hz": self.old_sfreq_hz, "new_sfreq_hz": self.new_sfreq_hz, "old_channels": self.old_channels,
            "new_channels": self.new_channels, "info": self.info,
        }
        with atomic_output(path) as tmp, tmp.open("wb") as f:
            np.savez(
                f, old=self.old, new=self.new, labels=self.labels, subjects=self.subjects.astype(str),
                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
            )
        return path

    @classmethod
    def load(cls, path: str | Path) -> PairedWindows:
        """Read a file written by :meth:`save` (no pickle is involved)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                return cls(z["old"], z["new"], z["labels"], z["subjects"].astype(object), **meta)
        except (OSError, ValueError, KeyError) as err:
            raise BadInputError(f"'{path}' is not a paired-window cache: {err}") from None
