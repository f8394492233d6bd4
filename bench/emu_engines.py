"""Microbenchmark of the emulated GPU's engines and scheduler alone (no driver, no ioctls).
Prints JSON.

  sdma_fence_us     one-packet SDMA FENCE submission: producer writes the packet and wptr, the
                    scheduler runs until idle (RAN + IDLE step); µs per submission
  pm4_write_data_us / aql_barrier_us   the same for a PM4 WRITE_DATA and an AQL barrier packet
  copy_*            64 MiB SDMA COPY_LINEAR (gfx1100: one packet; gfx942: 16 × 4 MiB) against a
                    numpy copy of the same bytes; target: emulated time ≤ 2 × numpy time
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from kfdtrace.abi.families import get_family
from kfdtrace.emu.base import QueueKind
from kfdtrace.emu.engines import Scheduler, make_engine
from kfdtrace.emu.memory import AddressSpace, Allocation, Backing, GpuView
from kfdtrace.packets import aql, pm4, sdma

GPU = 1


class Ctx:
    def __init__(self, machine, kind, ring, size, wptr, rptr):
        self.machine, self.kind, self.queue_id, self.gpu_id = machine, kind, 0, GPU
        self.family, self.mem, self.shader = machine.family, machine.mem, None
        self.ring_base, self.ring_size, self.wptr_addr, self.rptr_addr = ring, size, wptr, rptr

    def interrupt(self, ctxid):
        pass

    def clock(self):
        return self.machine.sched.clock

    def fault(self, va, write, message=""):
        raise SystemExit(f"unexpected GPU fault: {message}")


class Machine:
    def __init__(self, family):
        self.family = get_family(family)
        self.space = AddressSpace()
        self.mem = GpuView(self.space, GPU)
        self.sched = Scheduler()
        self.va = 1 << 40

    def alloc(self, size):
        b = Backing(size, "bench")
        a = Allocation(len(self.space._allocs) + 1, GPU, self.va, b.size, 0, "vram", backing=b)
        a.mapped.add(GPU)
        self.space.insert(a)
        va, self.va = self.va, self.va + b.size + (1 << 20)
        return va

    def queue(self, kind, size=1 << 16):
        ring, ptrs = self.alloc(size), self.alloc(4096)
        ctx = Ctx(self, kind, ring, size, ptrs, ptrs + 8)
        self.sched.add(make_engine(ctx))
        return ctx


def submissions(m, ctx, packet, unit, n):
    """µs per one-packet submission (packet: dwords, or 64 bytes for AQL)."""
    ring = m.mem.view(ctx.ring_base, ctx.ring_size)
    wp = m.mem.view(ctx.wptr_addr, 8).view(np.uint64)
    data = np.frombuffer(bytes(packet), np.uint8) if unit == 64 else np.array(packet, np.uint32).view(np.uint8)
    w, run = 0, m.sched.run
    t0 = time.perf_counter()
    for _ in range(n):
        off = (w * unit) % ctx.ring_size
        k = min(len(data), ctx.ring_size - off)      # a packet may straddle the ring's end
        ring[off:off + k] = data[:k]
        ring[:len(data) - k] = data[k:]
        w += len(data) // unit
        wp[0] = w
        run()
    dt = time.perf_counter() - t0
    assert m.mem.read_u64(ctx.rptr_addr) == w
    return dt / n * 1e6


def best(fn, repeat=5):
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


def copy_64mib(family, chunk):
    m = Machine(family)
    ctx = m.queue(QueueKind.SDMA)
    size = 64 << 20
    src, dst = m.alloc(size), m.alloc(size)
    m.mem.view(src, size, write=True)[:] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    words = [w for o in range(0, size, chunk)
             for w in sdma.build("COPY_LINEAR", family, byte_count=chunk, src_addr=src + o, dst_addr=dst + o)]
    ring = m.mem.view(ctx.ring_base, ctx.ring_size).view(np.uint32)
    wp = m.mem.view(ctx.wptr_addr, 8).view(np.uint64)
    state = {"w": 0}

    def run():
        pos = state["w"] // 4 % len(ring)
        if pos + len(words) > len(ring):
            ring[pos:] = 0                       # zero dwords are NOPs: pad to the end
            state["w"] += (len(ring) - pos) * 4
            pos = 0
        ring[pos:pos + len(words)] = words
        state["w"] += 4 * len(words)
        wp[0] = state["w"]
        m.sched.run()
    t_emu = best(run)
    a, b = m.mem.view(src, size), np.empty(size, np.uint8)
    t_np = best(lambda: np.copyto(b, a))
    assert np.array_equal(m.mem.view(dst, size), a)
    return t_emu, t_np


def main(argv=None) -> int:
    n = int(argv[0]) if argv else 50000
    m = Machine("gfx942")
    buf = m.alloc(4096)
    s = m.queue(QueueKind.SDMA)
    fence_us = submissions(m, s, sdma.build("FENCE", "gfx942", addr=buf, data=1), 1, n)
    m = Machine("gfx942")
    buf = m.alloc(4096)
    p = m.queue(QueueKind.PM4)
    pm4_us = submissions(m, p, pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=buf, data=[1]), 4, n)
    m = Machine("gfx942")
    a = m.queue(QueueKind.AQL)
    aql_us = submissions(m, a, aql.build("BARRIER_AND"), 64, n)
    out = {"benchmark": "emu_engines", "submissions": n,
           "sdma_fence_us": round(fence_us, 2), "pm4_write_data_us": round(pm4_us, 2),
           "aql_barrier_us": round(aql_us, 2)}
    for fam, chunk in (("gfx1100", 64 << 20), ("gfx942", 4 << 20)):
        t_emu, t_np = copy_64mib(fam, chunk)
        out[f"copy_64MiB_{fam}_s"] = round(t_emu, 5)
        out[f"copy_64MiB_{fam}_numpy_s"] = round(t_np, 5)
        out[f"copy_64MiB_{fam}_ratio"] = round(t_emu / t_np, 3)
    out["copy_target_ratio_max"] = 2.0
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
