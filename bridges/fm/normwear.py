"""NormWear (multivariate wearable signals, here EMG): our implementation of the published encoder.

Per channel, the window ``x`` becomes a ``(3, L - 2, 65)`` image: Ricker-wavelet scalograms of ``x``, ``Δx`` and
``Δ²x`` at widths 0.1, 1.1, ..., 64.1 (:mod:`bridges.fm.cwt`). A Conv2d with kernel = stride = (9, 5) cuts it into
``(L - 2) // 9`` time × 13 width patches, each a 768-d token; a fixed 2-D sin-cos position code is added and a
cls token put first, so 390 samples give 43 × 13 = 559 patches + cls = 560 tokens per channel. Twelve pre-norm
ViT blocks (768 wide, 12 heads, MLP 3072, qkv bias) run on every channel separately; after blocks 0, 2, ..., 10
a ``cls_fusion`` block (same shape) attends across the channels' cls tokens (a sequence of ``C`` tokens) and
replaces them, which is the only place channels meet. A final LayerNorm gives ``[B, C, 560, 768]``.

Our canonical hidden state is the channels' tokens flattened channel-major, ``(B, C · N, d)``: 3 EMG channels ×
560 = 1,680 tokens of 768 (the FOG EMG→EEG bridge reads layer 10). :meth:`NormWear.channel_tokens` gives back
NormWear's own ``(B, C, N, d)`` layout.

Input rate. NormWear has no rate inside the network: it was pretrained on 390-sample windows (6 s at its 65 Hz)
whose images are 388 × 65, i.e. the 43 × 13 patch grid of its position table. BioX-Bridge feeds FOG EMG
resampled to 130 Hz in 3 s windows, again 390 samples and the same grid, z-scored per channel. Our default input
spec is that: 130 Hz, 3 s, 3 channels, z-scored. Windows of another length get the position table resized by
bicubic interpolation over the time axis (as the published ``get_signal_embedding`` does), not recomputed.

Module and parameter names are the published checkpoint's (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``encoder_blocks.{i}.variate_encoder`` / ``.cls_fusion`` with ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``, and ``norm``), so its encoder maps one-to-one; the masked-reconstruction decoder is
dropped. LayerNorm epsilon is 1e-5: the released weights were trained with timm's ``Block`` (``nn.LayerNorm``
defaults); the repository's 2026 port of that block uses 1e-6 (``NormWearConfig(block_norm_eps=1e-6)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bridges.fm.base import FoundationModel, InputSpec
from bridges.fm.checkpoints import check_state_keys, load_torch_state, strip_prefix
from bridges.fm.cwt import NORMWEAR_WIDTHS, NormWearScalogram, ricker_widths
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["NormWear", "NormWearConfig", "sincos_position_table"]


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


class Mlp(nn.Module):
    """Two-layer GELU MLP."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        return self.fc2(F.gelu(self.fc1(h)))


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


# Keys of the published pretraining checkpoint outside the encoder: the masked-reconstruction decoder.
_DROPPED_PREFIXES = ("decoder_embed.", "decoder_blocks.", "decoder_norm.", "temporal_recon.", "spatial_recon.")
_DROPPED_KEYS = ("mask_token", "decoder_pos_embed")


class NormWear(FoundationModel):
    """NormWear encoder as a :class:`FoundationModel`: ``layers`` are its ``encoder_blocks``.

    Raw input ``x`` is ``(B, C, L)``: ``C`` channels (3 for FOG EMG), z-scored per window and channel, at the
    spec's rate (130 Hz by default). Hidden states are ``(B, C · N, d)``, channel-major with each channel's cls
    token first, ``N = 1 + ((L - 2) // 9) · 13``. :meth:`finalize` is the final LayerNorm; :meth:`pool` is the
    mean over all channels' tokens (BioX-Bridge's linear-probe input).

    Parameters
    ----------
    config : NormWearConfig, optional
        Encoder size (default: the published one).
    n_channels : int
        Channels per window.
    window_s : float
        Window length the :attr:`input_spec` advertises (s).
    sfreq_hz : float
        Sampling rate of the input (Hz); see the module notes on 65 vs 130 Hz.
    """

    name = "normwear"

    def __init__(
        self,
        config: NormWearConfig | None = None,
        *,
        n_channels: int = 3,
        window_s: float = 3.0,
        sfreq_hz: float = 130.0,
    ) -> None:
        super().__init__()
        config = NormWearConfig() if config is None else config
        self.config = config
        if isinstance(n_channels, bool) or not isinstance(n_channels, int) or n_channels < 1:
            raise BadInputError(f"'n_channels' must be a positive integer, got {n_channels!r} instead.")
        if not (sfreq_hz > 0 and window_s > 0):
            raise BadInputError(f"'sfreq_hz' and 'window_s' must be > 0, got {sfreq_hz!r} and {window_s!r}.")
        self.input_spec = InputSpec(
            modality="emg",
            sfreq_hz=float(sfreq_hz),
            window_s=float(window_s),
            n_channels=n_channels,
            unit="",
            scale=1.0,
            normalisation="zscore",
        )
        if self.input_spec.n_samples < self.min_samples:
            raise BadInputError(
                f"'window_s' must give at least {self.min_samples} samples at {sfreq_hz} Hz "
                f"(one patch row), got {window_s!r} s = {self.input_spec.n_samples} samples instead."
            )

        dim = config.embed_dim
        self.scalogram = NormWearScalogram(ricker_widths(*config.widths))
        self.patch_embed = PatchEmbed(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        table = sincos_position_table(dim, config.n_time_patches, config.n_freq_patches)
        self.register_buffer("pos_embed", table.unsqueeze(0))  # fixed, but in the checkpoint: persistent
        self.encoder_blocks = nn.ModuleList(EncoderLayer(config, index) for index in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self._init_weights()

    @property
    def layers(self) -> nn.ModuleList:  # type: ignore[override]
        """The encoder layers (named ``encoder_blocks`` as in the checkpoint)."""
        return self.encoder_blocks

    @property
    def min_samples(self) -> int:
        """Shortest window: two samples for the differences plus one patch row."""
        return 2 + self.config.patch_size[0]

    def patch_grid(self, n_samples: int) -> tuple[int, int]:
        """Patch ``(time rows, width columns)`` of an ``n_samples`` window: ``((L - 2) // 9, 13)``."""
        return (n_samples - 2) // self.config.patch_size[0], self.config.n_freq_patches

    def tokens_per_channel(self, n_samples: int) -> int:
        """Tokens of one channel (cls + patches) for an ``n_samples`` window; 560 for 390 samples."""
        rows, cols = self.patch_grid(n_samples)
        return 1 + rows * cols

    def _init_weights(self) -> None:
        # As the published initialisation: xavier-uniform linear layers with zero bias, cls token N(0, 0.02).
        nn.init.normal_(self.cls_token, std=0.02)
        for module in self.encoder_blocks.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: NormWearConfig | None = None,
        *,
        n_channels: int = 3,
        window_s: float = 3.0,
        sfreq_hz: float = 130.0,
        random_state: int | None = None,
    ) -> NormWear:
        """Build with random weights (the published size unless ``config`` says otherwise), in eval mode.

        Parameters
        ----------
        config : NormWearConfig, optional
            Encoder size; ``NormWearConfig.small()`` for fast tests.
        n_channels : int
            Channels per window.
        window_s : float
            Window length (s).
        sfreq_hz : float
            Input rate (Hz).
        random_state : int, optional
            Seed for the weights; the global torch RNG is left as it was.
        """
        with torch.random.fork_rng(devices=[]):
            if random_state is not None:
                torch.manual_seed(random_state)
            return cls(config, n_channels=n_channels, window_s=window_s, sfreq_hz=sfreq_hz).eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        config: NormWearConfig | None = None,
        *,
        n_channels: int = 3,
        window_s: float = 3.0,
        sfreq_hz: float = 130.0,
        trust_pickle: bool = False,
    ) -> NormWear:
        """Load the released checkpoint (or any state dict of the encoder), in eval mode.

        Both layouts seen in the wild load: the training script's dict with the weights under ``model`` (beside
        ``optimizer``, ``epoch``, ``args``...) and a bare state dict. Keys may carry a ``module.`` (DDP) or
        ``backbone.`` (a wrapping model) prefix. The masked-reconstruction decoder (``decoder_*``,
        ``mask_token``, ``temporal_recon``, ``spatial_recon``) is dropped; every encoder key must be there.

        Parameters
        ----------
        path : str or Path
            The ``.pth`` file, read with ``torch.load(weights_only=True)`` unless ``trust_pickle``.
        config : NormWearConfig, optional
            Encoder size (default: the published one).
        n_channels : int
            Channels per window.
        window_s : float
            Window length (s).
        sfreq_hz : float
            Input rate (Hz).
        trust_pickle : bool
            Allow full unpickling (runs code from the file): only for files you trust.

        Raises
        ------
        CheckpointError
            Unreadable file, or missing / unexpected / mis-shaped encoder keys (one line naming them).
        """
        # The MAE-style training script pickles its argparse.Namespace next to the weights; read it inertly.
        state = load_torch_state(path, trust_pickle, keys=("model", "state_dict"), records=("argparse.Namespace",))
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the global RNG as it was
            model = cls(config, n_channels=n_channels, window_s=window_s, sfreq_hz=sfreq_hz)
        encoder = _encoder_state(state)
        check_state_keys(model, encoder, f"'{path}'")
        model.load_state_dict(encoder, strict=True)
        return model.eval()

    # ------------------------------------------------------------------ FoundationModel

    def position_embedding(self, n_time_patches: int) -> torch.Tensor:
        """Position rows for ``n_time_patches`` time rows, ``(1 + n_time_patches · 13, d)``, cls row first.

        The stored table when the grid is its own (43 rows); otherwise its patch part resized over time by
        bicubic interpolation (``align_corners=False``), the cls row kept, as the published embedding code does.
        """
        table = self.pos_embed[0]
        if n_time_patches == self.config.n_time_patches:
            return table
        rows, cols = self.config.n_time_patches, self.config.n_freq_patches
        grid = table[1:].reshape(1, rows, cols, -1).permute(0, 3, 1, 2)
        resized = F.interpolate(grid, size=(n_time_patches, cols), mode="bicubic", align_corners=False)
        return torch.cat((table[:1], resized[0].permute(1, 2, 0).reshape(n_time_patches * cols, -1)), dim=0)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stem: ``(B, C, L)`` z-scored signal → layer-0 input ``(B, C · N, d)`` (channel-major, cls first)."""
        n_channels = self.input_spec.n_channels
        if x.ndim != 3 or x.shape[1] != n_channels or x.shape[2] < self.min_samples:
            raise BadInputError(
                f"NormWear input must be (batch, {n_channels} channels, >= {self.min_samples} samples), "
                f"got {tuple(x.shape)} instead."
            )
        batch, _, n_samples = x.shape
        weight = self.patch_embed.proj.weight
        image = self.scalogram(x).to(weight.dtype)  # (B, C, 3, L - 2, n_widths)
        tokens = self.patch_embed(image.flatten(0, 1))  # (B·C, P, d)
        positions = self.position_embedding(self.patch_grid(n_samples)[0])
        cls = (self.cls_token[0] + positions[:1]).expand(tokens.shape[0], 1, -1)
        tokens = torch.cat((cls, tokens + positions[1:]), dim=1)
        return tokens.reshape(batch, n_channels * tokens.shape[1], -1)

    def channel_tokens(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, C · N, d)`` → NormWear's own ``(B, C, N, d)`` layout."""
        n_channels = self.input_spec.n_channels
        batch, n_tokens, dim = h.shape
        if n_tokens % n_channels:
            raise BadInputError(
                f"NormWear hidden states must hold {n_channels} channels' tokens, got {n_tokens} tokens "
                f"(not a multiple of {n_channels})."
            )
        return h.reshape(batch, n_channels, n_tokens // n_channels, dim)

    def _run_layer(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Run encoder layer ``index`` on ``(B, C · N, d)`` → ``(B, C · N, d)``."""
        return self.encoder_blocks[index](self.channel_tokens(h)).reshape(h.shape)

    def finalize(self, h: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm."""
        return self.norm(h)


def _encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the encoder's entries of a NormWear state dict: prefixes removed, decoder keys dropped."""
    state = strip_prefix(state, "module.")
    if any(key.startswith("backbone.") for key in state):
        # A wrapping model (e.g. a fine-tuned NormWear with a head): keep its backbone only.
        outside = sorted(key for key in state if not key.startswith("backbone."))
        if outside:
            logger.debug("Dropping %d keys outside the backbone: %s", len(outside), outside)
        state = strip_prefix({k: v for k, v in state.items() if k.startswith("backbone.")}, "backbone.")
    return {
        key: value
        for key, value in state.items()
        if not key.startswith(_DROPPED_PREFIXES) and key not in _DROPPED_KEYS
    }
