"""The ``imgcls`` command: a thin shell over core.

Exit status: 0 all done; 3 done but some inputs failed; 2 usage error; 1 nothing could be done;
141 stdout was closed by its reader (``| head``), which ends the command quietly.
"""

import argparse
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

from . import __version__, cli_insight
from . import cli_history  # runs: the run history
from . import cli_data  # move, undo, journal

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a Unix tool whose reader went away


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"imgcls: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser():
    from .core.models import DEFAULT_PRESET, PRESETS

    parser = _Parser(prog="imgcls", description="Train and use image classifiers from class folders.")
    parser.add_argument("--version", action="version", version=f"imgcls {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("inspect", parents=[common], help="what is in a dataset folder, what is wrong with it")
    p.add_argument("dataset", type=Path)
    p.add_argument("--no-validate", action="store_true", help="skip decoding every file (faster)")
    p.add_argument("--doctor", action="store_true",  # the dataset doctor, as `imgcls doctor` prints it
                   help="also look for near-duplicates, train/test leakage and class imbalance")

    p = sub.add_parser("train", parents=[common], help="train a model on a dataset folder")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, default=Path("model.keras"), help="model file to write (.keras)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="the model to train (default: recommended from the images and this machine's "
                        f"speed, printed before training; {DEFAULT_PRESET} for small images)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="train for this many seconds of wall-clock time instead of a number of epochs")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--image-size", type=int)
    p.add_argument("--validation-split", type=float,
                   help="share of the training images held out (default: 0.2, at most 2,500 images "
                        "on big folders; 0 when a val/ folder exists)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--patience", type=int, default=10, help="early stopping patience in epochs (0: off)")
    p.add_argument("--weights", help="local backbone weights file for transfer presets "
                                     "(default: ImageNet weights, downloaded once and cached)")
    p.add_argument("--augment", help="augmentation, e.g. 'flip,rotation=0.05,zoom=0.1,translation=0.1,"
                                     "contrast=0.2' or 'none' (default: the preset's)")
    p.add_argument("--class-weights", choices=["balanced"],
                   help="weigh each class by its inverse frequency (for imbalanced datasets; "
                        "'imgcls doctor' says when it is suggested)")
    p.add_argument("--fine-tune-epochs", type=int, default=0, metavar="N",
                   help="transfer presets: after the head, also train the top third of the backbone "
                        "for N epochs at a hundredth of the learning rate (with --time-budget: the "
                        "head gets a fifth of the time, fine-tuning the rest)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.add_argument("--distribute", choices=["auto", "off", "mirrored", "multi-worker"], default="auto",
                   help="auto: all local GPUs when there are several; multi-worker: the machines of "
                        "TF_CONFIG, where only the chief (worker 0) writes --out and the history")
    cli_history.add_train_options(p)  # --no-history

    p = sub.add_parser("evaluate", parents=[common], help="accuracy, per-class metrics, confusion matrix")
    p.add_argument("model", type=Path)
    p.add_argument("dataset", type=Path)

    p = sub.add_parser("predict", parents=[common], help="label image files and folders")
    p.add_argument("model", type=Path)
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--csv", type=Path, help="also write one row per image to this CSV file")

    _add_export_parser(sub, common)
    cli_insight.add_commands(sub, common)
    cli_history.add_commands(sub, common)
    cli_data.add_commands(sub, common)
    return parser


def _add_export_parser(sub, common):
    p = sub.add_parser("export", parents=[common],
                       help="export a model to saved_model, tflite or onnx, and check the export")
    p.add_argument("model", type=Path)
    p.add_argument("--format", required=True, choices=["saved_model", "tflite", "onnx"])
    p.add_argument("--out", type=Path, required=True,
                   help="folder (saved_model) or file (.tflite, .onnx) to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--samples", type=int, default=8,
                   help="random images to compare the export with the model on (default 8)")


# -- output helpers ---------------------------------------------------------------------

class _ProgressBar:
    """A one-line bar on a terminal (stderr); silent when stderr is not a terminal."""

    def __init__(self, enabled):
        self.enabled = enabled and sys.stderr is not None and sys.stderr.isatty()
        self.last = 0.0

    def show(self, fraction, text, force=False):
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        width = 28
        filled = int(width * max(0.0, min(1.0, fraction)))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\033[K")
        sys.stderr.flush()

    def done(self):
        if self.enabled:
            sys.stderr.write("\n")


def _log(args, message):
    if not args.json:
        print(message)


def _duration(seconds):
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"


# -- commands ---------------------------------------------------------------------------

def cmd_inspect(args):
    from .core.dataset import scan_dataset
    from .core.names import display_name as shown

    bar = _ProgressBar(not args.json)
    scan = scan_dataset(args.dataset, validate=not args.no_validate,
                        on_progress=lambda d, t: bar.show(d / max(t, 1), f"checking {d}/{t} files"))
    bar.done()
    report = scan.to_dict()
    if args.doctor:  # dataset doctor: on this scan, printed by the doctor command's printer
        report["doctor"] = cli_insight.doctor_document(scan, show_progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{shown(scan.root)}: {scan.layout} layout, {len(scan.class_names)} classes, {scan.num_images} usable images")
        counts = scan.counts()
        splits = list(counts)
        print(f"  {'class':24s}" + "".join(f"{s:>8s}" for s in splits))
        for name in scan.class_names:
            print(f"  {shown(name)[:24]:24s}" + "".join(f"{counts[s].get(name, 0):8d}" for s in splits))
        note = scan.balance_note()  # never "infx": an empty or unreadable class is named
        if note:
            print(f"  {note}")
        for problem in scan.problems:
            print(f"  problem: {shown(problem.path)}: {shown(problem.reason)}")
        for group in scan.duplicates:
            print(f"  duplicates: {' = '.join(shown(path) for path in group)}")
    for warning in scan.warnings:  # e.g. Cat/ and cat/: two classes here, one on Windows
        print(f"imgcls: warning: {shown(warning)}", file=sys.stderr)
    if args.doctor:  # dataset doctor
        cli_insight.print_doctor(report["doctor"], text=not args.json)
        if report["doctor"]["errors"]:
            return EXIT_PARTIAL
    return EXIT_PARTIAL if scan.problems else EXIT_OK


def _parse_augment(text, default):
    from dataclasses import replace

    from .core.models import Augmentation

    if text is None:
        return default
    if text.strip().lower() == "none":
        return Augmentation(flip=False)
    values = {"flip": False}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in ("flip", "rotation", "zoom", "translation", "contrast"):
            raise _UsageError(f"unknown augmentation {name!r} in --augment")
        try:
            values[name] = True if name == "flip" else float(value or 0.1)
        except ValueError:
            raise _UsageError(f"--augment: {name} needs a number, got {value!r}") from None
    return replace(Augmentation(flip=False), **values)


class _UsageError(Exception):
    pass


def cmd_train(args):
    from .core.output_files import check_output_writable, output_lock

    plan = None  # one machine: training makes its plan; multi-worker: first, before any TF op
    if getattr(args, "distribute", "auto") == "multi-worker":
        plan = _distribution_plan(args)
        if not plan.is_chief:
            return _train_as_worker(args, plan)
    out = args.out
    if out.suffix.lower() != ".keras":
        raise _UsageError(f"--out must end in .keras (got {out.name})")
    if out.exists() and not args.force:
        raise _UsageError(f"{out} exists; pass --force to overwrite it (it is only replaced once the new model is complete)")
    _check_settings(args)  # before the folder is scanned; core checks them again
    check_output_writable(out)  # a missing or read-only folder is refused before any epoch
    with output_lock(out):  # one run writes --out at a time, until its run is recorded
        return _train_into(args, out, plan)


def _distribution_plan(args):
    from .core.distribute import plan_for
    from .core.errors import TrainingError

    try:
        return plan_for(args.distribute)
    except TrainingError as exc:
        raise _UsageError(str(exc)) from None


def _train_as_worker(args, plan):
    """A worker that is not the chief (issue 14): it trains its share of every step, writes
    its model only to a temporary folder (removed), records no run, prints nothing on
    stdout, and ends with exit status 0 when the chief's run ends well."""
    import io
    import tempfile

    args.json, args.no_history, args.force = True, True, True
    with tempfile.TemporaryDirectory(prefix="imgcls-worker-") as folder, \
            contextlib.redirect_stdout(io.StringIO()):
        code = _train_into(args, Path(folder) / "model.keras", plan)
    return EXIT_OK if code in (EXIT_OK, EXIT_PARTIAL) else code


@contextlib.contextmanager
def _watching_peers(plan, out):
    """Under multi-worker, end this process with a clear message when a peer dies.

    TensorFlow's collectives would wait for the dead worker forever; nothing has been
    written yet (the model is saved after training), so ``out`` keeps what it held.
    """
    if plan is None or plan.kind != "multi-worker":
        yield
        return
    import os

    from .core.distribute import PeerWatch

    def lost(message):
        kept = f"; {out} is untouched" if plan.is_chief and out.exists() else ""
        print(f"imgcls: error: {message}. Training stopped and no model was written{kept}. "
              "Start every worker again.", file=sys.stderr, flush=True)
        os._exit(EXIT_FAILED)

    watch = PeerWatch(plan.cluster, lost, busy=plan.waiting_on_peers, start_timeout=float(
        os.environ.get("IMGCLS_WORKER_START_TIMEOUT", "300"))).start()
    try:
        yield
    finally:
        watch.stop()


def _check_settings(args):
    """Refuse out-of-range settings (with their allowed range) before any work."""
    from .core.training import TrainingConfig

    _check_run(TrainingConfig(
        preset=args.preset, epochs=args.epochs, time_budget=args.time_budget,
        batch_size=args.batch_size, learning_rate=args.learning_rate, image_size=args.image_size,
        validation_split=0.2 if args.validation_split is None else args.validation_split,
        seed=args.seed, early_stopping_patience=args.patience or None,
        class_weights=args.class_weights, fine_tune_epochs=args.fine_tune_epochs))


def _check_run(config, scan=None):
    from .core.errors import TrainingError
    from .core.run_checks import check_training_run

    try:
        check_training_run(config, scan)
    except TrainingError as exc:
        raise _UsageError(str(exc)) from None


def _train_into(args, out, plan=None):
    """``imgcls train`` once its settings are checked and ``--out`` is locked."""
    from .core.dataset import scan_dataset
    from .core.history import assign_run_id
    from .core.model_io import save_model
    from .core.models import get_preset
    from .core.names import display_name as shown  # names that are not UTF-8 print as \xNN
    from .core.training import TrainingConfig, train

    if args.preset is not None:
        preset = get_preset(args.preset)
        if args.fine_tune_epochs and preset.kind != "transfer":
            raise _UsageError(f"--fine-tune-epochs is for transfer presets; {args.preset} trains every layer already")
    scan = scan_dataset(args.dataset)
    for problem in scan.problems:
        print(f"imgcls: skipping {shown(problem.path)}: {shown(problem.reason)}", file=sys.stderr)
    recommendation = None
    if args.preset is None:
        from .core.recommend import recommend

        recommendation = recommend(scan)
        args.preset = recommendation.preset
        preset = get_preset(args.preset)
        if args.image_size is None:
            args.image_size = recommendation.image_size
        if args.epochs is None and args.time_budget is None:
            args.time_budget = recommendation.time_budget
        _log(args, f"Recommended: {preset.title}. {recommendation.reason} "
                   "(choose another with --preset)")
        if args.fine_tune_epochs and preset.kind != "transfer":
            raise _UsageError(f"--fine-tune-epochs is for transfer presets; the recommended {args.preset} "
                              "trains every layer already (pass --preset to choose a transfer preset)")
    if args.validation_split is None:
        from .core.recommend import recommended_validation_split

        args.validation_split = recommended_validation_split(scan)
    augmentation = _parse_augment(args.augment, preset.augmentation)
    config = TrainingConfig(
        preset=args.preset, epochs=args.epochs, time_budget=args.time_budget,
        batch_size=args.batch_size, learning_rate=args.learning_rate, image_size=args.image_size,
        validation_split=args.validation_split, seed=args.seed, augmentation=augmentation,
        early_stopping_patience=args.patience or None, weights=args.weights or "imagenet",
        class_weights=args.class_weights, fine_tune_epochs=args.fine_tune_epochs,
        distribute=getattr(args, "distribute", "auto"),
    )
    _check_run(config, scan)  # the preset is known now: its image sizes, and the memory it needs
    _log(args, f"Training {preset.title} on {shown(scan.root)} ({len(scan.class_names)} classes, "
               f"{len(scan.splits[scan.training_split_name()])} images)")
    bar = _ProgressBar(not args.json)

    def on_progress(event):
        if event.kind == "decode":
            bar.show(event.fraction_done, event.message)
        elif event.kind == "batch":
            epochs = f"/{event.epochs}" if event.epochs else ""
            metrics = " ".join(f"{k}={v:.3f}" for k, v in event.metrics.items() if k in ("loss", "accuracy"))
            phase = f"{event.message}: " if event.message else ""
            bar.show(event.fraction_done, f"{phase}epoch {event.epoch}{epochs} step {event.step}/{event.steps} "
                     f"{metrics} {event.images_per_second:.0f} img/s, {_duration(event.seconds_left)} left")
        elif event.kind == "epoch":
            bar.show(event.fraction_done, "", force=True)
            bar.done() if bar.enabled else None
            if not args.json:
                metrics = " ".join(f"{k}={v:.4f}" for k, v in event.metrics.items())
                print(f"epoch {event.epoch}: {metrics}")

    stop_event = threading.Event()
    try:
        with _watching_peers(plan, out):
            result = train(scan, config, on_progress=on_progress, stop_event=stop_event)
    except KeyboardInterrupt:
        stop_event.set()
        raise
    assign_run_id(result)  # the model file carries its run's id, so the history can tell it apart
    save_model(result.model, out, result.metadata)
    run = cli_history.record_training(args, result, scan, out)  # after the save: never costs the model
    summary = result.summary(out)
    summary["run_id"] = run.id if run else None
    summary["preset"] = args.preset
    summary["recommendation"] = recommendation.to_dict() if recommendation else None
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        best = result.best_val_accuracy
        print(f"Saved {shown(out)} (best epoch {result.best_epoch} of {result.epochs_run}"
              + (f", validation accuracy {best:.3f}" if best is not None else "")
              + f", {result.seconds:.0f} s, {result.stop_reason})")
        cli_history.print_recorded(args, run)
    for path, reason in result.skipped_files:
        print(f"imgcls: skipped {shown(path)}: {shown(reason)}", file=sys.stderr)
    return EXIT_PARTIAL if (scan.problems or result.skipped_files) else EXIT_OK


def cmd_evaluate(args):
    from .core.evaluation import evaluate_folder
    from .core.names import display_name as shown  # names that are not UTF-8 print as \xNN

    loaded = cli_insight.load_with_warnings(args.model)
    report = evaluate_folder(loaded, args.dataset)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"accuracy {report.accuracy:.4f} on {len(report.y_true)} images ({report.split})")
        print(f"  {'class':24s}{'precision':>10s}{'recall':>10s}{'f1':>10s}{'support':>9s}")
        for name, row in report.per_class().items():
            print(f"  {shown(name)[:24]:24s}{row['precision']:10.3f}{row['recall']:10.3f}{row['f1']:10.3f}{row['support']:9d}")
        print("confusion matrix (rows: true, columns: predicted)")
        for name, row in zip(report.class_names, report.confusion_matrix):
            print(f"  {shown(name)[:16]:16s} " + " ".join(f"{v:5d}" for v in row))
        _print_calibration(report)
        mistakes = report.misclassified()
        for row in mistakes[:10]:
            print(f"  wrong: {shown(row['path'])}: {shown(row['true'])} -> {shown(row['predicted'])} "
                  f"({row['confidence']:.2f})")
        if len(mistakes) > 10:
            print(f"  ... and {len(mistakes) - 10} more (use --json for all)")
    for path, reason in report.errors:
        print(f"imgcls: could not read {shown(path)}: {shown(reason)}", file=sys.stderr)
    return EXIT_PARTIAL if report.errors else EXIT_OK


def _print_calibration(report):
    if report.raw_probabilities is not None:
        print(f"ECE before/after calibration: {report.ece_uncalibrated:.4f} / {report.ece:.4f} "
              f"(temperature {report.calibration['temperature']:.3g})")
        if report.unknown is not None:
            print(f"unknown (\"none of my classes\"): {int(report.unknown.sum())} of "
                  f"{len(report.unknown)} images (threshold "
                  f"{report.calibration.get('unknown_threshold', 0):.2f})")
    else:
        reason = (report.calibration or {}).get("skipped", "the model has no calibration")
        print(f"ECE {report.ece:.4f} (not calibrated: {reason})")


def cmd_predict(args):
    from .core.inference import Predictor
    from .core.names import display_name as shown  # names that are not UTF-8 print as \xNN
    from .core.output_files import check_output_writable, write_predictions_csv

    if args.csv:
        check_output_writable(args.csv)  # before the work, not after it
    loaded = cli_insight.load_with_warnings(args.model)
    predictor = Predictor(loaded)
    results = predictor.predict_paths(args.inputs, top_k=args.top_k)
    if args.json:
        # json.dumps' ASCII escapes keep any file name exactly (\udcNN: see core.names).
        print(json.dumps({"results": [r.to_dict() for r in results]}, indent=1))
    else:
        for r in results:
            if r.ok:
                others = ", ".join(f"{shown(label)} {p:.2f}" for label, p in r.top_k[1:])
                if r.unknown:
                    others = ", ".join(f"{shown(label)} {p:.2f}" for label, p in r.top_k)
                    print(f"{shown(r.path)}: {shown(r.verdict)}  [{others}]")
                    continue
                print(f"{shown(r.path)}: {shown(r.label)} ({r.confidence:.2f})" + (f"  [{others}]" if others else ""))
    for r in results:
        if not r.ok:
            print(f"imgcls: {shown(r.path)}: {shown(r.error)}", file=sys.stderr)
    if args.csv:
        write_predictions_csv(args.csv, results)  # the window's Export writes the same table
    if not results:
        print("imgcls: no images found in the given inputs", file=sys.stderr)
        return EXIT_FAILED
    failed = sum(not r.ok for r in results)
    if failed == len(results):
        return EXIT_FAILED
    return EXIT_PARTIAL if failed else EXIT_OK


COMMANDS = {"inspect": cmd_inspect, "train": cmd_train, "evaluate": cmd_evaluate, "predict": cmd_predict}
COMMANDS.update(cli_insight.COMMANDS)
COMMANDS.update(cli_history.COMMANDS)
COMMANDS.update(cli_data.COMMANDS)


# -- export -----------------------------------------------------------------------------

def cmd_export(args):
    import shutil

    from .core.export import export_and_verify, random_sample_images, sidecar_paths

    out = args.out
    if out.exists():
        if not args.force:
            raise _UsageError(f"{out} exists; pass --force to replace it")
        targets = [out, *sidecar_paths(out, args.format)]
        for target in targets:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    if args.samples < 1:
        raise _UsageError("--samples must be at least 1")
    loaded = cli_insight.load_with_warnings(args.model)
    _log(args, f"Exporting {args.model} to {args.format} at {out}…")
    info = export_and_verify(loaded, out, args.format,
                             random_sample_images(loaded.image_size, count=args.samples))
    check = info["verification"]
    if args.json:
        print(json.dumps(info, indent=1))
    else:
        print(f"Wrote {out} ({info['bytes'] / 1e6:.2f} MB, "
              f"{'calibrated' if info['calibrated'] else 'uncalibrated'} probabilities) "
              f"and {', '.join(Path(f).name for f in info['files'][1:])}")
        if check["verified"]:
            print(f"Checked with {check['runtime']} on {check['num_images']} random images: "
                  f"top-1 agreement {check['top1_agreement']:.0%}, "
                  f"largest probability difference {check['max_abs_difference']:.2g}")
    if not check["verified"]:
        print(f"imgcls: warning: the export was not checked: {check['reason']}", file=sys.stderr)
    return EXIT_OK


COMMANDS["export"] = cmd_export


def main(argv=None):
    try:
        try:
            return _main(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # what is still buffered meets a closed pipe here, not at exit
    except BrokenPipeError:
        return _closed_pipe()


def _closed_pipe():
    """Whoever read stdout went away (``imgcls runs | head -1``): stop quietly, as Unix tools do."""
    import os

    try:  # the interpreter flushes stdout once more at exit: let that go nowhere, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return EXIT_CLOSED_PIPE


def _main(argv):
    from .frozen import prepare_process

    prepare_process()  # frozen build: freeze_support, stdout/stderr never None
    from .core.errors import ImgclsError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except _UsageError as exc:
        print(f"imgcls: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImgclsError as exc:
        if args.debug:
            import traceback
            traceback.print_exc()
        print(f"imgcls: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("imgcls: interrupted", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        raise  # not an error of ours: main() ends quietly
    except Exception as exc:  # anything unexpected still gets one line, traceback on --debug
        if args.debug:
            import traceback
            traceback.print_exc()
        print(f"imgcls: unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
