"""Out-of-fold mislabel search: planted mislabels are found, clean images mostly are not."""

import threading

import numpy as np
import pytest

from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.errors import Cancelled, DatasetError
from imgcls_desktop.core.mislabels import find_mislabels, stratified_folds

from synthetic import make_shapes_dataset

PLANTED = 5


@pytest.fixture(scope="module")
def planted(planted_mislabels):
    """conftest's planted dataset (5 circles filed as squares), scanned: (scan, moved paths)."""
    root, moved = planted_mislabels
    return scan_dataset(root), moved


def test_planted_mislabels_lead_the_suspects(planted, shared_mislabel_search):
    scan, moved = planted
    progress = []
    # The defaults: 3 folds, 10 epochs, seed 1337 (what `imgcls doctor --mislabels` and
    # the window run; the search is shared with their tests).
    suspects = shared_mislabel_search(scan, on_progress=lambda done, total: progress.append((done, total)))

    print("SUSPECTS", [(suspect.path.rsplit("/", 1)[-1], round(suspect.confidence, 6)) for suspect in suspects])
    # Every planted circle, and they lead the list: 5 of 5 at seeds 1, 2, 3 and 1337.
    assert [suspect.path in moved for suspect in suspects[:PLANTED]] == [True] * PLANTED, suspects
    for suspect in suspects[:PLANTED]:
        assert (suspect.folder_class, suspect.predicted_class) == ("square", "circle")
        assert suspect.confidence > 0.5 and suspect.folder_class_probability < suspect.confidence
    # Of the 175 clean images, at most one was flagged at any of those seeds.
    clean = suspects[PLANTED:]
    assert len(clean) <= 2, clean
    confidences = [suspect.confidence for suspect in suspects]
    assert confidences == sorted(confidences, reverse=True)
    assert progress[0] == (0, 30) and progress[-1] == (30, 30)
    assert [done for done, _total in progress] == sorted(done for done, _total in progress)
    assert set(suspects[0].to_dict()) == {"path", "folder_class", "predicted_class", "confidence",
                                          "folder_class_probability"}


def test_stop_event_stops_the_search(planted):
    scan, _moved = planted
    stop = threading.Event()
    progress = []

    def on_progress(done, total):
        progress.append(done)
        if done >= 1:  # the first epoch of the first fold has ended
            stop.set()

    with pytest.raises(Cancelled, match="mislabel search cancelled"):
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
