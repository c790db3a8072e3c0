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


# -- No test can hang CI ---------------------------------------------------------------
HARD_STOP_GRACE_SECONDS = 60
SLOW_TEST_TIMEOUT_SECONDS = 3600


_hard_stop_stderr = []  # a copy of the terminal's stderr: the test's own is captured


def pytest_configure(config):
    _hard_stop_stderr.append(os.dup(sys.stderr.fileno()))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if (item.get_closest_marker("slow") or item.get_closest_marker("build")) \
                and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_SECONDS))


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item, settings):
    """Back pytest-timeout's signal with a hard stop a signal cannot be blocked from.

    A Python signal handler runs only when the main thread runs Python; blocked inside
    Qt's event loop (a modal dialog, a QEventLoop nobody quits) it never does. faulthandler's
    watchdog is a C thread: it dumps every thread's stack and exits the run.
    """
    import faulthandler

    faulthandler.dump_traceback_later(settings.timeout + HARD_STOP_GRACE_SECONDS, exit=True,
                                      file=_hard_stop_stderr[-1])


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_cancel_timer(item):
    import faulthandler

    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(autouse=True)
def _engine_on_a_thread(request):
    """Window tests talk to an engine served on a thread of the test process.

    Each window that closes shuts its engine down, and a real engine process imports
    TensorFlow again when the next test starts one: seconds of CPU per test. The thread
    serves the same task registry over the same protocol (see ``in_process_engine``). Tests
    marked ``engine_process`` keep the real process (tests/gui/test_engine_window.py: the
    window never imports TensorFlow, a killed engine, no orphan); tests/test_engine.py
    starts its own.
    """
    if request.node.get_closest_marker("engine_process") or "in_process_engine" in request.fixturenames:
        yield
        return
    from imgcls_desktop.engine.client import EngineClient, set_shared_client

    client = EngineClient(in_thread=True)
    previous = set_shared_client(client)
    yield
    set_shared_client(previous)
    client.close(60)


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


@pytest.fixture
def on_disk(monkeypatch):
    """Every decoded set goes to the disk cache, as a 3 GB one would."""
    from imgcls_desktop.core import pipeline

    pipeline.clear_cache()
    monkeypatch.setattr(pipeline, "_MEMORY_LIMIT_BYTES", 0)
    yield
    pipeline.clear_cache()


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


PLANTED_MISLABELS = 5


@pytest.fixture(scope="session")
def planted_mislabels(tmp_path_factory):
    """3 shapes x 60 with 5 circles filed as squares: (root, planted paths). Copy before changing.

    At the search's defaults (3 folds, 10 epochs, seed 1337) every planted circle is found:
    5 of 5, with at most one clean image flagged, at seeds 1, 2, 3 and 1337 (measured
    2026-12-02). At 6 epochs a fold model could stay unsure of red circles against green
    squares: 2 of 5 at seed 1, every run.
    """
    root = make_shapes_dataset(tmp_path_factory.mktemp("planted"), num_classes=3, per_class=60, seed=5)
    planted = []
    for index in range(PLANTED_MISLABELS):
        target = root / "square" / f"was_circle_{index}.png"
        (root / "circle" / f"circle_{index:03d}.png").rename(target)
        planted.append(str(target))
    return root, planted


_mislabel_searches = {}  # one real search per dataset content and settings, for the session


@pytest.fixture
def in_process_engine():
    """The window's engine served on a thread of the test process, for this test.

    The window normally runs TensorFlow in an engine process, where a test's monkeypatches
    of core cannot reach. This serves the same task registry over the same protocol on a
    thread instead, so patched core functions apply. Yields the ``EngineClient``.
    """
    from imgcls_desktop.engine.client import EngineClient, set_shared_client

    client = EngineClient(in_thread=True)
    previous = set_shared_client(client)
    yield client
    set_shared_client(previous)
    client.close(60)


@pytest.fixture
def shared_mislabel_search(monkeypatch, in_process_engine):
    """``find_mislabels``, run for real once per dataset content and settings in the session.

    The core test, ``imgcls doctor --mislabels`` and the window's doctor search the same
    planted dataset (or a copy of it) with the same settings: a minute of training each.
    The first call runs the real search and records its progress calls; later calls on a
    dataset with the same files (by path relative to the root, and size) replay that
    progress and return the same suspects under their own root. Patched where the CLI and
    the window look it up; also returned.
    """
    import dataclasses
    import inspect
    from pathlib import Path

    from imgcls_desktop.core import mislabels

    real = getattr(mislabels.find_mislabels, "real", mislabels.find_mislabels)

    def search(scan, on_progress=None, stop_event=None, **settings):
        root = Path(scan.root)
        files = tuple(sorted((Path(item.path).relative_to(root).as_posix(), Path(item.path).stat().st_size)
                             for item in scan.splits[scan.training_split_name()]))
        bound = inspect.signature(real).bind(scan, **settings)
        bound.apply_defaults()  # the same search whether its settings were spelt out or not
        key = (files, tuple((name, value) for name, value in bound.arguments.items() if name != "scan"))
        if key not in _mislabel_searches:
            calls = []

            def record(done, total):
                calls.append((done, total))
                if on_progress is not None:
                    on_progress(done, total)

            suspects = real(scan, on_progress=record, stop_event=stop_event, **settings)
            _mislabel_searches[key] = (calls, [
                dataclasses.replace(suspect, path=Path(suspect.path).relative_to(root).as_posix())
                for suspect in suspects])
            return suspects
        calls, suspects = _mislabel_searches[key]
        for done, total in calls:
            if stop_event is not None and stop_event.is_set():
                raise mislabels.Cancelled("mislabel search cancelled")
            if on_progress is not None:
                on_progress(done, total)
        return [dataclasses.replace(suspect, path=str(root / suspect.path)) for suspect in suspects]

    search.real = real
    monkeypatch.setattr(mislabels, "find_mislabels", search)
    return search


@pytest.fixture(scope="session")
def object_model(tmp_path_factory):
    """A model that tells the colour of a square on noise (``objects.py``), for Grad-CAM."""
    from imgcls_desktop.core.model_io import from_training, save_model
    from imgcls_desktop.core.training import TrainingConfig, train

    from objects import make_object_dataset

    root = make_object_dataset(tmp_path_factory.mktemp("objects"), per_class=80, seed=11)
    config = TrainingConfig(preset="tutorial_cnn", epochs=15, batch_size=16, learning_rate=2e-3,
                            seed=5, early_stopping_patience=None)
    result = train(root, config)
    # Saved too: the window's engine loads models by path.
    path = save_model(result.model, tmp_path_factory.mktemp("object_model") / "objects.keras", result.metadata)
    return from_training(result, path=path)


@pytest.fixture
def batch_clock(monkeypatch, in_process_engine):
    """Training's clock, moved on ``seconds_per_batch`` (default 1.0) at each batch.

    A time-budget run then stops after the same batch on any machine, however busy. The
    job's clock stands still everywhere else (decoding, validation), and the save is
    planned to take no time, so a budget of ``AFTER_FIT_FIXED_SECONDS + 4`` is exactly 4
    batches; a test moves ``now`` itself to stand for time spent elsewhere.
    """
    import time

    from imgcls_desktop.core import fit_loop, job_clock, training

    class BatchClock:
        now = 0.0
        seconds_per_batch = 1.0

        def monotonic(self):
            return self.now

        def __getattr__(self, name):
            return getattr(time, name)

    clock = BatchClock()
    real_batch_ended = fit_loop.FitRun.batch_ended

    def batch_ended(run, batch, logs):
        clock.now += clock.seconds_per_batch
        return real_batch_ended(run, batch, logs)

    # The window stamps the moment Train was pressed on the same clock (the engine is in
    # this process under in_process_engine).
    window_modules = [sys.modules[name] for name in ("imgcls_desktop.gui.training_panel",
                                                     "imgcls_desktop.gui.training_worker") if name in sys.modules]
    for module in (training, fit_loop, job_clock, *window_modules):
        monkeypatch.setattr(module, "time", clock)
    monkeypatch.setattr(training, "save_seconds", lambda parameters: 0.0)
    monkeypatch.setattr(fit_loop.FitRun, "batch_ended", batch_ended)
    return clock


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


# -- Qt tests: an error dialog is a failure, never a hang --------------------------------
# Offscreen, a modal QMessageBox.exec() waits forever for a click that never comes. A test
# that expects errors asks for ``error_dialogs``; in any other Qt test a dialog (ours, or
# any modal QMessageBox) is recorded, whatever qtbot is waiting for stops waiting, and the
# test fails naming the dialog.

def _dialog_failure(shown):
    lines = [f"  {title}: {message}" + (f"\n{details}" if details else "") for title, message, details in shown]
    return ("an error dialog was shown (ask for the error_dialogs fixture if the test expects it):\n"
            + "\n".join(lines))


@pytest.fixture(autouse=True)
def _error_dialogs_fail_the_test(request, monkeypatch):
    if not {"qtbot", "qapp", "window", "error_dialogs"} & set(request.fixturenames):
        yield
        return
    from PySide6.QtWidgets import QDialog, QMessageBox
    from pytestqt import qtbot as qtbot_module, wait_signal

    from imgcls_desktop.gui.widgets import error_dialog

    shown = []
    waiting = []  # the blockers whose event loops are running, innermost last

    def record(title, message, details=""):
        shown.append((title, message, details))
        for blocker in waiting:  # stop waiting for a signal that will not come
            loop = getattr(blocker, "_loop", None)
            if loop is not None:
                loop.quit()

    def modal(box, *args, **kwargs):
        record(box.windowTitle() or type(box).__name__,
               box.text() if isinstance(box, QMessageBox) else "(a modal dialog)",
               box.detailedText() if isinstance(box, QMessageBox) else "")
        return QMessageBox.StandardButton.NoButton

    def static_box(kind):
        def show(parent, title, text, *args, **kwargs):
            record(f"QMessageBox.{kind}: {title}", text)
            return QMessageBox.StandardButton.NoButton
        return staticmethod(show)

    reported = []

    def fail_if_shown():
        if shown and not reported:
            reported.append(True)
            pytest.fail(_dialog_failure(shown), pytrace=False)

    def failing_wait(original):
        def wait(self, *args, **kwargs):
            waiting.append(self)
            try:
                result = original(self, *args, **kwargs)
            except Exception:
                fail_if_shown()  # the dialog, not the timeout it caused, is the failure
                raise
            finally:
                waiting.remove(self)
            fail_if_shown()
            return result
        return wait

    real_wait_until = qtbot_module.QtBot.waitUntil

    def wait_until(self, callback, **kwargs):
        def checked():
            fail_if_shown()
            return callback()
        return real_wait_until(self, checked, **kwargs)

    error_dialog.set_presenter(record)
    monkeypatch.setattr(QMessageBox, "exec", modal)
    monkeypatch.setattr(QDialog, "exec", modal)
    for kind in ("question", "warning", "critical", "information"):
        monkeypatch.setattr(QMessageBox, kind, static_box(kind))
    for blocker in (wait_signal.SignalBlocker, wait_signal.MultiSignalBlocker, wait_signal.CallbackBlocker):
        monkeypatch.setattr(blocker, "wait", failing_wait(blocker.wait))
    monkeypatch.setattr(qtbot_module.QtBot, "waitUntil", wait_until)
    yield shown
    error_dialog.set_presenter(None)
    fail_if_shown()  # shown while nothing was waiting


@pytest.fixture
def error_dialogs():
    """Collect error dialogs instead of showing them: a list of (title, message, details)."""
    from imgcls_desktop.gui.widgets import error_dialog

    shown = []
    error_dialog.set_presenter(lambda *args: shown.append(args))
    yield shown
    error_dialog.set_presenter(None)


@pytest.fixture
def window(qtbot):
    """A MainWindow that closes without asking and leaves no training or job behind."""
    from imgcls_desktop.gui.main_window import MainWindow

    window = MainWindow()
    window.keeps_engine_running = True  # one engine process for the test session
    qtbot.addWidget(window)
    window._confirm_close_during_training = lambda: True
    yield window
    if window.training.is_training():
        window.training.request_stop()
        window.training.wait_for_stop(60000)
    window.jobs.wait(60000)
