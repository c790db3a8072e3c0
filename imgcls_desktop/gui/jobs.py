"""One-shot background jobs (load a model, classify files, evaluate, scan a folder).

A job is a plain function run on a worker thread; its result or exception comes back to
the GUI thread through queued signals (Anki's QueryOp, superqt's create_worker). The
function never touches widgets. Long training runs use their own QThread instead (see
``training_worker``).

The workers are Python ``ThreadPoolExecutor`` threads rather than ``QRunnable`` on a
``QThreadPool``: with PySide6 6.12 a Python ``QRunnable`` on a second pool crashed the
interpreter with a reference-count error, and nothing here needs Qt's pool.
"""

import threading
import traceback
from concurrent.futures import ThreadPoolExecutor, wait

from PySide6.QtCore import QObject, Signal, Slot

_general = ThreadPoolExecutor(max_workers=4, thread_name_prefix="imgcls-job")
# Jobs for the engine process queue here one behind another, as the engine runs them one at
# a time: a job cancelled while it waits never reaches the engine.
_engine = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcls-engine")
_futures = set()
_futures_lock = threading.Lock()


class _JobSignals(QObject):
    succeeded = Signal(object)
    failed = Signal(object, str)  # the exception, its formatted traceback
    progressed = Signal(int, int)
    finished = Signal()


class Job:
    """Runs ``function(*args, **kwargs)`` off the GUI thread.

    If the function accepts ``on_progress``/``stop_event`` keyword arguments, pass
    ``with_progress=True`` and they are supplied: progress arrives as ``progressed(done,
    total)`` and :meth:`cancel` sets the stop event. ``uses_engine=True`` queues the job
    behind every other job for the engine process.
    """

    def __init__(self, function, *args, with_progress=False, uses_engine=False, **kwargs):
        self.function = function
        self.args = args
        self.kwargs = kwargs
        self.uses_engine = uses_engine
        self.signals = _JobSignals()  # created in the GUI thread, so slots run there
        self.stop_event = threading.Event()
        if with_progress:
            self.kwargs.setdefault("on_progress", self.signals.progressed.emit)
            self.kwargs.setdefault("stop_event", self.stop_event)

    def cancel(self):
        self.stop_event.set()

    def run(self):
        try:
            result = self.function(*self.args, **self.kwargs)
        except BaseException as exc:  # every failure must reach the GUI, never kill the worker
            self.signals.failed.emit(exc, traceback.format_exc())
        else:
            self.signals.succeeded.emit(result)
        finally:
            self.signals.finished.emit()


def wait_for_all_jobs(timeout_ms=60000):
    """Block until every submitted job has run (window close, tests). True if all ended."""
    with _futures_lock:
        pending = list(_futures)
    done, not_done = wait(pending, timeout=timeout_ms / 1000)
    return not not_done


def _forget_future(future):
    with _futures_lock:
        _futures.discard(future)


class JobRunner(QObject):
    """Starts jobs and keeps them alive until they finish (so nothing is collected early)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._jobs = {}  # signals object -> job

    def start(self, job, on_success=None, on_failure=None, on_progress=None):
        self._jobs[job.signals] = job
        if on_success is not None:
            job.signals.succeeded.connect(on_success)
        if on_failure is not None:
            job.signals.failed.connect(on_failure)
        if on_progress is not None:
            job.signals.progressed.connect(on_progress)
        # A bound slot, not a lambda: lambdas on cross-thread signals have crashed PySide6.
        job.signals.finished.connect(self._forget)
        future = (_engine if job.uses_engine else _general).submit(job.run)
        with _futures_lock:
            _futures.add(future)
        future.add_done_callback(_forget_future)
        return job

    @Slot()
    def _forget(self):
        self._jobs.pop(self.sender(), None)

    def active(self):
        return len(self._jobs)

    def cancel_all(self):
        for job in list(self._jobs.values()):
            job.cancel()

    def wait(self, timeout_ms=30000):
        """Block until running jobs end (used when the window closes)."""
        return wait_for_all_jobs(timeout_ms)
