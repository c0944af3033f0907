"""What bridge training computes once, before its first step (DESIGN.md §2, steps 5-6).

Both FMs are frozen, so per paired window two things never change during training: the new FM's layer-``i``
output mean-pooled over tokens (the bridge input, ``(N, d_in)``) and the alignment target (the old FM's final
hidden state on the real old-modality window, ``(N, T, d)``; or, with ``align="bridge"``, the old FM's real
layer-``j`` input tokens). Both are computed here under ``no_grad``, as are the bridge inputs of the labeled
test windows (:class:`LabeledInputs`), everything the epoch-selection criteria read on the validation pairs
(:class:`ValidationInputs`), and the real layer-``j`` tokens that give the bridge its output shape and, with
``randreal_P``, its prototypes (:func:`init_bridge`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bridges._batching import map_batches
from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.data.windows import PairedWindows
from bridges.fm.base import FoundationModel
from bridges.metrics import Metrics, metrics_from_predictions
from bridges.models import BridgedModel, OldModel, mean_tokens
from bridges.target_cache import TargetCache
from bridges.train_options import ALIGNS, TrainOptions
from devices._checks import check_value

__all__ = [
    "LabeledInputs",
    "ValidationInputs",
    "cache_bridge_inputs",
    "cache_targets",
    "init_bridge",
    "layer_input",
    "prototype_pool",
    "target_fn",
]


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


def target_fn(old_model: OldModel, j: int, align: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Raw old-modality windows ``(B, C, L)`` → alignment targets (see :func:`cache_targets`); sets eval mode."""
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
    return map_batches(target_fn(old_model, j, align), x_old, batch_size)


@dataclass
class LabeledInputs:
    """Cached bridge inputs of a labeled split's windows with a known label, and their scoring.

    Attributes
    ----------
    windows : PairedWindows
        The split (its ``new`` half was run).
    index : array of shape (n,), int
        Windows with a known label, in order.
    features : Tensor of shape (n, d_in)
        Their bridge inputs (float32).
    """

    windows: PairedWindows
    index: np.ndarray
    features: torch.Tensor

    @classmethod
    def cache(
        cls,
        new_fm: FoundationModel,
        new_preprocess: nn.Module,
        windows: PairedWindows,
        index: np.ndarray,
        *,
        i: int,
        batch_size: int,
    ) -> LabeledInputs:
        """Bridge inputs of ``windows[index]`` (from :func:`bridges._batching.known_labels`), as float32."""
        features = cache_bridge_inputs(new_fm, new_preprocess, windows.new[index], i=i, batch_size=batch_size)
        return cls(windows, index, features.float())

    @torch.no_grad()
    def score(self, bridged: BridgedModel, batch_size: int) -> Metrics:
        """Metrics of ``bridged``'s predictions from the cached features against the true labels."""
        proba = map_batches(bridged.proba_from_features, self.features, batch_size).float().numpy()
        w = self.windows
        return metrics_from_predictions(w.labels[self.index], proba.argmax(1), w.n_classes, w.class_names)


@dataclass
class ValidationInputs:
    """The validation pairs, cached for the three epoch-selection criteria (:mod:`bridges.epoch_selection`).

    Attributes
    ----------
    windows : PairedWindows
        The split; both halves were run.
    index : array of shape (n,), int
        Windows with a known label (those the ``"labels"`` criterion scores), in order.
    features : Tensor of shape (N, d_in)
        Bridge inputs of every window (float32).
    targets : TargetCache
        Their alignment targets ``(N, T, d)``, computed from the old-modality halves as in training.
    pseudo_labels : array of shape (N,), int64
        The old model's predicted class on the old-modality halves.
    """

    windows: PairedWindows
    index: np.ndarray
    features: torch.Tensor
    targets: TargetCache
    pseudo_labels: np.ndarray

    @classmethod
    @torch.no_grad()
    def cache(
        cls,
        old_model: OldModel,
        new_fm: FoundationModel,
        new_preprocess: nn.Module,
        windows: PairedWindows,
        index: np.ndarray,
        *,
        i: int,
        j: int,
        align: str,
        batch_size: int,
        directory: str | Path | None = None,
    ) -> ValidationInputs:
        """Run both FMs over ``windows`` once; ``index`` from :func:`bridges._batching.known_labels`.

        The targets live in RAM, or with ``directory`` in a temporary file there (as the training targets).
        """
        features = cache_bridge_inputs(new_fm, new_preprocess, windows.new, i=i, batch_size=batch_size).float()
        targets_of = target_fn(old_model, j, align)
        targets, pseudo = TargetCache(directory), []
        try:
            for start in range(0, len(windows), batch_size):
                x = torch.from_numpy(windows.old[start : start + batch_size])
                if align == "last":  # the target is what the head reads: one pass gives both
                    target = old_model.final_hidden(x)
                    logits = old_model.logits_from_final(target)
                else:
                    target, logits = targets_of(x), old_model(x)
                targets.append(target)
                pseudo.append(logits.argmax(dim=1).cpu())
        except BaseException:
            targets.close()
            raise
        return cls(windows, index, features, targets, torch.cat(pseudo).numpy().astype(np.int64))


def prototype_pool(
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


def init_bridge(
    old_model: OldModel,
    pair_windows: PairedWindows,
    j: int,
    d_in: int,
    options: TrainOptions,
    generator: torch.Generator,
) -> PrototypeBridge:
    """A new bridge ``d_in`` → the old FM's layer-``j`` input, its shape read from real paired windows.

    Draws from ``generator``, in this order: the windows of the prototype pool, the bridge's weights, and (with
    ``randreal_P``) its prototypes from the pool's tokens.
    """
    n_pool = max(options.n_prototypes, 32) if options.init == "randreal_P" else 1  # rand_P needs only the shape
    tokens = prototype_pool(old_model, pair_windows, j, n_pool, generator, options.pass_size)
    config = BridgeConfig(d_in=d_in, n_tokens=tokens.shape[1], d_out=tokens.shape[2], rank=options.rank,
                          n_prototypes=options.n_prototypes, init=options.init)
    bridge = PrototypeBridge(config, generator=generator)
    if options.init == "randreal_P":
        bridge.init_prototypes_from(tokens, generator=generator)
    return bridge
