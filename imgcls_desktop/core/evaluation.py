"""Which images to evaluate a model on; accuracy, per-class precision/recall/F1, the
confusion matrix and the misclassified images."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

from .dataset import DatasetScan, ImageItem, scan_dataset
from .errors import DatasetError
from .inference import Predictor
from .paths import relative_posix

if TYPE_CHECKING:
    from .model_io import LoadedModel


class EvaluationItems(NamedTuple):
    """What :func:`evaluation_items` chose: the images, the split's name and why."""

    items: list
    """The dataset items to evaluate on; empty when nothing is held out."""
    split: str
    """``"test"``, ``"val"``, ``"validation"`` (files held out by the seed), ``"all"`` or ``"train"``."""
    reason: str
    """One sentence for people: why these images, or why there are none."""


def evaluation_items(scan: DatasetScan, metadata: dict | None) -> EvaluationItems:
    """The images to evaluate a model on: the one rule of the window, ``imgcls`` and the history.

    In this order:

    1. the folder's ``test/`` split, when it has images: never seen in training, nor used to
       pick the best epoch or fit the calibration;
    2. when the model was trained on this folder (the same folder, or one with the same
       fingerprint), the validation files its metadata records
       (``metadata["dataset"]["validation_files"]``, relative POSIX paths), those still
       in the folder: the ``val/`` folder, or the images held out by the seed. If none is
       there, the ``val/`` split; without one, nothing is held out and ``items`` is empty
       (the model was trained on every image);
    3. otherwise (another folder, such as a separate test folder) the ``val/`` split, else
       every image (the training split: ``all`` or ``train``).

    A model trained elsewhere never evaluates on just those of this folder's files whose
    names match its recorded validation files.

    Args:
        scan: The ``DatasetScan`` of the folder.
        metadata: The model's metadata (``LoadedModel.metadata`` or
            ``TrainingResult.metadata``); None or ``{}`` for a model without it.

    Returns:
        An :class:`EvaluationItems`.
    """
    test = scan.splits.get("test")
    if test:
        return EvaluationItems(list(test), "test", "the folder's test split")
    dataset = metadata.get("dataset") if isinstance(metadata, dict) else None
    dataset = dataset if isinstance(dataset, dict) else {}  # metadata is read from a file: untrusted
    val_name = "val" if scan.splits.get("val") else None
    if _trained_on(scan, dataset):
        wanted = dataset.get("validation_files")
        wanted = wanted if isinstance(wanted, list) else []
        by_relative = {relative_posix(item.path, scan.root): item
                       for items in scan.splits.values() for item in items}
        recorded = dict.fromkeys(Path(p).as_posix() for p in wanted if isinstance(p, str))
        chosen = [by_relative[key] for key in recorded if key in by_relative]
        if chosen:
            return EvaluationItems(chosen, val_name or "validation",
                                   "the validation files held out when the model was trained")
        if not val_name:
            why = (f"none of the {len(recorded)} validation files the model recorded is in it any more"
                   if recorded else "the model was trained on every image of it")
            return EvaluationItems([], "validation", f"{scan.root} has no test split, and {why}: "
                                                     "nothing is held out to evaluate on.")
    if val_name:
        return EvaluationItems(list(scan.splits[val_name]), val_name, "the folder's val split")
    split = scan.training_split_name()
    items = list(scan.splits.get(split, []))
    if not items:
        return EvaluationItems([], split, f"{scan.root} has no usable images to evaluate on (split '{split}').")
    return EvaluationItems(items, split, "every image of a folder the model was not trained on")


def _trained_on(scan, dataset: dict) -> bool:
    """Whether the model's dataset metadata names this folder (by path or by fingerprint)."""
    root = dataset.get("root")
    if isinstance(root, str) and root and os.path.abspath(root) == os.path.abspath(scan.root):
        return True
    fingerprint = dataset.get("fingerprint")
    return isinstance(fingerprint, str) and bool(fingerprint) and fingerprint == scan.fingerprint()


@dataclass
class EvaluationReport:
    """A model's results on labelled images: what ``imgcls evaluate`` and the window show."""

    class_names: list
    confusion_matrix: np.ndarray  # rows: true class, columns: predicted class
    paths: list  # evaluated files, in the order of y_true / probabilities
    y_true: np.ndarray
    probabilities: np.ndarray
    errors: list = field(default_factory=list)  # [(path, reason)] of files that failed
    split: str = ""
    # The model's own softmax when ``probabilities`` are temperature-scaled, else None.
    raw_probabilities: np.ndarray | None = None
    calibration: dict | None = None  # the model's stored calibration, if it has one
    unknown: np.ndarray | None = None  # bool per image: flagged "none of my classes"

    @property
    def ece(self) -> float:
        """Expected calibration error of ``probabilities`` (the confidences shown)."""
        from .calibration import expected_calibration_error

        return expected_calibration_error(self.probabilities, self.y_true)

    @property
    def ece_uncalibrated(self) -> float | None:
        """ECE of the model's own softmax, or None when the model is not calibrated."""
        from .calibration import expected_calibration_error

        if self.raw_probabilities is None:
            return None
        return expected_calibration_error(self.raw_probabilities, self.y_true)

    @property
    def y_pred(self) -> np.ndarray:
        """The predicted class index of each image."""
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        """Share of images predicted right (0.0 for none)."""
        return float((self.y_pred == self.y_true).mean()) if len(self.y_true) else 0.0

    def per_class(self) -> dict[str, dict[str, Any]]:
        """Precision, recall, F1 and support of each class.

        Returns:
            ``{class name: {"precision", "recall", "f1", "support"}}``.
        """
        matrix = self.confusion_matrix
        result = {}
        for i, name in enumerate(self.class_names):
            true_positive = matrix[i, i]
            predicted = matrix[:, i].sum()
            support = matrix[i, :].sum()
            precision = true_positive / predicted if predicted else 0.0
            recall = true_positive / support if support else 0.0
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
            result[name] = {"precision": float(precision), "recall": float(recall),
                            "f1": float(f1), "support": int(support)}
        return result

    def misclassified(self) -> list[dict[str, Any]]:
        """Wrong predictions, the most confident mistakes first.

        Returns:
            ``{"path", "true", "predicted", "confidence"}`` per wrong prediction.
        """
        predicted = self.y_pred
        rows = []
        for index in np.flatnonzero(predicted != self.y_true):
            rows.append({
                "path": self.paths[index],
                "true": self.class_names[self.y_true[index]],
                "predicted": self.class_names[predicted[index]],
                "confidence": float(self.probabilities[index, predicted[index]]),
            })
        rows.sort(key=lambda row: -row["confidence"])
        return rows

    def cell_items(self, true_index: int, predicted_index: int) -> list[tuple[str, float]]:
        """Paths and confidences behind one confusion-matrix cell, most confident first.

        Args:
            true_index: The cell's row (true class).
            predicted_index: The cell's column (predicted class).

        Returns:
            ``[(path, confidence in the predicted class), ...]``.
        """
        predicted = self.y_pred
        hits = np.flatnonzero((self.y_true == true_index) & (predicted == predicted_index))
        items = [(self.paths[i], float(self.probabilities[i, predicted_index])) for i in hits]
        return sorted(items, key=lambda item: -item[1])

    def to_dict(self) -> dict[str, Any]:
        """The ``evaluate --json`` document.

        Returns:
            A JSON-ready dict.
        """
        data: dict[str, Any] = {
            "accuracy": round(self.accuracy, 6),
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion_matrix.tolist(),
            "per_class": {name: {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}
                          for name, row in self.per_class().items()},
            "misclassified": [dict(row, confidence=round(row["confidence"], 6))
                              for row in self.misclassified()],
            "num_images": int(len(self.y_true)),
            "split": self.split,
            "errors": [{"path": path, "reason": reason} for path, reason in self.errors],
        }
        data["ece"] = round(self.ece, 6)
        ece_uncalibrated = self.ece_uncalibrated
        if ece_uncalibrated is not None:  # exactly when raw_probabilities is not None
            data["ece_uncalibrated"] = round(ece_uncalibrated, 6)
        if self.calibration is not None:
            data["calibration"] = dict(self.calibration)
        if self.unknown is not None:
            data["num_unknown"] = int(np.count_nonzero(self.unknown))
        return data


def evaluate_items(loaded: LoadedModel, items: Sequence[ImageItem], item_class_names: Sequence[str],
                   on_progress: Callable[[int, int], None] | None = None,
                   stop_event: threading.Event | None = None) -> EvaluationReport:
    """Evaluate a loaded model on ``items`` labelled by index into ``item_class_names``.

    The dataset's classes are matched to the model's by name, so a test folder that lists
    its classes in another order, or lacks some, still evaluates correctly.

    Args:
        loaded: The model.
        items: The labelled images.
        item_class_names: The class names the items' labels index.
        on_progress: Optional ``callable(done, total)`` over the images.
        stop_event: Optional ``threading.Event`` that stops the predictions (what was
            predicted before is evaluated).

    Returns:
        The report; files that failed are in ``errors``.

    Raises:
        DatasetError: The items have classes the model does not know.
    """
    model_index = {name: i for i, name in enumerate(loaded.class_names)}
    unknown = sorted({item_class_names[item.label] for item in items} - set(model_index))
    if unknown:
        raise DatasetError(
            f"The evaluation folder has class(es) the model does not know: {', '.join(unknown)}. "
            f"The model's classes are: {', '.join(loaded.class_names)}."
        )
    predictor = Predictor(loaded)
    results = predictor.predict_paths([item.path for item in items], top_k=1,
                                      on_progress=on_progress, stop_event=stop_event)
    label_of = {str(item.path): model_index[item_class_names[item.label]] for item in items}
    paths, labels, rows, raw_rows, flagged, errors = [], [], [], [], [], []
    for result in results:
        if not result.ok:
            errors.append((result.path, result.error))
            continue
        paths.append(result.path)
        labels.append(label_of[result.path])
        rows.append(result.probabilities)
        raw_rows.append(result.raw_probabilities)
        flagged.append(result.unknown)
    num_classes = len(loaded.class_names)
    y_true = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(rows, dtype=np.float32).reshape(-1, num_classes)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, probabilities.argmax(axis=1)), 1)
    calibrated = predictor.calibrated
    raw = np.asarray(raw_rows, dtype=np.float32).reshape(-1, num_classes) if calibrated else None
    return EvaluationReport(class_names=list(loaded.class_names), confusion_matrix=matrix,
                            paths=paths, y_true=y_true, probabilities=probabilities, errors=errors,
                            raw_probabilities=raw,
                            calibration=_stored_calibration(loaded),
                            unknown=np.asarray(flagged, dtype=bool))


def _stored_calibration(loaded):
    calibration = (loaded.metadata or {}).get("calibration")
    return dict(calibration) if isinstance(calibration, dict) else None


def evaluate_folder(loaded: LoadedModel, folder: str | os.PathLike | DatasetScan, *,
                    on_progress: Callable[[int, int], None] | None = None,
                    stop_event: threading.Event | None = None) -> EvaluationReport:
    """Evaluate on a dataset folder, on the images :func:`evaluation_items` chooses.

    Args:
        loaded: A ``model_io.LoadedModel``; its metadata decides which images.
        folder: A dataset folder, or its ``DatasetScan``.
        on_progress: Optional ``callable(done, total)`` over the images.
        stop_event: Optional ``threading.Event`` that stops the predictions.

    Returns:
        An :class:`EvaluationReport`; ``split`` names the images' split, and the scan's
        problem files are in ``errors``.

    Raises:
        DatasetError: Nothing to evaluate on (the reason says why).
    """
    scan = (cast(DatasetScan, folder) if hasattr(folder, "splits")  # a scan, or anything shaped like one
            else scan_dataset(folder))
    items, split, reason = evaluation_items(scan, loaded.metadata)
    if not items:
        raise DatasetError(reason)
    report = evaluate_items(loaded, items, scan.class_names, on_progress=on_progress,
                            stop_event=stop_event)
    report.split = split
    report.errors.extend((p.path, p.reason) for p in scan.problems)
    return report
