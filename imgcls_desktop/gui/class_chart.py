"""A horizontal bar chart of images per class, one bar per split.

Drawn by matplotlib's Agg renderer on the chart thread the live chart uses, and painted as
a finished image, so the window never waits for it: drawn on the GUI thread after a scan,
its first frame (constrained layout, the first text metrics) froze the window for 300 ms,
just when a user would press Train (``benchmarks/gui_responsiveness.py --blame``). Until the
first counts arrive it paints "No dataset" itself, without matplotlib (start-up time).
"""

import threading

from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

from ._qt import qimage_from_array
from .live_chart import _get_bridge, _render_thread

SPLIT_COLOURS = {"all": "#4c72b0", "train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
_FALLBACK_COLOURS = ("#8172b3", "#c44e52", "#937860", "#da8bc3")
# Pixel heights: fixed margins plus one row per class, growing with the number of splits.
_MARGIN_HEIGHT = 70
_MIN_HEIGHT = 150
# Beyond this the chart would dwarf the window; bars get thinner instead.
_MAX_HEIGHT = 1400
DPI = 100
EMPTY_TEXT = "No dataset"


class ClassCountChart(QWidget):
    """Per-class image counts as grouped horizontal bars.

    Attributes:
        figure, axes: matplotlib's ``Figure`` and the bars' ``Axes`` (made with the first
            frame, on the chart thread; :meth:`flush` draws the current counts now).

    Args:
        parent: Optional parent widget.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("classCountChart")
        self.setAccessibleName("classCountChart")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._counts = {}
        self._figure = self._agg = self._axes = None
        self._lock = threading.Lock()  # the figure is drawn on the chart thread or by flush()
        self._image = None
        self._generation = 0  # counts or size changed: older frames are dropped
        self._pending = False
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(100)
        self._resize_timer.timeout.connect(self._render_soon)
        _get_bridge().charts[id(self)] = self
        self.clear()

    # -- data -------------------------------------------------------------------------
    def counts(self) -> dict[str, dict[str, int]]:
        """The counts last shown, ``{split: {class: count}}`` (empty after :meth:`clear`)."""
        return {split: dict(per_class) for split, per_class in self._counts.items()}

    def set_counts(self, counts):
        """Show ``counts``.

        Args:
            counts: ``{split: {class_name: count}}``, e.g. ``DatasetScan.counts()``;
                splits are drawn in the given order, classes in the first split's order.
        """
        self._counts = {split: dict(per_class) for split, per_class in counts.items()}
        class_names = _class_names(self._counts)
        self._fit_height(len(class_names), len(self._counts) if class_names else 1)
        self._image = None
        self._generation += 1
        self.update()
        self._render_soon()

    def clear(self):
        """Remove every bar."""
        self.set_counts({})

    # -- drawing ----------------------------------------------------------------------
    @property
    def figure(self):
        with self._lock:
            return self._ensure_figure()

    @property
    def axes(self):
        with self._lock:
            self._ensure_figure()
            return self._axes

    def _ensure_figure(self):
        """Make the figure once (any thread, under the lock: it touches no Qt object)."""
        if self._figure is None:
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            self._figure = Figure(figsize=(5, 2), dpi=DPI, layout="constrained")
            self._agg = FigureCanvasAgg(self._figure)
            self._axes = self._figure.add_subplot()
        return self._figure

    def _size(self):
        return max(1, self.width()), max(1, self.height()), self.devicePixelRatioF()

    @Slot()
    def _render_soon(self):
        if not _class_names(self._counts):
            return  # "No dataset" is painted without matplotlib
        if self._pending:
            return  # the frame in flight sees an old generation and asks again
        self._pending = True
        _render_thread.submit(self._render_in_background, self._generation, self.counts(), self._size())

    def _render_in_background(self, generation, counts, size):
        try:
            frame = (*self._render(counts, size), generation)
        except Exception:  # a failed frame is skipped; the next change draws again
            frame = None
        _get_bridge().rendered.emit(id(self), frame)

    def _render(self, counts, size):
        """Any thread: draw ``counts`` at ``size`` and return ``(pixels, ratio)``."""
        import numpy as np  # loaded with matplotlib; not at import (start-up time)

        width, height, ratio = size
        with self._lock:
            figure = self._ensure_figure()
            figure.set_dpi(DPI * ratio)
            figure.set_size_inches(width * ratio / figure.dpi, height * ratio / figure.dpi, forward=False)
            _draw_counts(self._axes, counts)
            self._agg.draw()
            pixels = np.array(self._agg.buffer_rgba(), dtype=np.uint8)  # copied: the next draw reuses it
        return pixels, ratio

    def _on_rendered(self, frame):
        """GUI thread (through the bridge): show a finished frame unless it is out of date."""
        self._pending = False
        if frame is not None:
            pixels, ratio, generation = frame
            if generation == self._generation:
                image = qimage_from_array(pixels)
                image.setDevicePixelRatio(ratio)
                self._image = image
                self.update()
                return
            self._render_soon()  # counts or size changed meanwhile: draw them
        # A frame that failed (None) is not retried: the next change of counts or size is.

    def flush(self):
        """Draw the current counts now, on this thread (tests; the GUI thread blocks meanwhile)."""
        if _class_names(self._counts):
            self._on_rendered((*self._render(self.counts(), self._size()), self._generation))

    # -- Qt ---------------------------------------------------------------------------
    def resizeEvent(self, event):  # noqa: N802 (Qt's name)
        super().resizeEvent(event)
        self._generation += 1
        self._resize_timer.start()  # one frame at the size a drag ends at

    def paintEvent(self, event):  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("white"))
        if self._image is not None:
            painter.drawImage(0, 0, self._image)
        elif not _class_names(self._counts):
            painter.setPen(QColor("grey"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, EMPTY_TEXT)
        painter.end()

    def _fit_height(self, num_classes, num_splits):
        row_height = 14 + 8 * (num_splits - 1)
        height = min(_MAX_HEIGHT, max(_MIN_HEIGHT, _MARGIN_HEIGHT + num_classes * row_height))
        self.setFixedHeight(height)
        self.updateGeometry()

    def sizeHint(self):  # noqa: N802 (Qt's name): the scroll area and splitter size it by this
        return QSize(500, max(200, self.minimumHeight()))  # 5x2 inches at 100 dpi, as the figure


def _class_names(counts):
    names = []
    for per_class in counts.values():
        names.extend(name for name in per_class if name not in names)
    return names


def _draw_counts(axes, counts):
    """Grouped horizontal bars of ``counts`` on ``axes`` (no Qt: runs on the chart thread)."""
    splits = list(counts)
    class_names = _class_names(counts)
    axes.clear()
    bar_height = 0.8 / len(splits)
    largest = max((count for per_class in counts.values() for count in per_class.values()), default=0)
    font_size = 8 if len(class_names) * len(splits) <= 60 else 6
    for index, split in enumerate(splits):
        offset = (index - (len(splits) - 1) / 2) * bar_height
        positions = [row + offset for row in range(len(class_names))]
        values = [counts[split].get(name, 0) for name in class_names]
        bars = axes.barh(positions, values, height=bar_height, color=_colour(split, index), label=split)
        axes.bar_label(bars, padding=2, fontsize=font_size)
    axes.set_yticks(range(len(class_names)), class_names, fontsize=font_size)
    axes.invert_yaxis()  # first class at the top, as in the class list
    # Room on the right for the count labels at the bar ends.
    axes.set_xlim(0, max(1, largest) * 1.15)
    axes.tick_params(axis="x", labelsize=font_size)
    axes.set_xlabel("images", fontsize=font_size)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    if len(splits) > 1:
        axes.legend(fontsize=font_size, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)


def _colour(split, index):
    return SPLIT_COLOURS.get(split, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])
