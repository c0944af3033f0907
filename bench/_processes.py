"""CPU and resident memory of a monitoring session's processes: the publisher, the driver, every actor, and Ray's
own servers, sampled over time."""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

_RAY_SERVERS = ("raylet", "gcs_server", "ray::", "monitor.py", "log_monitor", "dashboard")


def _ray_processes() -> list[psutil.Process]:
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        if any(n in text for n in _RAY_SERVERS) and proc.pid != os.getpid():
            out.append(proc)
    return out


def session_processes(session: Any, publisher_pid: int) -> dict[str, list[psutil.Process]]:
    """The processes of a running ``MonitorSession`` by role, plus the publisher's."""
    actors = session.actors()
    groups = {
        "publisher": [psutil.Process(publisher_pid)],
        "driver": [psutil.Process()],
        "stream actors": [psutil.Process(a["pid"]) for a in actors if a["role"] == "stream"],
        "inference actors": [psutil.Process(a["pid"]) for a in actors if a["role"] == "inference"],
        "recorder": [psutil.Process(a["pid"]) for a in actors if a["role"] == "recorder"],
    }
    groups = {k: v for k, v in groups.items() if v}
    known = {p.pid for procs in groups.values() for p in procs}
    groups["ray servers"] = [p for p in _ray_processes() if p.pid not in known]
    return groups


class Meter:
    """CPU seconds and RSS (MiB) of groups of processes, sampled over time (a process that ended counts 0)."""

    def __init__(self, groups: dict[str, list[psutil.Process]]) -> None:
        self.groups = groups
        self.rss: list[dict[str, float]] = []
        self.times: list[float] = []
        self.cpu0 = self._cpu()
        self.t0 = time.monotonic()

    def _cpu(self) -> dict[str, float]:
        out = {}
        for name, procs in self.groups.items():
            total = 0.0
            for p in procs:
                try:
                    t = p.cpu_times()
                    total += t.user + t.system
                except psutil.Error:
                    pass
            out[name] = total
        return out

    def sample(self) -> dict[str, float]:
        """Record (and return) the RSS of each group now, in MiB."""
        row = {}
        for name, procs in self.groups.items():
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            row[name] = total / 2**20
        self.rss.append(row)
        self.times.append(time.monotonic() - self.t0)
        return row

    def cpu_percent(self) -> dict[str, float]:
        """CPU of each group since the meter started, in % of one core."""
        wall = time.monotonic() - self.t0
        now = self._cpu()
        return {k: 100.0 * (now[k] - self.cpu0[k]) / wall for k in now}
