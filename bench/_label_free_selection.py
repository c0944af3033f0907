"""The model-selection experiment of ``bench/transfer_experiments.py --selection-seeds N``: tables and a figure.

Each training run (bridge or distillation, one direction, one seed) scores every epoch by the three criteria of
:mod:`bridges.epoch_selection` and on the test split. From that record this module reads which epoch each
criterion keeps and that epoch's test macro-F1, against two references that are not criteria: **hindsight**
(the epoch with the best test macro-F1, not knowable in practice) and **last** (no selection: the final epoch).
Regret is hindsight's test macro-F1 minus the chosen epoch's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bridges.epoch_selection import SELECT_BY, best_index

#: Columns of the tables: the criteria, then the references.
CHOICES = (*SELECT_BY, "last", "hindsight")
METHODS = {"bridge": "BioX-Bridge", "distill": "distillation"}


def selection_record(direction: str, method: str, seed: int, history: dict[str, Any]) -> dict[str, Any]:
    """One run's per-epoch criteria and test macro-F1, and the epoch and test macro-F1 of every choice.

    Parameters
    ----------
    direction, method, seed
        What was trained (``method`` is ``"bridge"`` or ``"distill"``) and its ``random_state``.
    history : dict
        ``TrainResult.to_dict()`` or ``DistillResult.to_dict()`` (a :class:`bridges.metrics.FitHistory`).
    """
    epochs = list(history["eval_epochs"])
    test_f1 = [h["f1_macro"] for h in history["test_history"]]
    if len(test_f1) != len(epochs):
        raise ValueError(f"{direction} {method}: the run has no test score at every scored epoch")
    chosen = {c: history["chosen_epochs"][c] for c in SELECT_BY}
    chosen["last"] = epochs[-1]
    chosen["hindsight"] = epochs[best_index(test_f1, "labels")]  # the best test macro-F1, earliest on ties
    return {
        "direction": direction, "method": method, "seed": seed, "eval_epochs": epochs,
        "val_pair_loss": list(history["val_pair_loss"]), "val_agreement_f1": list(history["val_agreement_f1"]),
        "val_labels_f1": [h["f1_macro"] for h in history["val_history"]], "test_f1": test_f1,
        "chosen_epochs": chosen, "test_f1_chosen": {c: test_f1[epochs.index(e)] for c, e in chosen.items()},
    }


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method (and ``"all"``) and choice: mean test macro-F1, mean and worst regret, and the runs where a
    criterion beats / ties / trails ``"labels"``; ``best`` names the criterion of the highest mean."""
    out: dict[str, Any] = {}
    for method in (*METHODS, "all"):
        runs = [r for r in records if method in ("all", r["method"])]
        if not runs:
            continue
        f1 = {c: np.array([r["test_f1_chosen"][c] for r in runs]) for c in CHOICES}
        rows = {}
        for c in CHOICES:
            regret = f1["hindsight"] - f1[c]
            diff = f1[c] - f1["labels"]
            rows[c] = {"mean_test_f1": float(f1[c].mean()), "mean_regret": float(regret.mean()),
                       "worst_regret": float(regret.max()), "n_runs": len(runs),
                       "vs_labels": [int((diff > 1e-9).sum()), int((np.abs(diff) <= 1e-9).sum()),
                                     int((diff < -1e-9).sum())]}
        # An exact tie keeps "labels" (the status quo): a label-free default must be better, not equal.
        best = max(SELECT_BY, key=lambda c: (round(rows[c]["mean_test_f1"], 12), c == "labels"))
        out[method] = {"choices": rows, "best": best}
    return out


def report_lines(selection: dict[str, Any], *, epochs: int, main_seed: int) -> list[str]:
    """The ``## Model selection without labels`` section of the report."""
    records, summary, n_seeds = selection["runs"], selection["summary"], selection["seeds"]
    seeds = f"{main_seed}–{main_seed + n_seeds - 1}" if n_seeds > 1 else str(main_seed)
    lines = [
        "## Model selection without labels", "",
        f"Each direction's bridge and distillation trained with {n_seeds} seed(s) ({seeds}: initialisation and "
        "data order; the pretrained FMs, the old model's head, (i, j), r and P stay those of the run above, seed "
        f"{main_seed}), {epochs} epochs, every epoch scored. Per run, the test macro-F1 of the epoch each criterion "
        "keeps (`bridges.epoch_selection`): **loss** — the method's training loss on the validation pairs "
        "(alignment loss for the bridge, T² · KL to the teacher for distillation), no labels; **agreement** — "
        "macro-F1 of its predictions against the old model's predictions on the paired old-modality windows, no "
        "labels; **labels** — validation macro-F1 on true labels (the paper's choice; a user without labels for "
        "the new modality cannot compute it). References, not criteria: **last** — the final epoch, no "
        "selection; **hindsight** — the epoch with the best test macro-F1. Regret = hindsight − chosen.", "",
        "| method | choice | mean test macro-F1 | mean regret | worst regret | vs labels (better / same / worse) |",
        "|---|---|---|---|---|---|",
    ]
    for method in (*METHODS, "all"):
        if method not in summary:
            continue
        name = METHODS.get(method, "both")
        for c in CHOICES:
            row = summary[method]["choices"][c]
            better = "—" if c in ("labels", "hindsight") else " / ".join(str(v) for v in row["vs_labels"])
            mark = "**" if c == summary[method]["best"] else ""
            lines.append(f"| {name} | {mark}{c}{mark} | {row['mean_test_f1']:.3f} | {row['mean_regret']:.3f} | "
                         f"{row['worst_regret']:.3f} | {better} |")
    best = {m: summary[m]["best"] for m in summary}
    overall = best.get("all")
    lines += ["", f"Best criterion on average over {summary['all']['choices']['labels']['n_runs']} runs: "
              f"**{overall}** (BioX-Bridge: {best.get('bridge', '—')}, distillation: {best.get('distill', '—')}); "
              + ("neither label-free criterion beats the labeled one on average here, so selecting without labels "
                 "for the new modality costs the regret shown." if overall == "labels" else
                 f"it needs no labels for the new modality. `bridges.epoch_selection.DEFAULT_SELECT_BY` should be "
                 f"\"{overall}\".")
              + " Differences smaller than the spread between seeds (per-run table) are not evidence either way.",
              "", "Per run (epoch kept by each choice, then its test macro-F1):", "",
              "| direction | method | seed | epoch: loss / agreement / labels / hindsight | loss | agreement | "
              "labels | last | hindsight | test F1 over epochs (min–max) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        e, f = r["chosen_epochs"], r["test_f1_chosen"]
        lines.append(
            f"| {r['direction']} | {METHODS[r['method']]} | {r['seed']} | {e['loss']} / {e['agreement']} / "
            f"{e['labels']} / {e['hindsight']} | " + " | ".join(f"{f[c]:.3f}" for c in CHOICES)
            + f" | {min(r['test_f1']):.3f}–{max(r['test_f1']):.3f} |")
    lines += ["", "Per-epoch criteria and test macro-F1 of every run: `selection.runs` in the JSON results.", ""]
    return lines


def plot_regret(selection: dict[str, Any], path: Path) -> Path:
    """Regret of each choice per run (dots) and its mean (bar), one panel per method."""
    methods = [m for m in METHODS if m in selection["summary"]]
    figure = Figure(figsize=(5 * len(methods), 3.8), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(methods)))
    rng = np.random.default_rng(0)  # horizontal jitter only
    shown = CHOICES[:-1]
    for axis, method in zip(axes, methods, strict=True):
        runs = [r for r in selection["runs"] if r["method"] == method]
        for k, c in enumerate(shown):
            regret = np.array([r["test_f1_chosen"]["hindsight"] - r["test_f1_chosen"][c] for r in runs])
            axis.bar(k, regret.mean(), color="tab:blue" if c in SELECT_BY else "tab:gray", alpha=0.5)
            axis.plot(k + rng.uniform(-0.2, 0.2, len(regret)), regret, "k.", markersize=5)
        axis.set_xticks(range(len(shown)), shown)
        axis.set(ylabel="regret (hindsight − chosen test macro-F1)",
                 title=f"{METHODS[method]}: {len(runs)} runs (directions × seeds)")
        axis.grid(alpha=0.3, axis="y")
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    tmp = path.with_name(path.name + ".tmp.png")
    figure.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)
    return path
