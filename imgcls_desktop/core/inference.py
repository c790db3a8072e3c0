"""Prediction: the same preprocessing as training, a warmed direct call for single images.

``Model.predict`` costs tens of milliseconds of fixed overhead per call, so one dropped
image goes through a traced ``tf.function`` instead; folders go in batches.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .backend import tensorflow_module
from .dataset import collect_image_files
from .errors import Cancelled, ImageError
from .tta import mode_of as tta_mode_of, tta_logits

if TYPE_CHECKING:
    from .model_io import LoadedModel

UNKNOWN_TEXT = "none of my classes"
LOW_CONFIDENCE = "low confidence"
UNLIKE_TRAINING = "unlike the training images"


@dataclass
class Prediction:
    """One image's answer.

    ``probabilities`` and ``confidence`` are calibrated when the model carries a
    temperature (``raw_probabilities`` keeps the model's own softmax). ``unknown`` is True
    when the image is answered "none of my classes"; ``label`` is still the best class.
    ``unknown_reason`` says why: ``UNLIKE_TRAINING`` when the model's out-of-distribution
    detector (:mod:`core.ood`) scores the image above its threshold (``ood_score`` >
    ``ood_threshold``), or, for a model without a detector, ``LOW_CONFIDENCE`` when the
    top probability is below the model's ``unknown_threshold``.
    """

    path: str
    label: str | None = None
    confidence: float | None = None
    top_k: list = field(default_factory=list)  # [(label, probability), ...]
    probabilities: object = None  # numpy array over all classes
    error: str | None = None
    unknown: bool = False
    unknown_threshold: float | None = None
    raw_probabilities: object = None  # the model's uncalibrated softmax
    ood_score: float | None = None
    ood_threshold: float | None = None
    unknown_reason: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the image was classified (``error`` is None)."""
        return self.error is None

    @property
    def verdict(self) -> str | None:
        """What to tell the user: the label, or "none of my classes (why)"; None on error."""
        if self.error is not None:
            return None
        if self.unknown:
            if self.unknown_reason == UNLIKE_TRAINING:
                return f"{UNKNOWN_TEXT} ({UNLIKE_TRAINING})"
            return f"{UNKNOWN_TEXT} ({self.confidence:.0%} sure)"
        return self.label

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``imgcls predict --json``): only ``path`` and ``error`` on error.

        Returns:
            A dict of plain Python values.
        """
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        data: dict[str, Any] = {
            "path": self.path,
            "label": self.label,
            "confidence": round(float(cast(float, self.confidence)), 6),  # set when error is None
            "top_k": [{"label": label, "probability": round(float(p), 6)} for label, p in self.top_k],
            "unknown": bool(self.unknown),
            "verdict": self.verdict,
        }
        if self.unknown_threshold is not None:
            data["unknown_threshold"] = round(float(self.unknown_threshold), 6)
        if self.ood_score is not None:
            data["ood_score"] = round(float(self.ood_score), 6)
            data["ood_threshold"] = round(float(cast(float, self.ood_threshold)), 6)  # set with the score
        return data


class Predictor:
    """Classifies images with a :class:`model_io.LoadedModel`. Not for a model in training.

    When the model's metadata holds a calibration (see :mod:`core.calibration`), the
    probabilities are ``softmax(logits / temperature)``. "None of my classes" comes from
    the model's out-of-distribution detector (:mod:`core.ood`) when it has one, else
    from the unknown threshold on the calibrated top probability (models trained before
    the detector). A plain Keras model without a ``logits`` layer gives its own outputs
    unchanged and never answers "none of my classes".
    """

    def __init__(self, loaded: LoadedModel, batch_size: int = 64) -> None:
        from .backend import keras_module
        from .calibration import single_input, temperature_of, unknown_threshold_of
        from .ood import detector_of

        tf = tensorflow_module()
        self.loaded = loaded
        self.class_names = list(loaded.class_names)
        self.image_size = tuple(loaded.image_size)
        self.batch_size = batch_size
        model = loaded.model
        height, width = self.image_size
        spec = tf.TensorSpec((None, height, width, 3), tf.float32)
        self.temperature = temperature_of(loaded.metadata)
        self.unknown_threshold = unknown_threshold_of(loaded.metadata)
        self.detector = None
        parts = None
        try:
            layer = model.get_layer("logits")
            self.detector = detector_of(loaded.metadata, num_classes=len(self.class_names),
                                        feature_dim=int(layer.input.shape[-1]))
            if self.temperature is not None or self.detector is not None:
                # One forward pass gives the features, the logits and the model's softmax.
                parts = keras_module().Model(single_input(model),
                                             [layer.input, layer.output, model.outputs[0]])
        except (ValueError, AttributeError, TypeError):
            parts, self.detector = None, None
        if self.detector is not None:
            self.unknown_threshold = None  # the detector decides, not the threshold
        self.tta = tta_mode_of(loaded.metadata)
        ops = keras_module().ops
        if parts is None:
            # Nothing to scale: the model's probabilities as they are, and no threshold,
            # which was tuned on calibrated probabilities.
            self.temperature = None
            self.unknown_threshold = None

            def call(x):
                if self.tta:
                    # The mean of the views' probabilities: there are no logits to average.
                    return tta_logits(lambda views: model(views, training=False), x, self.tta, ops)
                return model(x, training=False)
        else:
            features_width = int(parts.outputs[0].shape[-1])

            def joined(views):
                features, logits, _probabilities = parts(views, training=False)
                return ops.concatenate([features, logits], axis=-1)

            def call(x):
                if self.tta:
                    # The views' mean logits (and features): what the model was calibrated on.
                    both = tta_logits(joined, x, self.tta, ops)
                    features, logits = both[:, :features_width], both[:, features_width:]
                    return logits, tf.nn.softmax(logits), features
                features, logits, probabilities = parts(x, training=False)
                return logits, probabilities, features
        self._call = tf.function(call, input_signature=[spec])
        self._structured = parts is not None
        self._warm = False

    @property
    def calibrated(self) -> bool:
        """Whether the probabilities are temperature-scaled."""
        return self.temperature is not None

    def warm_up(self) -> None:
        """Trace and run once, so the first real image does not pay for it."""
        if not self._warm:
            self.probabilities(np.zeros((1, *self.image_size, 3), dtype=np.uint8))
            self._warm = True

    def outputs(self, images: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(calibrated, raw, ood_scores)`` of a raw-pixel batch ``(n, h, w, 3)``.

        Without a calibration the first two are the model's own outputs; ``ood_scores`` is
        None when the model has no detector.

        Args:
            images: Raw pixels, ``(n, h, w, 3)`` at the model's image size.

        Returns:
            ``(n, classes)`` calibrated and raw probabilities, and ``(n,)`` detector
            scores or None.
        """
        from .calibration import softmax

        batch = np.asarray(images, dtype=np.float32)
        calibrated, raw, scores = [], [], []
        for start in range(0, len(batch), self.batch_size):
            output = self._call(batch[start:start + self.batch_size])
            if not self._structured:
                probs = np.asarray(output)
                calibrated.append(probs)
                raw.append(probs)
                continue
            logits, probs, features = (np.asarray(part) for part in output)
            raw.append(probs)
            calibrated.append(probs if self.temperature is None
                              else softmax(logits, self.temperature).astype(np.float32))
            if self.detector is not None:
                scores.append(self.detector.scores(features, logits))
        if not calibrated:
            empty = np.zeros((0, len(self.class_names)), dtype=np.float32)
            return empty, empty, (np.zeros(0) if self.detector is not None else None)
        return (np.concatenate(calibrated), np.concatenate(raw),
                np.concatenate(scores) if self.detector is not None else None)

    def both_probabilities(self, images: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(calibrated, raw)`` probabilities of a raw-pixel batch ``(n, h, w, 3)``.

        Without a calibration both are the model's own outputs.

        Args:
            images: Raw pixels, ``(n, h, w, 3)``.

        Returns:
            Two ``(n, classes)`` arrays.
        """
        calibrated, raw, _scores = self.outputs(images)
        return calibrated, raw

    def probabilities(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities (calibrated if the model is) for raw pixels ``(n, h, w, 3)``.

        Args:
            images: Raw pixels, ``(n, h, w, 3)``.

        Returns:
            ``(n, classes)`` probabilities.
        """
        return self.both_probabilities(images)[0]

    def raw_probabilities(self, images: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """The model's own softmax outputs, without temperature scaling.

        Args:
            images: Raw pixels, ``(n, h, w, 3)``.

        Returns:
            ``(n, classes)`` probabilities.
        """
        return self.both_probabilities(images)[1]

    def predict_images(self, images: np.ndarray | Sequence[np.ndarray], paths: Sequence[Any] | None = None,
                       top_k: int = 3) -> list[Prediction]:
        """:class:`Prediction` of each raw-pixel image, as :meth:`predict_paths` gives it.

        Args:
            images: Raw pixels, ``(n, h, w, 3)``.
            paths: What to call each image in its result (default ``"image <i>"``).
            top_k: Classes listed in each result's ``top_k``.

        Returns:
            One prediction per image, in order.
        """
        calibrated, raw, scores = self.outputs(images)
        paths = paths if paths is not None else [f"image {i}" for i in range(len(calibrated))]
        return [self._result(str(path), row, top_k, raw_row, None if scores is None else scores[i])
                for i, (path, row, raw_row) in enumerate(zip(paths, calibrated, raw))]

    def predict_paths(self, inputs: Iterable[str | os.PathLike], top_k: int = 3,
                      on_progress: Callable[[int, int], None] | None = None,
                      stop_event: threading.Event | None = None) -> list[Prediction]:
        """Classify files and folders; every input gets a result or its own error.

        Args:
            inputs: Image files and folders (searched for images).
            top_k: Classes listed in each result's ``top_k``.
            on_progress: Optional ``callable(done, total)`` over the files.
            stop_event: Optional ``threading.Event``; when set, the files classified so far
                are returned.

        Returns:
            One prediction per image file found, in order (an error for a file that could
            not be read).
        """
        paths = collect_image_files(inputs)
        results: list[Prediction | None] = [None] * len(paths)
        pending_index: list[int] = []
        pending_pixels: list[np.ndarray] = []

        def flush():
            if not pending_pixels:
                return
            probs, raw, scores = self.outputs(np.stack(pending_pixels))
            for position, (index, row, raw_row) in enumerate(zip(pending_index, probs, raw)):
                score = None if scores is None else scores[position]
                results[index] = self._result(str(paths[index]), row, top_k, raw_row, score)
            pending_index.clear()
            pending_pixels.clear()

        from .pipeline import decoded_in_parallel

        # Decoded on every core, ahead of the model: a folder of 10,000 files no longer waits
        # for one core to decode each batch before the model may run it.
        try:
            for index, (path, pixels) in enumerate(zip(paths, decoded_in_parallel(paths, self.image_size,
                                                                                  stop_event))):
                if pixels is None:  # stopped: the generator raises Cancelled next
                    continue
                if isinstance(pixels, ImageError):
                    results[index] = Prediction(path=str(path), error=pixels.reason)
                else:
                    pending_pixels.append(pixels)
                    pending_index.append(index)
                if len(pending_pixels) >= self.batch_size:
                    flush()
                if on_progress is not None:
                    on_progress(index + 1, len(paths))
        except Cancelled:
            pass  # what was classified before the stop is returned
        flush()
        return [result for result in results if result is not None]

    def _result(self, path, row, top_k, raw_row=None, ood_score=None):
        if not np.all(np.isfinite(row)) or (ood_score is not None and not np.isfinite(ood_score)):
            return Prediction(path=path, error="model produced invalid output (NaN or infinity)")
        order = np.argsort(row)[::-1][: max(1, top_k)]
        best = int(order[0])
        reason = None
        if self.detector is not None:
            if float(ood_score) > self.detector.threshold:
                reason = UNLIKE_TRAINING
        elif self.unknown_threshold is not None and float(row[best]) < self.unknown_threshold:
            reason = LOW_CONFIDENCE
        return Prediction(
            path=path, label=self.class_names[best], confidence=float(row[best]),
            top_k=[(self.class_names[int(i)], float(row[int(i)])) for i in order],
            probabilities=row, raw_probabilities=row if raw_row is None else raw_row,
            unknown=reason is not None, unknown_threshold=self.unknown_threshold,
            ood_score=None if ood_score is None else float(ood_score),
            ood_threshold=None if self.detector is None else self.detector.threshold,
            unknown_reason=reason,
        )
