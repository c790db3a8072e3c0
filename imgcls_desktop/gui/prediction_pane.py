"""Drop images (or pick them) and see what the model says, with top-k bars.

The pane classifies only with the :class:`core.model_io.LoadedModel` handed to
:meth:`PredictionPane.set_model`, never with a model being trained, and refuses while
training runs. Work happens in :class:`gui.jobs.Job` s, one batch at a time, so the
window stays responsive and results arrive in the order the files were given.
"""

import csv
from collections import deque
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QProgressBar, QPushButton, QVBoxLayout, QWidget)

from .error_dialog import show_error, show_exception
from .jobs import Job, JobRunner
from .thumbnails import load_thumbnails, placeholder_pixmap

TOP_K = 3
NO_MODEL_TEXT = "Train a model or open a .keras file to classify images."
TRAINING_TEXT = "Classification is paused while a model is training."
READY_TEXT = "Drop images or folders here, or use Open images… / Open folder…"
REMOTE_URL_ERROR = "only local files can be classified"
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"


def _name(widget, name):
    widget.setObjectName(name)
    widget.setAccessibleName(name)
    return widget


def _split_urls(mime):
    """``(local_paths, other_urls)`` of a drag's mime data; text-only data gives nothing."""
    if mime is None or not mime.hasUrls():
        return [], []
    local, remote = [], []
    for url in mime.urls():
        if url.isLocalFile():
            local.append(url.toLocalFile())
        else:
            remote.append(url.toString())
    return local, remote


def _classify_batch(loaded, predictor, paths, thumbnail_size):
    """Worker side: build (once) and warm the predictor, classify, decode thumbnails."""
    if predictor is None:
        from ..core.inference import Predictor

        predictor = Predictor(loaded)
        predictor.warm_up()
    predictions = predictor.predict_paths(paths, top_k=TOP_K) if paths else []
    thumbnails = load_thumbnails([p.path for p in predictions if p.ok], thumbnail_size)
    return loaded, predictor, predictions, thumbnails


class PredictionRow(QWidget):
    """One result: thumbnail, file name, top label in bold, top-k as small bars."""

    def __init__(self, prediction, thumbnail=None, thumbnail_size=64, parent=None):
        super().__init__(parent)
        _name(self, "predictionRow")
        self.prediction = prediction
        picture = QLabel()
        picture.setFixedSize(thumbnail_size, thumbnail_size)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        picture.setPixmap(thumbnail if thumbnail is not None else placeholder_pixmap(thumbnail_size))
        text = QVBoxLayout()
        text.setSpacing(2)
        file_label = QLabel(Path(prediction.path).name or prediction.path)
        file_label.setToolTip(prediction.path)
        file_label.setStyleSheet("color: palette(mid);")
        text.addWidget(file_label)
        if prediction.ok:
            if getattr(prediction, "unknown", False):
                # Still the top-k bars below: the user sees what it would have guessed.
                headline = _name(QLabel(f"<b>{prediction.verdict}</b>"), "predictionLabel")
                headline.setToolTip(
                    f"Its best guess, {prediction.label}, is below the {prediction.unknown_threshold:.0%} "
                    "confidence the model needs, tuned on its validation images.")
                headline.setStyleSheet("color: #b9770e;")
            else:
                headline = _name(QLabel(f"<b>{prediction.label}</b> &nbsp; <b>{prediction.confidence:.0%}</b>"),
                                 "predictionLabel")
            text.addWidget(headline)
            for label, probability in prediction.top_k:
                text.addLayout(self._bar(label, probability))
        else:
            error = _name(QLabel(f"Could not classify: {prediction.error}"), "predictionError")
            error.setStyleSheet("color: #c0392b;")
            error.setWordWrap(True)
            text.addWidget(error)
        text.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(picture)
        layout.addLayout(text, 1)

    @staticmethod
    def _bar(label, probability):
        row = QHBoxLayout()
        name = QLabel(label)
        name.setMinimumWidth(90)
        bar = QProgressBar()
        bar.setRange(0, 1000)
        bar.setValue(int(round(probability * 1000)))
        bar.setFormat(f"{probability:.1%}")
        bar.setMaximumHeight(14)
        bar.setAccessibleName(f"{label} probability")
        row.addWidget(name)
        row.addWidget(bar, 1)
        return row


class PredictionPane(QWidget):
    """Classify dropped or chosen images with the current model.

    Signals:
        images_dropped(list): Local paths (str) of an accepted drop, before classifying.
        predictions_ready(list): The core ``Prediction`` objects of a batch just shown.
    """

    images_dropped = Signal(list)
    predictions_ready = Signal(list)

    def __init__(self, parent=None, thumbnail_size=64):
        super().__init__(parent)
        _name(self, "predictionPane")
        self.setAcceptDrops(True)
        self.thumbnail_size = thumbnail_size
        self._loaded = None
        self._predictor = None  # built in a worker for self._loaded, then reused
        self._reason = NO_MODEL_TEXT
        self._training_active = False
        self._results = []
        self._queue = deque()
        self._job = None
        self._classifying = False  # a job is running on real paths, not only warming up
        self._runner = JobRunner(self)

        self.status_label = _name(QLabel(), "predictionStatus")
        self.status_label.setWordWrap(True)
        self.open_images_button = _name(QPushButton("Open images…"), "openImagesButton")
        self.open_folder_button = _name(QPushButton("Open folder…"), "openFolderButton")
        self.clear_button = _name(QPushButton("Clear"), "clearResultsButton")
        self.export_button = _name(QPushButton("Export CSV…"), "exportCsvButton")
        self.results_list = _name(QListWidget(), "predictionResults")
        self.results_list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.results_list.itemActivated.connect(self._on_item_activated)

        self.open_images_button.clicked.connect(self._on_open_images)
        self.open_folder_button.clicked.connect(self._on_open_folder)
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self._on_export_clicked)

        buttons = QHBoxLayout()
        for button in (self.open_images_button, self.open_folder_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        for button in (self.clear_button, self.export_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.results_list, 1)
        self._update_state()

    # -- model and training state -------------------------------------------------------

    def set_model(self, loaded, reason=""):
        """Use ``loaded`` (a ``LoadedModel``) from now on; None disables classification.

        Args:
            loaded: The model to classify with, or None.
            reason: Shown while there is no model (a default explains what to do).
        """
        self._loaded = loaded
        self._predictor = None
        self._reason = reason or NO_MODEL_TEXT
        if loaded is None:
            self._queue.clear()
        elif not self._training_active:
            self._queue.append([])  # an empty batch only builds and warms the predictor
            self._start_next()
        self._update_state()

    def set_training_active(self, active):
        """While True, refuse to classify (the machine is busy and the model may change)."""
        self._training_active = bool(active)
        if self._training_active:
            self._queue.clear()
        self._update_state()

    def can_classify(self):
        return self._loaded is not None and not self._training_active

    def refusal_reason(self):
        """Why classification is refused now, or "" when it is possible."""
        if self._training_active:
            return TRAINING_TEXT
        if self._loaded is None:
            return self._reason
        return ""

    def is_busy(self):
        return self._job is not None

    # -- classifying --------------------------------------------------------------------

    def classify_paths(self, paths, remote_urls=()):
        """Classify files and folders in the background.

        Args:
            paths: Local file or folder paths; every file gets a result or an error line.
            remote_urls: Non-local URLs from a drop, each answered with an error line.

        Returns:
            True if classification was started or queued, False if it was refused (the
            reason is shown in the status text).
        """
        if not self.can_classify():
            self.status_label.setText(self.refusal_reason())
            return False
        from ..core.inference import Prediction  # cheap: only TF-free names are used here

        remote = [Prediction(path=url, error=REMOTE_URL_ERROR) for url in remote_urls]
        if remote:
            self._show_predictions(remote, {})
        paths = [str(path) for path in paths]
        if paths:
            self._queue.append(paths)
            self._start_next()
        self._update_state()
        return True

    def _start_next(self):
        if self._job is not None or not self._queue or not self.can_classify():
            return
        paths = self._queue.popleft()
        self._classifying = bool(paths)
        if paths:
            self.status_label.setText(f"Classifying {len(paths)} item(s)…")
        job = Job(_classify_batch, self._loaded, self._predictor, paths, self.thumbnail_size,
                  uses_engine=True)
        self._job = job
        self._runner.start(job, on_success=self._on_batch_done, on_failure=self._on_batch_failed)

    @Slot(object)
    def _on_batch_done(self, result):
        loaded, predictor, predictions, thumbnails = result
        self._job = None
        self._classifying = False
        if loaded is self._loaded:
            self._predictor = predictor
        if predictions:
            self._show_predictions(predictions, thumbnails)
        self._start_next()
        self._update_state()

    @Slot(object, str)
    def _on_batch_failed(self, exc, details):
        self._job = None
        self._classifying = False
        show_exception(self, "Could not classify the images", exc, details)
        self._start_next()
        self._update_state()

    def _show_predictions(self, predictions, thumbnails):
        for prediction in predictions:
            image = thumbnails.get(prediction.path)
            pixmap = QPixmap.fromImage(image) if image is not None else None
            row = PredictionRow(prediction, pixmap, self.thumbnail_size)
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, prediction.path)
            item.setSizeHint(row.sizeHint())
            self.results_list.addItem(item)
            self.results_list.setItemWidget(item, row)
        self._results.extend(predictions)
        self.results_list.scrollToBottom()
        self.predictions_ready.emit(list(predictions))

    def results(self):
        """Every ``Prediction`` shown so far, in display order."""
        return list(self._results)

    @Slot()
    def clear(self):
        """Remove the results (a batch still running will add its own when done)."""
        self._results.clear()
        self.results_list.clear()
        self._update_state()

    def _update_state(self):
        usable = self.can_classify()
        self.open_images_button.setEnabled(usable)
        self.open_folder_button.setEnabled(usable)
        self.clear_button.setEnabled(bool(self._results))
        self.export_button.setEnabled(bool(self._results))
        if not usable:
            self.status_label.setText(self.refusal_reason())
        elif not self._classifying:
            ok = sum(1 for p in self._results if p.ok)
            failed = len(self._results) - ok
            if self._results:
                summary = f"{ok} image(s) classified"
                unknown = sum(1 for p in self._results if p.ok and p.unknown)
                if unknown:
                    summary += f" ({unknown} none of my classes)"
                if failed:
                    summary += f", {failed} could not be classified"
                self.status_label.setText(f"{summary}.")
            else:
                self.status_label.setText(READY_TEXT)

    # -- drag and drop ------------------------------------------------------------------

    def dragEnterEvent(self, event):
        local, _remote = _split_urls(event.mimeData())
        if local:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        self.dragEnterEvent(event)

    def dropEvent(self, event):
        local, remote = _split_urls(event.mimeData())
        if not local:
            event.ignore()
            return
        event.acceptProposedAction()
        self.images_dropped.emit(local)
        self.classify_paths(local, remote)

    # -- buttons and prompts ------------------------------------------------------------

    def _ask_image_paths(self):
        """Ask for image files (tests replace this). Returns a list of paths."""
        paths, _filter = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        return paths

    def _ask_folder(self):
        """Ask for a folder of images (tests replace this). Returns "" if cancelled."""
        return QFileDialog.getExistingDirectory(self, "Open a folder of images")

    def _ask_csv_path(self):
        """Ask where to export the results (tests replace this). Returns "" if cancelled."""
        path, _filter = QFileDialog.getSaveFileName(self, "Export predictions", "predictions.csv",
                                                    "CSV (*.csv)")
        return path

    def _open_file(self, path):
        """Open an image in the system viewer (tests replace this)."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    @Slot()
    def _on_open_images(self):
        paths = self._ask_image_paths()
        if paths:
            self.classify_paths(paths)

    @Slot()
    def _on_open_folder(self):
        folder = self._ask_folder()
        if folder:
            self.classify_paths([folder])

    @Slot(QListWidgetItem)
    def _on_item_activated(self, item):
        path = item.data(Qt.ItemDataRole.UserRole)
        if path and Path(path).is_file():
            self._open_file(path)

    @Slot()
    def _on_export_clicked(self):
        path = self._ask_csv_path()
        if not path:
            return
        try:
            self.export_csv(path)
        except OSError as exc:
            import traceback

            show_error(self, "Could not export the predictions",
                       f"Could not write {path}: {exc.strerror or exc}. Choose a folder you can write to.",
                       traceback.format_exc())

    def export_csv(self, path):
        """Write one row per result: path, label, confidence, top_k, error."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "confidence", "top_k", "error"])
            for prediction in self._results:
                if prediction.ok:
                    top_k = ";".join(f"{label}:{p:.6f}" for label, p in prediction.top_k)
                    writer.writerow([prediction.path, prediction.label,
                                     f"{prediction.confidence:.6f}", top_k, ""])
                else:
                    writer.writerow([prediction.path, "", "", "", prediction.error])
        return str(path)
