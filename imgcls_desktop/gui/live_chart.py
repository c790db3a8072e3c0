"""Loss and accuracy curves that update while training runs.

The Line2D objects are made once and fed with ``set_data`` behind a timer, so a flood of
batch events costs a few redraws a second (matplotlib's ``embedding_in_qt_sgskip.py``).

The timed redraws render on a thread of their own and the GUI thread only paints the
finished buffer. Rendering on the GUI thread took about 60 ms alone but 150-300 ms while
training competed for the GIL, and every one of those milliseconds froze the window
(benchmarks/gui_responsiveness.py). A lock keeps the GUI thread's own draws (first show,
resize) and the render thread apart. Only the GUI thread may call this widget's methods.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QTimer, Signal, Slot
from PySide6.QtWidgets import QSizePolicy

TRAIN_COLOUR = "#1f77b4"
VAL_COLOUR = "#d62728"
PLACEHOLDER = "Press Train to see the curves"


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


class LiveChart(FigureCanvasQTAgg):
    """Two plots side by side: loss and accuracy against (fractional) epoch.

    Attributes:
        figure: the ``matplotlib.figure.Figure``.
        lines: dict ``{(metric, series): Line2D}`` with metric "loss"/"accuracy" and series
            "train" (batch-resolution), "train_epoch" (epoch-end markers), "val".
        redraw_count: how many throttled redraws happened (tests check throttling).
    """

    redraw_interval_ms = 250  # at most ~4 redraws a second
    max_batch_points = 2000
    _rendered = Signal()
    _render_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imgcls-chart")

    def __init__(self, parent=None):
        # No layout engine: tight layout on every draw doubled the draw time (128 -> 69 ms),
        # and each draw blocks the event loop. Layout is redone only when the size changes.
        figure = Figure(figsize=(7.0, 2.8), dpi=90)
        super().__init__(figure)
        self.setParent(parent)
        self.setObjectName("liveChart")
        self.setAccessibleName("liveChart")
        self.setAccessibleDescription("Loss and accuracy curves for training and validation")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(180)
        self.redraw_count = 0
        self._series = {}
        self.lines = {}
        self.axes = {}
        for column, (metric, label) in enumerate([("loss", "Loss"), ("accuracy", "Accuracy")]):
            axes = figure.add_subplot(1, 2, column + 1)
            axes.set_title(label)
            axes.set_xlabel("epoch")
            axes.grid(True, alpha=0.3)
            self.axes[metric] = axes
            self.lines[(metric, "train")] = axes.plot([], [], color=TRAIN_COLOUR, linewidth=1.0,
                                                      alpha=0.8, label="train")[0]
            self.lines[(metric, "train_epoch")] = axes.plot([], [], "o", color=TRAIN_COLOUR,
                                                            markersize=4)[0]
            self.lines[(metric, "val")] = axes.plot([], [], "o-", color=VAL_COLOUR, linewidth=1.5,
                                                    markersize=4, label="validation")[0]
            # A fixed corner: loc="best" searches the data on every draw.
            axes.legend(loc="upper right" if metric == "loss" else "lower right", fontsize="small")
            for key in ("train", "train_epoch", "val"):
                limit = self.max_batch_points if key == "train" else 100_000
                self._series[(metric, key)] = _Series(limit)
        self.axes["accuracy"].set_ylim(0.0, 1.02)
        self._placeholder = figure.text(0.5, 0.5, PLACEHOLDER, ha="center", va="center",
                                        fontsize=12, color="0.35",
                                        bbox={"facecolor": "white", "edgecolor": "0.8"})
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(self.redraw_interval_ms)
        self._timer.timeout.connect(self._redraw)
        self._figure_lock = threading.Lock()
        self._layout_dirty = True
        self._render_pending = False
        self._render_again = False
        self._rendered.connect(self._on_rendered)

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

    def is_empty(self):
        return not any(series.x for series in self._series.values())

    def point_count(self, metric, series):
        """Points currently plotted on one line (e.g. ``("loss", "val")``)."""
        return len(self.lines[(metric, series)].get_xdata())

    def resizeEvent(self, event):
        with self._figure_lock:
            self._layout_dirty = True
            super().resizeEvent(event)  # ends in draw_idle(), which renders off-thread

    def draw(self):
        with self._figure_lock:
            super().draw()

    def draw_idle(self):
        """Every draw request (first show, resize, matplotlib's own) renders off-thread."""
        self._timer.stop()
        self._redraw()

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

    def flush(self):
        """Redraw now, on this thread (e.g. right after training ends, and in tests)."""
        self._timer.stop()
        self.redraw_count += 1
        with self._figure_lock:
            self._apply(self._snapshot())
            FigureCanvasAgg.draw(self)
        self.update()

    def redraw_soon(self):
        """Redraw at once but off this thread (e.g. the last points when training ends)."""
        self.draw_idle()

    @Slot()
    def _redraw(self):
        self.redraw_count += 1
        if self._render_pending:
            self._render_again = True
            return
        self._render_pending = True
        self._render_thread.submit(self._render, self._snapshot())

    def _render(self, snapshot):
        """Render thread: lay the data out and rasterise the figure into the Agg buffer."""
        try:
            with self._figure_lock:
                if self._layout_dirty:
                    self._layout_dirty = False
                    try:
                        self.figure.tight_layout()
                    except (ValueError, RuntimeError):
                        pass  # too small to lay out: keep the previous margins
                self._apply(snapshot)
                FigureCanvasAgg.draw(self)
        finally:
            try:
                self._rendered.emit()  # queued to the GUI thread
            except RuntimeError:
                pass  # the widget was deleted while we rendered

    @Slot()
    def _on_rendered(self):
        self._render_pending = False
        self.update()
        if self._render_again:
            self._render_again = False
            self._schedule()
