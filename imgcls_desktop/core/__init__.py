"""The Qt-free engine: datasets, models, training, evaluation, inference, model files.

Nothing under ``core`` imports PySide6; the CLI and the GUI are thin front ends over it.
TensorFlow is imported lazily by the modules that need it, so that importing
``imgcls_desktop.core.dataset`` (for example from the GUI's dataset browser) stays cheap.
"""
