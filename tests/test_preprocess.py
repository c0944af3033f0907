"""The FM input preprocessing module: band-pass, z-score, scale, flat input, length, ONNX export."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from bridges.fm.base import InputSpec
from bridges.preprocess import (
    PAPER_BANDS,
    PaperBand,
    Preprocess,
    PreprocessSpec,
    design_fir,
    preprocess_for,
    preprocess_spec_for,
)
from devices.errors import BadInputError

torch.set_num_threads(1)


def _sines(sfreq_hz: float, seconds: float, components: list[tuple[float, float]], channels: int = 1) -> torch.Tensor:
    t = np.arange(int(sfreq_hz * seconds)) / sfreq_hz
    x = sum(a * np.sin(2 * np.pi * f * t + 0.3) for f, a in components)
    return torch.tensor(np.tile(x, (2, channels, 1)), dtype=torch.float32)


def _amplitude(x: np.ndarray, sfreq_hz: float, freq_hz: float) -> float:
    """Amplitude of the ``freq_hz`` component of ``x`` (least squares on sin/cos)."""
    t = np.arange(len(x)) / sfreq_hz
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        (InputSpec("ppg", 125.0, 60.0, 1), 2.0, [0.1, 30.0]),
        (InputSpec("ecg", 100.0, 60.0, 1), 10.0, [49.0]),
        (InputSpec("eeg", 200.0, 30.0, 6, scale=0.01, normalisation="none"), 10.0, [50.0, 90.0]),
    ],
    ids=["ppg", "ecg", "eeg"],
)
def test_pass_band_kept_and_stop_band_attenuated(spec, inside, outside):
    pre = preprocess_for(spec)
    # Measure the filter alone: no normalisation, no scale.
    plain = Preprocess(PreprocessSpec(pre.spec.sfreq_hz, pre.spec.band_hz, pre.spec.fir_taps, "none", 1.0,
                                      pre.spec.notch_hz))
    fs = spec.sfreq_hz
    x = _sines(fs, spec.window_s, [(inside, 1.0)] + [(f, 1.0) for f in outside], spec.n_channels)
    y = plain(x)[0, -1].numpy()
    core = y[len(y) // 4: -len(y) // 4]  # away from the padded edges
    assert _amplitude(core, fs, inside) == pytest.approx(1.0, abs=0.01)
    for f in outside:
        assert _amplitude(core, fs, f) < 0.01, f  # >= 40 dB down
    assert y.shape[0] == x.shape[-1]


def test_zscore_scale_and_output_length():
    pre = preprocess_for(InputSpec("ecg", 100.0, 30.0, 1))
    gen = torch.Generator().manual_seed(0)
    x = 300.0 + 50.0 * torch.randn(4, 3, 3000, generator=gen)  # big offset, arbitrary unit
    y = pre(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 3), atol=1e-4, rtol=0)
    torch.testing.assert_close(y.std(-1, unbiased=False), torch.ones(4, 3), atol=1e-4, rtol=0)
    eeg = preprocess_for(InputSpec("eeg", 200.0, 4.0, 2, scale=0.01, normalisation="none"))
    assert eeg.spec.fir_taps <= 800 and eeg.spec.fir_taps % 2 == 1  # capped to the window
    x = _sines(200.0, 4.0, [(10.0, 100.0)], 2)
    y = eeg(x)
    assert y.shape == x.shape
    assert _amplitude(y[0, 0, 200:-200].numpy(), 200.0, 10.0) == pytest.approx(1.0, abs=0.02)  # 100 uV * 1/100


@pytest.mark.parametrize("level", [0.0, 1234.5678, -3.0e4])
def test_flat_window_gives_finite_zeros(level):
    for modality, spec in {"ecg": InputSpec("ecg", 100.0, 60.0, 1), "ppg": InputSpec("ppg", 125.0, 60.0, 1),
                           "eeg": InputSpec("eeg", 200.0, 30.0, 6, scale=0.01, normalisation="none")}.items():
        pre = preprocess_for(spec)
        x = torch.full((2, spec.n_channels, spec.n_samples), level)
        y = pre(x)
        assert torch.isfinite(y).all(), modality
        assert y.abs().max() < 1e-3, modality


def test_kernel_is_a_buffer_and_spec_round_trips():
    pre = preprocess_for(InputSpec("ppg", 125.0, 60.0, 1))
    assert list(pre.parameters()) == [] and "fir" in dict(pre.named_buffers())
    assert pre.spec.fir_band_hz == (0.5, 12.0)  # 825 taps realise the 0.5 Hz edge
    ecg = preprocess_spec_for(InputSpec("ecg", 100.0, 60.0, 1))
    assert ecg.fir_band_hz == (None, 47.0)  # 0.05 Hz needs more taps than a window has: mean removal instead
    data = ecg.to_dict()
    assert PreprocessSpec.from_dict(data) == ecg
    with pytest.raises(BadInputError, match=r"unknown key\(s\) \['bogus'\]"):
        PreprocessSpec.from_dict({**data, "bogus": 1})
    with pytest.raises(BadInputError, match="'fir_taps' must be an odd integer"):
        PreprocessSpec(100.0, (1.0, 20.0), fir_taps=100)
    with pytest.raises(BadInputError, match="'normalisation' is 'minmax'"):
        PreprocessSpec(100.0, None, normalisation="minmax")
    known = r"\['ecg', 'ppg', 'eeg', 'emg'\]"
    with pytest.raises(BadInputError, match=rf"'modality' is 'resp', but has to be one of {known}"):
        preprocess_for(InputSpec("resp", 25.0, 60.0, 1))
    assert design_fir(PreprocessSpec(100.0, None)) is None
    identity = Preprocess(PreprocessSpec(100.0, None, normalisation="none"))
    x = torch.randn(1, 1, 50)
    torch.testing.assert_close(identity(x), x)


def test_exports_to_onnx_without_control_flow():
    pre = preprocess_for(InputSpec("eeg", 200.0, 4.0, 2, scale=0.01, normalisation="none"))
    zs = preprocess_for(InputSpec("ppg", 125.0, 10.0, 1))
    mm = preprocess_for(InputSpec("ecg", 100.0, 10.0, 2, normalisation="minmax_pm1"))  # HuBERT-ECG's published
    for module, shape in ((pre, (1, 2, 800)), (zs, (1, 1, 1250)), (mm, (1, 2, 1000))):
        buffer = io.BytesIO()
        torch.onnx.export(module, (torch.randn(*shape),), buffer, dynamo=False, input_names=["x"],
                          dynamic_axes={"x": {0: "batch"}})
        graph = buffer.getvalue()
        assert b"Conv" in graph and b"Pad" in graph
        for op in (b"Loop", b"If", b"Scan"):
            assert op not in graph
    # Traced and eager agree on another batch size (nothing data-dependent was frozen).
    traced = torch.jit.trace(zs, torch.randn(1, 1, 1250))
    x = torch.randn(3, 1, 1250)
    torch.testing.assert_close(traced(x), zs(x))
    assert math.isclose(float(zs(x).std(-1, unbiased=False).mean()), 1.0, abs_tol=1e-4)
    traced = torch.jit.trace(mm, torch.randn(1, 2, 1000))
    x = torch.randn(3, 2, 1000)
    torch.testing.assert_close(traced(x), mm(x))
    assert float(mm(x).amin()) == -1.0 and float(mm(x).amax()) == 1.0


def test_emg_for_normwear_is_zscore_only():
    """BioX-Bridge feeds NormWear EMG resampled to 130 Hz and z-scored, with no band-pass: nothing else happens."""
    spec = InputSpec("emg", 130.0, 3.0, 3)  # NormWear's default input spec
    pre = preprocess_for(spec)
    assert pre.spec.band_hz is None and pre.spec.notch_hz is None and pre.spec.fir_band_hz == (None, None)
    assert design_fir(pre.spec) is None
    # The manifest's steps say exactly that: a z-score per window and channel, no mean removal, no FIR, no scale.
    assert pre.spec.steps() == [{"op": "zscore", "axis": "per window, per channel"}]
    assert PreprocessSpec.from_dict(pre.spec.to_dict()) == pre.spec
    # Low and high frequencies pass untouched: the output is the input's own z-score, 0.5 Hz sway and 60 Hz alike.
    x = 40.0 + _sines(130.0, 3.0, [(0.5, 80.0), (60.0, 25.0)], 3)
    y = pre(x)
    centred = x - x.mean(-1, keepdim=True)
    torch.testing.assert_close(y, centred / centred.std(-1, unbiased=False, keepdim=True), atol=1e-5, rtol=1e-5)
    # A constant channel (a lead off) becomes zeros, as in the reference's constant-lead rule, never NaN.
    x[:, 1] = 7.0
    y = pre(x)
    assert torch.isfinite(y).all() and y[:, 1].abs().max() == 0
    assert pre.min_samples == 1  # no reflect padding to feed
    # The traced graph has no convolution or padding in it.
    buffer = io.BytesIO()
    torch.onnx.export(pre, (torch.randn(1, 3, 390),), buffer, dynamo=False, input_names=["x"])
    assert b"Conv" not in buffer.getvalue() and b"Pad" not in buffer.getvalue()


def test_paper_band_without_a_band_takes_no_filter_settings():
    assert not PAPER_BANDS["emg"].filtered and PAPER_BANDS["eeg"].filtered
    with pytest.raises(ValueError, match="unfiltered PaperBand takes no transition or notch"):
        PaperBand(None, notch_hz=50.0)
    with pytest.raises(ValueError, match="'transition_hz' must be > 0 with a band"):
        PaperBand((1.0, 20.0))
