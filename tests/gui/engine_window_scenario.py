"""Run by tests/gui/test_engine_window.py in a fresh interpreter (not collected by itself).

The whole flow through the real window: open a folder, train a tiny model, evaluate it,
classify dropped images; then the window's process must not have imported TensorFlow or
Keras, because the engine process did all of it.
"""

import sys

import pytest

from imgcls_desktop.gui.self_test import drop_files

pytestmark = pytest.mark.engine_process  # the real engine process, not tests/conftest.py's thread


def test_train_evaluate_predict_without_tensorflow_in_the_window(window, qtbot, shapes_split_dataset):
    from imgcls_desktop.core.training import TrainingConfig

    assert "tensorflow" not in sys.modules and "keras" not in sys.modules
    with qtbot.waitSignal(window.dataset_opened, timeout=120000):
        window.start(str(shapes_split_dataset))
    qtbot.waitUntil(lambda: window.versions is not None, timeout=180000)
    window.training.set_config(TrainingConfig(preset="small_cnn", epochs=2, batch_size=16, seed=3))
    with qtbot.waitSignal(window.evaluation_finished, timeout=300000) as evaluated:
        assert window.training.start_training()
    report = evaluated.args[0]
    assert report.split == "test" and len(report.y_true) == 24
    assert window.state.loaded.path.is_file() and window.state.loaded.parameters > 0
    files = sorted((shapes_split_dataset / "test").rglob("*.png"))[:3]
    with qtbot.waitSignal(window.prediction.predictions_ready, timeout=120000) as predicted:
        drop_files(window.prediction, files)  # a real drag-enter, then the drop
    predictions = predicted.args[0]
    assert [p.path for p in predictions] == [str(f) for f in files] and all(p.ok for p in predictions)
    assert "tensorflow" not in sys.modules, "the window process imported TensorFlow"
    assert "keras" not in sys.modules, "the window process imported Keras"
