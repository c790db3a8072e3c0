"""Decoded-image arrays and the tf.data input pipeline built on them.

Each file is decoded and resized once, by the same function prediction uses
(:func:`images.load_image`), into one uint8 array. Epochs then read from memory and
augment whole batches, so the CPU spends its time on the model, not on JPEG decoding.
"""

import os
import threading
from collections import OrderedDict

import numpy as np

from .backend import keras_module, tensorflow_module
from .errors import ImageError, TrainingError
from .images import load_image

# Decoded arrays kept between runs (the GUI retrains on the same folder often).
_CACHE_LIMIT_BYTES = 2 * 1024**3
# Above this many decoded bytes a set goes to the disk cache instead of memory (CIFAR-10
# at 32x32 is 150 MB and stays in memory; 3,500 photos at 224x224 do not).
_MEMORY_LIMIT_BYTES = int(float(os.environ.get("IMGCLS_MEMORY_LIMIT_MB", "512")) * 1024**2)
_cache = OrderedDict()
_cache_lock = threading.Lock()


class Cancelled(Exception):
    """Raised inside core when the caller's stop event is set during a long step."""


def decode_items(items, image_size, *, on_progress=None, stop_event=None):
    """Decode image items into ``(images uint8 [n, h, w, 3], labels int32 [n], problems)``.

    A file that fails now (deleted or changed since the scan) is left out and reported in
    ``problems`` as ``(path, reason)``; the rest are used.
    """
    # Size and mtime are in the key: a file changed or deleted since the last run must be
    # decoded (or reported) again, never served stale from the cache.
    key = (image_size, tuple((str(item.path), item.label, _stat_key(item.path)) for item in items))
    if stop_event is not None and stop_event.is_set():
        raise Cancelled()  # the same answer whether or not the pixels were cached
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    if len(items) * image_size * image_size * 3 > _MEMORY_LIMIT_BYTES:
        from .image_cache import decode_to_disk

        return decode_to_disk(items, image_size, [entry[2] for entry in key[1]],
                              on_progress=on_progress, stop_event=stop_event, cancelled=Cancelled)
    images = np.empty((len(items), image_size, image_size, 3), dtype=np.uint8)
    labels = np.empty((len(items),), dtype=np.int32)
    problems = []
    kept = 0
    for index, item in enumerate(items):
        if stop_event is not None and stop_event.is_set():
            raise Cancelled()
        try:
            images[kept] = load_image(item.path, (image_size, image_size))
        except ImageError as exc:
            problems.append((exc.path, exc.reason))
            continue
        labels[kept] = item.label
        kept += 1
        if on_progress is not None and (index % 64 == 0 or index == len(items) - 1):
            on_progress(index + 1, len(items))
    result = (images[:kept], labels[:kept], problems)
    _remember(key, result)
    return result


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


def clear_cache():
    with _cache_lock:
        _cache.clear()


def build_augmenter(augmentation, seed):
    """A Keras model of random layers applied to float batches, or None if it would do nothing."""
    keras = keras_module()
    if augmentation.is_identity:
        return None
    layers = []
    if augmentation.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if augmentation.rotation:
        layers.append(keras.layers.RandomRotation(augmentation.rotation, fill_mode="reflect", seed=seed))
    if augmentation.zoom:
        layers.append(keras.layers.RandomZoom(augmentation.zoom, fill_mode="reflect", seed=seed))
    if augmentation.translation:
        t = augmentation.translation
        layers.append(keras.layers.RandomTranslation(t, t, fill_mode="reflect", seed=seed))
    if augmentation.contrast:
        layers.append(keras.layers.RandomContrast(augmentation.contrast, seed=seed))
    return keras.Sequential(layers, name="augmentation")


def make_dataset(images, labels, num_classes, batch_size, *, shuffle, augmenter=None, seed=0):
    """A tf.data pipeline of ``(float32 pixels 0-255, one-hot labels)`` batches."""
    tf = tensorflow_module()
    if len(images) == 0:
        raise TrainingError("No images left to train on after decoding.")
    if isinstance(images, np.ndarray):
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        if shuffle:
            dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size)
    else:
        dataset = _disk_batches(tf, images, labels, batch_size, shuffle, seed)

    def to_float(x, y):
        return tf.cast(x, tf.float32), tf.one_hot(y, num_classes)

    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augmenter is not None:
        dataset = dataset.map(
            lambda x, y: (tf.clip_by_value(augmenter(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def _disk_batches(tf, images, labels, batch_size, shuffle, seed):
    """Batches gathered from a :class:`image_cache.DiskImages` by shuffled index."""
    labels = np.asarray(labels, dtype=np.int32)
    dataset = tf.data.Dataset.range(len(images))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    shape = images.shape[1:]

    def gather(indices):
        indices = np.sort(indices)  # sequential reads where the shuffle allows
        return images.take(indices), labels[indices]

    def load(indices):
        x, y = tf.numpy_function(gather, [indices], (tf.uint8, tf.int32), stateful=False)
        x.set_shape((None, *shape))
        y.set_shape((None,))
        return x, y

    return dataset.map(load, num_parallel_calls=2)


def augmentation_preview(images, augmentation, count=8, seed=0):
    """Augmented copies of a few images (uint8), for the GUI's preview."""
    augmenter = build_augmenter(augmentation, seed)
    batch = np.asarray(images[:count], dtype=np.float32)
    if augmenter is None or len(batch) == 0:
        return batch.astype(np.uint8)
    out = np.asarray(augmenter(batch, training=True))
    return np.clip(out, 0, 255).astype(np.uint8)
