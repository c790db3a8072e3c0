"""The History view: recorded runs, two runs' curves overlaid, the images that flipped.

Everything shown comes from ``core.history`` (the same files ``imgcls runs`` reads).
:class:`RunRecorder` writes a run once the evaluation of a freshly trained model arrives,
so the run carries its per-image results; the view lists and compares what was written.
"""

import logging
import os
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QObject, QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ._qt import named
from .jobs import Job, JobRunner
from .widgets.error_dialog import show_error
from .widgets.lazy_canvas import LazyCanvas
from .widgets.thumbnails import ThumbnailGrid

log = logging.getLogger("imgcls")

RUN_COLUMNS = ("Run", "Date", "Dataset", "Preset", "Epochs", "Val acc", "Eval acc", "Model")
RUN_COLOURS = ("#1f77b4", "#ff7f0e")  # run A (the older, baseline), run B
EMPTY_TEXT = ("No runs recorded yet. Every training (the Train view or imgcls train) is recorded "
              "here with its curves and its results on the held-out images.")
HINT_TEXT = "Select a run to see its curves; Ctrl+click a second run to compare the two."
THUMBNAIL_SIZE = 64


def _list_runs():
    from ..core.history import scan_runs

    return scan_runs()


def _record(token, result, scan, model_path, report):
    from ..core.history import record_run

    return token, record_run(result, scan, model_path, report, evaluate=False)


def _set_model_path(run_id, path):
    from ..core.history import set_model_path

    return set_model_path(run_id, path)


class _Fresh:
    """A freshly trained model on its way into the history."""

    def __init__(self, result, scan):
        self.result = result
        self.scan = scan
        self.path = None  # where the model was last saved
        self.run_id = None
        self.recorded_path = None  # the path the run file holds
        self.state = "pending"  # -> "recording" -> "recorded" (or "failed")


class RunRecorder(QObject):
    """Records each training run of the window, once its evaluation has arrived.

    A run waits for the evaluation of its model; when none comes (nothing held out, the
    evaluation failed, another model was opened, the window closes) it is recorded
    without one. Later saves of the same model update the run's model path. Failures are
    logged and told in the status bar: the model itself is saved independently.

    Signals:
        recorded(str): a run file was written; carries the run id.
        message(str): a line for the status bar.
    """

    recorded = Signal(str)
    message = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.window = None
        self.fresh = None
        self._jobs = JobRunner(self)

    def attach(self, window):
        self.window = window
        window.training.training_started.connect(self._on_training_started)
        window.training.training_succeeded.connect(self._on_training_succeeded)
        window.state.evaluation_finished.connect(self._on_evaluation_finished)
        window.state.model_saved.connect(self._on_model_saved)
        window.state.model_changed.connect(self._on_model_changed)

    def _is_fresh_model_current(self):
        loaded = self.window.state.loaded if self.window is not None else None
        # The fresh result's model is the very handle the window adopted (session.ModelHandle).
        return self.fresh is not None and loaded is not None and loaded is self.fresh.result.model

    @Slot()
    def _on_training_started(self):
        self.flush_pending(wait=False)

    @Slot(object)
    def _on_training_succeeded(self, result):
        from ..core.evaluation import evaluation_items

        self.flush_pending(wait=False)
        scan = self.window.scan
        self.fresh = _Fresh(result, scan)
        # The engine saved the model before answering: the run can name its file at once.
        saved = getattr(result.model, "path", None)
        self.fresh.path = str(saved) if saved else None
        try:
            nothing_held_out = scan is None or not evaluation_items(scan, result.metadata).items
        except Exception:  # noqa: BLE001 - a scan that cannot be split: record without
            nothing_held_out = True
        if nothing_held_out:
            self._record(self.fresh, None)

    @Slot(object)
    def _on_evaluation_finished(self, report):
        if self._is_fresh_model_current() and self.fresh.state == "pending":
            self._record(self.fresh, report)

    @Slot(str)
    def _on_model_saved(self, path):
        if not self._is_fresh_model_current():
            return
        fresh = self.fresh
        fresh.path = path
        if fresh.state == "recorded" and fresh.recorded_path != os.path.abspath(path):
            self._update_path(fresh)

    @Slot(object)
    def _on_model_changed(self, loaded):
        if self.fresh is not None and (loaded is None or loaded is not self.fresh.result.model):
            self.flush_pending(wait=False)
            self.fresh = None

    def flush_pending(self, wait=True):
        """Record the current fresh run without an evaluation if it is still waiting.

        ``wait`` writes it now, on this thread (the window is closing: a run file is a
        few kilobytes without per-image results).
        """
        fresh = self.fresh
        if fresh is None or fresh.state != "pending":
            return
        if not wait:
            self._record(fresh, None)
            return
        fresh.state = "recording"
        try:
            self._on_recorded(_record(fresh, fresh.result, fresh.scan, fresh.path, None))
        except Exception as exc:  # noqa: BLE001 - closing must go on whatever happens here
            self._failed(exc)

    def _record(self, fresh, report):
        fresh.state = "recording"
        fresh.recorded_path = fresh.path
        self._jobs.start(Job(_record, fresh, fresh.result, fresh.scan, fresh.path, report),
                         on_success=self._on_recorded, on_failure=self._on_record_failed)

    @Slot(object)
    def _on_recorded(self, outcome):
        fresh, run = outcome
        fresh.run_id, fresh.state = run.id, "recorded"
        fresh.recorded_path = run.model_path
        accuracy = f", accuracy {run.eval_accuracy:.1%}" if run.eval_accuracy is not None else ""
        self.message.emit(f"Run {run.id} recorded in the history{accuracy}")
        self.recorded.emit(run.id)
        if fresh.path and os.path.abspath(fresh.path) != fresh.recorded_path:
            self._update_path(fresh)  # saved while the run was being written

    @Slot(object, str)
    def _on_record_failed(self, exc, _details):
        self._failed(exc)

    def _failed(self, exc):
        if self.fresh is not None and self.fresh.state == "recording":
            self.fresh.state = "failed"
        log.warning("The run was not recorded in the history: %s", exc)
        self.message.emit(f"The run was not recorded in the history ({exc}); the model is safe")

    def _update_path(self, fresh):
        fresh.recorded_path = os.path.abspath(fresh.path)
        self._jobs.start(Job(_set_model_path, fresh.run_id, fresh.path),
                         on_success=self._on_path_updated, on_failure=self._on_record_failed)

    @Slot(object)
    def _on_path_updated(self, run):
        self.recorded.emit(run.id)


class _SortItem(QTableWidgetItem):
    """A cell that shows text and sorts by a value (numbers, or None first)."""

    def __init__(self, text, value):
        super().__init__(text)
        self.value = value

    def __lt__(self, other):
        if isinstance(other, _SortItem):
            return _sort_key(self.value) < _sort_key(other.value)
        return super().__lt__(other)


def _sort_key(value):
    return (value is not None, value if value is not None else 0)


def _percent(value):
    return f"{value:.1%}" if isinstance(value, (int, float)) else "–"


class RunChart(LazyCanvas):
    """Loss and accuracy per epoch of one or two runs: train solid, validation dashed.

    Attributes:
        lines: ``{(run_id, metric, series): Line2D}``, metric "loss"/"accuracy", series
            "train"/"val". Static once drawn, so it draws on the GUI thread.
    """

    def __init__(self, parent=None):
        # matplotlib and the figure are made when the view is first shown or draws a run.
        super().__init__(parent, figsize=(6, 2.6), layout="constrained")
        named(self, "historyChart")
        self.setMinimumSize(360, 200)
        self.lines = {}

    def canvas_built(self):
        self.show_runs([])  # the empty axes, once the figure exists

    def show_runs(self, runs):
        """Draw ``[(label, run)]`` (at most two)."""
        self.lines = {}
        if not runs and not self.is_built():
            return  # canvas_built draws the empty state when the chart is first shown
        self.figure.clear()
        axes_by_metric = {}
        for column, (metric, title) in enumerate((("loss", "Loss"), ("accuracy", "Accuracy"))):
            axes = self.figure.add_subplot(1, 2, column + 1)
            axes.set_title(title)
            axes.set_xlabel("epoch")
            axes.grid(True, alpha=0.3)
            axes_by_metric[metric] = axes
        for (label, run), colour in zip(runs, RUN_COLOURS):
            for metric, axes in axes_by_metric.items():
                for series, key, style in (("train", metric, "-"), ("val", f"val_{metric}", "--")):
                    values = [v if v is not None else float("nan") for v in run.history.get(key) or []]
                    if not values:
                        continue
                    epochs = list(range(1, len(values) + 1))
                    self.lines[(run.id, metric, series)] = axes.plot(
                        epochs, values, style, color=colour, marker="o", markersize=3,
                        linewidth=1.4, label=f"{label} {series}")[0]
        if runs:
            axes_by_metric["accuracy"].set_ylim(0.0, 1.02)
            for metric, axes in axes_by_metric.items():
                axes.legend(loc="upper right" if metric == "loss" else "lower right", fontsize="small")
                axes.xaxis.get_major_locator().set_params(integer=True)
        else:
            axes_by_metric["loss"].text(0.5, 0.5, "Select a run", transform=axes_by_metric["loss"].transAxes,
                                        ha="center", va="center", color="grey")
        self.draw_idle()


class HistoryView(QWidget):
    """Recorded runs: a sortable table, the curves of one or two runs, what changed.

    Signals:
        runs_listed(list): the table was filled; carries the ``RunSummary`` list.
        selection_shown(object): the selection was drawn; carries ``core.history.
            compare_runs``'s dict for two runs, else None.
        open_model_requested(str): the user asked to open a run's model file.
    """

    runs_listed = Signal(object)
    selection_shown = Signal(object)
    open_model_requested = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        named(self, "historyView")
        self.recorder = RunRecorder(self)
        self.recorder.recorded.connect(self._on_run_recorded)
        self.summaries = []
        self.problems = []
        self.shown_runs = []  # [(label, Run)] drawn now, A first
        self.comparison = None
        self._selection_order = []  # run ids, in the order the user selected them
        self._run_cache = {}  # run id -> (file mtime, Run)
        self._jobs = JobRunner(self)
        self._listed_once = False

        self._build()
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self.open_selected_model)
        self.delete_button.clicked.connect(self.delete_selected)
        self.table.itemSelectionChanged.connect(self._on_selection_changed)
        self._show_selection()

    def _build(self):
        """Make the widgets and lay them out; the constructor wires their signals."""
        self.title = named(QLabel(EMPTY_TEXT), "historyTitle")
        self.title.setWordWrap(True)
        self.refresh_button = named(QPushButton("Refresh"), "refreshRunsButton")
        self.open_button = named(QPushButton("Open model"), "openRunModelButton")
        self.delete_button = named(QPushButton("Delete run…"), "deleteRunButton")

        self.table = named(QTableWidget(0, len(RUN_COLUMNS)), "runsTable")
        self.table.setHorizontalHeaderLabels(RUN_COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSortIndicator(1, Qt.SortOrder.DescendingOrder)  # newest first until a header is clicked
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(RUN_COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)

        self.chart = RunChart(self)
        self.metrics = named(QTableWidget(0, 3), "runMetricsTable")
        self.metrics.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics.setHorizontalHeaderLabels(["A", "B", "Change"])
        self.metrics.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.legend = named(QLabel(), "comparedRuns")  # which run is A and which is B
        self.legend.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.metrics.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.note = named(QLabel(HINT_TEXT), "comparisonNote")
        self.note.setWordWrap(True)

        self.to_wrong_label = named(QLabel("Right → wrong"), "flippedToWrongLabel")
        self.to_wrong = named(ThumbnailGrid(THUMBNAIL_SIZE, self), "flippedToWrong")
        self.to_right_label = named(QLabel("Wrong → right"), "flippedToRightLabel")
        self.to_right = named(ThumbnailGrid(THUMBNAIL_SIZE, self), "flippedToRight")
        for grid in (self.to_wrong, self.to_right):
            grid.setGridSize(QSize(THUMBNAIL_SIZE + 56, THUMBNAIL_SIZE + 48))  # two caption lines
            # Uniform sizes are measured on the first caption and would cut longer class names.
            grid.setUniformItemSizes(False)
            grid.image_activated.connect(self._on_image_activated)

        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        buttons = QHBoxLayout()
        buttons.addWidget(self.title, 1)
        for button in (self.refresh_button, self.open_button, self.delete_button):
            buttons.addWidget(button)
        top_layout.addLayout(buttons)
        top_layout.addWidget(self.table)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.legend)
        side_layout.addWidget(self.metrics, 1)
        side.setMinimumWidth(330)
        side_layout.addWidget(self.note)
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(self.chart)
        middle.addWidget(side)
        middle.setStretchFactor(0, 3)
        middle.setStretchFactor(1, 2)
        middle.setSizes([700, 420])
        bottom = QWidget()
        bottom_layout = QHBoxLayout(bottom)
        bottom_layout.setContentsMargins(0, 0, 0, 0)
        for label, grid in ((self.to_wrong_label, self.to_wrong), (self.to_right_label, self.to_right)):
            column = QVBoxLayout()
            column.addWidget(label)
            column.addWidget(grid)
            bottom_layout.addLayout(column)
        splitter = QSplitter(Qt.Orientation.Vertical)
        for part in (top, middle, bottom):
            splitter.addWidget(part)
        splitter.setSizes([170, 300, 190])
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

    def attach(self, window):
        """Record the window's training runs and open models through it."""
        self.recorder.attach(window)
        self.recorder.message.connect(window.statusBar().showMessage)
        self.open_model_requested.connect(window.open_model)

    def flush_pending(self):
        """Write a run still waiting for its evaluation (the window is closing)."""
        self.recorder.flush_pending(wait=True)

    # -- the list -------------------------------------------------------------------------

    def showEvent(self, event):
        super().showEvent(event)
        if not self._listed_once:
            self.refresh()  # building the window reads no file; the first look does

    @Slot()
    def refresh(self):
        """Re-read the runs folder in the background; ``runs_listed`` follows."""
        self._listed_once = True
        self._jobs.start(Job(_list_runs), on_success=self._on_listed, on_failure=self._on_list_failed)

    @Slot(str)
    def _on_run_recorded(self, _run_id):
        self.refresh()

    @Slot(object)
    def _on_listed(self, listing):
        summaries, problems = listing
        self.summaries, self.problems = summaries, problems
        keep = [run_id for run_id in self._selection_order if any(s.id == run_id for s in summaries)]
        self._fill_table(summaries)
        self.select_runs(keep)
        text = f"{len(summaries)} run{'s' if len(summaries) != 1 else ''} recorded" if summaries else EMPTY_TEXT
        if problems:
            text += (f" ({len(problems)} run file{'s' if len(problems) != 1 else ''} could not be "
                     f"read: {Path(problems[0][0]).name}: {problems[0][1]})")
        self.title.setText(text)
        self.runs_listed.emit(summaries)

    @Slot(object, str)
    def _on_list_failed(self, exc, details):
        self.title.setText(f"The run history could not be read: {exc}")
        log.warning("Listing runs failed: %s\n%s", exc, details)

    def _fill_table(self, summaries):
        self.table.blockSignals(True)
        self.table.setSortingEnabled(False)
        self.table.clearSelection()
        self.table.setRowCount(len(summaries))
        for row, summary in enumerate(summaries):
            model = summary.model_path
            missing = bool(model) and not Path(model).exists()
            cells = [
                _SortItem(summary.id, summary.id),
                _SortItem(summary.finished[:16].replace("T", " "), summary.finished),
                _SortItem(summary.dataset_name, summary.dataset_name),
                _SortItem(summary.preset, summary.preset),
                _SortItem(str(summary.epochs_run), summary.epochs_run),
                _SortItem(_percent(summary.best_val_accuracy), summary.best_val_accuracy),
                _SortItem(_percent(summary.eval_accuracy), summary.eval_accuracy),
                _SortItem((Path(model).name + (" (missing)" if missing else "")) if model else "not saved",
                          model or ""),
            ]
            cells[0].setData(Qt.ItemDataRole.UserRole, summary.id)
            cells[2].setToolTip(summary.dataset_root)
            cells[7].setToolTip(model or "The model was not saved")
            for column, cell in enumerate(cells):
                if 4 <= column <= 6:
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(row, column, cell)
        self.table.setSortingEnabled(True)  # re-sorts by the header's indicator
        self.table.blockSignals(False)
        self._selection_order = []

    # -- selection -------------------------------------------------------------------------

    def run_ids(self):
        """Run ids in table order."""
        return [self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in range(self.table.rowCount())]

    def selected_ids(self):
        """The selected runs (one or two), in the order they were selected."""
        return list(self._selection_order)

    def select_runs(self, run_ids):
        """Select these runs (at most the last two count), as Ctrl+clicks would."""
        self.table.clearSelection()
        self._selection_order = []
        rows = {run_id: row for row, run_id in enumerate(self.run_ids())}
        model = self.table.selectionModel()
        for run_id in run_ids:
            if run_id in rows:
                model.select(self.table.model().index(rows[run_id], 0),
                             QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows)
        if not run_ids:
            self._show_selection()

    @Slot()
    def _on_selection_changed(self):
        ids = self.run_ids()
        selected = [ids[index.row()] for index in self.table.selectionModel().selectedRows()]
        order = [run_id for run_id in self._selection_order if run_id in selected]
        order += [run_id for run_id in selected if run_id not in order]
        if len(order) > 2:
            # Two runs compare; a third click replaces the older of the two picked before.
            rows = {run_id: row for row, run_id in enumerate(ids)}
            self.table.blockSignals(True)
            for run_id in order[:-2]:
                self.table.selectionModel().select(
                    self.table.model().index(rows[run_id], 0),
                    QItemSelectionModel.SelectionFlag.Deselect | QItemSelectionModel.SelectionFlag.Rows)
            self.table.blockSignals(False)
            order = order[-2:]
        if order != self._selection_order:
            self._selection_order = order
            self._show_selection()

    def _load(self, run_id):
        from ..core.history import load_run, runs_dir

        try:
            stamp = (runs_dir(create=False) / f"{run_id}.json").stat().st_mtime_ns
        except OSError:
            stamp = None
        cached = self._run_cache.get(run_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        run = load_run(run_id)
        self._run_cache[run_id] = (stamp, run)
        return run

    def _show_selection(self):
        from ..core.history import compare_runs

        runs, problem = [], None
        for run_id in self._selection_order:
            try:
                runs.append(self._load(run_id))
            except Exception as exc:  # noqa: BLE001 - a damaged file: say which, keep going
                runs, problem = [], f"Run {run_id} could not be read: {exc}"
                break
        runs.sort(key=lambda run: (run.finished, run.id))  # A is the older: the baseline
        self.shown_runs = [(label, run) for label, run in zip("AB", runs)]
        self.comparison = compare_runs(runs[0], runs[1]) if len(runs) == 2 else None
        self.chart.show_runs(self.shown_runs)
        self._fill_metrics()
        self._fill_flips()
        if problem:
            self.note.setText(problem)
        target = self._open_target()
        self.open_button.setEnabled(target is not None)
        self.open_button.setToolTip(f"Open {target}" if target else "The selected run has no saved model")
        self.delete_button.setEnabled(bool(self._selection_order))
        self.selection_shown.emit(self.comparison)

    def _fill_metrics(self):
        from ..core.history import run_metrics

        self.metrics.setRowCount(0)
        if not self.shown_runs:
            self.legend.clear()
            self.note.setText(HINT_TEXT if self.summaries else "")
            return
        runs = [run for _label, run in self.shown_runs]
        if self.comparison is not None:
            metrics = self.comparison["metrics"]
        else:
            metrics = {key: {"a": value, "b": None, "delta": None} for key, value in run_metrics(runs[0]).items()}
        rows = [
            ("Eval accuracy", "eval_accuracy", _percent), ("Best val accuracy", "best_val_accuracy", _percent),
            ("Val loss (best epoch)", "val_loss", _fixed), ("Train accuracy (best)", "train_accuracy", _percent),
            ("Epochs run", "epochs_run", str), ("Best epoch", "best_epoch", str), ("Seconds", "seconds", _fixed),
        ]
        two = len(runs) == 2
        self.metrics.setColumnCount(3 if two else 1)
        self.metrics.setHorizontalHeaderLabels([label for label, _run in self.shown_runs]
                                               + (["Change"] if two else []))
        self.legend.setText("<br>".join(
            f"<span style='color:{colour}'>■</span> <b>{label}</b>: {run.id}"
            f" ({run.epochs_run} epoch{'s' if run.epochs_run != 1 else ''})"
            for (label, run), colour in zip(self.shown_runs, RUN_COLOURS)))
        table = []
        for title, key, form in rows:
            row = metrics[key]
            delta = row["delta"]
            change = ("" if delta is None else
                      f"{delta:+.1%}" if form is _percent else f"{delta:+.2f}" if form is _fixed else f"{delta:+d}")
            table.append((title, [_cell(form, row["a"])] + ([_cell(form, row["b"]), change] if two else [])))
        table.append(("Preset", [run.preset for run in runs] + ([""] if two else [])))
        table.append(("Dataset", [Path(run.dataset_root).name for run in runs] + ([""] if two else [])))
        for key, (old, new) in (self.comparison["config_changes"].items() if two else []):
            table.append((f"Setting: {key}", [str(old), str(new), ""]))
        self.metrics.setRowCount(len(table))
        self.metrics.setVerticalHeaderLabels([title for title, _cells in table])
        for row, (_title, cells) in enumerate(table):
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.metrics.setItem(row, column, item)
        if two:
            self.note.setText(self.comparison["note"] or
                              f"A is the older run. {self.comparison['num_compared']} evaluated images "
                              "compared; double-click an image to open it.")
        else:
            self.note.setText(HINT_TEXT)

    def _fill_flips(self):
        comparison = self.comparison
        run_a = self.shown_runs[0][1] if self.shown_runs else None
        for key, grid, label, title in (
                ("flipped_to_wrong", self.to_wrong, self.to_wrong_label, "Right in A, wrong in B"),
                ("flipped_to_right", self.to_right, self.to_right_label, "Wrong in A, right in B")):
            rows = comparison[key] if comparison else []
            label.setText(f"{title} ({len(rows)}; A's answer → B's)" if comparison
                          else f"{title} (select two runs)")
            grid.set_entries(
                (run_a.image_path(row["path"]),
                 f"{row['a_predicted']}\n→ {row['b_predicted']}",
                 f"{row['path']}\ntrue {row['true']}\nA: {row['a_predicted']} ({row['a_confidence']:.0%})"
                 f"\nB: {row['b_predicted']} ({row['b_confidence']:.0%})")
                for row in rows)

    # -- actions -----------------------------------------------------------------------------

    def _open_target(self):
        """The model path of the run selected last, if it still exists."""
        if not self._selection_order:
            return None
        try:
            path = self._load(self._selection_order[-1]).model_path
        except Exception:  # noqa: BLE001 - unreadable run: nothing to open
            return None
        return path if path and Path(path).exists() else None

    @Slot()
    def open_selected_model(self):
        """Open the model of the run selected last, if its file still holds that run's model."""
        from ..core.history import run_model_path

        if not self._selection_order:
            return
        try:
            path = run_model_path(self._selection_order[-1])
        except Exception as exc:  # noqa: BLE001 - not saved, moved, overwritten by another run
            show_error(self, "No model to open",
                       f"{exc} Open a model file with Model ▸ Open model… instead.")
            return
        self.open_model_requested.emit(path)

    def _confirm_delete(self, run_ids):
        """Ask before forgetting runs (tests replace this)."""
        answer = QMessageBox.question(
            self, "Delete runs", f"Forget {len(run_ids)} run(s) from the history? Their model files "
            "are kept.")
        return answer == QMessageBox.StandardButton.Yes

    @Slot()
    def delete_selected(self):
        from ..core.history import delete_run

        run_ids = self.selected_ids()
        if not run_ids or not self._confirm_delete(run_ids):
            return
        for run_id in run_ids:
            try:
                delete_run(run_id)
            except Exception as exc:  # noqa: BLE001 - report, and still refresh the list
                show_error(self, "Could not delete the run", str(exc))
            self._run_cache.pop(run_id, None)
        self._selection_order = []
        self.refresh()

    @Slot(str)
    def _on_image_activated(self, path):
        self._open_file(path)

    def _open_file(self, path):
        """Open an image in the system viewer (tests replace this)."""
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


def _fixed(value):
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _cell(form, value):
    return "–" if value is None else form(value)
