"""Issue 3 acceptance experiments: BioX-Bridge vs distillation in four directions, and a position-selection grid.

On simulated paired physiology (``bridges.data.simulated_paired``) with small FM configs and random initial
weights, each FM first pretrained without labels on its modality (SimCLR NT-Xent, :mod:`bridges.pretrain`):

* stress scenario (baseline / stress / amusement, 3 classes): ECG→PPG and PPG→ECG;
* sleep scenario (wake / sleep, 2 classes; EEG on the ``isruc_psg`` montage): EEG→ECG and ECG→EEG;
* gait scenario (walking / freezing, 2 classes; FOG's six EEG channels for LaBraM and three leg EMG channels for
  NormWear, 3-s windows): EEG→EMG and EMG→EEG (``--directions EEG→EMG,EMG→EEG``).

Per direction: subject-wise splits (train / val / pair / test), fit-head on the old FM (labeled old modality),
select (i, j), train the bridge, distil with the same pair set, epochs and batch size, evaluate both on the test
subjects' new-modality windows. Then, on one direction (``--grid-direction``), every (i, j) cell is trained with
the same budget (``--grid-seeds`` seeds each) and
the selected pair is ranked in that grid.

With ``--selection-seeds N`` each direction's bridge and distillation are also trained with seeds ``seed + 1 ..
seed + N - 1`` (seed ``seed`` is the run above; the FMs, the head, (i, j), r and P stay those of seed ``seed``),
and a "Model selection without labels" section compares, per run, the test macro-F1 of the epoch each selection
criterion keeps (``bridges.epoch_selection``: ``loss``, ``agreement``, ``labels``) with the best epoch in
hindsight (``bench/_label_free_selection.py``). ``--select-by`` sets the criterion that keeps the reported epoch.

Run ``python bench/transfer_experiments.py`` (about 15 min on 2 cores) or ``--quick`` (1-2 min smoke run);
results go to ``bench/TRANSFER.md``, ``bench/transfer_results.json`` and ``bench/figures/``. With ``--section NAME``
the report replaces (or adds) the block marked ``NAME`` in ``--out`` instead of the whole file, so a run of some
directions sits beside an earlier run of others, each with the command that produced it.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from bridges._batching import train_only_used
from bridges.data import PairedWindows, simulated_paired, split_subjects
from bridges.distill import distill
from bridges.epoch_selection import DEFAULT_SELECT_BY, SELECT_BY
from bridges.fm.base import FoundationModel
from bridges.fm.hubert_ecg import HubertECG
from bridges.fm.labram import Labram, LabramConfig
from bridges.fm.normwear import NormWear
from bridges.fm.normwear_layers import NormWearConfig
from bridges.fm.papagei import Papagei, PapageiConfig
from bridges.head import fit_head
from bridges.metrics import evaluate, metrics_from_predictions
from bridges.models import OldModel
from bridges.plots import plot_confusion, plot_selection
from bridges.preprocess import preprocess_for
from bridges.pretrain import pretrain_contrastive
from bridges.select import select_positions
from bridges.train import train_bridge

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/, also when this file is imported by path
from _label_free_selection import CHOICES, plot_regret, selection_record, summarise  # noqa: E402
from _transfer_report import report, write_report  # noqa: E402

HERE = Path(__file__).resolve().parent
T0 = time.perf_counter()

#: Directions: (name, scenario, old modality, new modality).
DIRECTIONS = [
    ("ECG→PPG", "stress", "ecg", "ppg"),
    ("PPG→ECG", "stress", "ppg", "ecg"),
    ("EEG→ECG", "sleep", "eeg", "ecg"),
    ("ECG→EEG", "sleep", "ecg", "eeg"),
    ("EEG→EMG", "gait", "eeg", "emg"),
    ("EMG→EEG", "gait", "emg", "eeg"),
]
#: Run unless ``--directions`` says otherwise (the FOG pair is run on its own: NormWear's 1,680 tokens cost most).
DEFAULT_DIRECTIONS = ("ECG→PPG", "PPG→ECG", "EEG→ECG", "ECG→EEG")
METRIC_KEYS = ("accuracy", "balanced_accuracy", "cohen_kappa", "f1_macro", "f1_weighted")


def stage(message: str) -> None:
    """One progress line with the elapsed wall time."""
    print(f"[{time.perf_counter() - T0:7.1f} s] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """Sizes and budgets of one run (flags override; ``--quick`` shrinks everything)."""

    seed: int
    n_subjects: int
    duration_stress_s: float
    duration_sleep_s: float
    window_stress_s: float
    step_stress_s: float
    window_sleep_s: float
    duration_gait_s: float
    step_gait_s: float
    hubert_hidden: int
    hubert_layers: int
    papagei_filters: int
    papagei_blocks: int
    labram_depth: int
    normwear_dim: int
    normwear_depth: int
    pretrain_epochs: int
    pretrain_lr: float
    pretrain_max_windows: int
    head_epochs: int
    head_lr: float
    unfreeze_head: bool
    epochs: int
    bridge_lr: float
    distill_lr: float
    batch_size: int
    rank: int
    prototypes: int
    init: str
    loss: str
    param_budget: float
    grid_epochs: int
    grid_seeds: int
    grid_direction: str
    grid: bool
    directions: list[str]
    section: str | None
    select_by: str = DEFAULT_SELECT_BY
    selection_seeds: int = 0

    @property
    def scenarios(self) -> set[str]:
        """The scenarios the chosen directions need."""
        return {d[1] for d in DIRECTIONS if d[0] in self.directions}


def parse_args(argv: list[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1-2 min smoke run (tiny sizes, few epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subjects", type=int, default=15, help="simulated subjects per scenario (15: 5/2/5/3 split)")
    p.add_argument("--duration-stress-s", type=float, default=600.0)
    p.add_argument("--duration-sleep-s", type=float, default=900.0)
    p.add_argument("--window-stress-s", type=float, default=20.0)
    p.add_argument("--step-stress-s", type=float, default=15.0)
    p.add_argument("--window-sleep-s", type=float, default=30.0)
    p.add_argument("--duration-gait-s", type=float, default=300.0)
    p.add_argument("--step-gait-s", type=float, default=1.5, help="gait windows are 3 s (FOG); FOG steps 0.3 s")
    p.add_argument("--hubert-hidden", type=int, default=64)
    p.add_argument("--hubert-layers", type=int, default=4)
    p.add_argument("--papagei-filters", type=int, default=16)
    p.add_argument("--papagei-blocks", type=int, default=8)
    p.add_argument("--labram-depth", type=int, default=2)
    p.add_argument("--normwear-dim", type=int, default=32, help="NormWear width (4 heads)")
    p.add_argument("--normwear-depth", type=int, default=4)
    p.add_argument("--pretrain-epochs", type=int, default=3)
    p.add_argument("--pretrain-lr", type=float, default=2e-3)
    p.add_argument("--pretrain-max-windows", type=int, default=256, help="random subset of unlabeled windows")
    p.add_argument("--head-epochs", type=int, default=100)
    p.add_argument("--head-lr", type=float, default=1e-2)
    p.add_argument("--unfreeze-head", action="store_true", help="fine-tune the old FM with its head")
    p.add_argument("--epochs", type=int, default=10, help="bridge and distillation epochs (same budget)")
    p.add_argument("--bridge-lr", type=float, default=1e-3)
    p.add_argument("--distill-lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--rank", type=int, default=4)
    p.add_argument("--prototypes", type=int, default=32)
    p.add_argument("--init", default="randreal_P", choices=["rand_P", "randreal_P"])
    p.add_argument("--loss", default="cosine", choices=["cosine", "mse", "l1"])
    p.add_argument("--param-budget", type=float, default=0.10,
                   help="bridge parameters at most this fraction of distillation's (P, then r, halved to fit)")
    p.add_argument("--grid-epochs", type=int, default=3)
    p.add_argument("--grid-seeds", type=int, default=1, help="cells trained with this many seeds; scores averaged")
    p.add_argument("--grid-direction", default="ECG→PPG", help="direction whose (i, j) grid is trained")
    p.add_argument("--no-grid", action="store_true")
    p.add_argument("--select-by", default=DEFAULT_SELECT_BY, choices=SELECT_BY,
                   help="validation criterion that keeps the bridge's and distillation's epoch")
    p.add_argument("--selection-seeds", type=int, default=0,
                   help="train bridge and distillation with this many seeds (the main run's is the first) and "
                        "compare the epoch each selection criterion keeps (0: skip)")
    p.add_argument("--directions", default=",".join(DEFAULT_DIRECTIONS),
                   help="comma-separated subset, e.g. 'ECG→PPG,EEG→ECG' (ASCII 'ECG->PPG' works too)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=HERE / "TRANSFER.md")
    p.add_argument("--section", default=None,
                   help="write the report as the block NAME of --out (replaced or added), not the whole file")
    p.add_argument("--json", type=Path, default=HERE / "transfer_results.json")
    p.add_argument("--figures", type=Path, default=HERE / "figures")
    a = p.parse_args(argv)
    directions = [d.strip().replace("->", "→") for d in a.directions.split(",") if d.strip()]
    unknown = sorted(set(directions) - {d[0] for d in DIRECTIONS})
    grid_direction = a.grid_direction.strip().replace("->", "→")
    if unknown or grid_direction not in {d[0] for d in DIRECTIONS}:
        p.error(f"unknown direction(s) {unknown or [grid_direction]}")
    s = Settings(
        seed=a.seed, n_subjects=a.subjects, duration_stress_s=a.duration_stress_s,
        duration_sleep_s=a.duration_sleep_s, window_stress_s=a.window_stress_s, step_stress_s=a.step_stress_s,
        window_sleep_s=a.window_sleep_s, duration_gait_s=a.duration_gait_s, step_gait_s=a.step_gait_s,
        hubert_hidden=a.hubert_hidden, hubert_layers=a.hubert_layers,
        papagei_filters=a.papagei_filters, papagei_blocks=a.papagei_blocks, labram_depth=a.labram_depth,
        normwear_dim=a.normwear_dim, normwear_depth=a.normwear_depth,
        pretrain_epochs=a.pretrain_epochs, pretrain_lr=a.pretrain_lr,
        pretrain_max_windows=a.pretrain_max_windows, head_epochs=a.head_epochs,
        head_lr=a.head_lr, unfreeze_head=a.unfreeze_head, epochs=a.epochs, bridge_lr=a.bridge_lr,
        distill_lr=a.distill_lr, batch_size=a.batch_size, rank=a.rank, prototypes=a.prototypes, init=a.init,
        loss=a.loss, param_budget=a.param_budget, grid_epochs=a.grid_epochs, grid_seeds=a.grid_seeds,
        grid_direction=grid_direction, grid=not a.no_grid,
        directions=directions, section=a.section, select_by=a.select_by, selection_seeds=a.selection_seeds,
    )
    if s.selection_seeds < 0:
        p.error(f"--selection-seeds must be >= 0, got {s.selection_seeds}")
    if a.quick:
        s.n_subjects, s.duration_stress_s, s.duration_sleep_s, s.duration_gait_s = 8, 600.0, 600.0, 120.0
        s.pretrain_epochs, s.pretrain_max_windows, s.head_epochs, s.epochs, s.grid_epochs = 1, 64, 20, 3, 1
        s.hubert_layers, s.papagei_blocks, s.labram_depth = 2, 6, 2
    return s, a


# ---------------------------------------------------------------------------------------------------- models


def build_fm(modality: str, window_s: float, s: Settings, channels: list[str]) -> FoundationModel:
    """A small FM of the modality's architecture with random weights (seeded)."""
    if modality == "ecg":
        h = s.hubert_hidden
        config = {"hidden_size": h, "num_hidden_layers": s.hubert_layers, "num_attention_heads": 4,
                  "intermediate_size": 2 * h, "conv_dim": (h,) * 5}
        return HubertECG.from_config(config, window_s=window_s, seed=s.seed)
    if modality == "ppg":
        config = PapageiConfig(base_filters=s.papagei_filters, n_blocks=s.papagei_blocks, projection_dim=32,
                               n_experts=2)
        return Papagei.from_config(config, window_s=window_s, random_state=s.seed)
    if modality == "eeg":
        base = LabramConfig.small()
        config = LabramConfig(embed_dim=base.embed_dim, depth=s.labram_depth, num_heads=base.num_heads,
                              conv_channels=base.conv_channels)
        return Labram.from_config(config, channels=channels, window_s=window_s, random_state=s.seed)
    if modality == "emg":
        config = NormWearConfig(embed_dim=s.normwear_dim, depth=s.normwear_depth, num_heads=4)
        return NormWear.from_config(config, n_channels=len(channels), window_s=window_s, random_state=s.seed)
    raise ValueError(modality)


def swap(w: PairedWindows) -> PairedWindows:
    """The same pairs with old and new exchanged (PPG→ECG from ECG/PPG windows)."""
    return PairedWindows(
        w.new, w.old, w.labels, w.subjects, list(w.class_names), w.new_modality, w.old_modality, w.new_sfreq_hz,
        w.old_sfreq_hz, list(w.new_channels), list(w.old_channels), dict(w.info),
    )


def distill_trainable(fm: FoundationModel, preprocess: nn.Module, probe: np.ndarray, n_classes: int) -> int:
    """Trainable parameters distillation will have: the FM parameters on the feature path + a linear head."""
    student = copy.deepcopy(fm)
    model = OldModel(student, nn.Identity(), copy.deepcopy(preprocess))
    train_only_used(student, model.features, torch.from_numpy(probe[:1]))
    width = student.pool(student.suffix(student.embed(preprocess(torch.from_numpy(probe[:1]))), 0)).shape[1]
    return sum(p.numel() for p in student.parameters() if p.requires_grad) + width * n_classes + n_classes


def fit_bridge_size(d_in: int, n_tokens: int, d_out: int, rank: int, prototypes: int, limit: int) -> tuple[int, int]:
    """(r, P) with ``r·d_in + P·T·r + d_out·P <= limit``: halve P (down to 4), then r (down to 1)."""

    def size(r: int, p: int) -> int:
        return r * d_in + p * n_tokens * r + d_out * p

    while size(rank, prototypes) > limit and (prototypes > 4 or rank > 1):
        if prototypes > 4:
            prototypes = max(4, prototypes // 2)
        else:
            rank = max(1, rank // 2)
    return rank, prototypes


def chance_f1(labels: np.ndarray, n_classes: int, seed: int) -> float:
    """Macro-F1 of uniformly random guesses on ``labels`` (mean of 20 draws)."""
    rng = np.random.default_rng(seed)
    return float(np.mean([
        metrics_from_predictions(labels, rng.integers(0, n_classes, len(labels)), n_classes).f1_macro
        for _ in range(20)
    ]))


# ---------------------------------------------------------------------------------------------------- stages


def make_data(s: Settings) -> dict[str, PairedWindows]:
    out = {}
    if "stress" in s.scenarios:
        stage(f"data: stress, {s.n_subjects} subjects × {s.duration_stress_s:.0f} s, {s.window_stress_s:.0f}-s windows")
        out["stress"] = simulated_paired("stress", "ecg", "ppg", s.n_subjects, s.duration_stress_s, seed=s.seed,
                                         window_s=s.window_stress_s, step_s=s.step_stress_s, progress=False)
    if "sleep" in s.scenarios:
        stage(f"data: sleep, {s.n_subjects} subjects × {s.duration_sleep_s:.0f} s, {s.window_sleep_s:.0f}-s windows")
        out["sleep"] = simulated_paired("sleep", "eeg", "ecg", s.n_subjects, s.duration_sleep_s, seed=s.seed + 1000,
                                        window_s=s.window_sleep_s, step_s=s.window_sleep_s, classes=2,
                                        devices={"eeg": "isruc_psg"}, progress=False)
    if "gait" in s.scenarios:
        stage(f"data: gait, {s.n_subjects} subjects × {s.duration_gait_s:.0f} s, 3-s windows every {s.step_gait_s:g} s")
        out["gait"] = simulated_paired("gait", "eeg", "emg", s.n_subjects, s.duration_gait_s, seed=s.seed + 2000,
                                       step_s=s.step_gait_s, progress=False)
    for name, w in out.items():
        stage(f"  {name}: {len(w)} windows, classes {dict(zip(w.class_names, np.bincount(w.labels).tolist()))}, "
              f"{w.old_modality} {w.old.shape[1:]} / {w.new_modality} {w.new.shape[1:]}")
    return out


def pretrain_all(data: dict[str, PairedWindows], splits: dict[str, dict[str, list[str]]], s: Settings,
                 figures: Path) -> tuple[dict[tuple[str, str], FoundationModel], dict[str, Any]]:
    """Pretrain one FM per (scenario, modality) on the unlabeled windows of the train + pair subjects."""
    fms, results = {}, {}
    for scenario, w in data.items():
        unlabeled = w.of_subjects(splits[scenario]["train"] + splits[scenario]["pair"])
        if len(unlabeled) > s.pretrain_max_windows:
            pick = np.random.default_rng(s.seed).choice(len(unlabeled), s.pretrain_max_windows, replace=False)
            unlabeled = unlabeled.subset(np.sort(pick))
        for side, modality, x, channels in (("old", w.old_modality, unlabeled.old, w.old_channels),
                                            ("new", w.new_modality, unlabeled.new, w.new_channels)):
            del side
            fm = build_fm(modality, w.info["window_s"], s, channels)
            stage(f"pretrain {scenario}/{modality} ({fm.name}, {sum(p.numel() for p in fm.parameters()):,} params) "
                  f"on {len(x)} unlabeled windows, {s.pretrain_epochs} epochs")
            r = pretrain_contrastive(fm, preprocess_for(fm.input_spec), x, epochs=s.pretrain_epochs,
                                     lr=s.pretrain_lr, batch_size=32, random_state=s.seed, progress=False)
            stage(f"  NT-Xent {r.loss[0]:.3f} → {r.loss[-1]:.3f}, {r.seconds:.0f} s")
            fms[(scenario, modality)] = fm
            results[f"{scenario}/{modality}"] = r.to_dict()
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axis = figure.subplots()
    for name, r in results.items():
        axis.plot(range(1, len(r["loss"]) + 1), r["loss"], marker="o", label=f"{name} ({r['fm']})")
    axis.set(xlabel="epoch", ylabel="NT-Xent loss", title="Contrastive pretraining (unlabeled windows)")
    axis.legend()
    save_figure(figure, figures / f"transfer_pretraining{'_' + s.section if s.section else ''}.png")
    return fms, results


def run_direction(name: str, scenario: str, data: PairedWindows, split: dict[str, list[str]],
                  fms: dict[tuple[str, str], FoundationModel], s: Settings, figures: Path) -> dict[str, Any]:
    w = data if data.old_modality == DIRECTION_OLD[name] else swap(data)
    parts = {k: w.of_subjects(v) for k, v in split.items()}
    old_fm = copy.deepcopy(fms[(scenario, w.old_modality)])
    new_fm = copy.deepcopy(fms[(scenario, w.new_modality)])
    old_pre, new_pre = preprocess_for(old_fm.input_spec), preprocess_for(new_fm.input_spec)
    tag = name.replace("→", "_to_").lower()
    sizes = {k: len(v) for k, v in parts.items()}
    stage(f"{name}: splits {sizes} windows; fit-head on {old_fm.name} ({'unfrozen' if s.unfreeze_head else 'frozen'})")
    old_model, head = fit_head(old_fm, old_pre, parts["train"], parts["val"], unfreeze=s.unfreeze_head,
                               epochs=s.head_epochs, lr=s.head_lr if not s.unfreeze_head else s.head_lr / 10,
                               batch_size=32, random_state=s.seed)
    teacher = evaluate(old_model, parts["test"])
    stage(f"  head: val macro-F1 {head.val_metrics['f1_macro']:.3f}; old model on test (old modality) "
          f"macro-F1 {teacher.f1_macro:.3f}")
    sel = select_positions(old_model, new_fm, new_pre, parts["pair"], random_state=s.seed)
    plot_selection(sel, figures / f"transfer_{tag}_selection.png", new_name=new_fm.name, old_name=old_fm.name)
    stage(f"  select: i={sel.i} (F1 {max(sel.f1_per_layer):.3f}), j={sel.j} (CKA {max(sel.cka_per_layer):.3f})")

    n_distill = distill_trainable(new_fm, new_pre, parts["pair"].new, w.n_classes)
    shapes_old = old_fm.layer_shapes()
    tokens, d_out = _layer_input_shape(old_fm, sel.j, shapes_old)
    d_in = new_fm.layer_shapes()[sel.i][1]
    rank, prototypes = fit_bridge_size(d_in, tokens, d_out, s.rank, s.prototypes, int(s.param_budget * n_distill))
    stage(f"  train bridge r={rank} P={prototypes} ({tokens}×{d_out} tokens), {s.epochs} epochs, lr {s.bridge_lr:g}")
    models = (old_model, new_fm, new_pre, parts, rank, prototypes)
    bridged, tr = train_bridge_of(models, sel.i, sel.j, s, s.seed, figures / f"transfer_{tag}_bridge_curve.png")
    bridge_test = evaluate(bridged, parts["test"])
    plot_confusion(bridge_test, figures / f"transfer_{tag}_bridge_confusion.png", title=f"BioX-Bridge {name} (test)")
    stage(f"  bridge: test macro-F1 {bridge_test.f1_macro:.3f} ({tr.n_trainable:,} params, "
          f"{tr.seconds_per_epoch:.2f} s/epoch, kept epoch {tr.best_epoch} by {tr.select_by}; {tr.chosen_epochs})")
    stage(f"  distill ({new_fm.name} unfrozen + linear head), {s.epochs} epochs, lr {s.distill_lr:g}")
    student, dr = distill_of(models, s, s.seed, figures / f"transfer_{tag}_distill_curve.png")
    distill_test = evaluate(student, parts["test"])
    stage(f"  distill: test macro-F1 {distill_test.f1_macro:.3f} ({dr.n_trainable:,} params, "
          f"{dr.seconds_per_epoch:.2f} s/epoch, kept epoch {dr.best_epoch} by {dr.select_by}; {dr.chosen_epochs})")
    return {
        "direction": name, "scenario": scenario, "classes": list(w.class_names), "split_windows": sizes,
        "split_subjects": split, "old_fm": old_fm.name, "new_fm": new_fm.name,
        "old_fm_params": sum(p.numel() for p in old_fm.parameters()),
        "new_fm_params": sum(p.numel() for p in new_fm.parameters()),
        "head": head.to_dict(), "teacher_test": teacher.to_dict(), "selection": sel.to_dict(),
        "bridge": tr.to_dict(), "bridge_test": bridge_test.to_dict(), "distill": dr.to_dict(),
        "distill_test": distill_test.to_dict(), "distill_params_predicted": n_distill,
        "chance_f1_macro": chance_f1(parts["test"].labels, w.n_classes, s.seed),
        "_models": models,
    }


def train_bridge_of(models: tuple, i: int, j: int, s: Settings, seed: int, plot_path: Path | None = None):
    """The direction's bridge at (i, j), trained with ``random_state=seed`` (initialisation and data order)."""
    old_model, new_fm, new_pre, parts, rank, prototypes = models
    return train_bridge(old_model, new_fm, new_pre, parts["pair"], parts["val"], parts["test"], i=i, j=j, rank=rank,
                        n_prototypes=prototypes, init=s.init, loss=s.loss, epochs=s.epochs, lr=s.bridge_lr,
                        batch_size=s.batch_size, random_state=seed, select_by=s.select_by, progress=False,
                        plot_path=plot_path)


def distill_of(models: tuple, s: Settings, seed: int, plot_path: Path | None = None):
    """The direction's distillation baseline, trained with ``random_state=seed`` (head and data order)."""
    old_model, new_fm, new_pre, parts, _, _ = models
    return distill(old_model, new_fm, new_pre, parts["pair"], parts["val"], parts["test"], epochs=s.epochs,
                   lr=s.distill_lr, batch_size=s.batch_size, random_state=seed, select_by=s.select_by,
                   plot_path=plot_path)


def run_selection(results: list[dict[str, Any]], s: Settings, figures: Path) -> dict[str, Any]:
    """Seeds ``s.seed .. s.seed + n - 1`` of every direction's bridge and distillation; which epoch each criterion
    keeps (seed ``s.seed`` is the main run, not trained again)."""
    records = []
    for r in results:
        records += [selection_record(r["direction"], "bridge", s.seed, r["bridge"]),
                    selection_record(r["direction"], "distill", s.seed, r["distill"])]
        for seed in range(s.seed + 1, s.seed + s.selection_seeds):
            stage(f"selection {r['direction']}, seed {seed}: bridge and distillation, {s.epochs} epochs each")
            _, tr = train_bridge_of(r["_models"], r["selection"]["i"], r["selection"]["j"], s, seed)
            _, dr = distill_of(r["_models"], s, seed)
            records += [selection_record(r["direction"], "bridge", seed, tr.to_dict()),
                        selection_record(r["direction"], "distill", seed, dr.to_dict())]
            for rec in records[-2:]:
                stage(f"  {rec['method']}: test macro-F1 by " + ", ".join(
                    f"{c} {rec['test_f1_chosen'][c]:.3f} (epoch {rec['chosen_epochs'][c]})" for c in CHOICES))
    selection = {"seeds": s.selection_seeds, "runs": records, "summary": summarise(records)}
    plot_regret(selection, figures / f"transfer_selection{'_' + s.section if s.section else ''}.png")
    return selection


DIRECTION_OLD = {d[0]: d[2] for d in DIRECTIONS}


def _layer_input_shape(fm: FoundationModel, j: int, shapes: list[tuple[int, int]]) -> tuple[int, int]:
    """(T, d) of the input of layer ``j`` (the stem output for j = 0)."""
    if j > 0:
        return shapes[j - 1]
    spec = fm.input_spec
    with torch.no_grad():
        h = fm.embed(torch.zeros(1, spec.n_channels, spec.n_samples))
    return tuple(h.shape[1:])


def run_grid(direction: dict[str, Any], s: Settings, figures: Path) -> dict[str, Any]:
    """Train a bridge at every (i, j) with ``s.grid_seeds`` seeds; rank the selected cell by mean val / test F1."""
    old_model, new_fm, new_pre, parts, rank, prototypes = direction["_models"]
    n_i, n_j = new_fm.n_layers, old_model.fm.n_layers
    val = np.zeros((s.grid_seeds, n_i, n_j))
    test = np.zeros((s.grid_seeds, n_i, n_j))
    params = np.zeros((n_i, n_j), dtype=int)
    stage(f"grid {direction['direction']}: {n_i}×{n_j} cells × {s.grid_seeds} seed(s), {s.grid_epochs} epochs each, "
          f"r={rank} P={prototypes}")
    for i in range(n_i):
        for j in range(n_j):
            for k in range(s.grid_seeds):
                _, r = train_bridge(old_model, new_fm, new_pre, parts["pair"], parts["val"], parts["test"], i=i, j=j,
                                    rank=rank, n_prototypes=prototypes, init=s.init, loss=s.loss,
                                    epochs=s.grid_epochs, lr=s.bridge_lr, batch_size=s.batch_size,
                                    random_state=s.seed + k, progress=False)
                val[k, i, j], test[k, i, j] = r.val_metrics["f1_macro"], r.test_metrics["f1_macro"]
                params[i, j] = r.n_trainable
        stage(f"  i={i}: val {np.round(val[:, i].mean(0), 3).tolist()} test {np.round(test[:, i].mean(0), 3).tolist()}")
    sel = direction["selection"]
    chosen = (sel["i"], sel["j"])
    val_mean, test_mean = val.mean(0), test.mean(0)

    def rank_of(scores: np.ndarray) -> int:  # 1 = best; ties share the better rank
        return int((scores > scores[chosen] + 1e-12).sum()) + 1

    out = {"direction": direction["direction"], "val_f1": val_mean.tolist(), "test_f1": test_mean.tolist(),
           "val_f1_per_seed": val.tolist(), "test_f1_per_seed": test.tolist(), "params": params.tolist(),
           "i": chosen[0], "j": chosen[1], "rank_by_val": rank_of(val_mean), "rank_by_test": rank_of(test_mean),
           "n_cells": n_i * n_j, "epochs": s.grid_epochs, "seeds": s.grid_seeds, "rank": rank,
           "prototypes": prototypes,
           "val_seed_sd": float(val.std(0, ddof=1).mean()) if s.grid_seeds > 1 else None}
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    for axis, scores, title in zip(figure.subplots(1, 2), (val_mean, test_mean), ("validation", "test"), strict=True):
        image = axis.imshow(scores, cmap="viridis", aspect="auto", vmin=min(val_mean.min(), test_mean.min()),
                            vmax=max(val_mean.max(), test_mean.max()))
        for i in range(n_i):
            for j in range(n_j):
                axis.text(j, i, f"{scores[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if scores[i, j] < (scores.max() + scores.min()) / 2 else "black")
        axis.add_patch(_rect(chosen))
        axis.set(xlabel=f"old FM ({old_model.fm.name}) layer j (input)", ylabel=f"new FM ({new_fm.name}) layer i",
                 title=f"{direction['direction']} grid, {title} macro-F1 (rank of selected: {rank_of(scores)})",
                 xticks=range(n_j), yticks=range(n_i))
        figure.colorbar(image, ax=axis)
    save_figure(figure, figures / "transfer_grid.png")
    return out


def _rect(cell: tuple[int, int]):
    from matplotlib.patches import Rectangle

    return Rectangle((cell[1] - 0.5, cell[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)


def save_figure(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    s, a = parse_args(argv)
    torch.set_num_threads(a.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stage(f"settings: {s}")
    data = make_data(s)
    splits = {sc: split_subjects(sorted(set(w.subjects)), random_state=s.seed) for sc, w in data.items()}
    fms, pretrain = pretrain_all(data, splits, s, a.figures)
    results = []
    for name, scenario, _, _ in DIRECTIONS:
        if name in s.directions:
            results.append(run_direction(name, scenario, data[scenario], splits[scenario], fms, s, a.figures))
    grid = None
    target = next((r for r in results if r["direction"] == s.grid_direction), None)
    if s.grid and target is not None:
        grid = run_grid(target, s, a.figures)
    selection = run_selection(results, s, a.figures) if s.selection_seeds else None
    wall = time.perf_counter() - T0
    for r in results:
        r.pop("_models")
    text = report(results, grid, pretrain, s, argv, wall, selection)
    write_report(a.out, text, s.section)
    a.json.write_text(json.dumps({"settings": s.__dict__, "argv": argv, "wall_s": wall, "pretraining": pretrain,
                                  "directions": results, "grid": grid, "selection": selection}, indent=1,
                                 default=str))
    stage(f"done in {wall / 60:.1f} min: {a.out}, {a.json}")
    print(text[text.index("## Results"):text.index("## Pretraining")], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
