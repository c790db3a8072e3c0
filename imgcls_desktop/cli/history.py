"""The ``runs`` verb of ``imgcls`` and the run recording after ``imgcls train``.

``imgcls runs`` lists the recorded runs; ``runs show ID``, ``runs compare ID1 ID2`` and
``runs delete ID`` act on one or two of them (an id may be shortened to a unique prefix,
or given as ``latest`` / ``previous``). :func:`add_commands` registers the verb;
:data:`COMMANDS` maps it to its function, which returns the exit status (see
:mod:`._common`; 3: some run files could not be read).
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from ..core.names import display_name
from ._common import EXIT_OK, EXIT_PARTIAL, print_confusion_matrix, print_per_class, usage

_LIST_LIMIT = 20  # flipped or wrong images printed as text; --json has them all

log = logging.getLogger("imgcls")


def add_commands(subparsers, common_parent):
    """Add ``runs`` (with ``show``, ``compare`` and ``delete``) to ``subparsers``.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers`` returned.
        common_parent: The parser holding the shared ``--json`` and ``--debug`` options.
    """
    p = subparsers.add_parser("runs", parents=[common_parent],
                              help="the recorded training runs: list, show, compare, delete",
                              description="Without an ACTION, list the recorded runs, newest first.")
    # The actions' own --json/--debug default to "not given", so `runs --json show X`
    # keeps the flag given before the action.
    nested = argparse.ArgumentParser(add_help=False)
    nested.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print one JSON document on stdout")
    nested.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    actions = p.add_subparsers(dest="runs_action", parser_class=type(p), metavar="ACTION")
    show = actions.add_parser("show", parents=[nested], help="everything recorded about one run")
    show.add_argument("run_id", metavar="ID")
    compare = actions.add_parser("compare", parents=[nested],
                                 help="metric changes and the images that flipped between two runs")
    compare.add_argument("run_a", metavar="ID1", help="the baseline run")
    compare.add_argument("run_b", metavar="ID2", help="the run compared with it")
    delete = actions.add_parser("delete", parents=[nested],
                                help="forget a run (its model file is kept)")
    delete.add_argument("run_id", metavar="ID")


def add_train_options(train_parser):
    """The ``train`` options that belong to the history (``--no-history``)."""
    train_parser.add_argument("--no-history", action="store_true",
                              help="do not record this run in the run history")


def _percent(value):
    return f"{value:.3f}" if isinstance(value, (int, float)) else "-"


# -- recording after `imgcls train` ------------------------------------------------------

def record_training(args, result, scan, model_path):
    """Record a finished ``imgcls train`` run; returns the Run, or None (off or failed).

    The model is saved before this runs, so whatever fails here costs the user nothing
    but the history entry: it is reported on stderr and training still succeeds.
    """
    from ..core.history import record_run

    if getattr(args, "no_history", False):
        return None
    try:
        return record_run(result, scan, model_path)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("Could not record the run: %s", exc, exc_info=True)
        print(f"imgcls: warning: the run was not recorded in the history ({exc}); "
              f"the model {model_path} is saved", file=sys.stderr)
        return None


def print_recorded(args, run):
    """The line ``imgcls train`` prints about the recorded run (text mode only)."""
    if run is None or args.json:
        return
    evaluation = run.evaluation
    detail = (f", accuracy {evaluation['accuracy']:.3f} on {evaluation['num_images']} "
              f"{evaluation['split']} images" if evaluation else ", no held-out images to evaluate")
    print(f"Recorded run {run.id}{detail} (imgcls runs show {run.id})")


# -- the verb ----------------------------------------------------------------------------

def cmd_runs(args):
    from ..core.history import UnknownRunError

    action = getattr(args, "runs_action", None)
    try:
        if action == "show":
            return _show(args)
        if action == "compare":
            return _compare(args)
        if action == "delete":
            return _delete(args)
    except UnknownRunError as exc:
        return usage(str(exc))
    return _list(args)


def _warn_problems(problems):
    for file, reason in problems:
        remedy = f"; 'imgcls runs delete \"{Path(file).stem}\"' removes it" if file.endswith(".json") else ""
        print(f"imgcls: warning: skipped the run file {display_name(file)}: {display_name(reason)}"
              f"{display_name(remedy)}", file=sys.stderr)


def _list(args):
    from ..core.history import model_status, runs_dir, scan_runs
    from ..core.names import display_name

    summaries, problems = scan_runs()
    if args.json:
        print(json.dumps({"folder": str(runs_dir(create=False)), "runs": [s.to_dict() for s in summaries],
                          "problems": [{"path": f, "reason": r} for f, r in problems]}, indent=1))
    elif not summaries:
        print(f"No runs recorded yet in {runs_dir(create=False)}. 'imgcls train' and the window record each run.")
    else:
        print(f"{'id':21s} {'date':16s} {'dataset':18s} {'preset':15s} {'epochs':>6s} "
              f"{'val acc':>8s} {'eval acc':>8s}  model")
        for s in summaries:
            model = display_name(s.model_path) if s.model_path else "-"
            status = model_status(s)  # does the file still hold this run's model?
            if status.state == "replaced":
                model += f" (replaced by run {status.other_run})"
            elif status.state in ("missing", "unreadable"):
                model += f" ({status.state})"
            print(f"{s.id:21s} {s.finished[:16].replace('T', ' '):16s} {s.dataset_name[:18]:18s} "
                  f"{s.preset[:15]:15s} {s.epochs_run:6d} {_percent(s.best_val_accuracy):>8s} "
                  f"{_percent(s.eval_accuracy):>8s}  {model}")
    _warn_problems(problems)
    return EXIT_PARTIAL if problems else EXIT_OK


def _show(args):
    from ..core.history import load_run, model_status, resolve_run_id
    from ..core.names import display_name

    run = load_run(resolve_run_id(args.run_id))
    if args.json:
        print(json.dumps(run.to_dict(), indent=1))
        return EXIT_OK
    print(f"run {run.id}: {run.preset} on {run.dataset_root}")
    print(f"  {run.started} -> {run.finished} ({run.seconds:.0f} s, {run.stop_reason})")
    print(f"  dataset fingerprint {run.dataset.get('fingerprint', '')[:16]}, "
          f"{len(run.class_names)} classes: {', '.join(run.class_names)}")
    settings = ", ".join(f"{key}={value}" for key, value in run.config.items()
                         if key != "augmentation" and value is not None)
    print(f"  settings: {settings}")
    print(f"  model: {display_name(run.model_path) if run.model_path else 'not saved'}")
    status = model_status(run)
    if not status.usable and status.state != "not saved":
        print(f"  warning: {status.message}")
    history = run.history
    columns = [key for key in ("loss", "accuracy", "val_loss", "val_accuracy") if history.get(key)]
    print(f"  epochs run {run.epochs_run}, best epoch {run.best_epoch}")
    print("  epoch" + "".join(f"{key:>14s}" for key in columns))
    for index in range(len(history.get(columns[0], [])) if columns else 0):
        marker = "*" if index + 1 == run.best_epoch else " "
        print(f"  {index + 1:4d}{marker}" + "".join(
            f"{_value_at(history[key], index):>14s}" for key in columns))
    evaluation = run.evaluation
    if not evaluation:
        print("  no evaluation: nothing was held out to evaluate on")
        return EXIT_OK
    print(f"  evaluation: accuracy {evaluation['accuracy']:.4f} on {evaluation['num_images']} "
          f"{evaluation['split']} images")
    print_per_class(evaluation.get("per_class", {}), indent="    ")
    print_confusion_matrix(evaluation.get("class_names", run.class_names),
                           evaluation.get("confusion_matrix", []), indent="    ")
    wrong = [row for row in evaluation.get("images", []) if row["predicted"] != row["true"]]
    for row in wrong[:_LIST_LIMIT]:
        print(f"    wrong: {row['path']}: {row['true']} -> {row['predicted']} ({row['confidence']:.2f})")
    if len(wrong) > _LIST_LIMIT:
        print(f"    ... and {len(wrong) - _LIST_LIMIT} more (use --json for all)")
    return EXIT_OK


def _value_at(values, index):
    value = values[index] if index < len(values) else None
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


_METRIC_TITLES = {
    "eval_accuracy": "eval accuracy", "best_val_accuracy": "best val accuracy",
    "val_loss": "val loss (best epoch)", "train_accuracy": "train accuracy (best)",
    "train_loss": "train loss (best)", "epochs_run": "epochs run", "best_epoch": "best epoch",
    "seconds": "seconds",
}


def _compare(args):
    from ..core.history import compare_runs, resolve_run_id, scan_runs

    summaries, _problems = scan_runs()
    run_a = resolve_run_id(args.run_a, summaries)
    run_b = resolve_run_id(args.run_b, summaries)
    comparison = compare_runs(run_a, run_b)
    if args.json:
        print(json.dumps(comparison, indent=1))
        return EXIT_OK
    print(f"comparing {run_a} (baseline) with {run_b}")
    if comparison["note"]:
        print(f"  note: {comparison['note']}")
    print(f"  {'':24s}{'baseline':>10s}{'compared':>10s}{'change':>10s}")
    for name, row in comparison["metrics"].items():
        delta = row["delta"]
        delta = "-" if delta is None else f"{delta:+d}" if isinstance(delta, int) else f"{delta:+.3f}"
        print(f"  {_METRIC_TITLES.get(name, name):24s}{_number_text(row['a']):>10s}"
              f"{_number_text(row['b']):>10s}{delta:>10s}")
    for key, (old, new) in comparison["config_changes"].items():
        print(f"  setting {key}: {old} -> {new}")
    for name, row in comparison["per_class"].items():
        f1 = row["f1"]
        if f1["delta"]:
            print(f"  f1 of {name}: {f1['a']:.3f} -> {f1['b']:.3f} ({f1['delta']:+.3f})")
    for key, title in (("flipped_to_wrong", "right -> wrong"), ("flipped_to_right", "wrong -> right")):
        rows = comparison[key]
        print(f"  {title}: {len(rows)} of {comparison['num_compared']} images")
        for row in rows[:_LIST_LIMIT]:
            print(f"    {row['path']} ({row['true']}): {row['a_predicted']} {row['a_confidence']:.2f}"
                  f" -> {row['b_predicted']} {row['b_confidence']:.2f}")
        if len(rows) > _LIST_LIMIT:
            print(f"    ... and {len(rows) - _LIST_LIMIT} more (use --json for all)")
    return EXIT_OK


def _number_text(value):
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _delete(args):
    from ..core.history import delete_run_file, load_run, resolve_run_file

    file = resolve_run_file(args.run_id)  # damaged files too: they are listed by name, never as runs
    run_id = file.stem
    try:
        model_path = load_run(run_id).model_path
    except Exception:  # noqa: BLE001 - a damaged run file can still be deleted
        model_path = None
    delete_run_file(file)
    if args.json:
        print(json.dumps({"deleted": run_id, "file": str(file), "model_kept": model_path}, indent=1))
    else:
        kept = f"; its model {display_name(model_path)} is kept" if model_path else ""
        print(f"Deleted run {display_name(run_id)}{kept}")
    return EXIT_OK


COMMANDS = {"runs": cmd_runs}
