"""One ``fit`` under our schedule, stop rules and callbacks, and fine-tuning after it.

Imported when training starts, never before: it imports Keras at module level so that
the callbacks are plain top-level classes, as Keras writes its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import distribute
from .backend import keras_module
from .errors import TrainingError
from .pipeline import build_augmenter, make_dataset

if TYPE_CHECKING:
    from .models import Preset

keras: Any = keras_module()  # configures TensorFlow's environment first, then loads Keras

FINE_TUNE_FRACTION = 0.35  # of the backbone's layers, from the top, that fine-tuning trains
FINE_TUNE_LR_FACTOR = 0.01  # fine-tuning's learning rate, as a share of the preset's


@dataclass
class Phase:
    """What one fit phase needs besides the model and its data.

    Attributes:
        config: The resolved ``TrainingConfig`` of the job (this phase's epochs and rate).
        preset: The ``models.Preset`` being trained.
        augmentation: The ``Augmentation`` applied to this phase's training batches.
        class_weight: Keras ``class_weight``, or None.
        clock: The job's ``JobClock``; a budget ends the phase, not the epochs.
        after_fit: Seconds the job still needs once this phase ends (calibration, save),
            called with the running :class:`FitRun` so it can use rates measured so far.
        share: Of the time the job has left for fitting, the part this phase may use
            (a transfer model's head takes a fifth when fine-tuning follows).
        on_progress: Called with ``TrainingProgress`` events.
        stop_event: A ``threading.Event``; set, the phase ends after the current batch.
        epoch_offset: Epochs of an earlier phase: numbering goes on from there.
        best_value: Only weights whose monitored value beats this are kept.
        name: Shown in progress messages ("fine-tuning"); empty for the first phase.
    """

    config: Any
    preset: Any
    augmentation: Any
    class_weight: dict | None
    clock: Any
    after_fit: Callable[[FitRun], float]
    share: float = 1.0
    on_progress: Callable | None = None
    stop_event: Any = None
    epoch_offset: int = 0
    best_value: float = -math.inf
    name: str = ""


class FitRun:
    """State of one fit: the schedule, the stop rules, the best weights, the events."""

    def __init__(self, model: Any, phase: Phase, steps_per_epoch: int, batch_size: int,
                 has_validation: bool) -> None:
        self.model = model
        self.phase = phase
        self.config = phase.config
        self.steps = steps_per_epoch
        self.batch_size = batch_size
        self.monitor = "val_accuracy" if has_validation else "accuracy"
        self.start = time.monotonic()
        self.epoch_start = self.start
        self.epoch = 0
        self.best_value = phase.best_value
        self.best_epoch = 0
        self.best_weights: list | None = None
        self.epochs_without_improvement = 0
        self.history: dict[str, list] = {}
        self.stopped_by_user = False
        self.diverged: tuple[int, int] | None = None
        self.stop_reason = "finished"
        self.tail_seconds = 0.0  # the longest validation pass, reserved for the last one
        self.validation_seconds: float | None = None  # the latest validation pass
        self.total_steps_done = 0
        self.fit_seconds = 0.0
        self.fine_tuned_layers = 0
        self.peak_lr = self.config.learning_rate
        # Preset.keep_last_epoch: no early stopping, the last epoch wins (the head's phase only).
        self.keep_last = phase.preset.keep_last_epoch and not phase.name

    # -- schedule ---------------------------------------------------------------
    @property
    def timed(self) -> bool:
        """Whether the job has a time budget (it ends the phase, not the epochs)."""
        return self.phase.clock.deadline is not None

    def end_time(self) -> float:
        """``time.monotonic()`` at which this phase's last batch must end (timed jobs only).

        Returns:
            The monotonic time: the phase's share of what the job has left for fitting,
            less the longest validation pass seen.
        """
        job_end = self.phase.clock.deadline - self.phase.after_fit(self)
        return self.start + self.phase.share * (job_end - self.start) - self.tail_seconds

    def fraction_done(self) -> float:
        """How much of this phase is done: by the clock under a budget, else by steps.

        Returns:
            The fraction, 0-1.
        """
        if self.timed:
            span = max(1e-6, self.end_time() - self.start)
            return min(1.0, max(0.0, time.monotonic() - self.start) / span)
        return min(1.0, self.total_steps_done / max(1, self.steps * self.config.epochs))

    def learning_rate(self, fraction: float) -> float:
        """The one-cycle schedule's learning rate at ``fraction`` of the phase.

        Args:
            fraction: How much of the phase is done, 0-1.

        Returns:
            The learning rate.
        """
        # One cycle fitted to the whole run (epochs or time budget): linear from `start` up
        # to the peak at `peak_at`, then linear down to `end`, all fractions of the peak.
        start, peak_at, end = self.phase.preset.schedule
        if fraction < peak_at:
            return self.peak_lr * (start + (1.0 - start) * fraction / peak_at)
        fraction = min(1.0, fraction)
        return self.peak_lr * (1.0 + (end - 1.0) * (fraction - peak_at) / (1.0 - peak_at))

    def set_learning_rate(self) -> None:
        """Set the optimizer's rate for now (the chief's clock under multi-worker)."""
        fraction = distribute.active_plan().chief_value(self.fraction_done())  # issue 14
        self.model.optimizer.learning_rate.assign(self.learning_rate(fraction))

    def seconds_left(self, fraction: float) -> float | None:
        """Seconds until the job's model is saved: the deadline, or a fit ETA and what follows.

        Args:
            fraction: How much of the phase is done, 0-1.

        Returns:
            The seconds, or None when nothing is done yet to estimate from.
        """
        clock = self.phase.clock
        if self.timed:
            return clock.seconds_left()
        if fraction <= 0:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed / fraction - elapsed + self.phase.after_fit(self)

    # -- events -----------------------------------------------------------------
    def epoch_began(self, epoch: int) -> None:
        """Keras began an epoch: number it on from the phase's offset and set the rate.

        Args:
            epoch: The epoch index of this fit (0-based).
        """
        self.epoch = self.phase.epoch_offset + epoch + 1
        self.epoch_start = time.monotonic()
        self.set_learning_rate()

    def batch_ended(self, batch: int, logs: dict) -> None:
        """Keras ended ``batch``: check divergence, the budget and Stop; report progress.

        Args:
            batch: The batch index in the epoch (0-based).
            logs: Keras' batch logs (``loss``, ``accuracy``).
        """
        now = time.monotonic()
        self.total_steps_done += 1
        loss = logs.get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = (self.epoch, batch + 1)
            self.model.stop_training = True
            return
        fraction = self.fraction_done()
        if self.timed and fraction >= 1.0:
            self.stop_reason = "time budget reached"
            self.model.stop_training = True
        self.set_learning_rate()
        elapsed_epoch = now - self.epoch_start
        images_per_second = (batch + 1) * self.batch_size / max(elapsed_epoch, 1e-6)
        self._emit("batch", step=batch + 1, metrics={k: float(v) for k, v in logs.items()},
                   images_per_second=images_per_second, fraction=fraction)
        # Checked after the event, so a stop asked for while handling it ends the fit now.
        stop_event = self.phase.stop_event
        if stop_event is not None and stop_event.is_set():
            self.stopped_by_user = True
            self.stop_reason = "stopped by user"
            self.model.stop_training = True

    def epoch_ended(self, epoch: int, logs: dict) -> None:
        """Keras ended ``epoch``: record history, keep the best weights, early stopping.

        Args:
            epoch: The epoch index of this fit (0-based).
            logs: Keras' epoch logs (training and validation metrics).
        """
        logs = {k: float(v) for k, v in logs.items() if k != "learning_rate"}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        self.history.setdefault("learning_rate", []).append(float(np.asarray(self.model.optimizer.learning_rate)))
        value = logs.get(self.monitor, logs.get("accuracy", -math.inf))
        if self.diverged is None and (self.keep_last or value > self.best_value):
            self.best_value = value
            self.best_epoch = self.epoch
            # A copy in memory: restoring it is instant and never touches the disk.
            self.best_weights = [w.copy() for w in self.model.get_weights()]
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        patience = None if self.keep_last else self.config.early_stopping_patience
        if patience and not self.timed and self.epochs_without_improvement >= patience:
            self.stop_reason = f"early stopping: no improvement for {patience} epochs"
            self.model.stop_training = True
        self._emit("epoch", step=self.steps, metrics=logs, fraction=self.fraction_done())

    def note_validation_time(self, seconds: float) -> None:
        """Note a validation pass's time: the longest one is reserved for the last pass.

        Args:
            seconds: How long the pass took.
        """
        self.validation_seconds = seconds
        self.tail_seconds = max(self.tail_seconds, seconds)

    def _emit(self, kind, step, metrics, images_per_second=0.0, fraction=0.0):
        if self.phase.on_progress is None:
            return
        from .training import TrainingProgress

        self.phase.on_progress(TrainingProgress(
            kind=kind, epoch=self.epoch,
            epochs=None if self.timed else self.phase.epoch_offset + self.config.epochs,
            step=step, steps=self.steps, metrics=metrics,
            images_per_second=images_per_second, seconds_elapsed=self.phase.clock.elapsed(),
            seconds_left=self.seconds_left(fraction), fraction_done=fraction, message=self.phase.name,
        ))


class ProgressForwarder(keras.callbacks.Callback):
    """Hands Keras' batch and epoch events to a :class:`FitRun`."""

    def __init__(self, run: FitRun) -> None:
        super().__init__()
        self.run = run

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Keras' hook: :meth:`FitRun.batch_ended`."""
        self.run.batch_ended(batch, logs or {})

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Keras' hook: :meth:`FitRun.epoch_began`."""
        self.run.epoch_began(epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Keras' hook: :meth:`FitRun.epoch_ended`."""
        self.run.epoch_ended(epoch, logs or {})


class ValidationTimer(keras.callbacks.Callback):
    """Times each validation pass, so a time budget leaves room for the last one."""

    def __init__(self, run: FitRun) -> None:
        super().__init__()
        self.run = run
        self.began = 0.0

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Keras' hook: a validation pass begins."""
        self.began = time.monotonic()

    def on_test_end(self, logs: dict | None = None) -> None:
        """Keras' hook: a validation pass ended (:meth:`FitRun.note_validation_time`)."""
        self.run.note_validation_time(time.monotonic() - self.began)


def optimizer(preset: Preset, learning_rate: float) -> Any:
    """The preset's optimizer at ``learning_rate``.

    Args:
        preset: Its ``optimizer``, ``momentum``, ``weight_decay`` and ``bias_lr_scale``
            decide.
        learning_rate: The initial rate (the schedule sets it every step).

    Returns:
        A Keras optimizer: SGD (Nesterov), :class:`ScaledBiasSGD` or Adam.
    """
    if preset.optimizer == "sgd":
        arguments = dict(learning_rate=learning_rate, momentum=preset.momentum, nesterov=True,
                         weight_decay=preset.weight_decay)
        if preset.bias_lr_scale != 1.0:
            return ScaledBiasSGD(bias_lr_scale=preset.bias_lr_scale, **arguments)
        return keras.optimizers.SGD(**arguments)
    return keras.optimizers.Adam(learning_rate=learning_rate)


class ScaledBiasSGD(keras.optimizers.SGD):
    """SGD whose BatchNorm biases take ``bias_lr_scale`` times the learning rate.

    BatchNorm without a learnt scale leaves its bias as each channel's only free
    parameter; airbench trains it 64x faster. Weight decay keeps the base rate.
    The model is recompiled with plain SGD after training, so no file names this class.
    """

    def __init__(self, bias_lr_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.bias_lr_scale = bias_lr_scale
        self._scaled: set = set()

    def build(self, variables: list[Any]) -> None:
        """Keras' hook: build the slots, and note which variables are BatchNorm biases."""
        super().build(variables)
        # update_step sees the backend's variables, which lack Keras' paths: match by key.
        self._scaled = {self._var_key(v) for v in variables if "_bn/" in v.path and v.path.endswith("beta")}

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Keras' hook: SGD's step, at ``bias_lr_scale`` times the rate for BatchNorm biases."""
        if self._var_key(variable) in self._scaled:
            learning_rate = learning_rate * self.bias_lr_scale
        super().update_step(gradient, variable, learning_rate)


def compile_for_training(model: Any, preset: Preset, learning_rate: float) -> None:
    """Compile ``model`` with the preset's optimizer, loss and label smoothing.

    Args:
        model: The Keras model.
        preset: The preset being trained.
        learning_rate: The initial learning rate.
    """
    model.compile(
        optimizer=optimizer(preset, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing),
        metrics=["accuracy"],
        jit_compile=preset.jit_compile,
    )


def fit_phase(fitted: Any, train_x: Any, train_y: np.ndarray, val_x: Any, y_val: np.ndarray, num_classes: int,
              phase: Phase) -> FitRun:
    """One ``fit`` of a compiled model under our schedule, stop rules and callbacks.

    Args:
        fitted: The compiled Keras model.
        train_x: Training images (an array or an on-disk image set of :mod:`core.image_cache`).
        train_y: Their integer labels.
        val_x: Validation images (may be empty).
        y_val: Their integer labels.
        num_classes: Classes of the model.
        phase: What else the phase needs.

    Returns:
        The :class:`FitRun`, whose ``best_weights`` are None when no epoch beat
        ``phase.best_value``.

    Raises:
        TrainingError: The loss diverged.
    """
    config, preset = phase.config, phase.preset
    batch_size = min(config.batch_size, len(train_x))
    augmenter = build_augmenter(phase.augmentation, config.seed)
    # Under a time budget the epoch count is open: the run stops itself when time is up.
    epochs = 100_000 if phase.clock.deadline is not None else config.epochs

    def train_dataset(shard=None, batch=batch_size):  # shard: one worker's part (issue 14)
        return make_dataset(train_x, train_y, num_classes, batch, shuffle=True, augmenter=augmenter,
                            seed=config.seed + phase.epoch_offset, epochs=epochs,
                            alternating_flip=preset.alternating_flip, shard=shard)

    def val_dataset(batch=batch_size):
        return make_dataset(val_x, y_val, num_classes, batch, shuffle=False) if len(val_x) else None

    steps = math.ceil(len(train_x) / batch_size)
    class_weight = phase.class_weight
    plan = distribute.active_plan()
    if plan.distributed:  # issue 14: each worker its shard, batches per replica
        train_data, val_data, steps = plan.datasets(train_dataset, val_dataset if len(val_x) else None,
                                                    len(train_x), batch_size, class_weight)
        class_weight, batch_size = None, distribute.global_batch(batch_size, plan.replicas)
    else:
        train_data, val_data = train_dataset(), val_dataset()
    run = FitRun(fitted, phase, steps, batch_size, has_validation=val_data is not None)
    callbacks = [ProgressForwarder(run), ValidationTimer(run)]
    if preset.lookahead:
        from .averaging import lookahead_callback

        # First, so the averaged weights are in place before the run judges the epoch.
        callbacks.insert(0, lookahead_callback(fitted, run.fraction_done))
    callbacks.append(plan.stop_callback(keras))  # last: the chief's stop decision, everywhere
    fitted.fit(train_data, validation_data=val_data, epochs=epochs, steps_per_epoch=steps,
               callbacks=callbacks, verbose=0, class_weight=class_weight,
               shuffle=False)  # the tf.data pipeline shuffles
    run.fit_seconds = time.monotonic() - run.start
    if run.diverged is not None:
        epoch, step = run.diverged
        raise TrainingError(
            f"Training diverged: the loss became NaN at epoch {epoch}, step {step}. "
            f"Lower the learning rate (it was {config.learning_rate:g}) and train again."
        )
    return run


def fine_tune(model: Any, x_train: Any, y_train: np.ndarray, x_val: Any, y_val: np.ndarray, num_classes: int,
              head_run: FitRun, phase: Phase) -> FitRun:
    """Train the top of a transfer model's backbone with its head, after the head alone.

    BatchNorm layers stay frozen (the backbone is called with ``training=False``, and their
    scales are not trained either): a few thousand photos would wreck ImageNet statistics.

    Args:
        model: The transfer model (compiled again here).
        x_train: Training images.
        y_train: Their integer labels.
        x_val: Validation images.
        y_val: Their integer labels.
        num_classes: Classes of the model.
        head_run: The head's phase: fine-tuning numbers its epochs on from there and must
            beat its best value.
        phase: The head's phase settings, changed here for fine-tuning.

    Returns:
        The phase's :class:`FitRun`; ``model`` keeps the head's weights unless an epoch of
        fine-tuning beat the head's best validation accuracy.

    Raises:
        TrainingError: The loss diverged.
    """
    config, preset = phase.config, phase.preset
    backbone = next(layer for layer in model.layers if hasattr(layer, "layers"))
    backbone.trainable = True
    cut = int(len(backbone.layers) * (1.0 - FINE_TUNE_FRACTION))
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= cut and type(layer).__name__ != "BatchNormalization"
    tuned = sum(1 for layer in backbone.layers if layer.trainable and layer.weights)
    head_only = model.get_weights()
    learning_rate = config.learning_rate * FINE_TUNE_LR_FACTOR
    phase = replace(phase, config=replace(config, epochs=config.fine_tune_epochs, learning_rate=learning_rate),
                    augmentation=config.augmentation, epoch_offset=head_run.epoch,
                    best_value=head_run.best_value, name="fine-tuning", share=1.0)
    model.compile(optimizer=optimizer(preset, learning_rate),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=preset.label_smoothing),
                  metrics=["accuracy"])
    try:
        run = fit_phase(model, x_train, y_train, x_val, y_val, num_classes, phase)
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
