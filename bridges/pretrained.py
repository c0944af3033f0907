"""FMs pretrained inside a run (``biostream bridge pretrain``): ``[pretrain]``, its windows, the weights files.

This goes beyond the paper: BioX-Bridge starts from published FMs on both sides and names reducing that
dependency as future work. Here a side without published weights (or with published weights to adapt to the
run's data) is pretrained without labels, contrastively (:func:`bridges.pretrain.pretrain_contrastive`), on the
run's windows of its modality.

Per pretrained side (``"old"`` or ``"new"``) the run folder holds ``pretrain_<side>.safetensors`` (the FM's
state), ``pretrain_<side>.json`` (the result, the FM it started from, the weights' SHA-256) and
``pretrain_<side>.png`` (loss per epoch). Every later step builds that side's FM as ``[old_fm]`` / ``[new_fm]``
say and then loads these weights, for each side ``[pretrain] fms`` lists: the config, not whatever lies in the
folder, says which FMs were pretrained, and a listed side whose weights are missing, were made for another FM
spec, or were changed afterwards is refused with the step to run.

A side listed in ``fms`` whose section also sets a ``checkpoint`` (a published file or one of our
``.safetensors``) is **pretrained further from that checkpoint** (domain-adaptive pretraining), not refused: the
checkpoint stays the recorded starting point (``checkpoint_sha256`` in the bundle), the pretrained state is what
the bundle's ``weights_sha256`` covers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bridges.config import ConfigError
from bridges.data import PairedWindows
from bridges.fm.checkpoints import load_safetensors, state_sha256
from bridges.fm.registry import FMSpec, checkpoint_sha256
from bridges.pretrain import AugmentConfig
from devices._checks import ensure_int, ensure_positive
from devices.errors import BadInputError

__all__ = ["PRETRAIN_SIDES", "PRETRAIN_SPLITS", "PretrainSection", "fm_identity", "pretrain_windows",
           "pretrained_paths", "read_pretrained_state", "check_pretrained"]

#: The FMs of a run that can be pretrained.
PRETRAIN_SIDES = ("old", "new")
#: Splits whose windows pretraining may read; never ``test``, whose subjects must stay unseen until evaluation.
PRETRAIN_SPLITS = ("train", "val", "pair")


@dataclass(frozen=True)
class PretrainSection:
    """``[pretrain]``: contrastive pretraining of the run's FMs without labels (see :mod:`bridges.pretrain`).

    Attributes
    ----------
    fms : list of str
        Which FMs to pretrain: ``["new"]``, ``["old"]`` or ``["old", "new"]``; empty (default) for none.
    splits : list of str
        Splits whose windows of the FM's modality it trains on (labels unused); subsets of ``train``, ``val``,
        ``pair`` (default ``["train", "pair"]``).
    epochs, lr, batch_size, temperature, projection_dim, max_grad_norm
        As :func:`bridges.pretrain.pretrain_contrastive` (Adam learning rate; windows per step, >= 2; NT-Xent
        temperature; projection MLP width; gradient clipping norm, or unset for none).
    max_windows : int, optional
        Train on at most this many windows (drawn at random with ``seed``); all when unset.
    max_shift_frac, scale_range, noise_frac, mask_frac : float
        The view augmentations (:class:`bridges.pretrain.AugmentConfig`).
    seed : int
        Seeds the window subset, the projection head, shuffling, augmentations and dropout.
    """

    fms: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=lambda: ["train", "pair"])
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    temperature: float = 0.1
    projection_dim: int = 64
    max_windows: int | None = None
    max_grad_norm: float | None = 1.0
    max_shift_frac: float = 0.2
    scale_range: float = 0.3
    noise_frac: float = 0.2
    mask_frac: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        for name, allowed in (("fms", PRETRAIN_SIDES), ("splits", PRETRAIN_SPLITS)):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"'{name}' lists {sorted({v for v in values if values.count(v) > 1})} twice")
            for value in values:
                if value == "test" and name == "splits":
                    raise ValueError("'splits' may not include 'test': its subjects must stay unseen until "
                                     "evaluation; use 'train', 'val', 'pair'")
                if value not in allowed:
                    raise ValueError(f"'{name}' holds {value!r}, but has to hold some of {list(allowed)}")
        if not self.splits:
            raise ValueError(f"'splits' is empty; list some of {list(PRETRAIN_SPLITS)}")
        ensure_int(self.epochs, "epochs", minimum=1)
        ensure_int(self.batch_size, "batch_size", minimum=2)  # NT-Xent needs a negative in every batch
        ensure_int(self.projection_dim, "projection_dim", minimum=1)
        ensure_int(self.seed, "seed", minimum=0)
        if self.max_windows is not None:
            ensure_int(self.max_windows, "max_windows", minimum=2)
        for name in ("lr", "temperature") + (("max_grad_norm",) if self.max_grad_norm is not None else ()):
            ensure_positive(getattr(self, name), name)
        try:
            self.augment_config()
        except BadInputError as err:
            raise ValueError(str(err)) from None

    def augment_config(self) -> AugmentConfig:
        """The view augmentations these keys set."""
        return AugmentConfig(max_shift_frac=self.max_shift_frac, scale_range=self.scale_range,
                             noise_frac=self.noise_frac, mask_frac=self.mask_frac)


def pretrained_paths(out_dir: Path, side: str) -> tuple[Path, Path]:
    """``pretrain_<side>.safetensors`` and ``pretrain_<side>.json`` in the run folder ``out_dir``."""
    return out_dir / f"pretrain_{side}.safetensors", out_dir / f"pretrain_{side}.json"


def fm_identity(spec: FMSpec) -> dict[str, Any]:
    """What the pretrained weights were made for: the FM spec's architecture, window, and starting weights.

    ``start`` is :func:`~bridges.fm.registry.checkpoint_sha256` of the spec (``"random-init"`` with ``seed``).
    """
    start = checkpoint_sha256(spec)
    identity = {"name": spec.name, "size": spec.size, "config": dict(spec.config), "channels": list(spec.channels),
                "window_s": spec.window_s, "start": start}
    if start == "random-init":
        identity["seed"] = spec.seed
    return identity


def pretrain_windows(splits: Mapping[str, PairedWindows], side: str, section: PretrainSection,
                     where: str) -> np.ndarray:
    """The unlabeled windows ``side`` pretrains on: its modality in ``section.splits``, at most ``max_windows``.

    Parameters
    ----------
    splits : mapping of str to PairedWindows
        The run's splits.
    side : str
        ``"old"`` or ``"new"`` (which modality of the paired windows).
    section : PretrainSection
        ``[pretrain]``.
    where : str
        The config file, for messages.

    Returns
    -------
    array of shape (N, C, L), float32
        Raw windows at the FM's rate, in split order (a random subset, kept in order, with ``max_windows``).

    Raises
    ------
    ConfigError
        Fewer than 2 windows (contrastive pretraining needs a negative): the side, modality and splits named.
    """
    windows = np.concatenate([getattr(splits[name], side) for name in section.splits])
    if len(windows) < 2:
        modality = getattr(splits[section.splits[0]], f"{side}_modality")
        raise ConfigError(
            f"{where} [pretrain]: fms lists {side!r}, but splits {section.splits} hold {len(windows)} {modality} "
            "window(s); contrastive pretraining needs at least 2 (list more splits, or drop it from fms)"
        )
    if section.max_windows is not None and len(windows) > section.max_windows:
        keep = np.random.default_rng(section.seed).choice(len(windows), section.max_windows, replace=False)
        windows = windows[np.sort(keep)]
    return windows


def check_pretrained(out_dir: Path, side: str, identity: dict[str, Any], where: str) -> dict[str, Any]:
    """Check that the run folder holds ``side``'s pretrained weights for this FM spec; return its JSON result.

    Raises
    ------
    BadInputError
        The weights or their JSON are missing (run ``pretrain`` first), or the JSON is unreadable.
    ConfigError
        They were pretrained for another FM spec (the differing keys named).
    """
    weights, info_path = pretrained_paths(out_dir, side)
    for path in (weights, info_path):
        if not path.exists():
            raise BadInputError(f"{where} [pretrain] fms lists {side!r}, but '{path}' is missing: run "
                                "'biostream bridge pretrain' first (same --config and --out)")
    try:
        info = json.loads(info_path.read_text())
        made_for = info["fm_spec"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BadInputError(f"'{info_path}' is not a pretrain result ({type(err).__name__}: {err}); rerun "
                            "'biostream bridge pretrain'") from None
    differing = sorted(k for k in set(identity) | set(made_for) if identity.get(k) != made_for.get(k))
    if differing:
        changes = ", ".join(f"{k} {made_for.get(k)!r} -> {identity.get(k)!r}" for k in differing)
        raise ConfigError(f"{where} [{side}_fm] changed since '{weights.name}' was pretrained ({changes}); rerun "
                          "'biostream bridge pretrain', or use another --out")
    return info


def read_pretrained_state(out_dir: Path, side: str, identity: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
    """``side``'s pretrained FM state, checked as :func:`check_pretrained` does and against its recorded SHA-256."""
    info = check_pretrained(out_dir, side, identity, where)
    weights, _ = pretrained_paths(out_dir, side)
    state = load_safetensors(weights)
    if state_sha256(state) != info.get("weights_sha256"):
        raise BadInputError(f"'{weights}' does not hold the weights 'pretrain_{side}.json' records (sha256 "
                            f"{info.get('weights_sha256')}): it changed after pretraining; rerun "
                            "'biostream bridge pretrain'")
    return state
