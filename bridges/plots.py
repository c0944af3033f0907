"""PNG figures of the method's steps: pretraining loss, selection curves, training curve, confusion matrix.

Figures are drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend switch, no
display needed) and written atomically (temp file, then rename). Each function takes the step's result (the
dataclass or its ``to_dict()``) and a path, and returns the path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_confusion", "plot_pretrain_loss", "plot_selection", "plot_training_curve"]


def _as_dict(result: Any) -> Mapping[str, Any]:
    return result if isinstance(result, Mapping) else result.to_dict()


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    FigureCanvasAgg(figure)
    figure.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)
    return path


def plot_pretrain_loss(result: Any, path: str | Path, *, title: str = "Contrastive pretraining") -> Path:
    """NT-Xent loss per epoch, against the loss of features that tell no window apart, ``ln(2B - 1)``.

    Parameters
    ----------
    result : PretrainResult or dict
        From :func:`bridges.pretrain.pretrain_contrastive` (``loss``, ``batch_size``, ``n_windows``, ``fm``).
    path : str or Path
        PNG to write.
    title : str
        Figure title (the FM's name and window count are added).
    """
    r = _as_dict(result)
    figure = Figure(figsize=(7.5, 3.8), layout="constrained")
    axis = figure.subplots()
    loss = np.asarray(r["loss"])
    axis.plot(np.arange(1, len(loss) + 1), loss, marker="o", label="NT-Xent (mean over windows)")
    # Equal similarity to every other view: the loss a batch of B windows starts near, whatever it learns later.
    batch = min(int(r["batch_size"]), int(r["n_windows"]))
    axis.axhline(np.log(2 * batch - 1), color="tab:grey", linestyle="--", label=f"no discrimination, ln(2·{batch} − 1)")
    axis.set(xlabel="epoch", ylabel="NT-Xent loss", title=f"{title}: {r['fm']}, {r['n_windows']} windows",
             xlim=(0.5, len(loss) + 0.5))
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend()
    return _save(figure, path)


def plot_selection(result: Any, path: str | Path, *, new_name: str = "new FM", old_name: str = "old FM") -> Path:
    """Both selection curves: stage-1 macro-F1 per new-FM layer and stage-2 CKA per old-FM position ``j``.

    Parameters
    ----------
    result : SelectionResult or dict
        From :func:`bridges.select.select_positions`.
    path : str or Path
        PNG to write.
    new_name, old_name : str
        FM names for the axis labels.
    """
    r = _as_dict(result)
    figure = Figure(figsize=(10, 3.8), layout="constrained")
    left, right = figure.subplots(1, 2)
    f1 = np.asarray(r["f1_per_layer"])
    cka = np.asarray(r["cka_per_layer"])
    left.plot(np.arange(len(f1)), f1, marker="o")
    left.axvline(r["i"], color="tab:red", linestyle="--", label=f"i = {r['i']}")
    left.set(xlabel=f"{new_name} layer (output)", ylabel="5-fold macro-F1 vs pseudo-labels",
             title="Stage 1: bridge input")
    right.plot(np.arange(len(cka)), cka, marker="o", color="tab:green")
    right.axvline(r["j"], color="tab:red", linestyle="--", label=f"j = {r['j']}")
    right.set(xlabel=f"{old_name} layer j (its input)", ylabel="linear CKA", title="Stage 2: bridge output")
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in (left, right):
        axis.legend()
        axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_training_curve(result: Any, path: str | Path) -> Path:
    """Training curve and the epoch-selection criteria: which epoch each would keep, and which was kept.

    Left: the training loss per epoch and the same loss on the validation pairs at the scored epochs (criterion
    ``"loss"``). Right: macro-F1 against true labels (validation: criterion ``"labels"``; test: for the record)
    and against the old model's pseudo-labels on the validation pairs (criterion ``"agreement"``). A star marks
    the epoch each criterion would keep; the dashed line the epoch kept (by ``select_by``).

    Parameters
    ----------
    result : TrainResult, DistillResult or dict
        With ``train_loss``, ``eval_epochs``, ``val_history``, ``test_history`` and ``best_epoch``; also
        ``val_pair_loss``, ``val_agreement_f1``, ``chosen_epochs`` and ``select_by`` when recorded.
    path : str or Path
        PNG to write.
    """
    r = _as_dict(result)
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    loss = np.asarray(r["train_loss"])
    epochs = list(r["eval_epochs"])
    chosen = r.get("chosen_epochs") or {}
    left.plot(np.arange(1, len(loss) + 1), loss, label="training pairs")
    curves = [(left, "loss", "validation pairs", r.get("val_pair_loss") or [], "tab:purple")]
    curves += [(right, "labels", "validation, true labels", [h["f1_macro"] for h in r["val_history"]], "tab:blue"),
               (right, None, "test, true labels", [h["f1_macro"] for h in r["test_history"]], "tab:orange"),
               (right, "agreement", "validation, old model's pseudo-labels", r.get("val_agreement_f1") or [],
                "tab:green")]
    for axis, criterion, name, values, colour in curves:
        if not values:
            continue
        axis.plot(epochs, values, marker=".", color=colour, label=name)
        if criterion in chosen:
            k = epochs.index(chosen[criterion])
            axis.plot([epochs[k]], [values[k]], marker="*", markersize=14, color=colour, linestyle="none",
                      label=f"'{criterion}' keeps epoch {chosen[criterion]}")
    left.set(xlabel="epoch", ylabel=f"loss ({r.get('loss', 'kl')})", title="Loss")
    if r.get("best_epoch"):
        by = f" by '{r['select_by']}'" if r.get("select_by") else ""
        for axis in (left, right):
            axis.axvline(r["best_epoch"], color="tab:red", linestyle="--",
                         label=f"kept: epoch {r['best_epoch']}{by}" if axis is right else None)
    right.set(xlabel="epoch", ylabel="macro-F1", title="Selection criteria and test", ylim=(0, 1.02))
    for axis in (left, right):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    return _save(figure, path)


def plot_confusion(metrics: Any, path: str | Path, *, title: str = "Confusion matrix") -> Path:
    """Confusion matrix, row-normalised colours with counts and row percentages written in the cells.

    Parameters
    ----------
    metrics : Metrics or dict
        From :func:`bridges.metrics.evaluate`.
    path : str or Path
        PNG to write.
    title : str
        Figure title.
    """
    m = _as_dict(metrics)
    counts = np.asarray(m["confusion"], dtype=float)
    names = list(m.get("class_names") or range(len(counts)))
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = 2.5 + 0.7 * len(names)
    figure = Figure(figsize=(size + 1, size), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axis, label="share of true class")
    for t in range(len(names)):
        for p in range(len(names)):
            colour = "white" if share[t, p] > 0.6 else "black"
            axis.text(p, t, f"{int(counts[t, p])}\n{share[t, p]:.0%}", ha="center", va="center", color=colour)
    axis.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set(xlabel="predicted", ylabel="true",
             title=f"{title}\nmacro-F1 {m['f1_macro']:.3f}, accuracy {m['accuracy']:.3f}, n={m['n']}")
    return _save(figure, path)
