"""Paired data sets of the paper's protocol (DESIGN §7): WESAD, ISRUC-Sleep subgroup 1, and simulated sessions.

Each builder reads subjects through the ``devices`` readers, cuts them with
:func:`bridges.data.build.paired_windows_from_recording` (progress bar over subjects), joins them, and caches the
result under ``cache_dir`` when given. ``info`` of the returned :class:`PairedWindows` holds the source, the
parameters, the drop counts in total (``"drops"``) and per subject (``"drops_by_subject"``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from bridges.data.build import DropReport, StreamSelect, concatenate, paired_windows_from_recording
from bridges.data.cache import cached
from bridges.data.windows import PairedWindows
from devices.errors import BadInputError
from devices.formats.isruc import isruc_paths, read_isruc
from devices.formats.wesad import read_wesad, wesad_path
from devices.recording import Recording
from devices.simulate import STATE_STREAM_NAME, scenario_states, simulate_session

logger = logging.getLogger(__name__)

#: Input rate of each modality's FM (HuBERT-ECG, PaPaGei-S, LaBraM), Hz.
FM_SFREQ_HZ: dict[str, float] = {"ecg": 100.0, "ppg": 125.0, "eeg": 200.0}
WESAD_CLASSES = ("baseline", "stress", "amusement")
ISRUC_STAGES = ("W", "N1", "N2", "N3", "REM")
SLEEP_WAKE = ("wake", "sleep")
#: Default (window_s, step_s) of a simulated scenario, following the matching real data set.
SIM_WINDOWS: dict[str, tuple[float, float]] = {"stress": (60.0, 5.0), "sleep": (30.0, 30.0), "gait": (3.0, 0.3)}
_WESAD_SELECT = {"ecg": StreamSelect("Chest", ("ECG",), "ecg"), "ppg": StreamSelect("PPG", ("BVP",), "ppg")}
_ISRUC_SELECT = {"eeg": StreamSelect("EEG", (), "eeg"), "ecg": StreamSelect("ECG", ("X2",), "ecg")}


def parse_direction(direction: str, allowed: Sequence[str]) -> tuple[str, str]:
    """Split ``"old->new"`` into ``(old, new)``; raise naming the allowed directions."""
    if direction not in allowed:
        raise BadInputError(f"'direction' is {direction!r}, but has to be one of {list(allowed)}.")
    old, new = direction.split("->")
    return old, new


def _fm_rate(modality: str) -> float:
    if modality not in FM_SFREQ_HZ:
        raise BadInputError(f"no FM input rate known for modality {modality!r}; known: {sorted(FM_SFREQ_HZ)}")
    return FM_SFREQ_HZ[modality]


def _build_subjects(
    loaders: Sequence[tuple[str, Callable[[], Recording]]],
    cut: Callable[[Recording, str], tuple[PairedWindows, DropReport]],
    info: dict[str, Any],
    progress: bool,
) -> PairedWindows:
    """Load and cut each subject in turn (progress bar), join, and record the drop counts in ``info``."""
    parts, total, by_subject = [], DropReport(), {}
    for subject, load in tqdm(loaders, desc=f"paired windows ({info['source']})", unit="subject", disable=not progress,
                              leave=False):
        windows, report = cut(load(), subject)
        parts.append(windows)
        total = total.merge(report)
        by_subject[subject] = report.to_dict()
    info = {**info, "drops": total.to_dict(), "drops_by_subject": by_subject,
            "preprocessing": parts[0].info.get("preprocessing", "") if parts else ""}
    logger.info("%s: %s", info["source"], total)
    return concatenate(parts, info)


def _wesad_subjects(root: Path, subjects: Sequence[int | str] | None) -> list[int]:
    if subjects is None:
        if not root.is_dir():
            raise BadInputError(f"WESAD root '{root}' does not exist")
        found = sorted(int(p.name[1:]) for p in root.iterdir() if p.is_dir() and re.fullmatch(r"S\d+", p.name))
        if not found:
            raise BadInputError(f"WESAD root '{root}' holds no subject folders S<k>")
        return found
    numbers = []
    for s in subjects:
        match = re.fullmatch(r"S?(\d+)", str(s))
        if not match:
            raise BadInputError(f"WESAD subject {s!r} is not a subject id (S<k> or k)")
        numbers.append(int(match[1]))
    return numbers


def wesad_paired(
    root: str | Path,
    subjects: Sequence[int | str] | None = None,
    direction: str = "ecg->ppg",
    cache_dir: str | Path | None = None,
    window_s: float = 60.0,
    step_s: float = 5.0,
    progress: bool = True,
) -> PairedWindows:
    """WESAD chest ECG (700 Hz) paired with wrist BVP (64 Hz), classes baseline / stress / amusement.

    Parameters
    ----------
    root : str or Path
        Folder holding ``S<k>/S<k>.pkl``.
    subjects : sequence of int or str, optional
        ``2`` or ``"S2"``; default every ``S<k>`` folder under ``root``.
    direction : str
        ``"ecg->ppg"`` (old = ECG) or ``"ppg->ecg"``.
    cache_dir : str or Path, optional
        Where built windows are cached.
    window_s, step_s : float
        Window and hop (s); the paper uses 60 s and 5 s.
    progress : bool
        Show a progress bar over subjects.

    Returns
    -------
    PairedWindows
        ECG at 100 Hz (n, 1, 6000 for 60 s), BVP at 125 Hz (n, 1, 7500); subjects ``"S<k>"``; windows whose
        label is transient, meditation or ignore, or that span a label change, are dropped and counted.
    """
    old, new = parse_direction(direction, ("ecg->ppg", "ppg->ecg"))
    root = Path(root).expanduser()
    numbers = _wesad_subjects(root, subjects)
    paths = {f"S{k}": wesad_path(root, k) for k in numbers}
    missing = [f"S{k} ('{p}')" for k, p in zip(numbers, paths.values(), strict=True) if not p.is_file()]
    if missing:
        raise BadInputError(f"WESAD root '{root}': missing subject file(s) {', '.join(missing)}")
    params = {"subjects": list(paths), "direction": direction, "window_s": window_s, "step_s": step_s}

    def cut(recording: Recording, subject: str) -> tuple[PairedWindows, DropReport]:
        return paired_windows_from_recording(
            recording, _WESAD_SELECT[old], _WESAD_SELECT[new], "Markers", WESAD_CLASSES, window_s, step_s,
            _fm_rate(old), _fm_rate(new), subject,
        )

    def build() -> PairedWindows:
        loaders = [(s, lambda p=p: read_wesad(p)) for s, p in paths.items()]
        return _build_subjects(loaders, cut, {"source": "wesad", "root": str(root), **params}, progress)

    return cached(cache_dir, "wesad", params, list(paths.values()), build)


def isruc_paired(
    root: str | Path,
    subjects: Sequence[int] | None = None,
    classes: int = 2,
    direction: str = "eeg->ecg",
    cache_dir: str | Path | None = None,
    window_s: float = 30.0,
    step_s: float = 30.0,
    progress: bool = True,
) -> PairedWindows:
    """ISRUC-Sleep subgroup 1: 6 EEG channels (200 Hz) paired with ECG X2 (→ 100 Hz), one window per 30 s epoch.

    Parameters
    ----------
    root : str or Path
        Folder holding ``ExtractedChannels/subject<k>.mat`` and ``RawData/<k>/<k>_1.txt``.
    subjects : sequence of int, optional
        Subject numbers; default every ``subject<k>.mat`` under ``ExtractedChannels``.
    classes : int
        2 (``wake`` = W, ``sleep`` = N1..REM) or 5 (``W``, ``N1``, ``N2``, ``N3``, ``REM``).
    direction : str
        ``"eeg->ecg"`` (old = EEG) or ``"ecg->eeg"``.
    cache_dir, window_s, step_s, progress
        As for :func:`wesad_paired`; the paper uses 30 s epochs without overlap.

    Returns
    -------
    PairedWindows
        EEG (n, 6, 6000) at 200 Hz in µV, ECG (n, 1, 3000) at 100 Hz; subjects ``"<k>"``.
    """
    old, new = parse_direction(direction, ("eeg->ecg", "ecg->eeg"))
    if classes not in (2, 5):
        raise BadInputError(f"'classes' is {classes!r}, but has to be one of [2, 5].")
    root = Path(root).expanduser()
    if subjects is None:
        folder = root / "ExtractedChannels"
        if not folder.is_dir():
            raise BadInputError(f"ISRUC root '{root}' has no ExtractedChannels/ folder")
        subjects = sorted(int(m[1]) for p in folder.iterdir() if (m := re.fullmatch(r"subject(\d+)\.mat", p.name)))
        if not subjects:
            raise BadInputError(f"ISRUC root '{root}' holds no ExtractedChannels/subject<k>.mat")
    numbers = [int(k) for k in subjects]
    files = {k: isruc_paths(root, k) for k in numbers}
    missing = [f"{k} ('{p}')" for k, pair in files.items() for p in pair if not p.is_file()]
    if missing:
        raise BadInputError(f"ISRUC root '{root}': missing file(s) of subject(s) {', '.join(missing)}")
    class_names = SLEEP_WAKE if classes == 2 else ISRUC_STAGES
    label_map = {s: ("wake" if s == "W" else "sleep") for s in ISRUC_STAGES} if classes == 2 else None
    params = {"subjects": numbers, "classes": classes, "direction": direction, "window_s": window_s,
              "step_s": step_s}

    def cut(recording: Recording, subject: str) -> tuple[PairedWindows, DropReport]:
        return paired_windows_from_recording(
            recording, _ISRUC_SELECT[old], _ISRUC_SELECT[new], "Markers", class_names, window_s, step_s,
            _fm_rate(old), _fm_rate(new), subject, label_map=label_map,
        )

    def build() -> PairedWindows:
        loaders = [(str(k), lambda k=k: read_isruc(root, k)) for k in numbers]
        return _build_subjects(loaders, cut, {"source": "isruc", "root": str(root), **params}, progress)

    return cached(cache_dir, "isruc", params, [p for pair in files.values() for p in pair], build)


def simulated_paired(
    scenario: str,
    old_modality: str,
    new_modality: str,
    n_subjects: int,
    duration_s: float,
    seed: int = 0,
    window_s: float | None = None,
    step_s: float | None = None,
    classes: int | None = None,
    devices: Mapping[str, str] | None = None,
    artefacts: bool = True,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> PairedWindows:
    """Paired windows from simulated sessions (:func:`devices.simulate.simulate_session`), one per subject.

    Parameters
    ----------
    scenario : str
        ``"stress"``, ``"sleep"`` or ``"gait"``.
    old_modality, new_modality : str
        Modalities with a known FM rate (:data:`FM_SFREQ_HZ`): ``"ecg"``, ``"ppg"``, ``"eeg"``.
    n_subjects : int
        Subjects; subject ``k`` is simulated with seed ``seed + k`` and named ``"sim<seed + k>"``.
    duration_s : float
        Session length per subject (s).
    seed : int
        First subject's seed.
    window_s, step_s : float, optional
        Default per scenario, :data:`SIM_WINDOWS` (stress 60/5, sleep 30/30, gait 3/0.3).
    classes : int, optional
        For ``"sleep"``: 5 (the states wake, N1, N2, N3, REM; default) or 2 (``wake``/``sleep``). Other
        scenarios take their state names as classes.
    devices : mapping of str to str, optional
        Device profile per modality; for ``"sleep"`` EEG defaults to the ``isruc_psg`` montage.
    artefacts : bool
        Simulate artefacts (windows they spoil are dropped and counted).
    cache_dir, progress
        As for :func:`wesad_paired`.

    Returns
    -------
    PairedWindows
        At the FMs' rates; class names are the scenario's state names (or ``wake``/``sleep``).
    """
    states = tuple(scenario_states(scenario))
    if old_modality == new_modality:
        raise BadInputError(f"old and new modality are both {old_modality!r}")
    old_hz, new_hz = _fm_rate(old_modality), _fm_rate(new_modality)
    if isinstance(n_subjects, bool) or not isinstance(n_subjects, int) or n_subjects < 1:
        raise BadInputError(f"'n_subjects' must be an integer >= 1, got {n_subjects!r} instead.")
    default_window, default_step = SIM_WINDOWS.get(scenario, (30.0, 30.0))
    window_s = float(window_s if window_s is not None else default_window)
    step_s = float(step_s if step_s is not None else default_step)
    class_names, label_map = states, None
    if scenario == "sleep" and classes == 2:
        class_names, label_map = SLEEP_WAKE, {s: ("wake" if s == "wake" else "sleep") for s in states}
    elif classes is not None and classes != len(states):
        allowed = [len(states), 2] if scenario == "sleep" else [len(states)]
        raise BadInputError(f"'classes' is {classes!r}, but has to be one of {allowed} for scenario {scenario!r}.")
    modalities = [old_modality, new_modality]
    chosen = dict(devices or {})
    if scenario == "sleep" and "eeg" in modalities:
        chosen.setdefault("eeg", "isruc_psg")
    params = {
        "scenario": scenario, "old": old_modality, "new": new_modality, "n_subjects": n_subjects,
        "duration_s": float(duration_s), "seed": int(seed), "window_s": window_s, "step_s": step_s,
        "classes": list(class_names), "devices": chosen, "artefacts": bool(artefacts),
    }

    def cut(recording: Recording, subject: str) -> tuple[PairedWindows, DropReport]:
        by_modality = {s.metadata.get("modality"): s.name for s in recording.signal_streams}
        return paired_windows_from_recording(
            recording, StreamSelect(by_modality[old_modality], (), old_modality),
            StreamSelect(by_modality[new_modality], (), new_modality), STATE_STREAM_NAME, class_names, window_s,
            step_s, old_hz, new_hz, subject, label_map=label_map,
        )

    def build() -> PairedWindows:
        loaders = [
            (f"sim{seed + k}", lambda k=k: simulate_session(scenario, modalities, duration_s, seed=seed + k,
                                                            devices=chosen, artefacts=artefacts))
            for k in range(n_subjects)
        ]
        return _build_subjects(loaders, cut, {"source": "simulated", **params}, progress)

    return cached(cache_dir, "simulated", params, [], build)
