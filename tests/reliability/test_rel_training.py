"""Faults during training and prediction: Stop at random batches, exceptions inside the fit,
NaN loss, and a model whose output is NaN or infinite.

Rows "Stop mid-epoch", "exception in the worker", "loss becomes NaN" (Training faults) and
"model output NaN/Inf" (Prediction input) of ../shared/docs/reliability.md.
"""

import threading

import numpy as np
import pytest
from hostile_inputs import write_image

from imgcls_desktop.core import fit_loop
from imgcls_desktop.core.errors import TrainingError
from imgcls_desktop.core.inference import Predictor
from imgcls_desktop.core.model_io import LoadedModel, from_training, load_model, save_model
from imgcls_desktop.core.training import TrainingConfig, train
from tests.synthetic import make_shapes_dataset

STEPS_PER_EPOCH = 4  # 2 classes x 10 images, 20% validation -> 16 training images, batch 4
EPOCHS = 3


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    return make_shapes_dataset(tmp_path_factory.mktemp("small"), num_classes=2, per_class=10, size=32, seed=9)


def _config(**overrides):
    values = dict(preset="tutorial_cnn", epochs=EPOCHS, batch_size=4, validation_split=0.2, seed=5)
    values.update(overrides)
    return TrainingConfig(**values)


def test_stop_at_random_batches_always_returns_a_usable_model(small_dataset, tmp_path):
    rng = np.random.default_rng(1234)
    stops = sorted(int(k) for k in rng.choice(STEPS_PER_EPOCH * EPOCHS, size=3, replace=False))
    images = sorted(small_dataset.rglob("*.png"))[:4]
    for stop_after in stops:
        stop = threading.Event()
        batches = []

        def on_progress(event, stop=stop, batches=batches, stop_after=stop_after):
            if event.kind == "batch":
                batches.append(event)
                if len(batches) == stop_after + 1:
                    stop.set()  # as the Stop button does, from another thread's point of view

        result = train(small_dataset, _config(), on_progress=on_progress, stop_event=stop)
        assert result.stopped_by_user and result.stop_reason == "stopped by user"
        assert len(batches) == stop_after + 1, "did not stop within one batch"
        assert result.epochs_run == stop_after // STEPS_PER_EPOCH + 1
        assert 1 <= result.best_epoch <= result.epochs_run
        predictions = Predictor(from_training(result)).predict_paths(images)
        assert all(p.ok and np.isfinite(p.probabilities).all() for p in predictions)
        path = save_model(result.model, tmp_path / f"stopped_{stop_after}.keras", result.metadata)
        assert load_model(path).class_names == ["circle", "square"]


@pytest.mark.parametrize("pixels_cached", [False, True])
def test_stop_before_the_first_batch_makes_no_model_and_says_so(tmp_path, pixels_cached):
    from imgcls_desktop.core import pipeline
    from imgcls_desktop.core.dataset import scan_dataset, split_train_validation

    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=10, size=32, seed=9)
    pipeline.clear_cache()
    if pixels_cached:  # a retrain on the same folder: the decode step is skipped
        scan = scan_dataset(root)
        train_items, val_items = split_train_validation(scan, 0.2, 5)
        pipeline.decode_items(train_items, 32)
        pipeline.decode_items(val_items, 32)
    stop = threading.Event()
    stop.set()
    batches = []
    with pytest.raises(TrainingError, match="stopped before it started"):
        train(root, _config(epochs=1), stop_event=stop,
              on_progress=lambda event: batches.append(event) if event.kind == "batch" else None)
    assert batches == []


class DiskVanished(Exception):
    pass


def test_exception_inside_the_fit_propagates_unchanged(small_dataset):
    seen = []

    def on_progress(event):
        if event.kind == "batch":
            seen.append(event.step)
            if len(seen) == 2:
                raise DiskVanished("the USB disk went away")

    with pytest.raises(DiskVanished, match="USB disk"):
        train(small_dataset, _config(epochs=2), on_progress=on_progress)
    assert seen == [1, 2]


def test_out_of_memory_while_building_the_pipeline_propagates(small_dataset, monkeypatch):
    def no_memory(*args, **kwargs):
        raise MemoryError("simulated: not enough memory for the input pipeline")

    monkeypatch.setattr(fit_loop, "make_dataset", no_memory)
    with pytest.raises(MemoryError, match="simulated"):
        train(small_dataset, _config(epochs=1))


def test_nan_loss_says_diverged_and_lower_the_learning_rate(small_dataset):
    with pytest.raises(TrainingError) as caught:
        train(small_dataset, _config(epochs=2, learning_rate=1e12))
    message = str(caught.value)
    assert "diverged" in message.lower() and "lower the learning rate" in message.lower()
    assert "1e+12" in message


def _broken_model(value, size=8, num_classes=2):
    """A model whose output is NaN (value=nan) or infinite (value=inf) for any input."""
    from imgcls_desktop.core.backend import keras_module

    keras = keras_module()
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Flatten()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(num_classes)(x))
    kernel, bias = model.get_weights()
    model.set_weights([np.full_like(kernel, value), np.full_like(bias, value)])
    return model


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_invalid_model_output_is_a_per_file_error_without_label(tmp_path, value):
    good = write_image(tmp_path / "good.png", (200, 100, 50), size=(12, 12))
    empty = tmp_path / "empty.jpg"
    empty.touch()
    loaded = LoadedModel(model=_broken_model(value), path=None, class_names=["cat", "dog"],
                         image_size=(8, 8), metadata={})
    results = Predictor(loaded).predict_paths([good, empty])
    assert [r.path for r in results] == [str(good), str(empty)]
    assert results[0].error == "model produced invalid output (NaN or infinity)"
    assert results[0].label is None and results[0].confidence is None and results[0].top_k == []
    assert results[0].to_dict() == {"path": str(good), "error": results[0].error}
    assert results[1].error == "empty file (0 bytes)"


def test_cli_predict_with_invalid_output_names_each_file(tmp_path, capsys):
    from imgcls_desktop.cli import main

    model_path = save_model(_broken_model(np.nan), tmp_path / "nan.keras", {"class_names": ["cat", "dog"]})
    good = write_image(tmp_path / "images" / "good.png", size=(12, 12))
    code = main(["predict", str(model_path), str(good)])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"imgcls: {good}: model produced invalid output" in err
    assert "cat" not in out and "dog" not in out
