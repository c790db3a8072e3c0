"""``imgcls train``: train a model on a dataset folder, save it, record the run."""

import contextlib
import json
import sys
import threading
import time
from pathlib import Path

from . import history
from ._common import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, ProgressBar, UsageError, duration, log


def add_commands(sub, common):
    """Add ``train`` to ``sub``.

    Args:
        sub: What ``ArgumentParser.add_subparsers`` returned.
        common: The parser holding the shared ``--json`` and ``--debug`` options.
    """
    from ..core.defaults import DEFAULT_SEED
    from ..core.models import DEFAULT_PRESET, PRESETS

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
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
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
    history.add_train_options(p)  # --no-history


def _parse_augment(text, default):
    from dataclasses import replace

    from ..core.models import Augmentation

    if text is None:
        return default
    if text.strip().lower() == "none":
        return Augmentation(flip=False)
    values = {"flip": False}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if name not in ("flip", "rotation", "zoom", "translation", "contrast"):
            raise UsageError(f"unknown augmentation {name!r} in --augment")
        try:
            values[name] = True if name == "flip" else float(value or 0.1)
        except ValueError:
            raise UsageError(f"--augment: {name} needs a number, got {value!r}") from None
    return replace(Augmentation(flip=False), **values)


def cmd_train(args):
    from ..core.output_files import check_output_writable, output_lock

    started_at = time.monotonic()  # --time-budget counts from here to the saved model

    plan = None  # one machine: training makes its plan; multi-worker: first, before any TF op
    if getattr(args, "distribute", "auto") == "multi-worker":
        plan = _distribution_plan(args)
        if not plan.is_chief:
            return _train_as_worker(args, plan)
    out = args.out
    if out.suffix.lower() != ".keras":
        raise UsageError(f"--out must end in .keras (got {out.name})")
    if out.exists() and not args.force:
        raise UsageError(f"{out} exists; pass --force to overwrite it (it is only replaced once the new model "
                         "is complete)")
    _check_settings(args)  # before the folder is scanned; core checks them again
    check_output_writable(out)  # a missing or read-only folder is refused before any epoch
    with output_lock(out):  # one run writes --out at a time, until its run is recorded
        return _train_into(args, out, plan, started_at)


def _distribution_plan(args):
    from ..core.distribute import plan_for
    from ..core.errors import TrainingError

    try:
        return plan_for(args.distribute)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None


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

    from ..core.distribute import PeerWatch

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
    from ..core.training import TrainingConfig

    _check_run(TrainingConfig(
        preset=args.preset, epochs=args.epochs, time_budget=args.time_budget,
        batch_size=args.batch_size, learning_rate=args.learning_rate, image_size=args.image_size,
        validation_split=0.2 if args.validation_split is None else args.validation_split,
        seed=args.seed, early_stopping_patience=args.patience or None,
        class_weights=args.class_weights, fine_tune_epochs=args.fine_tune_epochs))


def _check_run(config, scan=None):
    from ..core.errors import TrainingError
    from ..core.run_checks import check_training_run

    try:
        check_training_run(config, scan)
    except TrainingError as exc:
        raise UsageError(str(exc)) from None


def _train_into(args, out, plan=None, started_at=None):
    """``imgcls train`` once its settings are checked and ``--out`` is locked."""
    started_at = time.monotonic() if started_at is None else started_at
    from ..core.dataset import scan_dataset
    from ..core.history import assign_run_id
    from ..core.model_io import save_model
    from ..core.models import get_preset
    from ..core.names import display_name as shown  # names that are not UTF-8 print as \xNN
    from ..core.training import TrainingConfig, train

    if args.preset is not None:
        preset = get_preset(args.preset)
        if args.fine_tune_epochs and preset.kind != "transfer":
            raise UsageError(f"--fine-tune-epochs is for transfer presets; {args.preset} trains every layer already")
    # Not validated here: decoding for training reads every image anyway and names each one
    # it cannot read (the "skipped" lines), and on CIFAR-10 a second full read cost 14 s
    # of a 5-minute budget. `imgcls inspect` and the window validate on their own.
    scan = scan_dataset(args.dataset, validate=False)
    for problem in scan.problems:
        print(f"imgcls: skipping {shown(problem.path)}: {shown(problem.reason)}", file=sys.stderr)
    recommendation = None
    if args.preset is None:
        from ..core.recommend import recommend

        recommendation = recommend(scan)
        args.preset = recommendation.preset
        preset = get_preset(args.preset)
        if args.image_size is None:
            args.image_size = recommendation.image_size
        if args.epochs is None and args.time_budget is None:
            args.time_budget = recommendation.time_budget
        log(args, f"Recommended: {preset.title}. {recommendation.reason} "
                   "(choose another with --preset)")
        if args.fine_tune_epochs and preset.kind != "transfer":
            raise UsageError(f"--fine-tune-epochs is for transfer presets; the recommended {args.preset} "
                              "trains every layer already (pass --preset to choose a transfer preset)")
    if args.validation_split is None:
        from ..core.recommend import recommended_validation_split

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
    log(args, f"Training {preset.title} on {shown(scan.root)} ({len(scan.class_names)} classes, "
               f"{len(scan.splits[scan.training_split_name()])} images)")
    bar = ProgressBar(not args.json)

    def on_progress(event):
        if event.kind == "decode":
            bar.show(event.fraction_done, event.message)
        elif event.kind == "batch":
            epochs = f"/{event.epochs}" if event.epochs else ""
            metrics = " ".join(f"{k}={v:.3f}" for k, v in event.metrics.items() if k in ("loss", "accuracy"))
            phase = f"{event.message}: " if event.message else ""
            bar.show(event.fraction_done, f"{phase}epoch {event.epoch}{epochs} step {event.step}/{event.steps} "
                     f"{metrics} {event.images_per_second:.0f} img/s, {duration(event.seconds_left)} left")
        elif event.kind == "epoch":
            bar.show(event.fraction_done, "", force=True)
            bar.done() if bar.enabled else None
            if not args.json:
                metrics = " ".join(f"{k}={v:.4f}" for k, v in event.metrics.items())
                print(f"epoch {event.epoch}: {metrics}")

    stop_event = threading.Event()
    try:
        with _watching_peers(plan, out):
            result = train(scan, config, on_progress=on_progress, stop_event=stop_event, started_at=started_at,
                           evaluated_after=not getattr(args, "no_history", False))  # the run record's
    except KeyboardInterrupt:
        stop_event.set()
        raise
    assign_run_id(result)  # the model file carries its run's id, so the history can tell it apart
    save_model(result.model, out, result.metadata)
    run = history.record_training(args, result, scan, out)  # after the save: never costs the model
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
              + f", {time.monotonic() - started_at:.0f} s, {result.stop_reason})")
        history.print_recorded(args, run)
    for path, reason in result.skipped_files:
        print(f"imgcls: skipped {shown(path)}: {shown(reason)}", file=sys.stderr)
    return EXIT_PARTIAL if (scan.problems or result.skipped_files) else EXIT_OK


COMMANDS = {"train": cmd_train}
