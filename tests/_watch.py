"""Watching a running MonitorSession from a test: collect what its subscription hands out, pick predictions and
events, wait for a stream's health to reach a state, find an actor's process."""

from __future__ import annotations

import time


def collect(subscription, seconds, until=None):
    """Items from ``subscription`` for ``seconds``, or until ``until(item)`` holds for one (included)."""
    items, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        item = subscription.get(0.1)
        if item is not None:
            items.append(item)
            if until is not None and until(item):
                break
    return items


def predictions(items):
    return [v for kind, v in items if kind == "prediction"]


def events_of(items, kind):
    return [v for k, v in items if k == "event" and v.kind == kind]


def pid_of(session, role):
    return next(a["pid"] for a in session.actors() if a["role"] == role)


def wait_health(session, key, predicate, timeout_s=5.0):
    """The stream's health once ``predicate(health)`` holds; AssertionError with the last health after the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        health = session.health.get(key)
        if health is not None and predicate(health):
            return health
        time.sleep(0.2)
    raise AssertionError(f"health never satisfied the check: {session.health.get(key)}")


def monitor_until_predicting(session, source_id, hop_s=1.0):
    """Subscribe, run the demo bundle on the stream ``source_id``, wait for its first prediction."""
    subscription = session.subscribe()
    key = session.add_stream(f"source_id={source_id}", bundle="demo", hop_s=hop_s)
    assert predictions(collect(subscription, 20.0, until=lambda item: item[0] == "prediction"))
    return subscription, key
