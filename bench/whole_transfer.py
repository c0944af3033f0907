"""The whole transfer at WESAD size with real-size FMs, timed step by step (DESIGN.md §8 "Whole transfer").

``fit-head → select → train (50 epochs) → export`` through the same step functions as ``biostream bridge …``
(:mod:`bridges.steps`), on a WESAD-sized simulated paired set: 15 subjects (split 5/2/5/3 as WESAD), ECG chest
strap + PPG wristband, 60-s windows with a 5-s step, about 2,000 windows. Old FM HuBERT-ECG-S (30.2 M
parameters), new FM PaPaGei-S (5.8 M), random weights (no checkpoint can be fetched here; the cost does not depend
on the weights). The bridge is trained at DESIGN §9's WESAD ECG→PPG setting (i = 4, j = 2, r = 8, P = 150: six
of HuBERT-S's eight transformer layers run every step, the costly end of the paper's positions); ``select`` still
runs in full and its choice is reported. Training: batch 16, Adam lr 1e-4, targets in a file
(``targets_on_disk``), validation and test scored every ``--eval-every`` epochs.

Target: ≤ 60 min on this 2-core CPU, ≤ 3 min on one H100.

Run: ``python bench/whole_transfer.py [--precision float32|bfloat16] [--epochs 50] [--out DIR]``; ``--smoke``
runs the same path on tiny FMs and 8 subjects in about a minute. Prints one table; ``--json`` keeps it all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine  # noqa: E402

from bridges.steps import export_step, fit_head_step, select_step, train_step  # noqa: E402
from bridges.workflow import TransferRun  # noqa: E402

TARGET_MIN = 60.0


def sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The run's config sections (what a ``run.toml`` for ``biostream bridge`` would hold)."""
    smoke = args.smoke
    return {
        "data": {"source": "simulated", "scenario": "stress", "old_modality": "ecg", "new_modality": "ppg",
                 "n_subjects": 8 if smoke else 15, "duration_s": 600.0 if smoke else args.duration_s,
                 "window_s": 60.0, "step_s": 5.0, "seed": 0,
                 "split": [2, 2, 2, 2] if smoke else [5, 2, 5, 3]},
        "old_fm": {"name": "hubert_ecg", "size": "tiny" if smoke else "small", "seed": 1},
        "new_fm": {"name": "papagei", "size": "small" if smoke else "s", "seed": 2},
        "head": {"unfreeze": False, "epochs": 100, "lr": 1e-2, "batch_size": 64},
        "select": {},
        "train": {"i": 1 if smoke else 4, "j": 1 if smoke else 2, "rank": 8, "n_prototypes": 150,
                  "epochs": args.epochs, "lr": 1e-4, "batch_size": 16, "eval_every": args.eval_every,
                  "targets_on_disk": True, "precision": args.precision},
        "export": {"path": str(args.out.resolve() / "wesad_ecg_to_ppg.bxb"), "task": "stress"},
        "output": {"dir": str(args.out.resolve())},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--precision", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--duration-s", type=float, default=1000.0,
                        help="seconds per subject (1000: about 2,000 single-label 60-s windows)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("whole-transfer-run"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny FMs, 4 subjects: checks the path, not the cost")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = TransferRun(None, sections(args))
    seconds: dict[str, float] = {}

    def timed(name: str, fn, *fn_args, **kwargs):
        start = time.perf_counter()
        print(f"[{sum(seconds.values()):7.1f} s] {name} …", flush=True)
        result = fn(*fn_args, **kwargs)
        seconds[name] = time.perf_counter() - start
        return result

    splits = timed("data (simulate, window, split)", lambda: run.splits)
    head = timed("fit-head", fit_head_step, run, progress=False)
    chosen = timed("select", select_step, run)
    trained = timed("train", train_step, run, progress=True)
    bundle = timed("export (ONNX + verify)", export_step, run)
    total_min = sum(seconds.values()) / 60
    sizes = {name: len(w) for name, w in splits.items()}
    epoch_s = trained["seconds_per_epoch"]
    lines = [
        f"Command: python bench/whole_transfer.py {' '.join(sys.argv[1:] if argv is None else argv)}".rstrip(),
        f"Machine: {machine()}",
        f"Windows per split: {sizes} (60 s each); precision {args.precision}; bridge (i, j) = "
        f"({trained['i']}, {trained['j']}), {trained['n_trainable']:,} trainable parameters; select chose "
        f"({chosen['i']}, {chosen['j']}).",
        "",
        "| step | seconds | share |",
        "|---|---|---|",
    ]
    for name, s in seconds.items():
        lines.append(f"| {name} | {s:.0f} | {100 * s / (60 * total_min):.0f}% |")
    lines += [
        f"| **total** | **{60 * total_min:.0f}** ({total_min:.1f} min) | target ≤ {TARGET_MIN:.0f} min: "
        f"{'met' if total_min <= TARGET_MIN else 'missed'} |",
        "",
        f"Train: cache {trained['cache_seconds']:.0f} s, {epoch_s:.1f} s per epoch × {args.epochs} epochs "
        f"(evaluation every {args.eval_every} epochs in the rest); old model test macro-F1 "
        f"{head['old_test_metrics']['f1_macro']:.3f}, bridged test macro-F1 {trained['test_metrics']['f1_macro']:.3f} "
        "(random-weight FMs: only the cost means anything here); bundle "
        f"{Path(bundle['path']).stat().st_size / 2**20:.0f} MiB.",
    ]
    print("\n".join(lines), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"seconds": seconds, "total_min": total_min, "splits": sizes, "bundle": bundle,
                                         "train": trained, "select": chosen, "args": vars(args)}, indent=1,
                                        default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
