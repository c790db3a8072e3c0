"""Training settings read back from a dict (a settings file): checked, never trusted."""

import math

import pytest

from imgcls_desktop.core.defaults import DEFAULT_SEED
from imgcls_desktop.core.errors import ImgclsError, SettingsError
from imgcls_desktop.core.models import Augmentation
from imgcls_desktop.core.training import TrainingConfig
from imgcls_desktop.core.training_config_io import training_config_from_dict, training_config_to_dict


def test_a_config_survives_the_round_trip():
    config = TrainingConfig(preset="small_cnn", epochs=7, time_budget=90.5, batch_size=16, learning_rate=0.01,
                            image_size=48, validation_split=0.25, seed=9,
                            augmentation=Augmentation(flip=False, rotation=0.1, zoom=0.2),
                            early_stopping_patience=None, weights=None, class_weights="balanced",
                            cache_features=False, fine_tune_epochs=2, distribute="off")
    assert training_config_from_dict(training_config_to_dict(config)) == config
    assert training_config_from_dict({}) == TrainingConfig()
    assert TrainingConfig().seed == DEFAULT_SEED


def test_unknown_keys_are_ignored_and_missing_ones_keep_their_default():
    config = training_config_from_dict({"preset": "small_cnn", "from_a_newer_version": [1, 2],
                                        "augmentation": {"flip": True, "hue": 0.3}})
    assert config.preset == "small_cnn" and config.augmentation == Augmentation(flip=True)
    assert config.seed == DEFAULT_SEED and config.validation_split == 0.2


@pytest.mark.parametrize(("key", "value"), [
    ("preset", "no_such_preset"), ("preset", 3), ("epochs", 0), ("epochs", "12"), ("epochs", True),
    ("epochs", 2.5), ("time_budget", -1), ("time_budget", math.nan), ("batch_size", 0),
    ("learning_rate", 0.0), ("learning_rate", math.inf), ("image_size", -32), ("validation_split", 1.0),
    ("validation_split", -0.1), ("seed", -1), ("seed", 2**32), ("seed", "1337"),
    ("augmentation", [1]), ("augmentation", {"flip": "yes"}), ("augmentation", {"zoom": -0.5}),
    ("class_weights", "inverse"), ("cache_features", 1), ("fine_tune_epochs", -2),
    ("distribute", "everywhere"), ("weights", 5),
])
def test_a_wrong_value_is_refused_with_its_name(key, value):
    with pytest.raises(SettingsError, match=key) as raised:
        training_config_from_dict({key: value})
    assert isinstance(raised.value, ImgclsError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize("data", [None, "preset=small_cnn", ["preset"], 7])
def test_anything_but_a_mapping_is_refused(data):
    with pytest.raises(SettingsError, match="mapping"):
        training_config_from_dict(data)


def test_patience_zero_means_off():
    assert training_config_from_dict({"early_stopping_patience": 0}).early_stopping_patience is None
    assert training_config_from_dict({"early_stopping_patience": 4}).early_stopping_patience == 4
