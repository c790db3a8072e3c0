"""The engine process: reads requests, runs tasks from the registry, writes messages.

Messages from the window (plain dicts, :mod:`.protocol`):

- ``{"type": "run", "id": int, "task": name, "args": {...}, "env": {...}}``: queue a task
  from :data:`.tasks.TASKS`. Tasks run one at a time, in order (TensorFlow has crashed
  when two threads built or ran models at once).
- ``{"type": "cancel", "id": int}``: set that task's stop event (core functions stop
  after the current batch); a queued task is answered as cancelled without running.
- ``{"type": "shutdown"}``: stop every task and exit.

Messages to the window: ``hello`` (pid) once, then per task any number of
``{"type": "progress", "id", "args"}`` and one ``{"type": "result", "id", "value"}`` or
``{"type": "error", "id", "error": {...}}``. The end of the input (the window is gone)
ends the process at once, so an engine never outlives its window.

The protocol owns the real standard output: file descriptor 1 is pointed at standard
error before anything else runs, so a library that prints (Keras progress bars,
TensorFlow's C++ logging) cannot corrupt a message.
"""

import logging
import os
import queue
import sys
import threading
import traceback

from . import plain, protocol

log = logging.getLogger("imgcls.engine")

# Environment variables a request may set for its task (the window's data folder).
_ENV_PREFIX = "IMGCLS_"


class Server:
    def __init__(self, reader, writer, tasks=None):
        from .tasks import TASKS, ModelCache

        self.reader = reader
        self.writer = writer
        self.tasks = TASKS if tasks is None else tasks
        self.models = ModelCache()
        self._write_lock = threading.Lock()
        self._queue = queue.Queue()
        self._stop_events = {}  # request id -> threading.Event (queued or running)
        self._stop_lock = threading.Lock()
        self.closed = threading.Event()

    # -- writing ------------------------------------------------------------------------
    def send(self, message):
        with self._write_lock:
            try:
                protocol.write_message(self.writer, message)
            except (BrokenPipeError, OSError, ValueError):
                self.closed.set()  # the window is gone; the reader sees it too

    # -- the two threads ----------------------------------------------------------------
    def serve(self):
        """Read requests until the input ends or a shutdown arrives; run tasks meanwhile."""
        worker = threading.Thread(target=self._work, name="imgcls-engine-task", daemon=True)
        worker.start()
        self.send({"type": "hello", "pid": os.getpid()})
        try:
            while True:
                message = protocol.read_message(self.reader)
                if message is None or message.get("type") == "shutdown":
                    break
                kind = message.get("type")
                if kind == "run":
                    event = threading.Event()
                    with self._stop_lock:
                        self._stop_events[message["id"]] = event
                    self._queue.put((message, event))
                elif kind == "cancel":
                    with self._stop_lock:
                        event = self._stop_events.get(message.get("id"))
                    if event is not None:
                        event.set()
        finally:
            self.closed.set()
            with self._stop_lock:
                for event in self._stop_events.values():
                    event.set()
            self._queue.put(None)
        return worker

    def _work(self):
        while True:
            item = self._queue.get()
            if item is None:
                return
            message, stop_event = item
            try:
                self._run(message, stop_event)
            finally:
                with self._stop_lock:
                    self._stop_events.pop(message["id"], None)

    def _run(self, message, stop_event):
        from .tasks import TaskContext

        request_id = message["id"]
        task = self.tasks.get(message.get("task"))
        if task is None:
            self._fail(request_id, KeyError(f"unknown engine task {message.get('task')!r}"), "")
            return
        if stop_event.is_set() or self.closed.is_set():
            from ..core.errors import Cancelled

            self._fail(request_id, Cancelled("cancelled before it started"), "")
            return
        for key, value in (message.get("env") or {}).items():
            if key.startswith(_ENV_PREFIX):
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = str(value)

        def on_progress(*args):
            self.send({"type": "progress", "id": request_id, "args": plain.encode(args)})

        context = TaskContext(on_progress=on_progress, stop_event=stop_event, models=self.models)
        try:
            value = task(context, **plain.decode(message.get("args") or {}))
            encoded = plain.encode(value)
        except BaseException as exc:  # noqa: BLE001 - every failure goes back to the window
            self._fail(request_id, exc, traceback.format_exc())
        else:
            self.send({"type": "result", "id": request_id, "value": encoded})

    def _fail(self, request_id, exc, details):
        log.info("engine task %s failed: %s", request_id, exc)
        self.send({"type": "error", "id": request_id, "error": {
            "class": type(exc).__name__, "module": type(exc).__module__,
            "message": str(exc), "traceback": details}})


def _protocol_streams():
    """(input, output) binary streams; fd 1 then points at stderr for everything else."""
    reader = os.fdopen(os.dup(0), "rb", buffering=0)  # sys.stdin is None in a windowed app
    writer = os.fdopen(os.dup(1), "wb", buffering=0)
    try:
        os.dup2(2, 1)
    except OSError:  # no stderr (a windowed app): anything printed goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    return reader, writer


# How much lower the engine's CPU priority is than the window's (POSIX nice; 0 keeps it
# equal). Measured on a busy 2-core machine: with the engine at the window's priority its
# TensorFlow import stalled the window's event loop for 0.8-1.4 s; at +10, 30 ms. On an
# idle machine the engine gets every core it asks for either way.
DEFAULT_NICENESS = 10


def lower_priority():
    """Yield the CPU to the window (``IMGCLS_ENGINE_NICE`` overrides the step)."""
    try:
        step = int(os.environ.get("IMGCLS_ENGINE_NICE", DEFAULT_NICENESS))
    except ValueError:
        step = DEFAULT_NICENESS
    if step > 0 and hasattr(os, "nice"):
        try:
            os.nice(step)
        except OSError:
            pass


def main():
    lower_priority()  # first: the TensorFlow import is the engine's heaviest moment
    from ..core.backend import configure_environment
    from ..frozen import prepare_process

    prepare_process()  # a windowed frozen app has no sys.stdout/sys.stderr
    configure_environment()
    reader, writer = _protocol_streams()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="engine %(levelname)s %(name)s: %(message)s")
    server = Server(reader, writer)
    worker = server.serve()
    # Input ended (the window closed or died) or shutdown: the running task was told to
    # stop; give it a moment to end cleanly, then leave without waiting for TF's threads.
    worker.join(timeout=5.0)
    try:
        writer.flush()
    except OSError:
        pass
    os._exit(0)
