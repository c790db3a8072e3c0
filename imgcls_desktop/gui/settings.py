"""Every persistent setting of the window: keys and defaults in one place."""

import json

from PySide6.QtCore import QSettings

from ..resources import user_data_dir

RECENT_LIMIT = 8

GEOMETRY = "window/geometry"
WINDOW_STATE = "window/state"
RECENT_DATASETS = "recent/datasets"
RECENT_MODELS = "recent/models"
LAST_DATASET = "last/dataset"
TRAINING_CONFIG = "training/config"


def settings():
    """An INI file in the user's data folder: readable, and easy to isolate in tests."""
    return QSettings(str(user_data_dir() / "settings.ini"), QSettings.Format.IniFormat)


def recent(key):
    value = settings().value(key, [])
    if isinstance(value, str):  # QSettings returns a lone string for one-element lists
        value = [value]
    return [str(v) for v in (value or [])]


def push_recent(key, path):
    items = [str(path)] + [p for p in recent(key) if p != str(path)]
    settings().setValue(key, items[:RECENT_LIMIT])
    return items[:RECENT_LIMIT]


def load_json(key, default=None):
    raw = settings().value(key)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return default


def save_json(key, value):
    settings().setValue(key, json.dumps(value))
