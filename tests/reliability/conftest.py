"""Fixtures for the reliability suite: every bad input is built here, nothing is downloaded.

GUI tests in this folder get the same guard as tests/gui: a test that leaves a QThread or a
background job running fails (napari's ``_dangling_qthreads``). Tests that do not use Qt
never create a QApplication.
"""

import pytest

from hostile_inputs import save_tiny_model


@pytest.fixture(autouse=True)
def _no_dangling_threads(request):
    if "qtbot" not in request.fixturenames and "qapp" not in request.fixturenames:
        yield
        return
    yield
    from PySide6.QtCore import QThread

    from imgcls_desktop.gui import training_worker
    from imgcls_desktop.gui.jobs import wait_for_all_jobs

    jobs_done = wait_for_all_jobs(30000)
    running = [t for t in training_worker.live_threads() if isinstance(t, QThread) and t.isRunning()]
    for thread in running:
        thread.wait(30000)
    if running or not jobs_done:
        pytest.fail(f"test left {len(running)} QThread(s) running; jobs all ended: {jobs_done}")


@pytest.fixture
def error_dialogs():
    """Collect error dialogs instead of showing them: a list of (title, message, details)."""
    from imgcls_desktop.gui import error_dialog

    shown = []
    error_dialog.set_presenter(lambda *args: shown.append(args))
    yield shown
    error_dialog.set_presenter(None)


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """An untrained 2-class tutorial CNN (32x32) saved by this app: (path, class names)."""
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.keras"
    return save_tiny_model(path, ["alpha", "beta"]), ["alpha", "beta"]


@pytest.fixture
def safe_mode_guard():
    """Asserts, after the test, that Keras' safe mode and dtype policy were left alone."""
    from imgcls_desktop.core.backend import keras_module

    keras = keras_module()
    policy = keras.config.dtype_policy().name
    yield
    from keras.src.saving import serialization_lib

    assert serialization_lib.in_safe_mode() is not False, "unsafe deserialization was enabled"
    assert keras.config.dtype_policy().name == policy
