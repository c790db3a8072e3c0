"""Decoded images on disk, for datasets too large to hold decoded in memory.

20,000 photos at 224x224 are 3 GB of uint8 pixels. Rather than keep them in RAM (or in
a ``tf.data`` constant, which cannot exceed 2 GB), they are decoded once into one flat
file of fixed-size records under the user's cache folder, keyed by the dataset's files
(path, label, size and modification time) and the image size, so a second training run
on the same folder skips decoding entirely. Records are read back with ``os.pread``,
not ``mmap``: pages of a mapped file count towards the process's resident memory as
an epoch touches them, pages read through the page cache do not.

A cache file is untrusted when it is read back: a disk error, a crash or another program
may have changed it. Each data file's metadata (``KEY.json``) holds a CRC-32 of every
8 MiB chunk; a data file is verified against them each time it is opened (about a second
per 500 MB; see :func:`decode_to_disk`), and the metadata itself is checked field by
field. Anything that does not match is decoded again, with a warning naming the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ImageError
from .images import load_image

if TYPE_CHECKING:
    from .dataset import ImageItem

log = logging.getLogger("imgcls")

_FORMAT = "imgcls-decoded/2"  # /1 had no checksums; its files are never read (another key)
CHUNK_BYTES = 8 * 1024**2
_MAX_META_BYTES = 256 * 1024**2  # a million labels and problems fit many times over


def cache_dir() -> Path:
    """Where decoded sets are cached: ``$IMGCLS_CACHE_DIR``, else ``decoded/`` in the data folder.

    Returns:
        The folder (it may not exist yet).
    """
    from ..resources import user_data_dir

    return Path(os.environ.get("IMGCLS_CACHE_DIR") or Path(user_data_dir()) / "decoded")


def cache_key(items: Sequence[ImageItem], image_size: int, stat_keys: Iterable[Any]) -> str:
    """A hex digest naming one decoded set: the format, the size, each file's path, label and stat.

    Args:
        items: The images, in order.
        image_size: The side they are decoded at.
        stat_keys: One value per item that changes when its file does (size, mtime).

    Returns:
        32 hex digits.
    """
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
        self._fd: int | None = os.open(self.path, os.O_RDONLY)

    def __len__(self):
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes of all the images (on disk, not in memory)."""
        return self.shape[0] * self.record

    def take(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """The rows ``indices``, as NumPy's ``take`` on the first axis.

        Args:
            indices: Row numbers (not negative).

        Returns:
            ``(len(indices), h, w, 3)`` uint8.

        Raises:
            IndexError: An index is out of range.
            ValueError: The set is closed.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((len(indices),) + self.shape[1:], dtype=np.uint8)
        flat = out.reshape(len(indices), self.record)
        for row, index in enumerate(indices):
            if not 0 <= index < self.shape[0]:
                raise IndexError(f"image {index} out of range 0..{self.shape[0] - 1}")
            flat[row] = np.frombuffer(os.pread(self._descriptor(), self.record, int(index) * self.record),
                                      dtype=np.uint8)
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step == 1 and stop > start:
                data = os.pread(self._descriptor(), (stop - start) * self.record, start * self.record)
                return np.frombuffer(data, dtype=np.uint8).reshape((stop - start,) + self.shape[1:])
            return self.take(range(start, stop, step))
        if isinstance(key, (int, np.integer)):
            index = int(key) + (self.shape[0] if key < 0 else 0)
            return self.take([index])[0]
        return self.take(key)

    def _descriptor(self) -> int:
        if self._fd is None:
            raise ValueError(f"the decoded-image cache {self.path} is closed")
        return self._fd

    def close(self) -> None:
        """Close the file; reading afterwards raises ``ValueError``."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        try:
            self.close()
        except OSError:
            pass


def disk_budget_bytes() -> int:
    """The decoded cache's disk budget (``IMGCLS_CACHE_MAX_GB``, 20 GB by default).

    Returns:
        The budget in bytes.
    """
    return int(float(os.environ.get("IMGCLS_CACHE_MAX_GB", "20")) * 1024**3)


class StreamedImages:
    """Images decoded when a batch asks for them, for sets whose decoded pixels would not fit
    the cache's disk budget (issue 14: a million photos at 224 px are 150 GB decoded).

    Quacks like :class:`DiskImages` (``len``, ``shape``, slices, ``take``), so the tf.data
    pipeline gathers its batches the same way: ``take`` decodes one batch on every core,
    and the pipeline decodes the next batches while the model trains on this one. Nothing
    is kept, so memory stays flat however many photos there are; the price is decoding
    every epoch. A file that fails now (changed since the scan) gives a black image, once
    logged with its name and reason, and is listed in ``problems``.
    """

    dtype = np.dtype(np.uint8)
    nbytes = 0  # nothing held

    def __init__(self, paths, image_size):
        self.paths = list(paths)
        self.shape = (len(self.paths), image_size, image_size, 3)
        self.problems = []

    def __len__(self):
        return self.shape[0]

    def take(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """Decode the rows ``indices`` now, on every core (a failed file gives a black image).

        Args:
            indices: Row numbers (not negative).

        Returns:
            ``(len(indices), h, w, 3)`` uint8.
        """
        from .pipeline import decoded_in_parallel

        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.zeros((len(indices),) + self.shape[1:], dtype=np.uint8)
        for row, pixels in enumerate(decoded_in_parallel([self.paths[i] for i in indices], self.shape[1])):
            if isinstance(pixels, ImageError):
                if (pixels.path, pixels.reason) not in self.problems:
                    self.problems.append((pixels.path, pixels.reason))
                    log.warning("Could not read %s while training (%s); it counts as a black image "
                                "this run. Rescan the folder to leave it out.", pixels.path, pixels.reason)
                continue
            out[row] = pixels
        return out

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.take(range(*key.indices(self.shape[0])))
        if isinstance(key, (int, np.integer)):
            return self.take([int(key) + (self.shape[0] if key < 0 else 0)])[0]
        return self.take(key)

    def close(self) -> None:
        """Nothing to close (as :meth:`DiskImages.close`, for callers that close either)."""


def decode_to_disk(items: Sequence[ImageItem], image_size: int, stat_keys: Sequence[Any], *,
                   on_progress: Callable[[int, int], None] | None = None,
                   stop_event: threading.Event | None = None,
                   cancelled: type[BaseException] = Exception) -> tuple[DiskImages, np.ndarray, list[tuple]]:
    """Decode ``items`` into a cache file (or reuse a complete, verified one).

    Args:
        items: The images to decode, in order.
        image_size: The side they are decoded at.
        stat_keys: One value per item that changes when its file does (see :func:`cache_key`).
        on_progress: Optional ``callable(done, total)`` while decoding.
        stop_event: Optional ``threading.Event``; set, decoding stops.
        cancelled: The exception class raised when ``stop_event`` is set.

    Returns:
        ``(DiskImages, labels int32, problems)`` like ``pipeline.decode_items``.

    Raises:
        cancelled: ``stop_event`` was set.
    """
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(items, image_size, stat_keys)
    data_path, meta_path = folder / f"{key}.u8", folder / f"{key}.json"
    meta, reason = read_meta(meta_path, data_path, image_size, items)
    if meta is None and reason is not None:
        log.warning("The decoded-image cache %s is unusable (%s); decoding the images again.",
                    reason[0], reason[1])
    if meta is None:
        meta = _decode(items, image_size, data_path, meta_path, on_progress, stop_event, cancelled)
        prune(folder, keep={data_path.name, meta_path.name})
    labels = np.asarray(meta["labels"], dtype=np.int32)
    problems = [tuple(problem) for problem in meta["problems"]]
    return DiskImages(data_path, len(labels), image_size), labels, problems


def prune(folder: str | os.PathLike, keep: Collection[str] = (), max_bytes: int | None = None) -> None:
    """Delete the least recently written cache files beyond ``max_bytes`` (default 20 GB).

    Args:
        folder: The cache folder.
        keep: File names never deleted (the set in use).
        max_bytes: The budget (default :func:`disk_budget_bytes`).
    """
    if max_bytes is None:
        max_bytes = disk_budget_bytes()
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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def read_meta(meta_path: Path, data_path: Path, image_size: int,
              items: Sequence[ImageItem]) -> tuple[dict[str, Any] | None, tuple[Path, str] | None]:
    """Read and check one cache entry's metadata and data file.

    Args:
        meta_path: The entry's ``KEY.json``.
        data_path: The entry's ``KEY.u8``.
        image_size: The side the images should be decoded at.
        items: The images the entry should hold.

    Returns:
        ``(meta, None)`` for a cache entry that is whole and matches its checksums, else
        ``(None, reason)``: ``reason`` is None when there is simply no entry yet, or
        ``(file, what is wrong)`` when one exists but cannot be trusted.
    """
    if not meta_path.exists() and not data_path.exists():
        return None, None
    try:
        if meta_path.stat().st_size > _MAX_META_BYTES:
            return None, (meta_path, "its metadata file is far larger than any this app writes")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, (meta_path, "its metadata file is missing")
    except (OSError, ValueError, RecursionError) as exc:
        return None, (meta_path, f"its metadata is not valid JSON: {type(exc).__name__}")
    problem = _meta_problem(meta, image_size, items)
    if problem is not None:
        return None, (meta_path, problem)
    try:
        size = data_path.stat().st_size
    except OSError:
        return None, (data_path, "the data file is missing or unreadable")
    if size != len(meta["labels"]) * image_size * image_size * 3:
        return None, (data_path, f"the data file holds {size} bytes, not the "
                                 f"{len(meta['labels']) * image_size * image_size * 3} its metadata says")
    checksums = meta["checksums"]["crc32"]
    if len(checksums) != math.ceil(size / CHUNK_BYTES):
        return None, (meta_path, "its checksum list does not cover the data file")
    bad = _first_bad_chunk(data_path, checksums)
    if bad is not None:
        return None, (data_path, bad)
    return meta, None


def _meta_problem(meta, image_size, items):
    """What is wrong with a metadata document (malformed, wrong types or shapes), or None."""
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        return f"its metadata is not {_FORMAT} metadata"
    if meta.get("image_size") != image_size or not _is_int(meta.get("image_size")):
        return "its metadata is for another image size"
    labels, problems = meta.get("labels"), meta.get("problems")
    if not isinstance(labels, list) or not isinstance(problems, list):
        return "its metadata lacks the labels or problems lists"
    if len(labels) + len(problems) != len(items):
        return f"its metadata accounts for {len(labels) + len(problems)} images, not {len(items)}"
    known = {int(item.label) for item in items}
    if not all(_is_int(label) and label in known for label in labels):
        return "its metadata holds labels that are not the dataset's"
    if not all(isinstance(row, list) and len(row) == 2 and all(isinstance(v, str) for v in row)
               for row in problems):
        return "its metadata holds malformed problem rows"
    checksums = meta.get("checksums")
    if (not isinstance(checksums, dict) or checksums.get("chunk_bytes") != CHUNK_BYTES
            or not isinstance(checksums.get("crc32"), list)
            or not all(_is_int(v) and 0 <= v < 2**32 for v in checksums["crc32"])):
        return "its metadata has no valid checksums"
    return None


def _first_bad_chunk(data_path, checksums):
    """None when every chunk of ``data_path`` matches ``checksums``, else what differs."""
    try:
        with open(data_path, "rb") as data:
            for index, expected in enumerate(checksums):
                chunk = data.read(CHUNK_BYTES)
                if zlib.crc32(chunk) != expected:
                    return (f"bytes {index * CHUNK_BYTES}-{index * CHUNK_BYTES + len(chunk)} do not "
                            "match their checksum (changed or damaged since they were written)")
    except OSError as exc:
        return f"the data file cannot be read: {exc.strerror or exc}"
    return None


def _decode(items, image_size, data_path, meta_path, on_progress, stop_event, cancelled):
    partial = data_path.with_name(data_path.name + f".{os.getpid()}.partial")
    labels, problems, checksums = [], [], _ChunkChecksums()
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
                record = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
                out.write(record)
                checksums.update(record)
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
            "problems": [list(problem) for problem in problems],
            "checksums": {"chunk_bytes": CHUNK_BYTES, "crc32": checksums.finish()}}
    tmp = meta_path.with_name(meta_path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, meta_path)  # written last: its presence means the data file is whole
    return meta


class _ChunkChecksums:
    """CRC-32 of each ``CHUNK_BYTES`` chunk of a stream written in pieces of any size."""

    def __init__(self):
        self.done, self.crc, self.filled = [], 0, 0

    def update(self, data):
        view = memoryview(data)
        while len(view):
            take = min(len(view), CHUNK_BYTES - self.filled)
            self.crc = zlib.crc32(view[:take], self.crc)
            self.filled += take
            view = view[take:]
            if self.filled == CHUNK_BYTES:
                self.done.append(self.crc)
                self.crc, self.filled = 0, 0

    def finish(self):
        return self.done + ([self.crc] if self.filled else [])
