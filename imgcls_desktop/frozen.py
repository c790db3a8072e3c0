"""What a packaged (PyInstaller) or windowed start needs before anything else runs.

Both entry points call :func:`prepare_process` first thing in ``main()``. It works the same
from source, where it changes nothing unless a stream is missing (``pythonw`` on Windows
starts ``imgcls-desktop`` with no console either).

The start-up probe (``IMGCLS_STARTUP_PROBE=1``) lives here too: ``benchmarks/startup_frozen.py``
uses it to time the frozen app and the source checkout the same way.
"""

import os
import sys
import time

_IMPORTED_AT = time.time()


def is_frozen():
    """True inside a PyInstaller bundle."""
    return bool(getattr(sys, "frozen", False)) and hasattr(sys, "_MEIPASS")


def prepare_process():
    """Make stdout/stderr safe and let multiprocessing children start in a frozen build.

    A windowed executable has ``sys.stdout is None`` and ``sys.stderr is None``: any
    ``print`` (ours, a library's warning, a stray progress bar) would raise. They are pointed
    at ``os.devnull`` so writing is always harmless; our own messages go to the log file in
    the user's data folder (``app.setup_logging``), never beside the executable.
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115 (lives as long as the process)
    if is_frozen():
        _keep_matplotlib_cache()
    # A no-op unless this process is a multiprocessing child of a frozen executable, in
    # which case it runs the child's work and exits here, before argument parsing.
    import multiprocessing

    multiprocessing.freeze_support()


def _keep_matplotlib_cache():
    """Give matplotlib a lasting config/cache folder in the user's data folder.

    PyInstaller's matplotlib runtime hook points ``MPLCONFIGDIR`` at a new temporary folder
    on every start, so matplotlib would rebuild its font cache (a scan of every system font)
    before the first chart, that is before the window shows. From source the cache lives in
    ``~/.cache/matplotlib`` and is built once; this keeps the frozen app the same.
    """
    from .resources import user_data_dir

    try:
        folder = user_data_dir() / "matplotlib"
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # the hook's temporary folder still works, only slower
    os.environ["MPLCONFIGDIR"] = str(folder)


def process_age_seconds():
    """Seconds since this process started (not since Python or this module loaded).

    ``IMGCLS_LAUNCH_TIME`` (a ``time.time()`` value set by the launcher) wins; otherwise Linux
    ``/proc`` gives the start time in clock ticks since boot; otherwise the time since this
    module was imported (an underestimate, marked by the caller's choice of launcher).
    """
    launched = os.environ.get("IMGCLS_LAUNCH_TIME")
    if launched:
        try:
            return time.time() - float(launched)
        except ValueError:
            pass
    try:
        with open("/proc/self/stat", encoding="ascii") as stat_file:
            # The command name (field 2) may hold spaces; fields after the last ')' are fixed.
            fields = stat_file.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5): starttime
        with open("/proc/uptime", encoding="ascii") as uptime_file:
            uptime = float(uptime_file.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time() - _IMPORTED_AT


def schedule_startup_probe():
    """After the first event-loop turn, print ``window-visible <seconds>`` and exit at once.

    Exiting with ``os._exit`` skips waiting for the engine, which is still loading behind
    the window: the probe measures how soon the user sees a window, nothing else.
    """
    from PySide6.QtCore import QTimer

    def report():
        print(f"window-visible {process_age_seconds():.3f}", flush=True)
        import logging

        logging.shutdown()
        os._exit(0)

    QTimer.singleShot(0, report)


def startup_mark(name):
    """``IMGCLS_STARTUP_MARKS=1``: print ``startup-mark <name> <seconds since launch>``.

    ``benchmarks/startup_window.py`` reads these to say where the start-up time goes (the
    clock is the launcher's, through ``IMGCLS_LAUNCH_TIME``). Silent otherwise.
    """
    if os.environ.get("IMGCLS_STARTUP_MARKS"):
        print(f"startup-mark {name} {process_age_seconds():.3f}", flush=True)


def mark_first_paint(widget):
    """``IMGCLS_STARTUP_MARKS=1``: mark the first paint of ``widget`` (a top-level window).

    The filter removes itself after the first paint; it costs nothing when the marks are off.
    """
    if not os.environ.get("IMGCLS_STARTUP_MARKS"):
        return
    from PySide6.QtCore import QEvent, QObject, QTimer

    class FirstPaint(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint:
                watched.removeEventFilter(self)
                startup_mark("first-paint")
                # Painting done and the event loop free again: the window can take input.
                QTimer.singleShot(0, lambda: startup_mark("painted"))
            return False

    widget._first_paint_filter = FirstPaint(widget)
    widget.installEventFilter(widget._first_paint_filter)
