"""The ``bas`` command: a thin layer over the Python API.

Each sub-command lives in its own module under :mod:`bas.commands` and exposes
``add_parser(subparsers)`` (which registers the sub-command and sets ``func``) and the function it
registers. Errors caused by the user's input are :class:`bas.errors.BASError`: they are printed as
one line, ``error: ...``, and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bas.errors import BASError

# Modules under bas.commands, in the order their sub-commands are listed in --help.
COMMAND_MODULES = (
    "demo",
    "train",
    "evaluate",
    "evaluate_maps",
    "predict",
    "export",
    "explore",
    "convert",
    "data",
    "benchmark",
)


def build_parser() -> argparse.ArgumentParser:
    from bas import __version__

    parser = argparse.ArgumentParser(
        prog="bas",
        description="Background Activation Suppression (BAS) for weakly supervised object localization.",
    )
    parser.add_argument("--version", action="version", version=f"bas-wsol {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"bas.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except BASError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
