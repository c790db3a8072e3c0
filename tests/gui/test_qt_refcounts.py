"""The Qt binding must not leak or steal references: PySide6 6.12.0 on Python 3.11 did.

Each void Qt call dropped a reference to None and each signal emit one to True; the app
aborted ("none_dealloc" / "bool_dealloc") after some minutes of training progress signals.
pyproject.toml keeps that release out; this test fails if such a binding comes back.
"""

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget


class _Emitter(QObject):
    ticked = Signal(int)


def test_void_calls_and_emits_keep_reference_counts(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    emitter = _Emitter()
    received = []
    emitter.ticked.connect(received.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for index in range(500):
        widget.setWindowTitle(f"title {index}")
        emitter.ticked.emit(index)
    none_after, true_after = sys.getrefcount(None), sys.getrefcount(True)
    assert len(received) == 500
    # Other code may take or drop a few references meanwhile; 500 calls must not show.
    assert none_after > none_before - 50, (none_before, none_after)
    assert true_after > true_before - 50, (true_before, true_after)
