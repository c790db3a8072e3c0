"""Fix the data where it lives: move an image to another class folder or to quarantine, with undo.

Every move is recorded in an append-only journal, ``<root>/.imgcls/journal.jsonl``, one
JSON object a line, paths relative to the dataset root. A move writes an ``intent`` line
(flushed and fsynced), renames the file, then writes a ``done`` line; a crash in between
leaves an intent without an outcome, which the next change settles by looking at the disk
(the file is at its target: done; still at its source: abandoned). So no file is ever
unaccounted for, and undo works from any later process. Undo is a journaled move too.

The ``.imgcls`` folder is hidden, which the dataset scanner skips (``images.is_ignored_name``),
so quarantined images leave the dataset without leaving the disk.

The journal travels with the dataset (zipped, shared, downloaded), so it is untrusted input.
Every read checks each line's shape (wrong types, missing fields, garbage: skipped) and
confines each recorded path: relative, no ``..``, and, symbolic links resolved
(``os.path.realpath``), inside the dataset root, in a class folder (by the scanner's own
rule, :func:`dataset.find_class_folders`) or the quarantine. An entry that fails is refused:
never listed, settled or undone. Each read logs one warning (logger ``imgcls.journal``)
naming the journal and how many lines were skipped or refused. The journal, the
``.imgcls`` folder and the quarantine must not be links: nothing is read or written
through one. Names that are not valid UTF-8 are kept with the escape of :mod:`core.names`.
"""

import contextlib
import errno
import filecmp
import json
import logging
import os
import shutil
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from .dataset import SPLIT_FOLDER_KEYS, find_class_folders
from .errors import DatasetError, ImageError
from .images import SUPPORTED_EXTENSIONS, is_ignored_name
from .names import display_name, json_text
from .output_files import fsync_folder

log = logging.getLogger("imgcls.journal")

STATE_FOLDER = ".imgcls"
JOURNAL_NAME = "journal.jsonl"
QUARANTINE_FOLDER = f"{STATE_FOLDER}/quarantine"
_LOCK_NAME = "journal.lock"
_PARTIAL_SUFFIX = ".imgcls-partial"
ACTIONS = ("move", "quarantine", "undo")
_OUTCOMES = ("done", "abandoned")
_TEXT_FIELDS = ("class", "from_class", "reason", "undoes", "note")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

# One process may run a move from the window and one from a worker; the file lock (where
# the platform has one) also keeps the window and an `imgcls move` from interleaving.
_process_lock = threading.Lock()


# -- paths ------------------------------------------------------------------------------

def journal_path(root: str | os.PathLike) -> Path:
    """Where the journal of the dataset at ``root`` lives.

    Args:
        root: The dataset folder.

    Returns:
        ``<root>/.imgcls/journal.jsonl`` (it may not exist).
    """
    return Path(root) / STATE_FOLDER / JOURNAL_NAME


def _root(root):
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise DatasetError(f"The dataset folder {root} does not exist or is not a folder. "
                           "Give the folder that holds the class folders.")
    return root


def _locate_in_dataset(root, path):
    """Find the image ``path`` (as given, or relative to ``root``, so paths printed by
    ``imgcls journal`` work too) and check it is inside the dataset.

    Returns:
        ``(absolute path, PurePosixPath relative to root)``; the same relative path as
        :func:`paths.relative_posix`, except that a link on one side is followed.

    Raises:
        ImageError: the file is missing or outside ``root``.
    """
    given = Path(path)
    candidate = Path(os.path.abspath(given))
    if not os.path.lexists(candidate):
        inside = Path(os.path.abspath(root / given))
        if given.is_absolute() or not os.path.lexists(inside):
            looked = str(candidate) if given.is_absolute() else f"{candidate} or {inside}"
            raise ImageError(path, f"file not found (looked for {looked}); it may have been moved "
                                   "or deleted already")
        candidate = inside
    try:
        relative = candidate.relative_to(root)
    except ValueError:
        try:  # the same folder reached through a link on one side only
            relative = Path(os.path.realpath(candidate)).relative_to(os.path.realpath(root))
        except ValueError:
            raise ImageError(path, f"is not inside the dataset folder {root}; only images of that "
                                   "dataset can be moved") from None
        candidate = root / relative
    return candidate, PurePosixPath(relative.as_posix())


def _class_folders(root):
    try:
        return find_class_folders(root)
    except OSError as exc:
        raise DatasetError(f"Cannot read the folder {root}: {exc.strerror or exc}.") from None


def dataset_class_names(root: str | os.PathLike) -> list[str]:
    """The class folder names of the dataset at ``root`` (flat or split layout), sorted.

    The scanner's rule (:func:`dataset.find_class_folders`), without decoding any image: a
    link back to the root or to a folder already found is not a class.

    Args:
        root: The dataset folder.

    Returns:
        The class names, sorted.

    Raises:
        DatasetError: ``root`` is not a folder or cannot be read.
    """
    root = _root(root)
    return sorted({folder.name for folders in _class_folders(root).values() for folder in folders})


def _locate(root, path):
    """``(absolute path, relative path, split folder or "", class name)`` of a dataset image."""
    absolute, relative = _locate_in_dataset(root, path)
    parts = relative.parts
    if any(is_ignored_name(part) for part in parts):
        raise ImageError(path, f"is in a hidden or ignored folder of {root} (quarantine is "
                               f"{QUARANTINE_FOLDER}/), not part of the dataset; use undo to bring "
                               "a quarantined image back")
    if not absolute.exists():
        raise ImageError(path, "file not found; it may have been moved or deleted already")
    if absolute.is_dir():
        raise ImageError(path, "is a folder, not an image file; give the image files to move")
    if absolute.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ImageError(path, "is not an image file (supported: "
                               f"{', '.join(sorted(SUPPORTED_EXTENSIONS))}); only images can be moved")
    folders = _class_folders(root)
    split_layout = "all" not in folders
    depth = 3 if split_layout else 2
    where = "train|val|test/<class>/" if split_layout else "<class>/"
    if len(parts) < depth:
        raise ImageError(path, f"is not inside a class folder of {root} (expected {where}<image>)")
    if split_layout and parts[0].lower() not in SPLIT_FOLDER_KEYS:
        raise ImageError(path, f"is in {parts[0]}/, which is not a split folder (train, val or test)")
    class_folder = root.joinpath(*parts[:depth - 1])
    if class_folder not in {folder for found in folders.values() for folder in found}:
        raise ImageError(path, f"is in {class_folder}, which is not a class folder of {root} (a link "
                               "back to the dataset or to a folder already in it is skipped as a loop)")
    if split_layout:
        return absolute, relative, parts[0], parts[1]
    return absolute, relative, "", parts[0]


def _free_name(folder, name):
    """``name`` in ``folder``, or ``stem-1.ext``, ``stem-2.ext``... : the first that is free."""
    stem, suffix = os.path.splitext(name)
    candidate, number = name, 0
    while os.path.lexists(os.path.join(folder, candidate)) or \
            os.path.lexists(os.path.join(folder, f".{candidate}{_PARTIAL_SUFFIX}")):
        number += 1
        candidate = f"{stem}-{number}{suffix}"
    return candidate


# -- the journal ------------------------------------------------------------------------

def _now():
    return datetime.now(UTC).isoformat(timespec="seconds")


def _linked_state(root):
    """The first of ``.imgcls``, its journal, lock or quarantine that is a symbolic link, or None.

    A dataset may arrive with any of them planted as a link to somewhere else; reading or
    writing through it would read or write outside the dataset.
    """
    folder = root / STATE_FOLDER
    for path in (folder, folder / JOURNAL_NAME, folder / _LOCK_NAME, root / QUARANTINE_FOLDER):
        if os.path.islink(path):
            return path
    return None


def _linked_state_error(link):
    try:
        target = os.readlink(link)
    except OSError:
        target = "somewhere else"
    return DatasetError(
        f"{link} is a symbolic link (to {display_name(target)}); imgcls keeps its move journal and "
        "quarantine inside the dataset folder only, and never reads or writes through a link. "
        "Remove the link (it did not come from imgcls) and try again.")


def _append(root, record):
    path = journal_path(root)
    line = (json_text(record) + "\n").encode("utf-8")
    # O_NOFOLLOW: a link planted between the check and the write is refused, not followed.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | _NOFOLLOW | getattr(os, "O_BINARY", 0), 0o644)
    with os.fdopen(fd, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            # A crash mid-line leaves a torn last line; start afresh so this one parses.
            if handle.read(1) != b"\n":
                line = b"\n" + line
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _well_formed(record):
    """Whether one parsed journal line has the shape this module writes (types included)."""
    if not isinstance(record, dict):
        return False
    if not all(isinstance(record.get(key), str) for key in ("id", "op", "time")) or not record["id"]:
        return False
    if any(key in record and not isinstance(record[key], str) for key in _TEXT_FIELDS):
        return False
    if record["op"] in _OUTCOMES:
        return True
    if record["op"] != "intent" or record.get("action") not in ACTIONS:
        return False
    if not (isinstance(record.get("source"), str) and isinstance(record.get("target"), str)):
        return False
    required = {"move": "class", "undo": "undoes"}.get(record["action"])
    return required is None or required in record


class _Confinement:
    """Where journal paths may lead in one dataset: its class folders and its quarantine."""

    def __init__(self, root):
        self.root = root
        self.real_root = os.path.realpath(root)
        try:
            folders = find_class_folders(root)
        except (DatasetError, OSError):
            folders = {}
        self.split_layout = "all" not in folders and bool(folders)
        self.class_folders = {folder for found in folders.values() for folder in found}
        self.class_names = {folder.name for folder in self.class_folders}

    def _shape_ok(self, parts, split_layout):
        """Whether relative ``parts`` name an image in a class folder or the quarantine."""
        if tuple(parts[:2]) == (STATE_FOLDER, "quarantine"):
            home, rest = (), parts[2:]
        elif split_layout:
            if not parts or parts[0].lower() not in SPLIT_FOLDER_KEYS:
                return False
            home, rest = parts[:2], parts[2:]
        else:
            home, rest = parts[:1], parts[1:]
        return (bool(rest) and not any(is_ignored_name(part) for part in (*home, *rest))
                and os.path.splitext(rest[-1])[1].lower() in SUPPORTED_EXTENSIONS)

    def allows(self, text):
        """Whether the journal path ``text`` may be acted on (see the module docstring)."""
        if not text or "\0" in text:
            return False
        posix, native = PurePosixPath(text), Path(text)
        if posix.is_absolute() or native.is_absolute() or native.anchor or \
                ".." in posix.parts or ".." in native.parts:
            return False
        parts = posix.parts
        if not self._shape_ok(parts, self.split_layout):
            return False
        if parts[0] != STATE_FOLDER:
            depth = 2 if self.split_layout else 1
            home = self.root.joinpath(*parts[:depth])
            # An existing class folder must be one the scanner reads (not a link loop); a
            # missing one may be made again, as a move does, only for a class of the dataset.
            if home not in self.class_folders and (os.path.lexists(home) or parts[depth - 1] not in self.class_names):
                return False
        try:  # where it really leads, every link resolved
            real = Path(os.path.realpath(self.root / native)).relative_to(self.real_root)
        except (ValueError, OSError):
            return False
        return self._shape_ok(PurePosixPath(real.as_posix()).parts, self.split_layout)


def _read_records(root, warn=True):
    """The journal's records, each checked for shape and confinement (see the module docstring).

    Lines that are not records are skipped, intents whose paths lead outside the class
    folders and quarantine are refused with their outcomes; both are reported in one
    warning per read (when ``warn``). A line cut short by a crash is skipped quietly: its
    move is settled from the disk.
    """
    path = journal_path(root)
    link = _linked_state(root)
    if link is not None:
        if warn:
            log.warning("%s", _linked_state_error(link))
        return []
    try:
        with open(path, "rb") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DatasetError(f"Cannot read the move journal {path}: "
                           f"{exc.strerror or exc}.") from None
    records, skipped, refused = [], 0, []
    confinement = None
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            if not line.lstrip().startswith(b"{"):
                skipped += 1
            continue  # "{..." cut short: a line torn by a crash, settled from its intent
        if not _well_formed(record):
            skipped += 1
            continue
        if record["op"] == "intent":
            confinement = confinement or _Confinement(root)
            if not (confinement.allows(record["source"]) and confinement.allows(record["target"])):
                refused.append(record["id"])
                continue
        records.append(record)
    if refused:
        refused_ids = set(refused)
        records = [record for record in records if record["id"] not in refused_ids]
    if warn and (skipped or refused):
        _warn_about(path, root, skipped, refused)
    return records


def _warn_about(path, root, skipped, refused):
    found = []
    if skipped:
        found.append(f"skipped {skipped} line(s) that are not move records (missing fields, wrong "
                     "types, or not JSON)")
    if refused:
        shown = ", ".join(display_name(entry_id[:40]) for entry_id in refused[:3])
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        found.append(f"refused {len(refused)} entry(ies) ({shown}{more}) whose paths lead outside the "
                     f"class folders and quarantine of {display_name(root)}; they are never listed, "
                     "settled or undone")
    log.warning("The move journal %s: %s. A journal that came with a shared or downloaded dataset may "
                "have been edited by someone else: remove those lines, or delete the journal to forget "
                "every recorded move (no image moves).", display_name(path), "; ".join(found))


def _disk_outcome(root, intent):
    """What the disk says about an intent without an outcome: ``(status, note)``."""
    source, target = root / intent["source"], root / intent["target"]
    at_source, at_target = os.path.lexists(source), os.path.lexists(target)
    if at_target and not at_source:
        return "done", "completed before an interruption"
    if at_source and not at_target:
        return "abandoned", "interrupted before the file moved; it stayed where it was"
    if at_source and at_target:
        if os.path.isfile(source) and os.path.isfile(target) and not os.path.samefile(source, target) \
                and filecmp.cmp(source, target, shallow=False):
            return "duplicate", "interrupted between copying and removing the original"
        return "conflict", f"both {intent['source']} and {intent['target']} exist; nothing was changed"
    return "missing", "the file is in neither place; it was moved or deleted outside imgcls"


def _entries(root, records):
    """One dict per action, in journal order, with its status and whether it was undone."""
    entries, by_id = [], {}
    for record in records:
        kind = record.get("op")
        if kind == "intent" and record.get("action") in ACTIONS and record["id"] not in by_id:
            entry = {key: value for key, value in record.items() if key != "op"}
            entry["status"] = "pending"
            entry["undone"] = False
            by_id[record["id"]] = entry
            entries.append(entry)
        elif kind in _OUTCOMES and record["id"] in by_id:
            entry = by_id[record["id"]]
            entry["status"] = kind
            if record.get("note"):
                entry["note"] = record["note"]
    for entry in entries:
        if entry["status"] == "pending":
            status, note = _disk_outcome(root, entry)
            entry["status"] = status if status in ("done", "abandoned") else "pending"
            entry["note"] = note
    for entry in entries:
        if entry["action"] == "undo" and entry["status"] == "done" and entry.get("undoes") in by_id:
            by_id[entry["undoes"]]["undone"] = True
    for entry in entries:
        entry["source_path"] = str(root / entry["source"])
        entry["target_path"] = str(root / entry["target"])
    return entries


def journal_entries(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Every move, quarantine and undo recorded for the dataset at ``root``, oldest first.

    Each dict holds ``id``, ``action`` (``"move"``, ``"quarantine"`` or ``"undo"``),
    ``source`` and ``target`` (relative to the root, POSIX style), ``source_path`` and
    ``target_path`` (the full paths), ``time`` (UTC, ISO 8601), ``status`` (``"done"``,
    ``"abandoned"``, or ``"pending"`` for an interrupted move the disk cannot settle),
    ``undone`` (bool), and per action ``class`` (move), ``reason`` (quarantine) or
    ``undoes`` (undo: the id it reverted). Reading changes nothing on disk.

    Lines of the wrong shape, and entries whose paths lead outside the dataset's class
    folders and quarantine, are left out with one warning (see the module docstring).

    Args:
        root: The dataset folder.

    Returns:
        The entries, oldest first.

    Raises:
        DatasetError: ``root`` is not a folder, or the journal cannot be read.
    """
    root = _root(root)
    return _entries(root, _read_records(root))


def undoable_entries(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Done moves and quarantines not undone yet, the most recent first (what undo reverts next).

    Args:
        root: The dataset folder.

    Returns:
        Entries as :func:`journal_entries` gives them, the most recent first.

    Raises:
        DatasetError: As :func:`journal_entries`.
    """
    return [entry for entry in reversed(journal_entries(root))
            if entry["action"] != "undo" and entry["status"] == "done" and not entry["undone"]]


@contextlib.contextmanager
def _locked(root):
    folder = root / STATE_FOLDER
    link = _linked_state(root)
    if link is not None:
        raise _linked_state_error(link)
    try:
        folder.mkdir(exist_ok=True)
        handle = os.fdopen(os.open(folder / _LOCK_NAME, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o644), "r+b")
    except OSError as exc:
        raise DatasetError(f"Cannot write the move journal in {folder}: {exc.strerror or exc}. "
                           "Moving images needs a dataset folder you can write to.") from None
    with _process_lock, handle:
        fcntl: Any
        try:
            import fcntl
        except ImportError:  # Windows: the process lock alone
            fcntl = None
        if fcntl is not None:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _settle_pending(root, records):
    """Write the outcome of every intent a crash left open (called under the lock)."""
    closed = {record["id"] for record in records if record["op"] in _OUTCOMES}
    for record in records:
        if record["op"] != "intent" or record["id"] in closed:
            continue
        closed.add(record["id"])
        target = root / record["target"]
        partial = target.with_name(f".{target.name}{_PARTIAL_SUFFIX}")
        with contextlib.suppress(OSError):
            partial.unlink()
        status, note = _disk_outcome(root, record)
        if status == "duplicate":
            # The copy is complete and identical: finish what the interrupted move began.
            os.unlink(root / record["source"])
            fsync_folder((root / record["source"]).parent)
            status = "done"
        _append(root, {"id": record["id"], "op": "done" if status == "done" else "abandoned",
                       "note": note, "time": _now()})


def _rename(source, target):
    """Move one file without ever replacing another; durable once this returns."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "target exists", str(target))
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another file system (a linked class folder): copy under a hidden name, then
        # rename, so a crash leaves either no target or a complete one.
        partial = target.with_name(f".{target.name}{_PARTIAL_SUFFIX}")
        shutil.copy2(source, partial)
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.rename(partial, target)
        os.unlink(source)
    fsync_folder(target.parent)
    fsync_folder(source.parent)


def _journaled_move(root, action, source, target, **details):
    """intent -> rename -> done; the returned dict is the entry :func:`journal_entries` lists."""
    entry_id = uuid.uuid4().hex
    record = {"id": entry_id, "op": "intent", "action": action, "source": source.as_posix(),
              "target": target.as_posix(), "time": _now(), **details}
    _append(root, record)
    try:
        _rename(root / source, root / target)
    except OSError as exc:
        _append(root, {"id": entry_id, "op": "abandoned", "note": str(exc), "time": _now()})
        raise ImageError(root / source, f"could not be moved to {root / target}: "
                                        f"{exc.strerror or exc}; nothing was changed") from None
    _append(root, {"id": entry_id, "op": "done", "time": _now()})
    entry = {key: value for key, value in record.items() if key != "op"}
    entry.update(status="done", undone=False, source_path=str(root / source), target_path=str(root / target))
    return entry


# -- the three operations ---------------------------------------------------------------

def move_to_class(root: str | os.PathLike, path: str | os.PathLike, class_name: str) -> dict[str, Any]:
    """Move one image into the folder of ``class_name``, in the same split.

    Flat layout: ``root/<class>/``; split layout: ``root/<split>/<class>/``. The class
    folder is created (in that split) only when the class exists in the dataset. A file
    of the same name there is never replaced: the image gets the first free name
    (``name-1.jpg``, ...).

    Args:
        root: The dataset folder.
        path: The image (absolute, relative to the working folder, or relative to ``root``).
        class_name: The class to move it to.

    Returns:
        The journal entry of the move (see :func:`journal_entries`).

    Raises:
        DatasetError: ``root`` is not a folder, the class does not exist, or the journal
            cannot be written.
        ImageError: The file is missing, not an image, outside the dataset or outside a
            class folder, already in that class, or could not be moved.
    """
    root = _root(root)
    classes = dataset_class_names(root)
    if class_name not in classes:
        raise DatasetError(f"There is no class '{class_name}' in {root}; its classes are: "
                           f"{', '.join(classes) or 'none'}. Create the class folder first to add a class.")
    with _locked(root):
        _settle_pending(root, _read_records(root))
        _absolute, relative, split, current = _locate(root, path)
        if current == class_name:
            raise ImageError(path, f"is already in class '{class_name}'; nothing to move")
        folder = PurePosixPath(split, class_name) if split else PurePosixPath(class_name)
        target = folder / _free_name(root / folder, relative.name)
        return _journaled_move(root, "move", relative, target, **{"class": class_name, "from_class": current})


def quarantine(root: str | os.PathLike, path: str | os.PathLike, reason: str = "") -> dict[str, Any]:
    """Move one image out of the dataset into ``root/.imgcls/quarantine/<its relative path>``.

    The scanner skips the hidden ``.imgcls`` folder, so the image no longer counts (nor is
    reported as a problem), yet stays on disk; :func:`undo` brings it back.

    Args:
        root: The dataset folder.
        path: The image (absolute, relative to the working folder, or relative to ``root``).
        reason: Optional note kept in the journal.

    Returns:
        The journal entry of the move (see :func:`journal_entries`).

    Raises:
        DatasetError, ImageError: As :func:`move_to_class`.
    """
    root = _root(root)
    with _locked(root):
        _settle_pending(root, _read_records(root))
        _absolute, relative, _split, current = _locate(root, path)
        folder = PurePosixPath(QUARANTINE_FOLDER, *relative.parts[:-1])
        target = folder / _free_name(root / folder, relative.name)
        return _journaled_move(root, "quarantine", relative, target, reason=str(reason or ""),
                               from_class=current)


def undo(root: str | os.PathLike) -> dict[str, Any] | None:
    """Revert the most recent move or quarantine not undone yet (from this process or any earlier one).

    Only entries that pass the journal's checks are candidates: a planted line can never
    make undo move, create or delete a file outside the class folders and quarantine.

    Args:
        root: The dataset folder.

    Returns:
        The journal entry of the undo (its ``undoes`` is the id reverted, ``original`` that
        entry), or None when there is nothing to undo.

    Raises:
        DatasetError: The moved file is gone, or its original place is taken; nothing is
            changed then, and the message says what to do.
    """
    root = _root(root)
    if not journal_path(root).exists():
        return None
    with _locked(root):
        records = _read_records(root)
        _settle_pending(root, records)
        candidates = [entry for entry in reversed(_entries(root, _read_records(root, warn=False)))
                      if entry["action"] != "undo" and entry["status"] == "done" and not entry["undone"]]
        if not candidates:
            return None
        original = candidates[0]
        moved, home = root / original["target"], root / original["source"]
        if not os.path.lexists(moved):
            raise DatasetError(
                f"Cannot undo the {original['action']} of {home}: the file is no longer at {moved} "
                "(moved or deleted since). Nothing was changed; put it back there to undo, or "
                "restore it by hand.")
        if os.path.lexists(home):
            raise DatasetError(
                f"Cannot undo the {original['action']} of {home}: another file now has that name. "
                f"Nothing was changed; rename or move {home} away, then undo again.")
        entry = _journaled_move(root, "undo", PurePosixPath(original["target"]),
                                PurePosixPath(original["source"]), undoes=original["id"])
        original["undone"] = True
        entry["original"] = original
        return entry
