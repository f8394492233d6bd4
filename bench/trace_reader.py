"""Benchmark (d), the trace reader: time to open a 1,000,000-record trace and produce `kfdtrace info`
(target <= 1 s). Also reports what surrounds it: the writer's cost per record, the whole `kfdtrace info`
command as a fresh process, a recovery scan of the same file without its index, and one full
pass over all records. Prints JSON.

    python3 bench/trace_reader.py [--records N] [--keep FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from kfdtrace.commands.info import format_info  # noqa: E402
from kfdtrace.trace import TraceReader, TraceWriter  # noqa: E402
from kfdtrace.trace.sample import SAMPLE_HEADER, write_workload  # noqa: E402

INFO_SNIPPET = """
import sys, time
t = time.perf_counter()
from kfdtrace.trace import TraceReader
from kfdtrace.commands.info import format_info
with TraceReader(sys.argv[1]) as r:
    text = format_info(r.info())
print(time.perf_counter() - t)
"""


def best(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--keep", help="write the trace here and keep it")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="kfdtrace-bench-")
    path = args.keep or os.path.join(tmp, "bench.trace")
    try:
        t = time.perf_counter()
        with TraceWriter(path, dict(SAMPLE_HEADER)) as w:
            write_workload(w, iterations=max(1, (args.records - 40) * 4 // 17))  # ~4.25 records/iteration
            while len(w) < args.records - 1:
                w.write("marker", label="pad")
        generate_s = time.perf_counter() - t
        size = os.path.getsize(path)

        # the writer alone (what a recorder pays per record): pre-built ioctl-sized records
        arg = bytes(range(40))
        w = TraceWriter(os.path.join(tmp, "writer.trace"), {})
        t = time.perf_counter()
        for i in range(200_000):
            w.write("ioctl", fd=3, request=0xC0284B16, nr=0x16, name="AMDKFD_IOC_ALLOC_MEMORY_OF_GPU",
                    arg_in=arg, arg_out=arg, ret=0, errno=0, dur_ns=i)
        w.close()
        writer_us = (time.perf_counter() - t) / 200_000 * 1e6

        def open_info():
            with TraceReader(path) as r:
                assert len(r) == args.records
                format_info(r.info())
        open_info_s = best(open_info)

        env = dict(os.environ, PYTHONPATH=REPO)
        fresh = [float(subprocess.run([sys.executable, "-c", INFO_SNIPPET, path], env=env, check=True,
                                      capture_output=True, text=True).stdout) for _ in range(3)]
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kfdtrace.cli", "info", path], env=env, capture_output=True)
        cli_s = time.perf_counter() - t

        def iterate():
            with TraceReader(path) as r:
                assert sum(1 for _ in r.records()) == args.records
        iterate_s = best(iterate, 1)

        with TraceReader(path) as r:
            index_off = r._index_offset
        unfinal = os.path.join(tmp, "unfinalized.trace")
        with open(path, "rb") as src, open(unfinal, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.truncate(unfinal, index_off)

        def recover():
            with TraceReader(unfinal) as r:
                assert r.recovered and len(r) == args.records
        recover_s = best(recover, 1)

        print(json.dumps({
            "benchmark": "trace_reader",
            "records": args.records,
            "file_mib": round(size / 2**20, 2),
            "bytes_per_record": round(size / args.records, 1),
            "generate_and_write_s": round(generate_s, 3),
            "writer_us_per_record": round(writer_us, 2),
            "open_info_s": round(open_info_s, 4),
            "open_info_fresh_process_s": round(min(fresh), 4),
            "cli_info_wall_s": round(cli_s, 3),
            "target_open_info_s": 1.0,
            "meets_target": open_info_s <= 1.0 and min(fresh) <= 1.0,
            "iterate_all_records_s": round(iterate_s, 3),
            "recovery_scan_s": round(recover_s, 3),
        }, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
