"""How a bridge is trained: one frozen, self-checking settings object for :func:`bridges.train.train_bridge`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bridges.bridge import PROTOTYPE_INITS
from bridges.epoch_selection import DEFAULT_SELECT_BY, check_select_by
from devices._checks import check_value, ensure_int, ensure_positive

__all__ = ["ALIGNS", "LOSSES", "PRECISIONS", "TrainOptions"]

LOSSES = ("cosine", "mse", "l1")
ALIGNS = ("last", "bridge")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainOptions:
    """The bridge's size and its training schedule (everything :func:`~bridges.train.train_bridge` tunes).

    Parameters
    ----------
    rank, n_prototypes, init
        Bridge rank ``r``, prototypes ``P`` and prototype initialisation (``"rand_P"`` / ``"randreal_P"``).
    loss : {"cosine", "mse", "l1"}
        Alignment loss (see :func:`bridges.train_loop.bridge_loss`).
    align : {"last", "bridge"}
        Align the old FM's final hidden state (default) or the bridge output itself with the real layer-``j``
        input.
    epochs, lr, batch_size
        Adam training schedule.
    eval_every : int
        Score validation/test every this many epochs (and after the last).
    select_by : {"loss", "agreement", "labels"}
        Which validation criterion keeps the epoch (:mod:`bridges.epoch_selection`): the alignment loss on the
        validation pairs, agreement with the old model's pseudo-labels on them, or macro-F1 against true labels.
        All three are recorded either way. Default :data:`~bridges.epoch_selection.DEFAULT_SELECT_BY`.
    random_state : int
        Seed of the bridge initialisation, prototype draw and shuffling.
    max_grad_norm : float or None
        Clip the bridge's gradient to this L2 norm (None: no clipping). Why: ``B`` starts at zero, so the first
        bridge output is all zeros; in an FM whose layer ``j`` is attention + post-LayerNorm with zero biases
        (random-init transformers) that input has zero variance and the LayerNorm's gradient is ~1/sqrt(eps)
        (1e16 measured). One such step fills Adam's second-moment estimate and stalls training for ~1000 steps;
        clipping removes it and rarely binds afterwards.
    micro_batch_size : int, optional
        Run each batch as chunks of this many windows and accumulate their gradients: the same update (up to
        float rounding) with the suffix's activation memory cut by ``batch_size / micro_batch_size``. On a CPU,
        chunks of 4–8 windows cost 0–20% more per step.
    cache_batch_size : int, optional
        Windows per pass when caching features and targets and when scoring (default: the micro-batch, else
        ``batch_size``). These passes run whole FMs without a gradient, so their transient memory scales with it.
    precision : {"float32", "bfloat16"}
        ``"bfloat16"`` runs the frozen FMs and the bridge under ``torch.autocast`` (bf16 matrix products, on CPUs
        with AMX/AVX-512 BF16 about 2× faster; the bridge's weights, Adam and the loss stay float32). The cached
        features and targets are kept as float32 either way.
    """

    rank: int = 8
    n_prototypes: int = 150
    init: str = "randreal_P"
    loss: str = "cosine"
    align: str = "last"
    epochs: int = 50
    lr: float = 1e-4
    batch_size: int = 16
    eval_every: int = 1
    select_by: str = DEFAULT_SELECT_BY
    random_state: int = 0
    max_grad_norm: float | None = 1.0
    micro_batch_size: int | None = None
    cache_batch_size: int | None = None
    precision: str = "float32"

    def __post_init__(self) -> None:
        check_value(self.loss, LOSSES, "loss")
        check_value(self.align, ALIGNS, "align")
        check_value(self.precision, PRECISIONS, "precision")
        check_value(self.init, PROTOTYPE_INITS, "init")
        check_select_by(self.select_by)
        checked = {name: ensure_int(getattr(self, name), name, minimum=1)
                   for name in ("epochs", "batch_size", "eval_every", "rank", "n_prototypes")}
        checked["lr"] = ensure_positive(self.lr, "lr")
        checked["random_state"] = ensure_int(self.random_state, "random_state")
        for name in ("micro_batch_size", "cache_batch_size"):
            if getattr(self, name) is not None:
                checked[name] = ensure_int(getattr(self, name), name, minimum=1)
        if self.max_grad_norm is not None:
            checked["max_grad_norm"] = ensure_positive(self.max_grad_norm, "max_grad_norm")
        for name, value in checked.items():  # store the normalised values (int, float)
            object.__setattr__(self, name, value)

    @property
    def chunk(self) -> int:
        """Windows per forward/backward pass in training: the micro-batch (at most a batch), else the batch."""
        return self.batch_size if self.micro_batch_size is None else min(self.micro_batch_size, self.batch_size)

    @property
    def pass_size(self) -> int:
        """Windows per no-grad pass when caching and scoring."""
        return self.chunk if self.cache_batch_size is None else self.cache_batch_size

    def evaluates_at(self, epoch: int) -> bool:
        """Whether validation and test are scored after ``epoch`` (1-based): every ``eval_every``, and the last."""
        return epoch % self.eval_every == 0 or epoch == self.epochs

    def autocast(self, device_type: str) -> torch.autocast:
        """The autocast context of :attr:`precision` on ``device_type`` (disabled for float32)."""
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16")
