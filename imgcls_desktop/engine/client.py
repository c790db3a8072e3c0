"""The window's side of the engine, without Qt: start it, call tasks, cancel, restart.

:class:`EngineClient` owns one engine process at a time. :meth:`EngineClient.call` sends a
request and blocks the calling thread (a worker thread of the window, never the GUI
thread) until the result arrives, passing progress to ``on_progress`` as it streams in
and turning a set ``stop_event`` into a cancel message. If the engine process dies, every
call waiting on it fails with :class:`EngineCrashed`, and the next call starts a fresh
engine. :meth:`EngineClient.close` asks the engine to stop, waits, then kills it.
"""

import itertools
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..core.errors import ImgclsError
from . import launch_command, plain, protocol

log = logging.getLogger("imgcls.engine")

POLL_SECONDS = 0.1  # how often a waiting call looks at its stop event
CLOSE_SECONDS = 10.0  # a shutdown request gets this long before the engine is killed

CRASH_TEXT = ("The training engine stopped unexpectedly ({how}); your data and saved models are "
              "untouched. It restarts on the next job.")


class EngineCrashed(ImgclsError):
    """The engine process ended while a task of this window was running or waiting."""


class EngineTaskError(Exception):
    """A task failed with an exception the window has no class for (its name is kept)."""

    def __init__(self, class_name, message):
        super().__init__(f"{class_name}: {message}" if message else class_name)
        self.class_name = class_name


def _how_it_ended(returncode):
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        return f"signal {-returncode}"
    return f"exit status {returncode}"


def crash_message(returncode):
    return CRASH_TEXT.format(how=_how_it_ended(returncode))


# Exception classes a failed task may come back as: core's own, and plain built-ins.
_ERROR_MODULES = ("errors", "dataset", "pipeline", "export", "history", "mislabels", "model_io")
_BUILTIN_ERRORS = (ValueError, TypeError, KeyError, RuntimeError, MemoryError, OSError, FileNotFoundError,
                   PermissionError, NotImplementedError, IndexError)


def rebuild_error(error):
    """The exception a task raised, rebuilt on this side from its class name and message."""
    import importlib

    name, message = error.get("class", "Exception"), error.get("message", "")
    candidates = [getattr(importlib.import_module(f"imgcls_desktop.core.{module}"), name, None)
                  for module in _ERROR_MODULES]
    candidates += [cls for cls in _BUILTIN_ERRORS if cls.__name__ == name]
    for cls in candidates:
        if isinstance(cls, type) and issubclass(cls, Exception):
            exc = cls.__new__(cls)
            Exception.__init__(exc, message)
            if issubclass(cls, KeyError):
                exc.args = (message,)
            return exc
    return EngineTaskError(name, message)


class RemoteTraceback(Exception):
    """The engine-side traceback of a failed task (set as the rebuilt error's cause)."""


class _Pending:
    def __init__(self, generation):
        self.generation = generation
        self.messages = queue.Queue()


class _ThreadEngine:
    """An engine served on a thread of this process (tests that patch core in-process).

    It speaks the same protocol over OS pipes, so everything crosses as plain data; only
    the isolation (and the TensorFlow-free window) is given up.
    """

    def __init__(self):
        from .server import Server

        to_engine_read, to_engine_write = os.pipe()
        from_engine_read, from_engine_write = os.pipe()
        self.stdin = os.fdopen(to_engine_write, "wb", buffering=0)
        self.stdout = os.fdopen(from_engine_read, "rb", buffering=0)
        self._server_reader = os.fdopen(to_engine_read, "rb", buffering=0)
        self._server_writer = os.fdopen(from_engine_write, "wb", buffering=0)
        self.pid = os.getpid()
        self.returncode = None
        self._server = Server(self._server_reader, self._server_writer)
        self._thread = threading.Thread(target=self._serve, name="imgcls-engine-thread", daemon=True)
        self._thread.start()

    def _serve(self):
        worker = self._server.serve()
        worker.join(timeout=60)
        self.returncode = 0
        for stream in (self._server_writer, self._server_reader):
            try:
                stream.close()
            except OSError:
                pass

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise subprocess.TimeoutExpired("engine thread", timeout)
        return self.returncode

    def kill(self):
        try:
            self.stdin.close()
        except OSError:
            pass


class EngineClient:
    """One engine process, started on demand and restarted after it dies.

    Args:
        command: The engine's command line (default :func:`launch_command`).
        in_thread: Serve the engine on a thread of this process instead (tests only).
    """

    def __init__(self, command=None, in_thread=False):
        self.command = command
        self.in_thread = in_thread
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._process = None
        self._generation = 0
        self._alive = False
        self._closing = False
        self._pending = {}  # request id -> _Pending
        self._ids = itertools.count(1)
        self.started = 0  # engines started so far (tests, the status line)
        self.last_exit = None  # the return code of the engine that ended last

    # -- life cycle ---------------------------------------------------------------------
    @property
    def pid(self):
        process = self._process
        return process.pid if process is not None and self._alive else None

    def is_running(self):
        return self._alive

    def start(self):
        """Start an engine now unless one is running (returns at once; TF loads there)."""
        with self._lock:
            self._ensure_started_locked()

    def _ensure_started_locked(self):
        if self._alive:
            return self._generation
        if self.in_thread:
            process = _ThreadEngine()
        else:
            process = subprocess.Popen(
                self.command or launch_command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                env=_engine_environment(), close_fds=True)
        self._generation += 1
        self._process = process
        self._alive = True
        self._closing = False
        self.started += 1
        threading.Thread(target=self._read, args=(process, self._generation),
                         name=f"imgcls-engine-reader-{self._generation}", daemon=True).start()
        log.info("engine %s started (pid %s)", self._generation, process.pid)
        return self._generation

    def close(self, timeout=CLOSE_SECONDS):
        """Ask the engine to stop, wait up to ``timeout`` seconds, then kill it. True if it ended."""
        with self._lock:
            process, alive = self._process, self._alive
            self._closing = True
        if process is None or not alive:
            return True
        self._send(process, {"type": "shutdown"})
        try:
            process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("engine did not stop within %.0f s; killing it", timeout)
            process.kill()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                return False
        # Ended now: not only once the reader thread has noticed (a caller may ask at once).
        with self._lock:
            if self._process is process:
                self._alive = False
        return True

    def kill(self):
        """Kill the engine now (tests of the crash path use it)."""
        process = self._process
        if process is not None and self._alive:
            process.kill()

    # -- calls --------------------------------------------------------------------------
    def call(self, task, args=None, *, on_progress=None, stop_event=None, timeout=None, env=None):
        """Run ``task`` in the engine with ``args`` (a dict) and return its decoded result.

        Blocks the calling thread. Progress events are passed to ``on_progress(*args)``
        on this thread. Setting ``stop_event`` sends a cancel; the task then ends as core
        ends it (a partial result or a cancellation error). ``timeout`` (seconds) cancels
        and raises ``TimeoutError``.

        Raises:
            EngineCrashed: the engine process died before answering.
            The task's own exception, rebuilt (core's errors keep their class).
        """
        request_id = next(self._ids)
        pending = None
        with self._lock:
            generation = self._ensure_started_locked()
            pending = _Pending(generation)
            self._pending[request_id] = pending
            process = self._process
        try:
            message = {"type": "run", "id": request_id, "task": task, "args": plain.encode(args or {}),
                       "env": _request_environment() if env is None else env}
            self._send(process, message)
            return self._wait(request_id, pending, process, on_progress, stop_event, timeout)
        finally:
            with self._lock:
                self._pending.pop(request_id, None)

    def _wait(self, request_id, pending, process, on_progress, stop_event, timeout):
        deadline = None if timeout is None else time.monotonic() + timeout
        cancelled = False
        while True:
            try:
                message = pending.messages.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if stop_event is not None and stop_event.is_set() and not cancelled:
                    self._send(process, {"type": "cancel", "id": request_id})
                    cancelled = True
                if deadline is not None and time.monotonic() > deadline:
                    self._send(process, {"type": "cancel", "id": request_id})
                    raise TimeoutError(f"the engine's {request_id} did not answer within {timeout:.0f} s") from None
                continue
            kind = message["type"]
            if kind == "progress":
                if on_progress is not None:
                    on_progress(*plain.decode(message["args"]))
            elif kind == "result":
                return plain.decode(message["value"])
            elif kind == "error":
                error = message["error"]
                exc = rebuild_error(error)
                if error.get("traceback"):
                    raise exc from RemoteTraceback("engine traceback:\n" + error["traceback"])
                raise exc
            elif kind == "crashed":
                raise EngineCrashed(message["message"])

    def _send(self, process, message):
        with self._write_lock:
            try:
                protocol.write_message(process.stdin, message)
            except (BrokenPipeError, OSError, ValueError):
                pass  # the engine is gone: the reader reports it to every waiting call

    # -- the reader thread --------------------------------------------------------------
    def _read(self, process, generation):
        try:
            while True:
                try:
                    message = protocol.read_message(process.stdout)
                except (OSError, ValueError, protocol.ProtocolError) as exc:
                    log.error("engine message unreadable: %s", exc)
                    message = None
                if message is None:
                    break
                if message.get("type") == "hello":
                    continue
                with self._lock:
                    pending = self._pending.get(message.get("id"))
                if pending is not None:
                    pending.messages.put(message)
        finally:
            self._ended(process, generation)

    def _ended(self, process, generation):
        try:
            returncode = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = None
        for stream in (process.stdout, process.stdin):
            try:
                stream.close()
            except OSError:
                pass
        with self._lock:
            if self._generation == generation:
                self._alive = False
            closing = self._closing
            waiting = [p for p in self._pending.values() if p.generation == generation]
            self.last_exit = returncode
        text = ("The engine was shut down before the job finished." if closing
                else crash_message(returncode))
        if not closing:
            log.error("engine %s (pid %s) ended: %s", generation, process.pid, _how_it_ended(returncode))
        for pending in waiting:
            pending.messages.put({"type": "crashed", "message": text})


def _engine_environment():
    """The engine's environment: ours, with this source tree importable."""
    env = dict(os.environ)
    if not getattr(sys, "frozen", False):
        package_parent = str(Path(__file__).resolve().parents[2])
        others = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join([package_parent, *others])
    return env


def _request_environment():
    """Per-request settings the engine applies for the task (the user-data folder)."""
    return {"IMGCLS_DATA_DIR": os.environ.get("IMGCLS_DATA_DIR")}


# -- one engine per window process ----------------------------------------------------
_shared = None
_shared_lock = threading.Lock()


def shared_client():
    """The process's engine client (created on first use; the engine starts on first call)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EngineClient()
        return _shared


def set_shared_client(client):
    """Replace the process's client (tests); returns the previous one."""
    global _shared
    with _shared_lock:
        previous, _shared = _shared, client
        return previous


def shutdown_shared_client(timeout=CLOSE_SECONDS):
    """Stop the shared engine, if one runs (the window closing). True if none is left."""
    with _shared_lock:
        client = _shared
    return True if client is None else client.close(timeout)
