"""Decoded images on disk, for datasets too large to hold decoded in memory.

20,000 photos at 224x224 are 3 GB of uint8 pixels. Rather than keep them in RAM (or in
a ``tf.data`` constant, which cannot exceed 2 GB), they are decoded once into one flat
file of fixed-size records under the user's cache folder, keyed by the dataset's files
(path, label, size and modification time) and the image size, so a second training run
on the same folder skips decoding entirely. Records are read back with ``os.pread``,
not ``mmap``: pages of a mapped file count towards the process's resident memory as
an epoch touches them, pages read through the page cache do not.
"""

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from .errors import ImageError
from .images import load_image

_FORMAT = "imgcls-decoded/1"


def cache_dir():
    from ..resources import user_data_dir

    return Path(os.environ.get("IMGCLS_CACHE_DIR") or Path(user_data_dir()) / "decoded")


def cache_key(items, image_size, stat_keys):
    digest = hashlib.sha256(f"{_FORMAT}|{image_size}".encode())
    for item, stat in zip(items, stat_keys):
        digest.update(f"\n{item.path}|{item.label}|{stat}".encode())
    return digest.hexdigest()[:32]


class DiskImages:
    """A read-only ``(n, h, w, 3)`` uint8 array whose rows live in a file.

    Supports ``len``, ``shape``, integer and slice indexing, and ``take(indices)``, which
    is what training, calibration and evaluation ask of an image array.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, path, count, image_size):
        self.path = Path(path)
        self.shape = (count, image_size, image_size, 3)
        self.record = image_size * image_size * 3
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self):
        return self.shape[0] * self.record

    def take(self, indices):
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices),) + self.shape[1:], dtype=np.uint8)
        flat = out.reshape(len(indices), self.record)
        for row, index in enumerate(indices):
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"image {index} out of range 0..{self.shape[0] - 1}")
            flat[row] = np.frombuffer(os.pread(self._fd, self.record, int(index) * self.record),
                                      dtype=np.uint8)
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1 and stop > start:
                data = os.pread(self._fd, (stop - start) * self.record, start * self.record)
                return np.frombuffer(data, dtype=np.uint8).reshape((stop - start,) + self.shape[1:])
            return self.take(range(start, stop, step))
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            return self.take([index])[0]
        return self.take(key)

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


def decode_to_disk(items, image_size, stat_keys, *, on_progress=None, stop_event=None,
                   cancelled=Exception):
    """Decode ``items`` into a cache file (or reuse a complete one).

    Returns ``(DiskImages, labels int32, problems)`` like ``pipeline.decode_items``.
    Raises ``cancelled`` (an exception class) when ``stop_event`` is set.
    """
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(items, image_size, stat_keys)
    data_path, meta_path = folder / f"{key}.u8", folder / f"{key}.json"
    meta = _read_meta(meta_path, data_path, image_size)
    if meta is None:
        meta = _decode(items, image_size, data_path, meta_path, on_progress, stop_event, cancelled)
        prune(folder, keep={data_path.name, meta_path.name})
    labels = np.asarray(meta["labels"], dtype=np.int32)
    problems = [tuple(problem) for problem in meta["problems"]]
    return DiskImages(data_path, len(labels), image_size), labels, problems


def prune(folder, keep=(), max_bytes=None):
    """Delete the least recently written cache files beyond ``max_bytes`` (default 20 GB)."""
    if max_bytes is None:
        max_bytes = int(float(os.environ.get("IMGCLS_CACHE_MAX_GB", "20")) * 1024**3)
    entries = []
    for path in Path(folder).glob("*.u8"):
        try:
            entries.append((path.stat().st_mtime, path.stat().st_size, path))
        except OSError:
            continue
    total = sum(size for _mtime, size, _path in entries)
    for _mtime, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if path.name in keep:
            continue
        for victim in (path, path.with_suffix(".json")):
            try:
                victim.unlink()
            except OSError:
                pass
        total -= size


def _read_meta(meta_path, data_path, image_size):
    try:
        meta = json.loads(meta_path.read_text())
        size = data_path.stat().st_size
    except (OSError, ValueError):
        return None
    record = image_size * image_size * 3
    if meta.get("format") != _FORMAT or size != len(meta.get("labels", ())) * record:
        return None  # torn or foreign: decode again
    return meta


def _decode(items, image_size, data_path, meta_path, on_progress, stop_event, cancelled):
    partial = data_path.with_name(data_path.name + f".{os.getpid()}.partial")
    labels, problems = [], []
    try:
        with open(partial, "wb") as out:
            for index, item in enumerate(items):
                if stop_event is not None and stop_event.is_set():
                    raise cancelled()
                try:
                    pixels = load_image(item.path, (image_size, image_size))
                except ImageError as exc:
                    problems.append((exc.path, exc.reason))
                    continue
                out.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
                labels.append(int(item.label))
                if on_progress is not None and (index % 64 == 0 or index == len(items) - 1):
                    on_progress(index + 1, len(items))
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, data_path)
    finally:
        if partial.exists():
            partial.unlink()
    meta = {"format": _FORMAT, "image_size": image_size, "labels": labels,
            "problems": [list(problem) for problem in problems]}
    tmp = meta_path.with_name(meta_path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)  # written last: its presence means the data file is whole
    return meta
