"""Paths as the app writes them: relative to the dataset root, with POSIX separators.

Every file the app writes (the model's metadata, run records, the move journal, CSV
tables) names dataset images this way, so a record made on Windows reads the same on
Linux and a dataset folder can be moved or copied without its records going stale.
Qt-free and TensorFlow-free.
"""

import os
from pathlib import Path


def relative_posix(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """``path`` relative to the dataset folder ``root``, with ``/`` separators.

    Both are made absolute first (against the current folder), so a relative and an
    absolute spelling of the same place agree. Symbolic links are not resolved.

    Args:
        path: A file, usually inside ``root``.
        root: The dataset folder.

    Returns:
        The relative path (``"train/cat/1.jpg"``), or ``path`` itself with ``/`` separators
        when it is not inside ``root``.
    """
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return Path(path).as_posix()
