"""Prediction: the same preprocessing as training, a warmed direct call for single images.

``Model.predict`` costs tens of milliseconds of fixed overhead per call, so one dropped
image goes through a traced ``tf.function`` instead; folders go in batches.
"""

from dataclasses import dataclass, field

import numpy as np

from .backend import tensorflow_module
from .dataset import collect_image_files
from .errors import ImageError
from .images import load_image


@dataclass
class Prediction:
    path: str
    label: str | None = None
    confidence: float | None = None
    top_k: list = field(default_factory=list)  # [(label, probability), ...]
    probabilities: object = None  # numpy array over all classes
    error: str | None = None

    @property
    def ok(self):
        return self.error is None

    def to_dict(self):
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {
            "path": self.path,
            "label": self.label,
            "confidence": round(float(self.confidence), 6),
            "top_k": [{"label": label, "probability": round(float(p), 6)} for label, p in self.top_k],
        }


class Predictor:
    """Classifies images with a :class:`model_io.LoadedModel`. Not for a model in training."""

    def __init__(self, loaded, batch_size=64):
        tf = tensorflow_module()
        self.loaded = loaded
        self.class_names = list(loaded.class_names)
        self.image_size = tuple(loaded.image_size)
        self.batch_size = batch_size
        model = loaded.model
        height, width = self.image_size
        spec = tf.TensorSpec((None, height, width, 3), tf.float32)
        self._call = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        self._warm = False

    def warm_up(self):
        """Trace and run once, so the first real image does not pay for it."""
        if not self._warm:
            self.probabilities(np.zeros((1, *self.image_size, 3), dtype=np.uint8))
            self._warm = True

    def probabilities(self, images):
        """Class probabilities for a uint8 or float batch ``(n, h, w, 3)`` of raw pixels."""
        batch = np.asarray(images, dtype=np.float32)
        outputs = []
        for start in range(0, len(batch), self.batch_size):
            outputs.append(np.asarray(self._call(batch[start:start + self.batch_size])))
        if not outputs:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return np.concatenate(outputs)

    def predict_paths(self, inputs, top_k=3, on_progress=None, stop_event=None):
        """Classify files and folders; every input gets a result or its own error."""
        paths = collect_image_files(inputs)
        results = [None] * len(paths)
        pending_index, pending_pixels = [], []

        def flush():
            if not pending_pixels:
                return
            probs = self.probabilities(np.stack(pending_pixels))
            for index, row in zip(pending_index, probs):
                results[index] = self._result(str(paths[index]), row, top_k)
            pending_index.clear()
            pending_pixels.clear()

        for index, path in enumerate(paths):
            if stop_event is not None and stop_event.is_set():
                break
            try:
                pending_pixels.append(load_image(path, self.image_size))
                pending_index.append(index)
            except ImageError as exc:
                results[index] = Prediction(path=str(path), error=exc.reason)
            if len(pending_pixels) >= self.batch_size:
                flush()
            if on_progress is not None:
                on_progress(index + 1, len(paths))
        flush()
        return [result for result in results if result is not None]

    def _result(self, path, row, top_k):
        if not np.all(np.isfinite(row)):
            return Prediction(path=path, error="model produced invalid output (NaN or infinity)")
        order = np.argsort(row)[::-1][: max(1, top_k)]
        best = int(order[0])
        return Prediction(
            path=path, label=self.class_names[best], confidence=float(row[best]),
            top_k=[(self.class_names[int(i)], float(row[int(i)])) for i in order],
            probabilities=row,
        )
