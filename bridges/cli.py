"""``biostream bridge ...``: the method's steps on the command line (bodies parse flags and call :mod:`bridges.steps`).

Every step reads one TOML config (``--config``; sections of :data:`bridges.workflow.SCHEMA`), flags override it,
and artefacts go to ``[output] dir`` (``--out``). torch is imported inside the commands, not at start-up.
"""

from __future__ import annotations

import json
from typing import Any

import click

config_option = click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
    help="TOML file with [data], [old_fm], [new_fm], [head], [select], [train], [distill], [export], [output].",
)
out_option = click.option("--out", "out_dir", default=None, help="Output folder (overrides [output] dir).")
quiet_option = click.option("--quiet", is_flag=True, help="No progress bars.")


def _run(config_path: str | None, overrides: dict[str, dict[str, Any]], out_dir: str | None) -> Any:
    from bridges.workflow import TransferRun

    if out_dir is not None:
        overrides = {**overrides, "output": {"dir": out_dir}}
    return TransferRun(config_path, overrides)


def _echo_result(title: str, payload: dict[str, Any], keys: list[str]) -> None:
    shown = {k: payload[k] for k in keys if k in payload}
    click.echo(f"{title}: {json.dumps(shown, default=str)}")


@click.group()
def bridge() -> None:
    """Train and export bridges between two frozen foundation models (BioX-Bridge)."""


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

    run = _run(config_path, {"head": {"epochs": epochs, "unfreeze": unfreeze}}, out_dir)
    payload = fit_head_step(run, progress=not quiet)
    _echo_result("head", payload, ["best_epoch", "n_trainable"])
    click.echo(f"old model test macro-F1: {payload['old_test_metrics']['f1_macro']:.3f}  -> {run.out_dir}")


@bridge.command("select")
@config_option
@out_option
def select_cmd(config_path: str | None, out_dir: str | None) -> None:
    """Choose the bridge input layer i (F1 on pseudo-labels) and output layer j (linear CKA)."""
    from bridges.steps import select_step

    run = _run(config_path, {}, out_dir)
    payload = select_step(run)
    _echo_result("selected", payload, ["i", "j"])
    click.echo(f"scores: {run.artefact('select.json')}  plot: {run.artefact('select.png')}")


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
    run = _run(config_path, overrides, out_dir)
    payload = train_step(run, progress=not quiet)
    _echo_result("bridge", payload, ["i", "j", "best_epoch", "n_trainable", "seconds_per_epoch"])
    click.echo(f"test macro-F1: {payload['test_metrics'].get('f1_macro', float('nan')):.3f}  -> {run.out_dir}")


@bridge.command("evaluate")
@config_option
@out_option
def evaluate_cmd(config_path: str | None, out_dir: str | None) -> None:
    """Score the bridged model on the test split (metrics, confusion matrix PNG)."""
    from bridges.steps import evaluate_step

    payload = evaluate_step(_run(config_path, {}, out_dir))
    metrics = payload["test_metrics"]
    click.echo(
        f"test: accuracy {metrics['accuracy']:.3f}, balanced {metrics['balanced_accuracy']:.3f}, "
        f"kappa {metrics['cohen_kappa']:.3f}, macro-F1 {metrics['f1_macro']:.3f}, "
        f"weighted-F1 {metrics['f1_weighted']:.3f}; trainable parameters {payload['trainable_parameters']}"
    )


@bridge.command("distill")
@config_option
@out_option
@quiet_option
@click.option("--epochs", type=click.IntRange(min=1), default=None)
def distill_cmd(config_path: str | None, out_dir: str | None, quiet: bool, epochs: int | None) -> None:
    """Train the knowledge-distillation baseline on the same paired windows."""
    from bridges.steps import distill_step

    payload = distill_step(_run(config_path, {"distill": {"epochs": epochs}}, out_dir), progress=not quiet)
    _echo_result("distillation", payload, ["n_trainable", "seconds_per_epoch", "best_epoch"])


@bridge.command("export")
@config_option
@out_option
@click.option("--output", "output_path", default=None, help="Bundle path (overrides [export] path).")
def export_cmd(config_path: str | None, out_dir: str | None, output_path: str | None) -> None:
    """Export the bridged pipeline as a .bxb bundle (ONNX checked against torch)."""
    from bridges.steps import export_step

    payload = export_step(_run(config_path, {}, out_dir), output_path)
    click.echo(f"bundle: {payload['path']} (sha256 {payload['sha256'][:16]}...)")


