"""The training loop: Keras fit driven by plain callables and a stop event.

Core knows nothing about Qt: progress leaves through ``on_progress(TrainingProgress)``,
and a ``threading.Event`` asks for a stop, which Keras honours after the current batch.

The job in order: check the settings, decode the split, resolve the batch size, build the
model, fit it (:mod:`core.fit_loop`; a transfer model's head on stored features,
:mod:`core.head_features`), write the metadata, calibrate. A time budget covers all of it
(:mod:`core.job_clock`).
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .. import __version__
from . import distribute
from .backend import keras_module, versions
from .dataset import DatasetScan, scan_dataset, split_train_validation
from .defaults import DEFAULT_SEED
from .errors import TrainingError
from .head_features import head_features
from .job_clock import AFTER_FIT_FIXED_SECONDS, EVALUATION_VIEW_FACTOR, JobClock, save_seconds
from .models import (
    DEFAULT_PRESET,
    Augmentation,
    build_model,
    for_time_budget,
    forward_flops,
    get_preset,
    init_whitening,
)
from .paths import relative_posix
from .pipeline import Cancelled, decode_items
from .tta import views_per_image


@dataclass
class TrainingConfig:
    """What to train. ``None`` means "the preset's default"."""

    preset: str = DEFAULT_PRESET
    epochs: int | None = None
    # Seconds of wall-clock for the whole job, from pressing Train to the saved model
    # (reading images and calibrating included); overrides epochs. See core.job_clock.
    time_budget: float | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    image_size: int | None = None
    validation_split: float = 0.2
    seed: int = DEFAULT_SEED
    augmentation: Augmentation | None = None
    early_stopping_patience: int | None = 10  # epochs without improvement; None disables
    weights: str | None = "imagenet"  # transfer presets: "imagenet", a local file, or None
    class_weights: str | None = None  # "balanced": weigh each class by inverse frequency
    # Transfer presets: run the frozen backbone once per image and train the head on the
    # stored features (rotation and zoom are then not applied; flips are, as stored copies).
    cache_features: bool = True
    # Transfer presets: after the head, unfreeze the top of the backbone and train it with
    # the head for this many epochs at a hundredth of the learning rate, on the images
    # with full augmentation (slow: each epoch runs the backbone). Under a time budget
    # the head gets a fifth of it and fine-tuning the rest; any value > 0 turns it on.
    fine_tune_epochs: int = 0
    # Where to train (issue 14): "auto", "off", "mirrored" or "multi-worker"; see core.distribute.
    distribute: str = "auto"

    def resolved(self) -> TrainingConfig:
        """A copy with every preset default filled in.

        Returns:
            A new config whose epochs, batch size, learning rate, image size and
            augmentation are set.
        """
        preset = get_preset(self.preset)
        return replace(
            self,
            epochs=self.epochs or preset.epochs,
            batch_size=self.batch_size or preset.batch_size,
            learning_rate=self.learning_rate or preset.learning_rate,
            image_size=self.image_size or preset.image_size,
            augmentation=self.augmentation if self.augmentation is not None else preset.augmentation,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict (the model's metadata records it).

        Returns:
            The fields, ``augmentation`` as its own dict.
        """
        data = asdict(self)
        if self.augmentation is not None:
            data["augmentation"] = self.augmentation.to_dict()
        return data


@dataclass
class TrainingProgress:
    """One progress event. ``kind`` is "decode", "batch" or "epoch"."""

    kind: str
    epoch: int = 0  # 1-based
    epochs: int | None = None  # None under a time budget (the count is not known in advance)
    step: int = 0
    steps: int = 0
    metrics: dict = field(default_factory=dict)
    images_per_second: float = 0.0
    seconds_elapsed: float = 0.0
    seconds_left: float | None = None
    fraction_done: float = 0.0
    message: str = ""


@dataclass
class TrainingResult:
    """What :func:`train` returns: the model with its best weights, and how training went."""

    model: Any  # a keras.Model
    class_names: list
    history: dict
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float | None
    seconds: float
    stopped_by_user: bool
    stop_reason: str
    metadata: dict
    skipped_files: list  # (path, reason) of files that failed to decode at training time

    def summary(self, model_path: str | os.PathLike | None = None) -> dict[str, Any]:
        """The ``train --json`` document.

        Args:
            model_path: Where the model was saved, or None.

        Returns:
            ``model``, ``class_names``, ``epochs_run``, ``best_val_accuracy``, ``seconds``
            and ``history``.
        """
        return {
            "model": str(model_path) if model_path else None,
            "class_names": list(self.class_names),
            "epochs_run": self.epochs_run,
            "best_val_accuracy": self.best_val_accuracy,
            "seconds": round(self.seconds, 2),
            "history": self.history,
        }


def fit_batch_size(preset_batch_size: int, num_train_images: float, min_steps: int = 16) -> int:
    """The preset's batch size, halved until an epoch has ``min_steps`` steps (not below 16).

    A 400-image sample at batch 128 gets 4 steps an epoch: BatchNorm statistics and the
    schedule then have too few steps to settle, and validation accuracy collapses.

    Args:
        preset_batch_size: The batch size to start from.
        num_train_images: Training images per epoch.
        min_steps: The fewest steps an epoch should have.

    Returns:
        The batch size.
    """
    batch_size = preset_batch_size
    while batch_size > 16 and num_train_images / batch_size < min_steps:
        batch_size //= 2
    return batch_size


HEAD_SHARE_OF_BUDGET = 0.2  # of a time budget's fitting time, when fine-tuning takes the rest


@dataclass
class _Decoded:
    x_train: object
    y_train: np.ndarray
    x_val: object
    y_val: np.ndarray
    val_items: list
    skipped: list
    decode_rate: float  # images a second, as decoded (or served from the cache) here


@dataclass
class _Fitted:
    run: object  # the last phase's fit_loop.FitRun
    history: dict
    calibrate_model: object  # what calibration runs: the model, or its head on stored features
    calibrate_x: object  # ... on the validation images, or their stored features
    planned_after_fit: float = 0.0  # what the plan set aside for the work after the fit


def train(dataset: str | os.PathLike | DatasetScan, config: TrainingConfig | None = None, *,
          on_progress: Callable[[TrainingProgress], None] | None = None,
          stop_event: threading.Event | None = None, started_at: float | None = None,
          evaluated_after: bool = False) -> TrainingResult:
    """Train a classifier on a class-folder dataset.

    Args:
        dataset: A folder path or a :class:`dataset.DatasetScan`.
        config: A :class:`TrainingConfig` (defaults if None).
        on_progress: Called with :class:`TrainingProgress` events, from this thread.
        stop_event: A ``threading.Event``; when set, training stops after the current
            batch and the best model so far is returned.
        started_at: ``time.monotonic()`` when the user asked for this job (pressed Train,
            started ``imgcls train``); ``config.time_budget`` counts from then, and covers
            everything up to the saved model. Defaults to now.
        evaluated_after: The caller evaluates the model on its held-out images once this
            returns (``imgcls train`` records the run with its accuracy): a time budget then
            sets the time aside for it too.

    Returns:
        A :class:`TrainingResult` whose ``model`` holds the best weights seen.

    Raises:
        DatasetError: The dataset cannot be trained on (the message says why).
        TrainingError: Training diverged, or was stopped before any epoch finished.
    """
    config = config or TrainingConfig()
    clock = JobClock(config.time_budget, time.monotonic() if started_at is None else started_at)
    plan = distribute.plan_for(config.distribute)  # issue 14
    with plan.scope():
        return distribute.run_reporting_lost_workers(plan, lambda: _train_in_scope(
            dataset, config, clock, on_progress, stop_event, plan, evaluated_after))


def _train_in_scope(dataset, config, clock, on_progress, stop_event, plan, evaluated_after):
    from .run_checks import check_training_run

    check_training_run(config, dataset)  # ranges and memory, before any work (issue 17)
    scan = dataset if hasattr(dataset, "splits") else scan_dataset(dataset)
    resolved = config.resolved()
    data = _decode(scan, resolved, clock, on_progress, stop_event)
    config = _fit_settings(config, resolved, len(data.x_train), plan)
    preset = for_time_budget(get_preset(config.preset), config.time_budget)
    num_classes = len(scan.class_names)
    keras = keras_module()
    keras.utils.set_random_seed(config.seed)
    model = plan.float32_head(build_model(preset, num_classes, config.image_size, weights=config.weights))
    init_whitening(model, data.x_train)
    fit_started = clock.elapsed()
    evaluated = _evaluated_after(scan, data) if evaluated_after else 0
    fitted = _fit(model, data, config, preset, num_classes, clock, evaluated, on_progress, stop_event)
    fit_ended = clock.elapsed()
    metadata = _metadata(scan, config, preset, model, data, fitted)
    metadata["training"]["precision"] = plan.policy  # float32 unless a GPU or IMGCLS_MIXED_PRECISION chose otherwise
    metadata["calibration"] = _calibration(fitted.calibrate_model, fitted.calibrate_x, data.y_val, num_classes,
                                           preset.tta)
    seconds = clock.elapsed()
    metadata["training"]["seconds"] = round(seconds, 2)
    metadata["training"]["timings"] = {  # where the job's time went (benchmarks read it)
        "before_fit": round(fit_started, 2), "fit": round(fit_ended - fit_started, 2),
        "after_fit": round(seconds - fit_ended, 2), "after_fit_planned": round(fitted.planned_after_fit, 2),
    }
    run = fitted.run
    best_val = run.best_value if len(data.x_val) else None
    return TrainingResult(
        model=model, class_names=list(scan.class_names), history=fitted.history,
        epochs_run=run.epoch, best_epoch=run.best_epoch, best_val_accuracy=best_val,
        seconds=seconds, stopped_by_user=run.stopped_by_user, stop_reason=run.stop_reason,
        metadata=metadata, skipped_files=data.skipped,
    )


def _decode(scan, config, clock, on_progress, stop_event):
    """The split's pixels at the configured size; files unreadable now are skipped and named."""
    train_items, val_items = split_train_validation(scan, config.validation_split, config.seed)

    def decode_progress(done, total):
        if on_progress is not None:
            on_progress(TrainingProgress(kind="decode", step=done, steps=total, fraction_done=done / max(1, total),
                                         seconds_elapsed=clock.elapsed(), seconds_left=clock.seconds_left(),
                                         message=f"Reading images {done}/{total}"))

    started = time.monotonic()
    try:
        x_train, y_train, skipped = decode_items(train_items, config.image_size, on_progress=decode_progress,
                                                 stop_event=stop_event)
        x_val, y_val, skipped_val = decode_items(val_items, config.image_size, stop_event=stop_event)
    except Cancelled:
        raise TrainingError("Training was stopped before it started; no model was made.") from None
    present = set(np.unique(y_train).tolist())
    missing = [name for index, name in enumerate(scan.class_names) if index not in present]
    if missing:
        raise TrainingError(
            f"No readable training image left for class(es) {', '.join(missing)} "
            "(files changed since the folder was scanned). Rescan the folder and try again."
        )
    rate = (len(train_items) + len(val_items)) / max(1e-6, time.monotonic() - started)
    return _Decoded(x_train, y_train, x_val, y_val, val_items, skipped + skipped_val, rate)


def _evaluated_after(scan, data):
    """How many images the caller's evaluation will read: the test split, else the held-out ones.

    The count :func:`core.evaluation.evaluation_items` will give the trained model.
    """
    test = scan.splits.get("test")
    return len(test) if test else len(data.x_val)


def _fit_settings(config, resolved, num_train_images, plan):
    """``resolved`` with the batch size and learning rate this many images and replicas need."""
    batch_chosen = config.batch_size is not None
    learning_rate_chosen = config.learning_rate is not None
    config = resolved
    if not batch_chosen:
        batch_size = fit_batch_size(config.batch_size, num_train_images)
        if not learning_rate_chosen and batch_size != config.batch_size:
            # Square-root scaling keeps the noise of SGD steps about the same.
            config = replace(config, learning_rate=config.learning_rate * math.sqrt(batch_size / config.batch_size))
        config = replace(config, batch_size=batch_size)
    if plan.replicas > 1 and not learning_rate_chosen:  # the batch is per replica (issue 14)
        config = replace(config, learning_rate=config.learning_rate * distribute.learning_rate_scale(plan.replicas))
    return config


def _fit(model, data, config, preset, num_classes, clock, evaluated_after, on_progress, stop_event):
    """Every fit phase of the job: the model (or its head on stored features), then fine-tuning."""
    from . import fit_loop

    keras = keras_module()
    fitted, train_x, train_y, val_x, augmentation = model, data.x_train, data.y_train, data.x_val, config.augmentation
    backbone_rate = None
    transfer_cached = preset.kind == "transfer" and config.cache_features
    if transfer_cached:
        try:
            features = head_features(model, data.x_train, data.y_train, data.x_val, augmentation.flip,
                                     on_progress, stop_event)
        except Cancelled:
            raise TrainingError("Training was stopped before it started; no model was made.") from None
        fitted, train_x, train_y, val_x = features.head, features.train_x, features.train_y, features.val_x
        backbone_rate = features.images_per_second
        augmentation = Augmentation(flip=False)
    fine_tuning = preset.kind == "transfer" and config.fine_tune_epochs > 0
    after_fit = _AfterFit(len(data.x_val), views_per_image(preset.tta), model.count_params(), backbone_rate,
                          calibrate_on_features=transfer_cached, num_evaluated=evaluated_after,
                          decode_rate=data.decode_rate)
    phase = fit_loop.Phase(
        config=config, preset=preset, augmentation=augmentation,
        class_weight=_class_weight(config.class_weights, data.y_train, num_classes), clock=clock,
        after_fit=after_fit, share=HEAD_SHARE_OF_BUDGET if fine_tuning else 1.0,
        on_progress=on_progress, stop_event=stop_event)
    fit_loop.compile_for_training(fitted, preset, config.learning_rate)
    run = fit_loop.fit_phase(fitted, train_x, train_y, val_x, data.y_val, num_classes, phase)
    if run.best_weights is None:
        raise TrainingError("Training was stopped before the first epoch ended; no model was made.")
    fitted.set_weights(run.best_weights)
    if preset.bias_lr_scale != 1.0:
        # The saved file then names only stock Keras classes (see fit_loop.ScaledBiasSGD).
        fitted.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy", metrics=["accuracy"])
    result = _Fitted(run, run.history, fitted if transfer_cached else model, val_x if transfer_cached else data.x_val)
    if fine_tuning and not run.stopped_by_user and not (stop_event is not None and stop_event.is_set()):
        after_fit.calibrate_on_features = False  # the backbone changes: its stored features go stale
        tuned = fit_loop.fine_tune(model, data.x_train, data.y_train, data.x_val, data.y_val, num_classes, run,
                                   phase)
        history = {key: run.history.get(key, []) + tuned.history.get(key, [])
                   for key in dict.fromkeys([*run.history, *tuned.history])}
        result = _Fitted(tuned, history, model, data.x_val)
    result.planned_after_fit = after_fit(result.run)
    return result


class _AfterFit:
    """Seconds the job needs once fitting ends: calibration, the save, the caller's evaluation.

    Calibration runs the model over every validation image and its TTA views; the caller's
    evaluation (``evaluated_after``) decodes its images and runs the full model over them
    and their views. The rates come from this job: the decoding of the training images,
    the backbone's features (transfer models), the fit's validation passes, or, before the
    first of those, a third of the training rate (a forward pass is about a third of a
    training step).
    """

    def __init__(self, num_val, views, parameters, backbone_rate, calibrate_on_features, num_evaluated=0,
                 decode_rate=None):
        self.num_val = num_val
        self.views = views
        self.save = save_seconds(parameters)
        self.backbone_rate = backbone_rate
        self.calibrate_on_features = calibrate_on_features
        self.num_evaluated = num_evaluated
        self.decode_rate = decode_rate

    def __call__(self, run):
        model_view = self.model_seconds_per_view(run)
        calibration = self.views * (self.head_seconds_per_view(run) if self.calibrate_on_features else model_view)
        evaluation = self.num_evaluated * (EVALUATION_VIEW_FACTOR * self.views * model_view
                                           + 1.0 / (self.decode_rate or math.inf))
        return AFTER_FIT_FIXED_SECONDS + self.save + self.num_val * calibration + evaluation

    def head_seconds_per_view(self, run):
        """A head on stored features: what its validation passes cost."""
        if run.validation_seconds is not None and self.num_val:
            return run.validation_seconds / self.num_val
        return 0.0

    def model_seconds_per_view(self, run):
        """The full model on one image."""
        if self.backbone_rate:  # a transfer model: its backbone is nearly all of it
            return 1.0 / self.backbone_rate
        if run.validation_seconds is not None and self.num_val:
            return run.validation_seconds / self.num_val
        elapsed = time.monotonic() - run.start
        if run.total_steps_done == 0 or elapsed <= 0:
            return 0.0
        return elapsed / (3.0 * run.total_steps_done * run.batch_size)


def _metadata(scan, config, preset, model, data, fitted):
    """The model file's ``imgcls`` metadata (``calibration`` and timings are added after)."""
    run = fitted.run
    metadata = {
        "format": "imgcls-desktop/1",
        "app_version": __version__,
        "class_names": list(scan.class_names),
        "image_size": [config.image_size, config.image_size],
        "preset": preset.name,
        "preprocessing": "RGB, resized to image_size (bilinear, no crop), float32 0-255 input",
        "training": {
            "config": config.to_dict(),
            "epochs_run": run.epoch,
            "best_epoch": run.best_epoch,
            "best_val_accuracy": run.best_value if len(data.x_val) else None,
            "stop_reason": run.stop_reason,
            "history": fitted.history,
            "num_train_images": int(len(data.x_train)),
            "images_seen": int(run.total_steps_done * run.batch_size),
            "fit_seconds": round(run.fit_seconds, 2),
            "num_val_images": int(len(data.x_val)),
            "forward_mflops": round(forward_flops(model) / 1e6, 2),
            "widths": list(preset.widths) or None,  # fast_cnn's, when the preset or budget set them
            "parameters": int(model.count_params()),
            "versions": versions(),
        },
        "dataset": {
            "root": str(scan.root),
            "layout": scan.layout,
            "fingerprint": scan.fingerprint(),
            "seed": config.seed,
            "validation_split": config.validation_split,
            "validation_files": [relative_posix(item.path, scan.root) for item in data.val_items],
        },
    }
    if preset.tta:
        metadata["test_time_augmentation"] = preset.tta
    if config.fine_tune_epochs and preset.kind == "transfer":
        metadata["training"]["fine_tuned_layers"] = run.fine_tuned_layers if run.phase.name else 0
    return metadata


def _class_weight(mode, y_train, num_classes):
    """Keras ``class_weight`` for a weighting mode, or None for unweighted training."""
    if not mode:
        return None
    if mode != "balanced":
        raise TrainingError(f"Unknown class weighting {mode!r}; use 'balanced' or leave it off.")
    from .doctor import class_weights

    counts = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=num_classes)
    return class_weights(counts)


def _calibration(model, x_val, y_val, num_classes, tta=None):
    """Temperature and unknown threshold fitted on the validation split, or why not.

    ``model`` may be a transfer model's head and ``x_val`` the validation images' stored
    features: the head's logits and features are the full model's, without the backbone.
    Calibration is a bonus: whatever goes wrong here is recorded, never raised, so it
    cannot cost the user the model that just trained.
    """
    counts = np.bincount(np.asarray(y_val, dtype=np.int64), minlength=num_classes)
    if len(x_val) == 0 or counts.min() < 1:
        return {"skipped": "needs a validation split with at least one image of every class"}
    try:
        from .calibration import calibrate

        return calibrate(model, x_val, y_val, tta=tta)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        return {"skipped": f"calibration failed: {type(exc).__name__}: {exc}"}

