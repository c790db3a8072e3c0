"""core.data_fixes: moves and quarantine on disk, a journal that survives crashes and restarts, undo."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_desktop.core import data_fixes
from imgcls_desktop.core.data_fixes import (
    journal_entries,
    journal_path,
    move_to_class,
    quarantine,
    undo,
    undoable_entries,
)
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.errors import DatasetError, ImageError, ImgclsError

from synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def flat(tmp_path):
    return make_shapes_dataset(tmp_path / "flat", num_classes=3, per_class=4, seed=2)


@pytest.fixture
def split(tmp_path):
    return make_shapes_dataset(tmp_path / "split", num_classes=3, per_class=4, layout="split",
                               test_per_class=2, seed=3)


def counts(root):
    return scan_dataset(root, find_duplicates=False).counts()


def test_move_to_class_in_a_flat_dataset(flat):
    image = flat / "circle" / "circle_001.png"
    data = image.read_bytes()
    entry = move_to_class(flat, image, "square")
    moved = flat / "square" / "circle_001.png"
    assert not image.exists() and moved.read_bytes() == data
    assert entry["action"] == "move" and entry["status"] == "done" and entry["undone"] is False
    assert entry["source"] == "circle/circle_001.png" and entry["target"] == "square/circle_001.png"
    assert entry["class"] == "square" and entry["from_class"] == "circle"
    assert entry["target_path"] == str(moved)
    assert counts(flat)["all"] == {"circle": 3, "square": 5, "triangle": 4}
    assert journal_entries(flat) == [entry]


def test_move_keeps_the_split_and_creates_the_class_folder_there(split):
    image = split / "test" / "circle" / "circle_000.png"
    (split / "test" / "triangle" / "triangle_000.png").unlink()
    (split / "test" / "triangle" / "triangle_001.png").unlink()
    (split / "test" / "triangle").rmdir()  # the class lives on in train/ only
    entry = move_to_class(split, image, "triangle")
    assert entry["target"] == "test/triangle/circle_000.png"
    assert (split / "test" / "triangle" / "circle_000.png").is_file()
    assert not (split / "train" / "triangle" / "circle_000.png").exists()
    after = counts(split)
    assert after["test"] == {"circle": 1, "square": 2, "triangle": 1}
    assert after["train"] == {"circle": 4, "square": 4, "triangle": 4}


def test_a_name_collision_gets_a_free_name_and_never_overwrites(flat):
    target = flat / "square" / "same.png"
    first, second = flat / "circle" / "same.png", flat / "triangle" / "same.png"
    (flat / "square" / "square_000.png").rename(target)
    (flat / "circle" / "circle_000.png").rename(first)
    (flat / "triangle" / "triangle_000.png").rename(second)
    before = {path: path.read_bytes() for path in (target, first, second)}
    assert move_to_class(flat, first, "square")["target"] == "square/same-1.png"
    assert move_to_class(flat, second, "square")["target"] == "square/same-2.png"
    assert target.read_bytes() == before[target]
    assert (flat / "square" / "same-1.png").read_bytes() == before[first]
    assert (flat / "square" / "same-2.png").read_bytes() == before[second]


def test_quarantine_leaves_the_dataset_but_not_the_disk(split):
    image = split / "train" / "square" / "square_002.png"
    data = image.read_bytes()
    entry = quarantine(split, image, reason="blurry")
    kept = split / ".imgcls" / "quarantine" / "train" / "square" / "square_002.png"
    assert kept.read_bytes() == data and not image.exists()
    assert entry["action"] == "quarantine" and entry["reason"] == "blurry"
    assert entry["target"] == ".imgcls/quarantine/train/square/square_002.png"
    scan = scan_dataset(split)
    assert scan.counts()["train"]["square"] == 3 and scan.num_images == 17
    assert scan.problems == []  # neither the quarantined image nor the journal is reported
    everything = {str(item.path) for items in scan.splits.values() for item in items}
    assert not any(".imgcls" in path for path in everything)
    # A second image of the same name gets its own place in quarantine.
    (split / "train" / "circle" / "circle_000.png").rename(split / "train" / "square" / "square_002.png")
    again = quarantine(split, split / "train" / "square" / "square_002.png")
    assert again["target"] == ".imgcls/quarantine/train/square/square_002-1.png"
    assert kept.read_bytes() == data


def test_undo_reverts_the_latest_first_and_is_journaled(flat):
    a, b = flat / "circle" / "circle_000.png", flat / "square" / "square_000.png"
    move_to_class(flat, a, "triangle")
    quarantine(flat, b, "not a square")
    assert [entry["action"] for entry in undoable_entries(flat)] == ["quarantine", "move"]

    first = undo(flat)
    assert first["action"] == "undo" and first["original"]["action"] == "quarantine"
    assert b.is_file() and a.exists() is False
    second = undo(flat)
    assert second["undoes"] == second["original"]["id"] and a.is_file()
    assert not (flat / "triangle" / "circle_000.png").exists()
    assert undo(flat) is None
    assert counts(flat)["all"] == {"circle": 4, "square": 4, "triangle": 4}
    entries = journal_entries(flat)
    assert [entry["action"] for entry in entries] == ["move", "quarantine", "undo", "undo"]
    assert [entry["undone"] for entry in entries[:2]] == [True, True]
    assert all(entry["status"] == "done" for entry in entries)


def test_undo_in_a_new_process_after_a_restart(flat):
    image = flat / "circle" / "circle_003.png"
    move_to_class(flat, image, "square")
    quarantine(flat, flat / "triangle" / "triangle_001.png")
    script = ("import json, sys; from imgcls_desktop.core.data_fixes import undo; "
              "print(json.dumps([undo(sys.argv[1]) for _ in range(3)]))")
    done = subprocess.run([sys.executable, "-c", script, str(flat)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    first, second, third = json.loads(done.stdout)
    assert first["original"]["action"] == "quarantine" and second["original"]["action"] == "move"
    assert third is None
    assert image.is_file() and (flat / "triangle" / "triangle_001.png").is_file()
    assert counts(flat)["all"] == {"circle": 4, "square": 4, "triangle": 4}
    assert undo(flat) is None  # and this process sees what the other one did


def test_undo_refuses_when_the_place_is_taken_or_the_file_is_gone(flat):
    image = flat / "circle" / "circle_000.png"
    move_to_class(flat, image, "square")
    image.write_bytes(b"a new file with the old name")
    journal_before = journal_path(flat).read_bytes()
    with pytest.raises(DatasetError, match="another file now has that name") as caught:
        undo(flat)
    assert str(image) in str(caught.value) and "rename or move" in str(caught.value)
    assert image.read_bytes() == b"a new file with the old name"
    assert (flat / "square" / "circle_000.png").is_file()
    assert journal_path(flat).read_bytes() == journal_before

    image.unlink()
    (flat / "square" / "circle_000.png").unlink()
    with pytest.raises(DatasetError, match="no longer at"):
        undo(flat)
    assert len(undoable_entries(flat)) == 1  # still listed: put the file back and undo works


class Crash(BaseException):
    """Stands for the process dying: not an OSError, so nothing in data_fixes handles it."""


def test_a_crash_before_the_rename_leaves_the_file_and_is_settled(flat, monkeypatch):
    image = flat / "circle" / "circle_001.png"
    monkeypatch.setattr(data_fixes, "_rename", lambda source, target: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        move_to_class(flat, image, "square")
    monkeypatch.undo()
    assert image.is_file()
    [entry] = journal_entries(flat)
    assert entry["status"] == "abandoned" and "stayed where it was" in entry["note"]
    assert undo(flat) is None  # nothing moved, nothing to undo
    records = [json.loads(line) for line in journal_path(flat).read_text().splitlines()]
    assert [record["op"] for record in records] == ["intent", "abandoned"]  # settled by undo


def test_a_crash_after_the_rename_is_recovered_as_done_and_can_be_undone(flat, monkeypatch):
    image = flat / "circle" / "circle_002.png"
    real_rename = data_fixes._rename

    def rename_then_die(source, target):
        real_rename(source, target)
        raise Crash()

    monkeypatch.setattr(data_fixes, "_rename", rename_then_die)
    with pytest.raises(Crash):
        quarantine(flat, image)
    monkeypatch.undo()
    assert not image.exists()
    [entry] = journal_entries(flat)
    assert entry["status"] == "done" and entry["action"] == "quarantine"
    assert undo(flat)["original"]["id"] == entry["id"]
    assert image.is_file()


def test_a_torn_last_line_does_not_break_the_journal(flat):
    move_to_class(flat, flat / "circle" / "circle_000.png", "square")
    with open(journal_path(flat), "ab") as handle:
        handle.write(b'{"id": "half a rec')  # the process died mid-write
    move_to_class(flat, flat / "circle" / "circle_001.png", "triangle")
    assert [entry["class"] for entry in journal_entries(flat)] == ["square", "triangle"]
    assert undo(flat)["original"]["class"] == "triangle"
    assert (flat / "circle" / "circle_001.png").is_file()


def test_a_move_across_file_systems_copies_then_removes(flat, monkeypatch):
    image = flat / "circle" / "circle_000.png"
    data = image.read_bytes()
    real_rename = os.rename

    def cross_device(source, target):
        if Path(source) == image:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_rename(source, target)

    monkeypatch.setattr(data_fixes.os, "rename", cross_device)
    move_to_class(flat, image, "square")
    monkeypatch.undo()
    assert not image.exists() and (flat / "square" / "circle_000.png").read_bytes() == data
    assert not list((flat / "square").glob(".*"))  # no partial copy left behind


def test_errors_name_the_file_and_change_nothing(flat, tmp_path):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes((flat / "circle" / "circle_000.png").read_bytes())
    notes = flat / "circle" / "notes.txt"
    notes.write_text("hello")
    loose = flat / "loose.png"
    loose.write_bytes(outside.read_bytes())
    cases = [
        (outside, "square", "not inside the dataset folder"),
        (notes, "square", "is not an image file"),
        (flat / "circle" / "missing.png", "square", "file not found"),
        (flat / "circle", "square", "is a folder"),
        (loose, "square", "not inside a class folder"),
        (flat / "circle" / "circle_000.png", "circle", "already in class 'circle'"),
    ]
    for path, class_name, message in cases:
        with pytest.raises(ImageError, match=message) as caught:
            move_to_class(flat, path, class_name)
        assert str(path) in str(caught.value)
    with pytest.raises(ImageError, match="not inside the dataset folder"):
        quarantine(flat, outside)
    with pytest.raises(DatasetError, match="no class 'dog'.*circle, square, triangle"):
        move_to_class(flat, flat / "circle" / "circle_000.png", "dog")
    with pytest.raises(DatasetError, match="does not exist"):
        move_to_class(flat / "nope", flat / "circle" / "circle_000.png", "square")
    assert outside.is_file() and notes.is_file() and loose.is_file()
    assert counts(flat)["all"] == {"circle": 4, "square": 4, "triangle": 4}
    assert journal_entries(flat) == []

    quarantine(flat, flat / "square" / "square_000.png")
    hidden = flat / ".imgcls" / "quarantine" / "square" / "square_000.png"
    with pytest.raises(ImgclsError, match="hidden or ignored folder.*use undo"):
        move_to_class(flat, hidden, "circle")
    assert hidden.is_file()


def test_paths_relative_to_the_dataset_are_accepted(flat, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    entry = move_to_class(flat, "circle/circle_000.png", "triangle")
    assert (flat / entry["target"]).is_file()
    assert quarantine(flat, "triangle/circle_000.png")["source"] == "triangle/circle_000.png"
