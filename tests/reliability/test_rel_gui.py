"""GUI lifecycle: closing while a model loads or saves, signals reaching deleted widgets,
exceptions inside a training run, the per-batch flood, invalid model output, and
exceptions in slots and threads.

Rows of the "GUI lifecycle" table of ../shared/docs/reliability.md and its "Training
faults" / "Prediction input" rows that the window shows; the "GUI lifecycle" bullet of
issue 5. Existing tests cover the rest (see docs/reliability-matrix.md).
"""

import sys
import threading
import time

import numpy as np
import pytest
import shiboken6
from hostile_inputs import write_image
from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtWidgets import QLabel

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.model_io import load_model
from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.gui import jobs, model_state, prediction_pane, training_worker
from imgcls_desktop.gui.prediction_pane import PredictionPane
from tests.synthetic import make_shapes_dataset


class Gate:
    """Makes a background function wait until the test lets it go (no sleeping)."""

    def __init__(self, function):
        self.function = function
        self.started = threading.Event()
        self.release = threading.Event()
        self.finished = threading.Event()

    def __call__(self, *args, **kwargs):
        self.started.set()
        if not self.release.wait(30):
            raise TimeoutError("the test never released the gate")
        try:
            return self.function(*args, **kwargs)
        finally:
            self.finished.set()


def _release_when_close_begins(window, gate):
    """The slow job ends while the closing window waits for background work."""
    stop_background_work = window.browser.stop_background_work  # the first wait of closeEvent

    def release_then_wait(*args, **kwargs):
        if not gate.release.is_set():
            gate.still_running_at_close = not gate.finished.is_set()
            gate.release.set()
        return stop_background_work(*args, **kwargs)

    window.browser.stop_background_work = release_then_wait


def test_close_while_a_model_is_loading_waits_for_it(qtbot, window, monkeypatch, tiny_model_file,
                                                     error_dialogs):
    path, _names = tiny_model_file
    gate = Gate(model_state._load)
    monkeypatch.setattr(model_state, "_load", gate)
    window.open_model(path)
    assert gate.started.wait(30)
    _release_when_close_begins(window, gate)
    assert window.close()
    assert gate.still_running_at_close
    assert gate.finished.is_set(), "the window closed before the load ended"
    assert jobs.wait_for_all_jobs(0)
    assert error_dialogs == []


def test_close_while_saving_waits_and_the_file_is_complete(qtbot, window, monkeypatch, tiny_model_file,
                                                           tmp_path, error_dialogs):
    path, names = tiny_model_file
    window.state.set_loaded(load_model(path))
    gate = Gate(model_state._save)
    monkeypatch.setattr(model_state, "_save", gate)
    target = tmp_path / "saved.keras"
    window.state.save_as(target)
    assert gate.started.wait(30)
    _release_when_close_begins(window, gate)
    assert window.close()
    assert gate.still_running_at_close
    assert gate.finished.is_set(), "the window closed before the save ended"
    assert jobs.wait_for_all_jobs(0)
    assert load_model(target).class_names == names
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved.keras"]
    assert error_dialogs == []


class Recorder(QObject):
    def __init__(self):
        super().__init__()
        self.calls = []

    @Slot(object)
    def record(self, value):
        self.calls.append(value)


def test_job_result_arriving_after_its_pane_was_deleted(qtbot, monkeypatch, tiny_model_file):
    path, _names = tiny_model_file
    loaded = load_model(path)
    gate = Gate(prediction_pane._classify_batch)
    monkeypatch.setattr(prediction_pane, "_classify_batch", gate)
    pane = PredictionPane()
    pane.set_model(loaded)  # starts the warm-up job, held at the gate
    job = pane._job
    assert job is not None and gate.started.wait(30)
    witness = Recorder()
    job.signals.succeeded.connect(witness.record)  # proves the signal was really emitted
    shiboken6.delete(pane)
    assert not shiboken6.isValid(pane)
    gate.release.set()
    qtbot.waitUntil(lambda: len(witness.calls) == 1, timeout=30000)
    assert jobs.wait_for_all_jobs(30000)
    # pytest-qt fails the test if a slot of the deleted pane raised (it would, on its labels).


def test_exception_inside_a_training_run_fails_cleanly_and_the_next_run_works(qtbot, tmp_path, monkeypatch,
                                                                             in_process_engine):
    from imgcls_desktop.core import fit_loop

    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=8, size=32)
    scan = scan_dataset(root)
    config = TrainingConfig(preset="tutorial_cnn", epochs=2, batch_size=4, seed=1)
    real_batch_ended = fit_loop.FitRun.batch_ended
    calls = []

    def out_of_memory_on_second_batch(self, batch, logs):
        calls.append(batch)
        if len(calls) == 2:
            raise MemoryError("simulated: out of memory in batch 2")
        return real_batch_ended(self, batch, logs)

    monkeypatch.setattr(fit_loop.FitRun, "batch_ended", out_of_memory_on_second_batch)
    controller = training_worker.TrainingController()
    order = []
    controller.succeeded.connect(lambda result: order.append("succeeded"))
    controller.failed.connect(lambda exc, details: order.append(("failed", exc, details)))
    controller.finished.connect(lambda: order.append("finished"))
    with qtbot.waitSignal(controller.finished, timeout=60000):
        assert controller.start(scan, config)
    assert [entry if isinstance(entry, str) else entry[0] for entry in order] == ["failed", "finished"]
    _tag, exc, details = order[0]
    assert isinstance(exc, MemoryError) and "batch 2" in str(exc) and "out_of_memory_on_second_batch" in details
    assert not controller.is_running()
    qtbot.waitUntil(lambda: not training_worker.live_threads(), timeout=30000)

    monkeypatch.setattr(fit_loop.FitRun, "batch_ended", real_batch_ended)
    order.clear()
    with qtbot.waitSignal(controller.finished, timeout=60000):
        assert controller.start(scan, TrainingConfig(preset="tutorial_cnn", epochs=1, batch_size=8, seed=1))
    assert order == ["succeeded", "finished"]


def test_per_batch_flood_from_a_real_run_is_bounded(qtbot, tmp_path, monkeypatch, in_process_engine):
    # Every event core produces is counted where it is produced (inside the engine, served on
    # a thread here so the patch reaches it); each is either forwarded to the GUI or dropped,
    # by the engine or by the worker, and what reaches the GUI is bounded by the rate.
    from imgcls_desktop.core import training

    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=10, size=32)
    scan = scan_dataset(root)
    monkeypatch.setattr(training_worker.TrainingWorker, "max_events_per_second", 4.0)
    produced = []
    real_train = training.train

    def counting_train(*args, on_progress, **kwargs):
        def count(progress):
            produced.append(progress.kind)
            on_progress(progress)

        return real_train(*args, on_progress=count, **kwargs)

    monkeypatch.setattr(training, "train", counting_train)
    controller = training_worker.TrainingController()
    received = []
    controller.progressed.connect(lambda progress: received.append(progress.kind))
    start = time.monotonic()
    with qtbot.waitSignal(controller.finished, timeout=120000):
        controller.start(scan, TrainingConfig(preset="tutorial_cnn", epochs=3, batch_size=1, seed=2,
                                              validation_split=0.2))
    seconds = time.monotonic() - start
    counts = controller.event_counts
    batches = produced.count("batch")
    assert batches == 3 * 16
    assert counts["forwarded"] + counts["dropped"] == len(produced)
    assert len(received) == counts["forwarded"]  # nothing else queued up behind the GUI
    assert received.count("epoch") == 3  # epoch ends are never dropped
    non_batch = len(produced) - batches
    # Bounded by the rate, not by the number of batches.
    assert received.count("batch") <= 4.0 * seconds + 3
    assert counts["forwarded"] <= non_batch + 4.0 * seconds + 3
    if seconds < batches / 4.0 / 2:  # a fast machine produced far more than the rate
        assert counts["dropped"] > 0


def _nan_model_loaded(folder):
    """A saved model whose output is NaN for any input (the engine loads models from files)."""
    from imgcls_desktop.core.backend import keras_module
    from imgcls_desktop.core.model_io import save_model

    keras = keras_module()
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    path = folder / "nan.keras"
    save_model(model, path, {"class_names": ["cat", "dog"], "image_size": [8, 8]})
    return load_model(path)


def test_invalid_model_output_shows_an_error_row_and_no_label(qtbot, tmp_path, in_process_engine):
    pane = PredictionPane()
    qtbot.addWidget(pane)
    pane.set_model(_nan_model_loaded(tmp_path))
    image = write_image(tmp_path / "photo.png", size=(10, 10))
    with qtbot.waitSignal(pane.predictions_ready, timeout=60000) as ready:
        assert pane.classify_paths([str(image)])
    prediction = ready.args[0][0]
    assert not prediction.ok and "invalid output" in prediction.error
    row = pane.results_list.itemWidget(pane.results_list.item(0))
    assert row.findChild(QLabel, "predictionLabel") is None
    assert "model produced invalid output" in row.findChild(QLabel, "predictionError").text()
    assert "could not be classified" in pane.status_label.text()


@pytest.mark.qt_no_exception_capture
def test_exceptions_in_slots_and_threads_reach_the_error_dialog(qtbot, error_dialogs):
    from imgcls_desktop.app import install_exception_hooks

    saved = sys.excepthook, threading.excepthook
    try:
        bridge = install_exception_hooks()

        def broken_slot():
            raise ValueError("a slot fell over")

        QTimer.singleShot(0, broken_slot)
        qtbot.waitUntil(lambda: len(error_dialogs) == 1, timeout=10000)
        thread = threading.Thread(target=lambda: 1 / 0)
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: len(error_dialogs) == 2, timeout=10000)
        still_running = []
        QTimer.singleShot(0, lambda: still_running.append(True))
        qtbot.waitUntil(lambda: still_running == [True], timeout=10000)
    finally:
        sys.excepthook, threading.excepthook = saved
    assert bridge is not None
    titles = {title for title, _message, _details in error_dialogs}
    assert titles == {"Unexpected error"}
    assert "ValueError: a slot fell over" in error_dialogs[0][1]
    assert "ZeroDivisionError" in error_dialogs[1][1]
    assert "Traceback" in error_dialogs[0][2]
