"""Paired data sets of the paper's protocol (DESIGN §7): WESAD, ISRUC-Sleep subgroup 1, FOG, and simulated sessions.

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
from devices.formats.fog import EEG_CHANNELS as FOG_EEG_CHANNELS
from devices.formats.fog import EMG_COLUMNS as FOG_FOLDERS
from devices.formats.fog import LABEL_NAMES as FOG_LABEL_NAMES
from devices.formats.fog import read_fog
from devices.formats.isruc import isruc_paths, read_isruc
from devices.formats.wesad import read_wesad, wesad_path
from devices.recording import Recording
from devices.simulate import STATE_STREAM_NAME, resolve_profiles, scenario_states, simulate_session

logger = logging.getLogger(__name__)

#: Input rate of each modality's FM (HuBERT-ECG, PaPaGei-S, LaBraM, NormWear), Hz. NormWear takes EMG at 130 Hz
#: as BioX-Bridge feeds it (``bridges.fm.registry.NORMWEAR_SFREQ_HZ``).
FM_SFREQ_HZ: dict[str, float] = {"ecg": 100.0, "ppg": 125.0, "eeg": 200.0, "emg": 130.0}
WESAD_CLASSES = ("baseline", "stress", "amusement")
#: WESAD's binary protocol (Schmidt et al. 2018): stress against the rest (baseline and amusement).
WESAD_BINARY = ("non-stress", "stress")
ISRUC_STAGES = ("W", "N1", "N2", "N3", "REM")
SLEEP_WAKE = ("wake", "sleep")
#: FOG classes: label 0 (FOG-free) and 1 (freezing), named as the gait scenario's states.
FOG_CLASSES = (FOG_LABEL_NAMES[0], FOG_LABEL_NAMES[1])
#: BioX-Bridge's FOG rule: a window keeps its majority label when it covers at least this share of it.
FOG_LABEL_FRACTION = 0.8
#: Default (window_s, step_s) of a simulated scenario, following the matching real data set.
SIM_WINDOWS: dict[str, tuple[float, float]] = {"stress": (60.0, 5.0), "sleep": (30.0, 30.0), "gait": (3.0, 0.3)}
#: Default device profile per modality of a simulated scenario, the matching real data set's montage.
SIM_DEVICES: dict[str, dict[str, str]] = {"sleep": {"eeg": "isruc_psg"}, "gait": {"eeg": "fog_rig", "emg": "fog_rig"}}
#: Default label rule of a simulated scenario (``min_label_fraction``; None: no label change inside a window).
SIM_LABEL_FRACTION: dict[str, float | None] = {"gait": FOG_LABEL_FRACTION}
_WESAD_SELECT = {"ecg": StreamSelect("Chest", ("ECG",), "ecg"), "ppg": StreamSelect("PPG", ("BVP",), "ppg")}
_ISRUC_SELECT = {"eeg": StreamSelect("EEG", (), "eeg"), "ecg": StreamSelect("ECG", ("X2",), "ecg")}
_FOG_SELECT = {"eeg": StreamSelect("EEG", FOG_EEG_CHANNELS, "eeg"), "emg": StreamSelect("EMG", (), "emg")}
_FOG_DATA_FOLDERS = ("Filtered Data", "FilteredData")


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
    classes: int = 3,
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
    classes : int
        3 (``baseline``, ``stress``, ``amusement``) or 2 (``non-stress`` = baseline and amusement, ``stress``:
        WESAD's binary protocol).

    Returns
    -------
    PairedWindows
        ECG at 100 Hz (n, 1, 6000 for 60 s), BVP at 125 Hz (n, 1, 7500); subjects ``"S<k>"``; windows whose
        label is transient, meditation or ignore, or that span a label change, are dropped and counted.
    """
    old, new = parse_direction(direction, ("ecg->ppg", "ppg->ecg"))
    if classes not in (2, 3):
        raise BadInputError(f"'classes' is {classes!r}, but has to be one of [3, 2].")
    class_names = WESAD_CLASSES if classes == 3 else WESAD_BINARY
    label_map = None if classes == 3 else {"baseline": "non-stress", "amusement": "non-stress"}
    root = Path(root).expanduser()
    numbers = _wesad_subjects(root, subjects)
    paths = {f"S{k}": wesad_path(root, k) for k in numbers}
    missing = [f"S{k} ('{p}')" for k, p in zip(numbers, paths.values(), strict=True) if not p.is_file()]
    if missing:
        raise BadInputError(f"WESAD root '{root}': missing subject file(s) {', '.join(missing)}")
    params = {"subjects": list(paths), "direction": direction, "window_s": window_s, "step_s": step_s}
    if classes != 3:  # the three-class key stays as it was, so existing caches still hit
        params["classes"] = classes

    def cut(recording: Recording, subject: str) -> tuple[PairedWindows, DropReport]:
        return paired_windows_from_recording(
            recording, _WESAD_SELECT[old], _WESAD_SELECT[new], "Markers", class_names, window_s, step_s,
            _fm_rate(old), _fm_rate(new), subject, label_map=label_map,
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


def fog_task_files(root: str | Path, subjects: Sequence[int | str] | None = None) -> dict[str, list[Path]]:
    """The FOG task files under ``root``, per recording folder (``"001"``, ..., ``"008/OFF_1"``, ...).

    Parameters
    ----------
    root : str or Path
        The data set's ``Filtered Data`` folder (holding ``<subject>/task_<n>.txt``), or a folder holding it.
    subjects : sequence of int or str, optional
        Subjects to keep (``8``, ``"008"``; subject 008's two sessions go together); default every folder found.

    Returns
    -------
    dict of str to list of Path
        Folder id → its ``*.txt`` files in task order; folders without files are left out.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise BadInputError(f"FOG root '{root}' does not exist")
    for name in _FOG_DATA_FOLDERS:
        if (root / name).is_dir():
            root = root / name
            break
    wanted = None
    if subjects is not None:
        wanted = set()
        for s in subjects:
            match = re.fullmatch(r"0*(\d+)", str(s).strip())
            if not match:
                raise BadInputError(f"FOG subject {s!r} is not a subject number (1-12 or '001'-'012')")
            wanted.add(f"{int(match[1]):03d}")
    found: dict[str, list[Path]] = {}
    for folder in FOG_FOLDERS:
        if wanted is not None and folder.split("/")[0] not in wanted:
            continue
        files = sorted((root / folder).glob("*.txt"), key=lambda p: [int(t) if t.isdigit() else t
                                                                     for t in re.split(r"(\d+)", p.name)])
        if files:
            found[folder] = [f for f in files if f.is_file()]
    if not found:
        which = f"subject(s) {sorted(wanted)}" if wanted is not None else "any subject"
        raise BadInputError(
            f"FOG root '{root}' holds no task files of {which} (expected <subject>/task_<n>.txt for subjects "
            f"001-012, 008/OFF_1 and 008/OFF_2)"
        )
    missing = sorted(wanted - {f.split("/")[0] for f in found}) if wanted is not None else []
    if missing:
        raise BadInputError(f"FOG root '{root}': no task files of subject(s) {missing}")
    return found


def fog_paired(
    root: str | Path,
    subjects: Sequence[int | str] | None = None,
    direction: str = "eeg->emg",
    cache_dir: str | Path | None = None,
    window_s: float = 3.0,
    step_s: float = 0.3,
    min_label_fraction: float = FOG_LABEL_FRACTION,
    progress: bool = True,
) -> PairedWindows:
    """FOG (freezing of gait): 6 EEG channels paired with 3 EMG channels, classes ``walking`` / ``freezing``.

    Every task file (:func:`devices.formats.fog.read_fog`) is cut on its own, 3 s windows every 0.3 s; a window
    keeps its majority label when that label covers at least ``min_label_fraction`` of it (BioX-Bridge's
    ``make_FOG.py``: 80%), otherwise it is dropped as ``label_change``. EEG goes to LaBraM's 200 Hz (µV; the
    model scales it), EMG to NormWear's 130 Hz (raw: the z-score per window and channel is the model's
    preprocessing, :mod:`bridges.preprocess`).

    Parameters
    ----------
    root : str or Path
        The data set's ``Filtered Data`` folder, or a folder holding it (see :func:`fog_task_files`).
    subjects : sequence of int or str, optional
        Subjects to read; default all. BioX-Bridge's experiments used subject 008 alone, split by window at
        random; here splits are by subject (DESIGN §7), so several subjects are needed.
    direction : str
        ``"eeg->emg"`` (old = EEG, LaBraM) or ``"emg->eeg"`` (old = EMG, NormWear).
    cache_dir : str or Path, optional
        Where built windows are cached.
    window_s, step_s : float
        Window and hop (s); the paper uses 3 s and 0.3 s.
    min_label_fraction : float
        Share of a window its majority label must cover, in (0, 1].
    progress : bool
        Show a progress bar over task files.

    Returns
    -------
    PairedWindows
        EEG (n, 6, 600) at 200 Hz with channels F3, C3, O1, F4, C4, O2; EMG (n, 3, 390) at 130 Hz (EMG1-3);
        subjects ``"001"`` ... ``"012"`` (both sessions of 008 are ``"008"``); ``info["drops_by_subject"]`` is
        per task file (``"008/OFF_1/task_2"``).
    """
    old, new = parse_direction(direction, ("eeg->emg", "emg->eeg"))
    files = fog_task_files(root, subjects)
    params = {"folders": list(files), "direction": direction, "window_s": float(window_s), "step_s": float(step_s),
              "min_label_fraction": float(min_label_fraction)}

    def cut(recording: Recording, key: str) -> tuple[PairedWindows, DropReport]:
        return paired_windows_from_recording(
            recording, _FOG_SELECT[old], _FOG_SELECT[new], "Markers", FOG_CLASSES, window_s, step_s,
            _fm_rate(old), _fm_rate(new), recording.info["subject"], min_label_fraction=min_label_fraction,
        )

    def build() -> PairedWindows:
        loaders = [(f"{folder}/{path.stem}", lambda p=path, f=folder: read_fog(p, folder=f))
                   for folder, paths in files.items() for path in paths]
        return _build_subjects(loaders, cut, {"source": "fog", "root": str(root), **params}, progress)

    return cached(cache_dir, "fog", params, [p for paths in files.values() for p in paths], build)


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
    min_label_fraction: float | None = None,
) -> PairedWindows:
    """Paired windows from simulated sessions (:func:`devices.simulate.simulate_session`), one per subject.

    Parameters
    ----------
    scenario : str
        ``"stress"``, ``"sleep"`` or ``"gait"``.
    old_modality, new_modality : str
        Modalities with a known FM rate (:data:`FM_SFREQ_HZ`): ``"ecg"``, ``"ppg"``, ``"eeg"``, ``"emg"``.
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
        Device profile per modality; defaults per scenario follow the real data set (:data:`SIM_DEVICES`):
        ``"sleep"`` EEG on the ``isruc_psg`` montage, ``"gait"`` EEG and EMG on the ``fog_rig`` (EEG F3, C3,
        O1, F4, C4, O2 as LaBraM takes FOG's six channels; EMG of three muscles, as FOG has).
    artefacts : bool
        Simulate artefacts (windows they spoil are dropped and counted).
    cache_dir, progress
        As for :func:`wesad_paired`.
    min_label_fraction : float, optional
        Label rule (see :func:`bridges.data.build.paired_windows_from_recording`); default per scenario,
        :data:`SIM_LABEL_FRACTION` (``"gait"``: FOG's 0.8 majority rule; others: no state change inside a
        window). 1.0 asks for the strict rule.

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
    for modality, device in SIM_DEVICES.get(scenario, {}).items():
        if modality in modalities:
            chosen.setdefault(modality, device)
    if min_label_fraction is None:
        min_label_fraction = SIM_LABEL_FRACTION.get(scenario)
    layouts = {m: [p.sfreq_hz, list(p.channel_labels)] for m, p in resolve_profiles(modalities, chosen).items()}
    params = {
        "scenario": scenario, "old": old_modality, "new": new_modality, "n_subjects": n_subjects,
        "duration_s": float(duration_s), "seed": int(seed), "window_s": window_s, "step_s": step_s,
        "classes": list(class_names), "devices": chosen, "artefacts": bool(artefacts),
        # The profiles' layouts key the cache too: a profile that changes its channels makes new windows.
        "layouts": layouts, "min_label_fraction": min_label_fraction,
    }

    def cut(recording: Recording, subject: str) -> tuple[PairedWindows, DropReport]:
        by_modality = {s.metadata.get("modality"): s.name for s in recording.signal_streams}
        return paired_windows_from_recording(
            recording, StreamSelect(by_modality[old_modality], (), old_modality),
            StreamSelect(by_modality[new_modality], (), new_modality), STATE_STREAM_NAME, class_names, window_s,
            step_s, old_hz, new_hz, subject, label_map=label_map, min_label_fraction=min_label_fraction,
        )

    def build() -> PairedWindows:
        loaders = [
            (f"sim{seed + k}", lambda k=k: simulate_session(scenario, modalities, duration_s, seed=seed + k,
                                                            devices=chosen, artefacts=artefacts))
            for k in range(n_subjects)
        ]
        return _build_subjects(loaders, cut, {"source": "simulated", **params}, progress)

    return cached(cache_dir, "simulated", params, [], build)
