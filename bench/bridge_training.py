"""Bridge training cost: our cached/truncated loop vs a reference-style loop, its floor, and distillation.

Real-size architectures with random weights (HuBERT-ECG-S, PaPaGei-S, LaBraM-base, NormWear), random windows from
a fixed seed, batch 16, Adam lr 1e-4, the bridge settings of DESIGN.md §9 for the WESAD, ISRUC and FOG directions:

=========  ===================  =========================  ===  ===  =====
direction  old FM (j)           new FM (i)                 r    P    window
=========  ===================  =========================  ===  ===  =====
ecg2ppg    HuBERT-ECG-S, j=2    PaPaGei-S, i=4             8    150  60 s
ppg2ecg    PaPaGei-S, j=11      HuBERT-ECG-S, i=7          32   50   60 s
ecg2eeg    HuBERT-ECG-S, j=0    LaBraM (6 ch), i=11        4    200  30 s
eeg2ecg    LaBraM (6 ch), j=2   HuBERT-ECG-S, i=7          32   300  30 s
eeg2emg    LaBraM (6 ch), j=11  NormWear (3 ch), i=3       256  200  3 s
emg2eeg    NormWear (3 ch), j=10 LaBraM (6 ch), i=6        8    50   3 s
=========  ===================  =========================  ===  ===  =====

FOG's windows are 3 s: LaBraM's F3, C3, O1, F4, C4, O2 at 200 Hz (19 tokens) and NormWear's three EMG channels at
130 Hz (3 × 560 = 1,680 tokens of 768).

**Layer mapping.** DESIGN §9's "old FM out layer k" is the layer whose *input* the bridge output replaces (the
reference registers its forward pre-hook on ``fm_old.<layers>[k]``; its PaPaGei size table gives
``basicblock_list[11]`` the shape (128, 235), which is block 11's input, not its output (118 steps)). That is
exactly our ``j`` in ``old_fm.suffix(h, start=j)``, so j = k. "New FM in layer k" is the *output* of block k
(the reference's forward hook on ``fm_new.<layers>[k]``), our ``new_fm.prefix(x, upto=i)``, so i = k. Check:
the bridge parameter counts printed match the §9 table (188,912 / 398,784 / 140,000 / 1,813,984).

Approaches, each in a fresh process (peak memory is the high-water mark above the level after building both
FMs and the data; on CPU the kernel's peak-RSS counter is reset there through ``/proc/self/clear_refs``):

- **reference**: what chenqi-li/BioX-Bridge ``train_bridge.py`` does each step: a no-grad full old-FM forward on
  the old-modality batch (the target is read by a forward hook on the last block), a no-grad full new-FM forward
  (features read by a forward hook on block ``i``, mean over tokens), the bridge, then a full old-FM forward with
  the bridge output injected by a forward pre-hook on block ``j`` (layers < j are computed and thrown away), loss
  on the last block's output, backward, Adam. Differences, all in the reference's favour or neutral: both FMs are
  frozen (the reference leaves HuBERT-ECG's parameters trainable, so its backward also fills their gradients);
  the data batch is already in memory (no DataLoader / disk); no autocast for LaBraM (the reference uses CUDA
  autocast). For identical math, the target and prediction go through the old FM's ``finalize`` (PaPaGei's final
  BN + ReLU; identity for the others) as :mod:`bridges.train` does, and the gradient is clipped to the same norm.
- **ours**: :mod:`bridges.train` machinery: ``cache_bridge_inputs`` + the old-FM targets once (timed on the data
  pool, extrapolated per window to the pair set, reported once and amortised over 50 epochs; the cache is held
  at full pair-set size so its memory counts), then per step ``BridgedModel.final_hidden_from_features`` (bridge
  + old-FM layers j..end) + ``bridge_loss`` + backward + clip + Adam. The targets sit in a
  :class:`bridges.target_cache.TargetCache` file read per batch (``train_bridge(targets_dir=...)``, the
  ``[train] targets_on_disk`` setting), each batch of 16 runs as chunks of ``Direction.micro_batch`` windows
  with gradients accumulated (``micro_batch_size``; the same update), and the one-off caching runs in passes of
  4 windows (``cache_batch_size``).
  **ours, plain**: the same loop with the targets in RAM and whole batches.
- **floor**: bridge + old-FM suffix forward and backward on pre-made tensors (no indexing, no optimiser); its
  FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode``.
- **distillation**: :mod:`bridges.distill`'s step: the whole new FM (unfrozen, a copy) + a linear head on the
  old model's cached soft predictions (T = 2), Adam.

Run: ``python bench/bridge_training.py [--directions ecg2ppg,ppg2ecg,ecg2eeg,eeg2ecg] [--steps 3] [--warmup 1]
[--pair-windows 2000] [--micro-batch N] [--threads N] [--device cpu|cuda] [--json out.json]``
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, memory_baseline, memory_peak  # noqa: E402

from bridges._batching import map_batches, train_only_used  # noqa: E402
from bridges.bridge import BridgeConfig, PrototypeBridge  # noqa: E402
from bridges.distill import distillation_loss  # noqa: E402
from bridges.fm.base import FoundationModel  # noqa: E402
from bridges.fm.hubert_ecg import HubertECG, tiny_config  # noqa: E402
from bridges.fm.labram import ISRUC_CHANNELS, Labram, LabramConfig  # noqa: E402
from bridges.fm.normwear import NormWear  # noqa: E402
from bridges.fm.normwear_layers import NormWearConfig  # noqa: E402
from bridges.fm.papagei import Papagei, PapageiConfig  # noqa: E402
from bridges.metrics import count_trainable  # noqa: E402
from bridges.models import BridgedModel, DistilledModel, OldModel, freeze, make_head, mean_tokens  # noqa: E402
from bridges.target_cache import TargetCache  # noqa: E402
from bridges.train import bridge_loss, cache_bridge_inputs, cache_targets, layer_input  # noqa: E402
from devices.formats.fog import EEG_CHANNELS as FOG_EEG_CHANNELS  # noqa: E402

EPOCHS_AMORTISED = 50
#: "ours": targets in a file read per batch, caching and steps in micro-batches (``Direction.micro_batch``);
#: "ours_plain": targets in RAM, whole batches.
APPROACHES = ("reference", "ours", "ours_plain", "distillation")
#: Ours' windows per caching pass (``train_bridge(cache_batch_size=...)``): whole FMs run without a gradient there,
#: and the transient memory of that one-off pass scales with it.
CACHE_PASS = 4
N_CLASSES = 3
TEMPERATURE = 2.0


@dataclass(frozen=True)
class Direction:
    """One transfer direction: old FM (labelled modality) ← new FM, bridge positions and size."""

    name: str
    old: str  # "hubert" | "papagei" | "labram" | "normwear"
    new: str
    window_s: float
    i: int
    j: int
    rank: int
    n_prototypes: int
    #: Ours' chunk of a batch of 16 (gradient accumulation): 8 halves the suffix's activation memory at ≤ 1.2× the
    #: floor; LaBraM's 181-token suffix needs 4 to stay under half the reference loop's peak; PaPaGei's last blocks
    #: (PPG→ECG, j = 11) are so small that whole batches are best.
    micro_batch: int | None = 8
    #: LaBraM's channels, by name (None: ISRUC's six).
    eeg_channels: tuple[str, ...] | None = None


DIRECTIONS: dict[str, Direction] = {
    "ecg2ppg": Direction("WESAD ECG→PPG", "hubert", "papagei", 60.0, i=4, j=2, rank=8, n_prototypes=150),
    "ppg2ecg": Direction("WESAD PPG→ECG", "papagei", "hubert", 60.0, i=7, j=11, rank=32, n_prototypes=50,
                         micro_batch=None),
    "ecg2eeg": Direction("ISRUC ECG→EEG", "hubert", "labram", 30.0, i=11, j=0, rank=4, n_prototypes=200),
    "eeg2ecg": Direction("ISRUC EEG→ECG", "labram", "hubert", 30.0, i=7, j=2, rank=32, n_prototypes=300,
                         micro_batch=4),
    # LaBraM's last block on 19 tokens is the whole per-step cost: whole batches.
    "eeg2emg": Direction("FOG EEG→EMG", "labram", "normwear", 3.0, i=3, j=11, rank=256, n_prototypes=200,
                         micro_batch=None, eeg_channels=FOG_EEG_CHANNELS),
    # NormWear's last two blocks on 1,680 tokens: chunks of 4 keep their activations small.
    "emg2eeg": Direction("FOG EMG→EEG", "normwear", "labram", 3.0, i=6, j=10, rank=8, n_prototypes=50,
                         micro_batch=4, eeg_channels=FOG_EEG_CHANNELS),
}



def build_fm(kind: str, window_s: float, *, size: str = "real", seed: int = 0,
             eeg_channels: tuple[str, ...] | None = None) -> FoundationModel:
    """Frozen FM with random weights: ``size="real"`` (published sizes) or ``"tiny"`` (test configs).

    ``eeg_channels``: LaBraM's channels (ISRUC's six when None).
    """
    real = size == "real"
    if kind == "hubert":
        fm: FoundationModel = HubertECG.from_config("small" if real else tiny_config(), window_s=window_s, seed=seed)
    elif kind == "papagei":
        fm = Papagei.from_config(None if real else PapageiConfig.small(), window_s=window_s, random_state=seed)
    elif kind == "labram":
        fm = Labram.from_config(None if real else LabramConfig.small(), window_s=window_s, random_state=seed,
                                channels=eeg_channels or ISRUC_CHANNELS)
    elif kind == "normwear":
        fm = NormWear.from_config(None if real else NormWearConfig.small(), window_s=window_s, random_state=seed)
    else:
        raise ValueError(f"unknown FM kind {kind!r}")
    return freeze(fm)


@dataclass
class Setup:
    """Everything the approaches share: FMs, head, data pool ``(N, C, L)`` and the initial bridge state."""

    direction: Direction
    old_model: OldModel
    new_fm: FoundationModel
    x_old: torch.Tensor
    x_new: torch.Tensor
    bridge_config: BridgeConfig
    bridge_state: dict[str, torch.Tensor]


def build_setup(direction: Direction, *, size: str = "real", n_windows: int = 32, seed: int = 0,
                device: str = "cpu") -> Setup:
    """Build both FMs, a linear old head, ``n_windows`` random windows per modality and a randreal_P bridge."""
    old_fm = build_fm(direction.old, direction.window_s, size=size, seed=seed, eeg_channels=direction.eeg_channels)
    new_fm = build_fm(direction.new, direction.window_s, size=size, seed=seed + 1,
                      eeg_channels=direction.eeg_channels)
    rng = np.random.default_rng(seed)

    def windows(fm: FoundationModel) -> torch.Tensor:
        spec = fm.input_spec
        return torch.from_numpy(rng.standard_normal((n_windows, spec.n_channels, spec.n_samples), dtype=np.float32))

    x_old, x_new = windows(old_fm), windows(new_fm)
    with torch.no_grad():
        width = old_fm(x_old[:1]).shape[1]
        tokens = layer_input(old_fm, x_old, direction.j)  # real layer-j inputs: shape and prototypes
        d_in = new_fm.prefix(x_new[:1], upto=direction.i).shape[2]
    generator = torch.Generator().manual_seed(seed + 3)
    head = freeze(make_head(width, N_CLASSES, generator=torch.Generator().manual_seed(seed + 2)))
    config = BridgeConfig(d_in=d_in, n_tokens=tokens.shape[1], d_out=tokens.shape[2], rank=direction.rank,
                          n_prototypes=direction.n_prototypes, init="randreal_P")
    bridge = PrototypeBridge(config, generator=generator)
    bridge.init_prototypes_from(tokens, generator=generator)
    old_model = OldModel(old_fm, head).to(device).eval()
    return Setup(direction, old_model, new_fm.to(device), x_old.to(device), x_new.to(device), config,
                 {k: v.clone() for k, v in bridge.state_dict().items()})


def new_bridge(setup: Setup) -> PrototypeBridge:
    """A bridge in the setup's initial state, on the data's device."""
    bridge = PrototypeBridge(setup.bridge_config)
    bridge.load_state_dict(setup.bridge_state)
    return bridge.to(setup.x_old.device).train()


def batch_order(n_windows: int, batch_size: int, n_steps: int) -> list[torch.Tensor]:
    """Index batches for ``n_steps`` steps, cycling through the pool in order (the same for every approach)."""
    n_batches = max(1, n_windows // batch_size)
    return [torch.arange(batch_size) + (k % n_batches) * batch_size for k in range(n_steps)]


def _update(loss: torch.Tensor, params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
            max_grad_norm: float | None) -> float:
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:
        nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return float(loss.detach())


def _native(fm: FoundationModel, h: torch.Tensor) -> torch.Tensor:
    """Canonical ``(B, T, d)`` → the block's own layout (PaPaGei's ``(B, C, L)``, NormWear's ``(B, C, N, d)``)."""
    if isinstance(fm, Papagei):
        return h.transpose(1, 2)
    return fm.channel_tokens(h) if isinstance(fm, NormWear) else h


def _canonical(fm: FoundationModel, h: torch.Tensor) -> torch.Tensor:
    """A block's own output layout → canonical ``(B, T, d)`` (the inverse of :func:`_native`)."""
    if isinstance(fm, Papagei):
        return h.transpose(1, 2)
    return h.flatten(1, 2) if isinstance(fm, NormWear) else h


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # transformers 4.x layers return tuples


class ReferenceStep:
    """One reference-style training step per call (see the module doc); hooks only here, in the baseline."""

    def __init__(self, setup: Setup, bridge: PrototypeBridge, *, lr: float = 1e-4,
                 max_grad_norm: float | None = 1.0, loss: str = "cosine") -> None:
        self.old_fm, self.new_fm, self.j, self.loss = setup.old_model.fm, setup.new_fm, setup.direction.j, loss
        self.x_old, self.x_new, self.bridge, self.max_grad_norm = setup.x_old, setup.x_new, bridge, max_grad_norm
        self.optimizer = torch.optim.Adam(bridge.parameters(), lr=lr)
        self.captured: dict[str, torch.Tensor] = {}
        self.handles = [
            self.new_fm.layers[setup.direction.i].register_forward_hook(self._keep("new")),
            self.old_fm.layers[-1].register_forward_hook(self._keep("last")),
        ]

    def _keep(self, key: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            self.captured[key] = _first(output)
        return hook

    def close(self) -> None:
        """Remove the hooks (the FMs are shared with the caller)."""
        for handle in self.handles:
            handle.remove()

    def __call__(self, index: torch.Tensor) -> float:
        old_fm, x_old = self.old_fm, self.x_old[index]
        with torch.no_grad():
            old_fm(x_old)
            target = old_fm.finalize(_canonical(old_fm, self.captured["last"]))
            self.new_fm(self.x_new[index])
            features = mean_tokens(_canonical(self.new_fm, self.captured["new"]))
        injected = _native(old_fm, self.bridge(features))
        handle = old_fm.layers[self.j].register_forward_pre_hook(lambda module, args: (injected, *args[1:]))
        try:
            old_fm(x_old)
        finally:
            handle.remove()
        pred = old_fm.finalize(_canonical(old_fm, self.captured["last"]))
        return _update(bridge_loss(pred, target, self.loss), list(self.bridge.parameters()), self.optimizer,
                       self.max_grad_norm)


def our_cache(setup: Setup, batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Bridge inputs ``(N, d_in)`` and old-FM final hidden states ``(N, T, d)`` of the pool (bridges.train)."""
    features = cache_bridge_inputs(setup.new_fm, None, setup.x_new, i=setup.direction.i, batch_size=batch_size)
    targets = cache_targets(setup.old_model, setup.x_old, j=setup.direction.j, batch_size=batch_size)
    return features, targets


class OurStep:
    """One step of :func:`bridges.train_loop.train_epoch` on cached features and targets."""

    def __init__(self, setup: Setup, bridge: PrototypeBridge, features: torch.Tensor, targets: TargetCache, *,
                 lr: float = 1e-4, max_grad_norm: float | None = 1.0, loss: str = "cosine",
                 micro_batch: int | None = None) -> None:
        d = setup.direction
        self.bridged = BridgedModel(nn.Identity(), setup.new_fm, bridge, setup.old_model.fm, setup.old_model.head,
                                    i=d.i, j=d.j).train()
        self.features, self.targets, self.loss, self.max_grad_norm = features, targets, loss, max_grad_norm
        self.micro_batch = micro_batch
        self.optimizer = torch.optim.Adam(bridge.parameters(), lr=lr)

    def __call__(self, index: torch.Tensor) -> float:
        self.optimizer.zero_grad()
        chunk, total = self.micro_batch or len(index), 0.0
        for m in range(0, len(index), chunk):  # gradient accumulation, as train_bridge(micro_batch_size=...)
            part = index[m : m + chunk]
            pred = self.bridged.final_hidden_from_features(self.features[part])
            part_loss = bridge_loss(pred, self.targets[part], self.loss) * (len(part) / len(index))
            part_loss.backward()
            total += float(part_loss.detach())
        if self.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.bridged.bridge.parameters(), self.max_grad_norm)
        self.optimizer.step()
        return total


def floor_step(setup: Setup, bridge: PrototypeBridge, features: torch.Tensor,
               targets: torch.Tensor) -> Callable[[], None]:
    """Bridge + old-FM suffix forward and backward on pre-made ``features`` ``(B, d_in)`` / ``targets``."""
    old_fm, j = setup.old_model.fm, setup.direction.j

    def step() -> None:
        for param in bridge.parameters():
            param.grad = None
        bridge_loss(old_fm.suffix(bridge(features), start=j), targets).backward()
    return step


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (matmuls, convolutions, attention), by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


class DistillStep:
    """One step of :func:`bridges.distill.distill` (unfrozen new-FM copy + linear head, teacher cached)."""

    def __init__(self, setup: Setup, *, lr: float = 1e-4, batch_size: int = 16, seed: int = 0) -> None:
        fm = freeze(copy.deepcopy(setup.new_fm))
        width = fm(setup.x_new[:1]).shape[1]
        head = make_head(width, N_CLASSES, generator=torch.Generator().manual_seed(seed)).to(setup.x_new.device)
        self.model = DistilledModel(fm, head).eval()  # BatchNorm statistics and dropout stay in eval mode
        train_only_used(self.model, self.model, setup.x_new[:1])
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)
        self.teacher = map_batches(setup.old_model, setup.x_old, batch_size)  # logits, once
        self.x_new = setup.x_new

    @property
    def n_trainable(self) -> int:
        """Trainable parameters (FM parameters on the feature path + head)."""
        return count_trainable(self.model)

    def __call__(self, index: torch.Tensor) -> float:
        loss = distillation_loss(self.model(self.x_new[index]), self.teacher[index], TEMPERATURE)
        return _update(loss, self.params, self.optimizer, None)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_steps(step: Callable[[torch.Tensor], float], order: list[torch.Tensor],
              device: str = "cpu") -> tuple[list[float], list[float]]:
    """Run ``step`` on each index batch; return the losses and the wall seconds of each step."""
    losses, seconds = [], []
    for index in order:
        _sync(device)
        start = time.perf_counter()
        losses.append(step(index))
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return losses, seconds


def _full_size(cache: torch.Tensor, n: int) -> torch.Tensor:
    """``cache`` tiled to ``n`` rows (real memory, as a whole pair set's cache would hold)."""
    out = torch.empty((n, *cache.shape[1:]), dtype=cache.dtype, device=cache.device)
    for start in range(0, n, len(cache)):
        out[start : start + len(cache)] = cache[: n - start]
    return out


@dataclass(frozen=True)
class RunSpec:
    """What one worker process measures."""

    direction: Direction
    approach: str  # one of APPROACHES
    size: str = "real"
    batch_size: int = 16
    steps: int = 3
    warmup: int = 1
    n_pool_batches: int = 2
    pair_windows: int = 2000
    lr: float = 1e-4
    max_grad_norm: float | None = 1.0
    threads: int = 0
    device: str = "cpu"
    seed: int = 0
    targets_dir: str | None = None
    micro_batch: int | None = None


def run_approach(spec: RunSpec) -> dict[str, Any]:
    """Build the setup, then measure one approach (meant to run in a fresh process); return a JSON-able dict."""
    if spec.threads:
        torch.set_num_threads(spec.threads)
    setup = build_setup(spec.direction, size=spec.size, n_windows=spec.batch_size * spec.n_pool_batches,
                        seed=spec.seed, device=spec.device)
    order = batch_order(len(setup.x_old), spec.batch_size, spec.warmup + spec.steps)
    out: dict[str, Any] = {"approach": spec.approach, "bridge_params": setup.bridge_config.n_parameters}
    opts = {"lr": spec.lr, "max_grad_norm": spec.max_grad_norm}
    baseline = memory_baseline(spec.device)
    if spec.approach == "reference":
        step: Callable[[torch.Tensor], float] = ReferenceStep(setup, new_bridge(setup), **opts)
    elif spec.approach in ("ours", "ours_plain"):
        micro = spec.micro_batch if spec.approach == "ours" else None
        _sync(spec.device)
        start = time.perf_counter()
        features, pool_targets = our_cache(setup, CACHE_PASS if spec.approach == "ours" else spec.batch_size)
        _sync(spec.device)
        out["cache_s_per_window"] = (time.perf_counter() - start) / len(setup.x_old)
        features = _full_size(features, spec.pair_windows)
        targets = TargetCache(spec.targets_dir if spec.approach == "ours" else None)
        for start in range(0, spec.pair_windows, len(pool_targets)):  # the pool's targets, tiled to the pair set
            targets.append(pool_targets[: spec.pair_windows - start])
        del pool_targets
        out["cache_mib"] = (features.nbytes + targets.resident_bytes) / 2**20
        out["micro_batch"] = micro
        step = OurStep(setup, new_bridge(setup), features, targets, micro_batch=micro, **opts)
    elif spec.approach == "distillation":
        step = DistillStep(setup, lr=spec.lr, batch_size=spec.batch_size, seed=spec.seed)
        out["trainable_params"] = step.n_trainable
    else:
        raise ValueError(f"unknown approach {spec.approach!r}")
    losses, seconds = run_steps(step, order, spec.device)
    out.update(peak_bytes=memory_peak(baseline, spec.device), losses=losses,
               step_s=statistics.median(seconds[spec.warmup :]))
    if spec.approach in ("ours", "ours_plain"):
        out["trainable_params"] = count_trainable(step.bridged)
        floor = floor_step(setup, new_bridge(setup), features[: spec.batch_size].clone(),
                           targets[: spec.batch_size].clone())
        out["floor_flops"] = count_flops(floor)
        _, floor_seconds = run_steps(lambda index: floor() or 0.0, order, spec.device)
        out["floor_s"] = statistics.median(floor_seconds[spec.warmup :])
    return out


def run_isolated(spec: RunSpec) -> dict[str, Any]:
    """:func:`run_approach` in a fresh spawned process (its own peak-memory counter and allocator)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_approach, spec).result()


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def direction_table(direction: Direction, results: dict[str, dict[str, Any]], *, batch_size: int,
                    pair_windows: int) -> str:
    """The markdown table and ratio lines of one direction."""
    steps_per_epoch = math.ceil(pair_windows / batch_size)
    ref, ours, plain, dist = (results[k] for k in APPROACHES)
    cache_s = {k: results[k]["cache_s_per_window"] * pair_windows for k in ("ours", "ours_plain")}
    epoch = {k: r["step_s"] * steps_per_epoch for k, r in results.items()}
    with_cache = {**epoch, **{k: epoch[k] + s / EPOCHS_AMORTISED for k, s in cache_s.items()}}
    floor_epoch = ours["floor_s"] * steps_per_epoch
    mib = {k: r["peak_bytes"] / 2**20 for k, r in results.items()}
    micro = ours.get("micro_batch") or batch_size
    d = direction
    lines = [
        f"### {d.name}: old {d.old} j={d.j} ← new {d.new} i={d.i}, r={d.rank}, P={d.n_prototypes}, "
        f"{d.window_s:g} s windows",
        "",
        f"Epoch = {pair_windows} pair windows = {steps_per_epoch} steps of {batch_size}. Ours: targets in a file "
        f"read per batch, each batch run as chunks of {micro} windows (gradients accumulated; same update), cache "
        f"of the pair set built in passes of {CACHE_PASS}: {cache_s['ours']:.1f} s once "
        f"({cache_s['ours'] / EPOCHS_AMORTISED:.2f} s/epoch over {EPOCHS_AMORTISED} epochs), "
        f"{ours['cache_mib']:.1f} MiB in RAM. Ours, plain: targets in RAM ({plain['cache_mib']:.0f} MiB), whole "
        "batches.",
        "",
        "| approach | s/step | s/epoch | s/epoch incl. cache/50 | peak MiB | loss step 1 | loss last step "
        "| trainable params |",
        "|---|---|---|---|---|---|---|---|",
    ]
    labels = {"reference": "reference", "ours": "ours", "ours_plain": "ours, plain", "distillation": "distillation"}
    for key, r in results.items():
        params = r.get("trainable_params", r["bridge_params"])
        lines.append(f"| {labels[key]} | {r['step_s']:.3f} | {epoch[key]:.1f} | {with_cache[key]:.1f} | "
                     f"{mib[key]:.0f} | {r['losses'][0]:.6f} | {r['losses'][-1]:.6f} | {params:,} |")
    lines.append(f"| floor (bridge + suffix fwd/bwd, whole batch) | {ours['floor_s']:.3f} | {floor_epoch:.1f} "
                 "| | | | | |")
    gflop = ours["floor_flops"] / 1e9
    lines += [
        "",
        f"- speed-up reference/ours: {_ratio(ref['step_s'], ours['step_s']):.2f}× per step, "
        f"{_ratio(epoch['reference'], with_cache['ours']):.2f}× per epoch with the cache amortised (target 2–6×); "
        f"plain: {_ratio(epoch['reference'], with_cache['ours_plain']):.2f}×",
        f"- ours/floor: {_ratio(ours['step_s'], ours['floor_s']):.2f}× (target ≤ 1.25×), plain/floor "
        f"{_ratio(plain['step_s'], ours['floor_s']):.2f}×; floor {gflop:.1f} GFLOP/step "
        f"= {_ratio(gflop, ours['floor_s']):.1f} GFLOP/s achieved",
        f"- memory ours/reference: {_ratio(mib['ours'], mib['reference']):.2f} (target ≤ 0.5); "
        f"ours/distillation: {_ratio(mib['ours'], mib['distillation']):.2f} (target ≤ 0.5); plain: "
        f"{_ratio(mib['ours_plain'], mib['reference']):.2f} of reference, "
        f"{_ratio(mib['ours_plain'], mib['distillation']):.2f} of distillation",
        f"- params bridge/distillation: {100 * _ratio(ours['trainable_params'], dist['trainable_params']):.1f}% "
        "(target ≤ 12%)",
        f"- |loss step 1 ours − reference| = {abs(ours['losses'][0] - ref['losses'][0]):.2e}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: measure every direction and print one table per direction."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--directions", default=",".join(DIRECTIONS), help="comma-separated: " + ",".join(DIRECTIONS))
    parser.add_argument("--steps", type=int, default=3, help="timed steps per approach (median reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (their losses are kept)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pair-windows", type=int, default=2000, help="pair-set size an epoch is extrapolated to")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-grad-norm", type=float, default=1.0, help="clip (as bridges.train); <= 0: none")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--size", default="real", choices=("real", "tiny"), help="tiny: test configs, for a dry run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write all measurements here")
    parser.add_argument("--micro-batch", type=int, default=None,
                        help="ours: windows per chunk of a batch (gradient accumulation) and per caching pass, for "
                             "every direction (default: each direction's own; 0: none)")
    parser.add_argument("--targets-dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="folder of ours' target-cache file (unlinked; a disk, not tmpfs, for a fair count)")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.directions.split(",") if n.strip()]
    unknown = [n for n in names if n not in DIRECTIONS]
    if unknown or args.steps < 1 or args.warmup < 0:
        parser.error(f"unknown directions {unknown}" if unknown else "--steps must be >= 1 and --warmup >= 0")
    torch.set_num_threads(args.threads)
    tables, everything = [], {}
    for name in names:
        direction = DIRECTIONS[name]
        if args.size == "tiny":  # positions that exist in the tiny configs
            direction = replace(direction, i=1, j=1)
        results = {}
        for approach in APPROACHES:
            spec = RunSpec(direction, approach, size=args.size, batch_size=args.batch_size, steps=args.steps,
                           warmup=args.warmup, pair_windows=args.pair_windows, lr=args.lr,
                           max_grad_norm=args.max_grad_norm if args.max_grad_norm > 0 else None,
                           threads=args.threads, device=args.device, seed=args.seed,
                           targets_dir=str(args.targets_dir),
                           micro_batch=direction.micro_batch if args.micro_batch is None else args.micro_batch or None)
            start = time.perf_counter()
            results[approach] = run_isolated(spec)
            print(f"[{name}] {approach}: {results[approach]['step_s']:.3f} s/step "
                  f"({time.perf_counter() - start:.0f} s with setup)", file=sys.stderr, flush=True)
        everything[name] = {"direction": asdict(direction), "results": results}
        tables.append(direction_table(direction, results, batch_size=args.batch_size, pair_windows=args.pair_windows))
    print(f"Command: python bench/bridge_training.py {shlex.join(sys.argv[1:] if argv is None else argv)}")
    print(f"Machine: {machine()}\n")
    print("\n\n".join(tables))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "directions": everything},
                                        indent=2))


if __name__ == "__main__":
    main()
