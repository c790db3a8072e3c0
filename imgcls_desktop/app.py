"""Start-up of the desktop application (filled in by the GUI work)."""

import sys


def main(argv=None):
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication(sys.argv if argv is None else argv)
    label = QLabel("imgcls — the window is on its way; use the imgcls command meanwhile.")
    label.setWindowTitle("imgcls")
    label.show()
    return app.exec()
