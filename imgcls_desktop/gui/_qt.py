"""Small Qt helpers every view uses: naming a widget, and pixels from numpy to Qt.

numpy is imported inside the functions that need it, not here: this module loads with the
window, before its first paint (tests/gui/test_startup_imports.py).
"""

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap

# Channels of a (height, width[, channels]) uint8 array -> the QImage format of its bytes.
_FORMATS = {
    1: QImage.Format.Format_Grayscale8,
    3: QImage.Format.Format_RGB888,
    4: QImage.Format.Format_RGBA8888,
}


def named(widget, name):
    """Give ``widget`` an object name and the same accessible name; returns ``widget``.

    Tests find widgets by the object name, screen readers announce the accessible one.
    """
    widget.setObjectName(name)
    widget.setAccessibleName(name)
    return widget


def qimage_from_array(array) -> QImage:
    """A ``QImage`` holding its own copy of the pixels of a ``uint8`` array.

    Safe off the GUI thread (a ``QImage``, unlike a ``QPixmap``, may be made anywhere).

    Args:
        array: ``(height, width)`` grey, ``(height, width, 1)`` grey, ``(height, width, 3)``
            RGB or ``(height, width, 4)`` RGBA, dtype ``uint8``, in any memory layout (a
            slice, a transposed or flipped view).

    Returns:
        A ``QImage`` of ``width`` x ``height`` pixels (Grayscale8, RGB888 or RGBA8888).

    Raises:
        TypeError: The array is not ``uint8`` (its values would be cut, not scaled).
        ValueError: The shape is none of the above, or the image is empty.
    """
    import numpy as np  # not at import: numpy loads after the window shows (start-up time)

    pixels = np.asarray(array)
    if pixels.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1] if pixels.ndim == 3 else 0
    if channels not in _FORMATS or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"expected (height, width[, 1|3|4]) pixels, got shape {pixels.shape}")
    # QImage reads rows of width * channels bytes, each starting bytesPerLine after the last.
    pixels = np.ascontiguousarray(pixels)
    height, width = pixels.shape[:2]
    image = QImage(pixels.data, width, height, pixels.strides[0], _FORMATS[channels])
    # QImage does not own the numpy buffer: copy() detaches it before the array is freed.
    return image.copy()


def pixmap_from_array(array, size=None) -> QPixmap:
    """Like :func:`qimage_from_array`, as a ``QPixmap`` (GUI thread only).

    Args:
        array: Pixels, as for :func:`qimage_from_array`.
        size: When given, the pixmap is scaled (smoothly, keeping its aspect ratio) so its
            longest side is ``size`` pixels.
    """
    image = qimage_from_array(array)
    if size is not None:
        image = image.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                             Qt.TransformationMode.SmoothTransformation)
    return QPixmap.fromImage(image)
