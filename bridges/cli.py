"""``biostream bridge ...``: the method's steps on the command line (bodies parse flags and call :mod:`bridges.steps`).

Every step reads one TOML config (``--config``; sections of :data:`bridges.run_config.SCHEMA`), flags override it,
and artefacts go to ``[output] dir`` (``--out``). Paths in the file are relative to its folder, paths given as
flags to the working directory. ``--quiet`` shows nothing but errors (no progress bars, warnings or result
lines). torch is imported inside the commands, not at start-up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

config_option = click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
    help="TOML file with [data], [old_fm], [new_fm], [pretrain], [head], [select], [train], [distill], [export], "
    "[output]; "
    "paths in it are relative to its folder.",
)
out_option = click.option("--out", "out_dir", default=None,
                          help="Output folder (overrides [output] dir; relative to the working directory).")
quiet_option = click.option("--quiet", is_flag=True,
                            help="Show nothing but errors: no progress bars, warnings or result lines.")


@contextlib.contextmanager
def _quiet_output(quiet: bool) -> Iterator[None]:
    """With ``quiet``, no warnings and no log records below ERROR while the step runs (restored after)."""
    if not quiet:
        yield
        return
    before = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(before)


def _run(config_path: str | None, overrides: dict[str, dict[str, Any]], out_dir: str | None, quiet: bool) -> Any:
    from bridges.workflow import TransferRun

    if out_dir is not None:  # a path on the command line is relative to the working directory, not the config
        overrides = {**overrides, "output": {"dir": str(Path(out_dir).expanduser().resolve())}}
    return TransferRun(config_path, overrides, progress=not quiet)


def _echo(quiet: bool, line: str) -> None:
    if not quiet:
        click.echo(line)


def _echo_result(quiet: bool, title: str, payload: dict[str, Any], keys: list[str]) -> None:
    shown = {k: payload[k] for k in keys if k in payload}
    _echo(quiet, f"{title}: {json.dumps(shown, default=str)}")


@click.group()
def bridge() -> None:
    """Train and export bridges between two frozen foundation models (BioX-Bridge)."""


@bridge.command("pretrain")
@config_option
@out_option
@quiet_option
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Pretraining epochs.")
@click.option("--max-windows", type=click.IntRange(min=2), default=None,
              help="Pretrain on at most this many windows (a random subset).")
def pretrain_cmd(config_path: str | None, out_dir: str | None, quiet: bool, epochs: int | None,
                 max_windows: int | None) -> None:
    """Pretrain the FMs of [pretrain] fms without labels (contrastive) on the run's windows of their modality.

    Later steps with the same --config and --out load the pretrained weights. Beyond the paper, which starts
    from published FMs.
    """
    from bridges.steps import pretrain_step

    with _quiet_output(quiet):
        run = _run(config_path, {"pretrain": {"epochs": epochs, "max_windows": max_windows}}, out_dir, quiet)
        payload = pretrain_step(run, progress=not quiet)
    for side, result in payload.items():
        _echo(quiet, f"pretrained {side} FM ({result['fm']}) on {result['n_windows']} {result['modality']} windows: "
                     f"NT-Xent {result['loss'][0]:.3f} -> {result['loss'][-1]:.3f}  -> "
                     f"{run.artefact(f'pretrain_{side}.safetensors')}")


@bridge.command("fit-head")
@config_option
@out_option
@quiet_option
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Head training epochs.")
@click.option("--unfreeze/--freeze", default=None, help="Fine-tune the old FM with the head.")
def fit_head_cmd(config_path: str | None, out_dir: str | None, quiet: bool, epochs: int | None,
                 unfreeze: bool | None) -> None:
    """Fit the task head on the old FM with the labeled old-modality windows."""
    from bridges.steps import fit_head_step

    with _quiet_output(quiet):
        run = _run(config_path, {"head": {"epochs": epochs, "unfreeze": unfreeze}}, out_dir, quiet)
        payload = fit_head_step(run, progress=not quiet)
    _echo_result(quiet, "head", payload, ["best_epoch", "n_trainable"])
    _echo(quiet, f"old model test macro-F1: {payload['old_test_metrics']['f1_macro']:.3f}  -> {run.out_dir}")


@bridge.command("select")
@config_option
@out_option
@quiet_option
def select_cmd(config_path: str | None, out_dir: str | None, quiet: bool) -> None:
    """Choose the bridge input layer i (F1 on pseudo-labels) and output layer j (linear CKA)."""
    from bridges.steps import select_step

    with _quiet_output(quiet):
        run = _run(config_path, {}, out_dir, quiet)
        payload = select_step(run)
    _echo_result(quiet, "selected", payload, ["i", "j"])
    _echo(quiet, f"scores: {run.artefact('select.json')}  plot: {run.artefact('select.png')}")


@bridge.command("train")
@config_option
@out_option
@quiet_option
@click.option("--i", "layer_i", type=click.IntRange(min=0), default=None,
              help="New-FM layer feeding the bridge (default: select).")
@click.option("--j", "layer_j", type=click.IntRange(min=0), default=None,
              help="Old-FM layer whose input the bridge replaces.")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--rank", type=click.IntRange(min=1), default=None)
@click.option("--prototypes", "n_prototypes", type=click.IntRange(min=1), default=None)
@click.option("--loss", type=click.Choice(["cosine", "mse", "l1"]), default=None)
@click.option("--lr", type=float, default=None)
def train_cmd(config_path: str | None, out_dir: str | None, quiet: bool, layer_i: int | None, layer_j: int | None,
              epochs: int | None, rank: int | None, n_prototypes: int | None, loss: str | None,
              lr: float | None) -> None:
    """Train the prototype low-rank bridge on cached features (both FMs frozen)."""
    from bridges.steps import train_step

    overrides = {"train": {"i": layer_i, "j": layer_j, "epochs": epochs, "rank": rank,
                           "n_prototypes": n_prototypes, "loss": loss, "lr": lr}}
    with _quiet_output(quiet):
        run = _run(config_path, overrides, out_dir, quiet)
        payload = train_step(run, progress=not quiet)
    _echo_result(quiet, "bridge", payload, ["i", "j", "best_epoch", "n_trainable", "seconds_per_epoch"])
    _echo(quiet, f"test macro-F1: {payload['test_metrics'].get('f1_macro', float('nan')):.3f}  -> {run.out_dir}")


@bridge.command("evaluate")
@config_option
@out_option
@quiet_option
def evaluate_cmd(config_path: str | None, out_dir: str | None, quiet: bool) -> None:
    """Score the bridged model on the test split (metrics, confusion matrix PNG)."""
    from bridges.steps import evaluate_step

    with _quiet_output(quiet):
        payload = evaluate_step(_run(config_path, {}, out_dir, quiet))
    metrics = payload["test_metrics"]
    _echo(quiet,
          f"test: accuracy {metrics['accuracy']:.3f}, balanced {metrics['balanced_accuracy']:.3f}, "
          f"kappa {metrics['cohen_kappa']:.3f}, macro-F1 {metrics['f1_macro']:.3f}, "
          f"weighted-F1 {metrics['f1_weighted']:.3f}; trainable parameters {payload['trainable_parameters']}")


@bridge.command("distill")
@config_option
@out_option
@quiet_option
@click.option("--epochs", type=click.IntRange(min=1), default=None)
def distill_cmd(config_path: str | None, out_dir: str | None, quiet: bool, epochs: int | None) -> None:
    """Train the knowledge-distillation baseline on the same paired windows."""
    from bridges.steps import distill_step

    with _quiet_output(quiet):
        payload = distill_step(_run(config_path, {"distill": {"epochs": epochs}}, out_dir, quiet),
                               progress=not quiet)
    _echo_result(quiet, "distillation", payload, ["n_trainable", "seconds_per_epoch", "best_epoch"])


@bridge.command("export")
@config_option
@out_option
@quiet_option
@click.option("--output", "output_path", default=None,
              help="Bundle path (overrides [export] path; relative to the working directory).")
def export_cmd(config_path: str | None, out_dir: str | None, quiet: bool, output_path: str | None) -> None:
    """Export the bridged pipeline as a .bxb bundle (ONNX checked against torch)."""
    from bridges.steps import export_step

    if output_path is not None:
        output_path = str(Path(output_path).expanduser().resolve())
    with _quiet_output(quiet):
        payload = export_step(_run(config_path, {}, out_dir, quiet), output_path)
    _echo(quiet, f"bundle: {payload['path']} (sha256 {payload['sha256'][:16]}...)")
