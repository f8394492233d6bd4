"""Benchmark of the emulated GPU's shader executor: vector_add over 2^20 float32 elements, the
real -O2 code objects for gfx1100 (wave32) and gfx942 (wave64), block 256.

Prints JSON: per target the dispatch wall time (best of `--repeat`, after one cold dispatch that
also decodes and compiles the program), the wave-instructions executed and the lane-instructions
they stand for (wave-instructions x wave size: issued lane slots, inactive lanes included),
lane-instructions per second, and the ratio to numpy's own `a + b` on the same arrays in the same
run. Target: the dispatch completes in <= 2 s.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from kfdtrace.codeobj import CodeObject
from kfdtrace.data import kernel_path
from kfdtrace.emu.isa.executor import NumpyShaderExecutor
from kfdtrace.emu.isa.launch import ArrayMemory, dispatch_kernel

BASE, KARG, A, B, C = 0x1_0000_0000, 0x2_0000_0000, 0x3_0000_0000, 0x4_0000_0000, 0x5_0000_0000


def bench(target: str, n: int, repeat: int) -> dict:
    co = CodeObject.load(kernel_path(target, "O2"))
    mem = ArrayMemory()
    mem.map(BASE, np.frombuffer(co.image(BASE), np.uint8).copy())
    rng = np.random.default_rng(0)
    a = rng.standard_normal(n).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    c = np.zeros(n, np.float32)
    for va, arr in ((A, a), (B, b), (C, c)):
        mem.map(va, arr.view(np.uint8))
    args = co.kernels["vector_add"].pack_args(A, B, C, n, grid_size=(n,), block=(256,))
    mem.map(KARG, np.frombuffer(args, np.uint8).copy())
    ex = NumpyShaderExecutor()

    def run():
        dispatch_kernel(co, "vector_add", mem, BASE, grid_size=(n,), block=(256,),
                        kernarg_address=KARG, executor=ex)

    t0 = time.perf_counter()
    run()                                       # cold: decode + compile + run
    cold = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        c[:] = 0
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    ok = bool(np.array_equal(c, a + b))
    np_times = []
    for _ in range(max(repeat, 5)):
        t0 = time.perf_counter()
        np.add(a, b)
        np_times.append(time.perf_counter() - t0)
    wall, np_wall = min(times), min(np_times)
    st = ex.last_stats
    return {"target": target, "elements": n, "correct": ok, "cold_dispatch_s": round(cold, 4),
            "dispatch_s": round(wall, 4), "scheduler_steps": st["steps"],
            "wave_instructions": st["wave_instructions"],
            "lane_instructions": st["lane_instructions"],
            "lane_instructions_per_s": round(st["lane_instructions"] / wall),
            "numpy_add_s": round(np_wall, 6), "ratio_to_numpy": round(wall / np_wall, 1),
            "meets_2s_target": wall <= 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--log2n", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    res = {"benchmark": "isa.vector_add", "python": platform.python_version(),
           "numpy": np.__version__, "machine": platform.machine(),
           "results": [bench(t, 1 << args.log2n, args.repeat) for t in ("gfx1100", "gfx942")]}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
