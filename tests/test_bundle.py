"""The .bxb bridge bundle: manifest validation, atomic write, read-back checks and every refusal (DESIGN §5).

Graphs here are built with ``onnx.helper`` (no torch), so these tests also show that bundles are written and read
without torch; the torch → ONNX path is in test_export.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bridges.bundle import (
    BRIDGE_MEMBER,
    MANIFEST_MEMBER,
    MEMBERS,
    MODEL_MEMBER,
    BridgeInfo,
    BundleError,
    FMInfo,
    InputInfo,
    Manifest,
    ManifestError,
    Provenance,
    TaskInfo,
    bundle_summary,
    demo_bundle_path,
    read_bundle,
    resolve_bundle_path,
    write_bundle,
)
from devices.errors import BadInputError

N_CHANNELS, SFREQ_HZ, WINDOW_S = 2, 50.0, 4.0
N_SAMPLES = 200
CLASSES = ["baseline", "stress", "amusement"]
N_CLASSES = len(CLASSES)


def make_manifest(**input_changes) -> Manifest:
    spec = dict(
        modality="ppg",
        channel_labels=["PPG1", "PPG2"],
        sfreq_hz=SFREQ_HZ,
        window_s=WINDOW_S,
        hop_s=1.0,
        units=["a.u.", "a.u."],
        preprocessing=[{"op": "bandpass", "low_hz": 0.5, "high_hz": 12.0}, {"op": "zscore"}],
    )
    spec.update(input_changes)
    return Manifest(
        task=TaskInfo("stress", CLASSES),
        input=InputInfo(**spec),
        provenance=Provenance(
            old_fm=FMInfo("hubert-ecg-tiny", "ab" * 32),
            new_fm=FMInfo("papagei-small"),
            layer_i=2,
            layer_j=1,
            bridge=BridgeInfo(rank=2, n_prototypes=3, n_tokens=5, d_in=4, d_out=6),
            training_data={"source": "simulated stress", "n_pairs": 40, "subjects": ["sim0", "sim1"]},
            metrics={"f1_macro": 0.61, "accuracy": 0.7, "confusion": [[3, 1, 0], [0, 4, 1], [1, 0, 2]]},
            trainable_parameters=2 * 4 + 3 * 5 * 2 + 6 * 3,
            created_at="2026-01-02T03:04:05+00:00",
            biostream_version="0.1.0",
        ),
    )


def make_onnx(*, n_samples=N_SAMPLES, n_classes=N_CLASSES, batch="batch", input_name="window") -> bytes:
    """A real pipeline-shaped graph: mean over time, linear map, softmax; (batch, C, L) → (batch, K)."""
    weight = numpy_helper.from_array(
        np.linspace(-1, 1, N_CHANNELS * n_classes, dtype=np.float32).reshape(N_CHANNELS, n_classes), "weight"
    )
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", [input_name, "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weight"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, N_CHANNELS, n_samples])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch, n_classes])],
        initializer=[weight, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model.SerializeToString()


def bridge_state(manifest: Manifest) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in manifest.provenance.bridge.tensor_shapes().items()}


@pytest.fixture
def good_bundle(tmp_path: Path) -> Path:
    manifest = make_manifest()
    return write_bundle(tmp_path / "good.bxb", manifest, make_onnx(), bridge_state(manifest))


def rewrite(src: Path, dst: Path, *, drop=(), replace_members=None, add=None) -> Path:
    """Copy a bundle's members into a new zip, dropping, replacing or adding some (a hand-made bad bundle)."""
    with zipfile.ZipFile(src) as archive:
        members = {n: archive.read(n) for n in archive.namelist() if n not in drop}
    members.update(replace_members or {})
    members.update(add or {})
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return dst


def edit_manifest(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as archive:
        data = json.loads(archive.read(MANIFEST_MEMBER))
    edit(data)
    return rewrite(src, dst, replace_members={MANIFEST_MEMBER: json.dumps(data).encode()})


# ---------------------------------------------------------------------------------------------- round trip


def test_round_trip_keeps_everything(good_bundle: Path) -> None:
    manifest = make_manifest()
    bundle = read_bundle(good_bundle)
    assert bundle.manifest == manifest
    assert bundle.onnx_bytes == make_onnx()
    for name, array in bridge_state(manifest).items():
        np.testing.assert_array_equal(bundle.bridge_state[name], array)
    assert bundle.sha256 == hashlib.sha256(good_bundle.read_bytes()).hexdigest()
    assert bundle.input_name == "window" and bundle.output_name == "probabilities"
    assert bundle.input_shape == ("batch", N_CHANNELS, N_SAMPLES)
    assert bundle.output_shape == ("batch", len(CLASSES))
    assert bundle.onnx_checked
    with zipfile.ZipFile(good_bundle) as archive:
        assert archive.namelist() == list(MEMBERS)
    # Nothing but the bundle in the folder: the temporary file was renamed, not left behind.
    assert [p.name for p in good_bundle.parent.iterdir()] == [good_bundle.name]


def test_same_content_gives_the_same_file(tmp_path: Path, good_bundle: Path) -> None:
    manifest = make_manifest()
    again = write_bundle(tmp_path / "again.bxb", manifest, make_onnx(), bridge_state(manifest))
    assert again.read_bytes() == good_bundle.read_bytes()


def test_manifest_dict_round_trip_and_normalisation() -> None:
    manifest = make_manifest()
    data = json.loads(manifest.to_json())
    assert data["schema_version"] == 1 and list(data) == ["schema_version", "task", "input", "provenance"]
    assert Manifest.from_dict(data) == manifest
    # numpy scalars and tuples are normalised to plain JSON values
    tweaked = replace(
        manifest.provenance, metrics={"f1_macro": np.float32(0.5), "n": np.int64(3), "cm": ((1, 2), (3, 4))}
    )
    assert tweaked.metrics == {"f1_macro": 0.5, "n": 3, "cm": [[1, 2], [3, 4]]}
    assert manifest.input.n_samples == N_SAMPLES and manifest.task.n_classes == 3


def test_bridge_weights_as_bytes_and_overwrite(tmp_path: Path, good_bundle: Path) -> None:
    manifest = make_manifest()
    with zipfile.ZipFile(good_bundle) as archive:
        raw = archive.read(BRIDGE_MEMBER)
    target = write_bundle(good_bundle, manifest, make_onnx(), raw)  # overwrites in place
    assert read_bundle(target).bridge_state.keys() == {"A", "B", "prototypes"}
    with pytest.raises(BundleError, match="bridge.safetensors is not a safetensors file"):
        write_bundle(tmp_path / "x.bxb", manifest, make_onnx(), b"\x00" * 40)


def test_summary_lines(good_bundle: Path) -> None:
    lines = bundle_summary(read_bundle(good_bundle))
    text = "\n".join(lines)
    assert all("\n" not in line for line in lines)
    for expected in (
        "stress: 3 classes (baseline, stress, amusement)",
        "4 s at 50 Hz (200 samples), hop 1 s",
        "bandpass(low_hz=0.5, high_hz=12); zscore",
        "window (batch, 2, 200) -> probabilities (batch, 3)",
        "papagei-small (random init), layers 0..2",
        f"hubert-ecg-tiny (checkpoint {'ab' * 32}), layers 1..end",
        "rank 2, 3 prototypes, 5 tokens",
        "f1_macro=0.61",
        read_bundle(good_bundle).sha256,
    ):
        assert expected in text


def test_bundle_module_does_not_import_torch(good_bundle: Path) -> None:
    code = (
        "import sys\n"
        "from bridges.bundle import read_bundle, bundle_summary\n"
        f"bundle_summary(read_bundle({str(good_bundle)!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------------------------- refusals


def _one_line_refusal(path: Path, match: str, **kwargs) -> BundleError:
    with pytest.raises(BundleError, match=match) as info:
        read_bundle(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert isinstance(info.value, BadInputError)
    return info.value


def test_refuses_missing_file_and_non_zip(tmp_path: Path) -> None:
    _one_line_refusal(tmp_path / "absent.bxb", "no such file")
    text = tmp_path / "text.bxb"
    text.write_text("just text\n")
    _one_line_refusal(text, "not a zip archive")


def test_refuses_truncated_zip(tmp_path: Path, good_bundle: Path) -> None:
    data = good_bundle.read_bytes()
    cut = tmp_path / "cut.bxb"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_refusal(cut, "not a zip archive, or a truncated one")


def test_refuses_corrupt_member(tmp_path: Path, good_bundle: Path) -> None:
    # Flip bytes inside the (deflated) model member: the zip directory is intact, the member is not.
    data = bytearray(good_bundle.read_bytes())
    with zipfile.ZipFile(good_bundle) as archive:
        info = archive.getinfo(MODEL_MEMBER)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for k in range(start + 5, start + 25):
        data[k] ^= 0xFF
    bad = tmp_path / "flipped.bxb"
    bad.write_bytes(bytes(data))
    _one_line_refusal(bad, "member 'model.onnx' is corrupt")


@pytest.mark.parametrize("member", MEMBERS)
def test_refuses_missing_member(tmp_path: Path, good_bundle: Path, member: str) -> None:
    bad = rewrite(good_bundle, tmp_path / "bad.bxb", drop=[member])
    _one_line_refusal(bad, f"lacks member '{member}'")


@pytest.mark.parametrize("extra", ["run_me.py", "model.pkl", "data/extra.bin"])
def test_refuses_extra_member(tmp_path: Path, good_bundle: Path, extra: str) -> None:
    bad = rewrite(good_bundle, tmp_path / "bad.bxb", add={extra: b"import os\n"})
    _one_line_refusal(bad, f"unexpected member '{extra}'")


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"{not json", "manifest.json is not valid JSON"),
        (b'{"schema_version": NaN}', "manifest.json is not valid JSON"),
        (b"\xff\xfe\x00", "manifest.json is not valid JSON"),
        (b"[1, 2]", "manifest must be a JSON object"),
        (b'{"task": {}}', "manifest key 'schema_version' is missing"),
    ],
)
def test_refuses_bad_json(tmp_path: Path, good_bundle: Path, content: bytes, match: str) -> None:
    bad = rewrite(good_bundle, tmp_path / "bad.bxb", replace_members={MANIFEST_MEMBER: content})
    _one_line_refusal(bad, match)


def _set_schema(d):
    d["schema_version"] = 2


def _drop_rate(d):
    del d["input"]["sfreq_hz"]


def _string_rate(d):
    d["input"]["sfreq_hz"] = "125"


def _unknown_key(d):
    d["provenance"]["bridge"]["dropout"] = 0.1


def _bad_sha(d):
    d["provenance"]["old_fm"]["checkpoint_sha256"] = "1234"


def _window_not_whole(d):
    d["input"]["window_s"] = 4.01


def _bool_layer(d):
    d["provenance"]["layer_i"] = True


def _one_class(d):
    d["task"]["class_names"] = ["only"]


def _wrong_units(d):
    d["input"]["units"] = ["a.u."]


def _bad_step(d):
    d["input"]["preprocessing"] = [{"low_hz": 1}]


def _absurd_rate(d):
    d["input"]["sfreq_hz"] = 1e308


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set_schema, "unknown manifest schema version 2"),
        (_drop_rate, "manifest key 'input.sfreq_hz' is missing"),
        (_string_rate, "manifest key 'input.sfreq_hz' must be a finite number > 0, got '125'"),
        (_unknown_key, "manifest key 'provenance.bridge.dropout' is unknown"),
        (_bad_sha, "manifest key 'provenance.old_fm.checkpoint_sha256' must be 64 lowercase hex digits"),
        (_window_not_whole, r"manifest key 'input.window_s' \(4.01 s\) at 50 Hz is 200.5 samples"),
        (_bool_layer, "manifest key 'provenance.layer_i' must be an integer >= 0, got True"),
        (_one_class, "manifest key 'task.class_names' must be a list of at least 2 strings"),
        (_wrong_units, r"manifest key 'input.units' must be a list of 2 strings \(one per channel\)"),
        (_bad_step, r"manifest key 'input.preprocessing\[0\].op' must be a non-empty string, got None"),
        (_absurd_rate, r"manifest key 'input.window_s' \(4 s\) at 1e\+308 Hz is inf samples per channel, over the "
                       r"7,200,000 a window may hold"),
    ],
)
def test_refuses_bad_manifest(tmp_path: Path, good_bundle: Path, edit, match: str) -> None:
    _one_line_refusal(edit_manifest(good_bundle, tmp_path / "bad.bxb", edit), match)


def test_refuses_a_manifest_nested_too_deeply(tmp_path: Path, good_bundle: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    bad = rewrite(good_bundle, tmp_path / "deep.bxb", replace_members={MANIFEST_MEMBER: deep})
    _one_line_refusal(bad, "manifest.json is nested too deeply to be a manifest")


def _graph_reading_a_file() -> bytes:
    model = onnx.load_model_from_string(make_onnx())
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="../../../etc/passwd")
    return model.SerializeToString()


def _graph_with_a_custom_operator() -> bytes:
    model = onnx.load_model_from_string(make_onnx())
    model.opset_import.append(helper.make_opsetid("evil.ops", 1))
    node = model.graph.node[2]
    node.domain, node.op_type = "evil.ops", "RunShell"
    return model.SerializeToString()


@pytest.mark.parametrize(("graph", "match"), [
    (_graph_reading_a_file, r"model.onnx keeps tensor 'weight' in an external file; a bundle must hold all its data"),
    (_graph_with_a_custom_operator, r"model.onnx uses operators of custom domain\(s\) \['evil.ops'\]"),
])
def test_refuses_a_graph_that_would_read_files_or_load_code(tmp_path: Path, good_bundle: Path, graph, match) -> None:
    bad = rewrite(good_bundle, tmp_path / "bad.bxb", replace_members={MODEL_MEMBER: graph()})
    _one_line_refusal(bad, match)


def test_refuses_window_rate_mismatch_with_graph(tmp_path: Path, good_bundle: Path) -> None:
    # A consistent manifest (5 s × 50 Hz = 250 samples) on a graph made for 200 samples.
    def longer_window(d):
        d["input"]["window_s"] = 5.0

    bad = edit_manifest(good_bundle, tmp_path / "bad.bxb", longer_window)
    _one_line_refusal(bad, r"input 'window' has shape \(batch, 2, 200\), but the manifest needs \(batch, 2, 250\)")
    # Without the graph check the same bundle reads (the runtime's session would then reject it).
    assert read_bundle(bad, check_onnx=False).input_shape == ("batch", 2, 250)


@pytest.mark.parametrize(
    ("onnx_bytes", "match"),
    [
        (b"definitely not protobuf", "model.onnx is not a loadable ONNX model"),
        (make_onnx(n_samples=N_SAMPLES + 1), r"input 'window' has shape \(batch, 2, 201\), but the manifest needs"),
        (make_onnx(n_classes=4), r"output 'probabilities' has shape \(batch, 4\), but the manifest needs \(batch, 3\)"),
        (make_onnx(batch=1), r"fixed batch axis \(1, 2, 200\); it must be dynamic"),
        (make_onnx(input_name="x"), r"must have one input named 'window', it has \['x'\]"),
    ],
)
def test_refuses_mismatched_graph(tmp_path: Path, good_bundle: Path, onnx_bytes: bytes, match: str) -> None:
    bad = rewrite(good_bundle, tmp_path / "bad.bxb", replace_members={MODEL_MEMBER: onnx_bytes})
    _one_line_refusal(bad, match)
    # write_bundle refuses the same graph up front and leaves nothing behind.
    manifest = make_manifest()
    target = tmp_path / "never.bxb"
    with pytest.raises(BundleError, match=match):
        write_bundle(target, manifest, onnx_bytes, bridge_state(manifest))
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.bxb", "good.bxb"]


def test_refuses_bridge_weights_that_do_not_fit(tmp_path: Path, good_bundle: Path) -> None:
    manifest = make_manifest()
    state = bridge_state(manifest)
    state["B"] = state["B"][:-1]
    with pytest.raises(BundleError, match=r"tensor 'B' has shape \(14, 2\), the manifest's bridge needs \(15, 2\)"):
        write_bundle(tmp_path / "x.bxb", manifest, make_onnx(), state)
    del state["B"]
    with pytest.raises(
        BundleError, match=r"must hold tensors \['A', 'B', 'prototypes'\], it holds \['A', 'prototypes'\]"
    ):
        write_bundle(tmp_path / "x.bxb", manifest, make_onnx(), state)
    assert not (tmp_path / "x.bxb").exists()


def test_write_needs_an_existing_folder(tmp_path: Path) -> None:
    manifest = make_manifest()
    with pytest.raises(BundleError, match="does not exist"):
        write_bundle(tmp_path / "no" / "x.bxb", manifest, make_onnx(), bridge_state(manifest))


# ---------------------------------------------------------------------------------------------- manifest objects


def test_manifest_objects_refuse_bad_values() -> None:
    good = make_manifest().provenance
    with pytest.raises(ManifestError, match="manifest key 'metrics.f1_macro' must be a finite number, got nan"):
        replace(good, metrics={"f1_macro": float("nan")})
    with pytest.raises(ManifestError, match=r"manifest key 'metrics.per_class\[1\]' must be a finite number, got inf"):
        replace(good, metrics={"per_class": [0.5, float("inf")]})
    with pytest.raises(ManifestError, match="manifest key 'metrics.note' must be a finite number, got 'good'"):
        replace(good, metrics={"note": "good"})
    with pytest.raises(ManifestError, match="manifest key 'trainable_parameters' must be an integer >= 0, got 1.5"):
        replace(good, trainable_parameters=1.5)
    with pytest.raises(ManifestError, match="manifest key 'created_at' must be an ISO 8601 time, got 'yesterday'"):
        replace(good, created_at="yesterday")
    with pytest.raises(ManifestError, match="manifest key 'old_fm' must be a FMInfo"):
        replace(good, old_fm={"name": "x"})
    with pytest.raises(ManifestError, match="manifest key 'training_data.extra' must be a JSON value"):
        replace(good, training_data={"extra": object()})
    with pytest.raises(ManifestError, match="manifest key 'class_names' must be unique names"):
        TaskInfo("t", ["a", "a"])
    with pytest.raises(ManifestError, match="manifest key 'sfreq_hz' must be a finite number > 0, got -1"):
        replace(make_manifest().input, sfreq_hz=-1)
    with pytest.raises(ManifestError, match="manifest key 'rank' must be an integer >= 1, got 0"):
        BridgeInfo(0, 1, 1, 1, 1)
    with pytest.raises(BundleError, match="unknown manifest schema version 3"):
        replace(make_manifest(), schema_version=3)


def test_from_dict_names_the_first_bad_key() -> None:
    data = make_manifest().to_dict()
    data["provenance"]["metrics"]["kappa"] = None
    with pytest.raises(ManifestError, match="manifest key 'provenance.metrics.kappa' must be a finite number") as info:
        Manifest.from_dict(data)
    assert info.value.key == "provenance.metrics.kappa"
    data = make_manifest().to_dict()
    data["extra"] = 1
    with pytest.raises(ManifestError, match=r"manifest key 'extra' is unknown \(known keys: task, input, provenance"):
        Manifest.from_dict(data)


def test_bridge_info_from_config() -> None:
    from bridges.bridge import BridgeConfig

    config = BridgeConfig(d_in=64, n_tokens=93, d_out=512, rank=8, n_prototypes=150)
    info = BridgeInfo.from_config(config)
    assert info == BridgeInfo(rank=8, n_prototypes=150, n_tokens=93, d_in=64, d_out=512)
    assert sum(int(np.prod(s)) for s in info.tensor_shapes().values()) == config.n_parameters == 188_912


# ---------------------------------------------------------------------------------------------- names


def test_demo_name_resolution(tmp_path: Path, good_bundle: Path) -> None:
    with pytest.raises(BundleError, match="The demo bundle is not built: .*demo.bxb' does not exist"):
        resolve_bundle_path("demo", data_dir=tmp_path / "data")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "demo.bxb").write_bytes(good_bundle.read_bytes())
    assert resolve_bundle_path("demo", data_dir=tmp_path / "data") == tmp_path / "data" / "demo.bxb"
    # Other names are paths, whether or not they exist.
    assert resolve_bundle_path(str(good_bundle)) == good_bundle
    assert resolve_bundle_path(Path("demo")) == Path("demo")
    assert resolve_bundle_path("~/x.bxb") == Path.home() / "x.bxb"


def test_demo_resolves_to_the_package_data() -> None:
    shipped = demo_bundle_path()
    assert shipped.parts[-3:] == ("bridges", "data", "demo.bxb")
    if shipped.is_file():
        assert resolve_bundle_path("demo") == shipped
        assert read_bundle("demo").manifest.task.n_classes >= 2
    else:
        with pytest.raises(BundleError, match="The demo bundle is not built"):
            read_bundle("demo")


def test_onnx_graph_written_by_helper_is_valid() -> None:
    onnx.checker.check_model(onnx.load_model_from_string(make_onnx()))
