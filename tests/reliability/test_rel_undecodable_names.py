"""File names that are not valid UTF-8 reach every output without a crash, and every output
file is written whole or not at all (issue 17, case 5, outputs other than the journal).

Row "file names that are not valid UTF-8" of ../shared/docs/reliability.md. The escapes are
core.names': ``\\xNN`` in text for people (terminal, CSV cells), ``\\udcNN`` in JSON (lossless).
"""

import csv
import json
import os
from pathlib import Path

import pytest
from hostile_inputs import write_image

from imgcls_desktop.cli import main
from imgcls_desktop.core.errors import ImgclsError

from synthetic import make_shapes_dataset

BAD = b"bad\xff\xfe.png"
SHOWN = "bad\\xff\\xfe.png"


def bad_named_image(folder):
    """An image whose name holds the bytes 0xFF 0xFE (legal on Linux), as a str path."""
    raw = os.path.join(os.fsencode(folder), BAD)
    write_image(Path(os.fsdecode(raw)))
    assert os.path.exists(raw)
    return os.fsdecode(raw)


def test_predict_prints_and_writes_an_undecodable_name(capsys, tiny_model_file, tmp_path):
    model, _ = tiny_model_file
    images = tmp_path / "images"
    images.mkdir()
    bad = bad_named_image(images)
    write_image(images / "good.png")
    broken = Path(os.fsdecode(os.path.join(os.fsencode(images), b"broken\xff.png")))
    broken.write_bytes(b"not an image")
    table = tmp_path / "out.csv"

    code = main(["predict", str(model), str(images), "--csv", str(table)])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert "UnicodeEncodeError" not in captured.err
    lines = captured.out.splitlines()
    assert any(line.startswith(str(images / SHOWN) + ": ") for line in lines)
    assert f"{images}/broken\\xff.png" in captured.err  # the per-file error names it too

    rows = list(csv.DictReader(table.open(encoding="utf-8", newline="")))
    by_name = {Path(row["path"]).name: row for row in rows}
    assert set(by_name) == {SHOWN, "good.png", "broken\\xff.png"}
    assert by_name[SHOWN]["label"] and not by_name[SHOWN]["error"]
    assert by_name["broken\\xff.png"]["error"]

    code = main(["predict", str(model), str(images), "--json"])
    results = json.loads(capsys.readouterr().out)["results"]
    # JSON keeps the exact name (\udcNN escapes): the path opens the very file again.
    assert bad in [r["path"] for r in results]
    assert os.path.exists(next(r["path"] for r in results if r["path"] == bad))


def test_a_failing_csv_write_leaves_the_previous_file_whole(monkeypatch, tmp_path):
    from imgcls_desktop.core import output_files

    table = tmp_path / "out.csv"
    table.write_text("previous,complete,file\n", encoding="utf-8")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output_files.os, "fsync", full_disk)
    with pytest.raises(ImgclsError, match="free space"):
        output_files.write_atomic(table, "new,half\n" * 1000)
    assert table.read_text(encoding="utf-8") == "previous,complete,file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_the_window_exports_through_the_same_writer(tmp_path):
    from imgcls_desktop.core import output_files
    from imgcls_desktop.core.inference import Prediction

    predictions = [Prediction(path=os.fsdecode(os.fsencode(str(tmp_path)) + b"/x\xff.png"), label="a",
                              confidence=0.9, top_k=[("a", 0.9), ("b", 0.1)]),
                   Prediction(path=str(tmp_path / "y.png"), error="cannot read")]
    target = tmp_path / "p.csv"
    output_files.write_predictions_csv(target, predictions)
    rows = list(csv.reader(target.open(encoding="utf-8", newline="")))
    assert rows[0] == output_files.PREDICTION_COLUMNS
    assert rows[1][0].endswith("/x\\xff.png") and rows[1][1] == "a" and rows[1][5] == "no"
    assert rows[2][4] == "cannot read"


def test_train_with_an_undecodable_name_prints_and_records_it(capsys, tmp_path):
    from imgcls_desktop.core.history import load_run, runs_dir

    dataset = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=10, size=32,
                                  layout="split", test_per_class=3)
    bad = bad_named_image(dataset / "test" / "circle")  # evaluated, so in the run record
    broken = Path(os.fsdecode(os.path.join(os.fsencode(dataset / "train" / "square"), b"zero\xff.png")))
    broken.write_bytes(b"")
    out = tmp_path / "m.keras"
    code = main(["train", str(dataset), "--out", str(out), "--preset", "tutorial_cnn", "--epochs", "1",
                 "--validation-split", "0.2", "--json"])
    captured = capsys.readouterr()
    assert code == 3, captured.err  # done, with a file skipped
    assert "UnicodeEncodeError" not in captured.err and "unexpected error" not in captured.err
    assert "zero\\xff.png" in captured.err
    run_id = json.loads(captured.out)["run_id"]
    record = (runs_dir() / f"{run_id}.json").read_bytes()
    assert b"\\udcff\\udcfe" in record  # the documented JSON escape, in a valid UTF-8 file
    record.decode("utf-8")
    evaluated = [row["path"] for row in load_run(run_id).evaluation["images"]]
    relative = os.path.relpath(bad, dataset).replace(os.sep, "/")
    assert relative in evaluated and os.path.exists(dataset / relative)  # lossless: opens the file


def test_inspect_prints_an_undecodable_problem_file(capsys, tmp_path):
    dataset = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, size=16)
    Path(os.fsdecode(os.path.join(os.fsencode(dataset / "circle"), b"zero\xff.png"))).write_bytes(b"")
    code = main(["inspect", str(dataset)])
    captured = capsys.readouterr()
    assert code == 3, captured.err
    assert "zero\\xff.png" in captured.out


def test_evaluate_prints_undecodable_names(capsys, tiny_model_file, tmp_path):
    model, class_names = tiny_model_file
    for name in class_names:  # the same image in both classes: one of them is a mistake
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        bad_named_image(folder)
        write_image(folder / "plain.png", colour=(10, 200, 30))
    broken = Path(os.fsdecode(os.path.join(os.fsencode(tmp_path / "data" / "alpha"), b"broken\xff.png")))
    broken.write_bytes(b"not an image")
    code = main(["evaluate", str(model), str(tmp_path / "data")])
    captured = capsys.readouterr()
    assert "UnicodeEncodeError" not in captured.err and "unexpected error" not in captured.err
    assert code == 3, captured.err
    assert f"wrong: {tmp_path}/data/" in captured.out and f"/{SHOWN}: " in captured.out
    assert "broken\\xff.png" in captured.err


class _StubReport:
    """What EvaluationView.export_report reads of a report, with a class folder named in bytes
    that are not UTF-8."""

    class_names = ["caf\udce9", "tea"]

    def to_dict(self):
        return {"class_names": self.class_names, "accuracy": 0.5}

    def per_class(self):
        return {name: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2} for name in self.class_names}


def test_the_windows_report_and_robustness_exports_are_whole_and_carry_any_name(qtbot, monkeypatch, tmp_path):
    from imgcls_desktop.core import output_files
    from imgcls_desktop.gui.evaluation_view import EvaluationView
    from imgcls_desktop.gui.robustness_view import RobustnessView

    view = EvaluationView()
    qtbot.addWidget(view)
    view.report = _StubReport()
    json_path, csv_path = view.export_report(tmp_path / "report.json")
    assert json.loads(Path(json_path).read_text(encoding="utf-8"))["class_names"][0] == "caf\udce9"
    rows = list(csv.reader(open(csv_path, encoding="utf-8", newline="")))
    assert rows[1][0] == "caf\\xe9"

    robustness = RobustnessView()
    qtbot.addWidget(robustness)
    robustness._report = {"class_names": ["caf\udce9"], "conditions": [
        {"family": "blur", "severity": 1, "title": "blur 1", "accuracy": 0.5,
         "per_class": {"caf\udce9": 0.5}, "drop": 0.1}]}
    table = tmp_path / "robustness.csv"
    robustness.export_csv(table)
    assert list(csv.reader(table.open(encoding="utf-8", newline="")))[0][4] == "caf\\xe9"

    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(output_files.os, "fsync", full_disk)
    for export in (lambda: view.export_report(tmp_path / "report.json"),
                   lambda: robustness.export_csv(table)):
        with pytest.raises(ImgclsError, match="free space"):
            export()
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before
