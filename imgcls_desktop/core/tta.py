"""Test-time augmentation: answer with the weighted mean of the logits of a few views.

One definition serves the app's Predictor, calibration and export, so all three give the
same numbers. Views are built with ``keras.ops`` and are differentiable plain ops: they
work on eager tensors, inside ``tf.function`` and on the symbolic tensors of an export graph.

Modes (stored in a model's metadata as ``test_time_augmentation``):

- ``"flip"``: the image and its mirror, half each.
- ``"flip_translate"``: airbench's level 2: half the flip answer, and half the flip answers
  of the image moved one pixel up-left and one pixel down-right (borders reflected).
"""

from collections.abc import Callable
from typing import Any

from .backend import keras_module

MODES = ("flip", "flip_translate")
# (weight, shift) per view before mirroring; each view is also taken mirrored at half weight.
_VIEWS = {
    "flip": [(1.0, 0)],
    "flip_translate": [(0.5, 0), (0.25, -1), (0.25, 1)],
}


def mode_of(metadata: dict[str, Any] | None) -> str | None:
    """The test-time augmentation a model's metadata asks for, or None.

    Args:
        metadata: A model's metadata (may be None).

    Returns:
        One of :data:`MODES`, or None.
    """
    mode = (metadata or {}).get("test_time_augmentation")
    return mode if mode in MODES else None


def views_per_image(mode: str | None) -> int:
    """How many views test-time augmentation ``mode`` predicts per image (1 without it).

    Args:
        mode: One of :data:`MODES`, or None.

    Returns:
        The number of views.
    """
    return 2 * len(_VIEWS[mode]) if mode else 1


def view_transforms(mode: str | None) -> list[tuple[float, int, bool]]:
    """The views of ``mode``, in the order :func:`tta_logits` batches them.

    A view is the image moved by ``shift`` pixels, then mirrored if asked.

    Args:
        mode: One of :data:`MODES`, or None.

    Returns:
        ``[(weight, shift, mirrored), ...]``, one per view.
    """
    if not mode:
        return [(1.0, 0, False)]
    return [(weight / 2, shift, mirrored) for weight, shift in _VIEWS[mode] for mirrored in (False, True)]


def describe(mode: str | None) -> str | None:
    """The views of ``mode`` in words, for people (the model summary), or None.

    Args:
        mode: One of :data:`MODES`, or None.

    Returns:
        A phrase such as ``"the image and its mirror (2 views)"``, or None.
    """
    words = {"flip": "the image and its mirror",
             "flip_translate": "the image, its mirror and 1-pixel shifts of both"}.get(mode or "")
    return f"{words} ({views_per_image(mode)} views)" if words else None


def _shifted(ops, x, shift):
    if shift == 0:
        return x
    height, width = x.shape[1], x.shape[2]
    padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    start = 1 + shift
    return padded[:, start:start + height, start:start + width, :]


def tta_logits(logits_fn: Callable[[Any], Any], x: Any, mode: str | None, ops: Any = None) -> Any:
    """The logits ``logits_fn`` gives ``x``, averaged over the views of ``mode``.

    All views go through ``logits_fn`` as one batch (one call instead of six), then are
    weighted and summed back per image. ``mode=None`` is a plain call. Inside a
    ``tf.function`` pass ``ops`` (``keras.ops``), resolved outside it, so AutoGraph does
    not convert :func:`backend.keras_module` on every trace.

    Args:
        logits_fn: Maps a batch of images (a tensor) to logits.
        x: A batch of images, ``(batch, height, width, channels)``: an eager, traced or
            symbolic tensor.
        mode: One of :data:`MODES`, or None.
        ops: ``keras.ops``, resolved by the caller (default: looked up here).

    Returns:
        The weighted logits, ``(batch, classes)``.
    """
    if not mode:
        return logits_fn(x)
    ops = ops or keras_module().ops
    views, weights = [], []
    for weight, shift in _VIEWS[mode]:
        view = _shifted(ops, x, shift)
        views += [view, ops.flip(view, axis=2)]
        weights += [weight / 2, weight / 2]
    logits = logits_fn(ops.concatenate(views, axis=0))
    count = len(views)
    # (views * batch, classes) -> (views, batch, classes), summed with the weights. Python
    # floats, not a weights tensor: a captured tensor would become an extra input of the
    # exported ONNX graph.
    logits = ops.reshape(logits, (count, -1, logits.shape[-1]))
    total = logits[0] * weights[0]
    for index in range(1, count):
        total = total + logits[index] * weights[index]
    return total
