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
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .dataset import DatasetScan

# Below this median short side, images are thumbnails: a backbone made for 224 px gains
# little from upscaling them, and a from-scratch CNN at their own size trains in minutes.
PHOTO_MIN_SIDE = 64
PHOTO_PRESET = "efficientnet_lite0"
THUMBNAIL_PRESET = "fast_cnn"
# The held-out validation images: a fifth of the training images, but no more than this
# many when the folder is big (10,000 of CIFAR-10's 50,000 images buy no better a choice of
# epoch than 2,500, and cost the model a fifth of its data).
MAX_VALIDATION_IMAGES = 2500
_SIZE_SAMPLE = 64

# Measured speeds on two cores, per vector instruction set (what decides TensorFlow's CPU
# kernels): Lite0 features at 224 px a second, fast_cnn training images at 32 px a second,
# photos (0.2 megapixel JPEG) decoded a second on one core. AVX-512: benchmarks/results/
# photos-trashnet-*.md and speed-2026-12-02.md; AVX2: measured when issue 13 was filed
# (Lite0, decoding) and on a 2-core AVX2 EPYC in time-budget-2026-12-02-1855.md (fast_cnn:
# 4 epochs of 47,500 images in 235 s of fitting, validation included).
# A live matmul probe was tried instead and read 2-5 GFLOP/s on a busy machine that does
# 100+ when quiet: too noisy to plan a run on.
MACHINE_SPEEDS = {
    "avx512": {"lite0_features": 70.0, "fast_cnn_images": 950.0, "decode_photos": 150.0},
    "avx2": {"lite0_features": 43.0, "fast_cnn_images": 800.0, "decode_photos": 150.0},
    "other": {"lite0_features": 15.0, "fast_cnn_images": 200.0, "decode_photos": 100.0},
}


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` suggests, and why, in one sentence.

    Attributes:
        preset: A name in ``models.PRESETS``.
        image_size: The side, in pixels, images are resized to.
        time_budget: Seconds for the whole run, or None for "train the preset's epochs".
        validation_split: Share of the training images held out (0 when a val/ folder exists).
        reason: Two sentences for the user: what it trains, and what it holds out to measure it.
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
        """The JSON-ready form (``imgcls recommend --json``).

        Returns:
            The fields, ``median_size`` as a list.
        """
        data = asdict(self)
        data["median_size"] = list(self.median_size)
        return data


def vector_isa() -> str:
    """"avx512", "avx2" or "other": the instruction set TensorFlow's CPU kernels will use.

    Returns:
        The name, from ``/proc/cpuinfo`` ("avx2" where there is none).
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags or not flags:  # no /proc/cpuinfo (macOS, Windows): assume a recent CPU
        return "avx2"
    return "other"


def machine_speed() -> dict:
    """The speeds :data:`MACHINE_SPEEDS` gives this machine's instruction set, scaled to its cores.

    Returns:
        ``{"isa", "cores", "lite0_features", "fast_cnn_images", "decode_photos"}``, the
        last three in images a second (decoding: per core).
    """
    isa = vector_isa()
    cores = os.cpu_count() or 1
    scale = min(cores, 16) / 2.0  # the table is for two cores; compute scales about linearly
    speeds = {key: value * (scale if key != "decode_photos" else 1.0) for key, value in MACHINE_SPEEDS[isa].items()}
    return {"isa": isa, "cores": cores, **speeds}


def median_image_size(paths: Iterable[str | os.PathLike], sample: int = _SIZE_SAMPLE) -> tuple[int, int]:
    """Median (width, height) of up to ``sample`` files spread over ``paths``, from headers only.

    Files that cannot be opened are skipped (the scan has already reported them); an
    empty or unreadable sample gives (0, 0).

    Args:
        paths: Image files.
        sample: Most files opened, spread evenly over ``paths``.

    Returns:
        ``(width, height)``.
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


def _held_out_text(scan, num_train, validation_split):
    if "val" in scan.splits:
        return f"Its val/ folder ({len(scan.splits['val']):,} images) measures the model."
    held_out = round(num_train * validation_split)
    if validation_split == 0.2:
        return f"{held_out:,} of the {num_train:,} training images (a fifth) are held out to measure it."
    return (f"{held_out:,} of the {num_train:,} training images are held out to measure it (not a fifth: "
            f"{MAX_VALIDATION_IMAGES:,} measure it as well, and the rest are left to learn from).")


def recommended_validation_split(scan: DatasetScan) -> float:
    """The share of training images to hold out: a fifth, at most ``MAX_VALIDATION_IMAGES``.

    A ``val/`` folder is used as it is, so nothing is held out then (0).

    Args:
        scan: The dataset.

    Returns:
        The share, 0-0.2.
    """
    if "val" in scan.splits:
        return 0.0
    num_train = len(scan.splits.get(scan.training_split_name(), []))
    if num_train <= MAX_VALIDATION_IMAGES * 5:
        return 0.2
    return round(MAX_VALIDATION_IMAGES / num_train, 3)


def recommend(scan: DatasetScan, speed: dict[str, Any] | None = None) -> Recommendation:
    """Preset, image size and time budget for a scanned dataset on this machine.

    Args:
        scan: A :class:`dataset.DatasetScan`.
        speed: Speeds as :func:`machine_speed` returns them (this machine's when None).

    Returns:
        A :class:`Recommendation` whose ``reason`` says why, and what is held out.
    """
    train_items = scan.splits.get(scan.training_split_name(), [])
    all_paths = [item.path for items in scan.splits.values() for item in items]
    width, height = median_image_size(all_paths)
    short_side = min(width, height)
    num_train = len(train_items)
    num_images = len(all_paths)
    validation_split = recommended_validation_split(scan)
    speed = speed or machine_speed()
    cores = speed.get("cores", 1)
    # Decoding: photos of 0.2 megapixels at the table's rate per core (draft mode keeps
    # bigger JPEGs near it), thumbnails about ten times faster.
    per_core = speed["decode_photos"] * (1.0 if short_side >= PHOTO_MIN_SIDE else 10.0)
    decode_seconds = num_images / (cores * per_core)
    if short_side >= PHOTO_MIN_SIDE:
        # Lite0 learnt at 224 px, yet its features at 288 px scored 2 points higher on
        # TrashNet's 384x512 photos (91.1% vs 88.9%, the same head): use them where the
        # photos have the pixels, for 1.65x the work.
        image_size = 288 if short_side >= 288 else 224
        features_per_second = speed["lite0_features"] / (image_size / 224) ** 2
        # Each training image and its mirror once, the validation images once.
        feature_seconds = num_train * 2 / features_per_second
        estimate = decode_seconds + feature_seconds + 15.0  # head, calibration, save
        reason = (f"Photos ({width}x{height} px): EfficientNet-Lite0, trained on ImageNet and "
                  f"shipped with the app, turns each into features at {image_size} px and a new "
                  f"head learns your {len(scan.class_names)} classes from them (about "
                  f"{_minutes(estimate)} on this machine).")
        preset, budget = PHOTO_PRESET, None
    else:
        image_size = int(min(64, max(16, short_side or 32)))
        images_per_second = speed["fast_cnn_images"] / (image_size / 32) ** 2
        epochs_wanted = 15
        train_seconds = epochs_wanted * num_train * (1 - validation_split) / images_per_second
        # Whole minutes between 1 and 30: long enough for the schedule to matter, short
        # enough to look at the result today.
        budget = float(min(1800, max(60, 60 * math.ceil((train_seconds + decode_seconds) / 60))))
        estimate = budget
        reason = (f"Small images ({width}x{height} px): the fast from-scratch CNN at their own "
                  f"size, {image_size} px, for {_minutes(budget)} (about {epochs_wanted} passes over "
                  f"{num_train:,} images on this machine).")
        preset = THUMBNAIL_PRESET
    reason += " " + _held_out_text(scan, num_train, validation_split)
    return Recommendation(preset=preset, image_size=image_size, time_budget=budget,
                          validation_split=validation_split, reason=reason,
                          median_size=(width, height), estimated_seconds=round(estimate, 1))
