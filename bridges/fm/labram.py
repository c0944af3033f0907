"""LaBraM-base (EEG): a ViT over 1-s single-channel patches, our implementation of the published architecture.

Input: ``C`` EEG channels at 200 Hz, in µV scaled by 1/100 (0.1 mV units), cut into 1-s patches of 200 samples.
A temporal convolution stem turns each patch into one 200-d token; a learned channel-position embedding (one row
per 10-20 electrode name, row 0 for the cls token) and a learned per-second time embedding are added; 12
pre-norm transformer blocks with q/k LayerNorm and LayerScale follow. Tokens are ``[cls, (ch 0, s 0), (ch 0, s 1),
..., (ch C-1, s S-1)]``: channel-major, 1 + C·S of them (181 for 6 channels × 30 s).

Weights load from the released ``labram-base.pth`` (encoder under ``model`` with a ``student.`` prefix). Our
module names are the checkpoint's (``patch_embed``, ``blocks``, ...), so a state dict maps one-to-one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bridges.fm.base import FoundationModel, InputSpec
from bridges.fm.checkpoints import check_state_keys, load_torch_state, strip_prefix
from bridges.fm.labram_channels import ISRUC_CHANNELS, LABRAM_POSITIONS, labram_position
from bridges.fm.mlp import Mlp
from bridges.input_scaling import PUBLISHED
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["ISRUC_CHANNELS", "LABRAM_POSITIONS", "Labram", "LabramConfig", "labram_position"]


@dataclass(frozen=True)
class LabramConfig:
    """Size of a LaBraM encoder (defaults: LaBraM-base, 5.8 M parameters).

    Parameters
    ----------
    embed_dim : int
        Token width; must equal ``conv_channels * ceil(patch_samples / 8)`` (the stem's flattened output).
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads; must divide ``embed_dim``.
    mlp_ratio : float
        MLP hidden width as a multiple of ``embed_dim``.
    conv_channels : int
        Channels of the temporal-convolution stem (a multiple of 4: GroupNorm with 4 groups).
    patch_samples : int
        Samples per patch (1 s at the model rate).
    sfreq_hz : float
        Model sampling rate (Hz).
    n_time_embed : int
        Rows of the learned time embedding (seconds covered without extension).
    layer_scale_init : float
        Initial LayerScale value (gamma) for random weights.
    norm_eps : float
        LayerNorm epsilon.
    """

    embed_dim: int = 200
    depth: int = 12
    num_heads: int = 10
    mlp_ratio: float = 4.0
    conv_channels: int = 8
    patch_samples: int = 200
    sfreq_hz: float = 200.0
    n_time_embed: int = 16
    layer_scale_init: float = 0.1
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        stem_width = self.conv_channels * math.ceil(self.patch_samples / 8)
        if self.embed_dim != stem_width:
            raise ValueError(
                f"'embed_dim' must be conv_channels * ceil(patch_samples / 8) = {stem_width}, "
                f"got {self.embed_dim!r} instead."
            )
        if self.conv_channels % 4:
            raise ValueError(f"'conv_channels' must be a multiple of 4, got {self.conv_channels!r} instead.")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"'num_heads' must divide embed_dim={self.embed_dim}, got {self.num_heads!r} instead.")
        if self.depth < 1 or self.n_time_embed < 1:
            raise ValueError(f"'depth' and 'n_time_embed' must be >= 1, got {self.depth}, {self.n_time_embed}.")

    @classmethod
    def small(cls) -> LabramConfig:
        """Return a 2-block, 100-wide config with the same input format, for fast tests."""
        return cls(embed_dim=100, depth=2, num_heads=4, conv_channels=4)


class TemporalConv(nn.Module):
    """Patch stem: three 1-D convolutions along each patch → one token per (channel, second).

    Input ``(B, N, P)`` (N = C·S patches of P samples) → ``(B, N, conv_channels * ceil(P / 8))``; the flattened
    feature index is ``time_step * conv_channels + conv_channel``, as in the published weights.
    """

    def __init__(self, conv_channels: int) -> None:
        super().__init__()
        # Conv2d with (1, k) kernels runs every patch through the same 1-D convolution; kept 2-D to match the
        # published weight shapes (out, in, 1, k).
        self.conv1 = nn.Conv2d(1, conv_channels, kernel_size=(1, 15), stride=(1, 8), padding=(0, 7))
        self.norm1 = nn.GroupNorm(4, conv_channels)
        self.conv2 = nn.Conv2d(conv_channels, conv_channels, kernel_size=(1, 3), padding=(0, 1))
        self.norm2 = nn.GroupNorm(4, conv_channels)
        self.conv3 = nn.Conv2d(conv_channels, conv_channels, kernel_size=(1, 3), padding=(0, 1))
        self.norm3 = nn.GroupNorm(4, conv_channels)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, N, P)`` → ``(B, N, d)``."""
        h = patches.unsqueeze(1)
        h = F.gelu(self.norm1(self.conv1(h)))
        h = F.gelu(self.norm2(self.conv2(h)))
        h = F.gelu(self.norm3(self.conv3(h)))  # (B, conv_channels, N, P / 8)
        return h.permute(0, 2, 3, 1).flatten(2)


class Attention(nn.Module):
    """Multi-head self-attention without qkv bias, with LayerNorm on each head's queries and keys."""

    def __init__(self, dim: int, num_heads: int, norm_eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.q_norm = nn.LayerNorm(head_dim, eps=norm_eps)
        self.k_norm = nn.LayerNorm(head_dim, eps=norm_eps)
        self.proj = nn.Linear(dim, dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        batch, n_tokens, dim = h.shape
        qkv = self.qkv(h).reshape(batch, n_tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        out = F.scaled_dot_product_attention(self.q_norm(q), self.k_norm(k), v)
        return self.proj(out.transpose(1, 2).reshape(batch, n_tokens, dim))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: ``h + γ1·attn(LN(h))``, then ``h + γ2·mlp(LN(h))``."""

    def __init__(self, config: LabramConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=config.norm_eps)
        self.attn = Attention(dim, config.num_heads, config.norm_eps)
        self.norm2 = nn.LayerNorm(dim, eps=config.norm_eps)
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.full((dim,), config.layer_scale_init))
        self.gamma_2 = nn.Parameter(torch.full((dim,), config.layer_scale_init))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, T, d)`` → ``(B, T, d)``."""
        h = h + self.gamma_1 * self.attn(self.norm1(h))
        return h + self.gamma_2 * self.mlp(self.norm2(h))


# Keys of the released checkpoint that are not part of the encoder (after the ``student.`` prefix is removed):
# the masked-modelling head and mask token, the pretraining final norm (LaBraM's mean-pooling fine-tuning model
# replaces it with ``fc_norm`` on the pooled vector), a fine-tuned classifier ``head`` and stale relative-position
# index buffers.
_DROPPED_PREFIXES = ("lm_head.", "projection_head.", "head.", "norm.")
_DROPPED_KEYS = ("mask_token", "logit_scale")


class Labram(FoundationModel):
    """LaBraM encoder as a :class:`FoundationModel`: ``layers`` are its transformer ``blocks``.

    Raw input ``x`` is ``(B, C, S·200)``: ``C`` channels in the order of ``channels``, 200 Hz, µV × 1/100.
    Hidden states are ``(B, 1 + C·S, d)`` with the cls token first. :meth:`finalize` is the identity (the
    mean-pooling LaBraM has no final norm on tokens); :meth:`pool` is ``fc_norm`` of the mean of the patch tokens
    (cls excluded), as in LaBraM's fine-tuning model.

    Windows up to ``n_time_embed`` (16) seconds use the first ``S`` rows of the learned time embedding. Longer
    windows use the table **linearly interpolated** to ``S`` rows (end rows kept, ``align_corners=True``), so
    the whole window is covered by the learned time code stretched over it; no row is left random.

    Parameters
    ----------
    config : LabramConfig
        Encoder size.
    channels : sequence of str
        EEG channel labels, in input order (10-20 names; ``"F3-A2"`` counts as ``F3``).
    window_s : float
        Window length the :attr:`input_spec` advertises (s); a whole number of seconds.
    """

    name = "labram"
    #: LaBraM's training loops divide the µV signal by 100 (0.1 mV units), with no per-window normalisation.
    published_scaling = "uv_over_100"

    def __init__(
        self,
        config: LabramConfig | None = None,
        *,
        channels: Sequence[str] = ISRUC_CHANNELS,
        window_s: float = 30.0,
    ) -> None:
        super().__init__()
        config = LabramConfig() if config is None else config
        self.config = config
        channels = (channels,) if isinstance(channels, str) else tuple(channels)
        if not channels:
            raise BadInputError("LaBraM needs at least one EEG channel, got none.")
        rows = [labram_position(label) for label in channels]
        if len(set(rows)) != len(rows):
            names = [LABRAM_POSITIONS[r - 1] for r in rows]
            raise BadInputError(f"EEG channels {list(channels)} name the same electrode twice ({names}).")
        n_seconds = window_s * config.sfreq_hz / config.patch_samples
        if window_s <= 0 or n_seconds != int(n_seconds):
            raise BadInputError(f"'window_s' must be a positive whole number of 1-s patches, got {window_s!r} instead.")
        self.input_spec = InputSpec(
            modality="eeg",
            sfreq_hz=config.sfreq_hz,
            window_s=float(window_s),
            n_channels=len(channels),
            channel_labels=tuple(LABRAM_POSITIONS[r - 1] for r in rows),
            unit="uV",
            scale=0.01,
            normalisation="none",
        )
        self.register_buffer("position_rows", torch.tensor([0, *rows]), persistent=False)

        dim = config.embed_dim
        self.patch_embed = TemporalConv(config.conv_channels)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, len(LABRAM_POSITIONS) + 1, dim))
        self.time_embed = nn.Parameter(torch.zeros(1, config.n_time_embed, dim))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.fc_norm = nn.LayerNorm(dim, eps=config.norm_eps)
        self._init_weights()

    @property
    def layers(self) -> nn.ModuleList:  # type: ignore[override]
        """The transformer blocks (named ``blocks`` as in the checkpoint)."""
        return self.blocks

    @property
    def channels(self) -> tuple[str, ...]:
        """Canonical 10-20 names of the input channels, in input order."""
        return self.input_spec.channel_labels

    def _init_weights(self) -> None:
        # Normal (std 0.02) as in the reference, so random-weight models have realistic scales.
        for param in (self.cls_token, self.pos_embed, self.time_embed):
            nn.init.trunc_normal_(param, std=0.02)
        for index, block in enumerate(self.blocks):
            for module in block.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=0.02)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)
            # Depth-scaled output projections keep the residual stream's variance bounded.
            block.attn.proj.weight.data.div_(math.sqrt(2.0 * (index + 1)))
            block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * (index + 1)))

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: LabramConfig | None = None,
        *,
        channels: Sequence[str] = ISRUC_CHANNELS,
        window_s: float = 30.0,
        random_state: int | None = None,
    ) -> Labram:
        """Build with random weights (the real LaBraM-base size unless ``config`` says otherwise), in eval mode.

        Parameters
        ----------
        config : LabramConfig, optional
            Encoder size; ``LabramConfig.small()`` for fast tests.
        channels : sequence of str
            EEG channel labels, in input order.
        window_s : float
            Window length (s).
        random_state : int, optional
            Seed for the weights; the global torch RNG is left as it was.
        """
        with torch.random.fork_rng(devices=[]):
            if random_state is not None:
                torch.manual_seed(random_state)
            return cls(config, channels=channels, window_s=window_s).eval()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        channels: Sequence[str] = ISRUC_CHANNELS,
        window_s: float = 30.0,
        trust_pickle: bool = False,
        input_scaling: str = PUBLISHED,
    ) -> Labram:
        """Load LaBraM-base from the released ``labram-base.pth`` (or a bare encoder state dict), in eval mode.

        The encoder is the ``student.``-prefixed part of the ``model`` entry; the pretraining heads
        (``lm_head``, ``projection_head``, ``mask_token``, ``logit_scale``) and the pretraining final ``norm``
        are dropped. ``fc_norm`` is loaded when the file has it, else it stays the identity LayerNorm LaBraM's
        fine-tuning starts from.

        Parameters
        ----------
        path : str or Path
            The checkpoint file.
        channels : sequence of str
            EEG channel labels, in input order.
        window_s : float
            Window length (s).
        trust_pickle : bool
            Allow full unpickling (runs code from the file): only for files you trust.
        input_scaling : str
            Input scaling (:mod:`bridges.input_scaling`); default ``"published"``: µV / 100, no per-window
            normalisation.

        Raises
        ------
        CheckpointError
            Unreadable file, or missing / unexpected / mis-shaped encoder keys (one line naming them).
        """
        # The BEiT-style training script pickles its argparse.Namespace next to the weights; read it inertly.
        state = load_torch_state(path, trust_pickle, keys=("model", "module"), records=("argparse.Namespace",))
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the global RNG as it was
            model = cls(LabramConfig(), channels=channels, window_s=window_s)
        encoder = _encoder_state(state)
        if "fc_norm.weight" not in encoder and "fc_norm.bias" not in encoder:
            logger.info("No fc_norm in '%s': pooling uses an identity-initialised LayerNorm.", path)
            encoder.update({f"fc_norm.{k}": v for k, v in model.fc_norm.state_dict().items()})
        check_state_keys(model, encoder, f"'{path}'")
        model.load_state_dict(encoder)
        return model.use_input_scaling(input_scaling).eval()

    # ------------------------------------------------------------------ FoundationModel

    def time_embedding(self, n_seconds: int) -> torch.Tensor:
        """Time-embedding rows for an ``n_seconds`` window, ``(n_seconds, d)``.

        The first ``n_seconds`` learned rows when they suffice; otherwise the learned table linearly
        interpolated to ``n_seconds`` rows (first and last rows kept).
        """
        table = self.time_embed[0]
        if n_seconds <= table.shape[0]:
            return table[:n_seconds]
        stretched = F.interpolate(table.T.unsqueeze(0), size=n_seconds, mode="linear", align_corners=True)
        return stretched[0].T

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stem: ``(B, C, S·200)`` scaled EEG → layer-0 input ``(B, 1 + C·S, d)`` (cls first, channel-major)."""
        patch = self.config.patch_samples
        n_channels = self.input_spec.n_channels
        if x.ndim != 3 or x.shape[1] != n_channels or x.shape[2] < patch or x.shape[2] % patch:
            raise BadInputError(
                f"LaBraM input must be (batch, {n_channels} channels, a multiple of {patch} samples), "
                f"got {tuple(x.shape)} instead."
            )
        batch, _, n_samples = x.shape
        n_seconds = n_samples // patch
        tokens = self.patch_embed(x.reshape(batch, n_channels * n_seconds, patch))
        positions = self.pos_embed[0, self.position_rows]  # (1 + C, d)
        channel_code = positions[1:, None, :].expand(-1, n_seconds, -1)
        time_code = self.time_embedding(n_seconds)[None, :, :].expand(n_channels, -1, -1)
        tokens = tokens + (channel_code + time_code).reshape(1, n_channels * n_seconds, -1)
        cls = (self.cls_token[0] + positions[:1]).expand(batch, -1, -1)
        return torch.cat((cls, tokens), dim=1)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Head features ``(B, d)``: ``fc_norm`` of the mean over patch tokens (the cls token is left out)."""
        return self.fc_norm(h[:, 1:].mean(dim=1))


def _encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the encoder's entries of a LaBraM state dict: ``student.`` removed, non-encoder keys dropped."""
    if any(key.startswith("student.") for key in state):
        # Top-level keys beside ``student.`` belong to the pretraining wrapper (lm_head, projection_head, ...).
        outside = sorted(key for key in state if not key.startswith("student."))
        if outside:
            logger.debug("Dropping %d pretraining-wrapper keys: %s", len(outside), outside)
        state = strip_prefix({k: v for k, v in state.items() if k.startswith("student.")}, "student.")
    else:
        state = strip_prefix(state, "module.")
    return {
        key: value
        for key, value in state.items()
        if not key.startswith(_DROPPED_PREFIXES)
        and key not in _DROPPED_KEYS
        and not key.endswith("relative_position_index")
    }
