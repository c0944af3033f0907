"""bench/bridge_training.py on tiny FM configs: the reference-style loop and ours compute the same losses.

The bridge's ``B`` starts at zero (its first output is all zeros, whatever the new-FM features), so the tests
set ``B`` to random values first: the step-1 loss then depends on the new-FM features, the injection position
and the targets, and agreement proves the hook-based baseline computes what the cached, truncated loop does.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "bench" / "bridge_training.py"
_SPEC = importlib.util.spec_from_file_location("bench_bridge_training", _PATH)
bench = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench
_SPEC.loader.exec_module(bench)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(name: str, **changes) -> bench.Direction:
    """A §9 direction with positions that exist in the tiny configs and 10-s windows."""
    return replace(bench.DIRECTIONS[name], **{"window_s": 10.0, "i": 1, "j": 1, **changes})


def tiny_setup(direction: bench.Direction) -> bench.Setup:
    setup = bench.build_setup(direction, size="tiny", n_windows=8, seed=0)
    generator = torch.Generator().manual_seed(5)
    setup.bridge_state["B"] = torch.randn(setup.bridge_state["B"].shape, generator=generator) * 0.5
    return setup


def reference_and_ours(setup: bench.Setup, n_steps: int = 3) -> tuple[list[float], list[float]]:
    order = bench.batch_order(len(setup.x_old), 4, n_steps)
    reference = bench.ReferenceStep(setup, bench.new_bridge(setup), lr=1e-3)
    try:
        ref_losses, _ = bench.run_steps(reference, order)
    finally:
        reference.close()
    features, targets = bench.our_cache(setup, batch_size=4)
    ours = bench.OurStep(setup, bench.new_bridge(setup), features, targets, lr=1e-3)
    our_losses, _ = bench.run_steps(ours, order)
    return ref_losses, our_losses


@pytest.mark.parametrize(
    ("name", "changes"),
    [("ecg2ppg", {}), ("ppg2ecg", {"j": 3}), ("eeg2ecg", {}), ("ecg2eeg", {"j": 0}),
     ("eeg2emg", {"window_s": 3.0}), ("emg2eeg", {"window_s": 3.0, "j": 2})],
)
def test_reference_loop_matches_ours(name, changes):
    # Old FM HuBERT (j=1), PaPaGei (j=3: its blocks take (B, C, L), so the pre-hook must transpose), LaBraM,
    # NormWear (j=2: its blocks take (B, C, N, d), and layer 1's cross-channel fusion sits before it) and j=0 (the
    # bridge replaces the stem output).
    setup = tiny_setup(tiny(name, **changes))
    ref_losses, our_losses = reference_and_ours(setup)
    assert 0.01 < our_losses[0] < 1.99  # a real cosine loss, not the zero-output 1.0
    assert ref_losses[0] == pytest.approx(our_losses[0], rel=1e-5, abs=1e-6)
    assert ref_losses == pytest.approx(our_losses, rel=1e-4, abs=1e-5)
    assert our_losses[-1] != our_losses[0]  # the bridge did train


def test_reference_injection_at_wrong_layer_disagrees():
    # The agreement above is not automatic: injecting one layer late changes the loss.
    setup = tiny_setup(tiny("ecg2ppg"))
    ref_losses, our_losses = reference_and_ours(setup, n_steps=1)
    late = replace(setup, direction=replace(setup.direction, j=0))  # ours caches j=1's shape; ref injects at 0
    reference = bench.ReferenceStep(late, bench.new_bridge(late))
    try:
        wrong, _ = bench.run_steps(reference, bench.batch_order(8, 4, 1))
    finally:
        reference.close()
    assert ref_losses[0] == pytest.approx(our_losses[0], rel=1e-5, abs=1e-6)
    assert abs(wrong[0] - our_losses[0]) > 1e-4  # > 10x the agreement tolerance above


def test_run_approach_and_table(tmp_path):
    direction = tiny("ppg2ecg")
    results = {
        approach: bench.run_approach(bench.RunSpec(direction, approach, size="tiny", batch_size=4, steps=2,
                                                   warmup=1, pair_windows=40, threads=1, targets_dir=str(tmp_path),
                                                   micro_batch=3))
        for approach in bench.APPROACHES
    }
    ours, dist = results["ours"], results["distillation"]
    assert ours["losses"] == pytest.approx(results["reference"]["losses"], rel=1e-4, abs=1e-5)
    # Targets read back from the file, batches of 4 run as chunks of 3 + 1: the same updates up to rounding.
    assert ours["losses"] == pytest.approx(results["ours_plain"]["losses"], rel=1e-5, abs=1e-7)
    assert ours["micro_batch"] == 3
    assert ours["cache_mib"] < results["ours_plain"]["cache_mib"]  # only the bridge inputs stay in RAM
    assert ours["trainable_params"] == ours["bridge_params"]  # counted on the module vs r·d_in + P·T·r + d_out·P
    assert dist["trainable_params"] > 0
    assert ours["floor_flops"] > 0 and ours["floor_s"] > 0 and ours["cache_mib"] > 0
    assert all(r["peak_bytes"] >= 0 and r["step_s"] > 0 for r in results.values())
    table = bench.direction_table(direction, results, batch_size=4, pair_windows=40)
    assert "| reference |" in table and "| floor" in table and "speed-up reference/ours" in table
    assert not math.isnan(float(table.split("speed-up reference/ours: ")[1].split("×")[0]))


def test_real_size_positions_give_the_design_table_bridges():
    # DESIGN.md §9's bridge sizes follow from our i (output of new layer i) and j (input of old layer j).
    papagei = bench.build_fm("papagei", 60.0)
    labram = bench.build_fm("labram", 30.0)
    pp = papagei.layer_shapes()
    lb = labram.layer_shapes()
    hubert_tokens = {60.0: 93, 30.0: 46}  # HuBERT-ECG-S width 512 at every layer (tokens from DESIGN §9)
    shapes = {  # (d_in = width of new layer i's output, (T, d) = old layer j's input = layer j-1's output)
        "ecg2ppg": (pp[4][1], (hubert_tokens[60.0], 512)),
        "ppg2ecg": (512, pp[10]),
        "ecg2eeg": (lb[11][1], (hubert_tokens[30.0], 512)),
        "eeg2ecg": (512, lb[1]),
    }
    expected = {"ecg2ppg": 188_912, "ppg2ecg": 398_784, "ecg2eeg": 140_000, "eeg2ecg": 1_813_984}
    for name, (d_in, (n_tokens, d_out)) in shapes.items():
        d = bench.DIRECTIONS[name]
        config = bench.BridgeConfig(d_in=d_in, n_tokens=n_tokens, d_out=d_out, rank=d.rank,
                                    n_prototypes=d.n_prototypes)
        assert config.n_parameters == expected[name], name
