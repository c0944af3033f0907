"""The knowledge-distillation baseline (DESIGN.md §2): new FM + head taught by the old model's soft predictions.

On the same paired set the bridge sees, the student (new preprocess + new FM + a fresh head) reads the
new-modality window and is trained to match the old model's predictions on the old-modality window:
``T² · KL(softmax(teacher / T) || softmax(student / T))``. The teacher's logits are computed once. With
``unfreeze_fm=True`` (the usual baseline) the whole new FM is fine-tuned; it is a deep copy, so the FM passed in
(shared with the bridged model) is left untouched. The FM's BatchNorm statistics and dropout stay in eval mode,
as in :func:`bridges.head.fit_head`. Model selection as for the bridge (:mod:`bridges.epoch_selection`): every
scored epoch records the distillation loss on the validation pairs (same ``T``), agreement with the teacher's
pseudo-labels on them, and macro-F1 against true labels; ``select_by`` says which keeps the epoch.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bridges._batching import known_labels, map_batches, state_copy, train_only_used
from bridges.data.windows import PairedWindows
from bridges.epoch_selection import DEFAULT_SELECT_BY, check_select_by
from bridges.fm.base import FoundationModel
from bridges.metrics import FitHistory, Metrics, count_trainable, metrics_from_predictions
from bridges.models import DistilledModel, OldModel, freeze, make_head
from devices._checks import ensure_int, ensure_positive
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["DistillResult", "distill", "distillation_loss"]


@dataclass
class DistillResult(FitHistory):
    """What :func:`distill` did (fields as in :class:`bridges.train.TrainResult`)."""

    temperature: float
    epochs: int
    lr: float
    batch_size: int
    unfreeze_fm: bool
    n_pair: int
    n_trainable: int


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(teacher/T) || softmax(student/T))``, batch mean; logits ``(B, K)``."""
    teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True) * temperature**2


def distill(
    old_model: OldModel,
    new_fm: FoundationModel,
    new_preprocess: nn.Module | None,
    pair_windows: PairedWindows,
    val_windows: PairedWindows,
    test_windows: PairedWindows | None,
    *,
    temperature: float = 2.0,
    epochs: int = 20,
    lr: float = 1e-4,
    batch_size: int = 16,
    unfreeze_fm: bool = True,
    mlp_hidden: int | None = None,
    eval_every: int = 1,
    select_by: str = DEFAULT_SELECT_BY,
    random_state: int = 0,
    progress: bool = False,
    plot_path: str | Path | None = None,
) -> tuple[DistilledModel, DistillResult]:
    """Train new FM + head on the old model's soft predictions over the paired windows.

    Parameters
    ----------
    old_model : OldModel
        The teacher (frozen), read on the ``old`` half of ``pair_windows``.
    new_fm : FoundationModel
        The student's FM; deep-copied, never modified.
    new_preprocess : nn.Module or None
        Raw new-modality window → new-FM input; identity when None.
    pair_windows : PairedWindows
        Paired windows; labels not used.
    val_windows, test_windows : PairedWindows
        Paired windows for choosing the epoch (both halves; see ``select_by``) / labeled windows (``new`` half)
        for the record (test may be None).
    temperature : float
        Softening temperature ``T``.
    epochs, lr, batch_size
        Adam schedule.
    unfreeze_fm : bool
        Fine-tune the FM copy with the head (else the FM stays frozen and only the head trains, on features
        cached once).
    mlp_hidden : int, optional
        Hidden width of an MLP head; linear when None.
    eval_every : int
        Score validation/test every this many epochs (and after the last).
    select_by : {"loss", "agreement", "labels"}
        Which validation criterion keeps the epoch: the distillation loss on the validation pairs, macro-F1
        against the teacher's pseudo-labels on them, or macro-F1 against true labels (all three are recorded).
    random_state : int
        Seed of the head initialisation and shuffling.
    progress : bool
        Show a tqdm progress bar.
    plot_path : str or Path, optional
        Write the training-curve PNG (:func:`bridges.plots.plot_training_curve`) here.

    Returns
    -------
    model : DistilledModel
        The student of the epoch ``select_by`` keeps, frozen, in eval mode.
    result : DistillResult
    """
    temperature = ensure_positive(temperature, "temperature")
    epochs = ensure_int(epochs, "epochs", minimum=1)
    batch_size = ensure_int(batch_size, "batch_size", minimum=1)
    eval_every = ensure_int(eval_every, "eval_every", minimum=1)
    lr = ensure_positive(lr, "lr")
    check_select_by(select_by)
    if len(pair_windows) == 0:
        raise BadInputError("the paired split is empty; distillation has nothing to train on")
    val_index = known_labels(val_windows.labels, val_windows.n_classes, "the validation split")
    test_index = (
        known_labels(test_windows.labels, test_windows.n_classes, "the test split") if test_windows is not None
        else np.zeros(0, dtype=np.int64)
    )
    generator = torch.Generator().manual_seed(random_state)
    student_fm = freeze(copy.deepcopy(new_fm))
    preprocess = freeze(copy.deepcopy(new_preprocess) if new_preprocess is not None else nn.Identity())
    probe = DistilledModel(student_fm, nn.Identity(), preprocess)
    width = map_batches(probe.features, pair_windows.new[:1], 1).shape[1]
    model = DistilledModel(
        student_fm, make_head(width, pair_windows.n_classes, mlp_hidden=mlp_hidden, generator=generator), preprocess
    ).eval()

    start = time.perf_counter()
    old_model.eval()
    teacher = map_batches(old_model, pair_windows.old, batch_size)  # logits (N, K), once
    val_teacher = map_batches(old_model, val_windows.old, batch_size)  # and on every validation pair
    if unfreeze_fm:
        train_only_used(model, model, torch.from_numpy(pair_windows.new[:1]))
        inputs = torch.from_numpy(pair_windows.new)
        val_inputs = torch.from_numpy(val_windows.new)
        test_inputs = torch.from_numpy(test_windows.new[test_index]) if len(test_index) else None
        trained: nn.Module = model
    else:
        inputs = map_batches(model.features, pair_windows.new, batch_size)
        val_inputs = map_batches(model.features, val_windows.new, 64)
        test_inputs = map_batches(model.features, test_windows.new[test_index], 64) if len(test_index) else None
        trained = model.head
    cache_seconds = time.perf_counter() - start

    result = DistillResult(
        temperature=temperature, epochs=epochs, lr=lr, batch_size=batch_size, unfreeze_fm=bool(unfreeze_fm),
        n_pair=len(pair_windows), n_trainable=count_trainable(trained), cache_seconds=cache_seconds,
        select_by=select_by,
    )
    optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=lr)
    best_state = state_copy(trained)
    train_seconds = 0.0
    bar = tqdm(range(1, epochs + 1), desc="distill", disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for s in range(0, len(order), batch_size):
            batch = order[s : s + batch_size]
            step_loss = distillation_loss(trained(inputs[batch]), teacher[batch], temperature)
            optimizer.zero_grad()
            step_loss.backward()
            optimizer.step()
            total += float(step_loss.detach()) * len(batch)
        train_seconds += time.perf_counter() - start
        result.train_loss.append(total / len(order))
        bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}")
        if epoch % eval_every and epoch != epochs:
            continue
        val, pair_loss, agreement = _score_validation(trained, val_inputs, val_teacher, val_windows, val_index,
                                                      temperature)
        test = _score(trained, test_inputs, test_windows, test_index) if test_inputs is not None else None
        if result.record_eval(epoch, val, test, pair_loss=pair_loss, agreement_f1=agreement.f1_macro):
            best_state = state_copy(trained)

    trained.load_state_dict(best_state)
    freeze(model)
    result.seconds_per_epoch = train_seconds / epochs
    logger.info(
        "Distilled (%d trainable parameters): kept epoch %d (by %s; epochs by criterion %s), validation macro-F1 "
        "%.3f, %.3f s/epoch.", result.n_trainable, result.best_epoch, result.select_by, result.chosen_epochs,
        result.val_metrics.get("f1_macro", float("nan")), result.seconds_per_epoch,
    )
    if plot_path is not None:
        from bridges.plots import plot_training_curve

        plot_training_curve(result.to_dict(), plot_path)
    return model, result


def _score_validation(
    trained: nn.Module,
    inputs: torch.Tensor,
    teacher_logits: torch.Tensor,
    windows: PairedWindows,
    index: np.ndarray,
    temperature: float,
) -> tuple[Metrics, float, Metrics]:
    """True-label metrics (windows ``index``), distillation loss and agreement with the teacher's pseudo-labels.

    ``inputs`` are the student's inputs for every validation window, ``teacher_logits`` ``(N, K)`` the teacher's
    on the paired old-modality windows.
    """
    logits = map_batches(trained, inputs, 64)
    predicted = logits.argmax(1).numpy()
    loss = float(distillation_loss(logits.float(), teacher_logits.float(), temperature))
    k, names = windows.n_classes, windows.class_names
    agreement = metrics_from_predictions(teacher_logits.argmax(1).numpy(), predicted, k, names)
    labels = metrics_from_predictions(windows.labels[index], predicted[index], k, names)
    return labels, loss, agreement


def _score(trained: nn.Module, inputs: torch.Tensor, windows: PairedWindows, index: np.ndarray) -> Metrics:
    logits = map_batches(trained, inputs, 64)
    return metrics_from_predictions(windows.labels[index], logits.argmax(1).numpy(), windows.n_classes,
                                    windows.class_names)
