"""NormWear (multivariate wearable signals, here EMG): our implementation of the published encoder.

Per channel, the window ``x`` becomes a ``(3, L - 2, 65)`` image: Ricker-wavelet scalograms of ``x``, ``Δx`` and
``Δ²x`` at widths 0.1, 1.1, ..., 64.1 (:mod:`bridges.fm.cwt`). A Conv2d with kernel = stride = (9, 5) cuts it into
``(L - 2) // 9`` time × 13 width patches, each a 768-d token; a fixed 2-D sin-cos position code is added and a
cls token put first, so 390 samples give 43 × 13 = 559 patches + cls = 560 tokens per channel. Twelve pre-norm
ViT blocks (768 wide, 12 heads, MLP 3072, qkv bias) run on every channel separately; after blocks 0, 2, ..., 10
a ``cls_fusion`` block (same shape) attends across the channels' cls tokens (a sequence of ``C`` tokens) and
replaces them, which is the only place channels meet. A final LayerNorm gives ``[B, C, 560, 768]``.

Our canonical hidden state is the channels' tokens flattened channel-major, ``(B, C · N, d)``: 3 EMG channels ×
560 = 1,680 tokens of 768, what the FOG EMG→EEG bridge hands to block 10 (``suffix(h, 10)``).
:meth:`NormWear.channel_tokens` gives back NormWear's own ``(B, C, N, d)`` layout.

Input rate. NormWear has no rate inside the network: it was pretrained on 390-sample windows (6 s at the 65 Hz
its code names as the model rate) whose images are 388 × 65, i.e. the 43 × 13 patch grid of its position
table. BioX-Bridge feeds FOG EMG resampled to 130 Hz in 3 s windows, again 390 samples and the same grid,
z-scored per channel. Our default input spec is that: 130 Hz, 3 s, 3 channels, z-scored. Windows of another
length get the position table resized by bicubic interpolation over the time axis (as the published
``get_signal_embedding`` does), not recomputed.

Module and parameter names are the published checkpoint's (``patch_embed.proj``, ``cls_token``, ``pos_embed``,
``encoder_blocks.{i}.variate_encoder`` / ``.cls_fusion`` with ``norm1``, ``attn.qkv``, ``attn.proj``, ``norm2``,
``mlp.fc1``, ``mlp.fc2``, and ``norm``), so its encoder maps one-to-one; the masked-reconstruction decoder is
dropped. LayerNorm epsilon is 1e-5: the released weights were trained with timm's ``Block`` (``nn.LayerNorm``
defaults); the repository's 2026 port of that block uses 1e-6 (``NormWearConfig(block_norm_eps=1e-6)``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bridges.fm.base import FoundationModel, InputSpec
from bridges.fm.checkpoints import check_state_keys, load_torch_state, strip_prefix
from bridges.fm.cwt import NormWearScalogram, ricker_widths
from bridges.fm.normwear_layers import EncoderLayer, NormWearConfig, PatchEmbed, sincos_position_table
from bridges.input_scaling import PUBLISHED
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["NormWear", "NormWearConfig", "sincos_position_table"]


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
    #: Each channel z-scored (BioX-Bridge's FOG preparation, which names it NormWear's own preprocessing).
    published_scaling = "zscore"

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
        input_scaling: str = PUBLISHED,
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
        input_scaling : str
            Input scaling (:mod:`bridges.input_scaling`); default ``"published"``: each channel z-scored per window.

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
        return model.use_input_scaling(input_scaling).eval()

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
