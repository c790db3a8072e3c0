"""Why this label: Grad-CAM heat maps (Selvaraju et al., 2017).

The heat map of a class is the ReLU of the last spatial feature maps weighted by the mean
gradient of that class's logit with respect to each map: where the evidence the network
used for its answer lies. It works for every model this app trains: from-scratch presets
(the last Conv2D-like layer of the model itself) and transfer presets, whose
``keras.applications`` backbone is one nested layer (the backbone's last feature map with
more than one position is used: at 32x32 MobileNetV2 ends at 1x1, which locates nothing).

The map explains the answer the app shows. That answer comes from
:class:`inference.Predictor`: the mean logits of the model's test-time augmentation views
(:mod:`core.tta`), then its temperature. So the class explained by default is the
Predictor's, and the map is Grad-CAM of that mean logit, taken view by view (each view's
map moved back onto the image: un-mirrored, un-shifted) and summed. Explaining another
class is possible (``class_index``); the :class:`Explanation` then says so.

Everything here runs the model eagerly on one image: a heat map costs one forward and one
backward pass over the image's views.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .backend import keras_module, tensorflow_module
from .errors import ImgclsError
from .images import load_image, open_image

if TYPE_CHECKING:
    from .inference import Predictor
    from .model_io import LoadedModel


@dataclass
class Explanation:
    """One image's heat map and the answer it explains."""

    heat: np.ndarray  # (height, width) float32 in [0, 1], at the model's input size
    class_index: int  # the class explained
    label: str  # its name
    probabilities: np.ndarray  # what the app shows for the image (Predictor: TTA, calibrated)
    layer: str  # the feature layer the map was taken from ("backbone/layer" when nested)
    prediction: Any = None  # the Predictor's Prediction for the image (its verdict)
    views: int = 1  # the test-time augmentation views the map sums over

    @property
    def predicted_index(self) -> int:
        """The class the shown probabilities answer with."""
        return int(np.argmax(self.probabilities))

    @property
    def note(self) -> str | None:
        """Why the explained class is not the answer shown, or None when it is."""
        if self.class_index == self.predicted_index:
            return None
        shown = self.prediction.label if self.prediction is not None else str(self.predicted_index)
        return (f"explains '{self.label}' as asked; the model's answer is '{shown}'")


class _FeatureModel:
    """Runs a model returning ``(feature maps, class scores)`` for one target layer."""

    def __init__(self, model):
        keras = keras_module()
        self.model = model
        target = _find_feature_layer(model)
        if target is None:
            raise ImgclsError(
                f"The model {model.name!r} has no convolutional feature maps (no layer with a "
                "(batch, height, width, channels) output), so no heat map can be drawn for it.")
        owner, layer = target
        self.layer_name = layer.name if owner is model else f"{owner.name}/{layer.name}"
        # Where each feature cell sits on the input (None: unknown, stretch the map).
        self.geometry = _geometry(owner, layer)
        scores = _score_tensor(model)
        if owner is model:
            self._outer = keras.Model(model.inputs[0], [layer.output, scores], name="grad_cam")
            self._chain = None
        else:
            # The backbone is one layer of the outer model: rebuild its call as a model that
            # also returns the inner feature maps, then run the outer layers around it.
            self._outer = None
            self._inner_owner = owner
            self._inner = keras.Model(owner.inputs[0], [layer.output, owner.outputs[0]],
                                      name="grad_cam_backbone")
            self._chain = _chain_layers(model, scores)

    def __call__(self, batch):
        if self._chain is None:
            return self._outer(batch, training=False)
        x, features = batch, None
        for layer in self._chain:
            if layer is self._inner_owner:
                features, x = self._inner(x, training=False)
            else:
                x = layer(x, training=False)
        return features, x


# Built sub-models, per Keras model, so a gallery of heat maps pays for the build once.
_CACHE: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _feature_model(model):
    try:
        return _CACHE[model]
    except (KeyError, TypeError):
        pass
    built = _FeatureModel(model)
    try:
        _CACHE[model] = built
    except TypeError:
        pass
    return built


def _is_spatial(layer):
    shape = _output_shape(layer)
    return shape is not None and len(shape) == 4


def _output_shape(layer):
    try:
        return tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return None


def _positions(layer):
    shape = _output_shape(layer)
    return (shape[1] or 0) * (shape[2] or 0)


def _find_feature_layer(model):
    """``(owner, layer)``: the last 4-D feature layer, searching nested models too.

    Layers with a single position (1x1 maps) are used only when nothing larger exists.
    """
    found: list[Any] = []
    _collect_spatial(model, found)
    if not found:
        return None
    larger = [pair for pair in found if _positions(pair[1]) > 1]
    return (larger or found)[-1]


# Layers whose output only re-frames the previous feature maps (padding adds dead borders).
_NOT_FEATURES = frozenset({"InputLayer", "ZeroPadding2D", "Cropping2D", "Dropout", "SpatialDropout2D"})


def _collect_spatial(model, found):
    # model.layers of a Functional model are in topological order, so the last hit is the
    # deepest one. Input layers and the preprocessing in front of the first conv carry no
    # learned evidence, so only layers after a weighted (conv) layer count.
    seen_weights = False
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            before = len(found)
            _collect_spatial(layer, found)
            seen_weights = seen_weights or len(found) > before
            continue
        if layer.weights:
            seen_weights = True
        if seen_weights and _is_spatial(layer) and type(layer).__name__ not in _NOT_FEATURES:
            found.append((model, layer))


def _score_tensor(model):
    """The pre-softmax class scores: the ``logits`` layer, else the model's output."""
    try:
        return model.get_layer("logits").output
    except ValueError:
        last = model.layers[-1]
        if type(last).__name__ == "Softmax":
            # A foreign model ending in Softmax: its input are the logits.
            return last.input
        return model.outputs[0]


def _chain_layers(model, scores):
    """The outer layers from the input to ``scores``, checking that they form a chain."""
    keras_layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    chain = []
    for layer in keras_layers:
        chain.append(layer)
        if layer.output is scores:
            return chain
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) != 1 or len(nodes[0].input_tensors) != 1:
            break
    raise ImgclsError(
        f"The model {model.name!r} nests its feature extractor in a graph with branches; "
        "heat maps support models whose nested backbone sits in a single chain of layers "
        "(as every preset of this app does).")


def _as_pixels(loaded, image):
    height, width = loaded.image_size
    if isinstance(image, (str, Path)):
        return load_image(image, (height, width))
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ImgclsError(
            f"Expected an RGB image array of shape (height, width, 3). Received: shape={array.shape}")
    if array.shape[:2] != (height, width):
        pil = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "RGB")
        array = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return array


# Predictors per Keras model, so a gallery of heat maps traces the model once.
_PREDICTORS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _predictor(loaded):
    """The :class:`inference.Predictor` the app would answer ``loaded``'s images with."""
    from .inference import Predictor
    from .model_io import LoadedModel

    metadata = getattr(loaded, "metadata", None)
    try:
        cached = _PREDICTORS.get(loaded.model)
    except TypeError:
        cached = None
    same_metadata = cached is not None and (
        cached.loaded.metadata is metadata or (metadata is None and cached.loaded.metadata == {}))
    if cached is not None and same_metadata and cached.class_names == list(loaded.class_names):
        return cached
    if metadata is None:
        loaded = LoadedModel(model=loaded.model, path=None, class_names=list(loaded.class_names),
                             image_size=tuple(loaded.image_size), metadata={})
    predictor = Predictor(loaded)
    try:
        _PREDICTORS[loaded.model] = predictor
    except TypeError:
        pass
    return predictor


def explain(loaded: LoadedModel, image: str | Path | np.ndarray, class_index: int | None = None,
            predictor: Predictor | None = None) -> Explanation:
    """Grad-CAM of one image, with the answer it explains.

    Args:
        loaded: A :class:`model_io.LoadedModel` (anything with ``model``, ``class_names``
            and ``image_size``; its ``metadata`` gives the TTA views and the temperature).
        image: A path, or a uint8 RGB array (resized to the model's input size if needed).
        class_index: The class to explain; None explains the class the app answers with.
        predictor: The :class:`inference.Predictor` answering for ``loaded`` (one is made
            and kept per model when None).

    Returns:
        An :class:`Explanation`.

    Raises:
        ImgclsError: The image is not RGB, the class index is out of range, the image could
            not be classified, or the model's feature extractor is not supported.
        ImageError: The image file cannot be read.
    """
    from .tta import mode_of, tta_logits, view_transforms

    tf = tensorflow_module()
    pixels = _as_pixels(loaded, image)
    predictor = predictor or _predictor(loaded)
    path = str(image) if isinstance(image, (str, Path)) else "image"
    prediction = predictor.predict_images(pixels[None], [path], top_k=len(loaded.class_names))[0]
    probabilities = np.asarray(prediction.probabilities) if prediction.ok else None
    mode = mode_of(getattr(loaded, "metadata", None))
    feature_model = _feature_model(loaded.model)
    batch = tf.constant(pixels[None].astype(np.float32))
    captured = {}

    def scores_of(views):
        features, scores = feature_model(views)
        captured["features"] = features
        return scores

    with tf.GradientTape() as tape:
        # The views' weighted mean score: the logit the Predictor answers with.
        scores = tta_logits(scores_of, batch, mode)
        num_classes = int(scores.shape[-1])
        if class_index is None:
            if probabilities is None:
                raise ImgclsError(f"{path}: {prediction.error}; there is no answer to explain.")
            class_index = int(np.argmax(probabilities))
        elif not 0 <= int(class_index) < num_classes:
            raise ImgclsError(
                f"Class index {class_index} is out of range; the model has {num_classes} classes.")
        class_index = int(class_index)
        target = scores[:, class_index]
    features = captured["features"]
    gradients = tape.gradient(target, features)
    features = np.asarray(features).astype(np.float64)
    gradients = np.zeros_like(features) if gradients is None else np.asarray(gradients).astype(np.float64)
    transforms = view_transforms(mode)
    total = np.zeros(tuple(int(side) for side in loaded.image_size))
    for view, (_weight, shift, mirrored) in enumerate(transforms):
        # The gradient already carries the view's weight in the mean.
        weights = gradients[view].mean(axis=(0, 1))
        cam = np.maximum(features[view] @ weights, 0.0)
        heat = _upsample(cam, feature_model.geometry, loaded.image_size)
        total += _back_onto_image(heat, shift, mirrored)
    heat = _normalise(total)
    if probabilities is None:
        probabilities = np.full(num_classes, np.nan)
    names = list(loaded.class_names)
    label = names[class_index] if class_index < len(names) else f"class_{class_index}"
    return Explanation(heat=heat, class_index=class_index, label=label, probabilities=probabilities,
                       layer=feature_model.layer_name, prediction=prediction, views=len(transforms))


def _back_onto_image(heat, shift, mirrored):
    """A view's map placed on the image: a view is the image moved by ``shift`` pixels
    (its pixel (i, j) shows the image's (i + shift, j + shift)), then mirrored."""
    if mirrored:
        heat = heat[:, ::-1]
    if shift:
        heat = np.roll(heat, (shift, shift), axis=(0, 1))
        # The rows and columns that wrapped around lie outside the view: repeat the edge.
        if shift > 0:
            heat[:shift, :], heat[:, :shift] = heat[shift:shift + 1, :], heat[:, shift:shift + 1]
        else:
            heat[shift:, :], heat[:, shift:] = heat[shift - 1:shift, :], heat[:, shift - 1:shift]
    return heat


def grad_cam(loaded: LoadedModel, image: str | Path | np.ndarray, class_index: int | None = None) -> np.ndarray:
    """The Grad-CAM heat map of ``image`` for ``class_index`` (default: the predicted class).

    Args:
        loaded: As :func:`explain`.
        image: A path, or a uint8 RGB array.
        class_index: The class to explain; None explains the class the app answers with.

    Returns:
        A float32 array ``(height, width)`` in ``[0, 1]`` at the model's input size; all
        zeros when no position speaks for the class.

    Raises:
        ImgclsError, ImageError: As :func:`explain`.
    """
    return explain(loaded, image, class_index).heat


def _upsample(cam, geometry, size):
    """The coarse map sampled at every input pixel, each cell placed where it looks.

    Valid-padded convolutions see only the middle of the image (the tutorial CNN's 4x4
    map is centred on pixels 8.5 to 20.5 of 32), so stretching the map over the whole
    image, as most Grad-CAM code does, shifts the heat away from the object.
    """
    height, width = (int(side) for side in size)
    if geometry is None:
        peak = float(np.max(cam)) if cam.size else 0.0
        if peak <= 0:
            return np.zeros((height, width))
        return _resize_heat(cam / peak, (height, width)).astype(np.float64) * peak
    (scale_y, offset_y), (scale_x, offset_x) = geometry
    rows = _interpolation(height, cam.shape[0], scale_y, offset_y)
    columns = _interpolation(width, cam.shape[1], scale_x, offset_x)
    return rows @ cam @ columns.T


def _interpolation(pixels, cells, scale, offset):
    """``(pixels, cells)`` linear-interpolation weights from cell values to pixel values."""
    position = np.clip((np.arange(pixels) - offset) / scale, 0.0, cells - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, cells - 1)
    fraction = position - low
    weights = np.zeros((pixels, cells))
    weights[np.arange(pixels), low] += 1.0 - fraction
    weights[np.arange(pixels), high] += fraction
    return weights


_WINDOWED = frozenset({"Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D"})


def _geometry(model, target):
    """``((scale_y, offset_y), (scale_x, offset_x))``: feature cell i is centred on input pixel
    ``offset + scale * i``. None when a layer on the way is not understood."""
    placed: dict[int, Any] = {}
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            placed[id(layer)] = ((1.0, 0.0), (1.0, 0.0))
            continue
        parents = _parents(layer)
        if not parents or id(parents[0]) not in placed:
            return None
        axes = placed[id(parents[0])]
        in_shape, out_shape = _input_shape(layer), _output_shape(layer)
        if kind in _WINDOWED and in_shape is not None and len(in_shape) == 4:
            kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
            if kernel is None:
                return None
            strides = layer.strides
            dilation = getattr(layer, "dilation_rate", (1, 1))
            new_axes = []
            for axis in range(2):
                size_in, size_out = in_shape[1 + axis], out_shape[1 + axis]
                span = dilation[axis] * (kernel[axis] - 1) + 1
                shift = (span - 1) / 2.0
                if layer.padding == "same" and size_in and size_out:
                    shift -= max((size_out - 1) * strides[axis] + span - size_in, 0) // 2
                scale, offset = axes[axis]
                new_axes.append((scale * strides[axis], offset + scale * shift))
            axes = tuple(new_axes)
        elif kind in ("ZeroPadding2D", "Cropping2D"):
            amounts = layer.padding if kind == "ZeroPadding2D" else layer.cropping
            sign = -1.0 if kind == "ZeroPadding2D" else 1.0
            axes = tuple((scale, offset + sign * scale * amounts[axis][0])
                         for axis, (scale, offset) in enumerate(axes))
        elif (in_shape is not None and out_shape is not None and len(out_shape) == 4
              and tuple(in_shape[1:3]) != tuple(out_shape[1:3])):
            return None  # resizing, upsampling, ...: not modelled
        placed[id(layer)] = axes
        if layer is target:
            return axes
    return None


def _parents(layer):
    nodes = getattr(layer, "_inbound_nodes", None) or []
    if not nodes:
        return []
    parents = []
    for tensor in nodes[0].input_tensors:
        history = getattr(tensor, "_keras_history", None)
        if history is None:
            return []
        parents.append(history[0])
    return parents


def _input_shape(layer):
    try:
        shape = layer.input.shape
    except (AttributeError, ValueError):
        return None
    return tuple(shape) if not isinstance(shape, list) else None


def _normalise(cam):
    cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= 1e-12:
        return np.zeros_like(cam, dtype=np.float32)
    return (cam / peak).astype(np.float32)


def _resize_heat(heat, size):
    height, width = (int(side) for side in size)
    if heat.shape == (height, width):
        return heat.astype(np.float32)
    image = Image.fromarray(heat.astype(np.float32), "F")
    resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(resized, 0.0, 1.0)


def overlay(image_uint8: np.ndarray, heat: np.ndarray, alpha: float = 0.45, colormap: str = "jet") -> np.ndarray:
    """Blend a heat map, coloured with a matplotlib colormap, over an image.

    Args:
        image_uint8: ``(height, width, 3)`` uint8 RGB.
        heat: ``(h, w)`` floats in ``[0, 1]``; resized to the image if its size differs.
        alpha: Weight of the heat colours (0: image only, 1: heat only).
        colormap: A matplotlib colormap name.

    Returns:
        ``(height, width, 3)`` uint8 RGB.

    Raises:
        ImgclsError: The image is not ``(height, width, 3)``.
    """
    from matplotlib import colormaps

    image = np.asarray(image_uint8)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ImgclsError(f"Expected an RGB image of shape (height, width, 3). Received: shape={image.shape}")
    heat = _resize_heat(np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0), image.shape[:2])
    colours = colormaps[colormap](heat)[..., :3] * 255.0
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def overlay_for_display(path: str | os.PathLike, heat: np.ndarray, alpha: float = 0.45,
                        min_side: int = 256) -> np.ndarray:
    """The heat overlaid on the original image file, enlarged if it is small (for viewing).

    Args:
        path: The image file.
        heat: ``(h, w)`` floats in ``[0, 1]``.
        alpha: Weight of the heat colours.
        min_side: The image is enlarged by a whole factor until its longer side reaches this.

    Returns:
        ``(height, width, 3)`` uint8 RGB.

    Raises:
        ImageError: The file cannot be read as an image.
    """
    image = open_image(path)
    scale = max(1, int(np.ceil(min_side / max(1, max(image.size)))))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)
    return overlay(np.asarray(image, dtype=np.uint8), heat, alpha=alpha)
