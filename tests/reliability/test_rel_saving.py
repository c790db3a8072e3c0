"""Faults while saving: SIGKILL mid-save, a read-only folder, a full disk at the first byte,
and the temp files a killed save leaves behind.

Rows "disk full or read-only folder at save time" and "process killed during save" of
../shared/docs/reliability.md; the "Saving" bullet of issue 5.
"""

import errno
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import tiny_model

from imgcls_desktop.core import model_io
from imgcls_desktop.core.errors import ModelFileError
from imgcls_desktop.core.model_io import load_model, remove_stale_temp_files, save_model

REPO = Path(__file__).resolve().parents[2]

# The child saves over one target in a loop, alternating two real .keras payloads
# (2 and 3 classes). Its "model" writes the real bytes Keras produced, in small flushed
# chunks, so a kill can land anywhere inside save_model: while Keras' part is written,
# while our metadata is appended, at fsync, at the check, at the rename.
CHILD = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from imgcls_desktop.core import model_io

    target, blob_a, blob_b, mode = sys.argv[1:5]
    blobs = [Path(blob_a).read_bytes(), Path(blob_b).read_bytes()]

    class RecordedModel:
        def __init__(self, blob):
            self.blob = blob

        def save(self, path, overwrite=True):
            with open(path, "wb") as handle:
                for start in range(0, len(self.blob), 8192):
                    handle.write(self.blob[start:start + 8192])
                    handle.flush()

    if mode == "pause-before-rename":
        real_replace = os.replace

        def paused_replace(source, destination):
            sys.stdout.write("RENAMING\\n"); sys.stdout.flush()
            sys.stdin.readline()  # the parent kills us here
            real_replace(source, destination)

        model_io.os.replace = paused_replace

    if mode == "real-keras":  # Keras' own model.save writes the temp file
        sys.path.insert(0, sys.argv[6])
        from hostile_inputs import tiny_model

        models = [tiny_model(num_classes=2), tiny_model(num_classes=3)]
    else:
        models = [RecordedModel(blob) for blob in blobs]

    def say(line):
        # One write per line: with PYTHONUNBUFFERED set, print() writes its pieces one
        # syscall each, and a kill between them left "SAVED" without its number.
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()

    generation = int(sys.argv[5])
    while True:
        names = ["a", "b"] if generation % 2 == 0 else ["a", "b", "c"]
        say(f"SAVING {generation}")
        model_io.save_model(models[generation % 2], target,
                            {"generation": generation, "class_names": names})
        say(f"SAVED {generation}")
        generation += 1
""")


@pytest.fixture(scope="module")
def payloads(tmp_path_factory):
    """Bytes of two real .keras files (2 and 3 outputs) as Keras writes them."""
    folder = tmp_path_factory.mktemp("payloads")
    paths = []
    for classes in (2, 3):
        path = folder / f"k{classes}.keras"
        tiny_model(num_classes=classes).save(path)
        paths.append(path)
    return paths


def _start_child(script, target, payloads, mode, generation):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, str(script), str(target), str(payloads[0]), str(payloads[1]),
                             mode, str(generation), str(Path(__file__).parent)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def _kill_at_random_moments(script, target, payloads, mode, rounds, seed, max_delay):
    folder = target.parent
    rng = np.random.default_rng(seed)
    last_saved, generation = 0, 1
    for _round in range(rounds):
        child = _start_child(script, target, payloads, mode, generation)
        while True:  # let one save complete, then kill the next ones at a random moment
            line = child.stdout.readline()
            assert line, child.stderr.read()
            if line.startswith("SAVED"):
                last_saved = int(line.split()[1])
                break
        try:
            child.wait(timeout=float(rng.uniform(0.0, max_delay)))
        except subprocess.TimeoutExpired:
            pass
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        # Only whole lines count: the kill may cut the last one short.
        saved = [int(line.split()[1]) for line in child.stdout.read().splitlines(keepends=True)
                 if line.startswith("SAVED ") and line.endswith("\n")]
        if saved:
            last_saved = saved[-1]
        generation = _check_target(target, last_saved)
        remove_stale_temp_files(folder)
        assert _temp_files(folder) == []
        last_saved = generation
        generation += 1
    return last_saved


def _temp_files(folder):
    return sorted(folder.glob(".*.tmp.keras"))


def _check_target(target, last_saved):
    """The target loads, and is the last completed save or the one in progress."""
    loaded = load_model(target)
    generation = loaded.metadata["generation"]
    assert generation in (last_saved, last_saved + 1), (generation, last_saved)
    assert len(loaded.class_names) == (2 if generation % 2 == 0 else 3)
    assert loaded.model.outputs[0].shape[-1] == len(loaded.class_names)
    return generation


def test_sigkill_during_save_leaves_the_old_or_the_new_model(tmp_path, payloads):
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    folder = tmp_path / "models"
    folder.mkdir()
    target = folder / "model.keras"
    save_model(tiny_model(num_classes=2), target, {"generation": 0, "class_names": ["a", "b"]})

    # 1. Deterministic: killed after the temp file is complete, just before the rename.
    child = _start_child(script, target, payloads, "pause-before-rename", 1)
    lines = []
    while not lines or lines[-1] != "RENAMING":
        line = child.stdout.readline()
        assert line, child.stderr.read()
        lines.append(line.strip())
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert _check_target(target, 0) == 0  # the old model, intact
    stale = _temp_files(folder)
    assert len(stale) == 1
    assert remove_stale_temp_files(folder) == stale
    assert _temp_files(folder) == [] and sorted(folder.iterdir()) == [target]

    # 2. Killed at seeded random moments of a save loop.
    assert _kill_at_random_moments(script, target, payloads, "loop", rounds=6, seed=20240607,
                                   max_delay=0.25) >= 6  # every round replaced the model


@pytest.mark.slow
def test_sigkill_during_real_keras_saves(tmp_path, payloads):
    """As above with Keras' own model.save in the child (slow: each child imports TensorFlow)."""
    script = tmp_path / "saver.py"
    script.write_text(CHILD)
    target = tmp_path / "model.keras"
    save_model(tiny_model(num_classes=2), target, {"generation": 0, "class_names": ["a", "b"]})
    _kill_at_random_moments(script, target, payloads, "real-keras", rounds=3, seed=7, max_delay=1.0)


def test_read_only_folder_at_rename_keeps_the_previous_model(tmp_path, monkeypatch):
    target = save_model(tiny_model(), tmp_path / "m.keras", {"class_names": ["a", "b"]})
    before = target.read_bytes()

    def refuse(source, destination):
        raise PermissionError(errno.EACCES, "Permission denied", str(destination))

    monkeypatch.setattr(model_io.os, "replace", refuse)
    with pytest.raises(ModelFileError) as caught:
        save_model(tiny_model(num_classes=2), target, {"class_names": ["x", "y"]})
    message = str(caught.value)
    assert f"folder {tmp_path}" in message and "writable" in message and "unchanged" in message
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


@pytest.mark.parametrize("error, words", [
    (PermissionError(errno.EACCES, "Permission denied"), "writable"),
    (OSError(errno.ENOSPC, "No space left on device"), "free space"),
    (OSError(errno.EROFS, "Read-only file system"), "writable"),
])
def test_folder_refusing_the_temp_file_gives_a_model_file_error(tmp_path, monkeypatch, error, words):
    target = save_model(tiny_model(), tmp_path / "m.keras", {"class_names": ["a", "b"]})
    before = target.read_bytes()

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ModelFileError) as caught:
        save_model(tiny_model(), target, {"class_names": ["a", "b"]})
    assert str(tmp_path) in str(caught.value) and words in str(caught.value)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_keras_failing_mid_write_keeps_the_previous_model(tmp_path):
    target = save_model(tiny_model(), tmp_path / "m.keras", {"class_names": ["a", "b"]})
    before = target.read_bytes()

    class DiskFullHalfway:
        def save(self, path, overwrite=True):
            Path(path).write_bytes(b"PK\x03\x04 half a model")
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ModelFileError, match="free space"):
        save_model(DiskFullHalfway(), target, {})
    assert target.read_bytes() == before and _temp_files(tmp_path) == []


def test_next_save_sweeps_old_temp_files_but_not_a_running_save(tmp_path):
    old = tmp_path / ".m.abc123.tmp.keras"
    old.write_bytes(b"left by a killed save")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    fresh = tmp_path / ".m.def456.tmp.keras"
    fresh.write_bytes(b"another process is writing this right now")
    unrelated = tmp_path / "notes.tmp.keras.txt"
    unrelated.write_text("not ours")
    save_model(tiny_model(), tmp_path / "m.keras", {"class_names": ["a", "b"]})
    assert not old.exists()
    assert fresh.exists() and unrelated.exists()
    assert load_model(tmp_path / "m.keras").class_names == ["a", "b"]
    assert remove_stale_temp_files(tmp_path) == [fresh]
