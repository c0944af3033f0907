"""Ring buffer, windowing, resampling and per-window quality flags for live streams (numpy/scipy only)."""

from biostream.windowing.quality import QualityFlags, QualityThresholds, assess_quality, fill_nonfinite
from biostream.windowing.resample import PolyphaseResampler, rational_ratio
from biostream.windowing.ring import RingBuffer
from biostream.windowing.window import Window, seconds_to_samples
from biostream.windowing.windower import Windower

__all__ = [
    "PolyphaseResampler",
    "QualityFlags",
    "QualityThresholds",
    "RingBuffer",
    "Window",
    "Windower",
    "assess_quality",
    "fill_nonfinite",
    "rational_ratio",
    "seconds_to_samples",
]
