"""TrainingPanel, TrainingController and LiveChart: real short trainings on tiny shapes."""

import threading
import time

import pytest
from PySide6.QtCore import QObject, Qt

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.training import TrainingProgress
from imgcls_desktop.gui import training_worker
from imgcls_desktop.gui.live_chart import LiveChart
from imgcls_desktop.gui.training_panel import TrainingPanel, progress_text


@pytest.fixture(scope="module")
def shapes_scan(shapes_dataset):
    return scan_dataset(shapes_dataset)


@pytest.fixture
def panel(qtbot, shapes_scan):
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    widget.set_dataset(shapes_scan)
    widget.set_engine_ready(True)
    index = widget.preset_combo.findData("tutorial_cnn")
    widget.preset_combo.setCurrentIndex(index)
    widget.epochs_spin.setValue(2)
    widget.batch_size_spin.setValue(16)
    yield widget
    if widget.is_training():  # a failing test must not leave its thread behind
        widget.request_stop()
        widget.wait_for_stop(60000)


def _click(qtbot, button):
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_train_disabled_until_dataset_and_engine(qtbot, shapes_scan):
    widget = TrainingPanel()
    qtbot.addWidget(widget)
    assert not widget.train_button.isEnabled()
    assert "dataset" in widget.train_button.toolTip()
    widget.set_dataset(shapes_scan)
    assert not widget.train_button.isEnabled()
    assert "loading" in widget.train_button.toolTip()
    widget.set_engine_ready(True)
    assert widget.train_button.isEnabled()
    assert not widget.stop_button.isEnabled()
    widget.set_dataset(None)
    assert not widget.train_button.isEnabled() and widget.start_training() is False
    assert widget.objectName() == "trainingPanel"
    for name in ("trainButton", "stopButton", "trainingProgress", "liveChart"):
        child = widget.findChild(QObject, name)
        assert child is not None and child.accessibleName() == name


def test_preset_change_resets_fields_and_config_round_trip(panel):
    assert panel.config().preset == "tutorial_cnn"
    panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("mobilenet_v2"))
    assert panel.image_size_spin.value() == 160
    assert panel.augmentation_spins["zoom"].value() == pytest.approx(0.1)
    assert not panel.weights_row.isHidden()
    panel.weights_combo.setCurrentIndex(panel.weights_combo.findData("file"))
    assert not panel.train_button.isEnabled() and "weights file" in panel.train_button.toolTip()
    panel.choose_weights_file = lambda: "/tmp/backbone_no_top.h5"
    panel.weights_browse.click()
    assert not panel.fine_tune_spin.isHidden() and panel.fine_tune_spin.text() == "off"
    panel.fine_tune_spin.setValue(4)
    config = panel.config()
    assert config.weights == "/tmp/backbone_no_top.h5" and panel.train_button.isEnabled()
    assert config.fine_tune_epochs == 4
    panel.preset_combo.setCurrentIndex(panel.preset_combo.findData("small_cnn"))
    assert panel.weights_row.isHidden() and panel.fine_tune_spin.isHidden()
    assert panel.config().fine_tune_epochs == 0  # from-scratch presets train every layer anyway
    panel.set_config(config)
    assert panel.config() == config


def test_real_training_succeeds_and_fills_the_chart(qtbot, panel):
    succeeded, texts = [], set()
    panel.training_succeeded.connect(succeeded.append)
    panel.training_progressed.connect(lambda _: texts.add(panel.progress_bar.format()))
    with qtbot.waitSignal(panel.training_finished, timeout=90000):
        with qtbot.waitSignal(panel.training_started, timeout=1000):
            _click(qtbot, panel.train_button)
        assert panel.is_training()
        assert not panel.settings.isEnabled() and panel.stop_button.isEnabled()
    assert len(succeeded) == 1
    result = succeeded[0]
    assert result.epochs_run == 2 and not result.stopped_by_user
    chart = panel.chart
    # The last points are drawn off the GUI thread: wait for them to land.
    qtbot.waitUntil(lambda: chart.point_count("loss", "val") == 2, timeout=10000)
    assert chart.point_count("accuracy", "val") == 2
    assert chart.point_count("loss", "train_epoch") == 2
    assert chart.point_count("accuracy", "train") >= 3  # batch points as well
    assert panel.progress_bar.value() == 1000
    assert any(text.startswith("Epoch 1/2 · step") for text in texts), texts
    assert panel.status_label.text().startswith("Best validation accuracy ")
    assert "of 2" in panel.status_label.text()
    assert panel.train_button.isEnabled() and not panel.stop_button.isEnabled()
    assert panel.settings.isEnabled()
    assert panel.controller.event_counts["forwarded"] >= 3


def test_stop_during_training_then_train_again(qtbot, panel, monkeypatch, in_process_engine):
    # The training thread waits inside epoch 1 until the click's stop request has reached
    # the fit (through the engine's cancel message): no race with a busy machine finishing
    # the epoch first.
    from imgcls_desktop.core import fit_loop

    in_first_batch = threading.Event()
    real_batch_ended = fit_loop.FitRun.batch_ended

    def batch_ended(self, batch, logs):
        if self.epoch == 1 and batch == 0:
            in_first_batch.set()
            deadline = time.monotonic() + 60
            while not self.phase.stop_event.is_set():
                assert time.monotonic() < deadline, "Stop never reached the fit"
                time.sleep(0.01)
        return real_batch_ended(self, batch, logs)

    monkeypatch.setattr(fit_loop.FitRun, "batch_ended", batch_ended)
    panel.epochs_spin.setValue(5)
    succeeded = []
    panel.training_succeeded.connect(succeeded.append)
    with qtbot.waitSignal(panel.training_finished, timeout=90000):
        panel.start_training()
        qtbot.waitUntil(in_first_batch.is_set, timeout=60000)
        _click(qtbot, panel.stop_button)
    assert len(succeeded) == 1
    assert succeeded[0].stopped_by_user and succeeded[0].epochs_run == 1
    assert "(stopped by user)" in panel.status_label.text()
    assert panel.train_button.isEnabled()
    # Stop must not poison the next run.
    monkeypatch.setattr(fit_loop.FitRun, "batch_ended", real_batch_ended)
    panel.epochs_spin.setValue(1)
    with qtbot.waitSignal(panel.training_succeeded, timeout=90000) as blocker:
        assert panel.start_training()
    assert not blocker.args[0].stopped_by_user
    assert panel.wait_for_stop(30000)


def test_train_clicked_twice_gives_one_worker(qtbot, panel, monkeypatch, error_dialogs):
    created = []

    class CountingWorker(training_worker.TrainingWorker):
        def __init__(self, *args):
            super().__init__(*args)
            created.append(self)

    monkeypatch.setattr(training_worker, "TrainingWorker", CountingWorker)
    panel.epochs_spin.setValue(1)
    with qtbot.waitSignal(panel.training_finished, timeout=90000):
        _click(qtbot, panel.train_button)
        _click(qtbot, panel.train_button)
        assert panel.start_training() is False
        assert panel.controller.start(panel._scan, panel.config()) is False
    assert len(created) == 1


def test_exception_in_worker_shows_dialog_and_panel_recovers(qtbot, panel, monkeypatch, in_process_engine,
                                                             error_dialogs):
    from imgcls_desktop.core import training

    def broken_train(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training, "train", broken_train)
    failed = []
    panel.training_failed.connect(lambda exc, details: failed.append((exc, details)))
    with qtbot.waitSignal(panel.training_finished, timeout=30000):
        panel.start_training()
    assert len(failed) == 1 and isinstance(failed[0][0], RuntimeError)
    assert "broken_train" in failed[0][1]
    assert len(error_dialogs) == 1
    title, message, details = error_dialogs[0]
    assert title == "Training failed" and "disk on fire" in message and "Traceback" in details
    assert panel.train_button.isEnabled() and panel.settings.isEnabled()
    assert not panel.is_training()


def test_batch_flood_is_throttled(qtbot):
    chart = LiveChart()
    qtbot.addWidget(chart)
    for index in range(5000):
        chart.add_batch(TrainingProgress(kind="batch", epoch=1 + index // 500, step=index % 500 + 1,
                                         steps=500, metrics={"loss": 1.0 / (index + 1), "accuracy": 0.5}))
    # Rendering happens off the GUI thread: wait for the drawn data, not the request.
    qtbot.waitUntil(lambda: chart.point_count("loss", "train") > 0, timeout=5000)
    assert 1 <= chart.redraw_count <= 3
    assert chart.point_count("loss", "train") <= chart.max_batch_points
    assert chart.lines[("loss", "train")].get_xdata()[-1] == pytest.approx(10.0)
    assert not chart._placeholder.get_visible()
    chart.clear()
    chart.flush()
    assert chart.point_count("loss", "train") == 0 and chart._placeholder.get_visible()


def test_worker_drops_intermediate_batch_events():
    worker = training_worker.TrainingWorker(None, None)
    received = []
    worker.progressed.connect(received.append)
    for step in range(1, 1001):
        worker._forward(TrainingProgress(kind="batch", epoch=1, step=step, steps=1000))
    worker._forward(TrainingProgress(kind="epoch", epoch=1, step=1000, steps=1000))
    assert len(received) <= 3 and received[-1].kind == "epoch"
    assert worker.dropped_events >= 998


def test_close_while_training_stops_thread(qtbot, panel):
    panel.epochs_spin.setValue(50)
    with qtbot.waitSignal(panel.training_progressed, timeout=60000,
                          check_params_cb=lambda progress: progress.kind == "batch"):
        panel.start_training()
    panel.close()
    assert not panel.is_training()
    assert not any(thread.isRunning() for thread in training_worker.live_threads())


def test_deleted_while_training_stops_thread(qtbot, shapes_scan):
    widget = TrainingPanel()
    widget.set_dataset(shapes_scan)
    widget.set_engine_ready(True)
    widget.preset_combo.setCurrentIndex(widget.preset_combo.findData("tutorial_cnn"))
    widget.epochs_spin.setValue(50)
    with qtbot.waitSignal(widget.training_progressed, timeout=60000,
                          check_params_cb=lambda progress: progress.kind == "batch"):
        widget.start_training()
    widget.deleteLater()
    del widget
    qtbot.waitUntil(lambda: not training_worker.live_threads(), timeout=60000)


def test_time_budget_mode(qtbot, panel, batch_clock, monkeypatch):
    from imgcls_desktop.gui import training_panel

    monkeypatch.setattr(training_panel, "time", batch_clock)  # Train's moment on the job's clock
    panel.time_radio.setChecked(True)
    panel.minutes_spin.setValue(0.05)
    assert panel.config().time_budget == 3.0 and panel.config().epochs is None
    assert not panel.epochs_spin.isEnabled()
    with qtbot.waitSignal(panel.training_succeeded, timeout=90000) as blocker:
        panel.start_training()
    # One second per batch (batch_clock): the 3-second budget ends after batch 3 of the
    # first epoch's 4, however busy the machine.
    assert blocker.args[0].stop_reason == "time budget reached"
    assert blocker.args[0].epochs_run == 1
    assert "(time budget reached)" in panel.status_label.text()
    assert panel.wait_for_stop(30000)


def test_progress_text():
    batch = TrainingProgress(kind="batch", epoch=3, epochs=10, step=40, steps=120,
                             images_per_second=850.4, seconds_left=83)
    assert progress_text(batch) == "Epoch 3/10 · step 40/120 · 850 img/s · 1:23 left"
    tuning = TrainingProgress(kind="batch", epoch=12, epochs=15, step=4, steps=9, message="fine-tuning")
    assert progress_text(tuning) == "Fine-tuning · Epoch 12/15 · step 4/9"
    decode = TrainingProgress(kind="decode", step=120, steps=600, message="Reading images 120/600")
    assert progress_text(decode) == "Reading images 120/600"


def test_augmentation_preview_shows_images(qtbot, panel):
    panel.flip_check.setChecked(True)
    panel.augmentation_spins["rotation"].setValue(0.1)
    assert panel.preview_augmentation() is not None
    qtbot.waitUntil(lambda: panel.preview_layout.count() == 8, timeout=60000)
    label = panel.preview_layout.itemAt(0).widget()
    assert not label.pixmap().isNull() and label.pixmap().width() > 0
