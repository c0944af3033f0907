"""The run config's sections: what each ``biostream bridge`` TOML table may hold, checked as it is read.

:data:`SCHEMA` maps each table name to its frozen dataclass; :func:`bridges.config.load_sections` builds them, and a
key a section does not have, or a value its ``__post_init__`` refuses, is an error naming the key and the file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from bridges.data.datasets import check_data_keys
from bridges.epoch_selection import DEFAULT_SELECT_BY, check_select_by
from bridges.fm.registry import FMSpec
from bridges.pretrained import PretrainSection
from bridges.select import CKA_REDUCTIONS
from bridges.train_options import TrainOptions
from devices._checks import check_value, ensure_int, ensure_positive


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
    """``[data]``: where the paired windows come from and how they are split by subject.

    A key the file leaves out is None here until :func:`bridges.data.datasets.check_data_keys` fills in the
    source's default; a key that does not apply to the source (``scenario`` for WESAD, ``root`` for simulated
    sessions) is refused by name. Modality names are made canonical (WESAD's ``"bvp"`` is ``"ppg"``).

    Attributes
    ----------
    source : str
        One of :data:`DATA_SOURCES`.
    root : str
        The data set's folder (not for ``"simulated"``), relative to the config file's folder or absolute.
    scenario, n_subjects, duration_s
        Simulated sessions only: the scenario (default ``"stress"``), subjects (15) and seconds per subject (900).
    old_modality, new_modality : str
        Default: the source's direction (WESAD and simulated ECG → PPG, ISRUC EEG → ECG, FOG EEG → EMG).
    window_s, step_s : float
        Default: the source's (the simulated scenario's) window and step.
    classes : int
        WESAD 3 (baseline, stress, amusement; default) or 2 (non-stress, stress); ISRUC 2 (default) or 5; FOG 2;
        simulated: the scenario's state count (sleep: also 2).
    seed : int
        Seeds the simulated subjects and the random split (default 0).
    split : list or table
        Subjects per split: 4 counts or 4 fractions for train, val, pair, test (subjects drawn at random with
        ``seed``), or a table of subject lists, ``{ train = ["S2", ...], val = [...], pair = [...], test = [...] }``
        (only those subjects are read). Default: the paper's sizes for 15 or 99 subjects, else WESAD's shares.
    cache_dir : str
        Where built windows are cached (default: ``<output dir>/cache``).
    """

    source: str = "simulated"
    root: str | None = None
    scenario: str | None = None
    old_modality: str | None = None
    new_modality: str | None = None
    n_subjects: int | None = None
    duration_s: float | None = None
    window_s: float | None = None
    step_s: float | None = None
    classes: int | None = None
    seed: int | None = None
    split: list[int] | list[float] | dict[str, Any] | None = None
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        check_value(self.source, DATA_SOURCES, "source")
        _check_positive(self, "duration_s", "window_s", "step_s")
        _check_counts(self, 1, "n_subjects")
        _check_counts(self, 0, "seed")
        for name, value in check_data_keys(asdict(self)).items():
            object.__setattr__(self, name, value)  # the source's defaults, canonical names


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
class TrainSection(TrainOptions):
    """``[train]``: the bridge's position, size and training (see :func:`bridges.train.train_bridge`).

    Every :class:`~bridges.train_options.TrainOptions` field is a key, except ``random_state``, which is ``seed``
    here as in the other sections; ``i`` and ``j`` (default: ``select.json``'s) place the bridge.
    """

    i: int | None = None
    j: int | None = None
    seed: int = 0
    #: Keep the cached alignment targets in a temporary file in the output folder, read per batch, not in RAM.
    targets_on_disk: bool = False
    random_state: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "random_state", self.seed)
        super().__post_init__()
        _check_counts(self, 0, "i", "j")

    def options(self) -> TrainOptions:
        """The training options alone, as :func:`~bridges.train.train_bridge` takes them."""
        return TrainOptions(**{f.name: getattr(self, f.name) for f in fields(TrainOptions)})


@dataclass(frozen=True)
class DistillSection:
    """``[distill]``: the knowledge-distillation baseline (see :func:`bridges.distill.distill`)."""

    temperature: float = 2.0
    epochs: int = 20
    lr: float = 1e-4
    batch_size: int = 16
    unfreeze_fm: bool = True
    #: Which validation criterion keeps the epoch: "loss", "agreement" or "labels" (bridges.epoch_selection).
    select_by: str = DEFAULT_SELECT_BY
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, "temperature", "lr")
        _check_counts(self, 1, "epochs", "batch_size")
        check_select_by(self.select_by)


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
    """``[old_fm]`` / ``[new_fm]``: see :class:`bridges.fm.registry.FMSpec`.

    ``input_scaling`` says how raw windows are scaled for the FM (default: what a published checkpoint was trained
    on; random weights keep z-score, LaBraM µV / 100; see :class:`~bridges.fm.registry.FMSpec`). The steps record
    it in their JSON results, and a step refuses to go on when ``fit-head`` or ``train`` fed an FM another scaling
    than the config now asks for.
    ``window_s`` is not a key here (the window is ``[data] window_s``); keys that a published checkpoint makes
    moot (``config`` for LaBraM and PaPaGei, which read their architecture from the file), ``trust_pickle``
    without one, and ``channels`` for single-channel PaPaGei are refused by name.
    """

    name: str = "hubert_ecg"
    channels: list[str] = field(default_factory=list)
    window_s: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.window_s is not None:
            raise ValueError("'window_s' is not a key of an FM section: the window is [data] window_s")
        published = bool(self.checkpoint) and not self.checkpoint.endswith(".safetensors")
        if self.config and published and self.name in ("labram", "papagei"):
            raise ValueError(f"'config' does not apply with a published {self.name} checkpoint, which sets the "
                             "architecture; remove it (or 'checkpoint', for random weights of that shape)")
        if self.trust_pickle and not published:
            raise ValueError("'trust_pickle' applies to a published checkpoint ('.pt'/'.pth') only; remove it")
        if self.channels and self.name == "papagei":
            raise ValueError("'channels' does not apply to papagei, which reads one PPG channel; remove it")


SCHEMA: dict[str, type] = {
    "data": DataSection,
    "old_fm": FMSection,
    "new_fm": FMSection,
    "pretrain": PretrainSection,
    "head": HeadSection,
    "select": SelectSection,
    "train": TrainSection,
    "distill": DistillSection,
    "export": ExportSection,
    "output": OutputSection,
}
