"""Compute/communication overlap: while the compute queue runs saxpy on chunk i, the SDMA
queue uploads chunk i+1 and downloads chunk i-1 (double buffering, two timelines).

This is the pattern whose bugs kfdtrace exists to catch: every hand-off between the copy queue
and the compute queue is a GPU-side wait on a timeline value.
"""
import sys

import numpy as np

from kfdtrace.driver import open_device
from _common import load_kernels, report

CHUNK, CHUNKS = 1 << 14, 6
ALPHA = 2.5


def main() -> int:
    with open_device() as dev:
        prog = load_kernels(dev)
        saxpy = prog["saxpy"]
        nbytes = CHUNK * 4
        x_h = dev.alloc(nbytes * CHUNKS, "gtt")
        y_h = dev.alloc(nbytes * CHUNKS, "gtt")
        out_h = dev.alloc(nbytes * CHUNKS, "host")
        rng = np.random.default_rng(3)
        x_h.view(np.float32)[:] = rng.random(CHUNK * CHUNKS, np.float32)
        y_h.view(np.float32)[:] = rng.random(CHUNK * CHUNKS, np.float32)
        out_h.view(np.float32)[:] = 0
        xs = [dev.alloc(nbytes, "vram") for _ in range(2)]
        ys = [dev.alloc(nbytes, "vram") for _ in range(2)]
        copy, compute = dev.sdma_queue(), dev.compute_queue()
        uploaded, computed = dev.timeline(), dev.timeline()
        for i in range(CHUNKS):
            s = i % 2
            if i >= 2:
                copy.wait(computed, i - 1)                  # buffers of chunk i-2 are free again
                copy.copy(out_h, ys[s], nbytes, dst_offset=(i - 2) * nbytes)
            copy.copy(xs[s], x_h, nbytes, src_offset=i * nbytes)
            copy.copy(ys[s], y_h, nbytes, src_offset=i * nbytes)
            copy.signal(uploaded, i + 1)
            compute.wait(uploaded, i + 1)
            compute.dispatch(saxpy, grid=CHUNK // 256, block=256, args=(ALPHA, xs[s], ys[s], CHUNK))
            compute.signal(computed, i + 1)
        for i in (CHUNKS - 2, CHUNKS - 1):
            copy.wait(computed, i + 1)
            copy.copy(out_h, ys[i % 2], nbytes, dst_offset=i * nbytes)
        copy.signal(uploaded, CHUNKS + 1)
        uploaded.wait(CHUNKS + 1)
        # saxpy compiles to a fused multiply-add: one rounding of the exact a*x+y
        x, y = x_h.view(np.float32).astype(np.float64), y_h.view(np.float32).astype(np.float64)
        want = (ALPHA * x + y).astype(np.float32)
        got = out_h.view(np.float32)
        return report("overlap", bool(np.allclose(got, want, rtol=2**-23, atol=0)),
                      f"{CHUNKS} chunks of {CHUNK} on {dev.name} ({dev.backend})")


if __name__ == "__main__":
    sys.exit(main())
