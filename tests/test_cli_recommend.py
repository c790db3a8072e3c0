"""`imgcls train` without --preset trains what the data calls for, and says so."""

import json

from imgcls_desktop.cli import main

from synthetic import make_shapes_dataset


def test_train_without_a_preset_uses_and_records_the_recommendation(capsys, shapes_dataset, tmp_path):
    out = tmp_path / "m.keras"
    code = main(["train", str(shapes_dataset), "--epochs", "1", "--out", str(out), "--json", "--no-history"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    summary = json.loads(stdout)
    assert summary["preset"] == "fast_cnn"
    recommendation = summary["recommendation"]
    assert recommendation["preset"] == "fast_cnn" and recommendation["image_size"] == 32
    assert "Small images (32x32 px)" in recommendation["reason"]

    code = main(["train", str(shapes_dataset), "--epochs", "1", "--out", str(out), "--force", "--no-history"])
    stdout, _ = capsys.readouterr()
    assert code == 0
    assert "Recommended: Fast CNN" in stdout and "choose another with --preset" in stdout


def test_photos_get_the_shipped_backbone_from_the_command_line(capsys, tmp_path):
    photos = make_shapes_dataset(tmp_path / "photos", num_classes=2, per_class=10, size=96, seed=3)
    out = tmp_path / "m.keras"
    code = main(["train", str(photos), "--epochs", "2", "--image-size", "64", "--out", str(out), "--json",
                 "--no-history"])
    summary = json.loads(capsys.readouterr()[0])
    assert code == 0
    assert summary["preset"] == "efficientnet_lite0" and summary["recommendation"]["image_size"] == 224
    from imgcls_desktop.core.model_io import load_model

    loaded = load_model(out)
    assert loaded.metadata["preset"] == "efficientnet_lite0"
    assert loaded.metadata["image_size"] == [64, 64]  # the user's --image-size wins over the recommendation


def test_an_explicit_preset_is_not_second_guessed(capsys, shapes_dataset, tmp_path):
    code = main(["train", str(shapes_dataset), "--preset", "small_cnn", "--epochs", "1",
                 "--out", str(tmp_path / "m.keras"), "--json", "--no-history"])
    summary = json.loads(capsys.readouterr()[0])
    assert code == 0 and summary["preset"] == "small_cnn" and summary["recommendation"] is None
