"""Core objects as plain data and back, for the engine's messages.

:func:`encode` turns the few core dataclasses that cross between the window and the
engine (a dataset scan, progress events, evaluation reports, predictions...) into tagged
dicts, and paths into tagged strings; :func:`decode` rebuilds them on the other side.
Only the classes in :data:`_CLASSES` can be rebuilt, so the receiving side decides what a
message may turn into. Neither direction imports TensorFlow.
"""

import dataclasses
from pathlib import Path, PurePath

_DATACLASS = "__dataclass__"
_PATH = "__path__"


def _classes():
    from ..core.dataset import DatasetScan, ImageItem, Problem
    from ..core.evaluation import EvaluationReport
    from ..core.explain import Explanation
    from ..core.inference import Prediction
    from ..core.mislabels import Suspect
    from ..core.models import Augmentation
    from ..core.training import TrainingProgress

    return {cls.__name__: cls for cls in (DatasetScan, ImageItem, Problem, EvaluationReport, Explanation,
                                          Prediction, Suspect, Augmentation, TrainingProgress)}


_CLASSES = {}


def _registry():
    if not _CLASSES:
        _CLASSES.update(_classes())
    return _CLASSES


def encode(value):
    """``value`` with registered dataclasses and paths replaced by tagged plain values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if _registry().get(name) is not type(value):
            raise TypeError(f"{name} cannot be sent to or from the engine")
        fields = {field.name: encode(getattr(value, field.name)) for field in dataclasses.fields(value)}
        return {_DATACLASS: name, **fields}
    if isinstance(value, PurePath):
        return {_PATH: str(value)}
    if isinstance(value, dict):
        return {key: encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [encode(item) for item in value]
    if isinstance(value, tuple):
        return tuple(encode(item) for item in value)
    return value


def decode(value):
    """The inverse of :func:`encode`."""
    if isinstance(value, dict):
        if _DATACLASS in value:
            cls = _registry().get(value[_DATACLASS])
            if cls is None:
                raise TypeError(f"unknown class in an engine message: {value[_DATACLASS]!r}")
            fields = {key: decode(item) for key, item in value.items() if key != _DATACLASS}
            init = {f.name for f in dataclasses.fields(cls) if f.init}
            obj = cls(**{key: item for key, item in fields.items() if key in init})
            for key, item in fields.items():
                if key not in init:
                    object.__setattr__(obj, key, item)
            return obj
        if set(value) == {_PATH}:
            return Path(value[_PATH])
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    if isinstance(value, tuple):
        return tuple(decode(item) for item in value)
    return value
