"""Helpers shared by the benchmarks: a one-line machine description and peak-memory measurement."""

from __future__ import annotations

import gc
import os
import platform
import resource
from pathlib import Path

import torch


def machine() -> str:
    """One line: CPU model and cores (or GPU), Python and torch versions, threads."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.read_text().splitlines() if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return (f"{cpu}, {os.cpu_count()} cores{gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def memory_baseline(device: str) -> int:
    """Reset the peak-memory counter; return the current level (bytes)."""
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS (Linux ≥ 4.0)
        return _status_kib("VmRSS") * 1024
    except OSError:  # no reset: the baseline is the high-water mark so far
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_peak(baseline: int, device: str) -> int:
    """Peak memory above ``baseline`` since :func:`memory_baseline` (bytes)."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() - baseline
    try:
        # VmHWM is updated lazily and can trail the current RSS: take whichever is larger.
        peak = max(_status_kib("VmHWM"), _status_kib("VmRSS")) * 1024
    except (OSError, KeyError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # RSS can fall below the baseline (freed pages returned to the OS); a peak above it is never negative.
    return max(0, peak - baseline)
