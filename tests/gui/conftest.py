"""GUI test fixtures: no test may leave a QThread running (napari's _dangling_qthreads)."""

import pytest


@pytest.fixture(autouse=True)
def _no_dangling_qthreads(qapp):
    from PySide6.QtCore import QThread, QThreadPool

    yield
    from imgcls_desktop.gui.jobs import wait_for_all_jobs

    wait_for_all_jobs(30000)
    from imgcls_desktop.gui import training_worker

    running = [t for t in training_worker.live_threads() if isinstance(t, QThread) and t.isRunning()]
    if running:
        for thread in running:
            thread.wait(30000)
        pytest.fail(f"test left {len(running)} QThread(s) running")


@pytest.fixture
def error_dialogs():
    """Collect error dialogs instead of showing them: a list of (title, message, details)."""
    from imgcls_desktop.gui import error_dialog

    shown = []
    error_dialog.set_presenter(lambda *args: shown.append(args))
    yield shown
    error_dialog.set_presenter(None)
