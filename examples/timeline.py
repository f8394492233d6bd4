"""SDMA upload → compute (vector_add) → SDMA download, chained by one timeline semaphore.

Each stage runs on its own queue and waits on the GPU for the previous stage's value; the CPU
waits only for the last one.
"""
import sys

import numpy as np

from kfdtrace.driver import open_device
from _common import load_kernels, report

N = 1 << 16


def main() -> int:
    with open_device() as dev:
        prog = load_kernels(dev)
        nbytes = N * 4
        a_h, b_h, c_h = (dev.alloc(nbytes, "gtt") for _ in range(3))
        a, b, c = (dev.alloc(nbytes, "vram") for _ in range(3))
        rng = np.random.default_rng(2)
        a_h.view(np.float32)[:] = rng.random(N, np.float32)
        b_h.view(np.float32)[:] = rng.random(N, np.float32)
        c_h.view(np.float32)[:] = 0
        up, compute, down = dev.sdma_queue(), dev.compute_queue(), dev.sdma_queue()
        t = dev.timeline()
        up.copy(a, a_h, nbytes)
        up.copy(b, b_h, nbytes)
        up.signal(t, 1)
        compute.wait(t, 1)
        compute.dispatch(prog["vector_add"], grid=N // 256, block=256, args=(a, b, c, N))
        compute.signal(t, 2)
        down.wait(t, 2)
        down.copy(c_h, c, nbytes)
        down.signal(t, 3)
        t.wait(3)
        want = a_h.view(np.float32) + b_h.view(np.float32)
        return report("timeline", np.array_equal(c_h.view(np.float32), want),
                      f"vector_add of {N} floats on {dev.name} ({dev.backend}), timeline={t.value}")


if __name__ == "__main__":
    sys.exit(main())
