"""Accuracy, per-class precision/recall/F1, the confusion matrix and the misclassified images."""

from dataclasses import dataclass, field

import numpy as np

from .dataset import scan_dataset
from .errors import DatasetError
from .inference import Predictor


@dataclass
class EvaluationReport:
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
    def ece(self):
        """Expected calibration error of ``probabilities`` (the confidences shown)."""
        from .calibration import expected_calibration_error

        return expected_calibration_error(self.probabilities, self.y_true)

    @property
    def ece_uncalibrated(self):
        """ECE of the model's own softmax, or None when the model is not calibrated."""
        from .calibration import expected_calibration_error

        if self.raw_probabilities is None:
            return None
        return expected_calibration_error(self.raw_probabilities, self.y_true)

    @property
    def y_pred(self):
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self):
        return float((self.y_pred == self.y_true).mean()) if len(self.y_true) else 0.0

    def per_class(self):
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

    def misclassified(self):
        """Wrong predictions, the most confident mistakes first."""
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

    def cell_items(self, true_index, predicted_index):
        """Paths and confidences behind one confusion-matrix cell, most confident first."""
        predicted = self.y_pred
        hits = np.flatnonzero((self.y_true == true_index) & (predicted == predicted_index))
        items = [(self.paths[i], float(self.probabilities[i, predicted_index])) for i in hits]
        return sorted(items, key=lambda item: -item[1])

    def to_dict(self):
        """The ``evaluate --json`` document."""
        data = {
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
        if self.raw_probabilities is not None:
            data["ece_uncalibrated"] = round(self.ece_uncalibrated, 6)
        if self.calibration is not None:
            data["calibration"] = dict(self.calibration)
        if self.unknown is not None:
            data["num_unknown"] = int(np.count_nonzero(self.unknown))
        return data


def evaluate_items(loaded, items, item_class_names, on_progress=None, stop_event=None):
    """Evaluate a loaded model on ``items`` labelled by index into ``item_class_names``.

    The dataset's classes are matched to the model's by name, so a test folder that lists
    its classes in another order, or lacks some, still evaluates correctly.
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
    paths, y_true, rows, raw_rows, unknown, errors = [], [], [], [], [], []
    for result in results:
        if not result.ok:
            errors.append((result.path, result.error))
            continue
        paths.append(result.path)
        y_true.append(label_of[result.path])
        rows.append(result.probabilities)
        raw_rows.append(result.raw_probabilities)
        unknown.append(result.unknown)
    num_classes = len(loaded.class_names)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(rows, dtype=np.float32).reshape(-1, num_classes)
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true, probabilities.argmax(axis=1)), 1)
    calibrated = predictor.calibrated
    raw = np.asarray(raw_rows, dtype=np.float32).reshape(-1, num_classes) if calibrated else None
    return EvaluationReport(class_names=list(loaded.class_names), confusion_matrix=matrix,
                            paths=paths, y_true=y_true, probabilities=probabilities, errors=errors,
                            raw_probabilities=raw,
                            calibration=_stored_calibration(loaded),
                            unknown=np.asarray(unknown, dtype=bool))


def _stored_calibration(loaded):
    calibration = (loaded.metadata or {}).get("calibration")
    return dict(calibration) if isinstance(calibration, dict) else None


def evaluate_folder(loaded, folder, *, on_progress=None, stop_event=None):
    """Evaluate on a dataset folder: its ``test/`` (or ``val/``) split, or all of a flat one."""
    scan = folder if hasattr(folder, "splits") else scan_dataset(folder)
    split = scan.evaluation_split_name() or scan.training_split_name()
    items = scan.splits.get(split, [])
    if not items:
        raise DatasetError(f"{scan.root} has no usable images to evaluate on (split '{split}').")
    report = evaluate_items(loaded, items, scan.class_names, on_progress=on_progress,
                            stop_event=stop_event)
    report.split = split
    report.errors.extend((p.path, p.reason) for p in scan.problems)
    return report
