"""Emulated GPU benchmark (issue: port, emulated GPU, driver). Prints JSON.

(a) SDMA COPY_LINEAR of 64 MiB through the driver on the emulated GPU, against a numpy copy of the
    same size measured in the same run: ratio of emulated to numpy bandwidth (target ≥ 0.5).
(b) Submissions per second for one-packet SDMA FENCE submissions with a CPU wait each (target ≥
    20,000/s): every submission rings the doorbell, every wait checks the fence value.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from kfdtrace.driver import open_device


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    size = 64 << 20
    n_fences = int(argv[0]) if argv else 20000
    with open_device(0, backend="emu", gpu="gfx942") as dev:
        src, dst = dev.alloc(size, "vram"), dev.alloc(size, "vram")
        src.view(np.uint8)[:] = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
        q, t = dev.sdma_queue(), dev.timeline()
        value = [0]

        def sdma_copy():
            value[0] += 1
            q.copy(dst, src, size)
            q.fence(t.value_addr, value[0])
            t.wait(value[0])

        a, b = src.view(np.uint8), np.empty(size, np.uint8)
        t_emu = best(sdma_copy, 5)
        t_np = best(lambda: np.copyto(b, a), 5)
        assert np.array_equal(dst.view(np.uint8), a)

        base = value[0]
        t0 = time.perf_counter()
        for i in range(1, n_fences + 1):
            q.fence(t.value_addr, base + i)
            t.wait(base + i)
        dt = time.perf_counter() - t0
        assert t.value == base + n_fences
    out = {
        "benchmark": "emu",
        "sdma_copy_bytes": size,
        "sdma_copy_s": round(t_emu, 5),
        "numpy_copy_s": round(t_np, 5),
        "sdma_GBps": round(size / t_emu / 1e9, 2),
        "numpy_GBps": round(size / t_np / 1e9, 2),
        "ratio_emulated_to_numpy_bandwidth": round(t_np / t_emu, 3),
        "target_ratio": 0.5,
        "fence_submissions": n_fences,
        "fence_submissions_per_s": round(n_fences / dt),
        "target_submissions_per_s": 20000,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
