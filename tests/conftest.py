"""Shared fixtures: offscreen Qt, an isolated user-data folder, tiny learnable datasets."""

import os
import sys
from pathlib import Path

# Before anything imports Qt or Keras.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["KERAS_BACKEND"] = "tensorflow"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import make_shapes_dataset  # noqa: E402

SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cifar10-jpg.tar.gz"


@pytest.fixture(autouse=True)
def _isolated_user_data(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("IMGCLS_DATA_DIR", str(tmp_path_factory.mktemp("userdata")))


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory):
    """3 classes x 24 images, 32x32, flat layout (read-only: copy it before changing it)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), num_classes=3, per_class=24, seed=0)


@pytest.fixture(scope="session")
def shapes_split_dataset(tmp_path_factory):
    """3 classes, train/ (24 each) and test/ (8 each)."""
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes_split"), num_classes=3, per_class=24,
                               layout="split", test_per_class=8, seed=1)


@pytest.fixture(scope="session")
def trained(shapes_split_dataset, tmp_path_factory):
    """A small CNN trained on the split shapes dataset and saved: (TrainingResult, path)."""
    from imgcls_desktop.core.model_io import save_model
    from imgcls_desktop.core.training import TrainingConfig, train

    config = TrainingConfig(preset="small_cnn", epochs=12, batch_size=16, learning_rate=0.05, seed=3)
    result = train(shapes_split_dataset, config)
    path = save_model(result.model, tmp_path_factory.mktemp("model") / "shapes.keras", result.metadata)
    return result, path


@pytest.fixture
def nobody_tmp_path():
    """A temporary folder the unprivileged user of ``unprivileged.run_as_nobody`` owns."""
    import shutil

    from unprivileged import nobody_folder

    folder = nobody_folder()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory):
    """CIFAR-10 unpacked from ../shared (skips cleanly when the archive is absent)."""
    import tarfile

    if not SHARED_CIFAR.exists():
        pytest.skip(f"CIFAR-10 archive not found at {SHARED_CIFAR}")
    target = tmp_path_factory.mktemp("cifar")
    with tarfile.open(SHARED_CIFAR) as archive:
        archive.extractall(target, filter="data")
    return target / "cifar10"


# -- Qt tests: no test may leave a QThread or a background job running ------------------
# (napari's _dangling_qthreads). Tests that do not use Qt never create a QApplication.

@pytest.fixture(autouse=True)
def _no_dangling_threads(request):
    if "qtbot" not in request.fixturenames and "qapp" not in request.fixturenames:
        yield
        return
    import gc

    from imgcls_desktop.gui.garbage import GarbageCollector

    request.getfixturevalue("qapp")
    collector = GarbageCollector()  # as in the app: cyclic garbage freed on the GUI thread only
    yield
    from PySide6.QtCore import QThread

    from imgcls_desktop.gui import training_worker
    from imgcls_desktop.gui.jobs import wait_for_all_jobs

    jobs_done = wait_for_all_jobs(30000)
    running = [t for t in training_worker.live_threads() if isinstance(t, QThread) and t.isRunning()]
    for thread in running:
        thread.wait(30000)
    collector.stop()  # workers are idle now: collecting anywhere is safe again
    gc.collect()
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


@pytest.fixture
def window(qtbot):
    """A MainWindow that closes without asking and leaves no training or job behind."""
    from imgcls_desktop.gui.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window._confirm_close_during_training = lambda: True
    yield window
    if window.training.is_training():
        window.training.request_stop()
        window.training.wait_for_stop(60000)
    window.jobs.wait(60000)
