"""Build the shipped demo bundle (``bridges/data/demo.bxb``) from scratch, reproducibly, on this machine's CPU.

Recipe (config: ``bridges/recipes/demo.toml``): simulated paired stress sessions (24 subjects, ECG chest strap +
PPG wristband; subject-wise train / val / pair / test splits) →

1. **PPG foundation model without labels** (``pretrain``): a small PaPaGei-architecture ResNet pretrained on the
   unlabeled PPG windows of the train and pair subjects with a contrastive objective (SimCLR's NT-Xent over
   augmented views; see :mod:`bridges.pretrain`); the later steps load it from the run folder;
2. **ECG model with labels**: a small HuBERT-ECG-architecture encoder and a linear head trained on the labeled
   ECG windows of the train subjects (``fit-head``, encoder unfrozen), selected on validation;
3. ``select`` → ``train`` (the bridge, both FMs frozen) → ``evaluate`` → ``distill`` (the baseline) → ``export``.

Run: ``python -m bridges.recipes.demo [--out DIR] [--bundle PATH]``. Artefacts (JSON results, PNGs, the
pretrained PPG encoder) go to ``--out``; the bundle to ``bridges/data/demo.bxb`` unless ``--bundle`` says
otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from bridges.bundle import demo_bundle_path
from bridges.steps import (
    distill_step,
    evaluate_step,
    export_step,
    fit_head_step,
    pretrain_step,
    select_step,
    train_step,
)
from bridges.workflow import TransferRun, write_json

logger = logging.getLogger(__name__)

CONFIG = Path(__file__).with_name("demo.toml")


def build_demo(out_dir: Path, bundle_path: Path, *, progress: bool = True) -> dict:
    """Run the whole recipe; return a summary (also written to ``out_dir/demo.json``)."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    run = TransferRun(CONFIG, {"output": {"dir": str(out_dir.resolve())}}, progress=progress)
    timings = {}

    def stage(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        print(f"[demo] {name} ...", flush=True)
        result = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"[demo] {name} done in {timings[name]:.1f} s", flush=True)
        return result

    stage("data", lambda: run.splits)
    pretrained = stage("pretrain PPG FM (contrastive, no labels)", pretrain_step, run, progress=progress)["new"]
    head = stage("fit-head (ECG, labeled)", fit_head_step, run, progress=progress)
    selection = stage("select", select_step, run)
    trained = stage("train bridge", train_step, run, progress=progress)
    evaluated = stage("evaluate", evaluate_step, run)
    distilled = stage("distill (baseline)", distill_step, run, progress=progress)
    bundle = stage("export", export_step, run, str(bundle_path))
    summary = {
        "bundle": bundle,
        "bundle_bytes": Path(bundle["path"]).stat().st_size,
        "pretrain_loss_first_last": [pretrained["loss"][0], pretrained["loss"][-1]],
        "old_test_f1_macro": head["old_test_metrics"]["f1_macro"],
        "i": selection["i"], "j": selection["j"],
        "bridge_test": evaluated["test_metrics"],
        "bridge_trainable_parameters": trained["n_trainable"],
        "distill_test": distilled["test_metrics"],
        "distill_trainable_parameters": distilled["n_trainable"],
        "seconds": timings, "total_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    write_json(run.artefact("demo.json"), summary)
    return summary


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description="Build the demo bundle (bridges/data/demo.bxb).")
    parser.add_argument("--out", default="demo-build", help="folder for the recipe's artefacts")
    parser.add_argument("--bundle", default=None, help="bundle path (default: the package's demo.bxb)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bundle = Path(args.bundle) if args.bundle else demo_bundle_path()
    summary = build_demo(Path(args.out), bundle, progress=not args.quiet)
    print(json.dumps({k: summary[k] for k in ("bundle", "bundle_bytes", "total_seconds", "seconds")}, indent=2))
    b, d = summary["bridge_test"], summary["distill_test"]
    print(f"bridge: macro-F1 {b['f1_macro']:.3f}, {summary['bridge_trainable_parameters']} trainable parameters")
    print(f"distill: macro-F1 {d['f1_macro']:.3f}, {summary['distill_trainable_parameters']} trainable parameters")


if __name__ == "__main__":
    main()
