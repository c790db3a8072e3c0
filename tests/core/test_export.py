"""Export: each format loads in its own runtime and agrees with the .keras model."""

import json
import sys

import numpy as np
import pytest

from imgcls_desktop.cli import main
from imgcls_desktop.core.errors import ImgclsError
from imgcls_desktop.core.export import ONNX_INSTALL_HINT, export_model, sidecar_paths, verify_export


@pytest.fixture(scope="module")
def loaded(trained):
    from imgcls_desktop.core.model_io import load_model

    return load_model(trained[1])


@pytest.fixture(scope="module")
def test_images(shapes_split_dataset):
    from imgcls_desktop.core.images import load_image

    return np.stack([load_image(p, (32, 32))
                     for p in sorted((shapes_split_dataset / "test").glob("*/*.png"))]).astype(np.float32)


@pytest.mark.parametrize("format, name", [("saved_model", "shapes_saved_model"), ("tflite", "shapes.tflite"),
                                          ("onnx", "shapes.onnx")])
def test_export_loads_in_its_runtime_and_agrees_with_keras(loaded, test_images, tmp_path, format, name):
    out = tmp_path / name
    info = export_model(loaded, out, format)
    assert out.exists() and info["bytes"] > 10_000
    assert info["calibrated"] is True  # the trained fixture carries a temperature
    labels, sidecar = sidecar_paths(out, format)
    assert labels.read_text().split() == loaded.class_names
    assert json.loads(sidecar.read_text())["class_names"] == loaded.class_names

    check = verify_export(loaded, out, format, test_images)
    assert check["verified"] and check["ok"] and check["num_images"] == 24
    assert check["top1_agreement"] == 1.0
    assert check["max_abs_difference"] < 1e-4
    # The export's answers are also right: the same top-1 as the labels of the test set.
    truth = np.repeat(np.arange(3), 8)
    keras_top1 = np.asarray(loaded.model.predict(test_images, verbose=0)).argmax(1)
    assert (keras_top1 == truth).mean() >= 23 / 24  # 24/24 at seeds 1, 2, 3 and 1337


def test_saved_model_runs_with_tensorflow_alone(loaded, test_images, tmp_path):
    """What a user does with the folder: no code from this app."""
    import tensorflow as tf

    out = tmp_path / "sm"
    export_model(loaded, out, "saved_model")
    restored = tf.saved_model.load(str(out))
    probabilities = np.asarray(restored.serve(tf.constant(test_images[:4])))
    assert probabilities.shape == (4, 3)
    assert np.allclose(probabilities.sum(1), 1.0, atol=1e-5)


def test_onnx_without_tf2onnx_says_what_to_install(loaded, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails as if not installed
    with pytest.raises(ImgclsError, match="pip install tf2onnx onnxruntime"):
        export_model(loaded, tmp_path / "m.onnx", "onnx")
    assert not (tmp_path / "m.onnx").exists()
    assert ONNX_INSTALL_HINT == "pip install tf2onnx onnxruntime"


def test_onnx_runs_with_onnxruntime_alone(loaded, test_images, tmp_path):
    """The README's lines for an ONNX file: onnxruntime, the labels file, no code from this app."""
    import onnxruntime

    out = tmp_path / "pets.onnx"
    export_model(loaded, out, "onnx")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {session.get_inputs()[0].name: test_images})[0]
    labels = (tmp_path / "pets.labels.txt").read_text().split("\n")
    assert probabilities.shape == (24, 3) and np.allclose(probabilities.sum(1), 1.0, atol=1e-5)
    truth = [loaded.class_names[i] for i in np.repeat(np.arange(3), 8)]
    named = [labels[i] for i in probabilities.argmax(1)]
    assert np.mean([a == b for a, b in zip(named, truth)]) >= 23 / 24


@pytest.mark.parametrize("preset", ["mobilenet_v2", "efficientnet_b0"])
def test_transfer_backbones_export_to_onnx(preset, tmp_path):
    """Depthwise convolutions, ReLU6, swish and squeeze-excite all survive the conversion."""
    from imgcls_desktop.core.export import random_sample_images
    from imgcls_desktop.core.model_io import LoadedModel
    from imgcls_desktop.core.models import build_model

    model = build_model(preset, 3, 32, weights=None)
    loaded = LoadedModel(model=model, path=None, class_names=["a", "b", "c"], image_size=(32, 32),
                         metadata={"calibration": {"temperature": 1.5, "unknown_threshold": 0.4}})
    out = tmp_path / f"{preset}.onnx"
    export_model(loaded, out, "onnx")
    check = verify_export(loaded, out, "onnx", random_sample_images((32, 32), count=6))
    assert check["verified"] and check["ok"], check


def test_unknown_format_and_occupied_folder_are_refused(loaded, tmp_path):
    with pytest.raises(ImgclsError, match="Unknown export format"):
        export_model(loaded, tmp_path / "x", "coreml")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ImgclsError, match="not an empty folder"):
        export_model(loaded, tmp_path / "full", "saved_model")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_cli_export_json_and_exit_status(trained, tmp_path, capsys):
    out = tmp_path / "model.tflite"
    code = main(["export", str(trained[1]), "--format", "tflite", "--out", str(out), "--json"])
    stdout, _err = capsys.readouterr()
    assert code == 0
    data = json.loads(stdout)
    assert data["format"] == "tflite" and data["path"] == str(out) and out.exists()
    assert data["verification"]["ok"] is True and data["verification"]["top1_agreement"] == 1.0
    assert data["verification"]["max_abs_difference"] < 1e-4
    # Refuses to overwrite without --force, replaces with it.
    assert main(["export", str(trained[1]), "--format", "tflite", "--out", str(out)]) == 2
    assert main(["export", str(trained[1]), "--format", "tflite", "--out", str(out), "--force"]) == 0
    text, _ = capsys.readouterr()
    assert "top-1 agreement 100%" in text


def test_an_export_that_disagrees_with_the_model_is_removed(trained, tmp_path, capsys, monkeypatch):
    """README: the command ... removes an export that disagrees."""
    from imgcls_desktop.core import export

    real_run = export._run_tflite

    def run_with_classes_swapped(path, images):  # a converter bug: the right numbers, wrong order
        return real_run(path, images)[:, ::-1]

    monkeypatch.setattr(export, "_run_tflite", run_with_classes_swapped)
    out = tmp_path / "model.tflite"
    code = main(["export", str(trained[1]), "--format", "tflite", "--out", str(out)])
    _stdout, err = capsys.readouterr()
    assert code == 1
    assert "tflite export disagreed with the model" in err and "it was removed" in err
    assert list(tmp_path.iterdir()) == []  # the export and its two side files


def test_cli_export_onnx_missing_is_one_line_exit_1(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    code = main(["export", str(trained[1]), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    _out, err = capsys.readouterr()
    assert code == 1
    assert "pip install tf2onnx onnxruntime" in err and "Traceback" not in err


def test_cli_evaluate_prints_ece_and_predict_reports_unknown(trained, shapes_split_dataset, capsys):
    code = main(["evaluate", str(trained[1]), str(shapes_split_dataset)])
    out, _ = capsys.readouterr()
    assert code == 0 and "ECE before/after calibration:" in out
    code = main(["evaluate", str(trained[1]), str(shapes_split_dataset), "--json"])
    data = json.loads(capsys.readouterr()[0])
    assert {"ece", "ece_uncalibrated", "calibration", "accuracy"} <= set(data)
    code = main(["predict", str(trained[1]), str(shapes_split_dataset / "test" / "circle"), "--json"])
    results = json.loads(capsys.readouterr()[0])["results"]
    assert all({"label", "confidence", "top_k", "unknown", "verdict"} <= set(r) for r in results)
