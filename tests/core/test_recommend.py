"""Settings chosen from the data: photos get the shipped backbone, thumbnails fast_cnn."""

import json

import pytest
from PIL import Image

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.recommend import (
    MACHINE_SPEEDS,
    MAX_VALIDATION_IMAGES,
    Recommendation,
    machine_speed,
    median_image_size,
    recommend,
    recommended_validation_split,
)
from imgcls_desktop.resources import sample_dataset_path

from synthetic import make_shapes_dataset

AVX2 = {"isa": "avx2", "cores": 2, **MACHINE_SPEEDS["avx2"]}


def test_the_bundled_photos_get_the_shipped_backbone():
    scan = scan_dataset(sample_dataset_path(), validate=False, find_duplicates=False)
    rec = recommend(scan, speed=AVX2)
    assert rec.preset == "efficientnet_lite0" and rec.image_size == 224
    assert rec.time_budget is None  # early stopping on cached features ends it
    assert rec.median_size == (240, 320)
    assert rec.validation_split == 0.2
    assert "EfficientNet-Lite0" in rec.reason and "240x320" in rec.reason
    # Two sentences: what it trains, and what it holds out to measure the model.
    assert rec.reason.count(". ") == 1
    assert rec.reason.endswith("36 of the 180 training images (a fifth) are held out to measure it.")
    assert 0 < rec.estimated_seconds < 120


def test_thumbnails_keep_fast_cnn_at_their_own_size(shapes_dataset):
    scan = scan_dataset(shapes_dataset, validate=False, find_duplicates=False)
    rec = recommend(scan, speed=AVX2)
    assert rec.preset == "fast_cnn" and rec.image_size == 32
    assert rec.time_budget == 60.0  # 72 images: the shortest budget offered
    assert "32 px" in rec.reason
    assert rec.reason.endswith("(a fifth) are held out to measure it.")


@pytest.mark.parametrize("side, expected", [(20, 20), (48, 48), (63, 63)])
def test_small_images_train_at_their_own_side(tmp_path, side, expected):
    root = make_shapes_dataset(tmp_path, num_classes=2, per_class=6, size=side, seed=0)
    rec = recommend(scan_dataset(root, validate=False, find_duplicates=False), speed=AVX2)
    assert (rec.preset, rec.image_size) == ("fast_cnn", expected)


def test_a_big_folder_gets_a_longer_budget_and_a_held_out_set_capped_by_count(tmp_path):
    root = make_shapes_dataset(tmp_path, num_classes=2, per_class=6, seed=0)
    scan = scan_dataset(root, validate=False, find_duplicates=False)
    # 50,000 training images, as CIFAR-10: the scan's lists are what recommend() counts.
    items = scan.splits["all"]
    scan.splits["all"] = (items * (50_000 // len(items) + 1))[:50_000]
    assert recommended_validation_split(scan) == pytest.approx(MAX_VALIDATION_IMAGES / 50_000)
    rec = recommend(scan, speed=AVX2)
    assert rec.validation_split == pytest.approx(0.05)
    assert "2,500 of the 50,000 training images are held out" in rec.reason  # the choice is shown
    small = recommend(scan_dataset(root, validate=False, find_duplicates=False), speed=AVX2)
    assert rec.time_budget > small.time_budget
    assert rec.time_budget <= 1800 and rec.time_budget % 60 == 0
    # A slower machine is given more time for the same folder (up to the cap).
    slower = {key: value / 3 if key not in ("isa", "cores") else value for key, value in AVX2.items()}
    assert recommend(scan, speed=slower).time_budget >= rec.time_budget


def test_a_val_folder_means_nothing_is_held_out(tmp_path):
    root = make_shapes_dataset(tmp_path, num_classes=2, per_class=6, layout="split", test_per_class=2, seed=0)
    for class_dir in (root / "train").iterdir():
        (root / "val" / class_dir.name).mkdir(parents=True)
        for path in sorted(class_dir.iterdir())[:2]:
            path.rename(root / "val" / class_dir.name / path.name)
    scan = scan_dataset(root, validate=False, find_duplicates=False)
    assert recommended_validation_split(scan) == 0.0
    assert "Its val/ folder (4 images) measures the model." in recommend(scan, speed=AVX2).reason


def test_median_size_reads_headers_and_skips_what_cannot_be_opened(tmp_path):
    paths = []
    for index, size in enumerate([(100, 50), (300, 200), (500, 400)]):
        path = tmp_path / f"{index}.png"
        Image.new("RGB", size).save(path)
        paths.append(path)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert median_image_size(paths + [broken]) == (300, 200)
    assert median_image_size([broken]) == (0, 0)
    assert median_image_size([]) == (0, 0)


def test_this_machine_gets_the_speeds_of_its_instruction_set_and_cores():
    speed = machine_speed()
    assert speed["isa"] in MACHINE_SPEEDS and speed["cores"] >= 1
    table = MACHINE_SPEEDS[speed["isa"]]
    assert speed["lite0_features"] == pytest.approx(table["lite0_features"] * min(speed["cores"], 16) / 2)
    assert speed["decode_photos"] == table["decode_photos"]  # per core


def test_the_recommendation_is_a_json_document():
    rec = Recommendation(preset="fast_cnn", image_size=32, time_budget=60.0, validation_split=0.2,
                         reason="Why.", median_size=(32, 32), estimated_seconds=60.0)
    assert json.loads(json.dumps(rec.to_dict()))["median_size"] == [32, 32]
