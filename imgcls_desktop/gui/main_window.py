"""The main window: four views over one dataset and one model, and the menus that drive them.

The window owns the state that crosses views (the current dataset scan and the current
model); each view owns its own widgets and workers. Nothing here imports TensorFlow: the
engine loads in the background after the window is shown (see :meth:`MainWindow.start`).
"""

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QToolBar,
)

from .. import APP_NAME, __version__
from ..core import tta
from ..resources import dataset_display_name, sample_dataset_path, user_data_dir
from . import engine, settings
from .dataset_browser import DatasetBrowser
from .evaluation_view import EvaluationView
from .history_view import HistoryView
from .jobs import Job, JobRunner
from .model_state import ModelState
from .prediction_pane import PredictionPane
from .robustness_view import RobustnessView
from .training_panel import TrainingPanel
from .widgets.error_dialog import show_error, show_exception

log = logging.getLogger("imgcls")

TAB_DATASET, TAB_TRAIN, TAB_EVALUATE, TAB_PREDICT = range(4)


EXPORT_FORMATS = {  # format -> (what the chooser shows, file filter or None for a folder)
    "saved_model": ("TensorFlow SavedModel (folder)", None),
    "tflite": ("TensorFlow Lite (.tflite)", "TensorFlow Lite (*.tflite)"),
    "onnx": ("ONNX (.onnx)", "ONNX (*.onnx)"),
}


def _config_from_dict(data):
    from ..core.training_config_io import training_config_from_dict

    data = {key: value for key, value in data.items() if key != "distribute"} if isinstance(data, dict) else data
    return training_config_from_dict(data)  # the window trains with "auto"; multi-worker is the CLI's (issue 14)


class MainWindow(QMainWindow):
    """The application window. Building it has no side effects; :meth:`start` begins work."""

    engine_ready = Signal(dict)  # library versions
    dataset_opened = Signal(object)  # DatasetScan
    model_changed = Signal(object)  # LoadedModel or None
    evaluation_finished = Signal(object)  # EvaluationReport
    model_exported = Signal(object)  # core.export.export_and_verify's dict

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.jobs = JobRunner(self)
        from .session import Session

        self.session = Session()  # the open dataset and the current model, Qt-free (issue 15)
        self._data_fix_rescan_pending = False  # fixing the data: one rescan per burst of moves
        self._retrain_root = None  # the folder whose rescan starts training (Retrain on corrected folder)
        self.versions = None
        self.state = ModelState(self, self.jobs, self.session)
        self._build()
        self._build_actions()
        self._connect()
        self.history.attach(self)  # records every training run of this window
        self._restore_settings()

    @property
    def scan(self):
        """The open dataset's scan (``session.scan``), or None."""
        return self.session.scan

    @scan.setter
    def scan(self, scan):
        self.session.set_scan(scan)

    # -- construction -------------------------------------------------------------------
    def _build(self):
        self.setWindowTitle(f"{APP_NAME} — image classifier trainer")
        self.setAcceptDrops(True)
        self.tabs = QTabWidget(self)
        self.tabs.setObjectName("mainTabs")
        self.browser = DatasetBrowser(self)
        self.training = TrainingPanel(self)
        self.evaluation = EvaluationView(self)
        # Robustness is a sub-tab of Evaluate: the step views keep Alt+1..4.
        self.robustness = RobustnessView(self)
        self.evaluate_tabs = QTabWidget(self)
        self.evaluate_tabs.setObjectName("evaluateTabs")
        self.evaluate_tabs.addTab(self.evaluation, "Results")
        self.evaluate_tabs.addTab(self.robustness, "Robustness")
        self.prediction = PredictionPane(self)
        for widget, title in ((self.browser, "&1 Dataset"), (self.training, "&2 Train"),
                              (self.evaluate_tabs, "&3 Evaluate"), (self.prediction, "&4 Predict")):
            self.tabs.addTab(widget, title)
        self.history = HistoryView(self)  # the run history: a fifth view, Alt+5
        self.tabs.addTab(self.history, "&5 History")
        self.setCentralWidget(self.tabs)
        self.engine_label = QLabel("Engine not loaded")
        self.engine_label.setObjectName("engineStatus")
        self.statusBar().addPermanentWidget(self.engine_label)
        self.prediction.set_model(None, "Train a model or open a .keras file to classify images.")

    def _action(self, text, slot, shortcut=None, tip=""):
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_actions(self):
        self.open_dataset_action = self._action("&Open dataset folder…", self.ask_open_dataset,
                                                QKeySequence.StandardKey.Open, "Open a folder of class folders")
        self.open_sample_action = self._action("Open &sample dataset", self.open_sample)
        self.open_model_action = self._action("Open &model…", self.ask_open_model, "Ctrl+Shift+O",
                                              "Open a .keras model file")
        self.save_model_action = self._action("&Save model as…", self.ask_save_model,
                                              QKeySequence.StandardKey.Save, "Save the current model as .keras")
        self.export_model_action = self._action("E&xport…", self.ask_export_model, None,
                                                "Export the current model to SavedModel, TFLite or ONNX")
        self.summary_action = self._action("Model s&ummary", self.show_model_summary, "Ctrl+I")
        self.evaluate_action = self._action("&Evaluate on dataset", self.evaluate_current, "Ctrl+E",
                                            "Evaluate the current model on the open dataset")
        self.check_robustness_action = self._action(
            "Check &robustness…", self.check_robustness, None,
            "Accuracy of the current model on blurred, darker, compressed, rotated... evaluation images")
        self.train_action = self._action("&Train", self.training.start_training)  # Ctrl+T lives on the Train button
        self.stop_action = self._action("&Stop training", self.training.request_stop)
        quit_action = self._action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        about_action = self._action("&About imgcls", self.show_about)
        log_action = self._action("Open &log folder", self.open_log_folder)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_dataset_action)
        self.recent_datasets_menu = file_menu.addMenu("Recent &datasets")
        file_menu.addAction(self.open_sample_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        self.undo_move_action = self._action("&Undo move", self.undo_move, QKeySequence.StandardKey.Undo,
                                             "Put back the last image moved to another class or to quarantine")
        self.undo_move_action.setEnabled(False)
        menu.addMenu("&Edit").addAction(self.undo_move_action)
        model_menu = menu.addMenu("&Model")
        for action in (self.open_model_action, self.save_model_action, self.export_model_action):
            model_menu.addAction(action)
        self.recent_models_menu = model_menu.addMenu("Recent m&odels")
        model_menu.addSeparator()
        model_menu.addAction(self.summary_action)
        model_menu.addAction(self.evaluate_action)
        model_menu.addAction(self.check_robustness_action)
        train_menu = menu.addMenu("&Training")
        train_menu.addAction(self.train_action)
        train_menu.addAction(self.stop_action)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(about_action)
        help_menu.addAction(log_action)

        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("mainToolbar")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        for action in (self.open_dataset_action, self.open_model_action, self.save_model_action):
            toolbar.addAction(action)
        toolbar.addSeparator()
        toolbar.addAction(self.train_action)
        toolbar.addAction(self.stop_action)
        self.addToolBar(toolbar)
        self._refresh_recent_menus()
        self._update_actions()

    def _connect(self):
        self.browser.dataset_loaded.connect(self._on_dataset_loaded)
        self.training.training_started.connect(self._on_training_started)
        self.training.training_succeeded.connect(self._on_training_succeeded)
        self.training.training_finished.connect(self._on_training_finished)
        self.state.model_changed.connect(self._on_model_changed)
        self.state.evaluation_finished.connect(self._on_evaluation_finished)
        self.state.message.connect(self.statusBar().showMessage)
        self.evaluation.move_requested.connect(self.move_image)
        self.evaluation.undo_requested.connect(self.undo_move)
        self.evaluation.retrain_requested.connect(self.retrain_on_corrected_folder)
        self.browser.scan_failed.connect(self._forget_retrain)
        self.browser.scan_cancelled.connect(self._forget_retrain)
        # Dataset doctor: its moves are journaled like the evaluation's, and the window rescans.
        self.browser.doctor.files_moved.connect(self._data_changed_on_disk)
        self.browser.doctor.class_weights_requested.connect(self.train_with_class_weights)

    # -- start-up -------------------------------------------------------------------
    def start(self, dataset=None):
        """Begin the work a fresh window does: load the engine, open a dataset."""
        from ..core.model_io import remove_stale_temp_files

        # Temp files of a save that a crash interrupted: hidden, never loaded, now removed.
        remove_stale_temp_files(user_data_dir() / "models")
        # The engine process starts now and imports TensorFlow there, while the window is
        # already usable; the versions job below returns once it has.
        engine.start_in_background()
        self.engine_label.setText("Loading engine…")
        # Its versions, and "CPU, 2 cores" (issue 14), from the engine process.
        self.jobs.start(Job(engine.load_engine, uses_engine=True), on_success=self._on_engine_loaded,
                        on_failure=self._on_engine_failed)
        target = dataset or settings.settings().value(settings.LAST_DATASET) or sample_dataset_path()
        if target and Path(target).is_dir():
            self.open_dataset(target)

    @Slot(object)
    def _on_engine_loaded(self, versions):
        devices = versions.pop("devices", None)
        self.versions = versions
        self.engine_label.setText(f"Engine ready (TensorFlow {versions['tensorflow']})"
                                  + (f" · trains on {devices}" if devices else ""))
        self.training.set_engine_ready(True)
        self.engine_ready.emit(versions)
        self._update_actions()

    @Slot(object, str)
    def _on_engine_failed(self, exc, details):
        self.engine_label.setText("Engine failed to load")
        show_exception(self, "The engine could not load", exc, details)

    # -- datasets -------------------------------------------------------------------
    def ask_open_dataset(self):
        folder = self._ask_folder()
        if folder:
            self.open_dataset(folder)

    def _ask_folder(self):
        return QFileDialog.getExistingDirectory(self, "Open a dataset folder (one sub-folder per class)")

    def open_sample(self):
        self.open_dataset(sample_dataset_path())

    def open_dataset(self, path):
        """Scan ``path`` in the background; the views update when the scan ends."""
        self.tabs.setCurrentIndex(TAB_DATASET)
        self.statusBar().showMessage(f"Scanning {dataset_display_name(path)}…")
        self.browser.open_folder(str(path))

    @Slot(object)
    def _on_dataset_loaded(self, scan):
        self.scan = scan
        self.training.set_dataset(scan)
        self.robustness.set_dataset(scan)
        settings.settings().setValue(settings.LAST_DATASET, str(scan.root))
        settings.push_recent(settings.RECENT_DATASETS, str(scan.root))
        self._refresh_recent_menus()
        self.statusBar().showMessage(
            f"Opened {dataset_display_name(scan.root)}: {len(scan.class_names)} classes, {scan.num_images} images"
            + (f", {len(scan.problems)} problem files" if scan.problems else ""), 8000)
        self.dataset_opened.emit(scan)
        self._after_data_fix_rescan(scan)
        self._update_actions()

    # -- models ---------------------------------------------------------------------
    def ask_open_model(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open a model", "", "Keras models (*.keras)")
        if path:
            self.open_model(path)

    def open_model(self, path):
        """Load a ``.keras`` file in the background (through core's safety gate)."""
        if self.training.is_training():
            show_error(self, "Busy", "A model is training. Stop it before opening another model.")
            return
        self.state.open(path)

    def ask_save_model(self):
        if self.state.loaded is None:
            return
        suggestion = str(Path.home() / f"{self.state.loaded.preset}.keras")
        path, _ = QFileDialog.getSaveFileName(self, "Save model as", suggestion, "Keras models (*.keras)")
        if path:
            if not path.lower().endswith(".keras"):
                path += ".keras"
            self.state.save_as(path)

    # -- export -----------------------------------------------------------------------
    def _ask_export_format(self):
        """Ask which format to export to (tests replace this). Returns a format or ""."""
        from PySide6.QtWidgets import QInputDialog

        titles = [title for title, _filter in EXPORT_FORMATS.values()]
        choice, accepted = QInputDialog.getItem(self, "Export model", "Format:", titles, 0, False)
        if not accepted:
            return ""
        return next(name for name, (title, _f) in EXPORT_FORMATS.items() if title == choice)

    def _ask_export_path(self, format):
        """Ask where to write the export (tests replace this). Returns a path or ""."""
        title, file_filter = EXPORT_FORMATS[format]
        stem = Path.home() / f"{self.state.loaded.preset}"
        if file_filter is None:
            path, _ = QFileDialog.getSaveFileName(self, f"Export as {title} (a new folder)",
                                                  str(stem) + "_saved_model")
            return path
        suffix = ".tflite" if format == "tflite" else ".onnx"
        path, _ = QFileDialog.getSaveFileName(self, f"Export as {title}", str(stem) + suffix, file_filter)
        if path and not path.lower().endswith(suffix):
            path += suffix
        return path

    def ask_export_model(self):
        if self.state.loaded is None:
            show_error(self, "No model", "Train a model or open a .keras file first.")
            return
        format = self._ask_export_format()
        if not format:
            return
        path = self._ask_export_path(format)
        if path:
            self.export_model(path, format)

    def export_model(self, path, format):
        """Export the current model in the background, then check it in its own runtime."""
        self.statusBar().showMessage(f"Exporting to {path}…")
        self.jobs.start(Job(engine.export, self.state.loaded, str(path), format, uses_engine=True),
                        on_success=self._on_exported, on_failure=self._on_export_failed)

    @Slot(object)
    def _on_exported(self, info):
        check = info["verification"]
        if check.get("verified"):
            detail = (f"checked with {check['runtime']}: top-1 agreement {check['top1_agreement']:.0%}, "
                      f"largest probability difference {check['max_abs_difference']:.1g}")
        else:
            detail = f"not checked: {check.get('reason')}"
        self.statusBar().showMessage(f"Exported {info['path']} ({info['bytes'] / 1e6:.1f} MB; {detail})")
        self.model_exported.emit(info)

    @Slot(object, str)
    def _on_export_failed(self, exc, details):
        self.statusBar().showMessage("Export failed")
        show_exception(self, "Export failed", exc, details)

    def evaluate_current(self):
        if self.state.loaded is None or self.scan is None:
            show_error(self, "Nothing to evaluate", "Open or train a model and open a dataset first.")
            return
        self.state.evaluate(self.scan)

    def check_robustness(self):
        """Show Evaluate ▸ Robustness and run the check on the current model and dataset."""
        if self.state.loaded is None or self.scan is None:
            show_error(self, "Nothing to check", "Open or train a model and open a dataset first.")
            return
        self.tabs.setCurrentIndex(TAB_EVALUATE)
        self.evaluate_tabs.setCurrentWidget(self.robustness)
        self.robustness.run_check()

    @Slot(object)
    def _on_model_changed(self, loaded):
        if loaded is None:
            self.prediction.set_model(None, "Train a model or open a .keras file to classify images.")
        else:
            self.prediction.set_model(loaded)
            if loaded.path is not None:
                settings.push_recent(settings.RECENT_MODELS, str(loaded.path))
                self._refresh_recent_menus()
            for warning in loaded.warnings:
                self.statusBar().showMessage(warning, 10000)
        self.robustness.set_model(loaded)
        self.evaluation.set_model(loaded)  # heat maps in the gallery
        self.model_changed.emit(loaded)
        self._update_actions()

    @Slot(object)
    def _on_evaluation_finished(self, report):
        self.evaluation.show_report(report)
        self.tabs.setCurrentIndex(TAB_EVALUATE)
        self.evaluate_tabs.setCurrentWidget(self.evaluation)
        self.evaluation_finished.emit(report)

    def show_model_summary(self):
        if self.state.loaded is None:
            show_error(self, "No model", "Train a model or open a .keras file first.")
            return
        summary = self.state.loaded.summary()
        history = summary.get("history") or {}
        lines = [
            f"<b>Preset:</b> {summary['preset']}",
            f"<b>Input size:</b> {summary['image_size'][0]} x {summary['image_size'][1]} RGB",
            f"<b>Classes ({len(summary['class_names'])}):</b> {', '.join(summary['class_names'])}",
            f"<b>Parameters:</b> {summary['parameters']:,}",
            f"<b>Epochs trained:</b> {summary.get('epochs_run') or 'unknown'}",
        ]
        if summary.get("forward_mflops"):
            lines.insert(4, f"<b>Compute:</b> {summary['forward_mflops']:g} MFLOP per image")
        views = tta.describe(summary.get("test_time_augmentation"))
        if views:
            lines.append(f"<b>Answers with:</b> the mean of {views}")
        if summary.get("best_val_accuracy") is not None:
            lines.append(f"<b>Best validation accuracy:</b> {summary['best_val_accuracy']:.3f}")
        if history.get("loss"):
            lines.append(f"<b>Final training loss:</b> {history['loss'][-1]:.4f}")
        calibration = self.state.loaded.metadata.get("calibration")
        if isinstance(calibration, dict) and "temperature" in calibration:
            lines.append(f"<b>Calibration:</b> temperature {calibration['temperature']:.3g}, "
                         f"validation ECE {calibration['ece_before']:.3f} → {calibration['ece_after']:.3f}, "
                         f"\"none of my classes\" below {calibration['unknown_threshold']:.0%}")
        lines.append(f"<b>File:</b> {summary['path'] if summary['path'] != 'None' else 'not saved yet'}")
        self._show_message_box("Model summary", "<br>".join(lines))

    # -- training -------------------------------------------------------------------
    @Slot()
    def _on_training_started(self):
        # Train from any view (menu, toolbar, Ctrl+T, retrain): the user watches it here.
        self.tabs.setCurrentIndex(TAB_TRAIN)
        self.prediction.set_training_active(True)
        self.robustness.set_training_active(True)
        self.browser.doctor.set_training_active(True)
        self._update_actions()

    @Slot(object)
    def _on_training_succeeded(self, result):
        self.state.adopt_training_result(result, self.scan)

    @Slot()
    def _on_training_finished(self):
        self.prediction.set_training_active(False)
        self.robustness.set_training_active(False)
        self.browser.doctor.set_training_active(False)
        self._update_actions()

    def train_with_class_weights(self):
        """The dataset doctor's suggestion: tick "Balance classes" and show the Train view."""
        self.training.class_weights_check.setChecked(True)
        self.tabs.setCurrentIndex(TAB_TRAIN)

    # -- fixing the data: move / quarantine with undo, retrain -----------------------
    # Moves are renames, fast enough for the GUI thread; core.data_fixes journals them.
    def move_image(self, path, class_name):
        """Move ``path`` into ``class_name``'s folder, or to quarantine when it is ""; returns the entry."""
        from ..core import data_fixes
        from ..core.errors import ImgclsError

        if not self._data_fix_allowed("moving images"):
            return None
        try:
            if class_name:
                entry = data_fixes.move_to_class(self.scan.root, path, class_name)
            else:
                entry = data_fixes.quarantine(self.scan.root, path, reason="from the evaluation view")
        except ImgclsError as exc:
            show_exception(self, "Could not move the image", exc)
            return None
        self.evaluation.mark_moved(path, entry)
        self.statusBar().showMessage(f"Moved {entry['source']} to {entry['target']}", 8000)
        self._data_changed_on_disk()
        return entry

    def undo_move(self):
        """Put back the last image moved (Edit ▸ Undo move); returns the undo entry or None."""
        from ..core import data_fixes
        from ..core.errors import ImgclsError

        if not self._data_fix_allowed("undoing a move"):
            return None
        try:
            entry = data_fixes.undo(self.scan.root)
        except ImgclsError as exc:
            show_exception(self, "Could not undo the move", exc)
            return None
        if entry is None:
            self.statusBar().showMessage("Nothing to undo", 5000)
        else:
            self.evaluation.mark_restored(entry["target_path"])
            self.statusBar().showMessage(f"Put {entry['target']} back", 8000)
        self._data_changed_on_disk()
        return entry

    def retrain_on_corrected_folder(self):
        """Rescan the dataset, then train with the Train view's settings (one click)."""
        if not self._data_fix_allowed("retraining"):
            return False
        if self.versions is None:
            show_error(self, "Engine loading", "The training engine is still loading; retrain once "
                                               "the status bar says \"Engine ready\".")
            return False
        self._retrain_root = str(self.scan.root)
        self.tabs.setCurrentIndex(TAB_TRAIN)
        self.browser.open_folder(self._retrain_root)
        return True

    def _data_fix_allowed(self, what):
        if self.scan is None:
            show_error(self, "No dataset", "Open the dataset folder first.")
            return False
        if self.training.is_training():
            show_error(self, "Training is running", f"A model is training on these files; stop it "
                                                    f"(Esc) before {what}.")
            return False
        return True

    def _data_changed_on_disk(self):
        from PySide6.QtCore import QTimer

        self._refresh_undo_move()
        if not self._data_fix_rescan_pending:
            self._data_fix_rescan_pending = True
            QTimer.singleShot(0, self._rescan_after_data_fix)

    @Slot()
    def _rescan_after_data_fix(self):
        self._data_fix_rescan_pending = False
        if self.scan is not None and self._retrain_root is None:
            self.browser.open_folder(str(self.scan.root))

    def _refresh_undo_move(self):
        from ..core import data_fixes
        from ..core.errors import ImgclsError

        try:
            available = self.scan is not None and bool(data_fixes.undoable_entries(self.scan.root))
        except ImgclsError:
            available = False
        self.undo_move_action.setEnabled(available)
        self.evaluation.set_undo_available(available)

    def _after_data_fix_rescan(self, scan):
        self._refresh_undo_move()
        if self._retrain_root is not None and self._retrain_root == str(scan.root):
            self._retrain_root = None
            if not self.training.start_training():
                show_error(self, "Cannot retrain", self.training.train_button.toolTip())

    @Slot()
    def _forget_retrain(self):
        self._retrain_root = None

    # -- drops on the window ---------------------------------------------------------
    def dragEnterEvent(self, event):
        if any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event):
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        if len(paths) == 1 and paths[0].suffix.lower() == ".keras":
            self.open_model(paths[0])
        elif len(paths) == 1 and paths[0].is_dir() and self.tabs.currentIndex() != TAB_PREDICT:
            self.open_dataset(paths[0])
        else:
            self.tabs.setCurrentIndex(TAB_PREDICT)
            self.prediction.classify_paths([str(p) for p in paths])

    # -- misc -----------------------------------------------------------------------
    def _update_actions(self):
        training = self.training.is_training()
        has_model = self.state.loaded is not None
        self.save_model_action.setEnabled(has_model and not training)
        self.summary_action.setEnabled(has_model)
        self.export_model_action.setEnabled(has_model and not training)
        self.evaluate_action.setEnabled(has_model and self.scan is not None and not training)
        self.check_robustness_action.setEnabled(has_model and self.scan is not None and not training)
        self.open_model_action.setEnabled(not training)
        self.train_action.setEnabled(self.scan is not None and self.versions is not None and not training)
        self.stop_action.setEnabled(training)

    def _refresh_recent_menus(self):
        for menu, key, opener in ((self.recent_datasets_menu, settings.RECENT_DATASETS, self.open_dataset),
                                  (self.recent_models_menu, settings.RECENT_MODELS, self.open_model)):
            menu.clear()
            items = settings.recent(key)
            for path in items:
                action = menu.addAction(path)
                action.setData(path)
                action.triggered.connect(self._open_recent)
                action.setProperty("opener", "dataset" if opener == self.open_dataset else "model")
            menu.setEnabled(bool(items))

    @Slot()
    def _open_recent(self):
        action = self.sender()
        path = action.data()
        (self.open_dataset if action.property("opener") == "dataset" else self.open_model)(path)

    def show_about(self):
        versions = self.versions or {"tensorflow": "not loaded yet", "keras": "not loaded yet"}
        from PySide6 import __version__ as pyside_version

        log_file = user_data_dir() / "logs" / "imgcls.log"
        self._show_message_box(
            f"About {APP_NAME}",
            f"<h3>{APP_NAME} {__version__}</h3>"
            "<p>Train image classifiers from folders of photos, on your own computer.</p>"
            f"<p>TensorFlow {versions['tensorflow']} · Keras {versions['keras']} · PySide6 {pyside_version}</p>"
            f"<p>Log file: {log_file}</p>"
            "<p>Shortcuts: Ctrl+O open dataset · Ctrl+Shift+O open model · Ctrl+S save model · "
            "Ctrl+T train · Esc stop · Ctrl+E evaluate · Ctrl+I model summary · Ctrl+Z undo move · Alt+1..5 views</p>",
        )

    def _show_message_box(self, title, html):
        box = QMessageBox(QMessageBox.Icon.Information, title, html, QMessageBox.StandardButton.Ok, self)
        box.setTextFormat(Qt.TextFormat.RichText)
        box.show()  # non-modal: the window keeps working behind it
        self._last_message_box = box
        return box

    def open_log_folder(self):
        from PySide6.QtCore import QUrl
        from PySide6.QtGui import QDesktopServices

        QDesktopServices.openUrl(QUrl.fromLocalFile(str(user_data_dir() / "logs")))

    def _restore_settings(self):
        store = settings.settings()
        geometry = store.value(settings.GEOMETRY)
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 760)
        state = store.value(settings.WINDOW_STATE)
        if state is not None:
            self.restoreState(state)
        saved = settings.load_json(settings.TRAINING_CONFIG)
        if saved:
            try:
                self.training.set_config(_config_from_dict(saved))
            except (TypeError, ValueError, KeyError):
                pass  # settings from another version: keep the preset's defaults

    def _confirm_close_during_training(self):
        """Ask whether to stop training and quit (tests replace this)."""
        answer = QMessageBox.question(
            self, "Training is running",
            "A model is training. Stop training and quit? The best model so far is kept in your "
            "data folder.")
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event):
        if self.training.is_training():
            if not self._confirm_close_during_training():
                event.ignore()
                return
            self.statusBar().showMessage("Stopping training…")
            self.training.request_stop()
            self.training.wait_for_stop(120000)
        self.history.flush_pending()  # a run still waiting for its evaluation is written now
        self.jobs.cancel_all()  # first, so evaluations stop while the browser winds down
        self.robustness.cancel()
        self.browser.stop_background_work()
        self.jobs.wait(60000)
        self.shutdown_engine()
        store = settings.settings()
        store.setValue(settings.GEOMETRY, self.saveGeometry())
        store.setValue(settings.WINDOW_STATE, self.saveState())
        settings.save_json(settings.TRAINING_CONFIG, self.training.config().to_dict())
        event.accept()

    def shutdown_engine(self, timeout=10.0):
        """Stop the engine process: a shutdown message, then a deadline, then a kill."""
        if self.keeps_engine_running:
            return True
        return engine.shutdown(timeout)

    keeps_engine_running = False  # tests share one engine between windows
