"""The ``biostream bridge`` steps on a :class:`~bridges.workflow.TransferRun`.

Each step writes its artefacts into the run's output folder and returns its JSON result.

**Reproducible.** An identical config gives identical results on the same machine (same library versions and
torch thread count): every random draw a step makes comes from its section's ``seed`` — explicit
``torch.Generator``/``random_state`` arguments where the code draws itself (splits, shuffles, head, prototype
and projection init, augmentations, CKA subsets), and :func:`seeded_global_rngs` around each step for what draws
from the global RNGs (dropout in training mode, e.g. PaPaGei's).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import torch

from bridges.config import ConfigError
from bridges.fm.checkpoints import state_sha256
from bridges.metrics import count_trainable, evaluate
from bridges.workflow import TransferRun, write_json

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., dict[str, Any]])


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed torch's (CPU), numpy's and Python's global RNGs with ``seed`` inside the block; restore them after.

    The steps pass explicit generators wherever they draw themselves; this covers modules that draw from the
    global RNG (dropout in training mode) and library code that might, so a step's result depends on its
    config alone. The caller's RNG states are restored, so code after a step is not affected.
    """
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def _seeded_by(section: str | None) -> Callable[[F], F]:
    """Run a step under :func:`seeded_global_rngs` with ``[section] seed`` (0 for a step without a seed key)."""

    def wrap(step: F) -> F:
        @functools.wraps(step)
        def run_seeded(run: TransferRun, *args: Any, **kwargs: Any) -> dict[str, Any]:
            with seeded_global_rngs(run.section(section).seed if section else 0):
                return step(run, *args, **kwargs)

        return run_seeded  # type: ignore[return-value]

    return wrap


@_seeded_by("pretrain")
def pretrain_step(run: TransferRun, *, progress: bool = True) -> dict[str, Any]:
    """Pretrain each FM ``[pretrain] fms`` lists, without labels, on the run's windows of its modality.

    Contrastive (SimCLR NT-Xent, :func:`bridges.pretrain.pretrain_contrastive`) on the windows of ``[pretrain]
    splits``; the FM starts from what its section says (random weights of its seed, or its checkpoint, from which
    pretraining continues). Writes ``pretrain_<side>.safetensors`` (the FM's state), ``pretrain_<side>.json``
    and ``pretrain_<side>.png`` (loss per epoch); later steps load those weights for the listed sides (see
    :mod:`bridges.pretrained`). Returns ``{side: result}``.
    """
    from bridges.fm.registry import save_fm_state
    from bridges.plots import plot_pretrain_loss
    from bridges.pretrain import pretrain_contrastive
    from bridges.pretrained import pretrain_windows, pretrained_paths

    cfg = run.section("pretrain")
    if not cfg.fms:
        raise ConfigError(f"{run.config_name} [pretrain]: fms is empty, so there is nothing to pretrain; list the "
                          "FMs to pretrain, e.g. fms = [\"new\"] or [\"old\", \"new\"]")
    for side in cfg.fms:
        run.checked_fm_spec(side)  # a checkpoint left to fill in is named now, not after the data is built
    windows = {side: pretrain_windows(run.splits, side, cfg, run.config_name) for side in cfg.fms}
    payload: dict[str, Any] = {}
    for side in cfg.fms:
        fm, preprocess = run.build_fm_and_preprocess(side, pretrained=False)
        result = pretrain_contrastive(
            fm, preprocess, windows[side], epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
            temperature=cfg.temperature, random_state=cfg.seed, progress=progress, projection_dim=cfg.projection_dim,
            augment_config=cfg.augment_config(), max_grad_norm=cfg.max_grad_norm,
        )
        weights, info = pretrained_paths(run.out_dir, side)
        save_fm_state(fm, weights)
        spec = run.fm_spec(side)
        plot_pretrain_loss(result, run.artefact(f"pretrain_{side}.png"),
                           title=f"Contrastive pretraining, {side} FM ({spec.modality})")
        payload[side] = {
            **result.to_dict(),
            "side": side,
            "modality": spec.modality,
            "splits": list(cfg.splits),
            "max_windows": cfg.max_windows,
            "seed": cfg.seed,
            "fm_spec": run.fm_identity(side),
            "weights_sha256": state_sha256(fm.state_dict()),
        }
        write_json(info, payload[side])
    return payload


def _scalings(**fms: Any) -> dict[str, str | None]:
    """``{"old_fm": ..., "new_fm": ...}``: the input scaling each FM a step used was fed (for its JSON result)."""
    return {f"{side}_fm": fm.input_scaling for side, fm in fms.items()}


@_seeded_by("head")
def fit_head_step(run: TransferRun, *, progress: bool = True) -> dict[str, Any]:
    """Train the head on labeled old-modality windows (train split, val-selected); save the old model."""
    from bridges.head import fit_head

    cfg = run.section("head")
    for side in ("new", "old"):  # a checkpoint left to fill in, or pretraining not run, is named before any data
        run.check_fm_weights(side)
    fm, preprocess = run.build_fm_and_preprocess("old")
    splits = run.splits
    model, result = fit_head(
        fm, preprocess, splits["train"], splits["val"], unfreeze=cfg.unfreeze, mlp_hidden=cfg.mlp_hidden,
        class_weights=cfg.class_weights, epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
        random_state=cfg.seed, progress=progress,
    )
    run.save_state(model, run.artefact("old_model.safetensors"))
    test = evaluate(model, splits["test"])
    payload = {
        **result.to_dict(),
        "weights_sha256": state_sha256(model.state_dict()),
        "d_features": next(m for m in model.head.modules() if isinstance(m, torch.nn.Linear)).in_features,
        "n_classes": splits["train"].n_classes,
        "class_names": splits["train"].class_names,
        "mlp_hidden": cfg.mlp_hidden,
        "old_test_metrics": test.to_dict(),
        "split_sizes": {name: len(w) for name, w in splits.items()},
        "subjects": {name: sorted(set(w.subjects.tolist())) for name, w in splits.items()},
        "input_scaling": _scalings(old=fm),
    }
    write_json(run.artefact("head.json"), payload)
    return payload


@_seeded_by("select")
def select_step(run: TransferRun) -> dict[str, Any]:
    """Choose the bridge positions (i, j) on the paired split; write ``select.json`` and ``select.png``."""
    from bridges.plots import plot_selection
    from bridges.select import select_positions

    cfg = run.section("select")
    old = run.load_old_model()
    new_fm, new_preprocess = run.build_fm_and_preprocess("new")
    result = select_positions(
        old, new_fm, new_preprocess, run.splits["pair"], n_folds=cfg.n_folds, random_state=cfg.seed,
        cka_reduce=cfg.cka_reduce, max_cka_windows=cfg.max_cka_windows,
    )
    plot_selection(result, run.artefact("select.png"), new_name=run.fm_spec("new").name,
                   old_name=run.fm_spec("old").name)
    payload = {**result.to_dict(), "input_scaling": _scalings(old=old.fm, new=new_fm)}
    write_json(run.artefact("select.json"), payload)
    return payload


@_seeded_by("train")
def train_step(run: TransferRun, *, progress: bool = True) -> dict[str, Any]:
    """Train the bridge at (i, j) (from ``[train]`` or ``select.json``); write the bridge and its curve."""
    from bridges.train import train_bridge

    cfg = run.section("train")
    i, j = cfg.i, cfg.j
    if i is None or j is None:
        chosen = run.read_json("select.json", "select")
        i = chosen["i"] if i is None else i
        j = chosen["j"] if j is None else j
    old = run.load_old_model()
    new_fm, new_preprocess = run.build_fm_and_preprocess("new")
    for name, index, fm in (("i", i, new_fm), ("j", j, old.fm)):
        if not 0 <= index < fm.n_layers:
            raise ConfigError(f"[train] {name} = {index} is not a layer of {fm.name}: it has layers "
                              f"0..{fm.n_layers - 1}")
    splits = run.splits
    bridged, result = train_bridge(
        old, new_fm, new_preprocess, splits["pair"], splits["val"], splits["test"], i=i, j=j, options=cfg.options(),
        targets_dir=run.out_dir if cfg.targets_on_disk else None, progress=progress,
        plot_path=run.artefact("train.png"),
    )
    run.save_state(bridged.bridge, run.artefact("bridge.safetensors"))
    c = bridged.bridge.config
    payload = {
        **result.to_dict(),
        "bridge_config": {"d_in": c.d_in, "n_tokens": c.n_tokens, "d_out": c.d_out, "rank": c.rank,
                          "n_prototypes": c.n_prototypes, "init": c.init},
        "input_scaling": _scalings(old=old.fm, new=new_fm),
    }
    write_json(run.artefact("train.json"), payload)
    return payload


@_seeded_by(None)
def evaluate_step(run: TransferRun) -> dict[str, Any]:
    """Score the bridged model on the test split; write ``evaluate.json`` and ``confusion.png``."""
    from bridges.plots import plot_confusion

    model = run.load_bridged_model()
    metrics = evaluate(model, run.splits["test"])
    plot_confusion(metrics, run.artefact("confusion.png"), title="BioX-Bridge (test)")
    payload = {"test_metrics": metrics.to_dict(), "trainable_parameters": count_trainable(model.bridge),
               "input_scaling": _scalings(old=model.old_fm, new=model.new_fm)}
    write_json(run.artefact("evaluate.json"), payload)
    return payload


@_seeded_by("distill")
def distill_step(run: TransferRun, *, progress: bool = True) -> dict[str, Any]:
    """Train the distillation baseline on the same paired split; write ``distill.json`` and ``distill.png``."""
    from bridges.distill import distill

    cfg = run.section("distill")
    old = run.load_old_model()
    new_fm, new_preprocess = run.build_fm_and_preprocess("new")
    splits = run.splits
    _, result = distill(
        old, new_fm, new_preprocess, splits["pair"], splits["val"], splits["test"], temperature=cfg.temperature,
        epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size, unfreeze_fm=cfg.unfreeze_fm,
        random_state=cfg.seed, progress=progress, select_by=cfg.select_by, plot_path=run.artefact("distill.png"),
    )
    payload = {**result.to_dict(), "input_scaling": _scalings(old=old.fm, new=new_fm)}
    write_json(run.artefact("distill.json"), payload)
    return payload


def _numeric(metrics: dict[str, Any]) -> dict[str, Any]:
    """The numeric entries of a metrics dict (the manifest's metrics hold numbers only)."""
    keys = ("accuracy", "balanced_accuracy", "cohen_kappa", "f1_macro", "f1_weighted", "n", "confusion")
    return {k: metrics[k] for k in keys if k in metrics}


@_seeded_by(None)
def export_step(run: TransferRun, path: str | None = None) -> dict[str, Any]:
    """Export the bridged pipeline as a ``.bxb`` bundle (ONNX checked against torch); return its summary."""
    from bridges.export import export_bundle
    from bridges.manifest import BridgeInfo, FMInfo, InputInfo, Manifest, Provenance, TaskInfo

    cfg = run.section("export")
    data = run.section("data")
    model = run.load_bridged_model()
    train = run.read_json("train.json", "train")
    metrics = {"bridge_test": _numeric(train["test_metrics"]), "bridge_trainable_parameters": train["n_trainable"]}
    if run.artefact("distill.json").exists():
        distilled = run.read_json("distill.json", "distill")
        metrics["distill_test"] = _numeric(distilled["test_metrics"])
        metrics["distill_trainable_parameters"] = distilled["n_trainable"]
    test = run.splits["test"]
    # Only keys that apply to the source: the scenario names simulated data only; a data set is named by its source.
    training_data = {"source": data.source, **({"scenario": data.scenario} if data.source == "simulated" else {}),
                     "n_pair_windows": train["n_pair"]}
    fms = run.provenance_fms(model)
    spec = model.new_fm.input_spec
    training_data["normalisation"] = "per window" if spec.normalisation != "none" else "none"
    c = model.bridge.config
    manifest = Manifest(
        task=TaskInfo(name=cfg.task, class_names=tuple(test.class_names)),
        input=InputInfo(
            modality=data.new_modality, channel_labels=tuple(test.new_channels), sfreq_hz=spec.sfreq_hz,
            window_s=spec.window_s, hop_s=cfg.hop_s or data.step_s,
            units=tuple([spec.unit or "a.u."] * spec.n_channels),
            preprocessing=tuple(model.new_preprocess.spec.steps()),
            input_scaling=model.new_preprocess.spec.input_scaling,
        ),
        provenance=Provenance(
            old_fm=FMInfo(**fms["old"], input_scaling=model.old_fm.input_scaling),
            new_fm=FMInfo(**fms["new"], input_scaling=model.new_fm.input_scaling), layer_i=train["i"],
            layer_j=train["j"],
            bridge=BridgeInfo(rank=c.rank, n_prototypes=c.n_prototypes, n_tokens=c.n_tokens, d_in=c.d_in,
                              d_out=c.d_out),
            training_data=training_data,
            metrics=metrics, trainable_parameters=count_trainable(model.bridge),
        ),
    )
    inputs = torch.from_numpy(test.new[:8]) if len(test) else None
    out = run._base / (path or cfg.path)
    bundle = export_bundle(out, model, manifest, model.bridge, inputs=inputs)
    return {"path": str(out), "sha256": bundle.sha256}
