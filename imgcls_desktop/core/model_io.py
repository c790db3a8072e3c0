"""Saving and loading ``.keras`` files: atomic writes, a safety gate, our metadata.

A ``.keras`` file from someone else is a program, not data. Before Keras deserialises
anything we check the zip (members, path tricks, expansion ratio) and the config (only
Keras' own modules and an allowlist of layers); then Keras loads it in safe mode; then the
signature is checked against the class list.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backend import keras_module
from .errors import ModelFileError
from .output_files import fsync_folder, is_locked, locks_supported, output_lock, remove_abandoned_lock

if TYPE_CHECKING:
    from .training import TrainingResult

METADATA_MEMBER = "imgcls_metadata.json"
_KERAS_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}
_ALLOWED_MEMBERS = _KERAS_MEMBERS | {METADATA_MEMBER, "assets/"}
MAX_EXPANSION_RATIO = 100
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3
# JSON members are read into memory whole; real ones are well below this.
MAX_JSON_BYTES = 64 * 1024**2
# A temp file older than this cannot belong to a save still running (saves take seconds).
STALE_TEMP_SECONDS = 3600
# A save holds output_lock on its target while its temp file exists, so a temp file whose
# target nobody has locked was left by a killed save. This much age is still asked for, in
# case a save of an older version of this app (which took no lock) is writing it now.
UNLOCKED_TEMP_SECONDS = 60
_TEMP_GLOB = ".*.tmp.keras"
# Only our own temp names: "." + the target's name + "." + mkstemp's random part +
# ".tmp.keras" (before issue 17 the target's stem stood where its name is now).
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{6,}\.tmp\.keras$")
# output_lock's lock file of a model: ".<name>.keras.lock"; a killed save leaves it behind.
_LOCK_NAME = re.compile(r"^\.(?P<target>.+\.keras)\.lock$", re.IGNORECASE)

# Modules a config may name. Keras' own layers, models and their building blocks only:
# keras.config, keras.utils, keras.saving, builtins and the rest have been the way past
# safe mode (CVE-2025-1550, CVE-2025-8747, ...).
ALLOWED_MODULES = frozenset("""
keras keras.layers keras.models keras.src.models.functional keras.src.models.sequential
keras.src.models.model keras.initializers keras.regularizers keras.constraints keras.activations
keras.optimizers keras.optimizers.schedules keras.losses keras.metrics keras.dtype_policies
""".split())
# Config keys that only code-carrying or safe-mode-changing objects use.
_FORBIDDEN_KEYS = frozenset({"safe_mode", "function"})
_CODE_CLASS_NAMES = frozenset({"__lambda__", "function"})

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
    """A model ready to predict: the Keras model, its classes, input size and metadata."""

    model: Any  # a keras.Model
    path: Path | None  # None: trained in this process and not saved yet
    class_names: list
    image_size: tuple  # (height, width)
    metadata: dict
    warnings: list = field(default_factory=list)

    @property
    def preset(self) -> str:
        """The preset the model was trained with (``"unknown"`` when not recorded)."""
        return self.metadata.get("preset", "unknown")

    def summary(self) -> dict[str, Any]:
        """What the window's model summary and ``imgcls`` show about a model.

        Returns:
            ``path``, ``preset``, ``image_size``, ``class_names``, ``parameters``,
            ``epochs_run``, ``best_val_accuracy``, ``history``, ``forward_mflops`` and
            ``test_time_augmentation``.
        """
        return model_summary(self, int(self.model.count_params()))


def model_summary(model: Any, parameters: int) -> dict[str, Any]:
    """:meth:`LoadedModel.summary` of anything with its fields, without TensorFlow.

    The window's process holds the engine's models as handles (``gui.session.ModelHandle``)
    with the same ``path``, ``preset``, ``image_size``, ``class_names`` and ``metadata``.

    Args:
        model: A ``LoadedModel`` or a handle with those attributes.
        parameters: The model's parameter count.

    Returns:
        The summary dict (see :meth:`LoadedModel.summary`).
    """
    training = model.metadata.get("training", {})
    return {
        "path": str(model.path),
        "preset": model.preset,
        "image_size": list(model.image_size),
        "class_names": list(model.class_names),
        "parameters": int(parameters),
        "epochs_run": training.get("epochs_run"),
        "best_val_accuracy": training.get("best_val_accuracy"),
        "history": training.get("history", {}),
        "forward_mflops": training.get("forward_mflops"),
        "test_time_augmentation": model.metadata.get("test_time_augmentation"),
    }


# -- saving -----------------------------------------------------------------------------

def save_model(model: Any, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Write ``model`` with ``metadata`` to ``path`` atomically.

    The file is written beside the target under a temporary name, flushed to disk,
    re-opened and checked, then moved over the target in one step: a crash, a full disk
    or a kill during the save leaves the previous file as it was. The target is locked
    (:func:`output_files.output_lock`) for the save, so another process saving to the same
    file is refused with a clear message. Temp files that an earlier, killed save left in
    the folder are removed first (see :func:`remove_stale_temp_files`).

    Args:
        model: The Keras model.
        path: The ``.keras`` file to write.
        metadata: Stored as ``imgcls_metadata.json`` in the file (NumPy scalars and paths
            are converted).

    Returns:
        ``path`` as a ``Path``.

    Raises:
        ModelFileError: A wrong suffix, a missing folder, a save in progress elsewhere, or
            the write failed (the previous file is unchanged).
    """
    path = Path(path)
    if path.suffix.lower() != ".keras":
        raise ModelFileError(f"Model files must end in .keras; got {path.name}. Choose a name like model.keras.")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ModelFileError(f"Cannot save {path}: the folder {folder} does not exist.")
    temp = None
    try:
        # Inside the try: a read-only or full folder fails here first.
        with output_lock(path, error=ModelFileError):
            remove_stale_temp_files(folder, older_than=UNLOCKED_TEMP_SECONDS if locks_supported()
                                    else STALE_TEMP_SECONDS)
            fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.keras", dir=folder)
            os.close(fd)
            temp = Path(temp_name)
            # Keras asks on stdin before overwriting unless told; the temp file is ours anyway.
            model.save(temp, overwrite=True)
            with zipfile.ZipFile(temp, "a") as archive:
                archive.writestr(METADATA_MEMBER, json.dumps(metadata, indent=1, default=_json_default))
            with open(temp, "rb") as handle:
                os.fsync(handle.fileno())
            _verify_written(temp)
            os.replace(temp, path)
            temp = None
            fsync_folder(folder)
    except ModelFileError:
        _remove_quietly(temp)
        raise
    except OSError as exc:
        _remove_quietly(temp)
        raise ModelFileError(
            f"Could not save the model to {path}: {exc.strerror or exc}. "
            f"Check that the folder {folder} is writable and the disk has free space; "
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


def _remove_quietly(path):
    if path is None:
        return
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


def remove_stale_temp_files(folder: str | os.PathLike, older_than: float = 0.0) -> list[Path]:
    """Delete temp files a killed save left behind (they never replace a real model).

    Only regular files named as :func:`save_model` names its temp files are candidates,
    and a temp file whose target a save in progress holds locked is always kept. Lock
    files that killed saves left (no live writer holds them) go too.

    Args:
        folder: The folder to clean (not searched recursively).
        older_than: Only remove temp files last modified at least this many seconds ago
            (a second guard for a save by a version of this app that took no lock).

    Returns:
        The temp files removed.
    """
    removed: list[Path] = []
    now = time.time()
    folder = Path(folder)
    try:
        candidates = sorted(folder.glob(_TEMP_GLOB))
        locks = sorted(folder.glob(".*.lock"))
    except OSError:
        return removed
    for lock in locks:
        match = _LOCK_NAME.match(lock.name)
        if match is not None:
            remove_abandoned_lock(folder / match.group("target"))
    for candidate in candidates:
        match = _TEMP_NAME.match(candidate.name)
        if match is None:
            continue
        try:
            info = candidate.lstat()
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime < older_than:
                continue
            target = match.group("target")
            if not target.lower().endswith(".keras"):
                target += ".keras"
            if is_locked(folder / target):
                continue  # its save is running right now
            candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed


def read_run_id(path: str | os.PathLike) -> str | None:
    """The run id a model file carries in its metadata (None if it has none).

    Reads one small JSON member, without the full gate and without TensorFlow: the run
    history asks this of every model it lists.

    Args:
        path: A ``.keras`` file.

    Returns:
        The run id, or None.

    Raises:
        ModelFileError: The file is not a readable ``.keras`` zip.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            try:
                info = archive.getinfo(METADATA_MEMBER)
            except KeyError:
                return None
            if info.file_size > MAX_JSON_BYTES:
                raise ModelFileError(f"{path} was refused: {METADATA_MEMBER} is too large.")
            metadata = json.loads(archive.read(info).decode("utf-8"))
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes, as in check_model_file
        raise ModelFileError(f"{path} is damaged or not a Keras model ({_short(exc)}).") from exc
    run_id = metadata.get("run_id") if isinstance(metadata, dict) else None
    return run_id if isinstance(run_id, str) else None


# -- the gate ---------------------------------------------------------------------------

def check_model_file(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Refuse anything that is not a plain, safe ``.keras`` zip.

    Nothing here runs code from the file: it reads the zip directory and two JSON members.

    Args:
        path: A ``.keras`` file.

    Returns:
        ``(config, metadata)``: the Keras config and our metadata (``{}`` without it).

    Raises:
        ModelFileError: The file is missing, not a ``.keras`` zip, damaged, or carries
            anything the gate refuses (the message says what).
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
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as exc:
        raise ModelFileError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if not is_zip:
        raise ModelFileError(
            f"{path} is damaged or not a Keras model (it is not a .keras zip archive)."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            _check_members(path, infos)
            names = {info.filename for info in infos}
            config = _read_json(archive, path, "config.json")
            metadata = (_read_json(archive, path, METADATA_MEMBER)
                        if METADATA_MEMBER in names else {})
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: zipfile raises BadZipFile,
        # struct.error, zlib.error, NotImplementedError, RuntimeError (encrypted), EOFError...
        raise ModelFileError(f"{path} is damaged or not a Keras model ({_short(exc)}).") from exc
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} is damaged or not a Keras model (config.json is not a model configuration).")
    _check_config(path, config)
    _check_metadata(path, metadata)
    return config, metadata


def _short(exc):
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
        # Backslashes separate folders on Windows, so "assets/..\\..\\x" climbs there.
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or ":" in name:
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
    info = archive.getinfo(member)
    if info.file_size > MAX_JSON_BYTES:
        raise ModelFileError(f"{path} was refused: {member} is {info.file_size / 1024**2:.0f} MB.")
    try:
        return json.loads(archive.read(member).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelFileError(f"{path} is damaged or not a Keras model ({member} is unreadable).") from exc


def _refuse_code(path):
    raise ModelFileError(
        f"{path} was refused: it carries executable code or tries to change Keras' safe mode. "
        "Only models built from standard Keras layers can be opened."
    )


def _check_config(path, config):
    # compile_config is never deserialised (we load with compile=False, and Keras then
    # drops it), so plain scripts' loss functions there are fine; code and safe-mode
    # switches are refused wherever they appear.
    body = {key: value for key, value in config.items() if key != "compile_config"}
    for node in _walk_dicts(config.get("compile_config")):
        if _FORBIDDEN_KEYS & node.keys() or node.get("class_name") == "__lambda__":
            _refuse_code(path)
    for node in _walk_dicts(body):
        if "safe_mode" in node or node.get("function") is not None:
            _refuse_code(path)
        if "class_name" not in node:
            continue
        class_name = node.get("class_name")
        module = node.get("module")
        registered = node.get("registered_name")
        if not isinstance(class_name, str) or not isinstance(module, (str, type(None))) \
                or not isinstance(registered, (str, type(None))):
            raise ModelFileError(f"{path} is damaged or not a Keras model (config.json is malformed).")
        if class_name in _CODE_CLASS_NAMES:
            _refuse_code(path)
        if module is not None and module not in ALLOWED_MODULES:
            raise ModelFileError(
                f"{path} was refused: it refers to code outside Keras' layers ({module}.{class_name}). "
                "Only models built from standard Keras layers can be opened."
            )
        if registered not in (None, class_name):
            raise ModelFileError(
                f"{path} was refused: it uses a custom registered object ({registered})."
            )
        is_layer = "inbound_nodes" in node or "layers" in str(module) or "models" in str(module)
        if is_layer and class_name not in ALLOWED_LAYERS:
            raise ModelFileError(
                f"{path} was refused: it contains a {class_name} layer, which this app does not "
                "open (only standard image-classification layers are allowed)."
            )


def _check_metadata(path, metadata):
    names = metadata.get("class_names") if isinstance(metadata, dict) else None
    if not isinstance(metadata, dict) or not (
            names is None or (isinstance(names, list) and all(isinstance(n, str) for n in names))):
        raise ModelFileError(
            f"{path} is damaged: its {METADATA_MEMBER} is not valid imgcls-desktop metadata."
        )


def _walk_dicts(value):
    """Every dict inside a JSON value, without recursion (configs can be nested deeply)."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            yield current
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


# -- loading ----------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> LoadedModel:
    """Load a ``.keras`` file through the gate, in safe mode, and check its signature.

    Args:
        path: A ``.keras`` file.

    Returns:
        The loaded model; ``warnings`` says what to be careful about.

    Raises:
        ModelFileError: The gate refused the file, Keras could not load it, or its
            signature is not one image input and one class output.
    """
    path = Path(path)
    _config, metadata = check_model_file(path)
    keras = keras_module()
    saved_by = _saved_by_keras_version(path)
    newer = _is_newer(saved_by, keras.__version__)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many kinds; none of them should reach the user raw
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if newer:
            raise ModelFileError(
                f"{path} was saved by Keras {saved_by}, newer than the Keras {keras.__version__} "
                f"this app uses, and cannot be opened here ({message}). Update imgcls-desktop, "
                "or re-save the model with the Keras version this app uses."
            ) from exc
        if "version" in message.lower():
            raise ModelFileError(
                f"{path} was saved by a different Keras version and cannot be opened here "
                f"({message}). Update imgcls-desktop or re-save the model."
            ) from exc
        raise ModelFileError(f"{path} could not be loaded as a Keras model: {message}") from exc
    loaded = _checked(model, path, metadata)
    if newer:
        loaded.warnings.append(
            f"{path.name} was saved by Keras {saved_by}, newer than this app's Keras "
            f"{keras.__version__}; it loaded, but check a few predictions before relying on it."
        )
    return loaded


def _saved_by_keras_version(path):
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(archive.read("metadata.json").decode("utf-8"))
        version = data.get("keras_version") if isinstance(data, dict) else None
        return version if isinstance(version, str) else None
    except Exception:  # noqa: BLE001 - only a hint for messages; the gate already read the zip
        return None


def _version_tuple(text):
    parts = []
    for piece in str(text).split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits[:6]))
    return tuple(parts)


def _is_newer(saved_by, running):
    saved, ours = _version_tuple(saved_by or ""), _version_tuple(running)
    return bool(saved) and bool(ours) and saved[:2] > ours[:2]


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
    output_shape = tuple(model.outputs[0].shape)
    if len(output_shape) != 2 or output_shape[-1] is None or output_shape[-1] < 1:
        raise ModelFileError(
            f"{path} was refused: expected an output of shape (batch, classes), got {output_shape}."
        )
    width = int(output_shape[-1])
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


def from_training(result: TrainingResult, path: str | os.PathLike | None = None) -> LoadedModel:
    """A :class:`LoadedModel` view of a freshly trained model (no file round trip).

    Args:
        result: What training returned.
        path: Where the model was saved, if it was.

    Returns:
        The loaded-model view (sharing the Keras model).
    """
    model = result.model
    shape = tuple(model.inputs[0].shape)
    return LoadedModel(model=model, path=Path(path) if path else None,
                       class_names=list(result.class_names),
                       image_size=(int(shape[1]), int(shape[2])), metadata=result.metadata)
