"""What the window is working on, without Qt: the open dataset and the current model.

The window's views read this one object instead of keeping copies spread over widgets.
The model is a :class:`ModelHandle`: its ``.keras`` file and what was read from it (class
names, input size, metadata). The Keras model itself lives in the engine process, which
loads the file by path; nothing here imports TensorFlow.
"""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(eq=False)  # identity: two loads of one file are two handles
class ModelHandle:
    """A model the engine can run, named by its file.

    Attributes:
        path: The ``.keras`` file (every trained model is saved before it is used).
        class_names: Output classes, in order.
        image_size: ``(height, width)`` of the model's input.
        metadata: The imgcls metadata stored in the file.
        warnings: What loading it found worth saying (shown in the status bar).
        parameters: The model's parameter count (counted by the engine).
    """

    path: Path
    class_names: list
    image_size: tuple
    metadata: dict
    warnings: list = field(default_factory=list)
    parameters: int | None = None

    @classmethod
    def from_info(cls, info):
        """From the engine's ``engine.tasks.model_info`` dict."""
        return cls(path=Path(info["path"]), class_names=list(info["class_names"]),
                   image_size=tuple(info["image_size"]), metadata=dict(info.get("metadata") or {}),
                   warnings=list(info.get("warnings") or []), parameters=info.get("parameters"))

    @property
    def preset(self):
        return self.metadata.get("preset", "unknown")

    @property
    def held_out_files(self):
        """The validation files training recorded (relative to the dataset root)."""
        return list((self.metadata.get("dataset") or {}).get("validation_files") or [])

    def summary(self):
        """What the window's model summary shows (``core.model_io.model_summary``)."""
        from ..core.model_io import model_summary  # no TensorFlow: the engine holds the model

        return model_summary(self, self.parameters or 0)


def model_path(model):
    """The file the engine loads for ``model`` (a handle, or core's ``LoadedModel``)."""
    path = getattr(model, "path", None)
    if path is None:
        raise ValueError("this model has no file yet; the engine loads models from files")
    return str(path)


class Session:
    """The window's state that crosses views.

    Attributes:
        scan: The open dataset's ``core.dataset.DatasetScan``, or None.
        model: The current :class:`ModelHandle` (or a ``LoadedModel`` a test handed in), or None.
        training_result: The ``core.training.TrainingResult`` of the model trained last in
            this window (its ``model`` is that run's handle), or None.
    """

    def __init__(self):
        self.scan = None
        self.model = None
        self.training_result = None

    def set_scan(self, scan):
        self.scan = scan

    def set_model(self, model):
        self.model = model
        if self.training_result is not None and self.training_result.model is not model:
            self.training_result = None

    def adopt(self, result):
        """A fresh training result: its model becomes current."""
        self.training_result = result
        self.model = result.model

    @property
    def model_path(self):
        return None if self.model is None else getattr(self.model, "path", None)

    @property
    def held_out_files(self):
        """The current model's recorded validation files (relative to its dataset)."""
        if self.model is None:
            return []
        return list((self.model.metadata.get("dataset") or {}).get("validation_files") or [])
