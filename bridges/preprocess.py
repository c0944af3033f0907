"""Per-FM input preprocessing as a torch module, so the exported ONNX graph takes a raw window.

Order of operations on a raw window ``x`` of shape ``(B, C, L)`` at the FM's rate:

1. When a band is given, remove each channel's mean over the window. A linear-phase FIR can only realise a
   high-pass edge whose transition (≈ 3.3·fs/taps for a Hamming window) is narrower than about twice the edge;
   the papers' low edges (0.05 Hz for ECG, 0.1 Hz for EEG) would need more taps than a window has samples, so
   the window mean is the part of that high-pass a window can realise. Edges the taps can realise (PPG's
   0.5 Hz with 825 taps) are also part of the FIR.
2. FIR band-pass (and optional mains notch), taps from :func:`scipy.signal.firwin` at construction, applied as
   one fixed kernel shared by every channel (``conv1d`` on ``(B·C, 1, L)``), reflect-padded so the output
   length equals ``L``. The kernel is a registered buffer, not a parameter.
3. Per-window, per-channel normalisation: z-score (``normalisation="zscore"``) or min-max to [-1, 1]
   (``"minmax_pm1"``, HuBERT-ECG's published scaling). A window whose spread (standard deviation, or range) is
   below a floor relative to its own magnitude (a flat window; float32 rounding leaves a residue of about 1e-7
   of it) maps to zeros, never NaN.
4. Multiply by ``scale`` (LaBraM: 1/100, µV → 0.1 mV).

Steps 3 and 4 together are the FM's *input scaling*, named in :mod:`bridges.input_scaling`. Only
``Pad``/``Conv``/``ReduceMean``/``ReduceMax``/``ReduceMin``/``Sqrt``/``Where``-style operations appear; there is
no control flow on data, so :func:`torch.onnx.export` traces it as is. NaN in the input propagates (the windower
fills gaps first).

Paper settings (:func:`preprocess_for`; the normalisation and scale are the FM's input scaling, from its
:class:`~bridges.fm.base.InputSpec`): ECG for HuBERT-ECG at 100 Hz: 0.05–47 Hz, then z-score (random weights and
BioX-Bridge) or min-max to [-1, 1] (the published checkpoint's); PPG for PaPaGei at 125 Hz: 0.5–12 Hz, z-score;
EEG for LaBraM at 200 Hz: 0.1–75 Hz plus a 50 Hz notch (LaBraM's own pipeline band-passes 0.1–75 Hz and notches
the mains at 50 Hz before resampling to 200 Hz), no z-score, × 1/100; EMG for NormWear at 130 Hz: no filter at
all, only the z-score. BioX-Bridge's ``dataset_preprocessing/make_FOG.py``
resamples the FOG EMG to 130 Hz, subtracts the mean and divides by the standard deviation (a constant channel
becomes zeros), which its comment says is NormWear's own preprocessing; it does so per task file, we per window and
channel (DESIGN §7: the statistics a live stream has). The resampling is the windower's, outside the graph.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from bridges.input_scaling import NORMALISATIONS, scaling_name
from devices.errors import BadInputError

if TYPE_CHECKING:
    from bridges.fm.base import InputSpec

logger = logging.getLogger(__name__)

#: Transition width of a Hamming-window FIR in units of fs / taps.
HAMMING_WIDTH = 3.3
# A window whose spread (standard deviation, or range) is below this fraction of its largest magnitude is flat.
_FLAT_RELATIVE = 1e-5
_TINY = 1e-12


@dataclass(frozen=True)
class PaperBand:
    """Published preprocessing of one modality's FM input.

    Parameters
    ----------
    band_hz : tuple of float, or None
        Pass band (low, high) in Hz; ``None`` for a modality the paper does not filter (then no mean removal,
        no FIR and no notch either: see :meth:`PreprocessSpec.steps`).
    transition_hz : float or None
        Transition width the FIR is sized for (Hz); sets the tap count at a given rate. ``None`` exactly when
        ``band_hz`` is.
    notch_hz : float or None
        Mains frequency to notch (Hz); only with a band.
    """

    band_hz: tuple[float, float] | None
    transition_hz: float | None = None
    notch_hz: float | None = None

    def __post_init__(self) -> None:
        if self.band_hz is None:
            if self.transition_hz is not None or self.notch_hz is not None:
                raise ValueError(
                    f"an unfiltered PaperBand takes no transition or notch, got transition_hz="
                    f"{self.transition_hz!r}, notch_hz={self.notch_hz!r}"
                )
        elif not (self.transition_hz and self.transition_hz > 0):
            raise ValueError(f"'transition_hz' must be > 0 with a band, got {self.transition_hz!r} instead.")

    @property
    def filtered(self) -> bool:
        """Whether the paper band-passes this modality."""
        return self.band_hz is not None


#: Paper settings by modality. Transition widths: ECG's 47 Hz edge sits 3 Hz below Nyquist at 100 Hz; PPG's
#: 0.5 Hz edge needs a 0.5 Hz transition to keep heart rates from 45 bpm; EEG's notch needs ≈ 1.6 Hz. EMG for
#: NormWear is not filtered (BioX-Bridge's ``make_FOG.py``: resample to 130 Hz, then z-score only).
PAPER_BANDS: dict[str, PaperBand] = {
    "ecg": PaperBand((0.05, 47.0), 3.0),
    "ppg": PaperBand((0.5, 12.0), 0.5),
    "eeg": PaperBand((0.1, 75.0), 1.65, notch_hz=50.0),
    "emg": PaperBand(None),
}


@dataclass(frozen=True)
class PreprocessSpec:
    """What :class:`Preprocess` does; stored in a bundle manifest via :meth:`to_dict`.

    Parameters
    ----------
    sfreq_hz : float
        Rate of the window (Hz), > 0.
    band_hz : tuple of (float, float) or None
        Pass band (low, high) in Hz, ``0 <= low < high``; ``None`` for no filtering (and no mean removal).
        A high edge at or above Nyquist is not filtered.
    fir_taps : int
        Odd FIR length, >= 3; the window must be longer than ``fir_taps // 2`` samples.
    normalisation : str
        ``"zscore"`` or ``"minmax_pm1"`` (per window and channel), or ``"none"``.
    scale : float
        Multiplier applied last.
    notch_hz : float or None
        Centre of a band-stop of ``notch_width_hz`` folded into the FIR (mains), when inside the pass band.
    notch_width_hz : float
        Width of the notch's stop band (Hz).
    """

    sfreq_hz: float
    band_hz: tuple[float, float] | None = None
    fir_taps: int = 101
    normalisation: str = "zscore"
    scale: float = 1.0
    notch_hz: float | None = None
    notch_width_hz: float = 4.0

    def __post_init__(self) -> None:
        if not (isinstance(self.sfreq_hz, (int, float)) and math.isfinite(self.sfreq_hz) and self.sfreq_hz > 0):
            raise BadInputError(f"'sfreq_hz' must be a finite number > 0, got {self.sfreq_hz!r} instead.")
        if self.band_hz is not None:
            band = tuple(float(b) for b in self.band_hz)
            if len(band) != 2 or not (0 <= band[0] < band[1]) or not all(map(math.isfinite, band)):
                raise BadInputError(
                    f"'band_hz' must be (low, high) with 0 <= low < high, got {self.band_hz!r} instead."
                )
            object.__setattr__(self, "band_hz", band)
        if isinstance(self.fir_taps, bool) or not isinstance(self.fir_taps, int) or self.fir_taps < 3 \
                or self.fir_taps % 2 == 0:
            raise BadInputError(f"'fir_taps' must be an odd integer >= 3, got {self.fir_taps!r} instead.")
        if self.normalisation not in NORMALISATIONS:
            raise BadInputError(
                f"'normalisation' is {self.normalisation!r}, but has to be one of {list(NORMALISATIONS)}."
            )
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale != 0):
            raise BadInputError(f"'scale' must be a finite non-zero number, got {self.scale!r} instead.")
        if self.notch_hz is not None and not (0 < self.notch_hz < self.sfreq_hz / 2):
            raise BadInputError(
                f"'notch_hz' must be in (0, {self.sfreq_hz / 2}) Hz (Nyquist), got {self.notch_hz!r} instead."
            )
        if not (self.notch_width_hz > 0):
            raise BadInputError(f"'notch_width_hz' must be > 0, got {self.notch_width_hz!r} instead.")

    @property
    def input_scaling(self) -> str | None:
        """Name of the normalisation + scale this spec does (:mod:`bridges.input_scaling`), or None."""
        return scaling_name(self.normalisation, self.scale)

    @property
    def transition_hz(self) -> float:
        """Transition width of the FIR (Hz)."""
        return HAMMING_WIDTH * self.sfreq_hz / self.fir_taps

    @property
    def fir_band_hz(self) -> tuple[float | None, float | None]:
        """The edges the FIR realises, ``(low or None, high or None)``; see the module docstring."""
        if self.band_hz is None:
            return None, None
        low, high = self.band_hz
        realised_low = low if low > 0 and self.transition_hz <= 2 * low else None
        realised_high = high if high < self.sfreq_hz / 2 else None
        return realised_low, realised_high

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (for the bundle manifest)."""
        out = asdict(self)
        out["band_hz"] = list(self.band_hz) if self.band_hz is not None else None
        return out

    def steps(self) -> list[dict[str, Any]]:
        """The operations in order, one dict each with an ``"op"`` (the bundle manifest's ``preprocessing``)."""
        out: list[dict[str, Any]] = []
        low, high = self.fir_band_hz
        if self.band_hz is not None:
            out.append({"op": "remove_mean"})
            out.append({"op": "fir_bandpass", "low_hz": low, "high_hz": high, "taps": self.fir_taps,
                        "notch_hz": self.notch_hz, "padding": "reflect"})
        if self.normalisation == "zscore":
            out.append({"op": "zscore", "axis": "per window, per channel"})
        elif self.normalisation == "minmax_pm1":
            out.append({"op": "minmax", "range": [-1.0, 1.0], "axis": "per window, per channel"})
        if self.scale != 1.0:
            out.append({"op": "scale", "factor": self.scale})
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`; unknown keys are named in the error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadInputError(f"preprocessing spec has unknown key(s) {unknown}; known: {sorted(known)}")
        values = dict(values)
        if values.get("band_hz") is not None:
            values["band_hz"] = tuple(values["band_hz"])
        try:
            return cls(**values)
        except TypeError as err:
            raise BadInputError(f"preprocessing spec is incomplete: {err}") from None


def design_fir(spec: PreprocessSpec) -> np.ndarray | None:
    """FIR taps realising ``spec``'s band and notch, or ``None`` when nothing is left to filter.

    Returns
    -------
    array of shape (fir_taps,), float64, or None
        Linear-phase (symmetric) taps; unit gain at the centre of the first pass band.
    """
    low, high = spec.fir_band_hz
    if spec.band_hz is None:
        return None
    pass_low, pass_high = spec.band_hz[0], min(spec.band_hz[1], spec.sfreq_hz / 2)
    cutoffs: list[float] = []
    if low is not None:
        cutoffs.append(low)
    if spec.notch_hz is not None:
        stop = (spec.notch_hz - spec.notch_width_hz / 2, spec.notch_hz + spec.notch_width_hz / 2)
        if pass_low < stop[0] and stop[1] < pass_high:
            cutoffs.extend(stop)
        else:
            logger.info("notch at %s Hz lies outside the pass band %s; not applied", spec.notch_hz, spec.band_hz)
    if high is not None:
        cutoffs.append(high)
    if not cutoffs:
        return None
    return scipy.signal.firwin(spec.fir_taps, cutoffs, pass_zero=low is None, fs=spec.sfreq_hz)


class Preprocess(nn.Module):
    """Raw window → (mean removal, FIR band-pass/notch) → z-score or min-max → × scale; see the module docstring.

    Parameters
    ----------
    spec : PreprocessSpec
        What to do.
    """

    def __init__(self, spec: PreprocessSpec) -> None:
        super().__init__()
        self.spec = spec
        taps = design_fir(spec)
        self._filter = taps is not None
        self._demean = spec.band_hz is not None
        self._normalisation = spec.normalisation
        self._scale = float(spec.scale)
        self._pad = (spec.fir_taps - 1) // 2 if self._filter else 0
        # conv1d computes a correlation; the taps are symmetric (linear phase), so it equals the convolution.
        kernel = torch.zeros(1) if taps is None else torch.tensor(taps, dtype=torch.float32)
        self.register_buffer("fir", kernel.reshape(1, 1, -1))

    @property
    def min_samples(self) -> int:
        """Shortest window the module accepts (reflect padding needs more samples than half the taps)."""
        return self._pad + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocess ``x`` of shape ``(B, C, L)`` float32 → ``(B, C, L)`` float32."""
        magnitude = x.abs().amax(dim=-1, keepdim=True)
        if self._demean:
            x = x - x.mean(dim=-1, keepdim=True)
        if self._filter:
            flat = x.reshape(-1, 1, x.shape[-1])
            flat = F.pad(flat, (self._pad, self._pad), mode="reflect")
            x = F.conv1d(flat, self.fir).reshape(x.shape)
        floor = magnitude * _FLAT_RELATIVE + _TINY
        if self._normalisation == "zscore":
            centred = x - x.mean(dim=-1, keepdim=True)
            std = torch.sqrt((centred * centred).mean(dim=-1, keepdim=True))
            x = torch.where(std > floor, centred / std.clamp_min(_TINY), torch.zeros_like(centred))
        elif self._normalisation == "minmax_pm1":
            low = x.amin(dim=-1, keepdim=True)
            span = x.amax(dim=-1, keepdim=True) - low
            # A flat window maps to 0, the middle of the range, as the z-score maps it to its mean.
            scaled = 2.0 * (x - low) / span.clamp_min(_TINY) - 1.0
            x = torch.where(span > floor, scaled, torch.zeros_like(x))
        if self._scale != 1.0:
            x = x * self._scale
        return x

    def extra_repr(self) -> str:
        """One line describing the spec."""
        return (
            f"sfreq_hz={self.spec.sfreq_hz}, band_hz={self.spec.band_hz}, fir_band_hz={self.spec.fir_band_hz}, "
            f"taps={self.spec.fir_taps}, notch_hz={self.spec.notch_hz}, normalisation={self.spec.normalisation}, "
            f"scale={self.spec.scale}"
        )


def preprocess_spec_for(input_spec: InputSpec, modality: str | None = None) -> PreprocessSpec:
    """The paper's preprocessing for an FM input spec.

    Parameters
    ----------
    input_spec : bridges.fm.base.InputSpec
        Gives the rate, window length, normalisation and scale.
    modality : str, optional
        Key of :data:`PAPER_BANDS`; defaults to ``input_spec.modality``.

    Returns
    -------
    PreprocessSpec
        Taps sized for the modality's transition width at the spec's rate (odd), capped below the window
        length so reflect padding works; for an unfiltered modality (EMG) ``band_hz=None`` and the minimum
        3 taps, which no FIR uses (the spec's steps are then the normalisation and scale alone).
    """
    modality = modality or input_spec.modality
    if modality not in PAPER_BANDS:
        raise BadInputError(f"'modality' is {modality!r}, but has to be one of {list(PAPER_BANDS)}.")
    paper = PAPER_BANDS[modality]
    sfreq_hz = float(input_spec.sfreq_hz)
    if not paper.filtered:
        return PreprocessSpec(sfreq_hz=sfreq_hz, band_hz=None, fir_taps=3,
                              normalisation=input_spec.normalisation, scale=float(input_spec.scale))
    taps = int(math.ceil(HAMMING_WIDTH * sfreq_hz / paper.transition_hz)) | 1
    n_samples = int(input_spec.n_samples)
    longest = n_samples if n_samples % 2 else n_samples - 1
    taps = max(3, min(taps, longest))
    return PreprocessSpec(
        sfreq_hz=sfreq_hz,
        band_hz=paper.band_hz,
        fir_taps=taps,
        normalisation=input_spec.normalisation,
        scale=float(input_spec.scale),
        notch_hz=paper.notch_hz if paper.notch_hz is not None and paper.notch_hz < sfreq_hz / 2 else None,
    )


def preprocess_for(input_spec: InputSpec, modality: str | None = None) -> Preprocess:
    """:class:`Preprocess` with the paper's settings for ``input_spec`` (see :func:`preprocess_spec_for`)."""
    return Preprocess(preprocess_spec_for(input_spec, modality))
