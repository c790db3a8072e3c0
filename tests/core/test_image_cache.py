"""The disk cache of decoded images: same pixels as memory, reused, rebuilt when torn."""

import numpy as np

from imgcls_desktop.core import image_cache, pipeline
from imgcls_desktop.core.dataset import scan_dataset
from imgcls_desktop.core.image_cache import DiskImages


def _items(root):
    scan = scan_dataset(root)
    return scan.splits[scan.training_split_name()]


def test_disk_cache_holds_the_same_pixels_as_memory(shapes_dataset, monkeypatch):
    items = _items(shapes_dataset)
    pipeline.clear_cache()
    in_memory, labels, _ = pipeline.decode_items(items, 24)
    pipeline.clear_cache()
    monkeypatch.setattr(pipeline, "_MEMORY_LIMIT_BYTES", 0)
    on_disk, disk_labels, problems = pipeline.decode_items(items, 24)
    assert isinstance(on_disk, DiskImages)
    assert on_disk.shape == in_memory.shape and not problems
    np.testing.assert_array_equal(disk_labels, labels)
    np.testing.assert_array_equal(on_disk[:], in_memory)
    order = np.random.default_rng(0).permutation(len(items))
    np.testing.assert_array_equal(on_disk.take(order), in_memory[order])
    np.testing.assert_array_equal(on_disk[5], in_memory[5])
    np.testing.assert_array_equal(on_disk[3:40:7], in_memory[3:40:7])
    pipeline.clear_cache()


def test_a_second_run_reads_the_cache_instead_of_decoding(shapes_dataset, on_disk, monkeypatch):
    items = _items(shapes_dataset)
    first, _, _ = pipeline.decode_items(items, 20)
    pipeline.clear_cache()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_cache, "load_image", no_decoding)
    second, _, _ = pipeline.decode_items(items, 20)
    np.testing.assert_array_equal(second[:], first[:])


def test_a_torn_cache_file_is_decoded_again(shapes_dataset, on_disk):
    items = _items(shapes_dataset)
    first, _, _ = pipeline.decode_items(items, 16)
    expected = first[:].copy()
    pipeline.clear_cache()
    with open(first.path, "r+b") as data:
        data.truncate(first.nbytes // 2)  # as a crash or a full disk would leave it
    again, _, _ = pipeline.decode_items(items, 16)
    np.testing.assert_array_equal(again[:], expected)


def test_an_unreadable_file_is_reported_not_cached(shapes_dataset, on_disk, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(shapes_dataset, root)
    items = _items(root)
    items[2].path.write_bytes(b"not an image any more")
    images, labels, problems = pipeline.decode_items(items, 16)
    assert len(images) == len(items) - 1 == len(labels)
    assert [path for path, _reason in problems] == [str(items[2].path)]


def test_training_from_the_disk_cache_learns(shapes_dataset, on_disk):
    from imgcls_desktop.core.training import TrainingConfig, train

    result = train(shapes_dataset, TrainingConfig(preset="small_cnn", epochs=10, batch_size=16,
                                                 learning_rate=0.05, seed=3))
    assert result.best_val_accuracy >= 0.8
    assert "ece_before" in result.metadata["calibration"]  # calibration read the disk too


def test_old_cache_files_are_pruned_beyond_the_limit(tmp_path):
    import os
    import time

    for index in range(4):
        (tmp_path / f"k{index}.u8").write_bytes(b"x" * 1000)
        (tmp_path / f"k{index}.json").write_text("{}")
        os.utime(tmp_path / f"k{index}.u8", (time.time() - 100 + index, time.time() - 100 + index))
    image_cache.prune(tmp_path, keep={"k0.u8"}, max_bytes=2500)
    left = sorted(path.name for path in tmp_path.glob("*.u8"))
    assert left == ["k0.u8", "k3.u8"]  # oldest first, but never the one just written
    assert not (tmp_path / "k1.json").exists()
