"""The bridge config as a user meets it: keys that do not apply are refused by name, the data root is resolved
against the config file's folder, the data set's own modality names are accepted, WESAD's binary protocol, the
subject split from the TOML, recipes with checkpoints to fill in, truthful provenance and quiet steps."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from _wesad_pickle import write_wesad_subject as pickle_subject
from click.testing import CliRunner

import bridges.recipes
from biostream.cli import cli
from bridges.bundle import bundle_summary, read_bundle
from bridges.config import ConfigError
from bridges.manifest import FMInfo, Manifest, ManifestError
from bridges.workflow import TransferRun

RECIPES = Path(bridges.recipes.__file__).parent
# A tiny WESAD subject: 100 s, baseline [0, 40), stress [40, 70), amusement [70, 100); 10-s windows every 10 s
# give 4 baseline, 3 stress and 3 amusement windows.
SUBJECT_S = 100
SEGMENTS = ((0, 40, 1), (40, 70, 2), (70, 100, 3))


def write_wesad_subject(root: Path, k: int) -> Path:
    """``S<k>/S<k>.pkl`` in the published layout (a Python 2 pickle), with tones for ECG and BVP."""
    rng = np.random.default_rng(k)
    n = 700 * SUBJECT_S
    t = np.arange(n) / 700
    label = np.zeros(n, dtype=np.int32)
    for start, stop, code in SEGMENTS:
        label[start * 700: stop * 700] = code
    tb = np.arange(64 * SUBJECT_S) / 64
    content = {
        "signal": {
            "chest": {"ACC": rng.normal(0, 0.1, (n, 3)), "ECG": (np.sin(2 * np.pi * (1.0 + 0.1 * k) * t)
                                                                 + rng.normal(0, 0.05, n))[:, None],
                      "EMG": rng.normal(0, 0.01, (n, 1)), "EDA": rng.uniform(1, 5, (n, 1)),
                      "Temp": np.full((n, 1), 34.0, np.float32), "Resp": rng.normal(0, 3, (n, 1))},
            "wrist": {"ACC": rng.integers(-64, 64, (32 * SUBJECT_S, 3)).astype(np.float64),
                      "BVP": (40 * np.sin(2 * np.pi * 1.1 * tb) + rng.normal(0, 1, tb.size))[:, None],
                      "EDA": rng.uniform(0.1, 2, (4 * SUBJECT_S, 1)), "TEMP": rng.uniform(30, 34, (4 * SUBJECT_S, 1))},
        },
        "label": label,
        "subject": f"S{k}",
    }
    return pickle_subject(root, k, content)


@pytest.fixture(scope="module")
def wesad_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "WESAD"
    for k in (2, 3, 4, 5, 6):
        write_wesad_subject(root, k)
    return root


def config_file(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------- keys used or refused by name
@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ('[data]\nsource = "wesad"\nroot = "x"\nscenario = "stress"\n',
         r"\[data\]: 'scenario' applies to source 'simulated', not to 'wesad'; remove it"),
        ('[data]\nsource = "isruc"\nroot = "x"\nn_subjects = 4\nduration_s = 60.0\n',
         r"\[data\]: 'duration_s', 'n_subjects' apply to source 'simulated', not to 'isruc'; remove them"),
        ('[data]\nroot = "WESAD"\n', r"\[data\]: 'root' applies to source 'fog' or 'isruc' or 'wesad', not to "
                                     r"'simulated'"),
        ('[data]\nsource = "wesad"\n', r"\[data\]: 'root' is not set: source 'wesad' reads WESAD from that folder"),
        ('[data]\nsource = "wesad"\nroot = "x"\nclasses = 5\n',
         r"'classes' is 5, but source 'wesad' has 3 \(baseline, stress, amusement\); 2 \(non-stress"),
        ('[data]\nsource = "fog"\nroot = "x"\nclasses = 3\n', r"'classes' is 3, but source 'fog' has 2 \(walking"),
        ('[data]\nscenario = "gait"\nclasses = 5\n', r"'classes' is 5, but scenario 'gait' has 2 \(walking"),
        ('[data]\nscenario = "panic"\n', r"'scenario' is 'panic', but has to be one of \['stress', 'sleep', 'gait'\]"),
        ('[data]\nsource = "wesad"\nroot = "x"\nseed = 3\nsplit = { train = [2], val = [3], pair = [4], '
         'test = [5] }\n', r"\[data\]: 'seed' has nothing to seed"),
        ("[data]\nsplit = [5, 2, 5]\n", r"'split' must give 4 numbers, for \['train', 'val', 'pair', 'test'\]"),
        ('[data]\nsplit = { train = ["sim0"], val = ["sim1"], pair = ["sim2"] }\n', r"'split' lacks \['test'\]"),
        ('[data]\nsplit = { train = [0], val = [1], pair = [2], test = [3], tune = [4] }\n',
         r"'split' has unknown key\(s\) \['tune'\]"),
        ('[data]\nsource = "wesad"\nroot = "x"\nsplit = { train = ["S2", "S3"], val = [3], pair = [4], '
         'test = [5] }\n', r"subject S3 is in 'split.train' and 'split.val'"),
        ('[data]\nsource = "wesad"\nroot = "x"\nsplit = { train = ["X2"], val = [3], pair = [4], test = [5] }\n',
         r"'split.train' holds 'X2', which is not a WESAD subject id \(S<k> or k\)"),
        ('[data]\nsplit = { train = [], val = [1], pair = [2], test = [3] }\n',
         r"'split.train' must be a non-empty list of subject ids"),
        ("[old_fm]\nwindow_s = 30.0\n", r"\[old_fm\]: 'window_s' is not a key of an FM section: the window is "
                                         r"\[data\] window_s"),
        ('[new_fm]\nname = "papagei"\nchannels = ["BVP"]\n', r"\[new_fm\]: 'channels' does not apply to papagei"),
        ("[old_fm]\ntrust_pickle = true\n", r"\[old_fm\]: 'trust_pickle' applies to a published checkpoint"),
        ('[old_fm]\nname = "labram"\nsize = "base"\ncheckpoint = "labram-base.pth"\nconfig = { depth = 4 }\n',
         r"\[old_fm\]: 'config' does not apply with a published labram checkpoint"),
        ("[head]\nepoch = 3\n", r"\[head\]: unknown key\(s\) \['epoch'\]; known keys are"),
        ("[export]\nwindow_s = 3.0\n", r"\[export\]: unknown key\(s\) \['window_s'\]"),
    ],
)
def test_keys_that_do_not_apply_are_refused_by_name(tmp_path, toml, match):
    config = config_file(tmp_path, toml)
    with pytest.raises(ConfigError, match=match) as err:
        TransferRun(config)
    assert "\n" not in str(err.value) and "run.toml" in str(err.value)


def test_defaults_follow_the_source(tmp_path, wesad_root):
    sleep = TransferRun(config_file(tmp_path / "a", '[data]\nscenario = "sleep"\nold_modality = "eeg"\n'
                                                    'new_modality = "ecg"\n')).section("data")
    assert (sleep.window_s, sleep.step_s, sleep.n_subjects, sleep.duration_s, sleep.seed) == (30.0, 30.0, 15, 900.0, 0)
    assert sleep.root is None and sleep.classes is None
    wesad = TransferRun(config_file(tmp_path / "b", f'[data]\nsource = "wesad"\nroot = "{wesad_root}"\n'))
    data = wesad.section("data")
    assert (data.old_modality, data.new_modality, data.window_s, data.step_s, data.classes) == (
        "ecg", "ppg", 60.0, 5.0, 3)
    assert data.scenario is None and data.n_subjects is None and data.duration_s is None
    isruc = TransferRun(config_file(tmp_path / "c", f'[data]\nsource = "isruc"\nroot = "{wesad_root}"\n'))
    assert (isruc.section("data").old_modality, isruc.section("data").new_modality) == ("eeg", "ecg")
    assert (isruc.section("data").window_s, isruc.section("data").classes) == (30.0, 2)


# ------------------------------------------------------------------------------- modality names
@pytest.mark.parametrize(
    ("source", "old", "new", "expected"),
    [("wesad", "ECG", "bvp", ("ecg", "ppg")), ("wesad", "BVP", "ecg", ("ppg", "ecg")),
     ("isruc", "eeg", "X2", ("eeg", "ecg")), ("fog", "EMG", "eeg", ("emg", "eeg")),
     ("simulated", "ecg", "BVP", ("ecg", "ppg"))],
)
def test_the_data_sets_own_modality_names_are_aliases(tmp_path, wesad_root, source, old, new, expected):
    root = f'root = "{wesad_root}"\n' if source != "simulated" else ""
    config = config_file(tmp_path, f'[data]\nsource = "{source}"\n{root}old_modality = "{old}"\n'
                                   f'new_modality = "{new}"\n')
    data = TransferRun(config).section("data")
    assert (data.old_modality, data.new_modality) == expected


@pytest.mark.parametrize(
    ("source", "toml", "match"),
    [("wesad", 'new_modality = "eeg"', r"'new_modality' is 'eeg', which WESAD does not have; accepted names are "
                                       r"ecg, ppg, bvp \(= ppg\)"),
     ("isruc", 'old_modality = "ppg"', r"'old_modality' is 'ppg', which ISRUC-Sleep does not have; accepted names "
                                       r"are eeg, ecg, x2 \(= ecg\)"),
     ("fog", 'new_modality = "ecg"', r"'new_modality' is 'ecg', which FOG does not have; accepted names are eeg, "
                                     r"emg$"),
     ("wesad", 'old_modality = "ppg"\nnew_modality = "BVP"', r"'old_modality' and 'new_modality' are both 'ppg'")],
)
def test_modalities_outside_the_data_set_list_the_accepted_names(tmp_path, source, toml, match):
    config = config_file(tmp_path, f'[data]\nsource = "{source}"\nroot = "x"\n{toml}\n')
    with pytest.raises(ConfigError, match=match) as err:
        TransferRun(config)
    assert "direction" not in str(err.value)


# ------------------------------------------------------------------------------- paths and the split
def test_data_root_is_relative_to_the_config_file(tmp_path, wesad_root, monkeypatch):
    folder = wesad_root.parent / "configs"
    config = config_file(folder, '[data]\nsource = "wesad"\nroot = "../WESAD"\n\n[output]\ndir = "run"\n')
    monkeypatch.chdir(tmp_path)  # somewhere else: the working directory plays no part
    run = TransferRun(config)
    assert run.data_root == wesad_root.resolve() and run.out_dir == (folder / "run").resolve()
    config.write_text('[data]\nsource = "wesad"\nroot = "../WESDA"\n')
    with pytest.raises(ConfigError, match=r"root '../WESDA' is '(.+)' \(relative to the config file's folder "
                                          r"'(.+)'\), which does not exist") as err:
        TransferRun(config)
    assert str((wesad_root.parent / "WESDA").resolve()) in str(err.value)
    assert str(folder.resolve()) in str(err.value)
    (folder / "file").write_text("")
    config.write_text(f'[data]\nsource = "wesad"\nroot = "{folder / "file"}"\n')
    with pytest.raises(ConfigError, match=r"which is not a folder$"):
        TransferRun(config)
    result = CliRunner().invoke(cli, ["bridge", "fit-head", "--config", str(config)])
    assert result.exit_code != 0


def test_wesad_binary_protocol_aliases_and_a_split_of_named_subjects(tmp_path, wesad_root):
    config = config_file(wesad_root.parent / "binary", """
[data]
source = "wesad"
root = "../WESAD"
new_modality = "BVP"
classes = 2
window_s = 10.0
step_s = 10.0
split = { train = ["S2"], val = [3], pair = ["s4"], test = ["5"] }

[output]
dir = "run"
""")
    run = TransferRun(config, progress=False)
    splits = run.splits
    assert {name: sorted(set(w.subjects.tolist())) for name, w in splits.items()} == {
        "train": ["S2"], "val": ["S3"], "pair": ["S4"], "test": ["S5"]}  # S6 is not read
    assert run.splits["pair"].info["subjects"] == ["S2", "S3", "S4", "S5"]
    train = splits["train"]
    assert train.class_names == ["non-stress", "stress"] and train.new_modality == "ppg"
    # 10-s windows: baseline at 0-30 s, stress at 40-60 s, amusement at 70-90 s (non-stress both).
    assert train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    assert train.old.shape[1:] == (1, 1000) and train.new.shape[1:] == (1, 1250)

    three = TransferRun(config_file(tmp_path, config.read_text().replace("classes = 2\n", "").replace(
        '"../WESAD"', f'"{wesad_root}"')), progress=False)
    assert three.splits["train"].class_names == ["baseline", "stress", "amusement"]
    assert three.splits["train"].labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_split_counts_and_shares_from_the_toml(tmp_path, wesad_root):
    base = f'[data]\nsource = "wesad"\nroot = "{wesad_root}"\nwindow_s = 10.0\nstep_s = 10.0\n'
    run = TransferRun(config_file(tmp_path / "a", base + "split = [2, 1, 1, 1]\nseed = 4\n"), progress=False)
    sizes = {name: len(set(w.subjects.tolist())) for name, w in run.splits.items()}
    assert sizes == {"train": 2, "val": 1, "pair": 1, "test": 1}
    run = TransferRun(config_file(tmp_path / "b", base + "split = [3, 2, 2, 2]\n"), progress=False)
    with pytest.raises(ConfigError, match=r"run.toml \[data\] split: split counts \[3, 2, 2, 2\] must be 4 "
                                          r"non-negative integers summing to 5 subjects"):
        _ = run.splits


def test_a_simulated_split_names_simulated_subjects(tmp_path):
    config = config_file(tmp_path, '[data]\nn_subjects = 4\nseed = 2\nsplit = { train = ["sim2"], val = [3], '
                                   'pair = ["sim4"], test = ["sim9"] }\n')
    with pytest.raises(ConfigError, match=r"split: names \['sim9'\], but the simulated subjects are sim2 \.\.\. "
                                          r"sim5"):
        _ = TransferRun(config, progress=False).splits


# ------------------------------------------------------------------------------- recipes with checkpoints to fill in
@pytest.mark.parametrize("recipe", ["fog_eeg_to_emg.toml", "fog_emg_to_eeg.toml"])
def test_a_recipe_whose_checkpoints_are_not_filled_in_says_which_key_to_set(tmp_path, recipe):
    run = TransferRun(RECIPES / recipe, {"output": {"dir": str(tmp_path / "run")}})
    with pytest.raises(ConfigError, match=r"\[old_fm\]: checkpoint '/path/to/.+' is '/path/to/.+', which does not "
                                          r"exist; the recipe's placeholder: set \[old_fm\] checkpoint to the"):
        run.build_fm_and_preprocess("old")
    result = CliRunner().invoke(cli, ["bridge", "fit-head", "--config", str(RECIPES / recipe), "--out",
                                      str(tmp_path / "run"), "--quiet"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "checkpoint" in str(result.exception) and "_fm]" in str(result.exception)
    assert not (tmp_path / "run" / "cache").exists()  # refused before any data was built


# ------------------------------------------------------------------------------- provenance
def test_manifest_fm_weights_are_optional_and_shown(tmp_path):
    demo = read_bundle("demo")
    shipped = "\n".join(bundle_summary(demo))  # the shipped bundle: a fine-tuned teacher, a pretrained PPG encoder
    old_dict = demo.manifest.to_dict()
    for side in ("old_fm", "new_fm"):
        sha = old_dict["provenance"][side]["weights_sha256"]
        assert len(sha) == 64 and f"weights sha256 {sha}" in shipped
    assert "hubert_ecg-small (random init, then fine-tuned)" in shipped and "then pretrained without labels" in shipped

    for side in ("old_fm", "new_fm"):  # a bundle from before the keys existed still reads, and shows no hash
        for key in ("weights_sha256", "fine_tuned", "pretrained"):
            old_dict["provenance"][side].pop(key)
    older = Manifest.from_dict(old_dict)
    lines = bundle_summary(replace(demo, manifest=older))
    assert any(line.startswith("old FM:") for line in lines) and not any("weights sha256" in line for line in lines)

    sha = "ab" * 32
    prov = replace(demo.manifest.provenance,
                   old_fm=FMInfo("hubert_ecg-small", weights_sha256=sha, fine_tuned=True),
                   new_fm=FMInfo("papagei-s", "cd" * 32, weights_sha256="ef" * 32, fine_tuned=False))
    manifest = replace(demo.manifest, provenance=prov)
    data = manifest.to_dict()
    assert data["provenance"]["old_fm"] == {"name": "hubert_ecg-small", "checkpoint_sha256": "random-init",
                                            "weights_sha256": sha, "fine_tuned": True}
    assert Manifest.from_dict(json.loads(json.dumps(data))) == manifest
    text = "\n".join(bundle_summary(replace(demo, manifest=manifest)))
    assert "old FM:        hubert_ecg-small (random init, then fine-tuned), layers" in text
    assert f"weights sha256 {sha} (the FM with its head)" in text
    assert f"new FM:        papagei-s (checkpoint {'cd' * 32}), layers" in text
    data["provenance"]["old_fm"]["weights_sha256"] = "1234"
    with pytest.raises(ManifestError, match=r"'provenance.old_fm.weights_sha256' must be 64 lowercase hex"):
        Manifest.from_dict(data)
    data["provenance"]["old_fm"]["weights_sha256"] = sha
    data["provenance"]["old_fm"]["fine_tuned"] = "yes"
    with pytest.raises(ManifestError, match=r"'provenance.old_fm.fine_tuned' must be true or false"):
        Manifest.from_dict(data)


def test_state_hash_is_the_same_for_a_module_and_its_file(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from bridges.fm.checkpoints import state_sha256

    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp_path / "m.safetensors"))
    digest = state_sha256(module.state_dict())
    assert digest == state_sha256(load_file(str(tmp_path / "m.safetensors"))) and len(digest) == 64
    with torch.no_grad():
        module[0].weight[0, 0] += 1e-6
    assert state_sha256(module.state_dict()) != digest


TINY_WESAD = """
[data]
source = "wesad"
root = "../WESAD"
new_modality = "bvp"
classes = 2
window_s = 10.0
step_s = 10.0
split = { train = ["S2", "S6"], val = [3], pair = ["S4"], test = ["S5"] }

[old_fm]
name = "hubert_ecg"
size = "tiny"

[new_fm]
name = "papagei"
size = "small"

[head]
epochs = 2
unfreeze = true

[train]
i = 1
j = 0
epochs = 1
rank = 2
n_prototypes = 4

[export]
path = "tiny.bxb"
task = "stress"

[output]
dir = "run"
"""


def test_quiet_wesad_steps_and_a_bundle_that_names_the_weights_it_holds(wesad_root, one_torch_thread):
    from safetensors.torch import load_file

    from bridges.fm.checkpoints import state_sha256

    folder = wesad_root.parent / "cli"
    config = config_file(folder, TINY_WESAD)
    runner = CliRunner()
    for step in (["fit-head"], ["train"], ["export"]):
        result = runner.invoke(cli, ["bridge", *step, "--config", str(config), "--quiet"], catch_exceptions=False)
        assert result.exit_code == 0 and result.output == "", (step, result.output)
    assert logging.root.manager.disable == logging.NOTSET  # quiet is undone after the step
    loud = runner.invoke(cli, ["bridge", "evaluate", "--config", str(config)], catch_exceptions=False)
    assert loud.exit_code == 0 and "test: accuracy" in loud.output

    run = folder / "run"
    head = json.loads((run / "head.json").read_text())
    old_sha = state_sha256(load_file(str(run / "old_model.safetensors")))
    assert head["weights_sha256"] == old_sha and head["unfreeze"] is True
    manifest = read_bundle(folder / "tiny.bxb").manifest
    prov = manifest.provenance
    assert (prov.old_fm.weights_sha256, prov.old_fm.fine_tuned, prov.old_fm.checkpoint_sha256) == (
        old_sha, True, "random-init")
    assert prov.new_fm.fine_tuned is False and len(prov.new_fm.weights_sha256) == 64
    assert prov.training_data["source"] == "wesad" and "scenario" not in prov.training_data
    assert manifest.task.class_names == ("non-stress", "stress") and manifest.input.modality == "ppg"
    info = runner.invoke(cli, ["info", str(folder / "tiny.bxb")], catch_exceptions=False).output
    assert "hubert_ecg-tiny (random init, then fine-tuned)" in info and f"weights sha256 {old_sha}" in info
    assert "scenario" not in info
    # Random weights keep the z-score; every result and the bundle say so.
    assert head["input_scaling"] == {"old_fm": "zscore"}
    for name in ("train.json", "evaluate.json"):
        assert json.loads((run / name).read_text())["input_scaling"] == {"old_fm": "zscore", "new_fm": "zscore"}
    assert (manifest.input.input_scaling, prov.old_fm.input_scaling, prov.new_fm.input_scaling) == ("zscore",) * 3
    assert "input scaling: zscore (per window and channel: (x - mean) / std)" in info


def test_progress_shows_without_quiet(wesad_root, tmp_path):
    config = config_file(tmp_path, f'[data]\nsource = "wesad"\nroot = "{wesad_root}"\nwindow_s = 10.0\n'
                                   'step_s = 10.0\n\n[old_fm]\nsize = "tiny"\n[head]\nepochs = 1\n')
    result = CliRunner().invoke(cli, ["bridge", "fit-head", "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0 and "paired windows (wesad)" in result.output and "head:" in result.output


def test_export_keeps_the_exporters_chatter_to_itself(capfd):
    import torch

    from bridges.export import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 5, stride=2), torch.nn.Flatten(), torch.nn.LazyLinear(3),
                                torch.nn.Softmax(dim=-1))
    model(torch.zeros(1, 1, 40))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = export_onnx(model, torch.zeros(1, 1, 40))
    assert len(data) > 0
    out, err = capfd.readouterr()
    assert "[torch.onnx]" not in out + err and "✅" not in out + err
    assert not [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))], [
        str(w.message) for w in caught]
