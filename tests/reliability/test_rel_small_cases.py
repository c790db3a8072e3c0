"""Issue 17, case 11 ("smaller ones"): one rule for class folders in the scanner and in
``move``, a warning for class names that collide on case-insensitive systems, messages that
say what is wrong (a missing file, an unreadable class folder), a quiet exit on a closed
pipe, and ``runs delete`` for a damaged run file.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls_desktop.cli import main
from imgcls_desktop.core import dataset as dataset_module
from imgcls_desktop.core.data_fixes import dataset_class_names, move_to_class
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.errors import ImageError

from synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def root(tmp_path):
    return make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=3, seed=7)


def run_cli(capsys, *argv):
    code = main([str(argument) for argument in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(not hasattr(os, "symlink") or sys.platform == "win32", reason="needs POSIX symlinks")
def test_a_class_folder_linked_to_the_root_is_no_class_for_move_either(root, capsys):
    os.symlink(root, root / "loop", target_is_directory=True)
    scan = scan_dataset(root, validate=False)
    assert "loop" not in scan.class_names  # the scanner skips it as a loop...
    assert dataset_class_names(root) == scan.class_names  # ...and move sees the same classes
    image = root / "circle" / "circle_000.png"
    code, out, err = run_cli(capsys, "move", root, image, "--to", "loop")
    assert code == 2 and "not a class" in err
    assert image.is_file() and not (root / "loop" / "circle_000.png").exists()
    with pytest.raises(ImageError, match="not a class folder"):
        move_to_class(root, root / "loop" / "circle" / "circle_001.png", "square")
    assert (root / "circle" / "circle_001.png").is_file()


def test_class_names_differing_only_in_case_are_warned_about(root, capsys):
    (root / "Circle").mkdir()
    (root / "Circle" / "one.png").write_bytes((root / "circle" / "circle_000.png").read_bytes())
    scan = scan_dataset(root, validate=False)
    assert scan.class_names == ["Circle", "circle", "square"]
    [warning] = scan.warnings
    assert "'Circle' and 'circle'" in warning and "Windows and macOS" in warning
    assert scan.to_dict()["warnings"] == [warning]
    code, out, err = run_cli(capsys, "inspect", root, "--no-validate")
    assert "imgcls: warning: Class folders 'Circle' and 'circle' differ only in letter case" in err
    assert scan_dataset(root.parent / "data", validate=False).warnings  # same answer each time
    (root / "Circle" / "one.png").unlink()
    (root / "Circle").rmdir()
    assert scan_dataset(root, validate=False).warnings == []


def test_a_missing_relative_image_is_said_not_to_exist(root, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "move", root, "circle/missing.png", "--to", "square")
    assert code == 1
    assert "file not found" in err and "not inside the dataset" not in err
    assert str(root / "circle" / "missing.png") in err  # where it was looked for
    with pytest.raises(ImageError, match="file not found"):
        move_to_class(root, tmp_path / "gone.png", "square")  # absolute and missing: the same


def test_an_unreadable_class_folder_is_reported_never_inf(root, capsys, monkeypatch):
    unreadable = root / "square"
    real = dataset_module._sorted_entries

    def entries(folder):  # as chmod 000 would (the tests may run as root, which ignores modes)
        if Path(folder) == unreadable:
            raise PermissionError(13, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(dataset_module, "_sorted_entries", entries)
    scan = scan_dataset(root, validate=False)
    assert f"its folder {unreadable} could not be read (Permission denied)" in scan.balance_note()
    code, out, err = run_cli(capsys, "inspect", root, "--no-validate")
    assert "inf" not in out
    assert f"its folder {unreadable} could not be read (Permission denied)" in out


def _closed_pipe_run(*argv, env=None):
    """Run ``imgcls ARGV`` with its stdout a pipe whose reader has already gone (as `| head -1`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run([sys.executable, "-m", "imgcls_desktop.cli", *map(str, argv)], stdout=write_end,
                                 stderr=subprocess.PIPE, env=env, timeout=120, cwd=REPO)
    finally:
        os.close(write_end)
    return process.returncode, process.stderr.decode("utf-8", "replace")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_a_closed_pipe_ends_quietly_for_every_command(root, tmp_path):
    for argv in (("journal", root), ("inspect", root, "--no-validate"), ("runs",), ("--version",)):
        code, err = _closed_pipe_run(*argv, env={**os.environ, "IMGCLS_DATA_DIR": str(tmp_path / "user")})
        assert "BrokenPipe" not in err and "unexpected" not in err and "Exception ignored" not in err, (argv, err)
        assert code != 0 or argv == ("--version",), argv  # the output was cut short: not a success


def test_runs_delete_removes_a_damaged_run_file(capsys, tmp_path, monkeypatch):
    from imgcls_desktop.core.history import runs_dir

    folder = runs_dir()
    damaged = {"prefix": folder / "20260101-120000-ab12.json",
               "copy": folder / "20260101-120001-ab12 (copy).json",
               "path": folder / "notes.json"}
    for file in damaged.values():
        file.write_bytes(b"{not json")
    code, out, err = run_cli(capsys, "runs")
    assert code == 3 and all(str(file) in err for file in damaged.values())
    code, out, err = run_cli(capsys, "runs", "delete", "20260101-120000")  # a unique prefix, as for any run
    assert code == 0 and not damaged["prefix"].exists(), err
    code, out, err = run_cli(capsys, "runs", "delete", "20260101-120001-ab12 (copy)")  # the name listed
    assert code == 0 and not damaged["copy"].exists(), err
    code, out, err = run_cli(capsys, "runs", "delete", damaged["path"], "--json")  # the path listed
    assert code == 0 and not damaged["path"].exists(), err
    assert json.loads(out)["file"] == str(damaged["path"])
    outside = tmp_path / "elsewhere.json"
    outside.write_text("{}")
    code, out, err = run_cli(capsys, "runs", "delete", outside)
    assert code == 2 and outside.exists()  # only files of the runs folder
    code, out, err = run_cli(capsys, "runs")
    assert code == 0 and err == ""
