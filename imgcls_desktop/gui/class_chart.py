"""A horizontal bar chart of images per class, one bar per split."""

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy

from .widgets.lazy_canvas import LazyCanvas

SPLIT_COLOURS = {"all": "#4c72b0", "train": "#4c72b0", "val": "#dd8452", "test": "#55a868"}
_FALLBACK_COLOURS = ("#8172b3", "#c44e52", "#937860", "#da8bc3")
# Pixel heights: fixed margins plus one row per class, growing with the number of splits.
_MARGIN_HEIGHT = 70
_MIN_HEIGHT = 150
# Beyond this the chart would dwarf the window; bars get thinner instead.
_MAX_HEIGHT = 1400


class ClassCountChart(LazyCanvas):
    """Per-class image counts as grouped horizontal bars.

    Until the first counts arrive it is a label ("No dataset"): matplotlib is imported and
    the figure made then, after the window is up (start-up time).

    Args:
        parent: Optional parent widget.
    """

    build_on_show = False  # the label is the empty state; the figure comes with the counts

    def __init__(self, parent=None):
        super().__init__(parent, figsize=(5, 2), layout="constrained")
        self.setObjectName("classCountChart")
        self.setAccessibleName("classCountChart")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self._empty_label = QLabel("No dataset", self)
        self._empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty_label.setStyleSheet("color: grey; background: white")
        self.layout().addWidget(self._empty_label)
        self._axes = None
        self._counts = {}
        self.clear()

    def canvas_built(self):
        self._empty_label.hide()
        self._axes = self.figure.add_subplot()

    @property
    def axes(self):
        """The bars' ``Axes`` (made, with matplotlib, on first use)."""
        self.canvas()
        return self._axes

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
        splits = list(self._counts)
        class_names = []
        for per_class in self._counts.values():
            class_names.extend(name for name in per_class if name not in class_names)
        if not class_names:
            self._show_empty()
            return
        self.axes.clear()
        self.axes.set_axis_on()
        bar_height = 0.8 / len(splits)
        largest = max((count for per_class in self._counts.values() for count in per_class.values()), default=0)
        font_size = 8 if len(class_names) * len(splits) <= 60 else 6
        for index, split in enumerate(splits):
            offset = (index - (len(splits) - 1) / 2) * bar_height
            positions = [row + offset for row in range(len(class_names))]
            values = [self._counts[split].get(name, 0) for name in class_names]
            bars = self.axes.barh(positions, values, height=bar_height, color=self._colour(split, index),
                                  label=split)
            self.axes.bar_label(bars, padding=2, fontsize=font_size)
        self.axes.set_yticks(range(len(class_names)), class_names, fontsize=font_size)
        self.axes.invert_yaxis()  # first class at the top, as in the class list
        # Room on the right for the count labels at the bar ends.
        self.axes.set_xlim(0, max(1, largest) * 1.15)
        self.axes.tick_params(axis="x", labelsize=font_size)
        self.axes.set_xlabel("images", fontsize=font_size)
        for side in ("top", "right"):
            self.axes.spines[side].set_visible(False)
        if len(splits) > 1:
            self.axes.legend(fontsize=font_size, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        self._fit_height(len(class_names), len(splits))
        self.draw_idle()

    def clear(self):
        """Remove every bar."""
        self._counts = {}
        self._show_empty()

    def _show_empty(self):
        if not self.is_built():
            self._fit_height(0, 1)  # the "No dataset" label shows
            return
        self.axes.clear()
        self.axes.set_axis_off()
        self.axes.text(0.5, 0.5, "No dataset", ha="center", va="center", color="grey",
                       transform=self.axes.transAxes)
        self._fit_height(0, 1)
        self.draw_idle()

    def _fit_height(self, num_classes, num_splits):
        row_height = 14 + 8 * (num_splits - 1)
        height = min(_MAX_HEIGHT, max(_MIN_HEIGHT, _MARGIN_HEIGHT + num_classes * row_height))
        self.setFixedHeight(height)

    @staticmethod
    def _colour(split, index):
        return SPLIT_COLOURS.get(split, _FALLBACK_COLOURS[index % len(_FALLBACK_COLOURS)])
