"""The window's Model ▸ Export… action and the pane's "none of my classes" verdict."""

import sys

import numpy as np
import pytest
from PySide6.QtWidgets import QLabel, QProgressBar

from imgcls_desktop.core.inference import Prediction
from imgcls_desktop.gui.main_window import MainWindow
from imgcls_desktop.gui.prediction_pane import PredictionRow


@pytest.fixture(scope="module")
def loaded(trained):
    from imgcls_desktop.core.model_io import load_model

    return load_model(trained[1])


@pytest.fixture
def window(qtbot, loaded):
    window = MainWindow()
    qtbot.addWidget(window)
    window.state.set_loaded(loaded)
    yield window
    window.jobs.wait(60000)


@pytest.mark.parametrize("format, suffix", [("tflite", ".tflite"), ("onnx", ".onnx")])
def test_export_action_writes_a_checked_export(qtbot, window, tmp_path, error_dialogs, format, suffix):
    out = tmp_path / f"shapes{suffix}"
    window._ask_export_format = lambda: format
    window._ask_export_path = lambda format: str(out)
    assert window.export_model_action.isEnabled()
    menus = {action.text(): action.menu() for action in window.menuBar().actions()}
    assert window.export_model_action in menus["&Model"].actions()
    with qtbot.waitSignal(window.model_exported, timeout=120000) as exported:
        window.export_model_action.trigger()
    info = exported.args[0]
    assert out.exists() and out.stat().st_size > 10_000
    assert (tmp_path / "shapes.labels.txt").read_text().split() == ["circle", "square", "triangle"]
    assert info["verification"]["top1_agreement"] == 1.0
    assert "Exported" in window.statusBar().currentMessage()
    assert error_dialogs == []


def test_export_cancelled_does_nothing(window, tmp_path):
    window._ask_export_format = lambda: ""
    window._ask_export_path = lambda format: pytest.fail("asked for a path after cancel")
    window.export_model_action.trigger()
    assert window.jobs.active() == 0


def test_export_failure_shows_the_error_dialog(qtbot, window, tmp_path, error_dialogs, monkeypatch,
                                               in_process_engine):  # tf2onnx hidden where the export runs
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    window._ask_export_format = lambda: "onnx"
    window._ask_export_path = lambda format: str(tmp_path / "m.onnx")
    window.export_model_action.trigger()
    qtbot.waitUntil(lambda: bool(error_dialogs), timeout=60000)
    title, message, _details = error_dialogs[0]
    assert title == "Export failed" and "pip install tf2onnx onnxruntime" in message
    assert not (tmp_path / "m.onnx").exists()


def test_unknown_prediction_row_says_none_of_my_classes(qtbot):
    prediction = Prediction(path="/tmp/empty.png", label="circle", confidence=0.41,
                            top_k=[("circle", 0.41), ("square", 0.35), ("triangle", 0.24)],
                            probabilities=np.array([0.41, 0.35, 0.24]), unknown=True,
                            unknown_threshold=0.8)
    row = PredictionRow(prediction)
    qtbot.addWidget(row)
    headline = row.findChild(QLabel, "predictionLabel")
    assert "none of my classes (41% sure)" in headline.text()
    assert "circle" in headline.toolTip() and "80%" in headline.toolTip()
    assert len(row.findChildren(QProgressBar)) == 3  # the top-k bars are still shown

    sure = Prediction(path="/tmp/c.png", label="circle", confidence=0.97, top_k=[("circle", 0.97)],
                      probabilities=np.array([0.97, 0.02, 0.01]), unknown=False, unknown_threshold=0.8)
    row = PredictionRow(sure)
    qtbot.addWidget(row)
    assert "none of my classes" not in row.findChild(QLabel, "predictionLabel").text()
