"""The current model of the window: open, adopt after training, autosave, save as, evaluate.

Every file and TensorFlow operation runs as a background job; this object turns their
results into signals the window and its views listen to.
"""

import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from ..resources import user_data_dir
from .error_dialog import show_exception
from .jobs import Job


def _load(path):
    from ..core.model_io import load_model

    return load_model(path)


def _save(model, path, metadata):
    from ..core.model_io import save_model

    return save_model(model, path, metadata)


def _evaluate(loaded, items, class_names, split, on_progress=None, stop_event=None):
    from ..core.evaluation import evaluate_items

    report = evaluate_items(loaded, items, class_names, on_progress=on_progress, stop_event=stop_event)
    report.split = split
    return report


def evaluation_items(scan, metadata):
    """What to evaluate on: ``core.evaluation.evaluation_items``, the rule of ``imgcls`` too.

    Returns (items, split name), or (None, reason) when nothing is held out.
    """
    from ..core.evaluation import evaluation_items as chosen_for

    items, split, reason = chosen_for(scan, metadata)
    return (items, split) if items else (None, reason)


class ModelState(QObject):
    model_changed = Signal(object)  # LoadedModel or None
    model_saved = Signal(str)
    evaluation_finished = Signal(object)
    message = Signal(str)

    def __init__(self, window, jobs):
        super().__init__(window)
        self.window = window
        self.jobs = jobs
        self.loaded = None
        self.autosaved_path = None

    # -- open -----------------------------------------------------------------------
    def open(self, path):
        self.message.emit(f"Opening {path}…")
        self.jobs.start(Job(_load, str(path), uses_engine=True), on_success=self._on_loaded, on_failure=self._on_load_failed)

    @Slot(object)
    def _on_loaded(self, loaded):
        self.set_loaded(loaded)
        self.message.emit(f"Opened {loaded.path} ({loaded.preset}, {len(loaded.class_names)} classes)")

    @Slot(object, str)
    def _on_load_failed(self, exc, details):
        self.message.emit("Could not open the model")
        show_exception(self.window, "Could not open the model", exc, details)

    def set_loaded(self, loaded):
        self.loaded = loaded
        self.model_changed.emit(loaded)

    # -- after training -------------------------------------------------------------
    def adopt_training_result(self, result, scan, config):
        """Make a fresh model current, autosave it (nothing is lost), and evaluate it."""
        from ..core.history import assign_run_id
        from ..core.model_io import from_training

        assign_run_id(result)  # the saved file names its run; the history records the same id
        folder = user_data_dir() / "models"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{result.metadata.get('preset', 'model')}.keras"
        loaded = from_training(result, path=None)
        self.set_loaded(loaded)
        self.jobs.start(Job(_save, result.model, path, result.metadata, uses_engine=True),
                        on_success=self._on_autosaved, on_failure=self._on_save_failed)
        if scan is not None:
            self.evaluate(scan, config)

    @Slot(object)
    def _on_autosaved(self, path):
        self.autosaved_path = Path(path)
        if self.loaded is not None and self.loaded.path is None:
            self.loaded.path = self.autosaved_path
        self.message.emit(f"Model kept in {path} — use Model ▸ Save model as… to choose a place")
        self.model_saved.emit(str(path))

    # -- save -----------------------------------------------------------------------
    def save_as(self, path):
        if self.loaded is None:
            return
        self.message.emit(f"Saving {path}…")
        self.jobs.start(Job(_save, self.loaded.model, path, self.loaded.metadata, uses_engine=True),
                        on_success=self._on_saved, on_failure=self._on_save_failed)

    @Slot(object)
    def _on_saved(self, path):
        if self.loaded is not None:
            self.loaded.path = Path(path)
        self.message.emit(f"Saved {path}")
        self.model_saved.emit(str(path))

    @Slot(object, str)
    def _on_save_failed(self, exc, details):
        self.message.emit("Saving failed")
        show_exception(self.window, "Saving failed", exc, details)

    # -- evaluate -------------------------------------------------------------------
    def evaluate(self, scan, config=None):
        if self.loaded is None:
            return
        try:
            items, split = evaluation_items(scan, self.loaded.metadata)
        except Exception as exc:  # a dataset that cannot be split: say so, keep going
            show_exception(self.window, "Cannot evaluate", exc)
            return
        if items is None:
            self.message.emit(split)
            return
        self.message.emit(f"Evaluating on {len(items)} {split} images…")
        self.jobs.start(Job(_evaluate, self.loaded, items, scan.class_names, split, with_progress=True, uses_engine=True),
                        on_success=self._on_evaluated, on_failure=self._on_evaluation_failed)

    @Slot(object)
    def _on_evaluated(self, report):
        self.message.emit(f"Accuracy {report.accuracy:.1%} on {len(report.y_true)} {report.split} images")
        self.evaluation_finished.emit(report)

    @Slot(object, str)
    def _on_evaluation_failed(self, exc, details):
        show_exception(self.window, "Evaluation failed", exc, details)
