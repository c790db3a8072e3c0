"""Balanced class weights on a strongly imbalanced dataset rescue the minority class."""

import numpy as np
import pytest

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.pipeline import decode_items
from imgcls_desktop.core.training import TrainingConfig, train

from synthetic import make_shapes_dataset


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory):
    """train/: 60 circles, 6 squares; test/: 30 of each."""
    root = make_shapes_dataset(tmp_path_factory.mktemp("imbalanced"), num_classes=2, per_class=60, seed=3,
                               layout="split", test_per_class=30)
    for path in sorted((root / "train" / "square").iterdir())[6:]:
        path.unlink()
    return scan_dataset(root)


def _recalls(result, scan):
    pixels, labels, _problems = decode_items(scan.splits["test"], 32)
    predicted = np.asarray(result.model(pixels.astype("float32"), training=False)).argmax(axis=1)
    return [float((predicted[labels == label] == label).mean()) for label in range(2)]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_balanced_weights_raise_minority_recall(imbalanced, seed):
    """README: none of the test squares unweighted, all of them weighted, in each of 3 seeds."""
    assert imbalanced.counts()["train"] == {"circle": 60, "square": 6}
    # Three short epochs: unweighted, the 10:1 majority wins every prediction at first.
    config = TrainingConfig(preset="tutorial_cnn", epochs=3, seed=seed, validation_split=0.0,
                            early_stopping_patience=None)
    plain = train(imbalanced, config)
    weighted = train(imbalanced, TrainingConfig(**{**config.__dict__, "class_weights": "balanced"}))

    plain_recall, weighted_recall = _recalls(plain, imbalanced), _recalls(weighted, imbalanced)
    print(f"seed {seed}: recall unweighted {plain_recall}, weighted {weighted_recall}")
    assert plain_recall == [1.0, 0.0] and weighted_recall[1] == 1.0, (plain_recall, weighted_recall)
    assert weighted_recall[0] >= 0.8, weighted_recall
    assert weighted.metadata["training"]["config"]["class_weights"] == "balanced"
    assert plain.metadata["training"]["config"]["class_weights"] is None
