"""imgcls train records a run; imgcls runs lists, shows, compares and deletes them."""

import argparse
import json

from imgcls_desktop.cli import build_parser, history as cli_history, main
from imgcls_desktop.core import history
from imgcls_desktop.core.dataset import scan_dataset


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_records_a_run_that_runs_lists_shows_compares_and_deletes(
        capsys, shapes_split_dataset, trained, tmp_path):
    model = tmp_path / "one_epoch.keras"
    code, out, err = run(capsys, "train", shapes_split_dataset, "--out", model, "--epochs", "1",
                         "--batch-size", "16", "--learning-rate", "0.0001", "--seed", "3", "--json")
    assert code == 0, err
    weak_id = json.loads(out)["run_id"]
    weak = history.load_run(weak_id)
    assert weak.model_path == str(model) and weak.config["epochs"] == 1
    assert weak.evaluation["split"] == "test" and weak.evaluation["num_images"] == 24
    strong_result, strong_model = trained
    strong = history.record_run(strong_result, scan_dataset(shapes_split_dataset), strong_model)
    assert weak.eval_accuracy < 0.8 < strong.eval_accuracy  # a barely trained run and a good one

    code, out, err = run(capsys, "runs", "--json")
    assert code == 0 and err == ""
    listed = json.loads(out)["runs"]
    assert [row["id"] for row in listed] == [strong.id, weak_id]
    assert listed[1]["model"] == str(model) and listed[1]["epochs_run"] == 1
    assert listed[0]["eval_accuracy"] == strong.eval_accuracy
    code, out, _ = run(capsys, "runs")
    assert code == 0 and weak_id in out and strong.id in out and "small_cnn" in out

    code, out, _ = run(capsys, "runs", "show", weak_id[:-1], "--json")
    assert code == 0 and json.loads(out) == weak.to_dict()
    code, out, _ = run(capsys, "runs", "--json", "show", "latest")  # --json before the action too
    assert code == 0 and json.loads(out)["id"] == strong.id
    code, out, _ = run(capsys, "runs", "show", "previous")
    assert code == 0 and "confusion matrix" in out and f"{weak.eval_accuracy:.4f}" in out

    code, out, _ = run(capsys, "runs", "compare", weak_id, strong.id, "--json")
    assert code == 0
    comparison = json.loads(out)
    assert comparison == json.loads(json.dumps(history.compare_runs(weak_id, strong.id)))
    fixed = comparison["flipped_to_right"]
    assert fixed and all(row["b_predicted"] == row["true"] != row["a_predicted"] for row in fixed)
    code, out, _ = run(capsys, "runs", "compare", "previous", "latest")
    assert code == 0 and f"wrong -> right: {len(fixed)} of 24 images" in out
    assert "setting epochs: 1 -> 12" in out and fixed[0]["path"] in out

    code, out, _ = run(capsys, "runs", "delete", weak_id, "--json")
    assert code == 0 and json.loads(out)["deleted"] == weak_id
    assert model.exists()  # forgetting a run never deletes its model
    code, out, _ = run(capsys, "runs", "--json")
    assert [row["id"] for row in json.loads(out)["runs"]] == [strong.id]
    code, _, err = run(capsys, "runs", "show", weak_id)
    assert code == 2 and err.count("\n") == 1 and "imgcls runs" in err


def test_damaged_run_file_is_skipped_with_exit_3(capsys, trained, shapes_split_dataset):
    good = history.record_run(trained[0], scan_dataset(shapes_split_dataset), evaluate=False)
    bad = history.runs_dir() / "20260101-000000-abcd.json"
    bad.write_text('{"id": ', encoding="utf-8")
    code, out, err = run(capsys, "runs", "--json")
    assert code == 3
    assert [row["id"] for row in json.loads(out)["runs"]] == [good.id]
    assert str(bad) in err and "not valid JSON" in err
    code, _, err = run(capsys, "runs", "show", "20260101-000000-abcd")
    assert code == 1 and err.count("\n") == 1 and str(bad) in err and "Traceback" not in err
    code, _, err = run(capsys, "runs", "compare", good.id, "nothing-like-this")
    assert code == 2 and "nothing-like-this" in err
    code, out, _ = run(capsys, "runs", "delete", "20260101-000000-abcd")
    assert code == 0 and not bad.exists()
    assert run(capsys, "runs")[0] == 0


def test_a_failed_recording_keeps_the_model_and_no_history_records_nothing(
        capsys, monkeypatch, trained, shapes_split_dataset):
    result, model = trained
    scan = scan_dataset(shapes_split_dataset)
    args = build_parser().parse_args(["train", str(shapes_split_dataset), "--no-history"])
    assert args.no_history is True
    assert cli_history.record_training(args, result, scan, model) is None
    assert history.list_runs() == []

    def full_disk(*_args, **_kwargs):
        raise history.HistoryError("Could not write the run file: No space left on device")

    args = argparse.Namespace(no_history=False, json=False)
    with monkeypatch.context() as patched:
        patched.setattr(history, "record_run", full_disk)
        assert cli_history.record_training(args, result, scan, model) is None
    err = capsys.readouterr().err
    assert "not recorded" in err and str(model) in err and "No space left" in err
    assert model.exists()

    recorded = history.record_run(result, scan, model, evaluate=False)
    cli_history.print_recorded(args, recorded)
    assert f"Recorded run {recorded.id}, no held-out images" in capsys.readouterr().out
