"""Cut a Recording into paired windows: a common time grid, one label per window, quality checks, resampling.

Windows start at ``t_lo + k * step_s`` where ``t_lo`` is the later of the two streams' first samples, and are
kept only while both streams cover ``[t, t + window_s)``. Each window is checked on the *raw* samples (before
resampling) and dropped, counted under the first reason that applies (:data:`DROP_REASONS` order):

* ``label_change`` — a marker changes the label inside the window;
* ``label_excluded`` — the label in force is not one of ``class_names`` (after ``label_map``), e.g. WESAD's
  transient or meditation, or there is no marker yet;
* ``nonfinite`` — NaN or Inf in any selected channel;
* ``flat`` — a channel is constant over the window, or its standard deviation is below ``flat_ratio`` times the
  median over the recording's windows (a disconnected lead);
* ``saturated`` — a channel sits stuck at its recording's extreme value (the ADC rail) for ``saturation_s``
  seconds or more in the window.

Kept windows are resampled to each FM's rate with :func:`scipy.signal.resample_poly` (rational ratio, the whole
stream at once so windows have no edge effects of their own) and come out with exactly
``round(window_s * rate)`` samples. They stay in signal units: band-pass and normalisation are part of the model
(:mod:`bridges.preprocess`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import scipy.signal

from bridges.data.windows import PairedWindows
from devices.errors import BadInputError
from devices.recording import Recording, Stream, labels_at

logger = logging.getLogger(__name__)

DROP_REASONS = ("label_change", "label_excluded", "nonfinite", "flat", "saturated")
# Largest numerator/denominator accepted for a resampling ratio (the polyphase filter grows with it).
_MAX_RATIO_TERM = 1000
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


def resample_ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    """Return ``(up, down)`` with ``up / down == to_hz / from_hz``; raise when the ratio is not a small fraction."""
    ratio = Fraction(to_hz / from_hz).limit_denominator(_MAX_RATIO_TERM)
    if ratio.numerator > _MAX_RATIO_TERM or abs(float(ratio) * from_hz - to_hz) > 1e-6 * to_hz:
        raise BadInputError(
            f"cannot resample {from_hz} Hz to {to_hz} Hz with a small rational ratio (got {ratio}); "
            "use nominal rates"
        )
    return ratio.numerator, ratio.denominator


def resample(data: np.ndarray, from_hz: float, to_hz: float) -> np.ndarray:
    """Resample ``data`` of shape (n_samples, n_channels) from ``from_hz`` to ``to_hz`` (polyphase, anti-aliased).

    Returns
    -------
    array of shape (ceil(n_samples * to_hz / from_hz), n_channels), float64
        Sample ``k`` lies at ``k / to_hz`` seconds after the input's first sample.
    """
    data = np.asarray(data, dtype=np.float64)
    up, down = resample_ratio(from_hz, to_hz)
    if up == down:
        return data.copy()
    # "line" padding extends each edge linearly, so a signal with an offset does not ring at the ends.
    return scipy.signal.resample_poly(data, up, down, axis=0, padtype="line")


def _window_sums(values: np.ndarray, i0: np.ndarray, i1: np.ndarray) -> np.ndarray:
    """Sums of ``values`` (n, C) over ``[i0, i1)`` per window → (n_windows, C), from one cumulative sum."""
    dtype = np.int64 if values.dtype == bool else np.float64
    cumulative = np.zeros((values.shape[0] + 1, values.shape[1]), dtype=dtype)
    np.cumsum(values, axis=0, dtype=dtype, out=cumulative[1:])
    return cumulative[i1] - cumulative[i0]


def quality_flags(
    data: np.ndarray, i0: np.ndarray, n_window: int, flat_ratio: float, saturation_samples: int
) -> dict[str, np.ndarray]:
    """Per-window quality checks on raw samples (see the module docstring).

    Parameters
    ----------
    data : array of shape (n_samples, n_channels)
        Raw samples.
    i0 : array of shape (n_windows,), int
        First sample of each window; windows are ``[i0, i0 + n_window)``.
    n_window : int
        Samples per window (>= 2).
    flat_ratio : float
        A channel whose window std is below this times the median window std of that channel is flat.
    saturation_samples : int
        Samples stuck at the rail that make a window saturated.

    Returns
    -------
    dict of str to array of shape (n_windows,), bool
        ``"nonfinite"``, ``"flat"``, ``"saturated"``.
    """
    i1 = i0 + n_window
    x = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(x)
    nonfinite = (_window_sums(~finite, i0, i1) > 0).any(axis=1)
    x = np.where(finite, x, 0.0)
    same = np.zeros(x.shape, dtype=bool)
    same[1:] = x[1:] == x[:-1]
    constant = _window_sums(same, i0 + 1, i1) == n_window - 1
    centred = x - x.mean(axis=0)
    s1 = _window_sums(centred, i0, i1) / n_window
    s2 = _window_sums(centred * centred, i0, i1) / n_window
    std = np.sqrt(np.maximum(s2 - s1 * s1, 0.0))
    typical = np.median(std, axis=0) if len(std) else np.zeros(x.shape[1])
    flat = (constant | (std < flat_ratio * typical)).any(axis=1)
    at_rail = ((x == x.max(axis=0)) | (x == x.min(axis=0))) & same if len(x) else same
    saturated = (_window_sums(at_rail, i0, i1) >= saturation_samples).any(axis=1)
    return {"nonfinite": nonfinite, "flat": flat, "saturated": saturated}


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
    flat_ratio: float = 1e-3,
    saturation_s: float = 1.0,
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
    flat_ratio : float
        See :func:`quality_flags`.
    saturation_s : float
        Seconds stuck at the rail that make a window saturated.

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
    class_names = [str(c) for c in class_names]
    sides = [_select(recording, old), _select(recording, new)]
    n_candidates, t_lo = 0, 0.0
    if all(s.n_samples for s, _, _ in sides):
        # Both streams must cover [t, t + window_s): from the later first sample to the earlier end.
        t_lo = max(float(s.timestamps[0]) for s, _, _ in sides)
        t_hi = min(float(s.timestamps[0]) + s.n_samples / s.nominal_srate for s, _, _ in sides)
        if t_hi - t_lo >= window_s - 1e-9:
            n_candidates = int(np.floor((t_hi - t_lo - window_s) / step_s + 1e-9)) + 1
    starts = t_lo + step_s * np.arange(n_candidates)

    keep = np.ones(len(starts), dtype=bool)
    report = DropReport(candidates=len(starts))
    label_index = np.full(len(starts), -1, dtype=np.int64)

    def drop(reason: str, mask: np.ndarray) -> None:
        newly = keep & mask
        report.dropped[reason] += int(newly.sum())
        keep[newly] = False

    if labels is not None:
        names, changes = window_labels(recording.stream(labels), starts, window_s)
        mapped = [(label_map or {}).get(n, n) for n in names]
        label_index = np.asarray([class_names.index(m) if m in class_names else -1 for m in mapped], dtype=np.int64)
        drop("label_change", changes)
        drop("label_excluded", label_index < 0)

    for stream, data, _ in sides:
        fs = stream.nominal_srate
        n_raw = int(round(window_s * fs))
        i0 = np.round((starts - stream.timestamps[0]) * fs).astype(np.int64)
        i0 = np.clip(i0, 0, max(stream.n_samples - n_raw, 0))
        if len(starts) and n_raw >= 2:
            flags = quality_flags(data, i0, n_raw, flat_ratio, max(1, int(round(saturation_s * fs))))
            for reason in ("nonfinite", "flat", "saturated"):
                drop(reason, flags[reason])

    kept_starts = starts[keep]
    arrays = []
    for (stream, data, _), out_hz in zip(sides, (old_sfreq_hz, new_sfreq_hz), strict=True):
        arrays.append(_cut(stream, data, kept_starts, window_s, out_hz))
    report.kept = int(keep.sum())
    logger.info("%s: %s", subject, report)
    info = {
        "window_s": float(window_s), "step_s": float(step_s), "drops": report.to_dict(),
        "source": recording.info.get("source", recording.info.get("format", "")),
        "preprocessing": "resampled only (scipy.signal.resample_poly); band-pass and normalisation are in the model",
    }
    windows = PairedWindows(
        arrays[0], arrays[1], label_index[keep], np.full(report.kept, str(subject), dtype=object), class_names,
        old.modality or sides[0][0].type.lower(), new.modality or sides[1][0].type.lower(),
        float(old_sfreq_hz), float(new_sfreq_hz), sides[0][2], sides[1][2], info,
    )
    return windows, report


def _cut(stream: Stream, data: np.ndarray, starts_s: np.ndarray, window_s: float, out_hz: float) -> np.ndarray:
    """Resample ``data`` (n, C) to ``out_hz`` and cut windows at ``starts_s`` → (n_windows, C, L) float32."""
    n_out = int(round(window_s * out_hz))
    n_channels = data.shape[1]
    if len(starts_s) == 0:
        return np.zeros((0, n_channels, n_out), dtype=np.float32)
    x = np.asarray(data, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        # Windows with NaN are already dropped; interpolating over them keeps the resampling filter from
        # smearing them into neighbouring windows.
        positions = np.arange(len(x))
        for c in range(n_channels):
            ok = finite[:, c]
            x[:, c] = np.interp(positions, positions[ok], x[ok, c]) if ok.any() else 0.0
    y = resample(x, stream.nominal_srate, out_hz)
    j0 = np.round((starts_s - stream.timestamps[0]) * out_hz).astype(np.int64)
    j0 = np.clip(j0, 0, len(y) - n_out)
    index = j0[:, None] + np.arange(n_out)[None, :]
    return np.ascontiguousarray(y[index].transpose(0, 2, 1), dtype=np.float32)


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
