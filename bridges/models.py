"""The three pipelines the method compares, as plain modules with explicit data flow (no forward hooks).

- :class:`OldModel`: old preprocess → old FM (all layers) → pool → head → logits. Trained by ``fit_head``.
- :class:`BridgedModel`: new preprocess → new FM layers ``0..i`` → mean over tokens → bridge → old FM layers
  ``j..end`` → pool → old head → softmax. The deployed pipeline: raw new-modality window in, class probabilities
  out. New-FM layers after ``i`` and old-FM layers before ``j`` are never run.
- :class:`DistilledModel`: new preprocess → new FM (all layers) → pool → head → logits (the distillation baseline).

Frozen parts stay frozen *and* in eval mode: :meth:`BridgedModel.train` only switches the bridge, so BatchNorm
statistics and dropout inside a frozen FM never change while the bridge trains.
"""

from __future__ import annotations

import torch
from torch import nn

from bridges.bridge import PrototypeBridge
from bridges.fm.base import FoundationModel

__all__ = ["BridgedModel", "DistilledModel", "OldModel", "freeze", "make_head", "mean_tokens"]


def mean_tokens(h: torch.Tensor) -> torch.Tensor:
    """Mean over tokens: ``(B, T, d)`` → ``(B, d)``.

    This is the pooling of an *intermediate* layer (bridge input, position selection). It is deliberately not
    ``fm.pool``: an FM's ``pool`` may apply a final norm that belongs after its last layer (LaBraM's ``fc_norm``).
    """
    return h.mean(dim=1)


def freeze(module: nn.Module) -> nn.Module:
    """Set ``requires_grad=False`` (and drop any stale ``.grad``) on every parameter; eval mode; return it."""
    for param in module.parameters():
        param.requires_grad_(False)
        param.grad = None
    return module.eval()


def make_head(
    d_in: int, n_classes: int, *, mlp_hidden: int | None = None, generator: torch.Generator | None = None
) -> nn.Module:
    """Build a classification head ``(B, d_in)`` → logits ``(B, n_classes)``.

    Parameters
    ----------
    d_in : int
        Width of the pooled features.
    n_classes : int
        Number of classes.
    mlp_hidden : int, optional
        Hidden width of a two-layer MLP (Linear → ReLU → Linear); a single linear layer when None.
    generator : torch.Generator, optional
        Source of randomness for the initial weights.
    """
    if mlp_hidden is None:
        head = nn.Linear(d_in, n_classes)
    else:
        head = nn.Sequential(nn.Linear(d_in, mlp_hidden), nn.ReLU(), nn.Linear(mlp_hidden, n_classes))
    with torch.no_grad():
        for layer in head.modules():
            if isinstance(layer, nn.Linear):
                bound = 1.0 / layer.in_features**0.5
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.zero_()
    return head


class _Classifier(nn.Module):
    """Preprocess → FM (all layers) → pool → head. Shared by :class:`OldModel` and :class:`DistilledModel`."""

    side = "old"

    def __init__(self, fm: FoundationModel, head: nn.Module, preprocess: nn.Module | None = None) -> None:
        super().__init__()
        self.preprocess = nn.Identity() if preprocess is None else preprocess
        self.fm = fm
        self.head = head

    def final_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden state ``(B, T, d)`` (after ``finalize``) of a raw window ``x`` ``(B, C, L)``."""
        fm = self.fm
        return fm.suffix(fm.embed(self.preprocess(x)), 0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head features ``(B, d)`` of a raw window ``x`` ``(B, C, L)``."""
        return self.fm.pool(self.final_hidden(x))

    def logits_from_final(self, h: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` from a final hidden state ``h`` ``(B, T, d)``."""
        return self.head(self.fm.pool(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of a raw window ``x`` ``(B, C, L)``."""
        return self.head(self.features(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)`` of a raw window ``x`` ``(B, C, L)``."""
        return torch.softmax(self(x), dim=-1)


class OldModel(_Classifier):
    """The labeled old-modality model: preprocess + old FM + head.

    Parameters
    ----------
    fm : FoundationModel
        The old FM.
    head : nn.Module
        ``(B, d)`` pooled last-layer features → logits ``(B, K)`` (see :func:`make_head`).
    preprocess : nn.Module, optional
        Raw old-modality window ``(B, C, L)`` → FM input ``(B, C, L)``; identity when None.
    """

    side = "old"


class DistilledModel(_Classifier):
    """The distillation baseline: new preprocess + new FM + head (inputs are new-modality windows)."""

    side = "new"


class BridgedModel(nn.Module):
    """The deployed BioX-Bridge pipeline: raw new-modality window ``(B, C, L)`` → class probabilities ``(B, K)``.

    Parameters
    ----------
    new_preprocess : nn.Module
        Raw new-modality window → new-FM input.
    new_fm : FoundationModel
        The new FM; only its stem and layers ``0..i`` are run.
    bridge : PrototypeBridge
        Pooled new-FM layer-``i`` features ``(B, d_in)`` → old-FM layer-``j`` input tokens ``(B, T, d_out)``.
    old_fm : FoundationModel
        The old FM; only its layers ``j..end`` (and ``finalize``) are run.
    old_head : nn.Module
        The old model's head.
    i : int
        New-FM layer whose output feeds the bridge.
    j : int
        Old-FM layer whose *input* the bridge output replaces.

    Notes
    -----
    Everything but the bridge is frozen (``requires_grad=False``) and kept in eval mode.
    """

    side = "new"

    def __init__(
        self,
        new_preprocess: nn.Module,
        new_fm: FoundationModel,
        bridge: PrototypeBridge,
        old_fm: FoundationModel,
        old_head: nn.Module,
        *,
        i: int,
        j: int,
    ) -> None:
        super().__init__()
        new_fm.check_layer_index(i, "i")
        old_fm.check_layer_index(j, "j")
        self.new_preprocess = freeze(new_preprocess)
        self.new_fm = freeze(new_fm)
        self.old_fm = freeze(old_fm)
        self.old_head = freeze(old_head)
        self.bridge = bridge
        self.i = int(i)
        self.j = int(j)

    def train(self, mode: bool = True) -> BridgedModel:
        """Switch only the bridge between training and eval mode; the frozen parts stay in eval mode."""
        self.training = mode
        self.bridge.train(mode)
        for part in (self.new_preprocess, self.new_fm, self.old_fm, self.old_head):
            part.eval()
        return self

    def bridge_input(self, x: torch.Tensor) -> torch.Tensor:
        """Bridge input ``(B, d_in)``: new-FM layer-``i`` output, mean over tokens, of a raw window ``(B, C, L)``."""
        return mean_tokens(self.new_fm.prefix(self.new_preprocess(x), upto=self.i))

    def final_hidden_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Old-FM final hidden state ``(B, T, d)`` from bridge inputs ``(B, d_in)``."""
        return self.old_fm.suffix(self.bridge(features), start=self.j)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Old-head logits ``(B, K)`` from bridge inputs ``(B, d_in)``."""
        return self.old_head(self.old_fm.pool(self.final_hidden_from_features(features)))

    def proba_from_features(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)`` from bridge inputs ``(B, d_in)`` (e.g. cached new-FM features)."""
        return torch.softmax(self.logits_from_features(features), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(B, K)`` of a raw new-modality window ``x`` ``(B, C, L)``."""
        return self.proba_from_features(self.bridge_input(x))

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward` (the pipeline already ends in a softmax)."""
        return self(x)
