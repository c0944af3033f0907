"""`biostream bridge pretrain` and reproducible runs: the FMs pretrained without labels inside a run, picked up by
the later steps and named in the bundle; identical configs give identical artefacts; bad input refused by name.

The acceptance test runs the shipped WESAD recipe (only `[data] root` changed) through every step from the
command line, twice, on a WESAD-layout data set written here."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _wesad_pickle import write_wesad_subject
from click.testing import CliRunner
from safetensors.torch import load_file

import bridges.recipes
from biostream.cli import cli
from bridges.bundle import read_bundle
from bridges.config import ConfigError
from bridges.fm.checkpoints import state_sha256
from bridges.fm.registry import build_fm
from bridges.steps import pretrain_step, seeded_global_rngs
from bridges.workflow import TransferRun
from devices.errors import BadInputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RECIPE = Path(bridges.recipes.__file__).parent / "wesad_ecg_to_ppg_pretrain.toml"
# A WESAD subject's label timeline (s, label code, heart rate in Hz): baseline, stress, amusement. With the
# recipe's 60-s windows every 5 s: 7 baseline, 3 stress and 2 amusement windows per subject.
SEGMENTS = ((0, 90, 1, 1.0), (90, 160, 2, 1.8), (160, 225, 3, 1.35))


def write_subject(root: Path, k: int, segments=SEGMENTS) -> Path:
    """``S<k>/S<k>.pkl``: ECG spikes and a two-harmonic pulse wave at a heart rate set by the state (and subject)."""
    rng = np.random.default_rng(k)
    end_s = segments[-1][1]
    chest_hz, wrist_hz = 700, 64
    label = np.zeros(chest_hz * end_s, np.int32)
    rate_chest, rate_wrist = np.zeros(chest_hz * end_s), np.zeros(wrist_hz * end_s)
    for start, stop, code, heart_hz in segments:
        label[start * chest_hz: stop * chest_hz] = code
        rate_chest[start * chest_hz: stop * chest_hz] = heart_hz * (1 + 0.05 * k)
        rate_wrist[start * wrist_hz: stop * wrist_hz] = heart_hz * (1 + 0.05 * k)
    beat_chest = 2 * np.pi * np.cumsum(rate_chest) / chest_hz
    beat_wrist = 2 * np.pi * np.cumsum(rate_wrist) / wrist_hz
    n, m = label.size, rate_wrist.size
    ecg = np.sin(beat_chest) ** 15 + 0.05 * rng.standard_normal(n)
    bvp = 40 * np.sin(beat_wrist) + 10 * np.sin(2 * beat_wrist) + rng.normal(0, 1, m)
    content = {
        "signal": {
            "chest": {"ACC": rng.normal(0, 0.1, (n, 3)), "ECG": ecg[:, None], "EMG": rng.normal(0, 0.01, (n, 1)),
                      "EDA": rng.uniform(1, 5, (n, 1)), "Temp": np.full((n, 1), 34.0, np.float32),
                      "Resp": rng.normal(0, 3, (n, 1))},
            "wrist": {"ACC": rng.integers(-64, 64, (m // 2, 3)).astype(np.float64), "BVP": bvp[:, None],
                      "EDA": rng.uniform(0.1, 2, (m // 16, 1)), "TEMP": rng.uniform(30, 34, (m // 16, 1))},
        },
        "label": label,
        "subject": f"S{k}",
    }
    return write_wesad_subject(root, k, content)


def recipe_copy(folder: Path, root: Path) -> Path:
    """The shipped recipe with only ``[data] root`` changed."""
    text = RECIPE.read_text()
    assert text.count('root = "/path/to/WESAD"') == 1
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "wesad.toml"
    path.write_text(text.replace('root = "/path/to/WESAD"', f'root = "{root}"'))
    return path


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def json_without_timings(path: Path) -> dict:
    """A step's JSON result without its wall-clock entries (the only ones a rerun may change)."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if "seconds" not in k}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip(json.loads(path.read_text()))


def assert_same_tensors(a: Path, b: Path) -> None:
    first, second = load_file(str(a)), load_file(str(b))
    assert sorted(first) == sorted(second), a.name
    for key in first:
        assert torch.equal(first[key], second[key]), f"{a.name}: {key}"


def bundle_members(path: Path) -> dict[str, object]:
    """The bundle's members; the manifest without its creation time (the one thing a rerun changes)."""
    with zipfile.ZipFile(path) as archive:
        members: dict[str, object] = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    assert manifest["provenance"].pop("created_at")
    members["manifest.json"] = manifest
    return members


# ------------------------------------------------------------------------------- acceptance: the recipe, twice
# Training end to end keeps both cores busy: these runs share one worker, so the real-time tests keep the other.
@pytest.mark.xdist_group("cpu_heavy")
@pytest.mark.slow
def test_the_wesad_pretrain_recipe_runs_from_the_command_line_and_reruns_identically(tmp_path):
    root = tmp_path / "WESAD"
    for k in (2, 3, 4, 5, 6):
        write_subject(root, k)
    config = recipe_copy(tmp_path / "configs", root)
    outs = [tmp_path / "run-a", tmp_path / "run-b"]
    for out in outs:
        common = ["--config", str(config), "--out", str(out), "--quiet"]
        steps = [["pretrain", "--epochs", "1", "--max-windows", "16"], ["fit-head", "--epochs", "4"], ["select"],
                 ["train", "--epochs", "1", "--prototypes", "16"], ["evaluate"], ["distill", "--epochs", "1"],
                 ["export", "--output", str(out / "wesad.bxb")]]
        for step in steps:
            assert invoke("bridge", *step, *common) == "", step  # quiet: no bar, no line

    a, b = outs
    # Both FMs were pretrained here, from their seeded random init, and the later steps ran on those weights.
    for side in ("old", "new"):
        result = json.loads((a / f"pretrain_{side}.json").read_text())
        assert result["side"] == side and result["n_windows"] == 16 and len(result["loss"]) == 1
        assert result["fm_spec"]["start"] == "random-init" and (a / f"pretrain_{side}.png").stat().st_size > 0
        pretrained = load_file(str(a / f"pretrain_{side}.safetensors"))
        assert state_sha256(pretrained) == result["weights_sha256"]
        initial = build_fm(TransferRun(config, {"output": {"dir": str(a)}}).fm_spec(side)).state_dict()
        assert state_sha256(initial) != result["weights_sha256"]  # pretraining changed the weights
    manifest = read_bundle(a / "wesad.bxb").manifest
    new_fm, old_fm = manifest.provenance.new_fm, manifest.provenance.old_fm
    assert new_fm.pretrained is True and new_fm.checkpoint_sha256 == "random-init"
    assert new_fm.weights_sha256 == json.loads((a / "pretrain_new.json").read_text())["weights_sha256"]
    assert old_fm.pretrained is True and old_fm.fine_tuned is True  # the recipe fine-tunes the teacher
    old_model = load_file(str(a / "old_model.safetensors"))
    assert old_fm.weights_sha256 == state_sha256(old_model)
    assert manifest.task.class_names == ("baseline", "stress", "amusement") and manifest.input.modality == "ppg"
    info = invoke("info", str(a / "wesad.bxb"))
    assert "hubert_ecg-small (random init, then pretrained without labels, then fine-tuned)" in info
    assert "papagei-s (random init, then pretrained without labels)" in info

    # The second run, from the same config, gives the same artefacts bit for bit.
    names = sorted(p.name for p in a.iterdir() if p.suffix in (".json", ".safetensors"))
    assert names == sorted(p.name for p in b.iterdir() if p.suffix in (".json", ".safetensors"))
    assert {"pretrain_old.json", "head.json", "select.json", "train.json", "evaluate.json", "distill.json",
            "bridge.safetensors", "old_model.safetensors", "pretrain_new.safetensors"} <= set(names)
    for name in names:
        if name.endswith(".json"):
            assert json_without_timings(a / name) == json_without_timings(b / name), name
        else:
            assert_same_tensors(a / name, b / name)
    assert bundle_members(a / "wesad.bxb") == bundle_members(b / "wesad.bxb")


# ------------------------------------------------------------------------------- each step twice, tiny and fast
TINY = """
[data]
source = "simulated"
scenario = "stress"
n_subjects = 4
duration_s = 120.0
window_s = 10.0
step_s = 10.0
seed = 1

[old_fm]
name = "hubert_ecg"
size = "tiny"

[new_fm]
name = "papagei"
size = "small"

[pretrain]
fms = ["new"]
epochs = 2
batch_size = 8
max_windows = 16

[head]
epochs = 2
unfreeze = true

[train]
i = 1
j = 0
epochs = 2
rank = 2
n_prototypes = 4
"""


def tiny_run(folder: Path, text: str = TINY, **overrides) -> TransferRun:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.toml").write_text(text)
    return TransferRun(folder / "run.toml", {"output": {"dir": str(folder / "out")}, **overrides}, progress=False)


def test_pretrain_and_train_give_identical_artefacts_for_an_identical_config(tmp_path):
    from bridges.steps import fit_head_step, train_step

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    outs = []
    for name in ("a", "b"):
        run = tiny_run(tmp_path / name)
        pretrain_step(run, progress=False)
        fit_head_step(run, progress=False)
        train_step(run, progress=False)
        outs.append(run.out_dir)
    after = (torch.rand(3), np.random.rand(), random.random())

    a, b = outs
    for name in ("pretrain_new.safetensors", "old_model.safetensors", "bridge.safetensors"):
        assert_same_tensors(a / name, b / name)
    for name in ("pretrain_new.json", "head.json", "train.json"):
        assert json_without_timings(a / name) == json_without_timings(b / name)
    # The caller's global RNGs are as they were: the steps seed theirs inside and restore them.
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    assert torch.equal(after[0], torch.rand(3)) and after[1:] == (np.random.rand(), random.random())
    # PaPaGei's dropout draws from torch's global RNG: another [pretrain] seed gives other weights.
    other = tiny_run(tmp_path / "c", TINY.replace("max_windows = 16", "max_windows = 16\nseed = 5"))
    pretrain_step(other, progress=False)
    assert state_sha256(load_file(str(other.out_dir / "pretrain_new.safetensors"))) != state_sha256(
        load_file(str(a / "pretrain_new.safetensors")))


def test_the_global_rngs_are_seeded_inside_a_step_and_restored_after():
    torch.manual_seed(7)
    expected_outside = torch.rand(2)
    torch.manual_seed(7)
    with seeded_global_rngs(3):
        inside = (torch.rand(2), np.random.rand(), random.random())
    assert torch.equal(torch.rand(2), expected_outside)
    with seeded_global_rngs(3):
        assert torch.equal(torch.rand(2), inside[0]) and (np.random.rand(), random.random()) == inside[1:]
    with torch.random.fork_rng(devices=[]):
        dropout = torch.nn.Dropout(0.5).train()
        with seeded_global_rngs(4):
            first = dropout(torch.ones(64))
        with seeded_global_rngs(4):
            assert torch.equal(dropout(torch.ones(64)), first)


# ------------------------------------------------------------------------------- later steps and the weights
def test_later_steps_refuse_missing_changed_or_altered_pretrained_weights(tmp_path):
    run = tiny_run(tmp_path / "run")
    with pytest.raises(BadInputError, match=r"\[pretrain\] fms lists 'new', but '.+pretrain_new.safetensors' is "
                                            r"missing: run 'biostream bridge pretrain' first"):
        run.check_fm_weights("new")
    result = CliRunner().invoke(cli, ["bridge", "fit-head", "--config", str(tmp_path / "run" / "run.toml"),
                                      "--quiet"])
    assert result.exit_code != 0 and "run 'biostream bridge pretrain' first" in str(result.exception)
    assert not (run.out_dir / "cache").exists()  # refused before any data was built

    pretrain_step(run, progress=False)
    fm, _ = run.build_fm_and_preprocess("new")
    assert state_sha256(fm.state_dict()) == json.loads((run.out_dir / "pretrain_new.json").read_text())[
        "weights_sha256"]
    fresh, _ = run.build_fm_and_preprocess("new", pretrained=False)
    assert state_sha256(fresh.state_dict()) != state_sha256(fm.state_dict())

    changed = tiny_run(tmp_path / "run", TINY.replace('size = "small"\n\n[pretrain]',
                                                      'size = "small"\nseed = 9\n\n[pretrain]'))
    with pytest.raises(ConfigError, match=r"\[new_fm\] changed since 'pretrain_new.safetensors' was pretrained "
                                          r"\(seed 0 -> 9\); rerun 'biostream bridge pretrain'"):
        changed.build_fm_and_preprocess("new")

    state = load_file(str(run.out_dir / "pretrain_new.safetensors"))
    key = next(iter(state))
    state[key] = state[key] + 1
    from safetensors.torch import save_file

    save_file(state, str(run.out_dir / "pretrain_new.safetensors"))
    with pytest.raises(BadInputError, match=r"does not hold the weights 'pretrain_new.json' records"):
        tiny_run(tmp_path / "run").build_fm_and_preprocess("new")


def test_a_side_with_a_checkpoint_continues_pretraining_from_it(tmp_path):
    from bridges.fm.checkpoints import file_sha256
    from bridges.fm.registry import FMSpec, save_fm_state

    start = build_fm(FMSpec(name="papagei", size="small", window_s=10.0, seed=3))
    checkpoint = save_fm_state(start, tmp_path / "papagei_start.safetensors")
    run = tiny_run(tmp_path / "run", TINY.replace('size = "small"\n\n[pretrain]',
                                                  f'size = "small"\ncheckpoint = "{checkpoint}"\n\n[pretrain]'))
    result = pretrain_step(run, progress=False)["new"]
    assert result["fm_spec"]["start"] == file_sha256(checkpoint) and "seed" not in result["fm_spec"]
    fm, _ = run.build_fm_and_preprocess("new")
    assert state_sha256(fm.state_dict()) == result["weights_sha256"] != state_sha256(start.state_dict())
    # The checkpoint stays the recorded starting point.
    assert run.provenance_fms()["new"]["checkpoint_sha256"] == file_sha256(checkpoint)


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("toml", "match"),
    [("[pretrain]\nepoch = 3\n", r"\[pretrain\]: unknown key\(s\) \['epoch'\]; known keys are \['fms', 'splits'"),
     ('[pretrain]\nfms = ["newer"]\n', r"\[pretrain\]: 'fms' holds 'newer', but has to hold some of \['old', 'new'\]"),
     ('[pretrain]\nfms = ["new", "new"]\n', r"'fms' lists \['new'\] twice"),
     ('[pretrain]\nsplits = ["train", "test"]\n', r"'splits' may not include 'test': its subjects must stay unseen"),
     ("[pretrain]\nsplits = []\n", r"'splits' is empty"),
     ("[pretrain]\nbatch_size = 1\n", r"'batch_size' must be >= 2, got 1"),
     ("[pretrain]\nmax_windows = 1\n", r"'max_windows' must be >= 2, got 1"),
     ("[pretrain]\nmask_frac = 1.5\n", r"'mask_frac' must be in \[0, 1\), got 1.5"),
     ("[pretrain]\ntemperature = 0\n", r"'temperature'"),
     ('[pretrain]\nfms = "new"\n', r"\[pretrain\]: 'fms' must be list\[str\], got 'new'")],
)
def test_pretrain_keys_are_checked_by_name(tmp_path, toml, match):
    (tmp_path / "run.toml").write_text(toml)
    with pytest.raises(ConfigError, match=match) as err:
        TransferRun(tmp_path / "run.toml", {"output": {"dir": str(tmp_path / "out")}})
    assert "\n" not in str(err.value) and "run.toml [pretrain]" in str(err.value)


def test_pretraining_a_side_without_enough_data_is_refused(tmp_path):
    root = tmp_path / "WESAD"
    for k in (2, 3, 4):
        write_subject(root, k)
    write_subject(root, 5, segments=((0, 62, 1, 1.0),))  # one 60-s window
    config = recipe_copy(tmp_path / "configs", root)
    config.write_text(config.read_text().replace(
        'seed = 0\n\n# Small', 'split = { train = ["S2"], val = ["S5"], pair = ["S3"], test = ["S4"] }\n\n# Small'
    ).replace('splits = ["train", "pair"]', 'splits = ["val"]'))
    result = CliRunner().invoke(cli, ["bridge", "pretrain", "--config", str(config), "--out", str(tmp_path / "out"),
                                      "--quiet"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert str(result.exception).endswith(
        "[pretrain]: fms lists 'old', but splits ['val'] hold 1 ecg window(s); contrastive pretraining needs at "
        "least 2 (list more splits, or drop it from fms)")
    assert not list((tmp_path / "out").glob("pretrain_*"))


def test_pretrain_with_nothing_listed_says_so(tmp_path):
    (tmp_path / "run.toml").write_text("[data]\nn_subjects = 4\n")
    result = CliRunner().invoke(cli, ["bridge", "pretrain", "--config", str(tmp_path / "run.toml"), "--out",
                                      str(tmp_path / "out")])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)
    assert "[pretrain]: fms is empty, so there is nothing to pretrain" in str(result.exception)
