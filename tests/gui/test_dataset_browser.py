"""DatasetBrowser: background scan with progress and cancel, problems, duplicates, thumbnails."""

import shutil

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QListWidget, QProgressBar, QPushButton, QTableWidget, QTreeWidget

from imgcls_desktop.gui.dataset_browser import DatasetBrowser

from synthetic import make_shapes_dataset

PER_CLASS = 12


@pytest.fixture
def browser(qtbot):
    widget = DatasetBrowser()
    qtbot.addWidget(widget)
    widget.resize(700, 600)
    widget.show()
    yield widget
    widget.stop_background_work()


@pytest.fixture
def messy_dataset(tmp_path):
    """3 classes x PER_CLASS images, plus two bad files, one duplicate across classes and clutter."""
    root = make_shapes_dataset(tmp_path / "messy", num_classes=3, per_class=PER_CLASS, size=32, seed=4)
    (root / "circle" / "empty.jpg").write_bytes(b"")
    (root / "square" / "notes.png").write_text("these are my notes, not a picture")
    shutil.copy(root / "circle" / "circle_000.png", root / "triangle" / "copied_circle.png")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "square" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


@pytest.fixture(scope="module")
def large_dataset(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("large"), num_classes=3, per_class=300, size=16, seed=2)


def _open_and_wait(qtbot, browser, path):
    with qtbot.waitSignal(browser.dataset_loaded, timeout=30000) as blocker:
        browser.open_folder(path)
    return blocker.args[0]


def _wait_idle(qtbot, browser):
    qtbot.waitUntil(lambda: not browser.is_busy(), timeout=30000)


def test_scan_shows_classes_problems_duplicates_and_chart(qtbot, browser, messy_dataset):
    scan = _open_and_wait(qtbot, browser, messy_dataset)

    assert browser.scan() is scan and not browser.is_scanning()
    class_list = browser.findChild(QListWidget, "classList")
    texts = [class_list.item(row).text() for row in range(class_list.count())]
    assert texts == [f"circle ({PER_CLASS})", f"square ({PER_CLASS})", f"triangle ({PER_CLASS + 1})"]
    assert "flat: one folder per class" in browser.header_label.text()
    assert f"{3 * PER_CLASS + 1} usable images" in browser.header_label.text()

    table = browser.findChild(QTableWidget, "problemTable")
    assert table.rowCount() == 2
    rows = {table.item(row, 0).text(): table.item(row, 1).text() for row in range(2)}
    assert rows == {"circle/empty.jpg": "empty file (0 bytes)",
                    "square/notes.png": rows["square/notes.png"]}
    assert "not an image file" in rows["square/notes.png"]

    duplicates = browser.findChild(QTreeWidget, "duplicateList")
    assert duplicates.topLevelItemCount() == 1
    group = duplicates.topLevelItem(0)
    assert sorted(group.child(i).text(0) for i in range(group.childCount())) == [
        "circle/circle_000.png", "triangle/copied_circle.png"]
    tab_texts = [browser.tabs.tabText(i) for i in range(browser.tabs.count())]
    assert "Problems (2)" in tab_texts and "Duplicates (1)" in tab_texts

    assert browser.chart.counts() == {"all": {"circle": PER_CLASS, "square": PER_CLASS, "triangle": PER_CLASS + 1}}
    browser.chart.flush()  # drawn on the chart thread; now, for the test
    assert len(browser.chart.axes.patches) == 3
    # The chart asks for its whole height, so its scroll area shows it without a scroll bar.
    scroll = browser.chart.parentWidget().parentWidget()
    qtbot.waitUntil(lambda: scroll.viewport().height() >= browser.chart.height() >= 150)
    assert browser.chart._image is not None and browser.chart._image.height() == browser.chart.height()
    assert browser.imbalance_label.isHidden()


def test_selecting_a_class_loads_its_thumbnails_and_double_click_opens(qtbot, browser, messy_dataset):
    _open_and_wait(qtbot, browser, messy_dataset)
    opened = []
    browser._open_file = opened.append
    grid = browser.findChild(QListWidget, "thumbnailGrid")

    with qtbot.waitSignal(browser.thumbnails_loaded, timeout=30000) as blocker:
        browser.findChild(QListWidget, "classList").setCurrentRow(1)
    assert blocker.args == ["square"]
    qtbot.waitUntil(lambda: grid.count() == PER_CLASS)
    states = {grid.item(row).data(Qt.ItemDataRole.UserRole + 1) for row in range(grid.count())}
    assert states == {"loaded"}
    assert all("square" in grid.item(row).text() for row in range(grid.count()))
    assert not grid.item(0).icon().pixmap(32, 32).isNull()

    browser.tabs.setCurrentIndex(0)  # the class list and thumbnails sit on the Overview page
    qtbot.waitUntil(lambda: grid.visualItemRect(grid.item(0)).width() > 0)
    rect = grid.visualItemRect(grid.item(0))
    # Qt 6's QTest double-click only counts after a press on the same item.
    qtbot.mouseClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == [str(messy_dataset / "square" / "square_000.png")]

    table = browser.findChild(QTableWidget, "problemTable")
    browser.tabs.setCurrentIndex(1)
    table.itemDoubleClicked.emit(table.item(0, 1))
    assert opened[-1] == str(messy_dataset / "circle" / "empty.jpg")


def test_cancel_keeps_the_previous_dataset(qtbot, browser, messy_dataset, large_dataset):
    first = _open_and_wait(qtbot, browser, messy_dataset)
    loaded = []
    browser.dataset_loaded.connect(loaded.append)

    with qtbot.waitSignal(browser.scan_started):
        browser.open_folder(large_dataset)
    assert browser.is_scanning()
    progress = browser.findChild(QProgressBar, "scanProgress")
    assert progress.isVisible()
    with qtbot.waitSignal(browser.scan_cancelled):
        qtbot.mouseClick(browser.findChild(QPushButton, "scanCancelButton"), Qt.MouseButton.LeftButton)
    _wait_idle(qtbot, browser)

    assert loaded == []
    assert not browser.is_scanning() and not progress.isVisible()
    assert browser.status_label.text() == "Scan cancelled"
    assert browser.scan() is first
    assert browser.findChild(QListWidget, "classList").count() == 3


def test_progress_reports_checked_files(qtbot, browser, large_dataset):
    formats = []
    browser.progress_bar.valueChanged.connect(lambda _value: formats.append(browser.progress_bar.format()))
    _open_and_wait(qtbot, browser, large_dataset)
    assert "Checking 900/900 files" in formats


def test_missing_folder_reports_error_and_browser_stays_usable(qtbot, browser, tmp_path, messy_dataset,
                                                               error_dialogs):
    with qtbot.waitSignal(browser.scan_failed, timeout=30000) as blocker:
        browser.open_folder(tmp_path / "no such folder")
    assert "does not exist" in blocker.args[0]
    assert "does not exist" in browser.status_label.text()
    assert len(error_dialogs) == 1 and "does not exist" in error_dialogs[0][1]
    assert browser.scan() is None and not browser.is_scanning()

    scan = _open_and_wait(qtbot, browser, messy_dataset)
    assert browser.scan() is scan


def test_second_open_supersedes_the_first(qtbot, browser, large_dataset, messy_dataset):
    loaded = []
    browser.dataset_loaded.connect(loaded.append)
    browser.open_folder(large_dataset)
    with qtbot.waitSignal(browser.dataset_loaded, timeout=30000):
        browser.open_folder(messy_dataset)
    _wait_idle(qtbot, browser)

    assert [scan.root for scan in loaded] == [messy_dataset]
    assert browser.scan().root == messy_dataset
    assert browser.findChild(QListWidget, "classList").count() == 3


def test_split_layout_shows_per_split_counts(qtbot, browser, shapes_split_dataset):
    scan = _open_and_wait(qtbot, browser, shapes_split_dataset)

    assert scan.layout == "split"
    assert "split: train/ test/" in browser.header_label.text()
    class_list = browser.findChild(QListWidget, "classList")
    assert class_list.item(0).text() == "circle (train 24, test 8)"
    assert browser.chart.counts() == {"train": dict.fromkeys(scan.class_names, 24),
                                      "test": dict.fromkeys(scan.class_names, 8)}
    browser.chart.flush()
    assert len(browser.chart.axes.patches) == 6

    with qtbot.waitSignal(browser.thumbnails_loaded, timeout=30000):
        class_list.setCurrentRow(0)
    assert browser.findChild(QListWidget, "thumbnailGrid").count() == 24  # training images only


def test_imbalance_warning(qtbot, browser, tmp_path):
    root = make_shapes_dataset(tmp_path / "imbalanced", num_classes=2, per_class=10, size=16, seed=5)
    for path in sorted((root / "square").iterdir())[2:]:
        path.unlink()
    _open_and_wait(qtbot, browser, root)
    assert not browser.imbalance_label.isHidden()
    assert browser.imbalance_label.text().startswith("The largest class has 5.0x the images of the smallest")


def test_check_dataset_button_opens_the_doctor_and_runs_it_once(qtbot, browser, messy_dataset,
                                                                 shapes_split_dataset):
    _open_and_wait(qtbot, browser, messy_dataset)
    doctor = browser.doctor
    assert doctor.report() is None  # hashing waits until someone looks
    reports = []
    doctor.report_ready.connect(reports.append)
    with qtbot.waitSignal(doctor.report_ready, timeout=30000):
        qtbot.mouseClick(browser.findChild(QPushButton, "checkDatasetButton"), Qt.MouseButton.LeftButton)
    assert browser.tabs.currentWidget() is doctor
    table = doctor.findChild(QTableWidget, "nearDuplicateTable")
    texts = [table.item(row, 1).text() for row in range(table.rowCount())]
    assert "2 exact copies\nclasses differ: circle, triangle" in texts
    assert "1 near-duplicate pair(s) filed under different classes" in doctor.summary_label.text()

    browser.tabs.setCurrentIndex(0)
    browser.show_doctor()  # this dataset has its report: no second check
    assert not doctor.is_checking() and len(reports) == 1
    # Another folder while the doctor is shown: its own check starts by itself.
    with qtbot.waitSignal(doctor.report_ready, timeout=30000) as ready:
        _open_and_wait(qtbot, browser, shapes_split_dataset)
    assert ready.args[0]["imbalance"]["split"] == "train" and doctor.scan() is browser.scan()
    _wait_idle(qtbot, browser)
