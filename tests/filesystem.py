"""Helpers for tests that must prove nothing outside a folder changed."""

import os
from pathlib import Path


def snapshot(folder):
    """Every path under ``folder`` with its bytes (links as their target text)."""
    result = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                result[str(path)] = ("link", os.readlink(path))
            elif path.is_file():
                result[str(path)] = ("file", path.read_bytes())
            else:
                result[str(path)] = ("dir", None)
    return result
