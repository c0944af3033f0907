"""Scores used by the method: metrics against scikit-learn, linear CKA, and the stage-1 logistic-regression score."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from bridges.data.windows import PairedWindows
from bridges.metrics import evaluate, metrics_from_predictions
from bridges.select import linear_cka, score_features


def _windows(labels: np.ndarray, n_classes: int) -> PairedWindows:
    n = len(labels)
    return PairedWindows(np.zeros((n, 1, 4)), np.zeros((n, 1, 4)), labels, np.array(["s"] * n, dtype=object),
                         [f"c{k}" for k in range(n_classes)], "ecg", "ppg", 100.0, 125.0)


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluate_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes = 4
    y_true = rng.integers(0, 3, 60)  # class 3 never true
    proba = rng.random((60, n_classes))
    proba[y_true == 0, 0] += 0.8  # some skill, so kappa and F1 are not trivial
    y_pred = proba.argmax(1)
    y_true_with_unknown = y_true.copy()
    y_true_with_unknown[:5] = -1  # unknown labels are skipped
    got = evaluate(proba, _windows(y_true_with_unknown, n_classes))
    t, p = y_true[5:], y_pred[5:]
    assert got.n == 55
    assert got.accuracy == pytest.approx(skm.accuracy_score(t, p))
    assert got.balanced_accuracy == pytest.approx(skm.balanced_accuracy_score(t, p))
    assert got.cohen_kappa == pytest.approx(skm.cohen_kappa_score(t, p))
    assert got.f1_macro == pytest.approx(skm.f1_score(t, p, average="macro", zero_division=0))
    assert got.f1_weighted == pytest.approx(skm.f1_score(t, p, average="weighted", zero_division=0))
    assert got.confusion == skm.confusion_matrix(t, p, labels=range(n_classes)).tolist()
    assert got.class_names == ["c0", "c1", "c2", "c3"]


def test_perfect_and_constant_predictions():
    y = np.array([0, 1, 1, 0, 1])
    perfect = metrics_from_predictions(y, y, 2)
    assert (perfect.accuracy, perfect.cohen_kappa, perfect.f1_macro) == (1.0, 1.0, 1.0)
    constant = metrics_from_predictions(y, np.ones_like(y), 2)
    assert constant.cohen_kappa == pytest.approx(skm.cohen_kappa_score(y, np.ones_like(y)))
    assert constant.f1_macro == pytest.approx(skm.f1_score(y, np.ones_like(y), average="macro", zero_division=0))


@pytest.mark.parametrize("n, d", [(50, 8), (12, 300)])  # feature-space form and Gram form
def test_linear_cka_invariances(n, d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, x @ q) == pytest.approx(1.0)  # orthogonal transform
    assert linear_cka(x, 3.0 * x + 5.0) == pytest.approx(1.0)  # isotropic scale and shift
    y = rng.standard_normal((n, 7))
    # Against the definition, computed in feature space directly.
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = np.linalg.norm(yc.T @ xc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(expected)
    assert linear_cka(x, y) < 0.9
    # Trailing dims are flattened: (N, T, d) works like (N, T·d).
    assert linear_cka(x.reshape(n, 2, d // 2), y) == pytest.approx(expected)


def test_logistic_regression_score_ranks_informative_above_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [40, 30, 3])  # a class smaller than the 5 folds
    informative = rng.standard_normal((len(labels), 6)) + 2.0 * np.eye(3)[labels].repeat(2, axis=1)
    noise = rng.standard_normal((len(labels), 6))
    good = score_features(informative, labels, n_folds=5, random_state=0)
    bad = score_features(noise, labels, n_folds=5, random_state=0)
    assert good > 0.8 and bad < 0.6 and good > bad + 0.3
    singleton = np.append(labels, 3)  # a class with one window is left out, not an error
    assert score_features(np.vstack([informative, informative[:1]]), singleton) > 0.8
