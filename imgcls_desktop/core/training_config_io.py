"""Training settings to and from plain dicts (JSON), checked as untrusted input.

The window keeps its last settings in a settings file, and a file can hold anything: an
older or newer version's keys, a hand edit, a damaged value. :func:`training_config_from_dict`
turns such a dict back into a ``TrainingConfig`` only when every known value has the right
type and range, and says which one is wrong otherwise. Keys it does not know are ignored
(settings written by a newer version), and a missing key keeps ``TrainingConfig``'s default.

Qt-free; ``core.training`` (and with it TensorFlow's import) is loaded only when a config is
made, not when this module is imported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import SettingsError

if TYPE_CHECKING:
    from .training import TrainingConfig

DISTRIBUTE_CHOICES = ("auto", "off", "mirrored", "multi-worker")
CLASS_WEIGHT_CHOICES = ("balanced",)
_SEED_LIMIT = 2**32  # NumPy's and TensorFlow's seeds are 32-bit


def training_config_to_dict(config: TrainingConfig) -> dict[str, Any]:
    """A JSON-ready dict of ``config`` (the augmentation as a dict).

    Args:
        config: The ``TrainingConfig``.

    Returns:
        What :func:`training_config_from_dict` reads back into an equal config.
    """
    return config.to_dict()


def training_config_from_dict(data: Mapping[str, Any]) -> TrainingConfig:
    """The ``TrainingConfig`` a dict describes (a settings file, :func:`training_config_to_dict`).

    Args:
        data: Keys are ``TrainingConfig`` field names. Unknown keys are ignored; a missing
            key keeps the default.

    Returns:
        A new ``TrainingConfig``.

    Raises:
        SettingsError: ``data`` is not a mapping, or a value has the wrong type or is out
            of range (the message names the key). It is also a ``ValueError``.
    """
    from .models import PRESETS, Augmentation
    from .training import TrainingConfig

    if not isinstance(data, Mapping):
        raise SettingsError(f"Training settings must be a mapping of names to values. "
                            f"Received: {type(data).__name__}")
    checks: dict[str, Callable[[str, Any], Any]] = {
        "preset": lambda key, value: _choice(key, value, sorted(PRESETS)),
        "epochs": lambda key, value: _optional(_integer, key, value, minimum=1),
        "time_budget": lambda key, value: _optional(_number, key, value, positive=True),
        "batch_size": lambda key, value: _optional(_integer, key, value, minimum=1),
        "learning_rate": lambda key, value: _optional(_number, key, value, positive=True),
        "image_size": lambda key, value: _optional(_integer, key, value, minimum=1),
        "validation_split": _validation_split,
        "seed": lambda key, value: _integer(key, value, minimum=0, limit=_SEED_LIMIT),
        "augmentation": lambda key, value: None if value is None else _augmentation(key, value, Augmentation),
        "early_stopping_patience": lambda key, value: _optional(_integer, key, value, minimum=0) or None,
        "weights": lambda key, value: _optional(_text, key, value),
        "class_weights": lambda key, value: None if value is None else _choice(key, value, CLASS_WEIGHT_CHOICES),
        "cache_features": _boolean,
        "fine_tune_epochs": lambda key, value: _integer(key, value, minimum=0),
        "distribute": lambda key, value: _choice(key, value, DISTRIBUTE_CHOICES),
    }
    fields = set(TrainingConfig.__dataclass_fields__)
    values = {key: check(key, data[key]) for key, check in checks.items() if key in data and key in fields}
    return TrainingConfig(**values)


def _optional(check: Callable[..., Any], key: str, value: Any, **limits: Any) -> Any:
    return None if value is None else check(key, value, **limits)


def _wrong(key: str, expected: str, value: Any) -> SettingsError:
    return SettingsError(f"The training setting {key!r} must be {expected}. Received: {key}={value!r}")


def _integer(key: str, value: Any, minimum: int = 0, limit: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(key, "a whole number", value)
    if value < minimum or (limit is not None and value >= limit):
        bounds = f"at least {minimum}" + (f" and below {limit}" if limit is not None else "")
        raise _wrong(key, bounds, value)
    return value


def _number(key: str, value: Any, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _wrong(key, "a finite number", value)
    if positive and value <= 0:
        raise _wrong(key, "above 0", value)
    return float(value)


def _validation_split(key: str, value: Any) -> float:
    share = _number(key, value)
    if not 0.0 <= share < 1.0:
        raise _wrong(key, "a share from 0 up to (not including) 1", value)
    return share


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _wrong(key, "true or false", value)
    return value


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _wrong(key, "text", value)
    return value


def _choice(key: str, value: Any, choices: Any) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _wrong(key, f"one of {', '.join(choices)}", value)
    return value


def _augmentation(key: str, value: Any, augmentation_class: Any) -> Any:
    if not isinstance(value, Mapping):
        raise _wrong(key, "a mapping of augmentation names to values", value)
    known = augmentation_class.__dataclass_fields__
    values: dict[str, Any] = {}
    for name, setting in value.items():
        if name not in known:
            continue  # a newer version's augmentation: not applied here
        if name == "flip":
            values[name] = _boolean(f"{key}.{name}", setting)
        else:
            values[name] = _number(f"{key}.{name}", setting)
            if values[name] < 0:
                raise _wrong(f"{key}.{name}", "0 or more", setting)
    return augmentation_class(**values)
