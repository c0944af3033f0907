"""The claims of SECURITY.md that are not tested elsewhere: Ray listens on loopback only, a bundle's zip cannot
blow memory up, bundle members are exactly the known names (no paths), and nothing on the run-time path can
unpickle."""

from __future__ import annotations

import ast
import ipaddress
import zipfile
from pathlib import Path

import psutil
import pytest

from bridges.bundle import MANIFEST_MEMBER, BundleError, read_bundle


@pytest.mark.slow
@pytest.mark.usefixtures("ray_runtime")
def test_ray_started_by_biostream_listens_on_loopback_only():
    listening = []
    for process in psutil.Process().children(recursive=True):
        try:
            connections = process.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening += [(process.name(), c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN]
    names = {name for name, _, _ in listening}
    assert "gcs_server" in names and "raylet" in names, listening  # what is checked really is Ray
    exposed = [entry for entry in listening if not _is_loopback(entry[1])]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is IPv4 loopback on a dual-stack socket
    return (mapped or ip).is_loopback


def test_a_zip_bomb_in_a_bundle_is_refused_before_it_is_inflated(tmp_path: Path):
    demo = read_bundle("demo").path
    bomb = tmp_path / "bomb.bxb"
    with zipfile.ZipFile(demo) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, b" " * (64 << 20) if name == MANIFEST_MEMBER else data)  # 64 MiB of spaces
    assert bomb.stat().st_size < demo.stat().st_size + (1 << 20)  # small on disk
    with pytest.raises(BundleError, match=r"member 'manifest.json' is 67108864 bytes uncompressed, over the limit"):
        read_bundle(bomb)


@pytest.mark.parametrize("name", ["../manifest.json", "/etc/manifest.json", "sub/../../x"])
def test_bundle_members_with_paths_are_refused(tmp_path: Path, name: str):
    demo = read_bundle("demo").path
    bad = tmp_path / "paths.bxb"
    with zipfile.ZipFile(demo) as src, zipfile.ZipFile(bad, "w") as dst:
        for member in src.namelist():
            dst.writestr(member, src.read(member))
        dst.writestr(name, b"{}")
    with pytest.raises(BundleError, match="unexpected member"):
        read_bundle(bad)


ROOT = Path(__file__).resolve().parents[1]
#: What runs while monitoring: the runtime, the app, the bundle reader and ONNX Runtime's opener.
RUN_TIME_PATH = [*(ROOT / "biostream").rglob("*.py"), *(ROOT / "ui").rglob("*.py"),
                 *(ROOT / "bridges" / name for name in ("bundle.py", "manifest.py", "ort_session.py"))]
_UNPICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _unpickling(path: Path) -> list[str]:
    """Where the module at ``path`` imports an unpickler, calls torch.load, or loads numpy with pickles allowed."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in _UNPICKLERS]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            call = ast.unparse(node.func)
            if call in ("torch.load", "pd.read_pickle", "pandas.read_pickle"):
                found.append(f"line {node.lineno}: {call}")
            if call.endswith("load") and any(k.arg == "allow_pickle" for k in node.keywords):
                found.append(f"line {node.lineno}: {call}(allow_pickle=...)")
    return found


def test_nothing_on_the_run_time_path_can_unpickle():
    assert len(RUN_TIME_PATH) > 30  # the scan really covers the runtime and the app
    found = {str(p.relative_to(ROOT)): hits for p in RUN_TIME_PATH if (hits := _unpickling(p))}
    assert not found, found


def test_the_scan_finds_an_unpickler_where_there_is_one(tmp_path):
    module = tmp_path / "sneaky.py"
    module.write_text("import torch\nfrom pickle import loads\nx = torch.load('w.pt')\n"
                      "import numpy as np\ny = np.load('a.npy', allow_pickle=True)\n", encoding="utf-8")
    assert [hit.split(":")[0] for hit in _unpickling(module)] == ["line 2", "line 3", "line 5"]
