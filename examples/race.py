"""A deliberately missing wait: the compute queue reads data the SDMA queue may not have finished
copying. It passes when the copy happens to finish first (the emulated GPU's default schedule)
and fails under some engine schedules (KFDTRACE_EMU_SEED=N) — find one with
`kfdtrace replay --explore` on a recording of this script.
"""
import sys

import numpy as np

from kfdtrace.driver import open_device
from _common import load_kernels, report

N = 1 << 15


def main() -> int:
    with open_device() as dev:
        prog = load_kernels(dev)
        nbytes = N * 4
        x_h = dev.alloc(nbytes, "gtt")
        x, y = dev.alloc(nbytes, "vram"), dev.alloc(nbytes, "vram")
        out = dev.alloc(nbytes, "gtt")
        x_h.view(np.float32)[:] = np.arange(N, dtype=np.float32)
        x.view(np.float32)[:] = 0
        y.view(np.float32)[:] = 1
        copy, compute = dev.sdma_queue(), dev.compute_queue()
        copied, computed = dev.timeline(), dev.timeline()
        with copy.batch():                                  # the copy, in 32 packets, one doorbell
            part = nbytes // 32
            for i in range(32):
                copy.copy(x, x_h, part, dst_offset=i * part, src_offset=i * part)
            copy.signal(copied, 1)
        # BUG: missing `compute.wait(copied, 1)` — the kernel may read x before the copy lands.
        compute.dispatch(prog["saxpy"], grid=N // 256, block=256, args=(1.0, x, y, N))
        compute.signal(computed, 1)
        copy.wait(computed, 1)
        copy.copy(out, y, nbytes)
        copy.signal(copied, 2)
        copied.wait(2)
        want = np.arange(N, dtype=np.float32) + 1
        got = out.view(np.float32)
        bad = int((got != want).sum())
        return report("race", bad == 0, f"{bad} of {N} results wrong" if bad else "copy won the race")


if __name__ == "__main__":
    sys.exit(main())
