"""How the model copes with worse photos: accuracy under blur, light, contrast, JPEG, rotation, scale.

The check is ``core.robustness.robustness_report`` over every corruption of
``core.robustness.graded_corruptions`` at each severity, on the images the Evaluate view
uses (``model_state.evaluation_items``), so its clean row is the evaluation's accuracy. It
runs as an engine job with progress and Cancel; the view shows a table (cells coloured by
how far they fall below clean) and a chart of accuracy against severity.
"""

import traceback

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import Cancelled
from . import engine
from ._qt import named
from .jobs import Job, JobRunner
from .model_state import evaluation_items
from .widgets.error_dialog import show_error, show_exception
from .widgets.lazy_canvas import LazyCanvas

NO_MODEL_TEXT = "Train a model or open one, and open a dataset, to check how it copes with worse photos."
TRAINING_TEXT = "The check is paused while a model is training."
READY_TEXT = ("Check how accuracy holds up when the evaluation images are blurred, brightened, darkened, "
              "flattened, JPEG-compressed, rotated or downscaled, at three severities each.")
FIXED_COLUMNS = ("Corruption", "Severity", "Overall")


def drop_colour(drop):
    """White for no change, deepening red as accuracy falls (full at 50 points), green if it rises."""
    if drop is None:
        return QColor(245, 245, 245)
    if drop < 0:
        strength = min(1.0, -drop / 0.25)
        return QColor(int(255 - 60 * strength), 255, int(255 - 60 * strength))
    strength = min(1.0, drop / 0.5)
    return QColor(255, int(255 - 170 * strength), int(255 - 170 * strength))


class RobustnessView(QWidget):
    """Runs the robustness check on the current model and dataset, and shows the result.

    Signals:
        check_finished(object): The core report dict (with ``"split"``) just shown.
        check_cancelled(): A check stopped through Cancel (or because the model changed).
    """

    check_finished = Signal(object)
    check_cancelled = Signal()

    def __init__(self, parent=None):
        """The check runs on the images core.evaluation.evaluation_items picks for the model."""
        super().__init__(parent)
        named(self, "robustnessView")
        self.corruptions = None  # None: core.robustness.graded_corruptions(); or a list of Corruption
        self._loaded = None
        self._scan = None
        self._training_active = False
        self._report = None
        self._note = ""  # what the last run came to when it left no report (cancelled, failed)
        self._job = None
        self._runner = JobRunner(self)
        self.lines = {}  # the chart's lines, drawn with each report

        self._build()
        self.run_button.clicked.connect(self.run_check)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self._on_export_clicked)
        self._update_state()

    def _build(self):
        """Make the widgets and lay them out; the constructor wires their signals."""
        self.run_button = named(QPushButton("Run check"), "robustnessRunButton")
        self.cancel_button = named(QPushButton("Cancel"), "robustnessCancelButton")
        self.export_button = named(QPushButton("Export CSV…"), "robustnessExportButton")
        self.progress = named(QProgressBar(), "robustnessProgress")
        self.progress.setMaximumWidth(260)
        self.status_label = named(QLabel(), "robustnessStatus")
        self.status_label.setWordWrap(True)
        self.table = named(QTableWidget(0, len(FIXED_COLUMNS)), "robustnessTable")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # matplotlib and the figure are made when the chart is first shown or drawn.
        self.canvas = named(LazyCanvas(figsize=(5, 4), layout="constrained"), "robustnessChart")
        self.canvas.setMinimumSize(QSize(320, 260))

        top = QHBoxLayout()
        top.addWidget(self.run_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.progress)
        top.addStretch(1)
        top.addWidget(self.export_button)
        self.splitter = splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self.canvas)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.status_label)
        layout.addWidget(splitter, 1)

    # -- inputs -----------------------------------------------------------------------

    def set_model(self, loaded):
        """Check ``loaded`` from now on; a result for another model is cleared."""
        if loaded is not self._loaded:
            self._loaded = loaded
            self._restart()

    def set_dataset(self, scan):
        if scan is not self._scan:
            self._scan = scan
            self._restart()

    def set_training_active(self, active):
        """While True the check cannot start, and one running stops: training waits for the engine."""
        self._training_active = bool(active)
        if self._training_active:
            self.cancel()
        self._update_state()

    def can_run(self):
        return self._loaded is not None and self._scan is not None and not self._training_active

    def is_running(self):
        return self._job is not None

    def report(self):
        """The report shown (a dict, see ``core.robustness.robustness_report``), or None."""
        return self._report

    def _restart(self):
        self.cancel()
        self._job = None  # its end is ignored: it checked what is no longer current
        self.clear()

    # -- running ----------------------------------------------------------------------

    @Slot()
    def run_check(self):
        """Start the check in the background. Returns False (saying why) if it cannot run."""
        if self._job is not None:
            return False
        if not self.can_run():
            self._update_state()
            return False
        try:
            items, split = evaluation_items(self._scan, self._loaded.metadata)
        except Exception as exc:  # a dataset that cannot be split: say so, keep going
            show_exception(self, "Cannot check robustness", exc, traceback.format_exc())
            return False
        if items is None:
            self._note = split
            self._update_state()
            return False
        self.clear()
        # The corruptions cross by name (None: every graded one); the engine runs the model.
        job = Job(engine.robustness, self._loaded, items, self._scan.class_names, split, self.corruptions,
                  with_progress=True, uses_engine=True)
        self._job = job
        self.progress.setRange(0, 0)
        self.status_label.setText(f"Checking on {len(items)} {split} images…")
        self._runner.start(job, on_success=self._on_done, on_failure=self._on_failed,
                           on_progress=self._on_progress)
        self._update_state()
        return True

    @Slot()
    def cancel(self):
        if self._job is not None:
            self._job.cancel()
            self.status_label.setText("Cancelling…")
            self.cancel_button.setEnabled(False)

    def _is_current(self):
        return self._job is not None and self.sender() is self._job.signals

    @Slot(int, int)
    def _on_progress(self, done, total):
        if self._is_current():
            self.progress.setRange(0, max(1, total))
            self.progress.setValue(done)

    @Slot(object)
    def _on_done(self, report):
        if not self._is_current():
            return
        self._job = None
        self.show_report(report)
        self.check_finished.emit(report)

    @Slot(object, str)
    def _on_failed(self, exc, details):
        if not self._is_current():
            if isinstance(exc, Cancelled):
                self.check_cancelled.emit()
            return
        self._job = None
        if isinstance(exc, Cancelled):
            self._note = "Check cancelled."
            self._update_state()
            self.check_cancelled.emit()
        else:
            self._note = "The check failed."
            self._update_state()
            show_exception(self, "Robustness check failed", exc, details)

    # -- showing ----------------------------------------------------------------------

    @property
    def figure(self):
        """The chart's matplotlib ``Figure`` (made on first use)."""
        return self.canvas.figure

    def show_report(self, report):
        """Fill the table and the chart with a ``robustness_report`` dict."""
        # Not at import: numpy and Pillow load after the window shows (start-up time).
        from ..core.robustness import SEVERITY_NAMES, draw_robustness_chart

        self._report = report
        names = list(report["class_names"])
        conditions = report["conditions"]
        self.table.clear()
        self.table.setColumnCount(len(FIXED_COLUMNS) + len(names))
        self.table.setHorizontalHeaderLabels(list(FIXED_COLUMNS) + names)
        self.table.setRowCount(len(conditions))
        clean = conditions[0]
        for row_index, row in enumerate(conditions):
            cells = [(row["family"], None), (SEVERITY_NAMES.get(row["severity"], str(row["severity"])), None),
                     (row["accuracy"], row["drop"])]
            for name in names:
                value, reference = row["per_class"][name], clean["per_class"][name]
                cells.append((value, None if value is None or reference is None else reference - value))
            for column, (value, drop) in enumerate(cells):
                if column < 2:
                    item = QTableWidgetItem(str(value))
                else:
                    item = QTableWidgetItem("–" if value is None else f"{value:.1%}")
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    item.setData(Qt.ItemDataRole.UserRole, value)
                    if row_index > 0:
                        item.setBackground(drop_colour(drop))
                        item.setForeground(QColor(20, 20, 20))
                        if drop is not None:
                            item.setToolTip(f"{-drop:+.1%} against clean")
                if row_index == 0:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                if column == 0:
                    item.setToolTip(row["title"])
                self.table.setItem(row_index, column, item)
        self._fit_table()
        self.lines = draw_robustness_chart(self.figure, report)
        self.canvas.draw_idle()
        worst = max(conditions[1:], key=lambda row: row["drop"], default=None)
        text = (f"{report['num_images']} {report.get('split', '')} images: clean accuracy "
                f"{clean['accuracy']:.1%}")
        if worst is not None:
            severity = SEVERITY_NAMES.get(worst["severity"], "")
            text += (f"; the largest fall is {worst['family']}"
                     + (f" ({severity}: {worst['title']})" if worst["severity"] else "")
                     + f", to {worst['accuracy']:.1%}")
        if report["errors"]:
            text += f". {len(report['errors'])} file(s) could not be read: " + "; ".join(
                f"{error['path']} ({error['reason']})" for error in report["errors"][:3])
        self._summary = text + "."
        self._update_state()

    def _fit_table(self):
        """Give the table the width its columns need (up to two thirds), the chart the rest."""
        total = sum(self.splitter.sizes())
        if total <= 0:
            return  # not laid out yet: the stretch factors share the space
        self.table.resizeColumnsToContents()
        needed = (self.table.horizontalHeader().length() + self.table.verticalScrollBar().sizeHint().width()
                  + 2 * self.table.frameWidth() + 2)
        width = min(needed, total * 2 // 3)
        self.splitter.setSizes([width, total - width])

    @Slot()
    def clear(self):
        self._report = None
        self._note = ""
        self.table.clear()
        self.table.setRowCount(0)
        self.table.setColumnCount(len(FIXED_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(FIXED_COLUMNS))
        if self.canvas.is_built():  # else nothing was drawn yet
            self.figure.clear()
            self.canvas.draw_idle()
        self.lines = {}
        self._update_state()

    def _update_state(self):
        running = self._job is not None
        self.run_button.setEnabled(self.can_run() and not running)
        self.cancel_button.setEnabled(running and not self._job.stop_event.is_set())
        self.export_button.setEnabled(self._report is not None)
        self.progress.setVisible(running)
        if running:
            return  # the status says what is being checked
        if self._report is not None:
            self.status_label.setText(self._summary)
        elif self._training_active:
            self.status_label.setText(TRAINING_TEXT)
        elif not self.can_run():
            self.status_label.setText(NO_MODEL_TEXT)
        else:
            self.status_label.setText(self._note or READY_TEXT)

    # -- export -----------------------------------------------------------------------

    def _ask_csv_path(self):
        """Ask where to write the table (tests replace this). Returns "" if cancelled."""
        path, _filter = QFileDialog.getSaveFileName(self, "Export robustness check", "robustness.csv",
                                                    "CSV (*.csv)")
        return path

    @Slot()
    def _on_export_clicked(self):
        path = self._ask_csv_path()
        if not path:
            return
        from ..core.errors import ImgclsError

        try:
            self.export_csv(path)
        except (OSError, ImgclsError) as exc:
            message = (f"Could not write {path}: {exc.strerror or exc}." if isinstance(exc, OSError)
                       else str(exc))  # core's message names the file and the folder
            show_error(self, "Could not export the robustness check",
                       f"{message} Choose a folder you can write to.", traceback.format_exc())

    def export_csv(self, path):
        """One row per condition: corruption, severity, description, overall, each class, drop."""
        report = self._report
        from ..core.output_files import write_csv

        names = list(report["class_names"])
        rows = [["corruption", "severity", "description", "overall"] + names + ["drop"]]
        for row in report["conditions"]:
            values = [row["per_class"][name] for name in names]
            rows.append([row["family"], row["severity"], row["title"], f"{row['accuracy']:.6f}"]
                        + ["" if value is None else f"{value:.6f}" for value in values]
                        + [f"{row['drop']:.6f}"])
        write_csv(path, rows)  # whole or not at all
        return str(path)

