"""The pure-Python KFD userspace driver. It talks only to a port, so the same code drives a real
GPU (host port) and the emulated one.

    from kfdtrace.driver import open_device
    with open_device(0, backend="emu", gpu="gfx942") as dev:
        a = dev.alloc(1 << 20, "vram"); a.view(np.float32)[:] = 1
        q = dev.sdma_queue(); t = dev.timeline()
        q.copy(b, a, 1 << 20); q.signal(t, 1); t.wait(1)
"""
from kfdtrace.driver.device import Buffer, Device, open_device
from kfdtrace.driver.program import Kernel, Program
from kfdtrace.driver.queues import AqlQueue, Pm4Queue, Queue, SdmaQueue
from kfdtrace.driver.sync import Timeline
from kfdtrace.errors import KfdError, WaitTimeout

__all__ = ["open_device", "Device", "Buffer", "Program", "Kernel", "Queue", "SdmaQueue",
           "Pm4Queue", "AqlQueue", "Timeline", "KfdError", "WaitTimeout"]
