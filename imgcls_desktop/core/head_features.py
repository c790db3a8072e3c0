"""Transfer presets train their head on features computed once, not on images every epoch.

The frozen backbone gives the same features for an image every epoch, so computing them
once turns every epoch after the first into a few matrix products.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import keras_module, tensorflow_module
from .models import HEAD_LAYERS
from .pipeline import Cancelled

if TYPE_CHECKING:
    from .training import TrainingProgress


@dataclass
class HeadFeatures:
    """The head of a frozen-backbone model as its own model, and what it trains on.

    Attributes:
        head: A model from the backbone's features to the probabilities; it shares its
            layers with the full model, so training it trains the full model's head.
        train_x: Features of the training images (and of their mirror images).
        train_y: Their labels.
        val_x: Features of the validation images.
        images_per_second: How fast the backbone ran here, for planning later passes.
    """

    head: object
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    images_per_second: float


def head_features(model: Any, x_train: Any, y_train: np.ndarray, x_val: Any, flip: bool,
                  on_progress: Callable[[TrainingProgress], None] | None = None,
                  stop_event: threading.Event | None = None, batch_size: int = 64) -> HeadFeatures:
    """Run ``model``'s backbone once over every image (twice with ``flip``).

    Args:
        model: A frozen-backbone Keras model (a transfer preset's, with ``head_dropout``).
        x_train: Training images, raw pixels (an array or an on-disk image set).
        y_train: Their labels.
        x_val: Validation images, raw pixels.
        flip: Also compute the features of the mirrored training images.
        on_progress: Called with a ``TrainingProgress`` of kind ``"decode"`` per batch.
        stop_event: Set to cancel.
        batch_size: Images per backbone call.

    Returns:
        The head model and its training and validation features.

    Raises:
        Cancelled: ``stop_event`` was set.
    """
    from .training import TrainingProgress

    keras, tf = keras_module(), tensorflow_module()
    head_input_tensor = model.get_layer("head_dropout").input
    backbone = keras.Model(model.inputs[0], head_input_tensor)
    extract = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    jobs = [(x_train, False)] + ([(x_train, True)] if flip else []) + [(x_val, False)]
    total = sum(len(images) for images, _flipped in jobs)
    done = 0
    outputs = []
    started = time.monotonic()
    for images, flipped in jobs:
        parts = []
        for start in range(0, len(images), batch_size):
            if stop_event is not None and stop_event.is_set():
                raise Cancelled()
            batch = np.asarray(images[start:start + batch_size], dtype=np.float32)
            if flipped:
                batch = batch[:, :, ::-1]
            parts.append(np.asarray(extract(batch)))
            done += len(batch)
            if on_progress is not None:
                on_progress(TrainingProgress(kind="decode", step=done, steps=total, fraction_done=done / total,
                                             message=f"Computing features {done}/{total}"))
        width = head_input_tensor.shape[-1]
        outputs.append(np.concatenate(parts) if parts else np.zeros((0, width), np.float32))
    rate = done / max(1e-6, time.monotonic() - started)
    head_input = keras.Input(head_input_tensor.shape[1:], name="features")
    x = head_input
    present = {layer.name for layer in model.layers}
    for name in HEAD_LAYERS:
        if name in present:
            x = model.get_layer(name)(x)
    return HeadFeatures(head=keras.Model(head_input, x, name="head"), train_x=np.concatenate(outputs[:-1]),
                        train_y=np.concatenate([y_train] * (len(outputs) - 1)), val_x=outputs[-1],
                        images_per_second=rate)
