"""``imgcls-desktop --self-test``: the real flow through the real widgets and signals.

Open the dataset, train one short epoch, evaluate, classify a few images by a simulated
drop, print one JSON summary. The packaged build uses it as its smoke test.

It runs in a temporary user-data folder (settings, run history, models, decode cache),
removed afterwards: a self-test must not change the user's saved settings or add a run
and a model to their history. Only its log lines go to the user's log.
"""

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from PySide6.QtCore import QEventLoop, QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QPushButton

from .widgets import error_dialog

log = logging.getLogger("imgcls")


class SelfTestFailed(Exception):
    pass


def wait_for(signal, timeout_s, what):
    """Run the event loop until ``signal`` fires; return its arguments."""
    loop = QEventLoop()
    received = []

    def on_signal(*args):
        received.append(args)
        loop.quit()

    signal.connect(on_signal)
    timer = QTimer()
    timer.setSingleShot(True)
    timer.timeout.connect(loop.quit)
    timer.start(int(timeout_s * 1000))
    loop.exec()
    signal.disconnect(on_signal)
    if not received:
        raise SelfTestFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
    return received[0]


def drop_files(widget, paths):
    """Deliver a real drag-enter and drop with local file URLs, as a file manager would.

    Qt only delivers a drop to a widget that accepted the drag entering it first.
    """
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    with warnings.catch_warnings():
        # PySide marks the QPoint constructor deprecated, yet it is the one Qt 6 has.
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    return event.isAccepted()


@contextlib.contextmanager
def isolated_user_data():
    """Point the user-data folder (and the decode cache) at a fresh temporary folder.

    Every reader of settings, runs and models asks ``resources.user_data_dir()`` each time,
    so the window built before this still writes here. Restored, and the folder removed,
    on the way out.
    """
    names = ("IMGCLS_DATA_DIR", "IMGCLS_CACHE_DIR")
    previous = {name: os.environ.get(name) for name in names}
    folder = Path(tempfile.mkdtemp(prefix="imgcls-self-test-"))
    os.environ["IMGCLS_DATA_DIR"] = str(folder)
    os.environ["IMGCLS_CACHE_DIR"] = str(folder / "decoded")
    try:
        yield folder
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


def run_self_test(window, dataset=None, epochs=1, out=None):
    """Returns the process exit status: 0 when every step worked.

    The window is closed at the end (its settings go to the temporary folder too).
    """
    with isolated_user_data():
        return _run_self_test(window, dataset, epochs, out)


def _run_self_test(window, dataset, epochs, out):
    from ..core.training import TrainingConfig
    from ..resources import sample_dataset_path

    out = out if out is not None else sys.stdout
    errors = []
    error_dialog.set_presenter(lambda title, message, details: errors.append(f"{title}: {message}"))
    started = time.perf_counter()
    try:
        window.start(dataset or sample_dataset_path())
        if window.versions is None:
            wait_for(window.engine_ready, 180, "the engine to load")
        if window.scan is None:
            wait_for(window.dataset_opened, 180, "the dataset scan")
        scan = window.scan
        panel = window.training
        panel.set_config(TrainingConfig(preset="small_cnn", epochs=epochs, seed=1))
        window.findChild(QPushButton, "trainButton").click()
        if not panel.is_training():
            raise SelfTestFailed("pressing Train did not start training: " + "; ".join(errors))
        report = wait_for(window.evaluation_finished, 1800, "training and evaluation")[0]
        if errors:
            raise SelfTestFailed("; ".join(errors))
        eval_split = scan.evaluation_split_name() or scan.training_split_name()
        files = [item.path for item in scan.splits[eval_split][::max(1, len(scan.splits[eval_split]) // 4)][:4]]
        drop_files(window.prediction, files)
        predictions = wait_for(window.prediction.predictions_ready, 120, "predictions")[0]
        if errors:
            raise SelfTestFailed("; ".join(errors))
        summary = {
            "ok": True,
            "dataset": str(scan.root),
            "classes": scan.class_names,
            "epochs": epochs,
            "accuracy": round(report.accuracy, 4),
            "evaluated_on": f"{len(report.y_true)} {report.split} images",
            "predictions": [p.to_dict() for p in predictions],
            "seconds": round(time.perf_counter() - started, 1),
        }
        status = 0 if predictions and all(p.ok for p in predictions) else 1
    except Exception as exc:  # the self-test must always end with a verdict
        log.exception("self-test failed")
        summary = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                   "seconds": round(time.perf_counter() - started, 1)}
        status = 1
    finally:
        error_dialog.set_presenter(None)
    text = json.dumps(summary, indent=1)
    log.info("self-test result: %s", text)
    if out is not None:
        print(text, file=out, flush=True)
    window.close()
    return status
