""""None of my classes" for images unlike the training images: a detector on the features.

The max-probability threshold of :mod:`core.calibration` only asks how sure the model is,
and a CNN can be very sure of random noise (five noise images were all answered
"automobile (0.85)"). The detector looks at what the classifier reads instead: the input of
the ``logits`` layer, scaled to unit length. Two measures are fitted on the validation split:

- Mahalanobis distance (Lee et al., 2018): the squared distance of the features to the
  nearest class mean under one covariance shared by the classes. The covariance is shrunk
  towards a multiple of the identity (Ledoit and Wolf, 2004), since a validation split has
  few images per feature dimension, and kept as its top principal directions plus one
  variance for the rest, so that it fits in the model's metadata.
- Energy (Liu et al., 2020): ``-logsumexp(logits)``, high when no class's logit is large.

The app uses the Mahalanobis distance (``DEFAULT_METHOD``), picked by measurement
(benchmarks/ood.py, benchmarks/results/ood-*.md): it flagged 100% of noise, blank and
CIFAR-10 images for an EfficientNet-Lite0 TrashNet model against 4.6% of its test photos,
and 100% of noise, 77% of blank images and 21% of TrashNet photos for a CIFAR-10 fast_cnn
trained 2 epochs (70.8%) against 4.9% of its test images; energy alone missed noise, and
"combined" (the larger of the two on a common scale) was never better. The threshold is
chosen on the validation split, scored out of fold (distances of images the class means
were not fitted on), so that about ``flag_rate`` of in-distribution images are flagged.

Everything here is NumPy on arrays except :func:`compute_features`, which runs the model.
The stored detector is untrusted input like the rest of a model file: anything malformed
makes :func:`detector_of` return None, and the Predictor falls back to the threshold.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np

METHODS = ("mahalanobis", "energy", "combined")
DEFAULT_METHOD = "mahalanobis"
FORMAT = "imgcls-ood/1"
MAX_COMPONENTS = 64  # principal directions kept exactly; the rest share one variance
FOLDS = 5


# -- features -----------------------------------------------------------------------------

def feature_model(model: Any) -> Any:
    """A model from the inputs to ``(features, logits)``: the ``logits`` layer's input and output.

    Args:
        model: A Keras model.

    Returns:
        A Keras model with those two outputs, or None when the model has no ``logits`` layer.
    """
    from .backend import keras_module
    from .calibration import single_input

    try:
        layer = model.get_layer("logits")
    except ValueError:
        return None
    keras = keras_module()
    try:
        return keras.Model(single_input(model), [layer.input, layer.output], name=f"{model.name}_features")
    except ValueError:
        return _replayed_chain(model)


def _replayed_chain(model):
    """``feature_model`` of a chain of layers first called in another model's graph.

    A transfer model's head, trained on stored features, shares its layers with the full
    model, where they were first called: their ``input`` is the full model's tensor, not
    connected to the head's input. Calling the layers again on a new input gives a model
    with the same weights and a graph of its own.
    """
    from .backend import keras_module

    keras = keras_module()
    inputs = keras.Input(model.inputs[0].shape[1:])
    x = inputs
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name == "logits":
            return keras.Model(inputs, [x, layer(x)], name=f"{model.name}_features")
        x = layer(x)
    return None


def compute_features(model: Any, images: Any, batch_size: int = 64,
                     tta: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(features, logits)`` of raw-pixel ``images``, averaged over the TTA views.

    The logits are affine in the features, so the views' mean features give the views'
    mean logits: the same numbers the Predictor answers with.

    Args:
        model: A Keras model with a ``logits`` layer.
        images: ``(n, h, w, 3)`` raw pixels: an array, a list of arrays, or an on-disk
            image set of :mod:`core.image_cache`.
        batch_size: Images per call of the model.
        tta: A :mod:`core.tta` mode, or None.

    Returns:
        ``(n, dims)`` features and ``(n, classes)`` logits, float64.

    Raises:
        ValueError: The model has no ``logits`` layer.
    """
    from .backend import keras_module, tensorflow_module
    from .tta import tta_logits

    sub_model = feature_model(model)
    if sub_model is None:
        raise ValueError(f"model {model.name!r} has no layer named 'logits' to take features from")
    if not hasattr(images, "shape"):
        images = np.asarray(images)
    tf = tensorflow_module()
    ops = keras_module().ops
    width = int(sub_model.outputs[0].shape[-1])

    def joined(views):
        features, logits = sub_model(views, training=False)
        return ops.concatenate([features, logits], axis=-1)

    spec = tf.TensorSpec((None, *images.shape[1:]), tf.float32)
    call = tf.function(lambda x: tta_logits(joined, x, tta, ops), input_signature=[spec])
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
        outputs.append(np.asarray(call(batch), dtype=np.float64))
    if not outputs:
        num_classes = int(sub_model.outputs[1].shape[-1])
        return np.zeros((0, width)), np.zeros((0, num_classes))
    both = np.concatenate(outputs)
    return both[:, :width], both[:, width:]


# -- the two scores -------------------------------------------------------------------------

def energy(logits: np.ndarray) -> np.ndarray:
    """``-logsumexp(logits)`` per row: higher is less like the training images.

    Args:
        logits: ``(n, classes)``.

    Returns:
        ``(n,)`` energies.
    """
    logits = np.asarray(logits, dtype=np.float64)
    top = logits.max(axis=1)
    return -(top + np.log(np.exp(logits - top[:, None]).sum(axis=1)))


def normalised(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length.

    The detector compares directions, not sizes (measured: a blank image's features point
    elsewhere but can be as close in plain distance).

    Args:
        features: ``(n, dims)``.

    Returns:
        ``(n, dims)`` float64 rows of length 1 (0 rows stay 0).
    """
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def shrunk_spectrum(centred: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The spectrum of the Ledoit-Wolf shrunk covariance of centred rows ``(n, dims)``.

    The top ``min(n, dims)`` eigenpairs, largest first; every other direction has
    eigenvalue ``shrinkage * trace / dims``.

    Computed from the smaller of ``x.T @ x`` and ``x @ x.T``: a 1280-wide backbone with a
    400-image validation split decomposes a 400 x 400 matrix (LAPACK's SVD of the rows
    took 3-7 s here, this 0.3 s).

    Args:
        centred: ``(n, dims)`` rows, each minus its class mean.

    Returns:
        ``(eigenvalues, eigenvectors, shrinkage, floor)``: eigenvectors as columns, and
        ``floor`` the eigenvalue of every other direction.
    """
    x = np.asarray(centred, dtype=np.float64)
    n, dims = x.shape
    if n < dims:
        gram_values, left = np.linalg.eigh(x @ x.T)
        order = np.argsort(gram_values)[::-1]
        gram_values, left = np.maximum(gram_values[order], 0.0), left[:, order]
        keep = gram_values > gram_values[0] * 1e-12 if gram_values[0] > 0 else np.zeros(n, bool)
        gram_values, left = gram_values[keep], left[:, keep]
        right = (x.T @ left) / np.sqrt(gram_values)  # (dims, rank), orthonormal columns
    else:
        gram_values, right = np.linalg.eigh(x.T @ x)
        order = np.argsort(gram_values)[::-1]
        gram_values, right = np.maximum(gram_values[order], 0.0), right[:, order]
    if len(gram_values) == 0:  # every row at its class mean: nothing but the floor
        gram_values, right = np.zeros(1), np.eye(dims)[:, :1]
    sample = gram_values / n  # eigenvalues of x.T @ x / n
    trace = float(sample.sum())
    mu = trace / dims
    squares = float(np.sum(sample**2))  # the squared Frobenius norm of the sample covariance
    beta = (float(np.sum(np.sum(x**2, axis=1) ** 2)) / n - squares) / (dims * n)
    delta = (squares - 2.0 * mu * trace + dims * mu**2) / dims
    shrinkage = 0.0 if delta <= 0 else min(1.0, max(0.0, min(beta, delta) / delta))
    values = (1.0 - shrinkage) * sample + shrinkage * mu
    return values, right, shrinkage, shrinkage * mu


class Mahalanobis:
    """Class means and a shared, shrunk covariance, as top principal directions + the rest,
    on unit-length features."""

    def __init__(self, means, basis, variances, rest_variance):
        self.means = np.asarray(means, dtype=np.float64)  # (classes, dims)
        self.basis = np.asarray(basis, dtype=np.float64)  # (dims, k), orthonormal columns
        self.variances = np.asarray(variances, dtype=np.float64)  # (k,)
        self.rest_variance = float(rest_variance)  # of every direction outside the basis

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, num_classes: int,
            max_components: int = MAX_COMPONENTS) -> Mahalanobis:
        """Fit the class means and the shrunk covariance on labelled features.

        Args:
            features: ``(n, dims)``; scaled to unit length here.
            labels: ``(n,)`` class indices.
            num_classes: Classes of the model (those without images get no mean).
            max_components: Principal directions kept exactly.

        Returns:
            The fitted statistics.
        """
        features = normalised(features)
        labels = np.asarray(labels, dtype=np.int64)
        present = [c for c in range(num_classes) if np.any(labels == c)]
        means = np.stack([features[labels == c].mean(axis=0) for c in present])
        index = {c: i for i, c in enumerate(present)}
        centred = features - means[[index[c] for c in labels]]
        values, vectors, _shrinkage, outside = shrunk_spectrum(centred)
        dims = features.shape[1]
        floor = max(float(values[0]) * 1e-6, 1e-12)
        values = np.maximum(values, floor)
        k = min(max_components, len(values))
        # The directions beyond the basis: the rest of the spectrum, and dims - rank more
        # at the shrinkage floor ("outside"), share their mean variance.
        left = dims - k
        rest = ((float(values[k:].sum()) + (dims - len(values)) * outside) / left) if left else floor
        return cls(means, vectors[:, :k], values[:k], max(rest, floor))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """The squared distance of each (unit-length) row to its nearest class mean.

        Args:
            features: ``(n, dims)``; scaled to unit length here.

        Returns:
            ``(n,)`` squared Mahalanobis distances.
        """
        features = normalised(features)
        best = np.full(len(features), np.inf)
        for mean in self.means:
            offset = features - mean
            projected = offset @ self.basis
            inside = np.sum(projected**2 / self.variances, axis=1)
            if self.basis.shape[1] < self.basis.shape[0]:
                # The residual itself, not |offset|^2 - |projected|^2: that difference is
                # mostly rounding when the basis was stored in float32.
                residual = offset - projected @ self.basis.T
                inside = inside + np.sum(residual**2, axis=1) / self.rest_variance
            best = np.minimum(best, inside)
        return best


# -- the detector ---------------------------------------------------------------------------

class OodDetector:
    """Scores ``(features, logits)``; a score above ``threshold`` means "none of my classes".

    ``scales`` puts each measure on a common footing: a measure's score is
    ``(value - centre) / spread`` with the centre and spread of its validation values, so 0
    is a typical validation image and 1 one at the validation 95th percentile.
    """

    def __init__(self, method, mahalanobis, scales, threshold, details=None):
        if method not in METHODS:
            raise ValueError(f"unknown detector method {method!r}; expected one of {METHODS}")
        self.method = method
        self.mahalanobis = mahalanobis
        self.scales = scales  # {"mahalanobis": (centre, spread), "energy": (centre, spread)}
        self.threshold = float(threshold)
        self.details = details or {}

    @property
    def num_classes(self) -> int:
        """Classes with a mean."""
        return len(self.mahalanobis.means)

    @property
    def feature_dim(self) -> int:
        """Width of the features."""
        return self.mahalanobis.means.shape[1]

    def measures(self, features: np.ndarray, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Both measures of each image, each on its validation scale.

        Args:
            features: ``(n, dims)`` the ``logits`` layer's inputs.
            logits: ``(n, classes)``.

        Returns:
            ``{"mahalanobis": scaled distances, "energy": scaled energies}``.
        """
        raw = {"mahalanobis": np.log(self.mahalanobis.distances(features) + 1e-12), "energy": energy(logits)}
        return {name: (raw[name] - self.scales[name][0]) / self.scales[name][1] for name in raw}

    def scores(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """The detector's score of each image (its method's measure).

        Args:
            features: ``(n, dims)`` the ``logits`` layer's inputs.
            logits: ``(n, classes)``.

        Returns:
            ``(n,)`` scores; above ``threshold`` means "none of my classes".
        """
        measures = self.measures(features, logits)
        if self.method == "combined":
            return np.maximum(measures["mahalanobis"], measures["energy"])
        return measures[self.method]

    def flags(self, features: np.ndarray, logits: np.ndarray) -> np.ndarray:
        """Which images are "none of my classes".

        Args:
            features: ``(n, dims)`` the ``logits`` layer's inputs.
            logits: ``(n, classes)``.

        Returns:
            ``(n,)`` bools: score above ``threshold``.
        """
        return self.scores(features, logits) > self.threshold

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able form stored as ``metadata["calibration"]["ood"]``.

        Returns:
            The dict; arrays are base64 float32 (see :func:`detector_from_dict`).
        """
        return {
            "format": FORMAT,
            "method": self.method,
            "threshold": round(self.threshold, 6),
            "scales": {name: [float(v) for v in pair] for name, pair in self.scales.items()},
            "means": _encode(self.mahalanobis.means),
            "basis": _encode(self.mahalanobis.basis),
            "variances": _encode(self.mahalanobis.variances),
            "rest_variance": float(self.mahalanobis.rest_variance),
            **self.details,
        }


def _scale(values):
    """``(centre, spread)``: the median and the median absolute deviation (robust: a
    validation split of a few dozen images may hold one far-off image)."""
    centre = float(np.median(values))
    spread = float(np.median(np.abs(np.asarray(values) - centre)))
    return centre, max(spread, 1e-6 * max(1.0, abs(centre)), 1e-12)


def out_of_fold_distances(features: np.ndarray, labels: np.ndarray, num_classes: int, folds: int = FOLDS,
                          seed: int = 0) -> np.ndarray:
    """Each image's Mahalanobis distance under means and covariance fitted without it.

    Distances of the images the statistics were fitted on are smaller than those of new
    images; a threshold taken from them would flag far more new in-distribution images
    than intended.

    Args:
        features: ``(n, dims)``.
        labels: ``(n,)`` class indices.
        num_classes: Classes of the model.
        folds: Folds, each class dealt round-robin over them.
        seed: Seeds the order the images are dealt in.

    Returns:
        ``(n,)`` squared distances.
    """
    labels = np.asarray(labels, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    # Stratified: each class's images dealt round-robin over the folds.
    fold_of = np.empty(len(labels), dtype=np.int64)
    for c in range(num_classes):
        members = order[labels[order] == c]
        fold_of[members] = np.arange(len(members)) % folds
    distances = np.empty(len(labels))
    for fold in range(folds):
        held = fold_of == fold
        if not held.any():
            continue
        fitted = Mahalanobis.fit(features[~held], labels[~held], num_classes)
        distances[held] = fitted.distances(features[held])
    return distances


def fit_detector(features: np.ndarray, logits: np.ndarray, labels: np.ndarray, num_classes: int,
                 method: str = DEFAULT_METHOD, flag_rate: float = 0.05) -> OodDetector:
    """Fit the detector on validation ``features``, ``logits`` and ``labels``.

    Args:
        features: ``(n, dims)`` the ``logits`` layer's inputs (TTA-averaged if the model
            answers with TTA).
        logits: ``(n, classes)``.
        labels: ``(n,)`` true classes.
        num_classes: Number of classes of the model.
        method: "mahalanobis", "energy" or "combined".
        flag_rate: Share of in-distribution (validation) images the threshold may flag.

    Returns:
        An :class:`OodDetector`, whose ``details`` record the validation flag rate.

    Raises:
        ValueError: Too few images (fewer than two per class) or non-finite inputs.
    """
    features = np.asarray(features, dtype=np.float64)
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=num_classes)
    if len(labels) == 0 or counts.min() < 2:
        raise ValueError("the detector needs at least two validation images of every class")
    if not (np.all(np.isfinite(features)) and np.all(np.isfinite(logits))):
        raise ValueError("the features or logits contain NaN or infinity")
    folds = int(min(FOLDS, counts.min()))
    # Log distances: squared distances have a long right tail, their logs barely.
    held_out = np.log(out_of_fold_distances(features, labels, num_classes, folds=folds) + 1e-12)
    energies = energy(logits)
    scales = {"mahalanobis": _scale(held_out), "energy": _scale(energies)}
    mahalanobis = Mahalanobis.fit(features, labels, num_classes)
    measures = {"mahalanobis": (held_out - scales["mahalanobis"][0]) / scales["mahalanobis"][1],
                "energy": (energies - scales["energy"][0]) / scales["energy"][1]}
    scores = (np.maximum(measures["mahalanobis"], measures["energy"]) if method == "combined"
              else measures[method])
    # The smallest threshold flagging at most flag_rate of the validation images.
    keep = math.ceil((1.0 - flag_rate) * len(scores) - 1e-9)
    threshold = float(np.sort(scores)[max(0, keep - 1)]) + 1e-9
    details = {"flag_rate_target": flag_rate,
               "validation_flagged": round(float(np.mean(scores > threshold)), 6),
               "num_images": int(len(labels))}
    return OodDetector(method, mahalanobis, scales, threshold, details)


# -- storage ----------------------------------------------------------------------------------

def _encode(array):
    array = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(array.shape), "float32": base64.b64encode(array.tobytes()).decode("ascii")}


def _decode(value, ndim):
    if not isinstance(value, dict):
        raise ValueError("not an encoded array")
    shape, data = value.get("shape"), value.get("float32")
    if (not isinstance(shape, list) or len(shape) != ndim
            or not all(isinstance(side, int) and not isinstance(side, bool) and 0 < side <= 1 << 20
                       for side in shape)
            or not isinstance(data, str)):
        raise ValueError("malformed encoded array")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    if len(raw) != 4 * math.prod(shape):
        raise ValueError("encoded array has the wrong length")
    array = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError("encoded array holds NaN or infinity")
    return array


def _number(value, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("not a finite number")
    if positive and value <= 0:
        raise ValueError("not positive")
    return float(value)


def detector_from_dict(data: Any) -> OodDetector:
    """An :class:`OodDetector` from its stored form.

    Args:
        data: What :meth:`OodDetector.to_dict` wrote, read back from a model file (untrusted).

    Returns:
        The detector.

    Raises:
        ValueError: The data is malformed (wrong types, shapes, or values).
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("method") not in METHODS:
        raise ValueError("not an imgcls out-of-distribution detector")
    means = _decode(data.get("means"), 2)
    basis = _decode(data.get("basis"), 2)
    variances = _decode(data.get("variances"), 1)
    if (basis.shape[0] != means.shape[1] or basis.shape[1] != len(variances)
            or basis.shape[1] > basis.shape[0] or np.any(variances <= 0)):
        raise ValueError("detector arrays do not fit together")
    # Orthonormal again after the float32 round trip (R is +-1 on its diagonal up to rounding).
    basis, triangle = np.linalg.qr(basis)
    diagonal = np.diag(triangle)
    if np.any(np.abs(np.abs(diagonal) - 1.0) > 1e-3):
        raise ValueError("detector basis is not orthonormal")
    basis = basis * np.sign(diagonal)
    scales = data.get("scales")
    if not isinstance(scales, dict):
        raise ValueError("detector scales missing")
    parsed = {}
    for name in ("mahalanobis", "energy"):
        pair = scales.get(name)
        if not isinstance(pair, list) or len(pair) != 2:
            raise ValueError(f"detector scale {name!r} malformed")
        parsed[name] = (_number(pair[0]), _number(pair[1], positive=True))
    mahalanobis = Mahalanobis(means, basis, variances, _number(data.get("rest_variance"), positive=True))
    return OodDetector(data["method"], mahalanobis, parsed, _number(data.get("threshold")))


def detector_of(metadata: dict[str, Any] | None, num_classes: int | None = None,
                feature_dim: int | None = None) -> OodDetector | None:
    """The detector stored in a model's metadata, or None (absent, malformed, or not this model's).

    Args:
        metadata: A model's metadata (may be None).
        num_classes: The model's classes; a detector for another count is ignored.
        feature_dim: The width of the model's features; likewise.

    Returns:
        The detector, or None.
    """
    calibration = (metadata or {}).get("calibration") if isinstance(metadata, dict) else None
    if not isinstance(calibration, dict) or "ood" not in calibration:
        return None
    try:
        detector = detector_from_dict(calibration["ood"])
    except (ValueError, TypeError, AttributeError, UnicodeError):
        return None
    if num_classes is not None and detector.num_classes != num_classes:
        return None
    if feature_dim is not None and detector.feature_dim != feature_dim:
        return None
    return detector
