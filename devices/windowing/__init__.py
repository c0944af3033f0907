"""Windows for models: ring buffer, windowing, resampling and per-window quality (numpy/scipy only).

The one path from raw samples to model-ready windows, shared by training (:func:`cut_windows` on recordings) and
the live runtime (:class:`Windower` on streams); see :mod:`devices.windowing.cut`.
"""

from devices.windowing.cut import WindowCutter, cut_windows, window_start
from devices.windowing.quality import QUALITY_CODES, QualityFlags, QualityThresholds, assess_quality, fill_nonfinite
from devices.windowing.resample import PolyphaseResampler, rational_ratio
from devices.windowing.ring import RingBuffer
from devices.windowing.window import Window, seconds_to_samples
from devices.windowing.windower import Windower

__all__ = [
    "QUALITY_CODES",
    "PolyphaseResampler",
    "QualityFlags",
    "QualityThresholds",
    "RingBuffer",
    "Window",
    "WindowCutter",
    "Windower",
    "assess_quality",
    "cut_windows",
    "fill_nonfinite",
    "rational_ratio",
    "seconds_to_samples",
    "window_start",
]
