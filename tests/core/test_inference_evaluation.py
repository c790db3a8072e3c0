"""Prediction per file with per-file errors, and the evaluation report on a held-out split."""

import numpy as np

from imgcls_desktop.core.evaluation import evaluate_folder
from imgcls_desktop.core.images import load_image
from imgcls_desktop.core.inference import Predictor
from imgcls_desktop.core.model_io import load_model


def test_predict_files_folders_and_bad_files(trained, shapes_split_dataset, tmp_path):
    _, path = trained
    predictor = Predictor(load_model(path))
    predictor.warm_up()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not really a jpeg")
    folder = shapes_split_dataset / "test" / "circle"
    results = predictor.predict_paths([broken, folder, tmp_path / "missing.png"], top_k=2)
    errors = [r for r in results if not r.ok]
    assert [r.path for r in errors] == [str(broken), str(tmp_path / "missing.png")]
    good = [r for r in results if r.ok]
    assert len(good) == 8
    assert sum(r.label == "circle" for r in good) >= 7
    assert all(len(r.top_k) == 2 and r.top_k[0][1] >= r.top_k[1][1] for r in good)
    assert all(abs(sum(r.probabilities) - 1) < 1e-4 for r in good)


def test_single_image_path_matches_batch_path(trained, shapes_split_dataset):
    _, path = trained
    predictor = Predictor(load_model(path))
    files = sorted((shapes_split_dataset / "test").rglob("*.png"))[:5]
    batch = predictor.probabilities(np.stack([load_image(f, (32, 32)) for f in files]))
    one_by_one = np.concatenate([predictor.probabilities(load_image(f, (32, 32))[None]) for f in files])
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-4, atol=1e-6)


def test_evaluate_uses_test_split_and_reports_per_class(trained, shapes_split_dataset):
    _, path = trained
    report = evaluate_folder(load_model(path), shapes_split_dataset)
    assert report.split == "test"
    assert len(report.y_true) == 24
    assert report.accuracy >= 0.85
    assert report.confusion_matrix.sum() == 24
    assert report.confusion_matrix.trace() == round(report.accuracy * 24)
    per_class = report.per_class()
    assert set(per_class) == {"circle", "square", "triangle"}
    assert all(row["support"] == 8 for row in per_class.values())
    data = report.to_dict()
    assert set(data) >= {"accuracy", "class_names", "confusion_matrix", "per_class", "misclassified"}
    wrong = report.misclassified()
    assert len(wrong) == 24 - report.confusion_matrix.trace()
    assert [w["confidence"] for w in wrong] == sorted((w["confidence"] for w in wrong), reverse=True)
