"""Read PyTorch's legacy ``.pth`` weights files with the standard library and NumPy alone.

A ``.pth`` file is a pickle, and a pickle is a program: ``pickle.load`` or ``torch.load``
on a file a stranger could have replaced runs whatever it asks for. This reader accepts
exactly what a plain state dict of float tensors needs and refuses everything else:

- globals: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the
  storage types, each replaced by a harmless stand-in (nothing from torch is imported,
  and torch need not be installed);
- persistent ids: only ``("storage", type, key, location, numel, None)``;
- tensors: every element a stride reaches must lie inside its storage.

The legacy format (torch < 1.6, ``_use_new_zipfile_serialization=False``) is five pickles
in a row - a magic number, the protocol version 1001, a system-info dict, the state dict,
and the list of storage keys - followed by each storage as a little-endian int64 element
count and its raw bytes, in that list's order.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
from pathlib import Path

import numpy as np

from .errors import WeightsUnavailableError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_MAX_DIMENSIONS = 8
_MAX_ELEMENTS = 1 << 31  # far above any backbone this app ships; bounds each storage read


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only its dtype is used."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    def __init__(self, key, dtype, numel):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: np.ndarray | None = None


class _TensorRef:
    """What ``_rebuild_tensor_v2`` would have built, kept as plain numbers until the
    storages have been read (they follow the pickle in the file)."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, *rest):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor whose storage is not a storage record")
    for name, value in (("offset", storage_offset),):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise pickle.UnpicklingError(f"a tensor with a bad storage {name}: {value!r}")
    for name, value in (("size", size), ("stride", stride)):
        if (not isinstance(value, tuple) or len(value) > _MAX_DIMENSIONS
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)):
            raise pickle.UnpicklingError(f"a tensor with a bad {name}: {value!r}")
    if len(size) != len(stride):
        raise pickle.UnpicklingError(f"a tensor whose size {size} and stride {stride} differ in length")
    return _TensorRef(storage, storage_offset, size, stride)


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a weights file never needs")

    def persistent_load(self, saved_id):
        if (not isinstance(saved_id, tuple) or len(saved_id) != 6 or saved_id[0] != "storage"
                or not isinstance(saved_id[1], _StorageType) or not isinstance(saved_id[2], str)
                or not isinstance(saved_id[4], int) or isinstance(saved_id[4], bool)
                or not 0 <= saved_id[4] <= _MAX_ELEMENTS or saved_id[5] is not None):
            raise pickle.UnpicklingError(f"an unexpected persistent id {saved_id!r:.80}")
        _tag, storage_type, key, _location, numel, _view = saved_id
        storage = self.storages.get(key)
        if storage is None:
            storage = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif storage.dtype != storage_type.dtype or storage.numel != numel:
            raise pickle.UnpicklingError(f"storage {key!r} is declared twice, differently")
        return storage


def _plain_load(file):
    # The four small pickles around the state dict hold only numbers, strings, lists and
    # dicts: no global at all is allowed there.
    class _NoGlobals(pickle.Unpickler):
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f"it asks for {module}.{name} outside the state dict")

    return _NoGlobals(file).load()


def _read_storages(file, keys, storages):
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise ValueError("the storage key list is not a list of names")
    if sorted(keys) != sorted(storages) or len(set(keys)) != len(keys):
        raise ValueError("the storage key list does not match the tensors' storages")
    for key in keys:
        storage = storages[key]
        header = file.read(8)
        if len(header) != 8:
            raise ValueError(f"the file ends before storage {key!r}")
        numel = int.from_bytes(header, "little", signed=True)
        if numel != storage.numel:
            raise ValueError(f"storage {key!r} holds {numel} elements, its record says {storage.numel}")
        nbytes = numel * storage.dtype.itemsize
        raw = file.read(nbytes)
        if len(raw) != nbytes:
            raise ValueError(f"the file ends inside storage {key!r}")
        storage.data = np.frombuffer(raw, dtype=storage.dtype.newbyteorder("<"))


def _to_array(name, ref):
    storage = ref.storage
    if storage.data is None:
        raise ValueError(f"tensor {name!r} has no storage data")
    # The highest element any index reaches; strides may be anything (TensorFlow's kernel
    # layout was saved as a strided view), but they must stay inside the storage.
    last = ref.offset + sum((extent - 1) * step for extent, step in zip(ref.size, ref.stride)
                            if extent > 0)
    if any(extent == 0 for extent in ref.size):
        return np.zeros(ref.size, dtype=storage.dtype)
    if last >= storage.numel:
        raise ValueError(f"tensor {name!r} reaches element {last} of a storage of {storage.numel}")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage.data[ref.offset:], shape=ref.size,
        strides=tuple(step * itemsize for step in ref.stride), writeable=False)
    # A C-ordered copy in native byte order (order="K" would keep the strided layout).
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a legacy PyTorch state-dict file, as NumPy arrays.

    Args:
        path: A ``.pth`` file saved with torch's legacy (non-zip) serialisation.

    Returns:
        Parameter name to a contiguous array of the tensor's shape, in file order.

    Raises:
        WeightsUnavailableError: The file cannot be read, is not a legacy state dict, asks
            for anything a state dict does not need, or its tensors do not fit their
            storages. Nothing in the file is ever executed.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise WeightsUnavailableError(f"Could not read the weights file {path}: {exc.strerror or exc}.") from None
    file = io.BytesIO(data)
    storages: dict[str, _Storage] = {}
    try:
        if _plain_load(file) != MAGIC_NUMBER:
            raise ValueError("it does not start with PyTorch's magic number")
        if _plain_load(file) != PROTOCOL_VERSION:
            raise ValueError(f"its protocol version is not {PROTOCOL_VERSION}")
        _plain_load(file)  # system info: endianness and type sizes, all little-endian here
        state = _RestrictedUnpickler(file, storages).load()
        if not isinstance(state, dict) or not all(
                isinstance(key, str) and isinstance(value, _TensorRef) for key, value in state.items()):
            raise ValueError("it does not hold a plain dict of tensors")
        _read_storages(file, _plain_load(file), storages)
        return {name: _to_array(name, ref) for name, ref in state.items()}
    except WeightsUnavailableError:
        raise
    except (pickle.UnpicklingError, ValueError, EOFError, TypeError, IndexError, KeyError,
            AttributeError, OverflowError, MemoryError, RecursionError) as exc:
        raise WeightsUnavailableError(
            f"The weights file {path} is damaged or not a PyTorch state dict ({exc}). "
            "Reinstall imgcls-desktop to restore it.") from None
