"""Training on tiny learnable data: real accuracy, stop, NaN, time budget, determinism."""

import threading

import numpy as np
import pytest

from imgcls_desktop.core.errors import DatasetError, TrainingError
from imgcls_desktop.core.training import TrainingConfig, train


def test_trained_model_learns_well_above_chance(trained):
    result, _path = trained
    # 3 classes: chance is 0.33.
    assert result.best_val_accuracy >= 0.9
    assert result.class_names == ["circle", "square", "triangle"]
    assert result.epochs_run >= 1
    assert len(result.history["loss"]) == result.epochs_run
    # The lowest loss, not the last: at this learning rate the last epochs can wobble.
    assert min(result.history["loss"][1:]) < 0.8 * result.history["loss"][0]


def test_metadata_records_split_and_settings(trained, shapes_split_dataset):
    result, _path = trained
    meta = result.metadata
    assert meta["class_names"] == ["circle", "square", "triangle"]
    assert meta["image_size"] == [32, 32]
    assert meta["preset"] == "small_cnn"
    assert meta["dataset"]["seed"] == 3
    val_files = meta["dataset"]["validation_files"]
    # 20% of 24 images per class, stratified.
    assert len(val_files) == 3 * round(24 * 0.2)
    assert all(name.startswith("train/") for name in val_files)


def test_progress_events_and_tutorial_preset(shapes_dataset):
    events = []
    result = train(shapes_dataset, TrainingConfig(preset="tutorial_cnn", epochs=2, seed=1),
                   on_progress=events.append)
    kinds = {event.kind for event in events}
    assert {"decode", "batch", "epoch"} <= kinds
    decoded = [e for e in events if e.kind == "decode"]
    assert decoded[-1].step == decoded[-1].steps > 0  # all read, whether decoded now or cached
    epoch_events = [e for e in events if e.kind == "epoch"]
    assert [e.epoch for e in epoch_events] == [1, 2]
    batch = next(e for e in events if e.kind == "batch")
    assert batch.steps > 0 and batch.images_per_second > 0 and "loss" in batch.metrics
    assert result.epochs_run == 2


def test_cached_images_still_report_reading(shapes_dataset):
    from imgcls_desktop.core import pipeline

    config = TrainingConfig(preset="tutorial_cnn", epochs=1, seed=4)
    events = []
    try:
        train(shapes_dataset, config)
        train(shapes_dataset, config, on_progress=events.append)  # decoded pixels come from the cache
    finally:
        pipeline.clear_cache()
    decoded = [e for e in events if e.kind == "decode"]
    assert len(decoded) == 1 and decoded[0].fraction_done == 1.0


def test_same_seed_gives_same_split_and_weights(shapes_dataset):
    config = TrainingConfig(preset="tutorial_cnn", epochs=1, seed=7)
    first = train(shapes_dataset, config)
    second = train(shapes_dataset, config)
    assert first.metadata["dataset"]["validation_files"] == second.metadata["dataset"]["validation_files"]
    np.testing.assert_allclose(first.model.get_weights()[0], second.model.get_weights()[0], atol=1e-5)


@pytest.mark.parametrize("preset", ["tutorial_cnn", "small_cnn", "fast_cnn"])
def test_the_best_epochs_weights_are_kept_not_the_last(shapes_dataset, monkeypatch, preset):
    """README: the best weights are kept (every from-scratch preset)."""
    from imgcls_desktop.core import fit_loop

    # Epoch 2 is reported best and epoch 3 worst, whatever the model really did: what is
    # under test is which weights come back.
    reported = {1: 0.5, 2: 0.9, 3: 0.1}
    weights_at = {}
    real_epoch_ended = fit_loop.FitRun.epoch_ended

    def epoch_ended(run, epoch, logs):
        logs = {**logs, "val_accuracy": reported[run.epoch]}
        weights_at[run.epoch] = [np.array(w) for w in run.model.get_weights()]
        return real_epoch_ended(run, epoch, logs)

    monkeypatch.setattr(fit_loop.FitRun, "epoch_ended", epoch_ended)
    result = train(shapes_dataset, TrainingConfig(preset=preset, epochs=3, seed=1, early_stopping_patience=None))
    assert result.epochs_run == 3 and result.best_epoch == 2
    assert result.best_val_accuracy == pytest.approx(0.9)
    kept = result.model.get_weights()
    assert len(kept) == len(weights_at[2])
    for best, returned in zip(weights_at[2], kept):
        np.testing.assert_array_equal(best, returned)
    assert any(not np.array_equal(last, returned) for last, returned in zip(weights_at[3], kept))


def test_stop_event_stops_within_a_batch(shapes_dataset):
    stop = threading.Event()
    batches = []

    def on_progress(event):
        if event.kind == "batch":
            batches.append(event)
            stop.set()

    result = train(shapes_dataset, TrainingConfig(preset="tutorial_cnn", epochs=50, batch_size=8),
                   on_progress=on_progress, stop_event=stop)
    assert result.stopped_by_user
    assert result.epochs_run == 1
    assert len(batches) == 1  # the batch that asked for the stop was the last one
    assert result.model is not None


def test_nan_loss_stops_with_a_clear_message(shapes_dataset):
    config = TrainingConfig(preset="tutorial_cnn", epochs=3, learning_rate=1e12)
    with pytest.raises(TrainingError, match="diverged.*[Ll]ower the learning rate"):
        train(shapes_dataset, config)


def test_time_budget_stops_at_the_budget(shapes_dataset, batch_clock):
    # One second per batch (batch_clock): the fit's share of the budget ends after batch 4,
    # on any machine; the rest is set aside for calibration and the save.
    from imgcls_desktop.core.job_clock import AFTER_FIT_FIXED_SECONDS

    batches = []
    config = TrainingConfig(preset="tutorial_cnn", time_budget=AFTER_FIT_FIXED_SECONDS + 4, batch_size=8, seed=2,
                            validation_split=0.0)  # no calibration pass to plan for
    result = train(shapes_dataset, config,
                   on_progress=lambda event: batches.append(event) if event.kind == "batch" else None)
    assert result.stop_reason == "time budget reached"
    assert len(batches) == 4 and result.epochs_run == 1  # 7 steps in an epoch
    assert [round(event.fraction_done, 6) for event in batches] == [0.25, 0.5, 0.75, 1.0]
    # The ETA is the job's: at the last batch, the time set aside for what follows the fit.
    assert batches[-1].seconds_left == pytest.approx(AFTER_FIT_FIXED_SECONDS)
    # The learning rate schedule is fitted to the budget: it ends near zero.
    peak = result.metadata["training"]["config"]["learning_rate"]
    assert result.history["learning_rate"][-1] < 0.2 * peak
    assert result.metadata["training"]["timings"]["fit"] == pytest.approx(4.0)


def test_time_budget_counts_from_when_the_job_started(shapes_dataset, batch_clock):
    # The user pressed Train 2 s before train() was called (the window handing the job to
    # the engine, say), and reading the images took 1 s more: of a budget of 3 s after the
    # fit + 6 s, 3 are left for batches.
    from imgcls_desktop.core.job_clock import AFTER_FIT_FIXED_SECONDS

    batch_clock.now = 100.0
    decoding = []

    def on_progress(event):
        if event.kind == "decode" and not decoding:
            decoding.append(event)
            batch_clock.now += 1.0

    config = TrainingConfig(preset="tutorial_cnn", time_budget=AFTER_FIT_FIXED_SECONDS + 6, batch_size=8, seed=2,
                            validation_split=0.0)
    result = train(shapes_dataset, config, on_progress=on_progress, started_at=98.0)
    assert decoding and result.stop_reason == "time budget reached"
    assert result.metadata["training"]["images_seen"] == 3 * 8
    timings = result.metadata["training"]["timings"]
    assert timings["before_fit"] == pytest.approx(3.0) and timings["fit"] == pytest.approx(3.0)


def test_the_work_after_the_fit_is_planned_from_rates_measured_in_the_job():
    # Calibration runs every validation image through each TTA view: the plan multiplies the
    # measured validation time by the views, and adds the fixed costs and the save.
    from types import SimpleNamespace

    from imgcls_desktop.core.job_clock import AFTER_FIT_FIXED_SECONDS, EVALUATION_VIEW_FACTOR, save_seconds
    from imgcls_desktop.core.training import _AfterFit

    plan = _AfterFit(num_val=100, views=6, parameters=1_000_000, backbone_rate=None, calibrate_on_features=False)
    run = SimpleNamespace(validation_seconds=0.5, start=0.0, total_steps_done=0, batch_size=8)
    assert plan(run) == pytest.approx(AFTER_FIT_FIXED_SECONDS + save_seconds(1_000_000) + 6 * 0.5)
    # The caller evaluating 1,000 test images afterwards: decoding them, and the model on each view.
    evaluated = _AfterFit(num_val=100, views=6, parameters=0, backbone_rate=None, calibrate_on_features=False,
                          num_evaluated=1000, decode_rate=500.0)
    assert evaluated(run) == pytest.approx(AFTER_FIT_FIXED_SECONDS + 6 * 0.5
                                           + 1000 * (EVALUATION_VIEW_FACTOR * 6 * 0.005 + 1 / 500.0))
    # A fine-tuned transfer model is calibrated through its backbone, at the backbone's rate.
    tuned = _AfterFit(num_val=100, views=1, parameters=0, backbone_rate=50.0, calibrate_on_features=False)
    assert tuned(run) == pytest.approx(AFTER_FIT_FIXED_SECONDS + 100 / 50.0)
    # A head calibrated on stored features costs what its validation pass cost.
    head = _AfterFit(num_val=100, views=1, parameters=0, backbone_rate=50.0, calibrate_on_features=True)
    assert head(run) == pytest.approx(AFTER_FIT_FIXED_SECONDS + 0.5)
    # Before any validation pass: a third of the training rate (a forward pass against a step).
    early = SimpleNamespace(validation_seconds=None, start=0.0, total_steps_done=10, batch_size=8)
    import imgcls_desktop.core.training as training

    real_time = training.time
    training.time = SimpleNamespace(monotonic=lambda: 12.0)
    try:
        assert plan(early) == pytest.approx(AFTER_FIT_FIXED_SECONDS + save_seconds(1_000_000)
                                            + 100 * 6 * 12.0 / (3 * 80))
    finally:
        training.time = real_time


def test_refuses_a_single_class(tmp_path):
    from synthetic import make_shapes_dataset

    make_shapes_dataset(tmp_path, num_classes=1, per_class=5)
    with pytest.raises(DatasetError):
        train(tmp_path, TrainingConfig(epochs=1))


def test_batch_size_fits_small_datasets():
    from imgcls_desktop.core.training import fit_batch_size

    assert fit_batch_size(128, 50_000) == 128
    assert fit_batch_size(128, 400) == 16  # 400 / 32 would still be < 16 steps
    assert fit_batch_size(128, 1000) == 32
    assert fit_batch_size(32, 100) == 16  # never below 16


def test_unset_batch_size_and_learning_rate_adapt(shapes_dataset):
    result = train(shapes_dataset, TrainingConfig(preset="small_cnn", epochs=1, seed=1))
    config = result.metadata["training"]["config"]
    assert config["batch_size"] == 16  # 60 training images
    assert abs(config["learning_rate"] - 0.05 * (16 / 128) ** 0.5) < 1e-9
    chosen = train(shapes_dataset, TrainingConfig(preset="small_cnn", epochs=1, batch_size=32,
                                                  learning_rate=0.01))
    assert chosen.metadata["training"]["config"]["batch_size"] == 32
    assert chosen.metadata["training"]["config"]["learning_rate"] == 0.01


def test_a_heads_calibration_on_stored_features_is_the_full_models():
    # Transfer models are calibrated on the validation images' stored features, through the
    # head alone: it must give what the backbone and head together give on the images.
    from imgcls_desktop.core.backend import keras_module
    from imgcls_desktop.core.calibration import calibrate
    from imgcls_desktop.core.head_features import head_features
    from imgcls_desktop.core.models import build_model

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (24, 64, 64, 3)).astype(np.uint8)
    labels = np.arange(24) % 3
    keras_module().utils.set_random_seed(3)
    model = build_model("efficientnet_lite0", 3, 64, weights=None)
    features = head_features(model, images[:4], labels[:4], images, flip=False)
    on_features = calibrate(features.head, features.val_x, labels)
    on_images = calibrate(model, images, labels)
    assert on_features["temperature"] == pytest.approx(on_images["temperature"], rel=1e-3)
    assert on_features["unknown_threshold"] == pytest.approx(on_images["unknown_threshold"], abs=1e-3)
    assert features.images_per_second > 0
