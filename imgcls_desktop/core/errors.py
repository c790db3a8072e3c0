"""The exceptions core raises. Each message says what happened, to which file, and what to do.

Every exception class of core is defined here, so a front end catches them from one place.
"""


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


class Cancelled(ImgclsError):
    """Work was stopped through its ``stop_event`` (a scan, decoding, a check, a search)."""

    def __init__(self, message="cancelled"):
        super().__init__(message)


class HistoryError(ImgclsError):
    """A run file cannot be read or written; the message names the file."""


class UnknownRunError(HistoryError):
    """No run has the id the user gave."""


class RunFileError(HistoryError):
    """One run file is unreadable, not JSON, not a run, or holds another run."""

    def __init__(self, file, reason):
        self.reason = reason
        super().__init__(f"The run file {file} {reason}; delete it (imgcls runs delete) "
                         "or move it out of the runs folder.")


class ExportError(ImgclsError):
    """A model could not be exported, or the export does not behave like the model."""


class OutputFileError(ImgclsError):
    """An output file cannot be written (missing or read-only folder, another writer)."""


class SettingsError(ImgclsError, ValueError):
    """Saved settings cannot be used: a value has the wrong type or is out of range."""
