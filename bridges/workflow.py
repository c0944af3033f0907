"""The method's steps as one reproducible run: a TOML config, an output folder, one artefact per step.

``pretrain`` (optional, :mod:`bridges.pretrained`) → ``pretrain_<side>.safetensors`` + ``.json`` + ``.png``;
``fit-head`` → ``old_model.safetensors`` + ``head.json``; ``select`` → ``select.json`` + ``select.png``;
``train`` → ``bridge.safetensors`` + ``train.json`` + ``train.png``; ``evaluate`` → ``evaluate.json`` +
``confusion.png``; ``distill`` → ``distill.json``; ``export`` → the ``.bxb`` bundle. Each step rebuilds what it
needs from the config and the artefacts of the steps before it, so the steps can run as separate commands.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bridges.bridge import BridgeConfig, PrototypeBridge
from bridges.config import ConfigError, load_sections
from bridges.data import PairedWindows, simulated_paired, split_subjects
from bridges.data.datasets import SOURCES, explicit_split
from bridges.fm.base import FoundationModel
from bridges.fm.checkpoints import check_state_keys, state_sha256
from bridges.fm.registry import FMSpec, build_fm, checkpoint_sha256
from bridges.models import BridgedModel, OldModel, make_head
from bridges.preprocess import preprocess_for
from bridges.pretrained import check_pretrained, fm_identity, read_pretrained_state
from bridges.run_config import SCHEMA
from devices.atomic import atomic_output, write_bytes_atomic
from devices.errors import BadInputError

logger = logging.getLogger(__name__)


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

    Paths in the config file (``[data] root`` and ``cache_dir``, FM checkpoints, ``[export] path``, ``[output]
    dir``) are relative to the file's folder; without a file, to the working directory.

    Parameters
    ----------
    config_path : str, Path or None
        TOML file with the sections of :data:`SCHEMA` (all optional).
    overrides : dict
        Per-section values from command-line flags (``None`` = not given).
    progress : bool
        Show progress bars while building the paired windows.
    """

    def __init__(self, config_path: str | Path | None = None, overrides: dict[str, dict[str, Any]] | None = None,
                 *, progress: bool = True):
        self.sections = load_sections(config_path, SCHEMA, overrides)
        base = Path(config_path).parent if config_path else Path.cwd()
        self._where = str(config_path) if config_path else "defaults"
        self._base = base
        self.progress = progress
        self.data_root = self._data_root()
        self._identities: dict[str, dict[str, Any]] = {}
        self.out_dir = (base / self.sections["output"].dir).resolve()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"output folder '{self.out_dir}' cannot be created: {err.strerror or err}") from None

    def _data_root(self) -> Path | None:
        """``[data] root`` resolved against the config file's folder; it must be an existing folder."""
        data = self.section("data")
        if data.root is None:
            return None
        root = (self._base / Path(data.root).expanduser()).resolve()
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            relative = "" if Path(data.root).expanduser().is_absolute() else (
                f" (relative to the config file's folder '{self._base.resolve()}')")
            hint = (f"; the recipe's placeholder: set [data] root to your {SOURCES[data.source].title} folder"
                    if "/path/to/" in data.root else "")
            raise ConfigError(f"{self._where} [data]: root {data.root!r} is '{root}'{relative}, which {what}{hint}")
        return root

    # ------------------------------------------------------------------ inputs
    @property
    def config_name(self) -> str:
        """The config file as given (``"defaults"`` without one), for messages."""
        return self._where

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
        explicit = explicit_split(data.source, data.split) if isinstance(data.split, dict) else None
        windows = self._paired_windows(None if explicit is None else [s for ids in explicit.values() for s in ids])
        found = sorted(set(windows.subjects.tolist()))
        if explicit is None:
            try:
                split = split_subjects(found, counts=tuple(data.split) if data.split else None,
                                       random_state=data.seed)
            except BadInputError as err:
                raise ConfigError(f"{self._where} [data]{' split' if data.split else ''}: {err}") from None
        else:
            split = explicit
            absent = [s for ids in explicit.values() for s in ids if s not in found]
            if absent:
                logger.warning("[data] split names subject(s) %s that have no windows (the data has windows of %s)",
                               absent, found)
        out = {name: windows.of_subjects(ids) for name, ids in split.items()}
        empty = {name: split[name] for name, part in out.items() if not len(part)}
        if empty:
            raise ConfigError(f"{self._where} [data] split: no windows in {', '.join(empty)} (subjects {empty})")
        return out

    def _paired_windows(self, subjects: list[str] | None) -> PairedWindows:
        """All paired windows of ``[data]`` (only ``subjects`` when given: the data's ids)."""
        data = self.section("data")
        cache = str(self._base / data.cache_dir) if data.cache_dir else str(self.out_dir / "cache")
        direction = f"{data.old_modality}->{data.new_modality}"
        common = {"cache_dir": cache, "window_s": data.window_s, "step_s": data.step_s, "progress": self.progress}
        if data.source == "simulated":
            if subjects is not None:
                simulated = [f"sim{data.seed + k}" for k in range(data.n_subjects)]
                unknown = [s for s in subjects if s not in simulated]
                if unknown:
                    raise ConfigError(f"{self._where} [data] split: names {unknown}, but the simulated subjects are "
                                      f"{simulated[0]} ... {simulated[-1]} (sim<seed + k> for k < n_subjects)")
            return simulated_paired(data.scenario, data.old_modality, data.new_modality, data.n_subjects,
                                    data.duration_s, seed=data.seed, classes=data.classes, **common)
        if data.source == "wesad":
            from bridges.data import wesad_paired

            return wesad_paired(self.data_root, subjects=subjects, direction=direction, classes=data.classes,
                                **common)
        if data.source == "isruc":
            from bridges.data import isruc_paired

            return isruc_paired(self.data_root, subjects=None if subjects is None else [int(s) for s in subjects],
                                classes=data.classes, direction=direction, **common)
        from bridges.data import fog_paired

        return fog_paired(self.data_root, subjects=subjects, direction=direction, **common)

    def fm_spec(self, side: str) -> FMSpec:
        """The FM spec of ``side`` (``"old"`` or ``"new"``), its window length taken from ``[data]``."""
        section = self.section(f"{side}_fm")
        values = asdict(section)
        values["window_s"] = self.section("data").window_s
        if values["checkpoint"]:
            values["checkpoint"] = str((self._base / Path(values["checkpoint"]).expanduser()).resolve())
        return FMSpec(**values)

    def checked_fm_spec(self, side: str) -> FMSpec:
        """:meth:`fm_spec`, its checkpoint checked to exist (a recipe's placeholder path says which key to set)."""
        spec = self.fm_spec(side)
        raw = self.section(f"{side}_fm").checkpoint
        if spec.checkpoint and not Path(spec.checkpoint).exists():
            hint = "the recipe's placeholder: " if "/path/to/" in raw else ""
            raise ConfigError(
                f"{self._where} [{side}_fm]: checkpoint {raw!r} is '{spec.checkpoint}', which does not exist; {hint}"
                f"set [{side}_fm] checkpoint to the {spec.name} checkpoint file (or remove it for random weights)"
            )
        return spec

    def build_fm_and_preprocess(self, side: str, *, pretrained: bool = True) -> tuple[Any, Any]:
        """A fresh FM of ``side`` and its preprocessing module.

        With ``pretrained`` (default) and ``side`` in ``[pretrain] fms``, the FM holds the weights ``pretrain``
        left in the run folder (checked to be for this FM spec); otherwise the weights the spec says.
        """
        spec = self.checked_fm_spec(side)
        fm = build_fm(spec)
        if pretrained and self.is_pretrained(side):
            state = read_pretrained_state(self.out_dir, side, self.fm_identity(side), self._where)
            check_state_keys(fm, state, f"pretrained {side} FM")
            fm.load_state_dict(state, strict=True)
        return fm, preprocess_for(fm.input_spec, spec.modality)

    def is_pretrained(self, side: str) -> bool:
        """Whether ``[pretrain] fms`` lists ``side`` (later steps then load the FM ``pretrain`` trained)."""
        return side in self.section("pretrain").fms

    def fm_identity(self, side: str) -> dict[str, Any]:
        """What pretrained weights of ``side`` must have been made for (see :func:`bridges.pretrained.fm_identity`)."""
        if side not in self._identities:  # hashing a published checkpoint takes a moment: once per run
            self._identities[side] = fm_identity(self.checked_fm_spec(side))
        return self._identities[side]

    def check_fm_weights(self, side: str) -> None:
        """Check now, before any data is built, that ``side``'s checkpoint and pretrained weights (if listed) exist."""
        self.checked_fm_spec(side)
        if self.is_pretrained(side):
            check_pretrained(self.out_dir, side, self.fm_identity(side), self._where)

    def _check_scaling(self, fm: FoundationModel, side: str, info: dict[str, Any], artefact: str, step: str) -> None:
        """Raise ConfigError when ``step`` (its result ``artefact``) recorded another input scaling for ``fm``."""
        recorded = (info.get("input_scaling") or {}).get(f"{side}_fm")  # results from before it was recorded: None
        if recorded is not None and recorded != fm.input_scaling:
            raise ConfigError(
                f"{self._where} [{side}_fm]: input scaling is {fm.input_scaling!r}, but {step} ran with {recorded!r} "
                f"({artefact}); set [{side}_fm] input_scaling = {recorded!r} or run '{step}' again"
            )

    def load_old_model(self) -> OldModel:
        """The old FM + head saved by ``fit-head``."""
        head_info = self.read_json("head.json", "fit-head")
        fm, preprocess = self.build_fm_and_preprocess("old")
        self._check_scaling(fm, "old", head_info, "head.json", "fit-head")
        head = make_head(head_info["d_features"], head_info["n_classes"], mlp_hidden=head_info["mlp_hidden"])
        model = OldModel(fm, head, preprocess)
        model.load_state_dict(load_file(str(self.require("old_model.safetensors", "fit-head"))))
        return model.eval()

    def load_bridged_model(self) -> BridgedModel:
        """The deployed pipeline from the old model and the bridge saved by ``train``."""
        info = self.read_json("train.json", "train")
        old = self.load_old_model()
        new_fm, new_preprocess = self.build_fm_and_preprocess("new")
        self._check_scaling(new_fm, "new", info, "train.json", "train")
        bridge = PrototypeBridge(BridgeConfig(**info["bridge_config"]))
        bridge.load_state_dict(load_file(str(self.require("bridge.safetensors", "train"))))
        return BridgedModel(new_preprocess, new_fm, bridge, old.fm, old.head, i=info["i"], j=info["j"]).eval()

    def provenance_fms(self, model: BridgedModel | None = None) -> dict[str, dict[str, Any]]:
        """Each FM's name, the checkpoint it started from, and the weights the bundle holds (for the manifest).

        ``checkpoint_sha256`` is the file the FM was built from (``"random-init"`` for seeded random weights).
        With ``model`` (the pipeline being exported), ``weights_sha256`` is :func:`state_sha256` of the weights it
        runs: for the old FM, the old model ``fit-head`` saved (FM and head, fine-tuned when ``[head] unfreeze``:
        then ``fine_tuned`` is true), for the new FM, its state as built (the ``pretrain`` step's weights when it
        is pretrained); ``pretrained`` says whether ``pretrain`` trained the FM after it was built.
        """
        out: dict[str, dict[str, Any]] = {}
        for side in ("old", "new"):
            spec = self.checked_fm_spec(side)
            out[side] = {"name": f"{spec.name}-{spec.size}", "checkpoint_sha256": checkpoint_sha256(spec)}
        if model is not None:
            head_info = self.read_json("head.json", "fit-head")
            old_state = load_file(str(self.require("old_model.safetensors", "fit-head")))
            out["old"].update(weights_sha256=state_sha256(old_state), fine_tuned=bool(head_info.get("unfreeze")),
                              pretrained=self.is_pretrained("old"))
            out["new"].update(weights_sha256=state_sha256(model.new_fm.state_dict()), fine_tuned=False,
                              pretrained=self.is_pretrained("new"))
        return out

    @staticmethod
    def save_state(module: torch.nn.Module, path: Path) -> Path:
        """Write a module's state to ``.safetensors`` atomically."""
        return _save_state(module, path)
