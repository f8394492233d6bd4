"""The KFD model: the kernel driver behind the emulated /dev/kfd, with the kernel's semantics.

It receives exactly what the host kernel would (a request word and raw argument bytes) and does
what K-CHR `kfd_ioctl()` does: look the ioctl up by `_IOC_NR` only (the type byte is not looked
at; nr outside the table -> ENOTTY), copy `_IOC_SIZE(request)` bytes in and zero-extend them to
its own struct, run the handler, copy back exactly the caller's size (even on failure, as the
kernel does), and return the kernel's errno values. Pointers inside argument structs are followed
with process_vm_readv/writev, so a bad pointer gives EFAULT as copy_from_user would, never a
crash. It emulates KFD ioctl version 1.18 (SDMA_BY_ENG_ID and the 96-byte CREATE_QUEUE of 1.17,
set_memory_policy's misc_process_flag of 1.18, the event age of 1.14).

State follows the kernel's split: `Gpu` is a device (kfd_node), `Process` is the kfd_process
created by the first open of /dev/kfd, `Pdd` its per-device data (VM, handles, doorbell slice),
`Queue` a user queue and the `QueueContext` its engine runs against. Closing the last /dev/kfd
descriptor tears the process down and reports what the program leaked.

Sources: K-CHR kfd_chardev.c (every handler's checks and errno), K-EV kfd_events.c (events.py),
K-QUEUE kfd_queue.c (queue buffer validation), kfd_process_queue_manager.c (queue ids, update),
amdgpu_amdkfd_gpuvm.c (free of a mapped BO -> EBUSY, unmap of a queue buffer -> EBUSY),
kfd_flat_memory.c (apertures), kfd_doorbell.c / kfd_mmap (mmap routing).
"""
from __future__ import annotations

import ctypes
import errno as E
import random
import sys
import threading
import time

import numpy as np

from kfdtrace.abi import ioctl as abi
from kfdtrace.abi.families import Family
from kfdtrace.emu.base import QueueKind, Step
from kfdtrace.emu.engines import Scheduler, make_engine
from kfdtrace.emu.events import SIGNAL_PAGE_SIZE, EventTable
from kfdtrace.emu.memory import AddressSpace, Allocation, Backing, GpuView, page_align
from kfdtrace.errors import GpuFault, PortError
from kfdtrace.port.host import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_SHARED, PAGE_SIZE, copy_from_user,
    copy_to_user, fenced_store64, libc_ioctl, libc_mmap, libc_munmap, user_range_protection,
)

KFD_VERSION = (1, 18)
COMMAND_START, COMMAND_END = 0x01, 0x27   # 1.18: CREATE_PROCESS (0x27) does not exist yet
FD_BASE = 10000                           # emulator descriptors never collide with real ones
TASK_SIZE = (1 << 47) - PAGE_SIZE         # x86-64 user address limit (access_ok)
GPUVM_BASE = 1 << 16                      # max(SVM_USER_BASE, AMDGPU_VA_RESERVED_BOTTOM)
GPUVM_LIMIT = (1 << 47) - 1               # gpuvm_size - 1 (47-bit VA)
LDS_BASE, SCRATCH_BASE = 1 << 48, 2 << 48  # MAKE_LDS_APP_BASE_V9 / MAKE_SCRATCH_APP_BASE_V9
GEM_OFFSET_START = 1 << 32                # DRM_FILE_PAGE_OFFSET_START in bytes
VRAM_AVAILABILITY_ALIGN = 1 << 21
ENOTSUPP = 524                            # kernel-internal errno KFD returns for bad queue types
MAX_QUEUES = abi.KFD_MAX_NUM_OF_QUEUES_PER_PROCESS
KICK_STEPS = 4096                         # packets the GPU may run on each ioctl
DOORBELL_STEPS = 1 << 20                  # ... and after a doorbell (until idle, normally)
KICK_BUDGETS = (0, 0, 0, 1, 1, 2, 3, 5, 8, 16)   # packets per kick with a schedule seed
WAIT_SLICE = 0.002                        # s between re-checks when no queue can progress
STALL_WARN = 10.0                         # s of a stalled infinite wait before saying so

F = abi.AllocFlags
QT = abi.QueueType
KIND_OF_TYPE = {QT.COMPUTE: QueueKind.PM4, QT.COMPUTE_AQL: QueueKind.AQL, QT.SDMA: QueueKind.SDMA,
                QT.SDMA_XGMI: QueueKind.SDMA, QT.SDMA_BY_ENG_ID: QueueKind.SDMA}


class _MissingExecutor:
    """Stands in for the shader executor while kfdtrace.emu.isa is unavailable."""

    def dispatch(self, info, mem) -> None:
        name = f" ({info.kernel_name})" if getattr(info, "kernel_name", None) else ""
        raise GpuFault(f"cannot run the kernel at {info.code_address:#x}{name}: the shader executor "
                       "(kfdtrace.emu.isa) is not available", address=info.code_address)


def _default_shader():
    try:
        from kfdtrace.emu.isa import default_executor
    except ImportError:
        return _MissingExecutor()
    return default_executor()


def _dict(s) -> dict:
    return abi.struct_to_dict(s)


# ---------------------------------------------------------------------------------------------
class Gpu:
    """One emulated device (kfd_node): fixed for the life of the port."""

    def __init__(self, index: int, node, family: Family, vram: int):
        self.index = index
        self.node = node                          # its topology Node
        self.gpu_id = node.gpu_id
        self.family = family
        self.render_minor = node.drm_render_minor
        self.vram_size = vram
        self.mmio = Backing(PAGE_SIZE, f"mmio-{index}")   # the HDP flush page of MMIO_REMAP

    @property
    def doorbell_slice(self) -> int:
        return self.family.doorbell_process_slice


class File:
    __slots__ = ("fd", "kind", "path", "gpu")

    def __init__(self, fd: int, kind: str, path: str, gpu: Gpu | None = None):
        self.fd, self.kind, self.path, self.gpu = fd, kind, path, gpu


class Pdd:
    """kfd_process_device: one process on one GPU."""

    def __init__(self, gpu: Gpu, space: AddressSpace, idr_base: int):
        self.gpu = gpu
        self.mem = GpuView(space, gpu.gpu_id)
        self.vm_file: File | None = None          # ACQUIRE_VM's render node
        self.handles: dict[int, Allocation] = {}  # idr -> BO
        self.idr_base = idr_base
        self.gem: dict[int, Allocation] = {}      # render-node mmap offset -> BO
        self.gem_next = GEM_OFFSET_START
        self.vram_used = 0
        self.doorbells: Backing | None = None     # the process doorbell slice of this GPU
        self.slots: dict[int, Queue] = {}         # doorbell slot -> queue
        self.scratch_va = 0
        self.trap = (0, 0)
        self.policy = (0, 0, 0, 0, 0)

    @property
    def bound(self) -> bool:
        return self.vm_file is not None

    def doorbell_backing(self) -> Backing:
        if self.doorbells is None:
            self.doorbells = Backing(self.gpu.doorbell_slice, f"doorbells-{self.gpu.index}")
        return self.doorbells

    def new_idr(self) -> int:
        i = self.idr_base
        while i in self.handles:
            i += 1
        return i


class Queue:
    """A user queue; also the QueueContext (kfdtrace.emu.base) handed to its engine."""

    def __init__(self, model: KfdModel, pdd: Pdd, qid: int, qtype: int, args, slot: int):
        self.model, self.pdd = model, pdd
        self.queue_id = qid
        self.queue_type = qtype
        self.kind = KIND_OF_TYPE[qtype]
        self.family = pdd.gpu.family
        self.gpu_id = pdd.gpu.gpu_id
        self.ring_base = args.ring_base_address
        self.ring_size = args.ring_size
        self.wptr_addr = args.write_pointer_address
        self.rptr_addr = args.read_pointer_address
        self.eop_buffer_address = args.eop_buffer_address
        self.ctx_save_restore_address = args.ctx_save_restore_address
        self.sdma_engine_id = args.sdma_engine_id
        self.percentage = args.queue_percentage & 0xFF
        self.priority = args.queue_priority
        self.mem = pdd.mem
        self.shader = model.shader
        self.slot = slot
        self.doorbell_offset = (abi.KFD_MMAP_TYPE_DOORBELL | abi.KFD_MMAP_GPU_ID(self.gpu_id)
                                | slot * pdd.gpu.family.doorbell_size)
        self.refs: list[Allocation] = []          # BOs pinned as ring/rptr/wptr (kernel: bo_va refcount)
        self.engine = None
        self.cu_mask: bytes = b""
        self.fault_info: dict | None = None
        self.evicted = False                      # a USERPTR queue buffer lost its CPU pages

    def __repr__(self) -> str:
        return f"<{self.kind.name} queue {self.queue_id} on gpu {self.gpu_id:#x}>"

    # -- QueueContext -------------------------------------------------------------------------
    def interrupt(self, ctxid: int) -> None:
        with self.model.lock:
            self.model._interrupt(self, ctxid)

    def clock(self) -> int:
        return self.model.scheduler.clock

    def fault(self, va: int, write: bool, message: str = "") -> None:
        with self.model.lock:
            self.model._queue_fault(self, va, write, message)

    @property
    def active(self) -> bool:
        return self.ring_size > 0 and self.ring_base != 0 and self.percentage > 0

    def sync_engine(self) -> None:
        """Tell the engine whether it may run (active and not evicted)."""
        if self.engine is not None:
            self.engine.suspended = self.evicted or not self.active


class Process:
    """kfd_process: everything one open of /dev/kfd owns."""

    def __init__(self, gpus: list[Gpu], idr_base: int):
        self.space = AddressSpace()
        self.pdds = {g.gpu_id: Pdd(g, self.space, idr_base) for g in gpus}
        self.events = EventTable()
        self.queues: dict[int, Queue] = {}
        self.xnack = 0
        self.runtime_enabled = False
        self.refs = 0


# ---------------------------------------------------------------------------------------------
class KfdModel:
    """The emulated kernel driver. All entry points are thread-safe (one lock; a blocked
    WAIT_EVENTS releases it while it sleeps)."""

    def __init__(self, gpus: list[Gpu], *, seed: int | None = None, machine: int = 0,
                 strict_interrupts: bool = False):
        self.gpus = gpus
        self.by_id = {g.gpu_id: g for g in gpus}
        self.machine = machine
        self.idr_base = 2 + 0x40 * machine
        self.strict_interrupts = strict_interrupts
        self.scheduler = Scheduler(seed)
        # With a seed the GPU runs asynchronously to the CPU: each doorbell or ioctl lets it run a
        # seeded number of packets (often none), so work submitted to several queues piles up and
        # the scheduler interleaves it — races show up or not depending on the seed. Without a
        # seed it runs to quiescence at every kick: an infinitely fast GPU, one fixed order.
        self._kick_rng = random.Random(seed * 7919 + 1) if seed is not None else None
        self.shader = _default_shader()
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.files: dict[int, File] = {}
        self._next_fd = FD_BASE
        self.proc: Process | None = None
        self.log: list[dict] = []
        self.faults: list[dict] = []
        self.last_leaks: dict | None = None
        self.cpu_maps: list[list] = []            # [start, end, kind, gpu_id, base offset]
        self._warned: set[str] = set()
        self._handlers = {
            0x01: self._get_version, 0x02: self._create_queue, 0x03: self._destroy_queue,
            0x04: self._set_memory_policy, 0x05: self._get_clock_counters,
            0x06: self._get_process_apertures, 0x07: self._update_queue, 0x08: self._create_event,
            0x09: self._destroy_event, 0x0A: self._set_event, 0x0B: self._reset_event,
            0x0C: self._wait_events, 0x0D: self._deprecated, 0x0E: self._deprecated,
            0x0F: self._deprecated, 0x10: self._deprecated, 0x11: self._set_scratch_backing_va,
            0x12: self._get_tile_config, 0x13: self._set_trap_handler,
            0x14: self._get_process_apertures_new, 0x15: self._acquire_vm,
            0x16: self._alloc_memory, 0x17: self._free_memory, 0x18: self._map_memory,
            0x19: self._unmap_memory, 0x1A: self._set_cu_mask, 0x1B: self._get_queue_wave_state,
            0x1E: self._alloc_queue_gws, 0x20: self._svm, 0x21: self._set_xnack_mode,
            0x23: self._available_memory, 0x25: self._runtime_enable,
        }

    # -- small helpers ----------------------------------------------------------------------------
    def _warn(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            print(f"kfdtrace emu: {text}", file=sys.stderr)

    def _record(self, **entry) -> None:
        self.log.append(entry)

    def _pdd(self, gpu_id: int) -> Pdd | None:
        return self.proc.pdds.get(gpu_id) if self.proc else None

    def _bo(self, handle: int) -> tuple[Pdd | None, Allocation | None]:
        pdd = self._pdd(abi.handle_gpu_id(handle))
        if pdd is None:
            return None, None
        return pdd, pdd.handles.get(abi.handle_idr(handle))

    # -- files ------------------------------------------------------------------------------------
    def open(self, path: str) -> int:
        with self.lock:
            if path == "/dev/kfd":
                kind, gpu = "kfd", None
            else:
                gpu = next((g for g in self.gpus if path == f"/dev/dri/renderD{g.render_minor}"), None)
                if gpu is None:
                    raise FileNotFoundError(E.ENOENT, "No such file or directory", path)
                kind = "render"
            fd = self._next_fd
            self._next_fd += 1
            self.files[fd] = File(fd, kind, path, gpu)
            if kind == "kfd":
                if self.proc is None:
                    self.proc = Process(self.gpus, self.idr_base)
                    self.last_leaks = None
                self.proc.refs += 1
            self._record(op="open", path=path, fd=fd)
            return fd

    def close(self, fd: int) -> None:
        with self.lock:
            f = self.files.pop(fd, None)
            if f is None:
                raise OSError(E.EBADF, "Bad file descriptor")
            self._record(op="close", path=f.path, fd=fd)
            if f.kind == "kfd" and self.proc is not None:
                self.proc.refs -= 1
                if self.proc.refs <= 0:
                    self.teardown()

    # -- ioctl dispatch (K-CHR kfd_ioctl) ---------------------------------------------------------
    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        with self.lock:
            f = self.files.get(fd)
            if f is None:    # not a descriptor the emulator handed out: a real one, for the OS
                return libc_ioctl(fd, request, arg) if fd < FD_BASE else E.EBADF
            nr, usize = abi.ioc_nr(request), abi.ioc_size(request)
            if f.kind != "kfd":
                self._record(op="ioctl", fd=fd, request=request, name=f"DRM_0x{nr:02x}", errno=E.EINVAL)
                self._warn(f"drm{nr}", f"{f.path}: DRM ioctl nr {nr:#x} is not emulated (EINVAL)")
                return E.EINVAL
            if not COMMAND_START <= nr < COMMAND_END:
                self._record(op="ioctl", fd=fd, request=request, name=f"UNKNOWN_0x{request:08X}",
                             errno=E.ENOTTY)
                return E.ENOTTY
            d = abi.IOCTLS[nr]
            if len(arg) < usize:
                self._record(op="ioctl", fd=fd, request=request, name=d.name, errno=E.EFAULT)
                return E.EFAULT
            ksize = ctypes.sizeof(d.struct)
            kdata = bytearray(max(usize, ksize))
            if d.dir & abi.IOC_WRITE:
                kdata[:usize] = arg[:usize]
            s = d.struct.from_buffer(kdata)
            fields_in = _dict(s) if d.dir & abi.IOC_WRITE else None
            handler = self._handlers.get(nr, self._not_emulated)
            err = handler(s, d)
            if d.dir & abi.IOC_READ:
                arg[:usize] = kdata[:usize]
            self._record(op="ioctl", fd=fd, request=request, name=d.name, size=usize,
                         args_in=fields_in, args_out=_dict(s) if d.dir & abi.IOC_READ else None,
                         errno=err)
            del s
            if nr != 0x0C:
                self._kick(KICK_STEPS)
            self.cond.notify_all()
            return err

    def _not_emulated(self, s, d) -> int:
        self._warn(d.name, f"AMDKFD_IOC_{d.name} is not emulated (returns EINVAL)")
        return E.EINVAL

    def _deprecated(self, s, d) -> int:
        return E.EPERM          # the deprecated debugger ioctls always return -EPERM

    def _svm(self, s, d) -> int:
        return E.EPERM          # as a kernel built without CONFIG_HSA_AMD_SVM: HMM is not emulated

    # -- version, apertures, clocks ---------------------------------------------------------------
    def _get_version(self, s, d) -> int:
        s.major_version, s.minor_version = KFD_VERSION
        return 0

    @staticmethod
    def _apertures(a, gpu_id: int) -> None:
        a.lds_base, a.lds_limit = LDS_BASE, LDS_BASE | 0xFFFFFFFF
        a.scratch_base, a.scratch_limit = SCRATCH_BASE, SCRATCH_BASE | 0xFFFFFFFF
        a.gpuvm_base, a.gpuvm_limit = GPUVM_BASE, GPUVM_LIMIT
        a.gpu_id = gpu_id

    def _get_process_apertures(self, s, d) -> int:
        s.num_of_nodes = 0
        for g in self.gpus[:abi.NUM_OF_SUPPORTED_GPUS]:
            self._apertures(s.process_apertures[s.num_of_nodes], g.gpu_id)
            s.num_of_nodes += 1
        return 0

    def _get_process_apertures_new(self, s, d) -> int:
        if s.num_of_nodes == 0:
            s.num_of_nodes = len(self.gpus)
            return 0
        n = min(len(self.gpus), s.num_of_nodes)
        arr = (abi.kfd_process_device_apertures * n)()
        for i in range(n):
            self._apertures(arr[i], self.gpus[i].gpu_id)
        s.num_of_nodes = n
        return 0 if copy_to_user(s.kfd_process_device_apertures_ptr, bytes(arr)) else E.EFAULT

    def _get_clock_counters(self, s, d) -> int:
        pdd = self._pdd(s.gpu_id)
        if pdd is not None:
            self.scheduler.clock += 1        # a read costs a tick: successive reads increase
            s.gpu_clock_counter = self.scheduler.clock
        else:
            s.gpu_clock_counter = 0          # "node without GPU resource"
        s.cpu_clock_counter = time.clock_gettime_ns(time.CLOCK_MONOTONIC_RAW)
        s.system_clock_counter = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        s.system_clock_freq = 1_000_000_000
        return 0

    # -- VM, policies ---------------------------------------------------------------------------------
    def _acquire_vm(self, s, d) -> int:
        f = self.files.get(s.drm_fd)
        if f is None:
            return E.EINVAL          # fget() failed
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        if pdd.vm_file is not None:
            return 0 if pdd.vm_file is f else E.EBUSY
        if f.kind != "render" or f.gpu is not pdd.gpu:
            return E.EINVAL          # not this GPU's DRM file: no VM to acquire
        pdd.vm_file = f
        return 0

    def _set_memory_policy(self, s, d) -> int:
        if s.default_policy not in (0, 1) or s.alternate_policy not in (0, 1):
            return E.EINVAL
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        if not pdd.bound:
            return E.ESRCH
        pdd.policy = (s.default_policy, s.alternate_policy, s.alternate_aperture_base,
                      s.alternate_aperture_size, s.misc_process_flag)
        return 0

    def _set_scratch_backing_va(self, s, d) -> int:
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        if not pdd.bound:
            return E.ENODEV
        pdd.scratch_va = s.va_addr
        return 0

    def _set_trap_handler(self, s, d) -> int:
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        if not pdd.bound:
            return E.ESRCH
        pdd.trap = (s.tba_addr, s.tma_addr)
        return 0

    def _get_tile_config(self, s, d) -> int:
        # GFX9+ publish no tiling tables ("not set from GFX9 onwards"): zeroed arrays of the
        # kernel's sizes (32 tile modes, 16 macro modes), num_banks = num_ranks = 0.
        if self._pdd(s.gpu_id) is None:
            return E.EINVAL
        s.gb_addr_config, s.num_banks, s.num_ranks = 0, 0, 0
        s.num_tile_configs = min(s.num_tile_configs, 32)
        if not copy_to_user(s.tile_config_ptr, bytes(4 * s.num_tile_configs)):
            s.num_tile_configs = 0
            return E.EFAULT
        s.num_macro_tile_configs = min(s.num_macro_tile_configs, 16)
        if not copy_to_user(s.macro_tile_config_ptr, bytes(4 * s.num_macro_tile_configs)):
            s.num_macro_tile_configs = 0
            return E.EFAULT
        return 0

    def _set_xnack_mode(self, s, d) -> int:
        p = self.proc
        if s.xnack_enabled < 0:
            s.xnack_enabled = p.xnack
            return 0
        if p.queues:
            return E.EBUSY
        want = 1 if s.xnack_enabled else 0
        if want == p.xnack:
            return 0
        # XNACK can be switched per process only on GC 9.4.3/9.4.4/9.5.0 (gfx942, gfx950)
        if want and not all(g.family.gfx_target_version in (90402, 90500) for g in self.gpus):
            return E.EPERM
        p.xnack = want
        return 0

    def _runtime_enable(self, s, d) -> int:
        p = self.proc
        if s.mode_mask & abi.RuntimeEnableMode.ENABLE:
            if p.runtime_enabled:
                return E.EBUSY
            if p.queues:
                return E.EEXIST
            p.runtime_enabled = True
        else:
            p.runtime_enabled = False
        return 0

    def _available_memory(self, s, d) -> int:
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        free = max(0, pdd.gpu.vram_size - pdd.vram_used)
        s.available = free & ~(VRAM_AVAILABILITY_ALIGN - 1)
        return 0

    # -- memory -----------------------------------------------------------------------------------------
    def _alloc_memory(self, s, d) -> int:
        if s.size == 0:
            return E.EINVAL
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        if not pdd.bound:
            return E.ENODEV
        flags, size, va, gpu = s.flags, s.size, s.va_addr, pdd.gpu
        if flags & F.VRAM:
            kind = "vram"
        elif flags & F.GTT:
            kind = "gtt"
        elif flags & F.USERPTR:
            kind = "userptr"
        elif flags & F.DOORBELL:
            kind = "doorbell"
        elif flags & F.MMIO_REMAP:
            kind = "mmio"
        else:
            return E.EINVAL
        if flags & F.DOORBELL and size != gpu.doorbell_slice:
            return E.EINVAL
        if flags & F.MMIO_REMAP and not flags & F.DOORBELL and size != PAGE_SIZE:
            return E.EINVAL
        span = page_align(size)
        if va:
            if va & (PAGE_SIZE - 1) or va + span > GPUVM_LIMIT + 1:
                return E.EINVAL
            if self.proc.space.overlapping(va, span):
                return E.EINVAL
        backing, cpu_addr, shared = None, 0, False
        if kind == "userptr":
            cpu_addr = s.mmap_offset
            if not cpu_addr:
                return E.EINVAL
            prot = user_range_protection(cpu_addr, span)
            if prot is None or "r" not in prot or (flags & F.WRITABLE and "w" not in prot):
                return E.EFAULT
        elif kind == "vram":
            charge = span >> 1 if flags & F.AQL_QUEUE_MEM else span
            if pdd.vram_used + charge > gpu.vram_size:
                return E.ENOMEM
        if kind in ("vram", "gtt"):
            try:
                backing = Backing(span, f"{kind}-{gpu.index}")
            except OSError as e:
                return e.errno or E.ENOMEM
        elif kind == "doorbell":
            backing, shared = pdd.doorbell_backing(), True
        elif kind == "mmio":
            backing, shared = gpu.mmio, True
        idr = pdd.new_idr()
        handle = abi.make_handle(gpu.gpu_id, idr)
        a = Allocation(handle, gpu.gpu_id, va, span, flags, kind, backing, cpu_addr,
                       writable=bool(flags & F.WRITABLE), shared_backing=shared)
        if kind == "mmio":
            a.mmap_offset = abi.KFD_MMAP_TYPE_MMIO | abi.KFD_MMAP_GPU_ID(gpu.gpu_id)
        else:
            a.mmap_offset = pdd.gem_next
            pdd.gem[pdd.gem_next] = a
            pdd.gem_next += span
        if kind == "vram":
            pdd.vram_used += span >> 1 if flags & F.AQL_QUEUE_MEM else span
        pdd.handles[idr] = a
        if va:
            self.proc.space.insert(a)
        s.handle, s.mmap_offset = handle, a.mmap_offset
        self._record(op="alloc", handle=handle, gpu_id=gpu.gpu_id, va=va, size=span, kind=kind,
                     flags=flags, mmap_offset=a.mmap_offset, cpu_addr=cpu_addr)
        return 0

    def _free_memory(self, s, d) -> int:
        p = self.proc
        if p.events.page_handle and p.events.page_handle == s.handle:
            return E.EPERM           # "Free signal BO is not allowed"
        pdd, a = self._bo(s.handle)
        if pdd is None or a is None:
            return E.EINVAL
        if a.mapped:
            return E.EBUSY           # "BO VA ... is still mapped"
        self._drop_bo(pdd, a)
        self._record(op="free", handle=a.handle, va=a.va, size=a.size, kind=a.kind)
        return 0

    def _drop_bo(self, pdd: Pdd, a: Allocation) -> None:
        del pdd.handles[abi.handle_idr(a.handle)]
        pdd.gem.pop(a.mmap_offset, None)
        if a.kind == "vram":
            pdd.vram_used -= a.size >> 1 if a.flags & F.AQL_QUEUE_MEM else a.size
        if a.va:
            self.proc.space.remove(a)
        a.release()

    def _device_list(self, s) -> list[int] | int:
        if not s.n_devices or s.n_success > s.n_devices:
            return E.EINVAL
        raw = copy_from_user(s.device_ids_array_ptr, 4 * s.n_devices)
        if raw is None:
            return E.EFAULT
        return list(np.frombuffer(raw, "<u4"))

    def _map_memory(self, s, d) -> int:
        ids = self._device_list(s)
        if isinstance(ids, int):
            return ids
        pdd, a = self._bo(s.handle)
        if pdd is None:
            return E.EINVAL
        if not pdd.bound:
            return E.ENODEV
        if a is None:
            return E.ENOMEM          # the kernel's code for an unknown handle here
        for i in range(s.n_success, s.n_devices):
            peer = self._pdd(int(ids[i]))
            if peer is None:
                return E.EINVAL
            if not peer.bound:
                return E.ENODEV
            if not a.va:
                return E.EINVAL      # a BO without a VA cannot go into page tables
            a.mapped.add(peer.gpu.gpu_id)
            a.attached.add(peer.gpu.gpu_id)
            s.n_success = i + 1
            self.proc.space.bump()
            self._record(op="map", handle=a.handle, gpu_id=peer.gpu.gpu_id, va=a.va, size=a.size)
        return 0

    def _unmap_memory(self, s, d) -> int:
        ids = self._device_list(s)
        if isinstance(ids, int):
            return ids
        pdd, a = self._bo(s.handle)
        if pdd is None:
            return E.EINVAL
        if a is None:
            return E.ENOMEM
        for i in range(s.n_success, s.n_devices):
            peer = self._pdd(int(ids[i]))
            if peer is None:
                return E.EINVAL
            gid = peer.gpu.gpu_id
            if gid not in a.attached:
                return E.EINVAL      # never mapped there: kfd_mem_is_attached() fails
            if gid in a.mapped and any(q.gpu_id == gid and a in q.refs for q in self.proc.queues.values()):
                return E.EBUSY       # a queue still uses it (bo_va->queue_refcount)
            if gid in a.mapped:
                a.mapped.discard(gid)
                self.proc.space.bump()
                self._record(op="unmap", handle=a.handle, gpu_id=gid, va=a.va)
            s.n_success = i + 1
        return 0

    # -- queues -------------------------------------------------------------------------------------
    def _queue_buffer(self, pdd: Pdd, addr: int, expected: int) -> Allocation | None:
        """kfd_queue_buffer_get: the GPU-mapped BO that must hold a queue buffer. The ring must be
        exactly a BO's mapping (its first page, and its size when the ring is >= a page); the
        read/write pointers must lie in BOs mapped on this GPU."""
        a = pdd.mem.space.find(addr)
        if a is None or pdd.gpu.gpu_id not in a.mapped:
            return None
        if expected is None:
            return a if addr + 8 <= a.end else None
        if addr >> 12 != a.va >> 12:
            return None
        pages = expected >> 12
        if pages and (addr >> 12) + pages != a.end >> 12:
            return None
        return a

    @staticmethod
    def _check_queue_properties(s) -> int:
        """The argument checks CREATE_QUEUE and UPDATE_QUEUE share (kfd_chardev.c does both)."""
        if (s.queue_percentage & 0xFF) > abi.KFD_MAX_QUEUE_PERCENTAGE:
            return E.EINVAL
        if s.queue_priority > abi.KFD_MAX_QUEUE_PRIORITY:
            return E.EINVAL
        if s.ring_base_address and s.ring_base_address + 8 > TASK_SIZE:
            return E.EFAULT
        if s.ring_size and s.ring_size & (s.ring_size - 1):
            return E.EINVAL
        return 0

    def _create_queue(self, s, d) -> int:
        err = self._check_queue_properties(s)
        if err:
            return err
        if s.ring_size < abi.KFD_MIN_QUEUE_RING_SIZE:
            s.ring_size = abi.KFD_MIN_QUEUE_RING_SIZE
        if s.read_pointer_address + 4 > TASK_SIZE or s.write_pointer_address + 4 > TASK_SIZE:
            return E.EFAULT
        if s.queue_type not in KIND_OF_TYPE:
            return ENOTSUPP
        qtype = QT(s.queue_type)
        pdd = self._pdd(s.gpu_id)
        if pdd is None:
            return E.EINVAL
        if not pdd.bound:
            return E.ESRCH
        fam = pdd.gpu.family
        if qtype == QT.SDMA_BY_ENG_ID and \
                s.sdma_engine_id > fam.num_sdma_engines + fam.num_sdma_xgmi_engines - 1:
            return E.EINVAL
        # kfd_queue_acquire_buffers comes first (before pqm_create_queue allocates anything)
        ring_bytes = s.ring_size // 2 if (qtype == QT.COMPUTE_AQL and
                                          70000 <= fam.gfx_target_version < 90000) else s.ring_size
        refs = [self._queue_buffer(pdd, s.write_pointer_address, None),
                self._queue_buffer(pdd, s.read_pointer_address, None),
                self._queue_buffer(pdd, s.ring_base_address, ring_bytes)]
        if None in refs:
            what = [n for n, r in zip(("write pointer", "read pointer", "ring"), refs) if r is None]
            self._record(op="queue_rejected", gpu_id=pdd.gpu.gpu_id,
                         reason=f"{', '.join(what)} not in a BO mapped on GPU {pdd.gpu.gpu_id:#x}")
            return E.EINVAL
        # then queue ids, doorbells and SDMA queues, which are finite (pqm / dqm allocators)
        p = self.proc
        qid = next((i for i in range(MAX_QUEUES) if i not in p.queues), None)
        if qid is None:
            return E.ENOMEM
        err = self._sdma_capacity(pdd, qtype, s.sdma_engine_id)
        if err:
            return err
        slot = next((i for i in range(pdd.gpu.doorbell_slice // fam.doorbell_size)
                     if i not in pdd.slots), None)
        if slot is None:
            return E.EBUSY
        q = Queue(self, pdd, qid, qtype, s, slot)
        q.refs = refs
        p.queues[qid] = q
        pdd.slots[slot] = q
        pdd.doorbell_backing()
        s.queue_id, s.doorbell_offset = qid, q.doorbell_offset
        q.engine = make_engine(q)
        q.engine.step = self._guarded_step(q, q.engine.step)
        self.scheduler.add(q.engine)
        self._record(op="queue_create", queue_id=qid, type=qtype.name, gpu_id=q.gpu_id,
                     ring=q.ring_base, ring_size=q.ring_size, wptr=q.wptr_addr, rptr=q.rptr_addr,
                     doorbell_offset=q.doorbell_offset, sdma_engine_id=q.sdma_engine_id)
        return 0

    def _guarded_step(self, q: Queue, step):
        """The engine's step, with a defect inside the emulator (anything but the GPU faults the
        engines report themselves) turned into a stopped queue and a report, not a traceback out
        of whatever ioctl or doorbell happened to run the GPU."""
        def guarded():
            try:
                return step()
            except Exception as e:   # noqa: BLE001 - reported, queue stopped
                q.engine.stopped = True
                self._queue_fault(q, q.ring_base, False,
                                  f"internal error in the {q.kind.name} engine: {type(e).__name__}: {e}",
                                  kind="internal_error")
                return Step.STOPPED
        return guarded

    def _sdma_capacity(self, pdd: Pdd, qtype: QT, engine: int) -> int:
        if qtype not in (QT.SDMA, QT.SDMA_XGMI, QT.SDMA_BY_ENG_ID):
            return 0
        fam = pdd.gpu.family
        per = fam.num_sdma_queues_per_engine
        mine = [q for q in self.proc.queues.values()
                if q.gpu_id == pdd.gpu.gpu_id and q.kind is QueueKind.SDMA]
        if qtype == QT.SDMA_XGMI:
            used = sum(q.queue_type == QT.SDMA_XGMI for q in mine)
            return E.ENOMEM if used >= fam.num_sdma_xgmi_engines * per else 0
        if qtype == QT.SDMA_BY_ENG_ID:
            used = sum(q.queue_type == QT.SDMA_BY_ENG_ID and q.sdma_engine_id == engine for q in mine)
            return E.ENOMEM if used >= per else 0
        used = sum(q.queue_type != QT.SDMA_XGMI for q in mine)
        return E.ENOMEM if used >= fam.num_sdma_engines * per else 0

    def _destroy_queue(self, s, d) -> int:
        q = self.proc.queues.get(s.queue_id)
        if q is None:
            return E.EINVAL
        self._drop_queue(q)
        self._record(op="queue_destroy", queue_id=q.queue_id, gpu_id=q.gpu_id)
        return 0

    def _drop_queue(self, q: Queue) -> None:
        if q.engine is not None:
            q.engine.stop()
            self.scheduler.remove(q.engine)
        del self.proc.queues[q.queue_id]
        q.pdd.slots.pop(q.slot, None)
        q.refs = []

    def _update_queue(self, s, d) -> int:
        err = self._check_queue_properties(s)
        if err:
            return err
        ring_size = max(s.ring_size, abi.KFD_MIN_QUEUE_RING_SIZE)
        q = self.proc.queues.get(s.queue_id)
        if q is None:
            return E.EFAULT
        if s.ring_base_address and ring_size:
            ring = self._queue_buffer(q.pdd, s.ring_base_address, ring_size)
            if ring is None:
                return E.EFAULT      # "ring buf ... not mapped on GPU"
            q.refs[2] = ring
        q.ring_base, q.ring_size = s.ring_base_address, ring_size
        q.percentage, q.priority = s.queue_percentage & 0xFF, s.queue_priority
        q.sync_engine()
        if q.engine is not None and not q.engine.suspended and not q.engine.stopped:
            q.engine.bind()
        self._record(op="queue_update", queue_id=q.queue_id, ring=q.ring_base, ring_size=ring_size,
                     percentage=q.percentage, priority=q.priority)
        return 0

    def _set_cu_mask(self, s, d) -> int:
        if s.num_cu_mask % 32 or s.num_cu_mask == 0:
            return E.EINVAL
        n = min(s.num_cu_mask, 1024) // 32
        raw = copy_from_user(s.cu_mask_ptr, 4 * n)
        if raw is None:
            return E.EFAULT
        q = self.proc.queues.get(s.queue_id)
        if q is None:
            return E.EFAULT
        q.cu_mask = raw
        return 0

    def _get_queue_wave_state(self, s, d) -> int:
        # only inactive compute queues with CWSR have a saved wave state; CWSR is not emulated
        return E.EFAULT if s.queue_id not in self.proc.queues else E.EINVAL

    def _alloc_queue_gws(self, s, d) -> int:
        return E.EINVAL if s.queue_id not in self.proc.queues else E.ENODEV   # no GWS emulated

    # -- events -------------------------------------------------------------------------------------
    def _create_event(self, s, d) -> int:
        ev_tab = self.proc.events
        if s.event_page_offset:          # dGPU: the signal page is a user BO, passed by handle
            if ev_tab.page is not None:
                return E.EINVAL
            pdd, a = self._bo(s.event_page_offset)
            if pdd is None:
                return E.EINVAL
            if not pdd.bound:
                return E.ENODEV
            if a is None or a.kind not in ("gtt", "vram"):
                return E.EINVAL
            err = ev_tab.set_page_bo(a.backing, a.size, a.handle)
            if err:
                return err
            self._record(op="event_page", handle=a.handle, va=a.va)
        s.event_page_offset = 0
        err, ev = ev_tab.create(s.event_type, s.auto_reset != 0)
        if err:
            return err
        if ev.is_signal:
            s.event_page_offset = abi.KFD_MMAP_TYPE_EVENTS
            s.event_slot_index = ev.id
        s.event_id = s.event_trigger_data = ev.id
        self._record(op="event_create", event_id=ev.id, type=int(s.event_type), auto_reset=ev.auto_reset)
        return 0

    def _destroy_event(self, s, d) -> int:
        err = self.proc.events.destroy(s.event_id)
        if not err:
            self._record(op="event_destroy", event_id=s.event_id)
        return err

    def _set_event(self, s, d) -> int:
        err = self.proc.events.cpu_set(s.event_id)
        if not err:
            ev = self.proc.events.events[s.event_id]
            self._record(op="event_signal", event_id=s.event_id, source="cpu", age=ev.age)
        return err

    def _reset_event(self, s, d) -> int:
        return self.proc.events.cpu_reset(s.event_id)

    def _wait_events(self, s, d) -> int:
        """kfd_wait_on_events, with the GPU running while the caller waits."""
        ev_tab = self.proc.events
        n = s.num_events
        raw = copy_from_user(s.events_ptr, 48 * n)
        if raw is None:
            s.wait_result = abi.WaitResult.FAIL
            return E.EFAULT
        datas = (abi.kfd_event_data * n).from_buffer_copy(raw)
        err, waiters = ev_tab.init_waiters(datas)
        if err:
            s.wait_result = abi.WaitResult.FAIL
            return err
        wait_all = s.wait_for_all != 0
        test = EventTable.test
        done = lambda: test(waiters, wait_all) != abi.WaitResult.TIMEOUT   # noqa: E731
        timeout = s.timeout
        start = time.monotonic()
        deadline = None if timeout == abi.KFD_EVENT_TIMEOUT_INFINITE else start + timeout / 1000
        warned = False
        try:
            while True:
                if done():
                    break
                progressed = self._run_gpu(KICK_STEPS, until=done)
                if done():
                    break
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if progressed:
                    continue
                if deadline is None and not warned and now - start > STALL_WARN:
                    warned = True
                    blocked = self.scheduler.describe_blocked() or "no queue has work"
                    print(f"kfdtrace emu: WAIT_EVENTS on events "
                          f"{[dd.event_id for dd in datas]} has waited {now - start:.0f} s with an "
                          f"infinite timeout and no queue can progress:\n{blocked}", file=sys.stderr)
                # nothing can progress: let other threads act (SET_EVENT, memory writes), re-check
                self.cond.wait(WAIT_SLICE if deadline is None else min(WAIT_SLICE, deadline - now))
            result = test(waiters, wait_all)
            ret = 0
            if result == abi.WaitResult.COMPLETE:
                ret = ev_tab.copy_out(waiters, datas)
                if not ret and not copy_to_user(s.events_ptr, bytes(datas)):
                    ret = E.EFAULT
        finally:
            ev_tab.free_waiters(waiters)
        if ret:
            s.wait_result = abi.WaitResult.FAIL
            return ret
        s.wait_result = result
        return E.EIO if result == abi.WaitResult.FAIL else 0

    # -- the GPU side ---------------------------------------------------------------------------------
    def _run_gpu(self, max_steps: int | None, until=None) -> bool:
        """Let the engines run; True if at least one packet executed."""
        if self.proc is not None and any(q.evicted for q in self.proc.queues.values()):
            self._restore_queues()
        if not self.scheduler.engines:
            return False
        before = self.scheduler.packets
        self.scheduler.run(until=until, max_steps=max_steps)
        return self.scheduler.packets != before

    def _kick(self, steps: int) -> None:
        """The GPU's chance to run after a CPU action (see `_kick_rng`)."""
        if self._kick_rng is not None:
            steps = self._kick_rng.choice(KICK_BUDGETS)
            if not steps:
                return
        self._run_gpu(steps)

    def run_gpu(self, max_steps: int | None = None) -> bool:
        with self.lock:
            ran = self._run_gpu(max_steps)
            self.cond.notify_all()
            return ran

    def _interrupt(self, q: Queue, ctxid: int) -> None:
        ev_tab = self.proc.events
        fired, written = ev_tab.interrupt(ctxid, write_mailbox=not self.strict_interrupts)
        self._record(op="interrupt", queue_id=q.queue_id, ctxid=ctxid, mailbox_written=written,
                     signaled=[eid for eid, _ in fired])
        for eid, value in fired:
            self._record(op="event_signal", event_id=eid, source="interrupt", queue_id=q.queue_id,
                         value=value, age=ev_tab.events[eid].age)
        self.cond.notify_all()

    def _evict_queues(self, hit: list[Allocation]) -> None:
        """USERPTR BOs lost their CPU pages: queues using them as ring or pointers stop running
        (the engines hold views of those pages) until the pages come back — the kernel's MMU
        notifier evicts the process's queues the same way."""
        for q in self.proc.queues.values():
            if not q.evicted and any(a in hit for a in q.refs):
                q.evicted = True
                q.sync_engine()
                self._record(op="queue_evict", queue_id=q.queue_id,
                             handles=[a.handle for a in q.refs if a in hit])

    def _restore_queues(self) -> None:
        """The restore worker: evicted queues resume once their USERPTR pages are back."""
        for q in self.proc.queues.values():
            if not q.evicted:
                continue
            bad = [a for a in q.refs if not a.valid and not q.mem.revalidate(a)]
            if bad:
                continue
            q.evicted = False
            q.sync_engine()
            if q.engine is not None and not q.engine.stopped and not q.engine.suspended:
                q.engine.bind()
            self._record(op="queue_restore", queue_id=q.queue_id)

    def _queue_fault(self, q: Queue, va: int, write: bool, message: str, kind: str = "") -> None:
        """A GPU fault on queue q: stop it; a page fault raises memory-exception events (the
        kernel's kfd_signal_vm_fault_event), any other queue error raises HW exception events."""
        p = self.proc
        a = p.space.find(va)
        mapped = a is not None and q.gpu_id in a.mapped and a.valid
        permission = mapped and write and not a.writable
        page_fault = not kind and (not mapped or permission)
        info = {"queue_id": q.queue_id, "gpu_id": q.gpu_id, "va": va, "write": write,
                "kind": kind or ("page_fault" if page_fault else "queue_error"), "message": message}
        q.fault_info = info
        self.faults.append(info)
        if q.engine is not None:
            q.engine.stopped = True
            self.scheduler.remove(q.engine)
        if page_fault:
            data = abi.kfd_hsa_memory_exception_data()
            data.failure.NotPresent = 0 if permission else 1
            data.failure.ReadOnly = 1 if permission else 0
            data.va = va & ~(PAGE_SIZE - 1)
            data.gpu_id = q.gpu_id
            fired = p.events.memory_exception(data)
        else:
            fired = []
            for ev in p.events.events.values():
                if ev.type == abi.EventType.HW_EXCEPTION:
                    ev.hw_exception = abi.kfd_hsa_hw_exception_data(reset_type=1, reset_cause=0,
                                                                    memory_lost=0, gpu_id=q.gpu_id)
                    p.events.set_event(ev)
                    fired.append(ev.id)
        self._record(op="fault", signaled=fired, **info)
        print(f"kfdtrace emu: GPU fault, queue {q.queue_id} stopped: {message or info['kind']}"
              f" (va {va:#x})", file=sys.stderr)
        self.cond.notify_all()

    # -- mmap / munmap / doorbell ---------------------------------------------------------------------
    def _forget_cpu_range(self, addr: int, length: int) -> None:
        end = addr + length
        keep = []
        for m in self.cpu_maps:
            s0, e0 = m[0], m[1]
            if e0 <= addr or s0 >= end:
                keep.append(m)
                continue
            if s0 < addr:
                keep.append([s0, addr, m[2], m[3], m[4]])
            if e0 > end:
                keep.append([end, e0, m[2], m[3], m[4] + (end - s0)])
        self.cpu_maps = keep
        if self.proc is not None:
            hit = self.proc.space.invalidate_cpu_range(addr, length)
            if hit:
                self._evict_queues(hit)

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int, offset: int) -> int:
        with self.lock:
            if fd == -1 or flags & MAP_ANONYMOUS:
                r = libc_mmap(addr, length, prot, flags, -1, 0 if flags & MAP_ANONYMOUS else offset)
                if flags & MAP_FIXED and not flags & MAP_FIXED_NOREPLACE:
                    self._forget_cpu_range(r, length)
                return r
            f = self.files.get(fd)
            if f is None:
                if fd < FD_BASE:     # a real descriptor (a file): the OS maps it
                    r = libc_mmap(addr, length, prot, flags, fd, offset)
                    if flags & MAP_FIXED and not flags & MAP_FIXED_NOREPLACE:
                        self._forget_cpu_range(r, length)
                    return r
                raise OSError(E.EBADF, f"mmap: fd {fd} is not an open emulated device")
            if not flags & MAP_SHARED:
                raise OSError(E.EINVAL, f"mmap of {f.path} must be MAP_SHARED (device memory)")
            offset &= (1 << 64) - 1
            backing, kind, gpu_id, what, base = self._mmap_target(f, offset, length)
            r = libc_mmap(addr, length, prot, flags, backing.fd, base)
            if flags & MAP_FIXED:
                self._forget_cpu_range(r, length)
            if kind == "doorbell":
                self.cpu_maps.append([r, r + length, kind, gpu_id, base])
            self._record(op="mmap", fd=fd, path=f.path, addr=r, length=length, prot=prot,
                         flags=flags, offset=offset, what=what)
            return r

    def _mmap_target(self, f: File, offset: int, length: int):
        """(backing, kind, gpu_id, description, offset in backing) for an mmap of a device file,
        or OSError with the kernel's errno (kfd_mmap / drm_gem_mmap)."""
        p = self.proc
        if f.kind == "render":
            pdd = self._pdd(f.gpu.gpu_id)
            a = pdd.gem.get(offset) if pdd else None
            if a is None:
                raise OSError(E.EINVAL, f"mmap {f.path}: no buffer object at offset {offset:#x}")
            if a.kind == "userptr":
                raise OSError(E.EPERM, f"mmap {f.path}: userptr BO {a.handle:#x} cannot be mmapped")
            if length > a.size:
                raise OSError(E.EINVAL, f"mmap {f.path}: {length:#x} bytes exceed BO {a.handle:#x} "
                                        f"of {a.size:#x} bytes")
            kind = "doorbell" if a.kind == "doorbell" else "bo"
            return a.backing, kind, a.gpu_id, f"{a.kind} BO {a.handle:#x}", 0
        if p is None:
            raise OSError(E.EINVAL, "mmap /dev/kfd: no KFD process")
        mtype, gpu_id, value = abi.split_kfd_mmap_offset(offset)
        gpu = self.by_id.get(gpu_id) if gpu_id else None
        if mtype == abi.KFD_MMAP_TYPE_DOORBELL:
            if gpu is None:
                raise OSError(E.ENODEV, f"mmap /dev/kfd doorbells: no GPU {gpu_id:#x}")
            if length != gpu.doorbell_slice:
                raise OSError(E.EINVAL, f"mmap /dev/kfd doorbells: length {length:#x} is not the "
                                        f"doorbell slice ({gpu.doorbell_slice:#x})")
            return p.pdds[gpu_id].doorbell_backing(), "doorbell", gpu_id, "doorbells", 0
        if mtype == abi.KFD_MMAP_TYPE_EVENTS:
            if page_align(length) > SIGNAL_PAGE_SIZE:
                raise OSError(E.EINVAL, f"mmap /dev/kfd events: {length:#x} bytes exceed the signal page")
            if p.events.page_backing is None:
                raise OSError(E.EINVAL, "mmap /dev/kfd events: no signal page (create an event first)")
            p.events.mmapped(length)
            return p.events.page_backing, "events", 0, "event page", 0
        if mtype == abi.KFD_MMAP_TYPE_MMIO:
            if gpu is None:
                raise OSError(E.ENODEV, f"mmap /dev/kfd MMIO: no GPU {gpu_id:#x}")
            if length != PAGE_SIZE:
                raise OSError(E.EINVAL, f"mmap /dev/kfd MMIO: length must be one page, not {length:#x}")
            return gpu.mmio, "mmio", gpu_id, "MMIO remap page", 0
        if gpu is None:
            raise OSError(E.ENODEV, f"mmap /dev/kfd reserved memory: no GPU {gpu_id:#x}")
        raise OSError(E.EINVAL, "mmap /dev/kfd: RESERVED_MEM (APU CWSR area) is not emulated")

    def munmap(self, addr: int, length: int) -> None:
        with self.lock:
            libc_munmap(addr, length)
            self._forget_cpu_range(addr, length)

    def doorbell(self, addr: int, value: int) -> None:
        with self.lock:
            m = next((m for m in self.cpu_maps if m[0] <= addr and addr + 8 <= m[1]), None)
            if m is None:
                raise PortError(f"doorbell write at {addr:#x}: no doorbell page is mapped there "
                                "(mmap /dev/kfd at the queue's doorbell_offset first)")
            fenced_store64(addr, value)
            q = None
            pdd = self._pdd(m[3])
            if pdd is not None:
                slot = (addr - m[0] + m[4]) // pdd.gpu.family.doorbell_size
                q = pdd.slots.get(slot)
            wptr = None
            if q is not None:
                try:
                    wptr = q.mem.read_u64(q.wptr_addr)
                except Exception:     # the wptr BO may be gone; the engine will fault on it
                    wptr = None
            self._record(op="doorbell", addr=addr, value=value, gpu_id=m[3],
                         queue_id=q.queue_id if q else None, wptr=wptr)
            self._kick(DOORBELL_STEPS)
            self.cond.notify_all()

    # -- teardown and leaks ------------------------------------------------------------------------
    def leaks(self) -> dict:
        with self.lock:
            if self.proc is None:
                return self.last_leaks or {"allocations": [], "queues": [], "events": []}
            return self._current_leaks()

    def _current_leaks(self) -> dict:
        p = self.proc
        allocs = [{"handle": a.handle, "gpu_id": a.gpu_id, "va": a.va, "size": a.size, "kind": a.kind,
                   "mapped_on": sorted(a.mapped)}
                  for pdd in p.pdds.values() for a in pdd.handles.values()
                  if a.handle != p.events.page_handle]
        queues = [{"queue_id": q.queue_id, "type": QT(q.queue_type).name, "gpu_id": q.gpu_id}
                  for q in p.queues.values()]
        events = [{"event_id": e.id, "type": int(e.type)} for e in p.events.events.values()]
        return {"allocations": allocs, "queues": queues, "events": events}

    def teardown(self) -> dict:
        """Destroy the KFD process (last /dev/kfd close or port shutdown); report its leaks."""
        with self.lock:
            p = self.proc
            if p is None:
                return self.last_leaks or {"allocations": [], "queues": [], "events": []}
            leaks = self._current_leaks()
            for q in list(p.queues.values()):
                self._drop_queue(q)
            p.events.close()
            for pdd in p.pdds.values():
                for a in list(pdd.handles.values()):
                    a.mapped.clear()
                    self._drop_bo(pdd, a)
                if pdd.doorbells is not None:
                    pdd.doorbells.close()
            self.proc = None
            self.last_leaks = leaks
            self._record(op="teardown", leaks=leaks)
            n = sum(len(v) for v in leaks.values())
            if n:
                parts = [f"{len(v)} {k}" for k, v in leaks.items() if v]
                detail = "; ".join(
                    [f"BO {a['handle']:#x} ({a['kind']}, {a['size']:#x} bytes at {a['va']:#x})"
                     for a in leaks["allocations"][:5]]
                    + [f"queue {q['queue_id']} ({q['type']})" for q in leaks["queues"][:5]]
                    + [f"event {e['event_id']}" for e in leaks["events"][:5]])
                print(f"kfdtrace emu: /dev/kfd closed with leaks: {', '.join(parts)}: {detail}",
                      file=sys.stderr)
            return leaks

    def shutdown(self) -> None:
        with self.lock:
            self.teardown()
            for f in list(self.files):
                del self.files[f]
            for g in self.gpus:
                g.mmio.close()


__all__ = ["KfdModel", "Gpu", "Queue", "Process", "Pdd", "KFD_VERSION", "FD_BASE", "GPUVM_BASE",
           "GPUVM_LIMIT", "LDS_BASE", "SCRATCH_BASE"]
