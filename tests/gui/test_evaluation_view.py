"""EvaluationView and ConfusionMatrixView on a real report of a really trained model."""

import csv
import json

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from PIL import Image
from PySide6.QtCore import Qt

from imgcls_desktop.core.errors import ImageError
from imgcls_desktop.gui.evaluation_view import EMPTY_TEXT, ConfusionMatrixView, EvaluationView
from imgcls_desktop.gui.widgets.thumbnails import decode_thumbnail, placeholder_pixmap, thumbnail_pixmap


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
    # The trained fixture's config scored 24/24 at seeds 1, 2, 3 and 1337: one miss is allowed.
    assert report.accuracy >= 23 / 24
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
    canvas = matrix.canvas()  # the FigureCanvasQTAgg inside (made when first drawn)
    matrix.draw()  # lay the axes out so data coordinates map to pixels
    opened = []
    view.open_cell_images = lambda t, p: opened.append((t, p))
    for true_index, predicted_index in [(0, 2), (2, 1), (1, 1)]:
        x, y = matrix.axes.transData.transform((predicted_index, true_index))
        event = MouseEvent("button_press_event", canvas, x, y, button=1)
        with qtbot.waitSignal(matrix.cell_activated) as blocker:
            canvas.callbacks.process("button_press_event", event)
        assert blocker.args == [true_index, predicted_index]
    # A click outside the axes does nothing.
    with qtbot.assertNotEmitted(matrix.cell_activated):
        outside = MouseEvent("button_press_event", canvas, 1, 1, button=1)
        canvas.callbacks.process("button_press_event", outside)
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
    # decode_thumbnail (the dataset browser's) says why instead of drawing the placeholder.
    with pytest.raises(ImageError) as raised:
        decode_thumbnail(broken, 48)
    assert raised.value.reason
    with pytest.raises(OSError):
        decode_thumbnail(tmp_path / "missing.png", 48)
    decoded = decode_thumbnail(wide, 64)
    assert (decoded.width(), decoded.height()) == (64, 16)


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


def _action(menu, *texts):
    for text in texts[:-1]:
        menu = next(a.menu() for a in menu.actions() if a.text().replace("&", "") == text)
    return next(a for a in menu.actions() if a.text().replace("&", "") == texts[-1])


def test_image_menu_asks_to_move_the_selected_images(view, report_with_mistakes, qtbot):
    report = report_with_mistakes
    view.show_report(report)
    gallery = view.gallery
    mistakes = report.misclassified()
    menu = view.image_menu([mistakes[0]["path"]])
    texts = [action.text().replace("&", "") for action in menu.actions() if not action.isSeparator()]
    assert texts == ["Move to class", "Move to quarantine", "Show heat map", "Open image"]
    class_actions = _action(menu, "Move to class").menu().actions()
    assert [action.text() for action in class_actions] == report.class_names
    assert [action.isEnabled() for action in class_actions] == [name != mistakes[0]["true"]
                                                                for name in report.class_names]
    assert not _action(menu, "Show heat map").isEnabled()  # no model given to the view

    # Two selected images: one request each, through the buttons' class menu.
    gallery.item(0).setSelected(True)
    gallery.item(1).setSelected(True)
    assert view.gallery_actions.move_button.isEnabled()
    view.gallery_actions.class_menu.aboutToShow.emit()
    requests = []
    view.move_requested.connect(lambda path, name: requests.append((path, name)))
    target = next(name for name in report.class_names
                  if name not in (mistakes[0]["true"], mistakes[1]["true"]))
    _action(view.gallery_actions.class_menu, target).trigger()
    assert sorted(requests) == sorted([(mistakes[0]["path"], target), (mistakes[1]["path"], target)])
    requests.clear()
    view.gallery_actions.quarantine_button.click()
    assert sorted(requests) == sorted([(mistakes[0]["path"], ""), (mistakes[1]["path"], "")])
    # Asking moves nothing: the gallery changes only when the window says the file moved.
    assert gallery.count() == len(mistakes)


def test_moved_images_leave_and_come_back_in_place(view, report_with_mistakes, qtbot):
    report = report_with_mistakes
    view.show_report(report)
    paths = view.gallery.paths()
    assert not view.fix_bar.isVisibleTo(view)
    view.mark_moved(paths[1], {"action": "move", "class": "square"})
    view.mark_moved(paths[3], {"action": "quarantine"})
    assert view.gallery.paths() == [paths[0], paths[2], *paths[4:]]
    assert view.moved_count() == 2
    assert view.fix_bar.isVisibleTo(view) and "2 images moved" in view.fix_label.text()
    assert "quarantine" in view.fix_label.text()
    undo = []
    view.undo_requested.connect(lambda: undo.append(True))
    assert not view.undo_button.isEnabled()
    view.set_undo_available(True)
    view.undo_button.click()
    assert undo == [True]
    view.mark_restored(paths[3])
    view.mark_restored(paths[1])
    assert view.gallery.paths() == paths
    assert "Moves undone" in view.fix_label.text()
    retrain = []
    view.retrain_requested.connect(lambda: retrain.append(True))
    view.retrain_button.click()
    assert retrain == [True]
    view.show_report(report)  # a new report starts with nothing moved
    assert not view.fix_bar.isVisibleTo(view) and view.moved_count() == 0


def test_right_click_opens_the_menu_for_the_image_under_the_pointer(view, report_with_mistakes):
    view.show_report(report_with_mistakes)
    gallery = view.gallery
    gallery.setCurrentRow(0)
    shown = []
    view._popup_menu = lambda menu, position: shown.append(menu)
    point = gallery.visualItemRect(gallery.item(2)).center()
    gallery.customContextMenuRequested.emit(point)
    assert [item.data(Qt.ItemDataRole.UserRole) for item in gallery.selectedItems()] == [gallery.paths()[2]]
    [menu] = shown
    requests = []
    view.move_requested.connect(lambda path, name: requests.append((path, name)))
    _action(menu, "Move to quarantine").trigger()
    assert requests == [(gallery.paths()[2], "")]


def test_gallery_label_counts_what_is_left(view, report_with_mistakes):
    view.show_report(report_with_mistakes)
    count = view.gallery.count()
    first = view.gallery.paths()[0]
    view.mark_moved(first, {"action": "quarantine"})
    assert view.gallery_label.text() == f"Misclassified images ({count - 1}; 1 moved away), most confident first"
    view.mark_restored(first)
    assert view.gallery_label.text() == f"Misclassified images ({count}), most confident first"
