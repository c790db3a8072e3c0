"""Loss and accuracy curves that update while training runs.

The Line2D objects are made once and fed with ``set_data`` behind a timer, so a flood of
batch events costs a few redraws a second (matplotlib's ``embedding_in_qt_sgskip.py``).

The figure is drawn by matplotlib's Agg renderer on a thread of its own, and the widget
only paints the finished image. Drawing on the GUI thread took about 60 ms alone but
150-300 ms while training competed for the GIL, and every one of those milliseconds froze
the window (benchmarks/gui_responsiveness.py). The render thread touches no Qt object: it
owns a plain ``FigureCanvasAgg`` and hands the pixels back through a bridge QObject that
lives as long as the process, so a chart deleted mid-render is never called from it (a
``FigureCanvasQTAgg`` drawn off-thread crashed when its widget closed during a draw).

matplotlib is imported, and the figure made, on the first render (on the render thread),
not when the widget is made: the window shows before the Train view's chart is needed
(benchmarks/startup_window.py).
"""

import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget
from shiboken6 import isValid

from ._qt import qimage_from_array

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d62728"
PLACEHOLDER = "Press Train to see the curves"
DPI = 90


class _RenderBridge(QObject):
    """Carries finished images from the render thread to the GUI thread (never deleted)."""

    rendered = Signal(object, object)  # chart id, (pixels, width, height, ratio) or None

    def __init__(self):
        super().__init__()
        self.charts = weakref.WeakValueDictionary()
        self.rendered.connect(self._deliver)

    @Slot(object, object)
    def _deliver(self, chart_id, image):
        chart = self.charts.get(chart_id)
        if chart is not None and isValid(chart):  # its window may have closed meanwhile
            chart._on_rendered(image)


_bridge = None
_render_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcls-chart")


def _get_bridge():
    global _bridge
    if _bridge is None:
        _bridge = _RenderBridge()  # made on the GUI thread, so its slot runs there
    return _bridge


class _Series:
    """Points of one curve, kept under ``max_points`` by halving the oldest density."""

    def __init__(self, max_points):
        self.max_points = max_points
        self.x = []
        self.y = []

    def append(self, x, y):
        self.x.append(x)
        self.y.append(y)
        if len(self.x) > self.max_points:
            # Keep every other point: the curve keeps its shape, the count stays bounded,
            # and the newest point is always kept so the line reaches "now".
            last_x, last_y = self.x[-1], self.y[-1]
            self.x, self.y = self.x[:-1:2], self.y[:-1:2]
            self.x.append(last_x)
            self.y.append(last_y)

    def clear(self):
        self.x, self.y = [], []


class LiveChart(QWidget):
    """Two plots side by side: loss and accuracy against (fractional) epoch.

    Attributes:
        figure: the ``matplotlib.figure.Figure`` (drawn off the GUI thread; made on first
            use, usually by the first render, so on the render thread).
        lines: dict ``{(metric, series): Line2D}`` with metric "loss"/"accuracy" and series
            "train" (batch-resolution), "train_epoch" (epoch-end markers), "val".
        redraw_count: how many throttled redraws happened (tests check throttling).
    """

    redraw_interval_ms = 250  # at most ~4 redraws a second
    max_batch_points = 2000

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("liveChart")
        self.setAccessibleName("liveChart")
        self.setAccessibleDescription("Loss and accuracy curves for training and validation")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(180)
        self.redraw_count = 0
        self._series = {}
        for metric in ("loss", "accuracy"):
            for key in ("train", "train_epoch", "val"):
                limit = self.max_batch_points if key == "train" else 100_000
                self._series[(metric, key)] = _Series(limit)
        self._figure = None  # made by _ensure_figure, with matplotlib's import
        self._build_lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.redraw_interval_ms)
        self._timer.timeout.connect(self._redraw)
        self._figure_lock = threading.Lock()
        self._size = None  # (width, height, device pixel ratio) the next render should have
        self._image = None
        self._render_pending = False
        self._render_again = False
        _get_bridge().charts[id(self)] = self

    # -- the figure -------------------------------------------------------------
    def _ensure_figure(self):
        """Make the figure and its artists once (any thread: it touches no Qt object)."""
        with self._build_lock:
            if self._figure is not None:
                return self._figure
            from matplotlib.backends.backend_agg import FigureCanvasAgg
            from matplotlib.figure import Figure

            # No layout engine: tight layout on every draw doubled the draw time (128 -> 69 ms).
            # Layout is redone only when the size changes.
            figure = Figure(figsize=(7.0, 2.8), dpi=DPI)
            self._agg = FigureCanvasAgg(figure)
            self._lines = lines = {}
            self._axes = axes_by_metric = {}
            for column, (metric, label) in enumerate([("loss", "Loss"), ("accuracy", "Accuracy")]):
                axes = figure.add_subplot(1, 2, column + 1)
                axes.set_title(label)
                axes.set_xlabel("epoch")
                axes.grid(True, alpha=0.3)
                axes_by_metric[metric] = axes
                lines[(metric, "train")] = axes.plot([], [], color=TRAIN_COLOUR, linewidth=1.0,
                                                     alpha=0.8, label="train")[0]
                lines[(metric, "train_epoch")] = axes.plot([], [], "o", color=TRAIN_COLOUR,
                                                           markersize=4)[0]
                lines[(metric, "val")] = axes.plot([], [], "o-", color=VAL_COLOUR, linewidth=1.5,
                                                   markersize=4, label="validation")[0]
                # A fixed corner: loc="best" searches the data on every draw.
                axes.legend(loc="upper right" if metric == "loss" else "lower right", fontsize="small")
            axes_by_metric["accuracy"].set_ylim(0.0, 1.02)
            self._placeholder = figure.text(0.5, 0.5, PLACEHOLDER, ha="center", va="center",
                                            fontsize=12, color="0.35",
                                            bbox={"facecolor": "white", "edgecolor": "0.8"})
            self._figure = figure  # last: whoever sees it set finds the artists ready
            return figure

    @property
    def figure(self):
        return self._ensure_figure()

    @property
    def lines(self):
        self._ensure_figure()
        return self._lines

    @property
    def axes(self):
        self._ensure_figure()
        return self._axes

    # -- data -------------------------------------------------------------------
    @staticmethod
    def _x(progress):
        steps = max(1, progress.steps or 1)
        return (progress.epoch - 1) + min(progress.step, steps) / steps

    def add_batch(self, progress):
        """Add the running train loss/accuracy of one batch (a ``TrainingProgress``)."""
        x = self._x(progress)
        for metric in ("loss", "accuracy"):
            value = progress.metrics.get(metric)
            if value is not None:
                self._series[(metric, "train")].append(x, float(value))
        self._schedule()

    def add_epoch(self, progress):
        """Add epoch-end train and validation points (a ``TrainingProgress`` of kind "epoch")."""
        x = float(progress.epoch)
        for metric in ("loss", "accuracy"):
            value = progress.metrics.get(metric)
            if value is not None:
                self._series[(metric, "train")].append(x, float(value))
                self._series[(metric, "train_epoch")].append(x, float(value))
            value = progress.metrics.get(f"val_{metric}")
            if value is not None:
                self._series[(metric, "val")].append(x, float(value))
        self._schedule()

    def add_progress(self, progress):
        """Route any ``TrainingProgress`` to the right method ("decode" events are ignored)."""
        if progress.kind == "batch":
            self.add_batch(progress)
        elif progress.kind == "epoch":
            self.add_epoch(progress)

    def clear(self):
        """Remove every point and show the placeholder again."""
        for series in self._series.values():
            series.clear()
        self._schedule()

    def point_count(self, metric, series):
        """Points currently plotted on one line (e.g. ``("loss", "val")``)."""
        return len(self.lines[(metric, series)].get_xdata())

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._size = (max(1, self.width()), max(1, self.height()), self.devicePixelRatioF())
        self.redraw_soon()

    def paintEvent(self, event):
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().window())
        if self._image is not None:
            painter.drawImage(0, 0, self._image)
        painter.end()

    # -- drawing ----------------------------------------------------------------
    def _schedule(self):
        if not self._timer.isActive():
            self._timer.start()

    def _snapshot(self):
        return {key: (list(series.x), list(series.y)) for key, series in self._series.items()}

    def _apply(self, snapshot):
        """Move the data into the matplotlib artists (caller holds the figure lock)."""
        for key, line in self.lines.items():
            line.set_data(*snapshot[key])
        empty = not any(x for x, _y in snapshot.values())
        self._placeholder.set_visible(empty)
        last_x = max((x[-1] for x, _y in snapshot.values() if x), default=1.0)
        for metric, axes in self.axes.items():
            axes.set_xlim(0.0, max(1.0, last_x))
            if metric == "loss":
                axes.relim()
                axes.autoscale_view(scalex=False, scaley=True)

    def _render(self, chart_id, snapshot, size):
        """Any thread: lay out, rasterise, and return the pixels (touches no Qt object)."""
        self._ensure_figure()  # the first render makes it (and imports matplotlib) here
        import numpy as np  # loaded by matplotlib already; not at import (start-up time)

        with self._figure_lock:
            if size is not None:
                width, height, ratio = size
                self.figure.set_dpi(DPI * ratio)
                inches = (width * ratio / self.figure.dpi, height * ratio / self.figure.dpi)
                if tuple(self.figure.get_size_inches()) != inches:
                    self.figure.set_size_inches(*inches, forward=False)
                    try:
                        self.figure.tight_layout()
                    except (ValueError, RuntimeError):
                        pass  # too small to lay out: keep the previous margins
            self._apply(snapshot)
            self._agg.draw()
            # (height, width, 4) RGBA; copied, since the next draw reuses the buffer.
            pixels = np.array(self._agg.buffer_rgba(), dtype=np.uint8)
        return pixels, size[2] if size else 1.0

    def _render_in_background(self, chart_id, snapshot, size):
        try:
            image = self._render(chart_id, snapshot, size)
        except Exception:  # a failed frame is skipped; the next one may well work
            image = None
        _get_bridge().rendered.emit(chart_id, image)

    def flush(self):
        """Render now and wait for it (e.g. in tests); the GUI thread blocks meanwhile."""
        self._timer.stop()
        self.redraw_count += 1
        self._on_rendered(self._render(id(self), self._snapshot(), self._size), finished=False)

    def redraw_soon(self):
        """Redraw at once but off this thread (e.g. the last points when training ends)."""
        self._timer.stop()
        self._redraw()

    @Slot()
    def _redraw(self):
        self.redraw_count += 1
        if self._render_pending:
            self._render_again = True
            return
        self._render_pending = True
        _render_thread.submit(self._render_in_background, id(self), self._snapshot(), self._size)

    def _on_rendered(self, image, finished=True):
        if finished:
            self._render_pending = False
        if image is not None:
            pixels, ratio = image
            qimage = qimage_from_array(pixels)
            qimage.setDevicePixelRatio(ratio)
            self._image = qimage
            self.update()
        if finished and self._render_again:
            self._render_again = False
            self._schedule()
