"""One consistent error dialog, with the details folded away, for every failure."""

import logging

from PySide6.QtWidgets import QApplication, QMessageBox

log = logging.getLogger("imgcls")

# Tests replace this to record dialogs instead of blocking on them.
_presenter = None


def set_presenter(function):
    """Route error dialogs to ``function(title, message, details)`` (tests, self-test)."""
    global _presenter
    _presenter = function


def show_error(parent, title, message, details=""):
    """Show an error the user can act on; the traceback (if any) goes under Details."""
    log.error("%s: %s\n%s", title, message, details)
    if _presenter is not None:
        _presenter(title, message, details)
        return
    if QApplication.instance() is None:
        return
    box = QMessageBox(parent)
    box.setObjectName("errorDialog")
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle(f"imgcls — {title}")
    box.setText(message)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()


def show_exception(parent, title, exc, details=""):
    """Show an exception: our own errors as their message, anything else as a bug report."""
    from ...core.errors import ImgclsError

    if isinstance(exc, ImgclsError):
        show_error(parent, title, str(exc), details)
    else:
        show_error(parent, title, f"Something went wrong: {type(exc).__name__}: {exc}\n"
                                  "The application keeps running; the details below help a bug report.",
                   details)
