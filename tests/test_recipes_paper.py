"""The WESAD and ISRUC recipes: the paper's settings parse (the bridge at real size has the DESIGN table's parameter
count), placeholders say which key to set, and each recipe, its paths filled in, runs fit-head → select → train →
evaluate → export on tiny subjects written in the data set's own layout, with checkpoints the test writes at small
configs of the real architectures."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from _paper_layouts import simulated_isruc_subject, simulated_wesad_subject
from click.testing import CliRunner

import bridges.recipes
from biostream.cli import cli
from bridges.bridge import BridgeConfig
from bridges.bundle import read_bundle
from bridges.config import ConfigError, read_toml
from bridges.fm.registry import build_fm, save_fm_state
from bridges.ort_session import open_session
from bridges.steps import evaluate_step, export_step, fit_head_step, select_step, train_step
from bridges.workflow import TransferRun

RECIPES = Path(bridges.recipes.__file__).parent
EEG = ["F3", "C3", "O1", "F4", "C4", "O2"]
ISRUC_EEG = ("F3-A2", "C3-A2", "O1-A2", "F4-A1", "C4-A1", "O2-A1")
MODALITY = {"hubert_ecg": "ecg", "papagei": "ppg", "labram": "eeg"}
# Per recipe: data set, (old FM, new FM), the paper's (i, j, r, P), the bridge's (d_in, T, d_out) at real size, and
# its parameter count (DESIGN §9).
PAPER = {
    "wesad_ecg_to_ppg.toml": ("wesad", ("hubert_ecg", "papagei"), (4, 2, 8, 150), (64, 93, 512), 188_912),
    "wesad_ppg_to_ecg.toml": ("wesad", ("papagei", "hubert_ecg"), (7, 11, 32, 50), (512, 235, 128), 398_784),
    "isruc_ecg_to_eeg.toml": ("isruc", ("hubert_ecg", "labram"), (11, 0, 4, 200), (200, 46, 512), 140_000),
    "isruc_eeg_to_ecg.toml": ("isruc", ("labram", "hubert_ecg"), (7, 2, 32, 300), (512, 181, 200), 1_813_984),
}
# Per data set: window and step (s), classes, the split as the recipe gives it.
DATA = {
    "wesad": (60.0, 5.0, 3, [5, 2, 5, 3]),
    "isruc": (30.0, 30.0, 2, [0.33, 0.11, 0.33, 0.22]),
}
# The published sizes the recipes name, and small configs of the same architectures just deep enough for the
# recipe's layers (HuBERT-ECG 32 wide, PaPaGei 4 filters, LaBraM 100 wide; token counts as at real size).
SIZES = {"hubert_ecg": "small", "papagei": "s", "labram": "base"}
SMALL = {"hubert_ecg": "tiny", "papagei": "small", "labram": "small"}
DEPTH_KEY = {"hubert_ecg": "num_hidden_layers", "papagei": "n_blocks", "labram": "depth"}


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _real_size_bridge(run: TransferRun, i: int, j: int) -> tuple[int, int, int]:
    """``(d_in, T, d_out)`` of the bridge at (i, j): the width of the new FM's layer ``i`` and the shape of the old
    FM's layer-``j`` input, from the published architectures built on the meta device (shapes only, no weights)."""
    with torch.device("meta"):
        new_fm = build_fm(replace(run.fm_spec("new"), checkpoint=None))
        old_fm = build_fm(replace(run.fm_spec("old"), checkpoint=None))
        d_in = new_fm.layer_shapes()[i][1]
        spec = old_fm.input_spec
        x = torch.zeros(1, spec.n_channels, spec.n_samples)
        h = old_fm.embed(x) if j == 0 else old_fm.hidden_states(x)[j - 1]
    return d_in, h.shape[1], h.shape[2]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_has_the_papers_settings(tmp_path, name):
    source, (old_fm, new_fm), (i, j, rank, prototypes), shape, n_parameters = PAPER[name]
    window_s, step_s, classes, split = DATA[source]
    raw = read_toml(RECIPES / name)
    assert raw["data"]["root"].startswith("/path/to/")
    assert not {"scenario", "n_subjects", "duration_s", "seed"} & set(raw["data"])  # a split table needs no seed
    # The placeholder root is refused as it is; a real folder in its place, the recipe as the user runs it.
    run = TransferRun(RECIPES / name, {"data": {"root": str(tmp_path)}, "output": {"dir": str(tmp_path / "run")}})
    data, train = run.section("data"), run.section("train")
    assert (data.source, data.window_s, data.step_s, data.classes, data.split) == (source, window_s, step_s,
                                                                                   classes, split)
    assert (data.old_modality, data.new_modality) == (MODALITY[old_fm], MODALITY[new_fm])
    assert (run.fm_spec("old").name, run.fm_spec("new").name) == (old_fm, new_fm)
    for side in ("old", "new"):
        spec = run.fm_spec(side)
        assert spec.size == SIZES[spec.name] and spec.window_s == window_s and not spec.config
        assert raw[f"{side}_fm"]["checkpoint"].startswith("/path/to/")
        expected = {"labram": EEG, "papagei": [], "hubert_ecg": ["ECG" if source == "wesad" else "X2"]}
        assert spec.channels == expected[spec.name]
    assert (train.i, train.j, train.rank, train.n_prototypes, train.init) == (i, j, rank, prototypes, "rand_P")
    assert (train.batch_size, train.loss, run.section("export").hop_s) == (16, "cosine", step_s)
    # The bridge's shape at real size, from the published architectures: the DESIGN table's parameter count.
    assert _real_size_bridge(run, i, j) == shape
    assert BridgeConfig(*shape, rank, prototypes).n_parameters == n_parameters


@pytest.mark.parametrize("name", sorted(PAPER))
def test_each_placeholder_says_which_key_to_set(tmp_path, name):
    title = {"wesad": "WESAD", "isruc": "ISRUC-Sleep"}[PAPER[name][0]]
    root = r"\[data\]: root '/path/to/.+' is '/path/to/.+', which does not exist; the recipe's placeholder: set " \
           rf"\[data\] root to your {title} folder"
    with pytest.raises(ConfigError, match=root):
        TransferRun(RECIPES / name, {"output": {"dir": str(tmp_path / "run")}})
    result = CliRunner().invoke(cli, ["bridge", "fit-head", "--config", str(RECIPES / name), "--out",
                                      str(tmp_path / "run"), "--quiet"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "set [data] root" in str(result.exception)
    # The root filled in, each checkpoint still says which key to set, before any data is read.
    run = TransferRun(RECIPES / name, {"data": {"root": str(tmp_path)}, "output": {"dir": str(tmp_path / "run")}})
    for side in ("old", "new"):
        with pytest.raises(ConfigError, match=rf"\[{side}_fm\]: checkpoint '/path/to/.+' is '/path/to/.+', which does "
                                              rf"not exist; the recipe's placeholder: set \[{side}_fm\] checkpoint"):
            run.build_fm_and_preprocess(side)
    assert not (tmp_path / "run" / "cache").exists()


# --- tiny data sets in their published layouts -------------------------------------------------------------------
# Simulation seeds whose sessions hold windows of every class (WESAD: 7 min each; ISRUC: 16 epochs of 30 s).
WESAD_SEEDS = {"S2": 11, "S3": 22, "S4": 33, "S5": 18}
ISRUC_SEEDS = {"1": 1, "2": 2, "3": 3, "4": 4}


@pytest.fixture(scope="module")
def wesad_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("WESAD")
    for subject, seed in WESAD_SEEDS.items():
        simulated_wesad_subject(root, int(subject[1:]), 420.0, seed=seed, dwell_scale=0.5)
    return root


@pytest.fixture(scope="module")
def isruc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ISRUC") / "subgroup1"
    for subject, seed in ISRUC_SEEDS.items():
        simulated_isruc_subject(root, int(subject), 16, seed=seed, dwell_scale=0.3)
    return root


def _small_checkpoint(run: TransferRun, side: str, depth: int, path: Path) -> dict:
    """Write random weights of a small config of ``side``'s architecture to ``path`` (our ``.safetensors``); the
    ``[<side>_fm]`` values that load it."""
    spec = replace(run.fm_spec(side), size=SMALL[run.fm_spec(side).name], checkpoint=None)
    spec = replace(spec, config={DEPTH_KEY[spec.name]: depth})
    save_fm_state(build_fm(spec), path)
    return {"size": spec.size, "config": spec.config, "checkpoint": str(path)}


# The ONNX export of these deep graphs is most of each run's time: the ISRUC recipes (HuBERT-ECG ↔ LaBraM) go that
# far; HuBERT-ECG ↔ PaPaGei bundles are exported and checked in tests/test_export.py.
EXPORTED = {"isruc_ecg_to_eeg.toml", "isruc_eeg_to_ecg.toml"}


# Training end to end keeps both cores busy: these runs share one worker, so the real-time tests keep the other.
@pytest.mark.xdist_group("cpu_heavy")
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PAPER))
def test_recipe_runs_end_to_end_on_tiny_data_in_the_published_layout(request, tmp_path, name):
    source, (old_fm, new_fm), (i, j, rank, prototypes), (_, tokens, _), _ = PAPER[name]
    window_s, step_s, classes, _ = DATA[source]
    root = request.getfixturevalue(f"{source}_root")
    subjects = list(WESAD_SEEDS if source == "wesad" else ISRUC_SEEDS)
    bundle_path = tmp_path / "paper.bxb"
    base = TransferRun(RECIPES / name, {"data": {"root": str(root)}, "output": {"dir": str(tmp_path / "run")}})
    # Each FM just deep enough for the recipe's positions: the ONNX export's cost grows with the layers it holds.
    checkpoints = {f"{side}_fm": _small_checkpoint(base, side, layer + 1, tmp_path / f"{side}.safetensors")
                   for side, layer in (("old", j), ("new", i))}
    # The paths filled in; one subject per split; a WESAD window every 20 s (not 5) to keep it small; a frozen old
    # FM and a head trained long enough to predict more than one class, so that select has pseudo-labels to score.
    overrides = {
        "data": {"root": str(root), "split": dict(zip(("train", "val", "pair", "test"), [[s] for s in subjects])),
                 **({"step_s": 20.0} if source == "wesad" else {})},
        **checkpoints,
        "head": {"epochs": 30, "lr": 1e-2, "batch_size": 16, "unfreeze": False},
        "select": {"n_folds": 2},
        "train": {"epochs": 1},
        "export": {"path": str(bundle_path)},
        "output": {"dir": str(tmp_path / "run")},
    }
    run = TransferRun(RECIPES / name, overrides)
    splits = run.splits
    assert all(len(part) >= 4 for part in splits.values())
    assert set(np.concatenate([part.labels for part in splits.values()]).tolist()) == set(range(classes))
    fit_head_step(run, progress=False)
    selection = select_step(run)
    assert len(selection["pseudo_label_counts"]) == classes
    assert len(selection["f1_per_layer"]) == checkpoints["new_fm"]["config"][DEPTH_KEY[new_fm]]
    trained = train_step(run, progress=False)
    assert (trained["i"], trained["j"]) == (i, j)  # the recipe's positions, not select's
    config = trained["bridge_config"]
    assert (config["rank"], config["n_prototypes"], config["n_tokens"]) == (rank, prototypes, tokens)
    evaluated = evaluate_step(run)
    assert 0.0 <= evaluated["test_metrics"]["accuracy"] <= 1.0
    if name not in EXPORTED:
        return
    export_step(run)

    manifest = read_bundle(bundle_path).manifest
    spec, provenance = manifest.input, manifest.provenance
    expected_classes = ("baseline", "stress", "amusement") if source == "wesad" else ("wake", "sleep")
    assert manifest.task.class_names == expected_classes and len(expected_classes) == classes
    assert (provenance.layer_i, provenance.layer_j) == (i, j)
    assert (provenance.bridge.rank, provenance.bridge.n_prototypes) == (rank, prototypes)
    assert provenance.training_data["source"] == source
    for side, fm in (("old", provenance.old_fm), ("new", provenance.new_fm)):
        written = Path(checkpoints[f"{side}_fm"]["checkpoint"]).read_bytes()
        assert fm.checkpoint_sha256 == hashlib.sha256(written).hexdigest()  # the filled-in file, not random weights
    assert spec.modality == MODALITY[new_fm] and spec.window_s == window_s and spec.hop_s == step_s
    labels = {("wesad", "ppg"): ("BVP",), ("wesad", "ecg"): ("ECG",), ("isruc", "eeg"): ISRUC_EEG,
              ("isruc", "ecg"): ("X2",)}
    assert tuple(spec.channel_labels) == labels[source, spec.modality]
    assert spec.sfreq_hz == {"ppg": 125.0, "ecg": 100.0, "eeg": 200.0}[spec.modality]
    # The bundle's graph gives the torch pipeline's probabilities on real test windows.
    windows = splits["test"].new[:4]
    session = open_session(read_bundle(bundle_path).onnx_bytes, device="cpu").session
    onnx_probs = session.run(None, {"window": windows})[0]
    with torch.no_grad():
        torch_probs = run.load_bridged_model()(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
