"""The one interface every foundation-model adapter implements.

Layers are addressed by index into an explicit ``layers`` sequence; "layer k" means the output of block k
(0-based). Hidden states are exchanged in one canonical token layout, ``(batch, n_tokens, width)``, whatever the
model's internal layout (a 1-D CNN's ``(batch, channels, time)`` is transposed to ``(batch, time, channels)``), so
a bridge always produces and consumes ``(B, T, d)``. Nothing here uses forward hooks: ``prefix`` runs the stem
and layers ``0..upto`` and stops; ``suffix`` runs layers ``start..end`` and the final norm from a layer input.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from bridges.input_scaling import resolve_scaling, scaling_name


@dataclass(frozen=True)
class InputSpec:
    """What an FM expects as raw input.

    Parameters
    ----------
    modality : str
        ``"ecg"``, ``"ppg"``, ``"eeg"``, ...
    sfreq_hz : float
        Sampling rate the model was trained at (Hz).
    window_s : float
        Window length in seconds.
    n_channels : int
        Channels per window (after channel selection).
    channel_labels : tuple of str
        Expected channel labels (10-20 names for EEG); empty when any single lead works.
    unit : str
        Unit the raw window is given in (e.g. ``"uV"``).
    scale : float
        Multiplier applied to the raw window before the stem (LaBraM: 1/100, µV → 0.1 mV); 1.0 otherwise.
    normalisation : str
        Per-window normalisation applied before scaling: ``"zscore"``, ``"minmax_pm1"`` or ``"none"``.
        ``normalisation`` and ``scale`` together are the FM's input scaling (:mod:`bridges.input_scaling`).
    """

    modality: str
    sfreq_hz: float
    window_s: float
    n_channels: int
    channel_labels: tuple[str, ...] = ()
    unit: str = ""
    scale: float = 1.0
    normalisation: str = "zscore"

    @property
    def n_samples(self) -> int:
        """Samples per channel in one window."""
        return round(self.sfreq_hz * self.window_s)


class FoundationModel(nn.Module):
    """Base class of FM adapters.

    Subclasses set ``input_spec`` and ``layers`` (an ``nn.ModuleList``) and implement :meth:`embed`,
    :meth:`_run_layer` (when a block's call needs more than ``block(h)``), :meth:`finalize` and :meth:`pool`.
    Raw input ``x`` has shape ``(B, n_channels, n_samples)`` at ``input_spec.sfreq_hz``, already normalised and
    scaled per :attr:`input_spec`. Subclasses set :attr:`published_scaling`; their constructors set the scaling
    random weights use, and ``from_pretrained`` switches to the published one (:meth:`use_input_scaling`).
    """

    name: str = "fm"
    #: The input scaling the published checkpoint was trained on (a key of ``INPUT_SCALINGS``).
    published_scaling: str = "zscore"
    input_spec: InputSpec
    layers: nn.ModuleList

    @property
    def input_scaling(self) -> str | None:
        """Name of the input scaling :attr:`input_spec` asks for, or None when no named scaling matches it."""
        return scaling_name(self.input_spec.normalisation, self.input_spec.scale)

    def use_input_scaling(self, name: str) -> FoundationModel:
        """Ask for the input scaling ``name`` (``"published"``: :attr:`published_scaling`); returns ``self``.

        Only :attr:`input_spec` changes: the preprocessing built from it afterwards does the scaling.

        Raises
        ------
        devices.errors.BadInputError
            ``name`` is not ``"published"`` or a known scaling; the message lists the accepted names.
        """
        scaling = resolve_scaling(name, self.published_scaling)
        self.input_spec = replace(self.input_spec, normalisation=scaling.normalisation, scale=scaling.scale)
        return self

    @property
    def n_layers(self) -> int:
        """Number of blocks in :attr:`layers`."""
        return len(self.layers)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stem: raw window ``(B, C, L)`` → layer-0 input ``(B, T, d)``."""
        raise NotImplementedError

    def _run_layer(self, index: int, h: torch.Tensor) -> torch.Tensor:
        """Run block ``index`` on ``h`` ``(B, T, d)`` → ``(B, T', d')``."""
        return self.layers[index](h)

    def finalize(self, h: torch.Tensor) -> torch.Tensor:
        """Whatever follows the last block (final norm); identity by default."""
        return h

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """Head features ``(B, d)`` from the final hidden state ``(B, T, d)``; mean over tokens by default."""
        return h.mean(dim=1)

    def check_layer_index(self, index: int, what: str) -> None:
        """Raise IndexError unless ``index`` addresses one of :attr:`layers`.

        Parameters
        ----------
        index : int
            A layer index, 0-based.
        what : str
            The argument's name, quoted in the message.
        """
        if not 0 <= index < self.n_layers:
            raise IndexError(f"'{what}' must be in [0, {self.n_layers - 1}] for {self.name}, got {index} instead.")

    def prefix(self, x: torch.Tensor, upto: int) -> torch.Tensor:
        """Output of layer ``upto`` ``(B, T, d)``: the stem and layers ``0..upto``; later layers are not run."""
        self.check_layer_index(upto, "upto")
        h = self.embed(x)
        for k in range(upto + 1):
            h = self._run_layer(k, h)
        return h

    def suffix(self, h: torch.Tensor, start: int) -> torch.Tensor:
        """Final hidden state ``(B, T, d)`` from the input of layer ``start``: layers ``start..end`` + finalize."""
        self.check_layer_index(start, "start")
        for k in range(start, self.n_layers):
            h = self._run_layer(k, h)
        return self.finalize(h)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every layer, ``[layer 0, ..., layer n-1]``, each ``(B, T_k, d_k)`` (no finalize)."""
        h = self.embed(x)
        states = []
        for k in range(self.n_layers):
            h = self._run_layer(k, h)
            states.append(h)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled head features ``(B, d)`` of the full model."""
        return self.pool(self.suffix(self.embed(x), 0))

    @torch.no_grad()
    def layer_shapes(self) -> list[tuple[int, int]]:
        """``(n_tokens, width)`` of every layer's output, from a probe forward on one zero window."""
        spec = self.input_spec
        probe = torch.zeros(1, spec.n_channels, spec.n_samples)
        return [tuple(h.shape[1:]) for h in self.hidden_states(probe)]
