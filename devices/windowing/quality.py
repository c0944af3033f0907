"""Per-window signal quality: timestamp gaps, NaN/Inf, flat and clipped channels; and NaN/Inf repair.

:func:`assess_quality` looks at one window of raw input-rate samples and returns :class:`QualityFlags`; every
threshold lives in one frozen :class:`QualityThresholds`. :func:`fill_nonfinite` is the repair the windower runs
*after* counting, so NaN/Inf never reach a model: each channel is linearly interpolated across non-finite runs,
runs at either end hold the nearest finite value, and a channel with no finite sample becomes 0.

All checks are vectorised over the window (no per-sample Python loops); cost is O(n_samples * n_channels).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from devices.errors import BadInputError

logger = logging.getLogger(__name__)

#: Codes of :attr:`QualityFlags.codes`, in the order they are reported.
QUALITY_CODES = ("partial", "gap", "backwards", "nonfinite", "clipped", "flat")


@dataclass(frozen=True)
class QualityThresholds:
    """Every quality threshold, in one place.

    Parameters
    ----------
    gap_factor : float
        A timestamp step longer than ``gap_factor / sfreq_hz`` seconds can be a gap (default 1.5 sample periods).
    max_gap_s : float
        Holes up to this long (a timestamp step beyond one period, or a run of samples marked missing) are
        tolerated: the repair interpolates across them and the window stays usable. Longer ones make the window
        gapped (default 0.1 s). Jittery timestamps and a lost Bluetooth packet do not cost a prediction; a
        dropout does.
    max_missing_fraction : float
        A window missing more than this fraction of its samples in all is gapped, however short each hole.
    max_nonfinite_fraction : float
        A window where any channel has a larger fraction of NaN/Inf samples is ``bad`` (default 0.1).
        Any NaN/Inf at all makes the window not ``ok``.
    flat_std : float
        A channel whose standard deviation (over its finite samples, in channel units) is at most this is flat.
    flat_run_s : float
        A channel holding exactly the same value for this long (s) is flat, e.g. a lead-off dropout inside an
        otherwise live window. Windows shorter than this need the whole window constant.
    clip_fraction : float
        A channel with more than this fraction of samples clipped is flagged clipped.
    clip_min_run : int
        Without ``clip_limits``, a sample counts as clipped only inside a run of at least this many consecutive
        samples equal to the channel's max (or min) in the window: a sensor at its rail holds the value, while
        a smooth peak can repeat its maximum at most twice by symmetry.
    """

    gap_factor: float = 1.5
    max_gap_s: float = 0.1
    max_missing_fraction: float = 0.05
    max_nonfinite_fraction: float = 0.1
    flat_std: float = 1e-9
    flat_run_s: float = 1.0
    clip_fraction: float = 0.01
    clip_min_run: int = 3

    def __post_init__(self) -> None:
        checks = {
            "gap_factor": self.gap_factor > 1.0,
            "max_gap_s": self.max_gap_s >= 0.0,
            "max_missing_fraction": 0.0 <= self.max_missing_fraction <= 1.0,
            "max_nonfinite_fraction": 0.0 <= self.max_nonfinite_fraction <= 1.0,
            "flat_std": self.flat_std >= 0.0,
            "flat_run_s": self.flat_run_s > 0.0,
            "clip_fraction": 0.0 <= self.clip_fraction <= 1.0,
            "clip_min_run": self.clip_min_run >= 1,
        }
        bounds = {
            "gap_factor": "> 1",
            "max_gap_s": ">= 0",
            "max_missing_fraction": "in [0, 1]",
            "max_nonfinite_fraction": "in [0, 1]",
            "flat_std": ">= 0",
            "flat_run_s": "> 0",
            "clip_fraction": "in [0, 1]",
            "clip_min_run": ">= 1",
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise BadInputError(f"'{name}' must be {bounds[name]}, got {value!r} instead.")


@dataclass(frozen=True)
class QualityFlags:
    """Quality of one window.

    Attributes
    ----------
    ok : bool
        True when no check found anything (then ``reasons`` and ``codes`` are empty).
    bad : bool
        True when the window should not be used: some channel's NaN/Inf fraction exceeds
        ``QualityThresholds.max_nonfinite_fraction`` (or the window is a padded partial one that does).
    reasons : list of str
        Human-readable findings, e.g. ``"channel 'ECG' is flat"``, ``"12% NaN/Inf"``.
    codes : tuple of str
        One machine-readable code per kind of finding, in the order of :data:`QUALITY_CODES`: ``"gap"``,
        ``"backwards"``, ``"nonfinite"``, ``"clipped"``, ``"flat"`` (and ``"partial"`` for a flushed window).
    has_gap : bool
        Samples are missing inside the window beyond what ``QualityThresholds.max_gap_s`` and
        ``max_missing_fraction`` tolerate: marked missing by the caller (a gap the reader measured), or a
        timestamp step.
    n_missing : int
        Samples marked missing (see ``missing`` in :func:`assess_quality`).
    longest_gap_s : float
        The longest timestamp step (s) among the gaps; 0.0 without a gap.
    backwards : bool
        Timestamps decrease somewhere in the window.
    nonfinite_fraction : float
        Fraction of NaN/Inf samples over all channels (before repair).
    nonfinite_fraction_per_channel : tuple of float
        The same, per channel.
    flat_channels : tuple of str
        Labels of flat channels.
    clipped_channels : tuple of str
        Labels of clipped channels.
    clipped_fraction_per_channel : tuple of float
        Fraction of samples counted as clipped, per channel (0.0 for constant channels, which are not checked).
    """

    ok: bool
    bad: bool
    reasons: list[str] = field(default_factory=list)
    codes: tuple[str, ...] = ()
    has_gap: bool = False
    n_missing: int = 0
    longest_gap_s: float = 0.0
    backwards: bool = False
    nonfinite_fraction: float = 0.0
    nonfinite_fraction_per_channel: tuple[float, ...] = ()
    flat_channels: tuple[str, ...] = ()
    clipped_channels: tuple[str, ...] = ()
    clipped_fraction_per_channel: tuple[float, ...] = ()


def _longest_run(equal_next: np.ndarray) -> np.ndarray:
    """Longest run of identical consecutive values per channel.

    ``equal_next`` is ``x[1:] == x[:-1]`` of shape (n_samples - 1, n_channels); returns run lengths in samples
    (at least 1), shape (n_channels,).
    """
    n = equal_next.shape[0]
    if n == 0:
        return np.ones(equal_next.shape[1], dtype=np.int64)
    idx = np.arange(n)[:, None]
    # Index of the most recent break at or before each position; the run length is the distance to it.
    last_break = np.maximum.accumulate(np.where(equal_next, -1, idx), axis=0)
    return (idx - last_break).max(axis=0) + 1


def _longest_true_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array (0 when none)."""
    if not mask.any():
        return 0
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return int((np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).max())


def _in_runs(mask: np.ndarray, min_run: int) -> np.ndarray:
    """Count, per channel, the True entries of ``mask`` (n_samples, n_channels) lying in runs >= ``min_run``."""
    if min_run <= 1:
        return mask.sum(axis=0)
    n, n_ch = mask.shape
    if n < min_run:
        return np.zeros(n_ch, dtype=np.int64)
    padded = np.zeros((n + 2, n_ch), dtype=np.int8)
    padded[1:-1] = mask
    edges = np.diff(padded, axis=0)  # +1 where a run starts, -1 one past where it ends
    counts = np.zeros(n_ch, dtype=np.int64)
    starts_r, starts_c = np.nonzero(edges == 1)
    stops_r, stops_c = np.nonzero(edges == -1)
    # np.nonzero walks row-major, so sort by channel (stable) to pair each start with its own stop.
    s_order = np.argsort(starts_c, kind="stable")
    e_order = np.argsort(stops_c, kind="stable")
    lengths = stops_r[e_order] - starts_r[s_order]
    long_runs = lengths >= min_run
    np.add.at(counts, starts_c[s_order][long_runs], lengths[long_runs])
    return counts


def _percent(fraction: float) -> str:
    """Format a fraction as a short percentage that never rounds a non-zero value to "0%"."""
    pct = 100.0 * fraction
    if 0.0 < pct < 1.0:
        return f"{pct:.1g}%"
    return f"{pct:.0f}%"


def assess_quality(
    data: np.ndarray,
    timestamps: np.ndarray,
    sfreq_hz: float,
    *,
    channel_labels: Sequence[str] | None = None,
    thresholds: QualityThresholds | None = None,
    clip_limits: tuple[float | np.ndarray, float | np.ndarray] | None = None,
    missing: np.ndarray | None = None,
) -> QualityFlags:
    """Assess one window of raw samples.

    Parameters
    ----------
    data : array of shape (n_samples, n_channels)
        Raw samples (NaN/Inf allowed) in channel units, at ``sfreq_hz``.
    timestamps : array of shape (n_samples,)
        Sample times in seconds.
    sfreq_hz : float
        Nominal sampling rate in Hz (> 0), for the gap test and ``flat_run_s``.
    channel_labels : sequence of str, optional
        One label per channel, for the reasons; defaults to ``ch1``, ``ch2``, ...
    thresholds : QualityThresholds, optional
        Defaults to ``QualityThresholds()``.
    clip_limits : (low, high), optional
        Saturation limits in channel units, scalars or arrays of shape (n_channels,): samples at or beyond them
        count as clipped. Without them, samples held at the window's own min or max count (see
        ``QualityThresholds.clip_min_run``).
    missing : array of shape (n_samples,), bool, optional
        Rows that stand for samples that never arrived (a gap the reader measured; their values are NaN
        placeholders). They make the window gapped and are left out of the other checks.

    Returns
    -------
    QualityFlags
        The findings; ``ok`` is True and ``reasons`` empty for a clean window.
    """
    th = thresholds if thresholds is not None else QualityThresholds()
    x = np.asarray(data)
    if x.ndim == 1:
        x = x.reshape(-1, 1)
    ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
    n, n_ch = x.shape
    if ts.shape[0] != n:
        raise BadInputError(f"quality: {n} samples but {ts.shape[0]} timestamps")
    labels = list(channel_labels) if channel_labels is not None else [f"ch{k + 1}" for k in range(n_ch)]
    if len(labels) != n_ch:
        raise BadInputError(f"quality: {len(labels)} channel labels for {n_ch} channels")
    if not (sfreq_hz > 0 and math.isfinite(sfreq_hz)):
        raise BadInputError(f"'sfreq_hz' must be a finite number > 0, got {sfreq_hz!r} instead.")
    found: dict[str, list[str]] = {}  # code -> reasons, reported in QUALITY_CODES order

    # Samples that never arrived, then timestamp gaps and backwards steps.
    period = 1.0 / sfreq_hz
    n_missing = int(np.count_nonzero(missing)) if missing is not None else 0
    steps = np.diff(ts)
    gap_mask = (steps > max(th.gap_factor, 1.0) * period) & (steps - period > th.max_gap_s)
    longest_gap_s = float(steps[gap_mask].max()) if gap_mask.any() else 0.0
    if n_missing:
        longest_run_s = _longest_true_run(np.asarray(missing, dtype=bool)) * period
        if longest_run_s > th.max_gap_s or n_missing > th.max_missing_fraction * n:
            found["gap"] = [f"gap: {n_missing} samples missing ({n_missing * period:.3g} s)"]
            longest_gap_s = max(longest_gap_s, longest_run_s)
    if "gap" not in found and gap_mask.any():
        found["gap"] = [f"gap of {longest_gap_s:.3g} s in timestamps"]
    backwards = bool((steps < 0).any())
    if backwards:
        found["backwards"] = ["timestamps go backwards"]
    has_gap = "gap" in found
    if n == 0 or n_missing == n:
        reason = "empty window" if n == 0 else found["gap"][0]
        return QualityFlags(
            ok=False, bad=True, reasons=[reason], codes=("gap",) if n else ("nonfinite",), has_gap=has_gap,
            longest_gap_s=longest_gap_s, n_missing=n_missing, backwards=backwards,
        )
    if n_missing:  # judge the samples that did arrive
        present = ~np.asarray(missing, dtype=bool)
        x, ts = x[present], ts[present]
        n = x.shape[0]

    # NaN/Inf, counted before anything is repaired.
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
    else:
        finite = np.ones(x.shape, dtype=bool)
    n_finite = finite.sum(axis=0)
    nonfinite_per_ch = 1.0 - n_finite / n
    nonfinite_fraction = float(nonfinite_per_ch.mean())
    bad = bool(nonfinite_per_ch.max() > th.max_nonfinite_fraction) or has_gap
    if nonfinite_fraction > 0:
        text = f"{_percent(nonfinite_fraction)} NaN/Inf"
        worst = int(np.argmax(nonfinite_per_ch))
        if n_ch > 1:
            text += f" (channel '{labels[worst]}': {_percent(float(nonfinite_per_ch[worst]))})"
        found["nonfinite"] = [text]

    # Flat channels: tiny spread over the finite samples, or one value held for flat_run_s.
    xf = np.where(finite, x, 0.0).astype(np.float64, copy=False)
    safe_count = np.maximum(n_finite, 1)
    mean = xf.sum(axis=0) / safe_count
    var = (np.where(finite, xf - mean, 0.0) ** 2).sum(axis=0) / safe_count
    run_n = min(n, max(2, round(th.flat_run_s * sfreq_hz)))  # a "run" of one sample is no run
    longest = _longest_run((x[1:] == x[:-1]) & finite[1:] & finite[:-1])
    # Spread needs two samples; an all-NaN channel is reported as NaN/Inf, not also as flat.
    constant = (np.sqrt(var) <= th.flat_std) & (n_finite >= 2)
    flat = constant | ((longest >= run_n) & (n_finite >= 2))
    flat_channels = tuple(labels[k] for k in np.flatnonzero(flat))
    if flat_channels:
        found["flat"] = [f"channel '{label}' is flat" for label in flat_channels]

    # Clipping: samples at or beyond given limits, or held at the window's own extremes.
    if clip_limits is not None:
        low = np.broadcast_to(np.asarray(clip_limits[0], dtype=np.float64), (n_ch,))
        high = np.broadcast_to(np.asarray(clip_limits[1], dtype=np.float64), (n_ch,))
        clipped_n = (finite & ((xf <= low) | (xf >= high))).sum(axis=0)
    else:
        hi = np.where(finite, xf, -np.inf).max(axis=0)
        lo = np.where(finite, xf, np.inf).min(axis=0)
        at_rail = finite & ((xf == hi) | (xf == lo))
        clipped_n = _in_runs(at_rail, th.clip_min_run)
    # A constant channel sits at its own min and max everywhere: that is flat, not clipped. A value held at the
    # window's extreme (a rail) is clipped, and flat too when held for flat_run_s.
    clipped_frac = np.where(constant | (n_finite == 0), 0.0, clipped_n / n)
    clipped = clipped_frac > th.clip_fraction
    clipped_channels = tuple(labels[k] for k in np.flatnonzero(clipped))
    if clipped_channels:
        found["clipped"] = [
            f"channel '{labels[k]}' is clipped ({_percent(float(clipped_frac[k]))} of samples at its limits)"
            for k in np.flatnonzero(clipped)
        ]

    codes = tuple(code for code in QUALITY_CODES if code in found)
    return QualityFlags(
        ok=not codes,
        bad=bad,
        reasons=[reason for code in codes for reason in found[code]],
        codes=codes,
        has_gap=has_gap,
        n_missing=n_missing,
        longest_gap_s=longest_gap_s,
        backwards=backwards,
        nonfinite_fraction=nonfinite_fraction,
        nonfinite_fraction_per_channel=tuple(float(v) for v in nonfinite_per_ch),
        flat_channels=flat_channels,
        clipped_channels=clipped_channels,
        clipped_fraction_per_channel=tuple(float(v) for v in clipped_frac),
    )


def fill_nonfinite(data: np.ndarray) -> np.ndarray:
    """Replace NaN/Inf by linear interpolation along time, per channel.

    Runs at the start or end hold the nearest finite value; a channel without any finite sample becomes 0.

    Parameters
    ----------
    data : array of shape (n_samples, n_channels)
        Samples; float dtype (integer arrays cannot hold NaN and are returned unchanged).

    Returns
    -------
    array of shape (n_samples, n_channels)
        ``data`` itself when everything is finite, else a repaired copy of the same dtype.
    """
    x = np.asarray(data)
    if not np.issubdtype(x.dtype, np.floating):
        return x
    finite = np.isfinite(x)
    if finite.all():
        return x
    out = x.copy()
    positions = np.arange(x.shape[0])
    # A loop over channels only (few); np.interp does the per-sample work and holds the ends.
    for ch in np.flatnonzero(~finite.all(axis=0)):
        good = finite[:, ch]
        if not good.any():
            out[:, ch] = 0.0
        else:
            out[~good, ch] = np.interp(positions[~good], positions[good], x[good, ch])
    return out
