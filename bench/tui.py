"""Benchmark of `kfdtrace view` (headless, Textual's run_test): time to the first screen, time
until the whole trace is indexed, and time to jump to the last packet, for traces of 100,000 and
1,000,000 packets (1,000-packet submissions on two PM4 compute queues and an SDMA queue, written
with TraceWriter; every submission's packets carry their own fence values and addresses, so no
two ring blobs are the same). Prints JSON.

    python3 bench/tui.py [--sizes 100000,1000000] [--keep DIR]

Targets (1,000,000 packets): first screen <= 1.5 s, jump to the last packet <= 0.5 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kfdtrace.packets import pm4, sdma  # noqa: E402
from kfdtrace.trace import TraceWriter  # noqa: E402
from tui.demo import HEADER  # noqa: E402

FAM = "gfx1100"
PER_SUB = 1000
SIG = 0x7F3A_0060_0008


def _u32(words) -> np.ndarray:
    return np.array(words, np.uint32)


def _templates():
    """One dispatch group (8 PM4 packets) and one copy group (4 SDMA packets), with the dword
    positions that vary per group (fence values, kernarg addresses, copy addresses)."""
    wait = pm4.build("WAIT_REG_MEM", FAM, function=5, mem_space=1, poll_addr=SIG, reference=1, mask=0xFFFFFFFF,
                     poll_interval=4)
    acq = pm4.build("ACQUIRE_MEM", FAM, coher_size=0xFFFFFFFFFF, gcr_cntl=0x3C3F0)
    sh = [pm4.build("SET_SH_REG", FAM, reg="COMPUTE_PGM_LO", values=[0x3A004046, 0x7F]),
          pm4.build("SET_SH_REG", FAM, reg="COMPUTE_PGM_RSRC1", values=[0xE0AF0000, 0x9E]),
          pm4.build("SET_SH_REG", FAM, reg="COMPUTE_PGM_RSRC3", values=[0x20]),
          pm4.build("SET_SH_REG", FAM, reg="COMPUTE_USER_DATA_0", values=[0x00500000, 0x7F3A])]
    disp = pm4.build("DISPATCH_DIRECT", FAM, dim_x=64, dim_y=1, dim_z=1, dispatch_initiator=0x8005)
    rel = pm4.build("RELEASE_MEM", FAM, event_type=0x14, event_index=5, data_sel=2, addr=SIG + 0x40, data=1)
    group = wait + acq + sum(sh, []) + disp + rel
    ref_at = 4                                           # WAIT_REG_MEM reference
    karg_at = len(wait + acq) + 4 + 4 + 3 + 2            # USER_DATA_0 value
    data_at = len(group) - len(rel) + 5                  # RELEASE_MEM data lo
    copy = sdma.build("COPY_LINEAR", FAM, count=0x4000, src_addr=0x7F3A_00A0_0000, dst_addr=0x7F3A_0080_0000)
    fence = sdma.build("FENCE", FAM, addr=SIG, data=1)
    cgroup = copy + fence + sdma.build("FENCE", FAM, addr=SIG + 4, data=0) + sdma.build("TRAP", FAM, int_context=7)
    return (_u32(group), 8, ref_at, karg_at, data_at), (_u32(cgroup), 4, 3, len(copy) + 3)


def write_trace(path: Path, packets: int) -> dict:
    """`packets` packets in submissions of PER_SUB: two PM4 queues and an SDMA queue, round robin."""
    (g, gp, ref_at, karg_at, data_at), (c, cp, src_at, fdata_at) = _templates()
    subs = packets // PER_SUB
    t0 = time.perf_counter()
    with TraceWriter(path, dict(HEADER), flush_interval=None) as w:
        for qid, engine, qtype in ((1, "pm4", "compute"), (2, "pm4", "compute"), (3, "sdma", "sdma")):
            w.write("queue_create", t=1000 + qid, queue_id=qid, gpu_id=0x5A1D, type=qtype,
                    ring_base=0x7F3A_0000_0000 + qid * 0x10_0000, ring_size=1 << 20, wptr_addr=0, rptr_addr=0,
                    doorbell_offset=8 * qid, engine=engine)
        wptr = {1: 0, 2: 0, 3: 0}
        for s in range(subs):
            qid = 1 + s % 3
            if qid < 3:
                reps = PER_SUB // gp
                ring = np.tile(g, reps)
                k = np.arange(reps, dtype=np.uint64) + s * reps
                ring[ref_at::len(g)] = (k & 0xFFFFFFFF).astype(np.uint32)
                ring[karg_at::len(g)] = (0x00500000 + (k % 4096) * 0x40).astype(np.uint32)
                ring[data_at::len(g)] = ((k + 1) & 0xFFFFFFFF).astype(np.uint32)
                unit, engine = 4, "pm4"
            else:
                reps = PER_SUB // cp
                ring = np.tile(c, reps)
                k = np.arange(reps, dtype=np.uint64) + s * reps
                ring[src_at::len(c)] = (0x00A00000 + (k % 64) * 0x4000).astype(np.uint32)
                ring[fdata_at::len(c)] = ((k + 1) & 0xFFFFFFFF).astype(np.uint32)
                unit, engine = 1, "sdma"
            data = ring.tobytes()
            n = len(data) // unit
            w.write("submit", t=10_000 + s * 20_000, queue_id=qid, engine=engine, wptr_before=wptr[qid],
                    wptr_after=wptr[qid] + n, dwords=w.blob(data), ibs=[], gpu_id=0x5A1D)
            wptr[qid] += n
            if s % 50 == 0:
                w.write("marker", t=10_000 + s * 20_000 + 1, label=f"step {s // 50}")
        w.write("end", t=10_000 + subs * 20_000, status="finalized", exit_status=0)
    return {"packets": subs * PER_SUB, "submissions": subs, "write_s": round(time.perf_counter() - t0, 3),
            "file_bytes": path.stat().st_size}


async def measure(path: Path) -> dict:
    from tui.app import KfdtraceApp
    from tui.model import Target

    t0 = time.perf_counter()
    app = KfdtraceApp(path)
    async with app.run_test(size=(160, 48)) as pilot:
        first = time.perf_counter() - t0                 # composed, mounted, first frame drawn
        rows_at_first = app.query_one("#packets").count
        await app.workers.wait_for_complete()
        await pilot.pause()
        indexed = time.perf_counter() - t0
        last = app.model.n_packets - 1
        t1 = time.perf_counter()
        await pilot.press("G")
        await pilot.pause()
        jump = time.perf_counter() - t1
        assert app.selection == Target("packet", last), app.selection
        shown = app.query_one("#packets").render_line(1 + app.query_one("#packets").cursor
                                                      - int(app.query_one("#packets").scroll_offset.y)).text
        wait = max(i for i in range(last - 2000, last + 1) if app.model.packet(i).name == "WAIT_REG_MEM")
        app.jump(Target("packet", wait))
        await pilot.pause()
        t2 = time.perf_counter()
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()
        sync = time.perf_counter() - t2
        found = app.model.packet(app.selection.index).name if app.selection.kind == "packet" else "record"
    return {"first_screen_s": round(first, 3), "rows_at_first_screen": rows_at_first,
            "indexed_s": round(indexed, 3), "index_ready_s": round(app.ready_at - app.started, 3),
            "jump_to_last_s": round(jump, 3), "last_row_shown": "RELEASE_MEM" in shown or "TRAP" in shown,
            "wait_to_signal_jump_s": round(sync, 3), "wait_to_signal_found": found}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--keep", help="keep the generated traces in this directory")
    args = ap.parse_args()
    out = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "runs": []}
    imp = subprocess.run([sys.executable, "-X", "importtime", "-c", "import tui.app"], capture_output=True,
                         text=True, cwd=Path(__file__).resolve().parent.parent)
    total_us = [int(line.split("|")[1]) for line in imp.stderr.splitlines()
                if line.startswith("import time:") and line.split("|")[-1].strip() == "tui.app"]
    out["import_tui_app_s"] = round(total_us[0] / 1e6, 3) if total_us else None
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(args.keep or tmp)
        d.mkdir(parents=True, exist_ok=True)
        for size in (int(x) for x in args.sizes.split(",")):
            path = d / f"bench-{size}.trace"
            run = {"trace": write_trace(path, size)}
            run.update(asyncio.run(measure(path)))
            out["runs"].append(run)
    big = max(out["runs"], key=lambda r: r["trace"]["packets"])
    out["targets_1M"] = {"first_screen_s<=1.5": big["first_screen_s"] <= 1.5,
                         "jump_to_last_s<=0.5": big["jump_to_last_s"] <= 0.5}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
