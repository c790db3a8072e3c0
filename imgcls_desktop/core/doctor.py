"""Dataset doctor: near-duplicates, train/test leakage, class imbalance.

Near-duplicates are found with a 64-bit perceptual hash (pHash: the signs of the 8x8
lowest frequencies of the DCT of a 32x32 grey thumbnail, against their median), which
survives re-encoding, resizing and small brightness or contrast changes. Two images whose
hashes differ in at most ``threshold`` bits are near-duplicates. The scan already reports
byte-identical files; they are included here too, flagged ``exact``, because an exact copy
across splits is the worst leakage of all.

Comparing every pair is ``n^2 / 2`` XOR + popcounts on uint64 arrays, done in blocks with
NumPy: a few seconds for 50,000 images; hashing (decoding every file) dominates.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from .errors import Cancelled
from .images import ALLOWED_FORMATS, MAX_PIXELS

if TYPE_CHECKING:
    from .dataset import DatasetScan

DEFAULT_THRESHOLD = 4
HASH_NAME = "phash64"
_THUMB = 32
_BLOCK = 2048


def _dct_matrix(size):
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * math.sqrt(2.0 / size)
    matrix[0] /= math.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(_THUMB)
_BIT_WEIGHTS = (np.uint64(1) << np.arange(64, dtype=np.uint64))


def thumbnail(path: str | os.PathLike) -> np.ndarray:
    """The 32x32 grey thumbnail a hash is computed from (float32).

    Args:
        path: An image file.

    Returns:
        ``(32, 32)`` float32 grey levels.

    Raises:
        OSError: The file cannot be decoded or is too large (Pillow's errors too).
    """
    with Image.open(path, formats=[name for name in ALLOWED_FORMATS if name != "MPO"]) as opened:
        image: Image.Image = opened
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise OSError(f"image is too large ({width} x {height} pixels)")
        # JPEG decoders can decode at 1/2 .. 1/8 scale directly: much faster for photos.
        image.draft("RGB", (_THUMB * 2, _THUMB * 2))
        image.seek(0)
        image = ImageOps.exif_transpose(image)
        if image.mode not in ("RGB", "L"):
            image = image.convert("RGBA").convert("RGB") if "A" in image.mode or "transparency" in image.info \
                else image.convert("RGB")
        grey = image.convert("L").resize((_THUMB, _THUMB), Image.Resampling.BOX)
        return np.asarray(grey, dtype=np.float32)


def phash_thumbnails(thumbnails: np.ndarray) -> np.ndarray:
    """64-bit perceptual hashes (uint64) of ``(n, 32, 32)`` grey thumbnails.

    Args:
        thumbnails: ``(n, 32, 32)`` grey levels, as :func:`thumbnail` makes them.

    Returns:
        ``(n,)`` uint64 hashes.
    """
    thumbnails = np.asarray(thumbnails, dtype=np.float64)
    if len(thumbnails) == 0:
        return np.zeros(0, dtype=np.uint64)
    low = _DCT[:8]  # only the 8x8 lowest frequencies are needed
    coefficients = (low @ thumbnails @ low.T).reshape(len(thumbnails), 64)
    # The DC term is the mean brightness: left out of the median, so brightness does not count.
    median = np.median(coefficients[:, 1:], axis=1, keepdims=True)
    bits = coefficients > median
    return (bits.astype(np.uint64) * _BIT_WEIGHTS).sum(axis=1, dtype=np.uint64)


def phash(path: str | os.PathLike) -> int:
    """The 64-bit perceptual hash of one image file (a Python int).

    Args:
        path: An image file.

    Returns:
        The hash.

    Raises:
        OSError: As :func:`thumbnail`.
    """
    return int(phash_thumbnails(thumbnail(path)[None])[0])


def hamming(a: int | np.integer, b: int | np.integer) -> int:
    """The number of differing bits between two 64-bit hashes.

    Args:
        a: A hash.
        b: Another hash.

    Returns:
        The Hamming distance, 0-64.
    """
    return int(bin(int(a) ^ int(b)).count("1"))


def _popcount(values):
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    # NumPy < 2: count the bits of each byte with a table.
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[values.view(np.uint8)].reshape(*values.shape, 8).sum(axis=-1)


def close_pairs(hashes: np.ndarray | Sequence[int], threshold: int = DEFAULT_THRESHOLD,
                stop_event: threading.Event | None = None) -> list[tuple[int, int, int]]:
    """All index pairs ``(i, j, distance)`` with ``i < j`` and Hamming distance <= threshold.

    Args:
        hashes: 64-bit hashes.
        threshold: Largest Hamming distance of a pair.
        stop_event: Set to cancel.

    Returns:
        The pairs, by block of ``i``.

    Raises:
        Cancelled: ``stop_event`` was set.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    pairs = []
    count = len(hashes)
    for start in range(0, count, _BLOCK):
        if stop_event is not None and stop_event.is_set():
            raise Cancelled("dataset doctor cancelled")
        block = hashes[start:start + _BLOCK]
        rest = hashes[start:]
        distances = _popcount(block[:, None] ^ rest[None, :])
        rows, columns = np.nonzero(distances <= threshold)
        keep = columns > rows  # rest starts at `start`: column c is image start + c
        for row, column in zip(rows[keep], columns[keep]):
            pairs.append((start + int(row), start + int(column), int(distances[row, column])))
    return pairs


def _groups(count, pairs):
    parent = list(range(count))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _distance in pairs:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[max(root_i, root_j)] = min(root_i, root_j)
    members: dict[int, set] = {}
    for i, j, _distance in pairs:
        members.setdefault(find(i), set()).update((i, j))
    return [sorted(group) for group in members.values()]


def class_weights(counts: Sequence[int] | np.ndarray) -> dict[int, float]:
    """Keras ``class_weight``: inverse class frequency, normalised to a mean of 1.

    Args:
        counts: Images per class, in class-index order.

    Returns:
        ``{class_index: weight}`` for classes with images (classes without get none).
    """
    present = {index: count for index, count in enumerate(counts) if count > 0}
    if not present:
        return {}
    inverse = {index: 1.0 / count for index, count in present.items()}
    mean = sum(inverse.values()) / len(inverse)
    return {index: value / mean for index, value in inverse.items()}


def imbalance_report(scan: DatasetScan) -> dict[str, Any]:
    """Training-split counts, the largest/smallest ratio and the suggested class weights.

    Args:
        scan: The dataset scan.

    Returns:
        ``split``, ``counts`` (by class name), ``ratio`` (largest/smallest, or None),
        ``weighting_suggested``, ``class_weight`` (by index) and ``class_weight_by_name``.
    """
    split = scan.training_split_name()
    counts = [scan.counts().get(split, {}).get(name, 0) for name in scan.class_names]
    weights = class_weights(counts)
    present = [count for count in counts if count > 0]
    ratio = max(present) / min(present) if present else None
    return {
        "split": split,
        "counts": dict(zip(scan.class_names, counts)),
        "ratio": round(ratio, 4) if ratio is not None else None,
        # Weighting changes little below 1.5x and is the usual remedy beyond.
        "weighting_suggested": bool(ratio is not None and ratio >= 1.5),
        "class_weight": {index: round(weight, 6) for index, weight in weights.items()},
        "class_weight_by_name": {scan.class_names[index]: round(weight, 6) for index, weight in weights.items()},
    }


def _hash_all(paths, on_progress, stop_event, workers):
    thumbnails = np.zeros((len(paths), _THUMB, _THUMB), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    errors = []
    step = max(1, min(200, len(paths) // 100))
    if on_progress is not None:
        on_progress(0, len(paths))

    def work(index):
        if stop_event is not None and stop_event.is_set():
            return index, None, "cancelled"
        try:
            return index, thumbnail(paths[index]), None
        except Exception as exc:  # noqa: BLE001 - untrusted files; reported per file
            return index, None, str(exc) or type(exc).__name__

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (index, thumb, error) in enumerate(pool.map(work, range(len(paths))), start=1):
            if stop_event is not None and stop_event.is_set():
                raise Cancelled("dataset doctor cancelled")
            if thumb is None:
                errors.append({"path": str(paths[index]), "reason": error})
            else:
                thumbnails[index] = thumb
                ok[index] = True
            if on_progress is not None and (done % step == 0 or done == len(paths)):
                on_progress(done, len(paths))
    hashes = np.zeros(len(paths), dtype=np.uint64)
    hashes[ok] = phash_thumbnails(thumbnails[ok])
    return hashes, ok, errors


_TRAINING_SPLITS = ("train", "all")


def doctor_report(scan: DatasetScan, on_progress: Callable[[int, int], None] | None = None,
                  stop_event: threading.Event | None = None, threshold: int = DEFAULT_THRESHOLD,
                  workers: int | None = None) -> dict[str, Any]:
    """Near-duplicates, train/test leakage and class imbalance of a :class:`dataset.DatasetScan`.

    Args:
        scan: The scan to examine (its usable images).
        on_progress: Optional ``callable(done, total)`` while images are hashed.
        stop_event: Optional ``threading.Event``; when set, raises :class:`errors.Cancelled`.
        threshold: Largest Hamming distance (of 64 bits) between near-duplicates.
        workers: Decoding threads (default: the CPU count, at most 8).

    Returns:
        A dict: ``hash``, ``threshold``, ``num_images``, ``seconds``;
        ``near_duplicates``: groups ``{"paths", "splits", "classes", "exact", "max_distance"}``;
        ``leakage``: pairs ``{"train", "other", "other_split", "distance", "same_class", "exact"}``
        linking a training image to a val/test image;
        ``label_conflicts``: near-duplicate pairs filed under different classes
        ``{"paths", "classes", "distance"}``;
        ``imbalance``: see :func:`imbalance_report`; ``errors``: files that could not be hashed.

    Raises:
        Cancelled: ``stop_event`` was set.
    """
    started = time.monotonic()
    entries = [(split, item) for split, items in scan.splits.items() for item in items]
    paths = [item.path for _split, item in entries]
    workers = workers or max(1, min(8, os.cpu_count() or 1))
    hashes, ok, errors = _hash_all(paths, on_progress, stop_event, workers)
    usable = np.flatnonzero(ok)
    pairs = [(int(usable[i]), int(usable[j]), d)
             for i, j, d in close_pairs(hashes[usable], threshold, stop_event)]

    exact_group = {}
    for number, group in enumerate(scan.duplicates):
        for path in group:
            exact_group[str(path)] = number

    def same_bytes(i, j):
        group = exact_group.get(str(paths[i]))
        return group is not None and group == exact_group.get(str(paths[j]))

    distance_of = {(i, j): d for i, j, d in pairs}
    groups = []
    for members in _groups(len(paths), pairs):
        linked = [d for (i, j), d in distance_of.items() if i in members and j in members]
        groups.append({
            "paths": [str(paths[i]) for i in members],
            "splits": [entries[i][0] for i in members],
            "classes": [scan.class_names[entries[i][1].label] for i in members],
            "exact": all(same_bytes(members[0], other) for other in members[1:]),
            "max_distance": max(linked) if linked else 0,
        })
    groups.sort(key=lambda group: (group["exact"], group["max_distance"], group["paths"]))

    leakage, conflicts = [], []
    for i, j, distance in pairs:
        split_i, split_j = entries[i][0], entries[j][0]
        label_i, label_j = entries[i][1].label, entries[j][1].label
        if split_i != split_j and (split_i in _TRAINING_SPLITS) != (split_j in _TRAINING_SPLITS):
            train_index, other_index = (i, j) if split_i in _TRAINING_SPLITS else (j, i)
            leakage.append({"train": str(paths[train_index]), "other": str(paths[other_index]),
                            "other_split": entries[other_index][0], "distance": distance,
                            "same_class": label_i == label_j, "exact": same_bytes(i, j)})
        if label_i != label_j:
            conflicts.append({"paths": [str(paths[i]), str(paths[j])],
                              "classes": [scan.class_names[label_i], scan.class_names[label_j]],
                              "distance": distance})
    leakage.sort(key=lambda row: (row["distance"], row["train"]))
    conflicts.sort(key=lambda row: (row["distance"], row["paths"]))
    return {
        "hash": HASH_NAME,
        "threshold": int(threshold),
        "num_images": int(ok.sum()),
        "near_duplicates": groups,
        "leakage": leakage,
        "label_conflicts": conflicts,
        "imbalance": imbalance_report(scan),
        "errors": errors,
        "seconds": round(time.monotonic() - started, 3),
    }
