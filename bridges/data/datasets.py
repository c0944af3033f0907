"""What each ``[data] source`` offers, for checking a config against it before any data is read.

Per source (:data:`SOURCES`): its modalities (with the data set's own names accepted as aliases: WESAD's ``BVP``
is PPG, ISRUC's ``X2`` is its ECG), the class protocols it supports, its default window and step, its default
direction, and the ``[data]`` keys that apply only to it. :func:`check_data_keys` resolves a ``[data]`` section
against this table (defaults filled in, names made canonical) and refuses every key that does not apply, by name;
:func:`explicit_split` reads a split given as subject lists.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridges.data.sources import SIM_WINDOWS
from bridges.data.windows import SPLITS
from devices.errors import BadInputError
from devices.simulate import SCENARIOS, scenario_states

__all__ = [
    "SOURCES",
    "SourceInfo",
    "check_data_keys",
    "explicit_split",
    "modality_name",
    "subject_id",
]

@dataclass(frozen=True)
class SourceInfo:
    """One ``[data] source``.

    Parameters
    ----------
    title : str
        Its name in messages (``"WESAD"``).
    modalities : tuple of str
        Canonical modality names it has (``"ecg"``, ``"ppg"``, ...).
    aliases : dict of str to str
        The data set's own names for them, lower case (``{"bvp": "ppg"}``).
    direction : tuple of str
        Default ``(old_modality, new_modality)``.
    classes : tuple of int
        Class counts ``[data] classes`` may ask for; the first is the default. Empty: set by the scenario.
    class_names : dict of int to str
        What each class count means, for messages.
    window_s, step_s : float or None
        Default window and step (s); None: set by the scenario.
    keys : tuple of str
        ``[data]`` keys that apply to this source and not to every source (``root``; the simulator's).
    subject_pattern : str
        Regular expression a subject id given in ``[data] split`` matches; its one group is the number.
    subject_format : str
        Format of the data's subject id from that number (``"S{}"``).
    subject_hint : str
        How subject ids are written, for messages.
    """

    title: str
    modalities: tuple[str, ...]
    aliases: dict[str, str] = field(default_factory=dict)
    direction: tuple[str, str] = ("ecg", "ppg")
    classes: tuple[int, ...] = ()
    class_names: dict[int, str] = field(default_factory=dict)
    window_s: float | None = None
    step_s: float | None = None
    keys: tuple[str, ...] = ("root",)
    subject_pattern: str = r"(\d+)"
    subject_format: str = "{}"
    subject_hint: str = "k"

    def accepted_names(self) -> list[str]:
        """Every modality name this source accepts, aliases included (for messages)."""
        return [*self.modalities, *(f"{alias} (= {name})" for alias, name in self.aliases.items())]


SOURCES: dict[str, SourceInfo] = {
    "simulated": SourceInfo(
        "simulated sessions", ("ecg", "ppg", "eeg", "emg"), {"bvp": "ppg"}, keys=("scenario", "n_subjects",
                                                                                   "duration_s"),
        subject_pattern=r"(?:sim)?(\d+)", subject_format="sim{}", subject_hint="sim<k>",
    ),
    "wesad": SourceInfo(
        "WESAD", ("ecg", "ppg"), {"bvp": "ppg"}, ("ecg", "ppg"), (3, 2),
        {3: "baseline, stress, amusement", 2: "non-stress (baseline and amusement), stress"}, 60.0, 5.0,
        subject_pattern=r"S?(\d+)", subject_format="S{}", subject_hint="S<k> or k",
    ),
    "isruc": SourceInfo(
        "ISRUC-Sleep", ("eeg", "ecg"), {"x2": "ecg"}, ("eeg", "ecg"), (2, 5),
        {2: "wake, sleep", 5: "W, N1, N2, N3, REM"}, 30.0, 30.0,
        subject_pattern=r"(?:subject)?0*(\d+)", subject_hint="k",
    ),
    "fog": SourceInfo(
        "FOG", ("eeg", "emg"), {}, ("eeg", "emg"), (2,), {2: "walking, freezing"}, 3.0, 0.3,
        subject_pattern=r"0*(\d+)", subject_format="{:03d}", subject_hint="k or '00k'",
    ),
}
#: Every key that applies to some source only.
_SOURCE_KEYS = sorted({key for info in SOURCES.values() for key in info.keys})


def modality_name(source: str, value: Any, key: str) -> str:
    """The canonical name of modality ``value`` in ``source`` (aliases and case folded); raise naming ``key``."""
    info = SOURCES[source]
    name = value.strip().lower() if isinstance(value, str) else value
    name = info.aliases.get(name, name)
    if name not in info.modalities:
        raise BadInputError(f"'{key}' is {value!r}, which {info.title} does not have; accepted names are "
                            f"{', '.join(info.accepted_names())}")
    return name


def subject_id(source: str, value: Any, key: str) -> str:
    """The data's id of subject ``value`` (``2`` → ``"S2"`` for WESAD); raise naming ``key`` if it is not one."""
    info = SOURCES[source]
    match = re.fullmatch(info.subject_pattern, str(value).strip(), flags=re.IGNORECASE)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or match is None:
        raise BadInputError(f"'{key}' holds {value!r}, which is not a {info.title} subject id ({info.subject_hint})")
    return info.subject_format.format(int(match[1]))


def explicit_split(source: str, table: Mapping[str, Any]) -> dict[str, list[str]]:
    """Subject lists of ``[data] split`` given as a table (``train``, ``val``, ``pair``, ``test``), checked.

    Returns
    -------
    dict of str to list of str
        Split name → the data's subject ids, in the order given.

    Raises
    ------
    BadInputError
        A split missing or unknown, an empty list, an id that is not one of the source's, or a subject in two
        splits; each names the key (``'split.val'``).
    """
    missing = [name for name in SPLITS if name not in table]
    unknown = sorted(set(table) - set(SPLITS))
    if unknown or missing:
        problem = f"has unknown key(s) {unknown}" if unknown else f"lacks {missing}"
        raise BadInputError(f"'split' {problem}; a split table names the subjects of each of {list(SPLITS)}")
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for name in SPLITS:
        ids = table[name]
        if isinstance(ids, (str, int)):
            ids = [ids]
        if not isinstance(ids, (list, tuple)) or not ids:
            raise BadInputError(f"'split.{name}' must be a non-empty list of subject ids, got {ids!r} instead.")
        out[name] = []
        for value in ids:
            subject = subject_id(source, value, f"split.{name}")
            if subject in seen:
                raise BadInputError(f"subject {subject} is in 'split.{seen[subject]}' and 'split.{name}'; a "
                                    "subject belongs to one split")
            seen[subject] = name
            out[name].append(subject)
    return out


def _split_counts(split: Sequence[Any]) -> None:
    if len(split) != len(SPLITS):
        raise BadInputError(f"'split' must give {len(SPLITS)} numbers, for {list(SPLITS)} in this order (or a "
                            f"table of subject lists), got {list(split)}")


def check_data_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve a ``[data]`` section: refuse keys that do not apply to its source, fill in the source's defaults.

    Parameters
    ----------
    values : mapping
        The section's fields; None marks a key the file does not set (TOML has no null).

    Returns
    -------
    dict
        The fields to change: canonical modality names, the source's default direction, window, step and
        classes, and the simulator's defaults (scenario ``"stress"``, 15 subjects of 900 s); ``seed`` 0.

    Raises
    ------
    BadInputError
        Naming the key: one that applies to another source only, a modality the source does not have, a class
        count it does not support, a ``root`` missing for a data set, or ``seed`` that nothing would use.
    """
    source = values["source"]
    info = SOURCES[source]
    given = {key for key, value in values.items() if value is not None}
    foreign = [key for key in _SOURCE_KEYS if key in given and key not in info.keys]
    if foreign:
        users = sorted(name for name, other in SOURCES.items() if foreign[0] in other.keys)
        names = ", ".join(f"'{key}'" for key in foreign)
        verb, pronoun = ("apply", "them") if len(foreign) > 1 else ("applies", "it")
        raise BadInputError(f"{names} {verb} to source {' or '.join(map(repr, users))}, not to {source!r}; "
                            f"remove {pronoun}")
    out: dict[str, Any] = {}
    if "root" in info.keys and not (isinstance(values.get("root"), str) and values["root"].strip()):
        raise BadInputError(f"'root' is not set: source {source!r} reads {info.title} from that folder")
    if source == "simulated":
        scenario = values.get("scenario") or "stress"
        if scenario not in SCENARIOS:
            raise BadInputError(f"'scenario' is {scenario!r}, but has to be one of {list(SCENARIOS)}.")
        states = scenario_states(scenario)
        classes = (len(states), 2) if scenario == "sleep" else (len(states),)
        window, step = SIM_WINDOWS.get(scenario, (30.0, 30.0))
        out.update(scenario=scenario, n_subjects=values.get("n_subjects") or 15,
                   duration_s=values.get("duration_s") or 900.0)
        described = {len(states): ", ".join(states), **({2: "wake, sleep"} if scenario == "sleep" else {})}
        where = f"scenario {scenario!r}"
    else:
        classes, window, step, described = info.classes, info.window_s, info.step_s, info.class_names
        where = f"source {source!r}"
    if values.get("classes") is not None and values["classes"] not in classes:
        options = "; ".join(f"{n} ({described[n]})" for n in classes)
        raise BadInputError(f"'classes' is {values['classes']!r}, but {where} has {options}")
    if source != "simulated":
        out["classes"] = values.get("classes") or classes[0]
    for key, default in (("old_modality", info.direction[0]), ("new_modality", info.direction[1])):
        out[key] = default if values.get(key) is None else modality_name(source, values[key], key)
    if out["old_modality"] == out["new_modality"]:
        raise BadInputError(f"'old_modality' and 'new_modality' are both {out['old_modality']!r}; the bridge "
                            "carries a model from one modality to another")
    out["window_s"] = float(values.get("window_s") or (window if window is not None else 60.0))
    out["step_s"] = float(values.get("step_s") or (step if step is not None else 5.0))
    split = values.get("split")
    if isinstance(split, Mapping):
        explicit_split(source, split)
        if source != "simulated" and values.get("seed") is not None:
            raise BadInputError("'seed' has nothing to seed: the split names its subjects, and the data set's "
                                "windows are not random; remove it")
    elif split is not None:
        _split_counts(split)
    out["seed"] = values.get("seed") or 0
    return out
