"""Input scaling as each FM was pretrained: min-max against a numpy reference, flat windows, ONNX export of every
scaling, published checkpoints getting their published scaling, the config override and its refusals, the
scaling recorded in our own ``.safetensors``, the steps' check, and the manifest round trip (DESIGN §9)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.bundle import (
    BridgeInfo,
    FMInfo,
    InputInfo,
    Manifest,
    ManifestError,
    Provenance,
    TaskInfo,
    bundle_summary,
    read_bundle,
)
from bridges.config import ConfigError
from bridges.export import DEFAULT_TOLERANCE, ExportError, export_bundle, export_onnx
from bridges.fm.base import InputSpec
from bridges.fm.hubert_ecg import HubertECG, tiny_config
from bridges.fm.labram import Labram
from bridges.fm.normwear import NormWear, NormWearConfig
from bridges.fm.papagei import Papagei, PapageiConfig
from bridges.fm.registry import FMSpec, build_fm, save_fm_state
from bridges.input_scaling import INPUT_SCALINGS, SCALING_CHOICES, scaling_from_steps
from bridges.models import BridgedModel, make_head
from bridges.ort_session import open_session
from bridges.preprocess import Preprocess, PreprocessSpec, preprocess_for, preprocess_spec_for
from bridges.workflow import TransferRun
from devices.errors import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ACCEPTED = r"\['published', 'zscore', 'minmax_pm1', 'uv_over_100', 'none'\]"


def _minmax_reference(x: np.ndarray) -> np.ndarray:
    """HuBERT-ECG's ``scaling`` (its ``code/utils.py``) per window and lead, without its 1e-8 smoothing term."""
    low, high = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
    return 2.0 * (x - low) / (high - low) - 1.0


def _ecg_windows(n: int = 3, channels: int = 2, seconds: float = 10.0, seed: int = 0) -> torch.Tensor:
    """ECG-like windows at 100 Hz in mV with a per-window offset and drift (``(n, channels, 100·seconds)``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(100 * seconds)) / 100.0
    beats = np.exp(-(((t[None, None] % 0.8) - 0.3) ** 2) / 1e-3)
    x = rng.uniform(0.5, 2.0, (n, channels, 1)) * beats + 0.2 * np.sin(2 * np.pi * 0.1 * t)
    x = x + rng.normal(0, 0.05, x.shape) + rng.uniform(-300, 300, (n, channels, 1))
    return torch.tensor(x, dtype=torch.float32)


# --------------------------------------------------------------------------------------------- the operation


def test_minmax_matches_the_numpy_reference_with_and_without_a_band():
    x = _ecg_windows()
    raw = PreprocessSpec(100.0, None, fir_taps=3, normalisation="minmax_pm1")
    np.testing.assert_allclose(Preprocess(raw)(x).numpy(), _minmax_reference(x.double().numpy()), atol=2e-5, rtol=0)
    # With HuBERT-ECG's band: min-max of the band-passed window, as the published pipeline filters, then scales.
    ecg = InputSpec("ecg", 100.0, 10.0, 2, normalisation="minmax_pm1")
    spec = preprocess_spec_for(ecg)
    filtered = Preprocess(PreprocessSpec(spec.sfreq_hz, spec.band_hz, spec.fir_taps, "none"))(x).numpy()
    y = preprocess_for(ecg)(x).numpy()
    np.testing.assert_allclose(y, _minmax_reference(filtered.astype(np.float64)), atol=2e-5, rtol=0)
    np.testing.assert_allclose(y.min(axis=-1), -1.0, atol=1e-6)
    np.testing.assert_allclose(y.max(axis=-1), 1.0, atol=1e-6)
    assert spec.input_scaling == "minmax_pm1"
    assert spec.steps()[-1] == {"op": "minmax", "range": [-1.0, 1.0], "axis": "per window, per channel"}


@pytest.mark.parametrize("level", [0.0, 1234.5678, -3.0e4])
def test_a_flat_lead_maps_to_zero_never_nan(level):
    pre = preprocess_for(InputSpec("ecg", 100.0, 10.0, 3, normalisation="minmax_pm1"))
    x = _ecg_windows(2, 3)
    x[:, 1] = level  # a lead off, among leads with signal
    x[1] = level  # a whole window flat
    y = pre(x)
    assert torch.isfinite(y).all()
    assert y[:, 1].abs().max() == 0 and y[1].abs().max() == 0
    torch.testing.assert_close(y[0, [0, 2]].amin(-1), torch.full((2,), -1.0))
    torch.testing.assert_close(y[0, [0, 2]].amax(-1), torch.full((2,), 1.0))
    if level:  # a level with float32 rounding residue only (no signal) is flat too
        almost = torch.full((1, 1, 1000), level) + torch.randn(1, 1, 1000) * 1e-7 * abs(level)
        raw = Preprocess(PreprocessSpec(100.0, None, fir_taps=3, normalisation="minmax_pm1"))
        assert raw(almost).abs().max() == 0


@pytest.mark.parametrize("name", list(INPUT_SCALINGS))
def test_every_scaling_exports_to_onnx_without_control_flow_and_matches_torch(name):
    scaling = INPUT_SCALINGS[name]
    spec = InputSpec("ecg", 100.0, 10.0, 2, normalisation=scaling.normalisation, scale=scaling.scale)
    pre = preprocess_for(spec)
    assert pre.spec.input_scaling == name and scaling_from_steps(pre.spec.steps()) == name
    x = _ecg_windows(4, 2, seed=1)
    x[2, 1] = 5.0  # a flat lead goes through the graph too
    graph = export_onnx(pre, x[:1])  # the exporter the bundle uses
    ops = {node.op_type for node in onnx.load_from_string(graph).graph.node}
    assert not ops & {"Loop", "If", "Scan"}, ops
    got = open_session(graph, device="cpu").session.run(None, {"window": x.numpy()})[0]
    with torch.no_grad():
        expected = pre(x).numpy()
    assert np.isfinite(got).all()
    # float32 FIR sums in another order after removing offsets of hundreds: agreement to 1e-4 of the output's range.
    np.testing.assert_allclose(got, expected, atol=1e-4 * float(np.abs(expected).max()), rtol=0)


# --------------------------------------------------------------------------------------------- the FMs


def _published_checkpoint(name: str, folder: Path) -> Path:
    """A checkpoint in the FM's published layout, with random weights (the published files can't be fetched)."""
    folder.mkdir(parents=True, exist_ok=True)
    if name == "hubert_ecg":  # the Hugging Face folder HuBERT-ECG publishes: config.json + weights
        HubertECG.from_config(tiny_config(), window_s=10.0, seed=1).model.save_pretrained(folder / "hubert-ecg")
        return folder / "hubert-ecg"
    if name == "labram":  # labram-base.pth: the encoder under model / student.
        state = Labram.from_config(random_state=1).state_dict()
        torch.save({"model": {f"student.{k}": v for k, v in state.items()}}, folder / "labram-base.pth")
        return folder / "labram-base.pth"
    if name == "papagei":  # papagei_s.pt: a bare state dict with DDP's prefix
        state = Papagei.from_config(random_state=1).state_dict()
        torch.save({f"module.{k}": v for k, v in state.items()}, folder / "papagei_s.pt")
        return folder / "papagei_s.pt"
    state = NormWear.from_config(NormWearConfig.small(), n_channels=1, random_state=1).state_dict()
    torch.save({"model": state, "epoch": 3}, folder / "normwear_checkpoint.pth")
    return folder / "normwear_checkpoint.pth"


SPECS = {  # spec keywords per FM: small configs where the published loader takes one
    "hubert_ecg": {"size": "tiny", "window_s": 10.0},
    "labram": {"size": "base", "window_s": 4.0, "channels": ["C3", "C4"]},
    "papagei": {"size": "s", "window_s": 10.0},
    "normwear": {"size": "small", "window_s": 3.0, "channels": ["EMG1"]},
}
PUBLISHED = {"hubert_ecg": "minmax_pm1", "labram": "uv_over_100", "papagei": "zscore", "normwear": "zscore"}
RANDOM_INIT = {"hubert_ecg": "zscore", "labram": "uv_over_100", "papagei": "zscore", "normwear": "zscore"}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_a_published_checkpoint_gets_its_published_scaling_and_the_config_overrides_it(tmp_path, name):
    checkpoint = str(_published_checkpoint(name, tmp_path))
    loaded = build_fm(FMSpec(name, checkpoint=checkpoint, **SPECS[name]))
    assert loaded.input_scaling == PUBLISHED[name] == type(loaded).published_scaling
    expected = INPUT_SCALINGS[PUBLISHED[name]]
    assert (loaded.input_spec.normalisation, loaded.input_spec.scale) == (expected.normalisation, expected.scale)
    assert preprocess_for(loaded.input_spec).spec.input_scaling == PUBLISHED[name]
    # Random weights keep the adapter's own scaling; the config key overrides either.
    assert build_fm(FMSpec(name, **SPECS[name])).input_scaling == RANDOM_INIT[name]
    overridden = build_fm(FMSpec(name, checkpoint=checkpoint, input_scaling="zscore", **SPECS[name]))
    assert overridden.input_scaling == "zscore"
    randomly = build_fm(FMSpec(name, input_scaling="published", **SPECS[name]))
    assert randomly.input_scaling == PUBLISHED[name]


def test_hubert_ecg_published_input_is_each_lead_in_minus_one_to_one(tmp_path):
    folder = _published_checkpoint("hubert_ecg", tmp_path)
    published = HubertECG.from_pretrained(folder, window_s=10.0, n_channels=2)
    assert published.input_scaling == "minmax_pm1"
    y = preprocess_for(published.input_spec)(_ecg_windows())
    torch.testing.assert_close(y.amin(-1), torch.full((3, 2), -1.0))
    torch.testing.assert_close(y.amax(-1), torch.full((3, 2), 1.0))
    assert HubertECG.from_pretrained(folder, window_s=10.0, input_scaling="zscore").input_scaling == "zscore"
    with pytest.raises(BadInputError, match=rf"'input_scaling' is 'minmax', but has to be one of {ACCEPTED}"):
        HubertECG.from_pretrained(folder, window_s=10.0, input_scaling="minmax")


def test_an_unknown_scaling_is_refused_listing_the_accepted_names(tmp_path):
    assert SCALING_CHOICES == ("published", "zscore", "minmax_pm1", "uv_over_100", "none")
    with pytest.raises(ValueError, match=rf"'input_scaling' is 'minmax', but has to be one of {ACCEPTED}"):
        FMSpec("hubert_ecg", "tiny", input_scaling="minmax")
    fm = build_fm(FMSpec("papagei", "small", window_s=10.0))
    with pytest.raises(BadInputError, match=rf"'input_scaling' is 'z-score', but has to be one of {ACCEPTED}"):
        fm.use_input_scaling("z-score")
    assert fm.input_scaling == "zscore"  # unchanged by the refusal
    config = tmp_path / "run.toml"
    for toml, match in (
        ('[old_fm]\nsize = "tiny"\ninput_scaling = "minmax"\n',
         rf"\[old_fm\]: 'input_scaling' is 'minmax', but has to be one of {ACCEPTED}"),
        ('[new_fm]\nname = "papagei"\ninput_scaling = 1\n', r"\[new_fm\]: 'input_scaling' must be str \| None, got 1"),
    ):
        config.write_text(toml)
        with pytest.raises(ConfigError, match=match) as err:
            TransferRun(config)
        assert "\n" not in str(err.value) and "run.toml" in str(err.value)


def test_our_safetensors_keeps_the_scaling_it_was_trained_with(tmp_path, caplog):
    published = build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0,
                                checkpoint=str(_published_checkpoint("hubert_ecg", tmp_path))))
    path = save_fm_state(published, tmp_path / "tuned.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"input_scaling": "minmax_pm1"}
    assert build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0, checkpoint=str(path))).input_scaling == "minmax_pm1"
    with caplog.at_level(logging.WARNING, logger="bridges.fm.registry"):
        forced = build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0, checkpoint=str(path), input_scaling="zscore"))
    assert forced.input_scaling == "zscore" and "trained with input scaling 'minmax_pm1'" in caplog.text
    random_state = save_fm_state(build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0)), tmp_path / "r.safetensors")
    assert build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0, checkpoint=str(random_state))).input_scaling == "zscore"
    # A file without the record (written before it was kept) takes the adapter's own; a bad record is named.
    bare = tmp_path / "bare.safetensors"
    state = {k: v.contiguous() for k, v in published.state_dict().items()}
    save_file(state, str(bare))
    assert build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0, checkpoint=str(bare))).input_scaling == "zscore"
    save_file(state, str(bare), metadata={"input_scaling": "x"})
    with pytest.raises(BadInputError, match=r"the input scaling recorded in '.+bare.safetensors' is 'x', but has to "
                                            r"be one of \['zscore', 'minmax_pm1', 'uv_over_100', 'none'\]"):
        build_fm(FMSpec("hubert_ecg", "tiny", window_s=10.0, checkpoint=str(bare)))


def test_a_step_refuses_a_scaling_other_than_fit_head_used(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[data]\nwindow_s = 10.0\nstep_s = 10.0\n\n[old_fm]\nsize = "tiny"\n\n[output]\ndir = "run"\n')
    run = TransferRun(config)
    head = {"input_scaling": {"old_fm": "minmax_pm1"}, "d_features": 32, "n_classes": 3, "mlp_hidden": None}
    (run.out_dir / "head.json").write_text(json.dumps(head))
    with pytest.raises(ConfigError, match=r"\[old_fm\]: input scaling is 'zscore', but fit-head ran with "
                                          r"'minmax_pm1' \(head.json\); set \[old_fm\] input_scaling = 'minmax_pm1' "
                                          r"or run 'fit-head' again"):
        run.load_old_model()
    config.write_text(config.read_text().replace('size = "tiny"', 'size = "tiny"\ninput_scaling = "minmax_pm1"'))
    with pytest.raises(BadInputError, match=r"old_model.safetensors' is missing"):  # past the check
        TransferRun(config).load_old_model()


# --------------------------------------------------------------------------------------------- the bundle


def _manifest(steps: list[dict], input_scaling: str | None = None, bridge: BridgeInfo | None = None,
              trainable: int = 10, **fm_scalings: str) -> Manifest:
    bridge = bridge or BridgeInfo(2, 3, 4, 5, 6)
    return Manifest(
        task=TaskInfo("stress", ["baseline", "stress"]),
        input=InputInfo("ecg", ["ECG"], 100.0, 10.0, 5.0, ["mV"], preprocessing=steps, input_scaling=input_scaling),
        provenance=Provenance(
            old_fm=FMInfo("papagei-small", input_scaling=fm_scalings.get("old")),
            new_fm=FMInfo("hubert-ecg-tiny", input_scaling=fm_scalings.get("new")),
            layer_i=0, layer_j=1, bridge=bridge, training_data={"source": "test"},
            metrics={"f1_macro": 0.5}, trainable_parameters=trainable, created_at="2026-01-02T03:04:05+00:00",
            biostream_version="0.1.0",
        ),
    )


def test_the_manifest_records_the_scaling_and_reads_older_manifests():
    steps = preprocess_spec_for(InputSpec("ecg", 100.0, 10.0, 1, normalisation="minmax_pm1")).steps()
    manifest = _manifest(steps, "minmax_pm1", old="zscore", new="minmax_pm1")
    data = json.loads(manifest.to_json())
    assert data["input"]["input_scaling"] == "minmax_pm1" and data["input"]["preprocessing"][-1]["op"] == "minmax"
    assert data["provenance"]["old_fm"]["input_scaling"] == "zscore"
    assert Manifest.from_dict(data) == manifest and manifest.input.scaling == "minmax_pm1"
    # Written before the key: it is left out of the JSON and read from the steps (a zscore step is z-score).
    shipped = read_bundle("demo").manifest.to_dict()
    assert shipped["input"]["input_scaling"] == "zscore"  # the shipped bundle records it
    del shipped["input"]["input_scaling"]
    older = Manifest.from_dict(shipped)
    assert older.input.input_scaling is None and "input_scaling" not in older.to_dict()["input"]
    assert older.input.scaling == "zscore"
    old_eeg = _manifest([{"op": "remove_mean"}, {"op": "scale", "factor": 0.01}])
    assert old_eeg.input.scaling == "uv_over_100"
    assert _manifest([]).input.scaling is None
    data["input"]["input_scaling"] = "zscore"
    with pytest.raises(ManifestError, match=r"'input.input_scaling' is 'zscore', but the preprocessing steps do "
                                            r"'minmax_pm1'"):
        Manifest.from_dict(data)
    data["input"]["input_scaling"] = "minmax"
    with pytest.raises(ManifestError, match=r"'input.input_scaling' must be one of \['zscore', 'minmax_pm1', "
                                            r"'uv_over_100', 'none'\], got 'minmax'"):
        Manifest.from_dict(data)
    data["input"]["input_scaling"] = "minmax_pm1"
    data["provenance"]["new_fm"]["input_scaling"] = "published"
    with pytest.raises(ManifestError, match=r"'provenance.new_fm.input_scaling' must be one of"):
        Manifest.from_dict(data)


def test_an_exported_bundle_runs_the_published_scaling_and_says_so(tmp_path):
    new = HubertECG.from_pretrained(_published_checkpoint("hubert_ecg", tmp_path), window_s=10.0)
    old = Papagei.from_config(PapageiConfig.small(), window_s=10.0, random_state=2)
    i, j = 0, 3
    generator = torch.Generator().manual_seed(3)
    n_tokens, d_out = old.layer_shapes()[j - 1]
    bridge = PrototypeBridge(BridgeConfig(d_in=new.width, n_tokens=n_tokens, d_out=d_out, rank=2, n_prototypes=4),
                             generator=generator)
    with torch.no_grad():
        bridge.B.normal_(0.0, 1.0, generator=generator)
    head = make_head(old.layer_shapes()[-1][1], 2, generator=generator)
    model = BridgedModel(preprocess_for(new.input_spec), new, bridge, old, head, i=i, j=j).eval()
    spec = model.new_preprocess.spec
    manifest = _manifest(spec.steps(), spec.input_scaling, BridgeInfo.from_config(bridge.config),
                         bridge.config.n_parameters, old=old.input_scaling, new=new.input_scaling)
    x = _ecg_windows(4, 1, seed=2)
    x[3] = -2.0  # a flat window: probabilities, not NaN
    bundle = export_bundle(tmp_path / "ecg.bxb", model, manifest, bridge, inputs=x)  # ONNX checked against torch
    assert bundle.manifest.input.scaling == "minmax_pm1"
    got = open_session(bundle.onnx_bytes, device="cpu").session.run(None, {"window": x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), atol=DEFAULT_TOLERANCE, rtol=0)
    assert np.isfinite(got).all()
    text = "\n".join(bundle_summary(bundle))
    assert "; minmax(range=[-1, 1], axis=per window, per channel) (inside the graph)" in text
    assert "input scaling: minmax_pm1 (per window and channel: min -> -1, max -> +1)" in text
    assert "new FM:        hubert-ecg-tiny (random init), input minmax_pm1, layers 0..0" in text
    # A manifest that names another scaling than the graph does is not written.
    zscore_steps = preprocess_spec_for(InputSpec("ecg", 100.0, 10.0, 1)).steps()
    wrong = replace(manifest, input=replace(manifest.input, preprocessing=zscore_steps, input_scaling="zscore"))
    with pytest.raises(ExportError, match=r"the manifest's input scaling is 'zscore', but the model's preprocessing "
                                          r"does 'minmax_pm1'; bundle '.+wrong.bxb' not written"):
        export_bundle(tmp_path / "wrong.bxb", model, wrong, bridge, inputs=x)
    assert not (tmp_path / "wrong.bxb").exists()
