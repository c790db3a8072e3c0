"""Thumbnails for the dataset browser, the evaluation gallery, the prediction results, the
doctor and the image dialogs: the one place an image file becomes a thumbnail.

Every thumbnail is decoded by :func:`core.images.open_image`, the loader training and
prediction use, so 16-bit, CMYK, EXIF-rotated and transparent images look the way the
model sees them. Decoding may happen on a worker thread: :func:`thumbnail_image` returns a
``QImage`` (safe off the GUI thread); only :func:`thumbnail_pixmap` makes a ``QPixmap``,
which Qt allows in the GUI thread alone.
"""

import functools
import os

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem

from ...core.errors import ImageError
from .._qt import qimage_from_array
from ..jobs import Job, JobRunner

DEFAULT_SIZE = 96


def _placeholder_image(size):
    """A grey tile with a cross: the thumbnail of a file that cannot be read."""
    image = QImage(size, size, QImage.Format.Format_RGB888)
    image.fill(QColor(225, 225, 225))
    painter = QPainter(image)
    painter.setPen(QPen(QColor(170, 60, 60), max(1, size // 24)))
    margin = size // 4
    painter.drawLine(margin, margin, size - margin, size - margin)
    painter.drawLine(size - margin, margin, margin, size - margin)
    painter.end()
    return image


@functools.lru_cache(maxsize=1024)
def _cached_thumbnail(path, modified, size):
    del modified  # part of the cache key only: an edited file gets a fresh thumbnail
    # Pillow and numpy are imported where images are decoded (worker threads), not when
    # the window's modules load (start-up time).
    import numpy as np

    from ...core.images import open_image

    # open_image gives RGB; a failure raises, and lru_cache keeps no exceptions.
    return qimage_from_array(np.asarray(fit_thumbnail(open_image(path), size)))


def fit_thumbnail(image, size):
    """A PIL image scaled so its longest side is ``size``: shrunk, or enlarged when tiny.

    Tiny images (CIFAR's 32 px) are enlarged so a thumbnail can be recognised.
    """
    from PIL import Image

    if max(image.size) < size:
        scale = size / max(image.size)
        return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                            Image.Resampling.BICUBIC)
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return image


def decode_thumbnail(path, size=DEFAULT_SIZE) -> QImage:
    """Decode ``path`` into a ``QImage`` no larger than ``size`` x ``size`` pixels, or raise.

    Safe to call from a worker thread. Results are cached by path, modification time and
    size, so revisiting the same images costs nothing.

    Args:
        path: Image file path (str or Path).
        size: Longest side of the thumbnail in pixels.

    Returns:
        The thumbnail.

    Raises:
        ImageError: The file cannot be decoded (``reason`` says why).
        OSError: The file cannot be read at all (for example it was deleted).
    """
    modified = os.stat(path).st_mtime_ns
    return _cached_thumbnail(str(path), modified, int(size))


def thumbnail_image(path, size=DEFAULT_SIZE) -> QImage:
    """Like :func:`decode_thumbnail`, with a placeholder tile for a file that cannot be read."""
    try:
        return decode_thumbnail(path, size)
    except (ImageError, OSError):
        return _placeholder_image(size)


def thumbnail_pixmap(path, size=DEFAULT_SIZE) -> QPixmap:
    """Like :func:`thumbnail_image`, as a ``QPixmap``. GUI thread only."""
    return QPixmap.fromImage(thumbnail_image(path, size))


def placeholder_pixmap(size=DEFAULT_SIZE) -> QPixmap:
    """The tile shown for unreadable files (GUI thread only)."""
    return QPixmap.fromImage(_placeholder_image(size))


def load_thumbnails(paths, size=DEFAULT_SIZE):
    """Decode many thumbnails (for a worker): ``{path: QImage}``."""
    return {str(path): thumbnail_image(path, size) for path in paths}


class ThumbnailGrid(QListWidget):
    """An icon-mode list of images whose thumbnails are decoded in the background.

    Items appear at once with a placeholder; their thumbnails replace it when decoded,
    so a grid of thousands of images never freezes the window. Each item keeps its path
    under ``Qt.ItemDataRole.UserRole``.

    Signals:
        image_activated(str): An item was double-clicked or activated; carries its path.
    """

    image_activated = Signal(str)

    def __init__(self, thumbnail_size=DEFAULT_SIZE, parent=None):
        super().__init__(parent)
        self.thumbnail_size = thumbnail_size
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWordWrap(True)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(thumbnail_size, thumbnail_size))
        self.setGridSize(QSize(thumbnail_size + 40, thumbnail_size + 44))
        self._runner = JobRunner(self)
        self._generation = 0
        self.itemActivated.connect(self._on_item_activated)

    def set_entries(self, entries):
        """Replace the grid with ``entries``: an iterable of ``(path, caption, tooltip)``."""
        self.clear()
        self._generation += 1
        placeholder = QIcon(placeholder_pixmap(self.thumbnail_size))
        paths = []
        for path, caption, tooltip in entries:
            item = QListWidgetItem(placeholder, caption)
            item.setData(Qt.ItemDataRole.UserRole, str(path))
            item.setToolTip(tooltip)
            self.addItem(item)
            paths.append(str(path))
        if paths:
            job = Job(self._decode, self._generation, paths, self.thumbnail_size)
            self._runner.start(job, on_success=self._on_thumbnails_loaded)

    def paths(self):
        """The paths shown, in display order."""
        return [self.item(row).data(Qt.ItemDataRole.UserRole) for row in range(self.count())]

    @staticmethod
    def _decode(generation, paths, size):
        return generation, load_thumbnails(paths, size)

    @Slot(object)
    def _on_thumbnails_loaded(self, result):
        generation, images = result
        if generation != self._generation:
            return  # the grid was refilled while these were decoding
        for row in range(self.count()):
            item = self.item(row)
            image = images.get(item.data(Qt.ItemDataRole.UserRole))
            if image is not None:
                item.setIcon(QIcon(QPixmap.fromImage(image)))

    @Slot(QListWidgetItem)
    def _on_item_activated(self, item):
        self.image_activated.emit(item.data(Qt.ItemDataRole.UserRole))
