"""Check dataset: duplicates, train/test leakage, class balance and likely mislabels.

The view shows what ``core.doctor.doctor_report`` and ``core.mislabels.find_mislabels``
find; both run as background jobs (the mislabel search trains models, so it queues with
the engine). A suspect can be moved to the class the held-out model saw in it, or to
quarantine, through ``core.data_fixes`` (journaled, undoable with Edit ▸ Undo move); the
window then rescans the folder, which it owns.
"""

import os
from pathlib import Path

from PySide6.QtCore import QPoint, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QDesktopServices, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import Cancelled, ImgclsError
from ..core.paths import relative_posix
from . import engine
from ._qt import named
from .jobs import Job, JobRunner
from .widgets import error_dialog
from .widgets.thumbnails import load_thumbnails, placeholder_pixmap

THUMBNAIL_SIZE = 56
MAX_STRIP = 4  # thumbnails side by side in one duplicate group (the rest: "+N")
_PATHS_ROLE = Qt.ItemDataRole.UserRole
_WIDTH_ROLE = Qt.ItemDataRole.UserRole + 1  # strip cells: the width of their thumbnails
_GAP = 4
FIND_TIP = ("Train a small model on all folds but one, once per fold, and list the images that the "
            "model which never saw them puts in another class")


def _table(name, headers):
    table = named(QTableWidget(0, len(headers)), name)
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().hide()
    table.horizontalHeader().setStretchLastSection(True)
    return table



def _check(scan, on_progress=None, stop_event=None):
    from ..core.doctor import doctor_report

    return doctor_report(scan, on_progress=on_progress, stop_event=stop_event)


class _JobRow(QWidget):
    """A button, a progress bar and a Cancel button: one background task's controls."""

    def __init__(self, button, name):
        super().__init__()
        self.button = button
        self.progress = named(QProgressBar(), f"{name}Progress")
        self.cancel = named(QPushButton("Cancel"), f"{name}CancelButton")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(button)
        layout.addWidget(self.progress, 10)
        layout.addWidget(self.cancel)
        layout.addStretch(1)  # keeps the controls compact while the bar is hidden
        self.set_running(False)

    def set_running(self, running, text=""):
        self.button.setEnabled(not running)
        self.progress.setVisible(running)
        self.cancel.setVisible(running)
        if running:
            self.progress.setRange(0, 0)
            self.progress.setFormat(text)

    def show_progress(self, done, total, text):
        self.progress.setFormat(text)
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)


class DoctorView(QWidget):
    """The dataset doctor's panel (a tab of the dataset browser).

    Signals:
        report_ready(dict): The duplicate/leakage/imbalance check finished; its report.
        mislabels_found(list): The mislabel search finished; its ``Suspect`` list.
        class_weights_requested(): "Train with these class weights" was pressed.
        files_moved(dict): An image was moved on disk; the ``core.data_fixes`` journal entry.
    """

    report_ready = Signal(object)
    mislabels_found = Signal(object)
    class_weights_requested = Signal()
    files_moved = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        named(self, "doctorView")
        self._runner = JobRunner(self)
        self._scan = None
        self._report = None
        self._suspects = []
        self._check_job = None
        self._search_job = None
        self._search_epochs = 1
        self._training = False
        # One request number per kind ("report", "suspects"): a result whose number is no
        # longer current belongs to rows that were replaced since.
        self._thumbnail_generations = {"report": 0, "suspects": 0}
        self._build()
        self._show_scan_state()

    # -- layout ---------------------------------------------------------------------
    def _build(self):
        self.summary_label = named(QLabel(), "doctorSummary")
        self.summary_label.setWordWrap(True)
        self.check_button = named(QPushButton("Check dataset"), "doctorCheckButton")
        self.check_button.setToolTip("Look for exact and near-duplicate images (perceptual hash), "
                                     "train/test leakage and class imbalance")
        self.check_button.clicked.connect(self.run_check)
        self.check_row = _JobRow(self.check_button, "doctorCheck")
        self.check_row.cancel.clicked.connect(self.cancel_check)

        self.balance_label = named(QLabel(), "balanceSummary")
        self.balance_label.setWordWrap(True)
        self.balance_table = _table("balanceTable", ["Class", "Training images", "Suggested weight"])
        self.class_weights_button = named(QPushButton("Train with these class weights"),
                                           "classWeightsButton")
        self.class_weights_button.setToolTip("Turn on \"Balance classes (class weights)\" in the Train view "
                                             "and go there")
        self.class_weights_button.clicked.connect(self.class_weights_requested)
        balance = self._group("Class balance", "balanceGroup",
                              self.balance_label, self.balance_table, self.class_weights_button)

        self.duplicate_table = _table("nearDuplicateTable", ["Images", "What"])
        self.duplicate_table.itemDoubleClicked.connect(self._on_double_clicked)
        self.duplicates_group = self._group("Duplicates and near-duplicates", "duplicatesGroup",
                                            self.duplicate_table)
        self.leakage_table = _table("leakageTable", ["Images", "Training image ~ evaluation image"])
        self.leakage_table.itemDoubleClicked.connect(self._on_double_clicked)
        self.leakage_group = self._group("Train/test leakage", "leakageGroup", self.leakage_table)
        for table in (self.duplicate_table, self.leakage_table):
            table.setIconSize(QSize(MAX_STRIP * (THUMBNAIL_SIZE + _GAP), THUMBNAIL_SIZE))
            table.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE + 12)  # three lines of text
            table.setColumnWidth(0, 2 * (THUMBNAIL_SIZE + _GAP) + 12)
            table.setWordWrap(True)

        self.folds_spin = named(QSpinBox(), "foldsSpin")
        self.folds_spin.setRange(2, 10)
        self.folds_spin.setValue(3)
        self.folds_spin.setPrefix("folds ")
        self.epochs_spin = named(QSpinBox(), "mislabelEpochsSpin")
        self.epochs_spin.setRange(1, 200)
        self.epochs_spin.setValue(10)
        self.epochs_spin.setPrefix("epochs ")
        self.find_button = named(QPushButton("Find likely mislabels"), "findMislabelsButton")
        self.find_button.setToolTip(FIND_TIP)
        self.find_button.clicked.connect(self.find_mislabels)
        self.search_row = _JobRow(self.find_button, "mislabel")
        self.search_row.cancel.clicked.connect(self.cancel_search)
        self.search_row.layout().insertWidget(0, self.folds_spin)
        self.search_row.layout().insertWidget(1, self.epochs_spin)
        for widget in (self.folds_spin, self.epochs_spin, self.find_button):
            widget.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        self.mislabel_label = named(QLabel(), "mislabelStatus")
        self.mislabel_label.setWordWrap(True)
        self.suspect_table = _table("suspectTable", ["Image", "File", "Folder", "Looks like", "Confidence"])
        self.suspect_table.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.suspect_table.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE + 6)
        self.suspect_table.setColumnWidth(0, THUMBNAIL_SIZE + 14)
        self.suspect_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.suspect_table.horizontalHeader().setStretchLastSection(False)
        self.suspect_table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.suspect_table.customContextMenuRequested.connect(self._on_suspect_menu_requested)
        self.suspect_table.itemDoubleClicked.connect(self._on_double_clicked)
        self.mislabels_group = self._group("Likely mislabels", "mislabelsGroup", self.search_row,
                                           self.mislabel_label, self.suspect_table)

        # The balance in a plain layout: its wrapped text keeps its height there, which a
        # splitter does not guarantee.
        tables = QSplitter(Qt.Orientation.Vertical)
        tables.addWidget(self.duplicates_group)
        tables.addWidget(self.leakage_group)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(balance)
        left_layout.addWidget(tables, 1)
        columns = QSplitter(Qt.Orientation.Horizontal)
        columns.addWidget(left)
        columns.addWidget(self.mislabels_group)
        columns.setStretchFactor(1, 1)
        columns.setSizes([500, 580])
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addWidget(self.summary_label, 1)
        top.addWidget(self.check_row)
        layout.addLayout(top)
        layout.addWidget(columns, 1)

    def _group(self, title, name, *widgets):
        group = named(QGroupBox(title), name)
        layout = QVBoxLayout(group)
        for widget in widgets:
            layout.addWidget(widget)
        return group

    # -- state ----------------------------------------------------------------------
    def scan(self):
        return self._scan

    def report(self):
        """The last doctor report shown (a dict), or None."""
        return self._report

    def suspects(self):
        """The suspects listed (``core.mislabels.Suspect``), in table order."""
        return list(self._suspects)

    def is_busy(self):
        """Whether a check, a search or thumbnail decoding is still running."""
        return self._runner.active() > 0

    def is_checking(self):
        return self._check_job is not None

    def is_searching(self):
        return self._search_job is not None

    def set_scan(self, scan):
        """Show ``scan`` (a ``DatasetScan``, or None).

        A rescan of the same folder (after a move) keeps the suspects still there and runs
        the check again if one was shown; another folder starts afresh.
        """
        same_folder = scan is not None and self._scan is not None and scan.root == self._scan.root
        self._scan = scan
        if not same_folder:
            self.cancel_check()
            self.cancel_search()
            self._report = None
            self.check_button.setText("Check dataset")
            self._show_report_tables(None)
            self._suspects = []
            self.suspect_table.setRowCount(0)
            self.mislabels_group.setTitle("Likely mislabels")
            self.mislabel_label.setText("")
        self._show_balance()
        if scan is None:
            self._show_scan_state()
            return
        if same_folder:
            present = {str(item.path) for item in scan.splits.get(scan.training_split_name(), [])}
            kept = [suspect for suspect in self._suspects if suspect.path in present]
            if len(kept) != len(self._suspects):
                self._show_suspects(kept)
            if self._report is not None:
                self.run_check()
        elif self.isVisible():
            self.check_if_needed()
        self._show_scan_state()

    def check_if_needed(self):
        """Run the check unless this dataset has a report or a check running."""
        if self._scan is not None and self._report is None and self._check_job is None:
            self.run_check()

    def showEvent(self, event):
        # Hashing every image is not free: the check runs when someone looks, not on every scan.
        super().showEvent(event)
        self.check_if_needed()

    def set_training_active(self, active):
        """While a model trains the search would wait for it, and its files must stay put."""
        self._training = bool(active)
        self._show_scan_state()

    def _show_scan_state(self):
        has_scan = self._scan is not None
        self.check_button.setEnabled(has_scan and self._check_job is None)
        searching = self._search_job is not None
        self.find_button.setEnabled(has_scan and not searching and not self._training)
        self.find_button.setToolTip("Stop training first: the search trains models too" if self._training
                                    else FIND_TIP)
        if not has_scan:
            self.summary_label.setText("Open a dataset folder to check it.")
        elif self._report is None and self._check_job is None:
            self.summary_label.setText("Press <b>Check dataset</b> to look for duplicates and leakage.")

    # -- duplicates, leakage, imbalance -----------------------------------------------
    @Slot()
    def run_check(self):
        """Hash every image in the background and show what the doctor finds."""
        if self._scan is None:
            return None
        self.cancel_check()
        job = Job(_check, self._scan, with_progress=True)
        self._check_job = job
        self.check_row.set_running(True, "Reading images…")
        self.summary_label.setText(f"Checking {self._scan.num_images} images…")
        self._show_scan_state()
        return self._runner.start(job, on_success=self._on_check_done, on_failure=self._on_check_failed,
                                  on_progress=self._on_check_progress)

    @Slot()
    def cancel_check(self):
        if self._check_job is not None:
            self._check_job.cancel()
            self._check_job = None
            self.check_row.set_running(False)
            self.summary_label.setText("Check cancelled.")
            self._show_scan_state()

    def _current(self, job):
        return job is not None and self.sender() is job.signals

    @Slot(int, int)
    def _on_check_progress(self, done, total):
        if self._current(self._check_job):
            self.check_row.show_progress(done, total, f"Hashing {done}/{total} images")

    @Slot(object)
    def _on_check_done(self, report):
        if not self._current(self._check_job):
            return
        self._check_job = None
        self.check_row.set_running(False)
        self.check_button.setText("Check again")
        self._report = report
        self._show_report_tables(report)
        duplicates, leaks = len(report["near_duplicates"]), len(report["leakage"])
        conflicts = len(report["label_conflicts"])
        text = (f"{report['num_images']} images checked in {report['seconds']:.1f} s: "
                f"{duplicates} duplicate group(s), {leaks} train/test leak(s)")
        if conflicts:
            text += f", {conflicts} near-duplicate pair(s) filed under different classes"
        if report["errors"]:
            text += f"; {len(report['errors'])} file(s) could not be read"
        self.summary_label.setText(text + ".")
        self._show_scan_state()
        self.report_ready.emit(report)

    @Slot(object, str)
    def _on_check_failed(self, exc, details):
        if not self._current(self._check_job):
            return
        self._check_job = None
        self.check_row.set_running(False)
        if isinstance(exc, Cancelled):
            self.summary_label.setText("Check cancelled.")
        else:
            self.summary_label.setText(f"Check failed: {exc}")
            error_dialog.show_exception(self, "Dataset check failed", exc, details)
        self._show_scan_state()

    def _show_balance(self):
        from ..core.doctor import imbalance_report

        self.balance_table.setRowCount(0)
        if self._scan is None:
            self.balance_label.setText("")
            self.class_weights_button.setEnabled(False)
            return
        imbalance = imbalance_report(self._scan)
        weights = imbalance["class_weight_by_name"]
        for name, count in imbalance["counts"].items():
            row = self.balance_table.rowCount()
            self.balance_table.insertRow(row)
            weight = f"{weights[name]:.2f}" if name in weights else "no images"
            for column, text in enumerate((name, str(count), weight)):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.balance_table.setItem(row, column, item)
        self.balance_table.resizeColumnsToContents()
        # Tall enough for every class up to eight; beyond that it scrolls.
        rows = min(8, max(2, self.balance_table.rowCount()))
        self.balance_table.setFixedHeight(self.balance_table.horizontalHeader().height()
                                          + rows * self.balance_table.verticalHeader().defaultSectionSize()
                                          + 2 * self.balance_table.frameWidth() + 2)
        ratio = imbalance["ratio"]
        if ratio is None:
            text = "No class has training images."
        elif imbalance["weighting_suggested"]:
            text = (f"<b>Imbalanced:</b> the largest class has {ratio:.1f}x the images of the smallest. "
                    "Training with these weights (inverse frequency) makes every class count the same.")
        else:
            text = f"Balanced enough (largest/smallest {ratio:.2f}); class weights change little."
        self.balance_label.setText(text)
        self.class_weights_button.setEnabled(len(weights) >= 2)

    def _show_report_tables(self, report):
        for table in (self.duplicate_table, self.leakage_table):
            table.setRowCount(0)
        groups = report["near_duplicates"] if report else []
        leaks = report["leakage"] if report else []
        root = self._scan.root if self._scan is not None else ""
        for group in groups:
            count = len(group["paths"])
            lines = [f"{count} exact copies" if group["exact"]
                     else f"{count} near-duplicates (≤ {group['max_distance']} bits)"]
            classes = sorted(set(group["classes"]))
            lines.append(f"classes differ: {', '.join(classes)}" if len(classes) > 1
                         else f"class {classes[0]}")
            splits = sorted(set(group["splits"]))
            if len(splits) > 1:
                lines.append(f"splits {', '.join(splits)}")
            files = "\n".join(relative_posix(path, root) for path in group["paths"])
            self._add_strip_row(self.duplicate_table, group["paths"], "\n".join(lines), files)
        for leak in leaks:
            relation = "same class" if leak["same_class"] else "different classes"
            closeness = "exact copy" if leak["exact"] else f"distance {leak['distance']}"
            text = (f"{relative_posix(leak['train'], root)}\n~ {relative_posix(leak['other'], root)}\n"
                    f"{leak['other_split']} split, {closeness}, {relation}")
            self._add_strip_row(self.leakage_table, [leak["train"], leak["other"]], text, text)
        self.duplicates_group.setTitle(f"Duplicates and near-duplicates ({len(groups)})" if report
                                       else "Duplicates and near-duplicates")
        self.leakage_group.setTitle(f"Train/test leakage ({len(leaks)})" if report else "Train/test leakage")
        for table in (self.duplicate_table, self.leakage_table):
            width = max([table.item(row, 0).data(_WIDTH_ROLE) for row in range(table.rowCount())] or [0])
            table.setColumnWidth(0, max(2 * (THUMBNAIL_SIZE + _GAP), width) + 12)
        self._load_thumbnails("report", [path for group in groups for path in group["paths"][:MAX_STRIP]]
                              + [path for leak in leaks for path in (leak["train"], leak["other"])])

    def _add_strip_row(self, table, paths, text, tooltip):
        row = table.rowCount()
        table.insertRow(row)
        shown = list(paths[:MAX_STRIP])
        strip = QTableWidgetItem(f"+{len(paths) - len(shown)}" if len(paths) > len(shown) else "")
        strip.setData(_PATHS_ROLE, shown)
        strip.setData(_WIDTH_ROLE, len(shown) * (THUMBNAIL_SIZE + _GAP))
        strip.setToolTip("\n".join(str(path) for path in paths))
        strip.setIcon(QIcon(_strip({}, shown)))
        info = QTableWidgetItem(text)
        info.setData(_PATHS_ROLE, list(paths))
        info.setToolTip(tooltip)
        table.setItem(row, 0, strip)
        table.setItem(row, 1, info)

    # -- likely mislabels ------------------------------------------------------------
    @Slot()
    def find_mislabels(self):
        """Run the out-of-fold mislabel search in the background (it trains small models)."""
        if self._scan is None or self._search_job is not None or self._training:
            return None
        folds, epochs = self.folds_spin.value(), self.epochs_spin.value()
        # The fold models train in the engine process.
        job = Job(engine.find_mislabels, self._scan, folds, epochs, with_progress=True, uses_engine=True)
        self._search_job = job
        self._search_epochs = epochs
        self.search_row.set_running(True, "Starting…")
        self.mislabel_label.setText(f"Training {folds} models, each on all folds but one…")
        self._show_scan_state()
        return self._runner.start(job, on_success=self._on_search_done, on_failure=self._on_search_failed,
                                  on_progress=self._on_search_progress)

    @Slot()
    def cancel_search(self):
        if self._search_job is not None:
            self._search_job.cancel()
            self._search_job = None
            self.search_row.set_running(False)
            self.mislabel_label.setText("Search cancelled.")
            self._show_scan_state()

    @Slot(int, int)
    def _on_search_progress(self, done, total):
        if not self._current(self._search_job):
            return
        epochs = self._search_epochs
        folds = max(1, total // epochs)
        fold = max(1, min(folds, (done - 1) // epochs + 1))
        epoch = done - (fold - 1) * epochs
        self.search_row.show_progress(done, total, f"Fold {fold}/{folds} · epoch {epoch}/{epochs}")

    @Slot(object)
    def _on_search_done(self, suspects):
        if not self._current(self._search_job):
            return
        self._search_job = None
        self.search_row.set_running(False)
        # Files moved while the search ran are no longer where it found them.
        suspects = [suspect for suspect in suspects if os.path.exists(suspect.path)]
        self._show_suspects(suspects)
        self._show_scan_state()
        self.mislabels_found.emit(suspects)

    @Slot(object, str)
    def _on_search_failed(self, exc, details):
        if not self._current(self._search_job):
            return
        self._search_job = None
        self.search_row.set_running(False)
        if isinstance(exc, Cancelled):
            self.mislabel_label.setText("Search cancelled.")
        else:
            self.mislabel_label.setText(f"Search failed: {exc}")
            error_dialog.show_exception(self, "Mislabel search failed", exc, details)
        self._show_scan_state()

    def _show_suspects(self, suspects):
        self._suspects = list(suspects)
        table = self.suspect_table
        table.setRowCount(0)
        root = self._scan.root if self._scan is not None else ""
        placeholder = QIcon(placeholder_pixmap(THUMBNAIL_SIZE))
        for suspect in self._suspects:
            row = table.rowCount()
            table.insertRow(row)
            texts = ("", relative_posix(suspect.path, root), suspect.folder_class, suspect.predicted_class,
                     f"{suspect.confidence:.0%}")
            for column, text in enumerate(texts):
                item = QTableWidgetItem(text)
                item.setData(_PATHS_ROLE, [suspect.path])
                item.setToolTip(f"{suspect.path}\nin '{suspect.folder_class}' "
                                f"({suspect.folder_class_probability:.0%} by a model that never saw it), "
                                f"looks like '{suspect.predicted_class}' ({suspect.confidence:.0%})")
                if column == 0:
                    item.setIcon(placeholder)
                if column == 4:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, column, item)
        for column in (2, 3, 4):
            table.resizeColumnToContents(column)
        self.mislabels_group.setTitle(f"Likely mislabels ({len(self._suspects)})")
        if self._suspects:
            examined = len(self._scan.splits.get(self._scan.training_split_name(), [])) if self._scan else 0
            self.mislabel_label.setText(
                f"{len(self._suspects)} of {examined} training images look like another class to a model "
                "that never saw them (most confident first). Right-click one to move it.")
        else:
            self.mislabel_label.setText("No likely mislabels: every held-out prediction agrees with its "
                                        "folder, or is unsure.")
        self._load_thumbnails("suspects", [suspect.path for suspect in self._suspects])

    def suspect_menu(self, row, parent=None):
        """The context menu of suspect ``row``: move it to its predicted class or to quarantine."""
        suspect = self._suspects[row]
        menu = named(QMenu(parent or self), "suspectMenu")
        move = menu.addAction(f"Move to class '{suspect.predicted_class}'")
        move.setData(("move", suspect.predicted_class))
        quarantine = menu.addAction("Move to quarantine")
        quarantine.setData(("quarantine", ""))
        menu.addSeparator()
        menu.addAction("Open image").setData(("open", ""))
        for action in menu.actions():
            if action.data() and action.data()[0] != "open":
                action.setEnabled(not self._training)
        menu.triggered.connect(self._on_suspect_action)
        menu.setProperty("suspectPath", suspect.path)
        return menu

    @Slot(QPoint)
    def _on_suspect_menu_requested(self, position):
        index = self.suspect_table.indexAt(position)
        if not index.isValid():
            return
        self.suspect_table.selectRow(index.row())
        self.suspect_menu(index.row(), self.suspect_table).exec(
            self.suspect_table.viewport().mapToGlobal(position))

    @Slot(object)
    def _on_suspect_action(self, action):
        kind, class_name = action.data()
        path = self.sender().property("suspectPath")
        if kind == "open":
            self._open_file(path)
        else:
            self.move_suspect(path, class_name if kind == "move" else None)

    def move_suspect(self, path, class_name=None):
        """Move a suspect into ``class_name``'s folder, or to quarantine when it is None.

        Returns:
            The ``core.data_fixes`` journal entry, or None when nothing was moved.
        """
        from ..core import data_fixes

        if self._scan is None:
            return None
        if self._training:
            error_dialog.show_error(self, "Training is running",
                                    "A model is training on these files; stop it (Esc) before moving images.")
            return None
        try:
            if class_name:
                entry = data_fixes.move_to_class(self._scan.root, path, class_name)
            else:
                entry = data_fixes.quarantine(self._scan.root, path,
                                              reason="likely mislabel (dataset doctor)")
        except ImgclsError as exc:
            error_dialog.show_exception(self, "Could not move the image", exc)
            return None
        self._show_suspects([suspect for suspect in self._suspects if suspect.path != str(path)])
        where = "quarantine" if not class_name else f"class '{class_name}'"
        self.mislabel_label.setText(f"Moved {Path(path).name} to {where} (Edit ▸ Undo move puts it back).")
        self.files_moved.emit(entry)
        return entry

    # -- thumbnails and opening -----------------------------------------------------
    def _load_thumbnails(self, kind, paths):
        self._thumbnail_generations[kind] += 1
        if paths:
            job = Job(_decode, kind, self._thumbnail_generations[kind], sorted(set(paths)))
            self._runner.start(job, on_success=self._on_thumbnails)

    @Slot(object)
    def _on_thumbnails(self, result):
        kind, generation, images = result
        if generation != self._thumbnail_generations[kind]:
            return
        if kind == "report":
            for table in (self.duplicate_table, self.leakage_table):
                for row in range(table.rowCount()):
                    item = table.item(row, 0)
                    item.setIcon(QIcon(_strip(images, item.data(_PATHS_ROLE))))
            return
        for row in range(self.suspect_table.rowCount()):
            item = self.suspect_table.item(row, 0)
            image = images.get(item.data(_PATHS_ROLE)[0])
            if image is not None:
                item.setIcon(QIcon(QPixmap.fromImage(image)))

    @Slot(QTableWidgetItem)
    def _on_double_clicked(self, item):
        paths = item.data(_PATHS_ROLE)
        if paths:
            self._open_file(paths[0])

    def _open_file(self, path):
        """Open ``path`` in the system viewer (tests replace this)."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def stop_background_work(self, timeout_ms=30000):
        """Cancel the check and the search and wait for every job (before the window closes)."""
        self.cancel_check()
        self.cancel_search()
        self._runner.cancel_all()
        return self._runner.wait(timeout_ms)


def _decode(kind, generation, paths):
    return kind, generation, load_thumbnails(paths, THUMBNAIL_SIZE)


def _strip(images, paths):
    """Thumbnails side by side on one pixmap (placeholders until they are decoded)."""
    paths = list(paths or [])
    pixmap = QPixmap(max(1, len(paths) * (THUMBNAIL_SIZE + _GAP) - _GAP), THUMBNAIL_SIZE)
    pixmap.fill(QColor(0, 0, 0, 0))
    painter = QPainter(pixmap)
    for index, path in enumerate(paths):
        image = images.get(path)
        tile = QPixmap.fromImage(image) if image is not None else placeholder_pixmap(THUMBNAIL_SIZE)
        x = index * (THUMBNAIL_SIZE + _GAP) + (THUMBNAIL_SIZE - tile.width()) // 2
        painter.drawPixmap(x, (THUMBNAIL_SIZE - tile.height()) // 2, tile)
    painter.end()
    return pixmap

