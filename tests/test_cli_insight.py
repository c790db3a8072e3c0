"""The explain, robustness and doctor verbs, run through ``imgcls``'s own ``main``."""

import json

import numpy as np
from PIL import Image

from imgcls_desktop.cli import insight as cli_insight, main


def run(argv):
    """``imgcls <argv>`` in this process: the real parser, dispatch and error handling."""
    return main([str(part) for part in argv])


def test_explain_writes_overlay_and_prints_label(trained, shapes_split_dataset, tmp_path, capsys):
    _result, model = trained
    image = shapes_split_dataset / "test" / "circle" / "circle_000.png"
    out = tmp_path / "heat.png"
    assert run(["explain", model, image, "--out", out, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"path", "label", "confidence", "verdict", "explained_class", "views", "layer", "out"}
    assert data["label"] == data["explained_class"] == "circle"
    with Image.open(out) as written:
        assert written.mode == "RGB" and min(written.size) >= 256
    assert run(["explain", model, image, "--out", out, "--class", "square"]) == 0
    text = capsys.readouterr().out
    assert "circle" in text and "'square'" in text
    assert run(["explain", model, image, "--out", out, "--class", "nope"]) == 2
    capsys.readouterr()
    # main's own handling: a core error is one line on stderr and status 1.
    assert run(["explain", tmp_path / "missing.keras", image, "--out", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith("imgcls: error: ") and "missing.keras" in err and len(err.splitlines()) == 1


def test_robustness_json_and_chart(trained, shapes_split_dataset, tmp_path, capsys):
    _result, model = trained
    chart = tmp_path / "chart.png"
    assert run(["robustness", model, shapes_split_dataset, "--json", "--chart", chart]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"class_names", "num_images", "conditions", "errors", "split", "chart"} <= set(data)
    assert data["split"] == "test" and data["num_images"] == 24
    assert [row["name"] for row in data["conditions"]][0] == "clean"
    assert chart.stat().st_size > 1000
    assert run(["robustness", model, shapes_split_dataset]) == 0
    assert "downscale" in capsys.readouterr().out


def test_doctor_json(tmp_path, capsys):
    rng = np.random.default_rng(2)
    for split, count in (("train", 6), ("test", 2)):
        for name in ("a", "b"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8), "RGB").save(
                    folder / f"{i}.png")
    with Image.open(tmp_path / "train" / "a" / "0.png") as image:
        image.save(tmp_path / "test" / "a" / "copy.jpg", quality=85)
    assert run(["doctor", tmp_path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"hash", "threshold", "num_images", "near_duplicates", "leakage", "label_conflicts",
            "imbalance", "errors", "seconds", "root", "problems"} <= set(data)
    assert [row["other"].endswith("copy.jpg") for row in data["leakage"]] == [True]
    assert run(["doctor", tmp_path]) == 0
    assert "leakage: 1 pair" in capsys.readouterr().out
    assert run(["doctor", tmp_path, "--threshold", "99"]) == 2


def _leaky_dataset(root):
    """train/{a,b} x 6 and test/{a,b} x 2 random images, one test image a re-encoded train image."""
    rng = np.random.default_rng(2)
    for split, count in (("train", 6), ("test", 2)):
        for name in ("a", "b"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8), "RGB").save(
                    folder / f"{i}.png")
    with Image.open(root / "train" / "a" / "0.png") as image:
        image.save(root / "test" / "a" / "copy.jpg", quality=85)
    return root


def test_inspect_doctor_embeds_the_doctor_report(tmp_path, capsys):
    root = _leaky_dataset(tmp_path / "leaky")
    assert main(["inspect", str(root), "--doctor", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["num_images"] == 17 and data["layout"] == "split"
    assert [row["other"].endswith("copy.jpg") for row in data["doctor"]["leakage"]] == [True]
    assert data["doctor"]["imbalance"]["counts"] == {"a": 6, "b": 6}
    assert main(["inspect", str(root), "--doctor"]) == 0
    text = capsys.readouterr().out
    assert "split layout, 2 classes" in text and "train/test leakage: 1 pair(s)" in text
    assert main(["inspect", str(root)]) == 0
    assert "leakage" not in capsys.readouterr().out


def test_doctor_mislabels_lists_held_out_disagreements(planted_mislabels, shared_mislabel_search, capsys):
    # The defaults (3 folds, 10 epochs, seed 1337): the search the core test and the
    # window's test run on the same planted dataset, run once for all three.
    root, planted = planted_mislabels
    assert run(["doctor", root, "--mislabels", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    search = data["mislabels"]
    assert (search["folds"], search["epochs"], search["seed"]) == (3, 10, 1337)
    rows = search["suspects"]
    assert [row["path"] in planted for row in rows[:5]] == [True] * 5, rows
    assert len(rows) <= 7
    for row in rows:
        assert row["folder_class"] != row["predicted_class"]
        assert row["confidence"] >= 0.5 and row["folder_class_probability"] <= 0.25
    for row in rows[:5]:
        assert (row["folder_class"], row["predicted_class"]) == ("square", "circle")
    confidences = [row["confidence"] for row in rows]
    assert confidences == sorted(confidences, reverse=True)

    assert run(["doctor", root, "--mislabels"]) == 0
    text = capsys.readouterr().out
    assert f"likely mislabels (3 folds, 10 epochs each): {len(rows)}" in text
    assert f"  {rows[0]['path']}: in 'square', looks like 'circle' ({rows[0]['confidence']:.2f}; " in text
    assert run(["doctor", root, "--mislabels", "--folds", "1"]) == 2
    assert "--folds must be at least 2" in capsys.readouterr().err


def test_print_doctor_lists_every_suspect(capsys):
    report = {"root": "/data", "num_images": 3, "seconds": 0.1, "near_duplicates": [], "leakage": [],
              "label_conflicts": [], "errors": [{"path": "/data/a/bad.png", "reason": "truncated"}],
              "imbalance": {"split": "all", "ratio": 4.0, "weighting_suggested": True,
                            "class_weight_by_name": {"a": 0.4, "b": 1.6}},
              "mislabels": {"folds": 3, "epochs": 6, "seed": 1, "suspects": [
                  {"path": "/data/a/x.png", "folder_class": "a", "predicted_class": "b",
                   "confidence": 0.93, "folder_class_probability": 0.04}]}}
    cli_insight.print_doctor(report)
    captured = capsys.readouterr()
    assert "suggested class weights: a 0.40, b 1.60 (train with --class-weights balanced)" in captured.out
    assert "/data/a/x.png: in 'a', looks like 'b' (0.93; 'a' 0.04)" in captured.out
    assert "could not hash /data/a/bad.png: truncated" in captured.err
    cli_insight.print_doctor(report, text=False)
    captured = capsys.readouterr()
    assert captured.out == "" and "bad.png" in captured.err
