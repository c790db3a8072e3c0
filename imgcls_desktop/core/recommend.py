"""Settings chosen from the data: which preset, at what image size, for how long.

A folder of phone photos and a folder of 32-pixel thumbnails want different things:
photos get the ImageNet backbone that ships with the app (its features already know
bottles from cans), thumbnails train a small network from scratch at their own size,
where upscaling them for a backbone would cost far more than it brings. The time budget
comes from the number of images and this machine's measured speed.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

# Below this median short side, images are thumbnails: a backbone made for 224 px gains
# little from upscaling them, and a from-scratch CNN at their own size trains in minutes.
PHOTO_MIN_SIDE = 64
PHOTO_PRESET = "efficientnet_lite0"
THUMBNAIL_PRESET = "fast_cnn"
# The held-out validation images: a fifth of the training images, but no more than this
# many when the folder is big (10,000 of CIFAR-10's 50,000 images buy no better a choice of
# epoch than 2,500, and cost the model a fifth of its data).
MAX_VALIDATION_IMAGES = 2500
# Work per image, measured with this app's models (forward GFLOP; training ~3x forward).
_LITE0_GFLOP = 0.79
_FAST_CNN_GFLOP_32PX = 0.048
# Share of the matmul ceiling each reaches on a CPU (measured: Lite0's depthwise layers
# are memory-bound, about a quarter; fast_cnn about three quarters).
_LITE0_EFFICIENCY = 0.26
_FAST_CNN_EFFICIENCY = 0.7
_SIZE_SAMPLE = 64

_ceiling = None


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` suggests, and why, in one sentence.

    Attributes:
        preset: A name in ``models.PRESETS``.
        image_size: The side, in pixels, images are resized to.
        time_budget: Seconds for the whole run, or None for "train the preset's epochs".
        validation_split: Share of the training images held out (0 when a val/ folder exists).
        reason: One sentence for the user.
        median_size: (width, height) of the images, medians of a sample.
        estimated_seconds: What the whole run should take on this machine.
    """

    preset: str
    image_size: int
    time_budget: float | None
    validation_split: float
    reason: str
    median_size: tuple[int, int]
    estimated_seconds: float

    def to_dict(self) -> dict:
        data = asdict(self)
        data["median_size"] = list(self.median_size)
        return data


def machine_gflops() -> float:
    """This machine's fp32 matmul rate (NumPy, measured once per process, ~0.1 s)."""
    global _ceiling
    if _ceiling is None:
        size = 512
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        a @ a  # warm-up: thread pool and caches
        best = math.inf
        for _ in range(5):
            started = time.perf_counter()
            a @ a
            best = min(best, time.perf_counter() - started)
        _ceiling = 2 * size**3 / max(best, 1e-9) / 1e9
    return _ceiling


def median_image_size(paths, sample=_SIZE_SAMPLE) -> tuple[int, int]:
    """Median (width, height) of up to ``sample`` files spread over ``paths``, from headers only.

    Files that cannot be opened are skipped (the scan has already reported them); an
    empty or unreadable sample gives (0, 0).
    """
    from PIL import Image

    paths = list(paths)
    if not paths:
        return (0, 0)
    picks = [paths[int(i)] for i in np.linspace(0, len(paths) - 1, min(sample, len(paths)))]
    sizes = []
    for path in picks:
        try:
            with Image.open(path) as image:
                sizes.append(image.size)  # the header: no pixel is decoded
        except Exception:  # noqa: BLE001 - untrusted files; the scan names the bad ones
            continue
    if not sizes:
        return (0, 0)
    widths, heights = zip(*sizes)
    return int(np.median(widths)), int(np.median(heights))


def _minutes(seconds):
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def recommended_validation_split(scan) -> float:
    """The share of training images to hold out: a fifth, at most ``MAX_VALIDATION_IMAGES``.

    A ``val/`` folder is used as it is, so nothing is held out then (0).
    """
    if "val" in scan.splits:
        return 0.0
    num_train = len(scan.splits.get(scan.training_split_name(), []))
    if num_train <= MAX_VALIDATION_IMAGES * 5:
        return 0.2
    return round(MAX_VALIDATION_IMAGES / num_train, 3)


def recommend(scan, gflops=None) -> Recommendation:
    """Preset, image size and time budget for a scanned dataset on this machine.

    Args:
        scan: A :class:`dataset.DatasetScan`.
        gflops: The machine's matmul rate; measured (:func:`machine_gflops`) when None.

    Returns:
        A :class:`Recommendation` whose ``reason`` says why in one sentence.
    """
    train_items = scan.splits.get(scan.training_split_name(), [])
    all_paths = [item.path for items in scan.splits.values() for item in items]
    width, height = median_image_size(all_paths)
    short_side = min(width, height)
    num_train = len(train_items)
    num_images = len(all_paths)
    validation_split = recommended_validation_split(scan)
    gflops = gflops or machine_gflops()
    cores = os.cpu_count() or 1
    # Decoding: about 150 photos of 0.2 megapixels a second per core (draft mode for large
    # JPEGs keeps bigger photos near that), thumbnails far faster.
    decode_seconds = num_images / (cores * (150.0 if short_side >= PHOTO_MIN_SIDE else 2000.0))
    if short_side >= PHOTO_MIN_SIDE:
        image_size = 224
        features_per_second = gflops * _LITE0_EFFICIENCY / _LITE0_GFLOP
        # Each training image and its mirror once, the validation images once.
        feature_seconds = num_train * 2 / features_per_second
        estimate = decode_seconds + feature_seconds + 15.0  # head, calibration, save
        reason = (f"Photos ({width}x{height} px): EfficientNet-Lite0, trained on ImageNet and "
                  f"shipped with the app, turns each into features at {image_size} px and a new "
                  f"head learns your {len(scan.class_names)} classes from them (about "
                  f"{_minutes(estimate)} here).")
        preset, budget = PHOTO_PRESET, None
    else:
        image_size = int(min(64, max(16, short_side or 32)))
        per_image = _FAST_CNN_GFLOP_32PX * (image_size / 32) ** 2 * 3
        images_per_second = gflops * _FAST_CNN_EFFICIENCY / per_image
        epochs_wanted = 15
        train_seconds = epochs_wanted * num_train * (1 - validation_split) / images_per_second
        # Whole minutes between 1 and 30: long enough for the schedule to matter, short
        # enough to look at the result today.
        budget = float(min(1800, max(60, 60 * math.ceil((train_seconds + decode_seconds) / 60))))
        estimate = budget
        reason = (f"Small images ({width}x{height} px): the fast from-scratch CNN at their own "
                  f"size, {image_size} px, for {_minutes(budget)} (about {epochs_wanted} passes over "
                  f"{num_train} images on this machine).")
        preset = THUMBNAIL_PRESET
    return Recommendation(preset=preset, image_size=image_size, time_budget=budget,
                          validation_split=validation_split, reason=reason,
                          median_size=(width, height), estimated_seconds=round(estimate, 1))
