"""Browse a dataset folder: classes, counts, thumbnails, problem files and duplicates.

The scan (which decodes every file) and the thumbnail decoding run as background
jobs, so a folder of tens of thousands of images never freezes the window. The
"Check dataset" tab holds the dataset doctor (:class:`doctor_view.DoctorView`).
"""

import html
import math
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QColor, QDesktopServices, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.errors import Cancelled, DatasetError
from ..core.paths import relative_posix
from ..resources import dataset_display_name
from ._qt import named
from .class_chart import ClassCountChart
from .doctor_view import DoctorView
from .jobs import Job, JobRunner
from .widgets import error_dialog
from .widgets.thumbnails import decode_thumbnail

MAX_THUMBNAILS = 48
THUMBNAIL_SIZE = 96
# Thumbnails decode in small batches so the first ones show while the rest load.
_THUMBNAIL_BATCH = 12
IMBALANCE_WARNING_RATIO = 3.0
_PATH_ROLE = Qt.ItemDataRole.UserRole
_STATE_ROLE = Qt.ItemDataRole.UserRole + 1  # thumbnails: "loading", "loaded" or "failed"


def scan_dataset(*args, **kwargs):
    """``core.dataset.scan_dataset``, imported on the worker thread that runs it: numpy and
    Pillow load after the window shows, not before (start-up time)."""
    from ..core.dataset import scan_dataset as scan

    return scan(*args, **kwargs)


def _load_thumbnails(paths, size):
    """Decode ``paths`` into ``[(path, QImage or None, failure reason or "")]`` (runs off the GUI thread).

    QImage, unlike QPixmap, may be built outside the GUI thread.
    """
    results = []
    for path in paths:
        try:
            results.append((str(path), decode_thumbnail(path, size), ""))
        except Exception as exc:  # noqa: BLE001 - one unreadable file gets a placeholder, never a crash
            results.append((str(path), None, getattr(exc, "reason", str(exc))))
    return results


class DatasetBrowser(QWidget):
    """Shows what a dataset folder holds, and what in it cannot be used.

    Signals:
        scan_started(str): A scan of this folder began.
        dataset_loaded(object): The newest scan finished; carries the ``DatasetScan``.
        scan_failed(str): The newest scan failed; carries the message shown.
        scan_cancelled(str): The scan of this folder was cancelled by the user.
        thumbnails_loaded(str): Every thumbnail of this class has been decoded.

    Args:
        parent: Optional parent widget.
    """

    scan_started = Signal(str)
    dataset_loaded = Signal(object)
    scan_failed = Signal(str)
    scan_cancelled = Signal(str)
    thumbnails_loaded = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        named(self, "datasetBrowser")
        self._runner = JobRunner(self)
        self._scan = None
        self._scan_job = None
        self._scan_path = None
        # Each scan and each thumbnail request gets a number; a result whose number is
        # no longer current belongs to a superseded request and is dropped.
        self._scan_generation = 0
        self._job_generations = {}  # job signals object -> generation
        self._thumbnail_generation = 0
        self._thumbnail_queue = []  # paths of the current class still to decode
        self._thumbnail_class = None
        self._build()
        self.clear()

    def _build(self):
        self.header_label, self.imbalance_label, self.status_label = (
            named(QLabel(), name) for name in ("datasetHeader", "imbalanceWarning", "scanStatus"))
        for label in (self.header_label, self.imbalance_label, self.status_label):
            label.setWordWrap(True)
        self.header_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.imbalance_label.setStyleSheet("color: #b35900;")

        self.progress_bar = named(QProgressBar(), "scanProgress")
        self.cancel_button = named(QPushButton("Cancel"), "scanCancelButton")
        self.cancel_button.clicked.connect(self.cancel_scan)
        self.progress_row = QWidget()
        progress_layout = QHBoxLayout(self.progress_row)
        progress_layout.setContentsMargins(0, 0, 0, 0)
        progress_layout.addWidget(self.progress_bar, 1)
        progress_layout.addWidget(self.cancel_button)

        self.chart = ClassCountChart()
        chart_scroll = QScrollArea()
        chart_scroll.setWidgetResizable(True)
        chart_scroll.setWidget(self.chart)

        self.class_list = named(QListWidget(), "classList")
        self.class_list.currentItemChanged.connect(self._on_class_selected)
        self.thumbnail_grid = named(QListWidget(), "thumbnailGrid")
        self.thumbnail_grid.setViewMode(QListView.ViewMode.IconMode)
        self.thumbnail_grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.thumbnail_grid.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.thumbnail_grid.setGridSize(QSize(THUMBNAIL_SIZE + 16, THUMBNAIL_SIZE + 28))
        self.thumbnail_grid.setUniformItemSizes(True)
        self.thumbnail_grid.itemDoubleClicked.connect(self._on_item_double_clicked)
        images_splitter = QSplitter(Qt.Orientation.Horizontal)
        images_splitter.addWidget(self.class_list)
        images_splitter.addWidget(self.thumbnail_grid)
        images_splitter.setStretchFactor(1, 3)
        images_splitter.setSizes([260, 700])

        self.problem_table = named(QTableWidget(0, 2), "problemTable")
        self.problem_table.setHorizontalHeaderLabels(["File", "Reason"])
        self.problem_table.horizontalHeader().setStretchLastSection(True)
        self.problem_table.setColumnWidth(0, 320)
        self.problem_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.problem_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.problem_table.itemDoubleClicked.connect(self._on_item_double_clicked)

        self.duplicate_list = named(QTreeWidget(), "duplicateList")
        self.duplicate_list.setHeaderLabels(["Identical files"])
        self.duplicate_list.itemDoubleClicked.connect(self._on_item_double_clicked)
        self.doctor = DoctorView()
        self.check_button = named(QPushButton("Check dataset…"), "checkDatasetButton")
        self.check_button.setToolTip("Near-duplicates, train/test leakage, class imbalance and likely mislabels")
        self.check_button.clicked.connect(self.show_doctor)

        # The counts and the pictures on one page: a glance at both is what a user wants.
        overview = QSplitter(Qt.Orientation.Vertical)
        overview.addWidget(chart_scroll)
        overview.addWidget(images_splitter)
        overview.setStretchFactor(0, 1)
        overview.setStretchFactor(1, 2)
        self.tabs = named(QTabWidget(), "datasetTabs")
        self.tabs.addTab(overview, "Overview")
        self._problems_tab = self.tabs.addTab(self.problem_table, "Problems (0)")
        self._duplicates_tab = self.tabs.addTab(self.duplicate_list, "Duplicates (0)")
        self._doctor_tab = self.tabs.addTab(self.doctor, "Check dataset")

        layout = QVBoxLayout(self)
        header = QHBoxLayout()
        header.addWidget(self.header_label, 1)
        header.addWidget(self.check_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(header)
        layout.addWidget(self.imbalance_label)
        layout.addWidget(self.progress_row)
        layout.addWidget(self.status_label)
        layout.addWidget(self.tabs, 1)

    def scan(self):
        """The ``DatasetScan`` shown, or None."""
        return self._scan

    def is_scanning(self) -> bool:
        """Whether a scan whose result will be shown is running."""
        return self._scan_job is not None

    def is_busy(self) -> bool:
        """Whether any background job (a scan, even a cancelled one, thumbnails, the doctor) is still running."""
        return self._runner.active() > 0 or self.doctor.is_busy()

    @Slot()
    def show_doctor(self):
        """Show the "Check dataset" tab; the check starts if this dataset has not had one."""
        self.tabs.setCurrentIndex(self._doctor_tab)
        self.doctor.check_if_needed()

    def open_folder(self, path):
        """Scan ``path`` in the background; a scan already running is cancelled.

        Args:
            path: The dataset folder.
        """
        self._stop_scan_job()
        self._scan_path = str(path)
        job = Job(scan_dataset, path, with_progress=True, validate=True)
        self._job_generations[job.signals] = self._scan_generation
        self._scan_job = job
        self.progress_bar.setRange(0, 0)  # busy until the file count is known
        self.progress_bar.setFormat("Listing files...")
        self.progress_row.show()
        self.status_label.setText(f"Scanning {dataset_display_name(path)}...")
        self.scan_started.emit(str(path))
        self._runner.start(job, on_success=self._on_scan_succeeded, on_failure=self._on_scan_failed,
                           on_progress=self._on_scan_progress)

    @Slot()
    def cancel_scan(self):
        """Cancel the running scan; the dataset shown before it stays shown."""
        if self._scan_job is None:
            return
        self._stop_scan_job()
        self.progress_row.hide()
        self.status_label.setText("Scan cancelled")
        self.scan_cancelled.emit(self._scan_path or "")

    def stop_background_work(self, timeout_ms=30000) -> bool:
        """Cancel every job and wait for them to end (call before the window closes).

        Returns:
            True if every job ended within ``timeout_ms``.
        """
        self._stop_scan_job()
        self._thumbnail_generation += 1
        self._thumbnail_queue = []
        self._runner.cancel_all()
        self.doctor.stop_background_work(timeout_ms)
        return self._runner.wait(timeout_ms)

    def clear(self):
        """Show nothing (a running scan continues and will fill the browser when done)."""
        self._scan = None
        self._thumbnail_generation += 1
        self._thumbnail_queue = []
        self.header_label.setText("No dataset folder open.")
        self.imbalance_label.hide()
        self.imbalance_label.clear()
        if self._scan_job is None:
            self.progress_row.hide()
            self.status_label.clear()
        self.chart.clear()
        self.class_list.clear()
        self.thumbnail_grid.clear()
        self.problem_table.setRowCount(0)
        self.duplicate_list.clear()
        self._set_tab_counts(0, 0)

    def _stop_scan_job(self):
        self._scan_generation += 1  # whatever the old job still reports is now stale
        if self._scan_job is not None:
            self._scan_job.cancel()
            self._scan_job = None

    def _is_current(self):
        return self._job_generations.pop(self.sender(), None) == self._scan_generation

    @Slot(int, int)
    def _on_scan_progress(self, done, total):
        if self._scan_job is None or self.sender() is not self._scan_job.signals:
            return
        self.progress_bar.setFormat(f"Checking {done}/{total} files")
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(done)

    @Slot(object)
    def _on_scan_succeeded(self, scan):
        if not self._is_current():
            return
        self._scan_job = None
        self.progress_row.hide()
        self._show_scan(scan)
        self.status_label.setText(f"Scanned {scan.num_images + len(scan.problems)} files")
        self.dataset_loaded.emit(scan)

    @Slot(object, str)
    def _on_scan_failed(self, exc, details):
        if not self._is_current():
            return
        self._scan_job = None
        self.progress_row.hide()
        if isinstance(exc, Cancelled):  # cancelled from outside (stop_background_work)
            self.status_label.setText("Scan cancelled")
            return
        message = str(exc) if isinstance(exc, DatasetError) else f"{type(exc).__name__}: {exc}"
        self.status_label.setText(f"Scan failed: {message}")
        self.scan_failed.emit(message)
        error_dialog.show_exception(self, "Cannot read the dataset", exc, details)

    def _show_scan(self, scan):
        self.clear()
        self._scan = scan
        counts = scan.counts()
        layout = ("flat: one folder per class" if scan.layout == "flat"
                  else "split: " + " ".join(f"{split}/" for split in scan.splits))
        excluded = f"; {len(scan.problems)} file(s) excluded" if scan.problems else ""
        name = dataset_display_name(scan.root)
        self.header_label.setText(
            f"<b>{html.escape(name[:1].upper() + name[1:])}</b><br>Layout {layout} &mdash; "
            f"{len(scan.class_names)} classes, {scan.num_images} usable images{excluded}")
        self.header_label.setToolTip(str(scan.root))
        self._show_imbalance(scan, counts)
        self.chart.set_counts(counts)
        for name in scan.class_names:
            if scan.layout == "flat":
                text = f"{name} ({counts['all'][name]})"
            else:
                text = f"{name} (" + ", ".join(f"{split} {counts[split][name]}" for split in counts) + ")"
            item = QListWidgetItem(text)
            item.setData(_PATH_ROLE, name)
            self.class_list.addItem(item)
        self._show_problems(scan)
        self._set_tab_counts(len(scan.problems), len(scan.duplicates))
        self.doctor.set_scan(scan)
        if self.class_list.count():
            self.class_list.setCurrentRow(0)  # pictures of the first class at once

    def _show_imbalance(self, scan, counts):
        ratio = scan.imbalance()
        if math.isinf(ratio):
            empty = [name for name, count in counts.get(scan.training_split_name(), {}).items() if count == 0]
            text = f"No usable training images for: {', '.join(empty)}; add images to those classes"
        elif ratio > IMBALANCE_WARNING_RATIO:
            text = (f"The largest class has {ratio:.1f}x the images of the smallest; "
                    "consider adding images or class weighting")
        else:
            return
        self.imbalance_label.setText(text)
        self.imbalance_label.show()

    def _show_problems(self, scan):
        self.problem_table.setRowCount(len(scan.problems))
        for row, problem in enumerate(scan.problems):
            for column, text in enumerate((relative_posix(problem.path, scan.root), problem.reason)):
                item = QTableWidgetItem(text)
                item.setData(_PATH_ROLE, problem.path)
                item.setToolTip(problem.path if column == 0 else text)
                self.problem_table.setItem(row, column, item)
        for number, group in enumerate(scan.duplicates, start=1):
            parent = QTreeWidgetItem([f"Group {number}: {len(group)} identical files"])
            for path in group:
                child = QTreeWidgetItem([relative_posix(path, scan.root)])
                child.setData(0, _PATH_ROLE, path)
                child.setToolTip(0, path)
                parent.addChild(child)
            self.duplicate_list.addTopLevelItem(parent)
        self.duplicate_list.expandAll()

    def _set_tab_counts(self, problems, duplicates):
        self.tabs.setTabText(self._problems_tab, f"Problems ({problems})")
        self.tabs.setTabText(self._duplicates_tab, f"Duplicates ({duplicates})")

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_class_selected(self, current, _previous=None):
        self._thumbnail_generation += 1
        self._thumbnail_queue = []
        self.thumbnail_grid.clear()
        if current is None or self._scan is None:
            return
        name = current.data(_PATH_ROLE)
        label = self._scan.class_names.index(name)
        items = [item for item in self._scan.splits.get(self._scan.training_split_name(), [])
                 if item.label == label][:MAX_THUMBNAILS]
        placeholder = self._placeholder(loading=True)
        for image_item in items:
            grid_item = QListWidgetItem(placeholder, Path(image_item.path).name)
            grid_item.setData(_PATH_ROLE, str(image_item.path))
            grid_item.setData(_STATE_ROLE, "loading")
            grid_item.setToolTip(str(image_item.path))
            self.thumbnail_grid.addItem(grid_item)
        self._thumbnail_class = name
        self._thumbnail_queue = [str(item.path) for item in items]
        self._start_thumbnail_batch()

    def _start_thumbnail_batch(self):
        if not self._thumbnail_queue:
            self.thumbnails_loaded.emit(self._thumbnail_class or "")
            return
        batch, self._thumbnail_queue = (self._thumbnail_queue[:_THUMBNAIL_BATCH],
                                        self._thumbnail_queue[_THUMBNAIL_BATCH:])
        job = Job(_load_thumbnails, batch, THUMBNAIL_SIZE)
        self._job_generations[job.signals] = self._thumbnail_generation
        self._runner.start(job, on_success=self._on_thumbnails_decoded, on_failure=self._on_thumbnails_failed)

    @Slot(object)
    def _on_thumbnails_decoded(self, results):
        if self._job_generations.pop(self.sender(), None) != self._thumbnail_generation:
            return
        rows = {self.thumbnail_grid.item(row).data(_PATH_ROLE): row for row in range(self.thumbnail_grid.count())}
        failed_icon = self._placeholder(loading=False)
        for path, qimage, reason in results:
            if path not in rows:
                continue
            item = self.thumbnail_grid.item(rows[path])
            if qimage is None:
                item.setIcon(failed_icon)
                item.setData(_STATE_ROLE, "failed")
                item.setToolTip(f"{path}\n{reason}")
            else:
                item.setIcon(QIcon(QPixmap.fromImage(qimage)))  # QPixmap: GUI thread only
                item.setData(_STATE_ROLE, "loaded")
        self._start_thumbnail_batch()

    @Slot(object, str)
    def _on_thumbnails_failed(self, exc, details):
        if self._job_generations.pop(self.sender(), None) != self._thumbnail_generation:
            return
        error_dialog.show_exception(self, "Cannot show thumbnails", exc, details)

    def _placeholder(self, loading):
        if not loading:
            return self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        pixmap = QPixmap(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        pixmap.fill(QColor("#d8d8d8"))
        return QIcon(pixmap)

    @Slot(object)
    def _on_item_double_clicked(self, item, column=0):
        # Table and list items take a role; tree items take a column, then a role.
        path = item.data(column, _PATH_ROLE) if isinstance(item, QTreeWidgetItem) else item.data(_PATH_ROLE)
        if path:
            self._open_file(path)

    def _open_file(self, path):
        """Open ``path`` in the system viewer (tests replace this)."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


