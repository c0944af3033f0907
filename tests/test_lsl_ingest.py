"""LSL ingestion over real loopback LSL: discovery, selectors, StreamReader values/metadata, dejittering, gaps,
jumps, recovery and mismatch. Every test makes its own outlets with unique names and source ids."""

from __future__ import annotations

import threading
import time

import numpy as np
import pylsl
import pytest

from biostream.lsl import (
    DisconnectEvent,
    GapEvent,
    JumpEvent,
    ReaderState,
    ReconnectEvent,
    StreamReader,
    list_streams,
    parse_selector,
    resolve_stream,
)
from devices.errors import BadInputError, StreamMismatchError
from devices.lsl_meta import make_stream_info


def _outlet(name, n_channels=3, sfreq_hz=250.0, source_id="", fmt="float32", lsl_type="EEG"):
    labels = [f"C{k}" for k in range(n_channels)]
    info = make_stream_info(
        name, lsl_type, sfreq_hz, labels, ["uV"] * n_channels, channel_format=fmt, source_id=source_id
    )
    return pylsl.StreamOutlet(info)


def _connect(outlet, timeout_s=3.0, **kwargs):
    reader = StreamReader(f"source_id={outlet.get_info().source_id()}", **kwargs).connect(timeout_s)
    assert outlet.wait_for_consumers(2.0)
    return reader


def _drain(reader, n_expected, timeout_s=3.0):
    """Pull until n_expected samples came (or timeout); return (data, ts, dejittered, events)."""
    chunks, events = [], []
    got, deadline = 0, time.monotonic() + timeout_s
    while got < n_expected and time.monotonic() < deadline:
        chunk = reader.pull()
        if chunk is None:
            time.sleep(0.005)
            continue
        events.extend(chunk.events)
        if chunk.n_samples:
            chunks.append(chunk)
            got += chunk.n_samples
    assert got == n_expected, f"received {got} of {n_expected} samples"
    data = np.concatenate([c.data for c in chunks])
    ts = np.concatenate([c.timestamps for c in chunks])
    dj = np.concatenate([c.dejittered_timestamps for c in chunks])
    return data, ts, dj, events


def _push_bursts(outlet, data, timestamps, rng):
    """Push in random-size chunks with explicit per-sample timestamps (arrives as bursts)."""
    i = 0
    while i < len(timestamps):
        n = int(rng.integers(1, 80))
        outlet.push_chunk(data[i : i + n], timestamp=timestamps[i : i + n].tolist())
        i += n


# ----------------------------------------------------------------------------- selectors and discovery
def test_parse_selector():
    assert parse_selector("name=Polar H10 ECG") == {"name": "Polar H10 ECG"}
    assert parse_selector(" Type = ECG ") == {"type": "ECG"}
    assert parse_selector("type=ECG; name=A;B") == {"type": "ECG", "name": "A;B"}
    assert parse_selector("source_id=abc=1") == {"source_id": "abc=1"}
    with pytest.raises(BadInputError, match="must be KEY=VALUE"):
        parse_selector("Polar H10")
    with pytest.raises(BadInputError, match="must be KEY=VALUE"):
        parse_selector("rate=250")
    with pytest.raises(BadInputError, match="no value"):
        parse_selector("name=")
    with pytest.raises(BadInputError, match="twice"):
        parse_selector("name=a; name=b")


def test_list_and_resolve(unique_id):
    outlet = _outlet(f"list-{unique_id}", n_channels=2, sfreq_hz=130.0, source_id=f"sid-{unique_id}")
    found = [d for d in list_streams(wait_s=1.0) if d.source_id == f"sid-{unique_id}"]
    assert len(found) == 1
    desc = found[0]
    assert (desc.name, desc.type, desc.n_channels, desc.sfreq_hz, desc.channel_format) == (
        f"list-{unique_id}",
        "EEG",
        2,
        130.0,
        "float32",
    )
    assert desc.uid == outlet.get_info().uid()
    info = resolve_stream(name=f"list-{unique_id}", type="EEG", timeout_s=3.0)
    assert info.source_id() == f"sid-{unique_id}"


def test_resolve_errors_name_the_query(unique_id):
    keep = _outlet(f"vis-{unique_id}", source_id=f"vis-{unique_id}")  # noqa: F841 - must stay visible
    # What else is visible is listed (up to 8); with the suite's parallel workers that is other tests' streams too.
    with pytest.raises(BadInputError, match=f"no LSL stream matches name='nope-{unique_id}' within 0.3 s; visible: "):
        resolve_stream(name=f"nope-{unique_id}", timeout_s=0.3)
    twins = [_outlet(f"twin{k}-{unique_id}", lsl_type=f"T{unique_id}", source_id=f"t{k}{unique_id}") for k in range(2)]
    with pytest.raises(BadInputError, match=f"2 LSL streams match type='T{unique_id}'.*twin0.*twin1.*pick one"):
        resolve_stream(type=f"T{unique_id}", timeout_s=2.0, confirm_s=1.0)
    del twins


# ----------------------------------------------------------------------------- reader basics
def test_pull_before_connect_names_connect(unique_id):
    reader = StreamReader(f"name=x-{unique_id}")
    with pytest.raises(RuntimeError, match=r"connect\(\) before pull\(\)"):
        reader.pull()


def test_metadata_and_values_round_trip(unique_id):
    outlet = _outlet(f"vals-{unique_id}", n_channels=3, sfreq_hz=250.0, source_id=f"vals-{unique_id}")
    with _connect(outlet) as reader:
        assert reader.channel_labels == ["C0", "C1", "C2"]
        assert reader.channel_units == ["uV", "uV", "uV"]
        assert reader.channel_types == ["EEG", "EEG", "EEG"]
        assert reader.description.source_id == f"vals-{unique_id}"
        assert reader.dtype == np.float32
        values = np.arange(600 * 3, dtype=np.float32).reshape(600, 3)
        values[10, 1] = np.nan
        values[20, 2] = np.inf
        t0 = pylsl.local_clock()
        stamps = t0 + np.arange(600) / 250.0
        for i in range(0, 600, 50):
            outlet.push_chunk(values[i : i + 50], timestamp=stamps[i : i + 50].tolist())
        data, ts, _, events = _drain(reader, 600)
        np.testing.assert_array_equal(data, values)  # order and values intact, NaN/Inf passed through
        np.testing.assert_allclose(ts, stamps + reader.clock_offset_s, atol=1e-9)
        assert events == []
        stats = reader.stats
        assert stats.samples_received == 600 and stats.n_nonfinite == 2 and stats.n_gaps == 0
    assert reader.state is ReaderState.CLOSED


def test_dejitter_bursty_jittery_timestamps(unique_id):
    rate, true_rate = 250.0, 250.4  # the device runs slightly fast; the reader must measure it
    rng = np.random.default_rng(7)
    outlet = _outlet(f"jit-{unique_id}", n_channels=2, sfreq_hz=rate, source_id=f"jit-{unique_id}")
    with _connect(outlet) as reader:
        n = int(6 * rate)
        true_ts = pylsl.local_clock() - 6.0 + np.arange(n) / true_rate
        raw = true_ts + rng.normal(0.0, 0.0025, n)  # 2.5 ms RMS jitter, more than half a period
        _push_bursts(outlet, np.zeros((n, 2), np.float32), raw, rng)
        _, ts, dj, events = _drain(reader, n)
        assert events == []  # jitter is not mistaken for gaps or jumps
        settled = slice(int(1.5 * rate), None)
        raw_err = np.abs(ts - true_ts - reader.clock_offset_s)[settled]
        dj_err = np.abs(dj - true_ts - reader.clock_offset_s)[settled]
        assert raw_err.max() > 0.006  # the input really was jittery
        assert dj_err.max() < 0.002
        spacing = np.diff(dj[settled])
        assert np.abs(spacing - 1.0 / true_rate).max() < 0.002
        assert reader.effective_rate_hz == pytest.approx(true_rate, abs=0.1)
        assert reader.stats.rate_measured and 0.001 < reader.stats.jitter_s < 0.004


def test_gap_detected_with_duration(unique_id):
    rate = 200.0
    outlet = _outlet(f"gap-{unique_id}", n_channels=1, sfreq_hz=rate, source_id=f"gap-{unique_id}")
    with _connect(outlet) as reader:
        k = np.arange(int(3.5 * rate))
        keep = (k < 2 * rate) | (k >= 2 * rate + 60)  # 60 samples = 0.3 s missing after 2 s
        stamps = pylsl.local_clock() - 4.0 + k[keep] / rate
        values = k[keep].astype(np.float32)[:, None]
        for i in range(0, len(stamps), 40):
            outlet.push_chunk(values[i : i + 40], timestamp=stamps[i : i + 40].tolist())
        _, ts, dj, events = _drain(reader, int(keep.sum()))
    gaps = [e for e in events if isinstance(e, GapEvent)]
    assert len(gaps) == 1 and not gaps[0].after_reconnect
    assert gaps[0].n_missing == 60
    assert gaps[0].duration_s == pytest.approx(0.3, abs=1e-3)
    assert gaps[0].start_s == pytest.approx(stamps[int(2 * rate)] - 0.3, abs=1e-3)
    # the line stays valid across the gap: dejittered stamps match the clean ones
    np.testing.assert_allclose(dj, ts, atol=1e-6)
    assert reader.stats.n_missing == 60


def test_clock_jumps_reported(unique_id):
    rate = 100.0
    outlet = _outlet(f"jump-{unique_id}", n_channels=1, sfreq_hz=rate, source_id=f"jump-{unique_id}")
    with _connect(outlet) as reader:
        t0 = pylsl.local_clock() - 10.0
        seg = t0 + np.arange(100) / rate
        stamps = np.concatenate([seg, seg[-1] + 100.0 + np.arange(100) / rate, seg[-1] - 5.0 + np.arange(100) / rate])
        outlet.push_chunk(np.zeros((300, 1), np.float32), timestamp=stamps.tolist())
        _, _, dj, events = _drain(reader, 300)
    jumps = [e for e in events if isinstance(e, JumpEvent)]
    assert [j.size_s for j in jumps] == pytest.approx([99.99, -106.0], abs=1e-6)  # clock shifts
    assert jumps[1].backwards and not any(isinstance(e, GapEvent) for e in events)
    np.testing.assert_allclose(dj[100:200] - dj[100], np.arange(100) / rate, atol=1e-6)


def test_string_or_irregular_stream_refused_when_regular_required(unique_id):
    markers = _outlet(f"mk-{unique_id}", n_channels=1, sfreq_hz=0.0, source_id=f"mk-{unique_id}", fmt="string")
    with pytest.raises(StreamMismatchError, match=f"mk-{unique_id}.*string stream; a regular numeric"):
        StreamReader(f"source_id=mk-{unique_id}", require_regular=True).connect(3.0)
    irregular = _outlet(f"ir-{unique_id}", n_channels=1, sfreq_hz=0.0, source_id=f"ir-{unique_id}")
    with pytest.raises(StreamMismatchError, match="irregular stream"):
        StreamReader(f"source_id=ir-{unique_id}", require_regular=True).connect(3.0)
    # without the requirement, markers come through as strings
    with _connect(markers) as reader:
        markers.push_sample(["start"])
        markers.push_sample(["stop"])
        data, _, _, _ = _drain(reader, 2)
    assert data[:, 0].tolist() == ["start", "stop"]
    del irregular


# ----------------------------------------------------------------------------- recovery
class _RealTimePusher:
    """Push a counter at `rate` Hz from a thread into whatever outlet is current (None = outlet gone).

    Each sample is stamped on its ideal grid, as a device's own clock would, so a late wake-up of this thread on a
    busy machine is jitter, not a gap."""

    def __init__(self, outlet, rate):
        self.outlet, self.rate, self.count = outlet, rate, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        period = 1.0 / self.rate
        next_t = time.perf_counter()
        t0 = pylsl.local_clock()
        while not self._stop.is_set():
            outlet = self.outlet
            if outlet is not None:
                outlet.push_sample([float(self.count)] * outlet.get_info().channel_count(), t0 + self.count * period)
            self.count += 1
            next_t += period
            time.sleep(max(0.0, next_t - time.perf_counter()))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _pull_for(reader, seconds, until=None):
    chunks, events, deadline = [], [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = reader.pull()
        if chunk is not None:
            events.extend(chunk.events)
            if chunk.n_samples:
                chunks.append(chunk)
            if until is not None and until(events):
                break
        time.sleep(0.01)
    return chunks, events


def test_outlet_recreated_is_resumed_and_gap_reported(unique_id):
    rate, sid = 100.0, f"rec-{unique_id}"
    outlet = _outlet(f"rec-{unique_id}", n_channels=2, sfreq_hz=rate, source_id=sid)
    reader = _connect(outlet)
    with _RealTimePusher(outlet, rate) as pusher:
        before, _ = _pull_for(reader, 0.6)
        pusher.outlet = None
        del outlet  # the outlet goes away...
        _, events = _pull_for(reader, 1.0)
        assert any(isinstance(e, DisconnectEvent) for e in events)
        assert reader.state is ReaderState.RECONNECTING
        outlet = _outlet(f"rec-{unique_id}", n_channels=2, sfreq_hz=rate, source_id=sid)  # ...and comes back
        back_at = pylsl.local_clock()
        pusher.outlet = outlet
        _, events = _pull_for(reader, 3.0, until=lambda ev: any(isinstance(e, ReconnectEvent) for e in ev))
        reconnect = [e for e in events if isinstance(e, ReconnectEvent)]
        assert reconnect and reconnect[0].reconnected_at_s - back_at < 2.0
        assert reconnect[0].outage_s > 0.9
        after, events2 = _pull_for(reader, 0.5)
    reader.close()
    gaps = [e for e in events + events2 if isinstance(e, GapEvent)]
    assert len(gaps) == 1 and gaps[0].after_reconnect and gaps[0].duration_s > 0.9
    counts_after = np.concatenate([c.data[:, 0] for c in after])
    assert counts_after.size > 20 and np.all(np.diff(counts_after) == 1)  # resumed, in order
    assert counts_after[0] > np.concatenate([c.data[:, 0] for c in before])[-1] + 0.9 * rate
    assert gaps[0].n_missing == pytest.approx(gaps[0].duration_s * rate, abs=2)
    assert reader.stats.n_disconnects == 1 and reader.stats.n_reconnects == 1


def test_outlet_back_with_other_channel_count_is_a_mismatch(unique_id):
    sid = f"mm-{unique_id}"
    outlet = _outlet(f"mm-{unique_id}", n_channels=2, sfreq_hz=100.0, source_id=sid)
    reader = _connect(outlet)
    outlet.push_chunk(np.zeros((10, 2), np.float32))
    _drain(reader, 10)
    del outlet
    _, events = _pull_for(reader, 0.5, until=lambda ev: bool(ev))
    assert isinstance(events[0], DisconnectEvent)
    outlet = _outlet(f"mm-{unique_id}", n_channels=3, sfreq_hz=100.0, source_id=sid)  # noqa: F841
    deadline = time.monotonic() + 3.0
    with pytest.raises(StreamMismatchError, match=f"stream 'mm-{unique_id}'.*came back changed: channels 2 -> 3"):
        while time.monotonic() < deadline:
            reader.pull()
            time.sleep(0.01)
    assert reader.state is ReaderState.FAILED
    with pytest.raises(StreamMismatchError):  # not silent afterwards either
        reader.pull()
    reader.close()


# ----------------------------------------------------------------------------- outlets as real apps push
def _send_data_loop(outlet, stop, rate):
    """pylsl's examples/SendData.py: one push_sample per due sample, implicit stamps, 10-ms sleeps."""
    start, sent = pylsl.local_clock(), 0
    while not stop.is_set():
        due = int(rate * (pylsl.local_clock() - start)) - sent
        for _ in range(due):
            outlet.push_sample(np.random.random(outlet.channel_count).tolist())
        sent += due
        time.sleep(0.01)


def _send_data_advanced_loop(outlet, stop, rate):
    """pylsl's examples/SendDataAdvanced.py: one push_chunk per loop stamped on its last sample, 20-ms sleeps."""
    start, sent = pylsl.local_clock(), 0
    while not stop.is_set():
        due = int(rate * (pylsl.local_clock() - start)) - sent
        if due > 0:
            outlet.push_chunk(np.random.random((due, outlet.channel_count)).tolist(), pylsl.local_clock() - 0.125)
            sent += due
        time.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("loop", "n_channels", "chunk_size"), [(_send_data_loop, 8, 0), (_send_data_advanced_loop, 10, 32)]
)
def test_example_outlets_give_no_false_gaps_and_a_steady_rate(unique_id, loop, n_channels, chunk_size):
    rate = 100.0
    info = pylsl.StreamInfo(f"ex-{unique_id}", "EEG", n_channels, rate, "float32", f"ex-{unique_id}")
    outlet = pylsl.StreamOutlet(info, chunk_size, 360)
    stop = threading.Event()
    pusher = threading.Thread(target=loop, args=(outlet, stop, rate), daemon=True)
    with StreamReader(f"source_id=ex-{unique_id}").connect(3.0) as reader:
        pusher.start()
        rates, events, received, deadline = [], [], 0, time.monotonic() + 5.0
        while time.monotonic() < deadline:
            chunk = reader.pull()
            if chunk is not None:
                events.extend(chunk.events)
                received += chunk.n_samples
                rates.append(reader.effective_rate_hz)
            time.sleep(0.02)
        stop.set()
        pusher.join()
        stats = reader.stats
    assert received > 4 * rate and events == []  # bursty stamps, nothing lost: no gap may be reported
    assert stats.n_gaps == stats.n_missing == 0
    assert stats.jitter_s > 1e-3  # the stamps really were irregular
    assert max(abs(r / rate - 1.0) for r in rates) < 2e-3  # the rate shown never strays (was 8-17 % off)


def test_reader_from_a_pickled_description(unique_id):
    import pickle

    outlet = _outlet(f"desc-{unique_id}", n_channels=2, sfreq_hz=100.0, source_id=f"desc-{unique_id}")
    (description,) = [d for d in list_streams(1.0) if d.source_id == f"desc-{unique_id}"]
    copy = pickle.loads(pickle.dumps(description))
    with StreamReader(copy, require_regular=True).connect(3.0) as reader:
        assert outlet.wait_for_consumers(2.0)
        outlet.push_chunk(np.ones((10, 2), np.float32))
        data, _, _, _ = _drain(reader, 10)
        assert reader.description.uid == description.uid and data.shape == (10, 2)


def test_pull_never_blocks_while_reattaching(unique_id):
    rate, sid = 100.0, f"nb-{unique_id}"
    outlet = _outlet(f"nb-{unique_id}", n_channels=1, sfreq_hz=rate, source_id=sid)
    reader = _connect(outlet)
    with _RealTimePusher(outlet, rate) as pusher:
        _pull_for(reader, 0.3)
        pusher.outlet = None
        del outlet
        _pull_for(reader, 0.5, until=lambda ev: any(isinstance(e, DisconnectEvent) for e in ev))
        pusher.outlet = _outlet(f"nb-{unique_id}", n_channels=1, sfreq_hz=rate, source_id=sid)
        longest, deadline = 0.0, time.monotonic() + 3.0
        while reader.state is not ReaderState.CONNECTED and time.monotonic() < deadline:
            t0 = time.perf_counter()
            reader.pull()
            longest = max(longest, time.perf_counter() - t0)
            time.sleep(0.005)
    reader.close()
    assert reader.stats.n_reconnects == 1
    assert longest < 0.05, f"a pull took {longest * 1e3:.0f} ms while the stream was being reopened"


def test_a_stream_sharing_its_source_id_with_another_is_picked_and_recovered_as_itself(unique_id):
    """pylsl's example outlets all use source id 'myuid34234': the PPG one among them is the monitor's default pick,
    and when it is recreated the reader waits for it, not taking the EEG one beside it for it."""
    from biostream.runtime.headless import default_streams

    rate, sid = 64.0, f"myuid-{unique_id}"
    ppg = _outlet(f"wrist-{unique_id}", n_channels=1, sfreq_hz=rate, source_id=sid, lsl_type="PPG")
    eeg = _outlet(f"biosemi-{unique_id}", n_channels=8, sfreq_hz=100.0, source_id=sid, lsl_type="EEG")
    (picked,) = [d for d in default_streams("ppg") if d.source_id == sid]
    assert picked.name == f"wrist-{unique_id}"
    reader = StreamReader(picked, require_regular=True).connect(3.0)
    assert ppg.wait_for_consumers(2.0)
    with _RealTimePusher(ppg, rate) as pusher:
        _pull_for(reader, 0.5)
        pusher.outlet = None
        del ppg
        _, events = _pull_for(reader, 1.5, until=lambda ev: any(isinstance(e, DisconnectEvent) for e in ev))
        assert reader.state is ReaderState.RECONNECTING
        _pull_for(reader, 1.0)  # the EEG outlet with the same source id stays in view all along
        assert reader.state is ReaderState.RECONNECTING
        pusher.outlet = _outlet(f"wrist-{unique_id}", n_channels=1, sfreq_hz=rate, source_id=sid, lsl_type="PPG")
        _, events = _pull_for(reader, 3.0, until=lambda ev: any(isinstance(e, ReconnectEvent) for e in ev))
        assert any(isinstance(e, ReconnectEvent) for e in events) and reader.state is ReaderState.CONNECTED
        after, _ = _pull_for(reader, 0.5)
    reader.close()
    assert after and all(c.data.shape[1] == 1 for c in after)
    del eeg
