"""What every ``imgcls`` command shares: exit statuses, usage errors, output helpers.

Exit status: 0 all done; 3 done but some inputs failed; 2 usage error; 1 nothing could be
done; 141 stdout was closed by its reader (``| head``), which ends the command quietly.
This module imports nothing of the other command modules, so none of them import each
other through it (no import cycle).
"""

import sys
import time

from ..core.names import display_name

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a Unix tool whose reader went away


class UsageError(Exception):
    """A command line that cannot be run as given; ``main`` prints it and exits with 2."""


def usage(message):
    """Print ``message`` as a usage error on stderr and return :data:`EXIT_USAGE`."""
    print(f"imgcls: error: {display_name(message)}", file=sys.stderr)
    return EXIT_USAGE


def log(args, message):
    """Print ``message`` for people, unless the command prints one JSON document."""
    if not args.json:
        print(message)


def duration(seconds):
    """``m:ss`` for a number of seconds, ``?`` when unknown."""
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


class ProgressBar:
    """A one-line bar on a terminal (stderr); silent when stderr is not a terminal."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr is not None and sys.stderr.isatty()
        self.last = 0.0

    def show(self, fraction, text, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        width = 28
        filled = int(width * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K")
        sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\n")


def load_with_warnings(path):
    """Load a model file for a command; its warnings go to stderr."""
    from ..core.model_io import load_model

    loaded = load_model(path)
    for warning in loaded.warnings:
        print(f"imgcls: warning: {warning}", file=sys.stderr)
    return loaded


def print_per_class(per_class, indent="  "):
    """The precision/recall/F1/support table of ``{class name: row}`` (``evaluate``, ``runs show``)."""
    print(f"{indent}{'class':24s}{'precision':>10s}{'recall':>10s}{'f1':>10s}{'support':>9s}")
    for name, row in per_class.items():
        print(f"{indent}{display_name(name)[:24]:24s}{row['precision']:10.3f}{row['recall']:10.3f}"
              f"{row['f1']:10.3f}{row['support']:9d}")


def print_confusion_matrix(class_names, matrix, indent=""):
    """The confusion matrix, rows true and columns predicted (``evaluate``, ``runs show``)."""
    print(f"{indent}confusion matrix (rows: true, columns: predicted)")
    for name, row in zip(class_names, matrix):
        print(f"{indent}  {display_name(name)[:16]:16s} " + " ".join(f"{v:5d}" for v in row))
