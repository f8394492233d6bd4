"""SDMA copies: host memory → VRAM → userptr memory, checked byte for byte.

    python examples/sdma_copy.py            # any backend (KFDTRACE_BACKEND=emu for the emulated GPU)
"""
import sys

import numpy as np

from kfdtrace.driver import open_device
from _common import report

SIZE = 8 << 20


def main() -> int:
    with open_device() as dev:
        src, vram, dst = dev.alloc(SIZE, "gtt"), dev.alloc(SIZE, "vram"), dev.alloc(SIZE, "host")
        data = np.random.default_rng(1).integers(0, 2**32, SIZE // 4, dtype=np.uint32)
        src.view(np.uint32)[:] = data
        dst.view(np.uint32)[:] = 0
        q, done = dev.sdma_queue(), dev.timeline()
        q.copy(vram, src, SIZE)            # one queue executes in order
        q.copy(dst, vram, SIZE)
        q.fill(dst, 0xDEADBEEF, 4096, offset=SIZE - 4096)
        q.signal(done, 1)
        done.wait(1)
        out = dst.view(np.uint32)
        ok = np.array_equal(out[:-1024], data[:-1024]) and bool((out[-1024:] == 0xDEADBEEF).all())
        return report("sdma_copy", ok, f"{SIZE >> 20} MiB via {dev.name} ({dev.backend})")


if __name__ == "__main__":
    sys.exit(main())
