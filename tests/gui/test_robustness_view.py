"""RobustnessView: the real check on a really trained model, its table, chart, CSV and Cancel."""

import csv
import threading

import pytest
from PySide6.QtCore import Qt

from imgcls_desktop.core.robustness import SEVERITIES
from imgcls_desktop.gui.robustness_view import FIXED_COLUMNS, NO_MODEL_TEXT, TRAINING_TEXT, RobustnessView, drop_colour


@pytest.fixture(scope="module")
def loaded(trained):
    from imgcls_desktop.core.model_io import load_model

    return load_model(trained[1])


@pytest.fixture(scope="module")
def scan(shapes_split_dataset):
    from imgcls_desktop.core.dataset import scan_dataset

    return scan_dataset(shapes_split_dataset)


@pytest.fixture
def view(qtbot):
    widget = RobustnessView()
    qtbot.addWidget(widget)
    widget.resize(1000, 600)
    widget.show()
    return widget


def _cell(view, row, column):
    return view.table.item(row, column)


def test_check_shows_every_corruption_per_class_with_chart_and_csv(view, loaded, scan, qtbot, tmp_path):
    from imgcls_desktop.core.evaluation import evaluate_items

    assert not view.run_button.isEnabled() and view.status_label.text() == NO_MODEL_TEXT
    view.set_model(loaded)
    view.set_dataset(scan)
    assert view.run_button.isEnabled() and not view.export_button.isEnabled()
    with qtbot.waitSignal(view.check_finished, timeout=120000) as finished:
        view.run_button.click()
        assert view.is_running() and view.cancel_button.isEnabled() and not view.run_button.isEnabled()
    report = finished.args[0]
    assert report is view.report() and report["split"] == "test" and report["num_images"] == 24

    # The clean row is the evaluation's accuracy, computed by core on the same images.
    evaluation = evaluate_items(loaded, scan.splits["test"], scan.class_names)
    overall = FIXED_COLUMNS.index("Overall")
    assert _cell(view, 0, 0).text() == "clean"
    assert _cell(view, 0, overall).data(Qt.ItemDataRole.UserRole) == pytest.approx(evaluation.accuracy, abs=1e-6)
    assert evaluation.accuracy > 0.8
    headers = [view.table.horizontalHeaderItem(c).text() for c in range(view.table.columnCount())]
    assert headers == list(FIXED_COLUMNS) + list(loaded.class_names)
    for name, metrics in evaluation.per_class().items():  # per-class accuracy is the recall
        column = headers.index(name)
        assert _cell(view, 0, column).data(Qt.ItemDataRole.UserRole) == pytest.approx(metrics["recall"], abs=1e-6)

    # One row per corruption and severity, in the table as in the report.
    expected = [(family, severity) for family, (_factory, levels) in SEVERITIES.items()
                for severity in range(1, len(levels) + 1)]
    assert view.table.rowCount() == 1 + len(expected) == len(report["conditions"])
    shown = [(_cell(view, r, 0).text(), _cell(view, r, 1).text()) for r in range(1, view.table.rowCount())]
    names = {1: "mild", 2: "medium", 3: "harsh"}
    assert shown == [(family, names[severity]) for family, severity in expected]
    for r, row in enumerate(report["conditions"]):
        assert _cell(view, r, overall).data(Qt.ItemDataRole.UserRole) == row["accuracy"]
        if r:  # coloured by how far it falls below clean
            assert _cell(view, r, overall).background().color() == drop_colour(row["drop"])
    worst = max(report["conditions"][1:], key=lambda row: row["drop"])
    print("clean", evaluation.accuracy, "worst", worst["name"], worst["accuracy"])
    assert worst["drop"] > 0  # the corruptions reach the model
    worst_colour = _cell(view, report["conditions"].index(worst), overall).background().color()
    assert worst_colour.red() == 255 and worst_colour.green() < 255
    assert drop_colour(0.0).name() == "#ffffff" and drop_colour(0.5).name() == "#ff5555"

    # The chart: one line per corruption over its severities, clean dashed.
    axes = view.figure.axes[0]
    labelled = {line.get_label(): line for line in axes.get_lines()}
    assert set(view.lines) == set(SEVERITIES) | {"clean"}
    for family in SEVERITIES:
        x, y = labelled[family].get_data()
        assert list(x) == [1, 2, 3]
        assert list(y) == [row["accuracy"] for row in report["conditions"] if row["family"] == family]
    assert view.lines["clean"].get_linestyle() == "--"
    assert list(view.lines["clean"].get_ydata()) == [evaluation.accuracy] * 2

    target = tmp_path / "robustness.csv"
    view._ask_csv_path = lambda: str(target)
    assert view.export_button.isEnabled()
    view.export_button.click()
    with open(target, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report["conditions"])
    assert [(row["corruption"], int(row["severity"])) for row in rows[1:]] == expected
    assert float(rows[0]["overall"]) == pytest.approx(evaluation.accuracy, abs=1e-6)
    for row, condition in zip(rows, report["conditions"]):
        for name in loaded.class_names:
            assert float(row[name]) == pytest.approx(condition["per_class"][name], abs=1e-6)

    # Another model: the result no longer describes it.
    view.set_model(None)
    assert view.report() is None and view.table.rowCount() == 0 and not view.export_button.isEnabled()


def test_cancel_stops_the_check(view, loaded, scan, qtbot):
    from imgcls_desktop.gui.jobs import Job, JobRunner

    view.set_model(loaded)
    view.set_dataset(scan)
    # A job ahead of it in the engine's queue keeps the check waiting, so Cancel lands before
    # its first batch.
    release = threading.Event()
    runner = JobRunner()
    runner.start(Job(release.wait, 60, uses_engine=True))
    try:
        assert view.run_check()
        view.cancel_button.click()
        assert not view.cancel_button.isEnabled()
    finally:
        release.set()
    with qtbot.assertNotEmitted(view.check_finished), qtbot.waitSignal(view.check_cancelled, timeout=60000):
        pass
    assert not view.is_running() and view.report() is None and view.table.rowCount() == 0
    assert view.status_label.text() == "Check cancelled." and view.run_button.isEnabled()


def test_training_pauses_the_check(view, loaded, scan):
    view.set_model(loaded)
    view.set_dataset(scan)
    view.set_training_active(True)
    assert not view.run_button.isEnabled() and not view.run_check()
    assert view.status_label.text() == TRAINING_TEXT
    view.set_training_active(False)
    assert view.run_button.isEnabled()


def test_window_evaluate_tab_holds_results_and_robustness(window, trained, shapes_split_dataset, qtbot):
    from imgcls_desktop.gui.main_window import TAB_EVALUATE

    tabs = window.evaluate_tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Results", "Robustness"]
    assert tabs.widget(0) is window.evaluation and tabs.widget(1) is window.robustness
    assert not window.check_robustness_action.isEnabled()
    model_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Model")
    assert window.check_robustness_action in model_menu.actions()

    with qtbot.waitSignal(window.dataset_opened, timeout=60000):
        window.open_dataset(shapes_split_dataset)
    with qtbot.waitSignal(window.model_changed, timeout=60000):
        window.open_model(trained[1])
    qtbot.waitUntil(lambda: window.jobs.active() == 0, timeout=60000)
    with qtbot.waitSignal(window.evaluation_finished, timeout=60000) as evaluated:
        window.evaluate_action.trigger()
    assert tabs.currentWidget() is window.evaluation

    assert window.check_robustness_action.isEnabled()
    with qtbot.waitSignal(window.robustness.check_finished, timeout=120000) as checked:
        window.check_robustness_action.trigger()
        assert window.tabs.currentIndex() == TAB_EVALUATE and tabs.currentWidget() is window.robustness
    clean = checked.args[0]["conditions"][0]
    assert clean["name"] == "clean"
    assert clean["accuracy"] == pytest.approx(evaluated.args[0].accuracy, abs=1e-6)


def test_graded_corruptions_bracket_the_default_check():
    import numpy as np

    from imgcls_desktop.core.robustness import CORRUPTIONS_BY_NAME, graded_corruptions

    graded = graded_corruptions()
    image = np.random.default_rng(0).integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    for corruption in graded:
        changed = corruption.apply(image, index=1)
        assert changed.shape == image.shape and not np.array_equal(changed, image), corruption.name
    # The middle severity is what `imgcls robustness` (DEFAULT_CORRUPTIONS) applies.
    medium = {c.family: c for c in graded if c.severity == 2}
    assert set(medium) == set(CORRUPTIONS_BY_NAME)
    for family, corruption in medium.items():
        assert corruption.title == CORRUPTIONS_BY_NAME[family].title
        assert np.array_equal(corruption.apply(image, 3), CORRUPTIONS_BY_NAME[family].apply(image, 3))
    # Harsher hurts more: the harsh blur leaves less detail than the mild one.
    blur = {c.severity: c.apply(image) for c in graded if c.family == "blur"}
    assert np.std(blur[3].astype(float)) < np.std(blur[1].astype(float))


def test_a_dataset_with_classes_the_model_lacks_is_explained(view, loaded, tmp_path, qtbot, error_dialogs):
    from imgcls_desktop.core.dataset import scan_dataset

    from synthetic import make_shapes_dataset

    other = scan_dataset(make_shapes_dataset(tmp_path / "four", num_classes=4, per_class=6, layout="split",
                                             test_per_class=2, seed=4))
    view.set_model(loaded)
    view.set_dataset(other)
    assert view.run_check()
    qtbot.waitUntil(lambda: not view.is_running(), timeout=60000)
    assert view.report() is None and view.status_label.text() == "The check failed."
    [(title, message, _details)] = error_dialogs
    assert title == "Robustness check failed"
    assert "cross" in message and "does not know" in message
    assert view.run_button.isEnabled()  # the window goes on
