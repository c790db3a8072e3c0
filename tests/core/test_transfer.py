"""Transfer presets: local weights files, and a clear message when ImageNet weights cannot download.

Nothing here touches the network: downloads are made to fail the way they fail offline.
"""

import json
import urllib.error

import numpy as np
import pytest

from imgcls_desktop.core.backend import keras_module
from imgcls_desktop.core.errors import WeightsUnavailableError
from imgcls_desktop.core.models import build_model
from imgcls_desktop.core.training import TrainingConfig, train


@pytest.fixture(scope="module")
def mobilenet_weights(tmp_path_factory):
    """A MobileNetV2 no-top weights file made here (random, seeded), as a user would pass it."""
    keras = keras_module()
    keras.utils.set_random_seed(5)
    backbone = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3),
                                              pooling="avg")
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2_no_top.weights.h5"
    backbone.save_weights(path)
    return path, backbone.get_weights()


def test_local_weights_file_is_loaded_into_the_backbone(mobilenet_weights):
    path, expected = mobilenet_weights
    model = build_model("mobilenet_v2", 3, 32, weights=str(path))
    backbone = next(layer for layer in model.layers if hasattr(layer, "layers"))
    assert not backbone.trainable
    for got, want in zip(backbone.get_weights(), expected):
        np.testing.assert_array_equal(got, want)


def test_transfer_preset_trains_with_local_weights(mobilenet_weights, shapes_dataset):
    path, _ = mobilenet_weights
    result = train(shapes_dataset, TrainingConfig(preset="mobilenet_v2", image_size=32, epochs=1,
                                                  batch_size=16, weights=str(path)))
    assert result.epochs_run == 1
    assert result.metadata["preset"] == "mobilenet_v2"
    assert result.metadata["image_size"] == [32, 32]


def test_offline_imagenet_download_gives_a_clear_message(monkeypatch, tmp_path):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path))  # an empty weights cache
    attempts = []

    def offline(url, *args, **kwargs):
        attempts.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(file_utils, "urlretrieve", offline)
    with pytest.raises(WeightsUnavailableError) as raised:
        build_model("mobilenet_v2", 3, 96, weights="imagenet")
    message = str(raised.value)
    assert attempts and attempts[0].startswith("https://")
    assert "Could not download the ImageNet weights for MobileNetV2" in message
    assert "--weights" in message and "from-scratch preset" in message


def test_cli_reports_offline_failure_in_one_line(monkeypatch, tmp_path, capsys, shapes_dataset):
    from keras.src.backend import config
    from keras.src.utils import file_utils

    from imgcls_desktop.cli import main

    monkeypatch.setattr(config, "keras_home", lambda: str(tmp_path))
    monkeypatch.setattr(file_utils, "urlretrieve",
                        lambda *a, **k: (_ for _ in ()).throw(urllib.error.URLError("offline")))
    code = main(["train", str(shapes_dataset), "--preset", "efficientnet_b0", "--image-size", "32",
                 "--epochs", "1", "--out", str(tmp_path / "m.keras")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Could not download the ImageNet weights for EfficientNetB0" in err
    assert "Traceback" not in err and not (tmp_path / "m.keras").exists()


def test_cli_trains_with_weights_file(mobilenet_weights, shapes_dataset, tmp_path, capsys):
    from imgcls_desktop.cli import main

    path, _ = mobilenet_weights
    out = tmp_path / "transfer.keras"
    code = main(["train", str(shapes_dataset), "--preset", "mobilenet_v2", "--image-size", "32",
                 "--epochs", "1", "--batch-size", "16", "--weights", str(path), "--out", str(out), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == 1 and out.exists()


def test_wrong_weights_file_is_explained(tmp_path):
    bogus = tmp_path / "not_weights.weights.h5"
    bogus.write_bytes(b"not an hdf5 file")
    with pytest.raises(WeightsUnavailableError, match="Could not load backbone weights"):
        build_model("mobilenet_v2", 3, 32, weights=str(bogus))


@pytest.mark.parametrize("preset", ["mobilenet_v2", "efficientnet_b0"])
def test_transfer_models_pass_the_model_file_gate(preset, tmp_path):
    from imgcls_desktop.core.model_io import load_model, save_model

    model = build_model(preset, 3, 32, weights=None)
    path = save_model(model, tmp_path / f"{preset}.keras", {"class_names": ["a", "b", "c"], "preset": preset})
    loaded = load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.model(x, training=False), model(x, training=False), atol=1e-5)


def _random_conv_transfer_model(preset, num_classes, image_size=None, weights=None):
    """A transfer-shaped model whose frozen backbone gives informative features.

    A random MobileNetV2 gives near-constant features (its BatchNorm statistics are the
    defaults), so nothing could learn from them; random convolutions and colour pooling do
    separate the synthetic shapes.
    """
    keras = keras_module()
    keras.utils.set_random_seed(11)
    size = image_size or 32
    inner = keras.Input((size, size, 3))
    y = keras.layers.Rescaling(1 / 255)(inner)
    y = keras.layers.Conv2D(32, 5, activation="relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return _with_head(keras.Model(inner, y, name="random_backbone"), size, num_classes)


def _with_head(backbone, size, num_classes):
    """A frozen backbone under the head our transfer presets build (dropout, logits, softmax)."""
    keras = keras_module()
    backbone.trainable = False
    inputs = keras.Input((size, size, 3), name="image")
    x = backbone(inputs, training=False)
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    x = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Softmax(name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{backbone.name}_transfer")


def test_cached_features_train_the_head_inside_the_saved_model(monkeypatch, shapes_dataset):
    """The head learns on stored backbone features; the full model must score exactly that."""
    from imgcls_desktop.core import training
    from imgcls_desktop.core.dataset import scan_dataset, split_train_validation
    from imgcls_desktop.core.pipeline import decode_items

    monkeypatch.setattr(training, "build_model", _random_conv_transfer_model)
    config = TrainingConfig(preset="mobilenet_v2", image_size=32, epochs=30, batch_size=16,
                            learning_rate=1e-2, seed=3)
    messages = []
    result = train(shapes_dataset, config, on_progress=lambda e: messages.append(e.message))
    assert result.metadata["training"]["config"]["cache_features"] is True
    assert any(m.startswith("Computing features") for m in messages)
    scan = scan_dataset(shapes_dataset)
    _train_items, val_items = split_train_validation(scan, config.validation_split, config.seed)
    x_val, y_val, _ = decode_items(val_items, 32)
    probabilities = np.asarray(result.model(x_val.astype(np.float32), training=False))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == y_val))
    assert accuracy == pytest.approx(result.best_val_accuracy, abs=1e-6)
    assert accuracy >= 0.75  # chance is 1/3: the head learned from the stored features
    untrained = _random_conv_transfer_model("mobilenet_v2", 3, 32).get_layer("random_backbone")
    for got, want in zip(result.model.get_layer("random_backbone").get_weights(), untrained.get_weights()):
        np.testing.assert_array_equal(got, want)  # frozen means frozen


def _two_conv_transfer_model(preset, num_classes, image_size=None, weights=None):
    """A transfer-shaped model with a low and a high convolution, each with BatchNorm."""
    keras = keras_module()
    keras.utils.set_random_seed(12)
    size = image_size or 32
    inner = keras.Input((size, size, 3))
    y = keras.layers.Rescaling(1 / 255)(inner)
    y = keras.layers.Conv2D(8, 3, name="low")(y)
    y = keras.layers.BatchNormalization(name="low_bn")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.Conv2D(16, 3, name="high")(y)
    y = keras.layers.BatchNormalization(name="high_bn")(y)
    y = keras.layers.ReLU()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return _with_head(keras.Model(inner, y, name="two_conv_backbone"), size, num_classes)


def test_fine_tuning_trains_the_top_of_the_backbone_after_the_head(monkeypatch, shapes_dataset):
    from imgcls_desktop.core import training

    built = []
    monkeypatch.setattr(training, "build_model", lambda *a, **k: built.append(_two_conv_transfer_model(*a, **k))
                        or built[-1])
    initial = {layer.name: [w.copy() for w in layer.get_weights()]
               for layer in _two_conv_transfer_model("mobilenet_v2", 3, 32).get_layer("two_conv_backbone").layers}
    seen = []

    def on_progress(event):
        if event.kind == "epoch":
            backbone = built[0].get_layer("two_conv_backbone")
            seen.append((event.epoch, event.epochs, event.message,
                         {name: [w.copy() for w in backbone.get_layer(name).get_weights()]
                          for name in ("low", "low_bn", "high", "high_bn")}))

    config = TrainingConfig(preset="mobilenet_v2", image_size=32, epochs=3, fine_tune_epochs=2,
                            batch_size=16, learning_rate=1e-2, seed=3)
    result = train(shapes_dataset, config, on_progress=on_progress)
    assert [(epoch, total, message) for epoch, total, message, _ in seen] == [
        (1, 3, ""), (2, 3, ""), (3, 3, ""), (4, 5, "fine-tuning"), (5, 5, "fine-tuning")]
    assert len(result.history["loss"]) == 5 and result.epochs_run == 5
    assert result.metadata["training"]["fine_tuned_layers"] == 1  # "high": BatchNorm stays frozen
    for epoch, _total, _message, weights in seen:
        for name in ("low", "low_bn", "high_bn"):  # frozen through both phases
            for got, want in zip(weights[name], initial[name]):
                np.testing.assert_array_equal(got, want)
        changed = any(not np.array_equal(got, want) for got, want in zip(weights["high"], initial["high"]))
        assert changed == (epoch > 3)  # the head alone first, then the top convolution too
    assert not built[0].get_layer("two_conv_backbone").trainable  # saved as built: frozen
    if result.best_epoch <= 3:  # fine-tuning did not beat the head: its weights are back
        for got, want in zip(built[0].get_layer("two_conv_backbone").get_layer("high").get_weights(),
                             initial["high"]):
            np.testing.assert_array_equal(got, want)


def test_fine_tuning_refused_for_from_scratch_presets_on_the_command_line(shapes_dataset, tmp_path, capsys):
    from imgcls_desktop.cli import main

    code = main(["train", str(shapes_dataset), "--preset", "small_cnn", "--fine-tune-epochs", "2",
                 "--out", str(tmp_path / "m.keras")])
    assert code == 2 and "transfer presets" in capsys.readouterr().err
