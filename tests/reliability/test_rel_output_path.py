"""The output path is checked before training, locked while written, and names its run
(issue 17, cases 4, 7 and the stale-temp part of 11).

Rows "two processes writing the same output file", "run record pointing at a model that
another run overwrote" of ../shared/docs/reliability.md, and "--out into a missing or
read-only folder" of issue 17. Training is replaced by a tripwire wherever the point is
that it never starts; the read-only folder is tested for real, as an unprivileged user.
"""

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hostile_inputs import tiny_model

from imgcls_desktop.cli import main
from imgcls_desktop.core import training
from imgcls_desktop.core.errors import ModelFileError
from imgcls_desktop.core.model_io import remove_stale_temp_files, save_model

from synthetic import make_shapes_dataset
from unprivileged import python_as_nobody

REPO = Path(__file__).resolve().parents[2]


class TrainingStarted(Exception):
    pass


@pytest.fixture
def no_training(monkeypatch):
    def tripwire(*args, **kwargs):
        raise TrainingStarted("training started although the output could not be written")

    monkeypatch.setattr(training, "decode_items", tripwire)


@pytest.fixture
def dataset(tmp_path):
    return make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=6, size=16)


# -- case 4: --out checked before training ----------------------------------------------

def test_out_into_a_missing_folder_is_refused_before_any_epoch(capsys, no_training, dataset, tmp_path):
    out = tmp_path / "no" / "such" / "folder" / "m.keras"
    code = main(["train", str(dataset), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"the folder {out.parent} does not exist" in err and "TrainingStarted" not in err
    assert not out.parent.exists()


READ_ONLY_TRAIN = """
import json, sys
from imgcls_desktop.cli import main
from imgcls_desktop.core import training

def tripwire(*args, **kwargs):
    raise RuntimeError("TRAINING STARTED")

training.decode_items = tripwire
code = main(["train", sys.argv[1], "--out", sys.argv[2], "--epochs", "1", "--force"])
print(json.dumps({"code": code}))
"""


def test_out_into_a_read_only_folder_is_refused_before_any_epoch(nobody_tmp_path):
    # Root ignores folder permissions, so the check runs as an unprivileged user.
    dataset = make_shapes_dataset(nobody_tmp_path / "data", num_classes=2, per_class=6, size=16)
    for path in [dataset, *dataset.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    folder = nobody_tmp_path / "ro"
    folder.mkdir()
    previous = folder / "m.keras"
    previous.write_bytes(b"the previous model")
    os.chmod(previous, 0o644)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        os.chown(folder, *_nobody_ids())
    code = READ_ONLY_TRAIN.replace("sys.argv[1]", repr(str(dataset))).replace("sys.argv[2]", repr(str(previous)))
    done = python_as_nobody(code, cwd=nobody_tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"code": 1}
    assert "TRAINING STARTED" not in done.stderr
    assert f"the folder {folder} does not take new files" in done.stderr
    assert previous.read_bytes() == b"the previous model"
    assert sorted(p.name for p in folder.iterdir()) == ["m.keras"]


def _nobody_ids():
    import pwd

    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


# -- case 7: one writer at a time, and the model names its run ---------------------------

HOLDER = textwrap.dedent("""
    import sys
    from imgcls_desktop.core.output_files import output_lock

    with output_lock(sys.argv[1]):
        print("LOCKED", flush=True)
        sys.stdin.readline()  # held until the parent says so
""")


@pytest.fixture
def other_process_holding():
    """Start a process that holds output_lock on a path: ``hold(path)`` -> its pid."""
    children = []

    def hold(path):
        child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=REPO,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
        children.append(child)
        assert child.stdout.readline().strip() == "LOCKED"
        return child.pid

    yield hold
    for child in children:
        child.stdin.close()
        child.wait(timeout=30)


def test_a_second_run_writing_the_same_out_is_refused_before_training(capsys, no_training, dataset,
                                                                      tmp_path, other_process_holding):
    out = tmp_path / "m.keras"
    pid = other_process_holding(out)
    code = main(["train", str(dataset), "--out", str(out), "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert f"is being written by another imgcls run (process {pid})" in err
    assert "TrainingStarted" not in err and not out.exists()


def test_save_into_a_file_another_process_is_writing_is_refused(tmp_path, other_process_holding):
    target = save_model(tiny_model(), tmp_path / "m.keras", {"class_names": ["a", "b"]})
    before = target.read_bytes()
    other_process_holding(target)
    with pytest.raises(ModelFileError, match="being written by another imgcls run"):
        save_model(tiny_model(), target, {"class_names": ["x", "y"]})
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp.keras")] == []


def test_the_lock_is_released_and_its_file_removed(tmp_path):
    target = save_model(tiny_model(), tmp_path / "m.keras", {"class_names": ["a", "b"]})
    save_model(tiny_model(), target, {"class_names": ["a", "b"]})  # the same process, again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_a_model_overwritten_by_another_run_is_detected_by_the_history(capsys, trained, tmp_path):
    from imgcls_desktop.core.errors import ImgclsError
    from imgcls_desktop.core.history import assign_run_id, load_run, model_status, record_run, run_model_path
    from imgcls_desktop.core.model_io import read_run_id

    result, _ = trained
    out = tmp_path / "shared.keras"
    runs = []
    for _ in range(2):  # run A, then run B into the same file
        fresh = dataclasses.replace(result, metadata=dict(result.metadata))
        run_id = assign_run_id(fresh)
        save_model(fresh.model, out, fresh.metadata)
        runs.append(record_run(fresh, None, out, evaluate=False))
        assert runs[-1].id == run_id
    run_a, run_b = runs
    assert read_run_id(out) == run_b.id

    status = model_status(load_run(run_a.id))
    assert status.state == "replaced" and status.other_run == run_b.id
    assert run_a.id in status.message and run_b.id in status.message
    with pytest.raises(ImgclsError, match=f"overwritten by run {run_b.id}"):
        run_model_path(run_a.id)
    assert model_status(load_run(run_b.id)).state == "ok"
    assert run_model_path(run_b.id) == str(out)

    code = main(["runs"])
    listing = capsys.readouterr().out
    assert code == 0
    line_a = next(line for line in listing.splitlines() if line.startswith(run_a.id))
    assert f"(replaced by run {run_b.id})" in line_a
    main(["runs", "show", run_a.id])
    assert f"overwritten by run {run_b.id}" in capsys.readouterr().out


def test_cli_train_writes_the_run_id_into_the_model(capsys, dataset, tmp_path):
    from imgcls_desktop.core.model_io import read_run_id

    out = tmp_path / "m.keras"
    code = main(["train", str(dataset), "--out", str(out), "--preset", "tutorial_cnn",
                 "--epochs", "1", "--image-size", "32", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    run_id = json.loads(captured.out)["run_id"]
    assert run_id and read_run_id(out) == run_id


# -- case 11 (part): temp files of a killed save -----------------------------------------

KILLED_SAVER = textwrap.dedent("""
    import sys
    from imgcls_desktop.core.model_io import save_model

    class Stuck:
        def save(self, path, overwrite=True):
            with open(path, "wb") as handle:
                handle.write(b"PK half a model")
                handle.flush()
            print("WRITING", flush=True)
            sys.stdin.readline()  # killed here

    save_model(Stuck(), sys.argv[1], {})
""")


def test_the_next_save_removes_the_temp_file_of_a_killed_save(tmp_path):
    target = tmp_path / "m.keras"
    child = subprocess.Popen([sys.executable, "-c", KILLED_SAVER, str(target)], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert child.stdout.readline().strip() == "WRITING"
        left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp.keras")]
        assert len(left) == 1
        # While the save runs its temp file is kept, however old it looks.
        hours_ago = time.time() - 2 * 3600
        os.utime(left[0], (hours_ago, hours_ago))
        assert remove_stale_temp_files(tmp_path) == []
    finally:
        child.kill()
        child.wait(timeout=30)
    # Killed: a minute and a half later (not the hour the sweep waited for before), the next
    # save into the folder removes it.
    moments_ago = time.time() - 90
    os.utime(left[0], (moments_ago, moments_ago))
    save_model(tiny_model(), target, {"class_names": ["a", "b"]})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_only_our_own_temp_names_are_swept(tmp_path):
    hours_ago = time.time() - 2 * 3600
    names = [".m.keras.abcd1234.tmp.keras", ".notes.tmp.keras", "visible.abcd1234.tmp.keras",
             ".m.ABCD1234.tmp.keras"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (hours_ago, hours_ago))
    link = tmp_path / ".link.abcd1234.tmp.keras"
    link.symlink_to(tmp_path / "visible.abcd1234.tmp.keras")
    removed = remove_stale_temp_files(tmp_path)
    assert [p.name for p in removed] == [".m.keras.abcd1234.tmp.keras"]
    assert link.is_symlink()
