""""None of my classes" catches noise and blank images (issue 17, case 10).

The reported failure: five random-noise images were all answered "automobile (0.85)" by a
fast_cnn model; only blank ones were flagged, by the max-probability threshold. A model
trained now carries a detector on its features (core.ood), fitted on the validation split;
it must flag noise and blank images while flagging few held-out images of its classes.
"""

import json

import numpy as np
import pytest

from imgcls_desktop.core import ood
from imgcls_desktop.core.inference import Predictor
from tests.synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory):
    """small_cnn on 3 shape classes, saved and loaded: the max-probability threshold misses
    every noise image for it, as it did for the reported CIFAR-10 model."""
    from imgcls_desktop.core.model_io import load_model, save_model
    from imgcls_desktop.core.training import TrainingConfig, train

    root = make_shapes_dataset(tmp_path_factory.mktemp("shapes_ood"), num_classes=3, per_class=60,
                               layout="split", test_per_class=40, seed=0)
    result = train(root, TrainingConfig(preset="small_cnn", epochs=8, batch_size=16, seed=3))
    path = save_model(result.model, tmp_path_factory.mktemp("ood_model") / "m.keras", result.metadata)
    return root, path, load_model(path)


def _noise(count=24, seed=5):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _blank(count=24, seed=6):
    rng = np.random.default_rng(seed)
    colours = [np.full(3, v) for v in np.linspace(0, 255, 8).astype(int)]
    colours += [rng.integers(0, 256, 3) for _ in range(count - len(colours))]
    return np.stack([np.broadcast_to(np.asarray(c, np.uint8), (32, 32, 3)) for c in colours])


def _held_out(root):
    from imgcls_desktop.core.images import load_image

    return np.stack([load_image(path, (32, 32)) for path in sorted((root / "test").glob("*/*.png"))])


def _flagged(predictor, images):
    return float(np.mean([p.unknown for p in predictor.predict_images(images)]))


def test_noise_and_blank_images_are_none_of_my_classes(shapes_model):
    root, _path, loaded = shapes_model
    calibration = loaded.metadata["calibration"]
    assert calibration["ood"]["method"] == ood.DEFAULT_METHOD  # stored in the model file
    predictor = Predictor(loaded)
    assert predictor.detector is not None
    noise, blank, held_out = _flagged(predictor, _noise()), _flagged(predictor, _blank()), \
        _flagged(predictor, _held_out(root))
    print(f"flagged: noise {noise:.2f}, blank {blank:.2f}, held-out {held_out:.3f}")
    # The max-probability threshold alone flags 0% of the noise and 17% of the blank images
    # for this model (measured; see test_the_threshold_alone_misses_noise).
    assert noise >= 0.9 and blank >= 0.75
    assert held_out <= 0.08  # 120 held-out images; the threshold was set for about 5%
    flagged = predictor.predict_images(_noise(1))[0]
    assert flagged.verdict == "none of my classes (unlike the training images)"
    assert flagged.to_dict()["ood_score"] > flagged.to_dict()["ood_threshold"]


def test_the_threshold_alone_misses_noise(shapes_model):
    """Why the detector: the same model without it (as models trained before it) answers noise."""
    from dataclasses import replace

    _root, _path, loaded = shapes_model
    calibration = {k: v for k, v in loaded.metadata["calibration"].items() if k != "ood"}
    old = Predictor(replace(loaded, metadata={**loaded.metadata, "calibration": calibration}))
    assert old.detector is None and old.unknown_threshold is not None
    assert _flagged(old, _noise()) < 0.9


def test_cli_predict_says_none_of_my_classes_for_noise(shapes_model, tmp_path, capsys):
    from PIL import Image

    from imgcls_desktop.cli import main

    _root, path, _loaded = shapes_model
    for index, image in enumerate(_noise(5)):
        Image.fromarray(image).save(tmp_path / f"noise_{index}.png")
    assert main(["predict", str(path), str(tmp_path), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 5 and all(r["unknown"] for r in results)
    assert all(r["verdict"] == "none of my classes (unlike the training images)" for r in results)


def test_a_damaged_stored_detector_falls_back_to_the_threshold(shapes_model):
    """The stored detector is untrusted like the rest of the file: never a crash, never used."""
    from dataclasses import replace

    _root, _path, loaded = shapes_model
    stored = loaded.metadata["calibration"]["ood"]
    damaged = [
        "not a dict", None, {**stored, "format": "imgcls-ood/99"}, {**stored, "method": "magic"},
        {**stored, "means": {"shape": [3, 7], "float32": stored["means"]["float32"]}},
        {**stored, "means": {"shape": [3], "float32": stored["means"]["float32"]}},
        {**stored, "means": {"shape": stored["means"]["shape"], "float32": "@@not base64@@"}},
        {**stored, "basis": stored["means"]}, {**stored, "variances": stored["means"]},
        {**stored, "threshold": "high"}, {**stored, "threshold": float("nan")}, {**stored, "threshold": True},
        {**stored, "rest_variance": -1.0}, {**stored, "scales": {"energy": [0, 1]}},
        {**stored, "scales": {"mahalanobis": [0, 0], "energy": [0, 1]}},
        {k: v for k, v in stored.items() if k != "basis"},
    ]
    images = _noise(4)
    for index, bad in enumerate(damaged):
        calibration = {**loaded.metadata["calibration"], "ood": bad}
        predictor = Predictor(replace(loaded, metadata={**loaded.metadata, "calibration": calibration}))
        assert predictor.detector is None, index
        assert predictor.unknown_threshold == calibration["unknown_threshold"], index
        assert all(p.ok for p in predictor.predict_images(images)), index


def test_fit_detector_flags_about_the_target_share_of_validation():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 100)
    features = rng.normal(size=(400, 16)) + 4.0 * np.eye(16)[labels]
    logits = features[:, :4] * 2.0
    detector = ood.fit_detector(features, logits, labels, 4)
    assert detector.details["validation_flagged"] <= 0.05
    new = rng.normal(size=(2000, 16)) + 4.0 * np.eye(16)[np.repeat(np.arange(4), 500)]
    assert np.mean(detector.flags(new, new[:, :4] * 2.0)) <= 0.08  # out-of-fold: close to 5% on new data
    far = rng.normal(size=(200, 16)) * 6.0
    assert np.mean(detector.flags(far, far[:, :4] * 2.0)) >= 0.9
    again = ood.detector_from_dict(json.loads(json.dumps(detector.to_dict())))
    np.testing.assert_allclose(again.scores(new, new[:, :4] * 2.0), detector.scores(new, new[:, :4] * 2.0),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        ood.fit_detector(features[:5], logits[:5], labels[:5], 4)  # a class with fewer than two images


def test_the_window_shows_the_detector_verdict(shapes_model, qtbot):
    from PySide6.QtWidgets import QLabel

    from imgcls_desktop.gui.prediction_pane import PredictionRow

    _root, _path, loaded = shapes_model
    prediction = Predictor(loaded).predict_images(_noise(1), ["noise.png"])[0]
    assert prediction.unknown
    row = PredictionRow(prediction)
    qtbot.addWidget(row)
    headline = row.findChild(QLabel, "predictionLabel")
    assert "none of my classes (unlike the training images)" in headline.text()
    assert "unlike the images the model was trained on" in headline.toolTip()
    assert f"{prediction.ood_threshold:.2f}" in headline.toolTip() and prediction.label in headline.toolTip()
