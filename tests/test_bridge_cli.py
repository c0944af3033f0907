"""`biostream bridge` end to end on a tiny config: every step, its artefacts, the bundle, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from biostream.cli import cli
from bridges.bundle import read_bundle
from bridges.config import ConfigError
from bridges.ort_session import open_session
from bridges.workflow import TransferRun

TINY = """
[data]
source = "simulated"
scenario = "stress"
old_modality = "ecg"
new_modality = "ppg"
n_subjects = 4
duration_s = 600.0
window_s = 10.0
step_s = 10.0
seed = 1

[old_fm]
name = "hubert_ecg"
size = "tiny"

[new_fm]
name = "papagei"
size = "small"

[head]
epochs = 10
unfreeze = true

[select]
n_folds = 3

[train]
epochs = 2
rank = 4
n_prototypes = 16
select_by = "agreement"

[distill]
epochs = 1
select_by = "loss"

[export]
path = "tiny.bxb"

[output]
dir = "run"
"""


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.slow
def test_every_step_writes_its_artefacts_and_a_valid_bundle(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    assert invoke("bridge", "fit-head", "--config", str(config), "--quiet").output == ""
    assert "selected:" in invoke("bridge", "select", "--config", str(config)).output
    invoke("bridge", "train", "--config", str(config), "--quiet")
    invoke("bridge", "evaluate", "--config", str(config))
    invoke("bridge", "distill", "--config", str(config), "--quiet")
    invoke("bridge", "export", "--config", str(config))
    run = tmp_path / "run"
    for name in ("head.json", "select.json", "select.png", "train.json", "train.png", "evaluate.json",
                 "confusion.png", "distill.json", "distill.png", "old_model.safetensors", "bridge.safetensors"):
        assert (run / name).stat().st_size > 0, name
    selection = json.loads((run / "select.json").read_text())
    trained = json.loads((run / "train.json").read_text())
    assert (trained["i"], trained["j"]) == (selection["i"], selection["j"])
    distilled = json.loads((run / "distill.json").read_text())
    for result, select_by in ((trained, "agreement"), (distilled, "loss")):  # every criterion at every epoch
        assert result["select_by"] == select_by and result["best_epoch"] == result["chosen_epochs"][select_by]
        assert len(result["val_pair_loss"]) == len(result["val_agreement_f1"]) == len(result["eval_epochs"])
    bundle = read_bundle(tmp_path / "tiny.bxb")
    assert bundle.manifest.provenance.layer_i == trained["i"]
    assert bundle.manifest.provenance.trainable_parameters == trained["n_trainable"]
    # The bundle's graph gives the same probabilities as the saved pipeline in torch, on real test windows.
    pipeline = TransferRun(config).load_bridged_model()
    windows = TransferRun(config).splits["test"].new[:4]
    session = open_session(bundle.onnx_bytes, device="cpu").session
    onnx_probs = session.run(None, {"window": windows})[0]
    import torch

    with torch.no_grad():
        torch_probs = pipeline(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    info = invoke("info", str(tmp_path / "tiny.bxb")).output
    assert "rank 4, 16 prototypes" in info
    # Truthful provenance: the teacher fit-head fine-tuned ([head] unfreeze) and the hashes of the weights held.
    assert "old FM:        hubert_ecg-tiny (random init, then fine-tuned)" in info
    head = json.loads((run / "head.json").read_text())
    assert f"weights sha256 {head['weights_sha256']} (the FM with its head)" in info
    assert info.count("weights sha256") == 2 and "scenario=stress" in info  # simulated data: its scenario applies


def test_config_with_unknown_key_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[train]\nranc = 4\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['ranc'\]"):
        TransferRun(config)
    result = CliRunner().invoke(cli, ["bridge", "train", "--config", str(config)])
    assert result.exit_code != 0


def test_unknown_section_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[trian]\nepochs = 4\n")
    with pytest.raises(ConfigError, match="trian"):
        TransferRun(config)


def test_step_before_its_inputs_names_the_missing_step(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    run = TransferRun(config)
    with pytest.raises(Exception, match="run 'biostream bridge fit-head' first"):
        run.load_old_model()


def test_missing_wesad_root_is_one_line_error(tmp_path):
    config = tmp_path / "wesad.toml"
    config.write_text(f'[data]\nsource = "wesad"\nroot = "{tmp_path / "nowhere"}"\n')
    with pytest.raises(Exception, match="nowhere") as err:
        TransferRun(config).splits  # noqa: B018 - property access builds the data
    assert "\n" not in str(err.value)
