"""The Train tab: pick a preset, adjust settings, train, watch the curves, stop.

Training runs on a :class:`training_worker.TrainingController` thread; this widget only
reacts to its GUI-thread signals. TensorFlow is never imported here: the augmentation
preview imports core on a pool thread (a :class:`jobs.Job`).
"""

import time

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.defaults import DEFAULT_SEED
from ..core.models import DEFAULT_PRESET, PRESETS, Augmentation
from . import engine
from ._qt import named, pixmap_from_array
from .jobs import Job, JobRunner
from .live_chart import LiveChart
from .training_worker import TrainingController, duration_text, progress_text, result_text
from .widgets import error_dialog

PREVIEW_COUNT = 8
PREVIEW_PIXELS = 72


def _row(layout, *widgets):
    """A plain widget holding ``widgets`` in ``layout`` without extra margins."""
    holder = QWidget()
    holder.setLayout(layout)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget)
    return holder


def _spin(minimum, maximum, value=0, decimals=None, step=None):
    spin = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        spin.setDecimals(decimals)
    spin.setRange(minimum, maximum)
    if step is not None:
        spin.setSingleStep(step)
    spin.setValue(value)
    return spin


def recommend_for(scan):
    """``(scan, core.recommend.recommend(scan))``, on a pool thread (it reads image headers)."""
    from ..core.recommend import recommend

    return scan, recommend(scan)


class TrainingPanel(QWidget):
    """Training settings, Train/Stop, progress and the live chart.

    Signals:
        training_started(), training_progressed(TrainingProgress),
        training_succeeded(TrainingResult), training_failed(exception, traceback_text),
        training_finished() (always, after succeeded or failed).
    """

    training_started = Signal()
    training_progressed = Signal(object)
    training_succeeded = Signal(object)
    training_failed = Signal(object, str)
    training_finished = Signal()
    recommendation_ready = Signal(object)

    def __init__(self, parent=None):
        super().__init__(parent)
        named(self, "trainingPanel")
        self._scan = None
        self.recommendation = None  # core.recommend.Recommendation for the open dataset
        # Whether the user changed a setting the recommendation sets, since the dataset opened:
        # their choice then wins over a recommendation that arrives later.
        self._settings_touched = False
        self._applying = False
        self._engine_ready = False
        self._early_stopping_patience = 10
        self._stop_requested = False
        self.controller = TrainingController(self)
        self.controller.progressed.connect(self._on_progressed)
        self.controller.succeeded.connect(self._on_succeeded)
        self.controller.failed.connect(self._on_failed)
        self.controller.finished.connect(self._on_finished)
        self.jobs = JobRunner(self)
        self._build()
        self.preset_combo.currentIndexChanged.connect(self._on_preset_changed)
        self.preset_combo.setCurrentIndex(list(PRESETS).index(DEFAULT_PRESET))
        self._on_preset_changed()
        for signal in (self.preset_combo.currentIndexChanged, self.epochs_radio.toggled,
                       self.epochs_spin.valueChanged, self.minutes_spin.valueChanged,
                       self.image_size_spin.valueChanged, self.validation_spin.valueChanged):
            signal.connect(self._on_setting_edited)
        self._update_buttons()

    # -- layout -----------------------------------------------------------------
    def _build(self):
        self.preset_combo = named(QComboBox(), "presetCombo")
        for index, preset in enumerate(PRESETS.values()):
            self.preset_combo.addItem(preset.title, preset.name)
            self.preset_combo.setItemData(index, preset.description, Qt.ItemDataRole.ToolTipRole)
        self.epochs_radio = named(QRadioButton("Epochs"), "epochsRadio")
        self.time_radio = named(QRadioButton("Train for N minutes"), "timeBudgetRadio")
        self.epochs_radio.setChecked(True)
        mode_group = QButtonGroup(self)
        for radio in (self.epochs_radio, self.time_radio):
            mode_group.addButton(radio)
        self.epochs_radio.toggled.connect(self._update_mode)
        self.epochs_spin = named(_spin(1, 10_000, 10), "epochsSpin")
        self.minutes_spin = named(_spin(0.05, 24 * 60, 5.0, decimals=2, step=0.5), "minutesSpin")
        # 0 shows "auto": core then fits the batch size (and learning rate) to the dataset.
        self.batch_size_spin = named(_spin(0, 4096, 0), "batchSizeSpin")
        self.batch_size_spin.setSpecialValueText("auto")
        self.learning_rate_spin = named(_spin(0.0, 10.0, 0.0, decimals=6), "learningRateSpin")
        self.learning_rate_spin.setSpecialValueText("auto")
        self.learning_rate_spin.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.image_size_spin = named(_spin(16, 1024, 32), "imageSizeSpin")
        self.validation_spin = named(_spin(0, 50, 20), "validationSplitSpin")
        self.validation_spin.setSuffix(" %")
        self.seed_spin = named(_spin(0, 2**31 - 1, DEFAULT_SEED), "seedSpin")
        # Dataset doctor: TrainingConfig.class_weights="balanced"; its suggestion turns this on.
        self.class_weights_check = named(QCheckBox("Balance classes (class weights)"), "classWeightsCheck")
        self.class_weights_check.setToolTip("Weigh each class by its inverse frequency, so a small class "
                                            "counts as much as a large one (Dataset ▸ Check dataset "
                                            "says when it helps)")
        self.flip_check = named(QCheckBox("Horizontal flip"), "flipCheck")
        self.augmentation_spins = {
            name: named(_spin(0.0, 1.0, 0.0, decimals=2, step=0.05), f"{name}Spin")
            for name in ("rotation", "zoom", "translation", "contrast")}
        self.weights_combo = named(QComboBox(), "weightsCombo")
        self.weights_combo.addItem("ImageNet (built in or downloaded once)", "imagenet")
        self.weights_combo.addItem("Local file…", "file")
        self.weights_combo.currentIndexChanged.connect(self._update_weights_row)
        self.weights_path = named(QLineEdit(), "weightsPath")
        self.weights_path.setPlaceholderText("a Keras weights file without the top layers")
        self.weights_path.textChanged.connect(self._update_buttons)
        self.weights_browse = named(QPushButton("Browse…"), "weightsBrowseButton")
        self.weights_browse.clicked.connect(self._on_browse_weights)
        self.weights_row = _row(QHBoxLayout(), self.weights_combo, self.weights_path, self.weights_browse)
        self.weights_label = QLabel("Backbone weights")
        self.fine_tune_spin = named(_spin(0, 1000, 0), "fineTuneSpin")
        self.fine_tune_spin.setSpecialValueText("off")
        self.fine_tune_spin.setToolTip("After the head, train the top third of the backbone too, for this "
                                       "many epochs at a hundredth of the learning rate (slower; under "
                                       "a time limit it takes four fifths of the time)")
        self.fine_tune_label = QLabel("Fine-tune backbone (epochs)")
        self.preview_button = named(QPushButton("Preview augmentation"), "previewButton")
        self.preview_button.clicked.connect(self.preview_augmentation)

        self.recommendation_label = named(QLabel(""), "recommendationLabel")
        self.recommendation_label.setWordWrap(True)
        # Wrap at the settings' width instead of widening the column (and squeezing the chart).
        self.recommendation_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.recommendation_label.setTextFormat(Qt.TextFormat.RichText)
        self.use_recommended_button = named(QPushButton("Use recommended settings"), "useRecommendedButton")
        self.use_recommended_button.setToolTip("Set the preset, image size, time and validation split "
                                               "recommended for this dataset")
        self.use_recommended_button.clicked.connect(self.use_recommendation)
        self.recommendation_box = named(QGroupBox("Recommended for this dataset"), "recommendationBox")
        recommendation_layout = QVBoxLayout(self.recommendation_box)
        recommendation_layout.addWidget(self.recommendation_label)
        recommendation_layout.addWidget(self.use_recommended_button)
        self.recommendation_box.hide()

        self.settings = named(QGroupBox("Settings"), "trainingSettings")
        form = QFormLayout(self.settings)
        for label, widget in [("Preset", self.preset_combo), (self.epochs_radio, self.epochs_spin),
                              (self.time_radio, self.minutes_spin), ("Batch size", self.batch_size_spin),
                              ("Learning rate", self.learning_rate_spin),
                              ("Image size (px)", self.image_size_spin),
                              ("Validation split", self.validation_spin), ("Seed", self.seed_spin),
                              (self.weights_label, self.weights_row),
                              (self.fine_tune_label, self.fine_tune_spin)]:
            form.addRow(label, widget)
        form.addRow("", self.class_weights_check)  # dataset doctor
        augmentation = QGroupBox("Augmentation")
        grid = QGridLayout(augmentation)
        grid.addWidget(self.flip_check, 0, 0, 1, 2)
        for index, (name, spin) in enumerate(self.augmentation_spins.items()):
            grid.addWidget(QLabel(name.capitalize()), 1 + index // 2, 2 * (index % 2))
            grid.addWidget(spin, 1 + index // 2, 2 * (index % 2) + 1)
        grid.addWidget(self.preview_button, 3, 0, 1, 4)
        form.addRow(augmentation)
        self.preview_layout = QHBoxLayout()
        self.preview_strip = named(_row(self.preview_layout), "augmentationPreview")
        self.preview_strip.hide()

        self.train_button = named(QPushButton("Train"), "trainButton")
        self.train_button.setShortcut(QKeySequence("Ctrl+T"))
        self.train_button.clicked.connect(self.start_training)
        self.stop_button = named(QPushButton("Stop"), "stopButton")
        self.stop_button.setToolTip("Stop after the current batch and keep the best model so far (Esc)")
        self.stop_button.clicked.connect(self.request_stop)
        self.progress_bar = named(QProgressBar(), "trainingProgress")
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setFormat("Not training")
        self.status_label = named(QLabel(""), "trainingStatus")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.chart = LiveChart(self)

        left = QVBoxLayout()
        for widget in (self.recommendation_box, self.settings, self.preview_strip):
            left.addWidget(widget)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(_row(QHBoxLayout(), self.train_button, self.stop_button, self.progress_bar))
        right.addWidget(self.status_label)
        right.addWidget(self.chart, 1)
        layout = QHBoxLayout(self)
        layout.addLayout(left)
        layout.addLayout(right, 1)

    # -- settings -----------------------------------------------------------------
    def preset_name(self):
        return self.preset_combo.currentData()

    @Slot()
    def _on_preset_changed(self):
        preset = PRESETS[self.preset_name()]
        self.preset_combo.setToolTip(preset.description)
        self.epochs_spin.setValue(preset.epochs)
        self.batch_size_spin.setValue(0)
        self.batch_size_spin.setToolTip(f"auto: {preset.batch_size}, smaller for small datasets")
        self.learning_rate_spin.setValue(0.0)
        self.learning_rate_spin.setToolTip(f"auto: {preset.learning_rate:g}, scaled with the batch size")
        self.image_size_spin.setValue(preset.image_size)
        self._set_augmentation(preset.augmentation)
        transfer = preset.kind == "transfer"
        for widget in (self.weights_label, self.weights_row, self.fine_tune_label, self.fine_tune_spin):
            widget.setVisible(transfer)
        self._update_weights_row()

    def _set_augmentation(self, augmentation):
        self.flip_check.setChecked(augmentation.flip)
        for name, spin in self.augmentation_spins.items():
            spin.setValue(getattr(augmentation, name))

    def augmentation(self):
        return Augmentation(flip=self.flip_check.isChecked(),
                            **{name: spin.value() for name, spin in self.augmentation_spins.items()})

    @Slot()
    def _update_mode(self):
        self.epochs_spin.setEnabled(self.epochs_radio.isChecked())
        self.minutes_spin.setEnabled(self.time_radio.isChecked())

    @Slot()
    def _update_weights_row(self):
        local = self.weights_combo.currentData() == "file"
        self.weights_path.setEnabled(local)
        self.weights_browse.setEnabled(local)
        self._update_buttons()

    def choose_weights_file(self):
        """Ask for a local weights file; returns a path or "" (tests replace this)."""
        path, _ = QFileDialog.getOpenFileName(self, "Backbone weights", "",
                                              "Keras weights (*.h5 *.keras);;All files (*)")
        return path

    @Slot()
    def _on_browse_weights(self):
        path = self.choose_weights_file()
        if path:
            self.weights_path.setText(path)

    def config(self):
        """A ``core.training.TrainingConfig`` built from the widgets."""
        from ..core.training import TrainingConfig

        preset = PRESETS[self.preset_name()]
        weights = None
        if preset.kind == "transfer":
            local = self.weights_combo.currentData() == "file"
            weights = (self.weights_path.text().strip() or None) if local else "imagenet"
        timed = self.time_radio.isChecked()
        return TrainingConfig(
            preset=preset.name,
            epochs=None if timed else self.epochs_spin.value(),
            time_budget=round(self.minutes_spin.value() * 60.0, 3) if timed else None,
            batch_size=self.batch_size_spin.value() or None,
            learning_rate=self.learning_rate_spin.value() or None,
            image_size=self.image_size_spin.value(),
            validation_split=self.validation_spin.value() / 100.0,
            seed=self.seed_spin.value(),
            augmentation=self.augmentation(),
            early_stopping_patience=self._early_stopping_patience,
            weights=weights or "imagenet",
            class_weights="balanced" if self.class_weights_check.isChecked() else None,  # dataset doctor
            fine_tune_epochs=self.fine_tune_spin.value() if preset.kind == "transfer" else 0,
        )

    def set_config(self, config):
        """Show ``config`` (a TrainingConfig); fields left None take the preset's defaults."""
        index = self.preset_combo.findData(config.preset)
        if index >= 0:
            self.preset_combo.setCurrentIndex(index)
        self._on_preset_changed()
        resolved = config.resolved()
        self.epochs_spin.setValue(resolved.epochs)
        if config.time_budget:
            self.time_radio.setChecked(True)
            self.minutes_spin.setValue(config.time_budget / 60.0)
        else:
            self.epochs_radio.setChecked(True)
        self.batch_size_spin.setValue(config.batch_size or 0)
        self.learning_rate_spin.setValue(config.learning_rate or 0.0)
        self.image_size_spin.setValue(resolved.image_size)
        self.validation_spin.setValue(round(config.validation_split * 100))
        self.seed_spin.setValue(config.seed)
        self._set_augmentation(resolved.augmentation)
        self._early_stopping_patience = config.early_stopping_patience
        self.class_weights_check.setChecked(config.class_weights == "balanced")  # dataset doctor
        self.fine_tune_spin.setValue(config.fine_tune_epochs or 0)
        if config.weights not in (None, "imagenet"):
            self.weights_combo.setCurrentIndex(self.weights_combo.findData("file"))
            self.weights_path.setText(str(config.weights))
        else:
            self.weights_combo.setCurrentIndex(self.weights_combo.findData("imagenet"))
        # A configuration set on purpose (restored, retrain, self-test) is the user's choice,
        # even where it happens to equal what the widgets showed.
        self._settings_touched = True
        self._update_recommendation_text()

    # -- recommendation ---------------------------------------------------------------
    @Slot()
    def _on_setting_edited(self):
        if not self._applying:
            self._settings_touched = True
            self._update_recommendation_text()

    def _apply_settings(self, apply):
        """Run ``apply()`` without counting its widget changes as the user's own."""
        self._applying = True
        try:
            apply()
        finally:
            self._applying = False

    def _start_recommendation(self, scan):
        self.jobs.start(Job(recommend_for, scan), on_success=self._on_recommended,
                        on_failure=self._on_recommendation_failed)

    @Slot(object)
    def _on_recommended(self, answer):
        scan, recommendation = answer
        if scan is not self._scan:
            return  # a dataset opened since: its own recommendation is on the way
        self.recommendation = recommendation
        if not self._settings_touched and not self.is_training():
            self.use_recommendation(user=False)
        self._update_recommendation_text()
        self.recommendation_box.show()
        self.recommendation_ready.emit(recommendation)

    @Slot(object, str)
    def _on_recommendation_failed(self, exc, details):
        # A recommendation is a convenience: the preset's defaults still train.
        self.recommendation_label.setText(f"No recommendation ({exc}); the settings below still work.")
        self.recommendation_box.show()

    @Slot()
    def use_recommendation(self, user=True):
        """Set the recommended preset, image size, time budget and validation split."""
        recommendation = self.recommendation
        if recommendation is None or self.is_training():
            return

        def apply():
            self.preset_combo.setCurrentIndex(self.preset_combo.findData(recommendation.preset))
            self._on_preset_changed()
            self.image_size_spin.setValue(recommendation.image_size)
            if recommendation.time_budget:
                self.time_radio.setChecked(True)
                self.minutes_spin.setValue(recommendation.time_budget / 60.0)
            else:
                self.epochs_radio.setChecked(True)
            self.validation_spin.setValue(round(recommendation.validation_split * 100))

        self._apply_settings(apply)
        self._settings_touched = False
        self._update_recommendation_text()

    def _update_recommendation_text(self):
        recommendation = self.recommendation
        if recommendation is None:
            return
        preset = PRESETS[recommendation.preset]
        if recommendation.time_budget:
            when = f"for {recommendation.time_budget / 60:g} min"
        elif preset.keep_last_epoch:
            when = f"{preset.epochs} epochs"
        else:
            when = f"{preset.epochs} epochs at most (stops early when it stops improving)"
        following = not self._settings_touched
        state = ("<i>These settings follow it.</i>" if following
                 else "<i>You changed the settings; the recommendation is not applied.</i>")
        self.recommendation_label.setText(
            f"<b>{preset.title}</b>, {recommendation.image_size} px, {when}.<br>{recommendation.reason}<br>{state}")
        self.use_recommended_button.setEnabled(not following)

    # -- dataset / engine state -------------------------------------------------
    def set_dataset(self, scan):
        """The ``DatasetScan`` to train on next, or None.

        Another folder than before starts afresh: the last run's chart and messages go,
        and the settings follow the new folder's recommendation (computed in the
        background) until the user changes one. A rescan of the same folder keeps both.
        """
        previous = self._scan
        self._scan = scan
        same_folder = previous is not None and scan is not None and previous.root == scan.root
        if not same_folder and not self.is_training():
            self.chart.clear()
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("Not training")
            self.status_label.setText("")
            self.recommendation = None
            self.recommendation_box.hide()
            self._settings_touched = False
        if scan is not None and (not same_folder or self.recommendation is None):
            self._start_recommendation(scan)
        self._update_buttons()

    def set_engine_ready(self, ready):
        """Train stays disabled until the background TensorFlow load has finished."""
        self._engine_ready = bool(ready)
        self._update_buttons()

    def _train_blocker(self):
        if self._scan is None:
            return "Open a dataset folder first (one sub-folder per class)."
        if not self._engine_ready:
            return "The training engine (TensorFlow) is still loading; Train unlocks when it is ready."
        if (PRESETS[self.preset_name()].kind == "transfer" and self.weights_combo.currentData() == "file"
                and not self.weights_path.text().strip()):
            return "Choose a backbone weights file, or pick \"ImageNet (built in or downloaded once)\"."
        return ""

    @Slot()
    def _update_buttons(self):
        training = self.is_training()
        blocker = self._train_blocker()
        self.train_button.setEnabled(not training and not blocker)
        self.train_button.setToolTip(blocker or "Train a model on the open dataset (Ctrl+T)")
        self.stop_button.setEnabled(training)
        # Esc means Stop only while training, so it cannot swallow Esc elsewhere.
        self.stop_button.setShortcut(QKeySequence(Qt.Key.Key_Escape) if training else QKeySequence())
        self.settings.setEnabled(not training)
        self.preview_button.setEnabled(self._scan is not None and not training)

    # -- training -------------------------------------------------------------------
    def is_training(self):
        return self.controller.is_running()

    @Slot()
    def start_training(self):
        """What Train does; returns False when training cannot start (or already runs)."""
        started_at = time.monotonic()  # the moment Train was pressed: a time budget counts from here
        if self.is_training() or self._train_blocker():
            return False
        config = self.config()
        if not self.controller.start(self._scan, config, started_at=started_at):
            return False
        self._stop_requested = False
        self.chart.clear()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("Starting…")
        self.status_label.setText(f"Training {PRESETS[config.preset].title}…")
        self._update_buttons()
        self.training_started.emit()
        return True

    @Slot()
    def request_stop(self):
        if self.is_training():
            self._stop_requested = True
            self.status_label.setText("Stopping after the current batch…")
            self.controller.request_stop()

    def wait_for_stop(self, timeout_ms=30000):
        """Block (processing events) until training has finished; False on timeout."""
        return self.controller.wait(timeout_ms)

    def shutdown(self, timeout_ms=30000):
        """Stop training and wait for it (the window calls this before closing)."""
        self.request_stop()
        return self.wait_for_stop(timeout_ms)

    def closeEvent(self, event):
        self.shutdown()
        super().closeEvent(event)

    @Slot(object)
    def _on_progressed(self, progress):
        self.progress_bar.setValue(int(round(progress.fraction_done * 1000)))
        self.progress_bar.setFormat(progress_text(progress).replace("%", "%%"))
        if progress.kind == "epoch":
            metrics = ", ".join(f"{key} {value:.3f}" for key, value in progress.metrics.items())
            self.status_label.setText(f"Epoch {progress.epoch}: {metrics}")
        self.chart.add_progress(progress)
        self.training_progressed.emit(progress)

    @Slot(object)
    def _on_succeeded(self, result):
        self.chart.redraw_soon()
        self.progress_bar.setValue(1000)
        self.progress_bar.setFormat(f"Done · {result.epochs_run} epoch(s) in {duration_text(result.seconds)}")
        self.status_label.setText(result_text(result))
        self.training_succeeded.emit(result)

    @Slot(object, str)
    def _on_failed(self, exc, details):
        from ..core.errors import TrainingError

        self.chart.redraw_soon()
        self.progress_bar.setFormat("Stopped" if self._stop_requested else "Failed")
        if self._stop_requested and isinstance(exc, TrainingError):
            # The user asked for it: no model was made yet, which is news, not an error.
            self.status_label.setText(str(exc))
        else:
            self.status_label.setText(f"Training failed: {exc}")
            error_dialog.show_exception(self, "Training failed", exc, details)
        self.training_failed.emit(exc, details)

    @Slot()
    def _on_finished(self):
        self._update_buttons()
        self.training_finished.emit()

    # -- augmentation preview ---------------------------------------------------------
    def _preview_paths(self):
        # Round-robin over classes, so the strip shows more than one class.
        by_class = {}
        for item in self._scan.splits[self._scan.training_split_name()]:
            by_class.setdefault(item.label, []).append(item.path)
        paths, queues = [], [list(v) for _, v in sorted(by_class.items())]
        while len(paths) < PREVIEW_COUNT and any(queues):
            for queue in queues:
                if queue and len(paths) < PREVIEW_COUNT:
                    paths.append(queue.pop(0))
        return paths

    @Slot()
    def preview_augmentation(self):
        """Show ~8 augmented training images (computed on a pool thread)."""
        if self._scan is None:
            return None
        paths = self._preview_paths()
        if not paths:
            return None
        self.preview_button.setEnabled(False)
        # The engine loads and augments them (augmentation is TensorFlow's).
        job = Job(engine.augmentation_preview, paths, self.image_size_spin.value(), self.augmentation(),
                  seed=self.seed_spin.value(), uses_engine=True)
        return self.jobs.start(job, on_success=self._on_preview_ready,
                               on_failure=self._on_preview_failed)

    @Slot(object)
    def _on_preview_ready(self, images):
        while self.preview_layout.count():
            self.preview_layout.takeAt(0).widget().deleteLater()
        for index, image in enumerate(images):
            label = named(QLabel(), f"previewImage{index}")
            label.setPixmap(pixmap_from_array(image, PREVIEW_PIXELS))
            self.preview_layout.addWidget(label)
        self.preview_strip.show()
        self._update_buttons()

    @Slot(object, str)
    def _on_preview_failed(self, exc, details):
        self._update_buttons()
        error_dialog.show_exception(self, "Augmentation preview failed", exc, details)
