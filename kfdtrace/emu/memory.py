"""GPU memory of the emulated device: real host memory, one process-wide GPU VA space, and one
`GpuMemory` view per GPU that honours that GPU's MAP/UNMAP_MEMORY_TO_GPU state.

GPU VA == CPU VA, as KFD lets userspace choose VAs. Every VRAM/GTT/doorbell BO is backed by a
memfd: the emulator reads and writes it through its own MAP_SHARED mapping (numpy, zero copy),
and a CPU mmap of the render node at the BO's mmap_offset maps the same memfd at the BO's VA, so
the CPU and the GPU see the same bytes without copies. USERPTR memory is ordinary process
memory: the GPU accesses it at its CPU address. Any GPU access outside the allocations mapped on
that GPU raises `GpuPageFault`, as a GPUVM page-table miss would.
"""
from __future__ import annotations

import bisect
import ctypes
import mmap
import os

import numpy as np

from kfdtrace.emu.base import GpuPageFault
from kfdtrace.errors import GpuFault
from kfdtrace.port.host import PAGE_SIZE, user_range_protection


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


class Backing:
    """Host pages behind one buffer object: a memfd (so CPU mappings can share the pages) and the
    emulator's own mapping of it as a uint8 numpy array.

    Freed with `close()`. Numpy views still held elsewhere keep the emulator's mapping alive
    (the mmap object refuses to close while exported) and it is unmapped when they die, so a
    stale view can never touch unmapped memory."""

    def __init__(self, size: int, name: str):
        self.size = page_align(max(size, 1))
        self.name = name
        self.fd = os.memfd_create(f"kfdtrace-{name}", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, self.size)
            self._mm = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self.array = np.frombuffer(self._mm, dtype=np.uint8)

    def close(self) -> None:
        if self.fd < 0:
            return
        self.array = None
        try:
            self._mm.close()
        except BufferError:
            pass       # views are alive: the mapping goes when the last of them does
        os.close(self.fd)
        self.fd = -1


class Allocation:
    """One ALLOC_MEMORY_OF_GPU buffer object and its GPU mapping state."""

    __slots__ = ("handle", "gpu_id", "va", "size", "end", "flags", "kind", "backing", "cpu_addr",
                 "mmap_offset", "mapped", "attached", "queue_refs", "valid", "writable", "_array",
                 "shared_backing")

    def __init__(self, handle: int, gpu_id: int, va: int, size: int, flags: int, kind: str,
                 backing: Backing | None = None, cpu_addr: int = 0, mmap_offset: int = 0,
                 writable: bool = True, shared_backing: bool = False):
        self.handle, self.gpu_id, self.va, self.size = handle, gpu_id, va, size
        self.end = va + size
        self.flags, self.kind, self.backing = flags, kind, backing
        self.cpu_addr, self.mmap_offset = cpu_addr, mmap_offset
        self.mapped: set[int] = set()      # gpu_ids this BO is mapped on now
        self.attached: set[int] = set()    # gpu_ids it was ever mapped on (kfd_mem_attach)
        self.queue_refs = 0                # queues using it as ring/rptr/wptr (unmap -> EBUSY)
        self.valid = True                  # USERPTR: False after its CPU pages were unmapped
        self.writable = writable
        self.shared_backing = shared_backing   # doorbell/MMIO: the GPU's page, not ours to free
        self._array: np.ndarray | None = None

    def __repr__(self) -> str:
        return (f"<{self.kind} BO handle={self.handle:#x} va={self.va:#x} size={self.size:#x} "
                f"mapped={sorted(self.mapped)}>")

    def array(self) -> np.ndarray:
        """The BO's bytes as the GPU sees them (uint8, zero copy)."""
        a = self._array
        if a is None:
            if self.backing is not None:
                a = self.backing.array[:self.size]
            else:   # USERPTR: the process's own pages at cpu_addr
                a = np.ctypeslib.as_array((ctypes.c_uint8 * self.size).from_address(self.cpu_addr))
            self._array = a
        return a

    def release(self) -> None:
        self._array = None
        if self.backing is not None and not self.shared_backing:
            self.backing.close()
        self.backing = None


class AddressSpace:
    """The process's GPU VA space: live allocations sorted by VA (shared by all GPUs; each GPU
    sees the ones mapped on it). `generation` changes whenever an allocation or a mapping does,
    which invalidates the per-GPU lookup caches."""

    def __init__(self):
        self._starts: list[int] = []
        self._allocs: list[Allocation] = []
        self.generation = 0

    def __iter__(self):
        return iter(list(self._allocs))

    def bump(self) -> None:
        self.generation += 1

    def insert(self, a: Allocation) -> None:
        i = bisect.bisect_left(self._starts, a.va)
        self._starts.insert(i, a.va)
        self._allocs.insert(i, a)
        self.bump()

    def remove(self, a: Allocation) -> None:
        i = bisect.bisect_left(self._starts, a.va)
        while i < len(self._allocs) and self._allocs[i] is not a:
            i += 1
        if i < len(self._allocs):
            del self._starts[i], self._allocs[i]
        self.bump()

    def find(self, va: int) -> Allocation | None:
        """The allocation whose VA range contains `va` (mapped or not)."""
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            a = self._allocs[i]
            if va < a.end:
                return a
        return None

    def overlapping(self, va: int, size: int) -> list[Allocation]:
        end = va + max(size, 1)
        i = max(bisect.bisect_right(self._starts, va) - 1, 0)
        out = []
        while i < len(self._allocs) and self._allocs[i].va < end:
            if self._allocs[i].end > va:
                out.append(self._allocs[i])
            i += 1
        return out

    def invalidate_cpu_range(self, addr: int, length: int) -> list[Allocation]:
        """The CPU pages of [addr, addr+length) were unmapped or replaced: USERPTR BOs over them
        stop being GPU-accessible until their range is readable again (the kernel's MMU
        notifier evicts them the same way)."""
        hit = []
        end = addr + length
        for a in self._allocs:
            if a.kind == "userptr" and a.valid and a.cpu_addr < end and addr < a.cpu_addr + a.size:
                a.valid = False
                a._array = None
                hit.append(a)
        if hit:
            self.bump()
        return hit


class GpuView:
    """`GpuMemory` (kfdtrace.emu.base) for one GPU: what its page tables map."""

    def __init__(self, space: AddressSpace, gpu_id: int):
        self.space = space
        self.gpu_id = gpu_id
        self._hit: Allocation | None = None
        self._gen = -1

    def _usable(self, va: int) -> Allocation | None:
        """The allocation mapped on this GPU at `va` (cached: a bisect only on a cache miss)."""
        a = self._hit
        space = self.space
        if a is not None and self._gen == space.generation and a.va <= va < a.end:
            return a
        a = space.find(va)
        if a is not None and (self.gpu_id not in a.mapped or not a.valid):
            if self.gpu_id in a.mapped and a.kind == "userptr" and self.revalidate(a):
                pass
            else:
                a = None
        self._hit, self._gen = a, space.generation
        return a

    def revalidate(self, a: Allocation) -> bool:
        """A USERPTR BO whose pages were replaced comes back once they are readable again (the
        kernel's restore worker re-pins the new pages)."""
        prot = user_range_protection(a.cpu_addr, a.size)
        if prot is None or "r" not in prot or (a.writable and "w" not in prot):
            return False
        a.valid = True
        self.space.bump()
        return True

    def view(self, va: int, size: int, *, write: bool = False) -> np.ndarray:
        """uint8 view of [va, va+size), zero copy. A read-only range spanning adjacent
        allocations comes back as a (read-only) copy; a write view cannot span allocations."""
        if size <= 0:
            return np.empty(0, np.uint8)
        a = self._usable(va)
        if a is None or va + size > a.end:
            return self._span(va, size, write)
        if write and not a.writable:
            raise GpuPageFault(va, True, size)
        off = va - a.va
        return a.array()[off:off + size]

    def _pieces(self, va: int, size: int, write: bool) -> list[tuple[Allocation, int, int]]:
        out, pos, end = [], va, va + size
        while pos < end:
            a = self._usable(pos)
            if a is None:
                raise GpuPageFault(pos, write, size)
            if write and not a.writable:
                raise GpuPageFault(pos, True, size)
            n = min(end, a.end) - pos
            out.append((a, pos - a.va, n))
            pos += n
        return out

    def _span(self, va: int, size: int, write: bool) -> np.ndarray:
        pieces = self._pieces(va, size, write)
        if write:
            raise GpuFault(f"a zero-copy write view of [{va:#x}, {va + size:#x}) spans "
                           f"{len(pieces)} buffer objects; use GpuMemory.write() for it", address=va)
        out = np.concatenate([a.array()[o:o + n] for a, o, n in pieces])
        out.flags.writeable = False
        return out

    def read(self, va: int, size: int) -> bytes:
        return self.view(va, size).tobytes()

    def write(self, va: int, data) -> None:
        src = np.frombuffer(memoryview(data).cast("B"), np.uint8)
        if not len(src):
            return
        a = self._usable(va)
        if a is not None and va + len(src) <= a.end and a.writable:
            off = va - a.va
            a.array()[off:off + len(src)] = src
            return
        pos = 0
        for a, o, n in self._pieces(va, len(src), True):
            a.array()[o:o + n] = src[pos:pos + n]
            pos += n

    def read_u32(self, va: int) -> int:
        return int(self.view(va, 4).view(np.uint32)[0])

    def read_u64(self, va: int) -> int:
        return int(self.view(va, 8).view(np.uint64)[0])

    def write_u32(self, va: int, value: int) -> None:
        self.view(va, 4, write=True).view(np.uint32)[0] = value & 0xFFFFFFFF

    def write_u64(self, va: int, value: int) -> None:
        self.view(va, 8, write=True).view(np.uint64)[0] = value & 0xFFFFFFFFFFFFFFFF


__all__ = ["Backing", "Allocation", "AddressSpace", "GpuView", "page_align"]
