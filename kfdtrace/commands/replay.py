"""`kfdtrace replay FILE`: re-execute a trace on a GPU (or the emulated one), faithfully or
perturbed, and report whether the GPU did what it did when recorded (docs/replay.md).

Exit status: 0 matched, 1 diverged, 2 error, hang or refusal, 130 interrupted.
"""
from __future__ import annotations

import argparse
import os
import sys

from kfdtrace.commands._backend import add_backend_options, positive_float
from kfdtrace.errors import KfdtraceError
from kfdtrace.replay.report import write_json

EPILOG = """reorder policies: recorded (default), serialize, reverse, random (with --seed), delay:QUEUE:N

{spec}

exit status: 0 the replay matched the recording, 1 it diverged, 2 an error, a hang or a refusal,
130 interrupted. Details: docs/replay.md"""


def add_parser(subparsers) -> None:
    from kfdtrace.replay.inject import SPEC_HELP
    p = subparsers.add_parser(
        "replay", help="re-execute a trace and report where the GPU diverged from the recording",
        description="Replay FILE against a GPU (or the emulated one): every allocation at its recorded "
                    "address, kernel-assigned ids remapped, every submission written into the replay's "
                    "own rings, every CPU wait and checksum compared. Optionally reorder submissions "
                    "(within what the trace's synchronization allows) or inject faults.",
        epilog=EPILOG.format(spec=SPEC_HELP), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("trace", metavar="FILE", help="the trace to replay")
    add_backend_options(p, seed=True)
    p.add_argument("--machine", type=int, default=None, metavar="N",
                   help="emulated target: which machine it pretends to be (other gpu_ids and handles; "
                        "default 1, a different machine than a default recording)")
    p.add_argument("--force", action="store_true",
                   help="replay even if the target GPU family differs from the trace's (with a warning)")
    p.add_argument("--timeout", type=positive_float, default=10.0, metavar="S",
                   help="watchdog for every wait, in seconds (default 10)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-' for stdout)")
    g = p.add_argument_group("perturbation")
    g.add_argument("--reorder", metavar="POLICY", default="recorded",
                   help="recorded | serialize | reverse | random | delay:QUEUE:N (default recorded)")
    g.add_argument("--explore", type=int, metavar="N", default=None,
                   help="replay N seeded schedules (random order + emulated engine seed, seeds from "
                        "--seed or 0) and list the seeds whose results diverge")
    g.add_argument("--inject", action="append", default=[], metavar="SPEC",
                   help="inject a fault (repeatable); see the spec list below")
    g.add_argument("--unsafe-drop-wait", action="append", type=int, default=[], metavar="S",
                   help="turn the wait packets of submission S into NOPs of the same length, to confirm "
                        "a suspected race (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from kfdtrace.replay import DEFAULT_MACHINE, explore, replay
    from kfdtrace.replay.plan import ReplayRefused

    if args.json and args.json != "-":      # before the replay, not after minutes of it
        _check_output(args.json)
    machine = DEFAULT_MACHINE if args.machine is None else args.machine
    common = dict(backend=args.backend, gpu=args.gpu, gpus=args.gpus, machine=machine,
                  timeout=args.timeout, force=args.force)
    if args.explore is not None:
        if args.explore < 1:
            print("kfdtrace replay: --explore needs a positive number of schedules", file=sys.stderr)
            return 2
        return _explore(args, explore, common)
    try:
        report = replay(args.trace, seed=args.seed, policy=args.reorder, inject=args.inject,
                        drop_waits=args.unsafe_drop_wait,
                        progress=not args.no_progress and sys.stderr.isatty(), **common)
    except ReplayRefused as e:
        if args.json:
            write_json({"trace": args.trace, "status": "refused", "exit_status": 2, "message": str(e)}, args.json)
        raise
    print(report.text())
    if args.json:
        report.write_json(args.json)
    return report.exit_status


def _explore(args, explore, common) -> int:
    start = args.seed or 0

    def show(ent):
        first = f": {ent['findings'][0]}" if ent["findings"] else ""
        print(f"  seed {ent['seed']}: {ent['status']}{first}", flush=True)

    print(f"exploring {args.explore} schedules of {args.trace} (seeds {start}..{start + args.explore - 1})")
    res = explore(args.trace, args.explore, start=start, on_result=show, **common)
    if res["baseline"] != "matched":
        print(f"note: the faithful replay itself is {res['baseline']}; differences below may not come "
              "from the schedule")
    if res["diverging"]:
        print(f"{len(res['diverging'])} of {args.explore} schedules diverge; re-run one with:")
        for c in res["commands"]:
            print(f"  {c}")
    else:
        print(f"all {args.explore} schedules matched the recording")
    if args.json:
        write_json(res, args.json)
    return 1 if res["diverging"] else 0


def _check_output(path: str) -> None:
    d = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise KfdtraceError(f"--json {path}: is a directory")
    if not os.path.isdir(d):
        raise KfdtraceError(f"--json {path}: directory {d} does not exist")
    if not os.access(d, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise KfdtraceError(f"--json {path}: not writable")


