"""Ring buffer, windower, resampling and quality flags (devices.windowing): pure numpy, no LSL or Ray."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.errors import BadInputError, StreamMismatchError
from devices.windowing import (
    PolyphaseResampler,
    QualityThresholds,
    RingBuffer,
    Windower,
    assess_quality,
    fill_nonfinite,
    rational_ratio,
    seconds_to_samples,
)

# ---------------------------------------------------------------------------------------------------- helpers


def _chunks(n: int, sizes: list[int]) -> list[tuple[int, int]]:
    """Split range(n) into consecutive (start, stop) pieces with the given sizes, cycling through them."""
    out, pos, k = [], 0, 0
    while pos < n:
        size = sizes[k % len(sizes)]
        out.append((pos, min(n, pos + size)))
        pos += size
        k += 1
    return out


def _feed(windower: Windower, data: np.ndarray, ts: np.ndarray, sizes: list[int]) -> list:
    windows = []
    for start, stop in _chunks(len(ts), sizes):
        windows.extend(windower.push(data[start:stop], ts[start:stop]))
    return windows


def _signal(n: int, n_ch: int, sfreq_hz: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, n_ch)).astype(np.float32)
    ts = 1000.0 + np.arange(n) / sfreq_hz
    return data, ts


# ---------------------------------------------------------------------------------------------------- ring buffer


def test_ring_wraps_around_and_counts_overwritten_samples():
    ring = RingBuffer(5, 2, name="ecg")
    data = np.arange(14, dtype=np.float32).reshape(7, 2)
    ts = np.arange(7) * 0.1
    ring.push(data[:3], ts[:3])
    assert (ring.n_pushed, ring.n_available, ring.n_overwritten) == (3, 3, 0)
    ring.push(data[3:], ts[3:])  # wraps: positions 3, 4, 0, 1
    assert (ring.n_pushed, ring.n_available, ring.n_overwritten, ring.first_index) == (7, 5, 2, 2)
    got, got_ts = ring.latest(5)
    np.testing.assert_array_equal(got, data[2:])
    np.testing.assert_array_equal(got_ts, ts[2:])
    assert got.flags["C_CONTIGUOUS"] and got.shape == (5, 2)
    got, got_ts = ring.latest(2)
    np.testing.assert_array_equal(got, data[5:])
    part, _ = ring.get(3, 6)  # absolute indices across the wrap point
    np.testing.assert_array_equal(part, data[3:6])
    with pytest.raises(IndexError, match=r"samples \[1, 4\) requested, but \[2, 7\) are held"):
        ring.get(1, 4)
    with pytest.raises(ValueError, match="6 samples requested, but only 5 are held"):
        ring.latest(6)


def test_ring_chunk_larger_than_capacity_keeps_newest():
    ring = RingBuffer(4, 1)
    ring.push(np.arange(3.0), np.arange(3.0))  # 1-D accepted for one channel
    ring.push(np.arange(10.0, 20.0).reshape(-1, 1), np.arange(10.0, 20.0))
    assert ring.n_pushed == 13 and ring.n_overwritten == 9
    got, ts = ring.latest()
    np.testing.assert_array_equal(got[:, 0], [16, 17, 18, 19])
    np.testing.assert_array_equal(ts, [16, 17, 18, 19])
    ring.reset()
    assert ring.n_pushed == 0 and ring.latest()[0].shape == (0, 1)


def test_ring_rejects_wrong_channel_count_and_timestamps():
    ring = RingBuffer(8, 3, name="eeg")
    with pytest.raises(StreamMismatchError, match=r"^stream 'eeg': expected 3 channels, got 2$"):
        ring.push(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(BadInputError, match="4 samples but 3 timestamps"):
        ring.push(np.zeros((4, 3)), np.zeros(3))


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 20),
    sizes=st.lists(st.integers(0, 45), min_size=1, max_size=12),
)
def test_ring_latest_matches_the_tail_of_everything_pushed(capacity, sizes):
    ring = RingBuffer(capacity, 2, dtype=np.float64)
    total = sum(sizes)
    data = np.arange(2 * total, dtype=np.float64).reshape(total, 2)
    pos = 0
    for size in sizes:
        ring.push(data[pos : pos + size], data[pos : pos + size, 0])
        pos += size
        held = min(pos, capacity)
        got, ts = ring.latest()
        np.testing.assert_array_equal(got, data[pos - held : pos])
        np.testing.assert_array_equal(ts, data[pos - held : pos, 0])
        assert ring.n_overwritten == pos - held


# ---------------------------------------------------------------------------------------------------- windows


@settings(max_examples=80, deadline=None)
@given(
    sfreq_hz=st.sampled_from([1.0, 7.0, 64.0, 100.0, 130.0, 256.0, 512.5]),
    win_n=st.integers(1, 40),
    hop_n=st.integers(1, 50),
    n_total=st.integers(0, 300),
    sizes=st.lists(st.one_of(st.integers(1, 9), st.integers(10, 1000)), min_size=1, max_size=6),
    max_chunk=st.one_of(st.none(), st.integers(1, 30)),
)
def test_windows_do_not_depend_on_chunking(sfreq_hz, win_n, hop_n, n_total, sizes, max_chunk):
    data, ts = _signal(n_total, 2, sfreq_hz)
    windower = Windower(
        win_n / sfreq_hz, hop_n / sfreq_hz, sfreq_hz, n_channels=2, max_chunk_samples=max_chunk, name="prop"
    )
    assert (windower.window_samples, windower.hop_samples) == (win_n, hop_n)
    capacity = windower.capacity_samples
    windows = _feed(windower, data, ts, sizes)
    # Reference: slice the whole array on the input index grid.
    starts = range(0, max(0, n_total - win_n + 1), hop_n)
    assert [w.index for w in windows] == list(range(len(starts)))
    for w, start in zip(windows, starts, strict=True):
        assert (w.sample_start, w.sample_stop) == (start, start + win_n)
        np.testing.assert_array_equal(w.data, data[start : start + win_n].T)
        assert w.t_start == ts[start] and w.t_end == ts[start + win_n - 1]
        assert w.data.shape == (2, win_n) and w.quality.ok and not w.partial
    assert windower.n_pushed == n_total and windower.n_windows == len(starts)
    assert windower.capacity_samples == capacity  # memory bounded: the ring never grows


@settings(max_examples=25, deadline=None)
@given(
    pair=st.sampled_from([(130.0, 100.0), (64.0, 125.0), (256.0, 200.0), (700.0, 100.0)]),
    window_s=st.floats(0.05, 1.5),
    hop_s=st.floats(0.02, 2.0),
    sizes_a=st.lists(st.integers(1, 700), min_size=1, max_size=5),
    sizes_b=st.lists(st.integers(1, 700), min_size=1, max_size=5),
)
def test_resampled_windows_are_identical_under_any_chunking(pair, window_s, hop_s, sizes_a, sizes_b):
    source, target = pair
    n_total = int(3.5 * source)
    data, ts = _signal(n_total, 2, source, seed=1)
    make = lambda: Windower(window_s, hop_s, source, n_channels=2, target_sfreq_hz=target)  # noqa: E731
    reference = make().push(data, ts)
    a, b = _feed(make(), data, ts, sizes_a), _feed(make(), data, ts, sizes_b)
    assert len(reference) == len(a) == len(b) > 0
    expected_n = seconds_to_samples(window_s, target)
    for w0, wa, wb in zip(reference, a, b, strict=True):
        assert w0.data.shape == (2, expected_n)
        np.testing.assert_array_equal(wa.data, w0.data)
        np.testing.assert_array_equal(wb.data, w0.data)
        assert (wa.t_start, wa.t_end, wa.sample_start) == (w0.t_start, w0.t_end, w0.sample_start)


def test_window_and_hop_rounding_is_nearest_sample_halves_up():
    assert seconds_to_samples(0.3, 500) == 150
    assert seconds_to_samples(0.0025, 1000) == 3  # exactly half a sample over 2 -> up
    assert seconds_to_samples(0.0024, 1000) == 2
    w = Windower(0.0025, 0.0015, 1000, n_channels=1)
    assert (w.window_samples, w.hop_samples) == (3, 2)


def test_gapped_and_overlapping_windows_cover_the_right_samples():
    data, ts = _signal(1000, 1, 100.0)
    overlap = Windower(2.0, 0.5, 100.0, n_channels=1).push(data, ts)
    assert [(w.sample_start, w.sample_stop) for w in overlap[:3]] == [(0, 200), (50, 250), (100, 300)]
    gapped = Windower(1.0, 3.0, 100.0, n_channels=1).push(data, ts)
    assert [(w.sample_start, w.sample_stop) for w in gapped] == [(0, 100), (300, 400), (600, 700), (900, 1000)]


def test_channel_selection_by_label_keeps_requested_order():
    data, ts = _signal(300, 3, 100.0)
    w = Windower(1.0, 1.0, 100.0, channel_labels=["ACC", "ECG", "PPG"], channels=["PPG", "ECG"])
    windows = w.push(data, ts)
    assert w.channel_labels == ("PPG", "ECG") and windows[0].channel_labels == ("PPG", "ECG")
    np.testing.assert_array_equal(windows[1].data, data[100:200, [2, 1]].T)
    single = Windower(1.0, 1.0, 100.0, channel_labels=["ACC", "ECG", "PPG"], channels="ECG").push(data, ts)
    np.testing.assert_array_equal(single[0].data, data[:100, [1]].T)


def test_errors_are_one_line_and_name_the_problem():
    with pytest.raises(StreamMismatchError, match=r"stream 'chest': channel\(s\) \['EMG', 'X'\] not found; "):
        Windower(1.0, 1.0, 100.0, channel_labels=["ACC", "ECG"], channels=["ECG", "EMG", "X"], name="chest")
    with pytest.raises(StreamMismatchError, match=r"the stream has \['ACC', 'ECG'\]$"):
        Windower(1.0, 1.0, 100.0, channel_labels=["ACC", "ECG"], channels=["EMG"])
    w = Windower(1.0, 1.0, 100.0, channel_labels=["ACC", "ECG"], name="chest")
    with pytest.raises(StreamMismatchError, match=r"^stream 'chest': expected 2 channels, got 3$"):
        w.push(np.zeros((10, 3)), np.arange(10.0))
    with pytest.raises(BadInputError, match="non-finite timestamps"):
        w.push(np.zeros((2, 2)), np.array([0.0, np.nan]))
    with pytest.raises(BadInputError, match=r"'window_s' = 0.004 s is 0 samples at 100 Hz"):
        Windower(0.004, 1.0, 100.0, n_channels=1)
    with pytest.raises(BadInputError, match=r"'hop_s' = 0.001 s is 0 samples at 100 Hz"):
        Windower(1.0, 0.001, 100.0, n_channels=1)
    with pytest.raises(BadInputError, match=r"'window_s' = 0.01 s is 0 samples at 20 Hz"):
        Windower(0.01, 0.01, 1000.0, n_channels=1, target_sfreq_hz=20.0)
    with pytest.raises(BadInputError, match="'hop_s' must be a finite number > 0, got -1.0 instead"):
        Windower(1.0, -1.0, 100.0, n_channels=1)
    with pytest.raises(BadInputError, match="give 'channel_labels' or 'n_channels'"):
        Windower(1.0, 1.0, 100.0)
    for err in (StreamMismatchError, BadInputError):
        assert issubclass(err, BadInputError)


def test_flush_returns_the_padded_partial_window_and_reset_restarts():
    data, ts = _signal(250, 1, 100.0)
    w = Windower(1.0, 1.0, 100.0, n_channels=1)
    assert len(w.push(data, ts)) == 2
    (last,) = w.flush()
    assert last.partial and last.index == 2 and (last.sample_start, last.sample_stop) == (200, 250)
    assert last.data.shape == (1, 100) and np.isfinite(last.data).all()
    assert last.t_end == ts[249] and last.quality.bad and not last.quality.ok
    assert last.quality.reasons[0] == "partial window: 50 of 100 samples"
    np.testing.assert_array_equal(last.data[0, 50:], data[249, 0])  # padding holds the last value
    assert w.n_pushed == 0 and w.flush() == []
    again = w.push(data, ts)
    assert again[0].index == 0 and again[0].sample_start == 0
    w.reset()
    assert w.n_windows == 0 and w.next_index == 0


# ---------------------------------------------------------------------------------------------------- resampling


@pytest.mark.parametrize(
    ("source", "target"), [(130.0, 100.0), (64.0, 125.0), (256.0, 200.0), (700.0, 100.0), (1000.0, 250.0)]
)
def test_resampling_keeps_sine_frequency_and_amplitude(source, target):
    window_s, f_hz, amp = 4.0, 0.1 * min(source, target) + 0.37, 2.5
    ts = 50.0 + np.arange(int(12 * source)) / source
    data = (amp * np.sin(2 * np.pi * f_hz * ts) + 1.0).reshape(-1, 1)
    w = Windower(window_s, 1.0, source, channel_labels=["ECG"], target_sfreq_hz=target)
    windows = _feed(w, data, ts, [37, 1, 500])
    assert len(windows) == 9
    n_out = round(window_s * target)
    for win in windows:
        assert win.data.shape == (1, n_out) and win.sfreq_hz == target
        x = win.data[0].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(x - x.mean()))
        freqs = np.fft.rfftfreq(n_out, 1.0 / target)
        assert abs(freqs[np.argmax(spectrum)] - f_hz) <= target / n_out  # within one bin
        # Middle half: fit amplitude and check the samples sit at t_start + j / target on the original sine.
        t_out = win.t_start + np.arange(n_out) / target
        mid = slice(n_out // 4, 3 * n_out // 4)
        basis = np.stack([np.sin(2 * np.pi * f_hz * t_out[mid]), np.cos(2 * np.pi * f_hz * t_out[mid])], axis=1)
        coef, *_ = np.linalg.lstsq(basis, x[mid] - 1.0, rcond=None)
        assert np.hypot(*coef) == pytest.approx(amp, rel=0.02)
        expected = amp * np.sin(2 * np.pi * f_hz * t_out) + 1.0
        assert np.max(np.abs(x[mid] - expected[mid])) < 0.02 * amp
        if win.index > 0:
            # With real left context and antireflect padding the edges are good too, up to the last input
            # sample (upsampling puts the final output sample up to one input period beyond it: extrapolated).
            inside = t_out <= win.t_end + 1e-9
            assert np.max(np.abs(x - expected)[inside]) < 0.05 * amp


def test_resampled_length_is_exact_for_awkward_windows():
    for source, target in [(130.0, 100.0), (64.0, 125.0), (250.3, 100.0), (700.0, 128.0)]:
        for window_s in (0.013, 0.5, 1.003, 2.71, 30.0):
            w = Windower(window_s, window_s, source, n_channels=1, target_sfreq_hz=target)
            n = w.window_samples * 2
            data, ts = _signal(n, 1, source)
            windows = w.push(data, ts)
            assert len(windows) == 2
            assert all(win.data.shape == (1, seconds_to_samples(window_s, target)) for win in windows)


def test_rational_ratio_and_resampler_context():
    assert rational_ratio(130.0, 100.0) == (10, 13)
    assert rational_ratio(64.0, 125.0) == (125, 64)
    assert rational_ratio(700.0, 100.0) == (1, 7)
    up, down = rational_ratio(250.3, 100.0, max_denominator=1000)
    assert down <= 1000 and abs(250.3 * up / down - 100.0) < 0.05
    r = PolyphaseResampler(64.0, 125.0)
    assert r.context_samples % r.down == 0 and r.context_for(10) == 0 and r.context_for(200) == r.context_samples
    with pytest.raises(BadInputError, match="'source_sfreq_hz' must be a finite number > 0"):
        rational_ratio(0.0, 100.0)


# ---------------------------------------------------------------------------------------------------- quality


def _clean(n: int = 1000, n_ch: int = 2, sfreq_hz: float = 250.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(n) / sfreq_hz
    data = np.sin(2 * np.pi * 1.3 * t)[:, None] + 0.1 * rng.standard_normal((n, n_ch))
    return data.astype(np.float32), 10.0 + t


def test_clean_signal_is_ok_with_no_reasons():
    data, ts = _clean()
    q = assess_quality(data, ts, 250.0, channel_labels=["ECG", "PPG"])
    assert q.ok and not q.bad and q.reasons == []
    assert not q.has_gap and q.flat_channels == () and q.clipped_channels == () and q.nonfinite_fraction == 0.0


def test_nonfinite_fraction_is_counted_and_bad_above_threshold():
    data, ts = _clean(n_ch=1)
    few = data.copy()
    few[100:150, 0] = np.nan  # 5%
    q = assess_quality(few, ts, 250.0, channel_labels=["ECG"])
    assert not q.ok and not q.bad and q.reasons == ["5% NaN/Inf"]
    many = data.copy()
    many[100:200, 0] = np.nan
    many[500:520, 0] = np.inf  # 12% in all
    q = assess_quality(many, ts, 250.0, channel_labels=["ECG"])
    assert q.bad and q.nonfinite_fraction == pytest.approx(0.12) and q.reasons == ["12% NaN/Inf"]
    strict = assess_quality(few, ts, 250.0, thresholds=QualityThresholds(max_nonfinite_fraction=0.01))
    assert strict.bad


def test_windower_counts_then_repairs_nonfinite_samples():
    data, ts = _clean(n=1000, n_ch=2)
    data[120:150, 1] = np.nan
    data[160, 0] = -np.inf
    w = Windower(1.0, 1.0, 250.0, channel_labels=["ECG", "PPG"], target_sfreq_hz=100.0)
    windows = w.push(data, ts)
    assert all(np.isfinite(win.data).all() for win in windows)
    first = windows[0].quality
    assert not first.ok and first.bad  # PPG is 12% non-finite
    assert first.reasons == ["6% NaN/Inf (channel 'PPG': 12%)"]
    assert first.nonfinite_fraction_per_channel == pytest.approx((1 / 250, 30 / 250))
    assert all(win.quality.ok for win in windows[1:])


def test_fill_nonfinite_interpolates_and_holds_ends():
    x = np.array([[np.nan, 1.0, np.nan], [1.0, np.nan, np.nan], [np.inf, 5.0, np.nan], [3.0, np.nan, np.nan]])
    out = fill_nonfinite(x)
    np.testing.assert_array_equal(out, [[1.0, 1.0, 0.0], [1.0, 3.0, 0.0], [2.0, 5.0, 0.0], [3.0, 5.0, 0.0]])
    clean = np.ones((3, 1))
    assert fill_nonfinite(clean) is clean


def test_flat_channel_by_std_and_by_held_run():
    data, ts = _clean(n=1000, n_ch=3)
    data[:, 0] = 7.0  # constant
    data[300:600, 2] = data[300, 2]  # held for 1.2 s inside a live window
    q = assess_quality(data, ts, 250.0, channel_labels=["ECG", "PPG", "EDA"])
    assert q.flat_channels == ("ECG", "EDA") and not q.ok
    assert q.reasons == ["channel 'ECG' is flat", "channel 'EDA' is flat"]
    assert q.clipped_channels == ()  # flat channels are not also reported as clipped
    short_hold = data.copy()
    short_hold[:, 0] = data[:, 1]
    short_hold[300:600, 2] = data[300:600, 1]
    short_hold[300:400, 2] = short_hold[300, 2]  # 0.4 s < flat_run_s
    assert assess_quality(short_hold, ts, 250.0).ok


def test_clipped_channel_at_its_rails_or_given_limits():
    data, ts = _clean(n=1000, n_ch=2)
    data[:, 1] = np.clip(data[:, 1], -0.8, 0.8)  # a saturating amplifier holds its rails
    q = assess_quality(data, ts, 250.0, channel_labels=["ECG", "PPG"])
    assert q.clipped_channels == ("PPG",) and not q.ok
    assert re.fullmatch(r"channel 'PPG' is clipped \(\d+% of samples at its limits\)", q.reasons[0])
    assert q.clipped_fraction_per_channel[1] > 0.2 and q.clipped_fraction_per_channel[0] == 0.0
    raw, _ = _clean(n=1000, n_ch=2)
    limits = assess_quality(raw, ts, 250.0, clip_limits=(-1.0, 1.0))  # ~25% of a sine lies beyond +-0.9
    assert "ch1" in limits.clipped_channels and "ch2" in limits.clipped_channels
    assert assess_quality(raw, ts, 250.0, clip_limits=(-5.0, 5.0)).ok


def test_gap_in_timestamps_is_flagged_with_its_length():
    data, ts = _clean(n=1000, n_ch=1)
    ts = ts.copy()
    ts[400:] += 0.5  # 0.5 s missing
    q = assess_quality(data, ts, 250.0)
    assert q.has_gap and q.longest_gap_s == pytest.approx(0.504) and q.reasons == ["gap of 0.504 s in timestamps"]
    jitter = 10.0 + np.arange(1000) / 250.0 + np.random.default_rng(0).uniform(-0.0008, 0.0008, 1000)
    assert not assess_quality(data, jitter, 250.0).has_gap
    back = 10.0 + np.arange(1000) / 250.0
    back[500] = back[498]
    assert assess_quality(data, back, 250.0).backwards


def test_quality_thresholds_validate_themselves():
    with pytest.raises(BadInputError, match=r"'gap_factor' must be > 1, got 0.5 instead"):
        QualityThresholds(gap_factor=0.5)
    with pytest.raises(BadInputError, match=r"'clip_fraction' must be in \[0, 1\]"):
        QualityThresholds(clip_fraction=2.0)
    with pytest.raises(Exception, match="cannot assign"):
        QualityThresholds().gap_factor = 3.0  # frozen


# ---------------------------------------------------------------------------------------------------- gaps, hop grid
def test_gap_keeps_windows_on_time_and_flags_the_windows_that_hold_it():
    fs = 100.0
    w = Windower(2.0, 1.0, fs, n_channels=1, name="ppg")
    data, ts = _signal(300, 1, fs)
    windows = w.push(data, ts, arrival_s=5.0)
    assert [x.index for x in windows] == [0, 1] and all(x.arrival_s == 5.0 and x.stream == "ppg" for x in windows)
    # 1.5 s of samples never arrive; then the stream goes on at its true times.
    windows += w.push_gap(150, ts[-1] + 1 / fs, 1 / fs, arrival_s=9.0)
    after = 1000.0 + (450 + np.arange(500)) / fs
    windows += w.push(_signal(500, 1, fs, seed=1)[0], after)
    assert [x.sample_start for x in windows] == [100 * k for k in range(len(windows))]
    for x in windows:  # every window spans its true time, gap or not
        assert x.t_end - x.t_start == pytest.approx(1.99, abs=1e-9)
        assert x.t_start == pytest.approx(1000.0 + x.sample_start / fs, abs=1e-9)
    gapped = [x.index for x in windows if "gap" in x.quality.codes]
    assert gapped == [2, 3, 4] and not any(x.quality.ok for x in windows if x.index in gapped)
    assert windows[3].quality.n_missing == 150 and "150 samples missing" in windows[3].quality.reasons[0]
    assert all(x.quality.ok for x in windows if x.index not in gapped)
    assert all(np.isfinite(x.data).all() for x in windows)


def test_a_long_gap_skips_the_windows_it_covers_and_costs_nothing():
    fs = 250.0
    w = Windower(1.0, 0.5, fs, n_channels=2)
    data, ts = _signal(500, 2, fs)
    first = w.push(data, ts)
    n_missing = 250 * 3600  # an hour
    gap_windows = w.push_gap(n_missing, ts[-1] + 1 / fs, 1 / fs)
    assert len(gap_windows) == 1 and "gap" in gap_windows[0].quality.codes  # it holds real samples too
    assert w.n_skipped == 2 * 3600 - 1 and w.n_pushed == 500 + n_missing
    later = w.push(*_signal(250, 2, fs, seed=2))
    assert [x.sample_start for x in later] == [500 + n_missing - 125, 500 + n_missing]
    assert "gap" in later[0].quality.codes and later[1].quality.ok
    assert len(first) == 3


def test_a_fractional_hop_stays_on_time():
    w = Windower(1.0, 0.3, 64.0, n_channels=1)
    windows = w.push(*_signal(64 * 60, 1, 64.0))
    starts = np.array([x.sample_start for x in windows])
    assert starts[:5].tolist() == [0, 19, 38, 58, 77]  # 19.2 samples per hop, rounded per window: no drift
    assert np.abs(starts - 19.2 * np.arange(len(starts))).max() <= 0.5


def test_short_holes_are_repaired_and_long_ones_gap_the_window():
    data, ts = _signal(1000, 1, 100.0)
    short = np.zeros(1000, bool)
    short[300:304] = True  # 40 ms: a lost packet
    q = assess_quality(data, ts, 100.0, missing=short)
    assert q.ok and q.n_missing == 4 and not q.has_gap
    long = np.zeros(1000, bool)
    long[300:320] = True  # 200 ms: a dropout
    q = assess_quality(data, ts, 100.0, missing=long)
    assert q.codes == ("gap",) and q.longest_gap_s == pytest.approx(0.2)
    sieve = np.zeros(1000, bool)
    sieve[::15] = True  # one sample in 15 lost: each hole short, 6.7% in all
    assert assess_quality(data, ts, 100.0, missing=sieve).codes == ("gap",)
    stepped = ts.copy()
    stepped[500:] += 0.04  # a 40 ms hole in raw timestamps
    assert assess_quality(data, stepped, 100.0).ok
    assert not QualityThresholds(max_gap_s=0.0).max_gap_s and assess_quality(
        data, stepped, 100.0, thresholds=QualityThresholds(max_gap_s=0.0)).has_gap
