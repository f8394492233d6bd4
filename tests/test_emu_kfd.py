"""The emulated KFD driver, driven through raw ioctl bytes — the same bytes the host kernel gets.

Every ioctl's success path and its error paths (the kernel's errno values), the memory model
(CPU and GPU see the same bytes; unmapped accesses fault), queues, doorbells, events, faults,
topology, machine identity and leak reports.
"""
from __future__ import annotations

import ctypes
import errno
import os
import termios
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi import ioctl as abi
from kfdtrace.abi.topology import read_topology
from kfdtrace.packets import sdma
from kfdtrace.emu import EmulatedPort
from kfdtrace.emu.base import GpuPageFault
from kfdtrace.emu.kfd import GPUVM_BASE, GPUVM_LIMIT, LDS_BASE, SCRATCH_BASE, _MissingExecutor
from kfdtrace.emu.memory import AddressSpace, Allocation, Backing, GpuView
from kfdtrace.emu.base import DispatchInfo
from kfdtrace.errors import GpuFault, PortError
from kfdtrace.port.host import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE, PROT_NONE,
    PROT_READ, PROT_WRITE,
)

F = abi.AllocFlags
QT = abi.QueueType
RW = PROT_READ | PROT_WRITE
UNSIGNALED = 0xFFFFFFFFFFFFFFFF
DB_MASK = abi.DOORBELL_SLICE_SIZE - 1
KINDS = {"vram": F.VRAM | F.WRITABLE | F.PUBLIC, "gtt": F.GTT | F.WRITABLE,
         "ro": F.GTT, "doorbell": F.DOORBELL | F.WRITABLE, "mmio": F.MMIO_REMAP | F.WRITABLE}


class Env:
    """A process on an emulated machine: /dev/kfd open, every GPU's VM acquired, a VA window."""

    def __init__(self, port: EmulatedPort, acquire: bool = True):
        self.port = port
        self.kfd = port.open("/dev/kfd")
        self.gpu_ids = port.gpu_ids
        self.render = [port.open(f"/dev/dri/renderD{128 + i}") for i in range(len(self.gpu_ids))]
        if acquire:
            for fd, g in zip(self.render, self.gpu_ids):
                assert self.call("ACQUIRE_VM", drm_fd=fd, gpu_id=g)[0] == 0
        self.base = port.mmap(0, 1 << 32, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        self.next = self.base

    def call(self, name, *, fd=None, req_size=None, buf=None, **fields):
        d = abi.IOCTLS_BY_NAME[name]
        req = d.request if req_size is None else abi.request_for(name, req_size)
        if buf is None:
            buf = bytearray(bytes(d.struct(**fields))[:abi.ioc_size(req)])
        e = self.port.ioctl(self.kfd if fd is None else fd, req, buf)
        return e, d.struct.from_buffer_copy(bytes(buf).ljust(ctypes.sizeof(d.struct), b"\0"))

    def reserve(self, size: int) -> int:
        va = self.next
        self.next += (size + 0xFFFF) & ~0xFFFF
        return va

    def alloc(self, size=1 << 16, kind="gtt", gpu=0, map_to=(0,), cpu=True, va=None):
        va = self.reserve(size) if va is None else va
        e, a = self.call("ALLOC_MEMORY_OF_GPU", va_addr=va, size=size, gpu_id=self.gpu_ids[gpu],
                         flags=int(KINDS[kind]))
        assert e == 0, errno.errorcode[e]
        if map_to:
            assert self.map(a.handle, map_to)[0] == 0
        if cpu and kind in ("vram", "gtt", "ro"):
            self.port.mmap(va, size, RW, MAP_SHARED | MAP_FIXED, self.render[gpu], a.mmap_offset)
        return a.handle, va

    def ids(self, gpus):
        arr = (ctypes.c_uint32 * len(gpus))(*[self.gpu_ids[g] if g < 16 else g for g in gpus])
        self._keep = arr
        return ctypes.addressof(arr)

    def map(self, handle, gpus=(0,), n_success=0, name="MAP_MEMORY_TO_GPU"):
        return self.call(name, handle=handle, device_ids_array_ptr=self.ids(gpus),
                         n_devices=len(gpus), n_success=n_success)

    def unmap(self, handle, gpus=(0,), n_success=0):
        return self.map(handle, gpus, n_success, "UNMAP_MEMORY_FROM_GPU")

    def mem(self, gpu=0):
        return self.port.model.proc.pdds[self.gpu_ids[gpu]].mem

    def queue(self, qtype=QT.SDMA, gpu=0, ring_size=4096, **over):
        """A ring BO plus a pointer BO, mapped; returns (errno, args, ring_va, ptr_va)."""
        _, ring = self.alloc(max(ring_size, PAGE_SIZE), gpu=gpu, map_to=(gpu,))
        _, ptrs = self.alloc(PAGE_SIZE, gpu=gpu, map_to=(gpu,))
        fields = dict(ring_base_address=ring, ring_size=ring_size, gpu_id=self.gpu_ids[gpu],
                      queue_type=int(qtype), write_pointer_address=ptrs,
                      read_pointer_address=ptrs + 8, queue_percentage=100)
        fields.update(over)
        e, q = self.call("CREATE_QUEUE", **fields)
        return e, q, ring, ptrs

    def event(self, etype=abi.EventType.SIGNAL, auto_reset=True, page=0):
        return self.call("CREATE_EVENT", event_page_offset=page, event_type=int(etype),
                         auto_reset=int(auto_reset))

    def event_page(self):
        """dGPU way: a 32 KiB GTT BO handed to the first CREATE_EVENT."""
        h, va = self.alloc(abi.KFD_SIGNAL_EVENT_LIMIT * 8)
        e, ev = self.event(page=h)
        assert e == 0
        return h, va, ev

    def wait(self, ids, timeout=0, wait_all=False, ages=None):
        data = (abi.kfd_event_data * len(ids))()
        for i, eid in enumerate(ids):
            data[i].event_id = eid
            if ages:
                data[i].signal_event_data.last_event_age = ages[i]
        e, w = self.call("WAIT_EVENTS", events_ptr=ctypes.addressof(data), num_events=len(ids),
                         wait_for_all=int(wait_all), timeout=timeout)
        return e, w.wait_result, data


@pytest.fixture
def port():
    p = EmulatedPort(gpu="gfx942", gpus=2, vram=64 << 20, seed=1)
    yield p
    p.shutdown()


@pytest.fixture
def env(port):
    return Env(port)


# -- dispatch ------------------------------------------------------------------------------------
def test_get_version_and_dispatch_by_nr(env):
    e, v = env.call("GET_VERSION")
    assert (e, v.major_version, v.minor_version) == (0, 1, 18)
    # the kernel looks only at _IOC_NR: another type byte still reaches GET_VERSION
    buf = bytearray(8)
    assert env.port.ioctl(env.kfd, (abi.AMDKFD_IOC_GET_VERSION & ~0xFF00) | (ord("J") << 8), buf) == 0
    assert buf[:4] == (1).to_bytes(4, "little")
    # a shorter user struct: only the caller's size is copied back
    buf = bytearray(b"\xAA" * 8)
    assert env.port.ioctl(env.kfd, abi._IOC(abi.IOC_READ, "K", 1, 4), buf) == 0
    assert buf == (1).to_bytes(4, "little") + b"\xAA" * 4
    for nr in (0x00, 0x27, 0x80, 0xFF):
        assert env.port.ioctl(env.kfd, abi._IOC(3, "K", nr, 8), bytearray(8)) == errno.ENOTTY
    assert env.port.ioctl(987, abi.AMDKFD_IOC_GET_VERSION, bytearray(8)) == errno.EBADF   # not open
    assert env.port.ioctl(10999, abi.AMDKFD_IOC_GET_VERSION, bytearray(8)) == errno.EBADF
    assert env.port.ioctl(env.render[0], abi.AMDKFD_IOC_GET_VERSION, bytearray(8)) == errno.EINVAL
    assert env.port.ioctl(env.kfd, abi.AMDKFD_IOC_GET_VERSION, bytearray(4)) == errno.EFAULT
    assert env.call("DBG_REGISTER_DEPRECATED", gpu_id=env.gpu_ids[0])[0] == errno.EPERM
    assert env.call("SVM", start_addr=env.base, size=PAGE_SIZE)[0] == errno.EPERM
    entry = [r for r in env.port.log if r["op"] == "ioctl"][0]
    assert entry["name"] == "ACQUIRE_VM" and entry["errno"] == 0
    assert entry["args_in"] == {"drm_fd": env.render[0], "gpu_id": env.gpu_ids[0]}


def test_descriptors_and_paths(port):
    fd = port.open("/dev/kfd")
    assert fd >= 10000
    with pytest.raises(FileNotFoundError):
        port.open("/dev/dri/renderD130")
    with pytest.raises(FileNotFoundError):
        port.open("/dev/nvidia0")
    with pytest.raises(OSError):
        port.close(12345)
    port.close(fd)


# -- apertures, clocks, misc per-GPU ioctls ------------------------------------------------------
def test_process_apertures(env):
    e, old = env.call("GET_PROCESS_APERTURES")
    assert e == 0 and old.num_of_nodes == 2
    assert [old.process_apertures[i].gpu_id for i in range(2)] == env.gpu_ids
    e, cnt = env.call("GET_PROCESS_APERTURES_NEW", num_of_nodes=0)
    assert (e, cnt.num_of_nodes) == (0, 2)
    arr = (abi.kfd_process_device_apertures * 4)()
    e, r = env.call("GET_PROCESS_APERTURES_NEW", kfd_process_device_apertures_ptr=ctypes.addressof(arr),
                    num_of_nodes=4)
    assert (e, r.num_of_nodes) == (0, 2)
    for i, g in enumerate(env.gpu_ids):
        a = arr[i]
        assert (a.gpu_id, a.lds_base, a.lds_limit) == (g, LDS_BASE, LDS_BASE | 0xFFFFFFFF)
        assert (a.scratch_base, a.scratch_limit) == (SCRATCH_BASE, SCRATCH_BASE | 0xFFFFFFFF)
        assert (a.gpuvm_base, a.gpuvm_limit) == (GPUVM_BASE, GPUVM_LIMIT)
    assert arr[2].gpu_id == 0                     # not written past the count
    e, r = env.call("GET_PROCESS_APERTURES_NEW", kfd_process_device_apertures_ptr=16, num_of_nodes=2)
    assert e == errno.EFAULT


def test_clock_counters(env):
    e1, c1 = env.call("GET_CLOCK_COUNTERS", gpu_id=env.gpu_ids[0])
    e2, c2 = env.call("GET_CLOCK_COUNTERS", gpu_id=env.gpu_ids[0])
    assert e1 == e2 == 0 and c2.gpu_clock_counter > c1.gpu_clock_counter
    assert c1.system_clock_freq == 1_000_000_000 and c2.cpu_clock_counter >= c1.cpu_clock_counter
    e, c = env.call("GET_CLOCK_COUNTERS", gpu_id=0x1234)
    assert (e, c.gpu_clock_counter) == (0, 0) and c.cpu_clock_counter > 0


def test_per_gpu_settings(env):
    g = env.gpu_ids[0]
    assert env.call("SET_SCRATCH_BACKING_VA", va_addr=0x10000, gpu_id=g)[0] == 0
    assert env.call("SET_SCRATCH_BACKING_VA", va_addr=0x10000, gpu_id=7)[0] == errno.EINVAL
    assert env.call("SET_MEMORY_POLICY", gpu_id=g, default_policy=1, alternate_policy=0)[0] == 0
    assert env.call("SET_MEMORY_POLICY", gpu_id=g, default_policy=2)[0] == errno.EINVAL
    assert env.call("SET_MEMORY_POLICY", gpu_id=7)[0] == errno.EINVAL
    assert env.call("SET_TRAP_HANDLER", gpu_id=g, tba_addr=0x1000, tma_addr=0x2000)[0] == 0
    tiles = (ctypes.c_uint32 * 40)(*([7] * 40))
    macro = (ctypes.c_uint32 * 20)(*([7] * 20))
    e, t = env.call("GET_TILE_CONFIG", gpu_id=g, tile_config_ptr=ctypes.addressof(tiles),
                    macro_tile_config_ptr=ctypes.addressof(macro), num_tile_configs=40,
                    num_macro_tile_configs=20)
    assert (e, t.num_tile_configs, t.num_macro_tile_configs) == (0, 32, 16)
    assert list(tiles[:32]) == [0] * 32 and tiles[32] == 7 and list(macro[:16]) == [0] * 16
    assert env.call("GET_TILE_CONFIG", gpu_id=7)[0] == errno.EINVAL
    e, a = env.call("AVAILABLE_MEMORY", gpu_id=g)
    assert (e, a.available) == (0, 64 << 20)
    assert env.call("AVAILABLE_MEMORY", gpu_id=7)[0] == errno.EINVAL


def test_xnack_and_runtime_enable(env):
    e, x = env.call("SET_XNACK_MODE", xnack_enabled=-1)
    assert (e, x.xnack_enabled) == (0, 0)
    assert env.call("SET_XNACK_MODE", xnack_enabled=1)[0] == 0          # gfx942 may switch
    assert env.call("SET_XNACK_MODE", xnack_enabled=-1)[1].xnack_enabled == 1
    mode = int(abi.RuntimeEnableMode.ENABLE)
    assert env.call("RUNTIME_ENABLE", mode_mask=mode)[0] == 0
    assert env.call("RUNTIME_ENABLE", mode_mask=mode)[0] == errno.EBUSY
    assert env.call("RUNTIME_ENABLE", mode_mask=0)[0] == 0
    assert env.queue()[0] == 0
    assert env.call("SET_XNACK_MODE", xnack_enabled=0)[0] == errno.EBUSY  # queues exist
    assert env.call("RUNTIME_ENABLE", mode_mask=mode)[0] == errno.EEXIST
    rdna = EmulatedPort(gpu="gfx1100", vram=16 << 20)
    try:
        assert Env(rdna).call("SET_XNACK_MODE", xnack_enabled=1)[0] == errno.EPERM
    finally:
        rdna.shutdown()


# -- VM and memory ------------------------------------------------------------------------------
def test_acquire_vm_rules(port):
    env = Env(port, acquire=False)
    g0, g1 = env.gpu_ids
    e, _ = env.call("ALLOC_MEMORY_OF_GPU", va_addr=env.reserve(PAGE_SIZE), size=PAGE_SIZE, gpu_id=g0,
                    flags=int(KINDS["gtt"]))
    assert e == errno.ENODEV                                         # no VM yet
    assert env.call("ACQUIRE_VM", drm_fd=env.render[1], gpu_id=g0)[0] == errno.EINVAL   # other GPU's node
    assert env.call("ACQUIRE_VM", drm_fd=4321, gpu_id=g0)[0] == errno.EINVAL
    assert env.call("ACQUIRE_VM", drm_fd=env.render[0], gpu_id=0xBEEF)[0] == errno.EINVAL
    assert env.call("ACQUIRE_VM", drm_fd=env.kfd, gpu_id=g0)[0] == errno.EINVAL
    assert env.call("ACQUIRE_VM", drm_fd=env.render[0], gpu_id=g0)[0] == 0
    assert env.call("ACQUIRE_VM", drm_fd=env.render[0], gpu_id=g0)[0] == 0   # same file again
    other = port.open("/dev/dri/renderD128")
    assert env.call("ACQUIRE_VM", drm_fd=other, gpu_id=g0)[0] == errno.EBUSY


def test_handles_and_vram_capacity(env):
    g = env.gpu_ids[0]
    h1, _ = env.alloc(1 << 20, "vram")
    h2, _ = env.alloc(1 << 20, "vram")
    assert h1 >> 32 == g and h2 >> 32 == g
    assert (h1 & 0xFFFFFFFF, h2 & 0xFFFFFFFF) == (2, 3)      # machine 0: ids after the kernel's own BOs
    assert env.call("AVAILABLE_MEMORY", gpu_id=g)[1].available == 62 << 20
    e, _ = env.call("ALLOC_MEMORY_OF_GPU", va_addr=env.reserve(63 << 20), size=63 << 20, gpu_id=g,
                    flags=int(KINDS["vram"]))
    assert e == errno.ENOMEM
    # VRAM without a VA (a "handle only" BO) still counts; GTT does not
    e, a = env.call("ALLOC_MEMORY_OF_GPU", va_addr=0, size=62 << 20, gpu_id=g, flags=int(KINDS["vram"]))
    assert e == 0 and env.call("AVAILABLE_MEMORY", gpu_id=g)[1].available == 0
    assert env.call("ALLOC_MEMORY_OF_GPU", va_addr=env.reserve(1 << 20), size=1 << 20, gpu_id=g,
                    flags=int(KINDS["gtt"]))[0] == 0
    assert env.call("FREE_MEMORY_OF_GPU", handle=a.handle)[0] == 0
    assert env.call("AVAILABLE_MEMORY", gpu_id=g)[1].available == 62 << 20


def test_alloc_errors(env):
    g, va = env.gpu_ids[0], env.reserve(1 << 20)
    ok = dict(va_addr=va, size=PAGE_SIZE, gpu_id=g, flags=int(KINDS["gtt"]))

    def alloc(**over):
        return env.call("ALLOC_MEMORY_OF_GPU", **{**ok, **over})[0]

    assert alloc(size=0) == errno.EINVAL
    assert alloc(gpu_id=0x4242) == errno.EINVAL
    assert alloc(flags=int(F.WRITABLE)) == errno.EINVAL                  # no memory domain
    assert alloc(va_addr=va + 12) == errno.EINVAL                        # not page aligned
    assert alloc(flags=int(KINDS["doorbell"]), size=PAGE_SIZE) == errno.EINVAL   # not the 8 KiB slice
    assert alloc(flags=int(KINDS["mmio"]), size=2 * PAGE_SIZE) == errno.EINVAL
    assert alloc(flags=int(F.USERPTR | F.WRITABLE), mmap_offset=0) == errno.EINVAL
    assert alloc(flags=int(F.USERPTR | F.WRITABLE), mmap_offset=env.base) == errno.EFAULT  # PROT_NONE
    assert alloc() == 0
    assert alloc(va_addr=va + PAGE_SIZE, size=PAGE_SIZE) == 0
    assert alloc(va_addr=va, size=3 * PAGE_SIZE) == errno.EINVAL         # overlaps both
    e, db = env.call("ALLOC_MEMORY_OF_GPU", **{**ok, "va_addr": va + (1 << 16), "size": 8192,
                                               "flags": int(KINDS["doorbell"])})
    assert e == 0
    e, mm = env.call("ALLOC_MEMORY_OF_GPU", **{**ok, "va_addr": va + (2 << 16), "flags": int(KINDS["mmio"])})
    assert e == 0 and mm.mmap_offset == abi.kfd_mmap_offset(abi.KFD_MMAP_TYPE_MMIO, g)


def test_free_and_map_errors(env):
    g0, g1 = env.gpu_ids
    h, va = env.alloc(PAGE_SIZE, map_to=())
    assert env.map(h, [])[0] == errno.EINVAL                      # n_devices 0
    assert env.map(h, [0], n_success=2)[0] == errno.EINVAL       # n_success > n_devices
    assert env.call("MAP_MEMORY_TO_GPU", handle=h, device_ids_array_ptr=8, n_devices=1)[0] == errno.EFAULT
    assert env.map(h + 100, [0])[0] == errno.ENOMEM              # unknown handle (the kernel's errno)
    assert env.map((0x77 << 32) | 2, [0])[0] == errno.EINVAL      # handle of no GPU
    e, r = env.map(h, [0, 0xDEAD])                               # second device unknown
    assert (e, r.n_success) == (errno.EINVAL, 1)
    e, r = env.map(h, [0, 1], n_success=1)                       # resume where it stopped
    assert (e, r.n_success) == (0, 2)
    assert env.call("FREE_MEMORY_OF_GPU", handle=h)[0] == errno.EBUSY   # still mapped
    e, r = env.unmap(h, [0, 1])
    assert (e, r.n_success) == (0, 2)
    assert env.call("FREE_MEMORY_OF_GPU", handle=h)[0] == 0
    assert env.call("FREE_MEMORY_OF_GPU", handle=h)[0] == errno.EINVAL  # double free
    assert env.call("FREE_MEMORY_OF_GPU", handle=(0x77 << 32) | 2)[0] == errno.EINVAL
    h2, _ = env.alloc(PAGE_SIZE, map_to=(0,))
    assert env.unmap(h2, [1])[0] == errno.EINVAL                 # never mapped on GPU 1
    assert env.unmap(h2 + 100, [0])[0] == errno.ENOMEM


def test_cpu_and_gpu_share_bo_bytes(env):
    h, va = env.alloc(1 << 16, "vram")
    ctypes.memmove(va + 100, b"written by the CPU", 18)
    mem = env.mem(0)
    assert mem.read(va + 100, 18) == b"written by the CPU"
    mem.write_u64(va + 0x800, 0x1122334455667788)
    assert ctypes.c_uint64.from_address(va + 0x800).value == 0x1122334455667788
    view = mem.view(va, 16, write=True)
    view[:] = np.arange(16, dtype=np.uint8)                  # zero-copy view
    assert ctypes.string_at(va, 16) == bytes(range(16))
    assert mem.read_u32(va + 4) == int.from_bytes(bytes(range(4, 8)), "little")
    # GPU 1 does not see the BO until it is mapped there (peer mapping)
    with pytest.raises(GpuPageFault) as exc:
        env.mem(1).read(va, 4)
    assert exc.value.va == va
    assert env.map(h, [1])[0] == 0
    assert env.mem(1).read(va + 100, 7) == b"written"
    # unmapped from GPU 0: its accesses fault, the CPU mapping is unaffected
    assert env.unmap(h, [0])[0] == 0
    with pytest.raises(GpuPageFault):
        mem.read_u32(va)
    assert ctypes.string_at(va + 100, 7) == b"written"


def test_gpu_access_rules(env):
    _, a = env.alloc(PAGE_SIZE)
    _, b = env.alloc(PAGE_SIZE, va=a + PAGE_SIZE)            # adjacent BO
    mem = env.mem(0)
    mem.write(a + PAGE_SIZE - 4, b"spanning")                # write() may cross BOs
    assert mem.read(a + PAGE_SIZE - 4, 8) == b"spanning"
    with pytest.raises(GpuPageFault) as exc:
        mem.read(b + PAGE_SIZE - 4, 8)                       # runs off the end of the last BO
    assert exc.value.va == b + PAGE_SIZE
    _, ro = env.alloc(PAGE_SIZE, "ro")                       # no WRITABLE flag
    assert mem.read_u32(ro) == 0
    with pytest.raises(GpuPageFault) as exc:
        mem.write_u32(ro, 1)
    assert exc.value.write


def test_render_mmap_rules(env):
    h, va = env.alloc(PAGE_SIZE, cpu=False)
    off = env.port.model.proc.pdds[env.gpu_ids[0]].handles[h & 0xFFFFFFFF].mmap_offset
    with pytest.raises(OSError) as exc:
        env.port.mmap(0, PAGE_SIZE, RW, MAP_SHARED, env.render[0], off + PAGE_SIZE)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        env.port.mmap(0, 2 * PAGE_SIZE, RW, MAP_SHARED, env.render[0], off)   # bigger than the BO
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        env.port.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE, env.render[0], off)
    assert exc.value.errno == errno.EINVAL
    # two CPU mappings of one BO (anywhere) and the GPU view agree
    m1 = env.port.mmap(0, PAGE_SIZE, RW, MAP_SHARED, env.render[0], off)
    m2 = env.port.mmap(va, PAGE_SIZE, RW, MAP_SHARED | MAP_FIXED, env.render[0], off)
    ctypes.memmove(m1, b"same pages", 10)
    assert ctypes.string_at(m2, 10) == b"same pages" and env.mem(0).read(va, 10) == b"same pages"
    env.port.munmap(m1, PAGE_SIZE)


def test_userptr(env):
    g = env.gpu_ids[0]
    user = env.port.mmap(0, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    ctypes.memmove(user, b"host memory", 11)
    va = env.reserve(2 * PAGE_SIZE)
    e, a = env.call("ALLOC_MEMORY_OF_GPU", va_addr=va, size=2 * PAGE_SIZE, gpu_id=g,
                    flags=int(F.USERPTR | F.WRITABLE), mmap_offset=user)
    assert e == 0
    assert env.map(a.handle)[0] == 0
    mem = env.mem(0)
    assert mem.read(va, 11) == b"host memory"            # GPU VA va -> CPU address user
    mem.write(va + PAGE_SIZE, b"from GPU")
    assert ctypes.string_at(user + PAGE_SIZE, 8) == b"from GPU"
    with pytest.raises(OSError) as exc:                  # userptr BOs have no CPU mmap
        env.port.mmap(0, PAGE_SIZE, RW, MAP_SHARED, env.render[0], a.mmap_offset)
    assert exc.value.errno == errno.EPERM
    env.port.mmap(user, 2 * PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    with pytest.raises(GpuPageFault):                    # its pages went away: evicted
        mem.read(va, 4)
    env.port.mmap(user, 2 * PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    assert mem.read(va, 4) == b"\0\0\0\0"                # new pages: restored


# -- queues and doorbells -----------------------------------------------------------------------
def test_create_queue_and_doorbell_offset(env):
    g = env.gpu_ids[0]
    e, q, ring, ptrs = env.queue(QT.SDMA)
    assert (e, q.queue_id) == (0, 0)
    assert q.doorbell_offset == abi.KFD_MMAP_TYPE_DOORBELL | g << 46 | 0
    e, q2, _, _ = env.queue(QT.COMPUTE_AQL, ring_size=1 << 16)
    assert (e, q2.queue_id, q2.doorbell_offset & DB_MASK) == (0, 1, 8)
    e, q3, _, _ = env.queue(QT.COMPUTE, ring_size=512)               # clamped to the minimum
    assert (e, q3.ring_size) == (0, 1024)
    e, q4, _, _ = env.queue(QT.SDMA_BY_ENG_ID, sdma_engine_id=1)
    assert e == 0
    # a pre-1.17 (88-byte) CREATE_QUEUE is the same ioctl; only 88 bytes come back
    _, ring5 = env.alloc(PAGE_SIZE)
    args = abi.kfd_ioctl_create_queue_args(ring_base_address=ring5, ring_size=4096, gpu_id=g,
                                           queue_type=int(QT.SDMA), write_pointer_address=ptrs + 64,
                                           read_pointer_address=ptrs + 72, queue_percentage=100)
    buf = bytearray(bytes(args)[:88]) + b"\xEE" * 8
    assert env.port.ioctl(env.kfd, abi.request_for("CREATE_QUEUE", 88), buf) == 0
    out = abi.kfd_ioctl_create_queue_args_88.from_buffer_copy(buf[:88])
    assert out.queue_id == 4 and buf[88:] == b"\xEE" * 8
    rec = [r for r in env.port.log if r["op"] == "queue_create"]
    assert [r["queue_id"] for r in rec] == [0, 1, 2, 3, 4] and rec[3]["type"] == "SDMA_BY_ENG_ID"
    assert env.call("DESTROY_QUEUE", queue_id=1)[0] == 0
    assert env.call("DESTROY_QUEUE", queue_id=1)[0] == errno.EINVAL
    assert env.queue(QT.SDMA)[1].queue_id == 1                       # lowest free id again


def test_create_queue_errors(env):
    g = env.gpu_ids[0]
    assert env.queue(queue_percentage=101)[0] == errno.EINVAL
    assert env.queue(queue_priority=16)[0] == errno.EINVAL
    assert env.queue(ring_size=3000)[0] == errno.EINVAL              # not a power of two
    assert env.queue(queue_type=9)[0] == 524                         # ENOTSUPP leaks out of KFD
    assert env.queue(gpu_id=0x4321)[0] == errno.EINVAL
    assert env.queue(QT.SDMA_BY_ENG_ID, sdma_engine_id=64)[0] == errno.EINVAL
    assert env.queue(read_pointer_address=1 << 47)[0] == errno.EFAULT
    # queue on unmapped ring: ring BO allocated but not mapped on the GPU
    h, ring = env.alloc(PAGE_SIZE, map_to=())
    _, ptrs = env.alloc(PAGE_SIZE)
    base = dict(ring_base_address=ring, ring_size=4096, gpu_id=g, queue_type=int(QT.SDMA),
                write_pointer_address=ptrs, read_pointer_address=ptrs + 8, queue_percentage=100)
    assert env.call("CREATE_QUEUE", **base)[0] == errno.EINVAL
    assert env.port.log[-2]["reason"] == f"ring not in a BO mapped on GPU {g:#x}"
    assert env.call("CREATE_QUEUE", **{**base, "ring_base_address": env.reserve(PAGE_SIZE)})[0] == errno.EINVAL
    assert env.map(h)[0] == 0
    assert env.call("CREATE_QUEUE", **{**base, "write_pointer_address": env.base + (3 << 30)})[0] == errno.EINVAL
    assert env.call("CREATE_QUEUE", **{**base, "ring_size": 8192})[0] == errno.EINVAL   # BO is 4 KiB
    e, q = env.call("CREATE_QUEUE", **base)
    assert e == 0
    # the ring BO is pinned by the queue: unmapping it is refused until the queue is gone
    assert env.unmap(h)[0] == errno.EBUSY
    assert env.call("DESTROY_QUEUE", queue_id=q.queue_id)[0] == 0
    assert env.unmap(h)[0] == 0


def test_update_queue(env):
    e, q, ring, ptrs = env.queue(QT.SDMA)
    _, ring2 = env.alloc(2 * PAGE_SIZE)
    upd = dict(queue_id=q.queue_id, ring_base_address=ring2, ring_size=8192, queue_percentage=50,
               queue_priority=3)
    assert env.call("UPDATE_QUEUE", **upd)[0] == 0
    mq = env.port.model.proc.queues[q.queue_id]
    assert (mq.ring_base, mq.ring_size, mq.percentage, mq.priority) == (ring2, 8192, 50, 3)
    assert env.call("UPDATE_QUEUE", **{**upd, "queue_id": 77})[0] == errno.EFAULT
    assert env.call("UPDATE_QUEUE", **{**upd, "ring_base_address": env.reserve(8192)})[0] == errno.EFAULT
    assert env.call("UPDATE_QUEUE", **{**upd, "queue_percentage": 101})[0] == errno.EINVAL
    assert env.call("UPDATE_QUEUE", **{**upd, "ring_size": 1000})[0] == errno.EINVAL
    assert env.call("UPDATE_QUEUE", **{**upd, "queue_percentage": 0})[0] == 0
    assert not mq.active


def test_sdma_queue_capacity(port):
    env = Env(port)
    fam = port.families[0]
    n = fam.num_sdma_engines * fam.num_sdma_queues_per_engine
    codes = [env.queue(QT.SDMA)[0] for _ in range(n + 1)]
    assert codes[:n] == [0] * n and codes[n] == errno.ENOMEM


def test_doorbell_mapping_and_writes(env):
    g0, g1 = env.gpu_ids
    e, q, ring, ptrs = env.queue(QT.SDMA)
    e, q2, _, _ = env.queue(QT.SDMA)
    off = q.doorbell_offset & ~DB_MASK
    with pytest.raises(OSError) as exc:
        env.port.mmap(0, PAGE_SIZE, RW, MAP_SHARED, env.kfd, off)        # not the 8 KiB slice
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(OSError) as exc:
        env.port.mmap(0, 8192, RW, MAP_SHARED, env.kfd, abi.kfd_mmap_offset(abi.KFD_MMAP_TYPE_DOORBELL, 0x99))
    assert exc.value.errno == errno.ENODEV
    db = env.port.mmap(env.reserve(8192), 8192, RW, MAP_SHARED | MAP_FIXED, env.kfd, off)
    ctypes.c_uint64.from_address(ptrs).value = 0x40                     # wptr
    env.port.doorbell(db + (q2.doorbell_offset & DB_MASK), 0x40)
    assert ctypes.c_uint64.from_address(db + 8).value == 0x40
    rec = env.port.log[-1]
    assert (rec["op"], rec["queue_id"], rec["value"], rec["gpu_id"]) == ("doorbell", 1, 0x40, g0)
    env.port.doorbell(db, 0x80)
    assert (env.port.log[-1]["queue_id"], env.port.log[-1]["wptr"]) == (0, 0x40)
    # the doorbell BO (dGPU libhsakmt) shares the same page
    e, a = env.call("ALLOC_MEMORY_OF_GPU", va_addr=env.reserve(8192), size=8192, gpu_id=g0,
                    flags=int(KINDS["doorbell"]))
    m = env.port.mmap(0, 8192, RW, MAP_SHARED, env.render[0], a.mmap_offset)
    assert ctypes.c_uint64.from_address(m + 8).value == 0x40
    env.port.munmap(db, 8192)
    with pytest.raises(PortError, match="no doorbell page"):
        env.port.doorbell(db, 1)


# -- events ----------------------------------------------------------------------------------------
def test_signal_events_dgpu_page(env):
    h, page, ev1 = env.event_page()
    assert (ev1.event_id, ev1.event_slot_index, ev1.event_trigger_data) == (1, 1, 1)
    assert ev1.event_page_offset == abi.KFD_MMAP_TYPE_EVENTS
    assert ctypes.c_uint64.from_address(page + 8).value == UNSIGNALED   # page set to all ones
    e, ev2 = env.event(auto_reset=False)
    assert (e, ev2.event_id) == (0, 2)
    assert env.event(page=h)[0] == errno.EINVAL                         # page already set
    assert env.call("FREE_MEMORY_OF_GPU", handle=h)[0] == errno.EPERM   # the signal BO
    # unsignaled: a poll times out
    assert env.wait([1], 0)[:2] == (0, abi.WaitResult.TIMEOUT)
    assert env.call("SET_EVENT", event_id=1)[0] == 0
    assert env.wait([1], 0)[:2] == (0, abi.WaitResult.COMPLETE)
    assert env.wait([1], 0)[:2] == (0, abi.WaitResult.TIMEOUT)          # auto-reset consumed it
    assert env.call("SET_EVENT", event_id=2)[0] == 0
    assert env.wait([2], 0)[1] == env.wait([2], 0)[1] == abi.WaitResult.COMPLETE   # manual reset
    assert env.call("RESET_EVENT", event_id=2)[0] == 0
    assert env.wait([2], 0)[1] == abi.WaitResult.TIMEOUT
    # wait for all vs any
    env.call("SET_EVENT", event_id=2)
    assert env.wait([1, 2], 0, wait_all=True)[1] == abi.WaitResult.TIMEOUT
    assert env.wait([1, 2], 0, wait_all=False)[1] == abi.WaitResult.COMPLETE
    env.call("SET_EVENT", event_id=1)
    assert env.wait([1, 2], 0, wait_all=True)[1] == abi.WaitResult.COMPLETE
    # errors
    e, res, _ = env.wait([1, 99], 0)
    assert (e, res) == (errno.EINVAL, abi.WaitResult.FAIL)
    e, w = env.call("WAIT_EVENTS", events_ptr=16, num_events=1, timeout=0)
    assert (e, w.wait_result) == (errno.EFAULT, abi.WaitResult.FAIL)
    assert env.call("SET_EVENT", event_id=99)[0] == errno.EINVAL
    assert env.call("DESTROY_EVENT", event_id=2)[0] == 0
    assert env.call("DESTROY_EVENT", event_id=2)[0] == errno.EINVAL
    assert env.event()[1].event_id == 2                                  # lowest free id again


def test_event_age(env):
    env.event_page()
    env.call("SET_EVENT", event_id=1)
    e, res, data = env.wait([1], 0, ages=[1])
    assert (e, res, data[0].signal_event_data.last_event_age) == (0, abi.WaitResult.COMPLETE, 2)
    # already seen age 2: nothing new -> times out; an older age completes at once
    assert env.wait([1], 0, ages=[2])[1] == abi.WaitResult.TIMEOUT
    assert env.wait([1], 0, ages=[1])[1] == abi.WaitResult.COMPLETE


def test_wait_timeout_is_real_time(env):
    env.event_page()
    t0 = time.monotonic()
    e, res, _ = env.wait([1], 60)
    elapsed = time.monotonic() - t0
    assert (e, res) == (0, abi.WaitResult.TIMEOUT) and 0.06 <= elapsed < 2.0


def test_infinite_wait_woken_by_another_thread(env):
    env.event_page()

    def later():
        time.sleep(0.05)
        Env.call(env, "SET_EVENT", event_id=1)

    t = threading.Thread(target=later)
    t0 = time.monotonic()
    t.start()
    e, res, _ = env.wait([1], abi.KFD_EVENT_TIMEOUT_INFINITE)
    t.join()
    assert (e, res) == (0, abi.WaitResult.COMPLETE) and time.monotonic() - t0 < 2.0


def test_destroyed_event_fails_a_wait(env):
    env.event_page()

    def later():
        time.sleep(0.05)
        Env.call(env, "DESTROY_EVENT", event_id=1)

    t = threading.Thread(target=later)
    t.start()
    e, res, _ = env.wait([1], 5000)
    t.join()
    assert (e, res) == (errno.EIO, abi.WaitResult.FAIL)


def test_signal_events_apu_page(env):
    e, ev = env.event()
    assert (e, ev.event_id, ev.event_page_offset) == (0, 1, abi.KFD_MMAP_TYPE_EVENTS)
    page = env.port.mmap(0, 8 * 4096, RW, MAP_SHARED, env.kfd, ev.event_page_offset)
    assert ctypes.c_uint64.from_address(page + 8).value == UNSIGNALED
    with pytest.raises(OSError) as exc:
        env.port.mmap(0, 64 << 10, RW, MAP_SHARED, env.kfd, ev.event_page_offset)
    assert exc.value.errno == errno.EINVAL
    q = None
    e, qa, _, _ = env.queue()
    q = env.port.model.proc.queues[qa.queue_id]
    ctypes.c_uint64.from_address(page + 8).value = 0x55   # the GPU's mailbox write ...
    q.interrupt(1)                                         # ... then its interrupt
    assert ctypes.c_uint64.from_address(page + 8).value == UNSIGNALED   # acknowledged
    assert env.wait([1], 0)[1] == abi.WaitResult.COMPLETE
    sig = [r for r in env.port.log if r["op"] == "event_signal"][-1]
    assert (sig["event_id"], sig["source"], sig["value"], sig["queue_id"]) == (1, "interrupt", 0x55, 0)


def test_signal_event_limit_before_mmap(env):
    codes = [env.event()[0] for _ in range(256)]
    assert codes[:255] == [0] * 255 and codes[255] == errno.ENOSPC    # 256 slots, id 0 reserved


def test_interrupt_semantics(port):
    env = Env(port)
    env.event_page()
    e, qa, _, _ = env.queue()
    q = port.model.proc.queues[qa.queue_id]
    q.interrupt(1)                                    # lenient default: the model writes the slot
    assert env.wait([1], 0)[1] == abi.WaitResult.COMPLETE
    rec = [r for r in port.log if r["op"] == "interrupt"][-1]
    assert (rec["ctxid"], rec["mailbox_written"], rec["signaled"]) == (1, False, [1])
    strict = EmulatedPort(vram=16 << 20, strict_interrupts=True)
    try:
        s = Env(strict)
        _, page, _ = s.event_page()
        e, qa, _, _ = s.queue()
        sq = strict.model.proc.queues[qa.queue_id]
        sq.interrupt(1)                               # kernel: slot unsignaled -> nothing fires
        assert s.wait([1], 0)[1] == abi.WaitResult.TIMEOUT
        ctypes.c_uint64.from_address(page + 8).value = 1
        sq.interrupt(7)                               # wrong context id: the slot scan finds event 1
        assert s.wait([1], 0)[1] == abi.WaitResult.COMPLETE
    finally:
        strict.shutdown()


def test_memory_exception_event(env):
    env.event_page()
    e, mev = env.event(abi.EventType.MEMORY, auto_reset=True)
    assert (e, mev.event_id, mev.event_page_offset) == (0, abi.KFD_FIRST_NONSIGNAL_EVENT_ID, 0)
    assert env.call("SET_EVENT", event_id=mev.event_id)[0] == errno.EINVAL   # not CPU-signalable
    e, qa, _, _ = env.queue()
    q = env.port.model.proc.queues[qa.queue_id]
    bad = env.base + 0x12345678                     # inside the window, never allocated
    q.fault(bad, False, "SDMA read at an unmapped address")
    e, res, data = env.wait([mev.event_id], 0)
    assert (e, res) == (0, abi.WaitResult.COMPLETE)
    m = data[0].memory_exception_data
    assert (m.va, m.gpu_id, m.failure.NotPresent, m.failure.ReadOnly) == (bad & ~0xFFF, q.gpu_id, 1, 0)
    f = env.port.faults[-1]
    assert (f["queue_id"], f["va"], f["kind"]) == (qa.queue_id, bad, "page_fault")
    # a write to a read-only BO is a permission fault
    _, ro = env.alloc(PAGE_SIZE, "ro")
    q.fault(ro + 8, True, "write to read-only")
    m = env.wait([mev.event_id], 0)[2][0].memory_exception_data
    assert (m.va, m.failure.NotPresent, m.failure.ReadOnly) == (ro, 0, 1)


# -- topology, identity, leaks ------------------------------------------------------------------------
def test_sysfs_topology_through_the_port(port):
    topo = read_topology(reader=port)
    assert [n.gpu_id for n in topo.gpus] == port.gpu_ids
    assert [n.drm_render_minor for n in topo.gpus] == [128, 129]
    assert [n.family.name for n in topo.gpus] == ["gfx942", "gfx942"]
    assert topo.gpus[0].vram_size == 64 << 20 and len(topo.cpu_nodes) == 1
    assert all(0 < g < 1 << 16 for g in port.gpu_ids) and len(set(port.gpu_ids)) == 2
    alt = read_topology("/sys/class/kfd/kfd/topology", reader=port)
    assert alt.gpu_ids == topo.gpu_ids
    assert port.read_file("/sys/class/kfd/kfd/topology/nodes/1/gpu_id") == f"{port.gpu_ids[0]}\n".encode()
    with pytest.raises(FileNotFoundError):
        port.read_file("/sys/class/kfd/kfd/topology/nodes/9/gpu_id")


def test_machine_changes_gpu_ids_and_handles():
    a, b = EmulatedPort(gpus=2, vram=16 << 20), EmulatedPort(gpus=2, vram=16 << 20, machine=1)
    try:
        assert set(a.gpu_ids).isdisjoint(b.gpu_ids)
        assert EmulatedPort(gpus=2, vram=16 << 20).gpu_ids == a.gpu_ids        # same machine, same ids
        ha, _ = Env(a).alloc(PAGE_SIZE)
        hb, _ = Env(b).alloc(PAGE_SIZE)
        assert ha >> 32 == a.gpu_ids[0] and hb >> 32 == b.gpu_ids[0]
        assert ha & 0xFFFFFFFF != hb & 0xFFFFFFFF
    finally:
        a.shutdown()
        b.shutdown()


def test_mixed_machine_and_other_families():
    p = EmulatedPort(gpu=["gfx942", "gfx1100", "gfx1201"], vram=16 << 20)
    try:
        topo = read_topology(reader=p)
        assert [n.family.name for n in topo.gpus] == ["gfx942", "gfx1100", "gfx1201"]
        env = Env(p)
        for i in range(3):
            assert env.queue(QT.COMPUTE_AQL, gpu=i)[0] == 0
    finally:
        p.shutdown()


def test_leaks_reported_on_close(port, capfd):
    env = Env(port)
    h, va = env.alloc(PAGE_SIZE)
    env.queue()
    env.event_page()
    env.event()
    port.close(env.kfd)
    leaks = port.leaks()
    assert h in {a["handle"] for a in leaks["allocations"]}
    assert len(leaks["allocations"]) == 3          # h, ring, pointers (the signal BO is the kernel's)
    assert [q["queue_id"] for q in leaks["queues"]] == [0]
    assert sorted(e["event_id"] for e in leaks["events"]) == [1, 2]
    assert "closed with leaks" in capfd.readouterr().err
    assert port.model.proc is None
    # a fresh open is a fresh process; a clean one reports nothing
    env2 = Env(port)
    h2, _ = env2.alloc(PAGE_SIZE)
    assert env2.unmap(h2)[0] == 0 and env2.call("FREE_MEMORY_OF_GPU", handle=h2)[0] == 0
    port.close(env2.kfd)
    assert port.leaks() == {"allocations": [], "queues": [], "events": []}
    assert "leaks" not in capfd.readouterr().err


# -- end to end: packets on a queue created by raw ioctls ---------------------------------------------
class SdmaRing:
    """An SDMA queue made with raw ioctls: ring + pointer BOs, doorbell page mmapped from
    /dev/kfd, packets built by kfdtrace.packets.sdma and submitted through the doorbell."""

    def __init__(self, env: Env, gpu: int = 0):
        e, self.args, self.ring, self.ptrs = env.queue(QT.SDMA, gpu=gpu, ring_size=4096)
        assert e == 0
        self.env, self.family = env, env.port.families[gpu]
        off = self.args.doorbell_offset
        pages = env.port.model.cpu_maps
        existing = [m for m in pages if m[2] == "doorbell" and m[3] == env.gpu_ids[gpu]]
        self.db_page = existing[0][0] if existing else env.port.mmap(
            0, 8192, RW, MAP_SHARED, env.kfd, off & ~DB_MASK)
        self.doorbell = self.db_page + (off & DB_MASK)
        self.wptr = 0

    def emit(self, name, **fields):
        dw = sdma.build(name, self.family, **fields)
        raw = np.asarray(dw, np.uint32).tobytes()
        pos = self.wptr % 4096
        first = min(len(raw), 4096 - pos)          # a packet may wrap around the ring's end
        ctypes.memmove(self.ring + pos, raw[:first], first)
        ctypes.memmove(self.ring, raw[first:], len(raw) - first)
        self.wptr += len(raw)

    def submit(self, ring_doorbell=True):
        ctypes.c_uint64.from_address(self.ptrs).value = self.wptr
        if ring_doorbell:
            self.env.port.doorbell(self.doorbell, self.wptr)

    @property
    def rptr(self) -> int:
        return ctypes.c_uint64.from_address(self.ptrs + 8).value


def test_sdma_fence_and_trap_wake_wait_events(env):
    _, page, ev = env.event_page()
    eid = ev.event_id
    _, data = env.alloc(PAGE_SIZE)
    ctypes.memmove(data, b"payload!" * 8, 64)
    q = SdmaRing(env)
    q.emit("COPY_LINEAR", byte_count=64, src_addr=data, dst_addr=data + 1024)
    q.emit("FENCE", addr=data + 2048, data=0xC0FFEE)
    q.emit("FENCE", addr=page + 8 * eid, data=eid)       # the event mailbox, as ROCr writes it
    q.emit("TRAP", int_context=eid)
    assert env.wait([eid], 0)[1] == abi.WaitResult.TIMEOUT
    q.submit()
    e, res, _ = env.wait([eid], 1000)
    assert (e, res) == (0, abi.WaitResult.COMPLETE)
    assert ctypes.string_at(data + 1024, 64) == b"payload!" * 8
    assert ctypes.c_uint32.from_address(data + 2048).value == 0xC0FFEE
    assert q.rptr == q.wptr
    assert ctypes.c_uint64.from_address(page + 8 * eid).value == UNSIGNALED   # acknowledged
    irq = [r for r in env.port.log if r["op"] == "interrupt"][-1]
    assert (irq["ctxid"], irq["mailbox_written"], irq["signaled"]) == (eid, True, [eid])


def test_sdma_page_fault_raises_memory_exception(env):
    env.event_page()
    mev = env.event(abi.EventType.MEMORY)[1].event_id
    _, data = env.alloc(PAGE_SIZE)
    bad = env.base + (3 << 30) + 0x1230
    q = SdmaRing(env)
    q.emit("COPY_LINEAR", byte_count=64, src_addr=bad, dst_addr=data)
    q.submit()
    e, res, out = env.wait([mev], 1000)
    assert (e, res) == (0, abi.WaitResult.COMPLETE)
    m = out[0].memory_exception_data
    assert (m.va, m.gpu_id, m.failure.NotPresent) == (bad & ~0xFFF, env.gpu_ids[0], 1)
    assert env.port.faults[-1]["queue_id"] == q.args.queue_id


def test_same_seed_same_schedule():
    def run(seed):
        p = EmulatedPort(vram=16 << 20, seed=seed)
        try:
            env = Env(p)
            _, page, _ = env.event_page()
            ids = [1] + [env.event()[1].event_id for _ in range(3)]
            _, out = env.alloc(PAGE_SIZE)
            rings = [SdmaRing(env) for _ in range(4)]
            for i, r in enumerate(rings):
                for k in range(6):                     # racing writes to one word
                    r.emit("FENCE", addr=out, data=(i << 8) | k)
                r.emit("FENCE", addr=page + 8 * ids[i], data=ids[i])
                r.emit("TRAP", int_context=ids[i])
                r.submit(ring_doorbell=False)
            rings[0].submit()                          # one doorbell: all four queues have work
            assert env.wait(ids, 1000, wait_all=True)[1] == abi.WaitResult.COMPLETE
            order = [r["event_id"] for r in p.log if r["op"] == "event_signal"]
            return order, ctypes.c_uint32.from_address(out).value
        finally:
            p.shutdown()

    a = run(7)
    assert a == run(7)
    assert sorted(a[0]) == [1, 2, 3, 4]
    assert any(run(s) != a for s in range(8, 16))     # other seeds give other interleavings


def test_userptr_queue_buffers_evict_and_restore(env):
    """A queue whose pointers live in USERPTR memory stops while those pages are gone."""
    g = env.gpu_ids[0]
    user = env.port.mmap(0, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS)
    e, a = env.call("ALLOC_MEMORY_OF_GPU", va_addr=env.reserve(PAGE_SIZE), size=PAGE_SIZE, gpu_id=g,
                    flags=int(F.USERPTR | F.WRITABLE), mmap_offset=user)
    assert e == 0 and env.map(a.handle)[0] == 0
    va = env.port.model.proc.pdds[g].handles[a.handle & 0xFFFFFFFF].va
    e, q, _, _ = env.queue(write_pointer_address=va, read_pointer_address=va + 8)
    assert e == 0
    mq = env.port.model.proc.queues[q.queue_id]
    env.port.munmap(user, PAGE_SIZE)
    assert mq.evicted and env.port.log[-1]["op"] == "queue_evict"
    assert mq.engine.suspended
    env.call("GET_VERSION")                       # the restore check runs on every kick
    assert mq.evicted                             # pages still gone
    env.port.mmap(user, PAGE_SIZE, RW, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
    env.call("GET_VERSION")
    assert not mq.evicted and any(r["op"] == "queue_restore" for r in env.port.log)
    assert not mq.engine.suspended


def test_missing_shader_executor_names_the_kernel():
    info = DispatchInfo(family=None, code_address=0x7000_1000, rsrc1=0, rsrc2=0, rsrc3=0,
                        kernel_code_properties=0, grid_workgroups=(1, 1, 1),
                        workgroup_size=(64, 1, 1), grid_size=(64, 1, 1), user_sgprs=[],
                        wave32=False, lds_size=0, kernel_name="vector_add")
    with pytest.raises(GpuFault, match=r"0x70001000 \(vector_add\)") as exc:
        _MissingExecutor().dispatch(info, None)
    assert exc.value.address == 0x7000_1000


# -- the memory model against a reference -------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.integers(0, 2), st.booleans()), min_size=1, max_size=6),
       st.lists(st.tuples(st.integers(0, 40 * PAGE_SIZE), st.integers(1, 3 * PAGE_SIZE)), max_size=25))
def test_gpu_view_matches_a_reference_model(layout, accesses):
    """Allocations of 1-3 pages separated by 0-2 page gaps, some mapped on GPU 1: an access
    succeeds iff every byte lies in a mapped allocation, and then returns exactly its bytes."""
    space, base, pos, covered, allocs = AddressSpace(), 1 << 40, 0, {}, []
    for i, (pages, gap, mapped) in enumerate(layout):
        pos += gap * PAGE_SIZE
        size = pages * PAGE_SIZE
        b = Backing(size, "test")
        b.array[:] = np.random.default_rng(i).integers(0, 256, size, dtype=np.uint8)
        a = Allocation(i, 1, base + pos, size, 0, "gtt", b)
        if mapped:
            a.mapped.add(1)
            for off in range(size):
                covered[base + pos + off] = int(b.array[off])
        space.insert(a)
        allocs.append(a)
        pos += size
    view = GpuView(space, 1)
    try:
        for off, size in accesses:
            va = base + off
            want = [covered.get(va + k) for k in range(size)]
            if None in want:
                with pytest.raises(GpuPageFault) as exc:
                    view.read(va, size)
                assert exc.value.va == va + want.index(None)      # the first unmapped byte
            else:
                assert view.read(va, size) == bytes(want)
    finally:
        for a in allocs:
            a.release()


def test_engine_defect_stops_the_queue_not_the_caller(env, capfd):
    env.event_page()
    hw = env.event(abi.EventType.HW_EXCEPTION)[1].event_id
    q = SdmaRing(env)
    mq = env.port.model.proc.queues[q.args.queue_id]

    def broken():
        raise ZeroDivisionError("emulator bug")
    mq.engine._step = broken
    q.emit("NOP")
    q.submit()                                      # runs the GPU: must not raise
    env.port.run_gpu()                              # (a seeded GPU may not have run it yet)
    f = env.port.faults[-1]
    assert (f["kind"], f["queue_id"]) == ("internal_error", q.args.queue_id)
    assert "ZeroDivisionError: emulator bug" in f["message"] and mq.engine.stopped
    assert env.wait([hw], 0)[1] == abi.WaitResult.COMPLETE
    assert "internal error in the SDMA engine" in capfd.readouterr().err


def test_real_descriptors_pass_through(port):
    """Descriptors the emulator did not hand out (< 10000) are real ones: the OS serves them."""
    r, w = os.pipe()
    try:
        os.write(w, b"abc")
        arg = bytearray(4)
        assert port.ioctl(r, termios.FIONREAD, arg) == 0 and int.from_bytes(arg, "little") == 3
    finally:
        os.close(r)
        os.close(w)
    fd = os.memfd_create("t")
    try:
        os.ftruncate(fd, PAGE_SIZE)
        m = port.mmap(0, PAGE_SIZE, RW, MAP_SHARED, fd, 0)
        ctypes.memmove(m, b"file", 4)
        assert os.pread(fd, 4, 0) == b"file"
        port.munmap(m, PAGE_SIZE)
    finally:
        os.close(fd)
