"""ONNX export of a bridged pipeline built from the real adapters, checked with ONNX Runtime; export_bundle.

The pipeline here is written in the test (z-score → new-FM prefix → mean pool → PrototypeBridge → old-FM suffix →
pool → linear head → softmax) so the export is tested on any module of that signature, not one class.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.bundle import (
    BridgeInfo,
    BundleError,
    FMInfo,
    InputInfo,
    Manifest,
    Provenance,
    TaskInfo,
    read_bundle,
)
from bridges.export import (
    DEFAULT_TOLERANCE,
    OPSET_VERSION,
    ExportError,
    default_exporter,
    export_bundle,
    export_onnx,
    verify_export,
)
from bridges.fm.base import FoundationModel
from bridges.fm.hubert_ecg import HubertECG, tiny_config
from bridges.fm.papagei import Papagei, PapageiConfig
from bridges.ort_session import open_session

HAS_ONNXSCRIPT = importlib.util.find_spec("onnxscript") is not None
N_CLASSES = 3


class ZScore(nn.Module):
    """Per-window, per-channel z-score over time (the graph's preprocessing)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - x.mean(dim=-1, keepdim=True)) / (x.std(dim=-1, keepdim=True) + 1e-6)


class TinyBridged(nn.Module):
    """Raw new-modality window (B, C, L) → class probabilities (B, K) through the truncated pipeline."""

    def __init__(
        self, new: FoundationModel, i: int, old: FoundationModel, j: int, bridge: nn.Module, generator: torch.Generator
    ) -> None:
        super().__init__()
        self.preprocess, self.new, self.old, self.bridge = ZScore(), new, old, bridge
        self.i, self.j = i, j
        width = old.layer_shapes()[-1][1]
        self.head = nn.Linear(width, N_CLASSES)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 1.0 / width**0.5, generator=generator)
            self.head.bias.normal_(0.0, 0.1, generator=generator)
        # Fixed standardisation of the pooled new-FM features (statistics set by calibrate()): a random-init FM's
        # features barely differ between windows, and this makes the bridge input, and so the output, vary.
        d_in = new.layer_shapes()[i][1]
        self.register_buffer("feature_mean", torch.zeros(d_in))
        self.register_buffer("feature_std", torch.ones(d_in))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        pooled = self.new.prefix(self.preprocess(x), self.i).mean(dim=1)
        self.feature_mean.copy_(pooled.mean(dim=0))
        self.feature_std.copy_(pooled.std(dim=0) + 1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.new.prefix(self.preprocess(x), self.i).mean(dim=1)
        pooled = (pooled - self.feature_mean) / self.feature_std
        features = self.old.pool(self.old.suffix(self.bridge(pooled), self.j))
        return torch.softmax(self.head(features), dim=-1)


def hubert(window_s: float) -> HubertECG:
    return HubertECG.from_config(tiny_config(), window_s=window_s, seed=1)


def papagei(window_s: float) -> Papagei:
    return Papagei.from_config(PapageiConfig.small(), window_s=window_s, random_state=2)


def build_pipeline(direction: str, window_s: float = 8.0) -> TinyBridged:
    """``"ppg->ecg"``: PaPaGei prefix, HuBERT-ECG suffix; ``"ecg->ppg"``: the reverse (old → new in DESIGN terms)."""
    if direction == "ppg->ecg":
        new, i, old, j = papagei(window_s), 2, hubert(window_s), 1
    else:
        new, i, old, j = hubert(window_s), 0, papagei(window_s), 3
    generator = torch.Generator().manual_seed(3)
    n_tokens, d_out = old.layer_shapes()[j - 1]  # layer j's input is layer j-1's output
    config = BridgeConfig(d_in=new.layer_shapes()[i][1], n_tokens=n_tokens, d_out=d_out, rank=4, n_prototypes=6)
    bridge = PrototypeBridge(config, generator=generator)
    with torch.no_grad():  # B starts at zero; give it weights so the bridge output is not constant
        bridge.B.normal_(0.0, 1.0, generator=generator)
    model = TinyBridged(new, i, old, j, bridge, generator).eval()
    model.calibrate(windows(model, 16, seed=100))
    return model


def windows(model: TinyBridged, n: int, seed: int = 0) -> torch.Tensor:
    spec = model.new.input_spec
    generator = torch.Generator().manual_seed(seed)
    return 3.0 * torch.randn((n, spec.n_channels, spec.n_samples), generator=generator) + 1.0


def manifest_for(model: TinyBridged, **provenance) -> Manifest:
    spec, c = model.new.input_spec, model.bridge.config
    return Manifest(
        task=TaskInfo("stress", ["baseline", "stress", "amusement"]),
        input=InputInfo(
            modality=spec.modality,
            channel_labels=[f"{spec.modality.upper()}{k}" for k in range(spec.n_channels)],
            sfreq_hz=spec.sfreq_hz,
            window_s=spec.window_s,
            hop_s=2.0,
            units=[spec.unit] * spec.n_channels,
            preprocessing=[{"op": "zscore", "axis": "time"}],
        ),
        provenance=Provenance(
            old_fm=FMInfo(model.old.name),
            new_fm=FMInfo(model.new.name),
            layer_i=model.i,
            layer_j=model.j,
            bridge=BridgeInfo.from_config(c),
            training_data={"source": "test"},
            metrics={"f1_macro": 0.5},
            trainable_parameters=provenance.pop("trainable_parameters", c.n_parameters),
            **provenance,
        ),
    )


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_onnx(onnx_bytes: bytes, x: torch.Tensor) -> np.ndarray:
    return open_session(onnx_bytes, device="cpu").session.run(None, {"window": x.numpy()})[0]


# ---------------------------------------------------------------------------------------------- export_onnx


@pytest.mark.parametrize("direction", ["ppg->ecg", "ecg->ppg"])
def test_onnx_matches_torch_with_dynamic_batch(direction: str) -> None:
    model = build_pipeline(direction)
    x = windows(model, 5)
    onnx_bytes = export_onnx(model, x[:1])
    graph = onnx.load_model_from_string(onnx_bytes)
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["window"]
    assert [o.name for o in graph.graph.output] == ["probabilities"]
    batch_dim = graph.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.HasField("dim_value")
    with torch.no_grad():
        reference = model(x).numpy()
    for n in (1, 5):
        out = run_onnx(onnx_bytes, x[:n])
        assert out.shape == (n, N_CLASSES)
        np.testing.assert_allclose(out, reference[:n], atol=DEFAULT_TOLERANCE, rtol=0)
    # The windows give different probabilities: the comparison is not between constants.
    assert np.ptp(reference, axis=0).max() > 1e-3
    assert verify_export(model, onnx_bytes, x) <= DEFAULT_TOLERANCE


def test_export_writes_file_and_restores_training_mode(tmp_path: Path) -> None:
    model = build_pipeline("ppg->ecg").train()
    x = windows(model, 2)
    target = tmp_path / "model.onnx"
    onnx_bytes = export_onnx(model, x[:1], target)
    assert target.read_bytes() == onnx_bytes
    assert model.training and model.new.training  # mode restored
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    # Exported in eval mode: matches the eval-mode model, dropout and batch statistics off.
    assert verify_export(model, onnx_bytes, x) <= DEFAULT_TOLERANCE
    assert model.training


def test_verify_export_detects_a_different_model() -> None:
    model = build_pipeline("ppg->ecg")
    x = windows(model, 3)
    onnx_bytes = export_onnx(model, x[:1])
    with torch.no_grad():
        model.head.bias.add_(torch.tensor([1.0, 0.0, -1.0]))
    assert verify_export(model, onnx_bytes, x) > 0.01


def test_export_refuses_bad_arguments() -> None:
    model = build_pipeline("ppg->ecg")
    with pytest.raises(ValueError, match="'exporter' is 'jit', but has to be one of"):
        export_onnx(model, windows(model, 1), exporter="jit")
    with pytest.raises(ExportError, match=r"'example' must be a float32 tensor \(batch >= 1, channels, samples\)"):
        export_onnx(model, torch.zeros(1000))
    with pytest.raises(ExportError, match="ONNX Runtime cannot load the exported graph"):
        verify_export(model, b"not a graph", windows(model, 1))


def test_export_failure_is_one_line() -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.eigvals(x[:, :, :2].reshape(-1, 2, 2)).real  # no ONNX kernel for eigvals

    with pytest.raises(ExportError, match=r"ONNX export \((dynamo|torchscript)\) of Broken failed: ") as info:
        export_onnx(Broken(), torch.randn(1, 2, 2))
    assert "\n" not in str(info.value)


def test_zero_pad_then_max_pool_survives_the_runtime_session() -> None:
    # PaPaGei's downsampling shortcut: zero-pad on the right, then max-pool. With all-negative input the last
    # output is 0 (the pad wins); ONNX Runtime's Pad_Fusion rewrite would make it the last sample instead.
    class ZeroPadPool(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.max_pool1d(torch.nn.functional.pad(x, (0, 1)), 2)

    x = -1.0 - torch.rand((3, 2, 7), generator=torch.Generator().manual_seed(0))
    onnx_bytes = export_onnx(ZeroPadPool(), x[:1])
    assert verify_export(ZeroPadPool(), onnx_bytes, x) == 0.0
    assert np.all(run_onnx(onnx_bytes, x)[:, :, -1] == 0.0)


@pytest.mark.skipif(HAS_ONNXSCRIPT, reason="onnxscript is installed")
def test_dynamo_exporter_says_what_it_needs() -> None:
    assert default_exporter() == "torchscript"
    model = build_pipeline("ppg->ecg")
    with pytest.raises(ExportError, match="The 'dynamo' ONNX exporter needs the onnxscript package"):
        export_onnx(model, windows(model, 1), exporter="dynamo")


@pytest.mark.skipif(not HAS_ONNXSCRIPT, reason="the dynamo exporter needs onnxscript")
@pytest.mark.slow
@pytest.mark.parametrize("direction", ["ppg->ecg", "ecg->ppg"])
def test_dynamo_exporter_with_odd_block_lengths(direction: str) -> None:
    # 10 s of PaPaGei input is 1250 samples; its blocks see 625 (odd) → ceil division in SAME padding.
    model = build_pipeline(direction, window_s=10.0)
    x = windows(model, 5)
    onnx_bytes = export_onnx(model, x[:1], exporter="dynamo")
    assert verify_export(model, onnx_bytes, x) <= DEFAULT_TOLERANCE


# ---------------------------------------------------------------------------------------------- export_bundle


def test_export_bundle_round_trip(tmp_path: Path) -> None:
    model = build_pipeline("ppg->ecg")
    manifest = manifest_for(model)
    x = windows(model, 4, seed=5)
    bundle = export_bundle(tmp_path / "tiny.bxb", model, manifest, model.bridge, inputs=x)
    assert bundle.manifest == manifest
    assert bundle.input_shape == ("batch", 1, 1000) and bundle.output_shape == ("batch", N_CLASSES)
    again = read_bundle(tmp_path / "tiny.bxb")
    assert again.sha256 == bundle.sha256
    for name, tensor in model.bridge.state_dict().items():
        np.testing.assert_array_equal(again.bridge_state[name], tensor.numpy())
    # The graph in the bundle is the pipeline: fresh windows, batch 1 and 5.
    fresh = windows(model, 5, seed=9)
    with torch.no_grad():
        reference = model(fresh).numpy()
    for n in (1, 5):
        np.testing.assert_allclose(run_onnx(again.onnx_bytes, fresh[:n]), reference[:n], atol=DEFAULT_TOLERANCE, rtol=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.bxb"]


def test_export_bundle_default_inputs(tmp_path: Path) -> None:
    model = build_pipeline("ecg->ppg")
    bundle = export_bundle(tmp_path / "b.bxb", model, manifest_for(model), model.bridge)
    assert bundle.input_shape == ("batch", 1, 800)
    with zipfile.ZipFile(tmp_path / "b.bxb") as archive:
        assert archive.namelist() == ["manifest.json", "model.onnx", "bridge.safetensors"]


def test_export_bundle_refuses_a_graph_that_disagrees(tmp_path: Path) -> None:
    class SignBranch(nn.Module):
        """Data-dependent Python control flow: a trace keeps one branch, so the graph is wrong for the other."""

        def __init__(self, inner: TinyBridged) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            p = self.inner(x)
            return p if bool(x.mean() > 0) else p.flip(-1)

    inner = build_pipeline("ppg->ecg")
    model = SignBranch(inner)
    x = windows(inner, 4)
    x[0] = x[0].abs() + 1.0  # the traced example: positive mean
    x[1:] = -(x[1:].abs() + 1.0)  # the rest take the other branch
    target = tmp_path / "never.bxb"
    with pytest.raises(ExportError, match=r"disagree by .* bundle '.*never.bxb' not written|export .* failed"):
        export_bundle(target, model, manifest_for(inner), inner.bridge, inputs=x)
    assert list(tmp_path.iterdir()) == []


def test_export_bundle_refuses_non_probabilities(tmp_path: Path) -> None:
    class Logits(nn.Module):
        def __init__(self, inner: TinyBridged) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.log(self.inner(x))

    inner = build_pipeline("ppg->ecg")
    with pytest.raises(ExportError, match="is not class probabilities .* end the pipeline with a softmax"):
        export_bundle(tmp_path / "x.bxb", Logits(inner), manifest_for(inner), inner.bridge)
    assert list(tmp_path.iterdir()) == []


def test_export_bundle_refuses_inputs_or_manifest_that_do_not_fit(tmp_path: Path) -> None:
    model = build_pipeline("ppg->ecg")
    manifest = manifest_for(model)
    with pytest.raises(ExportError, match=r"'inputs' windows are \(1, 999\), the manifest's input is \(1, 1000\)"):
        export_bundle(tmp_path / "x.bxb", model, manifest, model.bridge, inputs=torch.zeros(2, 1, 999))
    # A manifest whose bridge shape is not the module's.
    c = model.bridge.config
    bigger = BridgeInfo(c.rank + 1, c.n_prototypes, c.n_tokens, c.d_in, c.d_out)
    wrong = Provenance(**{**manifest.provenance.__dict__, "bridge": bigger})
    match = rf"tensor 'A' has shape \({c.rank}, {c.d_in}\), the manifest's bridge needs \({c.rank + 1}, {c.d_in}\)"
    with pytest.raises(BundleError, match=match):
        export_bundle(tmp_path / "x.bxb", model, Manifest(manifest.task, manifest.input, wrong), model.bridge)
    assert list(tmp_path.iterdir()) == []


def test_opset_is_recent_enough() -> None:
    assert OPSET_VERSION >= 17
