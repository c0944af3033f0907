"""WESAD subject pickles: layout, a Python-2-style pickle, and refusal of pickles that would run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from _wesad_pickle import Py2StylePickler

from devices.errors import RecordingFormatError, UnsafePickleError
from devices.formats import load_untrusted_pickle, read_recording, read_wesad
from devices.profiles import get_profile

SECONDS = 3


def _subject(k: int = 2) -> dict:
    rng = np.random.default_rng(k)
    n = 700 * SECONDS
    label = np.zeros(n, dtype=np.int32)
    label[350:1050] = 1
    label[1050:1750] = 2
    label[1750:] = 7
    return {
        "signal": {
            "chest": {
                "ACC": rng.normal(0, 0.1, (n, 3)),
                "ECG": rng.normal(0, 1, (n, 1)),
                "EMG": rng.normal(0, 0.01, (n, 1)),
                "EDA": rng.uniform(1, 5, (n, 1)),
                "Temp": rng.uniform(33, 35, (n, 1)).astype(np.float32),
                "Resp": rng.normal(0, 3, (n, 1)),
            },
            "wrist": {
                "ACC": rng.integers(-64, 64, (32 * SECONDS, 3)).astype(np.float64),
                "BVP": rng.normal(0, 50, (64 * SECONDS, 1)),
                "EDA": rng.uniform(0.1, 2, (4 * SECONDS, 1)),
                "TEMP": rng.uniform(30, 34, (4 * SECONDS, 1)),
            },
        },
        "label": label,
        "subject": f"S{k}",
    }


def _write_py2_style(path: Path, content: dict) -> None:
    import io

    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(content)
    # numpy 1 / Python 2 pickles name the array functions under numpy.core, not numpy._core.
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))


def _layout(root: Path, k: int, content: dict, py2: bool = True) -> Path:
    folder = root / f"S{k}"
    folder.mkdir(parents=True)
    path = folder / f"S{k}.pkl"
    if py2:
        _write_py2_style(path, content)
    else:
        path.write_bytes(pickle.dumps(content, protocol=5))
    return path


@pytest.mark.parametrize("py2", [True, False], ids=["python2-style", "numpy2-protocol5"])
def test_fake_subject_streams_profiles_and_labels(tmp_path, py2):
    content = _subject(2)
    path = _layout(tmp_path, 2, content, py2)
    if py2:
        assert b"numpy.core.multiarray\n_reconstruct" in path.read_bytes()
    rec = read_recording(path.parent)  # the S2/ folder
    assert rec.info["format"] == "wesad" and rec.info["subject"] == "S2"
    chest = rec.stream("S2 chest")
    profile = get_profile("wesad_chest").streams[0]
    assert chest.channel_labels == list(profile.channel_labels) and chest.channel_units == list(profile.channel_units)
    assert chest.nominal_srate == 700.0 and chest.n_samples == 700 * SECONDS
    sig = content["signal"]["chest"]
    expected = np.hstack([sig["ACC"], sig["ECG"], sig["EDA"], sig["EMG"], sig["Resp"], sig["Temp"]])
    np.testing.assert_allclose(chest.data, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(chest.timestamps[-1], (700 * SECONDS - 1) / 700)

    wrist = get_profile("wesad_wrist")
    bvp = rec.stream("S2 wrist BVP")
    assert bvp.type == "PPG" and bvp.nominal_srate == 64.0 and bvp.channel_labels == ["BVP"]
    np.testing.assert_allclose(bvp.data[:, 0], content["signal"]["wrist"]["BVP"][:, 0], rtol=1e-6)
    acc = rec.stream("S2 wrist ACC")
    assert acc.nominal_srate == 32.0 and acc.channel_units == list(wrist.stream("ACC").channel_units)
    np.testing.assert_allclose(acc.data, content["signal"]["wrist"]["ACC"] / 64.0, rtol=1e-6)  # 1/64 g → g
    for key in ("EDA", "TEMP"):
        stream = rec.stream(f"S2 wrist {key}")
        assert stream.nominal_srate == 4.0 and stream.n_samples == 4 * SECONDS

    labels = rec.stream("S2 labels")
    assert labels.is_marker
    assert list(labels.data[:, 0]) == ["transient", "baseline", "stress", "ignore"]
    np.testing.assert_allclose(labels.timestamps, [0.0, 0.5, 1.5, 2.5])
    assert labels.metadata["codes"] == [0, 1, 2, 7]
    assert read_wesad(tmp_path, subject=2).stream("S2 chest").n_samples == chest.n_samples


def test_pickle_that_would_run_code_is_refused_and_not_executed(tmp_path):
    side_effect = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {side_effect}",))

    content = _subject(3)
    content["signal"]["chest"]["ECG"] = Evil()  # hidden deep inside an otherwise valid subject
    folder = tmp_path / "S3"
    folder.mkdir()
    path = folder / "S3.pkl"
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"S3.pkl' was refused: the pickle asks for (posix|nt|os)\.system"):
        read_recording(path)
    assert not side_effect.exists()
    # The same refusal for any other callable, and for a bare pickle loaded directly.
    evil_eval = tmp_path / "eval.pkl"
    evil_eval.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_untrusted_pickle(evil_eval)
    # Control: the unrestricted loader would have run it (so the test above can fail).
    assert pickle.loads(evil_eval.read_bytes()) == 2


def test_broken_subjects(tmp_path):
    with pytest.raises(RecordingFormatError, match=r"WESAD subject file '.*S4/S4.pkl' does not exist"):
        read_wesad(tmp_path, subject=4)
    content = _subject(5)
    del content["signal"]["wrist"]["BVP"]
    _layout(tmp_path, 5, content)
    with pytest.raises(RecordingFormatError, match=r"missing channel 'signal/wrist/BVP'"):
        read_wesad(tmp_path, subject=5)
    content = _subject(6)
    content["label"] = content["label"][:-10]
    _layout(tmp_path, 6, content)
    with pytest.raises(RecordingFormatError, match="differ in length"):
        read_wesad(tmp_path / "S6")
    path = _layout(tmp_path, 7, _subject(7))
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(RecordingFormatError, match="S7.pkl' (is truncated|is not a readable pickle)"):
        read_recording(path)
    folder = tmp_path / "S8"
    folder.mkdir()
    (folder / "S8.pkl").write_text("not a pickle at all")
    with pytest.raises(RecordingFormatError, match="S8.pkl' is not a pickle file"):
        read_recording(folder)
