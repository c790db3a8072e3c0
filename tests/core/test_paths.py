"""One helper names dataset images in every file the app writes: relative, POSIX separators."""

import os
from pathlib import Path

from imgcls_desktop.core.paths import relative_posix


def test_a_nested_path_is_relative_with_forward_slashes(tmp_path, monkeypatch):
    root = tmp_path / "photos"
    nested = root / "train" / "cat" / "2026" / "summer" / "img 1.jpg"
    assert relative_posix(nested, root) == "train/cat/2026/summer/img 1.jpg"
    assert relative_posix(str(nested), str(root)) == "train/cat/2026/summer/img 1.jpg"
    # A relative spelling of the same places (from the current folder) agrees.
    monkeypatch.chdir(tmp_path)
    assert relative_posix(Path("photos/train/cat/2026/summer/img 1.jpg"), "photos") == \
        "train/cat/2026/summer/img 1.jpg"
    assert relative_posix(os.path.join("photos", "train", "x.png"), root) == "train/x.png"


def test_a_path_outside_the_root_is_kept_whole(tmp_path):
    outside = tmp_path / "elsewhere" / "dog" / "a.png"
    assert relative_posix(outside, tmp_path / "photos") == outside.as_posix()
    # The arguments are (path, root), never the other way round.
    assert relative_posix(tmp_path / "photos", tmp_path / "photos" / "cat") == (tmp_path / "photos").as_posix()


def test_recorded_nested_validation_files_are_found_again(tmp_path):
    """Training records its validation files with this helper; evaluation matches them with it."""
    from PIL import Image

    from imgcls_desktop.core.dataset import scan_dataset
    from imgcls_desktop.core.evaluation import evaluation_items

    root = tmp_path / "data"
    for name in ("a", "b"):
        folder = root / name / "deeper"
        folder.mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), (40 * index, 0, 0)).save(folder / f"{index}.png")
    scan = scan_dataset(root)
    written = sorted(relative_posix(item.path, scan.root) for item in scan.splits["all"])
    assert written == [f"{name}/deeper/{index}.png" for name in ("a", "b") for index in range(3)]
    metadata = {"dataset": {"root": str(root), "validation_files": ["a/deeper/1.png", "b/deeper/2.png"]}}
    items, split, _reason = evaluation_items(scan, metadata)
    assert split == "validation"
    assert [relative_posix(item.path, root) for item in items] == ["a/deeper/1.png", "b/deeper/2.png"]
