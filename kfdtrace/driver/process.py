"""The KFD process: one open /dev/kfd, its topology, GPU virtual address space and event page.

Every `Device` of a process shares one `KfdProcess` (KFD allows one process context per
/dev/kfd open per process; all GPUs are reached through it). Everything here talks to the port
only — the same code runs on the host port and the emulated GPU.
"""
from __future__ import annotations

import bisect
import ctypes
import threading

from kfdtrace.abi import ioctl as abi
from kfdtrace.abi.topology import read_topology
from kfdtrace.errors import KfdError, KfdtraceError
from kfdtrace.port import open_port
from kfdtrace.port.base import Port

from kfdtrace.port.host import (  # noqa: F401  (re-exported for the driver's modules)
    MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PROT_NONE, PROT_READ,
    PROT_WRITE, PAGE_SIZE as PAGE,
)

#: where the driver asks for its GPU VA window (a hint; any free range works). A fixed, high,
#: 47-bit address keeps allocations at the same VAs run after run, which replay relies on.
VA_HINT = 0x2000_0000_0000
VA_WINDOW = 1 << 40   # 1 TiB of address space reserved with PROT_NONE (costs nothing)


def align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


class VaAllocator:
    """First-fit allocator over the reserved window, with coalescing frees."""

    def __init__(self, base: int, size: int):
        self.base, self.size = base, size
        self._free: list[tuple[int, int]] = [(base, size)]   # sorted (start, size)
        self._lock = threading.Lock()

    def alloc(self, size: int, alignment: int = PAGE) -> int:
        size = align(size, PAGE)
        with self._lock:
            for i, (start, length) in enumerate(self._free):
                a = align(start, alignment)
                if a + size <= start + length:
                    pieces = []
                    if a > start:
                        pieces.append((start, a - start))
                    if a + size < start + length:
                        pieces.append((a + size, start + length - a - size))
                    self._free[i:i + 1] = pieces
                    return a
        raise KfdtraceError(f"GPU virtual address space exhausted: no {size:#x}-byte range free "
                            f"in the {self.size:#x}-byte window at {self.base:#x}")

    def free(self, addr: int, size: int) -> None:
        size = align(size, PAGE)
        with self._lock:
            i = bisect.bisect_left(self._free, (addr, 0))
            self._free.insert(i, (addr, size))
            merged: list[tuple[int, int]] = []
            for s, n in self._free[max(0, i - 1):i + 2]:
                if merged and merged[-1][0] + merged[-1][1] == s:
                    merged[-1] = (merged[-1][0], merged[-1][1] + n)
                else:
                    merged.append((s, n))
            self._free[max(0, i - 1):i + 2] = merged


class KfdProcess:
    """The process-wide state behind every Device."""

    def __init__(self, port: Port):
        self.port = port
        self.lock = threading.RLock()
        self.kfd = port.open("/dev/kfd")
        ver = self.ioctl("GET_VERSION")
        self.version = (ver.major_version, ver.minor_version)
        if ver.major_version != abi.KFD_IOCTL_MAJOR_VERSION:
            raise KfdtraceError(f"KFD ioctl major version {ver.major_version} is not supported "
                                f"(kfdtrace speaks {abi.KFD_IOCTL_MAJOR_VERSION}.x)")
        self.topology = read_topology(reader=port)
        self.gpus = self.topology.gpus
        if not self.gpus:
            raise KfdtraceError(f"no GPU nodes in the KFD topology ({port.describe()})")
        self.va_base = port.mmap(VA_HINT, VA_WINDOW, PROT_NONE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
        self.va = VaAllocator(self.va_base, VA_WINDOW)
        self.devices: list = []        # open Device objects
        self.refs = 0
        self.event_page = None         # Buffer holding the signal-event slots (dGPU style)
        self.closed = False

    # -- ioctl with named fields --------------------------------------------------------------
    def ioctl(self, name: str, **fields):
        """Issue AMDKFD_IOC_<name> with the given struct fields; return the struct copied out.
        Raises KfdError (ioctl name, errno, message) on failure."""
        d = abi.IOCTLS_BY_NAME.get(name)
        if d is None:
            raise KfdtraceError(f"no KFD ioctl named {name!r}")
        args = None
        if d.struct is not None:
            anon = getattr(d.struct, "_anonymous_", ())
            known = [f[0] for f in d.struct._fields_ if f[0] not in anon]
            known += [g[0] for f in d.struct._fields_ if f[0] in anon for g in f[1]._fields_]
            unknown = sorted(set(fields) - set(known))
            if unknown:                   # ctypes would silently keep a misspelt field as an attribute
                raise KfdtraceError(f"AMDKFD_IOC_{name} has no field {', '.join(map(repr, unknown))}; "
                                    f"its fields: {', '.join(known)}")
            try:
                args = d.struct(**fields)
            except (TypeError, ValueError, OverflowError) as e:
                raise KfdtraceError(f"AMDKFD_IOC_{name}: bad field value: {e}") from None
        buf = bytearray(bytes(args)) if args is not None else bytearray()
        err = self.port.ioctl(self.kfd, d.request, buf)
        if err:
            detail = ", ".join(f"{k}={v:#x}" if isinstance(v, int) else f"{k}={v}"
                               for k, v in fields.items())
            raise KfdError(f"AMDKFD_IOC_{name}", err, detail)
        return d.struct.from_buffer_copy(buf) if d.struct is not None else None

    # -- address space --------------------------------------------------------------------------
    def reserve(self, size: int, alignment: int = PAGE) -> int:
        return self.va.alloc(size, alignment)

    def release(self, addr: int, size: int) -> None:
        """Give a VA range back, leaving it reserved (PROT_NONE) in the process."""
        self.port.mmap(addr, align(size, PAGE), PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED)
        self.va.free(addr, size)

    # -- events ----------------------------------------------------------------------------------
    def create_event(self, device, auto_reset: bool = True) -> tuple[int, int]:
        """Create a KFD signal event; returns (event_id, slot VA of its mailbox)."""
        with self.lock:
            page_offset = 0
            if self.event_page is None:
                # dGPU path (libhsakmt): the first CREATE_EVENT passes the handle of a GTT BO that
                # KFD then uses as the signal page (KFD_SIGNAL_EVENT_LIMIT 8-byte slots).
                self.event_page = device.alloc(abi.KFD_SIGNAL_EVENT_LIMIT * 8, "gtt", _internal=True)
                page_offset = self.event_page.handle
            ev = self.ioctl("CREATE_EVENT", event_page_offset=page_offset,
                            event_type=abi.EventType.SIGNAL, auto_reset=int(auto_reset),
                            node_id=device.node.index)
            return ev.event_id, self.event_page.address + ev.event_slot_index * 8

    def wait_events(self, event_ids: list[int], timeout_ms: int, wait_for_all: bool = False):
        """WAIT_EVENTS; returns (wait_result, [kfd_event_data...])."""
        n = len(event_ids)
        data = (abi.kfd_event_data * n)()
        for i, e in enumerate(event_ids):
            data[i].event_id = e
        r = self.ioctl("WAIT_EVENTS", events_ptr=ctypes.addressof(data), num_events=n,
                       wait_for_all=int(wait_for_all), timeout=timeout_ms)
        return r.wait_result, list(data)

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.event_page is not None:
                # KFD owns the signal page once CREATE_EVENT adopted it ("Free signal BO is not
                # allowed"); it goes with the process. Only drop our mappings.
                self.event_page._destroy(free=False)
                self.event_page = None
            self.port.munmap(self.va_base, VA_WINDOW)
            self.port.close(self.kfd)
        finally:
            self.port.shutdown()


_processes: dict[tuple, KfdProcess] = {}
_plock = threading.Lock()


def get_process(backend: str | None, gpu: str | None) -> KfdProcess:
    """The shared process for this backend (one /dev/kfd per process, as KFD requires)."""
    from kfdtrace.port import resolve_backend

    key = (resolve_backend(backend),)
    with _plock:
        proc = _processes.get(key)
        if proc is None or proc.closed:
            emu_gpu = gpu if (gpu and gpu.lower().startswith("gfx")) else None
            proc = KfdProcess(open_port(backend, gpu=emu_gpu))
            _processes[key] = proc
        proc.refs += 1
        return proc


def put_process(proc: KfdProcess) -> None:
    with _plock:
        proc.refs -= 1
        if proc.refs <= 0:
            for k, v in list(_processes.items()):
                if v is proc:
                    del _processes[k]
            proc.close()
