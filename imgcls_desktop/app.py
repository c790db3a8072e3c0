"""Start-up: logging, exception hooks, QApplication, the window first, the engine behind it.

``imgcls-desktop [DATA_DIR]`` opens the window on DATA_DIR (else the last dataset, else the
bundled sample). ``imgcls-desktop --self-test [DATA_DIR]`` runs the whole flow through the
real widgets, prints one JSON summary and exits 0, or non-zero with the reason.
"""

import argparse
import logging
import logging.handlers
import os
import sys
import threading

from . import APP_NAME, __version__
from .core.backend import configure_environment
from .resources import resource_path, user_data_dir

log = logging.getLogger("imgcls")


def setup_logging():
    """Log to a rotating file in the user's data folder (a windowed app has no console)."""
    folder = user_data_dir() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(folder / "imgcls.log", maxBytes=2_000_000,
                                                   backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return folder / "imgcls.log"


def install_exception_hooks():
    """Route any unexpected exception (slot, paint event, thread) to the error dialog."""
    from PySide6.QtCore import QObject, Signal

    from .gui.widgets.error_dialog import show_exception

    class Bridge(QObject):
        raised = Signal(object, str)

    bridge = Bridge()
    bridge.raised.connect(_show_unexpected)

    def hook(exc_type, exc, tb):
        import traceback

        details = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("Unexpected error:\n%s", details)
        # Queued to the GUI thread whatever thread raised it; the app keeps running.
        bridge.raised.emit(exc, details)

    def thread_hook(args):
        hook(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook = hook
    threading.excepthook = thread_hook
    _show_unexpected.show_exception = show_exception
    return bridge


def _show_unexpected(exc, details):
    from PySide6.QtWidgets import QApplication

    _show_unexpected.show_exception(QApplication.activeWindow(), "Unexpected error", exc, details)


def call_after_first_paint(window, callback, fallback_ms=2000):
    """Run ``callback`` once, on the event loop's turn after ``window``'s first paint.

    A window that does not paint within ``fallback_ms`` of the event loop starting (shown
    minimised, say) gets ``callback`` then anyway.
    """
    from PySide6.QtCore import QEvent, QObject, QTimer

    done = []

    def run_once():
        if not done:
            done.append(True)
            callback()

    class FirstPaint(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 (Qt's name)
            if event.type() == QEvent.Type.Paint:
                watched.removeEventFilter(self)
                QTimer.singleShot(0, run_once)  # once this paint has reached the screen
            return False

    window._start_after_paint = FirstPaint(window)
    window.installEventFilter(window._start_after_paint)
    QTimer.singleShot(fallback_ms, run_once)


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="imgcls-desktop", description="Train image classifiers from class folders.")
    parser.add_argument("dataset", nargs="?", help="dataset folder to open (default: the last one, or the sample)")
    parser.add_argument("--self-test", action="store_true",
                        help="train, evaluate and classify on the dataset (default: the sample) and exit")
    parser.add_argument("--version", action="version", version=f"imgcls-desktop {__version__}")
    return parser.parse_args(argv)


def main(argv=None):
    arguments = sys.argv[1:] if argv is None else list(argv)
    if arguments[:1] == ["--engine"]:
        # The frozen app's engine process (engine.launch_command): no window, no Qt, the
        # protocol on stdin/stdout until the window closes the pipe.
        from .engine.server import main as engine_main

        return engine_main()
    from .frozen import mark_first_paint, prepare_process, startup_mark

    startup_mark("main")  # the interpreter is up and imgcls_desktop.app imported
    prepare_process()  # before anything prints or parses argv: stdout/stderr may be None
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_environment()
    if args.self_test and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    log_file = setup_logging()
    log.info("imgcls-desktop %s starting", __version__)

    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setApplicationVersion(__version__)
    icon = resource_path("icon.png")
    if icon.exists():
        app.setWindowIcon(QIcon(str(icon)))
    bridge = install_exception_hooks()  # noqa: F841 (kept alive for the app's lifetime)
    from .gui.garbage import GarbageCollector

    app.garbage_collector = GarbageCollector(app)  # Qt objects are freed on this thread only
    startup_mark("qapplication")

    from .gui.main_window import MainWindow

    startup_mark("imports")
    window = MainWindow()
    startup_mark("constructed")
    mark_first_paint(window)
    window.show()
    startup_mark("shown")
    log.info("window shown; log file %s", log_file)
    if args.self_test:
        from .gui.self_test import run_self_test

        return run_self_test(window, args.dataset)

    def start():
        window.start(args.dataset)  # the engine process, the scan of the dataset
        startup_mark("started")
        from .gui.widgets.lazy_canvas import warm_up_in_background

        warm_up_in_background()  # matplotlib, for the first chart

    # Nothing else runs until the window has painted: the engine process and the scan's
    # thread would only compete with the first paint for the CPU and the GIL.
    call_after_first_paint(window, start)
    if os.environ.get("IMGCLS_STARTUP_PROBE"):
        from .frozen import schedule_startup_probe

        schedule_startup_probe()  # benchmarks/startup_frozen.py: report window-visible, exit
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
