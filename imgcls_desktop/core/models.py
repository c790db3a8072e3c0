"""Architectures and the presets users pick by name.

Every model takes raw RGB pixels (float32, 0-255, shape ``(batch, height, width, 3)``) and
returns class probabilities: the preprocessing lives inside the graph, so a saved or
exported model needs no code from this app. The last two layers are always ``logits``
(Dense) and ``probabilities`` (Softmax), which calibration and heat maps rely on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from .backend import keras_module
from .errors import ImgclsError, WeightsUnavailableError


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to training batches (never at inference)."""

    flip: bool = True
    rotation: float = 0.0  # fraction of a full turn, as keras.layers.RandomRotation
    zoom: float = 0.0
    translation: float = 0.0  # fraction of the image size
    contrast: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict (for metadata and ``--json``).

        Returns:
            ``{"flip", "rotation", "zoom", "translation", "contrast"}``.
        """
        return dict(self.__dict__)

    @property
    def is_identity(self) -> bool:
        """Whether nothing is changed (no flip and every amount 0)."""
        return not (self.flip or self.rotation or self.zoom or self.translation or self.contrast)


@dataclass(frozen=True)
class Preset:
    """A named recipe: the architecture, the training settings and their defaults."""

    name: str
    title: str
    description: str
    kind: str  # "scratch" or "transfer"
    image_size: int
    batch_size: int
    learning_rate: float
    epochs: int
    optimizer: str  # "adam" or "sgd"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4  # SGD only; Keras' decoupled form (times the learning rate)
    label_smoothing: float = 0.0
    tta: str | None = None  # test-time augmentation, a mode of core.tta ("flip", "flip_translate")
    jit_compile: bool = False
    augmentation: Augmentation = field(default_factory=Augmentation)
    backbone: str | None = None  # keras.applications class name for transfer presets
    # The learning rate over training, as fractions of the peak: (start, where the peak
    # is as a fraction of training, end); linear in between.
    schedule: tuple = (0.1, 0.15, 0.0)
    # Flip every training image on odd epochs and none on even ones (half of them start
    # mirrored), instead of a coin toss per image and epoch (airbench's "alternating flip").
    alternating_flip: bool = False
    # Average the weights as training goes (airbench's lookahead EMA; core.averaging).
    lookahead: bool = False
    bias_lr_scale: float = 1.0  # SGD only: BatchNorm biases learn this many times faster
    architecture: str | None = None  # the builder in build_model; None: the preset's name
    widths: tuple = ()  # fast_cnn: channels of its three conv groups; () for the default
    # fast_cnn under a time budget: ((at least this many seconds, widths), ...). A longer
    # budget buys a wider network rather than more epochs of a narrow one.
    budget_widths: tuple = ()
    activation: str = "gelu"  # fast_cnn's activation
    # Transfer presets: a hidden ReLU layer of this width between the features and the
    # logits (0: a linear head). On TrashNet's Lite0 features at 288 px a 512-unit head
    # scored 92.7% against 91.5% for a linear one (one run each, all training photos).
    head_units: int = 0
    # Run the whole schedule and keep its last epoch, with no early stopping. For a head on
    # stored features an epoch costs a fraction of a second, and the validation accuracy of
    # a few hundred photos is too noisy to pick an epoch by: on TrashNet (3 seeds) the last
    # epoch scored 92.5% against 91.2% for the best-validation epoch with patience 10.
    keep_last_epoch: bool = False


PRESETS = {
    preset.name: preset
    for preset in [
        Preset(
            name="fast_cnn",
            title="Fast CNN (from scratch, speed-run recipe)",
            description="The CIFAR-10 speed-run recipe (airbench) cut to a CPU budget: "
                        "whitened input, BatchNorm, large-batch Nesterov SGD.",
            kind="scratch",
            image_size=32,
            batch_size=512,
            learning_rate=0.6,
            epochs=10,
            optimizer="sgd",
            momentum=0.85,
            weight_decay=5e-5,
            label_smoothing=0.2,
            # +0.2 to +0.4 points over flip alone in each of 10 paired CIFAR-10 runs
            # (benchmarks/results/ablation-epochs11-*.md, ablation-budget600-*.md), for 3x the inference work.
            tta="flip_translate",
            augmentation=Augmentation(flip=True, translation=2 / 32),
            # At 30 minutes the twice-as-wide net (13 epochs) beats the default one (37
            # epochs) by a point, 88.99% to 87.94% (ablation-budget1800-2026-12-02-0532.md);
            # shorter budgets have not been measured wide, so they keep the default.
            budget_widths=((1800, (64, 192, 192)),),
        ),
        Preset(
            name="small_cnn",
            title="Small CNN (from scratch)",
            description="A fast BatchNorm CNN for small images; trains from scratch in minutes on a CPU.",
            kind="scratch",
            image_size=32,
            batch_size=128,
            learning_rate=0.05,
            epochs=20,
            optimizer="sgd",
            label_smoothing=0.1,
            augmentation=Augmentation(flip=True, translation=0.1),
        ),
        Preset(
            name="tutorial_cnn",
            title="Tutorial CNN (for comparison)",
            description="The three-conv CNN of the TensorFlow tutorial, trained the usual way (Adam, batch 32).",
            kind="scratch",
            image_size=32,
            batch_size=32,
            learning_rate=1e-3,
            epochs=10,
            optimizer="adam",
            augmentation=Augmentation(flip=False),
        ),
        Preset(
            name="efficientnet_lite0",
            title="EfficientNet-Lite0 (transfer, ImageNet, ships with the app)",
            description="An ImageNet EfficientNet-Lite0 that ships with the app (no download) under a "
                        "new classifier head: the choice for photos.",
            kind="transfer",
            image_size=224,
            batch_size=64,
            learning_rate=1e-3,
            epochs=30,
            optimizer="adam",
            augmentation=Augmentation(flip=True, rotation=0.05, zoom=0.1),
            backbone="EfficientNetLite0",
            label_smoothing=0.1,
            head_units=512,
            keep_last_epoch=True,
        ),
        Preset(
            name="mobilenet_v2",
            title="MobileNetV2 (transfer, ImageNet)",
            description="A frozen ImageNet MobileNetV2 with a new classifier head; good for photos.",
            kind="transfer",
            image_size=160,
            batch_size=32,
            learning_rate=1e-3,
            epochs=10,
            optimizer="adam",
            augmentation=Augmentation(flip=True, rotation=0.05, zoom=0.1),
            backbone="MobileNetV2",
        ),
        Preset(
            name="efficientnet_b0",
            title="EfficientNetB0 (transfer, ImageNet)",
            description="A frozen ImageNet EfficientNetB0 with a new classifier head; more accurate, slower.",
            kind="transfer",
            image_size=224,
            batch_size=32,
            learning_rate=1e-3,
            epochs=10,
            optimizer="adam",
            augmentation=Augmentation(flip=True, rotation=0.05, zoom=0.1),
            backbone="EfficientNetB0",
        ),
    ]
}
DEFAULT_PRESET = "fast_cnn"


def for_time_budget(preset: Preset, time_budget: float | None) -> Preset:
    """The preset with the widths its ``budget_widths`` give ``time_budget`` (seconds).

    Args:
        preset: The preset.
        time_budget: Seconds for the job, or None.

    Returns:
        The preset, with other ``widths`` when the budget asks for them.
    """
    chosen = preset.widths
    for seconds, widths in preset.budget_widths:
        if time_budget and time_budget >= seconds:
            chosen = tuple(widths)
    return replace(preset, widths=chosen) if chosen != preset.widths else preset


def get_preset(name: str | Preset) -> Preset:
    """The preset called ``name``; a :class:`Preset` itself is returned as it is (benchmarks).

    Args:
        name: A key of :data:`PRESETS`, or a :class:`Preset`.

    Returns:
        The preset.

    Raises:
        ImgclsError: There is no preset of that name.
    """
    if isinstance(name, Preset):
        return name
    try:
        return PRESETS[name]
    except KeyError:
        raise ImgclsError(
            f"Unknown preset {name!r}. Choose one of: {', '.join(PRESETS)}."
        ) from None


HEAD_LAYERS = ("head_dropout", "head_hidden", "head_hidden_dropout", "logits", "probabilities")


def _head(keras, features, num_classes, dropout=0.0, hidden=0):
    if dropout:
        features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    if hidden:
        features = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(features)
        features = keras.layers.Dropout(0.3, name="head_hidden_dropout")(features)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.layers.Softmax(name="probabilities")(logits)


def _conv_bn(keras, x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def build_small_cnn(num_classes: int, image_size: int, widths: Sequence[int] = (24, 48, 96, 192),
                    residual_stage: int = 2) -> Any:
    """Conv-BN-ReLU stages of doubling width, each halving the resolution.

    About 28 MFLOP per 32x32 image: small enough for several CIFAR-10 epochs in five
    minutes on two cores, and BatchNorm lets it take the large learning rates that make
    few epochs count. The stem stays narrow because on a CPU the full-resolution layers
    cost memory bandwidth far beyond their FLOPs.

    Args:
        num_classes: Outputs of the head.
        image_size: Height and width of the input.
        widths: Filters of the stem, then of each stage.
        residual_stage: The stage that gets a second, residual conv block.

    Returns:
        The Keras model.
    """
    keras = keras_module()
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = _conv_bn(keras, x, widths[0], "stem")
    for stage, filters in enumerate(widths[1:], start=1):
        x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
        x = _conv_bn(keras, x, filters, f"stage{stage}")
        if stage == residual_stage:
            shortcut = x
            x = _conv_bn(keras, x, filters, f"stage{stage}b")
            x = keras.layers.Add(name=f"stage{stage}_add")([x, shortcut])
    x = keras.layers.GlobalMaxPooling2D(name="pool_global")(x)
    return keras.Model(inputs, _head(keras, x, num_classes), name="small_cnn")


def build_fast_cnn(num_classes: int, image_size: int, widths: Sequence[int] = (32, 96, 96),
                   activation: str = "gelu") -> Any:
    """airbench's network (Jordan 2024) at a CPU's width.

    A frozen 2x2 whitening convolution (set from the training data by
    :func:`init_whitening`), then three groups of conv-pool-BN-act-conv-BN-act, a global
    max pool and a linear layer on features scaled by 1/9, as in airbench. BatchNorm has no
    scale (airbench freezes it at 1) and fast statistics (momentum 0.6 in PyTorch's
    convention); convolutions start as identities on their first channels ("dirac"), which
    lets the first epochs learn instead of untangle random filters.

    Args:
        num_classes: Outputs of the head.
        image_size: Height and width of the input.
        widths: Filters of each of the three groups.
        activation: A Keras activation name.

    Returns:
        The Keras model.
    """
    keras = keras_module()
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Conv2D(2 * 12, 2, padding="valid", trainable=False, name="whiten")(inputs)
    x = keras.layers.Activation(activation, name="whiten_act")(x)
    for group, filters in enumerate(widths, start=1):
        for half in ("a", "b"):
            name = f"group{group}{half}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
            if half == "a":
                x = keras.layers.MaxPooling2D(2, name=f"group{group}_pool")(x)
            x = keras.layers.BatchNormalization(momentum=0.4, epsilon=1e-5, scale=False,
                                                name=f"{name}_bn")(x)
            x = keras.layers.Activation(activation, name=f"{name}_act")(x)
    x = keras.layers.GlobalMaxPooling2D(name="pool_global")(x)
    x = keras.layers.Rescaling(1.0 / 9.0, name="head_scale")(x)
    logits = keras.layers.Dense(num_classes, use_bias=False, name="logits")(x)
    outputs = keras.layers.Softmax(name="probabilities")(logits)
    model = keras.Model(inputs, outputs, name="fast_cnn")
    _dirac_init(model)
    return model


def _dirac_init(model):
    import numpy as np  # not at import: the window reads PRESETS before numpy is needed

    for layer in model.layers:
        if type(layer).__name__ == "Conv2D" and layer.name.endswith("_conv"):
            kernel = np.array(layer.kernel.numpy())
            kh, kw, cin, cout = kernel.shape
            n = min(cin, cout)
            kernel[:, :, :, :n] = 0.0
            kernel[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
            layer.kernel.assign(kernel)


def init_whitening(model: Any, images: Any, eps: float = 5e-4, max_images: int = 5000) -> bool:
    """Set a model's ``whiten`` layer from the training images' 2x2 patch statistics.

    The filters are the eigenvectors of the patch covariance (of pixels scaled to 0-1 and
    centred on the dataset's channel means), divided by the square roots of their
    eigenvalues, and their negatives, as airbench does; the centring is folded into the
    bias so the model keeps taking raw 0-255 pixels. Does nothing for models without one.

    Args:
        model: A Keras model.
        images: Training images, raw pixels ``(n, h, w, 3)`` (an array or an on-disk set).
        eps: Added to the eigenvalues before the square root.
        max_images: The statistics are taken on the first this many images.

    Returns:
        True when the model has a ``whiten`` layer (now set), else False.
    """
    try:
        layer = model.get_layer("whiten")
    except ValueError:
        return False
    import numpy as np

    x = np.asarray(images[:max_images], dtype=np.float32) / 255.0
    mean = x.mean(axis=(0, 1, 2))
    kh, kw = layer.kernel.shape[:2]
    centred = x - mean
    patches = np.stack([centred[:, i:i + x.shape[1] - kh + 1, j:j + x.shape[2] - kw + 1, :]
                        for i in range(kh) for j in range(kw)], axis=3)
    flat = patches.reshape(-1, kh * kw * 3).astype(np.float64)  # (i, j, channel) order
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    filters = eigenvectors / np.sqrt(eigenvalues + eps)  # columns are filters
    filters = np.concatenate([filters, -filters], axis=1)
    kernel = filters.reshape(kh, kw, 3, -1).astype(np.float32) / 255.0
    bias = -(np.tile(mean, kh * kw) @ filters).astype(np.float32)
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)
    return True


def build_tutorial_cnn(num_classes: int, image_size: int) -> Any:
    """The TensorFlow tutorial's CNN (Conv32-Pool-Conv64-Pool-Conv64-Dense64).

    Args:
        num_classes: Outputs of the head.
        image_size: Height and width of the input.

    Returns:
        The Keras model.
    """
    keras = keras_module()
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(64, activation="relu", name="dense")(x)
    return keras.Model(inputs, _head(keras, x, num_classes), name="tutorial_cnn")


# Per backbone: how raw 0-255 pixels become what its ImageNet weights expect.
_BACKBONE_SCALING = {
    "MobileNetV2": (1.0 / 127.5, -1.0),
    "EfficientNetB0": None,  # EfficientNet rescales and normalises inside its own graph
    "EfficientNetLite0": None,  # so does our Lite0 (core.efficientnet_lite)
}


def build_transfer(num_classes: int, image_size: int, backbone_name: str,
                   weights: str | os.PathLike | None = "imagenet", head_units: int = 0) -> Any:
    """A frozen ``keras.applications`` backbone under a new softmax head.

    Args:
        num_classes: Outputs of the head.
        image_size: Height and width of the input.
        backbone_name: A ``keras.applications`` class name, or ``"EfficientNetLite0"``.
        weights: "imagenet" (downloaded and cached by Keras the standard way), a path to a
            local weights file, or None for random initialisation (tests only).
        head_units: Units of a hidden Dense layer in the head (0: none).

    Returns:
        The Keras model.

    Raises:
        WeightsUnavailableError: The weights cannot be downloaded or loaded.
    """
    keras = keras_module()
    constructor: Callable[..., Any]
    if backbone_name == "EfficientNetLite0":
        from .efficientnet_lite import efficientnet_lite0 as constructor
    else:
        constructor = getattr(keras.applications, backbone_name)
    inputs = keras.Input((image_size, image_size, 3), name="image")
    scaling = _BACKBONE_SCALING[backbone_name]
    x = inputs
    if scaling is not None:
        x = keras.layers.Rescaling(scaling[0], offset=scaling[1], name="scale")(x)
    try:
        if backbone_name == "EfficientNetLite0":
            backbone = constructor(image_size, weights=weights)
        else:
            backbone = constructor(
                include_top=False,
                weights=weights,
                input_shape=(image_size, image_size, 3),
                pooling="avg",
            )
    except WeightsUnavailableError:
        raise
    except (OSError, ValueError, ConnectionError) as exc:
        if weights == "imagenet":
            raise WeightsUnavailableError(
                f"Could not download the ImageNet weights for {backbone_name} ({exc}). "
                "Connect to the internet once (Keras caches them in ~/.keras/models), "
                "pass --weights PATH to a local weights file, or use a from-scratch preset."
            ) from exc
        raise WeightsUnavailableError(
            f"Could not load backbone weights from {weights} for {backbone_name}: {exc}. "
            f"Expected a Keras weights file for {backbone_name} without its top layers "
            "(for example '..._no_top.h5' or a '.weights.h5' file)."
        ) from exc
    except Exception as exc:  # urllib raises URLError/HTTPError wrapped as generic Exception
        if weights == "imagenet" and "URL fetch failure" in str(exc):
            raise WeightsUnavailableError(
                f"Could not download the ImageNet weights for {backbone_name}: {exc}. "
                "Pass --weights PATH to a local weights file, or use a from-scratch preset."
            ) from exc
        raise
    backbone.trainable = False
    # training=False keeps the frozen BatchNorm layers in inference mode during fit.
    x = backbone(x, training=False)
    outputs = _head(keras, x, num_classes, dropout=0.2, hidden=head_units)
    return keras.Model(inputs, outputs, name=f"{backbone_name.lower()}_transfer")


def build_model(preset: str | Preset, num_classes: int, image_size: int | None = None,
                weights: str | os.PathLike | None = "imagenet") -> Any:
    """Build the model of a preset (a name or a :class:`Preset`).

    Args:
        preset: A preset name or a :class:`Preset`.
        num_classes: Outputs of the head.
        image_size: Height and width of the input (default: the preset's).
        weights: A transfer preset's backbone weights (see :func:`build_transfer`).

    Returns:
        The Keras model.

    Raises:
        ImgclsError: An unknown preset.
        WeightsUnavailableError: A transfer preset's weights cannot be had.
    """
    preset = get_preset(preset)
    image_size = image_size or preset.image_size
    architecture = preset.architecture or preset.name
    if architecture == "fast_cnn":
        return build_fast_cnn(num_classes, image_size, activation=preset.activation,
                              **({"widths": preset.widths} if preset.widths else {}))
    if architecture == "small_cnn":
        return build_small_cnn(num_classes, image_size)
    if architecture == "tutorial_cnn":
        return build_tutorial_cnn(num_classes, image_size)
    return build_transfer(num_classes, image_size, cast(str, preset.backbone),  # transfer presets name one
                          weights=weights, head_units=preset.head_units)


def forward_flops(model: Any) -> int:
    """Multiply-adds x 2 of the Conv2D and Dense layers for one image (the benchmark's unit).

    Args:
        model: A Keras model (nested models included).

    Returns:
        FLOPs for one image.
    """
    flops = 0
    for layer in _all_layers(model):
        kind = type(layer).__name__
        if kind in ("Conv2D", "DepthwiseConv2D"):
            out_shape = layer.output.shape
            kernel = layer.kernel.shape
            k = kernel[0] * kernel[1] * kernel[2] * (kernel[3] if kind == "Conv2D" else 1)
            flops += 2 * out_shape[1] * out_shape[2] * k
        elif kind == "Dense":
            flops += 2 * layer.kernel.shape[0] * layer.kernel.shape[1]
    return int(flops)


def _all_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        else:
            yield layer
