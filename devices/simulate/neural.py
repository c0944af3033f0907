"""EEG: state-weighted rhythms over a 1/f background, plus sleep graphoelements and eye activity."""

from __future__ import annotations

import re

import numpy as np
from scipy import signal

from devices.simulate.drivers import Drivers
from devices.simulate.noise import Event, EventTrack, FilteredNoise, OUNoise, bandpass_sos, hann_envelope
from devices.simulate.scenarios import PHYSIO_FIELDS

REGIONS = ("frontal", "central", "temporal", "parietal", "occipital")
_WEIGHT_KEYS = ("delta", "theta", "alpha", "beta", "muscle", "spindle", "kcomplex", "sawtooth", "eye", "blink")
#: How strongly each scalp region shows each rhythm or graphoelement (rows: REGIONS, columns: _WEIGHT_KEYS).
_REGION_WEIGHTS = np.array([
    # delta theta alpha beta muscle spindle kcomplex sawtooth eye  blink
    [1.2, 1.0, 0.6, 1.0, 1.3, 0.8, 1.2, 0.8, 1.0, 1.0],   # frontal
    [1.0, 1.0, 0.8, 1.0, 0.8, 1.2, 1.0, 1.2, 0.3, 0.3],   # central
    [0.9, 0.9, 0.8, 0.9, 1.6, 0.7, 0.8, 0.8, 0.4, 0.2],   # temporal
    [0.9, 0.9, 1.2, 0.9, 0.7, 1.0, 0.8, 1.0, 0.15, 0.1],  # parietal
    [0.8, 0.8, 1.4, 0.8, 0.7, 0.6, 0.6, 0.9, 0.1, 0.05],  # occipital
])
# Band edges (Hz); alpha is centred on the subject's own peak frequency instead.
_BANDS = {"delta": (0.5, 2.5), "theta": (4.0, 7.5), "beta": (14.0, 28.0), "muscle": (30.0, 100.0)}
_ALPHA_HALF_WIDTH_HZ = 1.2
# Events: name -> (rate field, duration range s, amplitude range µV).
_EVENTS = {
    "spindle": ("spindle_hz", (0.5, 1.5), (15.0, 35.0)),
    "kcomplex": ("kcomplex_hz", (0.8, 1.0), (60.0, 120.0)),
    "sawtooth": ("sawtooth_hz", (1.0, 3.0), (15.0, 30.0)),
    "eye": ("eye_move_hz", (0.4, 1.2), (50.0, 150.0)),
    "blink": ("blink_hz", (0.3, 0.4), (80.0, 200.0)),
}


def channel_region(label: str) -> tuple[str, float]:
    """Return a 10-20 label's scalp region and side (+1 left, -1 right, 0 midline or unknown).

    The reference part of a bipolar label (``"F3-A2"``) is ignored.
    """
    name = label.split("-")[0].strip().upper()
    match = re.match(r"([A-Z]+)(\d*)", name)
    letters, digits = (match.group(1), match.group(2)) if match else ("", "")
    prefix_region = (("FP", "frontal"), ("AF", "frontal"), ("FC", "central"), ("FT", "temporal"),
                     ("TP", "temporal"), ("CP", "central"), ("PO", "occipital"), ("F", "frontal"),
                     ("C", "central"), ("T", "temporal"), ("P", "parietal"), ("O", "occipital"))
    region = next((r for prefix, r in prefix_region if letters.startswith(prefix)), "central")
    side = 0.0 if not digits else (1.0 if int(digits) % 2 else -1.0)
    return region, side


class EEGRenderer:
    """Renders multi-channel EEG (µV) whose rhythms follow the state.

    Parameters
    ----------
    drivers : Drivers
        Shared drivers (state physiology).
    channel_labels : sequence of str
        10-20 labels; they set each channel's regional weights.
    sfreq_hz : float
        Sampling rate (Hz).
    rng : numpy.random.Generator
        The modality's random source.
    """

    def __init__(self, drivers: Drivers, channel_labels, sfreq_hz: float, rng: np.random.Generator) -> None:
        self._drivers = drivers
        self._rng = rng
        subject = drivers.subject
        n_channels = len(channel_labels)
        regions = [channel_region(label) for label in channel_labels]
        self._weights = {
            key: np.array([_REGION_WEIGHTS[REGIONS.index(r), k] for r, _ in regions])
            for k, key in enumerate(_WEIGHT_KEYS)
        }
        # Horizontal eye movements reach left and right channels with opposite polarity.
        self._weights["eye"] = self._weights["eye"] * np.array([side if side else 0.3 for _, side in regions])
        self._gain = subject.eeg_gain * rng.uniform(0.85, 1.15, size=n_channels)
        bands = dict(_BANDS, alpha=(subject.alpha_hz - _ALPHA_HALF_WIDTH_HZ, subject.alpha_hz + _ALPHA_HALF_WIDTH_HZ))
        # One extra source per band is common to all channels: neighbouring electrodes see correlated rhythms.
        self._bands = {}
        for name, (low, high) in bands.items():
            sos = bandpass_sos(low, high, sfreq_hz)
            if sos is not None:
                self._bands[name] = FilteredNoise(sos, n_channels + 1, rng)
        self._background = [OUNoise(0.4, sfreq_hz, n_channels, rng), OUNoise(0.04, sfreq_hz, n_channels, rng)]
        physio = drivers.timeline.scenario.physio_matrix()
        self._tracks = {}
        for kind, (field, duration, amplitude) in _EVENTS.items():
            column = PHYSIO_FIELDS.index(field)
            self._tracks[kind] = EventTrack(
                lambda t, c=column: drivers.timeline.physio_at(t)[:, c], float(physio[:, column].max()),
                lambda g, onset, d=duration, a=amplitude: Event(onset, float(g.uniform(*d)), {
                    "amp": float(g.uniform(*a)), "sign": float(g.choice([-1.0, 1.0])),
                    "freq": float(g.uniform(2.0, 4.0)), "detune": float(g.normal(0.0, 0.3)),
                    "phase": float(g.uniform(0, 2 * np.pi)),
                }),
                rng,
            )
        self._spindle_hz = subject.spindle_hz

    def render(self, times_s: np.ndarray) -> np.ndarray:
        """Return the clean EEG at ``times_s``, array of shape (n, n_channels) in µV."""
        n = len(times_s)
        view = self._drivers.view(times_s)
        out = 12.0 * self._background[0](n) + 4.0 * self._background[1](n)
        for name, source in self._bands.items():
            raw = source(n)
            mixed = 0.6 * raw[:, -1:] + 0.8 * raw[:, :-1]
            out += mixed * view[f"{name}_uv"][:, None] * self._weights[name][None, :]
        t_end = float(times_s[-1]) + (times_s[-1] - times_s[-2] if n > 1 else 0.0)
        for kind, track in self._tracks.items():
            for ev in track.events(float(times_s[0]), t_end):
                dt = times_s - ev.onset_s
                if not ((dt >= -0.5) & (dt <= ev.duration_s + 0.5)).any():
                    continue
                out += np.outer(self._event_wave(kind, dt, ev), self._weights[kind])
        return out * self._gain[None, :]

    def _event_wave(self, kind: str, dt: np.ndarray, ev: Event) -> np.ndarray:
        v = ev.values
        if kind == "spindle":
            return v["amp"] * hann_envelope(dt, ev.duration_s) * np.sin(
                2 * np.pi * (self._spindle_hz + v["detune"]) * dt + v["phase"])
        if kind == "kcomplex":
            # A sharp negative wave followed by a slower positive one (EEG polarity, negative = down here).
            return v["amp"] * (-np.exp(-0.5 * ((dt - 0.2) / 0.08) ** 2) + 0.6 * np.exp(-0.5 * ((dt - 0.5) / 0.15) ** 2))
        if kind == "sawtooth":
            return v["amp"] * hann_envelope(dt, ev.duration_s) * signal.sawtooth(
                2 * np.pi * v["freq"] * dt + v["phase"], width=0.8)
        if kind == "eye":
            # A saccade: a quick step away and back, as a plateau with smooth edges.
            plateau = np.tanh((dt - 0.05) / 0.03) - np.tanh((dt - ev.duration_s + 0.2) / 0.04)
            return 0.5 * v["sign"] * v["amp"] * plateau
        return v["amp"] * np.exp(-0.5 * ((dt - 0.15) / 0.06) ** 2)  # blink
