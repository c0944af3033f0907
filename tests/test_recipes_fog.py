"""The FOG recipes: the paper's settings parse, and each runs fit-head → select → train → evaluate → export on tiny
simulated gait data with small LaBraM and NormWear encoders (the paper's depths, tiny widths)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import bridges.recipes
from biostream.cli import cli
from biostream.runtime.session import MonitorSession
from bridges.bridge import BridgeConfig
from bridges.bundle import read_bundle
from bridges.fm.labram import LabramConfig
from bridges.fm.normwear import NormWearConfig
from bridges.ort_session import open_session
from bridges.steps import evaluate_step, export_step, fit_head_step, select_step, train_step
from bridges.workflow import TransferRun
from devices.live_sim import LiveSimulation

RECIPES = Path(bridges.recipes.__file__).parent
EEG = ["F3", "C3", "O1", "F4", "C4", "O2"]
# Per recipe: (old FM, new FM), the paper's (i, j, r, P), bridge (d_in, T, d_out) at real size, its parameter count.
PAPER = {
    "fog_eeg_to_emg.toml": (("labram", "normwear"), (3, 11, 256, 200), (768, 19, 200), 1_209_408),
    "fog_emg_to_eeg.toml": (("normwear", "labram"), (6, 10, 8, 50), (200, 1680, 768), 712_000),
}
# Small encoders (LaBraM 100 wide, NormWear 16 wide) just deep enough for the recipe's layers i and j.
SMALL = {
    "fog_eeg_to_emg.toml": {"labram": {"depth": 12}, "normwear": {"embed_dim": 16, "depth": 4, "num_heads": 2}},
    "fog_emg_to_eeg.toml": {"labram": {"depth": 7}, "normwear": {"embed_dim": 16, "depth": 11, "num_heads": 2}},
}
MODALITY = {"labram": "eeg", "normwear": "emg"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_has_the_papers_settings(tmp_path, name):
    (old_fm, new_fm), (i, j, rank, prototypes), (d_in, tokens, d_out), n_parameters = PAPER[name]
    run = TransferRun(RECIPES / name, {"output": {"dir": str(tmp_path)}})
    data, train = run.section("data"), run.section("train")
    assert (data.source, data.scenario, data.window_s, data.step_s) == ("simulated", "gait", 3.0, 0.3)
    assert (data.old_modality, data.new_modality) == (MODALITY[old_fm], MODALITY[new_fm])
    assert (run.fm_spec("old").name, run.fm_spec("new").name) == (old_fm, new_fm)
    for side in ("old", "new"):
        spec = run.fm_spec(side)
        assert spec.size == "base" and spec.window_s == 3.0 and spec.checkpoint.startswith("/path/to/")
        assert spec.channels == (EEG if spec.name == "labram" else ["EMG1", "EMG2", "EMG3"])
    assert (train.i, train.j, train.rank, train.n_prototypes, train.init) == (i, j, rank, prototypes, "rand_P")
    # The bridge's shape at real size, from the published configs: the DESIGN table's parameter count.
    labram, normwear = LabramConfig(), NormWearConfig()
    widths = {"labram": labram.embed_dim, "normwear": normwear.embed_dim}
    n_tokens = {"labram": 6 * 3 + 1, "normwear": 3 * (1 + normwear.n_time_patches * normwear.n_freq_patches)}
    assert (widths[new_fm], n_tokens[old_fm], widths[old_fm]) == (d_in, tokens, d_out)
    assert BridgeConfig(d_in, tokens, d_out, rank, prototypes).n_parameters == n_parameters


# Training end to end keeps both cores busy: these runs share one worker, so the real-time tests keep the other.
@pytest.mark.xdist_group("cpu_heavy")
@pytest.mark.slow
@pytest.mark.usefixtures("ray_runtime")
@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_runs_end_to_end_on_tiny_gait_data(tmp_path, name, unique_id):
    (old_fm, new_fm), (i, j, rank, prototypes), _, _ = PAPER[name]
    bundle_path = tmp_path / "fog.bxb"
    # Tiny data: 4 simulated subjects of 150 s, a window every 2 s; a frozen old FM (random weights) and a head
    # trained long enough to predict both classes, so that select has two pseudo-labels to score.
    overrides = {
        "data": {"n_subjects": 4, "duration_s": 150.0, "step_s": 2.0, "split": [1, 1, 1, 1], "seed": 3},
        "old_fm": {"size": "small", "checkpoint": "", "config": SMALL[name][old_fm]},
        "new_fm": {"size": "small", "checkpoint": "", "config": SMALL[name][new_fm]},
        "head": {"epochs": 30, "lr": 1e-2, "batch_size": 16, "unfreeze": False},
        "select": {"n_folds": 2},
        "train": {"epochs": 1},
        "export": {"path": str(bundle_path)},
        "output": {"dir": str(tmp_path / "run")},
    }
    run = TransferRun(RECIPES / name, overrides)
    splits = run.splits
    assert {len(w) for w in splits.values()} and min(len(w) for w in splits.values()) > 10
    fit_head_step(run, progress=False)
    selection = select_step(run)
    depths = (run.fm_spec("new").config["depth"], run.fm_spec("old").config["depth"])
    assert (len(selection["f1_per_layer"]), len(selection["cka_per_layer"])) == depths
    assert min(selection["pseudo_label_counts"]) >= 2
    trained = train_step(run, progress=False)
    assert (trained["i"], trained["j"]) == (i, j)  # the recipe's positions, not select's
    assert trained["bridge_config"]["rank"] == rank and trained["bridge_config"]["n_prototypes"] == prototypes
    evaluated = evaluate_step(run)
    assert 0.0 <= evaluated["test_metrics"]["accuracy"] <= 1.0
    export_step(run)

    manifest = read_bundle(bundle_path).manifest
    spec = manifest.input
    assert manifest.task.class_names == ("walking", "freezing") and manifest.task.name == "freezing_of_gait"
    assert (manifest.provenance.layer_i, manifest.provenance.layer_j) == (i, j)
    assert manifest.provenance.training_data["source"] == "simulated"
    assert manifest.provenance.training_data["scenario"] == "gait"
    assert (manifest.provenance.bridge.rank, manifest.provenance.bridge.n_prototypes) == (rank, prototypes)
    assert spec.modality == MODALITY[new_fm] and spec.window_s == 3.0 and spec.hop_s == 0.3
    ops = [step["op"] for step in spec.preprocessing]
    if new_fm == "normwear":  # EMG: resampled to 130 Hz by the runtime, then only a z-score in the graph
        assert spec.sfreq_hz == 130.0 and spec.channel_labels == ("TA_L", "TA_R", "GS_R")
        assert list(spec.preprocessing) == [{"op": "zscore", "axis": "per window, per channel"}]
    else:  # EEG: LaBraM's band-pass and notch, µV / 100
        assert spec.sfreq_hz == 200.0 and list(spec.channel_labels) == EEG
        assert ops == ["remove_mean", "fir_bandpass", "scale"] and spec.preprocessing[1]["notch_hz"] == 50.0
    # The bundle's graph gives the torch pipeline's probabilities on real test windows.
    windows = splits["test"].new[:4]
    session = open_session(read_bundle(bundle_path).onnx_bytes, device="cpu").session
    onnx_probs = session.run(None, {"window": windows})[0]
    with torch.no_grad():
        torch_probs = run.load_bridged_model()(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)

    # As a user meets the bundle: `biostream info` validates it, and the monitor runs it on a live gait session.
    info = CliRunner().invoke(cli, ["info", str(bundle_path)])
    assert info.exit_code == 0, info.output
    assert "freezing_of_gait" in info.output and f"{spec.sfreq_hz:g} Hz" in info.output
    predictions = _monitor_gait_session(bundle_path, MODALITY[new_fm].upper(), f"-{unique_id}")
    assert len(predictions) >= 4, predictions
    assert all(p.ok and p.label_name in ("walking", "freezing") for p in predictions), predictions
    assert all(abs(sum(p.probabilities) - 1.0) < 1e-4 for p in predictions)


def _monitor_gait_session(bundle_path: Path, stream_type: str, suffix: str) -> list:
    """Publish a simulated gait session on the FOG rig (EEG and EMG at 500 Hz, resampled by the runtime to the
    bundle's rate) for 12 s and monitor its ``stream_type`` stream with the bundle, a window every second."""
    live = LiveSimulation("gait", ["eeg", "emg"], seed=5, devices={"eeg": "fog_rig"}, name_suffix=suffix)
    with live, MonitorSession() as session:
        subscription = session.subscribe()
        session.add_stream(f"name=Sim {stream_type}{suffix}", bundle=bundle_path, hop_s=1.0, timeout_s=30.0)
        live.run(duration_s=12.0)
        time.sleep(1.0)
        items = subscription.get_all()
        summary = session.stop()
    assert summary["restarts"] == 0 and summary["errors"] == 0, summary
    return [p for kind, p in items if kind == "prediction"]
