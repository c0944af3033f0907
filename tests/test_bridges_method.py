"""The method's steps (fit-head, select, train, distill) on tiny FMs and synthetic paired windows.

The paired task: a latent class sets the frequency and amplitude of both an "ECG" (100 Hz) and a "PPG" (125 Hz)
signal recorded together; each window has a random phase and noise. Old FM: tiny HuBERT-ECG (2 layers);
new FM: small PaPaGei (6 blocks); both random weights; 5-s windows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _synthetic_pairs import new_fm, old_fm, synthetic_pairs
from torch import nn

from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.data.windows import PairedWindows
from bridges.distill import distill
from bridges.head import fit_head
from bridges.metrics import count_trainable, evaluate
from bridges.models import BridgedModel
from bridges.plots import plot_confusion, plot_selection, plot_training_curve
from bridges.select import pseudo_labels, score_output_layers, select_positions
from bridges.train import (
    TrainOptions,
    bridge_loss,
    cache_bridge_inputs,
    cache_targets,
    layer_input,
    train_bridge,
)
from devices.errors import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def splits() -> dict[str, PairedWindows]:
    return {"train": synthetic_pairs(64, 1), "val": synthetic_pairs(32, 2), "pair": synthetic_pairs(64, 3),
            "test": synthetic_pairs(48, 4)}


@pytest.fixture(scope="module")
def old_model(splits):
    torch.set_num_threads(1)
    model, result = fit_head(old_fm(), None, splits["train"], splits["val"], epochs=30, lr=1e-2, batch_size=16)
    assert result.val_metrics["f1_macro"] > 0.8  # the old model must work for the rest to mean anything
    return model


class Counting(nn.Module):
    """Wraps a module and counts its calls (instead of a forward hook)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


def _random_bridge(d_in: int, tokens: torch.Tensor, seed: int) -> PrototypeBridge:
    config = BridgeConfig(d_in=d_in, n_tokens=tokens.shape[1], d_out=tokens.shape[2], rank=3, n_prototypes=5)
    generator = torch.Generator().manual_seed(seed)
    bridge = PrototypeBridge(config, generator=generator)
    bridge.init_prototypes_from(tokens, generator=generator)
    with torch.no_grad():  # B starts at zero; make it non-zero so the suffix sees a real input
        bridge.B.normal_(0.0, 1.0, generator=generator)
    return bridge


def test_shapes_and_probabilities(splits, old_model):
    x_old = torch.from_numpy(splits["test"].old[:5])
    x_new = torch.from_numpy(splits["test"].new[:5])
    assert old_model(x_old).shape == (5, 2)
    tokens = cache_targets(old_model, splits["pair"].old[:4], j=1, align="bridge")
    assert tokens.shape == (4, 7, 32)  # tiny HuBERT: 500 samples → 7 tokens of width 32
    fm = new_fm()
    bridged = BridgedModel(nn.Identity(), fm, _random_bridge(4, tokens, 0), old_model.fm, old_model.head, i=2, j=1)
    assert bridged.bridge_input(x_new).shape == (5, 4)  # PaPaGei-small block 2 has 4 channels
    proba = bridged(x_new)
    assert proba.shape == (5, 2)
    torch.testing.assert_close(proba.sum(dim=1), torch.ones(5))
    with pytest.raises(IndexError, match="'i' must be in"):
        BridgedModel(nn.Identity(), fm, _random_bridge(4, tokens, 0), old_model.fm, old_model.head, i=6, j=1)


def test_gradients_reach_only_the_bridge(splits, old_model):
    tokens = cache_targets(old_model, splits["pair"].old[:4], j=0, align="bridge")
    bridged = BridgedModel(nn.Identity(), new_fm(), _random_bridge(4, tokens, 1), old_model.fm, old_model.head,
                           i=2, j=0)
    bridged.train()
    assert not bridged.new_fm.training and not bridged.old_fm.training  # frozen parts stay in eval mode
    proba = bridged(torch.from_numpy(splits["pair"].new[:6]))
    proba[:, 0].sum().backward()
    for name, param in bridged.named_parameters():
        if name.startswith("bridge."):
            assert param.requires_grad and param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert not param.requires_grad and param.grad is None, name
    assert count_trainable(bridged) == bridged.bridge.config.n_parameters


@pytest.mark.parametrize("align", ["last", "bridge"])
def test_cached_step_equals_full_forward(splits, old_model, align):
    """The cache is exact: the loss and bridge gradients from cached tensors equal those of a full forward."""
    pair = splits["pair"].subset(np.arange(12))
    fm = new_fm()
    tokens = cache_targets(old_model, pair.old, j=1, align="bridge")
    bridged = BridgedModel(nn.Identity(), fm, _random_bridge(8, tokens, 2), old_model.fm, old_model.head, i=4, j=1)

    def step(pred, target):
        bridged.bridge.zero_grad()
        loss = bridge_loss(pred, target, "cosine")
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in bridged.bridge.parameters()]

    # Cached path, as train_bridge runs it (caches built in batches of 5, another batch size than the step's).
    features = cache_bridge_inputs(fm, None, pair.new, i=4, batch_size=5)
    targets = cache_targets(old_model, pair.old, j=1, align=align, batch_size=5)
    pred = bridged.bridge(features) if align == "bridge" else bridged.final_hidden_from_features(features)
    cached_loss, cached_grads = step(pred, targets)

    # Uncached: everything from the raw windows in one pass (prefix → pool → bridge → suffix).
    x_new, x_old = torch.from_numpy(pair.new), torch.from_numpy(pair.old)
    raw_features = fm.prefix(x_new, upto=4).mean(dim=1)
    pred = bridged.bridge(raw_features)
    if align == "last":
        pred = old_model.fm.suffix(pred, start=1)
        with torch.no_grad():
            target = old_model.fm.suffix(old_model.fm.embed(x_old), start=0)
    else:
        with torch.no_grad():
            target = old_model.fm.prefix(x_old, upto=0)
    full_loss, full_grads = step(pred, target)

    torch.testing.assert_close(cached_loss, full_loss, rtol=1e-5, atol=1e-6)
    for cached, full in zip(cached_grads, full_grads, strict=True):
        torch.testing.assert_close(cached, full, rtol=1e-4, atol=1e-6)


def test_bridged_model_runs_only_the_layers_it_needs(splits, old_model):
    old = old_fm()
    new = new_fm()
    old_layers = old.model.encoder.layers
    for k in range(len(old_layers)):
        old_layers[k] = Counting(old_layers[k])
    for k in range(len(new.basicblock_list)):
        new.basicblock_list[k] = Counting(new.basicblock_list[k])
    old.model.feature_extractor = Counting(old.model.feature_extractor)
    tokens = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(0))
    bridged = BridgedModel(nn.Identity(), new, _random_bridge(4, tokens, 3), old, old_model.head, i=2, j=1)
    with torch.no_grad():
        bridged(torch.from_numpy(splits["test"].new[:3]))
    assert [block.calls for block in new.basicblock_list] == [1, 1, 1, 0, 0, 0]
    assert [layer.calls for layer in old.model.encoder.layers] == [0, 1]
    assert old.model.feature_extractor.calls == 0  # the old FM's stem never runs


def test_score_output_layers_equals_direct_cka(splits, old_model):
    from bridges.select import linear_cka

    pair = splits["pair"].subset(np.arange(20))
    features = cache_bridge_inputs(new_fm(), None, pair.new, i=3).numpy()
    for reduce in ("flatten", "mean"):
        sweep = score_output_layers(features, old_model.fm, None, pair, reduce=reduce, batch_size=7)
        assert len(sweep) == old_model.fm.n_layers
        for j, score in enumerate(sweep):
            with torch.no_grad():
                h = layer_input(old_model.fm, torch.from_numpy(pair.old), j)
            direct = linear_cka(features, h if reduce == "flatten" else h.mean(dim=1))
            assert score == pytest.approx(direct, abs=1e-5)


def test_end_to_end_bridge_beats_chance_and_distill_costs_more(splits, old_model, tmp_path):
    fm = new_fm()
    before = {k: v.clone() for k, v in fm.state_dict().items()}
    selection = select_positions(old_model, fm, None, splits["pair"], random_state=0)
    assert 0 <= selection.i < fm.n_layers and 0 <= selection.j < old_model.fm.n_layers
    assert len(selection.f1_per_layer) == fm.n_layers and len(selection.cka_per_layer) == old_model.fm.n_layers
    assert selection.i == int(np.argmax(selection.f1_per_layer))
    assert selection.j == int(np.argmax(selection.cka_per_layer))

    bridged, result = train_bridge(
        old_model, fm, None, splits["pair"], splits["val"], splits["test"], i=selection.i, j=selection.j, rank=4,
        n_prototypes=16, epochs=12, lr=1e-2, batch_size=16, eval_every=3, random_state=0, progress=False,
        plot_path=tmp_path / "curve.png",
    )
    assert result.eval_epochs == [3, 6, 9, 12] and len(result.train_loss) == 12
    assert result.train_loss[-1] < result.train_loss[0]
    assert result.n_trainable == BridgeConfig(result.d_in, result.n_tokens, result.d_out, 4, 16).n_parameters
    test = evaluate(bridged, splits["test"])  # from raw windows, through the whole deployed pipeline
    assert test.f1_macro > 0.8  # chance is 0.5
    assert test.to_dict() == result.test_metrics  # the cached evaluation during training was exact
    assert evaluate(old_model, splits["test"]).n == len(splits["test"])

    student, distilled = distill(old_model, fm, None, splits["pair"], splits["val"], splits["test"], epochs=3,
                                 lr=1e-3, batch_size=16)
    assert distilled.n_trainable > result.n_trainable
    # The whole FM copy on the feature path is trained (not PaPaGei's unused dense/MoE heads), plus the head.
    off_path = ("dense.", "expert_layers", "gating_network", "basicblock_list.0.bn1.")  # block 0 skips its bn1
    on_path = sum(p.numel() for n, p in student.fm.named_parameters() if not n.startswith(off_path))
    assert distilled.n_trainable == on_path + sum(p.numel() for p in student.head.parameters())
    assert evaluate(student, splits["test"]).to_dict() == distilled.test_metrics
    for key, value in fm.state_dict().items():  # distillation trained a copy
        torch.testing.assert_close(value, before[key])

    for res in (selection, result, distilled):
        json.dumps(res.to_dict(), allow_nan=False)
    png = [plot_selection(selection, tmp_path / "select.png"), tmp_path / "curve.png",
           plot_training_curve(distilled, tmp_path / "distill.png"), plot_confusion(test, tmp_path / "cm.png")]
    for path in png:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_targets_on_disk_train_the_same_bridge(splits, old_model, tmp_path):
    runs = [
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], splits["test"], i=2, j=1, rank=2,
                     n_prototypes=4, epochs=2, lr=1e-2, progress=False, targets_dir=directory)
        for directory in (None, tmp_path / "targets")
    ]
    (in_ram, a), (on_disk, b) = runs
    assert a.train_loss == b.train_loss and a.val_metrics == b.val_metrics
    for key, value in in_ram.bridge.state_dict().items():
        torch.testing.assert_close(on_disk.bridge.state_dict()[key], value, rtol=0, atol=0)
    assert list((tmp_path / "targets").iterdir()) == []  # the temporary file is gone


def test_micro_batches_give_the_same_updates(splits, old_model):
    runs = [
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], None, i=2, j=1, rank=2,
                     n_prototypes=4, epochs=2, lr=1e-2, batch_size=16, progress=False, micro_batch_size=micro,
                     cache_batch_size=passes)
        # 16 = 5 + 5 + 5 + 1: uneven chunks are weighted by their size; caching in passes of 3 changes nothing.
        for micro, passes in ((None, None), (5, 3))
    ]
    (whole, a), (chunked, b) = runs
    assert b.micro_batch_size == 5 and a.train_loss == pytest.approx(b.train_loss, rel=1e-5)
    for key, value in whole.bridge.state_dict().items():
        torch.testing.assert_close(chunked.bridge.state_dict()[key], value, rtol=1e-4, atol=1e-6)


def test_bfloat16_training_learns_and_keeps_float32_weights(splits, old_model):
    bridged, result = train_bridge(
        old_model, new_fm(), None, splits["pair"], splits["val"], splits["test"], i=2, j=1, rank=4, n_prototypes=16,
        epochs=6, lr=1e-2, random_state=0, progress=False, precision="bfloat16",
    )
    assert result.precision == "bfloat16" and result.train_loss[-1] < result.train_loss[0]
    assert all(p.dtype == torch.float32 for p in bridged.bridge.parameters())
    assert evaluate(bridged, splits["test"]).f1_macro > 0.7  # the float32 pipeline works with the bf16-trained bridge
    with pytest.raises(ValueError, match="precision"):
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], None, i=2, j=1, precision="fp8")


def test_rand_p_and_other_losses_run(splits, old_model):
    for loss, align in (("mse", "last"), ("l1", "bridge")):
        _, result = train_bridge(
            old_model, new_fm(), None, splits["pair"], splits["val"], None, i=1, j=0, rank=2, n_prototypes=4,
            init="rand_P", loss=loss, align=align, epochs=2, lr=1e-2, progress=False,
        )
        assert result.test_metrics == {} and result.best_epoch in (1, 2) and np.isfinite(result.train_loss).all()


def test_train_options_object_and_keywords_train_the_same_bridge(splits, old_model):
    common = dict(i=2, j=1, progress=False)
    (a_model, a), (b_model, b) = (
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], None, rank=2, n_prototypes=4,
                     epochs=2, lr=1e-2, random_state=3, **common),
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], None,
                     options=TrainOptions(rank=2, n_prototypes=4, epochs=2, lr=1e-2, random_state=0),
                     random_state=3, **common),  # a keyword replaces that field of the options
    )
    assert a.train_loss == b.train_loss and a.val_history == b.val_history
    for key, value in a_model.bridge.state_dict().items():
        assert torch.equal(b_model.bridge.state_dict()[key], value)


def test_train_options_check_themselves():
    options = TrainOptions(epochs=np.int64(3), lr=1, micro_batch_size=32, batch_size=8)
    assert type(options.epochs) is int and type(options.lr) is float
    assert options.chunk == 8 and options.pass_size == 8  # the micro-batch is at most a batch
    assert TrainOptions(micro_batch_size=4, cache_batch_size=64).pass_size == 64
    assert [e for e in range(1, 8) if TrainOptions(epochs=7, eval_every=3).evaluates_at(e)] == [3, 6, 7]
    with pytest.raises(ValueError, match="'align' is 'middle'"):
        TrainOptions(align="middle")
    with pytest.raises(ValueError, match="'init' is 'zeros'"):
        TrainOptions(init="zeros")
    with pytest.raises(ValueError, match="'eval_every' must be >= 1"):
        TrainOptions(eval_every=0)
    with pytest.raises(ValueError, match="'max_grad_norm' must be a finite number > 0"):
        TrainOptions(max_grad_norm=0.0)
    with pytest.raises(TypeError, match="'cache_batch_size' must be an integer"):
        TrainOptions(cache_batch_size=2.5)
    fm = old_fm()
    fm.check_layer_index(fm.n_layers - 1, "j")
    with pytest.raises(IndexError, match=r"'j' must be in \[0, 1\] for hubert-ecg, got 2 instead"):
        fm.check_layer_index(2, "j")


def test_fit_head_unfrozen_trains_the_fm(splits):
    fm = old_fm()
    n_fm = sum(p.numel() for p in fm.parameters())
    before = fm.model.encoder.layers[0].attention.q_proj.weight.clone()
    model, result = fit_head(fm, None, splits["train"].subset(np.arange(24)), splits["val"], unfreeze=True,
                             mlp_hidden=8, epochs=2, lr=1e-3, batch_size=8)
    assert result.n_trainable == n_fm + count_trainable(nn.Sequential(nn.Linear(32, 8), nn.Linear(8, 2)))
    assert not torch.equal(before, fm.model.encoder.layers[0].attention.q_proj.weight)
    assert count_trainable(model) == 0  # frozen again afterwards


def test_bad_inputs(splits, old_model):
    with pytest.raises(IndexError, match="'j' must be in"):
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], None, i=0, j=2, epochs=1)
    with pytest.raises(ValueError, match="'loss' is 'huber'"):
        train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], None, i=0, j=0, loss="huber")
    unlabeled = splits["val"].subset(np.arange(8))
    unlabeled.labels[:] = -1
    with pytest.raises(BadInputError, match="validation split has no labeled window"):
        train_bridge(old_model, new_fm(), None, splits["pair"], unlabeled, None, i=0, j=0, epochs=1)
    with pytest.raises(BadInputError, match="probabilities must be"):
        evaluate(np.zeros((3, 2)), splits["val"])
    labels = pseudo_labels(old_model, splits["pair"])
    from bridges.select import score_input_layers

    with pytest.raises(BadInputError, match="at least two classes"):
        score_input_layers(new_fm(), None, splits["pair"], np.zeros_like(labels))
