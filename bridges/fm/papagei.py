"""PaPaGei-S (PPG): our implementation of the published 1-D ResNet with MoE heads (``ResNet1DMoE``).

Input: one z-scored PPG channel at 125 Hz. A SAME-padded convolution stem (1 → 32 channels) is followed by 18
basic blocks (kernel 3); every odd block halves the time axis (stride-2 SAME convolution, max-pooled shortcut)
and blocks 4, 8, 12 and 16 double the channels (32 → 512; the shortcut is zero-padded on both sides of the
channel axis). A final BatchNorm + ReLU, a mean over time (512-d), a ``dense`` 512 → 512 projection and two
3-expert regression heads close the network. For a 60-s window (7500 samples) the time axis shrinks
7500 → 3750 → ... → 15.

Module names are the checkpoint's (``first_block_conv``, ``basicblock_list``, ``final_bn``, ``dense``, ...), so
``papagei_s.pt`` (a bare state dict, optionally with DDP's ``module.`` prefix) maps one-to-one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bridges.fm.base import FoundationModel, InputSpec
from bridges.fm.checkpoints import check_state_keys, load_torch_state, strip_prefix
from bridges.input_scaling import PUBLISHED
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["Papagei", "PapageiConfig"]


@dataclass(frozen=True)
class PapageiConfig:
    """Size of a PaPaGei ResNet (defaults: PaPaGei-S, 5.8 M parameters).

    Parameters
    ----------
    base_filters : int
        Channels of the stem and the first blocks.
    kernel_size : int
        Convolution kernel length (samples).
    stride : int
        Time downsampling factor of a downsampling block.
    n_blocks : int
        Number of basic blocks.
    downsample_gap : int
        Blocks ``i`` with ``i % downsample_gap == 1`` downsample.
    increasefilter_gap : int
        Blocks ``i > 0`` with ``i % increasefilter_gap == 0`` double the channels.
    projection_dim : int
        Output width of ``dense`` (PaPaGei's ``n_classes``, its embedding size).
    n_experts : int
        Experts per mixture-of-experts head.
    dropout : float
        Dropout probability inside the blocks (active in training mode only).
    sfreq_hz : float
        Model sampling rate (Hz).
    """

    base_filters: int = 32
    kernel_size: int = 3
    stride: int = 2
    n_blocks: int = 18
    downsample_gap: int = 2
    increasefilter_gap: int = 4
    projection_dim: int = 512
    n_experts: int = 3
    dropout: float = 0.5
    sfreq_hz: float = 125.0

    def __post_init__(self) -> None:
        for name in ("base_filters", "kernel_size", "stride", "n_blocks", "downsample_gap", "increasefilter_gap"):
            if getattr(self, name) < 1:
                raise ValueError(f"'{name}' must be >= 1, got {getattr(self, name)!r} instead.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1), got {self.dropout!r} instead.")

    @classmethod
    def small(cls) -> PapageiConfig:
        """Return a 6-block, 4-filter config with the same input format, for fast tests."""
        return cls(base_filters=4, n_blocks=6, projection_dim=16, n_experts=2)

    def block_channels(self, index: int) -> tuple[int, int]:
        """``(in_channels, out_channels)`` of block ``index``, by the published rule."""
        if index == 0:
            return self.base_filters, self.base_filters
        in_channels = self.base_filters * 2 ** ((index - 1) // self.increasefilter_gap)
        doubles = index % self.increasefilter_gap == 0
        return in_channels, in_channels * 2 if doubles else in_channels

    @property
    def out_channels(self) -> int:
        """Channels after the last block (the pooled feature width)."""
        return self.block_channels(self.n_blocks - 1)[1]


def _same_padding(length: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """``(left, right)`` zero padding giving ``ceil(length / stride)`` outputs (TensorFlow-style SAME)."""
    n_out = (length + stride - 1) // stride  # ceil; written so that TorchScript-era ONNX export keeps it exact
    total = max(0, (n_out - 1) * stride + kernel_size - length)
    return total // 2, total - total // 2


class SameConv1d(nn.Module):
    """Conv1d with SAME padding computed from the input length (wrapped as ``.conv``, as in the checkpoint)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, L)`` → ``(B, C_out, ceil(L / stride))``."""
        (kernel,), (stride,) = self.conv.kernel_size, self.conv.stride
        return self.conv(F.pad(x, _same_padding(x.shape[-1], kernel, stride)))


class BasicBlock(nn.Module):
    """Pre-activation residual block: ``[BN-ReLU-Dropout]-Conv(stride)-BN-ReLU-Dropout-Conv`` + shortcut.

    The first block of the network skips the leading BN-ReLU-Dropout (the stem already applied BN-ReLU); its
    ``bn1`` still exists, because the checkpoint holds it. A downsampling block max-pools the shortcut with
    kernel = stride after zero-padding it on the right (so an odd length's last shortcut value is
    ``max(x, 0)``, as in the published network); a widening block zero-pads the shortcut's channel axis, half
    (rounded down) in front and the rest behind.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        config: PapageiConfig,
        *,
        downsample: bool,
        is_first_block: bool,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = config.stride if downsample else 1
        self.downsample = downsample
        self.is_first_block = is_first_block
        self.bn1 = nn.BatchNorm1d(in_channels)
        self.drop1 = nn.Dropout(config.dropout)
        self.conv1 = SameConv1d(in_channels, out_channels, config.kernel_size, self.stride)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.drop2 = nn.Dropout(config.dropout)
        self.conv2 = SameConv1d(out_channels, out_channels, config.kernel_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, L)`` → ``(B, C_out, ceil(L / stride))``."""
        out = x if self.is_first_block else self.drop1(F.relu(self.bn1(x)))
        out = self.conv1(out)
        out = self.conv2(self.drop2(F.relu(self.bn2(out))))
        shortcut = x
        if self.downsample:
            # The published pool pads as if its stride were 1 (kernel - 1 zeros, right-heavy), then pools with
            # stride = kernel: for kernel 2 that is one zero on the right, giving ceil(L / 2) outputs.
            total = self.stride - 1
            shortcut = F.max_pool1d(F.pad(shortcut, (total // 2, total - total // 2)), self.stride)
        if self.out_channels != self.in_channels:
            extra = self.out_channels - self.in_channels
            shortcut = F.pad(shortcut, (0, 0, extra // 2, extra - extra // 2))
        return out + shortcut


class Papagei(FoundationModel):
    """PaPaGei-S as a :class:`FoundationModel`: ``layers`` are its 18 basic blocks (``basicblock_list``).

    Raw input ``x`` is ``(B, 1, L)``: one PPG channel at 125 Hz, z-scored per window. The network is a CNN with
    internal layout ``(B, channels, time)``; at this adapter's boundary hidden states are transposed to the
    canonical ``(B, time, channels)``: tokens are time steps, width is channels (a 60-s window gives
    ``(15, 512)`` after the last block). :meth:`finalize` is the final BatchNorm + ReLU.

    :meth:`pool` returns the **512-d mean over time before** ``dense``. That vector is what both MoE heads of
    PaPaGei read, and it is "the last layer, mean-pooled" of the method (DESIGN §2; the reference
    implementation also probes a 512-d mean). ``dense`` is linear, so a linear probe on its output spans the
    same functions as one on its input; nothing is lost by stopping before it. PaPaGei's published embedding
    (``dense`` output) is available as :meth:`project`.

    Parameters
    ----------
    config : PapageiConfig
        Network size.
    window_s : float
        Window length the :attr:`input_spec` advertises (s).
    """

    name = "papagei"
    #: PaPaGei's embedding scripts z-score each (0.5–12 Hz band-passed) segment.
    published_scaling = "zscore"

    def __init__(self, config: PapageiConfig | None = None, *, window_s: float = 60.0) -> None:
        super().__init__()
        config = PapageiConfig() if config is None else config
        self.config = config
        n_samples = window_s * config.sfreq_hz
        if window_s <= 0 or n_samples != round(n_samples):
            raise BadInputError(
                f"'window_s' must be positive and a whole number of samples at {config.sfreq_hz:g} Hz, "
                f"got {window_s!r} instead."
            )
        self.input_spec = InputSpec(
            modality="ppg", sfreq_hz=config.sfreq_hz, window_s=float(window_s), n_channels=1, normalisation="zscore"
        )
        base = config.base_filters
        self.first_block_conv = SameConv1d(1, base, config.kernel_size, 1)
        self.first_block_bn = nn.BatchNorm1d(base)
        blocks = []
        for index in range(config.n_blocks):
            in_channels, out_channels = config.block_channels(index)
            downsample = index % config.downsample_gap == 1
            blocks.append(
                BasicBlock(in_channels, out_channels, config, downsample=downsample, is_first_block=index == 0)
            )
        self.basicblock_list = nn.ModuleList(blocks)
        width = config.out_channels
        self.final_bn = nn.BatchNorm1d(width)
        self.dense = nn.Linear(width, config.projection_dim)
        # Mixture-of-experts regression heads, kept so the checkpoint loads strictly; they are not on the
        # feature path (see :meth:`moe_heads`).
        self.expert_layers_1 = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(), nn.Linear(width // 2, 1))
            for _ in range(config.n_experts)
        )
        self.gating_network_1 = nn.Sequential(nn.Linear(width, config.n_experts), nn.Softmax(dim=1))
        self.expert_layers_2 = nn.ModuleList(
            nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(), nn.Dropout(0.3), nn.Linear(width // 2, 1))
            for _ in range(config.n_experts)
        )
        self.gating_network_2 = nn.Sequential(nn.Linear(width, config.n_experts), nn.Softmax(dim=1))

    @property
    def layers(self) -> nn.ModuleList:  # type: ignore[override]
        """The basic blocks (named ``basicblock_list`` as in the checkpoint)."""
        return self.basicblock_list

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: PapageiConfig | None = None,
        *,
        window_s: float = 60.0,
        random_state: int | None = None,
    ) -> Papagei:
        """Build with random weights (PaPaGei-S size unless ``config`` says otherwise), in eval mode.

        Parameters
        ----------
        config : PapageiConfig, optional
            Network size; ``PapageiConfig.small()`` for fast tests.
        window_s : float
            Window length (s).
        random_state : int, optional
            Seed for the weights; the global torch RNG is left as it was.
        """
        with torch.random.fork_rng(devices=[]):
            if random_state is not None:
                torch.manual_seed(random_state)
            return cls(config, window_s=window_s).eval()

    @classmethod
    def from_pretrained(
        cls, path: str | Path, *, window_s: float = 60.0, trust_pickle: bool = False, input_scaling: str = PUBLISHED
    ) -> Papagei:
        """Load PaPaGei-S from ``papagei_s.pt`` (a state dict, keys optionally prefixed ``module.``), in eval mode.

        Parameters
        ----------
        path : str or Path
            The checkpoint file.
        window_s : float
            Window length (s).
        trust_pickle : bool
            Allow full unpickling (runs code from the file): only for files you trust.
        input_scaling : str
            Input scaling (:mod:`bridges.input_scaling`); default ``"published"``: z-score per window.

        Raises
        ------
        CheckpointError
            Unreadable file, or missing / unexpected / mis-shaped keys (one line naming them).
        """
        state = strip_prefix(load_torch_state(path, trust_pickle), "module.")
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the global RNG as it was
            model = cls(PapageiConfig(), window_s=window_s)
        check_state_keys(model, state, f"'{path}'")
        model.load_state_dict(state)
        return model.use_input_scaling(input_scaling).eval()

    # ------------------------------------------------------------------ FoundationModel

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stem: ``(B, 1, L)`` z-scored PPG → layer-0 input ``(B, L, base_filters)``."""
        if x.ndim != 3 or x.shape[1] != 1 or x.shape[2] < 1:
            raise BadInputError(f"PaPaGei input must be (batch, 1 channel, samples), got {tuple(x.shape)} instead.")
        h = F.relu(self.first_block_bn(self.first_block_conv(x)))
        return h.transpose(1, 2)

    def _run_layer(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Block ``index`` on ``(B, T, C_in)`` → ``(B, ceil(T / stride), C_out)``."""
        return self.basicblock_list[index](h.transpose(1, 2)).transpose(1, 2)

    def finalize(self, h: torch.Tensor) -> torch.Tensor:
        """Apply the final BatchNorm + ReLU, ``(B, T, C)`` → ``(B, T, C)``."""
        return F.relu(self.final_bn(h.transpose(1, 2))).transpose(1, 2)

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Head features ``(B, C)``: mean over time of the finalised state (before ``dense``; see class doc)."""
        return h.mean(dim=1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """PaPaGei's published embedding: ``dense`` on pooled features, ``(B, C)`` → ``(B, projection_dim)``."""
        return self.dense(features)

    def moe_heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the two mixture-of-experts regression outputs, each ``(B, 1)``, from pooled features ``(B, C)``."""
        outputs = []
        heads = ((self.expert_layers_1, self.gating_network_1), (self.expert_layers_2, self.gating_network_2))
        for experts, gate in heads:
            stacked = torch.stack([expert(features) for expert in experts], dim=1)  # (B, n_experts, 1)
            outputs.append((gate(features).unsqueeze(2) * stacked).sum(dim=1))
        return outputs[0], outputs[1]
