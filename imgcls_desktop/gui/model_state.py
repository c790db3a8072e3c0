"""The current model of the window: open, adopt after training, save as, evaluate.

Every model operation runs in the engine process, called from a background job; this
object turns their results into signals the window and its views listen to. The model
itself is a :class:`session.ModelHandle` (its file and metadata) held by the window's
:class:`session.Session`.
"""

from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot

from . import engine
from .jobs import Job
from .widgets.error_dialog import show_exception


# The jobs' functions, looked up when a job starts: tests hold a load or a save back here
# (tests/reliability/test_rel_gui.py).
def _load(path):
    return engine.open_model(path)


def _save(model, path):
    return engine.save_model(model, path)


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

    def __init__(self, window, jobs, session=None):
        super().__init__(window)
        from .session import Session

        self.window = window
        self.jobs = jobs
        self.session = session if session is not None else Session()
        self.autosaved_path = None

    @property
    def loaded(self):
        """The current model (a ``session.ModelHandle``), or None."""
        return self.session.model

    # -- open -----------------------------------------------------------------------
    def open(self, path):
        self.message.emit(f"Opening {path}…")
        self.jobs.start(Job(_load, str(path), uses_engine=True),
                        on_success=self._on_loaded, on_failure=self._on_load_failed)

    @Slot(object)
    def _on_loaded(self, loaded):
        self.set_loaded(loaded)
        self.message.emit(f"Opened {loaded.path} ({loaded.preset}, {len(loaded.class_names)} classes)")

    @Slot(object, str)
    def _on_load_failed(self, exc, details):
        self.message.emit("Could not open the model")
        show_exception(self.window, "Could not open the model", exc, details)

    def set_loaded(self, loaded):
        self.session.set_model(loaded)
        self.model_changed.emit(loaded)

    # -- after training -------------------------------------------------------------
    def adopt_training_result(self, result, scan):
        """Make a fresh model current and evaluate it; the engine already saved it.

        ``result.model`` is the handle of the file the engine wrote in the user's data
        folder (with the run id stamped in, ``core.history.assign_run_id``), so nothing is
        lost if the window or the engine dies from here on.
        """
        self.session.adopt(result)
        self.model_changed.emit(result.model)
        self._on_autosaved(str(result.model.path))
        if scan is not None:
            self.evaluate(scan)

    @Slot(object)
    def _on_autosaved(self, path):
        self.autosaved_path = Path(path)
        self.message.emit(f"Model kept in {path} — use Model ▸ Save model as… to choose a place")
        self.model_saved.emit(str(path))

    # -- save -----------------------------------------------------------------------
    def save_as(self, path):
        if self.loaded is None:
            return
        self.message.emit(f"Saving {path}…")
        self.jobs.start(Job(_save, self.loaded, path, uses_engine=True),
                        on_success=self._on_saved, on_failure=self._on_save_failed)

    @Slot(object)
    def _on_saved(self, path):
        if self.loaded is not None:
            self.loaded.path = Path(path)  # the engine loads the model from here from now on
        self.message.emit(f"Saved {path}")
        self.model_saved.emit(str(path))

    @Slot(object, str)
    def _on_save_failed(self, exc, details):
        self.message.emit("Saving failed")
        show_exception(self.window, "Saving failed", exc, details)

    # -- evaluate -------------------------------------------------------------------
    def evaluate(self, scan):
        """Evaluate the current model on the images core.evaluation.evaluation_items picks."""
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
        self.jobs.start(Job(engine.evaluate, self.loaded, items, scan.class_names, split,
                            with_progress=True, uses_engine=True),
                        on_success=self._on_evaluated, on_failure=self._on_evaluation_failed)

    @Slot(object)
    def _on_evaluated(self, report):
        self.message.emit(f"Accuracy {report.accuracy:.1%} on {len(report.y_true)} {report.split} images")
        self.evaluation_finished.emit(report)

    @Slot(object, str)
    def _on_evaluation_failed(self, exc, details):
        show_exception(self.window, "Evaluation failed", exc, details)
