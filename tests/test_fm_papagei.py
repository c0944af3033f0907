"""PaPaGei-S adapter: block lengths, canonical token layout, layer addressing, checkpoint loading."""

from __future__ import annotations

import pytest
import torch

from bridges.fm.checkpoints import CheckpointError
from bridges.fm.papagei import BasicBlock, Papagei, PapageiConfig
from devices.errors import BadInputError

# DESIGN §9: the time length entering block k for a 60-s window at 125 Hz.
BLOCK_INPUT_LENGTHS = [7500, 7500, 3750, 3750, 1875, 1875, 938, 938, 469, 469, 235, 235, 118, 118, 59, 59, 30, 30]
BLOCK_OUTPUT_WIDTHS = [32] * 4 + [64] * 4 + [128] * 4 + [256] * 4 + [512] * 2


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    # Many small convolutions: a second intra-op thread only adds wake-up latency on a loaded 2-core box.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Move weights and BatchNorm statistics off their defaults so a load that skips a tensor changes outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.3, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model


@pytest.fixture(scope="module")
def papagei() -> Papagei:
    return _perturb(Papagei.from_config(random_state=0), seed=1)


@pytest.fixture(scope="module")
def ppg() -> torch.Tensor:
    return torch.randn(2, 1, 7500, generator=torch.Generator().manual_seed(2))  # 60 s at 125 Hz, z-scored


@torch.no_grad()
def test_block_lengths_and_widths_match_the_design(papagei: Papagei, ppg: torch.Tensor) -> None:
    assert papagei.n_layers == 18
    assert papagei.layers is papagei.basicblock_list
    spec = papagei.input_spec
    assert (spec.modality, spec.sfreq_hz, spec.window_s, spec.n_channels) == ("ppg", 125.0, 60.0, 1)
    assert (spec.normalisation, spec.scale, spec.n_samples) == ("zscore", 1.0, 7500)
    h = papagei.embed(ppg)
    assert h.shape == (2, 7500, 32)  # canonical (batch, time, channels)
    for k in range(papagei.n_layers):
        assert h.shape[1] == BLOCK_INPUT_LENGTHS[k], f"input of block {k}"
        h = papagei._run_layer(k, h)
        assert h.shape[2] == BLOCK_OUTPUT_WIDTHS[k], f"output of block {k}"
    assert h.shape == (2, 15, 512)
    assert papagei.finalize(h).shape == (2, 15, 512)
    features = papagei(ppg)
    assert features.shape == (2, 512) and papagei.project(features).shape == (2, 512)
    assert [out.shape for out in papagei.moe_heads(features)] == [(2, 1), (2, 1)]
    assert sum(p.numel() for p in papagei.parameters()) == pytest.approx(5.8e6, rel=0.01)


@torch.no_grad()
def test_odd_lengths_round_up_at_every_downsampling() -> None:
    model = Papagei.from_config(PapageiConfig.small(), random_state=3)
    lengths = [state.shape[1] for state in model.hidden_states(torch.randn(1, 1, 7501))]
    assert lengths == [7501, 3751, 3751, 1876, 1876, 938]


@torch.no_grad()
@pytest.mark.parametrize("config", [PapageiConfig(), PapageiConfig.small()], ids=["papagei-s", "small"])
def test_prefix_then_suffix_equals_the_full_forward_at_every_layer(config: PapageiConfig) -> None:
    model = _perturb(Papagei.from_config(config, random_state=4), seed=5)
    ppg = torch.randn(1, 1, 1250, generator=torch.Generator().manual_seed(6))  # 10 s keeps 2 x 18 runs cheap
    full = model.suffix(model.embed(ppg), 0)
    states = model.hidden_states(ppg)
    for i in range(model.n_layers):
        head = model.prefix(ppg, i)
        torch.testing.assert_close(head, states[i])
        tail = model.suffix(head, i + 1) if i + 1 < model.n_layers else model.finalize(head)
        torch.testing.assert_close(tail, full)
    torch.testing.assert_close(model(ppg), full.mean(dim=1))


@torch.no_grad()
def test_shortcut_max_pools_with_a_zero_pad_and_centres_new_channels() -> None:
    block = BasicBlock(2, 5, PapageiConfig.small(), downsample=True, is_first_block=False).eval()
    torch.nn.init.zeros_(block.conv2.conv.weight)
    torch.nn.init.zeros_(block.conv2.conv.bias)  # residual branch is now 0: the output is the shortcut alone
    x = torch.tensor([[[1.0, -3.0, 2.0, 5.0, -4.0], [-1.0, -2.0, -3.0, -4.0, -5.0]]])
    expected = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 5.0, 0.0], [-1.0, -3.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    torch.testing.assert_close(block(x), expected)  # last odd sample pooled with the zero pad: max(-4, 0) = 0


@torch.no_grad()
def test_outputs_match_values_from_the_reference_implementation() -> None:
    # Golden values: PaPaGei's own ResNet1DMoE run once on these exact weights and input.
    model = Papagei.from_config(PapageiConfig.small())
    generator = torch.Generator().manual_seed(21)
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value
        elif key.endswith("running_var"):
            state[key] = torch.rand(value.shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(value.shape, generator=generator) * 0.2
    model.load_state_dict(state)
    features = model(torch.randn(1, 1, 375, generator=torch.Generator().manual_seed(22)))
    expected = torch.tensor([0.111220, 0.071976, 0.446074, 0.0, 0.362365, 0.0, 0.0, 0.0])
    torch.testing.assert_close(features[0], expected, rtol=0, atol=2e-5)
    projected = torch.tensor([-0.066305, 0.391650, -0.028227, 0.035272])
    torch.testing.assert_close(model.project(features)[0, :4], projected, rtol=0, atol=2e-5)
    moe = torch.tensor([[0.023728], [0.139749]])
    torch.testing.assert_close(torch.cat(model.moe_heads(features)), moe, rtol=0, atol=2e-5)


def test_layer_index_out_of_range_is_refused(papagei: Papagei, ppg: torch.Tensor) -> None:
    with pytest.raises(IndexError, match=r"'upto' must be in \[0, 17\] for papagei, got 18"):
        papagei.prefix(ppg, 18)
    with pytest.raises(IndexError, match=r"'start' must be in \[0, 17\] for papagei, got -1"):
        papagei.suffix(torch.zeros(1, 15, 512), -1)


@torch.no_grad()
@pytest.mark.parametrize("prefix", ["", "module."], ids=["plain", "ddp"])
def test_checkpoint_loads_with_identical_outputs(papagei: Papagei, ppg: torch.Tensor, tmp_path, prefix: str) -> None:
    path = tmp_path / "papagei_s.pt"
    torch.save({f"{prefix}{k}": v for k, v in papagei.state_dict().items()}, path)
    loaded = Papagei.from_pretrained(path)
    assert not loaded.training
    features = loaded(ppg)
    torch.testing.assert_close(features, papagei(ppg), rtol=0, atol=0)
    torch.testing.assert_close(loaded.project(features), papagei.project(features), rtol=0, atol=0)
    for mine, theirs in zip(loaded.moe_heads(features), papagei.moe_heads(features), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda s: s.pop("basicblock_list.7.conv2.conv.weight"), r"1 missing: basicblock_list\.7\.conv2\.conv\.weight"),
        (lambda s: s.update({"projector.0.weight": torch.zeros(256, 512)}), r"1 unexpected: projector\.0\.weight"),
        (lambda s: s.update({"dense.weight": torch.zeros(256, 512)}), r"mis-shaped.*dense\.weight \(256, 512\)"),
    ],
    ids=["missing", "unexpected", "mis-shaped"],
)
def test_checkpoint_that_does_not_fit_is_refused_in_one_line(papagei: Papagei, tmp_path, edit, expected) -> None:
    state = dict(papagei.state_dict())
    edit(state)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=expected) as caught:
        Papagei.from_pretrained(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_input_of_the_wrong_shape_is_refused(papagei: Papagei) -> None:
    with pytest.raises(BadInputError, match=r"\(batch, 1 channel, samples\), got \(1, 2, 7500\)"):
        papagei.embed(torch.zeros(1, 2, 7500))
    with pytest.raises(BadInputError, match="whole number of samples at 125 Hz"):
        Papagei.from_config(PapageiConfig.small(), window_s=0.001)


def test_dropout_acts_only_in_training_mode() -> None:
    model = Papagei.from_config(PapageiConfig.small(), random_state=8)
    ppg = torch.randn(2, 1, 500, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        torch.testing.assert_close(model(ppg), model(ppg), rtol=0, atol=0)
        model.train()
        assert not torch.equal(model.prefix(ppg, 2), model.prefix(ppg, 2))
