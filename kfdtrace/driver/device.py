"""A GPU: its topology node and family, its render node and VM, buffers, queues and events."""
from __future__ import annotations

import ctypes

import numpy as np

from kfdtrace.abi import ioctl as abi
from kfdtrace.abi.families import get_family
from kfdtrace.errors import GpuFault, KfdtraceError
from kfdtrace.driver.process import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PAGE, PROT_NONE,
    PROT_READ, PROT_WRITE, KfdProcess, align, get_process, put_process,
)

F = abi.AllocFlags
#: KFD allocation flags per `where` (what libhsakmt passes for device, GTT and userptr memory)
DOMAIN_FLAGS = {
    "vram": F.VRAM | F.WRITABLE | F.EXECUTABLE | F.PUBLIC | F.NO_SUBSTITUTE,
    "gtt": F.GTT | F.WRITABLE | F.EXECUTABLE | F.COHERENT | F.NO_SUBSTITUTE,
    "host": F.USERPTR | F.WRITABLE | F.EXECUTABLE | F.COHERENT | F.NO_SUBSTITUTE,
}


class Buffer:
    """GPU memory with a CPU mapping: `address` is both its GPU VA and its CPU address."""

    def __init__(self, device: Device, size: int, where: str, address: int, handle: int,
                 mapped_size: int):
        self.device, self.size, self.where = device, size, where
        self.address, self.handle, self.mapped_size = address, handle, mapped_size
        self.mapped_on: list[int] = [device.gpu_id]
        self.freed = False

    def __repr__(self):
        return f"<Buffer {self.where} {self.size:#x} bytes at {self.address:#x} on {self.device.name}>"

    def view(self, dtype=np.uint8, count: int | None = None, offset: int = 0) -> np.ndarray:
        """A numpy array over the CPU mapping (zero copy)."""
        self._check()
        dtype = np.dtype(dtype)
        if count is None:
            count = (self.size - offset) // dtype.itemsize
        if offset < 0 or offset + count * dtype.itemsize > self.size:
            raise KfdtraceError(f"view [{offset}, +{count * dtype.itemsize}) outside {self!r}")
        raw = (ctypes.c_uint8 * (count * dtype.itemsize)).from_address(self.address + offset)
        return np.frombuffer(raw, dtype=dtype, count=count)

    def write(self, data, offset: int = 0) -> None:
        b = memoryview(data).cast("B")
        self.view(np.uint8, len(b), offset)[:] = np.frombuffer(b, np.uint8)

    def read(self, size: int | None = None, offset: int = 0) -> bytes:
        return self.view(np.uint8, self.size - offset if size is None else size, offset).tobytes()

    def map_to(self, device: Device) -> None:
        """Make this buffer reachable by another GPU of the same process (peer access)."""
        self._check()
        if device.gpu_id in self.mapped_on:
            return
        self.device._map(self.handle, [device.gpu_id])
        self.mapped_on.append(device.gpu_id)

    def free(self) -> None:
        if self.freed:
            return
        self.device.buffers.discard(self)
        self._destroy()

    def _destroy(self, free: bool = True) -> None:
        if self.freed:
            return
        self.freed = True
        dev, proc = self.device, self.device.proc
        proc.release(self.address, self.mapped_size)            # drop the CPU mapping first
        dev._unmap(self.handle, self.mapped_on)
        if free:
            proc.ioctl("FREE_MEMORY_OF_GPU", handle=self.handle)

    def _check(self):
        if self.freed:
            raise KfdtraceError(f"{self!r} was freed")


class Device:
    """One GPU, opened through a port. Use `open_device()`; close with `.close()` or `with`."""

    def __init__(self, proc: KfdProcess, index: int):
        self.proc, self.port, self.index = proc, proc.port, index
        self.node = proc.gpus[index]
        self.gpu_id = self.node.gpu_id
        self.family = self.node.family
        self.name = f"{self.family.name}#{index}"
        self.render = self.port.open(f"/dev/dri/renderD{self.node.drm_render_minor}")
        proc.ioctl("ACQUIRE_VM", drm_fd=self.render, gpu_id=self.gpu_id)
        self.buffers: set[Buffer] = set()
        self.queues: list = []
        self.events: list[int] = []
        self._doorbell_base: int | None = None
        self._doorbell_offset: int | None = None
        self._signal_pools: list[Buffer] = []
        self._signal_next = 0
        self.closed = False
        proc.devices.append(self)
        # KFD reports GPU page faults as a memory-exception event; CPU waits watch it too, so a
        # fault surfaces as an error naming the address instead of a timeout.
        # Other queue errors (an illegal packet or instruction, a hang reset) are HW exceptions.
        self.fault_event = proc.ioctl("CREATE_EVENT", event_type=abi.EventType.MEMORY, auto_reset=0,
                                      node_id=self.node.index).event_id
        self.hw_event = proc.ioctl("CREATE_EVENT", event_type=abi.EventType.HW_EXCEPTION, auto_reset=0,
                                   node_id=self.node.index).event_id
        self.events += [self.fault_event, self.hw_event]

    def check_fault(self, memory=None, hw=None) -> None:
        """Raise GpuFault if a memory-exception or HW-exception event fired (from WAIT_EVENTS
        event data, or polled now)."""
        if memory is None or hw is None:
            _, (memory, hw) = self.proc.wait_events([self.fault_event, self.hw_event], 0)
        h = hw.hw_exception_data
        if h.gpu_id:
            raise GpuFault(f"GPU queue error on {self.name} (gpu_id {h.gpu_id:#x}): the GPU raised a "
                           f"HW exception (reset_type {h.reset_type}, cause {h.reset_cause}); "
                           f"the queue was stopped{self._busy_queues()}")
        m = memory.memory_exception_data
        if m.va or m.failure.NotPresent or m.failure.ReadOnly or m.failure.NoExecute:
            kinds = [k for k in ("NotPresent", "ReadOnly", "NoExecute") if getattr(m.failure, k)]
            raise GpuFault(f"GPU memory fault on {self.name} (gpu_id {m.gpu_id:#x}) at address "
                           f"{m.va:#x} ({', '.join(kinds) or 'fault'}); the faulting queue was stopped"
                           f"{self._busy_queues()}", address=m.va)

    def _busy_queues(self) -> str:
        """Where the fault can be: the queues with unfinished packets, each at its read pointer
        (the exception data names the GPU only)."""
        try:
            busy = [q.describe_stall() for q in self.queues if not q.destroyed and q.rptr < q.wptr]
        except Exception:        # a diagnostic must never hide the fault itself
            return ""
        return "; " + "; ".join(busy) if busy else ""

    def __repr__(self):
        return f"<Device {self.name} gpu_id={self.gpu_id:#x} backend={self.port.backend}>"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def backend(self) -> str:
        return self.port.backend

    # -- memory ---------------------------------------------------------------------------------
    def alloc(self, size: int, where: str = "vram", *, _internal: bool = False) -> Buffer:
        """Allocate `size` bytes of GPU memory: "vram" (device memory, CPU-visible), "gtt"
        (system memory through the GART) or "host" (ordinary process memory registered as
        userptr). The buffer is mapped on this GPU and on the CPU at the same address."""
        if where not in DOMAIN_FLAGS:
            raise KfdtraceError(f"unknown memory kind {where!r}: use vram, gtt or host")
        from kfdtrace.driver.queues import _positive
        size = _positive(size, "allocation")
        proc = self.proc
        mapped = align(size, PAGE)
        alignment = 1 << 21 if mapped >= 1 << 21 else PAGE
        va = proc.reserve(mapped, alignment)
        try:
            if where == "host":
                self.port.mmap(va, mapped, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
                r = proc.ioctl("ALLOC_MEMORY_OF_GPU", va_addr=va, size=mapped, gpu_id=self.gpu_id,
                               flags=int(DOMAIN_FLAGS[where]), mmap_offset=va)
            else:
                r = proc.ioctl("ALLOC_MEMORY_OF_GPU", va_addr=va, size=mapped, gpu_id=self.gpu_id,
                               flags=int(DOMAIN_FLAGS[where]))
        except BaseException:
            proc.release(va, mapped)
            raise
        buf = Buffer(self, size, where, va, r.handle, mapped)
        try:
            self._map(r.handle, [self.gpu_id])
            if where != "host":
                self.port.mmap(va, mapped, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                               self.render, r.mmap_offset)
        except BaseException:
            buf.mapped_on = []
            buf._destroy()
            raise
        if not _internal:
            self.buffers.add(buf)
        return buf

    def _map(self, handle: int, gpu_ids: list[int]) -> None:
        ids = (ctypes.c_uint32 * len(gpu_ids))(*gpu_ids)
        r = self.proc.ioctl("MAP_MEMORY_TO_GPU", handle=handle, device_ids_array_ptr=ctypes.addressof(ids),
                            n_devices=len(gpu_ids), n_success=0)
        if r.n_success != len(gpu_ids):
            raise KfdtraceError(f"MAP_MEMORY_TO_GPU mapped {r.n_success} of {len(gpu_ids)} GPUs")

    def _unmap(self, handle: int, gpu_ids: list[int]) -> None:
        if not gpu_ids:
            return
        ids = (ctypes.c_uint32 * len(gpu_ids))(*gpu_ids)
        self.proc.ioctl("UNMAP_MEMORY_FROM_GPU", handle=handle, device_ids_array_ptr=ctypes.addressof(ids),
                        n_devices=len(gpu_ids), n_success=0)

    # -- doorbells --------------------------------------------------------------------------------
    def _doorbell_address(self, doorbell_offset: int) -> int:
        """Map this process's doorbell slice of the GPU once; return the queue's doorbell VA."""
        mask = abi.DOORBELL_SLICE_SIZE - 1
        if self._doorbell_base is None:
            va = self.proc.reserve(abi.DOORBELL_SLICE_SIZE)
            self.port.mmap(va, abi.DOORBELL_SLICE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                           self.proc.kfd, doorbell_offset & ~mask)
            self._doorbell_base, self._doorbell_offset = va, doorbell_offset & ~mask
        return self._doorbell_base + (doorbell_offset & mask)

    # -- queues, timelines, programs -------------------------------------------------------------
    def sdma_queue(self, engine: int | None = None, ring_size: int = 64 << 10):
        """An SDMA (copy) queue. `engine` picks a specific SDMA engine (SDMA_BY_ENG_ID)."""
        from kfdtrace.driver.queues import SdmaQueue
        return SdmaQueue(self, ring_size=ring_size, engine=engine)

    def compute_queue(self, aql: bool = False, ring_size: int = 64 << 10):
        """A compute queue: PM4 (`aql=False`) or AQL (`aql=True`)."""
        from kfdtrace.driver.queues import AqlQueue, Pm4Queue
        return AqlQueue(self, ring_size=ring_size) if aql else Pm4Queue(self, ring_size=ring_size)

    def timeline(self, initial: int = 0):
        """A timeline semaphore: a 64-bit value GPUs signal and wait on, and the CPU waits on."""
        from kfdtrace.driver.sync import Timeline
        return Timeline(self, initial)

    def load_program(self, code):
        """Load an AMDGPU code object (path or bytes) into GPU memory."""
        from kfdtrace.driver.program import Program
        return Program(self, code)

    def _signal_slot(self) -> tuple[Buffer, int]:
        """A 64-byte, 64-byte aligned amd_signal_t slot carved from GTT pages of this device."""
        if not self._signal_pools or self._signal_next >= self._signal_pools[-1].size:
            pool = self.alloc(64 << 10, "gtt", _internal=True)
            self._signal_pools.append(pool)
            self._signal_next = 0
            # only amd_signal_t slots live here: a recorder need not checksum it at every wait,
            # since each wait records the value it saw
            self.port.annotate("signal_pool", va=pool.address, size=pool.size, gpu_id=self.gpu_id)
        off = self._signal_next
        self._signal_next += 64
        return self._signal_pools[-1], off

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Destroy this device's queues, events and memory, then release the process if last."""
        if self.closed:
            return
        self.closed = True
        try:
            for q in list(self.queues):
                q.destroy()
            for e in list(self.events):
                self.proc.ioctl("DESTROY_EVENT", event_id=e)
            self.events.clear()
            for b in list(self.buffers):
                b.free()
            for b in self._signal_pools:
                b._destroy()
            if self._doorbell_base is not None:
                self.proc.release(self._doorbell_base, abi.DOORBELL_SLICE_SIZE)
            self.port.close(self.render)
        finally:
            self.proc.devices.remove(self)
            put_process(self.proc)


def open_device(index: int = 0, backend: str | None = None, gpu: str | None = None) -> Device:
    """Open GPU `index` (or the first GPU of family `gpu`, e.g. "gfx942") through `backend`
    ("auto", "kfd", "emu"; default KFDTRACE_BACKEND or auto). On the emulated backend, `gpu`
    also chooses the emulated family."""
    proc = get_process(backend, gpu)
    try:
        idx = index
        if gpu:
            fam = get_family(gpu)
            matches = [i for i, n in enumerate(proc.gpus) if n.gfx_target_version == fam.gfx_target_version]
            if not matches:
                have = ", ".join(n.family.name for n in proc.gpus)
                raise KfdtraceError(f"no {fam.name} GPU here (GPUs: {have})")
            if index >= len(matches):
                raise KfdtraceError(f"GPU index {index} out of range: {len(matches)} {fam.name} GPU(s) "
                                    f"on {proc.port.describe()}")
            idx = matches[index]
        if not 0 <= idx < len(proc.gpus):
            raise KfdtraceError(f"GPU index {idx} out of range: {len(proc.gpus)} GPU(s) "
                                f"on {proc.port.describe()}")
        return Device(proc, idx)
    except BaseException:
        put_process(proc)
        raise


__all__ = ["Device", "Buffer", "open_device"]
