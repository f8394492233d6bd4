"""`kfdtrace record [-o FILE] [--backend auto|kfd|emu] [--gpu GFX] [--gpus N] script.py [args...]`:
run a Python script with everything it sends across /dev/kfd recorded into one trace file.

The script runs in this process as `__main__`; the backend options become the environment
defaults (KFDTRACE_BACKEND, KFDTRACE_EMU_*) so the driver inside the script opens the chosen
backend. Exits with the script's exit status; the trace is kept in every case (see
`kfdtrace.record.runner`).
"""
from __future__ import annotations

import argparse

from kfdtrace.commands._backend import add_backend_options, export_backend_env


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "record", help="record a script's GPU work into a trace file",
        description="Run SCRIPT (a Python file) with ARGS as __main__ and record every ioctl, mmap, "
                    "allocation, queue submission (with its packets and indirect buffers), "
                    "CPU-written GPU memory and fence value into one trace file.")
    p.add_argument("-o", "--output", metavar="FILE", help="trace file (default: <script stem>.trace)")
    p.add_argument("--codec", choices=("zlib", "none", "zstd"), default="zlib",
                   help="block compression (default zlib)")
    p.add_argument("--memtrack", choices=("uffd-wp+pagemap-scan", "soft-dirty", "compare"),
                   default=None, help="force a memory-write tracking method (default: the best that works)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line at the end")
    add_backend_options(p, seed=True)
    p.add_argument("script", help="the Python script to run")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")
    p.set_defaults(func=run)


def run(args) -> int:
    from kfdtrace.record.runner import run_script

    export_backend_env(args)
    code, _ = run_script(args.script, args.args, output=args.output, codec=args.codec,
                         memtrack=args.memtrack, quiet=args.quiet,
                         argv=["kfdtrace", "record", *_original_argv(args)])
    return code


def _original_argv(args) -> list[str]:
    import sys
    try:
        i = sys.argv.index("record")
        return sys.argv[i + 1:]
    except ValueError:
        return [args.script, *args.args]
