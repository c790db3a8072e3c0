"""Run history: two real trainings recorded, listed, compared image by image; safe files."""

import dataclasses
import json
import logging
import os

import pytest

from imgcls_desktop.core import history
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.evaluation import evaluation_items


@pytest.fixture(scope="module")
def split_scan(shapes_split_dataset):
    return scan_dataset(shapes_split_dataset)


@pytest.fixture(scope="module")
def weak_result(split_scan):
    """One epoch at a tiny learning rate (about half right), against the 12-epoch ``trained``
    model (all right): images really flip, whatever the thread timing does to either run."""
    from imgcls_desktop.core.training import TrainingConfig, train

    return train(split_scan, TrainingConfig(preset="small_cnn", epochs=1, batch_size=16,
                                            learning_rate=1e-4, seed=3))


@pytest.fixture
def two_runs(weak_result, trained, split_scan):
    strong_result, model_path = trained
    weak = history.record_run(weak_result, split_scan)
    strong = history.record_run(strong_result, split_scan, model_path)
    return weak, strong


def test_records_real_runs_and_lists_them_newest_first(two_runs, split_scan, shapes_split_dataset, trained):
    weak, strong = two_runs
    assert [summary.id for summary in history.list_runs()] == [strong.id, weak.id]
    assert history.resolve_run_id("latest") == strong.id
    assert history.resolve_run_id("previous") == weak.id
    for run, epochs in ((weak, 1), (strong, 12)):
        assert history.RUN_ID_PATTERN.match(run.id)
        assert history.load_run(run.id).to_dict() == run.to_dict()  # what was written is what reads back
        assert run.class_names == ["circle", "square", "triangle"] and run.preset == "small_cnn"
        assert run.config["epochs"] == epochs and run.seed == 3 and run.epochs_run == epochs
        assert len(run.history["loss"]) == len(run.history["val_accuracy"]) == epochs
        assert run.dataset["fingerprint"] == split_scan.fingerprint()
        assert run.dataset["root"] == str(shapes_split_dataset.resolve())
        evaluation = run.evaluation
        assert evaluation["split"] == "test" and evaluation["num_images"] == 24
        images = evaluation["images"]
        assert sorted(row["path"] for row in images) == sorted(
            item.path.relative_to(shapes_split_dataset).as_posix() for item in split_scan.splits["test"])
        assert all(row["path"].split("/")[1] == row["true"] for row in images)
        right = sum(row["predicted"] == row["true"] for row in images)
        assert evaluation["accuracy"] == pytest.approx(right / 24)
        assert sum(map(sum, evaluation["confusion_matrix"])) == 24
        assert sum(row[i] for i, row in enumerate(evaluation["confusion_matrix"])) == right
    assert weak.model_path is None and strong.model_path == str(trained[1])
    assert strong.eval_accuracy >= 0.8 and weak.eval_accuracy < strong.eval_accuracy


def test_compare_lists_the_images_that_flipped(two_runs):
    weak, strong = two_runs
    comparison = history.compare_runs(weak.id, strong.id)
    assert comparison["same_dataset"] and comparison["note"] is None
    assert comparison["num_compared"] == 24
    before, after = weak.image_results(), strong.image_results()
    expected_right = sorted(path for path in before
                            if before[path]["predicted"] != before[path]["true"]
                            and after[path]["predicted"] == after[path]["true"])
    expected_wrong = sorted(path for path in before
                            if before[path]["predicted"] == before[path]["true"]
                            and after[path]["predicted"] != after[path]["true"])
    assert [row["path"] for row in comparison["flipped_to_right"]] == expected_right
    assert [row["path"] for row in comparison["flipped_to_wrong"]] == expected_wrong
    assert expected_right  # one epoch against twelve: some images must have been fixed
    for row in comparison["flipped_to_right"]:
        assert row["a_predicted"] == before[row["path"]]["predicted"] != row["true"]
        assert row["b_predicted"] == row["true"]
    assert comparison["metrics"]["eval_accuracy"]["delta"] == pytest.approx(
        strong.eval_accuracy - weak.eval_accuracy, abs=1e-6)
    assert comparison["metrics"]["epochs_run"] == {"a": 1, "b": 12, "delta": 11}
    assert comparison["config_changes"]["epochs"] == [1, 12]
    assert set(comparison["per_class"]) == {"circle", "square", "triangle"}

    backwards = history.compare_runs(strong, weak)
    assert backwards["flipped_to_wrong"] == [
        dict(row, a_predicted=row["b_predicted"], a_confidence=row["b_confidence"],
             b_predicted=row["a_predicted"], b_confidence=row["a_confidence"])
        for row in comparison["flipped_to_right"]]


def test_other_dataset_versions_compare_on_shared_files_and_say_so(two_runs):
    weak, strong = two_runs
    evaluation = dict(strong.evaluation, images=strong.evaluation["images"][:10])
    changed = dataclasses.replace(strong, dataset=dict(strong.dataset, fingerprint="0" * 64),
                                  evaluation=evaluation)
    comparison = history.compare_runs(weak, changed)
    assert not comparison["same_dataset"] and comparison["num_compared"] == 10
    assert "fingerprints differ" in comparison["note"] and "10" in comparison["note"]
    compared = {row["path"] for row in evaluation["images"]}
    assert {row["path"] for row in comparison["flipped_to_right"]} <= compared

    elsewhere = dataclasses.replace(changed, evaluation=dict(evaluation, images=[
        dict(row, path="elsewhere/" + row["path"]) for row in evaluation["images"]]))
    comparison = history.compare_runs(weak, elsewhere)
    assert comparison["num_compared"] == 0 and comparison["flipped_to_right"] == []
    assert "share no evaluated image" in comparison["note"]


def test_without_a_test_split_the_recorded_validation_files_are_evaluated(weak_result, split_scan):
    no_test = dataclasses.replace(split_scan, splits={"train": split_scan.splits["train"]})
    items, split, _reason = evaluation_items(no_test, weak_result.metadata)
    recorded = weak_result.metadata["dataset"]["validation_files"]
    assert split == "validation" and len(items) == len(recorded) == 15
    assert sorted(item.path.relative_to(split_scan.root).as_posix() for item in items) == sorted(recorded)
    run = history.record_run(weak_result, no_test)
    assert sorted(row["path"] for row in run.evaluation["images"]) == sorted(recorded)

    bare = history.record_run(weak_result, split_scan, evaluate=False)
    assert bare.evaluation is None and bare.eval_accuracy is None
    note = history.compare_runs(run.id, bare.id)["note"]
    assert bare.id in note and "no per-image evaluation" in note


def test_writes_are_atomic_and_failures_name_the_file(two_runs, monkeypatch, tmp_path):
    weak, _strong = two_runs
    folder = history.runs_dir()
    before = (folder / f"{weak.id}.json").read_bytes()

    def no_rename(source, target):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(history.os, "replace", no_rename)
        with pytest.raises(history.HistoryError, match=weak.id) as raised:
            history.set_model_path(weak.id, tmp_path / "new.keras")
        assert "No space left" in str(raised.value) and "model itself is not affected" in str(raised.value)
        assert (folder / f"{weak.id}.json").read_bytes() == before
        with pytest.raises(history.HistoryError, match="No space left"):
            history.record_run(_ResultLike(weak), None, evaluate=False)
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        f"{summary.id}.json" for summary in history.list_runs())  # no temp file, no empty claim

    run = history.set_model_path(weak.id, tmp_path / "new.keras")
    assert history.load_run(weak.id).model_path == str(tmp_path / "new.keras") == run.model_path


class _ResultLike:
    """The fields of a TrainingResult that recording reads, taken from a recorded run."""

    def __init__(self, run):
        self.class_names = run.class_names
        self.history = run.history
        self.epochs_run, self.best_epoch = run.epochs_run, run.best_epoch
        self.best_val_accuracy, self.stop_reason = run.best_val_accuracy, run.stop_reason
        self.seconds = run.seconds
        self.metadata = {"preset": run.preset, "training": {"config": run.config},
                         "dataset": dict(run.dataset)}


def test_damaged_run_files_are_skipped_with_a_warning(two_runs, caplog):
    weak, strong = two_runs
    folder = history.runs_dir()
    (folder / "20260101-000000-aaaa.json").write_text("{ not json", encoding="utf-8")
    (folder / "20260101-000000-bbbb.json").write_text(json.dumps({"id": "x"}), encoding="utf-8")
    moved = json.loads((folder / f"{weak.id}.json").read_text(encoding="utf-8"))
    (folder / "20260101-000000-cccc.json").write_text(json.dumps(moved), encoding="utf-8")
    (folder / "20260101-000000-dddd.json").write_bytes(b"\xff\xfe\x00garbage")
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        summaries = history.list_runs()
    assert [summary.id for summary in summaries] == [strong.id, weak.id]
    for name in ("aaaa", "bbbb", "cccc", "dddd"):
        assert f"20260101-000000-{name}.json" in caplog.text
    _summaries, problems = history.scan_runs()
    reasons = dict((path.rsplit("-", 1)[1][:4], reason) for path, reason in problems)
    assert "not valid JSON" in reasons["aaaa"] and "missing" in reasons["bbbb"]
    assert f"holds run {weak.id}" in reasons["cccc"]
    with pytest.raises(history.HistoryError, match="not valid JSON"):
        history.load_run("20260101-000000-aaaa")


def test_ids_resolve_by_prefix_and_delete_keeps_the_model(two_runs, trained):
    weak, strong = two_runs
    shared = os.path.commonprefix([weak.id, strong.id])
    assert shared.startswith("20")  # recorded the same day, at least
    assert history.resolve_run_id(weak.id[:len(shared) + 1]) == weak.id
    with pytest.raises(history.UnknownRunError, match="matches 2 runs"):
        history.resolve_run_id(shared)
    for bad in ("nope", "../../etc/passwd", ""):
        with pytest.raises(history.UnknownRunError):
            history.resolve_run_id(bad)
    with pytest.raises(history.UnknownRunError, match="not a run id"):
        history.load_run("../secrets")
    history.delete_run(strong.id)
    assert [summary.id for summary in history.list_runs()] == [weak.id]
    assert trained[1].exists()
    with pytest.raises(history.UnknownRunError):
        history.delete_run(strong.id)
