"""Bad data: odd formats seen identically by training and prediction, hostile folders,
files that vanish between scan and training, the decompression bomb, empty classes.

Rows of ../shared/docs/reliability.md ("Dataset folder", "Training faults") and the
"Bad data" bullets of issue 5.
"""

import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import bomb_png, odd_format_images, tiny_model, write_image
from PIL import Image

from imgcls_desktop.core import inference, pipeline, training
from imgcls_desktop.core.dataset import collect_image_files, scan_dataset
from imgcls_desktop.core.errors import DatasetError, ImageError
from imgcls_desktop.core.images import validate_image
from imgcls_desktop.core.model_io import LoadedModel
from imgcls_desktop.core.training import TrainingConfig, train
from tests.synthetic import make_shapes_dataset

REPO = Path(__file__).resolve().parents[2]
IMAGE_SIZE = 32


def _cli(capsys, *argv):
    from imgcls_desktop.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def odd_dataset(tmp_path_factory):
    """class 'odd' holds every odd format; class 'plain' two ordinary PNGs."""
    root = tmp_path_factory.mktemp("odd_dataset")
    files = odd_format_images(root / "odd")
    write_image(root / "plain" / "a.png", (10, 200, 10))
    write_image(root / "plain" / "b.png", (10, 10, 200))
    return root, files


def test_every_odd_format_is_read_not_dropped(odd_dataset):
    root, files = odd_dataset
    scan = scan_dataset(root)
    assert scan.problems == []
    counted = {str(item.path) for item in scan.splits["all"]}
    for kind, path in files.items():
        assert str(path) in counted, f"{kind} was dropped"
    assert scan.counts()["all"] == {"odd": len(files), "plain": 2}


def test_training_and_prediction_tensors_identical_for_every_odd_format(odd_dataset, monkeypatch):
    root, files = odd_dataset
    kinds = list(files)
    paths = [files[kind] for kind in kinds]
    scan = scan_dataset(root)
    by_path = {str(item.path): item for item in scan.splits["all"]}
    items = [by_path[str(path)] for path in paths]

    # Training side: the decode step and the tf.data pipeline fit() reads.
    pipeline.clear_cache()
    train_pixels, labels, problems = pipeline.decode_items(items, IMAGE_SIZE)
    assert problems == [] and train_pixels.shape == (len(paths), IMAGE_SIZE, IMAGE_SIZE, 3)
    dataset = pipeline.make_dataset(train_pixels, labels, 2, batch_size=len(paths), shuffle=False)
    train_tensors = next(iter(dataset))[0].numpy()

    # Prediction side: Predictor.predict_paths as the CLI and the window call it; we record
    # what it loads and what it feeds the model.
    loaded = LoadedModel(model=tiny_model(num_classes=2, size=IMAGE_SIZE), path=None,
                         class_names=["odd", "plain"], image_size=(IMAGE_SIZE, IMAGE_SIZE), metadata={})
    predictor = inference.Predictor(loaded, batch_size=64)
    seen, fed = {}, []
    real_load = pipeline.load_image  # prediction decodes with the pipeline, as training does

    def recording_load(path, image_size):
        array = real_load(path, image_size)
        seen[str(path)] = array.copy()
        return array

    real_call = predictor._call

    def recording_call(batch):
        fed.append(np.asarray(batch).copy())
        return real_call(batch)

    monkeypatch.setattr(pipeline, "load_image", recording_load)
    predictor._call = recording_call
    results = predictor.predict_paths(paths)
    assert all(result.ok for result in results), [r.error for r in results if not r.ok]
    assert len(fed) == 1
    prediction_tensors = fed[0]

    for index, kind in enumerate(kinds):
        assert np.array_equal(seen[str(paths[index])], train_pixels[index]), kind
        assert np.array_equal(prediction_tensors[index], train_tensors[index]), kind
    assert prediction_tensors.dtype == train_tensors.dtype == np.float32

    # And the shared function decodes them right (not just identically wrong).
    deep = train_pixels[kinds.index("16-bit PNG")]
    assert (deep == 255).mean() < 0.1 and deep.max() > 200  # scaled, not clipped to white
    phone = train_pixels[kinds.index("EXIF orientation 6 JPEG")]
    assert phone[2, 16, 0] > 200 and phone[2, 16, 1] < 60  # the left stripe is now on top
    assert phone[28, 2, 0] < 60  # and no longer down the left edge
    with Image.open(files["animated GIF"]) as gif:
        first = np.asarray(gif.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
    assert np.array_equal(train_pixels[kinds.index("animated GIF")], first)


def _hostile_dataset(root):
    """Good images plus every bad file and clutter the issue lists. Returns expectations."""
    make_shapes_dataset(root, num_classes=2, per_class=6, size=32, seed=5)
    circle = root / "circle"
    good = (circle / "circle_000.png").read_bytes()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(circle / "full.jpg", quality=90)
    jpeg = (circle / "full.jpg").read_bytes()
    (circle / "full.jpg").unlink()
    bad = {
        "zero.jpg": (b"", "empty file"),
        "cut.jpg": (jpeg[: len(jpeg) // 2], "damaged"),
        "cut.png": (good[: len(good) // 2], ("damaged", "not an image")),
        "notes.jpg": (b"shopping list: eggs, milk\n" * 20, "not an image file"),
        "vector.png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n", "not an image file"),
        "document.png": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
                         "not an image file"),
    }
    for name, (data, _reason) in bad.items():
        (circle / name).write_bytes(data)
    bomb_png(circle / "bomb.png")
    bad["bomb.png"] = (None, "image is too large")
    # Clutter: never a class, never a problem.
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (circle / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "__MACOSX" / "circle").mkdir(parents=True)
    (root / "__MACOSX" / "circle" / "._x.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    (circle / "._x.jpg").write_bytes(b"\0\5\26\7AppleDouble")
    os.symlink(root, root / "square" / "loop", target_is_directory=True)
    return bad


def test_inspect_lists_every_hostile_file_with_its_reason(capsys, tmp_path):
    root = tmp_path / "hostile"
    bad = _hostile_dataset(root)
    code, out, err = _cli(capsys, "inspect", root, "--json")
    assert code == 3, err
    report = json.loads(out)
    reasons = {Path(p["path"]).name: p["reason"] for p in report["problems"]}
    for name, (_data, expected) in bad.items():
        expected = (expected,) if isinstance(expected, str) else expected
        assert any(text in reasons[name] for text in expected), (name, reasons.get(name))
    assert "loop" in reasons["loop"]
    assert set(reasons) == set(bad) | {"loop"}  # nothing else, clutter never listed
    assert report["class_names"] == ["circle", "square"]
    assert report["splits"]["all"] == {"circle": 6, "square": 6}


def test_training_proceeds_on_the_rest_and_names_what_it_skipped(capsys, tmp_path):
    root = tmp_path / "hostile"
    bad = _hostile_dataset(root)
    out_file = tmp_path / "m.keras"
    code, out, err = _cli(capsys, "train", root, "--out", out_file, "--preset", "tutorial_cnn",
                          "--epochs", "1", "--batch-size", "8", "--json")
    assert code == 3, err
    assert out_file.exists() and json.loads(out)["epochs_run"] == 1
    # Named once each: by the scan ("skipping") or, for files only decoding finds, after it.
    skipped = [line for line in err.splitlines() if line.startswith(("imgcls: skipping ", "imgcls: skipped "))]
    for name in bad:
        assert any(str(root / "circle" / name) in line for line in skipped), name
    assert "Traceback" not in err


def test_bomb_is_refused_without_a_large_allocation(tmp_path):
    path = bomb_png(tmp_path / "bomb.png", 30000, 30000)
    assert path.stat().st_size < 2000
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="too large"):
            validate_image(path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5 * 1024**2

    # Pillow's buffers are not traced, so also prove it in a process that could not hold the
    # decoded image (2.7 GB) at all, with Pillow's own bomb check off: only our cap stands.
    script = textwrap.dedent(f"""
        import resource, sys
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = None
        from imgcls_desktop.core.errors import ImageError
        from imgcls_desktop.core.images import validate_image
        resource.setrlimit(resource.RLIMIT_AS, (1536 * 1024**2, resource.RLIM_INFINITY))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            validate_image({str(path)!r})
            print("DECODED")
        except ImageError as exc:
            print("REFUSED", exc.reason)
        print("GROWTH_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())
    assert lines["REFUSED"].startswith("image is too large (30000 x 30000 pixels")
    assert int(lines["GROWTH_KB"]) < 50 * 1024


def test_symlink_loop_in_a_prediction_folder_terminates(tmp_path):
    folder = tmp_path / "photos"
    write_image(folder / "a.png")
    write_image(folder / "sub" / "b.png", (1, 2, 3))
    os.symlink(folder, folder / "sub" / "again", target_is_directory=True)
    os.symlink(folder / "sub", folder / "sideways", target_is_directory=True)
    found = collect_image_files([folder])
    assert sorted(p.name for p in found) == ["a.png", "b.png"]


def _no_model_built(monkeypatch):
    built = []
    real = training.build_model
    monkeypatch.setattr(training, "build_model", lambda *a, **k: built.append(a) or real(*a, **k))
    return built


def test_empty_class_refused_before_training_naming_the_class(tmp_path, monkeypatch, capsys):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=4, size=32)
    (root / "zebra").mkdir()
    built = _no_model_built(monkeypatch)
    with pytest.raises(DatasetError) as caught:
        train(root, TrainingConfig(preset="tutorial_cnn", epochs=1))
    assert "'zebra'" in str(caught.value) and str(root / "zebra") in str(caught.value)
    assert built == []
    code, _out, err = _cli(capsys, "train", root, "--out", tmp_path / "m.keras", "--preset", "tutorial_cnn")
    assert code == 1 and "'zebra'" in err and err.count("\n") == 1
    assert not (tmp_path / "m.keras").exists()


def test_validation_split_leaving_a_class_empty_is_refused_before_training(tmp_path, monkeypatch):
    root = make_shapes_dataset(tmp_path / "flat", num_classes=2, per_class=4, size=32)
    write_image(root / "lonely" / "only.png", (3, 4, 5))
    built = _no_model_built(monkeypatch)
    with pytest.raises(DatasetError, match="'lonely' has only 1 image"):
        train(root, TrainingConfig(preset="tutorial_cnn", epochs=1, validation_split=0.2))

    # A val/ folder that lacks a class leaves that class out of validation: refused too.
    split = make_shapes_dataset(tmp_path / "split", num_classes=2, per_class=4, size=32, layout="split",
                                test_per_class=1)
    write_image(split / "val" / "circle" / "v.png", (200, 0, 0))
    with pytest.raises(DatasetError) as caught:
        train(split, TrainingConfig(preset="tutorial_cnn", epochs=1))
    assert "'square'" in str(caught.value) and str(split / "val") in str(caught.value)
    assert built == []


def test_files_deleted_or_damaged_after_the_scan_are_skipped_and_reported(tmp_path):
    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=8, size=32)
    scan = scan_dataset(root)
    deleted = root / "circle" / "circle_003.png"
    damaged = root / "square" / "square_005.png"
    deleted.unlink()
    damaged.write_bytes(b"overwritten by a sync client")
    mid_epoch = root / "square" / "square_001.png"
    events = []

    def on_progress(event):
        events.append(event.kind)
        if event.kind == "batch" and mid_epoch.exists():
            mid_epoch.unlink()  # unreadable mid-epoch: the pixels are already in memory

    result = train(scan, TrainingConfig(preset="tutorial_cnn", epochs=2, batch_size=4, validation_split=0),
                   on_progress=on_progress)
    skipped = dict(result.skipped_files)
    assert skipped == {str(deleted): "file not found", str(damaged): skipped[str(damaged)]}
    assert skipped[str(damaged)].startswith("not an image file")
    assert result.epochs_run == 2 and events.count("epoch") == 2
    assert result.metadata["training"]["num_train_images"] == 14


def test_cli_train_reports_a_file_deleted_after_its_scan(tmp_path, monkeypatch, capsys):
    from imgcls_desktop.core import dataset

    root = make_shapes_dataset(tmp_path / "data", num_classes=2, per_class=6, size=32)
    victim = root / "square" / "square_002.png"
    real_scan = dataset.scan_dataset

    def scan_then_delete(*args, **kwargs):
        scan = real_scan(*args, **kwargs)
        victim.unlink()
        return scan

    monkeypatch.setattr(dataset, "scan_dataset", scan_then_delete)
    out_file = tmp_path / "m.keras"
    code, _out, err = _cli(capsys, "train", root, "--out", out_file, "--preset", "tutorial_cnn",
                           "--epochs", "1", "--batch-size", "4", "--json")
    assert code == 3, err
    assert out_file.exists()
    assert f"imgcls: skipped {victim}: file not found" in err.splitlines()


def test_decode_cache_never_serves_a_changed_or_deleted_file(tmp_path):
    from imgcls_desktop.core.dataset import ImageItem

    path = write_image(tmp_path / "a.png", (255, 0, 0))
    other = write_image(tmp_path / "b.png", (0, 0, 255))
    items = [ImageItem(path, 0), ImageItem(other, 1)]
    first, _labels, problems = pipeline.decode_items(items, 8)
    assert problems == [] and first[0, 0, 0].tolist() == [255, 0, 0]
    write_image(path, (0, 255, 0), size=(33, 33))  # edited between two runs
    second, _labels, _problems = pipeline.decode_items(items, 8)
    assert second[0, 0, 0].tolist() == [0, 255, 0]
    other.unlink()
    third, labels, problems = pipeline.decode_items(items, 8)
    assert len(third) == 1 and labels.tolist() == [0]
    assert problems == [(str(other), "file not found")]
