"""Dataset doctor: near-duplicates and leakage found, unrelated images left alone, weights."""

import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.doctor import class_weights, doctor_report, hamming, phash
from imgcls_desktop.core.errors import Cancelled


@pytest.fixture
def leaky_dataset(shapes_split_dataset, tmp_path):
    root = tmp_path / "leaky"
    shutil.copytree(shapes_split_dataset, root)
    source = root / "train" / "circle" / "circle_003.png"
    with Image.open(source) as image:
        image.convert("RGB").save(root / "test" / "circle" / "leaked_jpeg.jpg", quality=80)
        brighter = ImageEnhance.Brightness(image.convert("RGB")).enhance(1.05)
        brighter.save(root / "test" / "square" / "leaked_bright.png")
    shutil.copy(root / "train" / "square" / "square_001.png", root / "test" / "square" / "exact_copy.png")
    return root


def test_altered_copies_across_splits_are_leakage(leaky_dataset):
    scan = scan_dataset(leaky_dataset)
    report = doctor_report(scan)
    leaks = {(row["train"].split("/")[-1], row["other"].split("/")[-1]): row for row in report["leakage"]}
    assert set(leaks) == {("circle_003.png", "leaked_jpeg.jpg"), ("circle_003.png", "leaked_bright.png"),
                          ("square_001.png", "exact_copy.png")}
    assert leaks[("square_001.png", "exact_copy.png")]["exact"] is True
    assert leaks[("circle_003.png", "leaked_jpeg.jpg")]["same_class"] is True
    assert leaks[("circle_003.png", "leaked_bright.png")]["same_class"] is False
    # The copy filed under another class is also a label conflict.
    assert any(sorted(row["classes"]) == ["circle", "square"] for row in report["label_conflicts"])
    # Only the planted copies are grouped: 93 unrelated images stay apart.
    grouped = sorted(name.split("/")[-1] for group in report["near_duplicates"] for name in group["paths"])
    assert grouped == sorted(["circle_003.png", "leaked_jpeg.jpg", "leaked_bright.png",
                              "square_001.png", "exact_copy.png"])
    assert report["num_images"] == 24 * 3 + 8 * 3 + 3 and report["errors"] == []


def test_unrelated_images_are_far_apart(tmp_path):
    rng = np.random.default_rng(4)
    paths = []
    for i in range(30):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8), "RGB").save(path)
        paths.append(path)
    hashes = [phash(path) for path in paths]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]]
    assert min(distances) > 8


def test_class_weights_favour_the_minority_and_average_one():
    weights = class_weights([10, 2])
    assert weights[1] > weights[0]
    assert np.isclose(np.mean(list(weights.values())), 1.0)
    assert np.isclose(weights[1] / weights[0], 5.0)
    assert class_weights([0, 4, 4]) == {1: 1.0, 2: 1.0}


def test_imbalance_in_the_report(tmp_path):
    rng = np.random.default_rng(0)
    for name, count in (("many", 10), ("few", 2)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8), "RGB").save(
                tmp_path / name / f"{i}.png")
    report = doctor_report(scan_dataset(tmp_path))
    imbalance = report["imbalance"]
    assert imbalance["counts"] == {"few": 2, "many": 10}
    assert imbalance["ratio"] == 5.0 and imbalance["weighting_suggested"] is True
    assert imbalance["class_weight_by_name"]["few"] > imbalance["class_weight_by_name"]["many"]
    assert report["leakage"] == [] and report["near_duplicates"] == []


def test_stop_event_cancels(shapes_split_dataset):
    import threading

    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        doctor_report(scan_dataset(shapes_split_dataset), stop_event=stop)
