"""Training driven from its own QThread, reporting through signals.

``core.training.train`` runs in the engine process (``imgcls_desktop.engine``), which
saves the trained model to the user's data folder and answers with its file and
metadata. :class:`TrainingWorker` owns that conversation from a QThread: it sends the
request, turns the streamed progress events into signals and a set stop event into a
cancel message. :class:`TrainingController` owns the thread, so widgets only ever see
GUI-thread signals.

Wiring (architecture doc): ``thread.started -> worker.run``, ``worker.finished ->
thread.quit``, ``thread.finished -> deleteLater`` for both. Python references live in a
module-level registry until ``thread.finished`` has been handled, so nothing is collected
while it runs, even when the widget that started it is gone. ``terminate()`` is never used.
"""

import threading
import time
import traceback

import shiboken6
from PySide6.QtCore import QEventLoop, QObject, Qt, QThread, QTimer, Signal, Slot

from ..resources import user_data_dir
from . import engine
from .session import ModelHandle

# thread -> worker, for every thread this module started and has not cleaned up yet.
_live = {}
_reaper = None


def live_threads():
    """QThreads started here that have not been cleaned up (the test fixture checks them)."""
    for thread in [t for t in _live if not shiboken6.isValid(t)]:
        _live.pop(thread, None)
    return list(_live)


class _Reaper(QObject):
    """Drops a finished thread from the registry; outlives any widget that started one."""

    @Slot()
    def forget(self):
        thread = self.sender()
        if thread is not None and shiboken6.isValid(thread):
            thread.wait()  # finished is emitted just before the thread really ends
        _live.pop(thread, None)


def _get_reaper():
    global _reaper
    if _reaper is None:
        _reaper = _Reaper()
    return _reaper


class TrainingWorker(QObject):
    """Runs one ``core.training.train`` call; lives on a QThread.

    Args:
        scan: a ``core.dataset.DatasetScan`` (or a dataset folder path).
        config: a ``core.training.TrainingConfig``.

    Signals:
        progressed(TrainingProgress): throttled: batch events at most ``max_events_per_second``.
        succeeded(TrainingResult)
        failed(exception, traceback_text)
        finished(): always, last.
    """

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object, str)
    finished = Signal()

    max_events_per_second = 10.0

    def __init__(self, scan, config, started_at=None):
        super().__init__()
        self.scan = scan
        self.config = config
        # time.monotonic() when Train was pressed: CLOCK_MONOTONIC is system-wide, so the
        # engine process counts the time budget from the same moment.
        self.started_at = started_at
        self.stop_event = threading.Event()
        # A plain dict, so the controller can read it after Qt has deleted the worker.
        self.event_counts = {"forwarded": 0, "dropped": 0}
        self._last_forward = -1e9

    @property
    def dropped_events(self):
        """Batch/decode events not forwarded because they came too fast."""
        return self.event_counts["dropped"]

    @Slot()
    def request_stop(self):
        """Ask training to stop after the current batch (safe from any thread)."""
        self.stop_event.set()

    @Slot()
    def run(self):
        try:
            result = self._train_in_engine()
        except BaseException as exc:  # every failure must reach the GUI; the thread ends cleanly
            self.failed.emit(exc, traceback.format_exc())
        else:
            self.succeeded.emit(result)
        finally:
            self.finished.emit()

    def _train_in_engine(self):
        """Train in the engine; a ``TrainingResult`` whose ``model`` is the saved file's handle."""
        from ..core.training import TrainingResult  # numpy: not at import (start-up time)

        config = self.config.to_dict() if hasattr(self.config, "to_dict") else self.config
        answer = engine.call("train", scan=self.scan, config=config,
                             autosave_folder=str(user_data_dir() / "models"), started_at=self.started_at,
                             max_events_per_second=self.max_events_per_second,
                             on_progress=self._forward, stop_event=self.stop_event)
        self.event_counts["dropped"] += answer["event_counts"]["dropped"]  # dropped at the source
        return TrainingResult(
            model=ModelHandle.from_info(answer["model"]), class_names=answer["class_names"],
            history=answer["history"], epochs_run=answer["epochs_run"], best_epoch=answer["best_epoch"],
            best_val_accuracy=answer["best_val_accuracy"], seconds=answer["seconds"],
            stopped_by_user=answer["stopped_by_user"], stop_reason=answer["stop_reason"],
            metadata=answer["metadata"], skipped_files=[tuple(pair) for pair in answer["skipped_files"]])

    def _forward(self, progress):
        # Each emit queues an event on the GUI thread; a fast model makes thousands of
        # batches a second, so intermediate ones are dropped rather than queued.
        intermediate = progress.kind == "batch" or (
            progress.kind == "decode" and progress.step < progress.steps)
        if intermediate:
            now = time.monotonic()
            if now - self._last_forward < 1.0 / self.max_events_per_second:
                self.event_counts["dropped"] += 1
                return
            self._last_forward = now
        self.event_counts["forwarded"] += 1
        self.progressed.emit(progress)


class TrainingController(QObject):
    """Owns one training thread + worker at a time and re-emits its signals on the GUI thread.

    Signals:
        progressed(TrainingProgress), succeeded(TrainingResult),
        failed(exception, traceback_text), finished() (always last, once the thread has ended).
    """

    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(object, str)
    finished = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self._thread = None
        self._worker = None
        self.event_counts = {"forwarded": 0, "dropped": 0}  # of the current or last run

    @property
    def worker(self):
        return self._worker

    def is_running(self):
        return self._thread is not None

    def start(self, scan, config, started_at=None):
        """Start training; returns False (and does nothing) while a run is active.

        ``started_at`` is ``time.monotonic()`` when the user pressed Train (now if None):
        a time budget counts from then.
        """
        if self.is_running():
            return False
        thread = QThread()
        thread.setObjectName("trainingThread")
        worker = TrainingWorker(scan, config, time.monotonic() if started_at is None else started_at)
        worker.moveToThread(thread)
        _live[thread] = worker
        self._thread, self._worker = thread, worker
        self.event_counts = worker.event_counts

        thread.started.connect(worker.run)
        worker.progressed.connect(self._on_progressed)
        worker.succeeded.connect(self._on_succeeded)
        worker.failed.connect(self._on_failed)
        # Direct: quit is thread-safe, and the thread must end even while the GUI thread
        # is blocked (a window closing waits for it).
        worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        # Registry and controller first, so they still see live objects; deleteLater after.
        thread.finished.connect(self._on_thread_finished)
        thread.finished.connect(_get_reaper().forget)
        thread.finished.connect(worker.deleteLater)
        thread.finished.connect(thread.deleteLater)
        # If the owning widget is deleted mid-run, the run must still be told to stop.
        self.destroyed.connect(worker.request_stop, Qt.ConnectionType.DirectConnection)
        thread.start()
        return True

    def request_stop(self):
        """Ask the running training to stop after the current batch (no-op when idle)."""
        if self._worker is not None and shiboken6.isValid(self._worker):
            self._worker.request_stop()

    def wait(self, timeout_ms=30000):
        """Block until the run has finished and ``finished`` was emitted; False on timeout.

        Events are processed meanwhile so the queued result signals are delivered.
        """
        if not self.is_running():
            return True
        loop = QEventLoop()
        timer = QTimer()
        timer.setSingleShot(True)
        timer.timeout.connect(loop.quit)
        self.finished.connect(loop.quit)
        timer.start(max(0, int(timeout_ms)))
        if self.is_running():
            loop.exec()
        timer.stop()
        self.finished.disconnect(loop.quit)
        return not self.is_running()

    @Slot(object)
    def _on_progressed(self, progress):
        self.progressed.emit(progress)

    @Slot(object)
    def _on_succeeded(self, result):
        self.succeeded.emit(result)

    @Slot(object, str)
    def _on_failed(self, exc, details):
        self.failed.emit(exc, details)

    @Slot()
    def _on_thread_finished(self):
        thread = self._thread
        if thread is not None and shiboken6.isValid(thread):
            thread.wait()  # returns at once: the thread is past its last Python code
        self._thread = self._worker = None
        self.finished.emit()


# -- how a run reads in the window (kept beside the worker whose events it describes) --
def duration_text(seconds):
    """Seconds as "1:23" or "1:02:03"."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def progress_text(progress):
    """'Epoch 3/10 · step 40/120 · 850 img/s · 1:23 left', or 'Reading images 120/600'."""
    if progress.kind == "decode":
        return progress.message or f"Reading images {progress.step}/{progress.steps}"
    epoch = f"Epoch {progress.epoch}/{progress.epochs}" if progress.epochs else f"Epoch {progress.epoch}"
    parts = ([progress.message.capitalize()] if progress.message else []) + [
        epoch, f"step {progress.step}/{progress.steps}"]
    if progress.kind == "batch" and progress.images_per_second:
        parts.append(f"{progress.images_per_second:.0f} img/s")
    if progress.seconds_left is not None:
        parts.append(f"{duration_text(progress.seconds_left)} left")
    return " · ".join(parts)


def result_text(result):
    """'Best validation accuracy 0.93 at epoch 7 of 10 (stopped by user)'."""
    if result.best_val_accuracy is not None:
        text = f"Best validation accuracy {result.best_val_accuracy:.2f}"
    else:
        accuracy = result.history.get("accuracy", [])
        best = accuracy[result.best_epoch - 1] if 0 < result.best_epoch <= len(accuracy) else 0.0
        text = f"Best training accuracy {best:.2f} (no validation images)"
    text += f" at epoch {result.best_epoch} of {result.epochs_run}"
    if result.stop_reason and result.stop_reason != "finished":
        text += f" ({result.stop_reason})"
    return text
