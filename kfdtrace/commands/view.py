"""`kfdtrace view FILE [--report replay.json]`: inspect a trace in the terminal UI (package `tui`).

Textual is imported only when the command runs, so the rest of the CLI never pays for it. The
file is checked for the trace magic first, so a wrong path fails with one line, not a screen.
"""
from __future__ import annotations

import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "view", help="inspect a trace in the terminal UI",
        description="Open a trace in the terminal UI: a timeline of every queue and the CPU, the packet "
                    "list with each packet decoded, ioctls, allocations, search, filters, wait/signal "
                    "jumps. Press ? inside for every key.")
    p.add_argument("file", help="trace file")
    p.add_argument("--report", metavar="JSON",
                   help="a replay report (kfdtrace replay --json) whose divergences, hangs and injected "
                        "faults are highlighted where they happened")
    p.set_defaults(func=run)


def run(args) -> int:
    from kfdtrace.errors import TraceError
    from kfdtrace.trace import format as F
    if os.path.exists(args.file) and not os.path.isfile(args.file):    # reading a FIFO would block
        what = "a directory" if os.path.isdir(args.file) else "not a regular file"
        raise TraceError(f"cannot open: {what}, not a trace file", path=args.file)
    try:
        with open(args.file, "rb") as fh:
            head = fh.read(F.PREAMBLE.size)
    except OSError as e:
        raise TraceError(f"cannot open: {e.strerror}", path=args.file) from None
    if len(head) < F.PREAMBLE.size or not head.startswith(F.MAGIC):
        raise TraceError("not a kfdtrace trace (no KFDTRACE magic)", offset=0, path=args.file)
    if args.report is not None and not os.path.exists(args.report):
        raise TraceError("replay report not found", path=args.report)
    from tui.app import run as run_tui
    return run_tui(args.file, args.report)
