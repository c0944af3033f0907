"""Faults while monitoring, with real LSL, Ray and ONNX Runtime: NaN and saturated bursts, a killed
InferenceActor, an outlet that vanishes and returns (also with another channel count and rate), a killed
StreamActor. Each asserts what the user sees and that the session goes on."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pylsl
import pytest
from _publisher import Publisher
from _watch import collect, events_of, monitor_until_predicting, pid_of, predictions, wait_health

from biostream.runtime.session import MonitorSession

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_runtime")]


def test_nan_burst_inference_kill_and_unplugged_outlet(unique_id):
    publisher = Publisher(f"wrist-{unique_id}", f"wrist-{unique_id}").start()
    with MonitorSession() as session:
        subscription = session.subscribe()
        key = session.add_stream(f"source_id=wrist-{unique_id}", bundle="demo", hop_s=1.0)
        warm = collect(subscription, 20.0, until=lambda item: item[0] == "prediction")
        assert predictions(warm) and predictions(warm)[0].ok

        # NaN/Inf burst: those windows say "no prediction" with the reason, and the session goes on.
        publisher.burst(1.0)
        burst = collect(subscription, 14.0)
        spoiled = [p for p in predictions(burst) if not p.ok]
        assert spoiled and all("nonfinite" in p.codes and "NaN/Inf" in p.reason for p in spoiled)
        assert all(p.label == -1 and p.probabilities is None for p in spoiled)
        assert predictions(burst)[-1].ok  # clean windows again after the burst

        # The InferenceActor is killed: Ray restarts it, the session reloads the bundle and says so.
        killed_at = pylsl.local_clock()
        os.kill(pid_of(session, "inference"), signal.SIGKILL)
        after_kill = collect(subscription, 12.0)
        assert events_of(after_kill, "restart"), [e.message for k, e in after_kill if k == "event"]
        resumed = [p for p in predictions(after_kill) if p.ok and p.latency.published_s > killed_at]
        # DESIGN §8 asks for 5 s on an idle machine; the suite's three workers share two cores, so allow twice that.
        assert resumed and resumed[0].latency.published_s - killed_at < 10.0
        lost = [p for p in predictions(after_kill) if not p.ok]
        assert all("dropped" in p.codes for p in lost)  # windows during the restart: dropped and counted

        # The outlet vanishes for 3 s and comes back: the reader finds it within 2 s and the gap is reported.
        publisher.unplug()
        unplugged = collect(subscription, 3.0)
        back_at = publisher.plug_back()
        reconnect = collect(subscription, 8.0, until=lambda item: item[0] == "event" and item[1].kind == "reconnect")
        (event,) = events_of(reconnect, "reconnect")
        assert event.at_s - back_at < 2.0
        assert events_of(unplugged, "disconnect")
        health = wait_health(session, key, lambda h: h.reconnects == 1 and h.gaps >= 1)
        assert health.state == "connected"
        again = collect(subscription, 14.0, until=lambda item: item[0] == "prediction" and item[1].ok)
        assert predictions(again) and predictions(again)[-1].ok  # predictions after the new window fills
        summary = session.stop()
    publisher.stop()
    assert summary["restarts"] == 1 and summary["dropped"] >= 0 and summary["rejected"] >= len(spoiled)
    assert summary["predictions"] >= 5  # before the burst, between the faults, and after the return


def test_a_killed_stream_actor_is_restarted_and_its_streams_resume(unique_id):
    publisher = Publisher(f"strap-{unique_id}", f"strap-{unique_id}", seed=4).start()
    with MonitorSession() as session:
        subscription, _ = monitor_until_predicting(session, f"strap-{unique_id}")
        old_pid = pid_of(session, "stream")
        killed_at = pylsl.local_clock()
        os.kill(old_pid, signal.SIGKILL)
        items = collect(subscription, 25.0, until=lambda item: item[0] == "prediction"
                         and item[1].latency.published_s > killed_at)
        restart = events_of(items, "restart")
        assert restart and "resuming 1 stream(s)" in restart[0].message
        resumed = [p for p in predictions(items) if p.latency.published_s > killed_at]
        assert resumed and resumed[0].ok  # a new window filled on the new actor
        assert pid_of(session, "stream") != old_pid
        summary = session.stop()
    publisher.stop()
    assert summary["restarts"] == 1


def test_an_outlet_gone_for_good_is_reported_lost_and_the_other_streams_go_on(unique_id):
    staying = Publisher(f"stay-{unique_id}", f"stay-{unique_id}", seed=5).start()
    leaving = Publisher(f"leave-{unique_id}", f"leave-{unique_id}", seed=6).start()
    with MonitorSession(lost_after_s=2.0) as session:
        subscription = session.subscribe()
        stay = session.add_stream(f"source_id=stay-{unique_id}", bundle="demo", hop_s=1.0)
        leave = session.add_stream(f"source_id=leave-{unique_id}", bundle="demo", hop_s=1.0)
        collect(subscription, 20.0, until=lambda item: item[0] == "prediction")
        leaving.unplug()
        gone_at = pylsl.local_clock()
        items = collect(subscription, 8.0)
        (lost,) = events_of(items, "lost")
        assert lost.stream == leave and "lost: no data for" in lost.message and lost.level == "error"
        later = [p for p in predictions(items) if p.latency.published_s > gone_at + 3.0]
        assert later and {p.stream for p in later} == {stay} and all(p.ok for p in later)
        health = wait_health(session, leave, lambda h: h.state == "lost")
        assert health.level == "red" and "lost" in health.message
        assert session.health[stay].level == "green"
        session.stop()
    staying.stop()
    leaving.stop()


def test_a_sensor_held_at_its_rail_gives_clipped_windows_then_predictions_again(unique_id):
    publisher = Publisher(f"rail-{unique_id}", f"rail-{unique_id}", seed=8).start()
    with MonitorSession() as session:
        subscription, _ = monitor_until_predicting(session, f"rail-{unique_id}")
        publisher.burst(0.5, value=float(np.max(publisher.data)) * 10.0)  # saturated for half a second
        items = predictions(collect(subscription, 14.0))
        spoiled = [p for p in items if not p.ok]
        assert spoiled and all("clipped" in p.codes and p.probabilities is None for p in spoiled)
        assert items[-1].ok  # clean windows again once the burst has left the window
        summary = session.stop()
    publisher.stop()
    assert summary["rejected"] >= len(spoiled)


def test_an_outlet_that_returns_with_another_layout_is_refused_and_said(unique_id):
    publisher = Publisher(f"morph-{unique_id}", f"morph-{unique_id}", seed=7).start()
    with MonitorSession() as session:
        subscription, key = monitor_until_predicting(session, f"morph-{unique_id}")
        publisher.unplug()
        time.sleep(1.5)
        # The same device id comes back with two channels at another rate: not the stream the model was given.
        changed = pylsl.StreamOutlet(pylsl.StreamInfo(f"morph-{unique_id}", "PPG", 2, 100.0, "float32",
                                                      f"morph-{unique_id}"))
        changed.push_chunk(np.zeros((50, 2), np.float32).tolist())
        items = collect(subscription, 10.0, until=lambda item: item[0] == "event" and item[1].level == "error")
        (mismatch,) = [e for e in events_of(items, "mismatch") if e.stream == key]
        assert mismatch.level == "error"
        assert "came back changed: channels 1 -> 2, rate 64 Hz -> 100 Hz" in mismatch.message
        health = wait_health(session, key, lambda h: h.level == "red")
        assert "came back changed" in health.message
        summary = session.stop()
        del changed
    publisher.stop()
    assert summary["predictions"] >= 1
