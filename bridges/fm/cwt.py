"""Ricker (Mexican hat) continuous wavelet transform, FFT-based: NormWear's input scalogram.

NormWear's published preprocessing calls ``scipy.signal.cwt(x, scipy.signal.ricker, np.arange(0.1, 65))``, which
SciPy 1.12 removed. This module computes the same numbers without it. For each width ``w`` that function built a
wavelet of ``points = min(10 * w, L)`` samples (a float: ``np.arange(0, points)`` has ``ceil(points)`` taps,
centred at ``(points - 1) / 2``), reversed it, and convolved it with the signal in ``"same"`` mode (output index
``n`` is the full convolution's index ``n + (K - 1) // 2`` for a ``K``-tap kernel). :func:`ricker_kernel_bank`
builds those kernels once per signal length, re-centred on a circular buffer long enough that the circular
convolution equals the linear one on the ``L`` output samples; :class:`RickerCWT` then runs every width, channel
and window in one ``rfft`` / multiply / ``irfft``. (During ONNX export it records the same kernels as a
``conv1d`` instead, :meth:`RickerCWT.direct`: the exporters have no mapping for ``torch.fft``.)

:class:`NormWearScalogram` stacks the transforms of ``[x, Δx, Δ²x]`` into NormWear's ``(3, L - 2, n_widths)``
image per channel. The differences are aligned as in the published ``spec_cwt``: ``Δx[n] = x[n + 1] - x[n]`` and
``Δ²x[n] = Δx[n + 1] - Δx[n]``; the three planes are ``x[2:]``, ``Δx[1:]`` and ``Δ²x``, so all three end at the
last sample and the first two samples of the window are dropped (no padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from devices.errors import BadInputError

__all__ = [
    "NORMWEAR_WIDTHS",
    "NormWearScalogram",
    "RickerCWT",
    "derivative_planes",
    "ricker",
    "ricker_kernel_bank",
    "ricker_kernel_taps",
    "ricker_widths",
]

#: ``np.arange`` bounds of NormWear's wavelet widths: 0.1, 1.1, ..., 64.1 (65 widths).
NORMWEAR_WIDTHS = (0.1, 65.0)


def ricker_widths(start: float = NORMWEAR_WIDTHS[0], stop: float = NORMWEAR_WIDTHS[1]) -> np.ndarray:
    """Wavelet widths ``np.arange(start, stop)`` (step 1), in samples; NormWear's 65 by default."""
    widths = np.arange(float(start), float(stop))
    if widths.size == 0 or widths[0] <= 0:
        raise BadInputError(f"wavelet widths np.arange({start!r}, {stop!r}) must be non-empty and > 0.")
    return widths


def ricker(points: float, width: float) -> np.ndarray:
    """Ricker wavelet sampled on ``np.arange(0, points)`` centred at ``(points - 1) / 2``, in float64.

    ``A * (1 - t² / w²) * exp(-t² / (2 w²))`` with ``A = 2 / (sqrt(3 w) * π^(1/4))``; ``points`` may be a float
    (then there are ``ceil(points)`` samples), as in the wavelet the removed ``scipy.signal.ricker`` returned.

    Parameters
    ----------
    points : float
        Support length in samples.
    width : float
        Width parameter ``w`` (samples).
    """
    amplitude = 2.0 / (math.sqrt(3.0 * width) * math.pi**0.25)
    t = np.arange(0, points, dtype=np.float64) - (points - 1.0) / 2.0
    ratio = t**2 / width**2
    return amplitude * (1.0 - ratio) * np.exp(-ratio / 2.0)


def _smooth_length(n: int) -> int:
    """Smallest integer >= ``n`` whose prime factors are 2, 3 and 5 (a fast FFT length)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def ricker_kernel_taps(n_samples: int, widths: Sequence[float] | np.ndarray) -> np.ndarray:
    """Centred impulse responses of the "same"-mode Ricker CWT of an ``n_samples`` signal.

    Row ``k`` is the reversed wavelet of width ``widths[k]`` (``min(10 w, n_samples)`` points) placed so that its
    tap ``(K - 1) // 2`` (where "same" mode starts keeping the full convolution) sits at column ``R``:
    ``y_k[n] = sum_u taps[k, R + u] * x[n - u]`` equals ``np.convolve(x, wavelet[::-1], "same")[n]``.

    Parameters
    ----------
    n_samples : int
        Signal length ``L``.
    widths : sequence of float
        Wavelet widths (samples).

    Returns
    -------
    ndarray of shape ``(len(widths), 2 R + 1)``
        float64; ``R`` is the longest one-sided reach (at most ``L // 2``).
    """
    kernels = []
    for width in np.asarray(widths, dtype=np.float64):
        wavelet = ricker(min(10.0 * width, float(n_samples)), width)[::-1]
        kernels.append((wavelet, (wavelet.size - 1) // 2))
    reach = max(max(start, wavelet.size - 1 - start) for wavelet, start in kernels)
    taps = np.zeros((len(kernels), 2 * reach + 1))
    for row, (wavelet, start) in enumerate(kernels):
        taps[row, reach - start : reach - start + wavelet.size] = wavelet
    return taps


def ricker_kernel_bank(n_samples: int, widths: Sequence[float] | np.ndarray) -> np.ndarray:
    """Circular kernels whose convolution with an ``n_samples`` signal is the "same"-mode Ricker CWT.

    :func:`ricker_kernel_taps` with lag 0 moved to index 0 and negative lags wrapped to the end, so
    ``irfft(rfft(x, F) * rfft(row, F))[:n_samples]`` is that row's transform.

    Returns
    -------
    ndarray of shape ``(len(widths), F)``
        float64; ``F`` >= ``L + R`` (no wrap-around into the kept samples) has only the prime factors 2, 3, 5.
    """
    taps = ricker_kernel_taps(n_samples, widths)
    reach = taps.shape[1] // 2
    n_fft = _smooth_length(n_samples + reach)
    bank = np.zeros((taps.shape[0], n_fft))
    bank[:, (np.arange(taps.shape[1]) - reach) % n_fft] = taps
    return bank


class RickerCWT(nn.Module):
    """Ricker CWT over the last axis: ``(..., L)`` → ``(..., n_widths, L)``, as the removed ``scipy.signal.cwt``.

    Runs in the input's floating dtype (float64 agrees with direct convolution to ~1e-15, float32 to ~1e-6 of
    each row's peak). The kernels' spectra are cached per (length, dtype, device); the module has no state.
    While exporting to ONNX (which has no real-FFT operator the exporters map ``torch.fft`` to) the same kernels
    run as one ``conv1d`` over all widths instead: the same numbers, more multiplications. That path builds its
    weight on each call and keeps nothing: an attribute set during export would have to be a registered buffer.

    Parameters
    ----------
    widths : sequence of float
        Wavelet widths in samples (NormWear: :func:`ricker_widths`).
    """

    def __init__(self, widths: Sequence[float] | np.ndarray) -> None:
        super().__init__()
        self.widths = tuple(float(w) for w in widths)
        self._spectra: dict[tuple[int, torch.dtype, torch.device], tuple[torch.Tensor, int]] = {}

    @property
    def n_widths(self) -> int:
        """Number of widths (rows of the scalogram)."""
        return len(self.widths)

    def kernel_spectrum(self, n_samples: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, int]:
        """``rfft`` of :func:`ricker_kernel_bank` for ``n_samples`` (``(n_widths, F // 2 + 1)``, complex) and ``F``."""
        key = (n_samples, dtype, device)
        if key not in self._spectra:
            bank = ricker_kernel_bank(n_samples, self.widths)
            n_fft = bank.shape[1]
            spectrum = torch.fft.rfft(torch.from_numpy(bank).to(device=device, dtype=dtype), n=n_fft)
            self._spectra[key] = (spectrum, n_fft)
        return self._spectra[key]

    def conv_weight(self, n_samples: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """:func:`ricker_kernel_taps` as a ``conv1d`` weight ``(n_widths, 1, 2 R + 1)`` (taps reversed)."""
        taps = ricker_kernel_taps(n_samples, self.widths)[:, ::-1].copy()
        return torch.from_numpy(taps).to(device=device, dtype=dtype).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., L)`` real signal → ``(..., n_widths, L)`` coefficients (same dtype; float16/bfloat16 → float32)."""
        if x.dtype not in (torch.float32, torch.float64):
            x = x.float()
        n_samples = int(x.shape[-1])
        if torch.onnx.is_in_onnx_export():
            return self.direct(x)
        spectrum, n_fft = self.kernel_spectrum(n_samples, x.dtype, x.device)
        signal = torch.fft.rfft(x, n=n_fft).unsqueeze(-2)  # (..., 1, F // 2 + 1)
        return torch.fft.irfft(signal * spectrum, n=n_fft)[..., :n_samples]

    def direct(self, x: torch.Tensor) -> torch.Tensor:
        """The same transform by direct convolution (``conv1d``, zero padding); what ONNX export records."""
        n_samples = int(x.shape[-1])
        weight = self.conv_weight(n_samples, x.dtype, x.device)
        rows = F.conv1d(x.reshape(-1, 1, n_samples), weight, padding=weight.shape[-1] // 2)
        return rows.reshape(*x.shape[:-1], self.n_widths, n_samples)

    def extra_repr(self) -> str:
        """Widths summary for ``repr``."""
        return f"n_widths={self.n_widths}, widths=[{self.widths[0]}, ..., {self.widths[-1]}]"


def derivative_planes(x: torch.Tensor) -> torch.Tensor:
    """``(..., L)`` → ``(..., 3, L - 2)``: ``x[2:]``, ``Δx[1:]`` and ``Δ²x``, all ending at the last sample."""
    first = x[..., 1:] - x[..., :-1]
    second = first[..., 1:] - first[..., :-1]
    return torch.stack((x[..., 2:], first[..., 1:], second), dim=-2)


class NormWearScalogram(nn.Module):
    """NormWear's input image: ``(B, C, L)`` → ``(B, C, 3, L - 2, n_widths)`` (time rows, width columns).

    Parameters
    ----------
    widths : sequence of float
        Wavelet widths in samples (default: NormWear's 65, :data:`NORMWEAR_WIDTHS`).
    """

    def __init__(self, widths: Sequence[float] | np.ndarray | None = None) -> None:
        super().__init__()
        self.cwt = RickerCWT(ricker_widths() if widths is None else widths)

    @property
    def n_widths(self) -> int:
        """Columns of the image."""
        return self.cwt.n_widths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., L)`` with ``L >= 3`` → ``(..., 3, L - 2, n_widths)``."""
        if x.shape[-1] < 3:
            raise BadInputError(f"a scalogram needs at least 3 samples per channel, got {x.shape[-1]} instead.")
        return self.cwt(derivative_planes(x)).transpose(-1, -2)
