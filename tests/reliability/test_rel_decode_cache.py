"""The on-disk decode cache is untrusted when read back (issue 17, case 6).

A data file overwritten with random bytes of the same size, one flipped byte, or a metadata
file with malformed JSON, wrong types or wrong shapes: each is detected, decoded again with a
warning naming the cache file, and never trained on. Row "decoded-image cache file altered or
truncated" of ../shared/docs/reliability.md.
"""

import json
import logging

import numpy as np

from imgcls_desktop.core import image_cache, pipeline
from imgcls_desktop.core.dataset import scan_dataset


def _items(root):
    scan = scan_dataset(root)
    return scan.splits[scan.training_split_name()]


def _first_run(items, size):
    images, labels, problems = pipeline.decode_items(items, size)
    expected = (images[:].copy(), labels.copy(), list(problems))
    pipeline.clear_cache()  # the next call must go to the disk, not to memory
    return images.path, images.path.with_suffix(".json"), expected


def _assert_rebuilt(items, size, expected, caplog, named):
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        images, labels, problems = pipeline.decode_items(items, size)
    np.testing.assert_array_equal(images[:], expected[0])
    np.testing.assert_array_equal(labels, expected[1])
    assert list(problems) == expected[2]
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert any(str(named) in message and "decoding the images again" in message for message in warnings), warnings


def test_data_file_overwritten_with_random_bytes_of_the_same_size_is_rebuilt(shapes_dataset, on_disk, caplog):
    items = _items(shapes_dataset)
    data_path, _meta_path, expected = _first_run(items, 24)
    size = data_path.stat().st_size
    data_path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    _assert_rebuilt(items, 24, expected, caplog, data_path)


def test_one_flipped_byte_is_detected(shapes_dataset, on_disk, caplog):
    items = _items(shapes_dataset)
    data_path, _meta_path, expected = _first_run(items, 20)
    with open(data_path, "r+b") as data:
        data.seek(data_path.stat().st_size // 2)
        byte = data.read(1)
        data.seek(-1, 1)
        data.write(bytes([byte[0] ^ 0x01]))
    _assert_rebuilt(items, 20, expected, caplog, data_path)


def test_a_verified_cache_is_reused_without_a_warning(shapes_dataset, on_disk, caplog, monkeypatch):
    items = _items(shapes_dataset)
    _data_path, _meta_path, expected = _first_run(items, 16)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(image_cache, "load_image", no_decoding)
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        images, _labels, _problems = pipeline.decode_items(items, 16)
    np.testing.assert_array_equal(images[:], expected[0])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _hostile_metadata(meta):
    """(name, replacement text) for a valid metadata document ``meta``."""
    def edited(**changes):
        return json.dumps({**meta, **changes})

    labels = meta["labels"]
    return [
        ("not JSON", "{\"format\": \"imgcls-decoded/2\", \"labels\": [0, 1"),
        ("empty", ""),
        ("a list", json.dumps([meta])),
        ("null", "null"),
        ("deep nesting", "[" * 100_000 + "]" * 100_000),
        ("labels as strings", edited(labels=[str(label) for label in labels])),
        ("labels as floats", edited(labels=[float(label) for label in labels])),
        ("labels as booleans", edited(labels=[bool(label) for label in labels])),
        ("a label outside the dataset", edited(labels=[99] + labels[1:])),
        ("a negative label", edited(labels=[-1] + labels[1:])),
        ("labels a dict", edited(labels={"0": 0})),
        ("one label too few", edited(labels=labels[:-1])),
        ("one label too many", edited(labels=labels + [0])),
        ("labels missing", json.dumps({k: v for k, v in meta.items() if k != "labels"})),
        ("problems malformed", edited(problems=[[1, 2, 3]])),
        ("problems a string", edited(problems="none")),
        ("image size a string", edited(image_size=str(meta["image_size"]))),
        ("another image size", edited(image_size=meta["image_size"] + 1)),
        ("old format", edited(format="imgcls-decoded/1")),
        ("checksums missing", json.dumps({k: v for k, v in meta.items() if k != "checksums"})),
        ("checksums of strings", edited(checksums={**meta["checksums"], "crc32": ["x"]})),
        ("checksums too few", edited(checksums={**meta["checksums"], "crc32": []})),
        ("checksums too many", edited(checksums={**meta["checksums"],
                                                 "crc32": meta["checksums"]["crc32"] * 2})),
        ("checksum out of range", edited(checksums={**meta["checksums"], "crc32": [2**40]})),
        ("another chunk size", edited(checksums={**meta["checksums"], "chunk_bytes": 4096})),
        ("wrong checksum value", edited(checksums={**meta["checksums"],
                                                   "crc32": [(meta["checksums"]["crc32"][0] + 1) % 2**32]})),
    ]


def test_hostile_cache_metadata_is_rebuilt_never_used(shapes_dataset, on_disk, caplog):
    items = _items(shapes_dataset)
    data_path, meta_path, expected = _first_run(items, 12)
    valid = meta_path.read_text()
    cases = _hostile_metadata(json.loads(valid))
    assert len(cases) > 20
    for name, text in cases:
        caplog.clear()
        meta_path.write_text(text)
        pipeline.clear_cache()
        try:
            _assert_rebuilt(items, 12, expected, caplog, meta_path if name != "wrong checksum value" else data_path)
        except Exception as exc:  # noqa: BLE001 - name the case that failed
            raise AssertionError(f"metadata case {name!r}: {type(exc).__name__}: {exc}") from exc
        assert json.loads(meta_path.read_text())["labels"] == json.loads(valid)["labels"], name


def test_a_missing_metadata_file_beside_a_data_file_is_rebuilt(shapes_dataset, on_disk, caplog):
    items = _items(shapes_dataset)
    _data_path, meta_path, expected = _first_run(items, 10)
    meta_path.unlink()
    _assert_rebuilt(items, 10, expected, caplog, meta_path)


def test_training_never_runs_on_a_corrupted_cache(shapes_dataset, on_disk, caplog):
    """The reported failure, end to end: garbage in the cache, a model that learns anyway."""
    from imgcls_desktop.core.dataset import split_train_validation
    from imgcls_desktop.core.training import TrainingConfig, train

    scan = scan_dataset(shapes_dataset)
    config = TrainingConfig(preset="small_cnn", epochs=8, batch_size=16, learning_rate=0.05, seed=3)
    train_items, val_items = split_train_validation(scan, config.validation_split, config.seed)
    for items in (train_items, val_items):
        images, _labels, _problems = pipeline.decode_items(items, 32)
        images.path.write_bytes(np.random.default_rng(1).integers(0, 256, images.nbytes, dtype=np.uint8).tobytes())
    pipeline.clear_cache()
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        result = train(scan, config)
    assert result.best_val_accuracy >= 0.8
    assert sum("decoded-image cache" in r.getMessage() for r in caplog.records) == 2


def test_checksums_cost_about_a_second_per_500_mb_at_most():
    """Chunked CRC-32 matches zlib over the whole stream cut anywhere, and is fast."""
    import time
    import zlib

    data = np.random.default_rng(2).integers(0, 256, 3 * image_cache.CHUNK_BYTES + 12345, dtype=np.uint8).tobytes()
    checksums = image_cache._ChunkChecksums()
    for start in range(0, len(data), 1_000_003):
        checksums.update(data[start:start + 1_000_003])
    chunks = [data[i:i + image_cache.CHUNK_BYTES] for i in range(0, len(data), image_cache.CHUNK_BYTES)]
    assert checksums.finish() == [zlib.crc32(chunk) for chunk in chunks]
    started = time.perf_counter()
    for chunk in chunks:
        zlib.crc32(chunk)
    seconds_per_500_mb = (time.perf_counter() - started) * 500 * 1024**2 / len(data)
    assert seconds_per_500_mb < 5.0  # about 0.2-0.8 s measured; generous for a busy machine
