"""The window drives TensorFlow in an engine process: no TF in the window, crashes survived."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_desktop.engine.client import crash_message, shared_client

# The real engine process: what these tests are about (tests/conftest.py serves it on a thread otherwise).
pytestmark = pytest.mark.engine_process

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.timeout(600)
def test_the_window_process_never_imports_tensorflow():
    # A fresh interpreter: this one has TensorFlow from other tests' fixtures.
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=",
         str(Path(__file__).with_name("engine_window_scenario.py"))],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert completed.returncode == 0, completed.stdout[-6000:] + completed.stderr[-3000:]
    assert "1 passed" in completed.stdout


def _ready(window, qtbot, dataset):
    with qtbot.waitSignal(window.dataset_opened, timeout=120000):
        window.start(str(dataset))
    qtbot.waitUntil(lambda: window.versions is not None, timeout=180000)


def test_a_killed_engine_fails_the_job_with_one_message_and_the_next_job_works(
        window, qtbot, shapes_split_dataset, error_dialogs):
    from imgcls_desktop.core.training import TrainingConfig

    _ready(window, qtbot, shapes_split_dataset)
    panel = window.training
    panel.set_config(TrainingConfig(preset="tutorial_cnn", epochs=200, batch_size=8, seed=1,
                                    early_stopping_patience=None))
    with qtbot.waitSignal(panel.training_progressed, timeout=180000,
                          check_params_cb=lambda progress: progress.kind == "batch"):
        assert panel.start_training()
    client = shared_client()
    killed_pid = client.pid
    with qtbot.waitSignal(panel.training_failed, timeout=60000) as failed:
        client.kill()  # SIGKILL, as the out-of-memory killer or a native crash would
    qtbot.waitUntil(lambda: not panel.is_training(), timeout=30000)
    expected = crash_message(-9)
    assert expected == ("The training engine stopped unexpectedly (signal 9); your data and saved "
                        "models are untouched. It restarts on the next job.")
    assert str(failed.args[0]) == expected
    assert [(title, message) for title, message, _details in error_dialogs] == [("Training failed", expected)]
    assert not _alive(killed_pid)
    assert panel.train_button.isEnabled() and window.engine_label.text().startswith("Engine ready")

    # The next job starts a fresh engine, and the whole flow works again.
    panel.set_config(TrainingConfig(preset="tutorial_cnn", epochs=1, batch_size=16, seed=1))
    with qtbot.waitSignal(window.evaluation_finished, timeout=300000):
        assert panel.start_training()
    assert shared_client().pid not in (None, killed_pid)
    assert len(error_dialogs) == 1


def test_closing_the_window_ends_the_engine_process(qtbot, shapes_split_dataset):
    from imgcls_desktop.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    _ready(window, qtbot, shapes_split_dataset)
    pid = shared_client().pid
    assert pid is not None and pid != os.getpid() and _alive(pid)
    window.close()
    assert not _alive(pid)  # asked to stop, waited for: no orphan, no zombie
    assert not shared_client().is_running()
