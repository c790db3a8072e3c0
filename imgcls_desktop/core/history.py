"""Run history: every training run as one JSON file in the user's data folder.

A run records what was trained (dataset fingerprint, classes, preset, resolved settings,
seed), how it went (curves, best epoch, stop reason, time), where the model went, and how
it did on held-out images, image by image, so two runs can be compared file by file.

Files live in ``<user data>/runs/<run id>.json``; a run id (``20261122-153012-ab12``) sorts
by time. Each write goes to a temporary file that is flushed and then moved over the
target, so a crash never leaves half a run. A damaged file is skipped when runs are
listed (and reported), never fatal. Nothing here imports TensorFlow unless a run has to be
evaluated.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import __version__
from ..resources import user_data_dir
from .errors import HistoryError, ImgclsError, RunFileError, UnknownRunError
from .output_files import write_json_atomic
from .paths import relative_posix

if TYPE_CHECKING:
    from .dataset import DatasetScan
    from .evaluation import EvaluationReport
    from .training import TrainingResult

log = logging.getLogger("imgcls")

FORMAT = "imgcls-run/1"
RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")
_REQUIRED_KEYS = ("id", "finished", "dataset", "class_names", "preset", "config", "history")


def runs_dir(create: bool = True) -> Path:
    """``<user data>/runs``; created on first use unless ``create`` is False.

    Args:
        create: Make the folder when it does not exist.

    Returns:
        The folder's path.
    """
    folder = user_data_dir() / "runs"
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class RunSummary:
    """What the run list shows: one line per run, read from its file."""

    id: str
    started: str
    finished: str
    dataset_root: str
    dataset_fingerprint: str
    preset: str
    seed: int | None
    epochs_run: int
    best_val_accuracy: float | None
    eval_accuracy: float | None
    eval_split: str | None
    model_path: str | None
    file: str

    @property
    def dataset_name(self) -> str:
        """The dataset folder's name (its path when it has none)."""
        return Path(self.dataset_root).name or self.dataset_root

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (``imgcls runs --json``).

        Returns:
            A dict of plain Python values.
        """
        return {
            "id": self.id, "started": self.started, "finished": self.finished,
            "dataset": self.dataset_root, "fingerprint": self.dataset_fingerprint,
            "preset": self.preset, "seed": self.seed, "epochs_run": self.epochs_run,
            "best_val_accuracy": self.best_val_accuracy, "eval_accuracy": self.eval_accuracy,
            "eval_split": self.eval_split, "model": self.model_path,
        }


@dataclass
class Run:
    """One recorded training run (the content of its JSON file).

    ``evaluation`` is None when nothing was held out to evaluate on; otherwise it holds
    ``split``, ``num_images``, ``accuracy``, ``per_class``, ``confusion_matrix`` and
    ``images``: one ``{path, true, predicted, confidence}`` per evaluated image, ``path``
    relative to the dataset root (forward slashes).
    """

    id: str
    started: str
    finished: str
    dataset: dict  # root, fingerprint, layout
    class_names: list
    preset: str
    config: dict
    seed: int | None
    history: dict
    epochs_run: int
    best_epoch: int
    best_val_accuracy: float | None
    stop_reason: str
    seconds: float
    model_path: str | None = None
    evaluation: dict | None = None
    app_version: str = __version__
    extra: dict = field(default_factory=dict)  # keys from a newer format, kept on rewrite

    @property
    def eval_accuracy(self) -> float | None:
        """The accuracy on the held-out images, or None without an evaluation."""
        return (self.evaluation or {}).get("accuracy")

    @property
    def dataset_root(self) -> str:
        """The dataset folder the run was trained on ("" when not recorded)."""
        return self.dataset.get("root", "")

    def image_path(self, relative: str) -> str:
        """The absolute path of an evaluated image (it may have moved since).

        Args:
            relative: The image's path relative to the dataset root, as recorded.

        Returns:
            The absolute path.
        """
        return str(Path(self.dataset_root) / relative)

    def image_results(self) -> dict[str, dict[str, Any]]:
        """``{relative path: {true, predicted, confidence}}`` of the evaluated images.

        Returns:
            The rows of ``evaluation["images"]`` by path (empty without an evaluation).
        """
        return {row["path"]: row for row in (self.evaluation or {}).get("images", [])}

    def summary(self, file: str | os.PathLike = "") -> RunSummary:
        """The run's line in the run list.

        Args:
            file: The run file it was read from.

        Returns:
            The summary.
        """
        evaluation = self.evaluation or {}
        return RunSummary(
            id=self.id, started=self.started, finished=self.finished,
            dataset_root=self.dataset_root, dataset_fingerprint=self.dataset.get("fingerprint", ""),
            preset=self.preset, seed=self.seed, epochs_run=self.epochs_run,
            best_val_accuracy=self.best_val_accuracy, eval_accuracy=evaluation.get("accuracy"),
            eval_split=evaluation.get("split"), model_path=self.model_path, file=str(file),
        )

    def to_dict(self) -> dict[str, Any]:
        """The run file's content (keys of a newer format kept as read).

        Returns:
            A JSON-ready dict.
        """
        data = dict(self.extra)
        data.update({
            "format": FORMAT, "id": self.id, "started": self.started, "finished": self.finished,
            "app_version": self.app_version, "dataset": self.dataset,
            "class_names": list(self.class_names), "preset": self.preset, "config": self.config,
            "seed": self.seed, "history": self.history, "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch, "best_val_accuracy": self.best_val_accuracy,
            "stop_reason": self.stop_reason, "seconds": self.seconds,
            "model_path": self.model_path, "evaluation": self.evaluation,
        })
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Run:
        """Build a run from parsed JSON.

        Args:
            data: What ``json.loads`` gave for a run file (untrusted).

        Returns:
            The run.

        Raises:
            ValueError: The data is not a run, naming what is wrong.
        """
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        missing = [key for key in _REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if not RUN_ID_PATTERN.match(str(data["id"])):
            raise ValueError(f"bad run id {data['id']!r}")
        for key, kind in (("dataset", dict), ("class_names", list), ("config", dict), ("history", dict)):
            if not isinstance(data[key], kind):
                raise ValueError(f"'{key}' is not a {kind.__name__}")
        evaluation = data.get("evaluation")
        if evaluation is not None and not (isinstance(evaluation, dict)
                                           and isinstance(evaluation.get("images", []), list)):
            raise ValueError("'evaluation' is malformed")
        known = set(cls.__dataclass_fields__) | {"format"}
        return cls(
            id=str(data["id"]), started=str(data.get("started", data["finished"])),
            finished=str(data["finished"]), dataset=data["dataset"],
            class_names=[str(name) for name in data["class_names"]], preset=str(data["preset"]),
            config=data["config"], seed=data.get("seed"), history=data["history"],
            epochs_run=int(data.get("epochs_run") or 0), best_epoch=int(data.get("best_epoch") or 0),
            best_val_accuracy=data.get("best_val_accuracy"),
            stop_reason=str(data.get("stop_reason", "")), seconds=float(data.get("seconds") or 0.0),
            model_path=data.get("model_path"), evaluation=evaluation,
            app_version=str(data.get("app_version", "")),
            extra={key: value for key, value in data.items() if key not in known},
        )


# -- recording ---------------------------------------------------------------------------

def evaluate_run(result: TrainingResult, scan: DatasetScan,
                 on_progress: Callable[[int, int], None] | None = None,
                 stop_event: threading.Event | None = None) -> EvaluationReport | None:
    """Evaluate a freshly trained model on what ``core.evaluation.evaluation_items`` chooses.

    That is the rule of ``imgcls evaluate`` and the window.

    Args:
        result: What training returned.
        scan: The dataset it was trained on.
        on_progress: Optional ``callable(done, total)`` over the images.
        stop_event: Optional ``threading.Event`` that stops the predictions.

    Returns:
        The report, or None if nothing is held out.
    """
    from .evaluation import evaluate_items, evaluation_items
    from .model_io import from_training

    items, split, _reason = evaluation_items(scan, result.metadata)
    if not items:
        return None
    report = evaluate_items(from_training(result), items, scan.class_names,
                            on_progress=on_progress, stop_event=stop_event)
    report.split = split
    return report


def record_run(result: TrainingResult, scan: DatasetScan | None, model_path: str | os.PathLike | None = None,
               report: EvaluationReport | None = None, *, evaluate: bool = True) -> Run:
    """Write a new run for a finished training and return it.

    Args:
        result: The ``core.training.TrainingResult``.
        scan: The ``DatasetScan`` it was trained on (its root makes image paths relative);
            None records the dataset from the model's metadata, without an evaluation.
        model_path: Where the model was saved, or None (see :func:`set_model_path`).
        report: An ``EvaluationReport`` of this model already made (the window has one);
            when None and ``evaluate`` is true, the model is evaluated here.
        evaluate: False records the run without an evaluation.

    Returns:
        The recorded run, with its id.

    Raises:
        HistoryError: The run file could not be written, or the model's run id is taken.
    """
    if report is None and evaluate and scan is not None:
        report = evaluate_run(result, scan)
    metadata = result.metadata or {}
    dataset_meta = metadata.get("dataset") or {}
    training_meta = metadata.get("training") or {}
    root = scan.root if scan is not None else Path(dataset_meta.get("root", ""))
    fingerprint = dataset_meta.get("fingerprint") or (scan.fingerprint() if scan is not None else "")
    config = training_meta.get("config") or {}
    finished = datetime.now().astimezone()
    started = finished - timedelta(seconds=float(result.seconds or 0.0))
    run = Run(
        id="", started=started.isoformat(timespec="seconds"),
        finished=finished.isoformat(timespec="milliseconds"),
        dataset={"root": os.path.abspath(root), "fingerprint": fingerprint,
                 "layout": dataset_meta.get("layout", getattr(scan, "layout", None))},
        class_names=list(result.class_names), preset=str(metadata.get("preset", config.get("preset", ""))),
        config=config, seed=config.get("seed", dataset_meta.get("seed")),
        history={key: [_number(v) for v in values] for key, values in (result.history or {}).items()},
        epochs_run=int(result.epochs_run), best_epoch=int(result.best_epoch),
        best_val_accuracy=_number(result.best_val_accuracy), stop_reason=str(result.stop_reason),
        seconds=round(float(result.seconds or 0.0), 2),
        model_path=os.path.abspath(model_path) if model_path else None,
        evaluation=_evaluation_record(report, root) if report is not None else None,
    )
    folder = runs_dir()
    stamped = metadata.get("run_id")
    if isinstance(stamped, str) and RUN_ID_PATTERN.match(stamped):
        # The saved model carries this id (assign_run_id): the run must take exactly it.
        run.id = stamped
        if not _claim(folder / f"{run.id}.json"):
            raise HistoryError(f"A run {run.id} is already recorded in {folder}; this model was "
                               "recorded before (or its file was copied), so it is not recorded again.")
    else:
        # The random tail keeps two runs recorded in the same second apart; O_EXCL in
        # _claim makes sure a clash (or another process) can never overwrite a run.
        for _attempt in range(20):
            run.id = new_run_id(finished)
            if _claim(folder / f"{run.id}.json"):
                break
        else:
            raise HistoryError(f"Could not find a free run id in {folder}; remove old runs there.")
    try:
        _write_json(folder / f"{run.id}.json", run.to_dict())
    except BaseException:
        _remove_quietly(folder / f"{run.id}.json")
        raise
    return run


def new_run_id(moment: datetime | None = None) -> str:
    """A fresh run id (``20261122-153012-ab12``): the time, then four random hex digits.

    Args:
        moment: The time it names (default: now, local time).

    Returns:
        The id.
    """
    moment = moment or datetime.now().astimezone()
    return f"{moment.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def assign_run_id(result: TrainingResult) -> str:
    """Give a finished training its run id before its model is saved, and return it.

    The id goes into ``result.metadata["run_id"]``, so the saved ``.keras`` file carries
    it and :func:`record_run` records the run under the same id. When two runs write one
    file, the file then says which run it holds (see :func:`model_status`).

    Args:
        result: What training returned; its metadata is changed in place.

    Returns:
        The run id (the one already there, when valid).
    """
    metadata = result.metadata if result.metadata is not None else {}
    run_id = metadata.get("run_id")
    if not (isinstance(run_id, str) and RUN_ID_PATTERN.match(run_id)):
        run_id = metadata["run_id"] = new_run_id()
    result.metadata = metadata
    return run_id


def _claim(path):
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    except OSError as exc:
        raise HistoryError(f"Cannot write the run file {path}: {exc.strerror or exc}. "
                           "Check that the data folder is writable.") from exc
    os.close(fd)  # empty until the real content replaces it; a listing skips it meanwhile
    return True


def _evaluation_record(report, root):
    """The part of an ``EvaluationReport`` a run keeps, with paths relative to ``root``."""
    document = report.to_dict()
    predicted = report.y_pred
    names = report.class_names
    images = []
    for index, path in enumerate(report.paths):
        column = int(predicted[index])
        images.append({
            "path": relative_posix(path, root),
            "true": names[int(report.y_true[index])],
            "predicted": names[column],
            "confidence": round(float(report.probabilities[index, column]), 4),
        })
    record = {key: document[key] for key in ("split", "num_images", "accuracy", "class_names",
                                             "per_class", "confusion_matrix", "ece")}
    record["accuracy"] = _number(report.accuracy)  # unrounded: the same number the window shows
    record["ece"] = _number(record["ece"])
    record["errors"] = [{"path": relative_posix(path, root), "reason": reason}
                        for path, reason in report.errors]
    record["images"] = images
    return record


def set_model_path(run_id: str, path: str | os.PathLike | None) -> Run:
    """Record where a run's model now lives (after Save as, or None when it is gone).

    Args:
        run_id: The run.
        path: The model file, or None.

    Returns:
        The run as rewritten.

    Raises:
        UnknownRunError: No such run.
        RunFileError: The run file is damaged.
        HistoryError: The run file could not be written.
    """
    file = _run_file(run_id)
    run = _read_run(file)
    run.model_path = os.path.abspath(path) if path else None
    _write_json(file, run.to_dict())
    return run


@dataclass
class ModelStatus:
    """Whether a run's model file still holds that run's model.

    ``state`` is "ok"; "unverified" (the file carries no run id: saved by a version of this
    app before issue 17, or re-saved by a plain Keras script); "not saved"; "missing";
    "replaced" (the file holds another run's model: ``other_run``); or "unreadable".
    ``message`` says so in a sentence, None when the state is "ok".
    """

    state: str
    path: str | None
    message: str | None = None
    other_run: str | None = None

    @property
    def usable(self) -> bool:
        """Whether the file may be opened as the run's model ("ok" or "unverified")."""
        return self.state in ("ok", "unverified")


def model_status(run: Run | RunSummary) -> ModelStatus:
    """Check a run's model file against the run (reads one small member; no TensorFlow).

    Args:
        run: A :class:`Run` or :class:`RunSummary`.

    Returns:
        The status of its model file.
    """
    from .model_io import read_run_id
    from .names import display_name

    path = run.model_path
    if not path:
        return ModelStatus("not saved", None, f"Run {run.id}'s model was not saved.")
    shown = display_name(path)
    if not Path(path).is_file():
        return ModelStatus("missing", path, f"Run {run.id}'s model {shown} has been moved or deleted.")
    try:
        carried = read_run_id(path)
    except ImgclsError as exc:
        return ModelStatus("unreadable", path, f"Run {run.id}'s model file cannot be read: {exc}")
    if carried is None:
        return ModelStatus("unverified", path)
    if carried != run.id:
        return ModelStatus(
            "replaced", path,
            f"{shown} no longer holds run {run.id}'s model: it was overwritten by run {carried}'s "
            f"model. Open run {carried} instead, or retrain run {run.id}.", other_run=carried)
    return ModelStatus("ok", path)


def run_model_path(run_id: str) -> str:
    """The model file to open for a run.

    Args:
        run_id: The run.

    Returns:
        The model file's path.

    Raises:
        HistoryError: The file does not hold that run's model (not saved, missing,
            overwritten by another run, unreadable); :class:`UnknownRunError` for no such run.
    """
    status = model_status(load_run(run_id))
    if not status.usable:
        raise HistoryError(status.message)
    return cast(str, status.path)  # a usable status ("ok", "unverified") always has its path


def delete_run(run_id: str) -> Path:
    """Forget a run (its model file, wherever it is, is left alone).

    Args:
        run_id: The run.

    Returns:
        The run file removed.

    Raises:
        UnknownRunError: No such run.
        HistoryError: The file could not be deleted.
    """
    return delete_run_file(_run_file(run_id))


def delete_run_file(file: str | os.PathLike) -> Path:
    """Remove one run file of the runs folder, readable or damaged.

    Args:
        file: The run file.

    Returns:
        The file removed.

    Raises:
        UnknownRunError: The file does not exist.
        HistoryError: The file could not be deleted.
    """
    file = Path(file)
    try:
        file.unlink()
    except FileNotFoundError:
        raise UnknownRunError(f"No run {file.stem} in {file.parent}.") from None
    except OSError as exc:
        raise HistoryError(f"Could not delete {file}: {exc.strerror or exc}.") from exc
    with _cache_lock:
        _summary_cache.pop(str(file), None)
    return file


def resolve_run_file(text: str) -> Path:
    """The file ``runs delete`` removes for what the user typed; damaged run files included.

    A damaged file is listed by name, never as a run, so it is matched by file name here:
    its name as the warning about it shows it (with or without ``.json``), a prefix of it
    unique among all the run files (readable or not), or its path. ``latest`` and
    ``previous`` mean readable runs, as in :func:`resolve_run_id`.

    Args:
        text: What the user typed.

    Returns:
        The run file.

    Raises:
        UnknownRunError: Nothing, or more than one file, matches; or the path given is not
            a file of the runs folder (nothing else is ever deleted).
    """
    folder = runs_dir(create=False)
    text = str(text).strip()
    if text.lower() in ("latest", "previous"):
        return _run_file(resolve_run_id(text))
    if "/" in text or os.sep in text:  # a path, as a warning printed it
        given = Path(os.path.abspath(text))
        if given.suffix != ".json" or os.path.realpath(given.parent) != os.path.realpath(folder) \
                or not given.is_file():
            raise UnknownRunError(f"{text} is not a run file of {folder}; only the files there "
                                  "can be deleted. 'imgcls runs' lists them.")
        return given
    try:
        stems = sorted(file.stem for file in folder.glob("*.json") if not file.name.startswith("."))
    except OSError:
        stems = []
    name = text[:-len(".json")] if text.endswith(".json") else text
    if name in stems:
        return folder / f"{name}.json"
    matches = [stem for stem in stems if name and stem.startswith(name)]
    if len(matches) == 1:
        return folder / f"{matches[0]}.json"
    if matches:
        raise UnknownRunError(f"'{text}' matches {len(matches)} run files ({', '.join(matches[:4])}"
                              f"{', ...' if len(matches) > 4 else ''}); give more of the name.")
    raise UnknownRunError(f"No run '{text}' in {folder}. 'imgcls runs' lists the runs.")


# -- reading -----------------------------------------------------------------------------

_summary_cache: dict[str, tuple] = {}  # file -> ((mtime_ns, size), RunSummary): listing re-reads changed files only
_cache_lock = threading.Lock()


def scan_runs() -> tuple[list[RunSummary], list[tuple[str, str]]]:
    """All readable runs, newest first, and the files that could not be read.

    Returns:
        ``(summaries, problems)``; ``problems`` is ``[(file, reason)]``.
    """
    folder = runs_dir(create=False)
    summaries: list[RunSummary] = []
    problems: list[tuple[str, str]] = []
    if not folder.is_dir():
        return summaries, problems
    try:
        files = sorted(folder.glob("*.json"), reverse=True)
    except OSError as exc:
        return [], [(str(folder), f"folder could not be read ({exc.strerror or exc})")]
    for file in files:
        if file.name.startswith("."):
            continue
        try:
            stat = file.stat()
        except OSError as exc:
            problems.append((str(file), f"could not be read ({exc.strerror or exc})"))
            continue
        if stat.st_size == 0:
            continue  # claimed by a run being written right now
        key = (stat.st_mtime_ns, stat.st_size)
        with _cache_lock:
            cached = _summary_cache.get(str(file))
        if cached is not None and cached[0] == key:
            summaries.append(cached[1])
            continue
        try:
            summary = _read_run(file).summary(file)
        except UnknownRunError:
            continue  # deleted since the folder was listed
        except RunFileError as exc:
            problems.append((str(file), exc.reason))
            continue
        with _cache_lock:
            _summary_cache[str(file)] = (key, summary)
        summaries.append(summary)
    summaries.sort(key=_recency, reverse=True)
    return summaries, problems


def _recency(summary):
    # Ids only resolve seconds; the recorded time (milliseconds) orders runs within one.
    try:
        moment = datetime.fromisoformat(summary.finished).timestamp()
    except (TypeError, ValueError):
        moment = 0.0
    return moment, summary.id


def list_runs() -> list[RunSummary]:
    """Readable runs, newest first; damaged files are logged and skipped.

    Returns:
        The summaries, newest first.
    """
    summaries, problems = scan_runs()
    for file, reason in problems:
        log.warning("Skipped run file %s: %s", file, reason)
    return summaries


def load_run(run_id: str) -> Run:
    """The full :class:`Run` for an id (see :func:`resolve_run_id` for short forms).

    Args:
        run_id: A full run id.

    Returns:
        The run.

    Raises:
        UnknownRunError: Not a run id, or no such run.
        RunFileError: The run file is damaged.
    """
    return _read_run(_run_file(run_id))


def resolve_run_id(text: str, summaries: Sequence[RunSummary] | None = None) -> str:
    """Turn what a user typed into a run id.

    Accepts a full id, a unique prefix of one (``20261122-1530``), ``latest`` and
    ``previous`` (the newest run and the one before it).

    Args:
        text: What the user typed.
        summaries: The runs to match against, newest first (default: :func:`scan_runs`).

    Returns:
        The run id.

    Raises:
        UnknownRunError: Nothing, or more than one run, matches.
    """
    text = str(text).strip()
    if summaries is None:
        summaries, _problems = scan_runs()
    ids = [summary.id for summary in summaries]
    named = {"latest": 0, "previous": 1}
    if text.lower() in named:
        position = named[text.lower()]
        if len(ids) <= position:
            raise UnknownRunError(f"There is no {text.lower()} run: {len(ids)} run(s) recorded "
                                  f"in {runs_dir(create=False)}.")
        return ids[position]
    if text in ids or (RUN_ID_PATTERN.match(text) and (runs_dir(create=False) / f"{text}.json").exists()):
        return text  # a damaged file still resolves, so it can be shown (the error says why) or deleted
    matches = [run_id for run_id in ids if run_id.startswith(text)] if text else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UnknownRunError(f"'{text}' matches {len(matches)} runs ({', '.join(matches[:4])}"
                              f"{', ...' if len(matches) > 4 else ''}); give more of the id.")
    raise UnknownRunError(f"No run '{text}' in {runs_dir(create=False)}. 'imgcls runs' lists the runs.")


def _run_file(run_id):
    if not RUN_ID_PATTERN.match(str(run_id)):
        raise UnknownRunError(f"'{run_id}' is not a run id (they look like 20261122-153012-ab12). "
                              "'imgcls runs' lists the runs.")
    return runs_dir(create=False) / f"{run_id}.json"


def _read_run(file):
    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnknownRunError(f"No run {Path(file).stem} in {Path(file).parent}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(file, f"could not be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(file, f"is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    try:
        run = Run.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise RunFileError(file, f"is not an imgcls run ({exc})") from None
    if run.id != Path(file).stem:
        raise RunFileError(file, f"holds run {run.id}, not {Path(file).stem}")
    return run


def _write_json(path, data):
    """Write a run file atomically (``output_files.write_json_atomic``); failures name the file."""
    try:
        write_json_atomic(path, data, error=HistoryError)
    except HistoryError as exc:
        raise HistoryError(f"Could not write the run file: {exc} The model itself is not affected.") from exc


def _remove_quietly(path):
    if path is None:
        return
    try:
        Path(path).unlink()
    except OSError:
        pass


# -- comparing ---------------------------------------------------------------------------

def compare_runs(a: str | Run, b: str | Run) -> dict[str, Any]:
    """What changed from run ``a`` (the baseline) to run ``b``.

    Args:
        a: The baseline: a run id or a :class:`Run`.
        b: The run compared with it: a run id or a :class:`Run`.

    Returns:
        A dict: ``a``, ``b`` (ids); ``same_dataset`` (equal fingerprints); ``note`` (why
        flips are limited or missing, else None); ``metrics`` and ``per_class`` (``{a, b,
        delta}`` each); ``config_changes`` (``{key: [a, b]}``); ``num_compared`` (images
        evaluated in both runs with the same true class); ``flipped_to_wrong`` (right in
        ``a``, wrong in ``b``) and ``flipped_to_right``, each a list of ``{path, true,
        a_predicted, a_confidence, b_predicted, b_confidence}`` sorted by path.

    Raises:
        UnknownRunError: No such run.
        RunFileError: A run file is damaged.
    """
    run_a = a if isinstance(a, Run) else load_run(a)
    run_b = b if isinstance(b, Run) else load_run(b)
    metrics_b = run_metrics(run_b)
    same_dataset = bool(run_a.dataset.get("fingerprint")) and (
        run_a.dataset.get("fingerprint") == run_b.dataset.get("fingerprint"))
    images_a, images_b = run_a.image_results(), run_b.image_results()
    common = sorted(path for path in images_a.keys() & images_b.keys()
                    if images_a[path]["true"] == images_b[path]["true"])
    to_wrong: list[dict] = []
    to_right: list[dict] = []
    for path in common:
        row_a, row_b = images_a[path], images_b[path]
        right_a = row_a["predicted"] == row_a["true"]
        right_b = row_b["predicted"] == row_b["true"]
        if right_a == right_b:
            continue
        entry = {"path": path, "true": row_a["true"],
                 "a_predicted": row_a["predicted"], "a_confidence": row_a.get("confidence"),
                 "b_predicted": row_b["predicted"], "b_confidence": row_b.get("confidence")}
        (to_wrong if right_a else to_right).append(entry)
    return {
        "a": run_a.id, "b": run_b.id,
        "same_dataset": same_dataset,
        "note": _comparison_note(run_a, run_b, same_dataset, len(common)),
        "metrics": {name: _delta(value, metrics_b[name]) for name, value in run_metrics(run_a).items()},
        "per_class": _per_class_deltas(run_a, run_b),
        "config_changes": _config_changes(run_a.config, run_b.config),
        "num_compared": len(common),
        "flipped_to_wrong": to_wrong,
        "flipped_to_right": to_right,
    }


def _comparison_note(run_a, run_b, same_dataset, num_common):
    for run in (run_a, run_b):
        if not run.evaluation or not run.evaluation.get("images"):
            return (f"Run {run.id} has no per-image evaluation (nothing was held out), "
                    "so no images can be compared.")
    if num_common == 0:
        return "The runs share no evaluated image, so no images can be compared."
    if not same_dataset:
        return (f"The runs were trained on different datasets or dataset versions (their "
                f"fingerprints differ); flips are listed for the {num_common} evaluated "
                "images both runs share, matched by path.")
    return None


def _at_best_epoch(run, key):
    values = run.history.get(key) or []
    index = run.best_epoch - 1 if 0 < run.best_epoch <= len(values) else len(values) - 1
    return values[index] if values else None


_METRICS = {
    "eval_accuracy": lambda run: run.eval_accuracy,
    "best_val_accuracy": lambda run: run.best_val_accuracy,
    "val_loss": lambda run: _at_best_epoch(run, "val_loss"),
    "train_accuracy": lambda run: _at_best_epoch(run, "accuracy"),
    "train_loss": lambda run: _at_best_epoch(run, "loss"),
    "epochs_run": lambda run: run.epochs_run,
    "best_epoch": lambda run: run.best_epoch,
    "seconds": lambda run: run.seconds,
}


def run_metrics(run: Run) -> dict[str, Any]:
    """The numbers :func:`compare_runs` compares, for one run (None where unknown).

    Args:
        run: The run.

    Returns:
        ``{metric name: number or None}``.
    """
    return {name: value(run) for name, value in _METRICS.items()}


def _delta(value_a, value_b):
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value_a, value_b))
    return {"a": value_a, "b": value_b,
            "delta": round(value_b - value_a, 6) if numeric else None}


def _per_class_deltas(run_a, run_b):
    rows_a = (run_a.evaluation or {}).get("per_class") or {}
    rows_b = (run_b.evaluation or {}).get("per_class") or {}
    return {name: {key: _delta(rows_a[name].get(key), rows_b[name].get(key))
                   for key in ("precision", "recall", "f1")}
            for name in rows_a if name in rows_b}


def _config_changes(config_a, config_b):
    flat_a, flat_b = _flatten(config_a), _flatten(config_b)
    return {key: [flat_a.get(key), flat_b.get(key)]
            for key in sorted(flat_a.keys() | flat_b.keys()) if flat_a.get(key) != flat_b.get(key)}


def _flatten(config, prefix=""):
    flat = {}
    for key, value in (config or {}).items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- helpers -----------------------------------------------------------------------------

def _number(value):
    """A JSON-safe float (NaN and infinities become None), or None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
