"""The ``move``, ``undo`` and ``journal`` verbs of ``imgcls``: fix the data where it lives.

A thin shell over :mod:`core.data_fixes`. :func:`add_commands` registers the verbs on
``imgcls``'s sub-parsers; :data:`COMMANDS` maps each verb to its function, which returns the
exit status (see :mod:`._common`).

Warnings about the journal (lines skipped, entries refused) are logged by core on every
read; :func:`_printing_journal_warnings` prints each distinct one once per command, on
stderr. Names that are not valid UTF-8 are printed escaped (:func:`core.names.display_name`).
"""

import functools
import json
import logging
import sys
from pathlib import Path

from ..core.names import display_name
from ._common import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, usage


def add_commands(subparsers, common_parent):
    """Add ``move``, ``undo`` and ``journal`` to ``subparsers``.

    Args:
        subparsers: What ``ArgumentParser.add_subparsers`` returned.
        common_parent: The parser holding the shared ``--json`` and ``--debug`` options.
    """
    p = subparsers.add_parser("move", parents=[common_parent],
                              help="move images to another class folder or to quarantine (undoable)")
    p.add_argument("dataset", type=Path)
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE",
                   help="image files (as given, or relative to DATASET)")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="CLASS", dest="class_name",
                        help="the class folder to move them to (same split)")
    target.add_argument("--quarantine", action="store_true",
                        help="move them out of the dataset, into DATASET/.imgcls/quarantine/")
    p.add_argument("--reason", default="", metavar="TEXT", help="why (kept in the journal; with --quarantine)")

    p = subparsers.add_parser("undo", parents=[common_parent],
                              help="undo the latest moves (recorded in DATASET/.imgcls/journal.jsonl)")
    p.add_argument("dataset", type=Path)
    p.add_argument("--steps", type=int, default=1, metavar="N", help="how many moves to undo (default 1)")

    p = subparsers.add_parser("journal", parents=[common_parent], help="list the moves made in a dataset")
    p.add_argument("dataset", type=Path)


class _OncePerMessage(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen = set()

    def emit(self, record):
        message = record.getMessage()
        if message not in self.seen:
            self.seen.add(message)
            print(f"imgcls: warning: {display_name(message)}", file=sys.stderr)


def _printing_journal_warnings(command):
    """Run ``command`` printing each distinct journal warning once (a verb reads it several times)."""
    @functools.wraps(command)
    def wrapper(args):
        logger, handler = logging.getLogger("imgcls.journal"), _OncePerMessage()
        logger.addHandler(handler)
        try:
            return command(args)
        finally:
            logger.removeHandler(handler)
    return wrapper


def _describe(entry):
    source, target = display_name(entry["source"]), display_name(entry["target"])
    if entry["action"] == "move":
        return f"{source} -> {target} (class {display_name(entry['class'])})"
    if entry["action"] == "quarantine":
        reason = f" ({display_name(entry['reason'])})" if entry.get("reason") else ""
        return f"{source} -> quarantine{reason}"
    return f"{source} -> {target} (undo)"


def cmd_move(args):
    from ..core import data_fixes
    from ..core.errors import ImgclsError

    if args.reason and not args.quarantine:
        return usage("--reason goes with --quarantine")
    classes = data_fixes.dataset_class_names(args.dataset)  # a missing dataset: one line, not one per image
    if args.class_name is not None:
        if args.class_name not in classes:
            return usage(f"--to {args.class_name!r} is not a class of {args.dataset}; its classes are: "
                          f"{', '.join(classes) or 'none'}")
    moved, errors = [], []
    for image in args.images:
        try:
            if args.quarantine:
                entry = data_fixes.quarantine(args.dataset, image, reason=args.reason)
            else:
                entry = data_fixes.move_to_class(args.dataset, image, args.class_name)
        except ImgclsError as exc:
            errors.append({"path": str(image), "error": str(exc)})
            continue
        moved.append(entry)
        if not args.json:
            print(f"moved {_describe(entry)}")
    if args.json:
        print(json.dumps({"root": str(args.dataset), "moved": moved, "errors": errors}, indent=1))
    elif moved:
        print(f"{len(moved)} image(s) moved; 'imgcls undo {display_name(args.dataset)}' puts the last one back")
    for error in errors:
        print(f"imgcls: {display_name(error['error'])}", file=sys.stderr)
    if not moved:
        return EXIT_FAILED
    return EXIT_PARTIAL if errors else EXIT_OK


def cmd_undo(args):
    from ..core import data_fixes
    from ..core.errors import ImgclsError

    if args.steps < 1:
        return usage(f"--steps must be at least 1 (got {args.steps})")
    undone, error = [], None
    for _ in range(args.steps):
        try:
            entry = data_fixes.undo(args.dataset)
        except ImgclsError as exc:
            error = str(exc)
            break
        if entry is None:
            break
        undone.append(entry)
        if not args.json:
            original = entry["original"]
            print(f"undid the {original['action']} of {display_name(original['source'])} "
                  f"(back from {display_name(original['target'])})")
    remaining = len(data_fixes.undoable_entries(args.dataset))
    if args.json:
        print(json.dumps({"root": str(args.dataset), "undone": undone, "remaining": remaining, "error": error},
                         indent=1))
    elif not undone and error is None:
        print(f"nothing to undo in {display_name(args.dataset)}")
    if error is not None:
        print(f"imgcls: error: {display_name(error)}", file=sys.stderr)
    if not undone:
        return EXIT_FAILED
    return EXIT_PARTIAL if error is not None else EXIT_OK


def cmd_journal(args):
    from ..core import data_fixes

    entries = data_fixes.journal_entries(args.dataset)
    undoable = len(data_fixes.undoable_entries(args.dataset))
    if args.json:
        print(json.dumps({"root": str(args.dataset), "journal": str(data_fixes.journal_path(args.dataset)),
                          "entries": entries, "undoable": undoable}, indent=1))
        return EXIT_OK
    if not entries:
        print(f"no moves recorded in {display_name(args.dataset)}")
        return EXIT_OK
    for entry in entries:
        state = entry["status"] + (", undone" if entry["undone"] else "")
        print(f"{display_name(entry['time'])}  {entry['action']:10s} {_describe(entry)}  [{state}]")
    print(f"{undoable} move(s) can be undone ('imgcls undo {display_name(args.dataset)}')")
    return EXIT_OK


COMMANDS = {name: _printing_journal_warnings(command)
            for name, command in {"move": cmd_move, "undo": cmd_undo, "journal": cmd_journal}.items()}
