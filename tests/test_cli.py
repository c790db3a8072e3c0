"""The imgcls command: the JSON contract, exit statuses, one-line errors."""

import csv
import json
import os
import subprocess
import sys

from imgcls_desktop.cli import main


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_inspect_json_contract(capsys, shapes_split_dataset):
    code, out, _ = run(capsys, "inspect", shapes_split_dataset, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["layout"] == "split"
    assert data["class_names"] == ["circle", "square", "triangle"]
    assert data["splits"]["train"] == {"circle": 24, "square": 24, "triangle": 24}
    assert data["splits"]["test"]["square"] == 8
    assert data["num_images"] == 96
    assert data["problems"] == [] and data["duplicates"] == []


def test_inspect_reports_problems_with_exit_3(capsys, tmp_path):
    from synthetic import make_shapes_dataset

    make_shapes_dataset(tmp_path, num_classes=2, per_class=3)
    (tmp_path / "circle" / "broken.jpg").write_bytes(b"")
    code, out, _ = run(capsys, "inspect", tmp_path, "--json")
    assert code == 3
    problems = json.loads(out)["problems"]
    assert [p["path"] for p in problems] == [str(tmp_path / "circle" / "broken.jpg")]
    assert "empty" in problems[0]["reason"]


def test_train_evaluate_predict_round_trip(capsys, shapes_split_dataset, tmp_path):
    model = tmp_path / "m.keras"
    code, out, err = run(capsys, "train", shapes_split_dataset, "--out", model, "--epochs", "10",
                         "--batch-size", "16", "--learning-rate", "0.05", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["model"] == str(model) and model.exists()
    assert summary["epochs_run"] == 10
    # This config: 15/15 validation images and 22-24 of 24 test images at seeds 1, 2, 3, 1337.
    assert summary["best_val_accuracy"] >= 14 / 15
    assert len(summary["history"]["loss"]) == 10

    code, out, err = run(capsys, "evaluate", model, shapes_split_dataset, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["accuracy"] >= 21 / 24
    assert set(report["per_class"]["circle"]) == {"precision", "recall", "f1", "support"}
    assert len(report["confusion_matrix"]) == 3

    bad = tmp_path / "notes.jpg"
    bad.write_text("hello")
    table = tmp_path / "out.csv"
    folder = shapes_split_dataset / "test" / "triangle"
    code, out, err = run(capsys, "predict", model, folder, bad, "--top-k", "2", "--json", "--csv", table)
    assert code == 3
    results = json.loads(out)["results"]
    assert len(results) == 9
    errors = [r for r in results if "error" in r]
    assert [r["path"] for r in errors] == [str(bad)]
    good = [r for r in results if "error" not in r]
    assert sum(r["label"] == "triangle" for r in good) >= 7
    assert all(len(r["top_k"]) == 2 for r in good)
    assert str(bad) in err
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 9 and rows[-1]["error"]

    code, _, err = run(capsys, "train", shapes_split_dataset, "--out", model, "--epochs", "1")
    assert code == 2 and "--force" in err


def test_errors_are_one_line_with_exit_1(capsys, tmp_path):
    code, out, err = run(capsys, "inspect", tmp_path / "nowhere")
    assert code == 1
    assert err.count("\n") == 1 and "imgcls: error:" in err
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"PK but not really")
    code, _, err = run(capsys, "predict", fake, tmp_path)
    assert code == 1 and "damaged or not a Keras model" in err and "Traceback" not in err


def test_debug_adds_the_traceback_to_the_one_line_error(capsys, tmp_path):
    """README: every command takes --debug (tracebacks)."""
    fake = tmp_path / "fake.keras"
    fake.write_bytes(b"PK but not really")
    code, _, plain = run(capsys, "predict", fake, tmp_path)
    code_debug, _, debug = run(capsys, "predict", fake, tmp_path, "--debug")
    assert code == code_debug == 1
    assert "Traceback (most recent call last):" not in plain
    assert debug.startswith("Traceback (most recent call last):")
    assert "ModelFileError" in debug and 'model_io.py", line' in debug
    assert debug.splitlines()[-1] == plain.strip()  # the same one line closes it


def test_usage_error_exits_2():
    result = subprocess.run([sys.executable, "-m", "imgcls_desktop.cli", "train"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "usage" in result.stderr


def test_tensorflow_start_up_chatter_is_not_shown(trained, shapes_split_dataset):
    """TensorFlow's INFO lines at import (absl, oneDNN) are dropped; the answer stays."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    image = next((shapes_split_dataset / "test" / "circle").iterdir())
    result = subprocess.run([sys.executable, "-m", "imgcls_desktop.cli", "predict", str(trained[1]), str(image)],
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert image.name in result.stdout
    assert "oneDNN custom operations" not in result.stderr
    assert "absl::InitializeLog" not in result.stderr
