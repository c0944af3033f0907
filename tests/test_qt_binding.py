"""The installed Qt binding keeps reference counts straight when signals fire.

PySide6 6.12.0 drops a reference to the ``bool`` that ``emit`` returns: on Python 3.11 (where True and False are
not immortal) the interpreter aborts after a few thousand signals with ``bool_dealloc``, so the app died within
seconds of plotting. pyproject excludes it; this guards whatever binding an install resolves to.
"""

import sys

from PySide6 import QtCore


class _Emitter(QtCore.QObject):
    value = QtCore.Signal(object)


def test_emitting_signals_leaves_reference_counts_alone(qapp):
    emitter = _Emitter()
    received = []
    emitter.value.connect(lambda value: received.append(type(value).__name__))
    before = {name: sys.getrefcount(obj) for name, obj in (("True", True), ("False", False), ("None", None))}
    for k in range(200):
        emitter.value.emit(k % 2 == 0)
        emitter.value.emit(None)
    after = {name: sys.getrefcount(obj) for name, obj in (("True", True), ("False", False), ("None", None))}
    assert received[:3] == ["bool", "NoneType", "bool"] and len(received) == 400
    # Other threads may hold or drop a few references meanwhile; a leak per emit shows as hundreds.
    drift = {name: after[name] - before[name] for name in before}
    assert all(abs(d) < 50 for d in drift.values()), f"reference counts drift per emit: {drift}"
