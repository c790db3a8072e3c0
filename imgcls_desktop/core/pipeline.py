"""Decoded-image arrays and the tf.data input pipeline built on them.

Each file is decoded and resized once, by the same function prediction uses
(:func:`images.load_image`), into one uint8 array. Epochs then read from memory and
augment whole batches, so the CPU spends its time on the model, not on JPEG decoding.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .backend import keras_module, tensorflow_module
from .errors import Cancelled, ImageError, TrainingError  # Cancelled: training.py imports it from here
from .images import load_image
from .parallel import map_in_order, worker_count

if TYPE_CHECKING:
    from .dataset import ImageItem
    from .image_cache import DiskImages, StreamedImages
    from .models import Augmentation

# Decoded arrays kept between runs (the GUI retrains on the same folder often).
_CACHE_LIMIT_BYTES = 2 * 1024**3
# Above this many decoded bytes a set goes to the disk cache instead of memory (CIFAR-10
# at 32x32 is 150 MB and stays in memory; 3,500 photos at 224x224 do not).
_MEMORY_LIMIT_BYTES = int(float(os.environ.get("IMGCLS_MEMORY_LIMIT_MB", "512")) * 1024**2)
_cache: OrderedDict[tuple, tuple] = OrderedDict()
_cache_lock = threading.Lock()


def decode_items(items: Sequence[ImageItem], image_size: int, *,
                 on_progress: Callable[[int, int], None] | None = None,
                 stop_event: threading.Event | None = None,
                 ) -> tuple[np.ndarray | DiskImages | StreamedImages, np.ndarray, list[tuple]]:
    """Decode image items into ``(images uint8 [n, h, w, 3], labels int32 [n], problems)``.

    A file that fails now (deleted or changed since the scan) is left out and reported in
    ``problems`` as ``(path, reason)``; the rest are used.

    Args:
        items: The images to decode.
        image_size: The side they are resized to.
        on_progress: Optional ``callable(done, total)`` while decoding.
        stop_event: Optional ``threading.Event``; set, decoding stops.

    Returns:
        ``(images, labels, problems)``: ``images`` is an array in memory, or, for sets too
        large for it, a :class:`image_cache.DiskImages` (decoded once to disk) or a
        :class:`image_cache.StreamedImages` (decoded per batch).

    Raises:
        Cancelled: ``stop_event`` was set.
    """
    # Size and mtime are in the key: a file changed or deleted since the last run must be
    # decoded (or reported) again, never served stale from the cache.
    key = (image_size, tuple((str(item.path), item.label, _stat_key(item.path)) for item in items))
    if stop_event is not None and stop_event.is_set():
        raise Cancelled()  # the same answer whether or not the pixels were cached
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
    if cached is not None:
        if on_progress is not None:  # one event all the same: "Reading images n/n"
            on_progress(len(items), len(items))
        return cached
    if len(items) * image_size * image_size * 3 > _MEMORY_LIMIT_BYTES:
        from .image_cache import StreamedImages, decode_to_disk, disk_budget_bytes

        if len(items) * image_size * image_size * 3 > disk_budget_bytes():  # issue 14: stream
            if on_progress is not None:
                on_progress(len(items), len(items))
            return (StreamedImages([item.path for item in items], image_size),
                    np.asarray([item.label for item in items], dtype=np.int32), [])

        return decode_to_disk(items, image_size, [entry[2] for entry in key[1]],
                              on_progress=on_progress, stop_event=stop_event, cancelled=Cancelled)
    images = np.empty((len(items), image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty((len(items),), dtype=np.int32)
    problems = []
    kept = 0
    for index, (item, pixels) in enumerate(zip(items, decoded_in_parallel(
            [item.path for item in items], image_size, stop_event))):
        if isinstance(pixels, ImageError):
            problems.append((pixels.path, pixels.reason))
            continue
        images[kept] = cast(np.ndarray, pixels)  # None only after a stop, which ends the generator first
        labels[kept] = item.label
        kept += 1
        if on_progress is not None and (index % 64 == 0 or index == len(items) - 1):
            on_progress(index + 1, len(items))
    result = (images[:kept], labels[:kept], problems)
    _remember(key, result)
    return result


def decode_workers() -> int:
    """Threads that decode images: one per core (Pillow lets go of the GIL while decoding).

    Returns:
        The number of threads.
    """
    return worker_count()


def decoded_in_parallel(paths: Iterable[str | os.PathLike], image_size: int | Sequence[int],
                        stop_event: threading.Event | None = None,
                        workers: int | None = None) -> Iterator[np.ndarray | ImageError | None]:
    """``load_image`` of each path at ``image_size`` (a side, or ``(height, width)``), in order, on every core.

    Args:
        paths: The image files.
        image_size: A side, or ``(height, width)``.
        stop_event: Optional ``threading.Event``; set, the work still queued is dropped.
        workers: Threads (default :func:`decode_workers`).

    Yields:
        The uint8 array, or the :class:`ImageError` of a file that cannot be read (None
        for a file skipped because ``stop_event`` was set).

    Raises:
        Cancelled: ``stop_event`` was set.
    """
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)

    def load(path):
        if stop_event is not None and stop_event.is_set():
            return None  # the consumer raises Cancelled before it sees this
        try:
            return load_image(path, size)
        except ImageError as exc:
            return exc

    def stopped():
        return stop_event is not None and stop_event.is_set()

    yield from map_in_order(load, paths, workers or decode_workers(), should_stop=stopped)
    if stopped():
        raise Cancelled()


def _stat_key(path):
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _remember(key, result):
    size = result[0].nbytes
    if size > _CACHE_LIMIT_BYTES:
        return
    with _cache_lock:
        _cache[key] = result
        while sum(value[0].nbytes for value in _cache.values()) > _CACHE_LIMIT_BYTES:
            _cache.popitem(last=False)


def clear_cache() -> None:
    """Forget the decoded sets kept in memory (tests; the disk cache is kept)."""
    with _cache_lock:
        _cache.clear()


def build_augmenter(augmentation: Augmentation, seed: int) -> Augmenter | None:
    """An :class:`Augmenter` for ``augmentation``, or None if it would do nothing.

    Args:
        augmentation: What to change.
        seed: Seeds the random changes.

    Returns:
        The augmenter, or None for an identity augmentation.
    """
    if augmentation.is_identity:
        return None
    return Augmenter(augmentation, seed)


class Augmenter:
    """Random changes to float pixel batches, in TensorFlow ops that run inside tf.data.

    Flips and translations are exact pixel moves: translation shifts each image by a
    whole number of pixels (up to ``translation`` x its size) with reflected borders, as
    the CIFAR-10 speed-run recipes do; a bilinear sub-pixel shift would also blur every
    image it moves and costs more. Rotation, zoom and contrast use the Keras layers.
    Randomness is stateless, drawn from ``seed`` and a per-batch ``salt``, so a seeded run
    sees the same augmented batches.
    """

    def __init__(self, augmentation, seed):
        keras = keras_module()
        # Resolved here, not in __call__: tf.data traces __call__ with AutoGraph, which
        # would convert our lazy-import helper too (re-reading its source from disk).
        self.tf = tensorflow_module()
        self.flip = augmentation.flip
        self.translation = augmentation.translation
        self.seed = int(seed)
        layers = []
        if augmentation.rotation:
            layers.append(keras.layers.RandomRotation(augmentation.rotation, fill_mode="reflect", seed=seed))
        if augmentation.zoom:
            layers.append(keras.layers.RandomZoom(augmentation.zoom, fill_mode="reflect", seed=seed))
        if augmentation.contrast:
            layers.append(keras.layers.RandomContrast(augmentation.contrast, seed=seed))
        self.layers = keras.Sequential(layers, name="augmentation") if layers else None

    def __call__(self, x, salt=0, flip_mask=None):
        """Augment a float32 batch ``(b, h, w, 3)``.

        Args:
            salt: an int64 scalar that differs between batches (the pipeline passes the
                epoch and the batch's first image index).
            flip_mask: bool ``(b,)``: which images to mirror, decided by the caller
                (alternating flip); None tosses a coin per image when flips are on.
        """
        tf = self.tf
        salt = tf.cast(salt, tf.int64)
        if flip_mask is None and self.flip:
            flip_mask = tf.random.stateless_uniform(tf.shape(x)[:1], [self.seed, salt]) < 0.5
        if flip_mask is not None:
            x = tf.where(flip_mask[:, None, None, None], tf.reverse(x, axis=[2]), x)
        if self.translation:
            x = random_shift(x, self.translation, [self.seed + 1, salt], tf=tf)
        if self.layers is not None:
            x = tf.clip_by_value(self.layers(x, training=True), 0.0, 255.0)
        return x


def random_shift(x: Any, translation: float, seed: Any, tf: Any = None) -> Any:
    """Move each image of a batch by whole pixels, at most ``translation`` x its size.

    The batch is padded by reflection once, then every image is cut out at its own
    offset with two gathers (rows, then columns): no interpolation, so no blur.

    Args:
        x: A float tensor ``(b, h, w, 3)``.
        translation: The largest shift, as a fraction of the image size (at least 1 pixel).
        seed: A stateless random seed, shape ``(2,)``.
        tf: The ``tensorflow`` module (default: imported here; pass it inside tf.data).

    Returns:
        The shifted batch, same shape.
    """
    tf = tf or tensorflow_module()
    height, width = x.shape[1], x.shape[2]
    pad = max(1, min(int(round(translation * max(height, width))), min(height, width) - 1))
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    offsets = tf.random.stateless_uniform(tf.concat([tf.shape(x)[:1], [2]], 0), seed,
                                          minval=0, maxval=2 * pad + 1, dtype=tf.int32)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    x = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(x, cols, axis=2, batch_dims=1)


def make_dataset(images: np.ndarray | DiskImages | StreamedImages, labels: np.ndarray | Sequence[int],
                 num_classes: int, batch_size: int, *, shuffle: bool, augmenter: Augmenter | None = None,
                 seed: int = 0, alternating_flip: bool = False, epochs: int = 100_000,
                 shard: tuple[int, int] | None = None) -> Any:
    """A tf.data pipeline of ``(float32 pixels 0-255, one-hot labels)`` batches.

    Without ``shuffle``: the images in order, once (validation, evaluation). With it: an
    epoch after epoch stream (``epochs`` of them; pass ``steps_per_epoch`` to ``fit``)
    of batches drawn by a fresh seeded permutation each epoch, gathered by index so the
    pixels are never copied into a shuffle buffer. With ``alternating_flip`` a fixed random
    half of the images is mirrored on even epochs and the other half on odd ones, so every
    image is seen both ways every two epochs. ``shard=(index, count)`` keeps every
    ``count``-th image of each epoch's order from ``index`` on: one worker's part (issue 14).

    Args:
        images: Raw pixels ``(n, h, w, 3)``: an array, or an on-disk or streamed set
            (gathered by index through ``tf.numpy_function``).
        labels: ``(n,)`` class indices.
        num_classes: Width of the one-hot labels.
        batch_size: Images per batch.
        shuffle: Training order (see above) or the images in order once.
        augmenter: Applied to each training batch, or None.
        seed: Seeds the order (and the alternating flip's halves).
        alternating_flip: See above.
        epochs: Epochs in the stream.
        shard: ``(index, count)`` of this worker, or None.

    Returns:
        A ``tf.data.Dataset``.

    Raises:
        TrainingError: There are no images.
    """
    tf = tensorflow_module()
    if len(images) == 0:
        raise TrainingError("No images left to train on after decoding.")
    labels = np.asarray(labels, dtype=np.int32)
    count = len(images)

    def to_float(x, y):
        return tf.cast(x, tf.float32), tf.one_hot(y, num_classes)

    if not shuffle:
        if isinstance(images, np.ndarray):
            dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)
        else:
            dataset = _disk_batches(tf, images, labels, tf.data.Dataset.range(count).batch(batch_size))
        return dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(count, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
        if shard is not None:  # every worker draws the same order and keeps its part
            order = order[shard[0]::shard[1]]
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size).map(lambda index: (index, epoch))

    indexed = tf.data.Dataset.range(epochs).flat_map(epoch_batches)
    if isinstance(images, np.ndarray):
        pixels, label_tensor = tf.constant(images), tf.constant(labels)
        dataset = indexed.map(lambda index, epoch: (tf.gather(pixels, index), tf.gather(label_tensor, index),
                                                     index, epoch))
    else:
        dataset = _disk_batches(tf, images, labels, indexed, keep_index=True)
    base_flip = None
    if alternating_flip and augmenter is not None and augmenter.flip:
        base_flip = tf.constant(np.random.default_rng(seed).random(count) < 0.5)

    def finish(x, y, index, epoch):
        x, y = to_float(x, y)
        if augmenter is None:
            return x, y
        flip_mask = None
        if base_flip is not None:
            flip_mask = tf.not_equal(tf.gather(base_flip, index), tf.equal(epoch % 2, 1))
        return augmenter(x, salt=epoch * (count + 1) + index[0], flip_mask=flip_mask), y

    return dataset.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _disk_batches(tf, images, labels, index_batches, keep_index=False):
    """Batches gathered from a :class:`image_cache.DiskImages` by index.

    ``index_batches`` yields int64 index vectors, or ``(indices, epoch)`` pairs when
    ``keep_index``, in which case the indices and the epoch travel on with the pixels.
    """
    shape = images.shape[1:]

    def gather(indices):
        order = np.argsort(indices, kind="stable")  # sequential reads where the shuffle allows
        return images.take(indices[order]), labels[indices[order]], indices[order]

    def load(indices, *epoch):
        x, y, index = tf.numpy_function(gather, [indices], (tf.uint8, tf.int32, tf.int64), stateful=False)
        x.set_shape((None, *shape))
        y.set_shape((None,))
        index.set_shape((None,))
        return (x, y, index, *epoch) if keep_index else (x, y)

    return index_batches.map(load, num_parallel_calls=2)


def augmentation_preview(images: np.ndarray | Sequence[np.ndarray], augmentation: Augmentation, count: int = 8,
                         seed: int = 0) -> np.ndarray:
    """Augmented copies of a few images (uint8), for the GUI's preview.

    Args:
        images: Raw pixels ``(n, h, w, 3)``.
        augmentation: What to change.
        count: How many of the first images to augment.
        seed: Seeds the random changes.

    Returns:
        ``(min(n, count), h, w, 3)`` uint8.
    """
    augmenter = build_augmenter(augmentation, seed)
    batch = np.asarray(images[:count], dtype=np.float32)
    if augmenter is None or len(batch) == 0:
        return batch.astype(np.uint8)
    out = np.asarray(augmenter(batch))
    return np.clip(out, 0, 255).astype(np.uint8)
