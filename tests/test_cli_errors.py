"""One error story on the command line.

Bad input (a :class:`devices.errors.BadInputError`, or a usage error) is exit code 2 and one line on stderr naming
the thing and the problem, and no crash log. Anything else is a bug in biostream: exit code 1, one line saying so
and pointing to a crash log that holds the traceback. Ctrl-C is exit code 130 without a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

import biostream.lsl
import bridges.bundle
from biostream.cli import main
from biostream.crashlog import LOG_DIR_ENV

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, log_dir: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m biostream ARGS`` from the repository root, crash logs sent to ``log_dir``."""
    env = {**os.environ, LOG_DIR_ENV: str(log_dir)}
    env.pop("BIOSTREAM_RAISE_STREAM_ERRORS", None)
    return subprocess.run([sys.executable, "-m", "biostream", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def assert_bad_input(result: subprocess.CompletedProcess, *names: str, log_dir: Path) -> str:
    """Exit code 2, exactly one stderr line naming every one of ``names``, and no crash log written."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("biostream: error: "), lines[0]
    for name in names:
        assert name in lines[0], lines[0]
    assert not log_dir.exists() or not any(log_dir.iterdir())
    return lines[0]


# ---------------------------------------------------------------------------------------------- bad input: exit 2
def test_missing_recording_is_named(tmp_path):
    result = run_cli("replay", str(tmp_path / "session.xdf"), log_dir=tmp_path / "logs")
    assert_bad_input(result, "session.xdf", "does not exist", log_dir=tmp_path / "logs")


def test_malformed_bundle_is_named(tmp_path):
    bundle = tmp_path / "model.bxb"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("manifest.json", "{not json")
    result = run_cli("info", str(bundle), log_dir=tmp_path / "logs")
    assert_bad_input(result, "model.bxb", log_dir=tmp_path / "logs")


def test_unknown_config_key_names_the_file_section_and_key(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[train]\nranc = 4\n")
    result = run_cli("bridge", "train", "--config", str(config), log_dir=tmp_path / "logs")
    assert_bad_input(result, "run.toml", "[train]", "ranc", log_dir=tmp_path / "logs")


def test_config_value_out_of_range_is_bad_input_not_a_crash(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[train]\nloss = "hinge"\n\n[old_fm]\nsize = "tiny"\n')
    result = run_cli("bridge", "train", "--config", str(config), log_dir=tmp_path / "logs")
    assert_bad_input(result, "run.toml", "'loss'", "hinge", log_dir=tmp_path / "logs")


def test_bad_stream_selector_is_named(tmp_path):
    result = run_cli("monitor", "--bundle", "demo", "--headless", "--stream", "PPG", log_dir=tmp_path / "logs")
    assert_bad_input(result, "stream selector 'PPG'", "KEY=VALUE", log_dir=tmp_path / "logs")


def test_usage_error_is_one_line_naming_the_option(tmp_path):
    result = run_cli("simulate", "--scenario", "stress", "--duration", "nan", log_dir=tmp_path / "logs")
    line = assert_bad_input(result, "--duration", "nan", log_dir=tmp_path / "logs")
    assert "biostream simulate --help" in line


# ------------------------------------------------------------------------------------ our bugs: exit 1, a crash log
def _crash_line(capsys) -> tuple[str, Path]:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert "this is a bug in biostream, not in your input" in line, line
    assert "biostream: error:" not in line
    return line, Path(line.rsplit("the traceback is in ", 1)[1])


def _broadcast_bug(*args, **kwargs):
    """Our own numpy code going wrong: a plain ValueError that is not the user's doing."""
    return np.zeros(3) + np.zeros(4)


def test_a_plain_value_error_from_our_numpy_code_is_exit_1_not_2(tmp_path, monkeypatch, capsys):
    log_dir = tmp_path / "not yet" / "logs"
    monkeypatch.setenv(LOG_DIR_ENV, str(log_dir))
    monkeypatch.setattr(biostream.lsl, "list_streams", _broadcast_bug)
    with pytest.raises(SystemExit) as exit_:
        main(["streams", "--wait", "0.1"])
    assert exit_.value.code == 1
    line, log = _crash_line(capsys)
    assert line.startswith("biostream: internal error (ValueError)"), line
    assert log.parent == log_dir  # the folder named by $BIOSTREAM_LOG_DIR, created on demand
    text = log.read_text()
    assert "command: biostream streams --wait 0.1" in text
    assert "Traceback (most recent call last)" in text
    assert "_broadcast_bug" in text
    assert "ValueError: operands could not be broadcast together" in text


def test_an_unexpected_exception_gets_one_log_file_per_crash_named_after_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path))

    def divide(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(bridges.bundle, "read_bundle", divide)
    logs = []
    for _ in range(2):
        with pytest.raises(SystemExit) as exit_:
            main(["info", "demo"])
        assert exit_.value.code == 1
        line, log = _crash_line(capsys)
        assert "internal error (ZeroDivisionError)" in line
        assert log.name.startswith("crash-") and "-info-" in log.name and log.suffix == ".log"
        assert "ZeroDivisionError: division by zero" in log.read_text()
        logs.append(log)
    assert logs[0] != logs[1]
    assert sorted(tmp_path.iterdir()) == sorted(logs)


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="the XDG state folder is the Linux default")
def test_without_the_env_var_logs_go_to_the_per_user_state_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(LOG_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(biostream.lsl, "list_streams", _broadcast_bug)
    with pytest.raises(SystemExit) as exit_:
        main(["streams"])
    assert exit_.value.code == 1
    _, log = _crash_line(capsys)
    assert log.parent == tmp_path / "state" / "biostream" / "logs"
    assert "Traceback" in log.read_text()


def test_an_unwritable_log_folder_falls_back_to_the_temporary_folder(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv(LOG_DIR_ENV, str(blocker / "logs"))  # cannot be created: its parent is a file
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(biostream.lsl, "list_streams", _broadcast_bug)
    with pytest.raises(SystemExit) as exit_:
        main(["streams"])
    assert exit_.value.code == 1
    _, log = _crash_line(capsys)
    assert log.parent == tmp_path / "tmp" / "biostream-logs"
    assert "Traceback" in log.read_text()


def test_a_bad_input_error_raised_inside_is_exit_2_without_a_log(tmp_path, monkeypatch, capsys):
    from devices.errors import StreamMismatchError

    def mismatch(*args, **kwargs):
        raise StreamMismatchError("stream 'Polar H10 ECG' has 1 channel; the bundle needs 3")

    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    monkeypatch.setattr(biostream.lsl, "list_streams", mismatch)
    with pytest.raises(SystemExit) as exit_:
        main(["streams"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "biostream: error: stream 'Polar H10 ECG' has 1 channel; the bundle needs 3\n"
    assert not (tmp_path / "logs").exists()


def test_ctrl_c_is_exit_130_without_a_traceback(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    monkeypatch.setattr(biostream.lsl, "list_streams", interrupted)
    with pytest.raises(SystemExit) as exit_:
        main(["streams"])
    assert exit_.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    assert not (tmp_path / "logs").exists()


# ------------------------------------------------------------------- boundaries raise BadInputError, not ValueError
@pytest.mark.parametrize(
    ("toml", "match"),
    [
        ("train = 5\n", r"\[train\] must be a table, got int 5"),
        ('[old_fm]\nsize = "huge"\n', r"\[old_fm\]: 'size' is 'huge', but has to be one of"),
        ('[new_fm]\nname = "papagei"\nconfig = { widht = 3 }\n', r"unknown key\(s\) \['widht'\] for papagei"),
        ('[new_fm]\nname = "papagei"\nconfig = { n_blocks = 0 }\n', r"\[new_fm\]: 'n_blocks' must be >= 1"),
        ("[data]\nwindow_s = -1.0\n", r"\[data\]: 'window_s' must be a finite number > 0"),
        ('[data]\nsource = "wesda"\n', r"\[data\]: 'source' is 'wesda'"),
        ("[select]\nn_folds = 1\n", r"\[select\]: 'n_folds' must be >= 2"),
        ('[train]\nprecision = "fp8"\n', r"\[train\]: 'precision' is 'fp8'"),
        ("[distill]\ntemperature = 0.0\n", r"\[distill\]: 'temperature' must be a finite number > 0"),
        ("[export]\nhop_s = -2.0\n", r"\[export\]: 'hop_s' must be a finite number > 0"),
    ],
)
def test_config_values_are_checked_when_the_config_is_read(tmp_path, toml, match):
    from bridges.config import ConfigError
    from bridges.workflow import TransferRun

    config = tmp_path / "run.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError, match=match) as err:
        TransferRun(config)
    assert "run.toml" in str(err.value) and "\n" not in str(err.value)


def test_a_command_line_flag_out_of_range_says_it_came_from_the_flags():
    from bridges.config import ConfigError
    from bridges.workflow import TransferRun

    with pytest.raises(ConfigError, match=r"\[train\] with command-line flags: 'lr' must be a finite number > 0"):
        TransferRun(None, {"train": {"lr": float("nan")}})


def test_an_output_folder_that_cannot_be_made_is_bad_input(tmp_path):
    from bridges.config import ConfigError
    from bridges.workflow import TransferRun

    (tmp_path / "a file").write_text("")
    config = tmp_path / "run.toml"
    config.write_text('[output]\ndir = "a file/run"\n')
    with pytest.raises(ConfigError, match="output folder .*a file/run' cannot be created"):
        TransferRun(config)


def test_simulator_dwell_scale_and_hubert_window_are_bad_input():
    from bridges.fm.hubert_ecg import HubertECG, tiny_config
    from devices.errors import BadInputError
    from devices.simulate.generator import PhysioSimulator

    with pytest.raises(BadInputError, match="'dwell_scale' must be a finite number > 0"):
        PhysioSimulator("stress", ["ecg"], dwell_scale=0.0)
    with pytest.raises(BadInputError, match="too short for HuBERT-ECG"):
        HubertECG.from_config(tiny_config(), window_s=0.05)


def test_a_bundle_path_the_system_refuses_is_bad_input(tmp_path):
    too_long = tmp_path / ("b" * 300 + ".bxb")  # ENAMETOOLONG from the first stat, not "no such file"
    result = run_cli("info", str(too_long), log_dir=tmp_path / "logs")
    assert_bad_input(result, "bbbb.bxb", "cannot be read", log_dir=tmp_path / "logs")
