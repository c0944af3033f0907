"""bench/_label_free_selection.py: which epoch each criterion keeps, the regret tables and the verdict."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from bridges.metrics import FitHistory, Metrics

_PATH = Path(__file__).resolve().parents[1] / "bench" / "_label_free_selection.py"
_SPEC = importlib.util.spec_from_file_location("bench_label_free_selection", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench
_SPEC.loader.exec_module(bench)


def scores(f1: float) -> Metrics:
    return Metrics(accuracy=f1, balanced_accuracy=f1, cohen_kappa=0.0, f1_macro=f1, f1_weighted=f1,
                   confusion=[[1, 0], [0, 1]], n=2)


def history(val_f1, pair_loss, agreement_f1, test_f1) -> dict:
    """A run's record as train_bridge / distill write it (kept by labels)."""
    h = FitHistory()
    for epoch, row in enumerate(zip(val_f1, pair_loss, agreement_f1, test_f1, strict=True), start=1):
        h.record_eval(epoch, scores(row[0]), scores(row[3]), pair_loss=row[1], agreement_f1=row[2])
    return h.to_dict()


def test_each_choice_and_its_regret(tmp_path):
    # Run A: labels keep epoch 1 (test 0.5), agreement epoch 2 (0.7), loss and last epoch 3 (0.9, the best in
    # hindsight). Run B: every criterion keeps epoch 1, the best in hindsight; the last epoch is the worst.
    a = bench.selection_record("ECG→PPG", "bridge", 0, history([0.9, 0.8, 0.7], [0.5, 0.4, 0.3],
                                                               [0.6, 0.8, 0.7], [0.5, 0.7, 0.9]))
    b = bench.selection_record("ECG→PPG", "bridge", 1, history([0.9, 0.8, 0.7], [0.1, 0.4, 0.3],
                                                               [0.9, 0.8, 0.7], [0.8, 0.7, 0.2]))
    assert a["chosen_epochs"] == {"loss": 3, "agreement": 2, "labels": 1, "last": 3, "hindsight": 3}
    assert a["test_f1_chosen"] == {"loss": 0.9, "agreement": 0.7, "labels": 0.5, "last": 0.9, "hindsight": 0.9}
    assert b["chosen_epochs"] == {"loss": 1, "agreement": 1, "labels": 1, "last": 3, "hindsight": 1}
    summary = bench.summarise([a, b])
    rows = summary["bridge"]["choices"]
    assert rows["loss"]["mean_test_f1"] == pytest.approx(0.85) and rows["labels"]["mean_test_f1"] == pytest.approx(0.65)
    assert rows["labels"]["mean_regret"] == pytest.approx(0.2) and rows["labels"]["worst_regret"] == pytest.approx(0.4)
    assert rows["loss"]["vs_labels"] == [1, 1, 0] and rows["last"]["vs_labels"] == [1, 0, 1]
    assert summary["bridge"]["best"] == summary["all"]["best"] == "loss" and "distill" not in summary
    text = "\n".join(bench.report_lines({"seeds": 2, "runs": [a, b], "summary": summary}, epochs=3, main_seed=0))
    assert "| BioX-Bridge | **loss** | 0.850 | 0.000 | 0.000 | 1 / 1 / 0 |" in text
    assert "**loss** (BioX-Bridge: loss, distillation: —)" in text and 'DEFAULT_SELECT_BY` should be "loss"' in text
    assert "| ECG→PPG | BioX-Bridge | 0 | 3 / 2 / 1 / 3 | 0.900 | 0.700 | 0.500 | 0.900 | 0.900 | 0.500–0.900 |" in text
    path = bench.plot_regret({"seeds": 2, "runs": [a, b], "summary": summary}, tmp_path / "regret.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_labels_stays_unless_beaten():
    same = history([0.9, 0.8], [0.5, 0.4], [0.9, 0.8], [0.6, 0.6])  # every choice scores 0.6 on test
    summary = bench.summarise([bench.selection_record("EEG→ECG", "distill", 0, same)])
    assert summary["distill"]["best"] == "labels"
    text = "\n".join(bench.report_lines({"seeds": 1, "runs": [], "summary": summary}, epochs=2, main_seed=0))
    assert "neither label-free criterion beats the labeled one" in text
