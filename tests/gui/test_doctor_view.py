"""The dataset doctor in the window: duplicates, leakage, class weights, likely mislabels."""

import shutil

import pytest
from PIL import Image
from PySide6.QtWidgets import QTableWidget

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.doctor import class_weights
from imgcls_desktop.gui.doctor_view import DoctorView
from imgcls_desktop.gui.main_window import TAB_DATASET, TAB_TRAIN

from synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """train/: 25 circles (one an exact copy) and 6 squares; test/: 6 each, one a re-encoded train circle."""
    root = make_shapes_dataset(tmp_path_factory.mktemp("imbalanced"), num_classes=2, per_class=24, seed=2,
                               layout="split", test_per_class=6)
    for path in sorted((root / "train" / "square").iterdir())[6:]:
        path.unlink()
    shutil.copy(root / "train" / "circle" / "circle_001.png", root / "train" / "circle" / "copy.png")
    with Image.open(root / "train" / "circle" / "circle_000.png") as image:
        image.save(root / "test" / "circle" / "leak.jpg", quality=90)
    return root


@pytest.fixture
def view(qtbot):
    widget = DoctorView()
    qtbot.addWidget(widget)
    widget.resize(1100, 700)
    widget.show()
    yield widget
    widget.stop_background_work()


def _texts(table, column):
    return [table.item(row, column).text() for row in range(table.rowCount())]


def test_check_shows_duplicates_leakage_and_weights(qtbot, view, imbalanced, error_dialogs):
    scan = scan_dataset(imbalanced)
    with qtbot.waitSignal(view.report_ready, timeout=30000) as ready:
        view.set_scan(scan)  # a view on screen checks a new dataset by itself
        assert view.is_checking() and not view.check_button.isEnabled()
    balance = view.findChild(QTableWidget, "balanceTable")
    expected = class_weights([25, 6])
    assert _texts(balance, 0) == ["circle", "square"] and _texts(balance, 1) == ["25", "6"]
    assert _texts(balance, 2) == [f"{expected[0]:.2f}", f"{expected[1]:.2f}"]
    assert expected[1] > 1 > expected[0]
    assert "Imbalanced" in view.balance_label.text() and "4.2x" in view.balance_label.text()
    assert view.class_weights_button.isEnabled()

    report = ready.args[0]
    assert view.report() is report and not view.is_checking()
    assert view.check_button.text() == "Check again" and view.check_button.isEnabled()

    duplicates = view.findChild(QTableWidget, "nearDuplicateTable")
    what = _texts(duplicates, 1)
    assert "2 exact copies\nclass circle" in what
    assert any(text.startswith("2 near-duplicates") and text.endswith("class circle\nsplits test, train")
               for text in what)
    groups = len(report["near_duplicates"])
    assert view.duplicates_group.title() == f"Duplicates and near-duplicates ({groups})"
    leakage = view.findChild(QTableWidget, "leakageTable")
    assert leakage.rowCount() == 1
    assert _texts(leakage, 1)[0].startswith("train/circle/circle_000.png\n~ test/circle/leak.jpg\ntest split")
    assert "1 train/test leak(s)" in view.summary_label.text()
    # The strips are drawn from decoded thumbnails: two tiles side by side for the leak.
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=30000)
    strip = leakage.item(0, 0).icon().pixmap(leakage.iconSize())
    assert strip.width() >= 2 * 56 - 8

    opened = []
    view._open_file = opened.append
    leakage.itemDoubleClicked.emit(leakage.item(0, 1))
    assert opened == [str(imbalanced / "train" / "circle" / "circle_000.png")]
    with qtbot.waitSignal(view.report_ready, timeout=30000) as again:
        view.check_button.click()
    assert again.args[0] is view.report() and again.args[0]["leakage"] == report["leakage"]
    assert error_dialogs == []


def test_train_with_class_weights_ticks_the_box_and_trains_weighted(qtbot, window, imbalanced, error_dialogs):
    with qtbot.waitSignal(window.dataset_opened, timeout=30000):
        window.open_dataset(imbalanced)
    with qtbot.waitSignal(window.browser.doctor.report_ready, timeout=30000):
        window.browser.check_button.click()
    assert window.browser.tabs.currentWidget() is window.browser.doctor
    assert not window.training.class_weights_check.isChecked()
    assert window.training.config().class_weights is None

    window.browser.doctor.class_weights_button.click()
    assert window.tabs.currentIndex() == TAB_TRAIN
    assert window.training.class_weights_check.isChecked()
    assert window.training.config().class_weights == "balanced"

    window.training.preset_combo.setCurrentIndex(window.training.preset_combo.findData("tutorial_cnn"))
    # Epochs, not the minutes the folder's recommendation may have set meanwhile.
    window.training.epochs_radio.setChecked(True)
    window.training.epochs_spin.setValue(2)
    window.training.batch_size_spin.setValue(16)
    window.training.set_engine_ready(True)
    assert window.training.config().class_weights == "balanced"  # a preset change keeps it
    with qtbot.waitSignal(window.training.training_succeeded, timeout=120000) as succeeded:
        assert window.training.start_training()
    result = succeeded.args[0]
    assert result.metadata["training"]["config"]["class_weights"] == "balanced"
    assert result.metadata["training"]["num_train_images"] == 31 - 5 - 1  # 20% of each class validates
    qtbot.waitUntil(lambda: window.jobs.active() == 0, timeout=120000)
    assert error_dialogs == []

    # Saved with the other training settings: a new window starts with the box ticked.
    window.close()
    from imgcls_desktop.gui.main_window import MainWindow

    again = MainWindow()
    qtbot.addWidget(again)
    assert again.training.class_weights_check.isChecked()
    again.training.class_weights_check.setChecked(False)
    assert again.training.config().class_weights is None


def test_mislabels_are_listed_and_moved_then_the_window_rescans(qtbot, window, planted_mislabels, tmp_path,
                                                                shared_mislabel_search, error_dialogs):
    # The defaults (3 folds, 10 epochs): the search the core and CLI tests run on the same
    # planted files, run once for all three (shared_mislabel_search).
    root = shutil.copytree(planted_mislabels[0], tmp_path / "planted")
    planted = {str(root / "square" / f"was_circle_{index}.png") for index in range(5)}
    with qtbot.waitSignal(window.dataset_opened, timeout=30000):
        window.open_dataset(root)
    doctor = window.browser.doctor
    window.browser.tabs.setCurrentWidget(doctor)
    assert (doctor.folds_spin.value(), doctor.epochs_spin.value()) == (3, 10)
    formats = []
    progress = doctor.search_row.progress
    progress.valueChanged.connect(lambda _value: formats.append(progress.format()))
    with qtbot.waitSignal(doctor.mislabels_found, timeout=180000) as found:
        doctor.find_button.click()
        assert doctor.is_searching() and not doctor.find_button.isEnabled()
    suspects = found.args[0]
    assert doctor.suspects() == suspects
    assert [suspect.path in planted for suspect in suspects[:5]] == [True] * 5, suspects
    assert formats[0] == "Fold 1/3 · epoch 0/10"
    assert "Fold 1/3 · epoch 10/10" in formats and formats[-1] == "Fold 3/3 · epoch 10/10"
    table = doctor.suspect_table
    assert table.rowCount() == len(suspects)
    assert doctor.mislabels_group.title() == f"Likely mislabels ({len(suspects)})"
    row = next(row for row, suspect in enumerate(suspects) if suspect.path in planted)
    assert [table.item(row, column).text() for column in (2, 3)] == ["square", "circle"]
    assert table.item(row, 1).text().startswith("square/was_circle_")
    assert table.item(row, 4).text() == f"{suspects[row].confidence:.0%}"
    qtbot.waitUntil(lambda: not doctor.is_busy(), timeout=30000)
    assert not table.item(row, 0).icon().isNull()

    # "Move to class 'circle'": the file moves (journaled), the row goes, the window rescans.
    moved = suspects[row].path
    menu = doctor.suspect_menu(row)
    texts = [action.text() for action in menu.actions() if not action.isSeparator()]
    assert texts == ["Move to class 'circle'", "Move to quarantine", "Open image"]
    before = window.scan.counts()["all"]
    with qtbot.waitSignal(window.dataset_opened, timeout=30000) as rescanned:
        menu.actions()[0].trigger()
    counts = rescanned.args[0].counts()["all"]
    assert counts["circle"] == before["circle"] + 1 and counts["square"] == before["square"] - 1
    assert not (root / "square" / moved.split("/")[-1]).exists()
    assert (root / "circle" / moved.split("/")[-1]).exists()
    assert moved not in [suspect.path for suspect in doctor.suspects()]
    assert len(doctor.suspects()) == len(suspects) - 1  # the rescan keeps the rest
    assert window.undo_move_action.isEnabled()

    # "Move to quarantine": out of the dataset, still on disk under .imgcls/quarantine.
    other = doctor.suspects()[0].path
    with qtbot.waitSignal(window.dataset_opened, timeout=30000) as rescanned:
        doctor.suspect_menu(0).actions()[1].trigger()
    relative = other[len(str(root)) + 1:]
    assert (root / ".imgcls" / "quarantine" / relative).exists()
    assert rescanned.args[0].num_images == window.scan.num_images == 179
    assert window.tabs.currentIndex() == TAB_DATASET
    assert error_dialogs == []


def test_cancel_search_and_refuse_while_training(qtbot, view, shapes_dataset, error_dialogs):
    scan = scan_dataset(shapes_dataset)
    view.set_scan(scan)
    failed = []
    view.mislabels_found.connect(failed.append)
    view.epochs_spin.setValue(60)
    view.find_button.click()
    qtbot.waitUntil(lambda: view.search_row.progress.format().startswith("Fold 1/3"), timeout=60000)
    view.search_row.cancel.click()
    assert view.mislabel_label.text() == "Search cancelled." and not view.is_searching()
    qtbot.waitUntil(lambda: not view.is_busy(), timeout=60000)
    assert failed == [] and view.find_button.isEnabled() and error_dialogs == []

    view.set_training_active(True)
    assert not view.find_button.isEnabled() and view.find_mislabels() is None
    assert view.move_suspect(str(shapes_dataset / "circle" / "circle_000.png"), "square") is None
    assert error_dialogs[-1][0] == "Training is running"
    assert (shapes_dataset / "circle" / "circle_000.png").exists()
    view.set_training_active(False)
    assert view.find_button.isEnabled()
