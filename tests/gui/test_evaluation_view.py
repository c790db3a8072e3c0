"""EvaluationView and ConfusionMatrixView on a real report of a really trained model."""

import csv
import json

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from PIL import Image
from PySide6.QtCore import Qt

from imgcls_desktop.gui.evaluation_view import EMPTY_TEXT, ConfusionMatrixView, EvaluationView
from imgcls_desktop.gui.thumbnails import pixmap_from_array, placeholder_pixmap, thumbnail_pixmap


@pytest.fixture(scope="module")
def report(trained, shapes_split_dataset):
    from imgcls_desktop.core.evaluation import evaluate_folder
    from imgcls_desktop.core.model_io import load_model

    return evaluate_folder(load_model(trained[1]), shapes_split_dataset)


@pytest.fixture(scope="module")
def report_with_mistakes(report):
    """The real report with its first five predictions made wrong (the tiny model is often
    perfect, which would leave the gallery and off-diagonal cells empty)."""
    from imgcls_desktop.core.evaluation import EvaluationReport

    probabilities = report.probabilities.copy()
    for row in range(5):
        wrong = (report.y_true[row] + 1) % 3
        probabilities[row] = (1 - (0.5 + 0.08 * row)) / 2
        probabilities[row, wrong] = 0.5 + 0.08 * row
    matrix = np.zeros_like(report.confusion_matrix)
    np.add.at(matrix, (report.y_true, probabilities.argmax(axis=1)), 1)
    return EvaluationReport(class_names=report.class_names, confusion_matrix=matrix,
                            paths=report.paths, y_true=report.y_true,
                            probabilities=probabilities, split=report.split)


@pytest.fixture
def view(qtbot):
    widget = EvaluationView()
    qtbot.addWidget(widget)
    widget.resize(900, 700)
    widget.show()
    return widget


def test_empty_state_then_report(view, report):
    assert view.objectName() == view.accessibleName() == "evaluationView"
    assert view.stack.currentWidget() is view.empty_label
    assert view.empty_label.text() == EMPTY_TEXT
    assert not view.export_button.isEnabled()

    view.show_report(report)

    assert view.stack.currentIndex() == 1
    assert len(report.y_true) == 24
    assert f"{report.accuracy:.1%}" in view.headline.text()
    assert "24 test images" in view.headline.text()
    assert report.accuracy > 0.6  # well above chance (1/3) for the tiny shapes model
    table = view.table
    assert table.rowCount() == 3
    assert {table.item(row, 0).text() for row in range(3)} == set(report.class_names)
    assert [table.item(row, 4).text() for row in range(3)] == ["8", "8", "8"]
    assert table.isSortingEnabled()

    view.clear()
    assert view.stack.currentWidget() is view.empty_label
    assert view.table.rowCount() == 0


def test_confusion_cells_open_their_images(view, report, qtbot):
    view.show_report(report)
    matrix = view.findChild(ConfusionMatrixView, "confusionMatrix")
    assert matrix is view.confusion_matrix and matrix.accessibleName() == "confusionMatrix"
    view.open_cell_images = lambda t, p: None  # keep the signal test free of dialogs

    for index in range(3):
        with qtbot.waitSignal(matrix.cell_activated) as blocker:
            matrix.activate_cell(index, index)
        assert blocker.args == [index, index]

    del view.open_cell_images
    names = report.class_names
    for true_index in range(3):
        expected = report.cell_items(true_index, true_index)
        dialog = view.open_cell_images(true_index, true_index)
        assert dialog.isVisible() and not dialog.isModal()
        count = len(expected)
        assert dialog.windowTitle() == (f"True {names[true_index]}, predicted {names[true_index]}"
                                        f" — {count} image{'' if count == 1 else 's'}")
        grid = dialog.findChild(type(view.gallery), "cellImages")
        assert grid.paths() == [str(path) for path, _ in expected]
        assert all("%" in grid.item(row).text() for row in range(grid.count()))
        dialog.close()


def test_clicking_a_cell_maps_to_its_indices(view, report, qtbot):
    view.show_report(report)
    matrix = view.confusion_matrix
    matrix.draw()  # lay the axes out so data coordinates map to pixels
    opened = []
    view.open_cell_images = lambda t, p: opened.append((t, p))
    for true_index, predicted_index in [(0, 2), (2, 1), (1, 1)]:
        x, y = matrix.axes.transData.transform((predicted_index, true_index))
        event = MouseEvent("button_press_event", matrix, x, y, button=1)
        with qtbot.waitSignal(matrix.cell_activated) as blocker:
            matrix.callbacks.process("button_press_event", event)
        assert blocker.args == [true_index, predicted_index]
    # A click outside the axes does nothing.
    with qtbot.assertNotEmitted(matrix.cell_activated):
        outside = MouseEvent("button_press_event", matrix, 1, 1, button=1)
        matrix.callbacks.process("button_press_event", outside)
    # The canvas connects clicks to cell_activated, and the view opens the cell.
    assert opened == [(0, 2), (2, 1), (1, 1)]


def test_gallery_lists_the_mistakes(view, report, report_with_mistakes, qtbot):
    view.show_report(report)
    assert view.gallery.count() == len(report.misclassified())
    report = report_with_mistakes
    view.show_report(report)
    mistakes = report.misclassified()
    original_mistakes = int((report.y_pred[5:] != report.y_true[5:]).sum())
    assert len(mistakes) == 5 + original_mistakes
    assert [row["confidence"] for row in mistakes] == sorted((row["confidence"] for row in mistakes),
                                                            reverse=True)
    gallery = view.gallery
    assert gallery.objectName() == gallery.accessibleName() == "misclassifiedGallery"
    assert gallery.count() == len(mistakes)
    assert gallery.paths() == [row["path"] for row in mistakes]
    for row_index, row in enumerate(mistakes):
        assert gallery.item(row_index).text() == (
            f"{row['true']} → {row['predicted']} ({row['confidence']:.0%})")
    opened = []
    view._open_file = opened.append
    gallery.itemActivated.emit(gallery.item(0))
    assert opened == [mistakes[0]["path"]]
    # Thumbnails are decoded in the background, then replace the placeholder icons.
    placeholder = placeholder_pixmap(gallery.thumbnail_size).toImage()
    qtbot.waitUntil(lambda: gallery.item(0).icon().pixmap(96).toImage() != placeholder)

    true_index = report.class_names.index(mistakes[0]["true"])
    predicted_index = report.class_names.index(mistakes[0]["predicted"])
    dialog = view.open_cell_images(true_index, predicted_index)
    assert mistakes[0]["path"] in dialog.findChild(type(gallery), "cellImages").paths()
    dialog.close()


def test_thumbnails_of_odd_and_broken_files(tmp_path, qapp):
    wide = tmp_path / "wide16.png"
    Image.fromarray(np.full((20, 80), 40000, dtype=np.uint16)).save(wide)
    pixmap = thumbnail_pixmap(wide, 64)
    assert (pixmap.width(), pixmap.height()) == (64, 16)
    grey = pixmap.toImage().pixelColor(10, 8)
    assert 150 < grey.red() < 160  # 40000/65535 of white, not clipped to 255
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    assert thumbnail_pixmap(broken, 48).toImage() == placeholder_pixmap(48).toImage()
    assert thumbnail_pixmap(tmp_path / "missing.png", 48).width() == 48
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[..., 0] = 255
    small = pixmap_from_array(array, 40)
    assert (small.width(), small.height()) == (40, 20)
    assert small.toImage().pixelColor(5, 5).red() == 255


def test_export_writes_json_and_csv(view, report, tmp_path):
    view.show_report(report)
    target = tmp_path / "report.json"
    view._ask_save_path = lambda: str(target)
    view.export_button.click()
    document = json.loads(target.read_text(encoding="utf-8"))
    assert document["num_images"] == 24
    assert document["class_names"] == report.class_names
    assert abs(document["accuracy"] - report.accuracy) < 1e-6
    with open(tmp_path / "report_per_class.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["class"] for row in rows] == report.class_names
    assert all(row["support"] == "8" for row in rows)


def test_export_failure_is_reported(view, report, tmp_path, error_dialogs):
    view.show_report(report)
    view._ask_save_path = lambda: str(tmp_path / "missing-folder" / "report.json")
    view.export_button.click()
    assert len(error_dialogs) == 1
    assert "missing-folder" in error_dialogs[0][1]


def test_table_sorts_numerically(view, report):
    view.show_report(report)
    view.table.sortItems(3, Qt.SortOrder.DescendingOrder)
    values = [float(view.table.item(row, 3).text()) for row in range(3)]
    assert values == sorted(values, reverse=True)
