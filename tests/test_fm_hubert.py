"""HuBERT-ECG adapter: layer split vs ``transformers.HubertModel``, checkpoint layouts, safe loading, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import HubertConfig, HubertModel

from bridges.fm.checkpoints import (
    CheckpointError,
    UnsafeCheckpointError,
    check_state_keys,
    file_sha256,
    load_torch_state,
    pickled_globals,
    strip_prefix,
)
from bridges.fm.hubert_ecg import HubertECG, hubert_ecg_config, tiny_config
from devices.errors import BadInputError


class HuBERTECGConfig(HubertConfig):
    """Stand-in for the HuBERT-ECG training code's config class, pickled into original ``.pt`` files."""

    model_type = "hubert_ecg"

    def __init__(self, ensemble_length: int = 1, vocab_sizes: list[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.ensemble_length = ensemble_length
        self.vocab_sizes = vocab_sizes or [100]


class RunsShell:
    """A pickle payload that runs a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _tiny(seed: int = 0, **kwargs) -> HubertECG:
    return HubertECG.from_config(tiny_config(), window_s=30, seed=seed, **kwargs)


def _x(batch: int = 2, channels: int = 1, n_samples: int = 3000, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, channels, n_samples, generator=torch.Generator().manual_seed(seed))


def _reference(model: HubertECG) -> HubertModel:
    """An independent ``HubertModel`` holding the adapter's weights."""
    ref = HubertModel(model.config)
    ref.load_state_dict(model.model.state_dict())
    return ref.eval()


def _with_heads(state: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """Add HuBERT-ECG's pre-training heads and masking vector, as published checkpoints have them."""
    heads = {
        "final_proj.0.weight": torch.randn(256, width),
        "final_proj.0.bias": torch.randn(256),
        "label_embedding.0.weight": torch.randn(100, 256),
        "masked_spec_embed": torch.rand(width),
    }
    return {**state, **heads}


def _old_weight_norm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the positional conv's parametrization keys to the pre-2.1 ``weight_g``/``weight_v`` style."""
    names = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    out = {}
    for key, value in state.items():
        for new, old in names.items():
            key = key.replace(new, old)
        out[key] = value
    return out


def _out(model: HubertECG, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.suffix(model.embed(x), 0)


# --- shapes of the published sizes -----------------------------------------------------------------------


def test_small_layer_shapes_match_design():
    small = HubertECG.from_config("small", window_s=60)
    assert small.n_layers == 8 and small.width == 512
    assert sum(p.numel() for p in small.parameters()) == pytest.approx(30.2e6, rel=0.005)
    assert small.layer_shapes() == [(93, 512)] * 8
    spec = small.input_spec
    assert (spec.modality, spec.sfreq_hz, spec.n_samples, spec.n_channels) == ("ecg", 100.0, 6000, 1)
    assert spec.normalisation == "zscore"
    half = HubertECG(small.config, window_s=30)
    assert half.layer_shapes() == [(46, 512)] * 8
    assert (small.n_tokens(3000), small.n_tokens(6000)) == (46, 93)


def test_size_configs():
    for size, dims in {"small": (512, 8, 8, 2048), "base": (768, 12, 12, 3072), "large": (960, 16, 12, 3840)}.items():
        cfg = hubert_ecg_config(size)
        got = (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.intermediate_size)
        assert got == dims
        assert tuple(cfg.conv_kernel) == (10, 3, 3, 2, 2) and tuple(cfg.conv_stride) == (4, 2, 2, 2, 2)
        assert not cfg.conv_bias and cfg.feat_extract_norm == "group" and cfg.feat_proj_layer_norm
        assert (cfg.num_conv_pos_embeddings, cfg.num_conv_pos_embedding_groups) == (128, 16)
    with pytest.raises(ValueError, match="huge"):
        hubert_ecg_config("huge")


# --- the layer split equals HubertModel --------------------------------------------------------------------


@pytest.mark.parametrize("stable", [False, True], ids=["post-norm", "pre-norm"])
def test_split_equals_hubert_model(stable):
    config = tiny_config().to_dict()
    config["do_stable_layer_norm"] = stable
    model = HubertECG.from_config(config, window_s=30, seed=0)
    x = _x()
    with torch.no_grad():
        ref = _reference(model)(x[:, 0], output_hidden_states=True)
        full = model.suffix(model.embed(x), 0)
        torch.testing.assert_close(full, ref.last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x), ref.last_hidden_state.mean(dim=1), atol=1e-5, rtol=0)
        states = model.hidden_states(x)
        assert len(states) == model.n_layers == 2
        if not stable:  # pre-norm models apply the final norm to HF's last hidden state only
            for k, h in enumerate(states):
                torch.testing.assert_close(h, ref.hidden_states[k + 1], atol=1e-5, rtol=0)
        for i in range(model.n_layers):
            h = model.prefix(x, i)
            torch.testing.assert_close(h, states[i], atol=0, rtol=0)
            resumed = model.suffix(h, i + 1) if i + 1 < model.n_layers else model.finalize(h)
            torch.testing.assert_close(resumed, full, atol=1e-5, rtol=0)


def test_leads_are_flattened_lead_major():
    model = HubertECG.from_config(tiny_config(), window_s=10, n_channels=3, seed=0)
    x = _x(channels=3, n_samples=1000)
    with torch.no_grad():
        expected = _reference(model)(torch.cat([x[:, 0], x[:, 1], x[:, 2]], dim=1)).last_hidden_state
    torch.testing.assert_close(_out(model, x), expected, atol=1e-5, rtol=0)
    assert model.layer_shapes() == [(46, 32)] * 2


def test_bad_layer_index_and_input():
    model = _tiny()
    x = _x(batch=1)
    with pytest.raises(IndexError, match=r"'upto' must be in \[0, 1\]"):
        model.prefix(x, 2)
    with pytest.raises(IndexError, match=r"'start' must be in \[0, 1\]"):
        model.suffix(model.embed(x), -1)
    with pytest.raises(ValueError, match="batch, channels, samples"):
        model.embed(x[:, 0])
    with pytest.raises(ValueError, match="too short"):
        model.embed(x[..., :8])


# --- checkpoint layouts round-trip -------------------------------------------------------------------------


def test_hf_directory_from_save_pretrained(tmp_path):
    model = _tiny(seed=3)
    model.model.save_pretrained(tmp_path / "hf")
    loaded = HubertECG.from_pretrained(tmp_path / "hf", window_s=30)
    x = _x()
    torch.testing.assert_close(_out(loaded, x), _out(model, x), atol=0, rtol=0)


def test_hf_directory_in_hubert_ecg_layout(tmp_path):
    """config.json with model_type hubert_ecg and extra fields; safetensors with heads and old weight-norm keys."""
    model = _tiny(seed=4)
    folder = tmp_path / "hubert-ecg-tiny"
    folder.mkdir()
    config = {**model.config.to_dict(), "model_type": "hubert_ecg", "vocab_sizes": [100], "ensemble_length": 1}
    config["hidden_dropout"] = 0.1
    (folder / "config.json").write_text(json.dumps(config))
    state = _old_weight_norm_keys(_with_heads(model.model.state_dict(), model.width))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    loaded = HubertECG.from_pretrained(folder, window_s=30)
    assert loaded.config.hidden_dropout == 0.0  # training settings of the file are not taken over
    x = _x()
    torch.testing.assert_close(_out(loaded, x), _out(model, x), atol=0, rtol=0)


@pytest.mark.parametrize("config_class", [HubertConfig, HuBERTECGConfig])
def test_original_pt_without_trusting_pickle(tmp_path, config_class):
    model = _tiny(seed=5)
    pickled_config = config_class(**{k: v for k, v in model.config.to_dict().items() if k != "model_type"})
    checkpoint = {
        "model_state_dict": _old_weight_norm_keys(_with_heads(model.model.state_dict(), model.width)),
        "model_config": pickled_config,
        "pretraining_vocab_sizes": [100],
        "global_step": 12,
        "best_val_loss": 1.5,
    }
    path = tmp_path / "hubert_ecg_tiny.pt"
    torch.save(checkpoint, path)
    assert any(name.endswith(config_class.__name__) for name in pickled_globals(path))
    # Plain weights-only loading refuses the config object ...
    with pytest.raises(UnsafeCheckpointError, match=config_class.__name__):
        load_torch_state(path)
    # ... the adapter reads it as inert data and rebuilds the tiny architecture from it (no size given).
    loaded = HubertECG.from_pretrained(path, window_s=30)
    assert (loaded.width, loaded.n_layers) == (32, 2)
    x = _x()
    torch.testing.assert_close(_out(loaded, x), _out(model, x), atol=0, rtol=0)


def test_finetuned_bare_state_dict_needs_size(tmp_path):
    model = _tiny(seed=6)
    state = {f"hubert_ecg.{k}": v for k, v in model.model.state_dict().items()}
    state["classifier.weight"] = torch.randn(5, model.width)
    path = tmp_path / "finetuned.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="matches no published size"):
        HubertECG.from_pretrained(path, window_s=30)
    loaded = HubertECG.from_pretrained(path, size=tiny_config(), window_s=30)
    x = _x()
    torch.testing.assert_close(_out(loaded, x), _out(model, x), atol=0, rtol=0)


# --- bad checkpoints ---------------------------------------------------------------------------------------


def test_missing_extra_and_misshaped_keys_in_one_line(tmp_path):
    model = _tiny()
    state = dict(model.model.state_dict())
    del state["encoder.layers.1.attention.k_proj.weight"]
    state["encoder.layers.0.adapter.weight"] = torch.zeros(3)
    state["feature_projection.projection.bias"] = torch.zeros(7)
    path = tmp_path / "broken.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(CheckpointError) as info:
        HubertECG.from_pretrained(path, size=tiny_config(), window_s=30)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "1 missing: encoder.layers.1.attention.k_proj.weight" in message
    assert "1 unexpected: encoder.layers.0.adapter.weight" in message
    assert "feature_projection.projection.bias (7,) vs (32,)" in message
    assert isinstance(info.value, BadInputError)


def test_pickled_code_is_refused_unrun(tmp_path):
    model = _tiny()
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model_state_dict": model.model.state_dict(), "payload": RunsShell(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt.*system") as info:
        HubertECG.from_pretrained(path, size=tiny_config(), window_s=30)
    assert "\n" not in str(info.value)
    assert not marker.exists()
    # Trusting the file runs its code (here: harmless), which is what the flag is for.
    HubertECG.from_pretrained(path, size=tiny_config(), window_s=30, trust_pickle=True)
    assert marker.exists()


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt.*not a readable torch checkpoint"):
        HubertECG.from_pretrained(junk, size="small")
    with pytest.raises(CheckpointError, match="does not exist"):
        HubertECG.from_pretrained(tmp_path / "absent.pt")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        HubertECG.from_pretrained(tmp_path / "empty_dir")


# --- generic helpers ---------------------------------------------------------------------------------------


def test_checkpoint_helpers(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"epoch": 3, "model": {"module.a": torch.ones(2), "module.b": torch.zeros(1)}}, path)
    state = strip_prefix(load_torch_state(path), "module.")
    assert sorted(state) == ["a", "b"]
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    linear = torch.nn.Linear(2, 1)
    check_state_keys(linear, linear.state_dict(), "'self'")
    with pytest.raises(CheckpointError, match=r"1 missing: bias; 1 unexpected: b"):
        check_state_keys(linear, {"weight": torch.ones(1, 2), "b": torch.ones(1)}, "'x'")
