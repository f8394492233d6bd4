"""The `kfdtrace` command.

Each subcommand lives in `kfdtrace/commands/<name>.py` and exposes
`add_parser(subparsers)` (which registers it and sets `func`) — the registry below lists them.
Errors derived from KfdtraceError are printed as one clear message (exit status 2), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from kfdtrace import __version__
from kfdtrace.errors import KfdtraceError

#: subcommand modules, in the order `kfdtrace --help` lists them
COMMANDS = [
    "record", "replay", "view", "info", "dump", "export",
    "decode", "disasm", "topology",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kfdtrace",
        description="Record, replay and inspect what AMD GPU workloads send across /dev/kfd.",
    )
    parser.add_argument("--version", action="version", version=f"kfdtrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"kfdtrace.commands.{name}")
        except ModuleNotFoundError as e:  # a command not built yet
            if e.name == f"kfdtrace.commands.{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except KfdtraceError as e:
        print(f"kfdtrace {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"kfdtrace {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
