"""Output files written whole or not at all, by one writer at a time.

Every file the app writes for the user (models, prediction CSVs, reports) goes through
here or through :func:`model_io.save_model`, which uses the same pieces:

* :func:`check_output_writable` before long work: the folder exists and takes a file (a
  temporary file is created beside the target and removed), so a run into a missing or
  read-only folder is refused before its first epoch, not after its last.
* :func:`output_lock` while writing: an exclusive ``flock`` on a hidden lock file beside the
  target (``.<name>.lock``, removed when released), so a second process writing the same
  file is told so instead of silently replacing the first one's result. Where ``fcntl`` is
  missing (Windows) there is no lock; ``os.replace`` still keeps each file whole.
* :func:`write_atomic`: a temporary file in the same folder, flushed and fsynced, then moved
  over the target in one step; a failure (a name that cannot be encoded, a full disk)
  leaves the previous file, or none, and never half a file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import OutputFileError
from .names import display_name

if TYPE_CHECKING:
    from .inference import Prediction

fcntl: Any
try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def lock_file_for(path: str | os.PathLike) -> Path:
    """The hidden lock file beside ``path`` that :func:`output_lock` uses.

    Args:
        path: The output file.

    Returns:
        ``.<name>.lock`` in the same folder.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def locks_supported() -> bool:
    """Whether :func:`output_lock` really locks here (``fcntl``: not on Windows).

    Returns:
        True where ``fcntl`` is available.
    """
    return fcntl is not None


# Locks this process holds: flock conflicts between two descriptors of one process too, so
# a nested lock (the CLI holds --out for a whole run, save_model takes it again) is counted
# here instead. {absolute path: [descriptor, owning thread, depth]}
_held: dict[str, list] = {}
_held_guard = threading.Lock()


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, error: type[Exception] = OutputFileError) -> Iterator[None]:
    """Hold an exclusive lock on the output ``path`` for the ``with`` block.

    Re-entrant within one thread.

    Args:
        path: The output file (the lock file goes beside it).
        error: The :class:`ImgclsError` class raised when the file is busy.

    Yields:
        Nothing; the lock is held until the block ends.

    Raises:
        error: Another process, or another thread of this one, holds it.
        OSError: The lock file cannot be created (the folder is missing or read-only).
    """
    key = os.path.abspath(path)
    me = threading.get_ident()
    with _held_guard:
        entry = _held.get(key)
        if entry is not None and entry[1] != me:
            raise error(_busy_message(key, os.getpid()))
        if entry is not None:
            entry[2] += 1
    if entry is None:
        descriptor = _acquire(Path(key), error)
        with _held_guard:
            _held[key] = entry = [descriptor, me, 1]
    try:
        yield
    finally:
        with _held_guard:
            entry[2] -= 1
            last = entry[2] == 0
            if last:
                del _held[key]
        if last:
            _release(Path(key), entry[0])


def is_locked(path: str | os.PathLike) -> bool | None:
    """Whether another writer holds :func:`output_lock` on ``path`` now (None: cannot tell).

    The calling thread's own lock does not count: it is not writing while it asks.

    Args:
        path: The output file.

    Returns:
        True, False, or None where locks are not supported or the lock file is unreadable.
    """
    key = os.path.abspath(path)
    with _held_guard:
        entry = _held.get(key)
    if entry is not None:
        return entry[1] != threading.get_ident()
    if fcntl is None:
        return None
    try:
        descriptor = os.open(lock_file_for(key), os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(descriptor)  # also drops the shared lock just taken
    return False


def remove_abandoned_lock(path: str | os.PathLike) -> bool:
    """Remove the lock file of ``path`` if no writer holds it (its writer was killed).

    Safe against a writer locking it at the same moment: the file is removed only while
    this call holds its lock, and :func:`output_lock` retries on a removed file.

    Args:
        path: The output file whose lock file is checked.

    Returns:
        True when a file was removed.
    """
    key = os.path.abspath(path)
    with _held_guard:
        if key in _held:
            return False
    if fcntl is None:
        return False
    lock = lock_file_for(key)
    try:
        descriptor = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        current, mine = os.stat(lock), os.fstat(descriptor)
        if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
            return False
        os.unlink(lock)
        return True
    except OSError:  # held by a live writer (BlockingIOError), or already gone
        return False
    finally:
        os.close(descriptor)


def _acquire(path, error):
    if fcntl is None:
        return None
    lock = lock_file_for(path)
    for _attempt in range(10):
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise error(_busy_message(path, holder)) from None
        except OSError:
            os.close(descriptor)
            return None  # a file system without flock: write unlocked, as on Windows
        # The previous holder removes the lock file when it lets go: if it did so between
        # our open and our flock, we hold a lock on a file nobody else will open. Retry.
        try:
            current = os.stat(lock)
            mine = os.fstat(descriptor)
            same = (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
            return descriptor
        os.close(descriptor)
    raise error(_busy_message(path, None))


def _release(path, descriptor):
    if descriptor is None:
        return
    try:
        os.unlink(lock_file_for(path))  # while still held: see _acquire
    except OSError:
        pass
    os.close(descriptor)


def _holder(descriptor):
    try:
        text = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None
    except OSError:
        return None


def _busy_message(path, pid):
    who = f"another imgcls run (process {pid})" if pid else "another imgcls run"
    return (f"{display_name(path)} is being written by {who}. Wait for it to finish, or choose "
            "another output file.")


def check_output_writable(path: str | os.PathLike, error: type[Exception] = OutputFileError) -> None:
    """Refuse an output path whose folder is missing or does not take a new file.

    A temporary file is created beside ``path`` and removed at once; ``path`` itself is
    not touched.

    Args:
        path: The output file.
        error: The :class:`ImgclsError` class to raise.

    Raises:
        error: The folder is missing, ``path`` is a folder, or the folder takes no new
            file; the message names the folder and what to do.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    shown, shown_folder = display_name(path), display_name(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise error(f"Cannot write {shown}: the folder {shown_folder} {what}. Create it or choose "
                    "another place.")
    if path.is_dir():
        raise error(f"Cannot write {shown}: it is a folder. Choose a file name.")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=folder)
    except OSError as exc:
        raise error(f"Cannot write {shown}: the folder {shown_folder} does not take new files "
                    f"({exc.strerror or exc}). Choose a folder you can write to, or free disk "
                    "space.") from exc
    os.close(descriptor)
    try:
        os.unlink(probe)
    except OSError:
        pass


def write_atomic(path: str | os.PathLike, data: str | bytes, error: type[Exception] = OutputFileError) -> Path:
    """Write ``data`` (``bytes``, or ``str`` as UTF-8) to ``path`` whole or not at all.

    Args:
        path: The file to write.
        data: Its content.
        error: The :class:`ImgclsError` class to raise.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        error: The file cannot be written (named); the previous file, if any, is then
            unchanged and no temporary file is left.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    temp = None
    try:
        with output_lock(path, error):
            descriptor, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
            temp = temp_name
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            temp = None
            fsync_folder(folder)
    except OSError as exc:
        raise error(f"Could not write {display_name(path)}: {exc.strerror or exc}. Check that the "
                    f"folder {display_name(folder)} is writable and the disk has free space; the "
                    "previous file, if any, is unchanged.") from exc
    finally:
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)
    return path


def write_json_atomic(path: str | os.PathLike, data: Any, error: type[Exception] = OutputFileError) -> Path:
    """Write ``data`` as JSON (indented, no NaN) to ``path`` whole or not at all.

    Args:
        path: The file to write.
        data: JSON-ready data; NaN and infinities are refused (they are not JSON).
        error: The :class:`ImgclsError` class to raise.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        error: The data is not JSON, or the file cannot be written (see :func:`write_atomic`).
    """
    try:
        text = json.dumps(data, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise error(f"Could not write {display_name(path)}: {exc}.") from exc
    return write_atomic(path, text, error)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened.

    Args:
        folder: The folder whose entries changed.
    """
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # Windows cannot open folders; os.replace is still atomic there
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def csv_text(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as CSV text.

    Text cells go through :func:`names.display_name`, so a name that is not UTF-8 (a path,
    a class folder) fits a UTF-8 file as ``\\xNN``.

    Args:
        rows: The rows, header first if any.

    Returns:
        The CSV text (``\\r\\n`` line ends).
    """
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([display_name(cell) if isinstance(cell, str) else cell for cell in row])
    return buffer.getvalue()


def write_csv(path: str | os.PathLike, rows: Iterable[Sequence[Any]], error: type[Exception] = OutputFileError) -> Path:
    """Write :func:`csv_text` of ``rows`` to ``path`` atomically (see :func:`write_atomic`).

    Args:
        path: The file to write.
        rows: The rows, header first if any.
        error: The :class:`ImgclsError` class to raise.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        error: The file cannot be written.
    """
    return write_atomic(path, csv_text(rows), error)


PREDICTION_COLUMNS = ["path", "label", "confidence", "top_k", "error", "unknown"]
"""The header of the predictions CSV (see :func:`predictions_csv` for each column)."""


def predictions_csv(predictions: Iterable[Prediction]) -> str:
    """The predictions table as CSV text.

    The one format ``imgcls predict --csv`` and the window's *Export CSV…* write.

    One header row (:data:`PREDICTION_COLUMNS`), then one row per prediction, in order:

    * ``path``: the file as given, undecodable bytes as ``\\xNN`` (:func:`names.display_name`);
    * ``label``: the best class ("" for a file that failed);
    * ``confidence``: its (calibrated) probability, 6 decimals ("" on failure);
    * ``top_k``: the top classes as ``label:probability`` (4 decimals) joined by ``"; "``;
    * ``error``: why the file could not be classified ("" when it was);
    * ``unknown``: ``yes`` when answered "none of my classes", else ``no`` ("" on failure).

    Args:
        predictions: ``core.inference.Prediction`` objects.

    Returns:
        The CSV text (``\\r\\n`` line ends, as the ``csv`` module writes).
    """
    rows: list[list[Any]] = [PREDICTION_COLUMNS]
    for prediction in predictions:
        ok = prediction.error is None
        top = "; ".join(f"{label}:{p:.4f}" for label, p in prediction.top_k)
        rows.append([prediction.path, prediction.label or "", f"{prediction.confidence:.6f}" if ok else "",
                     top, prediction.error or "", ("yes" if prediction.unknown else "no") if ok else ""])
    return csv_text(rows)


def write_predictions_csv(path: str | os.PathLike, predictions: Iterable[Prediction]) -> Path:
    """Write :func:`predictions_csv` to ``path`` atomically (the CLI's ``--csv``, the window's Export).

    Args:
        path: The CSV file.
        predictions: ``core.inference.Prediction`` objects.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        OutputFileError: The file cannot be written; a previous file is left unchanged.
    """
    return write_atomic(path, predictions_csv(predictions))
