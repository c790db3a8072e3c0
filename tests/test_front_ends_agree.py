"""The window, ``imgcls`` and the run history decide the same things the same way.

Each rule has one implementation in core; these tests drive every front end that uses it
on the same model and folder and compare what they chose or wrote.
"""

import json
import os

import pytest

from imgcls_desktop.cli import main
from imgcls_desktop.core import evaluation, history, robustness
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.model_io import load_model, save_model
from imgcls_desktop.core.paths import relative_posix

from synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory):
    """A model trained on a flat folder (no test/ split), a quarter held out by the seed:
    (folder, TrainingResult, model path). One epoch: only which files it records matters."""
    from imgcls_desktop.core.defaults import DEFAULT_SEED
    from imgcls_desktop.core.training import TrainingConfig, train

    folder = make_shapes_dataset(tmp_path_factory.mktemp("flat"), num_classes=3, per_class=12, seed=4)
    result = train(scan_dataset(folder), TrainingConfig(preset="tutorial_cnn", epochs=1, batch_size=16,
                                                        validation_split=0.25, seed=DEFAULT_SEED))
    path = save_model(result.model, tmp_path_factory.mktemp("flat_model") / "flat.keras", result.metadata)
    return folder, result, path


def _spy(monkeypatch, module, name):
    """Wrap ``module.name`` so each call's ``items`` (the second argument) is recorded."""
    calls = []
    real = getattr(module, name)

    def spy(loaded, items, *args, **kwargs):
        calls.append(sorted(relative_posix(item.path, item.path.parents[1]) for item in items))
        return real(loaded, items, *args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def _chosen_by_each_front_end(monkeypatch, capsys, folder, result, model_path):
    """{front end: sorted 'class/file' names} of the images each one evaluates on."""
    from imgcls_desktop.gui.model_state import evaluation_items as window_rule

    scan = scan_dataset(folder)
    chosen = {}
    evaluated = _spy(monkeypatch, evaluation, "evaluate_items")
    assert main(["evaluate", str(model_path), str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    chosen["imgcls evaluate"] = evaluated[-1]
    checked = _spy(monkeypatch, robustness, "robustness_report")
    assert main(["robustness", str(model_path), str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["split"] == report["split"]
    chosen["imgcls robustness"] = checked[-1]
    run = history.record_run(result, scan, model_path)  # the run record of `imgcls train` and the window
    assert run.evaluation["split"] == report["split"]
    chosen["run record"] = sorted("/".join(row["path"].split("/")[-2:]) for row in run.evaluation["images"])
    for name, metadata in (("window (opened model)", load_model(model_path).metadata),
                           ("window (fresh model)", result.metadata)):
        items, split = window_rule(scan, metadata)
        assert split == report["split"]
        chosen[name] = sorted(relative_posix(item.path, item.path.parents[1]) for item in items)
    return report, chosen


def test_without_a_test_split_every_front_end_evaluates_the_recorded_validation_files(
        flat_model, monkeypatch, capsys):
    folder, result, model_path = flat_model
    report, chosen = _chosen_by_each_front_end(monkeypatch, capsys, folder, result, model_path)
    recorded = sorted(result.metadata["dataset"]["validation_files"])
    assert report["split"] == "validation" and report["num_images"] == len(recorded) == 9
    for front_end, names in chosen.items():
        assert names == recorded, front_end


def test_with_a_test_split_every_front_end_evaluates_it(trained, shapes_split_dataset, monkeypatch, capsys):
    result, model_path = trained
    report, chosen = _chosen_by_each_front_end(monkeypatch, capsys, shapes_split_dataset, result, model_path)
    test = sorted(relative_posix(path, shapes_split_dataset / "test")
                  for path in (shapes_split_dataset / "test").rglob("*.png"))
    assert report["split"] == "test" and len(test) == 24
    for front_end, names in chosen.items():
        assert names == test, front_end


def test_the_rule_in_each_case(flat_model, tmp_path):
    folder, result, _model_path = flat_model
    scan = scan_dataset(folder)
    recorded = result.metadata["dataset"]["validation_files"]
    items, split, _reason = evaluation.evaluation_items(scan, result.metadata)
    assert split == "validation" and sorted(relative_posix(i.path, folder) for i in items) == sorted(recorded)

    # Another folder (a separate test folder): every image, never the files that happen to
    # share a recorded name.
    other = make_shapes_dataset(tmp_path / "other", num_classes=3, per_class=12, seed=4)
    items, split, _reason = evaluation.evaluation_items(scan_dataset(other), result.metadata)
    assert split == "all" and len(items) == 36

    # A model without metadata (not made by imgcls) on a folder with val/: the val split.
    with_val = make_shapes_dataset(tmp_path / "val", num_classes=3, per_class=6, layout="split", test_per_class=2)
    os.rename(with_val / "test", with_val / "val")
    items, split, _reason = evaluation.evaluation_items(scan_dataset(with_val), None)
    assert split == "val" and len(items) == 6

    # Trained on every image of this folder: nothing held out, and the reason says so.
    everything = dict(result.metadata, dataset=dict(result.metadata["dataset"], validation_files=[]))
    items, _split, reason = evaluation.evaluation_items(scan, everything)
    assert items == [] and "every image" in reason

    # Metadata is read from a file: a malformed one is treated as none, never a crash.
    items, split, _reason = evaluation.evaluation_items(scan, {"dataset": {"root": str(folder),
                                                                           "validation_files": "a.png"}})
    assert items == [] and split == "validation"


def test_the_window_and_imgcls_predict_write_the_same_csv(trained, shapes_split_dataset, qtbot, tmp_path,
                                                           capsys):
    """``imgcls predict --csv`` and the Predict view's Export CSV… on the same images."""
    from imgcls_desktop.gui.prediction_pane import PredictionPane

    _result, model_path = trained
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths = sorted((shapes_split_dataset / "test" / "circle").glob("*.png"))[:3] + [broken]
    from_cli = tmp_path / "cli.csv"
    assert main(["predict", str(model_path), *map(str, paths), "--csv", str(from_cli)]) == 3
    capsys.readouterr()

    pane = PredictionPane()
    qtbot.addWidget(pane)
    pane.set_model(load_model(model_path))
    with qtbot.waitSignal(pane.predictions_ready, timeout=60000):
        assert pane.classify_paths(paths)
    qtbot.waitUntil(lambda: not pane.is_busy(), timeout=60000)
    from_window = tmp_path / "window.csv"
    pane.export_csv(from_window)

    assert from_window.read_bytes() == from_cli.read_bytes()
    lines = from_cli.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,label,confidence,top_k,error,unknown" and len(lines) == 5
    assert lines[1].count("; ") == 2  # top 3 of 3 classes, as both front ends ask for


def test_the_window_and_imgcls_robustness_use_one_list_of_corruptions():
    """``imgcls robustness`` applies the middle severity of each family the window grades."""
    import numpy as np

    graded = robustness.graded_corruptions()
    middle = {c.family: c for c in graded if c.severity == robustness.MIDDLE_SEVERITY}
    assert [c.family for c in robustness.DEFAULT_CORRUPTIONS] == list(robustness.SEVERITIES) == list(middle)
    image = np.random.default_rng(0).integers(0, 256, size=(48, 40, 3), dtype=np.uint8)
    for default in robustness.DEFAULT_CORRUPTIONS:
        same = middle[default.family]
        assert default.title == same.title and default.severity == same.severity
        for index in (0, 1):  # rotation alternates its direction by index
            assert np.array_equal(default.apply(image, index), same.apply(image, index)), default.name
        assert robustness.CORRUPTIONS_BY_NAME[default.name] is default
    assert not hasattr(robustness, "DEFAULT")
