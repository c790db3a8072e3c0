"""Scan a class-folder dataset, validate every file, and split it for training.

Two layouts are understood: ``root/<class>/...`` ("flat") and
``root/train|val|test/<class>/...`` ("split"). Every file that cannot be used is
listed as a :class:`Problem` with its reason; nothing is dropped silently.
"""

import hashlib
import math
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .defaults import DEFAULT_SEED
from .errors import Cancelled, DatasetError, ImageError
from .images import SUPPORTED_EXTENSIONS, is_ignored_name, validate_image
from .parallel import map_in_order
from .paths import relative_posix

# Files are checked with JPEG draft decoding at this size (see images.open_image).
VALIDATION_DRAFT_SIZE = 64

SPLIT_FOLDER_KEYS = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
_SPLIT_ORDER = ("train", "val", "test")
EXPECTED_LAYOUT = "one sub-folder per class, or train/ val/ test/ folders holding class sub-folders"
_SUPPORTED_LIST = ", ".join(sorted(SUPPORTED_EXTENSIONS))
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageItem:
    """One usable image and its class index (into ``DatasetScan.class_names``)."""

    path: Path
    label: int


@dataclass(frozen=True)
class Problem:
    """One file or folder left out of the dataset, and why."""

    path: str
    reason: str


@dataclass
class DatasetScan:
    """What :func:`scan_dataset` found.

    Attributes:
        root: The dataset folder.
        layout: ``"flat"`` or ``"split"``.
        class_names: Sorted class names; an item's label indexes this list.
        splits: ``{"all": items}`` for flat; keys among ``train``, ``val``, ``test`` for split.
        problems: Every file excluded, with its reason.
        duplicates: Groups (two or more paths) of byte-identical usable images.
        split_folders: The folders each split was read from (``{"all": [root]}`` for flat).
        warnings: Things that work here but not everywhere, one sentence each (class
            folder names that differ only in letter case).
    """

    root: Path
    layout: str
    class_names: list[str]
    splits: dict[str, list[ImageItem]]
    problems: list[Problem] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    split_folders: dict[str, list[Path]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        """Usable images per split per class, classes with none included as 0.

        Returns:
            ``{split: {class name: count}}``.
        """
        result = {}
        for split, items in self.splits.items():
            per_class = dict.fromkeys(self.class_names, 0)
            for item in items:
                per_class[self.class_names[item.label]] += 1
            result[split] = per_class
        return result

    @property
    def num_images(self) -> int:
        """Usable images across all splits."""
        return sum(len(items) for items in self.splits.values())

    def training_split_name(self) -> str:
        """The split training reads.

        Returns:
            ``"all"`` (flat) or ``"train"`` (split).
        """
        return "all" if self.layout == "flat" else "train"

    def evaluation_split_name(self) -> str | None:
        """The split evaluation reads when nothing else decides.

        Returns:
            ``"test"`` if present, else ``"val"`` if present, else None.
        """
        for name in ("test", "val"):
            if name in self.splits:
                return name
        return None

    def fingerprint(self) -> str:
        """A stable hex digest of the usable files (relative path, size, mtime) and class names.

        Stats the files now, so a later call tells whether the dataset changed on disk.

        Returns:
            64 hex digits (SHA-256).
        """
        digest = hashlib.sha256()
        digest.update("\0".join(self.class_names).encode("utf-8", "surrogatepass"))
        entries = []
        for items in self.splits.values():
            for item in items:
                try:
                    stat = os.stat(item.path)
                    size, mtime = stat.st_size, stat.st_mtime_ns
                except OSError:
                    size, mtime = -1, -1
                entries.append((relative_posix(item.path, self.root), item.label, size, mtime))
        for relative, label, size, mtime in sorted(entries):
            digest.update(f"\n{relative}\0{label}\0{size}\0{mtime}".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def imbalance(self) -> float:
        """Largest over smallest class count in the training split.

        Returns:
            The ratio (``math.inf`` if a class has none).
        """
        counts = list(self.counts().get(self.training_split_name(), {}).values())
        if not counts or min(counts) == 0:
            return math.inf
        return max(counts) / min(counts)

    def balance_note(self, threshold: float = 3.0) -> str | None:
        """One line on class balance for people.

        A class with no usable training image is named with the reason (its folder could
        not be read, or all its files were problems) instead of an infinite ratio.

        Args:
            threshold: Largest-over-smallest ratio still called balanced.

        Returns:
            The line, or None when the largest class is at most ``threshold`` times the
            smallest.
        """
        split = self.training_split_name()
        counts = self.counts().get(split, {})
        empty = [name for name, count in counts.items() if count == 0]
        if empty:
            return "no usable training image in: " + "; ".join(self._why_empty(split, name) for name in empty)
        ratio = self.imbalance()
        if ratio > threshold:
            return f"imbalance: the largest class is {ratio:.1f}x the smallest"
        return None

    def _why_empty(self, split, name):
        folder = _class_folder_text(self, split, name)
        unreadable = [problem for problem in self.problems
                      if problem.path in folder.split(", ") and problem.reason.startswith("folder could not")]
        if unreadable:
            return f"'{name}' (its folder {unreadable[0].path} {unreadable[0].reason[len('folder '):]})"
        bad = _problems_under(self, folder)
        if bad:
            return f"'{name}' ({len(bad)} file(s) in {folder} could not be used)"
        return f"'{name}' (no image files in {folder})"

    def to_dict(self) -> dict:
        """The JSON summary the CLI prints and the GUI shows.

        Returns:
            ``root``, ``layout``, ``class_names``, ``splits`` (counts), ``num_images``,
            ``problems``, ``duplicates`` and ``warnings``.
        """
        return {
            "root": str(self.root),
            "layout": self.layout,
            "class_names": list(self.class_names),
            "splits": self.counts(),
            "num_images": self.num_images,
            "problems": [{"path": problem.path, "reason": problem.reason} for problem in self.problems],
            "duplicates": [list(group) for group in self.duplicates],
            "warnings": list(self.warnings),
        }


def _check_stop(stop_event):
    if stop_event is not None and stop_event.is_set():
        raise Cancelled("dataset scan cancelled")


def _dir_key(path):
    # os.stat, not DirEntry.stat: on Windows the latter leaves st_ino and st_dev at zero.
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _sorted_entries(folder):
    with os.scandir(folder) as iterator:
        return sorted(iterator, key=lambda entry: entry.name)


def _classify(entry, visited):
    """Return ``("dir" | "file" | "problem", reason)`` for one directory entry."""
    try:
        if entry.is_dir():  # follows symlinks, so linked folders are read too
            key = _dir_key(entry.path)
            if key in visited:
                return "problem", "folder already scanned through another path (a symbolic link loop?); skipped"
            visited.add(key)
            return "dir", None
        if entry.is_file():
            return "file", None
        if entry.is_symlink():
            return "problem", "broken link: its target does not exist"
        return "problem", "not a regular file; ignored"
    except OSError as exc:
        return "problem", f"could not be read ({exc.strerror or exc})"


def _walk_files(folder, visited, stop_event=None):
    """Yield ``(path, None)`` for each file under ``folder`` and ``(path, reason)`` for unusable entries.

    Depth-first in name order; ignored names (hidden, OS clutter) are skipped entirely.
    An explicit stack keeps very deep trees from hitting the recursion limit.
    """
    stack = [Path(folder)]
    while stack:
        _check_stop(stop_event)
        current = stack.pop()
        try:
            entries = _sorted_entries(current)
        except OSError as exc:
            yield current, f"folder could not be read ({exc.strerror or exc})"
            continue
        subfolders = []
        for entry in entries:
            if is_ignored_name(entry.name):
                continue
            path = current / entry.name
            kind, reason = _classify(entry, visited)
            if kind == "dir":
                subfolders.append(path)
            elif kind == "file":
                yield path, None
            else:
                yield path, reason
        stack.extend(reversed(subfolders))


def _read_folder(folder, visited, problems, what):
    """Sub-folders of ``folder`` (name order); loose files and odd entries become problems."""
    try:
        entries = _sorted_entries(folder)
    except OSError as exc:
        raise DatasetError(f"Cannot read the folder {folder}: {exc.strerror or exc}.") from None
    subfolders = []
    for entry in entries:
        if is_ignored_name(entry.name):
            continue
        path = Path(folder) / entry.name
        kind, reason = _classify(entry, visited)
        if kind == "dir":
            subfolders.append(path)
        elif kind == "file":
            # A README or licence beside the class folders is documentation, not data;
            # a stray image there is reported, since the user probably meant to use it.
            if Path(entry.name).suffix.lower() in SUPPORTED_EXTENSIONS:
                problems.append(Problem(str(path), f"not inside {what}; ignored"))
        else:
            problems.append(Problem(str(path), reason))
    return subfolders


def _hash_file(path):
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _find_duplicates(paths, stop_event):
    # Only files sharing a size can be identical, so most files are never read twice.
    by_size: dict[int, list[Path]] = {}
    for path in paths:
        try:
            by_size.setdefault(os.stat(path).st_size, []).append(path)
        except OSError:
            continue
    by_hash: dict[str, list[str]] = {}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        for path in same_size:
            _check_stop(stop_event)
            try:
                by_hash.setdefault(_hash_file(path), []).append(str(path))
            except OSError:
                continue
    return sorted(sorted(group) for group in by_hash.values() if len(group) > 1)


def _find_class_folders(root, visited, problems):
    """``(split_folders, class_folders)``: the scanner's rule for what is a class folder.

    Flat layout: ``({"all": [root]}, {"all": [class folders]})``; split layout: keyed by
    ``train``/``val``/``test``. A folder reached twice (a link back to the root or to
    another class folder) is a problem, not a class.
    """
    top_folders = _read_folder(root, visited, problems, "a class folder")
    if not any(folder.name.lower() == "train" for folder in top_folders):
        return {"all": [root]}, {"all": top_folders}
    split_folders: dict[str, list[Path]] = {}
    for folder in top_folders:
        key = SPLIT_FOLDER_KEYS.get(folder.name.lower())
        if key is None:
            problems.append(Problem(str(folder), "folder is not a split folder (train, val or test); ignored"))
        else:
            split_folders.setdefault(key, []).append(folder)
    split_folders = {key: split_folders[key] for key in _SPLIT_ORDER if key in split_folders}
    class_folders = {
        key: [path for folder in folders for path in _read_folder(folder, visited, problems, "a class folder")]
        for key, folders in split_folders.items()
    }
    return split_folders, class_folders


def find_class_folders(root: str | os.PathLike) -> dict[str, list[Path]]:
    """The class folders of the dataset at ``root``, by the same rule :func:`scan_dataset` applies.

    Reads folder listings only, never an image. A link back to the root (or to a folder
    already found) is not a class, exactly as the scanner skips it.

    Args:
        root: The dataset folder.

    Returns:
        ``{"all": [folders]}`` for the flat layout; ``{"train": [...], "val": [...],
        "test": [...]}`` (the splits present) for the split layout.

    Raises:
        DatasetError: ``root`` or one of its split folders cannot be listed.
    """
    root = Path(root)
    return _find_class_folders(root, {_dir_key(root)}, [])[1]


def scan_dataset(root: str | os.PathLike, *, validate: bool = True, find_duplicates: bool = True,
                 on_progress: Callable[[int, int], None] | None = None,
                 stop_event: threading.Event | None = None) -> DatasetScan:
    """Scan a dataset folder: find classes and images, validate them, find duplicates.

    Args:
        root: The dataset folder, either ``root/<class>/...`` or ``root/train|val|test/<class>/...``.
        validate: Fully decode every image (:func:`images.validate_image`) and list failures as problems.
        find_duplicates: Report groups of byte-identical images.
        on_progress: Optional ``callable(done, total)`` called as files are checked
            (at most about every 1% or 50 files, and once at the end).
        stop_event: Optional ``threading.Event``; when set, the scan raises :class:`errors.Cancelled`.

    Returns:
        A :class:`DatasetScan`.

    Raises:
        DatasetError: ``root`` is missing, not a folder, or holds no class folders.
        Cancelled: ``stop_event`` was set.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"The dataset folder {root} does not exist. Expected {EXPECTED_LAYOUT}.")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder. Choose a folder holding {EXPECTED_LAYOUT}.")
    _check_stop(stop_event)

    problems: list[Problem] = []
    visited = {_dir_key(root)}
    split_folders, class_folders = _find_class_folders(root, visited, problems)
    is_split = "all" not in split_folders

    class_names = sorted({folder.name for folders in class_folders.values() for folder in folders})
    if not class_names:
        loose = sum(1 for problem in problems if problem.reason.startswith("not inside"))
        hint = f" It holds {loose} file(s) directly; move them into one folder per class." if loose else ""
        raise DatasetError(f"No class folders found in {root}. Expected {EXPECTED_LAYOUT}.{hint}")
    label_of = {name: index for index, name in enumerate(class_names)}

    candidates = []  # (split, label, path)
    for split, folders in class_folders.items():
        for class_folder in folders:
            for path, reason in _walk_files(class_folder, visited, stop_event):
                if reason is not None:
                    problems.append(Problem(str(path), reason))
                elif path.suffix.lower() not in SUPPORTED_EXTENSIONS:
                    kind = f"'{path.suffix.lower()}'" if path.suffix else "(no extension)"
                    problems.append(Problem(str(path), f"unsupported file type {kind}; supported: {_SUPPORTED_LIST}"))
                else:
                    candidates.append((split, label_of[class_folder.name], path))

    splits: dict[str, list[ImageItem]] = {split: [] for split in class_folders}
    total = len(candidates)
    step = max(1, min(50, total // 100))
    if on_progress is not None:
        on_progress(0, total)
    def check(candidate):
        try:
            if validate:
                # Draft mode still reads every byte of a JPEG (so damage is found) but skips
                # most of the pixel work; threads check several files at once.
                validate_image(candidate[2], draft_size=VALIDATION_DRAFT_SIZE)
        except ImageError as exc:
            return exc
        return None

    checked = map_in_order(check, candidates, workers=None if validate else 1,
                           should_stop=lambda: stop_event is not None and stop_event.is_set())
    for done, ((split, label, path), error) in enumerate(zip(candidates, checked), start=1):
        if error is not None:
            problems.append(Problem(str(path), error.reason))
        else:
            splits[split].append(ImageItem(path, label))
        if on_progress is not None and (done % step == 0 or done == total):
            on_progress(done, total)
    _check_stop(stop_event)

    problems.sort(key=lambda problem: problem.path)
    duplicates = []
    if find_duplicates:
        duplicates = _find_duplicates([item.path for items in splits.values() for item in items], stop_event)
    return DatasetScan(root=root, layout="split" if is_split else "flat", class_names=class_names,
                       splits=splits, problems=problems, duplicates=duplicates, split_folders=split_folders,
                       warnings=case_collisions(class_names))


def case_collisions(class_names: Iterable[str]) -> list[str]:
    """One warning per group of class names that differ only in letter case (``Cat``, ``cat``).

    Linux keeps them apart; Windows and macOS (case-insensitive file systems) make them one
    folder, so the dataset changes meaning when it is copied there.

    Args:
        class_names: The class folder names.

    Returns:
        One sentence per colliding group (empty when there is none).
    """
    groups: dict[str, list[str]] = {}
    for name in class_names:
        groups.setdefault(name.casefold(), []).append(name)
    return [f"Class folders {' and '.join(repr(name) for name in sorted(group))} differ only in letter case: "
            "they are separate classes here but collide on Windows and macOS (case-insensitive "
            "file systems). Rename or merge them."
            for group in groups.values() if len(group) > 1]


def _class_folder_text(scan, split, class_name):
    folders = [folder / class_name for folder in scan.split_folders.get(split, [scan.root])]
    existing = [str(folder) for folder in folders if folder.is_dir()]
    return ", ".join(existing) if existing else str(folders[0])


def _problems_under(scan, folder_text):
    prefixes = tuple(part + os.sep for part in folder_text.split(", "))
    return [problem for problem in scan.problems if problem.path.startswith(prefixes)]


def check_trainable(scan: DatasetScan) -> None:
    """Refuse, with a message saying what is missing, a scan that training cannot use.

    Args:
        scan: The dataset scan.

    Raises:
        DatasetError: Fewer than two classes have usable images in the training split,
            or some class has none there.
    """
    split = scan.training_split_name()
    counts = scan.counts().get(split, dict.fromkeys(scan.class_names, 0))
    where = ", ".join(str(folder) for folder in scan.split_folders.get(split, [scan.root]))
    with_images = [name for name, count in counts.items() if count > 0]
    if len(with_images) < 2:
        noun = "class" if len(with_images) == 1 else "classes"
        excluded = f" ({len(scan.problems)} file(s) were excluded as problems.)" if scan.problems else ""
        raise DatasetError(
            f"Found {len(with_images)} {noun} with images in {where}; need at least two class folders, "
            f"each holding images. Expected {EXPECTED_LAYOUT}.{excluded}")
    for name, count in counts.items():
        if count:
            continue
        folder = _class_folder_text(scan, split, name)
        bad = _problems_under(scan, folder)
        detail = f" {len(bad)} of its file(s) could not be used (for example: {bad[0].reason})." if bad else ""
        raise DatasetError(
            f"Class '{name}' has no usable image in the training data (folder {folder}).{detail} "
            f"Add images to that folder or remove it.")


def split_train_validation(scan: DatasetScan, validation_split: float = 0.2,
                           seed: int = DEFAULT_SEED) -> tuple[list[ImageItem], list[ImageItem]]:
    """Split the training images into training and validation lists.

    A ``val`` split folder, when present, is used as-is and ``validation_split`` is
    ignored. Otherwise each class gives ``round(n * validation_split)`` images (at
    least one) to validation, drawn with ``numpy.random.default_rng(seed)``.

    Args:
        scan: A :class:`DatasetScan`.
        validation_split: Fraction held out, in ``[0, 0.9)``; 0 means no validation.
        seed: Seed for the draw; the same seed gives the same split.

    Returns:
        ``(train_items, validation_items)``.

    Raises:
        DatasetError: The scan cannot be trained on, the fraction is out of range, or
            the split (or the ``val`` folder) would leave a class with no training or no
            validation image.
    """
    try:
        fraction = float(validation_split)
    except (TypeError, ValueError):
        fraction = math.nan
    if not 0.0 <= fraction < 0.9:
        raise DatasetError(f"The validation split must be at least 0 and below 0.9. Received: {validation_split!r}")
    check_trainable(scan)
    train_items = list(scan.splits[scan.training_split_name()])
    if "val" in scan.splits:
        validation = list(scan.splits["val"])
        present = {item.label for item in validation}
        missing = [name for label, name in enumerate(scan.class_names) if label not in present]
        if missing:
            folders = ", ".join(str(folder) for folder in scan.split_folders.get("val", []))
            raise DatasetError(
                f"The validation folder ({folders}) has no usable image for class(es) "
                f"{', '.join(repr(name) for name in missing)}, so validation would ignore them. "
                "Add images there for every class, or remove the validation folder to hold out "
                "part of the training images instead.")
        return train_items, validation
    if fraction == 0.0:
        return train_items, []

    rng = np.random.default_rng(seed)
    held_out: set[int] = set()
    for label, name in enumerate(scan.class_names):
        indices = [index for index, item in enumerate(train_items) if item.label == label]
        count = len(indices)
        num_validation = max(1, round(count * fraction))
        if count - num_validation < 1:
            raise DatasetError(
                f"Class '{name}' has only {count} image(s): too few to keep {num_validation} for validation "
                f"and still train on it. Add images to that class or set the validation split to 0.")
        chosen = rng.permutation(count)[:num_validation]
        held_out.update(indices[position] for position in chosen)
    # Scan order kept in both lists, so the split reads the same wherever it is shown.
    training = [item for index, item in enumerate(train_items) if index not in held_out]
    validation = [item for index, item in enumerate(train_items) if index in held_out]
    return training, validation


def collect_image_files(inputs: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders given for prediction into a list of files.

    Files are kept as given (even unsupported or missing ones, so the caller can
    answer each); folders are expanded recursively to supported image files.

    Args:
        inputs: Paths (str or Path), or a single path.

    Returns:
        Paths in input order, without duplicates.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    result, seen = [], set()

    def add(path):
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            result.append(Path(path))

    for given in inputs:
        path = Path(given)
        if not path.is_dir():
            add(path)
            continue
        visited = {_dir_key(path)}
        for found, _reason in _walk_files(path, visited):
            # Broken links keep their place so the caller can say "file not found".
            if found.suffix.lower() in SUPPORTED_EXTENSIONS:
                add(found)
    return result
