"""Photos decode fast (draft mode, every core) and still identically for training and prediction."""

import threading

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from imgcls_desktop.core import pipeline
from imgcls_desktop.core.dataset import ImageItem
from imgcls_desktop.core.images import load_image, open_image


def _photo(path, size=(1024, 768), seed=0):
    rng = np.random.default_rng(seed)
    # Smooth gradients and a few blobs: what draft mode must keep (noise it would not).
    y, x = np.mgrid[0:size[1], 0:size[0]]
    base = np.stack([x * 255 / size[0], y * 255 / size[1], (x + y) * 127 / sum(size)], axis=-1)
    for _ in range(5):
        cx, cy, r = rng.integers(100, 600), rng.integers(100, 500), rng.integers(40, 120)
        base[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    Image.fromarray(base.astype(np.uint8)).save(path, quality=92)
    return path


def test_a_large_jpeg_is_decoded_in_draft_mode_close_to_a_full_decode(tmp_path, monkeypatch):
    path = _photo(tmp_path / "big.jpg")
    calls = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        calls.append(size)
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    small = load_image(path, (64, 64))
    assert calls == [(64, 64)]
    assert open_image(path, 64).size == (128, 96)  # 1/8 scale keeps both sides >= 64
    full = np.asarray(open_image(path).resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
    assert small.shape == (64, 64, 3)
    assert np.abs(small.astype(np.float32) - full).mean() < 4.0  # of 255: the same picture


def test_png_and_full_size_loads_do_not_use_draft(tmp_path, monkeypatch):
    png = tmp_path / "a.png"
    Image.new("RGB", (300, 200), (10, 200, 30)).save(png)
    calls = []
    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", lambda self, mode, size: calls.append(size))
    load_image(png, (64, 64))
    open_image(_photo(tmp_path / "b.jpg", size=(320, 240)))
    assert calls == []


def test_parallel_decoding_keeps_order_reports_bad_files_and_stops(tmp_path, monkeypatch):
    paths = [_photo(tmp_path / f"{i}.jpg", size=(200, 150), seed=i) for i in range(12)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    paths.insert(5, bad)
    items = [ImageItem(path, index % 3) for index, path in enumerate(paths)]
    pipeline.clear_cache()
    monkeypatch.setattr(pipeline, "decode_workers", lambda: 4)
    images, labels, problems = pipeline.decode_items(items, 32)
    expected = [load_image(path, (32, 32)) for path in paths if path != bad]
    assert len(images) == 12 and all(np.array_equal(a, b) for a, b in zip(images, expected))
    assert labels.tolist() == [item.label for item in items if item.path != bad]
    assert [p for p, _ in problems] == [str(bad)]

    stop = threading.Event()
    stop.set()
    pipeline.clear_cache()
    with pytest.raises(pipeline.Cancelled):
        list(pipeline.decoded_in_parallel(paths, 32, stop_event=stop, workers=4))
