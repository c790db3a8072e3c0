"""The exceptions core raises. Each message says what happened, to which file, and what to do."""


class ImgclsError(Exception):
    """Base class: a problem the user can act on (shown without a traceback)."""


class DatasetError(ImgclsError):
    """The dataset folder cannot be used as asked (missing classes, empty splits, ...)."""


class ImageError(ImgclsError):
    """One image file cannot be read; the message names the file and the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelFileError(ImgclsError):
    """A model file cannot be loaded or saved safely."""


class TrainingError(ImgclsError):
    """Training could not run or had to stop (for example the loss became NaN)."""


class WeightsUnavailableError(ImgclsError):
    """Pretrained backbone weights could not be downloaded or read."""
