"""Steps 5-6 of the method: train the prototype bridge with both FMs frozen (DESIGN.md §2).

:func:`train_bridge` runs the step in four parts, each in its own place:

1. **Caching** (:mod:`bridges.train_inputs`, :class:`bridges.target_cache.TargetCache`). Both FMs are frozen, so
   the bridge inputs (new-FM layer ``i``, mean-pooled) and the alignment targets (old-FM final hidden state, or
   with ``align="bridge"`` its real layer-``j`` input) are computed once per paired window under ``no_grad``;
   so are the bridge inputs of the validation and test windows, and the validation pairs' alignment targets and
   the old model's pseudo-labels on them. Each step then runs only the bridge and the old FM's layers
   ``j..end`` (with ``align="bridge"``, the bridge alone), and gradients reach only the bridge.
2. **Training** (:func:`bridges.train_loop.fit_bridge`): Adam epochs over shuffled batches, the alignment loss
   (:func:`bridges.train_loop.bridge_loss`), gradient clipping, and the bridge of the epoch chosen by
   ``select_by`` kept (:mod:`bridges.epoch_selection`).
3. **Scoring** (:func:`bridges.train_loop.score_splits`, :class:`bridges.metrics.FitHistory`): every
   ``eval_every`` epochs, the bridged pipeline on the validation pairs by all three selection criteria
   (alignment loss, agreement with the old model's pseudo-labels, true labels) and on the test split.
4. **Plotting** (:func:`bridges.plots.plot_training_curve`): the PNG training curve.

Its settings are one :class:`bridges.train_options.TrainOptions`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bridges._batching import known_labels
from bridges.data.windows import PairedWindows
from bridges.fm.base import FoundationModel
from bridges.metrics import FitHistory, count_trainable
from bridges.models import BridgedModel, OldModel
from bridges.target_cache import TargetCache
from bridges.train_inputs import (
    LabeledInputs,
    ValidationInputs,
    cache_bridge_inputs,
    cache_targets,
    init_bridge,
    layer_input,
    target_fn,
)
from bridges.train_loop import CachedInputs, bridge_loss, fit_bridge
from bridges.train_options import ALIGNS, LOSSES, PRECISIONS, TrainOptions
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = [
    "ALIGNS",
    "LOSSES",
    "PRECISIONS",
    "TrainOptions",
    "TrainResult",
    "bridge_loss",
    "cache_bridge_inputs",
    "cache_targets",
    "layer_input",
    "train_bridge",
]


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

    @classmethod
    def start(cls, options: TrainOptions, bridged: BridgedModel, *, n_pair: int, cache_seconds: float) -> TrainResult:
        """An empty record of training ``bridged.bridge`` with ``options`` on ``n_pair`` paired windows."""
        config = bridged.bridge.config
        return cls(
            i=bridged.i, j=bridged.j, rank=config.rank, n_prototypes=config.n_prototypes, init=config.init,
            loss=options.loss, align=options.align, epochs=options.epochs, lr=options.lr,
            batch_size=options.batch_size, d_in=config.d_in, n_tokens=config.n_tokens, d_out=config.d_out,
            n_pair=n_pair, n_trainable=count_trainable(bridged), cache_seconds=cache_seconds,
            micro_batch_size=options.micro_batch_size, precision=options.precision, select_by=options.select_by,
        )


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
    options: TrainOptions | None = None,
    targets_dir: str | Path | None = None,
    progress: bool = True,
    plot_path: str | Path | None = None,
    **fields: Any,
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
        Paired windows for choosing the epoch: the criteria ``"loss"`` and ``"agreement"`` read both halves and
        every window, ``"labels"`` the ``new`` half of the windows with a known label (at least one needed).
    test_windows : PairedWindows or None
        Labeled windows (``new`` half) scored at the same epochs, for the record.
    i : int
        New-FM layer whose output feeds the bridge.
    j : int
        Old-FM layer whose input the bridge output replaces.
    options : TrainOptions, optional
        The bridge's size and training schedule (default: ``TrainOptions()``).
    targets_dir : str or Path, optional
        Keep the cached targets (of the paired and of the validation windows) in unlinked temporary files in this
        directory, read one batch per step, instead of in RAM (:class:`bridges.target_cache.TargetCache`):
        training then holds only the bridge, the suffix's working set and the small bridge-input cache. Same
        results; a little I/O per step.
    progress : bool
        Show a tqdm progress bar with the loss.
    plot_path : str or Path, optional
        Write the training-curve PNG here.
    **fields
        :class:`TrainOptions` fields (``rank=4, epochs=12, ...``), replacing those of ``options``.

    Returns
    -------
    model : BridgedModel
        The deployed pipeline with the bridge of the epoch ``select_by`` keeps, in eval mode.
    result : TrainResult
    """
    options = TrainOptions(**fields) if options is None else replace(options, **fields)
    old_fm = old_model.fm
    new_fm.check_layer_index(i, "i")
    old_fm.check_layer_index(j, "j")
    if len(pair_windows) == 0:
        raise BadInputError("the paired split is empty; the bridge has nothing to train on")
    val_index = known_labels(val_windows.labels, val_windows.n_classes, "the validation split")
    test_index = (known_labels(test_windows.labels, test_windows.n_classes, "the test split")
                  if test_windows is not None else None)
    new_preprocess = nn.Identity() if new_preprocess is None else new_preprocess
    generator = torch.Generator().manual_seed(options.random_state)
    device_type = next(old_fm.parameters()).device.type
    pass_size = options.pass_size

    # 1. Caching. `generator` is drawn from in a fixed order: the prototype pool, the bridge's weights and
    # prototypes (init_bridge), then each epoch's shuffle (fit_bridge).
    start = time.perf_counter()
    with options.autocast(device_type):
        features = cache_bridge_inputs(new_fm, new_preprocess, pair_windows.new, i=i, batch_size=pass_size).float()
        test = (LabeledInputs.cache(new_fm, new_preprocess, test_windows, test_index, i=i, batch_size=pass_size)
                if test_windows is not None else None)
    bridge = init_bridge(old_model, pair_windows, j, features.shape[1], options, generator)
    with options.autocast(device_type):
        targets = TargetCache.build(target_fn(old_model, j, options.align), pair_windows.old, pass_size, targets_dir)
        val = ValidationInputs.cache(old_model, new_fm, new_preprocess, val_windows, val_index, i=i, j=j,
                                     align=options.align, batch_size=pass_size, directory=targets_dir)
    cache_seconds = time.perf_counter() - start
    bridged = BridgedModel(new_preprocess, new_fm, bridge, old_fm, old_model.head, i=i, j=j)
    result = TrainResult.start(options, bridged, n_pair=len(pair_windows), cache_seconds=cache_seconds)

    # 2-3. Training, scoring, and the kept epoch.
    with targets, val.targets:
        fit_bridge(bridged, CachedInputs(features, targets, val, test), result, options, generator,
                   device_type=device_type, progress=progress)
    logger.info(
        "Bridge trained (i=%d, j=%d, %d parameters): kept epoch %d (by %s; epochs by criterion %s), validation "
        "macro-F1 %.3f, %.3f s/epoch.", i, j, result.n_trainable, result.best_epoch, result.select_by,
        result.chosen_epochs, result.val_metrics.get("f1_macro", math.nan), result.seconds_per_epoch,
    )
    # 4. Plotting.
    if plot_path is not None:
        from bridges.plots import plot_training_curve

        plot_training_curve(result.to_dict(), plot_path)
    return bridged, result
