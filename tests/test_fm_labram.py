"""LaBraM adapter: token layout, layer addressing, time-embedding extension, checkpoint loading, channel names."""

from __future__ import annotations

import argparse

import pytest
import torch

from bridges.fm.checkpoints import CheckpointError
from bridges.fm.labram import ISRUC_CHANNELS, Labram, LabramConfig, labram_position
from devices.errors import BadInputError

# Keys the released labram-base.pth holds beside the encoder: student-side pretraining parts and the wrapper's heads.
STUDENT_EXTRAS = {"mask_token": (1, 1, 200), "lm_head.weight": (8192, 200), "lm_head.bias": (8192,)}
STUDENT_EXTRAS |= {"norm.weight": (200,), "norm.bias": (200,)}
WRAPPER_EXTRAS = {"lm_head.weight": (8192, 200), "lm_head.bias": (8192,), "projection_head.0.weight": (200, 200)}
WRAPPER_EXTRAS |= {"projection_head.0.bias": (200,), "logit_scale": ()}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Hundreds of tiny ops: a second intra-op thread only adds wake-up latency (5x slower on a loaded 2-core box).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def labram() -> Labram:
    model = Labram.from_config(random_state=0)
    _perturb(model, seed=1, skip="fc_norm.")  # the released file has no fc_norm: it stays the identity LayerNorm
    return model


@pytest.fixture(scope="module")
def eeg() -> torch.Tensor:
    generator = torch.Generator().manual_seed(2)
    return torch.randn(2, 6, 30 * 200, generator=generator) * 0.5  # 30 s of scaled EEG, 6 channels


def _perturb(model: torch.nn.Module, seed: int, skip: str) -> None:
    """Move every weight off its initial value so that a load that skips a tensor changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not name.startswith(skip):
                param.add_(torch.randn(param.shape, generator=generator) * 0.05)


def _released_container(model: Labram) -> dict:
    """The layout of labram-base.pth: encoder under model/student., plus pretraining extras and training state."""
    generator = torch.Generator().manual_seed(3)
    weights = {f"student.{k}": v.clone() for k, v in model.state_dict().items() if not k.startswith("fc_norm.")}
    weights |= {f"student.{k}": torch.randn(shape, generator=generator) for k, shape in STUDENT_EXTRAS.items()}
    weights |= {k: torch.randn(shape, generator=generator) for k, shape in WRAPPER_EXTRAS.items()}
    return {"model": weights, "epoch": 49, "args": argparse.Namespace(model="labram_base_patch200_1600_8k_vocab")}


def test_layer_shapes_match_the_design(labram: Labram) -> None:
    assert labram.n_layers == 12
    assert labram.layer_shapes() == [(181, 200)] * 12
    assert labram.layers is labram.blocks
    spec = labram.input_spec
    assert (spec.modality, spec.sfreq_hz, spec.window_s, spec.n_samples) == ("eeg", 200.0, 30.0, 6000)
    assert spec.channel_labels == ISRUC_CHANNELS
    assert (spec.unit, spec.scale, spec.normalisation) == ("uV", 0.01, "none")
    assert sum(p.numel() for p in labram.parameters()) == pytest.approx(5.8e6, rel=0.01)


@torch.no_grad()
def test_prefix_then_suffix_equals_the_full_forward_at_every_layer(labram: Labram) -> None:
    eeg = torch.randn(1, 6, 4 * 200, generator=torch.Generator().manual_seed(6))  # 4 s keeps 25 runs cheap
    full = labram.suffix(labram.embed(eeg), 0)
    states = labram.hidden_states(eeg)
    for i in range(labram.n_layers):
        head = labram.prefix(eeg, i)
        torch.testing.assert_close(head, states[i])
        tail = labram.suffix(head, i + 1) if i + 1 < labram.n_layers else labram.finalize(head)
        torch.testing.assert_close(tail, full)
    torch.testing.assert_close(labram(eeg), labram.pool(full))
    assert labram(eeg).shape == (1, 200)


def _seeded_state(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Weights drawn from a fixed generator, independent of the model's own initialisation code."""
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in model.state_dict().items()}


@torch.no_grad()
def test_output_matches_values_from_the_reference_implementation() -> None:
    # Golden values: LaBraM's own NeuralTransformer (mean pooling, fc_norm) run once on these exact weights/input.
    model = Labram.from_config(LabramConfig.small(), channels=["C3", "O2"], window_s=3)
    model.load_state_dict(_seeded_state(model, 11))
    eeg = torch.randn(1, 2, 600, generator=torch.Generator().manual_seed(12))
    expected = [-0.158126, -0.077681, 0.017069, 0.336536, -0.031119, 0.056828, 0.207974, 0.103873]
    features = model(eeg)
    torch.testing.assert_close(features[0, :8], torch.tensor(expected), rtol=0, atol=2e-5)
    assert features.abs().mean().item() == pytest.approx(0.209742, abs=2e-5)


def test_layer_index_out_of_range_is_refused(labram: Labram, eeg: torch.Tensor) -> None:
    with pytest.raises(IndexError, match=r"'upto' must be in \[0, 11\] for labram, got 12"):
        labram.prefix(eeg, 12)
    with pytest.raises(IndexError, match=r"'start' must be in \[0, 11\] for labram, got -1"):
        labram.suffix(torch.zeros(1, 181, 200), -1)


def test_time_embedding_uses_the_table_up_to_16_s_and_interpolates_beyond(labram: Labram) -> None:
    table = labram.time_embed[0].detach()
    torch.testing.assert_close(labram.time_embedding(16), table)
    torch.testing.assert_close(labram.time_embedding(5), table[:5])
    stretched = labram.time_embedding(31).detach()
    assert stretched.shape == (31, 200)
    torch.testing.assert_close(stretched[0], table[0])
    torch.testing.assert_close(stretched[-1], table[-1])
    torch.testing.assert_close(stretched[2], table[1])  # 31 rows over 16: every second row lands on a table row
    torch.testing.assert_close(stretched[1], (table[0] + table[1]) / 2)


@torch.no_grad()
@pytest.mark.parametrize("window_s", [4, 30])
def test_tokens_carry_the_time_code_of_their_second(window_s: int) -> None:
    model = Labram.from_config(LabramConfig.small(), channels=["Fp1", "C3"], window_s=window_s, random_state=4)
    second = torch.randn(1, 2, 200, generator=torch.Generator().manual_seed(5))
    x = second.repeat(1, 1, window_s)  # the same 1-s patch every second: tokens differ by their time code only
    tokens = model.embed(x)
    assert tokens.shape == (1, 1 + 2 * window_s, 100)
    per_channel = tokens[0, 1:].reshape(2, window_s, 100)  # channel-major token order
    code = model.time_embedding(window_s)
    for channel in range(2):
        torch.testing.assert_close(per_channel[channel] - per_channel[channel, :1], code - code[:1])
    assert model.layer_shapes() == [(1 + 2 * window_s, 100)] * 2


@torch.no_grad()
def test_released_checkpoint_layout_loads_with_identical_outputs(labram: Labram, eeg: torch.Tensor, tmp_path) -> None:
    path = tmp_path / "labram-base.pth"
    torch.save(_released_container(labram), path)
    loaded = Labram.from_pretrained(path)
    assert not loaded.training
    torch.testing.assert_close(loaded.hidden_states(eeg)[-1], labram.hidden_states(eeg)[-1], rtol=0, atol=0)
    torch.testing.assert_close(loaded(eeg), labram(eeg), rtol=0, atol=0)


@torch.no_grad()
def test_bare_encoder_state_with_fc_norm_loads_it(labram: Labram, eeg: torch.Tensor, tmp_path) -> None:
    state = {k: v.clone() for k, v in labram.state_dict().items()}
    state["fc_norm.weight"] = torch.full((200,), 2.0)
    state["head.weight"] = torch.zeros(5, 200)  # a fine-tuned classifier, not part of the encoder
    torch.save(state, tmp_path / "finetuned.pth")
    loaded = Labram.from_pretrained(tmp_path / "finetuned.pth", channels=["F3", "C3", "O1", "F4", "C4", "O2"])
    torch.testing.assert_close(loaded.fc_norm.weight, torch.full((200,), 2.0))
    torch.testing.assert_close(loaded.prefix(eeg, 11), labram.prefix(eeg, 11), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda w: w.pop("student.blocks.3.gamma_1"), r"1 missing: blocks\.3\.gamma_1"),
        (lambda w: w.update({"student.blocks.0.attn.q_bias": torch.zeros(200)}), r"1 unexpected: .*attn\.q_bias"),
        (lambda w: w.update({"student.time_embed": torch.zeros(1, 30, 200)}), r"mis-shaped.*time_embed \(1, 30, 200\)"),
    ],
    ids=["missing", "unexpected", "mis-shaped"],
)
def test_checkpoint_that_does_not_fit_is_refused_in_one_line(labram: Labram, tmp_path, edit, expected) -> None:
    container = _released_container(labram)
    edit(container["model"])
    path = tmp_path / "broken.pth"
    torch.save(container, path)
    with pytest.raises(CheckpointError, match=expected) as caught:
        Labram.from_pretrained(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_checkpoint_that_pickles_code_is_refused_unread(tmp_path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model": {"student.cls_token": torch.zeros(1, 1, 200)}, "hook": torch.nn.ReLU()}, path)
    with pytest.raises(CheckpointError, match="trust_pickle"):
        Labram.from_pretrained(path)


def test_channel_labels_map_to_10_20_positions() -> None:
    assert labram_position("F3") == labram_position("F3-A2") == labram_position("f3_m2") == labram_position("EEG F3")
    assert labram_position("FP1") == 1 and labram_position("P8-O2") == 128  # first and last rows of the table
    assert labram_position("FP1-F7") == 121  # a bipolar name of the table is itself, not its first electrode
    model = Labram.from_config(LabramConfig.small(), channels=["F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1"])
    assert model.channels == ISRUC_CHANNELS


def test_unknown_or_repeated_channels_are_refused() -> None:
    with pytest.raises(BadInputError, match="EEG channel 'ECG' is not one of LaBraM's 128"):
        Labram.from_config(LabramConfig.small(), channels=["F3", "ECG"])
    with pytest.raises(BadInputError, match="same electrode twice"):
        Labram.from_config(LabramConfig.small(), channels=["F3-A2", "F3-M1"])
    with pytest.raises(BadInputError, match="whole number of 1-s patches"):
        Labram.from_config(LabramConfig.small(), window_s=2.5)


def test_input_of_the_wrong_shape_is_refused(labram: Labram) -> None:
    with pytest.raises(BadInputError, match=r"\(batch, 6 channels, a multiple of 200 samples\), got \(1, 6, 250\)"):
        labram.embed(torch.zeros(1, 6, 250))
    with pytest.raises(BadInputError, match=r"got \(1, 5, 6000\)"):
        labram.embed(torch.zeros(1, 5, 6000))


def test_config_rejects_a_width_the_stem_cannot_produce() -> None:
    with pytest.raises(ValueError, match="'embed_dim' must be conv_channels \\* ceil\\(patch_samples / 8\\) = 200"):
        LabramConfig(embed_dim=128)


def test_random_state_makes_weights_reproducible_without_touching_the_global_rng() -> None:
    before = torch.random.get_rng_state()
    first = Labram.from_config(LabramConfig.small(), random_state=7)
    second = Labram.from_config(LabramConfig.small(), random_state=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.testing.assert_close(first.pos_embed, second.pos_embed, rtol=0, atol=0)
