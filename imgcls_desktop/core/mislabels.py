"""Likely mislabels: images whose held-out prediction strongly disagrees with their folder.

Stratified k-fold over the training images: a small model is trained on k-1 folds with
the ordinary :func:`training.train` and predicts the fold it never saw, so every image gets
a prediction from a model that did not learn its (possibly wrong) label. An image whose
folder class gets a low probability while another class gets a high one is a suspect.
A model that memorised an image would defend its label, which is why the prediction must
be out-of-fold (Northcutt et al., "Confident learning", 2021, use the same principle).
"""

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .dataset import DatasetScan, check_trainable
from .defaults import DEFAULT_SEED
from .errors import Cancelled, DatasetError, TrainingError

DEFAULT_FOLDS = 3
DEFAULT_EPOCHS = 10
# "Strongly disagrees": another class is the likelier one by a wide margin.
MIN_CONFIDENCE = 0.5
MAX_FOLDER_PROBABILITY = 0.25
MIN_STEPS = 8
MIN_BATCH_SIZE = 4


@dataclass(frozen=True)
class Suspect:
    """An image that a model which never saw it places in another class.

    Attributes:
        path: The image file.
        folder_class: The class of the folder it is in.
        predicted_class: The class the held-out model gives it.
        confidence: The held-out probability of ``predicted_class``.
        folder_class_probability: The held-out probability of ``folder_class``.
    """

    path: str
    folder_class: str
    predicted_class: str
    confidence: float
    folder_class_probability: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``imgcls mislabels --json``).

        Returns:
            The fields, numbers rounded to 6 places.
        """
        return {"path": self.path, "folder_class": self.folder_class,
                "predicted_class": self.predicted_class,
                "confidence": round(self.confidence, 6),
                "folder_class_probability": round(self.folder_class_probability, 6)}


def stratified_folds(labels: Sequence[int] | np.ndarray, folds: int, seed: int | None) -> np.ndarray:
    """Fold number of each label: every class spread evenly over the folds, order seeded.

    Args:
        labels: Class index per image.
        folds: Number of folds.
        seed: Seed for ``numpy.random.default_rng``.

    Returns:
        An int array, one fold number in ``[0, folds)`` per image.
    """
    labels = np.asarray(labels, dtype=np.int64)
    assignment = np.zeros(len(labels), dtype=np.int64)
    rng = np.random.default_rng(seed)
    offset = 0
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        # Each class starts where the last one stopped, so the folds stay the same size.
        assignment[rng.permutation(members)] = (offset + np.arange(len(members))) % folds
        offset += len(members)
    return assignment


def _check(scan, folds):
    if not isinstance(folds, int) or folds < 2:
        raise DatasetError(f"Mislabel search needs at least 2 folds. Received: folds={folds!r}")
    check_trainable(scan)
    split = scan.training_split_name()
    for name, count in scan.counts()[split].items():
        # Each fold's model trains on the other folds, less a validation image per class.
        if count - math.ceil(count / folds) < 2:
            folders = ", ".join(str(folder / name) for folder in scan.split_folders.get(split, [scan.root]))
            raise DatasetError(
                f"Class '{name}' ({folders}) has only {count} image(s): too few to train {folds} models "
                f"that each leave a share of them out. Add images to it (at least {_least_count(folds)}) "
                "before looking for mislabels.")


def _least_count(folds):
    count = 2
    while count - math.ceil(count / folds) < 2:
        count += 1
    return count


def find_mislabels(scan: DatasetScan, folds: int = DEFAULT_FOLDS, epochs: int = DEFAULT_EPOCHS,
                   preset: str = "small_cnn", image_size: int = 32, seed: int = DEFAULT_SEED,
                   on_progress: Callable[[int, int], None] | None = None,
                   stop_event: threading.Event | None = None, *, min_confidence: float = MIN_CONFIDENCE,
                   max_folder_probability: float = MAX_FOLDER_PROBABILITY, batch_size: int | None = None,
                   validation_split: float = 0.2) -> list[Suspect]:
    """Train ``folds`` small models, each predicting the images it was not trained on.

    Args:
        scan: A :class:`dataset.DatasetScan`; its training split is examined.
        folds: Number of folds (k): each model trains on k-1 of them.
        epochs: Epochs per fold.
        preset: The architecture (a scratch preset is meant: fast, no download).
        image_size: Input size in pixels.
        seed: Fixes the folds and each model's initialisation.
        on_progress: Optional ``callable(done, total)`` counting epochs over all folds
            (``total = folds * epochs``); called once at the start and as each epoch ends.
        stop_event: Optional ``threading.Event``; when set, the search stops within a batch.
        min_confidence: Least held-out probability of the other class.
        max_folder_probability: Most held-out probability of the folder's class.
        batch_size: Training batch size (default: the preset's, fitted to the fold size).
        validation_split: Share of the k-1 training folds each model validates on.

    Returns:
        The suspects (:class:`Suspect`), most confident first.

    Raises:
        DatasetError: Too few classes or images per class, or fewer than 2 folds.
        Cancelled: ``stop_event`` was set; no result.
        TrainingError: A fold's training failed (for example it diverged).
    """
    from .inference import Predictor
    from .model_io import from_training
    from .training import TrainingConfig, train

    _check(scan, folds)
    items = list(scan.splits[scan.training_split_name()])
    assignment = stratified_folds([item.label for item in items], folds, seed)
    # Validation inside the training folds, never the held-out one: it picks the epoch
    # whose weights (BatchNorm statistics included) work in inference mode, and it fits the
    # temperature that makes the held-out probabilities honest.
    config = TrainingConfig(preset=preset, epochs=epochs, image_size=image_size,
                            validation_split=validation_split, seed=seed,
                            early_stopping_patience=None, batch_size=batch_size)
    total = folds * epochs
    if on_progress is not None:
        on_progress(0, total)

    suspects = []
    for fold in range(folds):
        training_items = [item for item, number in zip(items, assignment) if number != fold]
        held_out = [item for item, number in zip(items, assignment) if number == fold]
        # A flat scan of the other folds, so a val/ folder of a split dataset is not used.
        fold_scan = DatasetScan(root=scan.root, layout="flat", class_names=list(scan.class_names),
                                splits={"all": training_items}, split_folders={"all": [scan.root]})

        def forward(event, fold=fold):
            if event.kind == "epoch" and on_progress is not None:
                on_progress(fold * epochs + event.epoch, total)

        fold_config = replace(config, seed=seed + fold)
        if batch_size is None:
            fold_config = _small_batches(fold_config, len(training_items) * (1 - validation_split))
        try:
            result = train(fold_scan, fold_config, on_progress=forward, stop_event=stop_event)
        except TrainingError:
            if stop_event is not None and stop_event.is_set():
                raise Cancelled("mislabel search cancelled") from None
            raise
        # Read file by file, predicted in batches, with the calibration the fold's model fitted;
        # a file unreadable since the scan gets an error here and is not judged.
        predictor = Predictor(from_training(result))
        predictions = predictor.predict_paths([item.path for item in held_out], top_k=1,
                                              stop_event=stop_event)
        if stop_event is not None and stop_event.is_set():
            raise Cancelled("mislabel search cancelled")
        label_of = {str(item.path): item.label for item in held_out}
        for prediction in predictions:
            if prediction.ok and prediction.path in label_of:
                suspect = _judge(prediction.path, label_of[prediction.path], prediction.probabilities,
                                 scan.class_names, min_confidence, max_folder_probability)
                if suspect is not None:
                    suspects.append(suspect)
    suspects.sort(key=lambda suspect: (-suspect.confidence, suspect.folder_class_probability, suspect.path))
    return suspects


def _small_batches(config, num_train_images):
    """Batches small enough for ``MIN_STEPS`` steps an epoch, learning rate scaled to match.

    A fold of a small dataset otherwise gets one or two steps an epoch (training never
    goes below batch 16): too few for the model, or its BatchNorm statistics, to settle.
    """
    from .models import get_preset
    from .training import fit_batch_size

    preset = get_preset(config.preset)
    batch_size = fit_batch_size(preset.batch_size, num_train_images)
    while batch_size > MIN_BATCH_SIZE and num_train_images / batch_size < MIN_STEPS:
        batch_size //= 2
    # Square-root scaling, as training does for the batch sizes it picks itself.
    return replace(config, batch_size=batch_size,
                   learning_rate=preset.learning_rate * math.sqrt(batch_size / preset.batch_size))


def _judge(path, label, row, class_names, min_confidence, max_folder_probability):
    if not np.all(np.isfinite(row)):
        return None
    predicted = int(np.argmax(row))
    folder_probability = float(row[label])
    confidence = float(row[predicted])
    if predicted == label or confidence < min_confidence or folder_probability > max_folder_probability:
        return None
    return Suspect(path=path, folder_class=class_names[label],
                   predicted_class=class_names[predicted], confidence=confidence,
                   folder_class_probability=folder_probability)
