"""The explain, robustness and doctor verbs, run through argparse as imgcls runs them."""

import argparse
import json

import numpy as np
from PIL import Image

from imgcls_desktop import cli_insight


def run(argv):
    parser = argparse.ArgumentParser(prog="imgcls")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true")
    common.add_argument("--debug", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_insight.add_commands(sub, common)
    args = parser.parse_args([str(part) for part in argv])
    return cli_insight.COMMANDS[args.command](args)


def test_explain_writes_overlay_and_prints_label(trained, shapes_split_dataset, tmp_path, capsys):
    _result, model = trained
    image = shapes_split_dataset / "test" / "circle" / "circle_000.png"
    out = tmp_path / "heat.png"
    assert run(["explain", model, image, "--out", out, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"path", "label", "confidence", "explained_class", "layer", "out"}
    assert data["label"] == data["explained_class"] == "circle"
    with Image.open(out) as written:
        assert written.mode == "RGB" and min(written.size) >= 256
    assert run(["explain", model, image, "--out", out, "--class", "square"]) == 0
    text = capsys.readouterr().out
    assert "circle" in text and "'square'" in text
    assert run(["explain", model, image, "--out", out, "--class", "nope"]) == 2


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
