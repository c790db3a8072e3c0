"""The engine's fixed task registry: names the window may ask for, mapped to core calls.

Each task takes plain keyword arguments (decoded by :mod:`.plain`) plus the running
task's :class:`TaskContext`, and returns plain data. Models are named by the path of
their ``.keras`` file; :class:`ModelCache` keeps the loaded ones, keyed by path,
modification time and size, so a file saved again is loaded again. Nothing here is
reachable except through :data:`TASKS`: a request cannot name an arbitrary callable.
"""

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TaskContext:
    """What a running task gets besides its arguments."""

    on_progress: object  # callable(*plain_args): one progress message to the window
    stop_event: threading.Event = field(default_factory=threading.Event)
    models: "ModelCache" = None


class ModelCache:
    """Loaded models (and their predictors) by ``(path, mtime, size)``; the newest few kept."""

    def __init__(self, capacity=3):
        self.capacity = capacity
        self._entries = OrderedDict()  # key -> {"loaded": LoadedModel, "predictor": Predictor|None}

    @staticmethod
    def key(path):
        path = Path(path).resolve()
        info = path.stat()
        return str(path), info.st_mtime_ns, info.st_size

    def entry(self, path):
        from ..core.model_io import load_model

        try:
            key = self.key(path)
        except OSError:
            key = None
        if key is not None and key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        loaded = load_model(path)  # raises ModelFileError for a missing or refused file
        entry = {"loaded": loaded, "predictor": None}
        if key is not None:
            self._entries[key] = entry
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return entry

    def loaded(self, path):
        return self.entry(path)["loaded"]

    def predictor(self, path):
        from ..core.inference import Predictor

        entry = self.entry(path)
        if entry["predictor"] is None:
            predictor = Predictor(entry["loaded"])
            predictor.warm_up()
            entry["predictor"] = predictor
        return entry["predictor"]

    def __len__(self):
        return len(self._entries)


def model_info(loaded, path=None):
    """What the window keeps of a model: everything but the Keras object itself."""
    return {
        "path": str(path if path is not None else loaded.path),
        "class_names": list(loaded.class_names),
        "image_size": tuple(int(side) for side in loaded.image_size),
        "metadata": loaded.metadata,
        "warnings": list(loaded.warnings),
        "parameters": int(loaded.model.count_params()),
    }


# -- the tasks ------------------------------------------------------------------------

def versions(context):
    """Import TensorFlow (the start-up cost) and say what the engine runs on."""
    from ..core.backend import versions as library_versions
    from ..core.distribute import machine_sentence

    return {**library_versions(), "devices": machine_sentence(), "pid": os.getpid()}


def load_model(context, path):
    return model_info(context.models.loaded(path))


def warm_up(context, path):
    """Load a model and build its predictor, so the first dropped image is answered fast."""
    context.models.predictor(path)
    return None


def predict(context, path, paths, top_k=3):
    predictor = context.models.predictor(path)
    return predictor.predict_paths(paths, top_k=top_k, stop_event=context.stop_event) if paths else []


def evaluate(context, path, items, class_names, split=""):
    from ..core.evaluation import evaluate_items

    report = evaluate_items(context.models.loaded(path), items, class_names,
                            on_progress=context.on_progress, stop_event=context.stop_event)
    report.split = split
    return report


def save_model(context, path, target):
    """Save the model of ``path`` as ``target`` (core's atomic, checked save)."""
    from ..core.model_io import save_model as save

    loaded = context.models.loaded(path)
    return str(save(loaded.model, target, loaded.metadata))


def train(context, scan, config, autosave_folder, started_at=None, max_events_per_second=10.0):
    """Train, stamp the run id, save the model in ``autosave_folder``; the model's info back.

    Intermediate batch and decode events are dropped above ``max_events_per_second``: a
    fast model makes thousands of batches a second, and each event is a message.
    """
    from ..core import training
    from ..core.history import assign_run_id
    from ..core.model_io import from_training, save_model as save
    from ..core.training_config_io import training_config_from_dict

    config = training_config_from_dict(config)  # the window's settings, checked as untrusted
    counts = {"forwarded": 0, "dropped": 0}
    last = [-1e9]

    def forward(progress):
        intermediate = progress.kind == "batch" or (progress.kind == "decode" and progress.step < progress.steps)
        if intermediate:
            now = time.monotonic()
            if now - last[0] < 1.0 / max_events_per_second:
                counts["dropped"] += 1
                return
            last[0] = now
        counts["forwarded"] += 1
        context.on_progress(progress)

    keywords = {"on_progress": forward, "stop_event": context.stop_event}
    # started_at: CLOCK_MONOTONIC (shared by both processes) when Train was pressed.
    result = training.train(scan, config, started_at=started_at, **keywords)
    assign_run_id(result)  # the saved file names its run; the history records the same id
    folder = Path(autosave_folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{result.metadata.get('preset', 'model')}.keras"
    save(result.model, target, result.metadata)
    loaded = from_training(result, path=target)
    context.models._entries[context.models.key(target)] = {"loaded": loaded, "predictor": None}
    return {
        "model": model_info(loaded, target),
        "class_names": list(result.class_names), "history": result.history,
        "epochs_run": result.epochs_run, "best_epoch": result.best_epoch,
        "best_val_accuracy": result.best_val_accuracy, "seconds": result.seconds,
        "stopped_by_user": result.stopped_by_user, "stop_reason": result.stop_reason,
        "metadata": result.metadata, "skipped_files": [list(pair) for pair in result.skipped_files],
        "event_counts": counts,
    }


def explain(context, path, image_path, class_index=None):
    from ..core.explain import explain as grad_cam_explain

    explanation = grad_cam_explain(context.models.loaded(path), image_path, class_index=class_index)
    return explanation


def robustness(context, path, items, class_names, split="", corruption_names=None, families=None):
    from ..core.robustness import DEFAULT_CORRUPTIONS, graded_corruptions, robustness_report

    graded = graded_corruptions(families)
    if corruption_names is None:
        corruptions = graded
    else:
        known = {corruption.name: corruption for corruption in (*DEFAULT_CORRUPTIONS, *graded_corruptions())}
        corruptions = [known.get(name, name) for name in corruption_names]  # unknown: core says so
    report = robustness_report(context.models.loaded(path), items, class_names, corruptions,
                               on_progress=context.on_progress, stop_event=context.stop_event)
    report["split"] = split
    return report


def mislabels(context, scan, folds, epochs):
    from ..core.mislabels import find_mislabels

    return find_mislabels(scan, folds=folds, epochs=epochs, on_progress=context.on_progress,
                          stop_event=context.stop_event)


def export(context, path, target, format):
    from ..core.export import export_and_verify

    return export_and_verify(context.models.loaded(path), target, format)


def augmentation_preview(context, paths, image_size, augmentation, seed=0):
    import numpy as np

    from ..core.images import load_image
    from ..core.pipeline import augmentation_preview as preview

    images = np.stack([load_image(path, (image_size, image_size)) for path in paths])
    return preview(images, augmentation, count=len(paths), seed=seed)


TASKS = {function.__name__: function for function in (
    versions, load_model, warm_up, predict, evaluate, save_model, train, explain, robustness,
    mislabels, export, augmentation_preview)}
