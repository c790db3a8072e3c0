"""Sets whose decoded pixels exceed the cache's disk budget are streamed (issue 14)."""

import numpy as np
import pytest

from imgcls_desktop.core import pipeline
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.image_cache import StreamedImages
from imgcls_desktop.core.images import load_image


@pytest.fixture
def over_budget(monkeypatch, tmp_path):
    """Too big for memory (0 bytes) and for a 1 KB disk cache, in an empty cache folder."""
    monkeypatch.setattr(pipeline, "_MEMORY_LIMIT_BYTES", 0)
    monkeypatch.setenv("IMGCLS_CACHE_MAX_GB", str(1024 / 1024**3))
    monkeypatch.setenv("IMGCLS_CACHE_DIR", str(tmp_path / "cache"))
    pipeline.clear_cache()
    return tmp_path / "cache"


def test_over_budget_sets_stream_exactly_the_decoded_pixels(shapes_dataset, over_budget):
    items = _items(scan_dataset(shapes_dataset))[:20]
    images, labels, problems = pipeline.decode_items(items, 24)
    assert isinstance(images, StreamedImages) and problems == []
    assert images.shape == (20, 24, 24, 3) and list(labels) == [item.label for item in items]
    assert not over_budget.exists() or not any(over_budget.iterdir())  # nothing written to disk
    np.testing.assert_array_equal(images[3], load_image(items[3].path, (24, 24)))
    dataset = pipeline.make_dataset(images, labels, 3, 8, shuffle=True, seed=1, epochs=1)
    seen = 0
    for x, _y in dataset:
        seen += len(x)
        first = np.asarray(x[0]).astype(np.uint8)
        # every streamed image is one of the set's, decoded the way prediction decodes
        assert any(np.array_equal(first, images[i]) for i in range(20))
    assert seen == 20


def test_a_file_gone_mid_run_is_a_black_image_and_named(shapes_dataset, over_budget, tmp_path, caplog):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(shapes_dataset, root)
    items = _items(scan_dataset(root))[:6]
    images, _labels, _problems = pipeline.decode_items(items, 16)
    items[2].path.write_bytes(b"not an image any more")
    batch = images.take([1, 2])
    assert batch[1].max() == 0 and batch[0].max() > 0
    assert [str(path) for path, _reason in images.problems] == [str(items[2].path)]
    assert str(items[2].path.name) in caplog.text


def test_training_on_a_streamed_set_learns(shapes_dataset, over_budget):
    from imgcls_desktop.core.training import TrainingConfig, train

    result = train(shapes_dataset, TrainingConfig(preset="small_cnn", epochs=6, batch_size=16,
                                                  learning_rate=0.05, seed=3, distribute="off"))
    assert result.best_val_accuracy >= 0.7
    assert not over_budget.exists() or not any(over_budget.iterdir())


def _items(scan):
    # Every third item, so each class appears (items come class by class).
    return scan.splits[scan.training_split_name()][::3]
