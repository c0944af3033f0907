"""Steps 2-4 of the method: pseudo-labels and the choice of bridge positions ``i`` and ``j`` (DESIGN.md §2).

Stage 1 (input position ``i``): every new-FM layer's output, mean-pooled over tokens, is scored by the 5-fold
stratified cross-validated macro-F1 of a logistic regression against the old model's pseudo-labels.

Stage 2 (output position ``j``): linear CKA between the chosen new-FM features and the old FM's representation
at each candidate position, on the old-modality half of the paired set.

**What ``j`` means.** The bridge output *replaces the input of old-FM layer* ``j`` (``suffix(h, start=j)``), and
``cka_per_layer[j]`` is measured against exactly that tensor: the stem output for ``j = 0``, the output of layer
``j - 1`` otherwise. This follows the reference implementation (chenqi-li/BioX-Bridge): its ``store_features``
mode records the *input* of ``fm_old.<layers>[k]`` with a forward hook as the stage-2 feature of position ``k``,
and ``train`` injects the bridge output with a forward pre-hook that replaces the input of that same layer
``k``. (The reference mean-pools that input over tokens before CKA; ``reduce="mean"`` does the same, the
default ``reduce="flatten"`` keeps the token structure the bridge has to produce, as DESIGN.md §2 states.)
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn

from bridges._batching import map_batches
from bridges.data.windows import PairedWindows
from bridges.fm.base import FoundationModel
from bridges.models import OldModel, mean_tokens
from devices._checks import check_value, ensure_int
from devices.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = [
    "SelectionResult",
    "linear_cka",
    "pooled_layer_features",
    "pseudo_labels",
    "score_input_layers",
    "score_features",
    "score_output_layers",
    "select_positions",
]

CKA_REDUCTIONS = ("flatten", "mean")


@dataclass
class SelectionResult:
    """Chosen bridge positions and the curves they were chosen from.

    Attributes
    ----------
    i : int
        New-FM layer whose output (mean-pooled) feeds the bridge: ``argmax f1_per_layer``.
    j : int
        Old-FM layer whose input the bridge output replaces: ``argmax cka_per_layer``.
    f1_per_layer : list of float
        Stage 1: cross-validated macro-F1 per new-FM layer.
    cka_per_layer : list of float
        Stage 2: linear CKA per old-FM position ``j`` (against the input of layer ``j``).
    pseudo_label_counts : list of int
        Paired windows per pseudo-label class.
    n_windows : int
        Paired windows used.
    cka_reduce : str
        ``"flatten"`` or ``"mean"`` (how the old-FM tokens were reduced for CKA).
    n_cka_windows : int
        Windows used for CKA (a random subset when the paired set exceeds ``max_cka_windows``).
    """

    i: int
    j: int
    f1_per_layer: list[float]
    cka_per_layer: list[float]
    pseudo_label_counts: list[int]
    n_windows: int
    cka_reduce: str = "flatten"
    n_cka_windows: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict."""
        return asdict(self)


@torch.no_grad()
def pseudo_labels(old_model: OldModel, pair_windows: PairedWindows, *, batch_size: int = 64) -> np.ndarray:
    """Old model's predicted class ``(N,)`` int64 on the old-modality half of the paired windows."""
    old_model.eval()
    logits = map_batches(old_model, pair_windows.old, batch_size)
    return logits.argmax(dim=1).numpy().astype(np.int64)


@torch.no_grad()
def pooled_layer_features(
    fm: FoundationModel, preprocess: nn.Module | None, x: np.ndarray, *, batch_size: int = 32
) -> list[np.ndarray]:
    """Every layer's output mean-pooled over tokens: a list of ``n_layers`` arrays ``(N, d_k)`` float32."""
    preprocess = nn.Identity() if preprocess is None else preprocess
    fm.eval()
    per_layer: list[list[np.ndarray]] = [[] for _ in range(fm.n_layers)]
    tensor = torch.as_tensor(x)
    for s in range(0, len(tensor), batch_size):
        for k, h in enumerate(fm.hidden_states(preprocess(tensor[s : s + batch_size]))):
            per_layer[k].append(mean_tokens(h).float().numpy())
    return [np.concatenate(chunks) for chunks in per_layer]


def _cv_plan(labels: np.ndarray, n_folds: int) -> tuple[np.ndarray, int]:
    """Windows usable for CV and the fold count: classes with < 2 members dropped, folds <= smallest class."""
    classes, counts = np.unique(labels, return_counts=True)
    kept = classes[counts >= 2]
    if len(kept) < 2:
        raise BadInputError(
            f"pseudo-labels hold {len(classes)} class(es) with counts {counts.tolist()}; position selection needs "
            "at least two classes with two or more paired windows each (is the head predicting one class?)"
        )
    if len(kept) < len(classes):
        logger.warning("Pseudo-label classes %s have a single window and are left out of stage 1.",
                       classes[counts < 2].tolist())
    n_splits = int(min(n_folds, counts[counts >= 2].min()))
    if n_splits < n_folds:
        logger.warning("Smallest pseudo-label class has %d windows: using %d folds instead of %d.",
                       n_splits, n_splits, n_folds)
    return np.flatnonzero(np.isin(labels, kept)), n_splits


def score_features(
    features: np.ndarray, labels: np.ndarray, *, n_folds: int = 5, random_state: int = 0
) -> float:
    """Mean cross-validated macro-F1 of a logistic regression on ``features`` ``(N, d)`` against ``labels``.

    Features are standardised inside each fold (fit on the training folds); the regression is scikit-learn's
    ``LogisticRegression(max_iter=1000)``. Folds are stratified and shuffled with ``random_state``.
    """
    keep, n_splits = _cv_plan(np.asarray(labels), n_folds)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(model, features[keep], labels[keep], cv=folds, scoring="f1_macro")
    return float(np.mean(scores))


def score_input_layers(
    new_fm: FoundationModel,
    preprocess: nn.Module | None,
    pair_windows: PairedWindows,
    pseudo_labels: np.ndarray,
    *,
    n_folds: int = 5,
    random_state: int = 0,
    batch_size: int = 32,
) -> tuple[list[float], list[np.ndarray]]:
    """Stage 1: score every new-FM layer for predicting the pseudo-labels.

    Parameters
    ----------
    new_fm : FoundationModel
        The new FM (frozen).
    preprocess : nn.Module or None
        Raw new-modality window → new-FM input; identity when None.
    pair_windows : PairedWindows
        Paired windows (``new`` half used).
    pseudo_labels : array of shape (N,), int
        The old model's predictions on the ``old`` half (see :func:`pseudo_labels`).
    n_folds : int
        Cross-validation folds (fewer when the smallest pseudo-label class is smaller; classes with one window
        are left out).
    random_state : int
        Seed of the fold shuffling.
    batch_size : int
        Windows per forward pass.

    Returns
    -------
    f1_per_layer : list of float
        Mean cross-validated macro-F1 per layer, ``n_layers`` values.
    features : list of array (N, d_k)
        The mean-pooled features of every layer (reuse the chosen one for stage 2 and training).
    """
    n_folds = ensure_int(n_folds, "n_folds", minimum=2)
    labels = np.asarray(pseudo_labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(pair_windows):
        raise BadInputError(f"{len(labels)} pseudo-labels for {len(pair_windows)} paired windows")
    features = pooled_layer_features(new_fm, preprocess, pair_windows.new, batch_size=batch_size)
    scores = [score_features(f, labels, n_folds=n_folds, random_state=random_state) for f in features]
    for k, score in enumerate(scores):
        logger.info("Stage 1: %s layer %d, macro-F1 %.4f.", new_fm.name, k, score)
    return scores, features


def _centred_gram(x: torch.Tensor) -> torch.Tensor:
    """Doubly centred linear Gram matrix ``H X Xᵀ H`` ``(N, N)`` float64 of ``x`` ``(N, D)``.

    Wide representations stay float32 for the product (memory), narrow ones are promoted to float64.
    """
    x = x.reshape(len(x), -1)
    if x.shape[1] <= 4096:
        x = x.to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)  # centring the features centres the Gram on both sides
    return (x @ x.T).to(torch.float64)


def _cka_from_grams(gram_x: torch.Tensor, gram_y: torch.Tensor) -> float:
    """Linear CKA from two centred Gram matrices: ``<Kx, Ky>_F / (||Kx||_F ||Ky||_F)``."""
    denominator = torch.linalg.norm(gram_x) * torch.linalg.norm(gram_y)
    if denominator == 0:
        return 0.0
    return float((gram_x * gram_y).sum() / denominator)


def linear_cka(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Linear CKA of two representations of the same ``N`` samples.

    ``CKA = ||Yᵀ X||²_F / (||Xᵀ X||_F ||Yᵀ Y||_F)`` on column-centred ``X`` ``(N, D_x)`` and ``Y`` ``(N, D_y)``
    (trailing dimensions are flattened). When a representation is wider than ``N``, the identity
    ``||Yᵀ X||²_F = <X Xᵀ, Y Yᵀ>_F`` lets the ``N × N`` Gram matrices stand in for the ``D × D`` products, so
    ``D = T·d`` in the hundreds of thousands costs ``N² D``, never ``D²``. Returns 0 for a constant input.
    """
    x = torch.as_tensor(x).reshape(len(x), -1).to(torch.float64)
    y = torch.as_tensor(y).reshape(len(y), -1).to(torch.float64)
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same samples on both sides, got {len(x)} and {len(y)}")
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    if max(x.shape[1], y.shape[1]) <= len(x):  # feature-space form is cheaper
        denominator = torch.linalg.norm(x.T @ x) * torch.linalg.norm(y.T @ y)
        return 0.0 if denominator == 0 else float(torch.linalg.norm(y.T @ x) ** 2 / denominator)
    return _cka_from_grams(x @ x.T, y @ y.T)


@torch.no_grad()
def score_output_layers(
    chosen_new_features: np.ndarray,
    old_fm: FoundationModel,
    preprocess: nn.Module | None,
    pair_windows: PairedWindows,
    *,
    reduce: str = "flatten",
    batch_size: int = 32,
) -> list[float]:
    """Stage 2: linear CKA between the chosen new-FM features and the old FM's input of every layer ``j``.

    The old FM is swept layer by layer over all windows at once: the stem runs on every window, the Gram matrix
    of that representation is taken, then layer 0 runs on it, and so on. Peak memory is one layer's activations
    for the ``N`` windows (pass a subset to bound it), and the compute is one forward pass.

    Parameters
    ----------
    chosen_new_features : array of shape (N, d_in)
        Mean-pooled new-FM layer-``i`` output of the paired windows (from :func:`score_input_layers`).
    old_fm : FoundationModel
        The old FM (frozen).
    preprocess : nn.Module or None
        Raw old-modality window → old-FM input; identity when None.
    pair_windows : PairedWindows
        The same ``N`` paired windows (``old`` half used).
    reduce : {"flatten", "mean"}
        Compare against the flattened tokens ``(N, T·d)`` (default) or their mean over tokens ``(N, d)`` (as the
        reference implementation does).
    batch_size : int
        Windows per forward pass.

    Returns
    -------
    list of float
        ``cka[j]`` for ``j = 0 .. n_layers - 1``: CKA against the input of old-FM layer ``j``.
    """
    check_value(reduce, CKA_REDUCTIONS, "reduce")
    if len(chosen_new_features) != len(pair_windows):
        raise BadInputError(f"{len(chosen_new_features)} feature rows for {len(pair_windows)} paired windows")
    preprocess = nn.Identity() if preprocess is None else preprocess
    old_fm.eval()
    gram_new = _centred_gram(torch.as_tensor(chosen_new_features))
    h = map_batches(lambda x: old_fm.embed(preprocess(x)), pair_windows.old, batch_size)
    scores = []
    for j in range(old_fm.n_layers):
        representation = h if reduce == "flatten" else mean_tokens(h)
        scores.append(_cka_from_grams(gram_new, _centred_gram(representation)))
        logger.info("Stage 2: %s input of layer %d %s, CKA %.4f.", old_fm.name, j, tuple(h.shape[1:]), scores[-1])
        if j + 1 < old_fm.n_layers:
            h = map_batches(lambda t, k=j: old_fm._run_layer(k, t), h, batch_size)
    return scores


def select_positions(
    old_model: OldModel,
    new_fm: FoundationModel,
    new_preprocess: nn.Module | None,
    pair_windows: PairedWindows,
    *,
    n_folds: int = 5,
    random_state: int = 0,
    cka_reduce: str = "flatten",
    max_cka_windows: int = 1000,
    batch_size: int = 32,
) -> SelectionResult:
    """Run pseudo-labelling, stage 1 and stage 2; return the chosen ``i``, ``j`` and both curves.

    Parameters
    ----------
    old_model : OldModel
        Old preprocess + FM + trained head.
    new_fm : FoundationModel
        The new FM.
    new_preprocess : nn.Module or None
        Raw new-modality window → new-FM input.
    pair_windows : PairedWindows
        The paired (unlabeled) windows; their labels are not used.
    n_folds, random_state
        Stage-1 cross-validation (see :func:`score_input_layers`); ``random_state`` also draws the CKA subset.
    cka_reduce : {"flatten", "mean"}
        See :func:`score_output_layers`.
    max_cka_windows : int
        At most this many paired windows (a random subset) enter stage 2, bounding its memory.
    batch_size : int
        Windows per forward pass.
    """
    max_cka_windows = ensure_int(max_cka_windows, "max_cka_windows", minimum=4)
    labels = pseudo_labels(old_model, pair_windows, batch_size=batch_size)
    counts = np.bincount(labels, minlength=pair_windows.n_classes)
    logger.info("Pseudo-labels on %d paired windows: %s.", len(labels), counts.tolist())
    f1, features = score_input_layers(
        new_fm, new_preprocess, pair_windows, labels, n_folds=n_folds, random_state=random_state,
        batch_size=batch_size,
    )
    i = int(np.argmax(f1))
    subset = np.arange(len(pair_windows))
    if len(subset) > max_cka_windows:
        subset = np.sort(np.random.default_rng(random_state).choice(len(subset), max_cka_windows, replace=False))
    cka = score_output_layers(
        features[i][subset], old_model.fm, old_model.preprocess, pair_windows.subset(subset),
        reduce=cka_reduce, batch_size=batch_size,
    )
    j = int(np.argmax(cka))
    logger.info("Selected bridge positions: new %s layer i=%d, old %s layer j=%d.", new_fm.name, i,
                old_model.fm.name, j)
    return SelectionResult(
        i=i, j=j, f1_per_layer=f1, cka_per_layer=cka, pseudo_label_counts=counts.tolist(),
        n_windows=len(pair_windows), cka_reduce=cka_reduce, n_cka_windows=len(subset),
    )
