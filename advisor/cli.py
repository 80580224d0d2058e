"""The `advisor` command: one subcommand per module in advisor/commands/.

Each command module exposes `add_parser(subparsers)`, which registers its parser and sets
`func` (called with the parsed args, returns an exit code). Command modules import their heavy
dependencies inside `func`, so `advisor --help` stays fast and torch-free.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from advisor import __version__
from advisor.errors import MAX_MESSAGE_CHARS, AdvisorError, escaped

COMMAND_MODULES = [
    "workload",
    "catalog",
    "probe",
    "fit",
    "recommend",
    "check_claim",
    "app",
    "loadtest",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advisor",
        description="Capacity-planning advisor for serving Z-Image-Turbo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"advisor.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AdvisorError as exc:
        print(f"error: {escaped(_capped(str(exc)))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`advisor ... | head`): stop quietly, as a shell tool does.
        # stdout is pointed at devnull so that the interpreter's final flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _capped(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    cut = len(message) - MAX_MESSAGE_CHARS
    return f"{message[:MAX_MESSAGE_CHARS]}... ({cut:,} more characters)"


if __name__ == "__main__":
    sys.exit(main())
