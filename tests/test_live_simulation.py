"""`biostream simulate`'s engine over real LSL: the right number of samples, regularly stamped, plus state markers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from biostream.lsl import StreamReader
from devices.live_sim import LiveSimulation


@pytest.mark.slow
def test_live_simulation_delivers_expected_samples_with_regular_stamps(unique_id):
    duration_s = 4.0
    suffix = f"-{unique_id}"
    with LiveSimulation("stress", ["ecg", "ppg", "eeg"], seed=3, name_suffix=suffix) as live:
        readers = {name: StreamReader(f"name={name}").connect(timeout_s=5.0) for name in live.stream_names}
        runner = threading.Thread(target=live.run, kwargs={"duration_s": duration_s})
        runner.start()
        received: dict[str, list] = {name: [] for name in readers}
        settle_until = None
        while settle_until is None or time.monotonic() < settle_until:
            for name, reader in readers.items():
                chunk = reader.pull()
                if chunk is not None and chunk.n_samples:
                    received[name].append(chunk)
            if not runner.is_alive() and settle_until is None:
                settle_until = time.monotonic() + 0.5
            time.sleep(0.02)
        runner.join()
        pushed = dict(zip(live.stream_names, live.player.samples_pushed))
        for reader in readers.values():
            reader.close()

    for stream in live.streams:
        name = stream.name + suffix
        chunks = received[name]
        if stream.is_marker:
            labels = [str(v) for c in chunks for v in c.data[:, 0]]
            assert labels and labels[0] == "baseline", labels
            continue
        n = sum(c.n_samples for c in chunks)
        one_chunk = int(np.ceil(0.25 * stream.nominal_srate))  # the simulator's generation block
        assert n == pushed[name], name  # nothing lost on the way
        assert abs(n - duration_s * stream.nominal_srate) <= one_chunk, (name, n)
        stamps = np.concatenate([c.dejittered_timestamps for c in chunks])
        steps = np.diff(stamps)
        assert np.max(np.abs(steps - 1.0 / stream.nominal_srate)) < 0.002, name
        data = np.concatenate([c.data for c in chunks])
        assert data.shape[1] == stream.n_channels and np.all(np.isfinite(data))


def test_stop_ends_a_simulation_that_runs_forever(unique_id):
    with LiveSimulation("stress", ["ppg"], seed=4, name_suffix=f"-{unique_id}") as live:
        runner = threading.Thread(target=live.run, daemon=True)  # no duration: until stopped
        runner.start()
        time.sleep(0.5)
        assert runner.is_alive()
        live.stop()
        runner.join(timeout=2.0)
        assert not runner.is_alive() and live.player.samples_pushed[0] > 0


@pytest.mark.slow
def test_a_late_viewer_learns_the_current_state_from_the_repeated_marker(unique_id):
    with LiveSimulation("stress", ["ppg"], seed=5, name_suffix=f"-{unique_id}", state_repeat_s=0.5) as live:
        runner = threading.Thread(target=live.run, kwargs={"duration_s": 3.0})
        runner.start()
        time.sleep(1.2)  # the first marker (t = 0) went out before this viewer connected
        reader = StreamReader(f"name={live.stream_names[-1]}").connect(timeout_s=5.0)
        runner.join()
        time.sleep(0.3)
        chunk = reader.pull()
        reader.close()
    assert chunk is not None and chunk.n_samples >= 2
    labels = [str(v) for v in chunk.data[:, 0]]
    truth = live.simulator.states_at(chunk.timestamps - live.player.t0_lsl)
    assert labels == [str(s) for s in truth]
    assert np.all(np.diff(chunk.timestamps) >= 0.5 - 1e-6)
