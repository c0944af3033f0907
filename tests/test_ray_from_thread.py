"""A session whose Ray was started from a worker thread survives that thread's end.

Ray's processes die with the *thread* that forked them (PR_SET_PDEATHSIG), so the desktop app — which starts
the session on a thread pool and shuts the pool down when it closes — used to lose every Ray process at that
moment and then hang for a minute. This runs in its own interpreter: it needs a Ray of its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent("""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import psutil

    from biostream.runtime.session import MonitorSession

    def ray_processes():
        return sorted(p.name() for p in psutil.Process().children(recursive=True)
                      if p.status() != psutil.STATUS_ZOMBIE and p.name() in ("gcs_server", "raylet"))

    session = MonitorSession()
    pool = ThreadPoolExecutor(2)
    pool.submit(session.start).result()
    before = ray_processes()
    pool.shutdown(wait=True)  # the thread that started the session ends
    time.sleep(1.0)
    after = ray_processes()
    import ray
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    started = time.monotonic()
    session.stop()
    print(before, after, len(alive), round(time.monotonic() - started, 1))
""")


def test_a_session_started_on_a_thread_pool_outlives_the_pool():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    line = done.stdout.strip().splitlines()[-1]
    assert line.startswith("['gcs_server', 'raylet'] ['gcs_server', 'raylet'] 1 "), line
    assert float(line.split()[-1]) < 20.0  # stopping does not wait on a dead control store
