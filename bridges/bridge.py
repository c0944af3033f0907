"""The BioX-Bridge prototype low-rank network (DESIGN.md §2, step 5).

Input ``x`` ``(B, d_in)``: the new FM's layer-*i* output mean-pooled over tokens. Parameters ``A`` ``(r, d_in)``,
``B`` ``(P·T, r)``, prototypes ``Π`` ``(d_out, P)``.
``W = x Aᵀ Bᵀ`` reshaped to ``(B, P, T)``; the output ``Π W`` ``(B, d_out, T)`` is returned transposed to the old
FM's layer-*j* input layout ``(B, T, d_out)``. Trainable parameters: ``r·d_in + P·T·r + d_out·P``.

``B`` starts *near* zero (normal with standard deviation :data:`B_INIT_STD`), not at exactly zero as in the paper
and LoRA: an all-zero bridge output is a singular point of the old FM's suffix when it begins with LayerNorm
(HuBERT at j = 0), where the gradient is unbounded and training turns to NaN at the first step. Near zero, the
bridge still starts as an almost silent perturbation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from devices._checks import check_value, ensure_int

PROTOTYPE_INITS = ("rand_P", "randreal_P")
#: Standard deviation of ``B`` at initialisation (see the module docstring).
B_INIT_STD = 1e-3


@dataclass(frozen=True)
class BridgeConfig:
    """Shape of a bridge.

    Parameters
    ----------
    d_in : int
        Width of the new FM's layer *i* (pooled input).
    n_tokens : int
        Tokens ``T`` of the old FM's layer-*j* input.
    d_out : int
        Width ``d_out`` of the old FM's layer-*j* input.
    rank : int
        Rank ``r`` of the low-rank map.
    n_prototypes : int
        Number of prototypes ``P``.
    init : str
        ``"rand_P"`` (random prototypes) or ``"randreal_P"`` (prototypes set from real old-FM token vectors by
        :meth:`PrototypeBridge.init_prototypes_from`).
    """

    d_in: int
    n_tokens: int
    d_out: int
    rank: int = 8
    n_prototypes: int = 150
    init: str = "randreal_P"

    def __post_init__(self) -> None:
        for name in ("d_in", "n_tokens", "d_out", "rank", "n_prototypes"):
            ensure_int(getattr(self, name), name, minimum=1)
        check_value(self.init, PROTOTYPE_INITS, "init")

    @property
    def n_parameters(self) -> int:
        """Trainable parameters: ``r·d_in + P·T·r + d_out·P``."""
        return self.rank * self.d_in + self.n_prototypes * self.n_tokens * self.rank + self.d_out * self.n_prototypes


class PrototypeBridge(nn.Module):
    """Map pooled new-FM features ``(B, d_in)`` to old-FM layer-*j* input tokens ``(B, T, d_out)``.

    Parameters
    ----------
    config : BridgeConfig
        Shapes and prototype initialisation.
    generator : torch.Generator, optional
        Source of randomness for ``A`` and random prototypes.
    """

    def __init__(self, config: BridgeConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        c = config
        self.A = nn.Parameter(torch.empty(c.rank, c.d_in))
        self.B = nn.Parameter(torch.zeros(c.n_prototypes * c.n_tokens, c.rank))
        self.prototypes = nn.Parameter(torch.empty(c.d_out, c.n_prototypes))
        # Kaiming-uniform-like scale for A, as nn.Linear would use; prototypes ~ N(0, 1) until set from data.
        bound = 1.0 / c.d_in**0.5
        with torch.no_grad():
            self.A.uniform_(-bound, bound, generator=generator)
            self.B.normal_(0.0, B_INIT_STD, generator=generator)
            self.prototypes.normal_(0.0, 1.0, generator=generator)

    @torch.no_grad()
    def init_prototypes_from(self, tokens: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Set the prototypes to ``P`` token vectors drawn at random from ``tokens`` ``(N, T, d_out)``.

        This is the ``randreal_P`` initialisation: real old-FM layer-*j* inputs from the paired set.
        """
        flat = tokens.reshape(-1, tokens.shape[-1])
        if flat.shape[1] != self.config.d_out:
            raise ValueError(f"tokens have width {flat.shape[1]}, the bridge's d_out is {self.config.d_out}")
        index = torch.randperm(flat.shape[0], generator=generator)[: self.config.n_prototypes]
        if index.numel() < self.config.n_prototypes:  # fewer tokens than prototypes: sample with replacement
            index = torch.randint(flat.shape[0], (self.config.n_prototypes,), generator=generator)
        self.prototypes.copy_(flat[index].T.to(self.prototypes.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bridge ``x`` ``(B, d_in)`` → ``(B, T, d_out)``."""
        c = self.config
        weights = (x @ self.A.T @ self.B.T).reshape(x.shape[0], c.n_prototypes, c.n_tokens)  # (B, P, T)
        return torch.einsum("dp,bpt->btd", self.prototypes, weights)
