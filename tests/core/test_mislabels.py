"""Out-of-fold mislabel search: planted mislabels are found, clean images mostly are not."""

import threading

import numpy as np
import pytest
from synthetic import make_shapes_dataset

from imgcls_desktop.core.dataset import ScanCancelled, scan_dataset
from imgcls_desktop.core.errors import DatasetError
from imgcls_desktop.core.mislabels import find_mislabels, stratified_folds

PLANTED = 5


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """3 shapes x 60, with 5 circles moved into the square folder: (scan, moved paths).

    60 a class, not fewer: with 40, one run in a few trained a weak fold model (the small
    CNN's augmentation makes runs differ) that missed planted images or flagged clean ones.
    """
    root = make_shapes_dataset(tmp_path_factory.mktemp("planted"), num_classes=3, per_class=60, seed=5)
    moved = []
    for index in range(PLANTED):
        target = root / "square" / f"was_circle_{index}.png"
        (root / "circle" / f"circle_{index:03d}.png").rename(target)
        moved.append(str(target))
    return scan_dataset(root), moved


def test_planted_mislabels_lead_the_suspects(planted):
    scan, moved = planted
    progress = []
    suspects = find_mislabels(scan, folds=3, epochs=6, seed=1,
                              on_progress=lambda done, total: progress.append((done, total)))

    found = [suspect for suspect in suspects if suspect.path in moved]
    assert len(found) >= PLANTED - 1, suspects
    for suspect in found:
        assert (suspect.folder_class, suspect.predicted_class) == ("square", "circle")
        assert suspect.confidence > 0.5 and suspect.folder_class_probability < suspect.confidence
    # They lead the list (a clean image or two may rank among them), and few of the 175
    # clean images are flagged at all.
    assert {suspect.path for suspect in found} <= {suspect.path for suspect in suspects[:PLANTED + 2]}
    clean = [suspect for suspect in suspects if suspect.path not in moved]
    assert len(clean) <= 5, clean
    confidences = [suspect.confidence for suspect in suspects]
    assert confidences == sorted(confidences, reverse=True)
    assert progress[0] == (0, 18) and progress[-1] == (18, 18)
    assert [done for done, _total in progress] == sorted(done for done, _total in progress)
    assert set(found[0].to_dict()) == {"path", "folder_class", "predicted_class", "confidence",
                                       "folder_class_probability"}


def test_stop_event_stops_the_search(planted):
    scan, _moved = planted
    stop = threading.Event()
    progress = []

    def on_progress(done, total):
        progress.append(done)
        if done >= 1:  # the first epoch of the first fold has ended
            stop.set()

    with pytest.raises(ScanCancelled, match="mislabel search cancelled"):
        find_mislabels(scan, folds=3, epochs=6, seed=1, on_progress=on_progress, stop_event=stop)
    assert max(progress) <= 2  # stopped within the fold's next epoch, not after all 18


def test_stratified_folds_spread_every_class():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 3)
    folds = stratified_folds(labels, 3, seed=4)
    for label, count in ((0, 10), (1, 7), (2, 3)):
        sizes = np.bincount(folds[labels == label], minlength=3)
        assert sizes.sum() == count and sizes.max() - sizes.min() <= 1
    assert np.bincount(folds).max() - np.bincount(folds).min() <= 1
    assert np.array_equal(folds, stratified_folds(labels, 3, seed=4))
    assert not np.array_equal(folds, stratified_folds(labels, 3, seed=5))


def test_too_few_images_or_folds_are_refused_with_the_class_named(tmp_path):
    root = make_shapes_dataset(tmp_path / "tiny", num_classes=2, per_class=12, seed=1)
    for path in sorted((root / "square").iterdir())[2:]:
        path.unlink()
    scan = scan_dataset(root)
    with pytest.raises(DatasetError, match=r"Class 'square' .*only 2 image\(s\).*at least 3\)"):
        find_mislabels(scan, folds=3)
    with pytest.raises(DatasetError, match="at least 2 folds"):
        find_mislabels(scan, folds=1)
