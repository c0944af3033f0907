"""Paired data sets: windows of two modalities recorded together, with labels, subjects and splits."""

from bridges.data.build import (
    DROP_REASONS,
    DropReport,
    StreamSelect,
    concatenate,
    paired_windows_from_recording,
)
from bridges.data.cache import cache_key, cached
from bridges.data.sources import FM_SFREQ_HZ, fog_paired, isruc_paired, simulated_paired, wesad_paired
from bridges.data.splits import split_subjects
from bridges.data.windows import SPLITS, PairedWindows

__all__ = [
    "DROP_REASONS",
    "FM_SFREQ_HZ",
    "SPLITS",
    "DropReport",
    "PairedWindows",
    "StreamSelect",
    "cache_key",
    "cached",
    "concatenate",
    "fog_paired",
    "isruc_paired",
    "paired_windows_from_recording",
    "simulated_paired",
    "split_subjects",
    "wesad_paired",
]
