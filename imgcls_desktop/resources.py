"""Where bundled resources and user data live, from source and from a frozen build."""

import os
import sys
from pathlib import Path

from . import APP_NAME


def resource_root():
    """The ``resources/`` folder: beside the package in a checkout, inside the bundle when frozen."""
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        return Path(frozen_root) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts):
    return resource_root().joinpath(*parts)


def sample_dataset_path():
    return resource_path("sample_dataset")


def dataset_display_name(path):
    """How the app names a dataset folder: the bundled sample by name (its path inside an
    installed or frozen app means nothing to the user), any other folder by its path."""
    try:
        if Path(path).resolve() == sample_dataset_path().resolve():
            return "the sample dataset"
    except OSError:
        pass
    return str(path)


def user_data_dir():
    """A per-user folder for logs, run history and caches (never beside the executable)."""
    override = os.environ.get("IMGCLS_DATA_DIR")
    if override:
        base = Path(override)
    elif sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / APP_NAME
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support" / APP_NAME
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / APP_NAME
    base.mkdir(parents=True, exist_ok=True)
    return base
