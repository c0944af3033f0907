"""Self-supervised pretraining of a foundation-model adapter on unlabeled windows of its modality.

The objective is SimCLR's contrastive NT-Xent loss: each window is seen through two random augmentations; the
FM's pooled last layer (``fm.pool`` of the final hidden state, i.e. the features a head later reads) goes
through a small projection MLP (Linear → ReLU → Linear), and the loss pulls the two projections of a window
together while pushing them away from the other ``2B - 2`` views in the batch (cosine similarity over a
temperature). The projection head is dropped after pretraining, as in SimCLR: the FM keeps what it learned.

**Why contrastive (and these augmentations).** It needs no decoder and no tokeniser, so the same code serves
every adapter (a 1-D CNN, a speech-style transformer, a patch transformer) and costs one forward/backward of the
FM per view. The augmentations are the invariances a biosignal classifier should have and nothing that would
erase the physiology (no time reversal, no frequency warping, which would change heart rate or EEG rhythms):

* **time shift (crop-and-pad)**: the content moves by up to ``max_shift_frac`` of the window, the vacated edge is
  zero (the mean of a z-scored window) — windows are cut at arbitrary phases of the heartbeat or rhythm;
* **amplitude scaling**: one factor per view in ``[1 - scale_range, 1 + scale_range]`` — gain differs between
  devices and electrode contact;
* **additive Gaussian noise**: standard deviation up to ``noise_frac`` times the window's own (per channel) —
  sensor and motion noise, relative so it means the same for any unit or scaling;
* **segment masking**: one contiguous span of up to ``mask_frac`` of the window set to zero — dropouts and
  short artefacts.

Augmentations act on the *preprocessed* window (after the FM's band-pass, z-score and scale, which are computed
once for all windows up front since they are fixed), so noise and padding are in the units the FM reads.

During pretraining the FM is in training mode (BatchNorm statistics update, dropout active) and every parameter
is trainable; afterwards it is back in eval mode with each parameter's ``requires_grad`` as it was before.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from bridges._batching import map_batches
from bridges.fm.base import FoundationModel
from bridges.models import make_head
from devices._checks import ensure_int, ensure_positive
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["AugmentConfig", "PretrainResult", "augment", "nt_xent", "pretrain_contrastive"]


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of the random view augmentations (see the module docstring).

    Parameters
    ----------
    max_shift_frac : float
        Largest time shift as a fraction of the window length, in ``[0, 1)``.
    scale_range : float
        Amplitude factor drawn from ``[1 - scale_range, 1 + scale_range]``, ``scale_range`` in ``[0, 1)``.
    noise_frac : float
        Noise standard deviation drawn from ``[0, noise_frac]`` times the view's per-channel standard deviation.
    mask_frac : float
        Longest masked (zeroed) segment as a fraction of the window length, in ``[0, 1)``.
    """

    max_shift_frac: float = 0.2
    scale_range: float = 0.3
    noise_frac: float = 0.2
    mask_frac: float = 0.2

    def __post_init__(self) -> None:
        for name in ("max_shift_frac", "scale_range", "mask_frac"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise BadInputError(f"'{name}' must be in [0, 1), got {value!r} instead.")
        if not (self.noise_frac >= 0.0 and math.isfinite(self.noise_frac)):
            raise BadInputError(f"'noise_frac' must be a finite number >= 0, got {self.noise_frac!r} instead.")


@dataclass
class PretrainResult:
    """What :func:`pretrain_contrastive` did (JSON-serialisable through :meth:`to_dict`).

    Attributes
    ----------
    loss : list of float
        Mean NT-Xent loss per epoch (``loss[e - 1]`` for epoch ``e``).
    seconds : float
        Wall time of the whole call (s), preprocessing included.
    seconds_per_epoch : float
        Mean wall time of one training epoch (s).
    n_windows : int
        Unlabeled windows trained on.
    n_trainable : int
        Parameters of the FM that received a gradient, plus the projection head's.
    """

    fm: str
    epochs: int
    lr: float
    batch_size: int
    temperature: float
    projection_dim: int
    n_windows: int
    n_trainable: int
    augment: dict[str, float]
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    seconds_per_epoch: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


def augment(x: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """One random view of each window: shift (crop-and-pad), scale, noise, segment mask.

    Parameters
    ----------
    x : tensor of shape (B, C, L)
        Preprocessed windows (the FM's input units).
    config : AugmentConfig
        Augmentation strengths.
    generator : torch.Generator
        Source of every random draw.

    Returns
    -------
    tensor of shape (B, C, L)
        A new tensor; ``x`` is not modified.
    """
    n, _, length = x.shape
    positions = torch.arange(length)
    # Shift: output sample t reads input t - s; outside [0, L) it is zero (crop-and-pad).
    max_shift = int(config.max_shift_frac * length)
    shift = torch.randint(-max_shift, max_shift + 1, (n, 1), generator=generator)
    source = positions[None, :] - shift  # (B, L)
    inside = (source >= 0) & (source < length)
    index = source.clamp(0, length - 1)[:, None, :].expand_as(x)
    view = torch.gather(x, 2, index) * inside[:, None, :]
    # Amplitude: one factor per view.
    factor = 1.0 + config.scale_range * (2.0 * torch.rand(n, 1, 1, generator=generator) - 1.0)
    view = view * factor
    # Noise relative to the view's own per-channel spread.
    spread = view.std(dim=-1, keepdim=True)
    level = config.noise_frac * torch.rand(n, 1, 1, generator=generator)
    view = view + level * spread * torch.randn(view.shape, generator=generator)
    # Mask one contiguous span (same span on every channel, like a dropout of the device).
    max_mask = int(config.mask_frac * length)
    if max_mask > 0:
        span = torch.randint(0, max_mask + 1, (n, 1), generator=generator)
        begin = (torch.rand(n, 1, generator=generator) * (length - span + 1)).long()
        masked = (positions[None, :] >= begin) & (positions[None, :] < begin + span)
        view = view.masked_fill(masked[:, None, :], 0.0)
    return view


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy of two views' projections ``(B, k)`` each (scalar).

    For each of the ``2B`` views the positive is the other view of the same window, the negatives are the other
    ``2B - 2`` views; similarity is the cosine over ``temperature``.
    """
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"NT-Xent needs two views of >= 2 windows with equal shapes, got {z1.shape}, {z2.shape}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / temperature
    similarity = similarity.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))  # no self-pairs
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(similarity, positives)


def _projection(width: int, projection_dim: int, generator: torch.Generator) -> nn.Module:
    return make_head(width, projection_dim, mlp_hidden=width, generator=generator)


def pretrain_contrastive(
    fm: FoundationModel,
    preprocess: nn.Module | None,
    windows: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    temperature: float = 0.1,
    random_state: int = 0,
    progress: bool = True,
    projection_dim: int = 64,
    augment_config: AugmentConfig | None = None,
    max_grad_norm: float | None = 1.0,
) -> PretrainResult:
    """Pretrain ``fm`` in place with SimCLR's NT-Xent loss on unlabeled windows of its modality.

    Parameters
    ----------
    fm : FoundationModel
        The adapter to train (modified in place; eval mode afterwards, ``requires_grad`` flags restored).
    preprocess : nn.Module or None
        Raw window ``(B, C, L)`` → FM input ``(B, C, L)`` (e.g. :func:`bridges.preprocess.preprocess_for`);
        identity when None. Run once over all windows, without gradient.
    windows : array of shape (N, C, L), float32
        Raw unlabeled windows at the FM's rate (``C``, ``L`` as ``fm.input_spec``); N >= 2.
    epochs : int
        Passes over the windows.
    lr : float
        Adam learning rate (FM and projection head).
    batch_size : int
        Windows per step (each gives two views, so ``2 · batch_size`` FM forwards); >= 2. A last batch of one
        window is skipped (it has no negative).
    temperature : float
        NT-Xent temperature.
    random_state : int
        Seed of the projection head, the shuffling, the augmentations and dropout (which draws from torch's
        global RNG: it is seeded from ``random_state`` for the call and restored afterwards).
    progress : bool
        Show a tqdm progress bar with the loss.
    projection_dim : int
        Output width of the projection MLP (its hidden width is the pooled feature width).
    augment_config : AugmentConfig, optional
        Augmentation strengths; defaults of :class:`AugmentConfig` when None.
    max_grad_norm : float or None
        Clip the gradient of all trained parameters to this L2 norm (None: no clipping).

    Returns
    -------
    PretrainResult
    """
    start_all = time.perf_counter()
    epochs = ensure_int(epochs, "epochs", minimum=1)
    batch_size = ensure_int(batch_size, "batch_size", minimum=2)
    projection_dim = ensure_int(projection_dim, "projection_dim", minimum=1)
    lr = ensure_positive(lr, "lr")
    temperature = ensure_positive(temperature, "temperature")
    config = augment_config or AugmentConfig()
    x_raw = np.asarray(windows, dtype=np.float32)
    spec = fm.input_spec
    if x_raw.ndim != 3 or x_raw.shape[1:] != (spec.n_channels, spec.n_samples):
        raise BadInputError(
            f"pretraining windows for {fm.name} must be (N, {spec.n_channels}, {spec.n_samples}), got {x_raw.shape}"
        )
    if len(x_raw) < 2:
        raise BadInputError(f"contrastive pretraining needs at least 2 windows, got {len(x_raw)}")
    if not np.isfinite(x_raw).all():
        raise BadInputError(f"pretraining windows for {fm.name} contain NaN or Inf")
    preprocess = nn.Identity() if preprocess is None else preprocess
    preprocess.eval()
    x = map_batches(preprocess, x_raw, 64)

    generator = torch.Generator().manual_seed(random_state)
    was_trainable = [p.requires_grad for p in fm.parameters()]
    for param in fm.parameters():
        param.requires_grad_(True)
    fm.eval()
    with torch.no_grad():
        width = fm.pool(fm.suffix(fm.embed(x[:2]), 0)).shape[1]
    projector = _projection(width, projection_dim, generator)
    parameters = list(fm.parameters()) + list(projector.parameters())
    optimizer = torch.optim.Adam(parameters, lr=lr)
    result = PretrainResult(
        fm=fm.name, epochs=epochs, lr=lr, batch_size=batch_size, temperature=temperature,
        projection_dim=projection_dim, n_windows=len(x), n_trainable=0, augment=asdict(config),
    )
    used: set[int] = set()
    train_seconds = 0.0
    bar = tqdm(range(1, epochs + 1), desc=f"pretrain {fm.name}", disable=not progress, leave=False)
    dropout_seed = int(torch.randint(2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):  # dropout draws from the global RNG: seeded here, the caller's kept
        torch.default_generator.manual_seed(dropout_seed)
        try:
            fm.train()
            projector.train()
            for _epoch in bar:
                start = time.perf_counter()
                order = torch.randperm(len(x), generator=generator)
                total, seen = 0.0, 0
                for s in range(0, len(order), batch_size):
                    batch = order[s : s + batch_size]
                    if len(batch) < 2:
                        continue
                    views = torch.cat([augment(x[batch], config, generator), augment(x[batch], config, generator)])
                    z = projector(fm.pool(fm.suffix(fm.embed(views), 0)))
                    loss = nt_xent(z[: len(batch)], z[len(batch) :], temperature)
                    optimizer.zero_grad()
                    loss.backward()
                    used.update(id(p) for p in parameters if p.grad is not None)
                    if max_grad_norm is not None:
                        nn.utils.clip_grad_norm_(parameters, max_grad_norm)
                    optimizer.step()
                    total += float(loss.detach()) * len(batch)
                    seen += len(batch)
                train_seconds += time.perf_counter() - start
                result.loss.append(total / max(seen, 1))
                bar.set_postfix(loss=f"{result.loss[-1]:.4f}")
                logger.debug("Pretraining %s: epoch %d, NT-Xent %.4f.", fm.name, _epoch, result.loss[-1])
        finally:
            fm.eval()
            for param, flag in zip(fm.parameters(), was_trainable, strict=True):
                param.requires_grad_(flag)
                param.grad = None
    result.n_trainable = sum(p.numel() for p in parameters if id(p) in used)
    result.seconds_per_epoch = train_seconds / epochs
    result.seconds = time.perf_counter() - start_all
    logger.info(
        "Pretrained %s contrastively on %d windows: NT-Xent %.4f → %.4f in %d epochs (%.1f s).",
        fm.name, len(x), result.loss[0], result.loss[-1], epochs, result.seconds,
    )
    return result
