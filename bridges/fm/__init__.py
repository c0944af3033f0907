"""Foundation-model adapters: one interface (:class:`FoundationModel`) over HuBERT-ECG, LaBraM, NormWear, PaPaGei-S."""

from bridges.fm.base import FoundationModel, InputSpec

__all__ = ["FoundationModel", "InputSpec"]
