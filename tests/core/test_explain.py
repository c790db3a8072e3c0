"""Grad-CAM: the heat lies on the object that decides the class."""

import numpy as np
import pytest
from PIL import Image

from imgcls_desktop.core.explain import explain, grad_cam, overlay

from objects import CLASS_COLOURS, OBJECT, SIZE, make_object_image


def _held_out(count, seed):
    rng = np.random.default_rng(seed)
    names = list(CLASS_COLOURS)
    samples = []
    for i in range(count):
        name = names[i % 2]
        image, box = make_object_image(CLASS_COLOURS[name], rng)
        samples.append((image, box, sorted(CLASS_COLOURS).index(name)))
    return samples


def test_heat_concentrates_on_the_deciding_object(object_model):
    samples = _held_out(40, seed=99)
    correct, inside, outside = 0, [], []
    for image, (top, left), label in samples:
        explanation = explain(object_model, image)
        correct += explanation.predicted_index == label
        heat = explanation.heat
        mask = np.zeros(heat.shape, dtype=bool)
        mask[top:top + OBJECT, left:left + OBJECT] = True
        inside.append(heat[mask].mean())
        outside.append(heat[~mask].mean())
    accuracy = correct / len(samples)
    ratio = float(np.mean(inside) / max(np.mean(outside), 1e-6))
    print(f"held-out accuracy {accuracy:.3f}, heat inside/outside {ratio:.2f}")
    assert accuracy > 0.9
    assert ratio > 2.0
    # Most single images agree, not just the average.
    assert np.mean(np.asarray(inside) > 1.5 * np.asarray(outside)) > 0.8


def test_heat_map_shape_range_and_path_input(object_model, tmp_path):
    image, _box, _label = _held_out(1, seed=3)[0]
    path = tmp_path / "one.png"
    Image.fromarray(image, "RGB").save(path)
    from_path = grad_cam(object_model, path)
    from_array = grad_cam(object_model, image, class_index=0)
    for heat in (from_path, from_array):
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert heat.min() >= 0.0 and heat.max() <= 1.0


def test_overlay_is_uint8_rgb_at_the_image_size():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    heat = np.zeros((32, 32), dtype=np.float32)
    heat[:16, :16] = 1.0
    blended = overlay(image, heat, alpha=0.5)
    assert blended.shape == (48, 64, 3) and blended.dtype == np.uint8
    assert not np.array_equal(blended, image)
    assert np.array_equal(overlay(image, heat, alpha=0.0), image)


@pytest.mark.parametrize("preset", ["fast_cnn", "small_cnn", "mobilenet_v2"])
def test_grad_cam_runs_on_scratch_and_transfer_models(preset):
    from imgcls_desktop.core.model_io import LoadedModel
    from imgcls_desktop.core.models import build_model

    model = build_model(preset, 3, 32, weights=None)
    loaded = LoadedModel(model=model, path=None, class_names=["a", "b", "c"], image_size=(32, 32),
                         metadata={})
    image = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    for class_index in range(3):
        explanation = explain(loaded, image, class_index)
        assert explanation.heat.shape == (32, 32)
        assert np.all(np.isfinite(explanation.heat))
        assert explanation.heat.min() >= 0.0 and explanation.heat.max() <= 1.0
    if preset == "mobilenet_v2":
        # The nested backbone's own feature maps, not the 1x1 map it ends in.
        assert explanation.layer.startswith(model.layers[2].name + "/")
