"""Cut a Recording into paired windows: a common time grid, one label per window, quality checks, resampling.

Windows start at ``t_lo + k * step_s`` where ``t_lo`` is the later of the two streams' first samples: in each
stream, window ``k`` starts at the sample nearest ``t_lo`` plus :func:`devices.windowing.window_start` ``(k)``, the
same grid rule the live windower follows. Windows are kept only while both streams hold all their samples, and
dropped, counted under the first reason that applies (:data:`DROP_REASONS` order):

* ``label_change`` — a marker changes the label inside the window; or, with ``min_label_fraction`` (the FOG
  protocol: 0.8), the window's majority label covers less than that fraction of it (a window that passes carries
  its majority label, not the label at its start);
* ``label_excluded`` — the label in force is not one of ``class_names`` (after ``label_map``), e.g. WESAD's
  transient or meditation, or there is no marker yet;
* a quality code of :func:`devices.windowing.assess_quality` on either stream's raw samples (``gap``,
  ``backwards``, ``nonfinite``, ``clipped``, ``flat``): the very checks that keep a live window from the model.

Every window goes through :class:`devices.windowing.WindowCutter`, the one path the runtime's windower uses too:
quality on raw samples, NaN repair, per-window polyphase resampling with the same left context. So a model sees in
training exactly what it will see live (``tests/test_windows_shared.py`` checks it sample for sample). The raw
samples are taken in the stream's own LSL format (float32 unless the stream says otherwise), as a live inlet
delivers them. Windows stay in signal units: band-pass and normalisation are part of the model
(:mod:`bridges.preprocess`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bridges.data.windows import PairedWindows
from devices.errors import BadInputError
from devices.recording import Recording, Stream, labels_at
from devices.windowing import QUALITY_CODES, QualityThresholds, WindowCutter, cut_windows, window_start

logger = logging.getLogger(__name__)

DROP_REASONS = ("label_change", "label_excluded", *(code for code in QUALITY_CODES if code != "partial"))
# Relative tolerance between a stream's nominal rate and the rate its timestamps show.
_RATE_TOLERANCE = 0.01


@dataclass(frozen=True)
class StreamSelect:
    """Which stream and channels of a recording form one side of the pair.

    Parameters
    ----------
    stream : str
        Stream name, or else type (see :meth:`devices.recording.Recording.stream`).
    channels : tuple of str
        Channel labels to take, in this order; empty takes every channel.
    modality : str
        ``"ecg"``, ``"ppg"``, ``"eeg"``, ... (recorded in the windows).
    """

    stream: str
    channels: tuple[str, ...] = ()
    modality: str = ""


@dataclass
class DropReport:
    """How many candidate windows were kept and why the others were dropped.

    Parameters
    ----------
    candidates : int
        Windows on the time grid.
    kept : int
        Windows returned.
    dropped : dict of str to int
        Count per reason of :data:`DROP_REASONS` (every reason present, zeros included).
    """

    candidates: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))

    def merge(self, other: DropReport) -> DropReport:
        """Sum of two reports."""
        return DropReport(
            self.candidates + other.candidates,
            self.kept + other.kept,
            {r: self.dropped.get(r, 0) + other.dropped.get(r, 0) for r in DROP_REASONS},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"candidates": self.candidates, "kept": self.kept, "dropped": dict(self.dropped)}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DropReport:
        """Inverse of :meth:`to_dict`."""
        dropped = dict.fromkeys(DROP_REASONS, 0)
        dropped.update({str(k): int(v) for k, v in dict(values.get("dropped", {})).items()})
        return cls(int(values.get("candidates", 0)), int(values.get("kept", 0)), dropped)

    def __str__(self) -> str:
        reasons = ", ".join(f"{r} {n}" for r, n in self.dropped.items() if n)
        return f"kept {self.kept} of {self.candidates} windows" + (f" (dropped: {reasons})" if reasons else "")


def _check_regular(stream: Stream) -> None:
    if stream.is_marker or not stream.is_regular:
        raise BadInputError(f"stream '{stream.name}' is not a regularly sampled signal stream")
    if stream.n_samples > 1:
        measured = (stream.n_samples - 1) / stream.duration_s if stream.duration_s > 0 else np.inf
        if abs(measured - stream.nominal_srate) > _RATE_TOLERANCE * stream.nominal_srate:
            raise BadInputError(
                f"stream '{stream.name}': timestamps show {measured:.3f} Hz but the nominal rate is "
                f"{stream.nominal_srate} Hz (gaps?); windows would be misaligned"
            )


def _select(recording: Recording, select: StreamSelect) -> tuple[Stream, np.ndarray, list[str]]:
    stream = recording.stream(select.stream)
    _check_regular(stream)
    labels = list(select.channels) or list(stream.channel_labels)
    index = stream.channel_index(labels)
    return stream, stream.data[:, index], labels


def window_labels(
    markers: Stream, starts_s: np.ndarray, window_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Label in force at each window start and whether the label changes inside ``[t, t + window_s)``.

    Returns
    -------
    names : array of shape (n_windows,), str (object)
        Label at the window start ("" before the first marker).
    changes : array of shape (n_windows,), bool
        True where a marker with a different label falls inside the window.
    """
    names = np.asarray([str(v) for v in markers.data[:, 0]], dtype=object)
    is_change = np.ones(len(names), dtype=bool)
    is_change[1:] = names[1:] != names[:-1]
    change_times = markers.timestamps[is_change]
    inside = np.searchsorted(change_times, starts_s + window_s, side="left") - np.searchsorted(
        change_times, starts_s, side="right"
    )
    return labels_at(markers, starts_s), inside > 0


def majority_labels(
    markers: Stream, starts_s: np.ndarray, window_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The label in force over the most time in each ``[t, t + window_s)`` and the share of the window it covers.

    A marker at time t sets the label from t until the next marker (as :func:`devices.recording.labels_at`);
    before the first marker the label is ``""``. Ties go to the label in force first.

    Returns
    -------
    names : array of shape (n_windows,), str (object)
        Majority label per window.
    fractions : array of shape (n_windows,), float64
        Its share of the window, in (0, 1].
    """
    times = np.asarray(markers.timestamps, dtype=np.float64)
    values = [str(v) for v in markers.data[:, 0]]
    starts_s = np.asarray(starts_s, dtype=np.float64)
    first = labels_at(markers, starts_s)
    lo = np.searchsorted(times, starts_s, side="right")
    hi = np.searchsorted(times, starts_s + window_s, side="left")
    names = np.empty(len(starts_s), dtype=object)
    fractions = np.empty(len(starts_s), dtype=np.float64)
    for k, (start, a, b) in enumerate(zip(starts_s, lo, hi, strict=True)):
        edges = np.concatenate(([start], times[a:b], [start + window_s]))
        share: dict[str, float] = {}
        for label, duration in zip([first[k], *values[a:b]], np.diff(edges), strict=True):
            share[label] = share.get(label, 0.0) + float(duration)
        best = max(share, key=share.__getitem__)  # dicts keep insertion order: ties go to the earlier label
        names[k], fractions[k] = best, share[best] / window_s
    return names, fractions


def paired_windows_from_recording(
    recording: Recording,
    old: StreamSelect,
    new: StreamSelect,
    labels: str | None,
    class_names: Sequence[str],
    window_s: float,
    step_s: float,
    old_sfreq_hz: float,
    new_sfreq_hz: float,
    subject: str,
    label_map: Mapping[str, str] | None = None,
    thresholds: QualityThresholds | None = None,
    min_label_fraction: float | None = None,
) -> tuple[PairedWindows, DropReport]:
    """Cut one recording into paired windows (see the module docstring).

    Parameters
    ----------
    recording : Recording
        Holds both signal streams and (unless ``labels`` is None) a marker stream of label changes.
    old, new : StreamSelect
        The old- and new-modality streams and channels.
    labels : str or None
        Name (or type) of the marker stream; ``None`` leaves every label -1 (unlabeled pairs).
    class_names : sequence of str
        Class index ``k`` is ``class_names[k]``; windows with other labels are dropped.
    window_s, step_s : float
        Window length and hop (s).
    old_sfreq_hz, new_sfreq_hz : float
        Output rates (the FMs' rates, Hz).
    subject : str
        Subject id stored with every window.
    label_map : mapping of str to str, optional
        Renames marker labels before matching ``class_names`` (e.g. N1..REM → "sleep").
    thresholds : QualityThresholds, optional
        The quality thresholds (the runtime's defaults when None).
    min_label_fraction : float, optional
        In (0, 1]: a window takes its majority label (:func:`majority_labels`) and is kept only when that label
        covers at least this share of it (BioX-Bridge's FOG rule: 0.8). None: the label at the window start, and
        any change inside drops the window.

    Returns
    -------
    PairedWindows
        ``old`` (n, C_old, round(window_s * old_sfreq_hz)) and ``new`` (n, C_new, round(window_s * new_sfreq_hz))
        float32; ``info["drops"]`` is the report's dict.
    DropReport
        Candidate, kept and dropped counts.
    """
    if not (window_s > 0 and step_s > 0):
        raise BadInputError(f"'window_s' and 'step_s' must be > 0, got {window_s!r} and {step_s!r} instead.")
    if min_label_fraction is not None and not 0 < min_label_fraction <= 1:
        raise BadInputError(f"'min_label_fraction' must be in (0, 1], got {min_label_fraction!r} instead.")
    class_names = [str(c) for c in class_names]
    sides = [_select(recording, old), _select(recording, new)]
    cutters = [
        WindowCutter(window_s, stream.nominal_srate, channels, target_sfreq_hz=out_hz, thresholds=thresholds,
                     name=stream.name)
        for (stream, _, channels), out_hz in zip(sides, (old_sfreq_hz, new_sfreq_hz), strict=True)
    ]
    # Window k starts in each stream at the sample nearest t_lo (the later first sample) plus the grid's offset.
    t_lo = max((float(s.timestamps[0]) for s, _, _ in sides if s.n_samples), default=0.0)
    offsets = [max(0, round((t_lo - float(s.timestamps[0])) * s.nominal_srate)) if s.n_samples else 0
               for s, _, _ in sides]

    def fits(k: int) -> bool:
        return all(
            offset + window_start(k, step_s, s.nominal_srate) + cutter.window_samples <= s.n_samples
            for (s, _, _), offset, cutter in zip(sides, offsets, cutters, strict=True)
        )

    n_candidates = 0
    while all(s.n_samples for s, _, _ in sides) and fits(n_candidates):
        n_candidates += 1
    starts = t_lo + step_s * np.arange(n_candidates)

    keep = np.ones(n_candidates, dtype=bool)
    report = DropReport(candidates=n_candidates)
    label_index = np.full(n_candidates, -1, dtype=np.int64)

    def drop(reason: str, mask: np.ndarray) -> None:
        newly = keep & mask
        report.dropped[reason] += int(newly.sum())
        keep[newly] = False

    if labels is not None and min_label_fraction is not None:
        names, fractions = majority_labels(recording.stream(labels), starts, window_s)
        changes = fractions < min_label_fraction - 1e-9  # a share of exactly 80% passes 0.8
    elif labels is not None:
        names, changes = window_labels(recording.stream(labels), starts, window_s)
    if labels is not None:
        mapped = [(label_map or {}).get(n, n) for n in names]
        label_index = np.asarray([class_names.index(m) if m in class_names else -1 for m in mapped], dtype=np.int64)
        drop("label_change", changes)
        drop("label_excluded", label_index < 0)

    candidates = np.flatnonzero(keep)
    cut = []
    for (stream, data, _), offset, cutter in zip(sides, offsets, cutters, strict=True):
        sample_starts = [offset + window_start(int(k), step_s, stream.nominal_srate) for k in candidates]
        cut.append(cut_windows(data, stream.timestamps, sample_starts, cutter))
    for pos, k in enumerate(candidates):
        codes = cut[0][pos].quality.codes + cut[1][pos].quality.codes
        reason = next((r for r in DROP_REASONS if r in codes), None)
        if reason is not None:
            report.dropped[reason] += 1
            keep[k] = False
    clean = [pos for pos, k in enumerate(candidates) if keep[k]]
    arrays = [
        np.stack([windows[pos].data for pos in clean]) if clean
        else np.zeros((0, cutter.n_channels, cutter.output_samples), dtype=np.float32)
        for windows, cutter in zip(cut, cutters, strict=True)
    ]
    report.kept = int(keep.sum())
    logger.info("%s: %s", subject, report)
    info = {
        "window_s": float(window_s), "step_s": float(step_s), "drops": report.to_dict(),
        "label_rule": "label at the window start, no change inside" if min_label_fraction is None
        else f"majority label covering >= {min_label_fraction:g} of the window",
        "source": recording.info.get("source", recording.info.get("format", "")),
        "preprocessing": "per-window quality check and polyphase resampling (devices.windowing, as live); "
                         "band-pass and normalisation are in the model",
    }
    windows = PairedWindows(
        arrays[0], arrays[1], label_index[keep], np.full(report.kept, str(subject), dtype=object), class_names,
        old.modality or sides[0][0].type.lower(), new.modality or sides[1][0].type.lower(),
        float(old_sfreq_hz), float(new_sfreq_hz), sides[0][2], sides[1][2], info,
    )
    return windows, report


def concatenate(parts: Sequence[PairedWindows], info: Mapping[str, Any] | None = None) -> PairedWindows:
    """Join paired windows of several subjects (same classes, modalities, rates, channels and lengths)."""
    if not parts:
        raise BadInputError("no paired windows to join (no subjects built)")
    first = parts[0]
    for p in parts[1:]:
        same = (
            p.class_names == first.class_names and p.old_modality == first.old_modality
            and p.new_modality == first.new_modality and p.old_sfreq_hz == first.old_sfreq_hz
            and p.new_sfreq_hz == first.new_sfreq_hz and p.old_channels == first.old_channels
            and p.new_channels == first.new_channels and p.old.shape[1:] == first.old.shape[1:]
            and p.new.shape[1:] == first.new.shape[1:]
        )
        if not same:
            subjects = sorted(set(p.subjects))
            raise BadInputError(f"paired windows of subject(s) {subjects} differ in layout from the first")
    return PairedWindows(
        np.concatenate([p.old for p in parts]), np.concatenate([p.new for p in parts]),
        np.concatenate([p.labels for p in parts]), np.concatenate([p.subjects for p in parts]),
        list(first.class_names), first.old_modality, first.new_modality, first.old_sfreq_hz, first.new_sfreq_hz,
        list(first.old_channels), list(first.new_channels), dict(info or {}),
    )
