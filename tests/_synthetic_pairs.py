"""The paired task of the method's tests: a class sets frequency and amplitude of an "ECG" and a "PPG" signal.

Each window has a random phase and noise. Old FM: tiny HuBERT-ECG (2 layers); new FM: small PaPaGei (6 blocks);
both random weights; 5-s windows.
"""

from __future__ import annotations

import numpy as np

from bridges.data.windows import PairedWindows
from bridges.fm.hubert_ecg import HubertECG, tiny_config
from bridges.fm.papagei import Papagei, PapageiConfig

WINDOW_S = 5.0


def synthetic_pairs(n: int, seed: int, n_classes: int = 2) -> PairedWindows:
    """``n`` paired windows whose class sets frequency (1 + 1.5k Hz) and amplitude (1 + k) of both signals."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    t_old = np.arange(round(100 * WINDOW_S)) / 100.0
    t_new = np.arange(round(125 * WINDOW_S)) / 125.0
    freq_hz = (1.0 + 1.5 * labels)[:, None]
    amplitude = (1.0 + labels)[:, None]
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    old = amplitude * np.sin(2 * np.pi * freq_hz * t_old + phase) + 0.3 * rng.standard_normal((n, t_old.size))
    pulse = np.sign(np.sin(2 * np.pi * freq_hz * t_new + phase + 0.5))
    new = 0.8 * amplitude * pulse + 0.3 * rng.standard_normal((n, t_new.size))
    return PairedWindows(
        old[:, None].astype(np.float32), new[:, None].astype(np.float32), labels,
        np.array([f"s{seed}"] * n, dtype=object), [f"class{k}" for k in range(n_classes)], "ecg", "ppg", 100.0, 125.0,
    )


def old_fm() -> HubertECG:
    return HubertECG.from_config(tiny_config(), window_s=WINDOW_S, seed=0)


def new_fm() -> Papagei:
    return Papagei.from_config(PapageiConfig.small(), window_s=WINDOW_S, random_state=0)
