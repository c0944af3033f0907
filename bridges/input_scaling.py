"""Input scalings by name: how a raw window is brought to the range a foundation model was trained on.

A scaling is a per-window normalisation (``"zscore"``, ``"minmax_pm1"`` or ``"none"``) followed by a fixed
multiplier; :class:`bridges.preprocess.Preprocess` runs it inside the model (so inside the exported ONNX graph),
after the band-pass. This module holds the names only, without torch, so the bundle manifest can read them.

What each FM was pretrained on (its *published* scaling, ``FoundationModel.published_scaling``), from the
public reference code:

- **HuBERT-ECG**: ``minmax_pm1``. ``code/utils.py`` of the HuBERT-ECG repository scales each lead of a record to
  [-1, 1] by its own minimum and maximum (``2 (x - min) / (max - min + 1e-8) - 1``) after the 0.05–47 Hz FIR,
  before the 100 Hz windows are cut; we do it per window and lead, the statistics a live stream has. The
  reference maps a flat lead to -1; we map it to 0, as the z-score does.
- **PaPaGei**: ``zscore``. Its PPG pipeline band-passes 0.5–12 Hz (pyPPG's Chebyshev filter) and its embedding
  scripts z-score each segment (``torch_ecg`` ``Normalize(method="z-score")``).
- **LaBraM**: ``uv_over_100``. Its training and fine-tuning loops divide the µV signal by 100 (units of 0.1 mV);
  there is no per-window normalisation.
- **NormWear**: ``zscore``. Its model API takes the signal as is; BioX-Bridge's FOG preparation z-scores each EMG
  channel before NormWear and names that NormWear's own preprocessing.

Random-weight FMs (tests, the demo, FMs pretrained here) keep the scaling their adapter has always used
(z-score; LaBraM µV / 100) unless the FM config's ``input_scaling`` says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from devices.errors import BadInputError

__all__ = [
    "INPUT_SCALINGS",
    "NORMALISATIONS",
    "PUBLISHED",
    "SCALING_CHOICES",
    "InputScaling",
    "get_scaling",
    "resolve_scaling",
    "scaling_from_steps",
    "scaling_name",
]

#: Per-window normalisations :class:`bridges.preprocess.Preprocess` implements.
NORMALISATIONS = ("zscore", "minmax_pm1", "none")
#: The config value meaning "whatever the FM's published checkpoint was trained on".
PUBLISHED = "published"


@dataclass(frozen=True)
class InputScaling:
    """One named scaling.

    Parameters
    ----------
    name : str
        The name a config or manifest uses.
    normalisation : str
        One of :data:`NORMALISATIONS`, per window and channel.
    scale : float
        Multiplier applied after the normalisation.
    description : str
        One line for people (``biostream info``).
    """

    name: str
    normalisation: str
    scale: float
    description: str


INPUT_SCALINGS: dict[str, InputScaling] = {
    s.name: s
    for s in (
        InputScaling("zscore", "zscore", 1.0, "per window and channel: (x - mean) / std"),
        InputScaling("minmax_pm1", "minmax_pm1", 1.0, "per window and channel: min -> -1, max -> +1"),
        InputScaling("uv_over_100", "none", 0.01, "no per-window statistics; uV / 100 (units of 0.1 mV)"),
        InputScaling("none", "none", 1.0, "none: the window in signal units"),
    )
}
#: What an FM config's ``input_scaling`` accepts.
SCALING_CHOICES = (PUBLISHED, *INPUT_SCALINGS)


def get_scaling(name: Any, *, what: str = "'input_scaling'") -> InputScaling:
    """The scaling called ``name`` (not :data:`PUBLISHED`, which an FM resolves); unknown names raise.

    Raises
    ------
    BadInputError
        ``name`` is not a key of :data:`INPUT_SCALINGS`; the message lists the accepted names.
    """
    if not isinstance(name, str) or name not in INPUT_SCALINGS:
        raise BadInputError(f"{what} is {name!r}, but has to be one of {list(INPUT_SCALINGS)}.")
    return INPUT_SCALINGS[name]


def resolve_scaling(name: Any, published: str, *, what: str = "'input_scaling'") -> InputScaling:
    """The scaling ``name`` asks for, :data:`PUBLISHED` meaning ``published`` (the FM's published scaling).

    Raises
    ------
    BadInputError
        ``name`` is not one of :data:`SCALING_CHOICES`; the message lists them.
    """
    if not isinstance(name, str) or name not in SCALING_CHOICES:
        raise BadInputError(f"{what} is {name!r}, but has to be one of {list(SCALING_CHOICES)}.")
    return get_scaling(published if name == PUBLISHED else name)


def scaling_name(normalisation: str, scale: float) -> str | None:
    """Name of the scaling doing ``normalisation`` then ``× scale``; None when no named scaling does."""
    for scaling in INPUT_SCALINGS.values():
        if scaling.normalisation == normalisation and math.isclose(scaling.scale, float(scale), rel_tol=1e-9):
            return scaling.name
    return None


#: Preprocessing-step ``op`` of each per-window normalisation (see ``PreprocessSpec.steps``).
NORMALISATION_OPS = {"zscore": "zscore", "minmax": "minmax_pm1"}


def scaling_from_steps(steps: Iterable[Mapping[str, Any]]) -> str | None:
    """The scaling a bundle manifest's preprocessing steps describe (for manifests written before it was named).

    A ``zscore`` step means ``"zscore"``, a ``minmax`` step ``"minmax_pm1"``, neither no normalisation; a
    ``scale`` step's ``factor`` is the multiplier (1 without one). None when no named scaling matches.
    """
    normalisation, scale = "none", 1.0
    for step in steps:
        op = step.get("op")
        if op in NORMALISATION_OPS:
            normalisation = NORMALISATION_OPS[op]
        elif op == "scale" and isinstance(step.get("factor"), (int, float)) and not isinstance(step["factor"], bool):
            scale = float(step["factor"])
    return scaling_name(normalisation, scale)
