"""The ``bas`` command: a thin layer over the Python API.

Each sub-command lives in its own module under :mod:`bas.commands` and exposes
``add_parser(subparsers)`` (which registers the sub-command and sets ``func``) and the function it
registers. Errors caused by the user's input (:func:`bas.errors.user_message`) are printed as one
line, ``error: ...``, and the command exits with status 2; Ctrl-C prints ``interrupted`` and exits
with status 130. ``--debug`` (or ``BAS_DEBUG=1``) prints the traceback as well; other exceptions
are bugs and always show their traceback.
"""

from __future__ import annotations

import argparse
import contextvars
import importlib
import os
import sys
import traceback

from bas.errors import UsageError, user_message

# Modules under bas.commands, in the order their sub-commands are listed in --help.
COMMAND_MODULES = (
    "demo",
    "train",
    "evaluate",
    "evaluate_maps",
    "predict",
    "export",
    "explore",
    "report",
    "convert",
    "zoo",
    "data",
    "wsss",
    "benchmark",
)


# Commands whose parser imports much to be built (every dataset format module): only their one-line
# help is registered unless the command line names them, so that `bas --help` and other commands
# stay fast.
HEAVY_PARSERS = {"data": "inspect and validate datasets"}


_ONE_LINE = contextvars.ContextVar("one_line_usage_errors", default=False)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors, under :func:`main`, are the one-line ``error: ...`` of every
    other mistake (argparse prints the usage and exits, as it does for other callers)."""

    def error(self, message: str):
        if not _ONE_LINE.get():
            super().error(message)
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``bas`` parser; given ``argv``, the commands of :data:`HEAVY_PARSERS` it does not name
    get only their one-line help."""
    from bas import __version__

    parser = Parser(
        prog="bas",
        description="Background Activation Suppression (BAS) for weakly supervised object localization.",
    )
    parser.add_argument("--version", action="version", version=f"bas-wsol {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also BAS_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        if argv is not None and name in HEAVY_PARSERS and name not in argv:
            sub.add_parser(name, help=HEAVY_PARSERS[name])
            continue
        importlib.import_module(f"bas.commands.{name}").add_parser(sub)
    return parser


def parse_command(argv: list[str]) -> argparse.Namespace:
    """The parsed ``bas`` command line ``argv``; a mistake raises :class:`bas.errors.UsageError`
    (one line) instead of printing the usage and exiting."""
    token = _ONE_LINE.set(True)
    try:
        return build_parser(argv).parse_args(argv)
    finally:
        _ONE_LINE.reset(token)


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("BAS_DEBUG", "") not in ("", "0")
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        args = parse_command(argv)
        debug = debug or args.debug
        code = args.func(args)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: {message}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
