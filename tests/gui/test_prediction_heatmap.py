"""Heat maps in the prediction pane: the overlay shown lies on the object that decides the class."""

import numpy as np
import pytest
from PIL import Image
from PySide6.QtGui import QImage

from imgcls_desktop.gui.prediction_pane import PREVIEW_SIZE, PredictionPane
from imgcls_desktop.gui.self_test import drop_files

from objects import CLASS_COLOURS, OBJECT, SIZE, make_object_image as _object_image


@pytest.fixture
def held_out(tmp_path):
    """Six new images: [(path, class name, (top, left) of the square)]."""
    rng = np.random.default_rng(99)
    samples = []
    for i in range(6):
        name = sorted(CLASS_COLOURS)[i % 2]
        image, box = _object_image(CLASS_COLOURS[name], rng)
        path = tmp_path / f"{i}_{name}.png"
        Image.fromarray(image, "RGB").save(path)
        samples.append((str(path), name, box))
    return samples


@pytest.fixture
def pane(qtbot):
    widget = PredictionPane()
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    widget.show()
    return widget


def _pixels(image):
    """A QImage (or QPixmap) as a (height, width, 3) uint8 array."""
    if not isinstance(image, QImage):
        image = image.toImage()
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def _rows(pane):
    return [row for _item, row in pane._items_and_rows()]


def _classify(pane, qtbot, paths):
    with qtbot.waitSignal(pane.predictions_ready, timeout=60000):
        drop_files(pane, paths)
    qtbot.waitUntil(lambda: not pane.is_busy(), timeout=60000)


def _wait_for_heat(pane, qtbot, paths):
    qtbot.waitUntil(lambda: not pane.is_explaining() and all(pane.heat_map(p) is not None for p in paths),
                    timeout=60000)


def test_heat_maps_lie_on_the_deciding_object_and_toggle_off(pane, object_model, held_out, qtbot):
    pane.set_model(object_model)
    paths = [path for path, _name, _box in held_out]
    _classify(pane, qtbot, paths)
    rows = _rows(pane)
    plain = {row.prediction.path: _pixels(row.picture.pixmap()) for row in rows}
    # Off: the plain path computes no heat map at all.
    assert not pane.is_explaining() and all(pane.heat_map(p) is None for p in paths)
    assert all(row.heat_label.isHidden() for row in rows)

    with qtbot.waitSignal(pane.heatmaps_ready, timeout=60000):
        pane.heatmap_toggle.click()
    assert pane.heatmaps_enabled() and pane.preview_panel.isVisible()
    _wait_for_heat(pane, qtbot, paths)

    inside_heat, outside_heat, warm_inside, warm_outside = [], [], [], []
    for row, (path, name, (top, left)) in zip(rows, held_out):
        heat_map = pane.heat_map(path)
        assert heat_map.ok, heat_map.error
        assert row.prediction.label == name  # a learnt model, so the map explains a right answer
        assert heat_map.label == row.prediction.label
        assert not row.heat_label.isHidden() and row.heat_label.text() == f"why: <b>{name}</b>"
        shown = _pixels(row.picture.pixmap())
        assert shown.shape == plain[path].shape and not np.array_equal(shown, plain[path])

        mask = np.zeros((SIZE, SIZE), dtype=bool)
        mask[top:top + OBJECT, left:left + OBJECT] = True
        inside_heat.append(heat_map.heat[mask].mean())
        outside_heat.append(heat_map.heat[~mask].mean())
        # What the user sees: undo the blend to get the colour-map colour; "jet" runs from
        # blue (no evidence) to red (strong), so red minus blue is warmer on the square.
        colour = (shown.astype(float) - 0.55 * plain[path]) / 0.45
        warmth = colour[..., 0] - colour[..., 2]
        scale = shown.shape[0] // SIZE
        big_mask = np.kron(mask, np.ones((scale, scale), dtype=bool))
        warm_inside.append(warmth[big_mask].mean())
        warm_outside.append(warmth[~big_mask].mean())
    ratio = np.mean(inside_heat) / max(np.mean(outside_heat), 1e-6)
    print(f"heat inside/outside {ratio:.2f}; warmth inside {np.mean(warm_inside):.0f} "
          f"outside {np.mean(warm_outside):.0f}")
    assert ratio > 2.0
    assert np.mean(np.asarray(inside_heat) > 1.5 * np.asarray(outside_heat)) >= 5 / 6
    assert np.mean(warm_inside) > np.mean(warm_outside) + 60

    # The selected result, larger, with the class it explains.
    pane.results_list.setCurrentRow(2)
    preview = pane.preview_label.pixmap()
    assert max(preview.width(), preview.height()) == PREVIEW_SIZE
    assert f"why: <b>{held_out[2][1]}</b>" in pane.preview_caption.text()

    pane.heatmap_toggle.click()
    assert not pane.heatmaps_enabled() and not pane.preview_panel.isVisible()
    for row in rows:
        assert np.array_equal(_pixels(row.picture.pixmap()), plain[row.prediction.path])
        assert row.heat_label.isHidden()

    # On again: the maps come from the cache, at once.
    pane.heatmap_toggle.click()
    assert not pane.is_explaining()
    assert all(not np.array_equal(_pixels(row.picture.pixmap()), plain[row.prediction.path]) for row in rows)


def test_a_file_without_heat_map_says_why_in_its_own_row(pane, object_model, held_out, qtbot, error_dialogs):
    pane.set_model(object_model)
    paths = [path for path, _name, _box in held_out[:3]]
    _classify(pane, qtbot, paths)
    # The file breaks after it was classified: only its heat map can fail now.
    with open(paths[1], "wb") as handle:
        handle.write(b"\x89PNG\r\n\x1a\n no longer an image")
    pane.set_heatmaps_enabled(True)
    _wait_for_heat(pane, qtbot, paths)
    rows = _rows(pane)
    assert [pane.heat_map(p).ok for p in paths] == [True, False, True]
    assert rows[1].heat_label.text() == "no heat map"
    assert paths[1] in rows[1].heat_label.toolTip()
    assert rows[0].heat_label.text().startswith("why:") and rows[2].heat_label.text().startswith("why:")
    pane.results_list.setCurrentRow(1)
    assert pane.preview_label.text().startswith("No heat map:")
    assert error_dialogs == []


def test_heat_maps_are_recomputed_for_a_new_model_and_wait_for_training(pane, object_model, held_out, qtbot):
    from imgcls_desktop.core.model_io import LoadedModel

    pane.set_model(object_model)
    paths = [path for path, _name, _box in held_out[:2]]
    _classify(pane, qtbot, paths)
    pane.set_heatmaps_enabled(True)
    _wait_for_heat(pane, qtbot, paths)
    first = pane.heat_map(paths[0])

    # Another model (the same network, so the maps must agree): the cache starts again.
    other = LoadedModel(model=object_model.model, path=object_model.path, class_names=list(object_model.class_names),
                        image_size=object_model.image_size, metadata=dict(object_model.metadata))
    pane.set_training_active(True)
    pane.set_model(other)
    assert pane.heat_map(paths[0]) is None
    assert all(row.heat_label.text() == "heat map…" for row in _rows(pane))
    assert pane.is_explaining() and pane._heat_job is None  # waits while a model trains
    with qtbot.waitSignal(pane.heatmaps_ready, timeout=60000):
        pane.set_training_active(False)
    _wait_for_heat(pane, qtbot, paths)
    again = pane.heat_map(paths[0])
    assert again is not first and np.allclose(again.heat, first.heat, atol=1e-4)

    pane.set_model(None)
    assert all(row.heat_label.isHidden() for row in _rows(pane))
