"""Small shared helpers of the training steps: batched no-grad passes, label checks, best-state bookkeeping."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from devices.errors import BadInputError


def iter_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray | torch.Tensor, batch_size: int
) -> Iterator[torch.Tensor]:
    """Yield ``fn`` of consecutive batches of ``x`` ``(N, ...)`` of ``batch_size`` rows, each without grad."""
    tensor = torch.as_tensor(x)
    if len(tensor) == 0:
        raise BadInputError("no windows to run the model on (empty split)")
    for start in range(0, len(tensor), batch_size):
        with torch.no_grad():  # not around the yield: grad mode would leak into the caller while suspended
            out = fn(tensor[start : start + batch_size])
        yield out


def map_batches(
    fn: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray | torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` ``(N, ...)`` in batches of ``batch_size`` without grad; concatenate along dim 0."""
    return torch.cat(list(iter_batches(fn, x, batch_size)))


def known_labels(labels: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    """Return the indices of windows with a known label; raise if none, or if a label is out of range."""
    labels = np.asarray(labels)
    if labels.size and labels.max() >= n_classes:
        raise BadInputError(f"{what} has label {labels.max()} but only {n_classes} classes")
    index = np.flatnonzero(labels >= 0)
    if index.size == 0:
        raise BadInputError(f"{what} has no labeled window (all labels are -1)")
    return index


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Weights ``n / (K · count_k)`` per class ``(K,)`` (1 for a class with no windows)."""
    counts = np.bincount(labels, minlength=n_classes).astype(float)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


def state_copy(module: nn.Module) -> dict[str, torch.Tensor]:
    """Deep copy of ``module``'s state dict (to keep the best-by-validation weights)."""
    return copy.deepcopy(module.state_dict())


def train_only_used(module: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], probe: torch.Tensor) -> None:
    """Make exactly the parameters of ``module`` that ``forward`` uses trainable.

    An FM may carry parameters off the feature path (PaPaGei's ``dense`` and mixture-of-experts heads); they
    would get no gradient, and counting them as trainable would overstate a fine-tuned model's size. One probe
    forward/backward on ``probe`` finds the parameters that receive a gradient.
    """
    params = list(module.parameters())
    for param in params:
        param.requires_grad_(True)
        param.grad = None
    forward(probe).float().sum().backward()
    for param in params:
        param.requires_grad_(param.grad is not None)
        param.grad = None
