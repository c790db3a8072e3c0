"""``imgcls evaluate``, ``predict`` and ``export``: use a trained model."""

import json
import sys
from pathlib import Path

from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    UsageError,
    load_with_warnings,
    log,
    print_confusion_matrix,
    print_per_class,
)


def add_commands(sub, common):
    """Add ``evaluate``, ``predict`` and ``export`` to ``sub``.

    Args:
        sub: What ``ArgumentParser.add_subparsers`` returned.
        common: The parser holding the shared ``--json`` and ``--debug`` options.
    """
    p = sub.add_parser("evaluate", parents=[common], help="accuracy, per-class metrics, confusion matrix")
    p.add_argument("model", type=Path)
    p.add_argument("dataset", type=Path)

    p = sub.add_parser("predict", parents=[common], help="label image files and folders")
    p.add_argument("model", type=Path)
    p.add_argument("inputs", type=Path, nargs="+")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--csv", type=Path, help="also write one row per image to this CSV file")

    p = sub.add_parser("export", parents=[common],
                       help="export a model to saved_model, tflite or onnx, and check the export")
    p.add_argument("model", type=Path)
    p.add_argument("--format", required=True, choices=["saved_model", "tflite", "onnx"])
    p.add_argument("--out", type=Path, required=True,
                   help="folder (saved_model) or file (.tflite, .onnx) to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--samples", type=int, default=8,
                   help="random images to compare the export with the model on (default 8)")


def cmd_evaluate(args):
    from ..core.evaluation import evaluate_folder
    from ..core.names import display_name as shown  # names that are not UTF-8 print as \xNN

    loaded = load_with_warnings(args.model)
    report = evaluate_folder(loaded, args.dataset)
    if args.json:
        print(json.dumps(report.to_dict(), indent=1))
    else:
        print(f"accuracy {report.accuracy:.4f} on {len(report.y_true)} images ({report.split})")
        print_per_class(report.per_class())
        print_confusion_matrix(report.class_names, report.confusion_matrix)
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
    from ..core.inference import Predictor
    from ..core.names import display_name as shown  # names that are not UTF-8 print as \xNN
    from ..core.output_files import check_output_writable, write_predictions_csv

    if args.csv:
        check_output_writable(args.csv)  # before the work, not after it
    loaded = load_with_warnings(args.model)
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


def cmd_export(args):
    import shutil

    from ..core.export import export_and_verify, random_sample_images, sidecar_paths

    out = args.out
    if out.exists():
        if not args.force:
            raise UsageError(f"{out} exists; pass --force to replace it")
        targets = [out, *sidecar_paths(out, args.format)]
        for target in targets:
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    if args.samples < 1:
        raise UsageError("--samples must be at least 1")
    loaded = load_with_warnings(args.model)
    log(args, f"Exporting {args.model} to {args.format} at {out}…")
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


COMMANDS = {"evaluate": cmd_evaluate, "predict": cmd_predict, "export": cmd_export}
