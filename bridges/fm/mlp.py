"""The two-layer GELU MLP of a ViT block, shared by the transformer FMs (LaBraM, NormWear).

Its parameter names (``fc1``, ``fc2``) are the ones the published checkpoints use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Mlp(nn.Module):
    """Two-layer GELU MLP: ``(B, T, d)`` → ``(B, T, d)`` through ``hidden`` units."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        return self.fc2(F.gelu(self.fc1(h)))
