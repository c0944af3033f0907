"""The command line as a user runs it: a real subprocess, real exit codes, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from biostream.cli import cli


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "biostream", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("command", [[], ["streams"], ["simulate"], ["replay"]])
def test_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_streams_does_not_load_torch_or_qt():
    code = (
        "import sys; from biostream.cli import main\n"
        "try:\n    main(['streams', '--wait', '0.2'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'PySide6', 'ray', 'onnxruntime') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_replay_missing_file_exits_2(tmp_path):
    result = run_cli("replay", str(tmp_path / "nope.xdf"))
    assert result.returncode == 2
    assert "nope.xdf" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_replay_wrong_format_for_extension_exits_2(tmp_path):
    fake = tmp_path / "session.edf"
    fake.write_text("this is not an EDF file\n")
    result = run_cli("replay", str(fake))
    assert result.returncode == 2
    assert "session.edf" in result.stderr
    assert "Traceback" not in result.stderr


def test_replay_unknown_extension_exits_2(tmp_path):
    odd = tmp_path / "session.foo"
    odd.write_bytes(b"\x00\x01")
    result = run_cli("replay", str(odd))
    assert result.returncode == 2
    assert "session.foo" in result.stderr


def test_simulate_unknown_modality_exits_2():
    result = run_cli("simulate", "--scenario", "stress", "--modalities", "ecg,xray", "--duration", "1")
    assert result.returncode == 2
    assert "xray" in result.stderr
    assert "Traceback" not in result.stderr


def test_simulate_bad_device_pair_exits_2():
    result = run_cli("simulate", "--scenario", "sleep", "--device", "eeg", "--duration", "1")
    assert result.returncode == 2
    assert "KEY=VALUE" in result.stderr


def test_unknown_scenario_is_usage_error():
    result = run_cli("simulate", "--scenario", "party")
    assert result.returncode == 2
    assert "party" in result.stderr
