"""The History tab: a run trained in the window is recorded, listed, compared, reopened."""

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from imgcls_desktop.core import history
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.gui.history_view import HistoryView


def test_a_run_trained_in_the_window_is_recorded_listed_and_compared(
        qtbot, window, shapes_split_dataset, trained, tmp_path, error_dialogs):
    with qtbot.waitSignals([window.engine_ready, window.dataset_opened], timeout=120000):
        window.start(shapes_split_dataset)
    # One epoch at a tiny learning rate: about half right, so it differs from ``trained``.
    window.training.set_config(TrainingConfig(preset="small_cnn", epochs=1, batch_size=16,
                                              learning_rate=1e-4, seed=3))
    view = window.history
    with qtbot.waitSignal(view.recorder.recorded, timeout=300000) as recorded:
        window.findChild(QPushButton, "trainButton").click()
    run_id = recorded.args[0]
    run = history.load_run(run_id)
    # Recorded once the evaluation arrived: the same numbers the Evaluate view shows.
    assert run.evaluation["split"] == "test" and run.evaluation["num_images"] == 24
    assert run.eval_accuracy == window.evaluation.report.accuracy
    assert run.model_path == str(window.state.autosaved_path) and run.config["epochs"] == 1

    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.run_ids() == [run_id], timeout=30000)
    strong = history.record_run(trained[0], scan_dataset(shapes_split_dataset), trained[1])
    assert run.eval_accuracy < 0.8 < strong.eval_accuracy  # a barely trained run and a good one
    with qtbot.waitSignal(view.runs_listed, timeout=30000):
        view.refresh()
    assert view.run_ids() == [strong.id, run_id]  # newest first

    shown = []
    view.selection_shown.connect(shown.append)
    view.select_runs([strong.id, run_id])
    comparison = shown[-1]
    assert [label for label, _run in view.shown_runs] == ["A", "B"]
    assert [r.id for _label, r in view.shown_runs] == [run_id, strong.id]  # the older run is A
    assert len(view.chart.lines) == 8  # per run: train and validation, loss and accuracy
    for shown_run in (run, strong):
        for metric in ("loss", "accuracy"):
            for series, key in (("train", metric), ("val", f"val_{metric}")):
                line = view.chart.lines[(shown_run.id, metric, series)]
                np.testing.assert_allclose(line.get_ydata(), shown_run.history[key])
    expected = history.compare_runs(run_id, strong.id)
    assert comparison == expected
    assert expected["flipped_to_right"]  # one epoch against twelve
    assert view.to_right.paths() == [str(shapes_split_dataset.resolve() / row["path"])
                                     for row in expected["flipped_to_right"]]
    assert view.to_wrong.paths() == [str(shapes_split_dataset.resolve() / row["path"])
                                     for row in expected["flipped_to_wrong"]]
    assert f"({len(expected['flipped_to_right'])};" in view.to_right_label.text()
    headers = [view.metrics.verticalHeaderItem(row).text() for row in range(view.metrics.rowCount())]
    assert "Setting: epochs" in headers and view.metrics.columnCount() == 3

    opened = []
    view._open_file = opened.append
    window.show()
    grid = view.to_right
    qtbot.waitUntil(lambda: grid.visualItemRect(grid.item(0)).width() > 0, timeout=10000)
    centre = grid.visualItemRect(grid.item(0)).center()
    # Qt 6's QTest double-click only counts after a press on the same item.
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert opened == [view.to_right.paths()[0]]

    # Save as: the run follows its model to the new place.
    copy = tmp_path / "kept.keras"
    with qtbot.waitSignal(window.state.model_saved, timeout=60000):
        window.state.save_as(str(copy))
    qtbot.waitUntil(lambda: history.load_run(run_id).model_path == str(copy), timeout=30000)

    # Open model loads the model of the run selected last, through the window.
    view.select_runs([run_id, strong.id])
    assert view.comparison["a"] == run_id  # the order of clicks does not change which is A
    with qtbot.waitSignal(window.model_changed, timeout=60000) as changed:
        view.open_selected_model()
    assert str(changed.args[0].path) == str(trained[1])
    assert error_dialogs == []


def test_selection_keeps_two_runs_delete_and_damaged_files(qtbot, trained, shapes_split_dataset):
    scan = scan_dataset(shapes_split_dataset)
    ids = [history.record_run(trained[0], scan, evaluate=False).id for _ in range(3)]
    (history.runs_dir() / "20260101-000000-beef.json").write_text("{", encoding="utf-8")
    view = HistoryView()
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.runs_listed, timeout=30000):
        view.show()
    assert sorted(view.run_ids()) == sorted(ids)
    assert "could not be read" in view.title.text() and "20260101-000000-beef.json" in view.title.text()

    view.select_runs(ids)  # a third run replaces the first of the two picked before
    assert view.selected_ids() == ids[1:]
    assert len(view.table.selectionModel().selectedRows()) == 2
    assert "no per-image evaluation" in view.note.text()  # recorded without an evaluation
    assert view.to_right.count() == 0 and view.to_wrong.count() == 0

    view.select_runs([ids[0]])
    assert view.metrics.columnCount() == 1 and len(view.chart.lines) == 4
    assert not view.open_button.isEnabled()  # that run's model was never saved

    asked = []
    view._confirm_delete = lambda run_ids: asked.append(run_ids) or True
    with qtbot.waitSignal(view.runs_listed, timeout=30000):
        view.delete_selected()
    assert asked == [[ids[0]]]
    assert sorted(view.run_ids()) == sorted(ids[1:])
    assert not (history.runs_dir() / f"{ids[0]}.json").exists()


def test_a_run_with_nothing_held_out_is_recorded_without_evaluation(qtbot, window, shapes_dataset,
                                                                     error_dialogs):
    with qtbot.waitSignals([window.engine_ready, window.dataset_opened], timeout=120000):
        window.start(shapes_dataset)
    window.training.set_config(TrainingConfig(preset="small_cnn", epochs=1, batch_size=16,
                                              validation_split=0.0, seed=3))
    with qtbot.waitSignal(window.history.recorder.recorded, timeout=300000) as recorded:
        window.findChild(QPushButton, "trainButton").click()
    run_id = recorded.args[0]
    assert history.load_run(run_id).evaluation is None
    # The autosave lands after the run was written: the run learns where its model went.
    qtbot.waitUntil(lambda: window.state.autosaved_path is not None, timeout=60000)
    qtbot.waitUntil(lambda: history.load_run(run_id).model_path == str(window.state.autosaved_path),
                    timeout=30000)
    assert error_dialogs == []
