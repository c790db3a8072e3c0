"""The fast_cnn recipe: whitening from data, identity init, flip + translate test-time augmentation everywhere."""

import numpy as np
import pytest

from imgcls_desktop.core.backend import keras_module
from imgcls_desktop.core.models import build_fast_cnn, init_whitening


@pytest.fixture(scope="module")
def fast_trained(shapes_split_dataset, tmp_path_factory):
    from imgcls_desktop.core.model_io import load_model, save_model
    from imgcls_desktop.core.training import TrainingConfig, train

    result = train(shapes_split_dataset, TrainingConfig(preset="fast_cnn", epochs=12, seed=3))
    path = save_model(result.model, tmp_path_factory.mktemp("fast") / "fast.keras", result.metadata)
    return result, load_model(path)


def _test_images(root):
    from imgcls_desktop.core.images import load_image

    paths = sorted((root / "test").glob("*/*.png"))
    labels = np.array([sorted(p.name for p in (root / "test").iterdir()).index(p.parent.name) for p in paths])
    return np.stack([load_image(p, (32, 32)) for p in paths]).astype(np.float32), labels


def test_whitening_decorrelates_the_patches_it_was_fitted_on():
    rng = np.random.default_rng(0)
    # Correlated pixels: smooth images (neighbours alike) with colour channels alike.
    base = rng.normal(size=(200, 17, 17, 1))
    smooth = np.repeat(np.repeat(base, 2, axis=1), 2, axis=2)[:, :32, :32]
    images = np.clip(128 + 40 * smooth + rng.normal(scale=8, size=(200, 32, 32, 3)), 0, 255)
    model = build_fast_cnn(3, 32)
    assert init_whitening(model, images.astype(np.uint8))
    whiten = keras_module().Model(model.inputs[0], model.get_layer("whiten").output)
    out = np.asarray(whiten(images.astype(np.float32)))[..., :12].reshape(-1, 12)
    covariance = np.cov(out, rowvar=False)
    raw = images.reshape(200, 32, 32, 3)[:, :31, :31]
    # Unit variance per direction, less where eps damps directions of pixel noise only.
    assert np.all(np.diag(covariance) > 0.5) and np.all(np.diag(covariance) < 1.05)
    off_diagonal = covariance - np.diag(np.diag(covariance))
    assert np.abs(off_diagonal).max() < 0.1  # and no correlation left between them
    assert np.corrcoef(raw[..., 0].ravel(), raw[..., 1].ravel())[0, 1] > 0.9  # there was plenty


def test_convolutions_start_as_identities():
    model = build_fast_cnn(3, 32)
    kernel = np.asarray(model.get_layer("group2b_conv").kernel)
    assert kernel[1, 1, 5, 5] == 1.0 and kernel[0, 0, 5, 5] == 0.0 and kernel[1, 1, 4, 5] == 0.0


def test_fast_cnn_learns_the_shapes(fast_trained, shapes_split_dataset):
    result, loaded = fast_trained
    images, labels = _test_images(shapes_split_dataset)
    from imgcls_desktop.core.inference import Predictor

    accuracy = (Predictor(loaded).probabilities(images).argmax(1) == labels).mean()
    assert accuracy >= 0.85
    assert result.metadata["test_time_augmentation"] == "flip_translate"
    assert result.metadata["calibration"]["temperature"] > 0


def test_predictor_answers_with_the_mean_logits_of_its_six_views(fast_trained, shapes_split_dataset):
    from imgcls_desktop.core.calibration import logits_model, softmax
    from imgcls_desktop.core.inference import Predictor

    _result, loaded = fast_trained
    images, _labels = _test_images(shapes_split_dataset)
    logits = logits_model(loaded.model)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    shifted = [padded[:, :32, :32], padded[:, 2:, 2:]]  # one pixel up-left, one down-right

    def flip_mean(x):
        views = [np.ascontiguousarray(x), np.ascontiguousarray(x[:, :, ::-1])]
        return sum(np.asarray(logits(view)) for view in views) / 2

    mean = 0.5 * flip_mean(images) + 0.25 * flip_mean(shifted[0]) + 0.25 * flip_mean(shifted[1])
    temperature = loaded.metadata["calibration"]["temperature"]
    expected = softmax(mean, temperature)
    np.testing.assert_allclose(Predictor(loaded).probabilities(images), expected, atol=1e-5)
    single = softmax(np.asarray(logits(images)), temperature)
    assert np.abs(single - expected).max() > 1e-4  # the views really change the answer


@pytest.mark.parametrize("format, name", [("saved_model", "fast_saved_model"), ("tflite", "fast.tflite"),
                                          ("onnx", "fast.onnx")])
def test_export_carries_the_test_time_augmentation(fast_trained, shapes_split_dataset, tmp_path, format, name):
    from imgcls_desktop.core.export import export_model, verify_export

    _result, loaded = fast_trained
    images, _labels = _test_images(shapes_split_dataset)
    out = tmp_path / name
    export_model(loaded, out, format)
    check = verify_export(loaded, out, format, images)
    assert check["ok"] and check["top1_agreement"] == 1.0 and check["max_abs_difference"] < 1e-4
