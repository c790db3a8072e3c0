"""PredictionPane: real drops of real files classified by a really trained model."""

import csv

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLabel

from imgcls_desktop.gui.prediction_pane import (
    NO_MODEL_TEXT,
    REMOTE_URL_ERROR,
    TRAINING_TEXT,
    PredictionPane,
    PredictionRow,
)


@pytest.fixture(scope="module")
def loaded(trained):
    from imgcls_desktop.core.model_io import load_model

    return load_model(trained[1])


@pytest.fixture
def good_images(shapes_split_dataset):
    """One test image per class: [(path, class name)]."""
    test = shapes_split_dataset / "test"
    return [(next(iter(sorted((test / name).glob("*.png")))), name)
            for name in sorted(p.name for p in test.iterdir())]


@pytest.fixture
def broken_file(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a PNG")
    return path


@pytest.fixture
def pane(qtbot):
    widget = PredictionPane()
    qtbot.addWidget(widget)
    widget.resize(500, 600)
    widget.show()
    return widget


def _mime(urls=(), text=None):
    mime = QMimeData()
    if urls:
        mime.setUrls(list(urls))
    if text is not None:
        mime.setText(text)
    return mime


def _drag_enter(widget, mime):
    event = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def _drop(widget, mime):
    """A drop as Qt delivers it: a drag enters first, then the drop arrives."""
    _drag_enter(widget, mime)
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


def _rows(pane):
    results = pane.results_list
    return [results.itemWidget(results.item(i)) for i in range(results.count())]


def test_drop_classifies_files_and_reports_bad_ones(pane, loaded, good_images, broken_file, qtbot, tmp_path):
    assert pane.objectName() == pane.accessibleName() == "predictionPane"
    assert pane.results_list.objectName() == pane.results_list.accessibleName() == "predictionResults"
    pane.set_model(loaded)
    paths = [path for path, _ in good_images] + [broken_file]
    mime = _mime(QUrl.fromLocalFile(str(path)) for path in paths)
    assert _drag_enter(pane, mime)

    with qtbot.waitSignal(pane.images_dropped) as dropped, \
            qtbot.waitSignal(pane.predictions_ready, timeout=60000) as ready:
        assert _drop(pane, mime)
    assert dropped.args[0] == [str(path) for path in paths]

    predictions = ready.args[0]
    assert len(predictions) == 4 and pane.results() == predictions
    rows = _rows(pane)
    assert len(rows) == 4 and all(isinstance(row, PredictionRow) for row in rows)
    labelled = [row for row in rows if row.findChild(QLabel, "predictionLabel") is not None]
    errors = [row for row in rows if row.findChild(QLabel, "predictionError") is not None]
    assert len(labelled) == 3 and len(errors) == 1
    assert errors[0].prediction.path == str(broken_file)
    assert "could not classify" in errors[0].findChild(QLabel, "predictionError").text().lower()
    expected = {str(path): name for path, name in good_images}
    right = sum(p.label == expected[p.path] for p in predictions if p.ok)
    assert right == 3  # the trained fixture's config labels every test image right (4 seeds)
    assert all(len(p.top_k) == 3 for p in predictions if p.ok)

    target = tmp_path / "predictions.csv"
    pane._ask_csv_path = lambda: str(target)
    pane.export_button.click()
    with open(target, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["path", "label", "confidence", "top_k", "error", "unknown"]
    assert len(lines) == 5
    assert sum(1 for line in lines[1:] if line[4]) == 1

    pane.clear()
    assert pane.results_list.count() == 0 and pane.results() == []


def test_text_and_http_drops_are_refused(pane, loaded, good_images, qtbot):
    pane.set_model(loaded)
    text_only = _mime(text="/some/path.png")
    assert not _drag_enter(pane, text_only)
    with qtbot.assertNotEmitted(pane.images_dropped):
        assert not _drop(pane, text_only)
        direct = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, text_only,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        pane.dropEvent(direct)  # even handed straight to the handler, it is refused
        assert not direct.isAccepted()
    http_only = _mime([QUrl("https://example.com/cat.jpg")])
    assert not _drag_enter(pane, http_only)
    with qtbot.assertNotEmitted(pane.images_dropped):
        assert not _drop(pane, http_only)
    assert pane.results_list.count() == 0

    # Mixed: the local file is classified, the web address answered with an error line.
    good = good_images[0][0]
    mixed = _mime([QUrl.fromLocalFile(str(good)), QUrl("http://example.com/dog.png")])
    assert _drag_enter(pane, mixed)
    with qtbot.waitSignal(pane.predictions_ready) as first:
        assert _drop(pane, mixed)
    assert [p.error for p in first.args[0]] == [REMOTE_URL_ERROR]
    qtbot.waitUntil(lambda: len(pane.results()) == 2, timeout=60000)
    assert pane.results()[1].path == str(good) and pane.results()[1].ok


def test_no_model_and_training_refuse(pane, loaded, good_images, qtbot):
    mime = _mime([QUrl.fromLocalFile(str(good_images[0][0]))])
    pane.set_model(None)
    assert NO_MODEL_TEXT in pane.status_label.text()
    assert not pane.open_images_button.isEnabled()
    with qtbot.waitSignal(pane.images_dropped):
        assert _drop(pane, mime)  # accepted, and answered with the reason
    assert not pane.is_busy() and pane.results_list.count() == 0
    assert pane.status_label.text() == NO_MODEL_TEXT

    pane.set_model(None, reason="The model file is damaged.")
    assert pane.status_label.text() == "The model file is damaged."

    pane.set_model(loaded)
    pane.set_training_active(True)
    assert pane.status_label.text() == TRAINING_TEXT
    assert not pane.classify_paths([str(good_images[0][0])])
    assert _drop(pane, mime)
    assert pane.status_label.text() == TRAINING_TEXT
    qtbot.waitUntil(lambda: not pane.is_busy(), timeout=60000)  # the warm-up started by set_model
    assert pane.results_list.count() == 0

    pane.set_training_active(False)
    pane._ask_folder = lambda: str(good_images[0][0].parent)
    with qtbot.waitSignal(pane.predictions_ready, timeout=60000) as ready:
        pane.open_folder_button.click()
    assert len(ready.args[0]) == 8 and all(p.ok for p in ready.args[0])
