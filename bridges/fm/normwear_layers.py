"""NormWear's building blocks: its config, fixed 2-D sin-cos position code, patch stem and encoder layers.

Names follow the published checkpoint (see :mod:`bridges.fm.normwear`): ``patch_embed.proj``; per layer a
``variate_encoder`` block and, on fusing layers, a ``cls_fusion`` block, each with ``norm1``, ``attn.qkv``,
``attn.proj``, ``norm2``, ``mlp.fc1`` and ``mlp.fc2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bridges.fm.cwt import NORMWEAR_WIDTHS, ricker_widths
from bridges.fm.mlp import Mlp

__all__ = ["Block", "EncoderLayer", "NormWearConfig", "PatchEmbed", "sincos_position_table"]


@dataclass(frozen=True)
class NormWearConfig:
    """Size of a NormWear encoder (defaults: the published 128 M-parameter encoder).

    Parameters
    ----------
    embed_dim : int
        Token width; a multiple of 4 (the 2-D sin-cos code splits it in four) and of ``num_heads``.
    depth : int
        Number of encoder layers (a per-channel block, plus ``cls_fusion`` on fusing layers).
    num_heads : int
        Attention heads of every block.
    mlp_ratio : float
        MLP hidden width as a multiple of ``embed_dim``.
    patch_size : tuple of int
        Conv2d kernel = stride over (time rows, width columns) of the scalogram.
    widths : tuple of float
        ``np.arange`` bounds (start, stop; step 1) of the wavelet widths in samples: 65 widths 0.1 ... 64.1.
    n_time_patches : int
        Time rows of the stored position table (43: a 390-sample window's 388 image rows // 9).
    fuse_every : int
        ``cls_fusion`` follows layer ``k`` when ``k % fuse_every == 0`` (2: layers 0, 2, 4, ...).
    qkv_bias : bool
        Bias on the attention's qkv projection.
    block_norm_eps : float
        LayerNorm epsilon inside the blocks.
    norm_eps : float
        Epsilon of the final LayerNorm.
    """

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    patch_size: tuple[int, int] = (9, 5)
    widths: tuple[float, float] = NORMWEAR_WIDTHS
    n_time_patches: int = 43
    fuse_every: int = 2
    qkv_bias: bool = True
    block_norm_eps: float = 1e-5
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        object.__setattr__(self, "widths", tuple(float(w) for w in self.widths))
        if self.embed_dim % 4 or self.embed_dim % self.num_heads:
            raise ValueError(
                f"'embed_dim' must be a multiple of 4 and of num_heads={self.num_heads}, "
                f"got {self.embed_dim!r} instead."
            )
        if len(self.patch_size) != 2 or min(self.patch_size) < 1:
            raise ValueError(f"'patch_size' must be two positive integers, got {self.patch_size!r} instead.")
        if self.n_widths < self.patch_size[1]:
            raise ValueError(
                f"'widths' must give at least patch_size[1]={self.patch_size[1]} widths, got {self.n_widths} instead."
            )
        for name in ("depth", "n_time_patches", "fuse_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)!r} instead.")

    @property
    def n_widths(self) -> int:
        """Number of wavelet widths (scalogram columns)."""
        return len(ricker_widths(*self.widths))

    @property
    def n_freq_patches(self) -> int:
        """Patch columns: ``n_widths // patch_size[1]`` (13)."""
        return self.n_widths // self.patch_size[1]

    def fuses_after(self, index: int) -> bool:
        """Whether layer ``index`` has a ``cls_fusion`` block."""
        return index % self.fuse_every == 0

    @classmethod
    def small(cls) -> NormWearConfig:
        """Return a 4-layer, 64-wide config with the same input format and token grid, for fast tests."""
        return cls(embed_dim=64, depth=4, num_heads=4)


def sincos_position_table(dim: int, n_rows: int, n_cols: int) -> torch.Tensor:
    """NormWear's fixed position code, ``(1 + n_rows * n_cols, dim)`` float32, row 0 (cls) all zeros.

    Patch ``(r, c)`` (row-major, as the Conv2d output is flattened) gets ``[sin(c ω), cos(c ω), sin(r ω),
    cos(r ω)]`` with ``ω_k = 10000^(-k / (dim / 4))``, ``k < dim / 4``: the first half codes the width column, the
    second half the time row (the published ``get_2d_sincos_pos_embed_flexible`` meshgrid order).
    """
    quarter = dim // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(n_rows, dtype=np.float64), np.arange(n_cols, dtype=np.float64), indexing="ij")

    def code(positions: np.ndarray) -> np.ndarray:
        angles = positions.reshape(-1, 1) * omega
        return np.concatenate((np.sin(angles), np.cos(angles)), axis=1)

    table = np.concatenate((code(cols), code(rows)), axis=1)
    return torch.from_numpy(np.concatenate((np.zeros((1, dim)), table), axis=0)).float()


class PatchEmbed(nn.Module):
    """Non-overlapping Conv2d patches: ``(N, 3, H, W)`` image → ``(N, (H // ph) · (W // pw), d)`` tokens."""

    def __init__(self, config: NormWearConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, config.embed_dim, kernel_size=config.patch_size, stride=config.patch_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → ``(N, P, d)``, patches row-major (time row, then width column)."""
        return self.proj(image).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a biased qkv projection."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        batch, n_tokens, dim = h.shape
        qkv = self.qkv(h).reshape(batch, n_tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, n_tokens, dim))


class Block(nn.Module):
    """Pre-norm ViT block: ``h + attn(LN(h))``, then ``h + mlp(LN(h))``."""

    def __init__(self, config: NormWearConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.block_norm_eps)
        self.attn = Attention(dim, config.num_heads, config.qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=config.block_norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        h = h + self.attn(self.norm1(h))
        return h + self.mlp(self.norm2(h))


class EncoderLayer(nn.Module):
    """One NormWear layer: ``variate_encoder`` on each channel's tokens, then (on fusing layers) ``cls_fusion``.

    ``cls_fusion`` is a block over the sequence of the ``C`` channels' cls tokens; its outputs replace them, the
    patch tokens pass unchanged. Input and output are ``(B, C, N, d)``.
    """

    def __init__(self, config: NormWearConfig, index: int) -> None:
        super().__init__()
        self.variate_encoder = Block(config)
        self.cls_fusion = Block(config) if config.fuses_after(index) else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, C, N, d)`` → ``(B, C, N, d)``."""
        batch, n_channels, n_tokens, dim = h.shape
        h = self.variate_encoder(h.reshape(batch * n_channels, n_tokens, dim)).reshape(h.shape)
        if self.cls_fusion is None:
            return h
        cls = self.cls_fusion(h[:, :, 0])  # (B, C, d): attention across channels
        return torch.cat((cls.unsqueeze(2), h[:, :, 1:]), dim=2)
