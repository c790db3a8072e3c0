"""``imgcls inspect``: what is in a dataset folder, what is wrong with it."""

import json
import sys
from pathlib import Path

from . import insight
from ._common import EXIT_OK, EXIT_PARTIAL, ProgressBar


def add_commands(sub, common):
    """Add ``inspect`` to ``sub``.

    Args:
        sub: What ``ArgumentParser.add_subparsers`` returned.
        common: The parser holding the shared ``--json`` and ``--debug`` options.
    """
    p = sub.add_parser("inspect", parents=[common], help="what is in a dataset folder, what is wrong with it")
    p.add_argument("dataset", type=Path)
    p.add_argument("--no-validate", action="store_true", help="skip decoding every file (faster)")
    p.add_argument("--doctor", action="store_true",  # the dataset doctor, as `imgcls doctor` prints it
                   help="also look for near-duplicates, train/test leakage and class imbalance")


def cmd_inspect(args):
    from ..core.dataset import scan_dataset
    from ..core.names import display_name as shown

    bar = ProgressBar(not args.json)
    scan = scan_dataset(args.dataset, validate=not args.no_validate,
                        on_progress=lambda d, t: bar.show(d / max(t, 1), f"checking {d}/{t} files"))
    bar.done()
    report = scan.to_dict()
    if args.doctor:  # dataset doctor: on this scan, printed by the doctor command's printer
        report["doctor"] = insight.doctor_document(scan, show_progress=not args.json)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{shown(scan.root)}: {scan.layout} layout, {len(scan.class_names)} classes, "
              f"{scan.num_images} usable images")
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
        insight.print_doctor(report["doctor"], text=not args.json)
        if report["doctor"]["errors"]:
            return EXIT_PARTIAL
    return EXIT_PARTIAL if scan.problems else EXIT_OK


COMMANDS = {"inspect": cmd_inspect}
