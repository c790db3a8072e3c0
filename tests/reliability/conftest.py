"""Fixtures for the reliability suite: every bad input is built here, nothing is downloaded.

The guard against dangling QThreads and jobs, and ``error_dialogs``, live in tests/conftest.py.
"""

import pytest
from hostile_inputs import save_tiny_model


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory):
    """An untrained 2-class tutorial CNN (32x32) saved by this app: (path, class names)."""
    path = tmp_path_factory.mktemp("tiny_model") / "tiny.keras"
    return save_tiny_model(path, ["alpha", "beta"]), ["alpha", "beta"]


@pytest.fixture
def safe_mode_guard():
    """Asserts, after the test, that Keras' safe mode and dtype policy were left alone."""
    from imgcls_desktop.core.backend import keras_module

    keras = keras_module()
    policy = keras.config.dtype_policy().name
    yield
    from keras.src.saving import serialization_lib

    assert serialization_lib.in_safe_mode() is not False, "unsafe deserialization was enabled"
    assert keras.config.dtype_policy().name == policy
