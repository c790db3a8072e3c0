"""No test can hang: an error dialog fails its test at once, and a timeout stops the rest.

Offscreen, a modal dialog waits for a click that never comes. These tests run small test
files in a child pytest with this suite's conftest and check that they fail quickly,
naming the dialog or the hung test, rather than hanging (the child is killed after
``CHILD_TIMEOUT`` seconds, which fails the test here).
"""

import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 180  # a child that hangs is killed and fails this test

WORKER_RAISES = '''
import pytest
from imgcls_desktop.gui import dataset_browser
from synthetic import make_shapes_dataset


def _broken_scan(*args, **kwargs):
    raise RuntimeError("planted scan failure")


def test_scan_that_raises(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_browser, "scan_dataset", _broken_scan)
    browser = dataset_browser.DatasetBrowser()
    qtbot.addWidget(browser)
    # Never emitted: the job fails. Before the fixture this blocked in QMessageBox.exec().
    with qtbot.waitSignal(browser.dataset_loaded, timeout=600000):
        browser.open_folder(make_shapes_dataset(tmp_path / "d", num_classes=2, per_class=2))


def test_wait_until_stops_too(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset_browser, "scan_dataset", _broken_scan)
    browser = dataset_browser.DatasetBrowser()
    qtbot.addWidget(browser)
    browser.open_folder(make_shapes_dataset(tmp_path / "d", num_classes=2, per_class=2))
    qtbot.waitUntil(lambda: browser.scan() is not None, timeout=600000)


def test_modal_message_box_in_a_slot(qtbot):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QMessageBox, QWidget

    widget = QWidget()
    qtbot.addWidget(widget)
    QTimer.singleShot(0, lambda: QMessageBox.question(widget, "Really?", "planted question"))
    qtbot.wait(50)


def test_expected_dialog_is_collected(qtbot, tmp_path, monkeypatch, error_dialogs):
    monkeypatch.setattr(dataset_browser, "scan_dataset", _broken_scan)
    browser = dataset_browser.DatasetBrowser()
    qtbot.addWidget(browser)
    with qtbot.waitSignal(browser.scan_failed, timeout=60000):
        browser.open_folder(make_shapes_dataset(tmp_path / "d", num_classes=2, per_class=2))
    assert [title for title, _message, _details in error_dialogs] == ["Cannot read the dataset"]
'''


@pytest.fixture
def child(pytester):
    pytester.makeconftest((TESTS / "conftest.py").read_text())
    for helper in ("synthetic.py", "unprivileged.py"):
        shutil.copy(TESTS / helper, pytester.path / helper)
    pytester.makepyfile(test_child=WORKER_RAISES)
    return pytester


def test_dialogs_fail_the_test_that_did_not_expect_them(child, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # the summary lines whole
    result = child.runpytest_subprocess("-p", "no:cacheprovider", "-q", "-rf",
                                        timeout=CHILD_TIMEOUT)
    result.assert_outcomes(passed=1, failed=3)  # failed in the test itself, not in teardown
    output = result.stdout.str()
    for name in ("test_scan_that_raises", "test_wait_until_stops_too", "test_modal_message_box_in_a_slot"):
        assert f"FAILED test_child.py::{name} - Failed: an error dialog was shown" in output, output
    assert "Cannot read the dataset: Something went wrong: RuntimeError: planted scan failure" in output
    assert "QMessageBox.question: Really?: planted question" in output
    assert "TimeoutError" not in output  # stopped by the dialog, not by the 600 s wait running out


HANGS = """
import time

import pytest


@pytest.mark.timeout(1)
def test_python_loop_hangs():
    while True:
        time.sleep(0.05)


def test_next_one_still_runs():
    pass


@pytest.mark.timeout(1)
def test_qt_event_loop_hangs(qapp):
    from PySide6.QtCore import QEventLoop

    QEventLoop().exec()  # nobody quits it: no Python runs, so no signal handler either
"""


def test_a_hung_test_fails_or_stops_the_run(pytester):
    conftest = (TESTS / "conftest.py").read_text()
    assert "HARD_STOP_GRACE_SECONDS = 60" in conftest
    pytester.makeconftest(conftest.replace("HARD_STOP_GRACE_SECONDS = 60", "HARD_STOP_GRACE_SECONDS = 1"))
    for helper in ("synthetic.py", "unprivileged.py"):
        shutil.copy(TESTS / helper, pytester.path / helper)
    pytester.makepyfile(test_child=HANGS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-o", "timeout_method=signal",
                                           timeout=CHILD_TIMEOUT)
    output = result.stdout.str()
    # The signal: that test fails, the run goes on.
    assert "test_child.py::test_python_loop_hangs FAILED" in output, output
    assert "test_child.py::test_next_one_still_runs PASSED" in output
    # The hard stop: every thread's stack on the terminal, the run ended with an error.
    hung_line = (pytester.path / "test_child.py").read_text().splitlines().index(
        "    QEventLoop().exec()  # nobody quits it: no Python runs, so no signal handler either") + 1
    assert result.ret != 0
    assert "Timeout (0:00:02)!" in result.stderr.str()
    assert f'test_child.py", line {hung_line} in test_qt_event_loop_hangs' in result.stderr.str()
