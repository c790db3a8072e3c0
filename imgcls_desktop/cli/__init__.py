"""The ``imgcls`` command: a thin shell over core.

One module per command group, each with ``add_commands(sub, common)`` and ``COMMANDS``
(verb -> function returning the exit status): :mod:`.dataset` (inspect), :mod:`.train`,
:mod:`.model` (evaluate, predict, export), :mod:`.insight` (explain, robustness, doctor),
:mod:`.history` (runs), :mod:`.fixes` (move, undo, journal). What they share (exit
statuses, usage errors, the progress bar, loading a model, the per-class table) is in
:mod:`._common`, which imports none of them; only this module imports them all.

Exit status: 0 all done; 3 done but some inputs failed; 2 usage error; 1 nothing could be done;
141 stdout was closed by its reader (``| head``), which ends the command quietly.
"""

import argparse
import sys

from .. import __version__
from . import dataset, fixes, history, insight, model, train
from ._common import EXIT_CLOSED_PIPE, EXIT_FAILED, EXIT_USAGE, UsageError

_GROUPS = (dataset, train, model, insight, history, fixes)  # the order of `imgcls --help`

COMMANDS = {}
for _group in _GROUPS:
    COMMANDS.update(_group.COMMANDS)


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        print(f"imgcls: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser():
    """The ``imgcls`` argument parser, with every command of every group."""
    parser = _Parser(prog="imgcls", description="Train and use image classifiers from class folders.")
    parser.add_argument("--version", action="version", version=f"imgcls {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in _GROUPS:
        group.add_commands(sub, common)
    return parser


def main(argv=None):
    """Run ``imgcls`` with ``argv`` (default: ``sys.argv[1:]``) and return its exit status."""
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
    from ..frozen import prepare_process

    prepare_process()  # frozen build: freeze_support, stdout/stderr never None
    from ..core.errors import ImgclsError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
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
