"""Two GPUs: GPU 0 fills a buffer and copies it peer-to-peer into GPU 1's VRAM; GPU 1 scales it
with saxpy and copies the result back to host memory. Cross-GPU ordering is a timeline created on
GPU 0 that GPU 1's queues wait on.

    KFDTRACE_BACKEND=emu KFDTRACE_EMU_GPUS=2 python examples/multi_gpu.py
"""
import sys

import numpy as np

from kfdtrace.driver import open_device
from _common import load_kernels, report

N = 1 << 16


def main() -> int:
    dev0 = open_device(0)
    try:
        dev1 = open_device(1)
    except Exception as e:
        dev0.close()
        print(f"multi_gpu: needs two GPUs ({e}); with the emulator set KFDTRACE_EMU_GPUS=2")
        return 2
    with dev0, dev1:
        prog = load_kernels(dev1)
        nbytes = N * 4
        a0 = dev0.alloc(nbytes, "vram")
        a1, y1 = dev1.alloc(nbytes, "vram"), dev1.alloc(nbytes, "vram")
        out = dev1.alloc(nbytes, "gtt")
        y1.view(np.float32)[:] = 0.5
        q0, c1, q1 = dev0.sdma_queue(), dev1.compute_queue(), dev1.sdma_queue()
        t = dev0.timeline()
        q0.fill(a0, np.float32(3.0).view(np.uint32).item(), nbytes)
        q0.copy(a1, a0, nbytes)                             # peer copy GPU 0 → GPU 1
        q0.signal(t, 1)
        c1.wait(t, 1)
        c1.dispatch(prog["saxpy"], grid=N // 256, block=256, args=(2.0, a1, y1, N))
        c1.signal(t, 2)
        q1.wait(t, 2)
        q1.copy(out, y1, nbytes)
        q1.signal(t, 3)
        t.wait(3)
        ok = bool((out.view(np.float32) == np.float32(6.5)).all())
        return report("multi_gpu", ok, f"{dev0.name} → {dev1.name} ({dev0.backend})")


if __name__ == "__main__":
    sys.exit(main())
