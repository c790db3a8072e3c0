"""Real photos from ../shared (run with -m slow): the shipped Lite0 on TrashNet and CIFAR-10."""

import tarfile
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
BOTTLES = {440, 720, 737, 898, 907}


@pytest.fixture(scope="module")
def trashnet_glass(tmp_path_factory):
    """TrashNet's 100 glass test photos, unpacked from ../shared (skips when it is absent)."""
    archive_path = SHARED / "trashnet-jpg.tar.gz"
    if not archive_path.exists():
        pytest.skip(f"TrashNet archive not found at {archive_path}")
    target = tmp_path_factory.mktemp("trashnet")
    with tarfile.open(archive_path) as archive:
        members = [m for m in archive.getmembers() if "/test/glass/" in m.name and m.isfile()]
        archive.extractall(target, members=members, filter="data")
    return sorted(target.glob("trashnet/test/glass/*.jpg"))


def test_most_trashnet_glass_photos_get_a_bottle_in_the_imagenet_top5(trashnet_glass):
    from imgcls_desktop.core.efficientnet_lite import efficientnet_lite0
    from imgcls_desktop.core.images import load_image

    assert len(trashnet_glass) == 100
    model = efficientnet_lite0(224, include_top=True)
    images = np.stack([load_image(path, (224, 224)) for path in trashnet_glass]).astype(np.float32)
    probabilities = np.concatenate([np.asarray(model(images[i:i + 50], training=False)) for i in range(0, 100, 50)])
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    assert sum(bool(set(row) & BOTTLES) for row in top5) > 50


def test_imagenet_features_beat_random_ones_on_cifar10(cifar10_root):
    """A linear head (nearest class mean) on 2,000 training and 1,000 test images at 96 px."""
    from imgcls_desktop.core.dataset import scan_dataset
    from imgcls_desktop.core.efficientnet_lite import build_efficientnet_lite0, efficientnet_lite0
    from imgcls_desktop.core.pipeline import decode_items

    scan = scan_dataset(cifar10_root, validate=False, find_duplicates=False)
    x_train, y_train, _ = decode_items(scan.splits["train"][::25], 96)
    x_test, y_test, _ = decode_items(scan.splits["test"][::10], 96)

    def accuracy(backbone):
        def features(x):
            f = np.concatenate([np.asarray(backbone(x[i:i + 100].astype(np.float32), training=False))
                                for i in range(0, len(x), 100)])
            return f / np.linalg.norm(f, axis=1, keepdims=True)

        train_f, test_f = features(x_train), features(x_test)
        means = np.stack([train_f[y_train == c].mean(0) for c in range(10)])
        return float(((test_f @ means.T).argmax(1) == y_test).mean())

    imagenet, random = accuracy(efficientnet_lite0(96)), accuracy(build_efficientnet_lite0(96))
    assert imagenet > 0.6 and imagenet - random > 0.25, (imagenet, random)
