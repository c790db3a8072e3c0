"""The engine: TensorFlow's work in a process of its own, driven by the window.

The window process never imports TensorFlow. It starts this package as a child process
(:func:`launch_command`) and talks to it through :class:`client.EngineClient`: requests
name tasks from a fixed registry (:mod:`.tasks`), progress and results come back as
plain data over the child's standard input and output (:mod:`.protocol`), and models
cross as ``.keras`` files. If the engine dies, the job it ran fails with one message and
the next job starts a fresh engine. The CLI stays in one process and calls core directly.
"""

import sys

ENGINE_FLAG = "--engine"


def launch_command():
    """The command line that starts an engine process.

    From source (or an installed package): ``python -m imgcls_desktop.engine``. Frozen by
    PyInstaller there is no Python to hand a module to, so the app's own executable is
    started with ``--engine`` (see ``app.main``).
    """
    if getattr(sys, "frozen", False):
        return [sys.executable, ENGINE_FLAG]
    return [sys.executable, "-m", "imgcls_desktop.engine"]
