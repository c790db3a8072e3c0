"""The ``explain``, ``robustness`` and ``doctor`` verbs of ``imgcls`` (a thin shell over core).

:func:`add_commands` registers them on ``imgcls``'s sub-parsers; :data:`COMMANDS` maps each
verb to its function, which returns the exit status (see :mod:`._common`). Errors are core
``ImgclsError`` subclasses, which ``imgcls``'s ``main`` prints as one line.
"""

import json
import sys
from pathlib import Path

from ..core.defaults import DEFAULT_SEED
from ._common import EXIT_OK, EXIT_PARTIAL, ProgressBar, load_with_warnings, usage

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def add_commands(subparsers, common_parent):
    """Add ``explain``, ``robustness`` and ``doctor`` to ``subparsers``.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers`` returned.
        common_parent: The parser holding the shared ``--json`` and ``--debug`` options.
    """
    p = subparsers.add_parser("explain", parents=[common_parent],
                              help="heat map of where the model looked (Grad-CAM)")
    p.add_argument("model", type=Path)
    p.add_argument("image", type=Path)
    p.add_argument("--out", type=Path, default=Path("heat.png"), help="overlay image to write (PNG or JPEG)")
    p.add_argument("--class", dest="class_name", metavar="NAME",
                   help="explain this class instead of the predicted one")
    p.add_argument("--alpha", type=float, default=0.45, help="opacity of the heat colours (0-1)")

    p = subparsers.add_parser("robustness", parents=[common_parent],
                              help="accuracy under blur, brightness, contrast, JPEG, rotation, downscaling")
    p.add_argument("model", type=Path)
    p.add_argument("dataset", type=Path)
    p.add_argument("--chart", type=Path, help="also write a bar chart (PNG) to this file")
    p.add_argument("--split", choices=["train", "val", "test", "all"],
                   help="split to use (default: the images 'imgcls evaluate' uses: test, else the "
                        "model's validation files, else val, else all images)")

    p = subparsers.add_parser("doctor", parents=[common_parent],
                              help="near-duplicates, train/test leakage, class imbalance, likely mislabels")
    p.add_argument("dataset", type=Path)
    p.add_argument("--threshold", type=int, default=4,
                   help="largest differing bits (of 64) between near-duplicates (default 4)")
    p.add_argument("--mislabels", action="store_true",
                   help="also train small models on k-1 folds and list images whose held-out "
                        "prediction strongly disagrees with their folder (takes minutes)")
    p.add_argument("--folds", type=int, default=3, help="folds for --mislabels (default 3)")
    p.add_argument("--epochs", type=int, default=10, help="epochs per fold for --mislabels (default 10)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the folds and models for --mislabels")


def cmd_explain(args):
    from PIL import Image

    from ..core.explain import explain, overlay_for_display

    if args.out.suffix.lower() not in _IMAGE_SUFFIXES:
        return usage(f"--out must be an image file name ending in .png or .jpg (got {args.out.name})")
    if not 0.0 <= args.alpha <= 1.0:
        return usage(f"--alpha must be between 0 and 1 (got {args.alpha})")
    if not args.out.parent.is_dir():
        return usage(f"cannot write {args.out}: the folder {args.out.parent} does not exist")
    loaded = load_with_warnings(args.model)
    class_index = None
    if args.class_name is not None:
        if args.class_name not in loaded.class_names:
            return usage(f"--class {args.class_name!r} is not one of the model's classes: "
                          f"{', '.join(loaded.class_names)}")
        class_index = loaded.class_names.index(args.class_name)
    explanation = explain(loaded, args.image, class_index)
    Image.fromarray(overlay_for_display(args.image, explanation.heat, alpha=args.alpha), "RGB").save(args.out)
    # The answer `predict` gives (same views, same temperature), and the class the map explains.
    prediction = explanation.prediction
    result = {
        "path": str(args.image),
        "label": prediction.label,
        "confidence": round(float(prediction.confidence), 6),
        "verdict": prediction.verdict,
        "explained_class": explanation.label,
        "views": explanation.views,
        "layer": explanation.layer,
        "out": str(args.out),
    }
    if explanation.note:
        result["note"] = explanation.note
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        shown = (f"{prediction.verdict} (best guess {prediction.label} {prediction.confidence:.2f})"
                 if prediction.unknown else f"{prediction.label} ({prediction.confidence:.2f})")
        print(f"{args.image}: {shown}")
        views = f", over {explanation.views} views" if explanation.views > 1 else ""
        print(f"heat map of '{explanation.label}' (layer {explanation.layer}{views}) written to {args.out}")
        if explanation.note:
            print(f"note: the map {explanation.note}")
    return EXIT_OK


def _split_items(scan, split, metadata):
    """``--split``'s images, or by default those ``imgcls evaluate`` and the window evaluate on."""
    from ..core.errors import DatasetError
    from ..core.evaluation import evaluation_items

    if split is None:
        items, split, reason = evaluation_items(scan, metadata)
        if not items:
            raise DatasetError(reason)
        return split, items
    if split not in scan.splits:
        raise DatasetError(f"{scan.root} has no '{split}' split; it has: {', '.join(scan.splits)}.")
    items = scan.splits[split]
    if not items:
        raise DatasetError(f"{scan.root} has no usable images in its '{split}' split.")
    return split, items


def cmd_robustness(args):
    from ..core.dataset import scan_dataset
    from ..core.robustness import format_table, robustness_figure, robustness_report

    if args.chart is not None and args.chart.suffix.lower() not in (".png", ".svg", ".pdf"):
        return usage(f"--chart must end in .png, .svg or .pdf (got {args.chart.name})")
    loaded = load_with_warnings(args.model)
    scan = scan_dataset(args.dataset)
    split, items = _split_items(scan, args.split, loaded.metadata)
    report = robustness_report(loaded, items, scan.class_names)
    report["split"] = split
    if args.chart is not None:
        robustness_figure(report).savefig(args.chart, dpi=120)
        report["chart"] = str(args.chart)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"robustness on {report['num_images']} images ({split}); accuracy per condition")
        print(format_table(report))
        if args.chart is not None:
            print(f"chart written to {args.chart}")
    for row in report["errors"]:
        print(f"imgcls: could not read {row['path']}: {row['reason']}", file=sys.stderr)
    return EXIT_PARTIAL if report["errors"] else EXIT_OK


def doctor_document(scan, threshold=4, mislabels=None, show_progress=False):
    """The ``doctor --json`` document of a scan (``inspect --doctor`` embeds it).

    Args:
        scan: A ``DatasetScan``.
        threshold: Near-duplicate threshold in bits.
        mislabels: None, or ``{"folds", "epochs", "seed"}`` to run the mislabel search.
        show_progress: Draw a progress bar on stderr (a terminal only).
    """
    from ..core.doctor import doctor_report

    bar = ProgressBar(show_progress)
    report = doctor_report(scan, threshold=threshold,
                           on_progress=lambda d, t: bar.show(d / max(t, 1), f"hashing {d}/{t} images"))
    bar.done()
    report["root"] = str(scan.root)
    report["problems"] = [{"path": p.path, "reason": p.reason} for p in scan.problems]
    if mislabels is not None:
        from ..core.mislabels import find_mislabels

        def on_progress(done, total):
            epochs = mislabels["epochs"]
            fold = max(1, min(mislabels["folds"], (done - 1) // epochs + 1))
            search_bar.show(done / max(total, 1), f"mislabels: fold {fold}/{mislabels['folds']}, "
                                                  f"epoch {done - (fold - 1) * epochs}/{epochs}")

        search_bar = ProgressBar(show_progress)
        suspects = find_mislabels(scan, folds=mislabels["folds"], epochs=mislabels["epochs"],
                                  seed=mislabels["seed"], on_progress=on_progress)
        search_bar.done()
        report["mislabels"] = {**mislabels, "suspects": [suspect.to_dict() for suspect in suspects]}
    return report


def print_doctor(report, text=True):
    """Print a :func:`doctor_document` for people (``text``) and its unreadable files (stderr)."""
    if text:
        imbalance = report["imbalance"]
        print(f"{report['root']}: {report['num_images']} images checked in {report['seconds']:.1f} s")
        print(f"near-duplicate groups: {len(report['near_duplicates'])}")
        for group in report["near_duplicates"][:20]:
            kind = "exact" if group["exact"] else f"distance <= {group['max_distance']}"
            print(f"  ({kind}) " + " ~ ".join(group["paths"]))
        print(f"train/test leakage: {len(report['leakage'])} pair(s)")
        for row in report["leakage"][:20]:
            print(f"  {row['train']} ~ {row['other']} ({row['other_split']}, distance {row['distance']})")
        for row in report["label_conflicts"][:20]:
            print(f"  label conflict: {row['paths'][0]} ({row['classes'][0]}) ~ "
                  f"{row['paths'][1]} ({row['classes'][1]})")
        if imbalance["ratio"] is not None:
            print(f"class imbalance ({imbalance['split']}): largest/smallest = {imbalance['ratio']:.2f}")
        if imbalance["weighting_suggested"]:
            weights = ", ".join(f"{name} {w:.2f}" for name, w in imbalance["class_weight_by_name"].items())
            print(f"  suggested class weights: {weights} (train with --class-weights balanced)")
        if "mislabels" in report:
            search = report["mislabels"]
            print(f"likely mislabels ({search['folds']} folds, {search['epochs']} epochs each): "
                  f"{len(search['suspects'])}")
            for row in search["suspects"][:50]:
                print(f"  {row['path']}: in '{row['folder_class']}', looks like '{row['predicted_class']}' "
                      f"({row['confidence']:.2f}; "
                      f"'{row['folder_class']}' {row['folder_class_probability']:.2f})")
            if len(search["suspects"]) > 50:
                print(f"  ... and {len(search['suspects']) - 50} more (use --json for all)")
    for row in report["errors"]:
        print(f"imgcls: could not hash {row['path']}: {row['reason']}", file=sys.stderr)


def cmd_doctor(args):
    from ..core.dataset import scan_dataset

    if not 0 <= args.threshold <= 32:
        return usage(f"--threshold must be between 0 and 32 (got {args.threshold})")
    if args.mislabels and args.folds < 2:
        return usage(f"--folds must be at least 2 (got {args.folds})")
    if args.mislabels and args.epochs < 1:
        return usage(f"--epochs must be at least 1 (got {args.epochs})")
    scan = scan_dataset(args.dataset)
    search = {"folds": args.folds, "epochs": args.epochs, "seed": args.seed} if args.mislabels else None
    report = doctor_document(scan, args.threshold, search, show_progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=1))
    print_doctor(report, text=not args.json)
    return EXIT_PARTIAL if report["errors"] else EXIT_OK


COMMANDS = {"explain": cmd_explain, "robustness": cmd_robustness, "doctor": cmd_doctor}
