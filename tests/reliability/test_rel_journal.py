"""The undo journal is untrusted input: issue 17, cases 1, 2 and the journal side of 5.

``<dataset>/.imgcls/journal.jsonl`` travels with a zipped, shared or downloaded dataset. A
planted line must never move, create or delete a file outside the dataset's class folders
and quarantine (undo, the settling an ordinary ``move`` does, ``journal``, the window), and
a line of the wrong shape must never crash a command: both are skipped with one warning.
File names that are not valid UTF-8 go through move, the journal and undo losslessly.
The journal reader is fuzzed in test_rel_journal_fuzz.py.

Each test builds its own tiny dataset with a sentinel folder beside it (``outside/``)
that nothing may touch.
"""

import json
import logging
import os
import sys

import pytest

from imgcls_desktop.cli import main
from imgcls_desktop.core.data_fixes import (
    journal_entries,
    journal_path,
    move_to_class,
    quarantine,
    undo,
    undoable_entries,
)
from imgcls_desktop.core.errors import ImgclsError

from filesystem import snapshot
from synthetic import make_shapes_dataset

needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32",
                                    reason="needs POSIX symlinks")


@pytest.fixture
def root(tmp_path):
    return make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, seed=5)


@pytest.fixture
def outside(tmp_path, root):
    """A folder beside the dataset with one file in it: what an attacker wants to reach."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.png").write_bytes((root / "circle" / "circle_000.png").read_bytes())
    return folder


def plant(root, *records, raw=()):
    """Write journal lines as an attacker would: records as JSON, ``raw`` as given bytes."""
    path = journal_path(root)
    path.parent.mkdir(exist_ok=True)
    with open(path, "ab") as handle:
        for record in records:
            handle.write(json.dumps(record).encode() + b"\n")
        for line in raw:
            handle.write(line + b"\n")
    return path


def done_move(entry_id, source, target, **extra):
    return [{"id": entry_id, "op": "intent", "action": "move", "source": source, "target": target,
             "time": "2026-01-01T00:00:00+00:00", "class": "circle", **extra},
            {"id": entry_id, "op": "done", "time": "2026-01-01T00:00:01+00:00"}]


def run_cli(capsys, *argv):
    code = main([str(argument) for argument in argv])
    out, err = capsys.readouterr()
    return code, out, err


def journal_warnings(caplog):
    return [record.getMessage() for record in caplog.records
            if record.levelno >= logging.WARNING and "journal" in record.getMessage()]


# -- case 1: confinement ----------------------------------------------------------------

def _outside_spellings(outside, root):
    spellings = {"absolute": str(outside / "secret.png"),
                 "dot-dot": "../outside/secret.png",
                 "dot-dot inside a class": "circle/../../outside/secret.png"}
    if hasattr(os, "symlink") and sys.platform != "win32":
        os.symlink(outside, root / "circle" / "link", target_is_directory=True)
        spellings["through a linked folder"] = "circle/link/secret.png"
    return spellings


def test_undo_never_moves_an_outside_file_in(root, outside, capsys, caplog):
    for spelling in _outside_spellings(outside, root).values():
        plant(root, *done_move(f"b-{len(spelling)}", "circle/stolen.png", spelling))
    before = snapshot(outside)
    assert undo(root) is None, "a planted entry was taken for a move to undo"
    code, out, err = run_cli(capsys, "undo", root)
    assert code == 1 and "nothing to undo" in out
    assert snapshot(outside) == before
    assert not (root / "circle" / "stolen.png").exists()
    assert journal_entries(root) == [] and undoable_entries(root) == []
    # One warning a read, naming the journal and saying what was refused.
    assert err.count("warning") == 1 and str(journal_path(root)) in err and "refused" in err
    assert all(str(journal_path(root)) in message for message in journal_warnings(caplog))


def test_settling_an_unfinished_entry_never_deletes_an_outside_file(root, outside):
    # An intent without an outcome whose source is an outside file identical to its
    # target: settling it as "interrupted between copy and delete" would delete the source.
    twin = root / "circle" / "circle_000.png"
    assert twin.read_bytes() == (outside / "secret.png").read_bytes()
    for spelling in (str(outside / "secret.png"), "../outside/secret.png"):
        plant(root, {"id": f"s{len(spelling)}", "op": "intent", "action": "move", "source": spelling,
                     "target": "circle/circle_000.png", "time": "2026-01-01T00:00:00+00:00",
                     "class": "circle"})
    before = snapshot(outside)
    move_to_class(root, root / "circle" / "circle_001.png", "square")  # settles open intents first
    quarantine(root, root / "square" / "square_000.png")
    assert snapshot(outside) == before
    assert twin.is_file()


def test_undo_never_creates_a_file_outside(root, outside, tmp_path):
    image = root / "circle" / "circle_002.png"
    data = image.read_bytes()
    plant(root, *done_move("c1", "../outside/new.png", "circle/circle_002.png"))
    plant(root, *done_move("c2", str(tmp_path / "beside.png"), "circle/circle_002.png"))
    before, beside = snapshot(outside), sorted(os.listdir(tmp_path))
    assert undo(root) is None
    assert snapshot(outside) == before and sorted(os.listdir(tmp_path)) == beside
    assert image.read_bytes() == data


def test_a_real_move_is_still_undone_after_planted_lines(root, outside):
    plant(root, *done_move("p1", "circle/stolen.png", str(outside / "secret.png")))
    entry = move_to_class(root, root / "circle" / "circle_000.png", "square")
    assert [item["id"] for item in journal_entries(root)] == [entry["id"]]
    assert undo(root)["original"]["id"] == entry["id"]
    assert (root / "circle" / "circle_000.png").is_file() and (outside / "secret.png").is_file()


def test_entries_outside_class_folders_but_inside_the_root_are_refused(root):
    # Inside the root yet not in a class folder or the quarantine: the journal itself,
    # the lock, a loose file. A journal line may only do what `imgcls move` could.
    (root / "loose.png").write_bytes(b"x")
    plant(root, *done_move("r1", "circle/a.png", ".imgcls/journal.jsonl"))
    plant(root, *done_move("r2", "circle/b.png", "loose.png"))
    plant(root, *done_move("r3", "circle/c.png", ".imgcls/quarantine/../journal.lock"))
    before = journal_path(root).read_bytes()
    assert undo(root) is None
    assert journal_path(root).read_bytes() == before and (root / "loose.png").is_file()


@needs_symlinks
def test_a_linked_state_folder_or_journal_is_never_written_through(root, outside):
    secret = outside / "secret.png"
    (root / ".imgcls").mkdir()
    os.symlink(secret, journal_path(root))  # appending would write into the outside file
    before = snapshot(outside)
    with pytest.raises(ImgclsError, match="link"):
        move_to_class(root, root / "circle" / "circle_000.png", "square")
    with pytest.raises(ImgclsError, match="link"):
        undo(root)
    assert journal_entries(root) == []  # not read through the link either
    assert snapshot(outside) == before and (root / "circle" / "circle_000.png").is_file()

    journal_path(root).unlink()
    (root / ".imgcls").rmdir()
    os.symlink(outside, root / ".imgcls", target_is_directory=True)  # quarantine would land outside
    with pytest.raises(ImgclsError, match="link"):
        quarantine(root, root / "circle" / "circle_000.png")
    assert snapshot(outside) == before and (root / "circle" / "circle_000.png").is_file()


# -- case 2: the shape of each line ------------------------------------------------------

BAD_LINES = [
    {"id": "x3", "op": "intent", "action": "move", "source": 5, "target": None},
    {"id": "x4", "op": "intent", "action": "move", "source": "circle/a.png", "target": "square/a.png",
     "class": "square"},  # no "time"
    {"id": "x5", "op": "intent", "action": "quarantine", "source": ["circle"], "target": {"a": 1},
     "time": "t"},
    {"id": 7, "op": "done", "time": "t"},
    {"id": "x6", "op": "intent", "action": "move", "source": "circle/b.png", "target": "square/b.png",
     "time": 5, "class": "square"},
    {"id": "x7", "op": "intent", "action": "move", "source": "circle/c.png", "target": "square/c.png",
     "time": "t", "class": 12},
    {"id": "x8", "op": "intent", "action": "undo", "source": "square/d.png", "target": "circle/d.png",
     "time": "t", "undoes": None},
    {"id": "x9", "op": "done", "time": "t", "note": ["not", "text"]},
    [1, 2, 3],
    "just a string",
]
RAW_BAD = [b"\xff\xfe not utf-8 \x80", b"nonsense", b"{\"id\": \"x10\", \"op\": \"intent\", \"source\": \"\\u0000\"}"]


def test_lines_of_the_wrong_shape_are_skipped_with_one_warning(root, capsys, caplog):
    entry = move_to_class(root, root / "circle" / "circle_000.png", "square")
    plant(root, *BAD_LINES, raw=RAW_BAD)
    caplog.clear()
    assert [item["id"] for item in journal_entries(root)] == [entry["id"]]
    messages = journal_warnings(caplog)
    assert len(messages) == 1, messages
    assert str(journal_path(root)) in messages[0] and str(len(BAD_LINES) + len(RAW_BAD)) in messages[0]

    code, out, err = run_cli(capsys, "journal", root)
    assert code == 0 and "circle/circle_000.png -> square/circle_000.png" in out
    assert err.count("warning") == 1 and "skipped" in err
    code, out, err = run_cli(capsys, "journal", root, "--json")
    assert code == 0 and len(json.loads(out)["entries"]) == 1
    code, out, err = run_cli(capsys, "move", root, root / "circle" / "circle_001.png", "--to", "square")
    assert code == 0, err
    code, out, err = run_cli(capsys, "undo", root, "--steps", "2")
    assert code == 0, err
    assert (root / "circle" / "circle_000.png").is_file() and (root / "circle" / "circle_001.png").is_file()
    assert "unexpected" not in err


def test_the_window_opens_a_folder_with_a_hostile_journal_and_undo_refuses(qtbot, window, root, outside,
                                                                           error_dialogs):
    plant(root, *done_move("w1", "circle/stolen.png", str(outside / "secret.png")), *BAD_LINES, raw=RAW_BAD)
    before = snapshot(outside)
    with qtbot.waitSignal(window.dataset_opened, timeout=60000):
        window.open_dataset(root)
    assert error_dialogs == []  # was "Something went wrong" (TypeError) on opening
    assert not window.undo_move_action.isEnabled()
    assert window.undo_move() is None  # Edit > Undo move: the same core, the same refusal
    assert error_dialogs == [] and snapshot(outside) == before
    assert not (root / "circle" / "stolen.png").exists()


# -- case 5, journal side: names that are not valid UTF-8 ---------------------------------

@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="needs a file system that takes any bytes")
def test_names_that_are_not_utf8_move_journal_and_undo_losslessly(root, capsys):
    raw = os.fsencode(root / "circle") + b"/bad\xff\xfe.png"
    source = root / "circle" / "circle_000.png"
    os.rename(source, raw)
    name = os.fsdecode(raw)
    code, out, err = run_cli(capsys, "move", root, name, "--to", "square")
    assert code == 0, err
    assert "bad\\xff\\xfe.png" in out  # printed escaped
    moved = os.fsencode(root / "square") + b"/bad\xff\xfe.png"
    assert os.path.exists(moved)
    lines = journal_path(root).read_bytes().splitlines()
    for line in lines:
        line.decode("utf-8")  # the journal stays valid UTF-8
    assert b"\\udcff\\udcfe" in lines[0]  # the documented escape
    assert os.fsencode(json.loads(lines[0])["source"]) == b"circle/bad\xff\xfe.png"

    code, out, err = run_cli(capsys, "move", root, os.fsdecode(moved), "--quarantine",
                             "--reason", os.fsdecode(b"looks \xff wrong"))
    assert code == 0, err
    code, out, err = run_cli(capsys, "journal", root)
    assert code == 0 and "bad\\xff\\xfe.png" in out and "looks \\xff wrong" in out
    code, out, err = run_cli(capsys, "journal", root, "--json")
    assert code == 0 and json.loads(out)["entries"][1]["reason"] == os.fsdecode(b"looks \xff wrong")
    code, out, err = run_cli(capsys, "undo", root, "--steps", "2")
    assert code == 0, err
    assert os.path.exists(raw) and not os.path.exists(moved)
    assert "bad\\xff\\xfe.png" in out
