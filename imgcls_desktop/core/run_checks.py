"""Checks a training run must pass before any work starts: every setting in its range,
and a memory estimate against what the machine has.

``train()`` calls :func:`check_training_run` first, so the CLI and the window get the same
refusal, with the allowed range in the message, before a file is decoded or a model built.
The memory estimate counts what really stays in memory (a decoded set above the pipeline's
memory limit goes to the disk cache instead, and only batches of it are read back); it is a
rough, low-side figure meant to refuse the absurd (``--image-size 100000`` asked for tens of
gigabytes and was killed by the kernel), never a run that would fit.
"""

from __future__ import annotations

import math
import numbers
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import TrainingError
from .models import PRESETS, Augmentation, Preset, get_preset

if TYPE_CHECKING:
    from .dataset import DatasetScan
    from .training import TrainingConfig

# 1024 is the window's own limit. Above it one decoded image is 3 MB, a batch of 32 needs
# gigabytes of activations even in the smallest network, and nothing gains from it: the
# transfer backbones were trained at 224 and the from-scratch presets at 32.
MAX_IMAGE_SIZE = 1024
# The smallest input each architecture can take: below it a pooling or a valid convolution
# has nothing left (fast_cnn: a 2x2 valid convolution then three halvings; tutorial_cnn:
# three valid 3x3 convolutions and two halvings). Keras' ImageNet backbones need 32.
MIN_IMAGE_SIZE = {"fast_cnn": 9, "small_cnn": 8, "tutorial_cnn": 18}
MIN_BACKBONE_IMAGE_SIZE = 32
MAX_BATCH_SIZE = 65_536
MAX_EPOCHS = 100_000
MAX_SEED = 2**32 - 1  # NumPy's seed range, which keras.utils.set_random_seed uses

# Floats per pixel of one image that a training step keeps for the backward pass (summed
# over the layers, counted from each architecture's widths and poolings, with BatchNorm and
# activation outputs); transfer presets train their head on stored features and only run
# the frozen backbone forward, unless they fine-tune.
_ACTIVATION_FLOATS_PER_PIXEL = {"fast_cnn": 200, "small_cnn": 160, "tutorial_cnn": 110}
_BACKBONE_FORWARD_FLOATS_PER_PIXEL = 60
_BACKBONE_TRAINING_FLOATS_PER_PIXEL = 200
_FEATURE_BATCH = 64  # core.training._features_for_head
_PARAMETERS = {"fast_cnn": 300_000, "small_cnn": 310_000, "MobileNetV2": 2_300_000,
               "EfficientNetB0": 4_100_000, "EfficientNetLite0": 3_400_000}
_UNKNOWN_PARAMETERS = 25_000_000
# TensorFlow, Keras and the Python process before any data: about what an idle engine holds.
RUNTIME_BYTES = 400 * 1024**2
_WHITENING_IMAGES = 5000  # models.init_whitening
# init_whitening holds float32 images, their centred copy, four 2x2-shifted float32 copies
# and a float64 patch matrix of the same size: 14 floats of 4 bytes per channel value.
_WHITENING_BYTES_PER_VALUE = 4 * 14


@dataclass
class MemoryEstimate:
    """What a training run needs, in bytes, part by part."""

    decoded_bytes: int  # decoded images held in memory (and their tf.data copy)
    disk_cache_bytes: int  # decoded images that go to the disk cache instead
    preparation_bytes: int  # before fitting: whitening statistics, feature extraction
    training_bytes: int  # one training step: batch, activations, weights and optimizer state
    runtime_bytes: int = RUNTIME_BYTES

    @property
    def total_bytes(self) -> int:
        """Memory the run needs at its peak."""
        # Preparation ends before the first training step, so only the larger one counts.
        return self.runtime_bytes + self.decoded_bytes + max(self.preparation_bytes, self.training_bytes)

    def largest_part(self) -> str:
        """What takes the most memory.

        Returns:
            "decoded images", "preparation" or "training step".
        """
        parts = {"decoded images": self.decoded_bytes, "preparation": self.preparation_bytes,
                 "training step": self.training_bytes}
        return max(parts, key=lambda name: parts[name])


def check_training_run(config: TrainingConfig | None, dataset: DatasetScan | str | os.PathLike | int | None = None,
                       *, available_bytes: int | None = None,
                       free_disk_bytes: int | None = None) -> MemoryEstimate | None:
    """Refuse a run whose settings are out of range or that cannot fit in this machine.

    Call it before any work: it reads the config and counts the images (a folder is listed,
    not decoded).

    Args:
        config: The :class:`core.training.TrainingConfig` as the user gave it (``None``
            fields mean the preset's default), or None for the defaults.
        dataset: What will be trained on: a ``DatasetScan``, a dataset folder, or the
            number of training and validation images; None checks the settings alone (the
            CLI does so before it scans the folder).
        available_bytes: Memory this run may use; None reads the machine's
            (:func:`available_memory_bytes`).
        free_disk_bytes: Free space where the decode cache goes; None measures it.

    Returns:
        The :class:`MemoryEstimate`, or None when the number of images is unknown.

    Raises:
        TrainingError: A setting is out of range (every such setting is named, with its
            allowed range), or the run needs more memory or disk than there is (the
            message says how much, and what to change).
    """
    if config is None:
        from .training import TrainingConfig

        config = TrainingConfig()
    # No preset yet (the CLI recommends one after scanning): the loosest bounds apply.
    preset = get_preset(config.preset) if config.preset is not None else None
    problems = setting_problems(config, preset)
    if problems:
        raise TrainingError("Cannot train with these settings: " + "; ".join(problems) + ".")
    num_images = _count_images(dataset) if preset is not None else None
    if not num_images:
        return None
    estimate = estimate_memory(config, num_images)
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if available is not None and estimate.total_bytes > available:
        raise TrainingError(
            f"This run needs about {_gigabytes(estimate.total_bytes)} of memory "
            f"(mostly for the {estimate.largest_part()}: {num_images} images at "
            f"{_size(config, preset)}x{_size(config, preset)} pixels, batch size "
            f"{_batch(config, preset, num_images)}); this machine has "
            f"{_gigabytes(available)} available. {_advice(config, preset, estimate)}"
        )
    if estimate.disk_cache_bytes:
        free = _free_disk(free_disk_bytes)
        if free is not None and estimate.disk_cache_bytes > free:
            raise TrainingError(
                f"This run decodes {num_images} images to {_gigabytes(estimate.disk_cache_bytes)} "
                f"in the disk cache ({_cache_folder()}), which has {_gigabytes(free)} free. "
                "Choose a smaller image size, free disk space, or set IMGCLS_CACHE_DIR to a "
                "folder on a larger disk."
            )
    return estimate


def setting_problems(config: TrainingConfig, preset: Preset | None = None) -> list[str]:
    """Each out-of-range setting of ``config`` as ``"what must be ... (got ...)"``.

    Args:
        config: The settings as the user gave them.
        preset: The preset; None: bounds that depend on the preset take their loosest value.

    Returns:
        One sentence fragment per problem (empty when every setting is in range).
    """
    problems = []
    if preset is None:
        minimum_size = min(min_image_size(candidate) for candidate in PRESETS.values())
        which, example_rate = "", 0.001
    else:
        minimum_size = min_image_size(preset)
        which, example_rate = f" for {preset.name}", preset.learning_rate
    if config.image_size is not None and not _int_in(config.image_size, minimum_size, MAX_IMAGE_SIZE):
        problems.append(f"image size must be between {minimum_size} and {MAX_IMAGE_SIZE} pixels"
                        f"{which} (got {config.image_size!r})")
    if config.time_budget is not None and not _number_above(config.time_budget, 0):
        problems.append(f"the time budget must be more than 0 seconds (got {config.time_budget!r})")
    if config.epochs is not None and not _int_in(config.epochs, 1, MAX_EPOCHS):
        problems.append(f"epochs must be between 1 and {MAX_EPOCHS} (got {config.epochs!r})")
    if config.batch_size is not None and not _int_in(config.batch_size, 1, MAX_BATCH_SIZE):
        problems.append(f"batch size must be between 1 and {MAX_BATCH_SIZE} (got {config.batch_size!r})")
    if config.learning_rate is not None and not _number_above(config.learning_rate, 0):
        problems.append(f"the learning rate must be a number above 0, such as {example_rate:g} "
                        f"(got {config.learning_rate!r})")
    split = config.validation_split
    if not (_is_number(split) and 0 <= split < 1):
        problems.append(f"the validation split must be at least 0 and below 1, such as 0.2 (got {split!r})")
    patience = config.early_stopping_patience
    if patience is not None and not _int_in(patience, 1, MAX_EPOCHS):
        problems.append(f"early-stopping patience must be at least 1 epoch, or off (got {patience!r})")
    if not _int_in(config.fine_tune_epochs, 0, MAX_EPOCHS):
        problems.append(f"fine-tuning epochs must be between 0 and {MAX_EPOCHS} (got {config.fine_tune_epochs!r})")
    if not _int_in(config.seed, 0, MAX_SEED):
        problems.append(f"the seed must be between 0 and {MAX_SEED} (got {config.seed!r})")
    if config.class_weights not in (None, "balanced"):
        problems.append(f"class weights must be 'balanced' or off (got {config.class_weights!r})")
    augmentation = config.augmentation
    if augmentation is not None and isinstance(augmentation, Augmentation):
        for name in ("rotation", "zoom", "translation", "contrast"):
            value = getattr(augmentation, name)
            if not (_is_number(value) and 0 <= value <= 1):
                problems.append(f"augmentation {name} must be between 0 and 1 (got {value!r})")
    return problems


def _count_images(dataset):
    """Training and validation images of a count, a scan or a folder; None if unknown."""
    if dataset is None or isinstance(dataset, numbers.Integral):
        return dataset
    if not hasattr(dataset, "splits"):
        from .dataset import scan_dataset
        from .errors import ImgclsError

        try:  # listing only: no file is decoded; training's own scan reports any problem
            dataset = scan_dataset(dataset, validate=False, find_duplicates=False)
        except (ImgclsError, OSError):
            return None
    splits = dataset.splits
    return len(splits.get(dataset.training_split_name(), [])) + len(splits.get("val", []))


def min_image_size(preset: str | Preset) -> int:
    """The smallest image size the preset's network can take (see ``MIN_IMAGE_SIZE``).

    Args:
        preset: A preset or its name.

    Returns:
        The side in pixels.
    """
    preset = get_preset(preset)
    return MIN_IMAGE_SIZE.get(preset.architecture or preset.name, MIN_BACKBONE_IMAGE_SIZE)


def estimate_memory(config: TrainingConfig, num_images: int) -> MemoryEstimate:
    """What a run of ``config`` on ``num_images`` images needs (see :class:`MemoryEstimate`).

    Nothing is allocated: this is arithmetic on the settings.

    Args:
        config: The settings (``None`` fields: the preset's defaults).
        num_images: Training and validation images.

    Returns:
        The estimate.
    """
    from . import pipeline

    preset = get_preset(config.preset)
    size = _size(config, preset)
    pixels = size * size
    image_bytes = pixels * 3
    split = config.validation_split if _is_number(config.validation_split) else 0.2
    num_val = int(math.ceil(num_images * min(max(split, 0.0), 1.0)))
    decoded = disk = 0
    # Training and validation images are decoded separately; each set stays in memory
    # (NumPy's array plus the tf.data constant made of it) unless it exceeds the pipeline's
    # limit, in which case it goes to the disk cache and only batches are read back.
    for count in (num_images - num_val, num_val):
        set_bytes = count * image_bytes
        if set_bytes > pipeline._MEMORY_LIMIT_BYTES:
            disk += set_bytes
        else:
            decoded += 2 * set_bytes
    batch = _batch(config, preset, num_images)
    architecture = preset.architecture or preset.name
    parameters = _parameters(preset, size)
    # Weights, gradients and two optimizer slots per parameter, float32.
    weights = 16 * parameters
    if preset.kind == "transfer":
        preparation = _FEATURE_BATCH * pixels * (_BACKBONE_FORWARD_FLOATS_PER_PIXEL + 3) * 4 + weights
        per_pixel = _BACKBONE_TRAINING_FLOATS_PER_PIXEL if config.fine_tune_epochs else 0
    else:
        preparation = 0
        if architecture == "fast_cnn":
            preparation = min(num_images, _WHITENING_IMAGES) * image_bytes * _WHITENING_BYTES_PER_VALUE
        per_pixel = _ACTIVATION_FLOATS_PER_PIXEL.get(architecture, _BACKBONE_TRAINING_FLOATS_PER_PIXEL)
    # The float32 input batch, its augmented copy, and the activations kept for backward.
    training = batch * pixels * 4 * (2 * 3 + per_pixel) + weights
    return MemoryEstimate(decoded_bytes=int(decoded), disk_cache_bytes=int(disk),
                          preparation_bytes=int(preparation), training_bytes=int(training))


def available_memory_bytes() -> int | None:
    """Memory a new run may use: ``MemAvailable``, capped by a cgroup limit; None if unknown.

    Returns:
        Bytes, or None.
    """
    available = None
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None  # Windows, macOS without these: no estimate is better than a wrong one
    limit = _cgroup_room()
    return min(available, limit) if limit is not None else available


def _cgroup_room():
    # A container's limit (cgroup v2) can be far below what /proc/meminfo shows.
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(0, int(limit) - used)
    except (OSError, ValueError):
        return None


def _cache_folder():
    from .image_cache import cache_dir

    return cache_dir()


def _free_disk(free_disk_bytes):
    if free_disk_bytes is not None:
        return free_disk_bytes
    folder = Path(_cache_folder())
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent  # the cache folder is made on first use
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _parameters(preset, size):
    architecture = preset.architecture or preset.name
    if architecture == "tutorial_cnn":
        # Its Dense layer reads the flattened last feature map, which grows with the image.
        side = max(1, ((size - 2) // 2 - 2) // 2 - 2)
        return 56_000 + side * side * 64 * 64
    if architecture == "fast_cnn" and preset.widths:
        return _PARAMETERS["fast_cnn"] * max(1, sum(preset.widths) // 224)
    return _PARAMETERS.get(architecture, _PARAMETERS.get(preset.backbone, _UNKNOWN_PARAMETERS))


def _size(config, preset):
    return int(config.image_size or preset.image_size)


def _batch(config, preset, num_images):
    batch = int(config.batch_size or preset.batch_size)
    return max(1, min(batch, num_images)) if num_images else batch


def _advice(config, preset, estimate):
    size = _size(config, preset)
    steps = []
    if size > preset.image_size:
        steps.append(f"a smaller image size (the preset's is {preset.image_size})")
    elif size > 32:
        steps.append("a smaller image size")
    if estimate.largest_part() == "training step" and _batch(config, preset, 10**9) > 16:
        steps.append("a smaller batch size")
    if estimate.largest_part() == "decoded images":
        steps.append("fewer images")
    steps.append("closing other programs")
    return "Try " + ", ".join(steps[:-1]) + (" or " if len(steps) > 1 else "") + steps[-1] + "."


def _gigabytes(value):
    return f"{value / 1024**3:.1f} GB" if value >= 1024**3 else f"{value / 1024**2:.0f} MB"


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _number_above(value, low):
    return _is_number(value) and value > low


def _int_in(value, low, high):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high
