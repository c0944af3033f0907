"""Classification metrics of the method: accuracy, balanced accuracy, Cohen's kappa, macro/weighted F1, confusion.

Computed here from the confusion matrix (tests check them against scikit-learn). Windows with an unknown label
(-1) are left out. Which window half a model reads is its ``side`` attribute: ``"old"`` for :class:`OldModel`,
``"new"`` for the bridged and distilled models.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from bridges.data.windows import PairedWindows
from bridges.epoch_selection import SELECT_BY, best_index, check_select_by
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["Metrics", "count_trainable", "evaluate", "metrics_from_predictions", "predict_proba"]


@dataclass
class Metrics:
    """Scores of one model on one split.

    Attributes
    ----------
    accuracy, balanced_accuracy, cohen_kappa, f1_macro, f1_weighted : float
        As scikit-learn defines them (macro/weighted F1 over the classes seen in truth or prediction).
    confusion : list of list of int
        ``confusion[t][p]``: windows of true class ``t`` predicted as ``p``, ``K × K``.
    n : int
        Windows scored (those with a known label).
    class_names : list of str
        Name of each class index.
    """

    accuracy: float
    balanced_accuracy: float
    cohen_kappa: float
    f1_macro: float
    f1_weighted: float
    confusion: list[list[int]]
    n: int
    class_names: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def count_trainable(module: nn.Module) -> int:
    """Number of parameters of ``module`` with ``requires_grad`` (shared parameters counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def metrics_from_predictions(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, class_names: list[str] | None = None
) -> Metrics:
    """Score predicted class indices against true ones.

    Parameters
    ----------
    y_true, y_pred : array of shape (n,), int
        True and predicted class indices in ``[0, n_classes)``; entries with ``y_true == -1`` are skipped.
    n_classes : int
        Number of classes ``K`` (size of the confusion matrix).
    class_names : list of str, optional
        Names for the report.
    """
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    y_pred = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    known = y_true >= 0
    y_true, y_pred = y_true[known], y_pred[known]
    n = len(y_true)
    if n == 0:
        raise BadInputError("no window has a known label (all are -1); nothing to score")
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, y_pred), 1)
    support = confusion.sum(axis=1).astype(float)  # true windows per class
    predicted = confusion.sum(axis=0).astype(float)
    tp = np.diag(confusion).astype(float)
    accuracy = tp.sum() / n
    seen = support > 0
    balanced = float(np.mean(tp[seen] / support[seen]))
    expected = float((support * predicted).sum()) / n**2
    kappa = 0.0 if expected == 1.0 else float((accuracy - expected) / (1.0 - expected))
    denominator = support + predicted  # 2tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    # Like scikit-learn's default labels: classes present in the truth or in the predictions.
    present = denominator > 0
    return Metrics(
        accuracy=float(accuracy),
        balanced_accuracy=balanced,
        cohen_kappa=kappa,
        f1_macro=float(f1[present].mean()),
        f1_weighted=float((f1 * support).sum() / support.sum()),
        confusion=confusion.tolist(),
        n=n,
        class_names=list(class_names) if class_names is not None else [str(k) for k in range(n_classes)],
    )


@torch.no_grad()
def predict_proba(model: nn.Module, windows: PairedWindows, *, batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, K)`` of ``model`` on the half of ``windows`` it reads (its ``side``)."""
    side = getattr(model, "side", "new")
    x_all = windows.old if side == "old" else windows.new
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, len(x_all), batch_size):
            x = torch.from_numpy(x_all[start : start + batch_size])
            proba = model.predict_proba(x) if hasattr(model, "predict_proba") else model(x)
            chunks.append(proba.float().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks) if chunks else np.zeros((0, windows.n_classes), dtype=np.float32)


def evaluate(
    probabilities_or_model: np.ndarray | torch.Tensor | nn.Module, windows: PairedWindows, *, batch_size: int = 64
) -> Metrics:
    """Score a model, or its precomputed probabilities, against the true labels of ``windows``.

    Parameters
    ----------
    probabilities_or_model : array of shape (N, K), or nn.Module
        Class probabilities (or any scores whose argmax is the prediction) for every window, or a model with a
        ``side`` attribute (``"old"`` / ``"new"``) and ``predict_proba`` (see :mod:`bridges.models`).
    windows : PairedWindows
        The split; windows labeled -1 are skipped.
    batch_size : int
        Windows per forward pass when a model is given.

    Returns
    -------
    Metrics
    """
    if isinstance(probabilities_or_model, nn.Module):
        proba = predict_proba(probabilities_or_model, windows, batch_size=batch_size)
    else:
        proba = np.asarray(
            probabilities_or_model.detach().cpu().numpy()
            if isinstance(probabilities_or_model, torch.Tensor)
            else probabilities_or_model
        )
    if proba.shape != (len(windows), windows.n_classes):
        raise BadInputError(
            f"probabilities must be (n_windows, n_classes) = {(len(windows), windows.n_classes)}, got {proba.shape}"
        )
    return metrics_from_predictions(windows.labels, proba.argmax(axis=1), windows.n_classes, windows.class_names)


@dataclass(kw_only=True)
class FitHistory:
    """Per-epoch record shared by the bridge and distillation results (JSON-serialisable via :meth:`to_dict`).

    Attributes
    ----------
    train_loss : list of float
        Mean training loss per epoch (``train_loss[e - 1]`` for 1-based epoch ``e``).
    eval_epochs : list of int
        Epochs at which validation and test were scored.
    val_history, test_history : list of dict
        :class:`Metrics` dicts at each of ``eval_epochs`` against the true labels (``test_history`` empty without
        a test split).
    val_pair_loss : list of float
        At each of ``eval_epochs``: the training loss on the validation pairs (criterion ``"loss"``).
    val_agreement_f1 : list of float
        At each of ``eval_epochs``: macro-F1 against the old model's pseudo-labels on the paired old-modality
        validation windows (criterion ``"agreement"``).
    select_by : str
        The criterion that chose the kept epoch (:mod:`bridges.epoch_selection`).
    chosen_epochs : dict of str to int
        The epoch each criterion of :data:`bridges.epoch_selection.SELECT_BY` would keep.
    best_epoch : int
        Epoch of the kept model (``chosen_epochs[select_by]``).
    val_metrics, test_metrics : dict
        Metrics of the kept model (true labels).
    seconds_per_epoch : float
        Mean wall time of a training epoch (s), evaluation and caching excluded.
    cache_seconds : float
        Wall time of computing cached features or targets once (s).
    """

    train_loss: list[float] = field(default_factory=list)
    eval_epochs: list[int] = field(default_factory=list)
    val_history: list[dict[str, Any]] = field(default_factory=list)
    test_history: list[dict[str, Any]] = field(default_factory=list)
    val_pair_loss: list[float] = field(default_factory=list)
    val_agreement_f1: list[float] = field(default_factory=list)
    select_by: str = "labels"
    chosen_epochs: dict[str, int] = field(default_factory=dict)
    best_epoch: int = 0
    val_metrics: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, Any] = field(default_factory=dict)
    seconds_per_epoch: float = 0.0
    cache_seconds: float = 0.0

    def record_eval(
        self, epoch: int, val: Metrics, test: Metrics | None, *, pair_loss: float, agreement_f1: float
    ) -> bool:
        """Record the criteria of a scored epoch; return True when ``select_by`` keeps it (so far).

        Parameters
        ----------
        epoch : int
            The 1-based epoch just scored.
        val, test : Metrics
            Against the true labels of the validation and test splits (test None without one).
        pair_loss : float
            The training loss on the validation pairs.
        agreement_f1 : float
            Macro-F1 against the old model's pseudo-labels on the validation pairs.
        """
        self.eval_epochs.append(epoch)
        self.val_history.append(val.to_dict())
        self.val_pair_loss.append(float(pair_loss))
        self.val_agreement_f1.append(float(agreement_f1))
        if test is not None:
            self.test_history.append(test.to_dict())
        self.chosen_epochs = {
            criterion: self.eval_epochs[best_index(self.criterion_values(criterion), criterion)]
            for criterion in SELECT_BY
        }
        kept = self.chosen_epochs[self.select_by] == epoch
        if kept:
            self.best_epoch = epoch
            self.val_metrics = self.val_history[-1]
            self.test_metrics = self.test_history[-1] if test is not None else {}
        return kept

    def criterion_values(self, criterion: str) -> list[float]:
        """The values of ``criterion`` (one of :data:`~bridges.epoch_selection.SELECT_BY`) at ``eval_epochs``."""
        if criterion == "loss":
            return list(self.val_pair_loss)
        if criterion == "agreement":
            return list(self.val_agreement_f1)
        check_select_by(criterion)
        return [h["f1_macro"] for h in self.val_history]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)
