"""The parts of the speed-run recipe, each checked for doing exactly what it claims.

Whole-pixel shifts, alternating flips, lookahead averaging, the BatchNorm-bias learning
rate, the learning-rate schedule, and flip + translate test-time augmentation given the
same way by the Predictor, calibration and an export.
"""

import numpy as np
import pytest

from imgcls_desktop.core.backend import keras_module, tensorflow_module
from imgcls_desktop.core.models import Augmentation


def _distinct_images(count, size=8, seed=0):
    """Images whose every pixel value is unique, so any move can be read off exactly."""
    rng = np.random.default_rng(seed)
    values = rng.permutation(count * size * size * 3).reshape(count, size, size, 3)
    return values.astype(np.float32)


def test_random_shift_moves_each_image_by_whole_pixels():
    from imgcls_desktop.core.pipeline import random_shift

    tf = tensorflow_module()
    images = _distinct_images(64, size=8)
    shifted = np.asarray(random_shift(tf.constant(images), 2 / 8, [3, 4]))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
    offsets = set()
    for image, out in zip(padded, shifted):
        matches = [(dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(image[dy:dy + 8, dx:dx + 8], out)]
        assert len(matches) == 1  # an exact crop: no interpolation, nothing blurred
        offsets.add(matches[0])
    assert len(offsets) >= 15  # and the offsets really vary (25 possible)


def _epoch_flips(images, epochs, alternating):
    """For each epoch, which images came out of the pipeline mirrored (by index)."""
    from imgcls_desktop.core.pipeline import build_augmenter, make_dataset

    augmenter = build_augmenter(Augmentation(flip=True), seed=5)
    labels = np.arange(len(images)) % 2
    dataset = make_dataset(images, labels, 2, batch_size=16, shuffle=True, augmenter=augmenter,
                           seed=5, epochs=epochs, alternating_flip=alternating)
    mirrored = images[:, :, ::-1]
    steps = len(images) // 16
    flips, seen = [], []
    for step, (batch, _labels) in enumerate(dataset):
        if step % steps == 0:
            flips.append({})
        for out in np.asarray(batch):
            index = next(i for i in range(len(images))
                         if np.array_equal(out, images[i]) or np.array_equal(out, mirrored[i]))
            flips[-1][index] = not np.array_equal(out, images[index])
            seen.append(index)
    return flips, seen


def test_alternating_flip_mirrors_every_image_on_one_epoch_of_each_two():
    images = _distinct_images(64)
    flips, seen = _epoch_flips(images, epochs=4, alternating=True)
    assert len(flips) == 4 and all(len(epoch) == 64 for epoch in flips)  # every image each epoch
    for first, second in (flips[0:2], flips[2:4]):
        assert all(first[i] != second[i] for i in range(64))
    assert flips[0] == flips[2]
    assert 20 <= sum(flips[0].values()) <= 44  # about half start mirrored
    assert seen[:64] != seen[64:128]  # each epoch has its own order


def test_random_flip_tosses_a_coin_per_image_and_epoch():
    images = _distinct_images(64)
    flips, _seen = _epoch_flips(images, epochs=2, alternating=False)
    same = sum(flips[0][i] == flips[1][i] for i in range(64))
    assert 16 <= same <= 48  # independent tosses agree about half the time


def test_lookahead_moves_the_weights_to_their_running_average():
    from imgcls_desktop.core.averaging import lookahead_callback

    keras = keras_module()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    callback = lookahead_callback(model, lambda: 1.0, every=1, decay_base=0.9, decay_power=3.0, start=0.5)
    first = [w.copy() for w in model.get_weights()]
    callback.on_train_batch_end(0)  # the average starts at the current weights
    second = [w + 1.0 for w in first]
    model.set_weights(second)
    callback.on_train_batch_end(1)
    for got, a, b in zip(model.get_weights(), first, second):
        np.testing.assert_allclose(got, a + (1 - 0.9) * (b - a), rtol=1e-5, atol=1e-6)

    early = lookahead_callback(model, lambda: 0.2, every=1, start=0.5)
    before = [w.copy() for w in model.get_weights()]
    early.on_train_batch_end(0)
    model.set_weights([w + 1.0 for w in before])
    early.on_train_batch_end(1)  # before `start`: plain training, nothing averaged
    for got, w in zip(model.get_weights(), before):
        np.testing.assert_allclose(got, w + 1.0)


def test_batchnorm_biases_take_the_scaled_learning_rate():
    import dataclasses

    from imgcls_desktop.core.fit_loop import optimizer
    from imgcls_desktop.core.models import PRESETS, build_fast_cnn

    keras = keras_module()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 32, 32, 3)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, 16), 3)
    changes = {}
    for scale in (1.0, 64.0):
        keras.utils.set_random_seed(1)
        model = build_fast_cnn(3, 32)
        preset = dataclasses.replace(PRESETS["fast_cnn"], bias_lr_scale=scale, weight_decay=0.0)
        model.compile(optimizer=optimizer(preset, 0.01), loss="categorical_crossentropy")
        before = {v.path: np.array(v.numpy()) for v in model.trainable_variables}
        model.train_on_batch(x, y)
        changes[scale] = {v.path: np.abs(np.array(v.numpy()) - before[v.path]).sum()
                          for v in model.trainable_variables}
    beta = "group2a_bn/beta"
    kernel = "group2a_conv/kernel"
    assert changes[1.0][beta] > 0
    assert changes[64.0][beta] / changes[1.0][beta] == pytest.approx(64.0, rel=1e-3)
    assert changes[64.0][kernel] == pytest.approx(changes[1.0][kernel], rel=1e-4)


def test_learning_rate_follows_the_presets_schedule():
    from types import SimpleNamespace

    from imgcls_desktop.core.fit_loop import FitRun, Phase
    from imgcls_desktop.core.job_clock import JobClock

    config = SimpleNamespace(learning_rate=2.0, epochs=10)
    preset = SimpleNamespace(schedule=(0.2, 0.25, 0.05), keep_last_epoch=False)
    phase = Phase(config=config, preset=preset, augmentation=None, class_weight=None, clock=JobClock(),
                  after_fit=lambda run: 0.0)
    run = FitRun(None, phase, 10, 32, has_validation=False)
    assert run.learning_rate(0.0) == pytest.approx(0.4)
    assert run.learning_rate(0.125) == pytest.approx(1.2)
    assert run.learning_rate(0.25) == pytest.approx(2.0)
    assert run.learning_rate(1.0) == pytest.approx(0.1)
    assert run.learning_rate(0.625) == pytest.approx(1.05)


@pytest.fixture(scope="module")
def translate_model():
    """A small untrained fast_cnn (its whitening set from the images it will see)."""
    from imgcls_desktop.core.models import build_fast_cnn, init_whitening

    keras_module().utils.set_random_seed(2)
    model = build_fast_cnn(3, 16, widths=(8, 8, 8))
    images = np.random.default_rng(3).uniform(0, 255, (5, 16, 16, 3)).astype(np.float32)
    init_whitening(model, images)
    return model, images


def _views_by_hand(images):
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    up_left, down_right = padded[:, :16, :16], padded[:, 2:, 2:]
    weighted = [(0.25, images), (0.125, up_left), (0.125, down_right)]
    return [(w, v) for w, view in weighted for v in (view, view[:, :, ::-1])]


def test_flip_translate_is_the_same_answer_in_predictor_calibration_and_export(translate_model):
    from imgcls_desktop.core.calibration import compute_logits, logits_model, softmax
    from imgcls_desktop.core.export import export_graph
    from imgcls_desktop.core.inference import Predictor
    from imgcls_desktop.core.model_io import LoadedModel

    model, images = translate_model
    logits_of = logits_model(model)
    by_hand = sum(w * np.asarray(logits_of(np.ascontiguousarray(v))) for w, v in _views_by_hand(images))
    plain = np.asarray(logits_of(images))
    assert np.abs(plain - by_hand).max() > 1e-3 * np.abs(by_hand).max()  # the views matter
    np.testing.assert_allclose(compute_logits(model, images, tta="flip_translate"), by_hand,
                               rtol=1e-4, atol=1e-4 * np.abs(by_hand).max())

    # A temperature near the logits' spread keeps the probabilities away from 0 and 1, so
    # comparing them means something.
    temperature = float(by_hand.std()) + 1e-3
    loaded = LoadedModel(model=model, path=None, class_names=["a", "b", "c"], image_size=(16, 16),
                         metadata={"test_time_augmentation": "flip_translate",
                                   "calibration": {"temperature": temperature, "unknown_threshold": 0.1}})
    expected = softmax(by_hand, temperature)
    assert expected.max() < 0.999 and expected.min() > 1e-4
    np.testing.assert_allclose(Predictor(loaded).probabilities(images), expected, atol=1e-5)
    graph, calibrated = export_graph(loaded)
    assert calibrated
    np.testing.assert_allclose(np.asarray(graph(images)), expected, atol=1e-5)


def test_a_longer_time_budget_buys_a_wider_fast_cnn():
    import dataclasses

    from imgcls_desktop.core.models import PRESETS, for_time_budget

    preset = dataclasses.replace(PRESETS["fast_cnn"], widths=(8, 8, 8),
                                 budget_widths=((100, (16, 16, 16)), (1000, (32, 32, 32))))
    assert for_time_budget(preset, None).widths == (8, 8, 8)  # epochs, not a budget
    assert for_time_budget(preset, 99).widths == (8, 8, 8)
    assert for_time_budget(preset, 100).widths == (16, 16, 16)
    assert for_time_budget(preset, 5000).widths == (32, 32, 32)


def test_training_under_a_budget_builds_the_budgets_widths(shapes_dataset, batch_clock):
    import dataclasses

    from imgcls_desktop.core.models import PRESETS
    from imgcls_desktop.core.training import TrainingConfig, train

    preset = dataclasses.replace(PRESETS["fast_cnn"], budget_widths=((2, (8, 16, 12)),))
    result = train(shapes_dataset, TrainingConfig(preset=preset, time_budget=3, seed=1))
    assert result.metadata["training"]["widths"] == [8, 16, 12]
    assert result.model.get_layer("group3b_conv").kernel.shape[-1] == 12


def test_fast_cnn_goes_wide_from_thirty_minutes():
    from imgcls_desktop.core.models import PRESETS, for_time_budget

    preset = PRESETS["fast_cnn"]
    assert for_time_budget(preset, 1799).widths == preset.widths == ()
    assert for_time_budget(preset, 1800).widths == (64, 192, 192)
