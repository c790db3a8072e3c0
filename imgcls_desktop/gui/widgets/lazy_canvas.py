"""A matplotlib canvas that imports matplotlib and makes its figure on first use.

Importing matplotlib costs about half a second and every figure with axes tens of
milliseconds; doing that for five charts before the window showed was most of the
start-up time (benchmarks/startup_window.py). A :class:`LazyCanvas` is a plain QWidget
until its figure is needed: when code touches :attr:`figure` (or draws, or connects an
event), or when the widget is first shown. Then it makes the ``Figure`` and a
``FigureCanvasQTAgg`` that fills it, and calls :meth:`canvas_built` (subclasses draw their
empty state there). :func:`warm_up_in_background` imports matplotlib on a worker thread
after the window is up, so that building a chart later costs no import on the GUI thread.
"""

import threading

from PySide6.QtCore import QSize
from PySide6.QtWidgets import QVBoxLayout, QWidget

_DEFAULT_DPI = 100  # matplotlib's rcParams["figure.dpi"]


class LazyCanvas(QWidget):
    """Stands for a ``FigureCanvasQTAgg(Figure(**figure_kwargs))`` until it is needed.

    Attributes:
        figure: the ``Figure`` (made on first access).
        build_on_show: make the canvas when the widget is first shown (a subclass that has
            an empty state of its own sets it False and builds on its first data).
    """

    build_on_show = True

    def __init__(self, parent=None, **figure_kwargs):
        super().__init__(parent)
        self._figure_kwargs = figure_kwargs
        self._canvas = None
        self._pending_connections = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

    # -- the real canvas ------------------------------------------------------------
    def is_built(self):
        return self._canvas is not None

    def canvas(self):
        """The ``FigureCanvasQTAgg``, made now if it does not exist yet."""
        if self._canvas is None:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure

            canvas = FigureCanvasQTAgg(Figure(**self._figure_kwargs))
            canvas.setParent(self)
            self.layout().addWidget(canvas)
            self._canvas = canvas
            for event, callback in self._pending_connections:
                canvas.mpl_connect(event, callback)
            self._pending_connections.clear()
            self.canvas_built()
        return self._canvas

    def canvas_built(self):
        """Called once, right after the canvas is made: draw the empty state here."""

    @property
    def figure(self):
        return self.canvas().figure

    def draw_idle(self):
        self.canvas().draw_idle()

    def draw(self):
        self.canvas().draw()

    def mpl_connect(self, event, callback):
        """Connect a matplotlib event now if the canvas exists, else when it is made."""
        if self._canvas is None:
            self._pending_connections.append((event, callback))
            return None
        return self._canvas.mpl_connect(event, callback)

    # -- Qt ---------------------------------------------------------------------------
    def showEvent(self, event):  # noqa: N802 (Qt's name)
        super().showEvent(event)
        if self.build_on_show:
            self.canvas()  # the user sees it now: draw the real thing

    def sizeHint(self):  # noqa: N802 (Qt's name): the figure's size, as FigureCanvasQT says
        if self._canvas is not None:
            return super().sizeHint()
        width, height = self._figure_kwargs.get("figsize", (6.4, 4.8))
        dpi = self._figure_kwargs.get("dpi", _DEFAULT_DPI)
        return QSize(int(width * dpi), int(height * dpi))


_warm_up_started = False


def warm_up_in_background(modules=("matplotlib.figure", "matplotlib.backends.backend_qtagg",
                                   "matplotlib.backends.backend_agg")):
    """Import ``modules`` on a daemon thread (once per process); returns the thread or None.

    Called after the window is painted: the first chart then finds matplotlib imported.
    """
    global _warm_up_started
    if _warm_up_started:
        return None
    _warm_up_started = True

    def run():
        import importlib

        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 (the chart will import it again and say why)
                return

    thread = threading.Thread(target=run, name="imgcls-warm-up", daemon=True)
    thread.start()
    return thread
