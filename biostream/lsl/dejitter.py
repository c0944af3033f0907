"""Timestamp dejittering, rate measurement, gap and jump detection for one regular stream.

Model: within a *segment* (a stretch without clock jumps), sample ``k`` was taken at ``t(k) = a + b·k``; ``b`` is
the true period (1 / effective rate). The line is fitted to the (clock-corrected) timestamps by exponentially
weighted least squares, like liblsl's ``proc_dejitter`` (a recursive least-squares fit with a forgetting factor):
each sample's weight halves every ``halftime_s`` of samples. The dejittered timestamp of sample ``k`` is the
line's value, so within a chunk timestamps are spaced exactly ``b`` however bursty or noisy the raw ones were.

Differences from ``proc_dejitter``, and why they are ours to make:

* **Chunk-wise, vectorised updates.** The weighted moments of a whole chunk are merged into the running ones in
  one step (the parallel mean/covariance update), so the cost is a few numpy calls per chunk, not a Python loop
  per sample. The merge keeps centred moments, which stays well conditioned for days of samples.
* **Gaps keep the index honest, and jitter is not a gap.** Each new sample is compared with where the line puts
  the next index (its *residual*). Real outlets push irregularly: pylsl's ``SendData`` example stamps each
  sample when a 10-ms loop gets round to it, ``SendDataAdvanced`` stamps only a chunk's last sample, a Polar H10
  bridge stamps a 73-sample Bluetooth packet at one instant. Their residuals swing by one or many periods with
  nothing lost. So a gap must lift the residuals by more than ``gap_factor - 1`` periods *and* by more than
  the spread the recent residuals have shown (:data:`_SPREAD_MARGIN` times their range), and the lift must
  hold for the samples that follow; the number missing is the lift in whole periods. Before the spread is known
  (the first :data:`_MIN_SPREAD_SAMPLES` samples of a stream) a lift must exceed :data:`_EARLY_GAP_PERIODS`
  periods. Then the index skips the missing samples, so the line stays valid across the gap and the gap is
  reported rather than smeared into the fit.
* **Jumps restart the fit.** A backwards step (beyond jitter), or a forward step of more than ``jump_min_s`` that
  is also larger than the wall time that passed between the two samples' arrival, is a clock jump: the segment
  ends, the fit restarts, and the jump is reported. (A real outage of a live stream takes as long in wall time
  as in timestamps; a clock jump does not.)
* **A prior for the start.** Until a segment spans ``min_fit_s`` and the slope's standard error is below
  :data:`_MAX_SLOPE_REL_SE` of it, the slope is the nominal period; afterwards it is measured. So the rate
  reported never swings with the jitter of the first second after (re)connecting.
* **Dejittered times only go forward.** A refit moves the line by a little (most when the slope turns from
  nominal to measured); samples that the moved line would place before the last time given out are placed at
  least half a period after it instead, and catch up with the line within a few samples.

Irregular streams (nominal rate 0) pass through unchanged; only their mean rate is measured.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from biostream.lsl.events import GapEvent, JumpEvent
from devices._checks import ensure_positive

logger = logging.getLogger(__name__)

# Slack between the wall time that passed and a forward step before the step counts as a clock jump, in s
# (covers delivery latency differences between the samples around a real outage).
_JUMP_WALL_SLACK_S = 1.0
# Recent residuals (raw timestamp - line) kept to measure how far jitter moves samples off the line.
_RESIDUAL_HISTORY = 256
# A gap (or a backwards jump) must move samples off the line by this many times the recent residuals' range.
_SPREAD_MARGIN = 1.25
# Until this many residuals are known, a gap must lift them by at least _EARLY_GAP_PERIODS periods.
_MIN_SPREAD_SAMPLES = 32
_EARLY_GAP_PERIODS = 3.0
# Samples after a suspected gap whose median residual measures the lift.
_GAP_CONTEXT = 32
# The slope counts as measured once its standard error is below this fraction of it.
_MAX_SLOPE_REL_SE = 2e-4


@dataclass
class TimelineUpdate:
    """The result of feeding one chunk's timestamps to :meth:`Dejitterer.update`.

    Attributes
    ----------
    dejittered : ndarray, shape (n_samples,)
        Dejittered timestamps in s (a copy of the input for irregular streams).
    events : list of GapEvent or JumpEvent
        Gaps and jumps found in this chunk, in order.
    n_missing : int
        Samples estimated missing in this chunk's gaps.
    """

    dejittered: np.ndarray
    events: list[GapEvent | JumpEvent] = field(default_factory=list)
    n_missing: int = 0


class Dejitterer:
    """Fit, dejitter and check the timestamps of one stream, chunk after chunk.

    Parameters
    ----------
    nominal_rate_hz : float
        The stream's declared rate in Hz; 0 for irregular streams (no dejittering, no gap detection).
    label : str
        Stream name used in events.
    halftime_s : float
        Time after which a sample's weight in the fit has halved, in s (liblsl uses 90 s).
    gap_factor : float
        A raw step larger than ``gap_factor`` periods (and beyond jitter) is a gap.
    jump_min_s : float
        Smallest forward step that can count as a clock jump rather than a gap, in s.
    min_fit_s : float
        Span a segment needs before the slope is measured rather than nominal, in s.
    """

    def __init__(
        self,
        nominal_rate_hz: float,
        *,
        label: str = "",
        halftime_s: float = 30.0,
        gap_factor: float = 1.5,
        jump_min_s: float = 1.0,
        min_fit_s: float = 1.0,
    ) -> None:
        self.nominal_rate_hz = ensure_positive(nominal_rate_hz, "nominal_rate_hz", allow_zero=True)
        self.label = label
        self.halftime_s = ensure_positive(halftime_s, "halftime_s")
        self.gap_factor = ensure_positive(gap_factor, "gap_factor")
        if self.gap_factor <= 1.0:
            raise ValueError(f"'gap_factor' must be > 1, got {gap_factor!r} instead.")
        self.jump_min_s = ensure_positive(jump_min_s, "jump_min_s")
        self.min_fit_s = ensure_positive(min_fit_s, "min_fit_s", allow_zero=True)
        if self.regular:
            self._lambda = 0.5 ** (1.0 / (self.halftime_s * self.nominal_rate_hz))
            self._min_fit_samples = max(10.0, self.min_fit_s * self.nominal_rate_hz)
        self._n_total = 0
        self._first_ts = math.nan
        self._residuals = np.empty(0)  # recent raw - line, s (kept across segments: jitter is the outlet's)
        self._spread = 0.0  # their range (max - min), s
        self._index_cache = np.arange(64, dtype=np.float64)
        self._decay_cache: dict[int, np.ndarray] = {}
        self.reset()

    @property
    def regular(self) -> bool:
        """True when the stream has a nominal rate."""
        return self.nominal_rate_hz > 0

    def reset(self) -> None:
        """Start a new segment: forget the fit and the last timestamp (after a reconnection or a jump)."""
        self._last_ts: float | None = None
        self._last_wall_s = math.nan
        self._k_last = -1  # index of the last sample of the segment; -1 before the first
        self._origin = 0.0  # timestamps are fitted relative to the segment's first one
        self._w = 0.0  # running weighted moments (centred)
        self._mk = self._mt = 0.0
        self._ckk = self._ckt = self._ctt = 0.0
        self._slope = 1.0 / self.nominal_rate_hz if self.regular else math.nan
        self._measured = False
        self._last_out: float | None = None  # the last dejittered time given out in this segment
        self._jitter_s = 0.0

    # ------------------------------------------------------------------ state
    @property
    def measured(self) -> bool:
        """True once the current segment's slope is measured (not the nominal prior)."""
        return self._measured

    @property
    def rate_hz(self) -> float:
        """Effective rate in Hz: measured where possible, else nominal (irregular: mean rate, NaN before 2)."""
        if not self.regular:
            span = (self._last_ts or math.nan) - self._first_ts
            return (self._n_total - 1) / span if self._n_total > 1 and span > 0 else math.nan
        return 1.0 / self._slope

    @property
    def period_s(self) -> float:
        """1 / :attr:`rate_hz`, in s."""
        return 1.0 / self.rate_hz

    @property
    def jitter_s(self) -> float:
        """Weighted RMS of raw timestamps around the fitted line, in s (0 until measured)."""
        return self._jitter_s

    @property
    def last_timestamp_s(self) -> float:
        """Raw timestamp of the last sample seen in this segment (NaN if none), in s."""
        return math.nan if self._last_ts is None else self._last_ts

    # ------------------------------------------------------------------ update
    def update(self, timestamps: np.ndarray, wall_s: float) -> TimelineUpdate:
        """Feed one chunk.

        Parameters
        ----------
        timestamps : ndarray, shape (n_samples,)
            Raw (clock-corrected) timestamps in s, in arrival order.
        wall_s : float
            Local clock when the chunk was pulled, in s (tells clock jumps from outages).

        Returns
        -------
        update : TimelineUpdate
            Dejittered timestamps and the gaps and jumps found.
        """
        ts = np.asarray(timestamps, dtype=np.float64)
        n = ts.shape[0]
        if n == 0:
            return TimelineUpdate(np.empty(0))
        if self._n_total == 0:
            self._first_ts = float(ts[0])
        self._n_total += n
        if not self.regular:
            self._last_ts = float(ts[-1])
            return TimelineUpdate(ts.copy())

        steps = np.empty(n)
        steps[0] = ts[0] - self._last_ts if self._last_ts is not None else np.nan
        steps[1:] = np.diff(ts)
        period = 1.0 / self.rate_hz
        back_tol = max(period, self._jitter_tol(period))
        out = np.empty(n)
        update = TimelineUpdate(out)
        smallest, largest = np.nanmin(steps, initial=np.inf), np.nanmax(steps, initial=-np.inf)
        if smallest >= -back_tol and largest <= self.jump_min_s:  # the usual chunk: no jump possible
            self._fit_segment(ts, out, update, 0)
            self._last_wall_s = wall_s
            return update
        # Only the first sample of a chunk can have waited in wall time; the others arrived with it.
        wall_elapsed = np.zeros(n)
        wall_elapsed[0] = wall_s - self._last_wall_s if math.isfinite(self._last_wall_s) else 0.0
        with np.errstate(invalid="ignore"):
            is_jump = (steps < -back_tol) | (steps > np.maximum(self.jump_min_s, wall_elapsed + _JUMP_WALL_SLACK_S))
        jumps = np.flatnonzero(is_jump)
        bounds = [0, *jumps.tolist(), n]
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if start == stop:
                continue
            if is_jump[start]:
                before = self._last_ts if start == 0 else float(ts[start - 1])
                update.events.append(JumpEvent(self.label, float(before), float(steps[start] - period), start))
                logger.warning("%s", update.events[-1].describe())
                self.reset()
                steps[start] = np.nan
            self._fit_segment(ts[start:stop], out[start:stop], update, start)
        self._last_wall_s = wall_s
        return update

    def _index(self, n: int) -> np.ndarray:
        """``arange(n)`` as float, cached (chunks come in a few sizes)."""
        if self._index_cache.shape[0] < n:
            self._index_cache = np.arange(max(n, 2 * self._index_cache.shape[0]), dtype=np.float64)
        return self._index_cache[:n]

    def _decay(self, n: int) -> np.ndarray:
        """Weights ``lambda ** (n - 1 - j)`` of a gap-free chunk of ``n`` samples, cached by size."""
        weights = self._decay_cache.get(n)
        if weights is None:
            weights = self._lambda ** self._index(n)[::-1].copy()
            if len(self._decay_cache) < 256:
                self._decay_cache[n] = weights
        return weights

    def _jitter_tol(self, period: float) -> float:
        """How far jitter may move a sample off the line, in s.

        The recent residuals' range times ``_SPREAD_MARGIN``, or ``_EARLY_GAP_PERIODS`` periods while too few
        residuals are known.
        """
        if self._residuals.size < _MIN_SPREAD_SAMPLES:
            return _EARLY_GAP_PERIODS * period
        return _SPREAD_MARGIN * self._spread

    def _line(self, k: np.ndarray | float) -> np.ndarray | float:
        """The fitted time of index ``k`` (s); before any sample of the segment, meaningless."""
        return self._origin + self._mt + self._slope * (k - self._mk)

    def _find_gaps(self, ts: np.ndarray, period: float) -> np.ndarray:
        """Samples missing before each sample of a jump-free chunk, from the lift of its residuals (see module)."""
        n = ts.shape[0]
        missing = np.zeros(n, dtype=np.int64)
        if self._k_last < 0:  # a segment's first chunk: measured against its first sample on the nominal line
            resid = ts - ts[0] - period * np.arange(n)
        else:
            resid = ts - self._line(self._k_last + 1.0 + np.arange(n))
        tol = max((self.gap_factor - 1.0) * period, self._jitter_tol(period))
        lift = np.empty(n)
        lift[0] = resid[0] if self._k_last >= 0 else 0.0
        lift[1:] = np.diff(resid)
        if lift.max() <= tol:  # the usual chunk: nothing lifted
            return missing
        level = 0.0  # residual level before the sample being looked at, after the gaps found so far
        for i in np.flatnonzero(lift > tol).tolist():
            after = float(np.median(resid[i : i + _GAP_CONTEXT]))
            before = level if i == 0 else float(np.median(resid[max(0, i - _GAP_CONTEXT) : i]))
            m = math.floor((after - before) / period + 0.5)
            if after - before > tol and m >= 1:  # the samples after it stay late: samples are missing
                missing[i] = m
                resid[i:] -= m * period
                level = 0.0
        return missing

    def _fit_segment(self, ts: np.ndarray, out: np.ndarray, update: TimelineUpdate, offset: int) -> None:
        """Index, gap-check and fit the samples of one jump-free stretch; write their dejittered times to out.

        ``offset`` is the stretch's position in the chunk (events say where in the chunk they are).
        """
        period = 1.0 / self.rate_hz
        missing = self._find_gaps(ts, period)
        if self._k_last < 0:
            self._origin = float(ts[0])
        n = ts.shape[0]
        if missing.any():
            k = (self._k_last + np.cumsum(1 + missing)).astype(np.float64)
            w = self._lambda ** (k[-1] - k)
        else:
            k = self._k_last + 1.0 + self._index(n)
            w = self._decay(n)
        y = ts - self._origin
        k_end = k[-1]

        # Weighted moments of this chunk (weight halves every halftime of samples, counted by index).
        w_new = float(w.sum())
        mk_new = float(np.dot(w, k) / w_new)
        mt_new = float(np.dot(w, y) / w_new)
        dk, dy = k - mk_new, y - mt_new
        ckk_new, ckt_new, ctt_new = float(np.dot(w, dk * dk)), float(np.dot(w, dk * dy)), float(np.dot(w, dy * dy))

        # Merge with the running moments, decayed to the chunk's last index (parallel covariance update).
        decay = self._lambda ** (k_end - self._k_last) if self._w > 0 else 0.0
        w_old = self._w * decay
        w_tot = w_old + w_new
        delta_k, delta_t = mk_new - self._mk, mt_new - self._mt
        cross = w_old * w_new / w_tot
        self._ckk = self._ckk * decay + ckk_new + delta_k * delta_k * cross
        self._ckt = self._ckt * decay + ckt_new + delta_k * delta_t * cross
        self._ctt = self._ctt * decay + ctt_new + delta_t * delta_t * cross
        self._mk += delta_k * w_new / w_tot
        self._mt += delta_t * w_new / w_tot
        self._w = w_tot
        self._k_last = int(k_end)
        self._last_ts = float(ts[-1])

        if k_end >= self._min_fit_samples and self._ckk > 0 and self._ckt > 0:
            slope = self._ckt / self._ckk
            resid = max(0.0, self._ctt - self._ckt * slope)
            self._jitter_s = math.sqrt(resid / self._w)
            # Standard error of the weighted slope: jitter over the spread of the indices fitted.
            if self._measured or self._jitter_s / math.sqrt(self._ckk) < _MAX_SLOPE_REL_SE * slope:
                self._slope = slope
                self._measured = True
        np.multiply(k - self._mk, self._slope, out=out)
        out += self._origin + self._mt
        self._residuals = np.concatenate([self._residuals, ts - out])[-_RESIDUAL_HISTORY:]
        self._spread = float(np.ptp(self._residuals))
        if self._last_out is not None:
            # A refit can move the line back a little (most when the slope turns from nominal to measured); the
            # dejittered times must still only go forward, so the samples catch up with at least half a period.
            floor = self._last_out + 0.5 * self._slope * np.arange(1, out.shape[0] + 1)
            np.maximum(out, floor, out=out)
        self._last_out = float(out[-1])
        # Gaps are placed on the fitted line, like the dejittered times around them: the first missing sample
        # would have been stamped out[i] - m * slope.
        for i in np.flatnonzero(missing).tolist():
            m = int(missing[i])
            event = GapEvent(self.label, float(out[i] - m * self._slope), m * self._slope, m, chunk_index=offset + i)
            update.events.append(event)
            logger.info("%s", event.describe())
        update.n_missing += int(missing.sum())
