"""imgcls move / undo / journal: files really move, the journal lists them, undo puts them back."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_desktop.cli import main
from imgcls_desktop.core.dataset import scan_dataset

from synthetic import make_shapes_dataset


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def dataset(tmp_path):
    return make_shapes_dataset(tmp_path / "data", num_classes=3, per_class=3, layout="split",
                               test_per_class=2, seed=4)


def test_move_to_a_class_then_undo(capsys, dataset):
    a, b = dataset / "train" / "circle" / "circle_000.png", dataset / "train" / "circle" / "circle_001.png"
    code, out, err = run(capsys, "move", dataset, a, b, "--to", "square", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [entry["target"] for entry in report["moved"]] == ["train/square/circle_000.png",
                                                              "train/square/circle_001.png"]
    assert report["errors"] == []
    assert not a.exists() and (dataset / "train" / "square" / "circle_001.png").is_file()
    assert scan_dataset(dataset).counts()["train"] == {"circle": 1, "square": 5, "triangle": 3}

    code, out, err = run(capsys, "journal", dataset)
    assert code == 0
    assert "train/circle/circle_000.png -> train/square/circle_000.png (class square)" in out
    assert "2 move(s) can be undone" in out

    code, out, err = run(capsys, "undo", dataset, "--steps", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [entry["original"]["source"] for entry in report["undone"]] == ["train/circle/circle_001.png",
                                                                           "train/circle/circle_000.png"]
    assert report["remaining"] == 0 and report["error"] is None
    assert a.is_file() and b.is_file()
    assert scan_dataset(dataset).counts()["train"] == {"circle": 3, "square": 3, "triangle": 3}

    code, out, err = run(capsys, "undo", dataset)
    assert code == 1 and "nothing to undo" in out


def test_quarantine_with_a_reason_and_text_output(capsys, dataset):
    image = dataset / "test" / "triangle" / "triangle_000.png"
    code, out, err = run(capsys, "move", dataset, image, "--quarantine", "--reason", "two shapes")
    assert code == 0, err
    assert "test/triangle/triangle_000.png -> quarantine (two shapes)" in out
    assert (dataset / ".imgcls" / "quarantine" / "test" / "triangle" / "triangle_000.png").is_file()
    scan = scan_dataset(dataset)
    assert scan.counts()["test"]["triangle"] == 1 and scan.problems == []

    code, out, _ = run(capsys, "journal", dataset, "--json")
    journal = json.loads(out)
    assert journal["undoable"] == 1
    [entry] = journal["entries"]
    assert entry["action"] == "quarantine" and entry["reason"] == "two shapes" and entry["status"] == "done"

    code, out, err = run(capsys, "undo", dataset)
    assert code == 0 and "undid the quarantine of test/triangle/triangle_000.png" in out
    assert image.is_file()


def test_some_images_fail_exit_3_all_fail_exit_1(capsys, dataset, tmp_path):
    good = dataset / "train" / "square" / "square_000.png"
    missing = dataset / "train" / "square" / "nope.png"
    code, out, err = run(capsys, "move", dataset, good, missing, "--to", "circle", "--json")
    assert code == 3
    report = json.loads(out)
    assert len(report["moved"]) == 1 and report["errors"][0]["path"] == str(missing)
    assert f"{missing}: file not found" in err and len(err.strip().splitlines()) == 1

    outside = tmp_path / "outside.png"
    outside.write_bytes((dataset / "train" / "circle" / "circle_000.png").read_bytes())
    code, out, err = run(capsys, "move", dataset, outside, "--quarantine")
    assert code == 1
    assert err.strip() == f"imgcls: {outside}: is not inside the dataset folder {dataset}; " \
                          "only images of that dataset can be moved"
    assert outside.is_file()


def test_usage_errors_exit_2(capsys, dataset):
    image = dataset / "train" / "square" / "square_000.png"
    code, _, err = run(capsys, "move", dataset, image, "--to", "dog")
    assert code == 2 and "'dog' is not a class" in err and "circle, square, triangle" in err
    code, _, err = run(capsys, "move", dataset, image, "--to", "circle", "--reason", "x")
    assert code == 2 and "--reason goes with --quarantine" in err
    code, _, err = run(capsys, "undo", dataset, "--steps", "0")
    assert code == 2 and "--steps" in err
    with pytest.raises(SystemExit) as exited:
        main(["move", str(dataset), str(image)])  # neither --to nor --quarantine
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        main(["move", str(dataset), str(image), "--to", "circle", "--quarantine"])
    assert exited.value.code == 2
    capsys.readouterr()
    assert image.is_file()
    code, _, err = run(capsys, "journal", dataset / "missing")
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_undo_stops_at_a_conflict_and_says_what_to_do(capsys, dataset):
    image = dataset / "train" / "circle" / "circle_002.png"
    assert run(capsys, "move", dataset, image, "--to", "triangle")[0] == 0
    image.write_bytes(b"someone put a new file here")
    code, out, err = run(capsys, "undo", dataset, "--json")
    assert code == 1
    assert json.loads(out)["remaining"] == 1
    assert "another file now has that name" in err and str(image) in err
    assert image.read_bytes() == b"someone put a new file here"


def test_the_installed_command_runs_the_verbs(dataset):
    image = dataset / "test" / "square" / "square_001.png"
    command = [sys.executable, "-m", "imgcls_desktop.cli"]
    cwd = Path(__file__).resolve().parents[1]
    done = subprocess.run([*command, "move", str(dataset), str(image), "--to", "circle"],
                          capture_output=True, text=True, cwd=cwd, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([*command, "undo", str(dataset), "--json"], capture_output=True, text=True,
                          cwd=cwd, timeout=120)
    assert done.returncode == 0 and json.loads(done.stdout)["remaining"] == 0
    assert image.is_file()
