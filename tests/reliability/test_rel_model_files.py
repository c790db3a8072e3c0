"""Hostile model files: each is refused before Keras deserialises anything (or, for a valid
model with the wrong signature, right after loading), with a message a user understands;
nothing in them runs; Keras' safe mode and the global dtype policy are left alone.

Rows of ../shared/docs/reliability.md ("Model file") and the "Hostile model files" bullets
of issue 5.
"""

import json
import zipfile

import numpy as np
import pytest
from hostile_inputs import layers_of, read_members, rewrite_config, tiny_model, write_members

from imgcls_desktop.core import model_io
from imgcls_desktop.core.backend import keras_module
from imgcls_desktop.core.errors import ModelFileError
from imgcls_desktop.core.model_io import check_model_file, load_model, save_model

pytestmark = pytest.mark.usefixtures("safe_mode_guard")


@pytest.fixture(scope="module")
def base_file(tmp_path_factory):
    """A valid 2-class 8x8 model saved by this app (our metadata included)."""
    path = tmp_path_factory.mktemp("base") / "base.keras"
    return save_model(tiny_model(num_classes=2, size=8), path, {"class_names": ["cat", "dog"]})


@pytest.fixture
def keras_never_loads(monkeypatch):
    """Fails the test if Keras is asked to deserialise the file."""
    keras = keras_module()
    calls = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        raise AssertionError("keras.saving.load_model was reached")

    monkeypatch.setattr(keras.saving, "load_model", forbidden)
    return calls


def _refused(path, *fragments):
    with pytest.raises(ModelFileError) as caught:
        load_model(path)
    message = str(caught.value)
    assert str(path) in message or path.name in message, message
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message and "\n" not in message
    return message


def test_base_file_loads(base_file):
    loaded = load_model(base_file)
    assert loaded.class_names == ["cat", "dog"] and loaded.image_size == (8, 8)


# -- the zip ----------------------------------------------------------------------------

@pytest.mark.parametrize("member", ["assets/padding.bin", "config.json"])
def test_zip_bomb_member_refused(base_file, tmp_path, keras_never_loads, member):
    members = read_members(base_file)
    if member == "config.json":  # valid JSON, padded with 20 MB of spaces
        members[member] = members[member] + b" " * (20 * 1024**2)
    else:
        members[member] = b"\0" * (20 * 1024**2)
    bomb = write_members(tmp_path / "bomb.keras", members, compression=zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 2 * 1024**2  # > 10x smaller than what it expands to
    _refused(bomb, "zip bomb", member)
    assert keras_never_loads == []


def test_symlink_member_refused(base_file, tmp_path, keras_never_loads):
    target = tmp_path / "link.keras"
    with zipfile.ZipFile(base_file) as source, zipfile.ZipFile(target, "w") as archive:
        for info in source.infolist():
            archive.writestr(info, source.read(info.filename))
        link = zipfile.ZipInfo("assets/passwords")
        link.create_system = 3
        link.external_attr = (0o120777 << 16)
        archive.writestr(link, "/etc/passwd")
    _refused(target, "symbolic link")
    assert keras_never_loads == []


@pytest.mark.parametrize("name", ["../../escape.txt", "/etc/cron.d/evil", "assets/../../up.txt",
                                  "assets/..\\..\\windows.txt", "C:/Windows/evil.dll", "\\\\server\\share"])
def test_path_tricks_refused(base_file, tmp_path, keras_never_loads, name):
    members = read_members(base_file)
    members[name] = b"x"
    bad = write_members(tmp_path / "tricks.keras", members)
    _refused(bad, "refused")
    assert keras_never_loads == []


def test_unexpected_member_refused(base_file, tmp_path, keras_never_loads):
    members = read_members(base_file)
    members["payload.py"] = b"import os; os.system('echo hi')"
    _refused(write_members(tmp_path / "extra.keras", members), "unexpected member 'payload.py'")


# -- the config: safe mode switches, code, foreign modules -----------------------------

def _dense(config):
    return next(layer for layer in layers_of(config) if layer["class_name"] == "Dense")


def _set_activation(value):
    return lambda config: _dense(config)["config"].__setitem__("activation", value)


CONFIG_ATTACKS = {
    "safe_mode key on a layer": lambda c: _dense(c).__setitem__("safe_mode", False),
    "safe_mode key inside a layer config": lambda c: _dense(c)["config"].__setitem__("safe_mode", False),
    "safe_mode key on the model config": lambda c: c["config"].__setitem__("safe_mode", False),
    "keras.config.enable_unsafe_deserialization": _set_activation(
        {"module": "keras.config", "class_name": "function", "config": "enable_unsafe_deserialization",
         "registered_name": "function"}),
    "builtins function": _set_activation(
        {"module": "builtins", "class_name": "function", "config": "exec", "registered_name": "function"}),
    "__lambda__ activation": _set_activation(
        {"class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAAD", "defaults": None,
                                                "closure": None}}),
    "function key on an allowed layer": lambda c: _dense(c)["config"].__setitem__(
        "function", {"class_name": "__lambda__", "config": {"code": "AAAA"}}),
    "keras.utils.get_file initializer": lambda c: _dense(c)["config"].__setitem__(
        "kernel_initializer", {"module": "keras.utils", "class_name": "get_file",
                               "config": {"origin": "http://attacker.invalid/x"}, "registered_name": None}),
    "module outside keras": lambda c: _dense(c).__setitem__("module", "os"),
    "custom registered object": lambda c: _dense(c).__setitem__("registered_name", "Custom>Dense"),
    "Lambda layer": lambda c: layers_of(c).insert(1, {
        "module": "keras.layers", "class_name": "Lambda", "name": "evil",
        "config": {"name": "evil"}, "inbound_nodes": []}),
}


@pytest.mark.parametrize("attack", list(CONFIG_ATTACKS))
def test_config_attacks_refused_before_keras(base_file, tmp_path, keras_never_loads, attack):
    bad = rewrite_config(base_file, tmp_path / "attack.keras", CONFIG_ATTACKS[attack])
    _refused(bad, "refused")
    with pytest.raises(ModelFileError):
        check_model_file(bad)
    assert keras_never_loads == []


def test_real_keras_lambda_model_refused_and_its_code_never_runs(tmp_path):
    keras = keras_module()
    marker = tmp_path / "pwned"
    # The payload is in the bytecode Keras serialises; a constant path, no globals needed.
    payload = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(payload, output_shape=(8, 8, 3))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    evil = tmp_path / "evil.keras"
    model.save(evil)
    marker.unlink(missing_ok=True)  # building the graph may have traced it once

    # The file really is armed: Keras with safe mode off would run the payload.
    with zipfile.ZipFile(evil) as archive:
        config = json.loads(archive.read("config.json"))
    lambda_layer = next(layer for layer in layers_of(config) if layer["class_name"] == "Lambda")
    assert lambda_layer["config"]["function"]["class_name"] == "__lambda__"

    message = _refused(evil, "Lambda")
    assert "does not open" in message
    assert not marker.exists()

    from imgcls_desktop.cli import main

    assert main(["predict", str(evil), str(tmp_path)]) == 1
    assert not marker.exists()


# -- not a .keras zip -----------------------------------------------------------------------

def test_legacy_h5_from_h5py_and_from_keras_refused(tmp_path, keras_never_loads):
    import h5py

    plain = tmp_path / "weights.h5"
    with h5py.File(plain, "w") as handle:
        handle.create_dataset("kernel", data=np.ones((3, 3)))
        handle.attrs["keras_version"] = "2.15.0"
    _refused(plain, "legacy HDF5", "re-save")

    keras = keras_module()
    legacy = tmp_path / "model.h5"
    tiny_model().save(legacy)  # Keras' legacy HDF5 writer
    with open(legacy, "rb") as handle:
        assert handle.read(8) == b"\x89HDF\r\n\x1a\n"
    _refused(legacy, "legacy HDF5")

    disguised = tmp_path / "model.keras"
    disguised.write_bytes(legacy.read_bytes())
    _refused(disguised, "damaged or not a Keras model")
    assert keras is not None and keras_never_loads == []


@pytest.mark.parametrize("name", ["exported_model", "looks_like.keras"])
def test_savedmodel_folder_refused(tmp_path, keras_never_loads, name):
    folder = tmp_path / name
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
    (folder / "variables" / "variables.index").write_bytes(b"\0" * 16)
    (folder / "fingerprint.pb").write_bytes(b"\0")
    _refused(folder, "folder", ".keras")
    assert keras_never_loads == []


# -- valid models with the wrong signature ----------------------------------------------------

def test_two_input_model_refused_with_expected_and_actual(tmp_path):
    path = tmp_path / "two_inputs.keras"
    tiny_model(num_inputs=2).save(path)
    _refused(path, "expected one image input and one output", "got 2 input(s) and 1 output(s)")


def test_output_width_not_matching_class_list_refused(tmp_path):
    path = save_model(tiny_model(num_classes=3), tmp_path / "three.keras", {"class_names": ["cat", "dog"]})
    _refused(path, "output has 3 classes", "lists 2 class names")


def test_non_image_input_refused_with_expected_and_actual(tmp_path):
    keras = keras_module()
    inputs = keras.Input((10,))
    path = tmp_path / "vector.keras"
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs)).save(path)
    _refused(path, "expected an input of shape (batch, height, width, 3)", "(None, 10)")


# -- versions and plain Keras files -------------------------------------------------------

def _with_keras_version(source, target, version, change=None):
    members = read_members(source)
    meta = json.loads(members["metadata.json"])
    meta["keras_version"] = version
    members["metadata.json"] = json.dumps(meta).encode()
    if change is not None:
        config = json.loads(members["config.json"])
        change(config)
        members["config.json"] = json.dumps(config).encode()
    return write_members(target, members)


def test_model_from_a_newer_keras_loads_with_a_version_note(base_file, tmp_path):
    newer = _with_keras_version(base_file, tmp_path / "newer.keras", "9.0.0")
    loaded = load_model(newer)
    assert loaded.class_names == ["cat", "dog"]
    assert any("Keras 9.0.0" in warning for warning in loaded.warnings)


def test_model_a_newer_keras_wrote_differently_gives_a_version_message(base_file, tmp_path):
    def future_option(config):
        _dense(config)["config"]["attention_sinks"] = 4  # a keyword this Keras does not know

    newer = _with_keras_version(base_file, tmp_path / "newer.keras", "9.0.0", future_option)
    message = _refused(newer, "saved by Keras 9.0.0", "newer than")
    assert "Update imgcls-desktop" in message


def test_plain_keras_script_model_with_function_loss_still_loads(tmp_path):
    keras = keras_module()
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss=keras.losses.categorical_crossentropy,
                  metrics=[keras.metrics.categorical_accuracy])
    path = tmp_path / "script.keras"
    model.save(path)
    loaded = load_model(path)
    assert loaded.class_names == ["class_0", "class_1", "class_2"]
    assert loaded.model.compiled is False or loaded.model.optimizer is None


def test_hostile_metadata_is_refused_not_crashing(base_file, tmp_path, keras_never_loads):
    for index, metadata in enumerate([[1, 2], {"class_names": "cat,dog"}, {"class_names": [1, 2]}, "text"]):
        members = read_members(base_file)
        members[model_io.METADATA_MEMBER] = json.dumps(metadata).encode()
        _refused(write_members(tmp_path / f"meta{index}.keras", members), "damaged")
    assert keras_never_loads == []
