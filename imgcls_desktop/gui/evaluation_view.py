"""How good is the model: accuracy, per-class metrics, the confusion matrix, the mistakes.

The view only displays an :class:`core.evaluation.EvaluationReport`; computing one is
``core.evaluation.evaluate_folder``'s job (run it in a :class:`gui.jobs.Job`).

From the misclassified gallery and a cell's images the user can fix the data: move an image
to another class or to quarantine. The view only asks (``move_requested``); the window does
the move on disk (``core.data_fixes``) and tells the view (:meth:`EvaluationView.mark_moved`).
"""

import html
import json
import os
import traceback
from pathlib import Path

import shiboken6
from PySide6.QtCore import QPoint, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from . import engine
from ._qt import named, pixmap_from_array
from .jobs import Job, JobRunner
from .widgets.error_dialog import show_error, show_exception
from .widgets.lazy_canvas import LazyCanvas
from .widgets.thumbnails import ThumbnailGrid, fit_thumbnail

EMPTY_TEXT = "Train a model or open a model and a dataset to see how good it is."
TABLE_COLUMNS = ("Class", "Precision", "Recall", "F1", "Support")


def _plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _path_key(path):
    # The window reports moves with the journal's full paths; the report may spell the same
    # file differently (relative root, "..").
    return os.path.normcase(os.path.abspath(str(path)))


def _callback(function, *args):
    """A slot for ``triggered(bool)`` that calls ``function(*args)`` (GUI thread only)."""
    return lambda *_ignored: function(*args)


HEAT_MAP_PIXELS = 320


def _heat_map(loaded, path):
    """Grad-CAM of one image over the image itself (a worker job: it runs the model)."""
    import numpy as np  # numpy and matplotlib load after the window shows (start-up time)

    from ..core.explain import overlay_for_display
    from ..core.images import open_image

    explanation = engine.explain(loaded, path)  # Grad-CAM runs in the engine process
    confidence = float(explanation.probabilities[explanation.predicted_index])
    # The original is decoded here too: a large photo would stall the GUI thread.
    original = np.asarray(fit_thumbnail(open_image(path), HEAT_MAP_PIXELS))
    return original, overlay_for_display(path, explanation.heat), explanation.label, confidence


class HeatMapDialog(QDialog):
    """A non-modal window: one image beside its heat map, filled in when the job ends.

    Signals:
        heat_map_shown(str): The overlay is on screen; carries the image path.
    """

    heat_map_shown = Signal(str)

    def __init__(self, path, parent=None):
        super().__init__(parent)
        named(self, "heatMapDialog")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.path = str(path)
        self.setWindowTitle(f"Heat map — {Path(path).name}")
        self.original = named(QLabel(), "heatMapOriginal")
        self.picture = named(QLabel("Computing the heat map…"), "heatMapImage")
        for label in (self.original, self.picture):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setMinimumSize(HEAT_MAP_PIXELS, HEAT_MAP_PIXELS)
        self.caption = named(QLabel(), "heatMapCaption")
        self.caption.setWordWrap(True)
        pictures = QHBoxLayout()
        pictures.addWidget(self.original)
        pictures.addWidget(self.picture)
        layout = QVBoxLayout(self)
        layout.addLayout(pictures)
        layout.addWidget(self.caption)

    @Slot(object)
    def show_result(self, result):
        original, overlay, label, confidence = result
        self.original.setPixmap(pixmap_from_array(original, HEAT_MAP_PIXELS))
        self.picture.setPixmap(pixmap_from_array(overlay, HEAT_MAP_PIXELS))
        self.caption.setText(f"The model says <b>{label}</b> ({confidence:.0%}). Red marks where "
                             "the evidence for that answer lies (Grad-CAM).")
        self.heat_map_shown.emit(self.path)

    @Slot(object, str)
    def show_failure(self, exc, details):
        self.picture.setText("No heat map")
        self.caption.setText(str(exc))
        show_exception(self, "Could not draw the heat map", exc, details)


class ImageActions(QWidget):
    """Buttons acting on the images selected in a grid: move to a class, quarantine, heat map."""

    def __init__(self, view, grid, parent=None):
        super().__init__(parent)
        self.view = view
        self.grid = grid
        self.move_button = named(QPushButton("Move to class"), "moveToClassButton")
        self.class_menu = QMenu(self.move_button)
        self.class_menu.aboutToShow.connect(self._fill_class_menu)
        self.move_button.setMenu(self.class_menu)
        self.quarantine_button = named(QPushButton("Move to quarantine"), "quarantineButton")
        self.quarantine_button.setToolTip("Move the selected images out of the dataset, into "
                                          ".imgcls/quarantine inside the dataset folder (undoable)")
        self.quarantine_button.clicked.connect(self._on_quarantine)
        self.heat_button = named(QPushButton("Show heat map"), "heatMapButton")
        self.heat_button.setToolTip("Where the model looked for its answer (Grad-CAM)")
        self.heat_button.clicked.connect(self._on_heat_map)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for button in (self.move_button, self.quarantine_button, self.heat_button):
            layout.addWidget(button)
        grid.itemSelectionChanged.connect(self.refresh)
        self.refresh()

    def selected_paths(self):
        return [item.data(Qt.ItemDataRole.UserRole) for item in self.grid.selectedItems()]

    @Slot()
    def refresh(self):
        selected = bool(self.grid.selectedItems())
        self.move_button.setEnabled(selected)
        self.quarantine_button.setEnabled(selected)
        self.heat_button.setEnabled(selected and self.view.model() is not None)

    @Slot()
    def _fill_class_menu(self):
        self.class_menu.clear()
        self.view.add_move_actions(self.class_menu, self.selected_paths())

    @Slot()
    def _on_quarantine(self):
        self.view.request_move(self.selected_paths(), "")

    @Slot()
    def _on_heat_map(self):
        paths = self.selected_paths()
        if paths:
            self.view.show_heat_map(paths[0])


class ConfusionMatrixView(LazyCanvas):
    """Heat map of the confusion matrix: rows are true classes, columns predicted ones.

    Signals:
        cell_activated(int, int): A cell was clicked; carries (true_index, predicted_index).
    """

    cell_activated = Signal(int, int)

    def __init__(self, parent=None, show_colorbar=False):
        # matplotlib and the figure are made when the view is first shown or drawn.
        super().__init__(parent, figsize=(4, 4), layout="constrained")
        named(self, "confusionMatrix")
        self.show_colorbar = show_colorbar
        self.report = None
        self.axes = None
        self.setMinimumSize(QSize(240, 240))
        self.mpl_connect("button_press_event", self._on_button_press)

    def set_report(self, report):
        """Draw ``report``'s confusion matrix (None clears the canvas)."""
        self.report = report
        self.axes = None
        if report is None and not self.is_built():
            return  # nothing drawn yet: nothing to clear
        self.figure.clear()
        if report is not None:
            import numpy as np

            self._draw_matrix(np.asarray(report.confusion_matrix), list(report.class_names))
        self.draw_idle()

    def _draw_matrix(self, matrix, names):
        import numpy as np

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
        move_requested(str, str): Move this image to this class, or to quarantine when the
            class is "" (the window moves it, then calls :meth:`mark_moved`).
        undo_requested(): The user asked to undo the last move.
        retrain_requested(): The user asked to retrain on the corrected folder.
        heat_map_shown(str): A heat-map window shows its overlay; carries the image path.
    """

    report_exported = Signal(str, str)
    move_requested = Signal(str, str)
    undo_requested = Signal()
    retrain_requested = Signal()
    heat_map_shown = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        named(self, "evaluationView")
        self.report = None
        self._loaded = None  # the model heat maps are drawn with
        self._true_class = {}  # path key -> the image's class in the report
        self._cell_grids = []  # image grids of open cell dialogs
        self._moved = {}  # path key -> [(grid, row, taken item)], in the order of the moves
        self._runner = JobRunner(self)

        self._build()
        self.export_button.clicked.connect(self._on_export_clicked)
        self.confusion_matrix.cell_activated.connect(self._on_cell_activated)
        self.clear()

    def _build(self):
        """Make the widgets and lay them out; the constructor wires their signals."""
        self.empty_label = named(QLabel(EMPTY_TEXT), "evaluationEmptyState")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)

        self.headline = named(QLabel(), "evaluationHeadline")
        font = self.headline.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        self.headline.setFont(font)
        self.export_button = named(QPushButton("Export report…"), "exportReportButton")

        self.table = named(QTableWidget(0, len(TABLE_COLUMNS)), "perClassTable")
        self.table.setHorizontalHeaderLabels(TABLE_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        header_view = self.table.horizontalHeader()
        header_view.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header_view.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

        self.confusion_matrix = ConfusionMatrixView(self)

        self.gallery = ThumbnailGrid(parent=self)
        named(self.gallery, "misclassifiedGallery")
        self._make_fixable(self.gallery)
        self.gallery_label = named(QLabel("Misclassified images"), "misclassifiedLabel")
        self.gallery_actions = ImageActions(self, self.gallery)
        self._build_fix_bar()

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
        gallery_header = QHBoxLayout()
        gallery_header.addWidget(self.gallery_label, 1)
        gallery_header.addWidget(self.gallery_actions)
        gallery_layout.addLayout(gallery_header)
        gallery_layout.addWidget(self.gallery)
        vertical = QSplitter(Qt.Orientation.Vertical)
        vertical.addWidget(splitter)
        vertical.addWidget(gallery_box)

        content = QWidget()
        content_layout = QVBoxLayout(content)
        content_layout.addLayout(header)
        content_layout.addWidget(self.fix_bar)
        content_layout.addWidget(vertical, 1)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty_label)
        self.stack.addWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

    # -- showing ------------------------------------------------------------------------

    def show_report(self, report):
        """Display ``report`` (an :class:`core.evaluation.EvaluationReport`)."""
        self.report = report
        self._true_class = {_path_key(path): report.class_names[int(label)]
                            for path, label in zip(report.paths, report.y_true)}
        self._forget_moves()
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
        self._true_class = {}
        self._forget_moves()
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
        items = [(path, confidence) for path, confidence in self.report.cell_items(true_index, predicted_index)
                 if _path_key(path) not in self._moved]
        dialog = named(QDialog(self), "cellImagesDialog")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setWindowTitle(f"True {names[true_index]}, predicted {names[predicted_index]}"
                              f" — {_plural(len(items), 'image')}")
        grid = ThumbnailGrid(parent=dialog)
        named(grid, "cellImages")
        grid.set_entries((path, f"{Path(path).name} ({confidence:.0%})", path)
                         for path, confidence in items)
        self._make_fixable(grid)
        self._cell_grids = [alive for alive in self._cell_grids if shiboken6.isValid(alive)] + [grid]
        layout = QVBoxLayout(dialog)
        if not items:
            layout.addWidget(QLabel("No test image falls in this cell."))
        layout.addWidget(ImageActions(self, grid, dialog))
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

    # -- fixing the data ------------------------------------------------------------------

    def _make_fixable(self, grid):
        """Several images at once, and a context menu to move them or see a heat map."""
        grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        grid.customContextMenuRequested.connect(self._on_grid_menu_requested)
        grid.image_activated.connect(self._on_image_activated)

    def set_model(self, loaded):
        """The model heat maps are drawn with (a ``LoadedModel``), or None."""
        self._loaded = loaded
        for actions in self.findChildren(ImageActions):
            actions.refresh()

    def model(self):
        return self._loaded

    def image_menu(self, paths, parent=None):
        """The context menu for ``paths``: Move to class ▸, Move to quarantine, Show heat map, Open."""
        paths = [str(path) for path in paths]
        menu = QMenu(parent or self)
        menu.setObjectName("imageMenu")
        self.add_move_actions(menu.addMenu("Move to &class"), paths)
        quarantine = menu.addAction("Move to &quarantine")
        quarantine.triggered.connect(_callback(self.request_move, paths, ""))
        menu.addSeparator()
        heat = menu.addAction("Show &heat map")
        heat.setEnabled(self._loaded is not None)
        heat.triggered.connect(_callback(self.show_heat_map, paths[0]))
        menu.addAction("&Open image").triggered.connect(_callback(self._open_file, paths[0]))
        return menu

    def add_move_actions(self, menu, paths):
        """One action per class in ``menu``; the class all ``paths`` are in already is disabled."""
        current = {self._true_class.get(_path_key(path)) for path in paths}
        for name in (self.report.class_names if self.report is not None else []):
            action = menu.addAction(name)
            action.setEnabled(bool(paths) and current != {name})
            action.triggered.connect(_callback(self.request_move, list(paths), name))

    @Slot(QPoint)
    def _on_grid_menu_requested(self, position):
        grid = self.sender()
        item = grid.itemAt(position)
        if item is None:
            return
        if not item.isSelected():
            grid.setCurrentItem(item)  # right-click acts on the image under the pointer
        paths = [selected.data(Qt.ItemDataRole.UserRole) for selected in grid.selectedItems()]
        self._popup_menu(self.image_menu(paths, grid), grid.viewport().mapToGlobal(position))

    def _popup_menu(self, menu, global_position):
        """Show a context menu until it closes (tests replace this)."""
        menu.exec(global_position)

    def request_move(self, paths, class_name):
        """Ask the window to move each of ``paths`` to ``class_name`` ("" for quarantine)."""
        for path in paths:
            self.move_requested.emit(str(path), class_name or "")

    def show_heat_map(self, path):
        """Open a heat-map window for ``path``; the map is computed by a background job.

        Returns:
            The dialog, or None when there is no model to explain.
        """
        if self._loaded is None:
            show_error(self, "No model", "Train a model or open a .keras file to see heat maps.")
            return None
        dialog = HeatMapDialog(path, self)
        dialog.heat_map_shown.connect(self.heat_map_shown)
        dialog.resize(2 * HEAT_MAP_PIXELS + 60, HEAT_MAP_PIXELS + 90)
        dialog.show()
        self._runner.start(Job(_heat_map, self._loaded, str(path), uses_engine=True),
                           on_success=dialog.show_result, on_failure=dialog.show_failure)
        return dialog

    def _grids(self):
        self._cell_grids = [grid for grid in self._cell_grids if shiboken6.isValid(grid)]
        return [self.gallery, *self._cell_grids]

    def mark_moved(self, path, entry=None):
        """The window moved ``path`` on disk: take it out of the gallery and the cell windows.

        Args:
            path: The image as it was shown.
            entry: The journal entry (``core.data_fixes``), for the message.
        """
        key = _path_key(path)
        taken = []
        for grid in self._grids():
            for row in reversed(range(grid.count())):
                if _path_key(grid.item(row).data(Qt.ItemDataRole.UserRole)) == key:
                    taken.append((grid, row, grid.takeItem(row)))
        self._moved[key] = taken
        where = ""
        if entry is not None:
            where = (f"{Path(path).name} → quarantine" if entry.get("action") == "quarantine"
                     else f"{Path(path).name} → {entry.get('class')}")
        self._update_fix_bar(where)
        self._update_gallery_label()

    def mark_restored(self, path):
        """A move was undone and ``path`` is back: show it again where it was."""
        taken = self._moved.pop(_path_key(path), [])
        for grid, row, item in reversed(taken):
            if shiboken6.isValid(grid):
                grid.insertItem(min(row, grid.count()), item)
        self._update_fix_bar(f"{Path(path).name} is back")
        self._update_gallery_label()

    def _update_gallery_label(self):
        moved = sum(1 for taken in self._moved.values() for grid, _row, _item in taken if grid is self.gallery)
        self.gallery_label.setText(f"Misclassified images ({self.gallery.count()}"
                                   + (f"; {moved} moved away" if moved else "") + "), most confident first")

    def moved_count(self):
        """Images moved away since this report was shown (and not put back)."""
        return len(self._moved)

    def set_undo_available(self, available):
        """Whether the journal holds a move to undo (the window knows; the view asks it)."""
        self.undo_button.setEnabled(bool(available))

    def _build_fix_bar(self):
        self.fix_bar = named(QFrame(), "dataFixBar")
        self.fix_bar.setFrameShape(QFrame.Shape.StyledPanel)
        self.fix_bar.setStyleSheet("#dataFixBar { background: #fff6d5; border: 1px solid #e3c565; "
                                   "border-radius: 4px; }")
        self.fix_label = named(QLabel(), "dataFixStatus")
        self.undo_button = named(QPushButton("Undo"), "undoMoveButton")
        self.undo_button.setToolTip("Put back the last image moved (Edit ▸ Undo move, Ctrl+Z)")
        self.undo_button.setEnabled(False)
        self.undo_button.clicked.connect(self.undo_requested)
        self.retrain_button = named(QPushButton("Retrain on corrected folder"), "retrainButton")
        self.retrain_button.setToolTip("Rescan the dataset folder and train with the Train view's settings")
        self.retrain_button.clicked.connect(self.retrain_requested)
        layout = QHBoxLayout(self.fix_bar)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self.fix_label, 1)
        layout.addWidget(self.undo_button)
        layout.addWidget(self.retrain_button)
        self.fix_bar.hide()

    def _update_fix_bar(self, last=""):
        count = len(self._moved)
        text = f"<b>{_plural(count, 'image')} moved</b>" if count else "<b>Moves undone</b>"
        if last:
            text += f" (last: {html.escape(last)})"
        self.fix_label.setText(text + " — the files changed on disk; retrain to learn from them:")
        self.fix_bar.show()

    def _forget_moves(self):
        self._moved = {}
        self.fix_bar.hide()

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
        from ..core.errors import ImgclsError

        try:
            self.export_report(path)
        except (OSError, ImgclsError) as exc:
            message = (f"Could not write {path}: {exc.strerror or exc}." if isinstance(exc, OSError)
                       else str(exc))  # core's message names the file and the folder
            show_error(self, "Could not export the report",
                       f"{message} Choose a folder you can write to.", traceback.format_exc())

    def export_report(self, path):
        """Write the report as JSON at ``path`` and the per-class table as CSV beside it.

        Returns:
            ``(json_path, csv_path)``; the CSV is ``<name>_per_class.csv``.
        """
        from ..core.output_files import write_atomic, write_csv

        json_path = Path(path)
        if json_path.suffix.lower() != ".json":
            json_path = json_path.with_name(json_path.name + ".json")
        csv_path = json_path.with_name(json_path.stem + "_per_class.csv")
        # Whole files or none (core.output_files); json.dumps' ASCII escapes keep any name.
        write_atomic(json_path, json.dumps(self.report.to_dict(), indent=2))
        rows = [["class", "precision", "recall", "f1", "support"]]
        for name, metrics in self.report.per_class().items():
            rows.append([name, f"{metrics['precision']:.6f}", f"{metrics['recall']:.6f}",
                         f"{metrics['f1']:.6f}", metrics["support"]])
        write_csv(csv_path, rows)
        self.report_exported.emit(str(json_path), str(csv_path))
        return str(json_path), str(csv_path)
