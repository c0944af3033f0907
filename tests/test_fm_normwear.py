"""NormWear adapter: the Ricker CWT, token layout, layer addressing, cls fusion, checkpoint loading."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from bridges.fm.checkpoints import CheckpointError
from bridges.fm.cwt import NormWearScalogram, RickerCWT, derivative_planes, ricker_widths
from bridges.fm.normwear import NormWear, NormWearConfig, sincos_position_table
from bridges.fm.registry import FMSpec, build_fm, save_fm_state
from devices.errors import BadInputError

# 3 EMG channels x 3 s at 130 Hz: 390 samples -> 388 image rows -> 43 x 13 patches + cls = 560 tokens per channel.
N_SAMPLES = 390
TOKENS = 3 * 560

# Keys the published pretraining checkpoint holds beside the encoder (its masked-reconstruction decoder).
DECODER_EXTRAS = {
    "mask_token": (1, 1, 32),
    "decoder_pos_embed": (1, 560, 32),
    "decoder_embed.weight": (32, 64),
    "decoder_blocks.0.attn.qkv.weight": (96, 32),
    "decoder_norm.weight": (32,),
    "temporal_recon.weight": (388, 560),
    "spatial_recon.norm.running_var": (128,),
    "spatial_recon.conv2.weight": (4, 16, 1),
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Small models and many short ops: a second intra-op thread only adds wake-up latency on a loaded 2-core box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move every weight off its initial value so that a load that skips a tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


@pytest.fixture(scope="module")
def normwear() -> NormWear:
    return _perturb(NormWear.from_config(NormWearConfig.small(), random_state=0), seed=1)


@pytest.fixture(scope="module")
def emg() -> torch.Tensor:
    return torch.randn(2, 3, N_SAMPLES, generator=torch.Generator().manual_seed(2))  # z-scored EMG, 3 channels


# ---------------------------------------------------------------------- the wavelet transform


def _ricker(points: float, width: float) -> np.ndarray:
    """The wavelet the removed scipy.signal.ricker returned (float ``points``: ceil(points) taps)."""
    t = np.arange(0, points) - (points - 1.0) / 2
    return 2 / (np.sqrt(3 * width) * np.pi**0.25) * (1 - t**2 / width**2) * np.exp(-(t**2) / (2 * width**2))


def _direct_cwt(x: np.ndarray) -> np.ndarray:
    """Reference: what scipy.signal.cwt(x, ricker, np.arange(0.1, 65)) computed, by direct convolution."""
    n = x.shape[-1]
    return np.stack([np.convolve(x, _ricker(min(10 * w, n), w)[::-1], mode="same") for w in np.arange(0.1, 65)])


def _assert_relative(actual: torch.Tensor, expected: np.ndarray, tol: float) -> None:
    """Every row (one width) within ``tol`` of that row's peak magnitude."""
    error = np.abs(actual.double().numpy() - expected).max(axis=-1)
    peak = np.abs(expected).max(axis=-1)
    assert (error <= tol * peak).all(), f"worst relative error {(error / peak).max():.2e}"


@pytest.mark.parametrize("n_samples", [388, 37], ids=["fog-window", "short-clipped-wavelets"])
def test_cwt_matches_direct_convolution(n_samples: int) -> None:
    x = np.random.default_rng(3).standard_normal((2, 3, n_samples)).cumsum(axis=-1)  # windows x channels
    expected = np.stack([[_direct_cwt(channel) for channel in window] for window in x])
    assert ricker_widths().tolist() == pytest.approx([0.1 + k for k in range(65)])
    cwt = RickerCWT(ricker_widths())
    out64 = cwt(torch.from_numpy(x))
    assert out64.shape == (2, 3, 65, n_samples) and out64.dtype == torch.float64
    _assert_relative(out64, expected, 1e-10)
    out32 = cwt(torch.from_numpy(x).float())
    assert out32.dtype == torch.float32
    _assert_relative(out32, expected, 1e-5)


def test_direct_convolution_path_equals_the_fft_path_and_exports_to_onnx() -> None:
    import onnxruntime

    from bridges.export import export_onnx

    x = torch.from_numpy(np.random.default_rng(5).standard_normal((2, 3, 388)))
    cwt = RickerCWT(ricker_widths())
    torch.testing.assert_close(cwt.direct(x), cwt(x), rtol=0, atol=1e-12)
    # ONNX has no mapping for torch.fft: while exporting, the transform is recorded as the conv1d path.
    scalogram = NormWearScalogram()
    window = torch.randn(1, 3, N_SAMPLES, generator=torch.Generator().manual_seed(6))
    session = onnxruntime.InferenceSession(export_onnx(scalogram, window, exporter="torchscript"))
    batch = torch.randn(2, 3, N_SAMPLES, generator=torch.Generator().manual_seed(7))
    (image,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
    assert image.shape == (2, 3, 3, 388, 65)
    torch.testing.assert_close(torch.from_numpy(image), scalogram(batch), rtol=0, atol=1e-4)


def test_scalogram_stacks_x_and_its_differences_aligned_at_the_last_sample() -> None:
    x = torch.tensor([[1.0, 4.0, 9.0, 16.0, 25.0, 36.0]], dtype=torch.float64)  # n^2: Δ = 2n + 1, Δ² = 2
    planes = derivative_planes(x)
    expected = torch.tensor([[[9.0, 16.0, 25.0, 36.0], [5.0, 7.0, 9.0, 11.0], [2.0, 2.0, 2.0, 2.0]]]).double()
    torch.testing.assert_close(planes, expected, rtol=0, atol=0)
    signal = np.random.default_rng(4).standard_normal((1, 2, 50))
    image = NormWearScalogram()(torch.from_numpy(signal))
    assert image.shape == (1, 2, 3, 48, 65)  # (windows, channels, planes, time rows, widths)
    first = np.diff(signal, axis=-1)
    second = np.diff(first, axis=-1)
    for c in range(2):
        for plane, series in enumerate((signal[0, c, 2:], first[0, c, 1:], second[0, c])):
            _assert_relative(image[0, c, plane].T, _direct_cwt(series), 1e-10)


# ---------------------------------------------------------------------- shapes and layers


@torch.no_grad()
def test_real_config_has_the_published_size_names_and_1680_tokens_per_layer() -> None:
    model = NormWear.from_config(random_state=0)  # the only real-size model here (~7 s on one thread)
    spec = model.input_spec
    assert (spec.modality, spec.sfreq_hz, spec.window_s, spec.n_channels) == ("emg", 130.0, 3.0, 3)
    assert (spec.n_samples, spec.normalisation, spec.scale) == (N_SAMPLES, "zscore", 1.0)
    assert model.n_layers == 12 and model.layers is model.encoder_blocks
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(128e6, rel=0.01)
    state = model.state_dict()
    assert len(state) == 222  # the published encoder's keys, nothing else
    shapes = {
        "patch_embed.proj.weight": (768, 3, 9, 5),
        "cls_token": (1, 1, 768),
        "pos_embed": (1, 560, 768),
        "encoder_blocks.0.variate_encoder.attn.qkv.bias": (2304,),
        "encoder_blocks.10.cls_fusion.mlp.fc1.weight": (3072, 768),
        "encoder_blocks.11.variate_encoder.mlp.fc2.weight": (768, 3072),
        "norm.weight": (768,),
    }
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    fused = sorted({int(k.split(".")[1]) for k in state if ".cls_fusion." in k})
    assert fused == [0, 2, 4, 6, 8, 10]
    assert model.layer_shapes() == [(TOKENS, 768)] * 12


@torch.no_grad()
def test_prefix_then_suffix_equals_the_full_forward_at_every_layer(normwear: NormWear, emg: torch.Tensor) -> None:
    x = emg[:1]
    full = normwear.suffix(normwear.embed(x), 0)
    states = normwear.hidden_states(x)
    assert [tuple(s.shape) for s in states] == [(1, TOKENS, 64)] * normwear.n_layers
    for i in range(normwear.n_layers):
        head = normwear.prefix(x, i)
        torch.testing.assert_close(head, states[i], rtol=0, atol=0)
        tail = normwear.suffix(head, i + 1) if i + 1 < normwear.n_layers else normwear.finalize(head)
        torch.testing.assert_close(tail, full)
    torch.testing.assert_close(normwear(x), full.mean(dim=1))
    assert normwear.channel_tokens(full).shape == (1, 3, 560, 64)  # NormWear's own [B, nvar, P, E]


@torch.no_grad()
def test_cls_fusion_is_the_only_path_between_channels(normwear: NormWear, emg: torch.Tensor) -> None:
    other = emg[:1].clone()
    other[0, 2] = torch.randn(N_SAMPLES, generator=torch.Generator().manual_seed(5))  # change channel 2 only
    first = [normwear.channel_tokens(h)[0] for h in normwear.hidden_states(emg[:1])]  # per layer (C, N, d)
    changed = [normwear.channel_tokens(h)[0] for h in normwear.hidden_states(other)]
    # Layer 0 (fusing): channel 0's patches never saw channel 2; its cls token did, through cls_fusion.
    torch.testing.assert_close(first[0][0, 1:], changed[0][0, 1:], rtol=0, atol=0)
    assert not torch.allclose(first[0][0, 0], changed[0][0, 0])
    # Layer 1 (not fusing): channel 0's patches attended to their fused cls token, so now they differ too.
    assert not torch.allclose(first[1][0, 1:], changed[1][0, 1:])


def test_layer_index_out_of_range_is_refused(normwear: NormWear, emg: torch.Tensor) -> None:
    with pytest.raises(IndexError, match=r"'upto' must be in \[0, 3\] for normwear, got 4"):
        normwear.prefix(emg, 4)
    with pytest.raises(IndexError, match=r"'start' must be in \[0, 3\] for normwear, got -1"):
        normwear.suffix(torch.zeros(1, TOKENS, 64), -1)


def _seeded_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Weights from a fixed generator in sorted key order (the fixed position table kept)."""
    generator = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    return {
        k: state[k] if k == "pos_embed" else torch.randn(state[k].shape, generator=generator) * 0.2
        for k in sorted(state)
    }


@torch.no_grad()
def test_outputs_match_values_from_the_reference_implementation() -> None:
    # Golden values: NormWear's own encoder (get_signal_embedding, its repository's timm-free Block with
    # LayerNorm eps 1e-6) run once on these exact weights, fed the direct-convolution scalogram of these inputs.
    config = NormWearConfig(embed_dim=64, depth=4, num_heads=4, block_norm_eps=1e-6)
    model = NormWear.from_config(config)
    model.load_state_dict(_seeded_state(model, 11))
    x = torch.randn(1, 3, N_SAMPLES, generator=torch.Generator().manual_seed(12))
    out = model.channel_tokens(model.suffix(model.embed(x), 0))
    _assert_close_to(out[0, 0, 0, :6], [-0.178139, -0.173728, -0.478617, 0.283733, -0.023155, 0.295160])
    _assert_close_to(out[0, 2, 559, :6], [-0.165193, -0.094645, -0.409492, 0.195275, -0.024048, 0.399260])
    assert out.abs().mean().item() == pytest.approx(0.244835, abs=2e-5)
    layer_1_cls = model.channel_tokens(model.prefix(x, 1))[0, 1, 0, :4]
    _assert_close_to(layer_1_cls, [-3.122332, -1.602230, 1.923280, 1.493125], atol=1e-4)
    # 300 samples: a 33 x 13 grid, the position table resized bicubically as the reference does.
    x = torch.randn(1, 3, 300, generator=torch.Generator().manual_seed(13))
    out = model.channel_tokens(model.suffix(model.embed(x), 0))
    assert out.shape == (1, 3, 1 + 33 * 13, 64)
    _assert_close_to(out[0, 1, 1, :6], [-0.176323, -0.114084, -0.397012, 0.481666, -0.400401, 0.346935])
    _assert_close_to(out[0, 0, 429, :6], [-0.157549, -0.235264, -0.383127, 0.248050, -0.128022, 0.394514])


def _assert_close_to(actual: torch.Tensor, expected: list[float], atol: float = 2e-5) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected), rtol=0, atol=atol)


def test_position_table_is_the_2d_sincos_code_and_follows_the_grid(normwear: NormWear) -> None:
    table = sincos_position_table(64, 43, 13)
    assert table.shape == (560, 64) and not table[0].any()
    omega = 1.0 / 10000.0 ** (torch.arange(16, dtype=torch.float64) / 16)
    row, col = 2, 3  # patch (time row 2, width column 3) is token 1 + 2 * 13 + 3
    expected = torch.cat([(col * omega).sin(), (col * omega).cos(), (row * omega).sin(), (row * omega).cos()])
    torch.testing.assert_close(table[1 + row * 13 + col].double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(normwear.position_embedding(43), normwear.pos_embed[0], rtol=0, atol=0)
    resized = normwear.position_embedding(86)  # a 6-s window at 130 Hz: 778 rows // 9
    assert resized.shape == (1 + 86 * 13, 64)
    torch.testing.assert_close(resized[0], normwear.pos_embed[0, 0], rtol=0, atol=0)
    six_s = NormWear.from_config(NormWearConfig.small(), n_channels=2, window_s=6.0, random_state=0)
    assert six_s.layer_shapes() == [(2 * (1 + 86 * 13), 64)] * 4


# ---------------------------------------------------------------------- checkpoints


def _published_container(model: NormWear, layout: str) -> dict:
    """The encoder's state in a layout seen in the wild, with the pretraining decoder beside it."""
    generator = torch.Generator().manual_seed(3)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    weights |= {k: torch.randn(shape, generator=generator) for k, shape in DECODER_EXTRAS.items()}
    if layout == "model":  # the training script's checkpoint
        return {"model": weights, "optimizer": {"state": {}, "param_groups": []}, "epoch": 9,
                "args": argparse.Namespace(model="normwear", mask_scheme="random")}
    if layout in ("module.", "backbone."):
        weights = {f"{layout}{k}": v for k, v in weights.items()}
        if layout == "backbone.":
            weights["head.weight"] = torch.zeros(2, 64)  # a wrapper's own head, not part of the encoder
    return weights


@torch.no_grad()
@pytest.mark.parametrize("layout", ["model", "bare", "module.", "backbone."])
def test_checkpoint_loads_in_published_layouts_with_identical_outputs(
    normwear: NormWear, emg: torch.Tensor, tmp_path, layout: str
) -> None:
    path = tmp_path / "normwear_checkpoint.pth"
    torch.save(_published_container(normwear, layout), path)
    loaded = NormWear.from_pretrained(path, NormWearConfig.small())
    assert not loaded.training
    torch.testing.assert_close(loaded.hidden_states(emg)[-1], normwear.hidden_states(emg)[-1], rtol=0, atol=0)
    torch.testing.assert_close(loaded(emg), normwear(emg), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda w: w.pop("encoder_blocks.2.cls_fusion.mlp.fc1.weight"),
         r"1 missing: encoder_blocks\.2\.cls_fusion\.mlp\.fc1\.weight"),
        (lambda w: w.pop("pos_embed"), r"1 missing: pos_embed"),
        (lambda w: [w.pop(k) for k in list(w) if k.startswith("encoder_blocks.3.")],
         r"12 missing: encoder_blocks\.3\.variate_encoder\.attn\.proj\.bias, .* \(\+6 more\)"),
        (lambda w: w.update({"encoder_blocks.1.cls_fusion.norm1.weight": torch.ones(64)}),
         r"1 unexpected: encoder_blocks\.1\.cls_fusion\.norm1\.weight"),
        (lambda w: w.update({"pos_embed": torch.zeros(1, 430, 64)}),
         r"mis-shaped.*pos_embed \(1, 430, 64\) vs \(1, 560, 64\)"),
    ],
    ids=["missing-key", "missing-position-table", "missing-layer", "unexpected", "mis-shaped"],
)
def test_checkpoint_that_does_not_fit_is_refused_naming_the_keys(normwear: NormWear, tmp_path, edit, expected) -> None:
    container = _published_container(normwear, "model")
    edit(container["model"])
    path = tmp_path / "broken.pth"
    torch.save(container, path)
    with pytest.raises(CheckpointError, match=expected) as caught:
        NormWear.from_pretrained(path, NormWearConfig.small())
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_checkpoints_are_read_weights_only(normwear: NormWear, tmp_path, monkeypatch) -> None:
    path = tmp_path / "normwear.pth"
    torch.save(_published_container(normwear, "model"), path)
    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    NormWear.from_pretrained(path, NormWearConfig.small())
    assert calls == [True]
    evil = tmp_path / "evil.pth"
    torch.save({"model": dict(normwear.state_dict()), "hook": torch.nn.ReLU()}, evil)
    with pytest.raises(CheckpointError, match="trust_pickle"):
        NormWear.from_pretrained(evil, NormWearConfig.small())
    assert calls == [True, True]


# ---------------------------------------------------------------------- inputs, configs, registry


def test_input_of_the_wrong_shape_and_bad_configs_are_refused(normwear: NormWear) -> None:
    with pytest.raises(BadInputError, match=r"\(batch, 3 channels, >= 11 samples\), got \(1, 2, 390\)"):
        normwear.embed(torch.zeros(1, 2, 390))
    with pytest.raises(BadInputError, match=r"got \(1, 3, 10\)"):
        normwear.embed(torch.zeros(1, 3, 10))
    with pytest.raises(BadInputError, match="must hold 3 channels' tokens, got 1679"):
        normwear.suffix(torch.zeros(1, 1679, 64), 0)
    with pytest.raises(BadInputError, match="'n_channels' must be a positive integer, got 0"):
        NormWear(NormWearConfig.small(), n_channels=0)
    with pytest.raises(BadInputError, match="at least 11 samples at 130.0 Hz"):
        NormWear(NormWearConfig.small(), window_s=0.05)
    with pytest.raises(ValueError, match="'embed_dim' must be a multiple of 4 and of num_heads=12, got 100"):
        NormWearConfig(embed_dim=100)


@torch.no_grad()
def test_registry_builds_normwear_by_name_and_reloads_its_own_state(tmp_path, emg: torch.Tensor) -> None:
    spec = FMSpec(name="normwear", size="small", window_s=3.0, channels=["EMG1", "EMG2", "EMG3"], seed=4)
    assert spec.modality == "emg"
    before = torch.random.get_rng_state()
    model = build_fm(spec)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert isinstance(model, NormWear) and not model.training
    assert (model.input_spec.sfreq_hz, model.input_spec.n_samples, model.input_spec.n_channels) == (130.0, 390, 3)
    assert model.layer_shapes() == [(TOKENS, 64)] * 4
    _perturb(model, seed=6)
    path = save_fm_state(model, tmp_path / "normwear.safetensors")
    saved = FMSpec(name="normwear", size="small", window_s=3.0, channels=["a", "b", "c"], checkpoint=str(path))
    reloaded = build_fm(saved)
    torch.testing.assert_close(reloaded(emg), model(emg), rtol=0, atol=0)
    assert math.isclose(NormWear.from_config(NormWearConfig.small(), random_state=4).cls_token.sum().item(),
                        build_fm(spec).cls_token.sum().item())
