"""The wire between the window and its engine: length-prefixed pickles of plain data.

Each message is an 8-byte big-endian length followed by a pickle (protocol 5). Only plain
values cross: ``None``, bools, numbers, strings, bytes, lists, tuples, dicts, sets and
NumPy arrays and scalars. The reading side enforces that with an unpickler that refuses
every other class, so a message can never carry code, a widget or a Keras model (models
cross as ``.keras`` files, by path). Richer core objects are flattened by
:mod:`imgcls_desktop.engine.plain` before they are sent.
"""

import io
import pickle
import struct

_HEADER = struct.Struct(">Q")
MAX_MESSAGE_BYTES = 2 * 1024**3  # a corrupt length must not make the reader allocate forever

# (module, name) pairs a message may name: NumPy's array and scalar reconstruction only.
_ALLOWED_GLOBALS = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("builtins", "bytearray"), ("builtins", "slice"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})


class ProtocolError(Exception):
    """A message was malformed or named a class that may not cross."""


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS or (module == "numpy" and name.startswith("dtypes")):
            return super().find_class(module, name)
        if module.startswith("numpy") and name in {"_reconstruct", "scalar", "dtype", "ndarray", "_frombuffer"}:
            return super().find_class(module, name)
        raise ProtocolError(f"a message may carry only plain data, not {module}.{name}")


def dumps(message):
    return pickle.dumps(message, protocol=5)


def loads(data):
    return _PlainUnpickler(io.BytesIO(data)).load()


def write_message(stream, message):
    """Write one message to a binary stream and flush it (the caller serialises writers)."""
    data = dumps(message)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exactly(stream, size):
    chunks = []
    while size:
        chunk = stream.read(size)
        if not chunk:
            return None  # the other side closed the pipe
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_message(stream):
    """The next message, or None at the end of the stream (the other side is gone)."""
    header = _read_exactly(stream, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {size} bytes announced; the stream is corrupt")
    data = _read_exactly(stream, size)
    if data is None:
        return None
    return loads(data)
