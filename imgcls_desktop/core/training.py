"""The training loop: Keras fit driven by plain callables and a stop event.

Core knows nothing about Qt: progress leaves through ``on_progress(TrainingProgress)``,
and a ``threading.Event`` asks for a stop, which Keras honours after the current batch.
"""

import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .. import __version__
from . import distribute
from .backend import keras_module, tensorflow_module, versions
from .dataset import scan_dataset, split_train_validation
from .errors import TrainingError
from .models import (DEFAULT_PRESET, HEAD_LAYERS, Augmentation, build_model, for_time_budget, forward_flops, get_preset,
                     init_whitening)
from .pipeline import Cancelled, build_augmenter, decode_items, make_dataset


@dataclass
class TrainingConfig:
    """What to train. ``None`` means "the preset's default"."""

    preset: str = DEFAULT_PRESET
    epochs: int | None = None
    time_budget: float | None = None  # seconds of wall-clock training; overrides epochs
    batch_size: int | None = None
    learning_rate: float | None = None
    image_size: int | None = None
    validation_split: float = 0.2
    seed: int = 1337
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

    def resolved(self):
        """A copy with every preset default filled in."""
        preset = get_preset(self.preset)
        return replace(
            self,
            epochs=self.epochs or preset.epochs,
            batch_size=self.batch_size or preset.batch_size,
            learning_rate=self.learning_rate or preset.learning_rate,
            image_size=self.image_size or preset.image_size,
            augmentation=self.augmentation if self.augmentation is not None else preset.augmentation,
        )

    def to_dict(self):
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
    model: object
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

    def summary(self, model_path=None):
        """The ``train --json`` document."""
        return {
            "model": str(model_path) if model_path else None,
            "class_names": list(self.class_names),
            "epochs_run": self.epochs_run,
            "best_val_accuracy": self.best_val_accuracy,
            "seconds": round(self.seconds, 2),
            "history": self.history,
        }


def _make_callbacks(keras):
    """Keras callbacks adapting our callables; defined lazily because Keras loads lazily."""

    class ProgressForwarder(keras.callbacks.Callback):
        def __init__(self, run):
            super().__init__()
            self.run = run

        def on_train_batch_end(self, batch, logs=None):
            self.run.batch_ended(batch, logs or {})

        def on_epoch_begin(self, epoch, logs=None):
            self.run.epoch_began(epoch)

        def on_epoch_end(self, epoch, logs=None):
            self.run.epoch_ended(epoch, logs or {})

    return ProgressForwarder


class _Run:
    """State of one fit: the schedule, the stop rules, the best weights, the events."""

    def __init__(self, model, config, steps_per_epoch, batch_size, on_progress, stop_event,
                 has_validation, schedule=(0.1, 0.15, 0.0), epoch_offset=0, best_value=-math.inf,
                 phase=""):
        self.model = model
        self.config = config
        self.steps = steps_per_epoch
        self.batch_size = batch_size
        self.on_progress = on_progress
        self.stop_event = stop_event
        self.monitor = "val_accuracy" if has_validation else "accuracy"
        self.start = time.perf_counter()
        self.epoch_start = self.start
        self.epoch = 0
        self.epoch_offset = epoch_offset  # epochs of an earlier phase: numbering goes on
        self.phase = phase  # shown in progress messages ("fine-tuning")
        self.best_value = best_value  # only weights better than this are kept
        self.best_epoch = 0
        self.best_weights = None
        self.epochs_without_improvement = 0
        self.history = {}
        self.stopped_by_user = False
        self.diverged = None
        self.stop_reason = "finished"
        self.tail_seconds = 0.0  # time an epoch spends after its last batch (validation)
        self.total_steps_done = 0
        self.peak_lr = config.learning_rate
        self.schedule = schedule
        self.keep_last = False  # Preset.keep_last_epoch: no early stopping, the last epoch wins

    # -- schedule ---------------------------------------------------------------
    def fraction_done(self):
        if self.config.time_budget:
            usable = max(1e-6, self.config.time_budget - self.tail_seconds)
            return min(1.0, (time.perf_counter() - self.start) / usable)
        return min(1.0, self.total_steps_done / max(1, self.steps * self.config.epochs))

    def learning_rate(self, fraction):
        # One cycle fitted to the whole run (epochs or time budget): linear from `start` up
        # to the peak at `peak_at`, then linear down to `end`, all fractions of the peak.
        start, peak_at, end = self.schedule
        if fraction < peak_at:
            return self.peak_lr * (start + (1.0 - start) * fraction / peak_at)
        fraction = min(1.0, fraction)
        return self.peak_lr * (1.0 + (end - 1.0) * (fraction - peak_at) / (1.0 - peak_at))

    def set_learning_rate(self):
        fraction = distribute.active_plan().chief_value(self.fraction_done())  # issue 14
        self.model.optimizer.learning_rate.assign(self.learning_rate(fraction))

    # -- events -----------------------------------------------------------------
    def epoch_began(self, epoch):
        self.epoch = self.epoch_offset + epoch + 1
        self.epoch_start = time.perf_counter()
        self.set_learning_rate()

    def batch_ended(self, batch, logs):
        now = time.perf_counter()
        self.total_steps_done += 1
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self.epoch, batch + 1)
            self.model.stop_training = True
            return
        fraction = self.fraction_done()
        if self.config.time_budget and fraction >= 1.0:
            self.stop_reason = "time budget reached"
            self.model.stop_training = True
        self.set_learning_rate()
        elapsed_epoch = now - self.epoch_start
        images_per_second = (batch + 1) * self.batch_size / max(elapsed_epoch, 1e-6)
        self._emit(
            "batch", step=batch + 1, metrics={k: float(v) for k, v in logs.items()},
            images_per_second=images_per_second, fraction=fraction,
        )
        # Checked after the event, so a stop asked for while handling it ends the fit now.
        if self.stop_event is not None and self.stop_event.is_set():
            self.stopped_by_user = True
            self.stop_reason = "stopped by user"
            self.model.stop_training = True

    def epoch_ended(self, epoch, logs):
        logs = {k: float(v) for k, v in logs.items() if k != "learning_rate"}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.history.setdefault("learning_rate", []).append(
            float(np.asarray(self.model.optimizer.learning_rate))
        )
        value = logs.get(self.monitor, logs.get("accuracy", -math.inf))
        # keep_last: the whole schedule runs and its end is the model (Preset.keep_last_epoch).
        if self.diverged is None and (self.keep_last or value > self.best_value):
            self.best_value = value
            self.best_epoch = self.epoch
            # A copy in memory: restoring it is instant and never touches the disk.
            self.best_weights = [w.copy() for w in self.model.get_weights()]
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        patience = None if self.keep_last else self.config.early_stopping_patience
        if (patience and not self.config.time_budget
                and self.epochs_without_improvement >= patience):
            self.stop_reason = f"early stopping: no improvement for {patience} epochs"
            self.model.stop_training = True
        self._emit("epoch", step=self.steps, metrics=logs, fraction=self.fraction_done())

    def note_validation_time(self, seconds):
        self.tail_seconds = max(self.tail_seconds, seconds)

    def _emit(self, kind, step, metrics, images_per_second=0.0, fraction=0.0):
        if self.on_progress is None:
            return
        elapsed = time.perf_counter() - self.start
        if self.config.time_budget:
            seconds_left = max(0.0, self.config.time_budget - elapsed)
        elif fraction > 0:
            seconds_left = elapsed / fraction - elapsed
        else:
            seconds_left = None
        self.on_progress(TrainingProgress(
            kind=kind, epoch=self.epoch,
            epochs=None if self.config.time_budget else self.epoch_offset + self.config.epochs,
            step=step, steps=self.steps, metrics=metrics,
            images_per_second=images_per_second, seconds_elapsed=elapsed,
            seconds_left=seconds_left, fraction_done=fraction, message=self.phase,
        ))


def fit_batch_size(preset_batch_size, num_train_images, min_steps=16):
    """The preset's batch size, halved until an epoch has ``min_steps`` steps (not below 16).

    A 400-image sample at batch 128 gets 4 steps an epoch: BatchNorm statistics and the
    schedule then have too few steps to settle, and validation accuracy collapses.
    """
    batch_size = preset_batch_size
    while batch_size > 16 and num_train_images / batch_size < min_steps:
        batch_size //= 2
    return batch_size


def _optimizer(keras, preset, learning_rate):
    if preset.optimizer == "sgd":
        arguments = dict(learning_rate=learning_rate, momentum=preset.momentum, nesterov=True,
                         weight_decay=preset.weight_decay)
        if preset.bias_lr_scale != 1.0:
            return _scaled_bias_sgd(keras)(bias_lr_scale=preset.bias_lr_scale, **arguments)
        return keras.optimizers.SGD(**arguments)
    return keras.optimizers.Adam(learning_rate=learning_rate)


def _scaled_bias_sgd(keras):
    """SGD whose BatchNorm biases take ``bias_lr_scale`` times the learning rate.

    BatchNorm without a learnt scale leaves its bias as each channel's only free
    parameter; airbench trains it 64x faster. Weight decay keeps the base rate.
    The model is recompiled with plain SGD after training, so no file names this class.
    """

    class ScaledBiasSGD(keras.optimizers.SGD):
        def __init__(self, bias_lr_scale=1.0, **kwargs):
            super().__init__(**kwargs)
            self.bias_lr_scale = bias_lr_scale

        def build(self, variables):
            super().build(variables)
            # update_step sees the backend's variables, which lack Keras' paths: match by key.
            self._scaled = {self._var_key(v) for v in variables
                            if "_bn/" in v.path and v.path.endswith("beta")}

        def update_step(self, gradient, variable, learning_rate):
            if self._var_key(variable) in self._scaled:
                learning_rate = learning_rate * self.bias_lr_scale
            super().update_step(gradient, variable, learning_rate)

    return ScaledBiasSGD


def train(dataset, config=None, *, on_progress=None, stop_event=None):
    """Train a classifier on a class-folder dataset.

    Args:
        dataset: a folder path or a :class:`dataset.DatasetScan`.
        config: a :class:`TrainingConfig` (defaults if None).
        on_progress: called with :class:`TrainingProgress` events, from this thread.
        stop_event: a ``threading.Event``; when set, training stops after the current
            batch and the best model so far is returned.

    Returns:
        A :class:`TrainingResult` whose ``model`` holds the best weights seen.

    Raises:
        DatasetError: the dataset cannot be trained on (the message says why).
        TrainingError: training diverged, or was stopped before any epoch finished.
    """
    plan = distribute.plan_for((config or TrainingConfig()).distribute)  # issue 14
    with plan.scope():
        return distribute.run_reporting_lost_workers(plan, lambda: _train_in_scope(
            dataset, config, on_progress, stop_event, plan))


def _train_in_scope(dataset, config, on_progress, stop_event, plan):
    from .run_checks import check_training_run

    check_training_run(config, dataset)  # ranges and memory, before any work (issue 17)
    keras = keras_module()
    config = config or TrainingConfig()
    batch_chosen = config.batch_size is not None
    learning_rate_chosen = config.learning_rate is not None
    config = config.resolved()
    preset = for_time_budget(get_preset(config.preset), config.time_budget)
    scan = dataset if hasattr(dataset, "splits") else scan_dataset(dataset)
    train_items, val_items = split_train_validation(scan, config.validation_split, config.seed)
    num_classes = len(scan.class_names)
    size = config.image_size

    def decode_progress(done, total):
        if on_progress is not None:
            on_progress(TrainingProgress(kind="decode", step=done, steps=total,
                                         fraction_done=done / max(1, total),
                                         message=f"Reading images {done}/{total}"))

    start = time.perf_counter()
    try:
        x_train, y_train, skipped = decode_items(train_items, size, on_progress=decode_progress,
                                                 stop_event=stop_event)
        x_val, y_val, skipped_val = decode_items(val_items, size, stop_event=stop_event)
    except Cancelled:
        raise TrainingError("Training was stopped before it started; no model was made.") from None
    skipped = skipped + skipped_val
    present = set(np.unique(y_train).tolist())
    missing = [scan.class_names[i] for i in range(num_classes) if i not in present]
    if missing:
        raise TrainingError(
            f"No readable training image left for class(es) {', '.join(missing)} "
            "(files changed since the folder was scanned). Rescan the folder and try again."
        )

    if not batch_chosen:
        batch_size = fit_batch_size(config.batch_size, len(x_train))
        if not learning_rate_chosen and batch_size != config.batch_size:
            # Square-root scaling keeps the noise of SGD steps about the same.
            config = replace(config, learning_rate=config.learning_rate
                             * math.sqrt(batch_size / config.batch_size))
        config = replace(config, batch_size=batch_size)
    if plan.replicas > 1 and not learning_rate_chosen:  # the batch is per replica (issue 14)
        config = replace(config, learning_rate=config.learning_rate
                         * distribute.learning_rate_scale(plan.replicas))
    keras.utils.set_random_seed(config.seed)
    model = plan.float32_head(build_model(preset, num_classes, size, weights=config.weights))
    init_whitening(model, x_train)
    fitted = model  # what fit() trains: the model, or only its head on stored features
    train_x, train_y, val_x, augmentation = x_train, y_train, x_val, config.augmentation
    if preset.kind == "transfer" and config.cache_features:
        try:
            fitted, train_x, train_y, val_x = _features_for_head(
                keras, model, x_train, y_train, x_val, augmentation.flip, on_progress, stop_event)
        except Cancelled:
            raise TrainingError("Training was stopped before it started; no model was made.") from None
        augmentation = Augmentation(flip=False)
    class_weight = _class_weight(config.class_weights, y_train, num_classes)
    head_config = config
    if config.time_budget and preset.kind == "transfer" and config.fine_tune_epochs:
        head_config = replace(config, time_budget=config.time_budget * HEAD_SHARE_OF_BUDGET)
    fitted.compile(
        optimizer=_optimizer(keras, preset, config.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing),
        metrics=["accuracy"],
        jit_compile=preset.jit_compile,
    )
    run = _fit_phase(keras, fitted, train_x, train_y, val_x, y_val, num_classes, head_config, preset,
                     augmentation, class_weight, on_progress, stop_event)
    if run.best_weights is None:
        raise TrainingError("Training was stopped before the first epoch ended; no model was made.")
    fitted.set_weights(run.best_weights)
    if preset.bias_lr_scale != 1.0:
        # The saved file then names only stock Keras classes (see _scaled_bias_sgd).
        fitted.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy",
                       metrics=["accuracy"])
    history = run.history
    if (preset.kind == "transfer" and config.fine_tune_epochs and not run.stopped_by_user
            and not _stop_requested(stop_event)):
        time_left = config.time_budget - run.fit_seconds if config.time_budget else None
        run = _fine_tune(keras, model, x_train, y_train, x_val, y_val, num_classes, config, preset,
                         class_weight, run, time_left, on_progress, stop_event)
        history = {key: history.get(key, []) + run.history.get(key, [])
                   for key in dict.fromkeys([*history, *run.history])}
    seconds = time.perf_counter() - start
    best_val = run.best_value if len(x_val) else None
    metadata = {
        "format": "imgcls-desktop/1",
        "app_version": __version__,
        "class_names": list(scan.class_names),
        "image_size": [size, size],
        "preset": preset.name,
        "preprocessing": "RGB, resized to image_size (bilinear, no crop), float32 0-255 input",
        "training": {
            "config": config.to_dict(),
            "epochs_run": run.epoch,
            "best_epoch": run.best_epoch,
            "best_val_accuracy": best_val,
            "seconds": round(seconds, 2),
            "stop_reason": run.stop_reason,
            "history": history,
            "num_train_images": int(len(x_train)),
            "images_seen": int(run.total_steps_done * run.batch_size),
            "fit_seconds": round(run.fit_seconds, 2),
            "num_val_images": int(len(x_val)),
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
            "validation_files": [_relative(item.path, scan.root) for item in val_items],
        },
    }
    if preset.tta:
        metadata["test_time_augmentation"] = preset.tta
    metadata["calibration"] = _calibration(model, x_val, y_val, num_classes, preset.tta)
    if config.fine_tune_epochs and preset.kind == "transfer":
        metadata["training"]["fine_tuned_layers"] = run.fine_tuned_layers if run.phase else 0
    return TrainingResult(
        model=model, class_names=list(scan.class_names), history=history,
        epochs_run=run.epoch, best_epoch=run.best_epoch, best_val_accuracy=best_val,
        seconds=seconds, stopped_by_user=run.stopped_by_user, stop_reason=run.stop_reason,
        metadata=metadata, skipped_files=skipped,
    )


HEAD_SHARE_OF_BUDGET = 0.2  # of a time budget, when fine-tuning takes the rest
FINE_TUNE_FRACTION = 0.35  # of the backbone's layers, from the top, that fine-tuning trains
FINE_TUNE_LR_FACTOR = 0.01  # fine-tuning's learning rate, as a share of the preset's


def _stop_requested(stop_event):
    return stop_event is not None and stop_event.is_set()


def _fit_phase(keras, fitted, train_x, train_y, val_x, y_val, num_classes, config, preset,
               augmentation, class_weight, on_progress, stop_event, epoch_offset=0,
               best_value=-math.inf, phase=""):
    """One ``fit`` of a compiled model under our schedule, stop rules and callbacks.

    Returns the :class:`_Run`, whose ``best_weights`` are None when no epoch beat
    ``best_value``. Raises TrainingError when the loss diverged.
    """
    batch_size = min(config.batch_size, len(train_x))
    augmenter = build_augmenter(augmentation, config.seed)
    # Under a time budget the epoch count is open: the run stops itself when time is up.
    epochs = 100_000 if config.time_budget else config.epochs

    def train_dataset(shard=None, batch=batch_size):  # shard: one worker's part (issue 14)
        return make_dataset(train_x, train_y, num_classes, batch, shuffle=True,
                            augmenter=augmenter, seed=config.seed + epoch_offset, epochs=epochs,
                            alternating_flip=preset.alternating_flip, shard=shard)

    def val_dataset(batch=batch_size):
        return make_dataset(val_x, y_val, num_classes, batch, shuffle=False) if len(val_x) else None

    steps = math.ceil(len(train_x) / batch_size)
    plan = distribute.active_plan()
    if plan.distributed:  # issue 14: each worker its shard, batches per replica
        train_data, val_data, steps = plan.datasets(train_dataset, val_dataset if len(val_x) else None,
                                                    len(train_x), batch_size, class_weight)
        class_weight, batch_size = None, distribute.global_batch(batch_size, plan.replicas)
    else:
        train_data, val_data = train_dataset(), val_dataset()
    run = _Run(fitted, config, steps, batch_size, on_progress, stop_event,
               has_validation=val_data is not None, schedule=preset.schedule,
               epoch_offset=epoch_offset, best_value=best_value, phase=phase)
    run.keep_last = preset.keep_last_epoch and not phase  # the head's phase only
    callbacks = [_make_callbacks(keras)(run), _ValidationTimer(keras, run)]
    if preset.lookahead:
        from .averaging import lookahead_callback

        # First, so the averaged weights are in place before the run judges the epoch.
        callbacks.insert(0, lookahead_callback(fitted, run.fraction_done))
    callbacks.append(plan.stop_callback(keras))  # last: the chief's stop decision, everywhere
    fitted.fit(train_data, validation_data=val_data, epochs=epochs, steps_per_epoch=steps,
               callbacks=callbacks, verbose=0, class_weight=class_weight,
               shuffle=False)  # the tf.data pipeline shuffles
    run.fit_seconds = time.perf_counter() - run.start
    if run.diverged is not None:
        epoch, step = run.diverged
        raise TrainingError(
            f"Training diverged: the loss became NaN at epoch {epoch}, step {step}. "
            f"Lower the learning rate (it was {config.learning_rate:g}) and train again."
        )
    return run


def _fine_tune(keras, model, x_train, y_train, x_val, y_val, num_classes, config, preset,
               class_weight, head_run, time_left, on_progress, stop_event):
    """Train the top of a transfer model's backbone with its head, after the head alone.

    BatchNorm layers stay frozen (the backbone is called with ``training=False``, and their
    scales are not trained either): a few thousand photos would wreck ImageNet statistics.
    Returns the phase's :class:`_Run`; ``model`` keeps the head's weights unless an epoch
    of fine-tuning beat the head's best validation accuracy.
    """
    backbone = next(layer for layer in model.layers if hasattr(layer, "layers"))
    backbone.trainable = True
    cut = int(len(backbone.layers) * (1.0 - FINE_TUNE_FRACTION))
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= cut and type(layer).__name__ != "BatchNormalization"
    tuned = sum(1 for layer in backbone.layers if layer.trainable and layer.weights)
    head_only = model.get_weights()
    learning_rate = config.learning_rate * FINE_TUNE_LR_FACTOR
    phase_config = replace(config, epochs=config.fine_tune_epochs, learning_rate=learning_rate,
                           time_budget=max(1.0, time_left) if time_left is not None else None)
    model.compile(optimizer=_optimizer(keras, preset, learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing),
                  metrics=["accuracy"])
    try:
        run = _fit_phase(keras, model, x_train, y_train, x_val, y_val, num_classes, phase_config,
                         preset, config.augmentation, class_weight, on_progress, stop_event,
                         epoch_offset=head_run.epoch, best_value=head_run.best_value,
                         phase="fine-tuning")
    finally:
        backbone.trainable = False  # as built: the saved model says "frozen backbone"
    if run.best_weights is not None:
        model.set_weights(run.best_weights)
    else:
        # Nothing beat the head: back to the model before fine-tuning, and its best epoch.
        model.set_weights(head_only)
        run.best_value, run.best_epoch = head_run.best_value, head_run.best_epoch
    run.fine_tuned_layers = tuned
    return run


def _features_for_head(keras, model, x_train, y_train, x_val, flip, on_progress, stop_event,
                       batch_size=64):
    """The head of a frozen-backbone model as its own model, and the features it trains on.

    The frozen backbone gives the same features for an image every epoch, so computing
    them once turns every epoch after the first into a few matrix products. The head
    model shares its layers with ``model``: training it trains ``model``'s head.
    """
    tf = tensorflow_module()
    head_input_tensor = model.get_layer("head_dropout").input
    backbone = keras.Model(model.inputs[0], head_input_tensor)
    extract = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    jobs = [(x_train, False)] + ([(x_train, True)] if flip else []) + [(x_val, False)]
    total = sum(len(images) for images, _flipped in jobs)
    done = 0
    outputs = []
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
                on_progress(TrainingProgress(kind="decode", step=done, steps=total,
                                             fraction_done=done / total,
                                             message=f"Computing features {done}/{total}"))
        width = head_input_tensor.shape[-1]
        outputs.append(np.concatenate(parts) if parts else np.zeros((0, width), np.float32))
    train_features = np.concatenate(outputs[:-1])
    train_labels = np.concatenate([y_train] * (len(outputs) - 1))
    head_input = keras.Input(head_input_tensor.shape[1:], name="features")
    x = head_input
    present = {layer.name for layer in model.layers}
    for name in HEAD_LAYERS:
        if name in present:
            x = model.get_layer(name)(x)
    head = keras.Model(head_input, x, name="head")
    return head, train_features, train_labels, outputs[-1]


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


def _ValidationTimer(keras, run):
    """Measures how long validation takes, so a time budget leaves room for the last one."""

    class ValidationTimer(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            self.began = time.perf_counter()

        def on_test_end(self, logs=None):
            run.note_validation_time(time.perf_counter() - self.began)

    return ValidationTimer()


def _relative(path, root):
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
