"""Test-session setup shared by every test module.

LSL discovery is confined to this machine and liblsl's log quietened (``tests/lsl_api.cfg``); Qt renders
offscreen; background stream errors are raised in tests rather than only logged.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("LSLAPICFG", str(Path(__file__).with_name("lsl_api.cfg")))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("BIOSTREAM_RAISE_STREAM_ERRORS", "true")


@pytest.fixture
def unique_id() -> str:
    """A fresh identifier for stream names and source ids, so parallel tests never see each other's outlets."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (small models: threads only add overhead and jitter); restore after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray for the whole test session (starting one takes seconds), on loopback like the monitor's."""
    from biostream.runtime import cluster

    started = cluster.connect(None, num_cpus=2)
    yield
    if started:
        import ray

        ray.shutdown()

