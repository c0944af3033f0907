"""Foundation-model adapters: one interface (:class:`FoundationModel`) over HuBERT-ECG, LaBraM and PaPaGei-S."""

from bridges.fm.base import FoundationModel, InputSpec

__all__ = ["FoundationModel", "InputSpec"]
