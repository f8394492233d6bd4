"""Replay speed: the submission-heavy workload (10,000 small SDMA submissions, a CPU wait after every
10th) recorded on the emulated GPU, then replayed on the emulated GPU (as another machine) in the
same process. Prints JSON: wall times of the plain run, the recorded run and the replay, the ratio
replay/record (target <= 1.0), and submissions replayed per second.

    python bench/replay.py [--submissions N] [--every K]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

WORKLOAD = '''
import sys
import numpy as np
from kfdtrace.driver import open_device

N, EVERY = {n}, {every}
with open_device(0, backend="emu") as dev:
    buf = dev.alloc(64 << 10, "gtt")
    q, t = dev.sdma_queue(ring_size=256 << 10), dev.timeline()
    for i in range(1, N + 1):
        with q.batch():                       # one submission: a small fill and a timeline signal
            q.fill(buf, i, 64, offset=(i % 1024) * 64)
            q.signal(t, i)
        if i % EVERY == 0:
            t.wait(i)
    t.wait(N)
    ok = int(buf.view(np.uint32)[(N % 1024) * 16]) == N
    print("workload:", "OK" if ok else "FAILED", file=sys.stderr)
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submissions", type=int, default=10_000)
    ap.add_argument("--every", type=int, default=10, help="CPU wait after every K submissions")
    args = ap.parse_args()
    os.environ["KFDTRACE_BACKEND"] = "emu"
    from kfdtrace.record.runner import run_script
    from kfdtrace.replay import replay
    from kfdtrace.trace import TraceReader

    with tempfile.TemporaryDirectory() as d:
        script = os.path.join(d, "submit_heavy.py")
        with open(script, "w") as f:
            f.write(WORKLOAD.format(n=args.submissions, every=args.every))
        trace = os.path.join(d, "submit_heavy.trace")
        import runpy
        t0 = time.perf_counter()
        runpy.run_path(script, run_name="__main__")
        plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        code, summary = run_script(script, [], output=trace, on_signals=False, quiet=True)
        record = time.perf_counter() - t0
        if code:
            print(f"bench/replay.py: the workload failed under recording (exit {code})", file=sys.stderr)
            return 1
        t0 = time.perf_counter()
        report = replay(trace, backend="emu")
        replay_s = time.perf_counter() - t0
        r = TraceReader(trace)
        out = {
            "benchmark": "replay",
            "submissions": report.replayed,
            "cpu_waits": summary.get("records") and r.info().get("counts", {}).get("wait"),
            "trace_bytes": os.path.getsize(trace),
            "plain_run_s": round(plain, 3),
            "record_s": round(record, 3),
            "replay_s": round(replay_s, 3),
            "replay_engine_s": round(report.elapsed, 3),
            "ratio_replay_over_record": round(replay_s / record, 3),
            "submissions_per_s": round(report.replayed / replay_s, 1),
            "replay_status": report.status,
            "target": report.info.get("target"),
        }
    print(json.dumps(out, indent=1))
    return 0 if report.status == "matched" and out["ratio_replay_over_record"] <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
