"""The whole window: contract names, the train -> evaluate -> predict flow, lifecycle."""

import io
import json

from PySide6.QtWidgets import QPushButton

from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.gui.main_window import MainWindow
from imgcls_desktop.gui.self_test import drop_files

CONTRACT = ["datasetBrowser", "trainButton", "stopButton", "trainingProgress", "liveChart",
            "evaluationView", "confusionMatrix", "predictionPane", "predictionResults"]


def started(qtbot, window, dataset):
    with qtbot.waitSignals([window.engine_ready, window.dataset_opened], timeout=120000):
        window.start(dataset)
    return window


def test_builds_without_side_effects_and_names_its_widgets(window):
    from PySide6.QtWidgets import QWidget

    assert window.windowTitle().startswith("imgcls")
    assert window.jobs.active() == 0 and window.scan is None and window.state.loaded is None
    for name in CONTRACT:
        widget = window.findChild(QWidget, name)
        assert widget is not None, name
        assert widget.accessibleName() == name
    assert window.findChild(QWidget, "predictionPane").acceptDrops()


def test_train_evaluate_predict_through_the_window(qtbot, window, shapes_split_dataset, error_dialogs):
    started(qtbot, window, shapes_split_dataset)
    assert window.scan.class_names == ["circle", "square", "triangle"]
    window.training.set_config(TrainingConfig(preset="tutorial_cnn", epochs=6, batch_size=16, seed=1))
    with qtbot.waitSignal(window.evaluation_finished, timeout=300000) as evaluated:
        window.findChild(QPushButton, "trainButton").click()
        assert window.training.is_training()
    report = evaluated.args[0]
    assert report.split == "test" and len(report.y_true) == 24
    # 24 test images; this config scored 24/24 at seeds 1, 2, 3 and 1337: one miss is allowed.
    assert report.accuracy >= 23 / 24
    assert window.state.loaded is not None
    qtbot.waitUntil(lambda: window.state.autosaved_path is not None, timeout=60000)
    assert window.state.autosaved_path.exists()

    files = sorted((shapes_split_dataset / "test" / "square").glob("*.png"))[:3]
    with qtbot.waitSignal(window.prediction.predictions_ready, timeout=60000) as ready:
        assert drop_files(window, files)
    predictions = ready.args[0]
    assert len(predictions) == 3 and all(p.ok for p in predictions)
    assert error_dialogs == []


def test_open_model_then_predict(qtbot, window, trained):
    _, path = trained
    with qtbot.waitSignal(window.model_changed, timeout=60000) as changed:
        window.open_model(path)
    assert changed.args[0].class_names == ["circle", "square", "triangle"]
    assert window.save_model_action.isEnabled()


def test_bad_model_file_shows_error_and_app_keeps_running(qtbot, window, tmp_path, error_dialogs):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"garbage")
    window.open_model(bad)
    qtbot.waitUntil(lambda: len(error_dialogs) == 1, timeout=30000)
    assert "damaged or not a Keras model" in error_dialogs[0][1]
    assert window.state.loaded is None
    window.show_about()  # the window still answers
    assert window._last_message_box.isVisible()


def test_close_during_training_stops_and_waits(qtbot, window, shapes_dataset):
    started(qtbot, window, shapes_dataset)
    window.training.set_config(TrainingConfig(preset="tutorial_cnn", epochs=200, batch_size=8))
    with qtbot.waitSignal(window.training.training_started, timeout=30000):
        window.training.start_training()
    window.close()
    assert not window.training.is_training()


def test_close_refused_keeps_training(qtbot, window, shapes_dataset):
    started(qtbot, window, shapes_dataset)
    window._confirm_close_during_training = lambda: False
    window.training.set_config(TrainingConfig(preset="tutorial_cnn", epochs=200, batch_size=8))
    window.training.start_training()
    window.close()
    assert window.training.is_training()
    with qtbot.waitSignal(window.training.training_finished, timeout=60000):
        window.training.request_stop()


def test_self_test_runs_the_real_flow(qtbot, window, shapes_split_dataset, tmp_path):
    import shutil

    from imgcls_desktop.core.model_io import load_model
    from imgcls_desktop.gui.self_test import run_self_test

    # The engine saves the trained model in the self-test's own data folder, which is
    # removed at the end: keep a copy to evaluate here, in this process.
    kept = tmp_path / "trained.keras"
    window.state.model_saved.connect(lambda path: shutil.copyfile(path, kept))
    out = io.StringIO()
    status = run_self_test(window, shapes_split_dataset, out=out)
    summary = json.loads(out.getvalue())
    assert status == 0, summary
    assert summary["ok"] and summary["classes"] == ["circle", "square", "triangle"]
    # One epoch scores anywhere from chance to 0.67 here, so no threshold: the figure must be
    # the real evaluation of the model the window trained, on the test split.
    from imgcls_desktop.core.evaluation import evaluate_folder

    report = evaluate_folder(load_model(kept), shapes_split_dataset)
    assert summary["evaluated_on"] == "24 test images" and report.split == "test"
    assert summary["accuracy"] == round(report.accuracy, 4)
    assert len(summary["predictions"]) == 4 and all("label" in row for row in summary["predictions"])


def test_settings_remember_recent_datasets(qtbot, window, shapes_dataset):
    from imgcls_desktop.gui import settings

    started(qtbot, window, shapes_dataset)
    assert settings.recent(settings.RECENT_DATASETS)[0] == str(shapes_dataset)
    assert settings.settings().value(settings.LAST_DATASET) == str(shapes_dataset)


def test_training_settings_survive_a_restart(qtbot, tmp_path):
    first = MainWindow()
    qtbot.addWidget(first)
    first.training.set_config(TrainingConfig(preset="tutorial_cnn", epochs=7, seed=42, validation_split=0.3))
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    config = second.training.config()
    assert (config.preset, config.epochs, config.seed, config.validation_split) == ("tutorial_cnn", 7, 42, 0.3)


def test_folder_dropped_on_window_opens_as_dataset(qtbot, window, shapes_dataset):
    with qtbot.waitSignal(window.dataset_opened, timeout=60000) as opened:
        assert drop_files(window, [shapes_dataset])
    assert opened.args[0].root == shapes_dataset


def test_model_summary_says_what_the_model_is(window, trained):
    """Preset, input, classes, parameters, compute, calibration and how it answers."""
    from imgcls_desktop.core.model_io import load_model

    loaded = load_model(trained[1])
    loaded.metadata["test_time_augmentation"] = "flip_translate"
    window.state.set_loaded(loaded)
    shown = []
    window._show_message_box = lambda title, html: shown.append((title, html))
    window.show_model_summary()
    title, html = shown[0]
    assert title == "Model summary"
    assert "small_cnn" in html and "32 x 32 RGB" in html and "circle, square, triangle" in html
    assert f"{loaded.model.count_params():,}" in html
    assert f"{loaded.metadata['training']['forward_mflops']:g} MFLOP per image" in html
    assert "temperature" in html and "6 views" in html


def test_status_bar_names_the_sample_dataset_and_other_folders_by_path(qtbot, window, shapes_dataset):
    from imgcls_desktop.resources import sample_dataset_path

    with qtbot.waitSignal(window.dataset_opened, timeout=60000):
        window.open_sample()
    message = window.statusBar().currentMessage()
    assert message.startswith("Opened the sample dataset: 6 classes")
    assert str(sample_dataset_path()) not in message
    assert window.browser.header_label.text().startswith("<b>The sample dataset</b>")
    assert window.browser.header_label.toolTip() == str(sample_dataset_path())  # the path is one hover away
    with qtbot.waitSignal(window.dataset_opened, timeout=60000):
        window.open_dataset(shapes_dataset)
    assert window.statusBar().currentMessage().startswith(f"Opened {shapes_dataset}: 3 classes")
    assert window.browser.header_label.text().startswith(f"<b>{shapes_dataset}</b>")


# -- What the README promises about the window ------------------------------------------

def test_readme_shortcuts_trigger_their_actions(qtbot, window, monkeypatch):
    """README: Ctrl+O, Ctrl+Shift+O, Ctrl+S, Ctrl+E, Ctrl+I, Ctrl+Z, Ctrl+T, Esc, Alt+1..5."""
    from PySide6.QtCore import Qt

    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)
    # Through the QWindow, as a real key press arrives: Qt's shortcut map sees it there.
    surface = window.windowHandle()
    control, shift = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
    actions = {
        (Qt.Key.Key_O, control): window.open_dataset_action,
        (Qt.Key.Key_O, control | shift): window.open_model_action,
        (Qt.Key.Key_S, control): window.save_model_action,
        (Qt.Key.Key_E, control): window.evaluate_action,
        (Qt.Key.Key_I, control): window.summary_action,
        (Qt.Key.Key_Z, control): window.undo_move_action,
    }
    for (key, modifiers), action in actions.items():
        action.setEnabled(True)
        action.triggered.disconnect()  # the binding is under test, not the dialogs behind it
        with qtbot.waitSignal(action.triggered, timeout=2000):
            qtbot.keyClick(surface, key, modifiers)
    # Ctrl+T and Esc live on the Train and Stop buttons of the Train view; Esc only while training.
    panel = window.training
    window.tabs.setCurrentWidget(panel)
    for button in (panel.train_button, panel.stop_button):
        button.setEnabled(True)
        button.clicked.disconnect()
    with qtbot.waitSignal(panel.train_button.clicked, timeout=2000):
        qtbot.keyClick(surface, Qt.Key.Key_T, control)
    with qtbot.assertNotEmitted(panel.stop_button.clicked):
        qtbot.keyClick(surface, Qt.Key.Key_Escape)
    with monkeypatch.context() as patch:
        patch.setattr(panel, "is_training", lambda: True)
        panel._update_buttons()
        with qtbot.waitSignal(panel.stop_button.clicked, timeout=2000):
            qtbot.keyClick(surface, Qt.Key.Key_Escape)
    panel._update_buttons()
    for index in range(5):
        qtbot.keyClick(surface, getattr(Qt.Key, f"Key_{index + 1}"), Qt.KeyboardModifier.AltModifier)
        assert window.tabs.currentIndex() == index


def test_window_geometry_is_restored(qtbot):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    qtbot.waitExposed(first)
    first.resize(1000, 700)
    first.tabs.setCurrentIndex(3)
    qtbot.waitUntil(lambda: (first.width(), first.height()) == (1000, 700), timeout=5000)
    first.close()
    second = MainWindow()
    qtbot.addWidget(second)
    # Not the first-run 1100 x 760: the saved size (the offscreen screen is 800 wide, and
    # restoreGeometry keeps a window on its screen, so only the height comes back whole).
    assert second.height() == 700 and second.width() <= 1000


def test_recent_models_menu_reopens_a_model(qtbot, window, trained):
    _, path = trained
    assert not window.recent_models_menu.isEnabled()
    with qtbot.waitSignal(window.model_changed, timeout=60000):
        window.open_model(path)
    again = MainWindow()  # the menu survives a restart
    qtbot.addWidget(again)
    entries = again.recent_models_menu.actions()
    assert again.recent_models_menu.isEnabled() and [a.text() for a in entries] == [str(path)]
    with qtbot.waitSignal(again.model_changed, timeout=60000) as changed:
        entries[0].trigger()
    assert str(changed.args[0].path) == str(path)
    again.jobs.wait(60000)
