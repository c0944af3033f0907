"""Write pickles the way WESAD's Python 2 files are written (for tests that build fake WESAD subjects)."""

from __future__ import annotations

import pickle
import struct


class Py2StylePickler(pickle._Pickler):
    """Writes str and bytes as Python 2 ``str`` (BINSTRING opcodes), as WESAD's Python 2 pickles have them."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj):
        raw = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str


def write_wesad_subject(root, k: int, content: dict):
    """Write ``content`` as WESAD's ``S<k>/S<k>.pkl`` under ``root`` (Python-2 style, numpy.core names); the path."""
    import io

    buffer = io.BytesIO()
    Py2StylePickler(buffer, protocol=2).dump(content)
    folder = root / f"S{k}"
    folder.mkdir(parents=True)
    path = folder / f"S{k}.pkl"
    path.write_bytes(buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    return path
