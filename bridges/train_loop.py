"""The bridge's training loop on cached inputs: epochs, Adam, the alignment loss, scoring and the kept epoch.

**Loss.** ``"cosine"`` (default): ``1 - cos(pred, target)`` with each sample's whole final hidden state flattened
to one vector (``T·d``), averaged over the batch; this is the reference's ``CosineEmbeddingLoss`` on
``view(B, -1)``, so token-to-token structure counts, not just the direction of each token. ``"mse"`` / ``"l1"``:
mean over all elements. The target is the old FM's *finalised* last hidden state (what its head reads); the
reference reads the last block's output before PaPaGei's final BatchNorm + ReLU, identical for HuBERT-ECG and
LaBraM.

**Model selection.** Every ``eval_every`` epochs (and after the last) the bridged pipeline is scored on the
validation pairs by three criteria (:mod:`bridges.epoch_selection`): the alignment loss (as above, on the
held-out pairs), macro-F1 against the old model's pseudo-labels, and macro-F1 against the **true labels** (what
the paper selects by). All three come from one pass of the bridge and the old FM's suffix; the bridge of the
epoch that ``options.select_by`` prefers (earliest on ties) is kept. The test split is scored at the same epochs
for the record only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bridges._batching import state_copy
from bridges.bridge import PrototypeBridge
from bridges.metrics import FitHistory, Metrics, metrics_from_predictions
from bridges.models import BridgedModel
from bridges.target_cache import TargetCache
from bridges.train_inputs import LabeledInputs, ValidationInputs
from bridges.train_options import LOSSES, TrainOptions

logger = logging.getLogger(__name__)

__all__ = ["CachedInputs", "EpochScores", "bridge_loss", "fit_bridge", "score_splits", "score_validation",
           "train_epoch"]


def bridge_loss(pred: torch.Tensor, target: torch.Tensor, loss: str = "cosine") -> torch.Tensor:
    """Alignment loss between predicted and target hidden states ``(B, T, d)`` (scalar).

    ``"cosine"``: mean over samples of ``1 - cos`` of the per-sample flattened tensors; ``"mse"``, ``"l1"``:
    mean over all elements.
    """
    if loss == "cosine":
        return 1.0 - F.cosine_similarity(pred.flatten(1), target.flatten(1), dim=1).mean()
    if loss == "mse":
        return F.mse_loss(pred, target)
    if loss == "l1":
        return F.l1_loss(pred, target)
    raise ValueError(f"'loss' is {loss!r}, but has to be one of {list(LOSSES)}.")


@dataclass
class CachedInputs:
    """Everything the loop reads, computed once (:mod:`bridges.train_inputs`).

    Attributes
    ----------
    features : Tensor of shape (N, d_in)
        Bridge inputs of the paired windows.
    targets : TargetCache or Tensor of shape (N, T, d)
        Their alignment targets, indexed by a batch's window indices.
    val : ValidationInputs
        The validation pairs, which choose the kept epoch.
    test : LabeledInputs or None
        The test split, scored at the same epochs for the record.
    """

    features: torch.Tensor
    targets: TargetCache | torch.Tensor
    val: ValidationInputs
    test: LabeledInputs | None


def train_epoch(
    bridge: PrototypeBridge,
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    inputs: CachedInputs,
    options: TrainOptions,
    generator: torch.Generator,
    device_type: str,
) -> float:
    """One pass over the paired windows in an order drawn from ``generator``; return the mean loss per window.

    Each batch of ``options.batch_size`` windows is one optimiser step, run as chunks of ``options.chunk`` whose
    losses are weighted by their share of the batch, so their gradients add up to the whole batch's.
    """
    order = torch.randperm(len(inputs.features), generator=generator)
    batch_size, chunk = options.batch_size, options.chunk
    total = 0.0
    for s in range(0, len(order), batch_size):
        batch = order[s : s + batch_size]
        optimizer.zero_grad()
        for m in range(0, len(batch), chunk):  # gradients accumulate over the chunks of one batch
            part = batch[m : m + chunk]
            with options.autocast(device_type):
                pred = forward(inputs.features[part])
            target = inputs.targets[part].to(pred.device)
            part_loss = bridge_loss(pred.float(), target, options.loss) * (len(part) / len(batch))
            part_loss.backward()
            total += float(part_loss.detach()) * len(batch)
        if options.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(bridge.parameters(), options.max_grad_norm)
        optimizer.step()
    return total / len(order)


@dataclass
class EpochScores:
    """The bridged pipeline's scores at one epoch (:mod:`bridges.epoch_selection`).

    Attributes
    ----------
    val : Metrics
        Against the true labels of the validation windows with a known label.
    pair_loss : float
        The alignment loss on the validation pairs (mean per window, as the training loss).
    agreement : Metrics
        Predictions on every validation window against the old model's pseudo-labels on its paired window.
    test : Metrics or None
        Against the true labels of the test split (None without one); for the record only.
    """

    val: Metrics
    pair_loss: float
    agreement: Metrics
    test: Metrics | None


@torch.no_grad()
def score_validation(
    bridged: BridgedModel, val: ValidationInputs, options: TrainOptions
) -> tuple[Metrics, float, Metrics]:
    """True-label metrics, alignment loss and pseudo-label agreement of ``bridged`` on the validation pairs.

    One pass of the bridge and the old FM's suffix over the cached features in chunks of ``options.pass_size``;
    each chunk's loss is weighted by its windows, so the result is the mean per window whatever the chunking.
    """
    n_windows, pass_size = len(val.features), options.pass_size
    loss_sum, probas = 0.0, []
    for start in range(0, n_windows, pass_size):
        features = val.features[start : start + pass_size]
        tokens = bridged.bridge(features)
        final = bridged.old_fm.suffix(tokens, start=bridged.j)
        pred = tokens if options.align == "bridge" else final
        target = val.targets[start : start + pass_size].to(pred.device)
        loss_sum += float(bridge_loss(pred.float(), target, options.loss)) * len(features)
        # The same operations as BridgedModel.proba_from_features, so the labels criterion is what it always was.
        probas.append(torch.softmax(bridged.old_head(bridged.old_fm.pool(final)), dim=-1))
    predicted = torch.cat(probas).float().argmax(1).cpu().numpy()
    w, k = val.windows, val.windows.n_classes
    labels = metrics_from_predictions(w.labels[val.index], predicted[val.index], k, w.class_names)
    agreement = metrics_from_predictions(val.pseudo_labels, predicted, k, w.class_names)
    return labels, loss_sum / n_windows, agreement


def score_splits(bridged: BridgedModel, inputs: CachedInputs, options: TrainOptions, device_type: str) -> EpochScores:
    """Every criterion on the validation pairs, and the test metrics, of ``bridged``, switched to eval mode."""
    bridged.eval()
    with options.autocast(device_type):
        val, pair_loss, agreement = score_validation(bridged, inputs.val, options)
        test = inputs.test.score(bridged, options.pass_size) if inputs.test is not None else None
    return EpochScores(val, pair_loss, agreement, test)


def fit_bridge(
    bridged: BridgedModel,
    inputs: CachedInputs,
    history: FitHistory,
    options: TrainOptions,
    generator: torch.Generator,
    *,
    device_type: str,
    progress: bool = True,
) -> None:
    """Train ``bridged.bridge`` for ``options.epochs`` epochs and leave it at the epoch ``options.select_by`` keeps.

    Fills ``history``: the loss of every epoch, every criterion and the metrics at each scored epoch, the epoch
    each criterion chooses, the kept epoch and its metrics, and ``seconds_per_epoch`` (training only).
    ``bridged`` is left in eval mode.
    """
    bridge = bridged.bridge
    optimizer = torch.optim.Adam(bridge.parameters(), lr=options.lr)
    forward = bridge if options.align == "bridge" else bridged.final_hidden_from_features
    best_state = state_copy(bridge)
    train_seconds = 0.0
    bar = tqdm(range(1, options.epochs + 1), desc="bridge", disable=not progress, leave=False)
    for epoch in bar:
        bridged.train()
        start = time.perf_counter()
        loss = train_epoch(bridge, forward, optimizer, inputs, options, generator, device_type)
        train_seconds += time.perf_counter() - start
        history.train_loss.append(loss)
        bar.set_postfix(loss=f"{loss:.4f}")
        if not options.evaluates_at(epoch):
            continue
        scores = score_splits(bridged, inputs, options, device_type)
        if history.record_eval(epoch, scores.val, scores.test, pair_loss=scores.pair_loss,
                               agreement_f1=scores.agreement.f1_macro):
            best_state = state_copy(bridge)
        bar.set_postfix(loss=f"{loss:.4f}", val_loss=f"{scores.pair_loss:.4f}",
                        agree_f1=f"{scores.agreement.f1_macro:.3f}", val_f1=f"{scores.val.f1_macro:.3f}")
        logger.debug("Epoch %d: loss %.5f; validation pairs: loss %.5f, pseudo-label macro-F1 %.4f, macro-F1 %.4f.",
                     epoch, loss, scores.pair_loss, scores.agreement.f1_macro, scores.val.f1_macro)
    bridge.load_state_dict(best_state)
    bridged.eval()
    history.seconds_per_epoch = train_seconds / options.epochs
