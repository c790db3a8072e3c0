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
from .tta import mode_of as tta_mode_of, tta_logits


UNKNOWN_TEXT = "none of my classes"


@dataclass
class Prediction:
    """One image's answer.

    ``probabilities`` and ``confidence`` are calibrated when the model carries a
    temperature (``raw_probabilities`` keeps the model's own softmax). ``unknown`` is True
    when the top probability is below the model's ``unknown_threshold``: ``label`` is
    still the best class, but the verdict is "none of my classes (N% sure)", N being the
    (low) confidence of that best guess.
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

    @property
    def ok(self):
        return self.error is None

    @property
    def verdict(self):
        """What to tell the user: the label, or "none of my classes (N% sure)"."""
        if self.error is not None:
            return None
        if self.unknown:
            return f"{UNKNOWN_TEXT} ({self.confidence:.0%} sure)"
        return self.label

    def to_dict(self):
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        data = {
            "path": self.path,
            "label": self.label,
            "confidence": round(float(self.confidence), 6),
            "top_k": [{"label": label, "probability": round(float(p), 6)} for label, p in self.top_k],
            "unknown": bool(self.unknown),
            "verdict": self.verdict,
        }
        if self.unknown_threshold is not None:
            data["unknown_threshold"] = round(float(self.unknown_threshold), 6)
        return data


class Predictor:
    """Classifies images with a :class:`model_io.LoadedModel`. Not for a model in training.

    When the model's metadata holds a calibration (see :mod:`core.calibration`), the
    probabilities are ``softmax(logits / temperature)`` and answers below the unknown
    threshold are flagged; a plain Keras model without a ``logits`` layer gives its own
    outputs unchanged.
    """

    def __init__(self, loaded, batch_size=64):
        from .backend import keras_module
        from .calibration import single_input, temperature_of, unknown_threshold_of

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
        both = None
        if self.temperature is not None:
            try:
                logits = model.get_layer("logits").output
                # One forward pass gives both the logits and the model's own softmax.
                both = keras_module().Model(single_input(model), [logits, model.outputs[0]])
            except (ValueError, AttributeError):
                both = None
        self.tta = tta_mode_of(loaded.metadata)
        ops = keras_module().ops
        if both is None:
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
            def call(x):
                if self.tta:
                    # The views' mean logits: what the model was calibrated on.
                    logits = tta_logits(lambda views: both(views, training=False)[0], x, self.tta, ops)
                    return logits, tf.nn.softmax(logits)
                return both(x, training=False)
        self._call = tf.function(call, input_signature=[spec])
        self._warm = False

    @property
    def calibrated(self):
        return self.temperature is not None

    def warm_up(self):
        """Trace and run once, so the first real image does not pay for it."""
        if not self._warm:
            self.probabilities(np.zeros((1, *self.image_size, 3), dtype=np.uint8))
            self._warm = True

    def both_probabilities(self, images):
        """``(calibrated, raw)`` probabilities of a raw-pixel batch ``(n, h, w, 3)``.

        Without a calibration both are the model's own outputs.
        """
        from .calibration import softmax

        batch = np.asarray(images, dtype=np.float32)
        calibrated, raw = [], []
        for start in range(0, len(batch), self.batch_size):
            output = self._call(batch[start:start + self.batch_size])
            if self.temperature is None:
                probs = np.asarray(output)
                calibrated.append(probs)
                raw.append(probs)
            else:
                logits, probs = (np.asarray(part) for part in output)
                calibrated.append(softmax(logits, self.temperature).astype(np.float32))
                raw.append(probs)
        if not calibrated:
            empty = np.zeros((0, len(self.class_names)), dtype=np.float32)
            return empty, empty
        return np.concatenate(calibrated), np.concatenate(raw)

    def probabilities(self, images):
        """Class probabilities (calibrated if the model is) for raw pixels ``(n, h, w, 3)``."""
        return self.both_probabilities(images)[0]

    def raw_probabilities(self, images):
        """The model's own softmax outputs, without temperature scaling."""
        return self.both_probabilities(images)[1]

    def predict_paths(self, inputs, top_k=3, on_progress=None, stop_event=None):
        """Classify files and folders; every input gets a result or its own error."""
        paths = collect_image_files(inputs)
        results = [None] * len(paths)
        pending_index, pending_pixels = [], []

        def flush():
            if not pending_pixels:
                return
            probs, raw = self.both_probabilities(np.stack(pending_pixels))
            for index, row, raw_row in zip(pending_index, probs, raw):
                results[index] = self._result(str(paths[index]), row, top_k, raw_row)
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

    def _result(self, path, row, top_k, raw_row=None):
        if not np.all(np.isfinite(row)):
            return Prediction(path=path, error="model produced invalid output (NaN or infinity)")
        order = np.argsort(row)[::-1][: max(1, top_k)]
        best = int(order[0])
        return Prediction(
            path=path, label=self.class_names[best], confidence=float(row[best]),
            top_k=[(self.class_names[int(i)], float(row[int(i)])) for i in order],
            probabilities=row, raw_probabilities=row if raw_row is None else raw_row,
            unknown=self.unknown_threshold is not None and float(row[best]) < self.unknown_threshold,
            unknown_threshold=self.unknown_threshold,
        )
