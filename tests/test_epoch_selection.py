"""Choosing the kept epoch without labels: the criteria, their bookkeeping, and train_bridge / distill obeying them.

The training runs use the synthetic paired task of the method's tests (tiny HuBERT-ECG → small PaPaGei).
"""

from __future__ import annotations

import math

import pytest
import torch
from _synthetic_pairs import new_fm, old_fm, synthetic_pairs

from bridges.config import ConfigError
from bridges.distill import distill, distillation_loss
from bridges.epoch_selection import DEFAULT_SELECT_BY, SELECT_BY, best_index
from bridges.head import fit_head
from bridges.metrics import FitHistory, Metrics, evaluate, metrics_from_predictions, predict_proba
from bridges.select import pseudo_labels
from bridges.train import TrainOptions, bridge_loss, train_bridge
from bridges.workflow import TransferRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scores(f1: float) -> Metrics:
    """Metrics whose macro-F1 is ``f1`` (the only field selection reads)."""
    return Metrics(accuracy=f1, balanced_accuracy=f1, cohen_kappa=0.0, f1_macro=f1, f1_weighted=f1,
                   confusion=[[1, 0], [0, 1]], n=2)


# Four scored epochs on which the three criteria disagree; the fifth diverged (its loss is NaN).
LABELS_F1 = [0.5, 0.9, 0.9, 0.6, 0.2]  # best 0.9 first at epoch 2 (tie with 3: the earlier wins)
PAIR_LOSS = [0.40, 0.35, 0.30, 0.30, math.nan]  # lowest first at epoch 3; NaN is never preferred
AGREEMENT_F1 = [0.7, 0.6, 0.8, 0.95, 0.1]  # best at epoch 4
EXPECTED = {"labels": 2, "loss": 3, "agreement": 4}
KEPT_SO_FAR = {"labels": [True, True, False, False, False], "loss": [True, True, True, False, False],
               "agreement": [True, False, True, True, False]}


@pytest.mark.parametrize("select_by", SELECT_BY)
def test_each_criterion_keeps_its_own_epoch(select_by):
    history = FitHistory(select_by=select_by)
    kept = [
        history.record_eval(epoch, scores(f1), scores(1 - f1), pair_loss=loss, agreement_f1=agree)
        for epoch, f1, loss, agree in zip(range(1, 6), LABELS_F1, PAIR_LOSS, AGREEMENT_F1, strict=True)
    ]
    assert history.chosen_epochs == EXPECTED  # every criterion's choice, whichever is in charge
    assert history.best_epoch == EXPECTED[select_by]
    assert kept == KEPT_SO_FAR[select_by]  # True where the epoch is the best so far (its state is copied)
    assert history.val_metrics["f1_macro"] == LABELS_F1[EXPECTED[select_by] - 1]
    assert history.test_metrics["f1_macro"] == pytest.approx(1 - LABELS_F1[EXPECTED[select_by] - 1])
    assert history.val_pair_loss[:4] == PAIR_LOSS[:4] and history.val_agreement_f1 == AGREEMENT_F1


def test_best_index_edge_cases():
    assert best_index([math.nan, 0.5, 0.4], "loss") == 2
    assert best_index([math.nan, math.nan], "agreement") == 0  # all diverged: the first
    assert best_index([0.3, 0.3], "labels") == 0
    with pytest.raises(ValueError, match=r"'select_by' is 'f1', but has to be one of \['loss', 'agreement', "
                                         r"'labels'\]"):
        best_index([0.1], "f1")
    with pytest.raises(ValueError, match="no scored epoch"):
        best_index([], "loss")


@pytest.fixture(scope="module")
def splits():
    val = synthetic_pairs(32, 2)
    val.labels[:4] = -1  # unlabeled pairs count for the label-free criteria only
    return {"train": synthetic_pairs(64, 1), "val": val, "pair": synthetic_pairs(64, 3),
            "test": synthetic_pairs(48, 4)}


@pytest.fixture(scope="module")
def old_model(splits):
    torch.set_num_threads(1)
    model, result = fit_head(old_fm(), None, splits["train"], splits["val"], epochs=30, lr=1e-2, batch_size=16)
    assert result.val_metrics["f1_macro"] > 0.8
    return model


def agreement_f1(model, old_model, windows) -> float:
    """Macro-F1 of ``model``'s predictions on every new-modality window against the old model's on the paired ones."""
    predicted = predict_proba(model, windows).argmax(1)
    return metrics_from_predictions(pseudo_labels(old_model, windows), predicted, windows.n_classes).f1_macro


def test_train_bridge_keeps_the_epoch_select_by_names(splits, old_model, tmp_path):
    runs = {
        select_by: train_bridge(old_model, new_fm(), None, splits["pair"], splits["val"], splits["test"], i=2, j=1,
                                rank=4, n_prototypes=16, epochs=6, lr=1e-2, random_state=0, progress=False,
                                select_by=select_by, plot_path=tmp_path / f"{select_by}.png")
        for select_by in SELECT_BY
    }
    first = runs["labels"][1]
    assert first.select_by == "labels" and TrainOptions().select_by == DEFAULT_SELECT_BY
    assert first.chosen_epochs["loss"] != first.chosen_epochs["labels"]  # this run makes them disagree
    val, x_old = splits["val"], torch.from_numpy(splits["val"].old)
    for select_by, (bridged, result) in runs.items():
        # Selection only picks among the same epochs: training and every recorded criterion are identical.
        assert result.train_loss == first.train_loss and result.val_pair_loss == first.val_pair_loss
        assert result.val_agreement_f1 == first.val_agreement_f1 and result.chosen_epochs == first.chosen_epochs
        k = result.eval_epochs.index(result.chosen_epochs[select_by])
        assert result.best_epoch == result.eval_epochs[k] and result.select_by == select_by
        # The returned bridge is that epoch's, scored here from raw windows through the deployed pipeline.
        assert evaluate(bridged, splits["test"]).to_dict() == result.test_history[k] == result.test_metrics
        assert evaluate(bridged, val).to_dict() == result.val_history[k] and result.val_history[k]["n"] == 28
        with torch.no_grad():
            pred = bridged.final_hidden_from_features(bridged.bridge_input(torch.from_numpy(val.new)))
            loss = float(bridge_loss(pred, old_model.final_hidden(x_old)))
        assert loss == pytest.approx(result.val_pair_loss[k], abs=1e-5)
        assert agreement_f1(bridged, old_model, val) == pytest.approx(result.val_agreement_f1[k])
        assert (tmp_path / f"{select_by}.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match=r"'select_by' is 'val_f1', but has to be one of \['loss', 'agreement'"):
        TrainOptions(select_by="val_f1")


def test_distill_keeps_the_epoch_select_by_names(splits, old_model, tmp_path):
    runs = {
        select_by: distill(old_model, new_fm(), None, splits["pair"], splits["val"], splits["test"], epochs=5,
                           lr=1e-3, batch_size=16, select_by=select_by, plot_path=tmp_path / f"{select_by}.png")
        for select_by in ("loss", "labels")
    }
    first = runs["labels"][1]
    assert first.chosen_epochs["loss"] != first.chosen_epochs["labels"]  # this run makes them disagree
    val = splits["val"]
    with torch.no_grad():
        teacher = old_model(torch.from_numpy(val.old))
    for select_by, (student, result) in runs.items():
        assert result.train_loss == first.train_loss and result.val_pair_loss == first.val_pair_loss
        k = result.eval_epochs.index(result.chosen_epochs[select_by])
        assert result.best_epoch == result.eval_epochs[k] and result.select_by == select_by
        assert evaluate(student, splits["test"]).to_dict() == result.test_history[k] == result.test_metrics
        with torch.no_grad():
            loss = float(distillation_loss(student(torch.from_numpy(val.new)), teacher, result.temperature))
        assert loss == pytest.approx(result.val_pair_loss[k], rel=1e-4)
        assert agreement_f1(student, old_model, val) == pytest.approx(result.val_agreement_f1[k])
        assert (tmp_path / f"{select_by}.png").stat().st_size > 0
    with pytest.raises(ValueError, match=r"'select_by' is 'kl', but has to be one of \['loss', 'agreement'"):
        distill(old_model, new_fm(), None, splits["pair"], val, None, select_by="kl")


@pytest.mark.parametrize("section", ["train", "distill"])
def test_the_config_names_the_accepted_criteria(tmp_path, section):
    config = tmp_path / "run.toml"
    config.write_text(f'[{section}]\nselect_by = "val_f1"\n')
    with pytest.raises(ConfigError, match=rf"run.toml \[{section}\]: 'select_by' is 'val_f1', but has to be one of "
                                          r"\['loss', 'agreement', 'labels'\]\.$"):
        TransferRun(config)
    config.write_text(f'[{section}]\nselect_by = "agreement"\n')
    assert TransferRun(config).section(section).select_by == "agreement"
    assert TransferRun(None).section(section).select_by == DEFAULT_SELECT_BY
