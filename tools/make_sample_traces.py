#!/usr/bin/env python3
"""Regenerate the sample traces in traces/: each example recorded on the emulated GPU.

    python3 tools/make_sample_traces.py                 # all examples -> traces/<name>.trace
    python3 tools/make_sample_traces.py sdma_copy race  # some of them
    python3 tools/make_sample_traces.py --check         # verify the existing traces decode cleanly

Sample traces ship with the project, so they must stay small (about 1 MB at most). The examples'
default sizes fill megabytes with random data, so each is recorded with a smaller problem size:
`kfdtrace record` runs this file with `--run-example EXAMPLE --set NAME=VALUE`, which loads the
example module, overrides the size constants (nothing else: what the example checks is
unchanged), marks the trace with what was overridden and runs the example's main(). The trace
header therefore names this script and those arguments.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
TRACES = os.path.join(REPO, "traces")
MAX_BYTES = 1 << 20

#: example -> (size overrides, extra environment)
SAMPLES: dict[str, tuple[dict[str, int], dict[str, str]]] = {
    "sdma_copy": ({"SIZE": 64 << 10}, {}),
    "timeline": ({"N": 1 << 12}, {}),
    "overlap": ({"CHUNK": 1 << 10}, {}),
    "race": ({"N": 1 << 13}, {}),
    "multi_gpu": ({"N": 1 << 12}, {"KFDTRACE_EMU_GPUS": "2"}),
}


def run_example(path: str, sets: list[str]) -> int:
    """Inside the recording: load the example, override its size constants, run main()."""
    import kfdtrace

    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for item in sets:
        key, _, value = item.partition("=")
        if not hasattr(mod, key):
            raise SystemExit(f"{path} has no constant {key} to override")
        setattr(mod, key, int(value, 0))
    kfdtrace.mark(f"example {name}" + (f" with {', '.join(sets)}" if sets else ""))
    return int(mod.main() or 0)


def command(name: str, out_dir: str) -> tuple[list[str], dict, str]:
    """(argv, environment, trace path) of the `kfdtrace record` run for example `name`."""
    sizes, env_extra = SAMPLES[name]
    out = os.path.join(out_dir, f"{name}.trace")
    script = os.path.join(EXAMPLES, f"{name}.py")
    cmd = [sys.executable, "-m", "kfdtrace.cli", "record", "-q", "--backend", "emu", "-o", out,
           os.path.abspath(__file__), "--run-example", os.path.relpath(script, REPO)]
    for k, v in sizes.items():
        cmd += ["--set", f"{k}={v}"]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    env.setdefault("KFDTRACE_EMU_GPUS", "1")
    env.pop("KFDTRACE_EMU_SEED", None)
    return cmd, env, out


def record_all(names: list[str], out_dir: str) -> dict[str, tuple[int, str, str]]:
    """Record the examples concurrently; {name: (exit status, trace path, output)}."""
    procs = {}
    for name in names:
        cmd, env, out = command(name, out_dir)
        procs[name] = (subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True), out)
    return {name: (p.wait(), out, p.stdout.read()) for name, (p, out) in procs.items()}


def check(path: str) -> list[str]:
    """Problems with a sample trace: not finalized, too big, a packet that does not decode."""
    from kfdtrace.commands.dump import TraceDecoder
    from kfdtrace.trace import TraceReader

    problems = []
    size = os.path.getsize(path)
    if size > MAX_BYTES * 1.5:
        problems.append(f"{size} bytes (keep sample traces around 1 MB)")
    with TraceReader(path) as r:
        if not r.finalized or r.status != "finalized":
            problems.append(f"status {r.status}, finalized={r.finalized}")
        dec = TraceDecoder(r)
        for rec in r.records(kinds="submit"):
            pkts, err = dec.submit_packets(rec)
            if err:
                problems.append(f"record {rec.n}: {err}")
            for p in pkts:
                if p.name in ("UNKNOWN", "TRUNCATED") or p.error:
                    problems.append(f"record {rec.n}: {p.engine} packet at {p.offset}: {p.name} {p.error or ''}")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description="Regenerate (or check) the sample traces in traces/.")
    ap.add_argument("names", nargs="*", help=f"examples to record (default: all: {', '.join(SAMPLES)})")
    ap.add_argument("--out", default=TRACES, help="output directory (default traces/)")
    ap.add_argument("--check", action="store_true", help="only check the existing traces")
    ap.add_argument("--run-example", metavar="PATH", help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_example:
        return run_example(args.run_example, args.set)
    names = args.names or list(SAMPLES)
    unknown = [n for n in names if n not in SAMPLES]
    if unknown:
        ap.error(f"unknown example(s) {', '.join(unknown)}; known: {', '.join(SAMPLES)}")
    failed = 0
    results = {} if args.check else record_all(names, args.out)
    for name in names:
        path = os.path.join(args.out, f"{name}.trace")
        if name in results:
            rc, path, output = results[name]
            sys.stdout.write(output)
            if rc:
                print(f"{name}: the example failed (exit status {rc}); trace kept at {path}")
                failed += 1
                continue
        if not os.path.exists(path):
            print(f"{name}: {path} missing")
            failed += 1
            continue
        problems = check(path)
        print(f"{name}: {path} {os.path.getsize(path) / 1024:.0f} KiB "
              + ("OK" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems[:10])))
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
