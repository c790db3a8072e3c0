"""Real data: a minute of training on a CIFAR-10 subset from ../shared (run with -m slow)."""

import pytest

pytestmark = pytest.mark.slow


def test_small_cnn_learns_cifar10_in_a_minute(cifar10_root):
    from imgcls_desktop.core.dataset import scan_dataset
    from imgcls_desktop.core.evaluation import evaluate_items
    from imgcls_desktop.core.model_io import from_training
    from imgcls_desktop.core.training import TrainingConfig, train

    scan = scan_dataset(cifar10_root, validate=False, find_duplicates=False)
    per_class = {}
    subset = []
    for item in scan.splits["train"]:
        if per_class.get(item.label, 0) < 500:
            per_class[item.label] = per_class.get(item.label, 0) + 1
            subset.append(item)
    scan.splits["train"] = subset
    result = train(scan, TrainingConfig(preset="small_cnn", time_budget=60, validation_split=0.1, seed=1))
    report = evaluate_items(from_training(result), scan.splits["test"][::5], scan.class_names)
    assert len(report.y_true) == 2000
    assert report.accuracy > 0.35  # chance is 0.10
