"""Import TensorFlow and Keras once, with the settings this app relies on.

Every core module that needs Keras calls :func:`keras_module` instead of importing it at
module top level, so that importing the dataset scanner (or starting the GUI) never pays
the seconds ``import tensorflow`` costs.
"""

import contextlib
import gc
import os
import tempfile
import threading
from typing import Any

_lock = threading.Lock()
_keras: Any = None


def configure_environment() -> None:
    """Set the environment before TensorFlow is imported; later calls change nothing."""
    # A user's ~/.keras/keras.json must not switch us to another backend.
    os.environ["KERAS_BACKEND"] = "tensorflow"
    # TensorFlow's C++ INFO lines are noise for our users; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    # oneDNN's convolutions train our CNNs 1.5-2x faster than TensorFlow's Eigen ones on
    # this CPU kind, AVX2-only ones included (benchmarks/backend_ab.py); TensorFlow turns
    # them on by itself only on CPUs with AVX-512 VNNI. A user's own setting wins.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def keras_module() -> Any:
    """Return the ``keras`` module, importing TensorFlow on first use (thread-safe).

    Returns:
        The ``keras`` module (typed ``Any``: Keras ships no type information).
    """
    global _keras
    if _keras is not None:
        return _keras
    with _lock:
        if _keras is None:
            configure_environment()
            # The import makes a million objects and almost no garbage: collecting during it
            # only costs GIL time (stalls of 50-150 ms in the window, measured).
            collecting = gc.isenabled()
            gc.disable()
            try:
                with _quiet_native_stderr():
                    import keras
                    import tensorflow as tf
            finally:
                if collecting:
                    gc.enable()

            # A windowed (frozen) app has no stdout: Keras must never write progress bars.
            keras.utils.disable_interactive_logging()
            tf.get_logger().setLevel("ERROR")
            # TensorFlow and Keras leave about a million long-lived objects; every full
            # garbage collection walked them all while holding the GIL, freezing the
            # window for 200-400 ms (py-spy: gc_collect_main). Frozen objects are skipped.
            gc.freeze()
            _keras = keras
    return _keras


# Lines TensorFlow's C++ side prints while it loads that tell a user nothing (and that
# TF_CPP_MIN_LOG_LEVEL no longer silences: absl logs them before it is configured).
_IMPORT_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on")


@contextlib.contextmanager
def _quiet_native_stderr():
    """Drop TensorFlow's known start-up INFO lines from file descriptor 2, keep the rest.

    The C++ libraries write to the descriptor, not to ``sys.stderr``, so it is pointed at
    a temporary file for the import and what was written is passed on afterwards, minus
    the known noise. Where descriptor 2 is not open (a windowed frozen app) nothing is done.
    """
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not any(noise in line for noise in _IMPORT_NOISE)]
            if kept:
                os.write(2, "".join(kept).encode("utf-8"))


def tensorflow_module() -> Any:
    """Return the ``tensorflow`` module, after :func:`keras_module` has set the environment.

    Returns:
        The ``tensorflow`` module (typed ``Any``: TensorFlow ships no type information).
    """
    keras_module()
    import tensorflow as tf

    return tf


def versions() -> dict[str, str]:
    """Library versions for the About box and the model metadata.

    Returns:
        ``{"keras": version, "tensorflow": version}``.
    """
    keras = keras_module()
    tf = tensorflow_module()
    return {"keras": keras.__version__, "tensorflow": tf.__version__}
