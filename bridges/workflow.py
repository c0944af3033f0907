"""The method's steps as one reproducible run: a TOML config, an output folder, one artefact per step.

``fit-head`` → ``old_model.safetensors`` + ``head.json``; ``select`` → ``select.json`` + ``select.png``;
``train`` → ``bridge.safetensors`` + ``train.json`` + ``train.png``; ``evaluate`` → ``evaluate.json`` +
``confusion.png``; ``distill`` → ``distill.json``; ``export`` → the ``.bxb`` bundle. Each step rebuilds what it
needs from the config and the artefacts of the steps before it, so the steps can run as separate commands.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bridges.bridge import PROTOTYPE_INITS, BridgeConfig, PrototypeBridge
from bridges.config import ConfigError, load_sections
from bridges.data import PairedWindows, simulated_paired, split_subjects
from bridges.fm.registry import FMSpec, build_fm, checkpoint_sha256
from bridges.models import BridgedModel, OldModel, make_head
from bridges.preprocess import preprocess_for
from bridges.select import CKA_REDUCTIONS
from bridges.train_options import ALIGNS, LOSSES, PRECISIONS
from devices._checks import check_value, ensure_int, ensure_positive
from devices.atomic import atomic_output, write_bytes_atomic
from devices.errors import BadInputError

logger = logging.getLogger(__name__)


def _check_counts(section: Any, minimum: int, *names: str) -> None:
    """Raise ValueError naming the first of ``names`` (None allowed) below ``minimum``; the loader says where."""
    for name in names:
        value = getattr(section, name)
        if value is not None:
            ensure_int(value, name, minimum=minimum)


def _check_positive(section: Any, *names: str) -> None:
    for name in names:
        value = getattr(section, name)
        if value is not None:
            ensure_positive(value, name)


#: Where ``[data]`` windows can come from.
DATA_SOURCES = ("simulated", "wesad", "isruc", "fog")


@dataclass(frozen=True)
class DataSection:
    """``[data]``: where the paired windows come from and how they are split by subject."""

    source: str = "simulated"
    root: str = ""
    scenario: str = "stress"
    old_modality: str = "ecg"
    new_modality: str = "ppg"
    n_subjects: int = 15
    duration_s: float = 900.0
    window_s: float = 60.0
    step_s: float = 5.0
    classes: int | None = None
    seed: int = 0
    split: list[int] | None = None
    cache_dir: str | None = None  # default: <output dir>/cache

    def __post_init__(self) -> None:
        check_value(self.source, DATA_SOURCES, "source")
        _check_positive(self, "duration_s", "window_s", "step_s")
        _check_counts(self, 1, "n_subjects")
        _check_counts(self, 0, "seed")


@dataclass(frozen=True)
class HeadSection:
    """``[head]``: the probe on the old FM (see :func:`bridges.head.fit_head`)."""

    unfreeze: bool = False
    mlp_hidden: int | None = None
    class_weights: bool = True
    epochs: int = 100
    lr: float = 1e-3
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        _check_counts(self, 1, "mlp_hidden", "epochs", "batch_size")
        _check_positive(self, "lr")


@dataclass(frozen=True)
class SelectSection:
    """``[select]``: bridge position selection (see :func:`bridges.select.select_positions`)."""

    n_folds: int = 5
    cka_reduce: str = "flatten"
    max_cka_windows: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        _check_counts(self, 2, "n_folds")
        check_value(self.cka_reduce, CKA_REDUCTIONS, "cka_reduce")
        _check_counts(self, 4, "max_cka_windows")


@dataclass(frozen=True)
class TrainSection:
    """``[train]``: the bridge and its training (see :func:`bridges.train.train_bridge`)."""

    i: int | None = None
    j: int | None = None
    rank: int = 8
    n_prototypes: int = 150
    init: str = "randreal_P"
    loss: str = "cosine"
    align: str = "last"
    epochs: int = 50
    lr: float = 1e-4
    batch_size: int = 16
    eval_every: int = 1
    seed: int = 0
    #: Keep the cached alignment targets in a temporary file in the output folder, read per batch, not in RAM.
    targets_on_disk: bool = False
    #: Run each batch in chunks of this many windows, accumulating gradients (less activation memory).
    micro_batch_size: int | None = None
    #: Windows per no-grad pass when caching and scoring (default: the micro-batch, else the batch).
    cache_batch_size: int | None = None
    #: "float32" or "bfloat16" (autocast; about 2x faster on CPUs with AMX or AVX-512 BF16).
    precision: str = "float32"

    def __post_init__(self) -> None:
        _check_counts(self, 0, "i", "j")
        _check_counts(self, 1, "rank", "n_prototypes", "epochs", "batch_size", "eval_every", "micro_batch_size",
                      "cache_batch_size")
        _check_positive(self, "lr")
        check_value(self.init, PROTOTYPE_INITS, "init")
        check_value(self.loss, LOSSES, "loss")
        check_value(self.align, ALIGNS, "align")
        check_value(self.precision, PRECISIONS, "precision")


@dataclass(frozen=True)
class DistillSection:
    """``[distill]``: the knowledge-distillation baseline (see :func:`bridges.distill.distill`)."""

    temperature: float = 2.0
    epochs: int = 20
    lr: float = 1e-4
    batch_size: int = 16
    unfreeze_fm: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "temperature", "lr")
        _check_counts(self, 1, "epochs", "batch_size")


@dataclass(frozen=True)
class ExportSection:
    """``[export]``: the bundle."""

    path: str = "bundle.bxb"
    task: str = "state"
    hop_s: float | None = None

    def __post_init__(self) -> None:
        _check_positive(self, "hop_s")


@dataclass(frozen=True)
class OutputSection:
    """``[output]``: where artefacts go."""

    dir: str = "bridge-run"


@dataclass(frozen=True)
class FMSection(FMSpec):
    """``[old_fm]`` / ``[new_fm]``: see :class:`bridges.fm.registry.FMSpec`."""

    name: str = "hubert_ecg"
    channels: list[str] = field(default_factory=list)


SCHEMA: dict[str, type] = {
    "data": DataSection,
    "old_fm": FMSection,
    "new_fm": FMSection,
    "head": HeadSection,
    "select": SelectSection,
    "train": TrainSection,
    "distill": DistillSection,
    "export": ExportSection,
    "output": OutputSection,
}


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write JSON atomically (temp file in the same folder, then rename); NaN is refused."""
    return write_bytes_atomic(path, json.dumps(payload, indent=2, allow_nan=False).encode())


def _save_state(module: torch.nn.Module, path: Path) -> Path:
    state = {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_output(path) as tmp:
        save_file(state, str(tmp))
    return path


class TransferRun:
    """One transfer: config sections, the paired data, the FMs and the artefacts in ``output.dir``.

    Parameters
    ----------
    config_path : str, Path or None
        TOML file with the sections of :data:`SCHEMA` (all optional).
    overrides : dict
        Per-section values from command-line flags (``None`` = not given).
    """

    def __init__(self, config_path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None):
        self.sections = load_sections(config_path, SCHEMA, overrides)
        base = Path(config_path).parent if config_path else Path.cwd()
        self.out_dir = (base / self.sections["output"].dir).resolve()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"output folder '{self.out_dir}' cannot be created: {err.strerror or err}") from None
        self._base = base

    # ------------------------------------------------------------------ inputs
    def section(self, name: str) -> Any:
        """The config section ``name``."""
        return self.sections[name]

    def artefact(self, name: str) -> Path:
        """Path of an artefact in the output folder."""
        return self.out_dir / name

    def require(self, name: str, step: str) -> Path:
        """The artefact ``name``; raise naming the step that makes it when it is missing."""
        path = self.artefact(name)
        if not path.exists():
            raise BadInputError(f"'{path}' is missing: run 'biostream bridge {step}' first")
        return path

    def read_json(self, name: str, step: str) -> dict[str, Any]:
        """Read a step's JSON result."""
        return json.loads(self.require(name, step).read_text())

    @cached_property
    def splits(self) -> dict[str, PairedWindows]:
        """Paired windows per split (``train``, ``val``, ``pair``, ``test``), subject-disjoint."""
        data = self.section("data")
        cache = str(self._base / data.cache_dir) if data.cache_dir else str(self.out_dir / "cache")
        if data.source == "simulated":
            windows = simulated_paired(
                data.scenario, data.old_modality, data.new_modality, data.n_subjects, data.duration_s,
                seed=data.seed, window_s=data.window_s, step_s=data.step_s, classes=data.classes, cache_dir=cache,
            )
        elif data.source == "wesad":
            from bridges.data import wesad_paired

            direction = f"{data.old_modality}->{data.new_modality}"
            windows = wesad_paired(data.root, direction=direction, cache_dir=cache, window_s=data.window_s,
                                   step_s=data.step_s)
        elif data.source == "isruc":
            from bridges.data import isruc_paired

            direction = f"{data.old_modality}->{data.new_modality}"
            windows = isruc_paired(data.root, classes=data.classes or 2, direction=direction, cache_dir=cache,
                                   window_s=data.window_s, step_s=data.step_s)
        elif data.source == "fog":
            from bridges.data import fog_paired

            if data.classes not in (None, 2):
                raise ConfigError(f"[data] classes = {data.classes} for source 'fog', which has 2 (walking, freezing)")
            direction = f"{data.old_modality}->{data.new_modality}"
            windows = fog_paired(data.root, direction=direction, cache_dir=cache, window_s=data.window_s,
                                 step_s=data.step_s)
        else:
            raise BadInputError(f"[data] source {data.source!r} has to be one of {list(DATA_SOURCES)}")
        subjects = sorted(set(windows.subjects.tolist()))
        split = split_subjects(subjects, counts=tuple(data.split) if data.split else None, random_state=data.seed)
        return {name: windows.of_subjects(ids) for name, ids in split.items()}

    def fm_spec(self, side: str) -> FMSpec:
        """The FM spec of ``side`` (``"old"`` or ``"new"``), its window length taken from ``[data]``."""
        section = self.section(f"{side}_fm")
        values = asdict(section)
        values["window_s"] = self.section("data").window_s
        if values["checkpoint"]:
            values["checkpoint"] = str(self._base / values["checkpoint"])
        return FMSpec(**values)

    def build_fm_and_preprocess(self, side: str) -> tuple[Any, Any]:
        """A fresh FM of ``side`` and its preprocessing module."""
        spec = self.fm_spec(side)
        fm = build_fm(spec)
        return fm, preprocess_for(fm.input_spec, spec.modality)

    def load_old_model(self) -> OldModel:
        """The old FM + head saved by ``fit-head``."""
        head_info = self.read_json("head.json", "fit-head")
        fm, preprocess = self.build_fm_and_preprocess("old")
        head = make_head(head_info["d_features"], head_info["n_classes"], mlp_hidden=head_info["mlp_hidden"])
        model = OldModel(fm, head, preprocess)
        model.load_state_dict(load_file(str(self.require("old_model.safetensors", "fit-head"))))
        return model.eval()

    def load_bridged_model(self) -> BridgedModel:
        """The deployed pipeline from the old model and the bridge saved by ``train``."""
        info = self.read_json("train.json", "train")
        old = self.load_old_model()
        new_fm, new_preprocess = self.build_fm_and_preprocess("new")
        bridge = PrototypeBridge(BridgeConfig(**info["bridge_config"]))
        bridge.load_state_dict(load_file(str(self.require("bridge.safetensors", "train"))))
        return BridgedModel(new_preprocess, new_fm, bridge, old.fm, old.head, i=info["i"], j=info["j"]).eval()

    def provenance_fms(self) -> dict[str, dict[str, str]]:
        """FM names and checkpoint hashes for the manifest."""
        out = {}
        for side in ("old", "new"):
            spec = self.fm_spec(side)
            out[side] = {"name": f"{spec.name}-{spec.size}", "checkpoint_sha256": checkpoint_sha256(spec)}
        return out

    @staticmethod
    def save_state(module: torch.nn.Module, path: Path) -> Path:
        """Write a module's state to ``.safetensors`` atomically."""
        return _save_state(module, path)
