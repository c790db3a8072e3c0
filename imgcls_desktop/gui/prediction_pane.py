"""Drop images (or pick them) and see what the model says, with top-k bars.

The pane classifies only with the :class:`core.model_io.LoadedModel` handed to
:meth:`PredictionPane.set_model`, never with a model being trained, and refuses while
training runs. Work happens in :class:`gui.jobs.Job` s, one batch at a time, so the
window stays responsive and results arrive in the order the files were given.

"Show heat map" overlays each result's Grad-CAM map (``core.explain``): where the evidence
for its label lies. Maps are computed only while the toggle is on, in their own engine jobs
after the classifications, and kept per file until the model changes.
"""

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from . import engine
from ._qt import named, qimage_from_array
from .jobs import Job, JobRunner
from .widgets.error_dialog import show_error, show_exception
from .widgets.thumbnails import fit_thumbnail, load_thumbnails, placeholder_pixmap

TOP_K = 3
NO_MODEL_TEXT = "Train a model or open a .keras file to classify images."
TRAINING_TEXT = "Classification is paused while a model is training."
READY_TEXT = "Drop images or folders here, or use Open images… / Open folder…"
REMOTE_URL_ERROR = "only local files can be classified"
HEAT_BATCH = 8  # files per heat-map job: results show up a few at a time, never all at the end
PREVIEW_SIZE = 256
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"


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
    """Worker side: have the engine build (once) and warm the predictor, classify, decode thumbnails.

    ``predictor`` is True once the engine has warmed this model up (the predictor itself
    lives in the engine process, cached with the model).
    """
    if not predictor:
        engine.warm_up(loaded)
        predictor = True
    predictions = engine.predict(loaded, paths, top_k=TOP_K) if paths else []
    thumbnails = load_thumbnails([p.path for p in predictions if p.ok], thumbnail_size)
    return loaded, predictor, predictions, thumbnails


@dataclass
class HeatMap:
    """One file's Grad-CAM, ready to show: overlays as ``QImage`` (made off the GUI thread)."""

    label: str = ""  # the class explained (the model's answer)
    heat: object = None  # (height, width) float32 in [0, 1] at the model's input size
    thumbnail: QImage = None
    preview: QImage = None
    error: str = ""

    @property
    def ok(self):
        return not self.error


def _explain_batch(generation, loaded, paths, thumbnail_size, preview_size):
    """Worker side: ``(generation, {path: HeatMap})``; a failing file gets its own error."""
    import numpy as np

    from ..core.errors import ImgclsError
    from ..core.explain import overlay
    from ..core.images import open_image
    from ..engine.client import EngineCrashed

    heat_maps = {}
    for path in paths:
        try:
            explanation = engine.explain(loaded, path)
            image = open_image(path)
            thumbnail, preview = (
                qimage_from_array(overlay(np.asarray(fit_thumbnail(image, size)), explanation.heat))
                for size in (thumbnail_size, preview_size))
            heat_maps[path] = HeatMap(label=explanation.label, heat=explanation.heat,
                                      thumbnail=thumbnail, preview=preview)
        except EngineCrashed:
            raise  # the whole job fails with the engine's one message
        except ImgclsError as exc:
            heat_maps[path] = HeatMap(error=str(exc))
        except Exception as exc:  # one odd file must not cost the others their maps
            heat_maps[path] = HeatMap(error=f"{type(exc).__name__}: {exc}")
    return generation, heat_maps


class PredictionRow(QWidget):
    """One result: thumbnail, file name, top label in bold, top-k as small bars."""

    def __init__(self, prediction, thumbnail=None, thumbnail_size=64, parent=None):
        super().__init__(parent)
        named(self, "predictionRow")
        self.prediction = prediction
        self.plain_pixmap = thumbnail if thumbnail is not None else placeholder_pixmap(thumbnail_size)
        self.picture = picture = named(QLabel(), "predictionThumbnail")
        picture.setFixedSize(thumbnail_size, thumbnail_size)
        picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
        picture.setPixmap(self.plain_pixmap)
        text = QVBoxLayout()
        text.setSpacing(2)
        file_label = QLabel(Path(prediction.path).name or prediction.path)
        file_label.setToolTip(prediction.path)
        file_label.setStyleSheet("color: palette(mid);")
        header = QHBoxLayout()
        header.addWidget(file_label, 1)
        self.heat_label = named(QLabel(), "heatmapLabel")
        self.heat_label.hide()
        header.addWidget(self.heat_label)
        text.addLayout(header)
        if prediction.ok:
            if getattr(prediction, "unknown", False):
                # Still the top-k bars below: the user sees what it would have guessed.
                headline = named(QLabel(f"<b>{prediction.verdict}</b>"), "predictionLabel")
                if getattr(prediction, "ood_score", None) is not None:
                    headline.setToolTip(
                        f"It looks unlike the images the model was trained on (score {prediction.ood_score:.2f}, "
                        f"above the {prediction.ood_threshold:.2f} tuned on its validation images); its best "
                        f"guess would be {prediction.label}.")
                else:
                    headline.setToolTip(
                        f"Its best guess, {prediction.label}, is below the {prediction.unknown_threshold:.0%} "
                        "confidence the model needs, tuned on its validation images.")
                headline.setStyleSheet("color: #b9770e;")
            else:
                headline = named(QLabel(f"<b>{prediction.label}</b> &nbsp; <b>{prediction.confidence:.0%}</b>"),
                                 "predictionLabel")
            text.addWidget(headline)
            for label, probability in prediction.top_k:
                text.addLayout(self._bar(label, probability))
        else:
            error = named(QLabel(f"Could not classify: {prediction.error}"), "predictionError")
            error.setStyleSheet("color: #c0392b;")
            error.setWordWrap(True)
            text.addWidget(error)
        text.addStretch(1)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(picture)
        layout.addLayout(text, 1)

    def show_heat(self, heat_map):
        """Show ``heat_map`` (a :class:`HeatMap`, or None while it is being computed)."""
        if heat_map is None:
            self.picture.setPixmap(self.plain_pixmap)
            self.heat_label.setText("heat map…")
            self.heat_label.setToolTip("")
            self.heat_label.setStyleSheet("color: palette(mid);")
        elif heat_map.ok:
            self.picture.setPixmap(QPixmap.fromImage(heat_map.thumbnail))
            self.heat_label.setText(f"why: <b>{heat_map.label}</b>")
            self.heat_label.setToolTip(f"Red marks where the evidence for {heat_map.label} lies (Grad-CAM).")
            self.heat_label.setStyleSheet("")
        else:
            self.picture.setPixmap(self.plain_pixmap)
            self.heat_label.setText("no heat map")
            self.heat_label.setToolTip(f"No heat map: {heat_map.error}")
            self.heat_label.setStyleSheet("color: #c0392b;")
        self.heat_label.show()

    def show_plain(self):
        self.picture.setPixmap(self.plain_pixmap)
        self.heat_label.hide()

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
        heatmaps_ready(list): Paths (str) whose heat maps (or heat-map errors) were just shown.
    """

    images_dropped = Signal(list)
    predictions_ready = Signal(list)
    heatmaps_ready = Signal(list)

    def __init__(self, parent=None, thumbnail_size=64):
        super().__init__(parent)
        named(self, "predictionPane")
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
        self._heat_maps = {}  # path -> HeatMap for the current model (cleared when it changes)
        self._heat_pending = []  # paths waiting for a heat-map job, in display order
        self._heat_job = None
        self._heat_job_input = (0, [])  # (model generation, paths) of the running heat job
        self._model_generation = 0  # a heat job of an earlier model is ignored when it ends

        self._build()
        self.results_list.itemActivated.connect(self._on_item_activated)
        self.results_list.currentItemChanged.connect(self._on_current_item_changed)
        self.heatmap_toggle.toggled.connect(self.set_heatmaps_enabled)
        self.open_images_button.clicked.connect(self._on_open_images)
        self.open_folder_button.clicked.connect(self._on_open_folder)
        self.clear_button.clicked.connect(self.clear)
        self.export_button.clicked.connect(self._on_export_clicked)
        self._update_state()

    def _build(self):
        """Make the widgets and lay them out; the constructor wires their signals."""
        self.status_label = named(QLabel(), "predictionStatus")
        self.status_label.setWordWrap(True)
        self.open_images_button = named(QPushButton("Open images…"), "openImagesButton")
        self.open_folder_button = named(QPushButton("Open folder…"), "openFolderButton")
        self.clear_button = named(QPushButton("Clear"), "clearResultsButton")
        self.export_button = named(QPushButton("Export CSV…"), "exportCsvButton")
        self.results_list = named(QListWidget(), "predictionResults")
        self.results_list.setSelectionMode(QListWidget.SelectionMode.SingleSelection)
        self.heatmap_toggle = named(QCheckBox("Show heat map"), "heatmapToggle")
        self.heatmap_toggle.setToolTip("Colour each image by where the evidence for its label lies "
                                       "(Grad-CAM): red is strong evidence, blue none.")
        self.preview_label = named(QLabel(), "heatmapPreview")
        self.preview_label.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
        self.preview_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview_label.setWordWrap(True)
        self.preview_caption = named(QLabel(), "heatmapCaption")
        self.preview_caption.setWordWrap(True)
        self.preview_caption.setFixedWidth(PREVIEW_SIZE)
        self.preview_panel = QWidget()
        preview_layout = QVBoxLayout(self.preview_panel)
        preview_layout.setContentsMargins(0, 0, 0, 0)
        preview_layout.addWidget(self.preview_label)
        preview_layout.addWidget(self.preview_caption)
        preview_layout.addStretch(1)
        self.preview_panel.hide()

        buttons = QHBoxLayout()
        for button in (self.open_images_button, self.open_folder_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.heatmap_toggle)
        for button in (self.clear_button, self.export_button):
            buttons.addWidget(button)
        results = QHBoxLayout()
        results.addWidget(self.results_list, 1)
        results.addWidget(self.preview_panel)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addLayout(results, 1)

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
        self._model_generation += 1
        self._heat_maps.clear()
        self._heat_pending.clear()
        if loaded is None:
            self._queue.clear()
        elif not self._training_active:
            self._queue.append([])  # an empty batch only builds and warms the predictor
            self._start_next()
        if self.heatmaps_enabled():
            # The rows' maps explained the previous model: recompute them with this one.
            for item, row in self._items_and_rows():
                if loaded is None:
                    row.show_plain()
                elif row.prediction.ok:
                    row.show_heat(None)
                item.setSizeHint(row.sizeHint())
            if loaded is not None:
                self._request_heat([p.path for p in self._results if p.ok])
            self._update_preview()
        self._update_state()

    def set_training_active(self, active):
        """While True, refuse to classify (the machine is busy and the model may change)."""
        self._training_active = bool(active)
        if self._training_active:
            self._queue.clear()
        else:
            self._start_heat()
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
        return self._job is not None or self._heat_job is not None

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
        if self.heatmaps_enabled():
            self._request_heat([p.path for p in predictions if p.ok])
        self.predictions_ready.emit(list(predictions))

    def results(self):
        """Every ``Prediction`` shown so far, in display order."""
        return list(self._results)

    @Slot()
    def clear(self):
        """Remove the results (a batch still running will add its own when done)."""
        self._results.clear()
        self.results_list.clear()
        self._heat_pending.clear()
        self._update_preview()
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

    # -- heat maps ----------------------------------------------------------------------

    def heatmaps_enabled(self):
        return self.heatmap_toggle.isChecked()

    @Slot(bool)
    def set_heatmaps_enabled(self, enabled):
        """Overlay each result's Grad-CAM heat map (computed in the background), or not."""
        enabled = bool(enabled)
        if self.heatmap_toggle.isChecked() != enabled:
            self.heatmap_toggle.setChecked(enabled)  # toggled() calls back here
            return
        self.preview_panel.setVisible(enabled)
        for item, row in self._items_and_rows():
            if not enabled or self._loaded is None:
                row.show_plain()
            elif row.prediction.ok:
                row.show_heat(self._heat_maps.get(row.prediction.path))
            item.setSizeHint(row.sizeHint())
        if enabled and self._loaded is not None:
            self._request_heat([p.path for p in self._results if p.ok])
            if self.results_list.currentItem() is None and self.results_list.count():
                self.results_list.setCurrentRow(0)
        else:
            self._heat_pending.clear()  # a job already running still fills the cache
        self._update_preview()

    def heat_map(self, path):
        """The :class:`HeatMap` of ``path`` for the current model, or None if not computed."""
        return self._heat_maps.get(str(path))

    def is_explaining(self):
        return self._heat_job is not None or bool(self._heat_pending)

    def _items_and_rows(self):
        results = self.results_list
        return [(results.item(i), results.itemWidget(results.item(i))) for i in range(results.count())]

    def _request_heat(self, paths):
        for path in paths:
            if path not in self._heat_maps and path not in self._heat_pending:
                self._heat_pending.append(path)
        self._start_heat()

    def _start_heat(self):
        if self._heat_job is not None or not self._heat_pending or not self.can_classify():
            return
        paths, self._heat_pending = self._heat_pending[:HEAT_BATCH], self._heat_pending[HEAT_BATCH:]
        job = Job(_explain_batch, self._model_generation, self._loaded, paths, self.thumbnail_size,
                  PREVIEW_SIZE, uses_engine=True)
        self._heat_job = job
        self._heat_job_input = (self._model_generation, paths)
        self._runner.start(job, on_success=self._on_heat_done, on_failure=self._on_heat_failed)

    @Slot(object)
    def _on_heat_done(self, result):
        generation, heat_maps = result
        self._heat_job = None
        if generation == self._model_generation:
            self._show_heat_maps(heat_maps)
        self._start_heat()

    @Slot(object, str)
    def _on_heat_failed(self, exc, details):
        # _explain_batch answers per file, so this is a failure of the job itself: every
        # file it held shows the reason in its own row.
        self._heat_job = None
        generation, paths = self._heat_job_input
        if generation == self._model_generation:
            message = str(exc) or type(exc).__name__
            self._show_heat_maps({path: HeatMap(error=message) for path in paths})
        self._start_heat()

    def _show_heat_maps(self, heat_maps):
        self._heat_maps.update(heat_maps)
        if self.heatmaps_enabled():
            for item, row in self._items_and_rows():
                if row.prediction.path in heat_maps:
                    row.show_heat(heat_maps[row.prediction.path])
                    item.setSizeHint(row.sizeHint())
            self._update_preview()
        self.heatmaps_ready.emit(list(heat_maps))

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current_item_changed(self, _current, _previous):
        self._update_preview()

    def _update_preview(self):
        if not self.heatmaps_enabled():
            return
        item = self.results_list.currentItem()
        row = self.results_list.itemWidget(item) if item is not None else None
        self.preview_label.clear()
        if row is None:
            self.preview_label.setText("Select a result to see its heat map here.")
            self.preview_caption.clear()
            return
        prediction = row.prediction
        heat_map = self._heat_maps.get(prediction.path)
        name = Path(prediction.path).name or prediction.path
        if not prediction.ok:
            self.preview_label.setText("No heat map: the file could not be classified.")
            self.preview_caption.setText(name)
        elif heat_map is None:
            self.preview_label.setText("Computing the heat map…")
            self.preview_caption.setText(name)
        elif heat_map.ok:
            self.preview_label.setPixmap(QPixmap.fromImage(heat_map.preview))
            self.preview_caption.setText(
                f"why: <b>{heat_map.label}</b> — red marks where the evidence for it lies.<br>{name}")
        else:
            self.preview_label.setText(f"No heat map: {heat_map.error}")
            self.preview_caption.setText(name)

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
        from ..core.errors import ImgclsError

        try:
            self.export_csv(path)
        except (OSError, ImgclsError) as exc:
            import traceback

            message = (f"Could not write {path}: {exc.strerror or exc}." if isinstance(exc, OSError)
                       else str(exc))  # core's message names the file and the folder
            show_error(self, "Could not export the predictions",
                       f"{message} Choose a folder you can write to.", traceback.format_exc())

    def export_csv(self, path):
        """Write one row per result, atomically: the table ``imgcls predict --csv`` writes."""
        from ..core.output_files import write_predictions_csv

        write_predictions_csv(path, self._results)
        return str(path)
