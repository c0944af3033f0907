"""Build foundation models by name from a config section: random weights at a named size, or a checkpoint.

Checkpoints are either the published file (loaded by the adapter's ``from_pretrained``) or a ``.safetensors`` of
one of our adapters' own ``state_dict`` (what self-supervised pretraining and unfrozen fine-tuning save).

Input scaling (:mod:`bridges.input_scaling`): a spec's ``input_scaling`` wins; without it, a published checkpoint
gets the scaling it was trained on, a ``.safetensors`` the one recorded in its metadata by :func:`save_fm_state`
(the scaling it was trained with here), and random weights their adapter's own (z-score; LaBraM µV / 100).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from bridges.fm.base import FoundationModel
from bridges.fm.checkpoints import check_state_keys, file_sha256, load_safetensors, safetensors_metadata
from bridges.fm.hubert_ecg import ARCH_KEYS, HubertECG, tiny_config
from bridges.fm.labram import ISRUC_CHANNELS, Labram, LabramConfig
from bridges.fm.normwear import NormWear, NormWearConfig
from bridges.fm.papagei import Papagei, PapageiConfig
from bridges.input_scaling import SCALING_CHOICES, get_scaling, resolve_scaling
from devices._checks import check_value
from devices.atomic import atomic_output
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

#: Which modality each FM reads.
FM_MODALITY = {"hubert_ecg": "ecg", "labram": "eeg", "normwear": "emg", "papagei": "ppg"}
#: The named sizes of each FM.
FM_SIZES: dict[str, tuple[str, ...]] = {
    "hubert_ecg": ("tiny", "small", "base", "large"),
    "labram": ("base", "small"),
    "normwear": ("base", "small"),
    "papagei": ("s", "small"),
}
#: The architecture fields a spec's ``config`` may override.
FM_CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "hubert_ecg": ARCH_KEYS,
    "labram": tuple(f.name for f in fields(LabramConfig)),
    "normwear": tuple(f.name for f in fields(NormWearConfig)),
    "papagei": tuple(f.name for f in fields(PapageiConfig)),
}

#: Metadata key of the input scaling in a ``.safetensors`` written by :func:`save_fm_state`.
SCALING_METADATA_KEY = "input_scaling"

#: NormWear's input rate in BioX-Bridge's FOG setting (EMG resampled to 130 Hz: 3 s = 390 samples = 560 tokens).
NORMWEAR_SFREQ_HZ = 130.0


@dataclass(frozen=True)
class FMSpec:
    """How to build one FM (the ``[old_fm]`` / ``[new_fm]`` config sections).

    Parameters
    ----------
    name : str
        ``"hubert_ecg"``, ``"labram"``, ``"normwear"`` or ``"papagei"``.
    size : str
        ``hubert_ecg``: ``"tiny"``, ``"small"``, ``"base"``, ``"large"``; ``labram``: ``"base"`` or ``"small"``;
        ``normwear``: ``"base"`` or ``"small"``; ``papagei``: ``"s"`` or ``"small"`` (the small configs are for
        tests and demos).
    config : dict
        Architecture fields overriding the size (e.g. ``{"hidden_size": 128, "num_hidden_layers": 4}``).
    checkpoint : str or None
        Published checkpoint, or a ``.safetensors`` of our adapter's state; None for random weights.
    window_s : float
        Window length in seconds.
    channels : list of str
        Input channel labels (LaBraM: 10-20 names; NormWear: their number sets the channel count, 1 when empty;
        others: informational).
    seed : int
        Seed of the random initialisation (ignored with a checkpoint).
    trust_pickle : bool
        Allow a published ``.pt`` to run pickled code (only for files you trust).
    input_scaling : str or None
        How the raw window is scaled for the FM, one of :data:`~bridges.input_scaling.SCALING_CHOICES`:
        ``"published"`` (what the FM's published checkpoint was trained on: HuBERT-ECG ``"minmax_pm1"``, LaBraM
        ``"uv_over_100"``, PaPaGei and NormWear ``"zscore"``), ``"zscore"``, ``"minmax_pm1"``, ``"uv_over_100"``
        or ``"none"``. None (default): ``"published"`` with a published checkpoint, the scaling recorded in our
        own ``.safetensors``, else the adapter's random-weight default (``"zscore"``; LaBraM ``"uv_over_100"``).
    """

    name: str
    size: str = "small"
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    window_s: float = 60.0
    channels: list[str] = field(default_factory=list)
    seed: int = 0
    trust_pickle: bool = False
    input_scaling: str | None = None

    def __post_init__(self) -> None:
        check_value(self.name, FM_BUILDERS, "name")
        if self.input_scaling is not None:
            check_value(self.input_scaling, SCALING_CHOICES, "input_scaling")
        check_value(self.size, FM_SIZES[self.name], "size")
        known = FM_CONFIG_KEYS[self.name]
        unknown = sorted(set(self.config) - set(known))
        if unknown:
            raise ValueError(f"'config' has unknown key(s) {unknown} for {self.name}; known keys are {list(known)}")
        if self.name in _ARCH_CONFIGS:
            _arch_config(self)  # its own checks (widths that must divide, ...) run now, not mid-build

    @property
    def modality(self) -> str:
        """The modality this FM reads."""
        return FM_MODALITY[self.name]


def _arch_config(spec: FMSpec) -> LabramConfig | NormWearConfig | PapageiConfig:
    """The LaBraM, NormWear or PaPaGei config of ``spec``: its size with ``spec.config`` on top."""
    cls = _ARCH_CONFIGS[spec.name]
    base = cls.small() if spec.size == "small" else cls()
    return cls(**{**base.__dict__, **spec.config})


_ARCH_CONFIGS: dict[str, type[LabramConfig] | type[NormWearConfig] | type[PapageiConfig]] = {
    "labram": LabramConfig, "normwear": NormWearConfig, "papagei": PapageiConfig,
}


def _hubert(spec: FMSpec) -> HubertECG:
    if spec.size == "tiny":
        base = {k: v for k, v in tiny_config().to_dict().items()}
    else:
        from bridges.fm.hubert_ecg import hubert_ecg_config

        base = hubert_ecg_config(spec.size).to_dict()
    config = {**base, **spec.config}
    n_channels = max(1, len(spec.channels))
    if spec.checkpoint and not spec.checkpoint.endswith(".safetensors"):
        return HubertECG.from_pretrained(
            spec.checkpoint, size=config if spec.config else None, trust_pickle=spec.trust_pickle,
            window_s=spec.window_s, n_channels=n_channels,
        )
    return HubertECG.from_config(config, window_s=spec.window_s, n_channels=n_channels, seed=spec.seed)


def _labram(spec: FMSpec) -> Labram:
    config = _arch_config(spec)
    channels = spec.channels or list(ISRUC_CHANNELS)
    if spec.checkpoint and not spec.checkpoint.endswith(".safetensors"):
        return Labram.from_pretrained(
            spec.checkpoint, channels=channels, window_s=spec.window_s, trust_pickle=spec.trust_pickle
        )
    return Labram.from_config(config, channels=channels, window_s=spec.window_s, random_state=spec.seed)


def _normwear(spec: FMSpec) -> NormWear:
    config = _arch_config(spec)
    shape = {"n_channels": max(1, len(spec.channels)), "window_s": spec.window_s, "sfreq_hz": NORMWEAR_SFREQ_HZ}
    if spec.checkpoint and not spec.checkpoint.endswith(".safetensors"):
        return NormWear.from_pretrained(spec.checkpoint, config, trust_pickle=spec.trust_pickle, **shape)
    return NormWear.from_config(config, random_state=spec.seed, **shape)


def _papagei(spec: FMSpec) -> Papagei:
    config = _arch_config(spec)
    if spec.checkpoint and not spec.checkpoint.endswith(".safetensors"):
        return Papagei.from_pretrained(spec.checkpoint, window_s=spec.window_s, trust_pickle=spec.trust_pickle)
    return Papagei.from_config(config, window_s=spec.window_s, random_state=spec.seed)


FM_BUILDERS: dict[str, Callable[[FMSpec], FoundationModel]] = {
    "hubert_ecg": _hubert,
    "labram": _labram,
    "normwear": _normwear,
    "papagei": _papagei,
}


def build_fm(spec: FMSpec) -> FoundationModel:
    """Build the FM ``spec`` describes, in eval mode; our own ``.safetensors`` states are loaded strictly.

    Its input scaling is ``spec.input_scaling`` when set, else as the module docstring says.
    """
    fm = FM_BUILDERS[spec.name](spec)
    scaling = spec.input_scaling
    if spec.checkpoint and spec.checkpoint.endswith(".safetensors"):
        state = load_safetensors(spec.checkpoint)
        check_state_keys(fm, state, f"'{spec.checkpoint}'")
        fm.load_state_dict(state, strict=True)
        saved = safetensors_metadata(spec.checkpoint).get(SCALING_METADATA_KEY)
        if saved is not None:
            get_scaling(saved, what=f"the input scaling recorded in '{spec.checkpoint}'")
            if scaling is None:
                scaling = saved
            elif resolve_scaling(scaling, fm.published_scaling).name != saved:
                logger.warning("'%s' was trained with input scaling %r; input_scaling = %r overrides it",
                               spec.checkpoint, saved, scaling)
    if scaling is not None:
        fm.use_input_scaling(scaling)
    return fm.eval()


def checkpoint_sha256(spec: FMSpec) -> str:
    """SHA-256 of the spec's checkpoint file, or ``"random-init"`` for random weights (seeded by ``spec.seed``)."""
    if not spec.checkpoint:
        return "random-init"
    path = Path(spec.checkpoint)
    if path.is_dir():  # a Hugging Face directory: hash its weights file
        weights = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
        if not weights:
            raise BadInputError(f"checkpoint directory '{path}' holds no weights file")
        path = weights[0]
    return file_sha256(path)


def save_fm_state(fm: FoundationModel, path: str | Path) -> Path:
    """Write ``fm.state_dict()`` to a ``.safetensors`` file (atomic), loadable with ``FMSpec(checkpoint=path)``.

    The FM's input scaling goes into the file's metadata, so the weights are later fed what they were trained on.
    """
    state = {k: v.detach().contiguous().clone() for k, v in fm.state_dict().items()}
    scaling = fm.input_scaling
    with atomic_output(path) as tmp:
        save_file(state, str(tmp), metadata=None if scaling is None else {SCALING_METADATA_KEY: scaling})
    return Path(path)
