"""Step 5-6 of the method: train the prototype bridge with both FMs frozen (DESIGN.md §2).

**The cache.** Both FMs are frozen, so per paired window two things never change during training: the new FM's
layer-``i`` output mean-pooled over tokens (the bridge input, ``(N, d_in)``) and the alignment target (the old
FM's final hidden state on the real old-modality window, ``(N, T, d)``; or, with ``align="bridge"``, the old FM's
real layer-``j`` input tokens). Both are computed once under ``no_grad``; each step then runs only the bridge and
the old FM's layers ``j..end`` (with ``align="bridge"``, the bridge alone), and gradients reach only the bridge.
Validation and test inference use cached new-FM features too (computed once per split).

**Loss.** ``"cosine"`` (default): ``1 - cos(pred, target)`` with each sample's whole final hidden state flattened
to one vector (``T·d``), averaged over the batch; this is the reference's ``CosineEmbeddingLoss`` on
``view(B, -1)``, so token-to-token structure counts, not just the direction of each token. ``"mse"`` / ``"l1"``:
mean over all elements. The target is the old FM's *finalised* last hidden state (what its head reads); the
reference reads the last block's output before PaPaGei's final BatchNorm + ReLU, identical for HuBERT-ECG and
LaBraM.

**Model selection.** Every ``eval_every`` epochs (and after the last) the bridged pipeline is scored on the
validation split against its **true labels**, as the paper does; the bridge with the best validation macro-F1
(earliest on ties) is kept. The test split is scored at the same epochs for the record only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bridges._batching import known_labels, map_batches, state_copy
from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.data.windows import PairedWindows
from bridges.fm.base import FoundationModel
from bridges.metrics import FitHistory, Metrics, count_trainable, metrics_from_predictions
from bridges.models import BridgedModel, OldModel, mean_tokens
from bridges.target_cache import TargetCache
from devices._checks import check_value, ensure_int, ensure_positive
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ALIGNS",
    "LOSSES",
    "PRECISIONS",
    "TrainResult",
    "bridge_loss",
    "cache_bridge_inputs",
    "cache_targets",
    "layer_input",
    "train_bridge",
]

LOSSES = ("cosine", "mse", "l1")
ALIGNS = ("last", "bridge")
PRECISIONS = ("float32", "bfloat16")


@dataclass
class TrainResult(FitHistory):
    """What :func:`train_bridge` did.

    The bridge's settings and shapes, plus the per-epoch record of :class:`bridges.metrics.FitHistory`;
    ``n_trainable`` is the bridge's ``r·d_in + P·T·r + d_out·P``.
    """

    i: int
    j: int
    rank: int
    n_prototypes: int
    init: str
    loss: str
    align: str
    epochs: int
    lr: float
    batch_size: int
    d_in: int
    n_tokens: int
    d_out: int
    n_pair: int
    n_trainable: int
    micro_batch_size: int | None = None
    precision: str = "float32"


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


def layer_input(fm: FoundationModel, x: torch.Tensor, j: int) -> torch.Tensor:
    """Input of layer ``j`` ``(B, T, d)`` for an FM input ``x``: stem output for ``j = 0``, else layer ``j - 1``."""
    fm.check_layer_index(j, "j")
    return fm.embed(x) if j == 0 else fm.prefix(x, upto=j - 1)


@torch.no_grad()
def cache_bridge_inputs(
    new_fm: FoundationModel, new_preprocess: nn.Module | None, x: np.ndarray, *, i: int, batch_size: int = 32
) -> torch.Tensor:
    """Bridge inputs ``(N, d_in)``: new-FM layer-``i`` output, mean over tokens, for raw windows ``x`` ``(N, C, L)``."""
    preprocess = nn.Identity() if new_preprocess is None else new_preprocess
    new_fm.eval()
    return map_batches(lambda t: mean_tokens(new_fm.prefix(preprocess(t), upto=i)), x, batch_size)


def _target_fn(old_model: OldModel, j: int, align: str) -> Callable[[torch.Tensor], torch.Tensor]:
    check_value(align, ALIGNS, "align")
    old_model.eval()
    if align == "last":
        return old_model.final_hidden
    return lambda t: layer_input(old_model.fm, old_model.preprocess(t), j)


@torch.no_grad()
def cache_targets(
    old_model: OldModel, x_old: np.ndarray, *, j: int, align: str = "last", batch_size: int = 32
) -> torch.Tensor:
    """Alignment targets for raw old-modality windows ``x_old`` ``(N, C, L)``.

    ``align="last"``: the old FM's final hidden state ``(N, T, d)``; ``align="bridge"``: its layer-``j`` input
    tokens ``(N, T_j, d_j)``.
    """
    return map_batches(_target_fn(old_model, j, align), x_old, batch_size)


@torch.no_grad()
def _proba(bridged: BridgedModel, features: torch.Tensor, batch_size: int) -> np.ndarray:
    return map_batches(bridged.proba_from_features, features, batch_size).float().numpy()


def _score(
    bridged: BridgedModel, features: torch.Tensor, windows: PairedWindows, index: np.ndarray, batch_size: int
) -> Metrics:
    proba = _proba(bridged, features, batch_size)
    return metrics_from_predictions(windows.labels[index], proba.argmax(1), windows.n_classes, windows.class_names)


def train_bridge(
    old_model: OldModel,
    new_fm: FoundationModel,
    new_preprocess: nn.Module | None,
    pair_windows: PairedWindows,
    val_windows: PairedWindows,
    test_windows: PairedWindows | None,
    *,
    i: int,
    j: int,
    rank: int = 8,
    n_prototypes: int = 150,
    init: str = "randreal_P",
    loss: str = "cosine",
    align: str = "last",
    epochs: int = 50,
    lr: float = 1e-4,
    batch_size: int = 16,
    eval_every: int = 1,
    random_state: int = 0,
    max_grad_norm: float | None = 1.0,
    targets_dir: str | Path | None = None,
    micro_batch_size: int | None = None,
    cache_batch_size: int | None = None,
    precision: str = "float32",
    progress: bool = True,
    plot_path: str | Path | None = None,
) -> tuple[BridgedModel, TrainResult]:
    """Train a prototype bridge from new-FM layer ``i`` to the input of old-FM layer ``j``.

    Parameters
    ----------
    old_model : OldModel
        Old preprocess + FM + trained head (frozen; its FM and head become part of the returned model).
    new_fm : FoundationModel
        The new FM (frozen; becomes part of the returned model).
    new_preprocess : nn.Module or None
        Raw new-modality window → new-FM input; identity when None.
    pair_windows : PairedWindows
        Paired windows; both halves used, labels not used.
    val_windows : PairedWindows
        Labeled windows (``new`` half) for choosing the epoch.
    test_windows : PairedWindows or None
        Labeled windows (``new`` half) scored at the same epochs, for the record.
    i : int
        New-FM layer whose output feeds the bridge.
    j : int
        Old-FM layer whose input the bridge output replaces.
    rank, n_prototypes, init
        Bridge rank ``r``, prototypes ``P`` and prototype initialisation (``"rand_P"`` / ``"randreal_P"``).
    loss : {"cosine", "mse", "l1"}
        Alignment loss (see the module doc).
    align : {"last", "bridge"}
        Align the old FM's final hidden state (default) or the bridge output itself with the real layer-``j``
        input.
    epochs, lr, batch_size
        Adam training schedule.
    eval_every : int
        Score validation/test every this many epochs (and after the last).
    random_state : int
        Seed of the bridge initialisation, prototype draw and shuffling.
    max_grad_norm : float or None
        Clip the bridge's gradient to this L2 norm (None: no clipping). Why: ``B`` starts at zero, so the first
        bridge output is all zeros; in an FM whose layer ``j`` is attention + post-LayerNorm with zero biases
        (random-init transformers) that input has zero variance and the LayerNorm's gradient is ~1/sqrt(eps)
        (1e16 measured). One such step fills Adam's second-moment estimate and stalls training for ~1000 steps;
        clipping removes it and rarely binds afterwards.
    targets_dir : str or Path, optional
        Keep the cached targets in an unlinked temporary file in this directory, read one batch per step,
        instead of in RAM (:class:`bridges.target_cache.TargetCache`): training then holds only the bridge,
        the suffix's working set and the small bridge-input cache. Same results; a little I/O per step.
    micro_batch_size : int, optional
        Run each batch as chunks of this many windows and accumulate their gradients: the same update (up to
        float rounding) with the suffix's activation memory cut by ``batch_size / micro_batch_size``. On a CPU,
        chunks of 4–8 windows cost 0–20% more per step.
    cache_batch_size : int, optional
        Windows per pass when caching features and targets and when scoring (default: the micro-batch, else
        ``batch_size``). These passes run whole FMs without a gradient, so their transient memory scales with it.
    precision : {"float32", "bfloat16"}
        ``"bfloat16"`` runs the frozen FMs and the bridge under ``torch.autocast`` (bf16 matrix products, on CPUs
        with AMX/AVX-512 BF16 about 2× faster; the bridge's weights, Adam and the loss stay float32). The cached
        features and targets are kept as float32 either way.
    progress : bool
        Show a tqdm progress bar with the loss.
    plot_path : str or Path, optional
        Write the training-curve PNG here.

    Returns
    -------
    model : BridgedModel
        The deployed pipeline with the best-by-validation bridge, in eval mode.
    result : TrainResult
    """
    check_value(loss, LOSSES, "loss")
    check_value(align, ALIGNS, "align")
    check_value(precision, PRECISIONS, "precision")
    epochs = ensure_int(epochs, "epochs", minimum=1)
    batch_size = ensure_int(batch_size, "batch_size", minimum=1)
    eval_every = ensure_int(eval_every, "eval_every", minimum=1)
    lr = ensure_positive(lr, "lr")
    chunk = batch_size if micro_batch_size is None else min(ensure_int(micro_batch_size, "micro_batch_size",
                                                                        minimum=1), batch_size)
    pass_size = chunk if cache_batch_size is None else ensure_int(cache_batch_size, "cache_batch_size", minimum=1)
    old_fm = old_model.fm
    new_fm.check_layer_index(i, "i")
    old_fm.check_layer_index(j, "j")
    if len(pair_windows) == 0:
        raise BadInputError("the paired split is empty; the bridge has nothing to train on")
    val_index = known_labels(val_windows.labels, val_windows.n_classes, "the validation split")
    test_index = (
        known_labels(test_windows.labels, test_windows.n_classes, "the test split") if test_windows is not None
        else np.zeros(0, dtype=np.int64)
    )
    new_preprocess = nn.Identity() if new_preprocess is None else new_preprocess
    generator = torch.Generator().manual_seed(random_state)

    start = time.perf_counter()
    device = next(old_fm.parameters()).device

    def amp() -> torch.autocast:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")

    with amp():
        features = cache_bridge_inputs(new_fm, new_preprocess, pair_windows.new, i=i, batch_size=pass_size).float()
        val_features = cache_bridge_inputs(new_fm, new_preprocess, val_windows.new[val_index], i=i,
                                           batch_size=pass_size).float()
        test_features = (
            cache_bridge_inputs(new_fm, new_preprocess, test_windows.new[test_index], i=i, batch_size=pass_size).float()
            if len(test_index) else None
        )
    # The old FM's layer-j input shape is what the bridge must emit.
    n_pool = max(n_prototypes, 32) if init == "randreal_P" else 1  # rand_P needs only the shape
    tokens = _prototype_pool(old_model, pair_windows, j, n_pool, generator, pass_size)
    config = BridgeConfig(d_in=features.shape[1], n_tokens=tokens.shape[1], d_out=tokens.shape[2], rank=rank,
                          n_prototypes=n_prototypes, init=init)
    bridge = PrototypeBridge(config, generator=generator)
    if init == "randreal_P":
        bridge.init_prototypes_from(tokens, generator=generator)
    del tokens
    with amp():
        target_cache = TargetCache.build(_target_fn(old_model, j, align), pair_windows.old, pass_size, targets_dir)
    cache_seconds = time.perf_counter() - start
    bridged = BridgedModel(new_preprocess, new_fm, bridge, old_fm, old_model.head, i=i, j=j)

    result = TrainResult(
        i=i, j=j, rank=rank, n_prototypes=n_prototypes, init=init, loss=loss, align=align, epochs=epochs, lr=lr,
        batch_size=batch_size, d_in=config.d_in, n_tokens=config.n_tokens, d_out=config.d_out,
        n_pair=len(pair_windows), n_trainable=count_trainable(bridged), cache_seconds=cache_seconds,
        micro_batch_size=micro_batch_size, precision=precision,
    )
    optimizer = torch.optim.Adam(bridge.parameters(), lr=lr)
    forward = bridge if align == "bridge" else bridged.final_hidden_from_features
    best_state = state_copy(bridge)
    train_seconds = 0.0
    bar = tqdm(range(1, epochs + 1), desc="bridge", disable=not progress, leave=False)
    with target_cache as targets:
        for epoch in bar:
            bridged.train()
            start = time.perf_counter()
            order = torch.randperm(len(features), generator=generator)
            total = 0.0
            for s in range(0, len(order), batch_size):
                batch = order[s : s + batch_size]
                optimizer.zero_grad()
                for m in range(0, len(batch), chunk):  # gradients accumulate over the chunks of one batch
                    part = batch[m : m + chunk]
                    with amp():
                        pred = forward(features[part])
                    target = targets[part].to(pred.device)
                    part_loss = bridge_loss(pred.float(), target, loss) * (len(part) / len(batch))
                    part_loss.backward()
                    total += float(part_loss.detach()) * len(batch)
                if max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(bridge.parameters(), max_grad_norm)
                optimizer.step()
            train_seconds += time.perf_counter() - start
            result.train_loss.append(total / len(order))
            bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}")
            if epoch % eval_every and epoch != epochs:
                continue
            bridged.eval()
            with amp():
                val = _score(bridged, val_features, val_windows, val_index, pass_size)
                test = (_score(bridged, test_features, test_windows, test_index, pass_size) if test_features is not None
                        else None)
            is_best = result.record_eval(epoch, val, test)
            bar.set_postfix(loss=f"{result.train_loss[-1]:.4f}", val_f1=f"{val.f1_macro:.3f}")
            logger.debug("Epoch %d: loss %.5f, validation macro-F1 %.4f.", epoch, result.train_loss[-1], val.f1_macro)
            if is_best:
                best_state = state_copy(bridge)

    bridge.load_state_dict(best_state)
    bridged.eval()
    result.seconds_per_epoch = train_seconds / epochs
    logger.info(
        "Bridge trained (i=%d, j=%d, %d parameters): best epoch %d, validation macro-F1 %.3f, %.3f s/epoch.",
        i, j, result.n_trainable, result.best_epoch, result.val_metrics.get("f1_macro", math.nan),
        result.seconds_per_epoch,
    )
    if plot_path is not None:
        from bridges.plots import plot_training_curve

        plot_training_curve(result.to_dict(), plot_path)
    return bridged, result


def _prototype_pool(
    old_model: OldModel,
    pair_windows: PairedWindows,
    j: int,
    n_windows: int,
    generator: torch.Generator,
    batch_size: int,
) -> torch.Tensor:
    """Real old-FM layer-``j`` input tokens ``(n, T, d)`` of ``n_windows`` random paired windows.

    Also gives the shape the bridge must emit. ``randreal_P`` draws its ``P`` prototypes from these tokens; a
    subset of ``max(P, 32)`` windows keeps the draw diverse without holding every window's tokens.
    """
    n_windows = min(len(pair_windows), n_windows)
    index = torch.randperm(len(pair_windows), generator=generator)[:n_windows].sort().values.numpy()
    return cache_targets(old_model, pair_windows.old[index], j=j, align="bridge", batch_size=batch_size)
