"""Fixing the data from the window: move and quarantine from the gallery and a cell's images,
undo (Edit ▸ Undo move and the bar), one-click retrain, heat maps; all on real files."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.gui.evaluation_view import EvaluationView, HeatMapDialog, ImageActions


@pytest.fixture(scope="module")
def base_report(trained, shapes_split_dataset):
    from imgcls_desktop.core.evaluation import evaluate_folder
    from imgcls_desktop.core.model_io import load_model

    return evaluate_folder(load_model(trained[1]), shapes_split_dataset)


def report_for(base_report, source_root, root):
    """The real report, pointed at a copy of its dataset, with its first four answers made
    wrong (the tiny model is often perfect, which would leave the gallery empty)."""
    from imgcls_desktop.core.evaluation import EvaluationReport

    probabilities = base_report.probabilities.copy()
    for row in range(4):
        wrong = (base_report.y_true[row] + 1) % 3
        probabilities[row] = 0.1
        probabilities[row, wrong] = 0.8
    matrix = np.zeros_like(base_report.confusion_matrix)
    np.add.at(matrix, (base_report.y_true, probabilities.argmax(axis=1)), 1)
    paths = [str(root / Path(path).relative_to(source_root)) for path in base_report.paths]
    return EvaluationReport(class_names=base_report.class_names, confusion_matrix=matrix, paths=paths,
                            y_true=base_report.y_true, probabilities=probabilities, split=base_report.split)


@pytest.fixture
def copy(tmp_path, shapes_split_dataset):
    return Path(shutil.copytree(shapes_split_dataset, tmp_path / "data"))


@pytest.fixture
def opened(qtbot, window, copy, base_report, shapes_split_dataset, error_dialogs):
    """The window on a copy of the dataset, engine loaded, the report shown."""
    with qtbot.waitSignals([window.engine_ready, window.dataset_opened], timeout=120000):
        window.start(copy)
    report = report_for(base_report, shapes_split_dataset, copy)
    window.evaluation.show_report(report)
    return window, report


def menu_action(menu, *texts):
    for text in texts[:-1]:
        menu = next(action.menu() for action in menu.actions() if action.text().replace("&", "") == text)
    return next(action for action in menu.actions() if action.text().replace("&", "") == texts[-1])


def test_move_and_quarantine_from_the_gallery_then_undo(qtbot, opened, copy, error_dialogs):
    window, report = opened
    view = window.evaluation
    assert not window.undo_move_action.isEnabled()
    first, second = view.gallery.paths()[:2]
    mistakes = {row["path"]: row for row in report.misclassified()}
    true_class, predicted = mistakes[first]["true"], mistakes[first]["predicted"]
    before = window.scan.counts()["test"]

    # Right-click menu: Move to class ▸ <the predicted class>.
    menu = view.image_menu([first])
    assert not menu_action(menu, "Move to class", true_class).isEnabled()  # it is there already
    with qtbot.waitSignal(window.dataset_opened, timeout=60000) as rescanned:
        menu_action(menu, "Move to class", predicted).trigger()
    moved = copy / "test" / predicted / Path(first).name
    assert moved.is_file() and not Path(first).exists()
    assert first not in view.gallery.paths()
    assert view.fix_bar.isVisibleTo(view) and "1 image moved" in view.fix_label.text()
    after = rescanned.args[0].counts()["test"]
    assert after[predicted] == before[predicted] + 1 and after[true_class] == before[true_class] - 1
    assert window.browser.scan() is rescanned.args[0]  # the dataset browser shows the new counts
    assert window.undo_move_action.isEnabled() and view.undo_button.isEnabled()

    # The buttons act on the selected image: Move to quarantine.
    view.gallery.setCurrentRow(view.gallery.paths().index(second))
    with qtbot.waitSignal(window.dataset_opened, timeout=60000) as rescanned:
        view.gallery_actions.quarantine_button.click()
    kept = copy / ".imgcls" / "quarantine" / Path(second).relative_to(copy)
    assert kept.is_file() and not Path(second).exists()
    assert rescanned.args[0].num_images == 95 and rescanned.args[0].problems == []
    assert "2 images moved" in view.fix_label.text()

    # Edit ▸ Undo move puts the quarantined image back, in the gallery too.
    with qtbot.waitSignal(window.dataset_opened, timeout=60000) as rescanned:
        window.undo_move_action.trigger()
    assert Path(second).is_file() and not kept.exists()
    assert second in view.gallery.paths() and rescanned.args[0].num_images == 96
    # The bar's Undo puts the first one back.
    with qtbot.waitSignal(window.dataset_opened, timeout=60000) as rescanned:
        view.undo_button.click()
    assert Path(first).is_file() and not moved.exists()
    assert view.gallery.paths()[:2] == [first, second]
    assert rescanned.args[0].counts()["test"] == before
    assert not window.undo_move_action.isEnabled() and not view.undo_button.isEnabled()
    assert error_dialogs == []


def test_move_from_a_confusion_cell_window(qtbot, opened, copy, error_dialogs):
    window, report = opened
    view = window.evaluation
    wrong = report.misclassified()[0]
    true_index = report.class_names.index(wrong["true"])
    predicted_index = report.class_names.index(wrong["predicted"])
    dialog = view.open_cell_images(true_index, predicted_index)
    grid = dialog.findChild(type(view.gallery), "cellImages")
    actions = dialog.findChild(ImageActions)
    assert wrong["path"] in grid.paths()
    assert not actions.move_button.isEnabled()  # nothing selected yet
    grid.setCurrentRow(grid.paths().index(wrong["path"]))
    assert actions.move_button.isEnabled() and actions.quarantine_button.isEnabled()
    actions.class_menu.aboutToShow.emit()  # what opening the button's menu does
    with qtbot.waitSignal(window.dataset_opened, timeout=60000):
        menu_action(actions.class_menu, wrong["predicted"]).trigger()
    assert (copy / "test" / wrong["predicted"] / Path(wrong["path"]).name).is_file()
    assert wrong["path"] not in grid.paths() and wrong["path"] not in view.gallery.paths()
    dialog.close()
    # A cell window opened later no longer lists the moved image.
    again = view.open_cell_images(true_index, predicted_index)
    assert wrong["path"] not in again.findChild(type(view.gallery), "cellImages").paths()
    again.close()
    assert error_dialogs == []


def test_retrain_on_the_corrected_folder_in_one_click(qtbot, opened, copy, error_dialogs):
    window, report = opened
    view = window.evaluation
    window.training.set_config(TrainingConfig(preset="tutorial_cnn", epochs=50, batch_size=16, seed=1))
    path = view.gallery.paths()[0]
    with qtbot.waitSignal(window.dataset_opened, timeout=60000):
        view.request_move([path], "")
    assert view.retrain_button.isVisibleTo(view)
    with qtbot.waitSignal(window.training.training_started, timeout=60000):
        view.retrain_button.click()
    assert window.training.is_training()
    assert window.tabs.currentWidget() is window.training
    # Training runs on the rescanned folder: the quarantined image is not in it.
    trained_on = window.training.controller.worker.scan
    assert trained_on.num_images == 95
    assert all(str(item.path) != path for items in trained_on.splits.values() for item in items)
    # Files stay put while a model trains on them.
    other = view.gallery.paths()[0]
    assert window.move_image(other, "") is None
    assert Path(other).is_file() and "stop it" in error_dialogs[-1][1]
    window.training.request_stop()
    assert window.training.wait_for_stop(60000)


def test_a_failed_move_says_why_and_keeps_the_image_listed(qtbot, opened, copy, error_dialogs):
    window, _report = opened
    view = window.evaluation
    path = view.gallery.paths()[0]
    Path(path).unlink()  # gone behind the window's back
    view.request_move([path], "square" if "/square/" not in path else "circle")
    assert len(error_dialogs) == 1
    title, message, _details = error_dialogs[0]
    assert title == "Could not move the image" and path in message and "file not found" in message
    assert path in view.gallery.paths() and not view.fix_bar.isVisibleTo(view)


def test_heat_map_of_a_gallery_image(qtbot, trained, base_report, shapes_split_dataset, error_dialogs):
    from imgcls_desktop.core.model_io import load_model

    view = EvaluationView()
    qtbot.addWidget(view)
    view.show_report(report_for(base_report, shapes_split_dataset, shapes_split_dataset))
    view.gallery.setCurrentRow(0)
    assert not view.gallery_actions.heat_button.isEnabled()  # no model yet
    view.set_model(load_model(trained[1]))
    assert view.gallery_actions.heat_button.isEnabled()
    path = view.gallery.paths()[0]
    with qtbot.waitSignal(view.heat_map_shown, timeout=60000) as shown:
        menu_action(view.image_menu([path]), "Show heat map").trigger()
    assert shown.args == [path]
    dialog = view.findChild(HeatMapDialog, "heatMapDialog")
    assert dialog.isVisible() and not dialog.isModal()
    picture = dialog.picture.pixmap().toImage()
    assert picture.width() == 320 and picture.height() == 320
    # An overlay, not the plain image: the heat colours differ from the original's pixels.
    original = dialog.original.pixmap().toImage()
    assert any(picture.pixelColor(x, y) != original.pixelColor(x, y) for x in range(0, 320, 40)
               for y in range(0, 320, 40))
    assert any(name in dialog.caption.text() for name in base_report.class_names)
    dialog.close()
    assert error_dialogs == []
