"""Saving and loading ``.keras`` files: atomic writes, a safety gate, our metadata.

A ``.keras`` file from someone else is a program, not data. Before Keras deserialises
anything we check the zip (members, path tricks, expansion ratio) and the config (only
Keras' own modules and an allowlist of layers); then Keras loads it in safe mode; then the
signature is checked against the class list.
"""

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .backend import keras_module
from .errors import ModelFileError

METADATA_MEMBER = "imgcls_metadata.json"
_KERAS_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}
_ALLOWED_MEMBERS = _KERAS_MEMBERS | {METADATA_MEMBER, "assets/"}
MAX_EXPANSION_RATIO = 100
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3

# Layers this app produces, plus what plain Keras CNN scripts and keras.applications
# backbones use. Anything else (Lambda above all) is refused before Keras sees it.
ALLOWED_LAYERS = frozenset("""
Functional Sequential Model InputLayer
Conv2D DepthwiseConv2D SeparableConv2D Conv2DTranspose Dense Dropout SpatialDropout2D
BatchNormalization LayerNormalization GroupNormalization Activation ReLU LeakyReLU PReLU ELU Softmax
MaxPooling2D AveragePooling2D GlobalMaxPooling2D GlobalAveragePooling2D
Flatten Reshape ZeroPadding2D Cropping2D Add Multiply Concatenate Average Maximum Subtract
Rescaling Normalization Resizing CenterCrop
RandomFlip RandomRotation RandomZoom RandomTranslation RandomContrast RandomBrightness
""".split())


@dataclass
class LoadedModel:
    model: object
    path: Path
    class_names: list
    image_size: tuple  # (height, width)
    metadata: dict
    warnings: list = field(default_factory=list)

    @property
    def preset(self):
        return self.metadata.get("preset", "unknown")

    def summary(self):
        """What the window's model summary and ``imgcls`` show about a model."""
        training = self.metadata.get("training", {})
        return {
            "path": str(self.path),
            "preset": self.preset,
            "image_size": list(self.image_size),
            "class_names": list(self.class_names),
            "parameters": int(self.model.count_params()),
            "epochs_run": training.get("epochs_run"),
            "best_val_accuracy": training.get("best_val_accuracy"),
            "history": training.get("history", {}),
        }


# -- saving -----------------------------------------------------------------------------

def save_model(model, path, metadata):
    """Write ``model`` with ``metadata`` to ``path`` atomically.

    The file is written beside the target under a temporary name, flushed to disk,
    re-opened and checked, then moved over the target in one step: a crash, a full disk
    or a kill during the save leaves the previous file as it was.
    """
    path = Path(path)
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"Model files must end in .keras; got {path.name}. Choose a name like model.keras.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"Cannot save {path}: the folder {folder} does not exist.")
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.keras", dir=folder)
    os.close(fd)
    temp = Path(temp_name)
    try:
        # Keras asks on stdin before overwriting unless told; the temp file is ours anyway.
        model.save(temp, overwrite=True)
        with zipfile.ZipFile(temp, "a") as archive:
            archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=1, default=_json_default))
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        _verify_written(temp)
        os.replace(temp, path)
        _fsync_folder(folder)
    except ModelFileError:
        _remove_quietly(temp)
        raise
    except OSError as exc:
        _remove_quietly(temp)
        raise ModelFileError(
            f"Could not save the model to {path}: {exc.strerror or exc}. "
            "Check that the folder is writable and the disk has free space; "
            "the previous file, if any, is unchanged."
        ) from exc
    except BaseException:
        _remove_quietly(temp)
        raise
    return path


def _verify_written(path):
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        names = set(archive.namelist())
    if bad is not None or not _KERAS_MEMBERS <= names:
        raise ModelFileError(f"The model written to {path} failed its check; nothing was replaced.")


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open folders; os.replace is still atomic there
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path):
    try:
        path.unlink()
    except OSError:
        pass


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def remove_stale_temp_files(folder):
    """Delete temp files a killed save left behind (they never replace a real model)."""
    removed = []
    for candidate in Path(folder).glob(".*.tmp.keras"):
        _remove_quietly(candidate)
        removed.append(candidate)
    return removed


# -- the gate ---------------------------------------------------------------------------

def check_model_file(path):
    """Refuse anything that is not a plain, safe ``.keras`` zip. Returns (config, metadata).

    Nothing here runs code from the file: it reads the zip directory and two JSON members.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a folder (a TensorFlow SavedModel?). Only .keras model files can be "
            "opened; re-save the model with model.save('name.keras')."
        )
    if not path.exists():
        raise ModelFileError(f"Model file not found: {path}.")
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        raise ModelFileError(
            f"{path.name} is a legacy HDF5 model. Only .keras files can be opened; load it in "
            "Keras yourself and re-save it with model.save('name.keras')."
        )
    if suffix != ".keras":
        raise ModelFileError(f"{path.name} is not a .keras model file.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is damaged or not a Keras model (it is not a .keras zip archive)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_members(path, infos)
            config = _read_json(archive, path, "config.json")
            metadata = (_read_json(archive, path, METADATA_MEMBER)
                        if METADATA_MEMBER in archive.namelist() else {})
    except zipfile.BadZipFile as exc:
        raise ModelFileError(f"{path} is damaged or not a Keras model ({exc}).") from exc
    _check_config(path, config)
    return config, metadata


def _check_members(path, infos):
    names = {info.filename for info in infos}
    missing = _KERAS_MEMBERS - names
    if missing:
        raise ModelFileError(
            f"{path} is damaged or not a Keras model (missing {', '.join(sorted(missing))})."
        )
    total = 0
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in Path(name).parts or ":" in name:
            raise ModelFileError(f"{path} was refused: it contains a member with an unsafe path ({name!r}).")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise ModelFileError(f"{path} was refused: it contains a symbolic link ({name!r}).")
        top = name.split("/")[0] + ("/" if "/" in name else "")
        if name not in _ALLOWED_MEMBERS and top not in _ALLOWED_MEMBERS:
            raise ModelFileError(f"{path} was refused: unexpected member {name!r} in the archive.")
        if info.file_size > MAX_EXPANSION_RATIO * max(info.compress_size, 1024):
            raise ModelFileError(
                f"{path} was refused: member {name!r} expands {info.file_size // max(info.compress_size, 1)}x "
                "(a zip bomb?)."
            )
        total += info.file_size
    if total > MAX_UNCOMPRESSED_BYTES:
        raise ModelFileError(f"{path} was refused: it would expand to {total / 1024**3:.1f} GB.")


def _read_json(archive, path, member):
    try:
        return json.loads(archive.read(member).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, zipfile.BadZipFile, OSError) as exc:
        raise ModelFileError(f"{path} is damaged or not a Keras model ({member} is unreadable).") from exc


def _check_config(path, config):
    for node in _walk_objects(config):
        class_name = node.get("class_name")
        module = node.get("module")
        if module is not None and not (module == "keras" or module.startswith("keras.")):
            raise ModelFileError(
                f"{path} was refused: it refers to code outside Keras ({module}.{class_name}). "
                "Only models built from standard Keras layers can be opened."
            )
        if node.get("registered_name") not in (None, class_name):
            raise ModelFileError(
                f"{path} was refused: it uses a custom registered object ({node['registered_name']})."
            )
        is_layer = "inbound_nodes" in node or "layers" in str(module) or "models" in str(module)
        if is_layer and class_name not in ALLOWED_LAYERS:
            raise ModelFileError(
                f"{path} was refused: it contains a {class_name} layer, which this app does not "
                "open (only standard image-classification layers are allowed)."
            )
        if "safe_mode" in node or node.get("function") is not None:
            raise ModelFileError(f"{path} was refused: it carries executable code.")


def _walk_objects(value):
    if isinstance(value, dict):
        if "class_name" in value:
            yield value
        for child in value.values():
            yield from _walk_objects(child)
    elif isinstance(value, list):
        for child in value:
            yield from _walk_objects(child)


# -- loading ----------------------------------------------------------------------------

def read_metadata(path):
    """Our metadata of a model file without loading TensorFlow (after the safety gate)."""
    return check_model_file(path)[1]


def load_model(path):
    """Load a ``.keras`` file through the gate, in safe mode, and check its signature."""
    path = Path(path)
    _config, metadata = check_model_file(path)
    keras = keras_module()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds; none of them should reach the user raw
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "version" in message.lower():
            raise ModelFileError(
                f"{path} was saved by a different Keras version and cannot be opened here "
                f"({message}). Update imgcls-desktop or re-save the model."
            ) from exc
        raise ModelFileError(f"{path} could not be loaded as a Keras model: {message}") from exc
    return _checked(model, path, metadata)


def _checked(model, path, metadata):
    warnings = []
    inputs = model.inputs
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ModelFileError(
            f"{path} was refused: expected one image input and one output, "
            f"got {len(inputs)} input(s) and {len(model.outputs)} output(s)."
        )
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[2] is None:
        raise ModelFileError(
            f"{path} was refused: expected an input of shape (batch, height, width, 3), got {shape}."
        )
    width = model.outputs[0].shape[-1]
    class_names = metadata.get("class_names")
    if class_names is None:
        class_names = [f"class_{i}" for i in range(width)]
        warnings.append(
            f"{path.name} has no class names (it was not made by imgcls-desktop); "
            f"its {width} outputs are shown as class_0..class_{width - 1}."
        )
    elif len(class_names) != width:
        raise ModelFileError(
            f"{path} was refused: its output has {width} classes but its metadata lists "
            f"{len(class_names)} class names."
        )
    return LoadedModel(model=model, path=path, class_names=list(class_names),
                       image_size=(int(shape[1]), int(shape[2])), metadata=metadata,
                       warnings=warnings)


def from_training(result, path=None):
    """A :class:`LoadedModel` view of a freshly trained model (no file round trip)."""
    model = result.model
    shape = tuple(model.inputs[0].shape)
    return LoadedModel(model=model, path=Path(path) if path else None,
                       class_names=list(result.class_names),
                       image_size=(int(shape[1]), int(shape[2])), metadata=result.metadata)
