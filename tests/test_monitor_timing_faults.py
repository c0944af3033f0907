"""Timing faults of a source while monitoring, with real LSL, Ray and ONNX Runtime: a device clock that jumps 10 s
forward and back, a crystal 1% off its nominal rate, and a radio that delivers in 10-s bursts. Each asserts what
the user sees (events, health, predictions) and that no window is made of samples that are not there."""

from __future__ import annotations

import numpy as np
import pytest
from _publisher import RATE, Publisher
from _watch import collect, events_of, monitor_until_predicting, predictions, wait_health

from biostream.runtime.session import MonitorSession

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_runtime")]


def _after_jump(subscription, jumped_stamp_s):
    """Items until the first prediction of a window wholly after the jump (the demo window is 10 s)."""
    return collect(subscription, 16.0, until=lambda item: item[0] == "prediction" and item[1].ok
                   and item[1].t_start >= jumped_stamp_s - 1e-3)


@pytest.mark.parametrize("shifts", [(10.0, -10.0)])
def test_a_device_clock_jumping_10_s_forward_then_back_restarts_the_window_grid(unique_id, shifts):
    publisher = Publisher(f"jump-{unique_id}", f"jump-{unique_id}", seed=9).start()
    with MonitorSession() as session:
        subscription, key = monitor_until_predicting(session, f"jump-{unique_id}")
        for n, shift_s in enumerate(shifts, start=1):
            # The first sample stamped on the new clock: its true time shifted, minus the outlet's clock offset (0).
            jumped_stamp_s = publisher.jump(shift_s) + sum(shifts[:n])
            items = _after_jump(subscription, jumped_stamp_s)
            (event,) = events_of(items, "jump")
            way = "forward" if shift_s > 0 else "backwards"
            assert f"timestamps jumped {way} by {abs(shift_s):.3f} s" in event.message and event.stream == key
            made = predictions(items)
            assert made[-1].ok and made[-1].t_start >= jumped_stamp_s - 1e-3  # a new grid from the new clock
            # No window is cut across the jump: each lies wholly before or wholly after it.
            before = [p for p in made if p.t_start < jumped_stamp_s - 1e-3]
            assert all(p.t_end < jumped_stamp_s - shift_s + 1.0 for p in before if shift_s > 0)
            health = wait_health(session, key, lambda h, n=n: h.jumps == n)
            assert health.gaps == 0 and health.state == "connected"
        summary = session.stop()
    publisher.stop()
    assert summary["rejected"] == 0 and summary["errors"] == 0


def test_a_crystal_1_percent_fast_keeps_windows_on_the_sample_grid_and_shows_the_effective_rate(unique_id):
    publisher = Publisher(f"drift-{unique_id}", f"drift-{unique_id}", seed=10, rate_factor=1.01).start()
    with MonitorSession() as session:
        subscription, key = monitor_until_predicting(session, f"drift-{unique_id}")
        made = [p for p in predictions(collect(subscription, 12.0))]
        health = wait_health(session, key, lambda h: h.rate_measured
                             and abs(h.effective_rate_hz - RATE * 1.01) < 0.05, timeout_s=10.0)
        summary = session.stop()
    publisher.stop()
    assert len(made) >= 10 and all(p.ok for p in made)  # 1% is within tolerance: no window refused
    # A 1-s hop is 64 samples, which a 1%-fast device sends in 64 / 64.64 s: windows follow samples, not seconds.
    hops = np.diff([p.t_end for p in made])
    assert np.allclose(hops, 1.0 / 1.01, atol=2e-3), hops
    spans = [p.t_end - p.t_start for p in made]
    assert np.allclose(spans, 639 / (RATE * 1.01), atol=2e-3)  # 640 samples, on the device's own grid
    assert health.nominal_rate_hz == RATE and health.level == "green" and health.gaps == 0
    assert summary["rejected"] == 0


def test_a_device_sending_10_s_bursts_loses_no_window_and_is_not_called_lost(unique_id):
    publisher = Publisher(f"bursty-{unique_id}", f"bursty-{unique_id}", seed=11, hold_s=10.0).start()
    with MonitorSession() as session:
        subscription = session.subscribe()
        key = session.add_stream(f"source_id=bursty-{unique_id}", bundle="demo", hop_s=1.0)
        items = collect(subscription, 33.0)
        health = session.health[key]
        summary = session.stop()
    publisher.stop()
    made = predictions(items)
    assert len(publisher.pushes) >= 3 and np.min(np.diff(publisher.pushes)) >= 10.0  # it really held 10 s
    assert all(p.ok for p in made)
    # Every window of the samples delivered so far is there: consecutive, one hop apart, none skipped.
    assert np.allclose(np.diff([p.t_end for p in made]), 1.0, atol=2e-3)
    delivered_s = publisher.sent / RATE
    assert len(made) >= int(delivered_s - 10.0 - 10.0)  # all but the last burst's worth may still be in flight
    kinds = {v.kind for k, v in items if k == "event"}
    assert not kinds & {"gap", "lost", "disconnect", "jump"}, kinds
    assert health.state == "connected" and health.gaps == 0 and health.missing_samples == 0
    # A burst's windows are all made at once: their lag is up to a burst long, and shown as such.
    lags = [p.latency.published_s - p.t_end for p in made]
    assert max(lags) > 5.0 and summary["rejected"] == 0
