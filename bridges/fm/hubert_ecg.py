"""HuBERT-ECG adapter: ``transformers.HubertModel`` with an ECG front end, as explicit layers (DESIGN §9).

The network is the stock ``HubertModel`` (so published weights load unchanged); this module only splits its
forward pass into stem / blocks / final norm without hooks and reads HuBERT-ECG checkpoints without unpickling
code (see :mod:`bridges.fm.hubert_ecg_checkpoint`). The pre-training heads (``final_proj``, ``label_embedding``)
and the masking vector are dropped: they play no part in the encoder's output.

Input scaling: a published checkpoint gets each lead min-max scaled to [-1, 1] per window, as HuBERT-ECG was
pretrained; random weights keep the per-window z-score BioX-Bridge feeds it (:mod:`bridges.input_scaling`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import HubertConfig, HubertModel

from bridges.fm.base import FoundationModel, InputSpec
from bridges.fm.checkpoints import CheckpointError, check_state_keys
from bridges.fm.hubert_ecg_checkpoint import backbone_shape, normalise_hubert_keys, read_hubert_checkpoint
from bridges.input_scaling import PUBLISHED
from devices._checks import ensure_int, ensure_positive
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["ARCH_KEYS", "SIZES", "HubertECG", "hubert_ecg_config", "tiny_config"]

SFREQ_HZ = 100.0

# Transformer sizes of the published models (hidden, layers, heads, FFN).
SIZES: dict[str, dict[str, int]] = {
    "small": {"hidden_size": 512, "num_hidden_layers": 8, "num_attention_heads": 8, "intermediate_size": 2048},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
    "large": {"hidden_size": 960, "num_hidden_layers": 16, "num_attention_heads": 12, "intermediate_size": 3840},
}

# The ECG front end shared by every size: 5 convs (total stride 64) instead of speech HuBERT's 7 (stride 320).
_ECG_FRONT_END: dict[str, Any] = {
    "conv_dim": (512, 512, 512, 512, 512),
    "conv_kernel": (10, 3, 3, 2, 2),
    "conv_stride": (4, 2, 2, 2, 2),
    "conv_bias": False,
    "feat_extract_norm": "group",
    "feat_extract_activation": "gelu",
    "feat_proj_layer_norm": True,
    "num_conv_pos_embeddings": 128,
    "num_conv_pos_embedding_groups": 16,
    "conv_pos_batch_norm": False,
    "do_stable_layer_norm": False,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}

# Config fields that shape the network; everything else in a saved config (dropouts, masking, training and
# hub bookkeeping) is ignored, so configs written by any transformers version give the same model.
ARCH_KEYS: tuple[str, ...] = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    *_ECG_FRONT_END,
)

# Frozen feature extractor: no dropout, no layer drop, no SpecAugment (hence no ``masked_spec_embed``).
_INFERENCE_ONLY: dict[str, Any] = {
    "hidden_dropout": 0.0,
    "activation_dropout": 0.0,
    "attention_dropout": 0.0,
    "feat_proj_dropout": 0.0,
    "final_dropout": 0.0,
    "layerdrop": 0.0,
    "mask_time_prob": 0.0,
    "mask_feature_prob": 0.0,
    "apply_spec_augment": False,
}


def _build_config(arch: Mapping[str, Any]) -> HubertConfig:
    values = {**_ECG_FRONT_END, **{k: arch[k] for k in ARCH_KEYS if k in arch}, **_INFERENCE_ONLY}
    for key in ("conv_dim", "conv_kernel", "conv_stride"):
        values[key] = tuple(int(v) for v in values[key])
    return HubertConfig(**values)


def hubert_ecg_config(size: str | HubertConfig | Mapping[str, Any] = "small") -> HubertConfig:
    """Build the config of a HuBERT-ECG model, set up for inference.

    Parameters
    ----------
    size : {"small", "base", "large"} or HubertConfig or mapping
        A published size, or a config (object or dict, e.g. a ``config.json``) whose architecture fields
        (:data:`ARCH_KEYS`) are used; missing front-end fields take the HuBERT-ECG values, not speech HuBERT's.

    Returns
    -------
    HubertConfig
        With dropouts, layer drop and SpecAugment off.
    """
    if isinstance(size, str):
        if size not in SIZES:
            raise ValueError(f"'size' is {size!r}, but has to be one of {list(SIZES)}.")
        return _build_config(SIZES[size])
    if isinstance(size, HubertConfig):
        return _build_config(size.to_dict())
    if isinstance(size, Mapping):
        missing = [k for k in SIZES["small"] if k not in size]
        if missing:
            raise ValueError(f"HuBERT-ECG config lacks {missing}.")
        return _build_config(size)
    raise TypeError(f"'size' must be a size name, a HubertConfig or a mapping, got {type(size).__name__} instead.")


def tiny_config() -> HubertConfig:
    """Return a tiny HuBERT-ECG config (hidden 32, 2 layers, 4 heads, 32 conv channels) for tests and benchmarks."""
    return _build_config(
        {
            "hidden_size": 32,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "conv_dim": (32, 32, 32, 32, 32),
        }
    )


def _size_from_shape(width: int, n_layers: int, what: str) -> str:
    for name, dims in SIZES.items():
        if dims["hidden_size"] == width and dims["num_hidden_layers"] == n_layers:
            return name
    raise CheckpointError(
        f"Checkpoint {what} (width {width}, {n_layers} layers) holds no config and matches no published size; "
        "pass size= (a size name or a HubertConfig)."
    )


def _conv_out_len(n_in: int, kernel: int, stride: int) -> int:
    return (n_in - kernel) // stride + 1


class HubertECG(FoundationModel):
    """HuBERT-ECG as explicit layers over a wrapped ``HubertModel`` (attribute :attr:`model`).

    Parameters
    ----------
    config : HubertConfig
        Network config (see :func:`hubert_ecg_config`); dropouts should be off.
    window_s : float
        Window length in seconds at 100 Hz (60 or 30 in the paper and the BioX-Bridge setups).
    n_channels : int
        Leads per window; ``(B, C, L)`` is flattened lead-major to ``(B, C·L)``, as HuBERT-ECG was trained on
        12 leads concatenated one after the other.

    Notes
    -----
    Layer ``k`` is the output of ``model.encoder.layers[k]``, i.e. ``HubertModel``'s ``hidden_states[k + 1]``.
    The model is put in eval mode at construction.
    """

    name = "hubert-ecg"
    #: HuBERT-ECG's pretraining scaled each lead to [-1, 1] by its min and max (its ``code/utils.py``).
    published_scaling = "minmax_pm1"

    def __init__(self, config: HubertConfig, *, window_s: float = 60.0, n_channels: int = 1) -> None:
        super().__init__()
        window_s = ensure_positive(window_s, "window_s")
        n_channels = ensure_int(n_channels, "n_channels", minimum=1)
        self.config = config
        self.model = HubertModel(config)
        self.input_spec = InputSpec(
            modality="ecg",
            sfreq_hz=SFREQ_HZ,
            window_s=window_s,
            n_channels=n_channels,
            unit="mV",
            normalisation="zscore",
        )
        if self.n_tokens(self.input_spec.n_samples * n_channels) < 1:
            # A window length chosen by the user (config [data] window_s), not a bug: bad input.
            raise BadInputError(f"'window_s' of {window_s} s is too short for HuBERT-ECG's feature extractor.")
        self.eval()

    # ``layers`` is a view of the encoder's own ModuleList, so the state dict holds each block once.
    @property
    def layers(self) -> nn.ModuleList:  # type: ignore[override]
        """The transformer blocks, ``model.encoder.layers``."""
        return self.model.encoder.layers

    @property
    def width(self) -> int:
        """Hidden size of every layer's output."""
        return int(self.config.hidden_size)

    def n_tokens(self, n_samples: int) -> int:
        """Tokens the feature extractor makes from ``n_samples`` input samples (all leads together)."""
        n = int(n_samples)
        for kernel, stride in zip(self.config.conv_kernel, self.config.conv_stride, strict=True):
            n = _conv_out_len(n, kernel, stride)
            if n < 1:
                return 0
        return n

    @classmethod
    def from_config(
        cls,
        size: str | HubertConfig | Mapping[str, Any] = "small",
        *,
        window_s: float = 60.0,
        n_channels: int = 1,
        seed: int | None = None,
    ) -> HubertECG:
        """Build with random weights.

        Parameters
        ----------
        size : {"small", "base", "large"} or HubertConfig or mapping
            See :func:`hubert_ecg_config`; use :func:`tiny_config` for tests.
        window_s : float
            Window length in seconds.
        n_channels : int
            Leads per window.
        seed : int, optional
            Seed for the weight initialisation (the global torch RNG is left as it was).
        """
        config = hubert_ecg_config(size)
        if seed is None:
            return cls(config, window_s=window_s, n_channels=n_channels)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, window_s=window_s, n_channels=n_channels)

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        size: str | HubertConfig | Mapping[str, Any] | None = None,
        trust_pickle: bool = False,
        window_s: float = 60.0,
        n_channels: int = 1,
        input_scaling: str = PUBLISHED,
    ) -> HubertECG:
        """Load a published checkpoint, asking for the input scaling it was trained on (min-max to [-1, 1]).

        Parameters
        ----------
        path : str or Path
            A Hugging Face-format directory (``config.json`` + ``model.safetensors``), a ``.safetensors`` file, or
            the original ``.pt`` (dict with ``model_state_dict`` and ``model_config``) or a bare state dict.
        size : {"small", "base", "large"} or HubertConfig or mapping, optional
            Overrides the config found in the checkpoint; needed when it holds none and the size cannot be told
            from the tensor shapes.
        trust_pickle : bool
            Allow full unpickling of a ``.pt`` (runs code in the file). Not needed for the published files: their
            config object is read as inert data.
        window_s, n_channels
            As for :class:`HubertECG`.
        input_scaling : str
            Input scaling (:mod:`bridges.input_scaling`); default ``"published"``: each lead min-max scaled to
            [-1, 1] per window.

        Raises
        ------
        bridges.fm.checkpoints.CheckpointError
            Unreadable file, code in the pickle, or keys / shapes that do not fit (one line naming them).
        """
        what = f"'{Path(path).expanduser()}'"
        state, arch = read_hubert_checkpoint(path, trust_pickle=trust_pickle)
        if size is None:
            size = arch if arch is not None else _size_from_shape(*backbone_shape(state, what), what)
        try:
            config = hubert_ecg_config(size)
        except (TypeError, ValueError) as err:
            raise CheckpointError(f"Checkpoint {what} has an unusable config: {err}") from None
        model = cls(config, window_s=window_s, n_channels=n_channels)
        model.use_input_scaling(input_scaling)
        model.load_hubert_state(state, what=what)
        logger.info("Loaded HuBERT-ECG (%d layers, width %d) from '%s'.", model.n_layers, model.width, path)
        return model

    def load_hubert_state(self, state: Mapping[str, torch.Tensor], *, what: str = "state dict") -> None:
        """Load ``HubertModel`` weights in any published key layout (see ``normalise_hubert_keys``).

        Raises
        ------
        bridges.fm.checkpoints.CheckpointError
            Missing, unexpected or mis-shaped keys, all named in one line.
        """
        target_keys = self.model.state_dict().keys()
        state = normalise_hubert_keys(state, target_keys)
        check_state_keys(self.model, state, what)
        self.model.load_state_dict(state, strict=True)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stem: raw window ``(B, C, L)`` → layer-0 input ``(B, T, d)``.

        Feature extractor → feature projection (layer norm + linear) → plus the positional conv embedding →
        encoder layer norm (post-norm variant; the pre-norm variant applies it in :meth:`finalize`).
        """
        if x.ndim != 3:
            raise ValueError(f"HuBERT-ECG input must be (batch, channels, samples), got shape {tuple(x.shape)}.")
        batch, n_channels, n_samples = x.shape
        if self.n_tokens(n_channels * n_samples) < 1:
            raise ValueError(f"HuBERT-ECG input of {n_channels}×{n_samples} samples is too short for one token.")
        # Row-major reshape puts lead 0's samples first, then lead 1's: the lead-major concatenation.
        flat = x.reshape(batch, n_channels * n_samples)
        features = self.model.feature_extractor(flat).transpose(1, 2)
        h = self.model.feature_projection(features)
        if isinstance(h, tuple):  # some transformers versions also return the normed features
            h = h[0]
        encoder = self.model.encoder
        h = h + encoder.pos_conv_embed(h)
        if not self.config.do_stable_layer_norm:
            h = encoder.layer_norm(h)
        return encoder.dropout(h)

    def _run_layer(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Run block ``index`` on ``h`` ``(B, T, d)`` → ``(B, T, d)``, without an attention mask."""
        out = self.layers[index](h, attention_mask=None)
        # transformers 4.x returns (hidden_states, attn_weights); 5.x the tensor alone.
        return out[0] if isinstance(out, tuple) else out

    def finalize(self, h: torch.Tensor) -> torch.Tensor:
        """Apply the encoder layer norm for the pre-norm (stable) variant; identity for HuBERT-ECG's post-norm."""
        if self.config.do_stable_layer_norm:
            return self.model.encoder.layer_norm(h)
        return h

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Head features ``(B, d)``: mean over tokens of the final hidden state ``(B, T, d)``."""
        return h.mean(dim=1)
