"""``--self-test`` leaves the user's settings and run history exactly as they were (issue 17,
case 9): it ran in the user's data folder, turned a 25-epoch tutorial_cnn setup into
small_cnn with 1 epoch, and added a run and a model to the history.
"""

import io
import json
import os
from pathlib import Path

from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.gui.main_window import MainWindow
from imgcls_desktop.gui.self_test import run_self_test
from imgcls_desktop.resources import user_data_dir


def snapshot(folder):
    """Every file under the user-data folder and its bytes, except the log (which the
    self-test may append to)."""
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(Path(folder).rglob("*"))
            if path.is_file() and "logs" not in path.relative_to(folder).parts}


def test_self_test_leaves_the_users_settings_and_history_byte_identical(qtbot, shapes_split_dataset):
    data = user_data_dir()  # the test's own "user" folder (tests/conftest.py isolates it)
    first = MainWindow()
    qtbot.addWidget(first)
    first.training.set_config(TrainingConfig(preset="tutorial_cnn", epochs=25, seed=7))
    first.close()  # saves the settings, as quitting the app does
    runs = data / "runs"
    runs.mkdir(exist_ok=True)
    (runs / "20260101-000000-abcd.json").write_text('{"a recorded": "run"}', encoding="utf-8")
    (data / "models").mkdir(exist_ok=True)
    (data / "models" / "mine.keras").write_bytes(b"the user's model")
    before = snapshot(data)
    assert "settings.ini" in before and b"tutorial_cnn" in before["settings.ini"]
    environment = (os.environ.get("IMGCLS_DATA_DIR"), os.environ.get("IMGCLS_CACHE_DIR"))

    window = MainWindow()
    qtbot.addWidget(window)
    out = io.StringIO()
    status = run_self_test(window, shapes_split_dataset, out=out)
    summary = json.loads(out.getvalue())
    assert status == 0, summary
    assert summary["ok"]

    assert snapshot(data) == before
    assert (os.environ.get("IMGCLS_DATA_DIR"), os.environ.get("IMGCLS_CACHE_DIR")) == environment
    # And the next start still has the user's own setup.
    again = MainWindow()
    qtbot.addWidget(again)
    config = again.training.config()
    assert (config.preset, config.epochs, config.seed) == ("tutorial_cnn", 25, 7)
