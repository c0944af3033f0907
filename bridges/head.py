"""Step 1 of the method: a classification head on the old FM (DESIGN.md §2.1).

A linear probe (or small MLP) on the old FM's last layer, mean-pooled, trained on labeled old-modality windows
with class-weighted cross-entropy and Adam; the epoch with the best validation macro-F1 is kept. With the FM
frozen (the default) the pooled features are computed once per split and the probe trains on them, so an epoch
costs a few matrix products. With ``unfreeze=True`` the FM is fine-tuned with the head (its BatchNorm statistics
and dropout stay in eval mode, so the features the bridge later aligns to are the ones the head was trained on).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bridges._batching import balanced_class_weights, known_labels, map_batches, state_copy, train_only_used
from bridges.data.windows import PairedWindows
from bridges.fm.base import FoundationModel
from bridges.metrics import count_trainable, metrics_from_predictions
from bridges.models import OldModel, freeze, make_head
from devices._checks import ensure_int, ensure_positive

logger = logging.getLogger(__name__)

__all__ = ["HeadResult", "fit_head"]


@dataclass
class HeadResult:
    """What :func:`fit_head` did.

    Attributes
    ----------
    best_epoch : int
        Epoch (1-based) whose weights were kept: the best validation macro-F1 (ties: lower validation loss).
    epochs : int
        Epochs run.
    train_loss, val_loss, val_f1_macro : list of float
        Per epoch (class-weighted cross-entropy; validation macro-F1).
    val_metrics : dict
        :class:`bridges.metrics.Metrics` of the kept head on the validation split.
    n_trainable : int
        Trainable parameters during fitting (head, plus the FM when unfrozen).
    seconds_per_epoch : float
        Mean wall time of a training epoch (s), feature caching excluded.
    cache_seconds : float
        Wall time of computing the frozen features once (s); 0 when unfrozen.
    """

    best_epoch: int
    epochs: int
    train_loss: list[float]
    val_loss: list[float]
    val_f1_macro: list[float]
    val_metrics: dict[str, Any]
    n_trainable: int
    seconds_per_epoch: float
    cache_seconds: float
    n_train: int
    n_val: int
    unfreeze: bool
    mlp_hidden: int | None
    class_weights: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def fit_head(
    old_fm: FoundationModel,
    preprocess: nn.Module | None,
    windows_train: PairedWindows,
    windows_val: PairedWindows,
    *,
    unfreeze: bool = False,
    mlp_hidden: int | None = None,
    class_weights: bool = True,
    epochs: int = 100,
    lr: float = 1e-3,
    batch_size: int = 64,
    random_state: int = 0,
    progress: bool = False,
) -> tuple[OldModel, HeadResult]:
    """Train a head on the old FM's pooled last layer with the old-modality half of labeled windows.

    Parameters
    ----------
    old_fm : FoundationModel
        The old FM (left frozen unless ``unfreeze``; modified in place when unfrozen).
    preprocess : nn.Module or None
        Raw old-modality window ``(B, C, L)`` → FM input ``(B, C, L)``; identity when None.
    windows_train, windows_val : PairedWindows
        Labeled windows (``old`` half used); windows labeled -1 are skipped.
    unfreeze : bool
        Fine-tune the FM together with the head.
    mlp_hidden : int, optional
        Hidden width of a two-layer MLP head; a linear probe when None.
    class_weights : bool
        Weight the cross-entropy by inverse class frequency (``n / (K · count)``) of the training split.
    epochs : int
        Training epochs.
    lr : float
        Adam learning rate.
    batch_size : int
        Windows (or cached feature rows) per step.
    random_state : int
        Seed of the head initialisation and the shuffling.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    model : OldModel
        Preprocess + FM + the best-by-validation head, frozen and in eval mode.
    result : HeadResult
    """
    epochs = ensure_int(epochs, "epochs", minimum=1)
    batch_size = ensure_int(batch_size, "batch_size", minimum=1)
    lr = ensure_positive(lr, "lr")
    n_classes = windows_train.n_classes
    train_index = known_labels(windows_train.labels, n_classes, "the training split")
    val_index = known_labels(windows_val.labels, n_classes, "the validation split")
    y_train = torch.from_numpy(windows_train.labels[train_index])
    y_val = windows_val.labels[val_index]

    generator = torch.Generator().manual_seed(random_state)
    freeze(old_fm)
    probe_features = OldModel(old_fm, nn.Identity(), preprocess).eval()
    width = map_batches(probe_features.features, windows_train.old[train_index[:1]], 1).shape[1]
    model = OldModel(old_fm, make_head(width, n_classes, mlp_hidden=mlp_hidden, generator=generator), preprocess)
    model.eval()
    weights = balanced_class_weights(y_train.numpy(), n_classes) if class_weights else torch.ones(n_classes)

    cache_seconds = 0.0
    if unfreeze:
        train_only_used(model, model, torch.from_numpy(windows_train.old[train_index[:1]]))
        x_train = torch.from_numpy(windows_train.old[train_index])
        x_val = windows_val.old[val_index]
        trained = model  # preprocess + FM + head
        forward_train = model
        forward_val = model
    else:
        start = time.perf_counter()
        x_train = map_batches(model.features, windows_train.old[train_index], batch_size)
        x_val = map_batches(model.features, windows_val.old[val_index], batch_size)
        cache_seconds = time.perf_counter() - start
        trained = model.head
        forward_train = model.head
        forward_val = model.head
    parameters = [p for p in trained.parameters() if p.requires_grad]
    n_trainable = count_trainable(trained)
    optimizer = torch.optim.Adam(parameters, lr=lr)

    best_key: tuple[float, float] | None = None
    best_state = state_copy(trained)
    best_epoch = 0
    history: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_f1_macro": []}
    train_seconds = 0.0
    bar = tqdm(range(1, epochs + 1), desc="fit-head", disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        order = torch.randperm(len(x_train), generator=generator)
        total = 0.0
        for s in range(0, len(order), batch_size):
            batch = order[s : s + batch_size]
            loss = F.cross_entropy(forward_train(x_train[batch]), y_train[batch], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch)
        train_seconds += time.perf_counter() - start
        logits = map_batches(forward_val, x_val, batch_size)
        val_loss = float(F.cross_entropy(logits, torch.from_numpy(y_val), weight=weights))
        val_f1 = metrics_from_predictions(y_val, logits.argmax(1).numpy(), n_classes).f1_macro
        history["train_loss"].append(total / len(order))
        history["val_loss"].append(val_loss)
        history["val_f1_macro"].append(val_f1)
        bar.set_postfix(loss=f"{total / len(order):.4f}", val_f1=f"{val_f1:.3f}")
        if best_key is None or (val_f1, -val_loss) > best_key:
            best_key, best_epoch, best_state = (val_f1, -val_loss), epoch, state_copy(trained)

    trained.load_state_dict(best_state)
    freeze(model)
    logits = map_batches(forward_val, x_val, batch_size)
    val_metrics = metrics_from_predictions(y_val, logits.argmax(1).numpy(), n_classes, windows_val.class_names)
    logger.info(
        "Head fitted: best epoch %d of %d, validation macro-F1 %.3f (%d trainable parameters).",
        best_epoch, epochs, val_metrics.f1_macro, n_trainable,
    )
    result = HeadResult(
        best_epoch=best_epoch,
        epochs=epochs,
        val_metrics=val_metrics.to_dict(),
        n_trainable=n_trainable,
        seconds_per_epoch=train_seconds / epochs,
        cache_seconds=cache_seconds,
        n_train=len(train_index),
        n_val=len(val_index),
        unfreeze=bool(unfreeze),
        mlp_hidden=mlp_hidden,
        class_weights=[float(w) for w in weights],
        **history,
    )
    return model, result
