"""Dataset scanning, validation, duplicates and splitting on tiny folders built in tmp_path."""

import json
import math
import os
import shutil
import threading

import pytest
from PIL import Image

from imgcls_desktop.core.dataset import (
    DatasetScan,
    ImageItem,
    Problem,
    check_trainable,
    collect_image_files,
    scan_dataset,
    split_train_validation,
)
from imgcls_desktop.core.errors import Cancelled, DatasetError, ImgclsError
from tests.synthetic import make_shapes_dataset


def _image(path, colour=(120, 60, 30), size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _by_reason(scan):
    return {os.path.basename(problem.path): problem.reason for problem in scan.problems}


def test_flat_layout(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=3, per_class=4, size=8)
    scan = scan_dataset(root)
    assert scan.layout == "flat"
    assert scan.class_names == ["circle", "square", "triangle"]
    assert list(scan.splits) == ["all"]
    assert scan.counts() == {"all": {"circle": 4, "square": 4, "triangle": 4}}
    assert scan.num_images == 12
    assert scan.problems == [] and scan.duplicates == []
    assert scan.training_split_name() == "all" and scan.evaluation_split_name() is None
    assert scan.imbalance() == 1.0
    for item in scan.splits["all"]:
        assert isinstance(item, ImageItem)
        assert item.path.parent.name == scan.class_names[item.label]
    check_trainable(scan)


def test_split_layout_with_validation_folder_name(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, size=8, layout="split",
                               test_per_class=2)
    for name in ("circle", "square"):
        _image(root / "Validation" / name / "v.png", colour=(1, 2, 3) if name == "circle" else (4, 5, 6))
    scan = scan_dataset(root)
    assert scan.layout == "split"
    assert list(scan.splits) == ["train", "val", "test"]
    assert scan.counts() == {"train": {"circle": 3, "square": 3}, "val": {"circle": 1, "square": 1},
                             "test": {"circle": 2, "square": 2}}
    assert scan.training_split_name() == "train"
    assert scan.evaluation_split_name() == "test"
    train, val = split_train_validation(scan, 0.5)
    assert train == scan.splits["train"] and val == scan.splits["val"]


def test_split_layout_class_union_and_extra_folder(tmp_path):
    _image(tmp_path / "TRAIN" / "cat" / "a.png", (1, 1, 1))
    _image(tmp_path / "TRAIN" / "dog" / "a.png", (2, 2, 2))
    _image(tmp_path / "valid" / "cat" / "b.png", (3, 3, 3))
    _image(tmp_path / "test" / "zebra" / "c.png", (4, 4, 4))
    _image(tmp_path / "misc" / "d.png", (5, 5, 5))
    scan = scan_dataset(tmp_path)
    assert scan.layout == "split"
    assert scan.class_names == ["cat", "dog", "zebra"]
    assert scan.counts()["val"] == {"cat": 1, "dog": 0, "zebra": 0}
    assert scan.evaluation_split_name() == "test"
    assert "not a split folder" in _by_reason(scan)["misc"]
    assert math.isinf(scan.imbalance())
    with pytest.raises(DatasetError, match="zebra"):
        check_trainable(scan)


def test_loose_files_are_problems(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8)
    _image(root / "stray.png")
    split_root = make_shapes_dataset(tmp_path / "split", num_classes=2, per_class=2, size=8, layout="split",
                                     test_per_class=1)
    _image(split_root / "train" / "stray2.png")
    assert _by_reason(scan_dataset(root))["stray.png"] == "not inside a class folder; ignored"
    assert _by_reason(scan_dataset(split_root))["stray2.png"] == "not inside a class folder; ignored"


def test_nested_images_count_for_their_class(tmp_path):
    _image(tmp_path / "cat" / "2024" / "june" / "a.png", (1, 1, 1))
    _image(tmp_path / "cat" / "b.png", (2, 2, 2))
    _image(tmp_path / "dog" / "c.png", (3, 3, 3))
    scan = scan_dataset(tmp_path)
    assert scan.counts() == {"all": {"cat": 2, "dog": 1}}
    assert [item.path.name for item in scan.splits["all"]] == ["b.png", "a.png", "c.png"]


def test_ignored_files_are_not_problems_or_classes(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "circle" / "Thumbs.db").write_bytes(b"junk")
    (root / "circle" / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / "__MACOSX" / "circle").mkdir(parents=True)
    (root / "__MACOSX" / "circle" / "._x.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (root / "circle" / "._x.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (root / ".hidden_class").mkdir()
    _image(root / ".hidden_class" / "h.png")
    (root / "square" / ".thumbnails").mkdir()
    (root / "square" / ".thumbnails" / "t.png").write_bytes(b"broken")
    scan = scan_dataset(root)
    assert scan.class_names == ["circle", "square"]
    assert scan.problems == []
    assert scan.counts() == {"all": {"circle": 2, "square": 2}}


def test_bad_files_listed_with_reasons_good_ones_counted(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, size=8)
    circle = root / "circle"
    (circle / "empty.png").touch()
    (circle / "notes.jpg").write_text("not a photo")
    good = (circle / "circle_000.png").read_bytes()
    (circle / "cut.png").write_bytes(good[: len(good) // 2])
    (circle / "phone.heic").write_bytes(b"\0\0\0\x18ftypheic")
    (circle / "README").write_text("about this class")
    _image(circle / "UPPER.JPG", (9, 9, 9))
    _image(circle / "x.webp", (8, 8, 8))
    _image(circle / "x.tif", (7, 7, 7))
    scan = scan_dataset(root)
    reasons = _by_reason(scan)
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["notes.jpg"].startswith("not an image file")
    assert "damaged" in reasons["cut.png"] or "not an image" in reasons["cut.png"]
    assert reasons["phone.heic"].startswith("unsupported file type '.heic'; supported: .bmp, .gif,")
    assert reasons["README"].startswith("unsupported file type (no extension)")
    assert len(scan.problems) == 5
    assert scan.counts()["all"] == {"circle": 6, "square": 3}
    check_trainable(scan)
    assert all(problem.path.startswith(str(circle)) for problem in scan.problems)


def test_validate_false_skips_decoding_but_not_extension_check(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8)
    (root / "circle" / "notes.jpg").write_text("not a photo")
    (root / "circle" / "x.heic").write_bytes(b"x")
    scan = scan_dataset(root, validate=False, find_duplicates=False)
    assert scan.counts()["all"]["circle"] == 3
    assert list(_by_reason(scan)) == ["x.heic"]


def test_duplicates_across_classes_and_splits(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, size=8, layout="split",
                               test_per_class=2)
    shutil.copy(root / "train" / "circle" / "circle_000.png", root / "train" / "square" / "copy.png")
    shutil.copy(root / "train" / "circle" / "circle_001.png", root / "test" / "circle" / "leak.png")
    shutil.copy(root / "train" / "circle" / "circle_001.png", root / "test" / "square" / "leak2.png")
    scan = scan_dataset(root)
    assert scan.duplicates == sorted([
        sorted([str(root / "train" / "circle" / "circle_000.png"), str(root / "train" / "square" / "copy.png")]),
        sorted([str(root / "train" / "circle" / "circle_001.png"), str(root / "test" / "circle" / "leak.png"),
                str(root / "test" / "square" / "leak2.png")]),
    ])
    assert scan_dataset(root, find_duplicates=False).duplicates == []


def test_same_size_different_bytes_are_not_duplicates(tmp_path):
    _image(tmp_path / "a" / "1.bmp", (1, 2, 3))
    _image(tmp_path / "b" / "1.bmp", (3, 2, 1))
    assert os.path.getsize(tmp_path / "a" / "1.bmp") == os.path.getsize(tmp_path / "b" / "1.bmp")
    assert scan_dataset(tmp_path).duplicates == []


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_symlink_loop_terminates_and_is_reported_once(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8)
    try:
        os.symlink(root, root / "circle" / "loop", target_is_directory=True)
        os.symlink(root / "circle", root / "square" / "back", target_is_directory=True)
        os.symlink(tmp_path / "missing.png", root / "square" / "gone.png")
    except OSError:
        pytest.skip("symlinks not permitted here")
    scan = scan_dataset(root)
    reasons = _by_reason(scan)
    assert "loop" in reasons["loop"] and "loop" in reasons["back"]
    assert reasons["gone.png"].startswith("broken link")
    assert len(scan.problems) == 3
    assert scan.counts() == {"all": {"circle": 2, "square": 2}}


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symlinks")
def test_linked_class_folder_is_followed(tmp_path):
    _image(tmp_path / "elsewhere" / "x.png", (1, 1, 1))
    _image(tmp_path / "data" / "cat" / "y.png", (2, 2, 2))
    try:
        os.symlink(tmp_path / "elsewhere", tmp_path / "data" / "dog", target_is_directory=True)
    except OSError:
        pytest.skip("symlinks not permitted here")
    assert scan_dataset(tmp_path / "data").counts() == {"all": {"cat": 1, "dog": 1}}


def test_non_ascii_spaces_and_long_names(tmp_path):
    deep = tmp_path / "données" / "chat noir 猫"
    for index in range(6):
        deep = deep / (f"sous dossier {index} " + "é" * 30)
    _image(deep / ("photo ünïcödé " + "x" * 150 + ".png"), (1, 1, 1))
    _image(tmp_path / "données" / "Ёж" / "ёж 1.jpg", (2, 2, 2))
    assert len(str(deep)) > 260
    scan = scan_dataset(tmp_path / "données")
    assert scan.class_names == ["chat noir 猫", "Ёж"]
    assert scan.counts() == {"all": {"chat noir 猫": 1, "Ёж": 1}}
    json.dumps(scan.to_dict(), ensure_ascii=False)


def test_progress_reaches_total_and_is_throttled(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=151, size=4)
    calls = []
    scan_dataset(root, on_progress=lambda done, total: calls.append((done, total)), validate=False,
                 find_duplicates=False)
    assert calls[0] == (0, 302) and calls[-1] == (302, 302)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert all(total == 302 for _, total in calls)
    assert len(calls) <= 103  # about every 1%, plus the first and the final call


def test_cancel_before_and_during(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=20, size=8)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Cancelled):
        scan_dataset(root, stop_event=stop)

    stop = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 5:
            stop.set()

    with pytest.raises(Cancelled) as caught:
        scan_dataset(root, on_progress=progress, stop_event=stop)
    assert isinstance(caught.value, ImgclsError)
    assert max(seen) < 10


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.write_text("x"), "not a folder"),
    (lambda root: root.mkdir(), "No class folders"),
    (lambda root: (root.mkdir(), _image(root / "a.png")), "1 file"),
])
def test_unusable_roots(tmp_path, make, message):
    root = tmp_path / "root"
    make(root)
    with pytest.raises(DatasetError, match=message) as caught:
        scan_dataset(root)
    assert "one sub-folder per class" in str(caught.value)


def test_check_trainable_empty_class_folders(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    with pytest.raises(DatasetError, match="Found 0 classes with images"):
        check_trainable(scan_dataset(tmp_path))


def test_check_trainable_one_class(tmp_path):
    _image(tmp_path / "cat" / "a.png")
    with pytest.raises(DatasetError, match="Found 1 class with images in .*need at least two class folders"):
        check_trainable(scan_dataset(tmp_path))


def test_check_trainable_class_with_only_bad_files(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8)
    (root / "dog").mkdir()
    (root / "dog" / "a.jpg").touch()
    (root / "dog" / "b.jpg").write_text("nope")
    scan = scan_dataset(root)
    with pytest.raises(DatasetError) as caught:
        check_trainable(scan)
    message = str(caught.value)
    assert "'dog'" in message and str(root / "dog") in message
    assert "2 of its file(s) could not be used" in message


def test_split_is_deterministic_stratified_and_seed_dependent(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=3, per_class=10, size=8)
    scan = scan_dataset(root, validate=False, find_duplicates=False)
    train, val = split_train_validation(scan, 0.2, seed=7)
    again = split_train_validation(scan, 0.2, seed=7)
    other = split_train_validation(scan, 0.2, seed=8)
    assert (train, val) == again
    assert {item.path for item in val} != {item.path for item in other[1]}
    assert len(train) == 24 and len(val) == 6
    assert sorted(item.label for item in val) == [0, 0, 1, 1, 2, 2]
    assert {item.label for item in train} == {0, 1, 2}
    assert not {item.path for item in train} & {item.path for item in val}
    assert set(train) | set(val) == set(scan.splits["all"])


def test_split_at_least_one_validation_item_per_class(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, size=8)
    train, val = split_train_validation(scan_dataset(root, validate=False), 0.05)
    assert sorted(item.label for item in val) == [0, 1] and len(train) == 4


def test_split_zero_and_out_of_range(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, size=8)
    scan = scan_dataset(root, validate=False)
    train, val = split_train_validation(scan, 0)
    assert train == scan.splits["all"] and val == []
    for bad in (-0.1, 0.9, 1.0, float("nan"), "a lot"):
        with pytest.raises(DatasetError, match="validation split"):
            split_train_validation(scan, bad)


def test_split_refuses_one_image_class(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=5, size=8)
    _image(tmp_path / "data" / "lonely" / "only.png", (1, 2, 3))
    scan = scan_dataset(root)
    with pytest.raises(DatasetError) as caught:
        split_train_validation(scan, 0.2)
    message = str(caught.value)
    assert "'lonely'" in message and "only 1 image" in message
    assert "add images to that class or set the validation split to 0" in message.lower()
    assert len(split_train_validation(scan, 0.0)[0]) == 11


def test_to_dict_contract(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8, layout="split",
                               test_per_class=1)
    (root / "train" / "circle" / "bad.png").touch()
    shutil.copy(root / "train" / "circle" / "circle_000.png", root / "test" / "square" / "dup.png")
    summary = scan_dataset(root).to_dict()
    assert set(summary) == {"root", "layout", "class_names", "splits", "num_images", "problems", "duplicates",
                            "warnings"}
    assert summary["root"] == str(root)
    assert summary["layout"] == "split"
    assert summary["class_names"] == ["circle", "square"]
    assert summary["splits"] == {"train": {"circle": 2, "square": 2}, "test": {"circle": 1, "square": 2}}
    assert summary["num_images"] == 7
    assert summary["problems"] == [{"path": str(root / "train" / "circle" / "bad.png"),
                                    "reason": "empty file (0 bytes)"}]
    assert summary["duplicates"] == [[str(root / "test" / "square" / "dup.png"),
                                      str(root / "train" / "circle" / "circle_000.png")]]
    assert json.loads(json.dumps(summary)) == summary


def test_fingerprint_stable_and_sensitive(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=2, size=8)
    first = scan_dataset(root, validate=False)
    print_one = first.fingerprint()
    assert print_one == scan_dataset(root, validate=False).fingerprint()
    assert len(print_one) == 64 and int(print_one, 16) >= 0
    _image(root / "circle" / "circle_000.png", (1, 1, 1), size=(9, 9))
    assert first.fingerprint() != print_one


def test_dataclasses_shape(tmp_path):
    item = ImageItem(tmp_path / "a.png", 1)
    with pytest.raises(AttributeError):
        item.label = 2
    assert Problem("p", "r") == Problem("p", "r")
    scan = DatasetScan(root=tmp_path, layout="flat", class_names=["a", "b"],
                       splits={"all": [ImageItem(tmp_path / "1", 0)] * 3 + [ImageItem(tmp_path / "2", 1)]},
                       problems=[], duplicates=[])
    assert scan.imbalance() == 3.0 and scan.num_images == 4


def test_collect_image_files(tmp_path):
    folder = tmp_path / "in"
    _image(folder / "b.png")
    _image(folder / "sub" / "a.JPG")
    _image(folder / ".hidden" / "h.png")
    (folder / "._b.png").write_bytes(b"apple")
    (folder / "notes.txt").write_text("x")
    single = _image(tmp_path / "single.png")
    text = tmp_path / "text.txt"
    text.write_text("x")
    missing = tmp_path / "missing.jpg"
    inputs = [single, folder, str(text), missing, str(single), folder / "b.png"]
    assert collect_image_files(inputs) == [single, folder / "b.png", folder / "sub" / "a.JPG", text, missing]
    assert collect_image_files(folder) == [folder / "b.png", folder / "sub" / "a.JPG"]
    assert collect_image_files([]) == []
