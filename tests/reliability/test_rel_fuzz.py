"""Fuzzing (hypothesis): untrusted bytes and folders never escape as anything but our errors.

- images.validate_image on random and mutated image bytes: returns a size or raises ImageError.
- model_io.check_model_file on mutated .keras zips and on arbitrary JSON configs and
  metadata: returns dicts or raises ModelFileError.
- dataset.scan_dataset on random folder trees: raises only DatasetError, and every file is
  either counted or listed as a problem (nothing silently dropped).

Derandomised with a small example budget so the suite stays fast and reproducible.
"""

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hostile_inputs import read_members, tiny_model, write_members
from PIL import Image

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import (  # noqa: E402
    HealthCheck,
    given,
    settings,
    strategies as st,  # noqa: E402
)

try:  # keep hypothesis' cache out of the working tree
    from hypothesis.configuration import set_hypothesis_home_dir

    set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "imgcls-hypothesis")
except ImportError:
    pass

from imgcls_desktop.core.dataset import SPLIT_FOLDER_KEYS, scan_dataset  # noqa: E402
from imgcls_desktop.core.errors import DatasetError, ImageError, ModelFileError  # noqa: E402
from imgcls_desktop.core.images import MAX_PIXELS, SUPPORTED_EXTENSIONS, is_ignored_name, validate_image  # noqa: E402
from imgcls_desktop.core.model_io import check_model_file, save_model  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _seed_images():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    seeds = {}
    for suffix, options in ((".png", {}), (".jpg", {"quality": 80}), (".gif", {}), (".bmp", {}),
                            (".tif", {}), (".webp", {"lossless": True})):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=Image.registered_extensions()[suffix], **options)
        seeds[suffix] = buffer.getvalue()
    return seeds


SEED_IMAGES = _seed_images()


def _mutate(data, edits, cut):
    data = bytearray(data)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    if cut is not None and data:
        data = data[: cut % (len(data) + 1)]
    return bytes(data)


edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)
cuts = st.one_of(st.none(), st.integers(0, 1 << 20))


def _check_image_bytes(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{suffix}"
        path.write_bytes(data)
        try:
            width, height = validate_image(path)
        except ImageError as exc:
            assert exc.reason and exc.path == str(path)
        else:
            assert 0 < width * height <= MAX_PIXELS


@FUZZ
@given(data=st.binary(max_size=2048), suffix=st.sampled_from(sorted(SEED_IMAGES) + [".JPG", ".txt"]))
def test_validate_image_random_bytes(data, suffix):
    _check_image_bytes(data, suffix)


@FUZZ
@given(suffix=st.sampled_from(sorted(SEED_IMAGES)), edits=edits, cut=cuts)
def test_validate_image_mutated_real_images(suffix, edits, cut):
    _check_image_bytes(_mutate(SEED_IMAGES[suffix], edits, cut), suffix)


@pytest.fixture(scope="module")
def keras_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz_model") / "m.keras"
    save_model(tiny_model(num_classes=2, size=8), path, {"class_names": ["a", "b"]})
    return path.read_bytes()


def _check_model_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.keras"
        path.write_bytes(data)
        try:
            config, metadata = check_model_file(path)
        except ModelFileError as exc:
            assert str(exc)
        else:
            assert isinstance(config, dict) and isinstance(metadata, dict)


@FUZZ
@given(edits=edits, cut=cuts)
def test_check_model_file_mutated_zip(keras_bytes, edits, cut):
    _check_model_bytes(_mutate(keras_bytes, edits, cut))


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=4))
def test_check_model_file_mutated_zip_headers(keras_bytes, edits):
    # Aim at the central directory and local headers, where zipfile's own parsing lives.
    data = bytearray(keras_bytes)
    directory = data.rfind(b"PK\x01\x02", 0, len(data))
    tail = len(data) - max(directory - 200, 0)
    _check_model_bytes(_mutate(bytes(data), [(len(data) - tail + p % tail, v) for p, v in edits], None))


json_keys = st.sampled_from(["class_name", "module", "registered_name", "config", "layers", "name",
                             "inbound_nodes", "safe_mode", "function", "activation", "class_names",
                             "compile_config", "args", "value"])
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=False),
                         st.sampled_from(["keras", "keras.layers", "Dense", "Lambda", "builtins", "function",
                                          "__lambda__", "keras.config", "Functional", "", "a" * 30]))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(json_keys, children, max_size=5)), max_leaves=25)


@FUZZ
@given(config=json_values, metadata=json_values)
def test_check_model_file_arbitrary_json(keras_bytes, config, metadata):
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder) / "base.keras"
        base.write_bytes(keras_bytes)
        members = read_members(base)
        members["config.json"] = json.dumps(config).encode()
        members["imgcls_metadata.json"] = json.dumps(metadata).encode()
        _check_model_bytes(write_members(Path(folder) / "x.keras", members).read_bytes())


def test_check_model_file_deeply_nested_config(keras_bytes, tmp_path):
    base = tmp_path / "base.keras"
    base.write_bytes(keras_bytes)
    members = read_members(base)
    for depth in (900, 200_000):  # around and far beyond Python's recursion limit
        nested = "[" * depth + '{"class_name": "Lambda", "module": "keras.layers", "inbound_nodes": []}' \
            + "]" * depth
        members["config.json"] = ('{"class_name": "Functional", "config": ' + nested + "}").encode()
        with pytest.raises(ModelFileError):
            check_model_file(write_members(tmp_path / f"deep{depth}.keras", members))


# -- the dataset scanner ----------------------------------------------------------------------

names = st.sampled_from(["cat", "Dog", "train", "test", "VAL", "ünï cødé", "a b", ".hidden", "._x.jpg", "Thumbs.db",
                         ".DS_Store", "__MACOSX", "x.jpg", "y.PNG", "z.webp", "notes.txt", "noext", "data.jpeg",
                         "q.tif", "long" + "n" * 120 + ".png"])
contents = st.sampled_from(["good", "empty", "garbage", "truncated"])
trees = st.recursive(contents, lambda children: st.dictionaries(names, children, min_size=1, max_size=4),
                     max_leaves=12).filter(lambda tree: isinstance(tree, dict))
GOOD_PNG = SEED_IMAGES[".png"]


def _build(folder, tree):
    for name, child in tree.items():
        path = folder / name
        if isinstance(child, dict):
            path.mkdir()
            _build(path, child)
        else:
            data = {"good": GOOD_PNG, "empty": b"", "garbage": b"not an image at all",
                    "truncated": GOOD_PNG[: len(GOOD_PNG) // 2]}[child]
            path.write_bytes(data)


def _visible_files(root):
    found = set()
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not is_ignored_name(name)]
        found.update(str(Path(folder) / name) for name in files if not is_ignored_name(name))
    return found


def _is_loose_non_image(path, root):
    beside_classes = path.parent == root or (path.parent.parent == root
                                             and path.parent.name.lower() in SPLIT_FOLDER_KEYS)
    return beside_classes and path.suffix.lower() not in SUPPORTED_EXTENSIONS


@settings(max_examples=30, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(tree=trees)
def test_scan_dataset_never_drops_a_file_silently(tree):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "root"
        root.mkdir()
        _build(root, tree)
        try:
            scan = scan_dataset(root)
        except DatasetError as exc:
            assert str(root) in str(exc)
            return
        counted = {str(item.path) for items in scan.splits.values() for item in items}
        problems = {problem.path for problem in scan.problems}
        assert not counted & problems
        assert all(problem.reason for problem in scan.problems)
        for path in _visible_files(root):
            if _is_loose_non_image(Path(path), root):
                continue  # a README beside the class folders is documentation, not data
            # A file is counted, listed, or lies in a folder that is itself listed (a
            # non-split folder of a split layout).
            assert path in counted or path in problems or any(
                path.startswith(p + os.sep) for p in problems), path
        assert all(not is_ignored_name(name) for name in scan.class_names)
