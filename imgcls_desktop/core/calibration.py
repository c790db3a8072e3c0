"""Confidence you can trust: temperature scaling and the "unknown" threshold.

A network trained with cross-entropy is rarely calibrated: a 90% answer is right more or
less than 90% of the time. Temperature scaling (Guo et al., 2017) divides the logits by one
number ``T`` fitted on the validation split; it changes every confidence but never the
ranking, so the top-1 answer and the accuracy stay exactly as they were.

The "unknown" verdict uses the calibrated top probability: an image whose best class gets
less than ``unknown_threshold`` is answered "none of my classes". The threshold is tuned on
the validation split so that it costs few correct answers (see
:func:`fit_unknown_threshold`).

Everything here is NumPy on arrays except :func:`calibrate`, which runs the model.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# A tiny validation set that the model separates perfectly pushes the likelihood towards
# T -> 0 (infinitely sharp). A weak prior on log T, worth one validation image, keeps the
# fit finite there and is negligible when there is real evidence.
_PRIOR_WEIGHT = 1.0
MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of ``logits / temperature`` in float64 (stable for large logits).

    Args:
        logits: ``(n, classes)`` pre-softmax outputs.
        temperature: What the logits are divided by first.

    Returns:
        ``(n, classes)`` float64 probabilities.
    """
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def _nll(logits, labels, temperature):
    scaled = logits / temperature
    top = scaled.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(scaled - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_sum - scaled[np.arange(len(labels)), labels]))


def _objective(logits, labels, log_temperature):
    prior = _PRIOR_WEIGHT * log_temperature**2 / (2.0 * len(labels))
    return _nll(logits, labels, math.exp(log_temperature)) + prior


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)``.

    A coarse grid on ``log T`` then golden-section refinement around its best point. The
    NLL is convex in ``1 / T``, hence unimodal in ``log T``, so the search finds the
    minimum. ``T`` stays within [``MIN_TEMPERATURE``, ``MAX_TEMPERATURE``].

    Args:
        logits: ``(n, classes)`` pre-softmax outputs.
        labels: ``(n,)`` integer true classes.

    Returns:
        The fitted temperature (1.0 when there is nothing to fit on).

    Raises:
        ValueError: The logits contain NaN or infinity.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if logits.ndim != 2 or len(logits) == 0 or len(labels) != len(logits):
        return 1.0
    if not np.all(np.isfinite(logits)):
        raise ValueError("fit_temperature: the logits contain NaN or infinity")
    low, high = math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)
    grid = np.linspace(low, high, 61)
    values = [_objective(logits, labels, t) for t in grid]
    best = int(np.argmin(values))
    a, b = grid[max(0, best - 1)], grid[min(len(grid) - 1, best + 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _objective(logits, labels, c), _objective(logits, labels, d)
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _objective(logits, labels, c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _objective(logits, labels, d)
    return float(math.exp((a + b) / 2.0))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error: the gap between confidence and accuracy.

    The top probabilities are put in ``bins`` equal-width bins over (0, 1]; ECE is the
    mean over images of ``|accuracy(bin) - mean confidence(bin)|`` of each image's bin.
    0 is perfect; an always-100%-sure model that is right 80% of the time scores 0.2.

    Args:
        probabilities: ``(n, classes)`` probabilities.
        labels: ``(n,)`` integer true classes.
        bins: Number of equal-width confidence bins.

    Returns:
        The ECE, in [0, 1] (0.0 for no images).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(probabilities) == 0:
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin i holds confidences in (i/bins, (i+1)/bins]; a confidence of exactly 0 joins bin 0.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for i in range(bins):
        members = index == i
        count = int(members.sum())
        if count:
            total += count * abs(float(correct[members].mean()) - float(confidence[members].mean()))
    return float(total / len(probabilities))


def fit_unknown_threshold(probabilities: np.ndarray, labels: np.ndarray, target_recall: float = 0.95) -> float:
    """The top-probability threshold below which an answer becomes "unknown".

    The rule: take the top probabilities of the *correct* validation predictions and
    return the largest threshold that keeps at least ``target_recall`` of them at or above
    it, i.e. the ``ceil(target_recall * n_correct)``-th highest of them. At most
    ``1 - target_recall`` of the answers the model gets right are then turned into
    "unknown", and anything less sure than that is refused. With no correct prediction
    there is no evidence, and the threshold is 0 (never unknown).

    Args:
        probabilities: ``(n, classes)`` (calibrated) probabilities on validation images.
        labels: ``(n,)`` true classes.
        target_recall: Share of correct answers to keep, in (0, 1].

    Returns:
        The threshold, a probability in [0, 1].

    Raises:
        ValueError: ``target_recall`` is not in (0, 1].
    """
    if not 0.0 < target_recall <= 1.0:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(probabilities) == 0:
        return 0.0
    correct = probabilities.argmax(axis=1) == labels
    confidences = np.sort(probabilities.max(axis=1)[correct])[::-1]
    if len(confidences) == 0:
        return 0.0
    # A little slack so float noise of the same image never flips it to "unknown".
    keep = max(1, math.ceil(target_recall * len(confidences) - 1e-9))
    return float(max(0.0, confidences[keep - 1] - 1e-6))


def logits_model(model: Any) -> Any:
    """A model from the same inputs to the ``logits`` layer's output, or None if it has none.

    Args:
        model: A Keras model.

    Returns:
        A Keras model giving the logits, or None.
    """
    from .backend import keras_module

    try:
        layer = model.get_layer("logits")
    except ValueError:
        return None
    keras = keras_module()
    try:
        return keras.Model(single_input(model), layer.output, name=f"{model.name}_logits")
    except ValueError:  # a head whose layers were first called in the full model (see ood)
        from .ood import feature_model

        both = feature_model(model)
        return keras.Model(both.inputs, both.outputs[1], name=f"{model.name}_logits")


def single_input(model: Any) -> Any:
    """The model's input tensor itself, not a one-element list.

    A sub-model built on ``[input]`` warns on every call with a plain tensor.

    Args:
        model: A Keras model.

    Returns:
        Its one symbolic input tensor, or the list of them when it has several.
    """
    inputs = model.inputs
    return inputs[0] if len(inputs) == 1 else inputs


def compute_logits(model: Any, images: Any, batch_size: int = 64, tta: str | None = None) -> np.ndarray:
    """The logits of raw-pixel ``images`` (uint8 or float, ``(n, h, w, 3)``).

    With ``tta`` (a :mod:`core.tta` mode), the mean logits of each image's views.

    Args:
        model: A Keras model with a layer named ``logits``.
        images: An array, a list of arrays, or an on-disk image set of
            :mod:`core.image_cache` (anything sliceable with a ``shape``).
        batch_size: Images per call of the model.
        tta: A :mod:`core.tta` mode, or None.

    Returns:
        ``(n, classes)`` float32 logits.

    Raises:
        ValueError: The model has no ``logits`` layer.
    """
    from .tta import tta_logits

    sub_model = logits_model(model)
    if sub_model is None:
        raise ValueError(f"model {model.name!r} has no layer named 'logits' to calibrate")
    if not hasattr(images, "shape"):
        images = np.asarray(images)  # a list; arrays and on-disk image sets are sliced as they are
    from .backend import keras_module, tensorflow_module

    tf = tensorflow_module()
    # Traced, not eager: eager MobileNetV2 batches at 224x224 left 6 GB of freed-but-held
    # heap behind them (measured), a traced graph reuses its buffers.
    spec = tf.TensorSpec((None, *images.shape[1:]), tf.float32)
    ops = keras_module().ops
    call = tf.function(lambda x: tta_logits(lambda views: sub_model(views, training=False), x, tta, ops),
                       input_signature=[spec])
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
        outputs.append(np.asarray(call(batch)))
    return np.concatenate(outputs) if outputs else np.zeros((0, model.outputs[0].shape[-1]))


def calibrate(model: Any, images_uint8: Any, labels: np.ndarray, target_recall: float = 0.95,
              tta: str | None = None) -> dict[str, Any]:
    """Fit the temperature, the unknown threshold and the detector on validation images.

    Args:
        model: A Keras model with a layer named ``logits``.
        images_uint8: The validation images, ``(n, h, w, 3)`` raw pixels (an array or an
            on-disk image set of :mod:`core.image_cache`).
        labels: ``(n,)`` integer true classes.
        target_recall: Share of correct answers the unknown threshold keeps
            (see :func:`fit_unknown_threshold`).
        tta: A :mod:`core.tta` mode, or None.

    Returns:
        The dict stored as ``metadata["calibration"]``: ``temperature``, ``ece_before``,
        ``ece_after`` (on these images), ``unknown_threshold``, ``target_recall``,
        ``num_images``, ``method``, and ``ood``, the out-of-distribution detector of
        :mod:`core.ood` (``ood_skipped`` says why when it could not be fitted).

    Raises:
        ValueError: The model has no ``logits`` layer.
    """
    from .ood import compute_features, fit_detector

    labels = np.asarray(labels, dtype=np.int64)
    if logits_model(model) is None:
        raise ValueError(f"model {model.name!r} has no layer named 'logits' to calibrate")
    # One pass gives the logits and the features the detector needs.
    features, logits = compute_features(model, images_uint8, tta=tta)
    temperature = fit_temperature(logits, labels)
    before = softmax(logits)
    after = softmax(logits, temperature)
    result: dict[str, Any] = {
        "method": "temperature scaling on the validation split",
        "temperature": round(temperature, 6),
        "ece_before": round(expected_calibration_error(before, labels), 6),
        "ece_after": round(expected_calibration_error(after, labels), 6),
        "unknown_threshold": round(fit_unknown_threshold(after, labels, target_recall), 6),
        "target_recall": target_recall,
        "num_images": int(len(labels)),
    }
    try:
        result["ood"] = fit_detector(features, logits, labels, logits.shape[1]).to_dict()
    except ValueError as exc:
        # The model keeps the threshold alone, as models made before the detector do.
        result["ood_skipped"] = str(exc)
    return result


def temperature_of(metadata: dict[str, Any] | None) -> float | None:
    """The stored temperature of a model's metadata, or None if it was not calibrated.

    Args:
        metadata: A model's metadata (may be None).

    Returns:
        The temperature, or None when missing or invalid.
    """
    calibration = (metadata or {}).get("calibration")
    if not isinstance(calibration, dict):
        return None
    value = calibration.get("temperature")
    if isinstance(value, (int, float)) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def unknown_threshold_of(metadata: dict[str, Any] | None) -> float | None:
    """The stored unknown threshold of a model's metadata, or None.

    Args:
        metadata: A model's metadata (may be None).

    Returns:
        The threshold in [0, 1], or None when missing or invalid.
    """
    calibration = (metadata or {}).get("calibration")
    if not isinstance(calibration, dict):
        return None
    value = calibration.get("unknown_threshold")
    if isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0:
        return float(value)
    return None
