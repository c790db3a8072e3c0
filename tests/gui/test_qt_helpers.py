"""gui/_qt.py: the one numpy-to-QImage conversion every view uses, and widget naming."""

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QLabel

from imgcls_desktop.gui._qt import named, pixmap_from_array, qimage_from_array


def _pixels(image):
    """(height, width, 3) uint8 RGB read back from a QImage, whatever its format."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, :3 * image.width()].reshape(image.height(), image.width(), 3).copy()


def _random_rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_rgb_keeps_shape_and_channel_order(qapp):
    array = np.zeros((5, 7, 3), dtype=np.uint8)
    array[0, 0] = (255, 0, 0)
    array[4, 6] = (0, 0, 255)
    array[2, 3] = (10, 200, 30)
    image = qimage_from_array(array)
    assert (image.width(), image.height()) == (7, 5)
    assert image.format() == QImage.Format.Format_RGB888
    assert image.pixelColor(0, 0).getRgb()[:3] == (255, 0, 0)
    assert image.pixelColor(6, 4).getRgb()[:3] == (0, 0, 255)
    assert image.pixelColor(3, 2).getRgb()[:3] == (10, 200, 30)
    # A width whose rows are not a multiple of 4 bytes (7 * 3 = 21): no skew between rows.
    random = _random_rgb(5, 7)
    np.testing.assert_array_equal(_pixels(qimage_from_array(random)), random)


@pytest.mark.parametrize("view", ["flipped", "transposed", "strided", "channel_slice"])
def test_non_contiguous_arrays_are_copied_as_they_look(qapp, view):
    base = _random_rgb(12, 10, seed=1)
    rgba = np.dstack([base, np.full((12, 10), 7, dtype=np.uint8)])
    array = {"flipped": base[:, ::-1],
             "transposed": base.transpose(1, 0, 2),
             "strided": base[::2, ::3],
             "channel_slice": rgba[..., :3]}[view]
    assert not array.flags.c_contiguous
    np.testing.assert_array_equal(_pixels(qimage_from_array(array)), array)


def test_the_image_owns_its_pixels(qapp):
    array = _random_rgb(4, 6, seed=2)
    expected = array.copy()
    image = qimage_from_array(array)
    array[:] = 0
    del array
    np.testing.assert_array_equal(_pixels(image), expected)


def test_grayscale_and_rgba(qapp):
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5) * 12
    for array in (grey, grey[..., None]):
        image = qimage_from_array(array)
        assert image.format() == QImage.Format.Format_Grayscale8
        assert (image.width(), image.height()) == (5, 4)
        np.testing.assert_array_equal(_pixels(image), np.repeat(grey[..., None], 3, axis=2))
    rgba = np.zeros((3, 2, 4), dtype=np.uint8)
    rgba[1, 0] = (1, 2, 3, 128)
    image = qimage_from_array(rgba)
    assert image.format() == QImage.Format.Format_RGBA8888
    assert image.pixelColor(0, 1).getRgb() == (1, 2, 3, 128)


def test_rejects_what_it_cannot_show_faithfully(qapp):
    with pytest.raises(TypeError, match="uint8"):
        qimage_from_array(np.zeros((4, 4, 3), dtype=np.float32))
    for shape in [(4, 4, 2), (4,), (2, 4, 4, 3), (0, 4, 3)]:
        with pytest.raises(ValueError, match="shape"):
            qimage_from_array(np.zeros(shape, dtype=np.uint8))


def test_pixmap_scaled_to_its_longest_side(qapp):
    array = np.zeros((10, 20, 3), dtype=np.uint8)
    array[..., 0] = 255
    pixmap = pixmap_from_array(array, 40)
    assert (pixmap.width(), pixmap.height()) == (40, 20)
    assert pixmap.toImage().pixelColor(5, 5).red() == 255
    assert (pixmap_from_array(array).width(), pixmap_from_array(array).height()) == (20, 10)


def test_named_sets_object_and_accessible_name(qapp):
    label = QLabel()
    assert named(label, "statusText") is label
    assert (label.objectName(), label.accessibleName()) == ("statusText", "statusText")


def test_live_chart_frames_reach_the_widget_through_the_helper(qtbot):
    # The render thread skips a frame that fails; flush() renders here, so an error shows.
    from imgcls_desktop.gui.live_chart import TRAIN_COLOUR, LiveChart

    chart = LiveChart()
    qtbot.addWidget(chart)
    chart.resize(420, 200)
    chart.show()  # the size a frame is drawn at arrives with the resize event
    qtbot.waitExposed(chart)
    for epoch, loss in ((1, 2.0), (2, 1.0), (3, 0.5)):
        chart.add_epoch(SimpleNamespace(kind="epoch", epoch=epoch, metrics={"loss": loss, "accuracy": 0.5}))
    chart.flush()
    image = chart._image
    assert image is not None and image.format() == QImage.Format.Format_RGBA8888
    ratio = image.devicePixelRatio()
    assert (image.width(), image.height()) == (round(420 * ratio), round(200 * ratio))
    pixels = _pixels(image).astype(int)
    assert pixels.min() < 100 and pixels.max() == 255  # axes and text on a white figure
    # The train curve in its own colour, so red and blue were not swapped on the way.
    curve = np.array([int(TRAIN_COLOUR[i:i + 2], 16) for i in (1, 3, 5)])
    swapped = curve[::-1]
    assert (np.abs(pixels - curve).sum(axis=2) < 30).sum() > 20
    assert (np.abs(pixels - swapped).sum(axis=2) < 30).sum() == 0
