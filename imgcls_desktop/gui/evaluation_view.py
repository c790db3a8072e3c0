"""How good is the model: accuracy, per-class metrics, the confusion matrix, the mistakes.

The view only displays an :class:`core.evaluation.EvaluationReport`; computing one is
``core.evaluation.evaluate_folder``'s job (run it in a :class:`gui.jobs.Job`).
"""

import csv
import json
import traceback
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QFileDialog, QHBoxLayout,
                               QHeaderView, QLabel, QPushButton, QSplitter, QStackedWidget,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .error_dialog import show_error
from .thumbnails import ThumbnailGrid

EMPTY_TEXT = "Train a model or open a model and a dataset to see how good it is."
TABLE_COLUMNS = ("Class", "Precision", "Recall", "F1", "Support")


def _name(widget, name):
    widget.setObjectName(name)
    widget.setAccessibleName(name)
    return widget


def _plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class ConfusionMatrixView(FigureCanvasQTAgg):
    """Heat map of the confusion matrix: rows are true classes, columns predicted ones.

    Signals:
        cell_activated(int, int): A cell was clicked; carries (true_index, predicted_index).
    """

    cell_activated = Signal(int, int)

    def __init__(self, parent=None, show_colorbar=False):
        self.figure = Figure(figsize=(4, 4), layout="constrained")
        super().__init__(self.figure)
        self.setParent(parent)
        _name(self, "confusionMatrix")
        self.show_colorbar = show_colorbar
        self.report = None
        self.axes = None
        self.setMinimumSize(QSize(240, 240))
        self.mpl_connect("button_press_event", self._on_button_press)

    def set_report(self, report):
        """Draw ``report``'s confusion matrix (None clears the canvas)."""
        self.report = report
        self.figure.clear()
        self.axes = None
        if report is not None:
            self._draw_matrix(np.asarray(report.confusion_matrix), list(report.class_names))
        self.draw_idle()

    def _draw_matrix(self, matrix, names):
        axes = self.axes = self.figure.add_subplot()
        image = axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, int(matrix.max())))
        count = len(names)
        # Counts stay legible up to a few dozen classes; past that they only clutter.
        if count <= 30:
            threshold = matrix.max() / 2 if matrix.size else 0
            font_size = 10 if count <= 8 else 7 if count <= 15 else 5
            for (row, column), value in np.ndenumerate(matrix):
                colour = "white" if value > threshold else "black"
                axes.text(column, row, str(int(value)), ha="center", va="center",
                          color=colour, fontsize=font_size)
        long_names = count > 4 or max((len(name) for name in names), default=0) > 6
        axes.set_xticks(range(count), labels=names, rotation=45 if long_names else 0,
                        ha="right" if long_names else "center", rotation_mode="anchor")
        axes.set_yticks(range(count), labels=names)
        axes.set_xlabel("Predicted class")
        axes.set_ylabel("True class")
        if self.show_colorbar:
            self.figure.colorbar(image, ax=axes)

    def cell_at(self, xdata, ydata):
        """The (true_index, predicted_index) cell under data coordinates, or None."""
        if self.report is None or xdata is None or ydata is None:
            return None
        count = len(self.report.class_names)
        column, row = int(round(xdata)), int(round(ydata))
        if 0 <= row < count and 0 <= column < count:
            return row, column
        return None

    def activate_cell(self, true_index, predicted_index):
        """Act as if the user clicked a cell (tests, keyboard navigation)."""
        self.cell_activated.emit(int(true_index), int(predicted_index))

    def _on_button_press(self, event):
        if self.axes is None or event.inaxes is not self.axes or event.button != 1:
            return
        cell = self.cell_at(event.xdata, event.ydata)
        if cell is not None:
            self.activate_cell(*cell)


class _NumberItem(QTableWidgetItem):
    """A table cell that shows a formatted number and sorts by its value."""

    def __init__(self, value, text):
        super().__init__(text)
        self.value = value
        self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other):
        if isinstance(other, _NumberItem):
            return self.value < other.value
        return super().__lt__(other)


class EvaluationView(QWidget):
    """Shows an evaluation report: headline, per-class table, confusion matrix, mistakes.

    Signals:
        report_exported(str, str): The report was written; carries the JSON and CSV paths.
    """

    report_exported = Signal(str, str)

    def __init__(self, parent=None):
        super().__init__(parent)
        _name(self, "evaluationView")
        self.report = None
        self._dialogs = []

        self.empty_label = _name(QLabel(EMPTY_TEXT), "evaluationEmptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)

        self.headline = _name(QLabel(), "evaluationHeadline")
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.headline.setFont(font)
        self.export_button = _name(QPushButton("Export report…"), "exportReportButton")
        self.export_button.clicked.connect(self._on_export_clicked)

        self.table = _name(QTableWidget(0, len(TABLE_COLUMNS)), "perClassTable")
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        header_view = self.table.horizontalHeader()
        header_view.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header_view.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

        self.confusion_matrix = ConfusionMatrixView(self)
        self.confusion_matrix.cell_activated.connect(self._on_cell_activated)

        self.gallery = ThumbnailGrid(parent=self)
        _name(self.gallery, "misclassifiedGallery")
        self.gallery.image_activated.connect(self._on_image_activated)
        self.gallery_label = _name(QLabel("Misclassified images"), "misclassifiedLabel")

        header = QHBoxLayout()
        header.addWidget(self.headline, 1)
        header.addWidget(self.export_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.table)
        splitter.addWidget(self.confusion_matrix)
        splitter.setSizes([400, 400])
        gallery_box = QWidget()
        gallery_layout = QVBoxLayout(gallery_box)
        gallery_layout.setContentsMargins(0, 0, 0, 0)
        gallery_layout.addWidget(self.gallery_label)
        gallery_layout.addWidget(self.gallery)
        vertical = QSplitter(Qt.Orientation.Vertical)
        vertical.addWidget(splitter)
        vertical.addWidget(gallery_box)

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.addLayout(header)
        content_layout.addWidget(vertical, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.clear()

    # -- showing ------------------------------------------------------------------------

    def show_report(self, report):
        """Display ``report`` (an :class:`core.evaluation.EvaluationReport`)."""
        self.report = report
        self.headline.setText(self._headline_text(report))
        self._fill_table(report)
        self.confusion_matrix.set_report(report)
        mistakes = report.misclassified()
        self.gallery_label.setText(
            f"Misclassified images ({len(mistakes)}), most confident first" if mistakes
            else "No misclassified images: every test image was classified correctly.")
        self.gallery.set_entries(
            (row["path"], f"{row['true']} → {row['predicted']} ({row['confidence']:.0%})",
             row["path"])
            for row in mistakes
        )
        self.export_button.setEnabled(True)
        self.stack.setCurrentIndex(1)

    def clear(self):
        """Forget the report and show the empty state."""
        self.report = None
        self.headline.clear()
        self.table.setRowCount(0)
        self.confusion_matrix.set_report(None)
        self.gallery.set_entries([])
        self.export_button.setEnabled(False)
        self.stack.setCurrentIndex(0)

    @staticmethod
    def _headline_text(report):
        count = len(report.y_true)
        images = f"{count} test image" if report.split == "test" else f"{count} image"
        text = f"Accuracy {report.accuracy:.1%} on {images}{'' if count == 1 else 's'}"
        if report.errors:
            text += f" ({_plural(len(report.errors), 'file')} could not be read)"
        return text

    def _fill_table(self, report):
        # Sorting while rows are inserted scatters each row's cells; switch it off meanwhile.
        self.table.setSortingEnabled(False)
        rows = report.per_class()
        self.table.setRowCount(len(rows))
        for row, (name, metrics) in enumerate(rows.items()):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            for column, key in enumerate(("precision", "recall", "f1"), start=1):
                self.table.setItem(row, column, _NumberItem(metrics[key], f"{metrics[key]:.3f}"))
            self.table.setItem(row, 4, _NumberItem(metrics["support"], str(metrics["support"])))
        # Rows start in the model's class order (as in the matrix) until a header is clicked.
        self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSortingEnabled(True)

    # -- confusion cells and images -----------------------------------------------------

    @Slot(int, int)
    def _on_cell_activated(self, true_index, predicted_index):
        self.open_cell_images(true_index, predicted_index)

    def open_cell_images(self, true_index, predicted_index):
        """Open a non-modal dialog with the images behind one confusion-matrix cell.

        Returns:
            The dialog (already shown), or None when no report is displayed.
        """
        if self.report is None:
            return None
        names = self.report.class_names
        items = self.report.cell_items(true_index, predicted_index)
        dialog = _name(QDialog(self), "cellImagesDialog")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowTitle(f"True {names[true_index]}, predicted {names[predicted_index]}"
                              f" — {_plural(len(items), 'image')}")
        grid = ThumbnailGrid(parent=dialog)
        _name(grid, "cellImages")
        grid.set_entries((path, f"{Path(path).name} ({confidence:.0%})", path)
                         for path, confidence in items)
        grid.image_activated.connect(self._on_image_activated)
        layout = QVBoxLayout(dialog)
        if not items:
            layout.addWidget(QLabel("No test image falls in this cell."))
        layout.addWidget(grid)
        dialog.resize(640, 480)
        dialog.show()
        return dialog

    @Slot(str)
    def _on_image_activated(self, path):
        self._open_file(path)

    def _open_file(self, path):
        """Open an image in the system viewer (tests replace this)."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    # -- export -------------------------------------------------------------------------

    def _ask_save_path(self):
        """Ask where to save the report (tests replace this). Returns "" if cancelled."""
        path, _filter = QFileDialog.getSaveFileName(self, "Export evaluation report",
                                                    "evaluation.json", "JSON report (*.json)")
        return path

    @Slot()
    def _on_export_clicked(self):
        if self.report is None:
            return
        path = self._ask_save_path()
        if not path:
            return
        try:
            self.export_report(path)
        except OSError as exc:
            show_error(self, "Could not export the report",
                       f"Could not write {path}: {exc.strerror or exc}. "
                       "Choose a folder you can write to.", traceback.format_exc())

    def export_report(self, path):
        """Write the report as JSON at ``path`` and the per-class table as CSV beside it.

        Returns:
            ``(json_path, csv_path)``; the CSV is ``<name>_per_class.csv``.
        """
        json_path = Path(path)
        if json_path.suffix.lower() != ".json":
            json_path = json_path.with_name(json_path.name + ".json")
        csv_path = json_path.with_name(json_path.stem + "_per_class.csv")
        json_path.write_text(json.dumps(self.report.to_dict(), indent=2), encoding="utf-8")
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["class", "precision", "recall", "f1", "support"])
            for name, metrics in self.report.per_class().items():
                writer.writerow([name, f"{metrics['precision']:.6f}", f"{metrics['recall']:.6f}",
                                 f"{metrics['f1']:.6f}", metrics["support"]])
        self.report_exported.emit(str(json_path), str(csv_path))
        return str(json_path), str(csv_path)
