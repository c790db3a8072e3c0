"""Model files: round trip, metadata, atomic saves, and the refusals of the safety gate."""

import json
import os
import zipfile

import numpy as np
import pytest

from imgcls_desktop.core import model_io
from imgcls_desktop.core.errors import ModelFileError
from imgcls_desktop.core.inference import Predictor
from imgcls_desktop.core.model_io import check_model_file, load_model, save_model


def test_round_trip_gives_identical_predictions(trained, shapes_split_dataset):
    result, path = trained
    loaded = load_model(path)
    assert loaded.class_names == result.class_names
    assert loaded.image_size == (32, 32)
    assert loaded.preset == "small_cnn"
    assert loaded.warnings == []
    files = sorted((shapes_split_dataset / "test").rglob("*.png"))
    fresh = Predictor(model_io.from_training(result)).predict_paths(files)
    reloaded = Predictor(loaded).predict_paths(files)
    assert [r.label for r in fresh] == [r.label for r in reloaded]
    np.testing.assert_allclose([r.probabilities for r in fresh], [r.probabilities for r in reloaded],
                               rtol=1e-5, atol=1e-6)


def test_summary_reports_what_the_model_is(trained):
    _result, path = trained
    summary = load_model(path).summary()
    assert summary["preset"] == "small_cnn"
    assert summary["parameters"] > 1000
    assert summary["class_names"] == ["circle", "square", "triangle"]
    assert "loss" in summary["history"]


def _plain_keras_model(num_outputs=4, size=16):
    from imgcls_desktop.core.backend import keras_module

    keras = keras_module()
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(num_outputs, activation="softmax")(x))


def test_plain_keras_file_loads_with_generic_class_names(tmp_path):
    path = tmp_path / "plain.keras"
    _plain_keras_model().save(path)
    loaded = load_model(path)
    assert loaded.class_names == ["class_0", "class_1", "class_2", "class_3"]
    assert loaded.warnings and "class_0" in loaded.warnings[0]


def test_save_replaces_only_a_complete_file(trained, tmp_path):
    result, _ = trained
    target = tmp_path / "m.keras"
    save_model(result.model, target, result.metadata)
    before = target.read_bytes()
    # A failing write (simulated disk full) leaves the old file and no temp file behind.
    original = zipfile.ZipFile.writestr

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    zipfile.ZipFile.writestr = disk_full
    try:
        with pytest.raises(ModelFileError, match="free space"):
            save_model(result.model, target, result.metadata)
    finally:
        zipfile.ZipFile.writestr = original
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


READ_ONLY_SAVE = """
import json, os, sys
from imgcls_desktop.core.errors import ModelFileError
from imgcls_desktop.core.model_io import load_model, save_model

loaded = load_model(sys.argv[1])
try:
    save_model(loaded.model, sys.argv[2], {"class_names": loaded.class_names})
    outcome = "saved"
except ModelFileError as exc:
    outcome = str(exc)
print(json.dumps({"euid": os.geteuid(), "outcome": outcome}))
"""


def test_save_into_read_only_folder_says_so(trained, nobody_tmp_path):
    # Root ignores folder permissions, so the save runs as an unprivileged user.
    import shutil
    import sys

    from unprivileged import run_as_nobody

    _, path = trained
    source = shutil.copy(path, nobody_tmp_path / "source.keras")
    folder = nobody_tmp_path / "ro"
    folder.mkdir()
    previous = shutil.copy(path, folder / "m.keras")
    for copy in (source, previous):  # saves are created 0600, private to root
        os.chmod(copy, 0o644)
    before = (folder / "m.keras").read_bytes()
    folder.chmod(0o555)
    try:
        done = run_as_nobody([sys.executable, "-c", READ_ONLY_SAVE, source, previous],
                             cwd=nobody_tmp_path)
    finally:
        folder.chmod(0o755)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["euid"] != 0
    assert "writable" in report["outcome"] and "unchanged" in report["outcome"], report
    assert str(folder) in report["outcome"]
    assert (folder / "m.keras").read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["m.keras"]


def test_refuses_non_keras_inputs(tmp_path):
    (tmp_path / "saved_model").mkdir()
    with pytest.raises(ModelFileError, match="folder"):
        check_model_file(tmp_path / "saved_model")
    legacy = tmp_path / "old.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(ModelFileError, match="legacy HDF5"):
        check_model_file(legacy)
    random_bytes = tmp_path / "random.keras"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelFileError, match="damaged or not a Keras model"):
        load_model(random_bytes)
    with pytest.raises(ModelFileError, match="not found"):
        load_model(tmp_path / "missing.keras")


def test_truncated_file_is_damaged(trained, tmp_path):
    _, path = trained
    truncated = tmp_path / "cut.keras"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match="damaged"):
        load_model(truncated)


def _rewrite_config(source, target, change):
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_lambda_layer_is_refused_before_loading(trained, tmp_path):
    _, path = trained
    marker = tmp_path / "ran"

    def add_lambda(config):
        layers = config["config"]["layers"]
        layers.insert(1, {"module": "keras.layers", "class_name": "Lambda", "name": "evil",
                          "config": {"function": f"open({str(marker)!r}, 'w')"}, "inbound_nodes": []})

    evil = tmp_path / "evil.keras"
    _rewrite_config(path, evil, add_lambda)
    with pytest.raises(ModelFileError, match="Lambda"):
        load_model(evil)
    assert not marker.exists()


def test_foreign_module_is_refused(trained, tmp_path):
    _, path = trained

    def foreign(config):
        config["config"]["layers"][1]["module"] = "os"

    bad = tmp_path / "foreign.keras"
    _rewrite_config(path, bad, foreign)
    with pytest.raises(ModelFileError, match="outside Keras"):
        check_model_file(bad)


def test_path_traversal_member_is_refused(trained, tmp_path):
    _, path = trained
    bad = tmp_path / "traversal.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(bad, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
        target.writestr("../../escape.txt", b"x")
    with pytest.raises(ModelFileError, match="unsafe path"):
        check_model_file(bad)


def test_wrong_class_count_is_refused(trained, tmp_path):
    _, path = trained
    bad = tmp_path / "mismatch.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(bad, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == model_io.METADATA_MEMBER:
                meta = json.loads(data)
                meta["class_names"] = meta["class_names"] + ["extra"]
                data = json.dumps(meta).encode()
            target.writestr(name, data)
    with pytest.raises(ModelFileError, match="3 classes but its metadata lists 4"):
        load_model(bad)


def test_stale_temp_files_are_cleaned(tmp_path):
    stale = tmp_path / ".model.abc123.tmp.keras"
    stale.write_bytes(b"half written")
    keep = tmp_path / "model.keras"
    keep.write_bytes(b"real")
    assert model_io.remove_stale_temp_files(tmp_path) == [stale]
    assert keep.exists() and not stale.exists()
