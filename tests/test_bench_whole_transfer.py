"""bench/whole_transfer.py --smoke: the timed fit-head → select → train → export path runs end to end."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

from bridges.bundle import read_bundle

_PATH = Path(__file__).resolve().parents[1] / "bench" / "whole_transfer.py"
_SPEC = importlib.util.spec_from_file_location("bench_whole_transfer", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench
_SPEC.loader.exec_module(bench)


def test_smoke_run_times_every_step_and_exports_a_bundle(tmp_path, capsys):
    previous = torch.get_num_threads()
    try:
        bench.main(["--smoke", "--epochs", "2", "--eval-every", "1", "--precision", "bfloat16", "--threads", "1",
                    "--out", str(tmp_path / "run"), "--json", str(tmp_path / "result.json")])
    finally:
        torch.set_num_threads(previous)
    result = json.loads((tmp_path / "result.json").read_text())
    assert list(result["seconds"]) == ["data (simulate, window, split)", "fit-head", "select", "train",
                                       "export (ONNX + verify)"]
    assert all(s > 0 for s in result["seconds"].values())
    assert result["train"]["precision"] == "bfloat16" and result["train"]["epochs"] == 2
    assert "| **total** |" in capsys.readouterr().out
    assert Path(result["bundle"]["path"]).parent == tmp_path / "run"
    read_bundle(result["bundle"]["path"])  # a valid bundle (manifest and ONNX checked)
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith("bridge-targets-")]
