"""The recording port: wraps the host or emulated port and writes everything that crosses it.

What it writes, in call order (each record stamped with the monotonic time and the thread id):

* `open`/`close` of device nodes; every `ioctl` with its argument bytes before and after, the
  memory its pointer fields reach (`abi.payload_extents`), errno and duration; typed `alloc`,
  `free`, `queue_create`, `queue_destroy` and `event_wait` records derived from the ioctls;
* `mmap`/`munmap` with the kind of descriptor (kfd, render node, anonymous);
* at each doorbell write, `memwrite`/`memwrite_runs` records (CPU-written GPU-visible memory since
  the last capture, from the WriteTracker: one record per allocation, its written page runs with
  their bytes inline, gathered with one copy and never hashed; limited to live allocations, never
  the rings or the queue read/write pointer slots) and then a `submit` record: the ring bytes
  between the queue's previous and new write pointer (wrap handled) and the indirect buffers
  those packets point at;
* the driver's annotations: `signal`, `wait` (and after a successful CPU wait, `checksum`
  records of the host-visible allocations the GPU may have written), `codeobj` (the ELF as a
  blob), markers.

Why "collect before, refresh after": the GPU may write memory during a doorbell (the emulated GPU
runs there) or while the CPU waits. CPU writes are collected just before such a call; after it,
ranges through which the tracker would mistake GPU writes for CPU writes (the emulator writes
USERPTR memory at its CPU address; compare-tracked device mappings on a real GPU) are refreshed,
so a memwrite holds what the CPU wrote, not what the GPU produced.

Recording must never break the recorded program: bookkeeping failures are reported once on
stderr and in the footer notes, and the call goes through unchanged; errors of the wrapped port
(errno, OSError, PortError) reach the caller exactly as they would without recording.

The submission path (doorbell, capture, the signal/wait annotations, the checksum pass) runs for
every submission, so it is written for speed: state derived from the CPU mappings (the
allocations the checksum pass covers, CPU addresses of rings and queue pointers) is cached until
a mapping changes, and the common cases (nothing written, one page of an allocation changed by
the GPU, as last time) take a few calls. Compression, CRCs and file writes happen on the trace
writer's thread (`TraceWriter(background=True)`).
"""
from __future__ import annotations

import bisect
import ctypes
import os
import threading
import time
import zlib

import numpy as np

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError
from kfdtrace.packets import aql, decode_stream, pm4, sdma
from kfdtrace.port.base import Port

PAGE = 4096
MAP_ANONYMOUS = 0x20
PROT_READ = 0x1
#: byte strings up to this size stay inline in a record; larger ones become blobs
INLINE_MAX = 256
#: memwrites are split into pieces of at most this many bytes (bounded blocks, bounded memory)
MEMWRITE_PIECE = 16 << 20
#: allocations up to this size keep a copy of their last checksummed contents: a memcmp (about
#: 15x faster than crc32) then tells which pages need a new crc32 and record at a wait
SHADOW_MAX = 256 << 20

F = abi.AllocFlags
QT = abi.QueueType
#: queue type -> (record type name, engine, bytes per pointer unit)   (reference §1.7)
QUEUE_KINDS = {
    QT.COMPUTE: ("compute", "pm4", 4),
    QT.SDMA: ("sdma", "sdma", 1),
    QT.COMPUTE_AQL: ("compute_aql", "aql", 64),
    QT.SDMA_XGMI: ("sdma_xgmi", "sdma", 1),
    QT.SDMA_BY_ENG_ID: ("sdma_by_eng_id", "sdma", 1),
}
#: ioctls during which the GPU may consume CPU-written memory or produce its own writes
GPU_SYNC_IOCTLS = {"WAIT_EVENTS", "SET_EVENT"}
TYPED_IOCTLS = {"ALLOC_MEMORY_OF_GPU", "FREE_MEMORY_OF_GPU", "CREATE_QUEUE", "DESTROY_QUEUE",
                "CREATE_EVENT", "WAIT_EVENTS", "ACQUIRE_VM"}

# Packets that reference indirect buffers, from the packet tables (one place says which):
# the byte to look for in each dword (PM4: the IT opcode in bits 15:8; SDMA: the op in bits 7:0)
_PM4_IB_OPS = bytes(sorted({lay.opcode for lay in pm4.PACKETS if getattr(lay, "refs", None)}))
_SDMA_IB_OPS = bytes(sorted({lay.op for lay in sdma.PACKETS if getattr(lay, "refs", None)}))
_AQL_IB_FMTS = bytes(sorted({lay.fmt for lay in aql.PACKETS if getattr(lay, "refs", None)}))
#: engine -> (first byte, stride, those byte values) of the scan
_IB_SCAN = {"pm4": (1, 4, _PM4_IB_OPS), "sdma": (0, 4, _SDMA_IB_OPS), "aql": (2, 64, _AQL_IB_FMTS)}


def domain_of(flags: int) -> str:
    for bit, name in ((F.VRAM, "vram"), (F.GTT, "gtt"), (F.USERPTR, "userptr"),
                      (F.DOORBELL, "doorbell"), (F.MMIO_REMAP, "mmio")):
        if flags & bit:
            return name
    return "unknown"


# -- reading process memory without risking a crash -----------------------------------------------
class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_memcmp = _libc.memcmp
_memcmp.restype = ctypes.c_int
_memcmp.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
_vm_readv = _libc.process_vm_readv
_vm_readv.restype = ctypes.c_ssize_t
_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_iovec), ctypes.c_ulong, ctypes.POINTER(_iovec),
                      ctypes.c_ulong, ctypes.c_ulong]


_mem = {"fd": None}


def _forget_mem_fd() -> None:      # a forked child must not read its parent through this fd
    fd, _mem["fd"] = _mem["fd"], None
    if fd not in (None, -1):
        try:
            os.close(fd)
        except OSError:
            pass


os.register_at_fork(after_in_child=_forget_mem_fd)


def safe_read(addr: int, size: int) -> bytes | None:
    """`size` bytes at `addr` of this process, or None if they cannot be read. Pointers in
    ioctl arguments and packets are the program's, possibly wrong: reading them through
    /proc/self/mem (or process_vm_readv where that is unavailable) fails instead of faulting."""
    if size <= 0:
        return b""
    if addr <= 0 or addr + size > 1 << 63:
        return None
    fd = _mem["fd"]
    if fd is None:
        try:
            fd = os.open("/proc/self/mem", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = -1
        _mem["fd"] = fd
    if fd >= 0:
        try:
            data = os.pread(fd, size, addr)
            return data if len(data) == size else None
        except OSError:
            return None
    buf = ctypes.create_string_buffer(size)
    local, remote = _iovec(ctypes.addressof(buf), size), _iovec(addr, size)
    return buf.raw if _vm_readv(os.getpid(), local, 1, remote, 1, 0) == size else None


# -- bookkeeping types -------------------------------------------------------------------------------
class Alloc:
    """A live GPU allocation and its CPU mapping (if any)."""

    __slots__ = ("handle", "gpu_id", "va", "size", "domain", "flags", "mmap_offset", "cpu",
                 "cpu_len", "readable", "role", "fresh", "tracked", "digest", "buf", "shadow", "shadow_addr",
                 "pages64", "shadow64", "shadow_mv", "live_mv", "hot")

    def __init__(self, handle, gpu_id, va, size, domain, flags, mmap_offset):
        self.handle, self.gpu_id, self.va, self.size = handle, gpu_id, va, size
        self.domain, self.flags, self.mmap_offset = domain, flags, mmap_offset
        self.cpu: int | None = None      # CPU address of the live mapping
        self.cpu_len = 0
        self.readable = False
        self.role: str | None = None     # ring, queue_ptrs, eop, cwsr, event_page, signals: not checksummed
        self.fresh = False               # tracked since the last collect: zero pages are elided
        self.tracked = False
        self.digest: int | None = None   # crc32 in the last checksum record
        self.buf = None                  # ctypes view of the CPU mapping (for checksums)
        self.shadow = None               # numpy copy of the contents at the last checksums
        self.shadow_addr = 0
        self.pages64 = self.shadow64 = None  # both as (pages, 512) u64 rows, for the compare
        self.shadow_mv = None             # memoryview of the copy (slices for crc32)
        self.live_mv = None               # and of the CPU mapping (slice copies, no libffi call)
        self.hot: list[tuple[int, int]] = []  # page runs that changed at the last checksums

    def cpu_of(self, va: int) -> int | None:
        """CPU address of GPU address `va` inside this allocation, if CPU-mapped there."""
        if self.cpu is None or not self.va <= va < self.va + self.cpu_len:
            return None
        return self.cpu + (va - self.va)


class Queue:
    __slots__ = ("queue_id", "gpu_id", "type", "engine", "unit", "ring_base", "ring_size",
                 "wptr_addr", "rptr_addr", "doorbell_offset", "doorbell", "family", "wptr",
                 "submits", "eop", "cwsr")

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)
        self.doorbell = None
        self.submits = 0


class PtrPage:
    """A CPU page holding queue read/write pointers, compared with a copy (pointer slots masked)
    at each capture instead of being tracked (see RecordingPort._exclude_queue). The compare
    takes the page as bytes (one memcpy), puts the slots' current bytes into a copy of the
    shadow and compares the two whole: cheaper than slices or calls into libc."""

    __slots__ = ("alloc", "page", "slots", "shadow", "segments", "live", "expect", "cuts")

    def __init__(self, alloc: Alloc, page: int):
        self.alloc, self.page = alloc, page
        self.slots: list[tuple[int, int, object]] = []    # (start, end) offsets in the page, queue
        self.live = (ctypes.c_char * PAGE).from_address(page)
        self.shadow = self.live.raw                       # the page as last recorded
        self.expect = bytearray(self.shadow)              # shadow with the slots' current bytes
        self.segments: list[tuple[int, int]] = [(0, PAGE)]
        self.cuts: list[tuple[int, int]] = []

    def reset(self) -> None:
        """Slots changed: recompute the compared segments and take the page as it is now."""
        self.cuts = cuts = sorted((s, e) for s, e, _ in self.slots)
        self.segments, pos = [], 0
        for s, e in cuts + [(PAGE, PAGE)]:
            if pos < s:
                self.segments.append((pos, s))
            pos = max(pos, e)
        self.shadow = self.live.raw
        self.expect = bytearray(self.shadow)

    def changed(self) -> bool:
        """Did a byte outside the pointer slots change? (The slots' current bytes are copied into
        `expect`, then the page is compared whole: one memcmp, no slices of the page.)"""
        cur, ex = self.live.raw, self.expect
        for s, e in self.cuts:
            ex[s:e] = cur[s:e]
        return cur != ex

    def take(self) -> list[tuple[int, bytes]]:
        """(offset, bytes) of the segments outside the pointer slots that changed; updates the copy."""
        cur, sh, out = self.live.raw, self.shadow, []
        for s, e in self.segments:
            if cur[s:e] != sh[s:e]:
                out.append((s, cur[s:e]))
        if out:         # the copy takes the changed segments only: the slots keep their old bytes
            parts, pos = [], 0
            for s, data in out:
                parts += (sh[pos:s], data)
                pos = s + len(data)
            self.shadow = b"".join(parts) + sh[pos:]
            self.expect = bytearray(self.shadow)
        return out


class _Index:
    """Non-overlapping [start, end) intervals -> object, with lookup by address (bisect)."""

    def __init__(self):
        self.starts: list[int] = []
        self.items: list[tuple[int, int, object]] = []

    def add(self, start: int, end: int, obj) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.items.insert(i, (start, end, obj))

    def remove(self, obj) -> None:
        for i, it in enumerate(self.items):
            if it[2] is obj:
                del self.starts[i], self.items[i]
                return

    def find(self, addr: int):
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0:
            s, e, obj = self.items[i]
            if s <= addr < e:
                return obj
        return None

    def overlapping(self, start: int, end: int) -> list:
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        out = []
        while i < len(self.items) and self.items[i][0] < end:
            if self.items[i][1] > start:
                out.append(self.items[i][2])
            i += 1
        return out

    def items_overlapping(self, start: int, end: int) -> list[tuple[int, int, object]]:
        i = max(0, bisect.bisect_right(self.starts, start) - 1)
        out = []
        while i < len(self.items) and self.items[i][0] < end:
            if self.items[i][1] > start:
                out.append(self.items[i])
            i += 1
        return out

    def next_start(self, addr: int) -> int | None:
        i = bisect.bisect_right(self.starts, addr)
        return self.starts[i] if i < len(self.starts) else None


def _page_floor(x: int) -> int:
    return x & ~(PAGE - 1)


def _page_ceil(x: int) -> int:
    return (x + PAGE - 1) & ~(PAGE - 1)


# -- captured memory as (runs, data): runs an int64 (k, 2) array of sorted, disjoint [start, end)
# CPU addresses, data a uint8 array of their bytes concatenated ------------------------------------
def _cut(runs: np.ndarray, data: np.ndarray, lo: int, hi: int):
    """The part of (runs, data) inside [lo, hi), or None. Its bytes are one slice of `data` (a
    view, no copy): the runs are sorted, so an interval of addresses is an interval of data."""
    if lo >= hi:
        return None
    i0 = int(np.searchsorted(runs[:, 1], lo, side="right"))
    i1 = int(np.searchsorted(runs[:, 0], hi, side="left"))
    if i0 >= i1:
        return None
    if i0 == 0 and i1 == len(runs) and runs[0, 0] >= lo and runs[-1, 1] <= hi:
        return runs, data
    lens = runs[:i1, 1] - runs[:i1, 0]
    sub = runs[i0:i1].copy()
    sub[0, 0], sub[-1, 1] = max(int(sub[0, 0]), lo), min(int(sub[-1, 1]), hi)
    d0 = int(lens[:i0].sum()) + int(sub[0, 0] - runs[i0, 0])
    d1 = int(lens[:i1 - 1].sum()) + int(sub[-1, 1] - runs[i1 - 1, 0])
    return sub, data[d0:d1]


def _without(runs: np.ndarray, data: np.ndarray, lo: int, hi: int):
    """(runs, data) less the bytes in [lo, hi), or None if nothing is left."""
    parts = [p for p in (_cut(runs, data, -1, lo), _cut(runs, data, hi, 1 << 63)) if p is not None]
    if len(parts) < 2:
        return parts[0] if parts else None
    return np.concatenate([parts[0][0], parts[1][0]]), np.concatenate([parts[0][1], parts[1][1]])


def _from_pieces(pieces: list[tuple[int, bytes]]):
    """(address, bytes) pieces (sorted, disjoint) as (runs, data), or None."""
    if not pieces:
        return None
    runs = np.array([(a, a + len(b)) for a, b in pieces], np.int64)
    return runs, np.frombuffer(b"".join(b for _, b in pieces), np.uint8)


def _nonzero(runs: np.ndarray, data: np.ndarray):
    """(runs, data) without the pages (of the address space) that are all zero, or None. Used for
    the first capture of a fresh allocation, whose initial contents are zero: its untouched pages
    need not be stored."""
    if not ((runs % PAGE) == 0).all():          # unaligned: page by page, per run
        pos, pieces = 0, []
        for a, b in runs.tolist():
            pieces += _nonzero_pages(a, data[pos:pos + b - a].tobytes())
            pos += b - a
        return _from_pieces(pieces)
    pages = data.reshape(-1, PAGE)
    keep = pages.view(np.uint64).any(axis=1)
    if keep.all():
        return runs, data
    if not keep.any():
        return None
    npages = (runs[:, 1] - runs[:, 0]) // PAGE
    first = np.cumsum(npages) - npages                     # data page of each run's first page
    addr = np.repeat(runs[:, 0] - first * PAGE, npages) + np.arange(len(pages), dtype=np.int64) * PAGE
    addr = addr[keep]
    cut = np.flatnonzero(np.diff(addr) != PAGE)
    starts = np.concatenate((addr[:1], addr[cut + 1]))
    ends = np.concatenate((addr[cut], addr[-1:])) + PAGE
    return np.stack([starts, ends], axis=1), pages[keep].reshape(-1)


def _run_table(runs: np.ndarray) -> bytes:
    """The `runs` field of a memwrite_runs record: [start, end) offsets from the first run, as
    little-endian u64 pairs (the int64 rows as they are: non-negative, x86/arm64 byte order)."""
    return (runs - runs[0, 0]).view(np.uint64).astype("<u8", copy=False).tobytes()   # (no copy on LE)


def _differing_pages(cur: int, old: int, size: int) -> list[int]:
    """The pages of [0, size) where memory at `cur` and `old` differs, known to differ somewhere:
    halve with memcmp, testing a right half only when its left half differs too (one changed
    page among n costs about log2(n) to 2*log2(n) calls)."""
    out, todo = [], [(0, -(-size // PAGE))]
    while todo:
        lo, hi = todo.pop()
        if hi - lo == 1:
            out.append(lo)
            continue
        mid = (lo + hi) // 2
        left = _memcmp(cur + lo * PAGE, old + lo * PAGE, (mid - lo) * PAGE)
        if not left or _memcmp(cur + mid * PAGE, old + mid * PAGE, min(hi * PAGE, size) - mid * PAGE):
            todo.append((mid, hi))
        if left:
            todo.append((lo, mid))
    return out


def _hot_runs(cur: int, old: int, size: int, hot: list[tuple[int, int]]):
    """`hot` (the page runs that differed last time: the GPU tends to write the same places,
    a timeline's value, a result buffer) if memory at `cur` and `old`, known to differ, differs
    only there; else None. Costs one memcmp per gap between the hot runs, none per hot run:
    for a single hot run the difference can only lie inside it."""
    if not hot:
        return None
    pos = 0
    for lo, hi in hot + [(-(-size // PAGE), 0)]:
        if pos < lo and _memcmp(cur + pos * PAGE, old + pos * PAGE, min(lo * PAGE, size) - pos * PAGE):
            return None
        pos = hi
    if len(hot) == 1:
        return hot
    return [(lo, hi) for lo, hi in hot
            if _memcmp(cur + lo * PAGE, old + lo * PAGE, min(hi * PAGE, size) - lo * PAGE)] or None


def _runs_of(pages: list[int]) -> list[tuple[int, int]]:
    """[start, end) runs of a list of distinct page numbers."""
    out = []
    for p in sorted(pages):
        if out and out[-1][1] == p:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index runs of the true values of a bool array."""
    idx = np.flatnonzero(flags)
    if not len(idx):
        return []
    if len(idx) == 1:
        return [(int(idx[0]), int(idx[0]) + 1)]
    breaks = np.flatnonzero(np.diff(idx) != 1)
    starts = np.concatenate((idx[:1], idx[breaks + 1])).tolist()
    ends = (np.concatenate((idx[breaks], idx[-1:])) + 1).tolist()
    return list(zip(starts, ends))


def _nonzero_pages(addr: int, data: bytes) -> list[tuple[int, bytes]]:
    """The parts of `data` (at `addr`) that lie on pages (of the address space) not all zero,
    as contiguous runs. Used for the first capture of a fresh allocation, whose initial contents
    are zero: its untouched pages need not be stored."""
    n = len(data)
    if n == 0:
        return []
    first = min(n, PAGE - addr % PAGE)
    if n == first:
        return [] if data.count(0) == n else [(addr, data)]
    bounds = np.array([0] + list(range(first, n, PAGE)), np.int64)
    nz = np.logical_or.reduceat(np.frombuffer(data, np.uint8) != 0, bounds).tolist()
    out, start = [], None
    for i, keep in enumerate(nz + [False]):
        b = int(bounds[i]) if i < len(bounds) else n
        if keep and start is None:
            start = b
        elif not keep and start is not None:
            out.append((addr + start, data[start:b]))
            start = None
    return out


class RecordingPort(Port):
    """A Port that forwards every call to `inner` and records it through `recorder`
    (a `kfdtrace.record.recorder.Recorder`: the trace writer, the write tracker, statistics)."""

    def __init__(self, inner: Port, recorder):
        self.inner = inner
        # the host and emulated ports ignore annotations: not passing them on saves a call per
        # signal and wait (a wrapped port that does something with them still gets them)
        self._inner_annotates = getattr(type(inner), "annotate", Port.annotate) is not Port.annotate
        self.rec = recorder
        self.backend = inner.backend
        self._lock = threading.RLock()
        self._now = recorder.writer.now if recorder.writer is not None else recorder.now
        self._w = recorder._write                      # write one record (never raises)
        self.kfd_fds: set[int] = set()
        self.render_fds: dict[int, int | None] = {}   # fd -> gpu_id
        self.paths: dict[int, str] = {}
        self.allocs: dict[int, Alloc] = {}
        self.by_va = _Index()                          # GPU VA -> Alloc
        self.by_cpu = _Index()                         # CPU address -> Alloc (live mappings)
        self.queues: dict[int, Queue] = {}
        self.doorbells: dict[int, Queue] = {}          # doorbell CPU address -> queue
        self.doorbell_maps: list[tuple[int, int, int]] = []   # (cpu start, length, mmap offset)
        self.excluded = _Index()                       # CPU byte ranges never memwritten (rings)
        self.ptr_pages: dict[int, PtrPage] = {}        # CPU page -> pages holding queue pointers
        self.families: dict[int, object] = recorder.families_by_gpu()
        self.render_minor_gpu = recorder.render_minors()
        self.gpu_dirty = False                         # GPU work since the last checksum pass
        self.fresh_allocs = False                      # an allocation was tracked since the last capture
        self.userptr_tracked: set[int] = set()         # handles of tracked USERPTR allocations
        self.event_page: Alloc | None = None
        self.closed = False
        # derived from the CPU mappings, rebuilt after any of them changes (see _mappings_changed)
        self._sum_allocs: list[Alloc] | None = None    # allocations the checksum pass covers
        self._ptrs: dict[int, object] = {}             # GPU VA -> ctypes c_uint64 at its CPU address
        self._rings: dict[Queue, int | None] = {}      # queue -> CPU address of its ring
        self._compare = recorder.memtrack_method == "compare"
        w = recorder.writer
        self._handed = w.pending if w is not None else ()   # blocks waiting for the writer thread
        self._wake = w.wake if w is not None else (lambda: None)
        recorder.port_opened(self)

    # -- helpers ----------------------------------------------------------------------------------
    def _bytes_field(self, data):
        if data is None:
            return None
        return bytes(data) if len(data) <= INLINE_MAX else self.rec.blob(data)

    def _read(self, addr: int, size: int) -> bytes | None:
        """Bytes at a GPU/CPU address: straight from a known readable CPU mapping, else safely."""
        a = self.by_va.find(addr)
        if a is not None:
            cpu = a.cpu_of(addr)
            if cpu is not None and a.readable and addr + size <= a.va + a.cpu_len:
                return ctypes.string_at(cpu, size)
        return safe_read(addr, size)

    def _family(self, gpu_id: int):
        return self.families.get(gpu_id)

    # -- files ------------------------------------------------------------------------------------
    def open(self, path: str, flags: int = os.O_RDWR | os.O_CLOEXEC) -> int:
        t = self._now()
        try:
            fd = self.inner.open(path, flags)
        except OSError as e:
            self._w("open", t=t, path=path, fd=-1, flags=flags, errno=e.errno or 0)
            raise
        with self._lock:
            self.paths[fd] = path
            norm = os.path.normpath(path)
            if norm == "/dev/kfd":
                self.kfd_fds.add(fd)
            elif norm.startswith("/dev/dri/renderD"):
                try:
                    self.render_fds[fd] = self.render_minor_gpu.get(int(norm[len("/dev/dri/renderD"):]))
                except ValueError:
                    self.render_fds[fd] = None
        self._w("open", t=t, path=path, fd=fd, flags=flags, errno=0)
        return fd

    def close(self, fd: int) -> None:
        t = self._now()
        path = self.paths.get(fd)
        try:
            self.inner.close(fd)
        except OSError as e:
            self._w("close", t=t, fd=fd, errno=e.errno or 0, **({"path": path} if path else {}))
            raise
        with self._lock:
            self.paths.pop(fd, None)
            self.kfd_fds.discard(fd)
            self.render_fds.pop(fd, None)
        self._w("close", t=t, fd=fd, errno=0, **({"path": path} if path else {}))

    def read_file(self, path: str) -> bytes:
        return self.inner.read_file(path)

    def listdir(self, path: str) -> list[str]:
        return self.inner.listdir(path)

    # -- ioctl ------------------------------------------------------------------------------------
    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        d = abi.lookup(request) if fd in self.kfd_fds else None
        name = d.name if d is not None else None
        arg_in = bytes(arg)
        pre = None
        if name in abi.POINTER_PAYLOADS or name in TYPED_IOCTLS:
            pre = self.rec.guard(self._pre_ioctl, name, request, arg_in)
        # the emulated GPU runs inside every ioctl once there are queues, writing USERPTR memory
        # at its CPU address: collect before, refresh after, as around a doorbell
        sync = bool(self.queues) and (name in GPU_SYNC_IOCTLS or (self.backend == "emu"
                                                                  and bool(self.userptr_tracked)))
        if sync:
            self.rec.guard(self.capture, name)
            if name == "WAIT_EVENTS":
                self.rec.wake_writer()          # the thread sleeps now: the writer thread may go
        t = self._now()
        err = self.inner.ioctl(fd, request, arg)
        dur = self._now() - t
        arg_out = bytes(arg)
        fields = {"fd": fd, "request": request, "nr": abi.ioc_nr(request),
                  "name": f"AMDKFD_IOC_{name}" if name else "unknown", "arg_in": arg_in,
                  "arg_out": arg_out, "ret": -1 if err else 0, "errno": err, "dur_ns": dur}
        if pre is None:
            self._w("ioctl", t=t, **fields)
        else:
            args_out = self.rec.guard(self._out_payloads, name, request, err, arg_out, pre, fields)
            with self._lock:
                self._w("ioctl", t=t, **fields)
                if args_out is not None:
                    self.rec.guard(self._typed, name, err, pre[0], args_out, pre[2])
        if sync:
            self.rec.guard(self.refresh_gpu_written, name not in GPU_SYNC_IOCTLS)
        return err

    def _pre_ioctl(self, name: str, request: int, arg_in: bytes):
        """The argument struct and the pointer payloads the kernel reads, before the call."""
        args = abi.parse_args(request, arg_in)
        payloads, raw = {}, {}
        for p, addr, size in abi.payload_extents(name, args):
            if p.direction in ("in", "inout"):
                raw[p.ptr_field] = data = safe_read(addr, size)
                payloads[p.ptr_field] = {"field": p.ptr_field, "addr": addr,
                                         "data_in": self._bytes_field(data), "data_out": None}
        return args, payloads, raw

    def _out_payloads(self, name, request, err, arg_out, pre, fields):
        """The payloads the kernel wrote (counts re-read after the call: the kernel may update
        them); adds `payloads` to the ioctl record; returns the argument struct after the call."""
        args_in, payloads, _ = pre
        args = abi.parse_args(request, arg_out)
        if not err:
            for p, addr, size in abi.payload_extents(name, args):
                if p.direction in ("out", "inout"):
                    ent = payloads.setdefault(p.ptr_field, {"field": p.ptr_field, "addr": addr,
                                                            "data_in": None, "data_out": None})
                    ent["data_out"] = self._bytes_field(safe_read(addr, size))
        if payloads:
            fields["payloads"] = list(payloads.values())
        return args

    def _typed(self, name, err, args_in, args, raw) -> None:
        """The typed records an ioctl implies (written right after its ioctl record)."""
        if name == "WAIT_EVENTS":
            size, off = ctypes.sizeof(abi.kfd_event_data), abi.kfd_event_data.event_id.offset
            data = raw.get("events_ptr") or b""
            ids = [int.from_bytes(data[i + off:i + off + 4], "little") for i in range(0, len(data), size)]
            self._w("event_wait", events=ids, result=int(args.wait_result),
                    timeout=int(args_in.timeout), wait_all=bool(args_in.wait_for_all), errno=err)
        if err:
            return
        if name == "ALLOC_MEMORY_OF_GPU":
            self._on_alloc(args_in, args)
        elif name == "FREE_MEMORY_OF_GPU":
            self._on_free(args_in.handle)
        elif name == "CREATE_QUEUE":
            self._on_create_queue(args)
        elif name == "DESTROY_QUEUE":
            q = self.queues.pop(args_in.queue_id, None)
            if q is not None:
                self._rings.pop(q, None)
                self._unexclude_queue(q)
                if q.doorbell is not None:
                    self.doorbells.pop(q.doorbell, None)
            self._w("queue_destroy", queue_id=args_in.queue_id)
        elif name == "CREATE_EVENT":
            a = self.allocs.get(args_in.event_page_offset) if args_in.event_page_offset else None
            if a is not None:           # dGPU: this BO becomes KFD's signal page (reference §8)
                a.role = "event_page"
                self._mappings_changed()
                self.event_page = a
                self._untrack(a)
        elif name == "ACQUIRE_VM":
            self.render_fds[args_in.drm_fd] = args_in.gpu_id

    def _on_alloc(self, args_in, args) -> None:
        flags = int(args.flags)
        dom = domain_of(flags)
        a = Alloc(args.handle, args.gpu_id, args.va_addr, args.size, dom, flags, args.mmap_offset)
        self.allocs[a.handle] = a
        if a.va:
            self.by_va.add(a.va, a.va + a.size, a)
        self._w("alloc", gpu_id=a.gpu_id, handle=a.handle, va=a.va, size=a.size, domain=dom,
                flags=flags, mmap_offset=a.mmap_offset)
        if dom == "userptr":
            # the CPU address is what userspace passed in mmap_offset (kfd_ioctl.h)
            self._map_cpu(a, args_in.mmap_offset, a.size, readable=True)

    def _on_free(self, handle: int) -> None:
        a = self.allocs.pop(handle, None)
        if a is not None:
            self._unmap_cpu(a)
            self.by_va.remove(a)
            if a is self.event_page:
                self.event_page = None
        self._w("free", handle=handle, gpu_id=abi.handle_gpu_id(handle))

    def _on_create_queue(self, args) -> None:
        qtype = int(args.queue_type)
        tname, engine, unit = QUEUE_KINDS.get(qtype, (f"type{qtype}", "unknown", 1))
        q = Queue(queue_id=args.queue_id, gpu_id=args.gpu_id, type=tname, engine=engine, unit=unit,
                  ring_base=args.ring_base_address, ring_size=args.ring_size,
                  wptr_addr=args.write_pointer_address, rptr_addr=args.read_pointer_address,
                  doorbell_offset=args.doorbell_offset, family=self._family(args.gpu_id),
                  eop=getattr(args, "eop_buffer_address", 0),
                  cwsr=getattr(args, "ctx_save_restore_address", 0))
        q.wptr = self._u64(q.wptr_addr) or 0
        self.queues[q.queue_id] = q
        for addr, role in ((q.ring_base, "ring"), (q.wptr_addr, "queue_ptrs"),
                           (q.rptr_addr, "queue_ptrs"), (q.eop, "eop"), (q.cwsr, "cwsr")):
            a = self.by_va.find(addr) if addr else None
            if a is not None and a.role is None:
                a.role = role
                self._mappings_changed()
                if role in ("eop", "cwsr"):     # hardware state the CP writes: never memwrites
                    self._untrack(a)
        self._exclude_queue(q)
        self._resolve_doorbell(q)
        self._w("queue_create", queue_id=q.queue_id, gpu_id=q.gpu_id, type=tname,
                ring_base=q.ring_base, ring_size=q.ring_size, wptr_addr=q.wptr_addr,
                rptr_addr=q.rptr_addr, doorbell_offset=q.doorbell_offset, engine=engine,
                doorbell=q.doorbell, eop_address=q.eop, ctx_save_restore_address=q.cwsr,
                sdma_engine_id=getattr(args, "sdma_engine_id", 0), wptr=q.wptr)

    def _exclude_queue(self, q: Queue) -> None:
        """Rings are recorded by the submit records, never as memwrites. The pages holding the
        queue's read/write pointers are watched here instead of by the WriteTracker: the write
        pointer is stored at every submission and belongs to the queue protocol (the submit
        records carry it), so those pages are compared with a copy in which the pointer slots
        are masked, and only other bytes the CPU changed there become memwrites."""
        self._unexclude_queue(q)
        ring = self.by_va.find(q.ring_base)
        cpu = ring.cpu_of(q.ring_base) if ring is not None else None
        if cpu is not None:
            self.excluded.add(cpu, cpu + q.ring_size, q)
            lo, hi = _page_ceil(cpu), _page_floor(cpu + q.ring_size)
            if lo < hi:
                self.rec.untrack(lo, hi - lo)
        slots = []
        for addr in (q.wptr_addr, q.rptr_addr):
            a = self.by_va.find(addr)
            c = a.cpu_of(addr) if a is not None else None
            if c is not None and a.readable and _page_floor(c) + PAGE <= a.cpu + a.cpu_len:
                slots.append((a, c))
        if any(_page_floor(c) not in self.ptr_pages for _, c in slots):
            self.capture("queue")      # what the tracker holds for those pages goes out first
        for a, c in slots:
            page = _page_floor(c)
            pp = self.ptr_pages.get(page)
            if pp is None:
                self.rec.untrack(page, PAGE)
                pp = self.ptr_pages[page] = PtrPage(a, page)
            pp.slots.append((c - page, c - page + 8, q))
            pp.reset()

    def _unexclude_queue(self, q: Queue) -> None:
        self.excluded.remove(q)
        for pp in self.ptr_pages.values():
            if any(s[2] is q for s in pp.slots):
                pp.slots[:] = [s for s in pp.slots if s[2] is not q]
                pp.reset()

    def _resolve_doorbell(self, q: Queue) -> bool:
        for start, length, off in self.doorbell_maps:
            if off <= q.doorbell_offset < off + length:
                q.doorbell = start + (q.doorbell_offset - off)
                self.doorbells[q.doorbell] = q
                return True
        return False

    # -- CPU mappings and write tracking ------------------------------------------------------------
    def _mappings_changed(self) -> None:
        """A CPU mapping or an allocation's role changed: forget what was derived from them."""
        self._sum_allocs = None
        self._ptrs.clear()
        self._rings.clear()

    def _map_cpu(self, a: Alloc, cpu: int, length: int, readable: bool) -> None:
        self._unmap_cpu(a)
        self._mappings_changed()
        a.cpu, a.cpu_len, a.readable = cpu, min(length, a.size), readable
        a.buf = (ctypes.c_char * a.cpu_len).from_address(cpu) if readable else None
        self.by_cpu.add(cpu, cpu + a.cpu_len, a)
        if a.role not in ("event_page", "eop", "cwsr") and a.domain not in ("doorbell", "mmio"):
            kind = "device" if self.backend == "kfd" and a.domain != "userptr" else "anon"
            a.tracked = a.fresh = self.rec.track(cpu, a.cpu_len, kind)
            self.fresh_allocs |= a.fresh
            if a.tracked and a.domain == "userptr":
                self.userptr_tracked.add(a.handle)

    def _untrack(self, a: Alloc) -> None:
        if a.tracked and a.cpu is not None:
            self.rec.untrack(a.cpu, a.cpu_len)
        a.tracked = False
        self.userptr_tracked.discard(a.handle)

    def _unmap_cpu(self, a: Alloc) -> None:
        if a.cpu is None:
            return
        self._mappings_changed()
        for page in [p for p, pp in self.ptr_pages.items() if pp.alloc is a]:
            del self.ptr_pages[page]
        self._untrack(a)
        self.by_cpu.remove(a)
        a.cpu, a.cpu_len, a.readable, a.buf, a.shadow, a.shadow_addr = None, 0, False, None, None, 0
        a.pages64 = a.shadow64 = a.shadow_mv = a.live_mv = None
        a.hot = []

    def _cpu_range_replaced(self, start: int, length: int) -> None:
        """A new mapping or munmap over [start, start+length): allocations mapped there lose
        their CPU mapping (the driver maps PROT_NONE over a buffer before freeing it)."""
        for a in self.by_cpu.overlapping(start, start + length):
            self._unmap_cpu(a)
        for start_, length_, off in list(self.doorbell_maps):
            if start_ < start + length and start < start_ + length_:
                self.doorbell_maps.remove((start_, length_, off))

    # -- memory -------------------------------------------------------------------------------------
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        t = self._now()
        target = ("anon" if fd == -1 or flags & MAP_ANONYMOUS else
                  "kfd" if fd in self.kfd_fds else "render" if fd in self.render_fds else "other")
        fields = {"addr": addr, "length": length, "prot": prot, "flags": flags, "fd": fd,
                  "offset": offset, "target": target}
        try:
            r = self.inner.mmap(addr, length, prot, flags, fd, offset)
        except OSError as e:
            self._w("mmap", t=t, result=-1, errno=e.errno or 0, **fields)
            raise
        with self._lock:
            extra = self.rec.guard(self._on_mmap, r, length, prot, flags, fd, offset, target) or {}
            self._w("mmap", t=t, result=r, errno=0, **fields, **extra)
        return r

    def _on_mmap(self, r, length, prot, flags, fd, offset, target) -> dict:
        self._cpu_range_replaced(r, length)
        if target == "render":
            gpu = self.render_fds.get(fd)
            a = next((a for a in self.allocs.values() if a.mmap_offset == offset
                      and a.domain in ("vram", "gtt", "doorbell") and (gpu is None or a.gpu_id == gpu)), None)
            if a is not None:
                self._map_cpu(a, r, length, readable=bool(prot & PROT_READ))
                if a.role in ("ring", "queue_ptrs"):
                    self._reexclude(a)
                return {"alloc": a.handle}
        elif target == "kfd":
            mtype, gpu_id, _ = abi.split_kfd_mmap_offset(offset & ((1 << 64) - 1))
            if mtype == abi.KFD_MMAP_TYPE_DOORBELL:
                self.doorbell_maps.append((r, length, offset & ((1 << 64) - 1)))
                resolved = [{"queue_id": q.queue_id, "doorbell": q.doorbell}
                            for q in self.queues.values() if q.doorbell is None and self._resolve_doorbell(q)]
                return {"mapping": "doorbell", "gpu_id": gpu_id, "queues": resolved}
            return {"mapping": abi.MMAP_TYPE_NAMES.get(mtype, "?").lower(), "gpu_id": gpu_id}
        return {}

    def _reexclude(self, a: Alloc) -> None:
        """Queues created before their ring/pointer buffers were CPU-mapped."""
        for q in self.queues.values():
            if a.va <= q.ring_base < a.va + a.size or a.va <= q.wptr_addr < a.va + a.size \
                    or a.va <= q.rptr_addr < a.va + a.size:
                self._exclude_queue(q)

    def munmap(self, addr: int, length: int) -> None:
        t = self._now()
        try:
            self.inner.munmap(addr, length)
        except OSError as e:
            self._w("munmap", t=t, addr=addr, length=length, errno=e.errno or 0)
            raise
        with self._lock:
            self.rec.guard(self._cpu_range_replaced, addr, length)
            self._w("munmap", t=t, addr=addr, length=length, errno=0)

    # -- memory capture -------------------------------------------------------------------------------
    def capture(self, reason: str = "submit") -> int:
        """Write memwrite/memwrite_runs records for what the CPU wrote since the last capture
        (one per allocation and capture, its pages gathered by the tracker with one copy);
        returns the bytes captured. It runs before every submission, so the common case, nothing
        written, is kept short (and its time is not added to the `capture_s` statistic)."""
        t0 = time.perf_counter()
        with self._lock:
            caps = self.rec.collect(self.fresh_allocs)
            ptr = None
            for pp in self.ptr_pages.values():      # pointer pages: compared, not tracked
                if pp.changed():
                    ptr = (ptr or []) + [pp]
            if not caps and ptr is None and not self.fresh_allocs:
                self.rec.stats["captures"] += 1
                return 0
            return self._capture(caps, ptr or (), t0)

    def _capture(self, caps: list, ptr, t0: float) -> int:
        total = nruns = 0
        for pp in ptr:
            got = _from_pieces([(pp.page + off, data) for off, data in pp.take()])
            if got is not None:
                total += self._memwrite(pp.alloc, *got)
        excl = self.excluded
        for runs, data in caps:
            nruns += len(runs)
            lo, hi = int(runs[0, 0]), int(runs[-1, 1])
            a = self.by_cpu.find(lo)
            if a is not None and hi <= a.cpu + a.cpu_len:
                parts = ((a, runs, data),)               # the common case: one allocation
            else:
                parts = [(a, *got) for s, e, a in self.by_cpu.items_overlapping(lo, hi)
                         if (got := _cut(runs, data, s, e)) is not None]
            for a, runs, data in parts:
                got = runs, data
                if excl.items:
                    for s, e, _ in excl.items_overlapping(int(runs[0, 0]), int(runs[-1, 1])):
                        got = _without(*got, s, e) if got is not None else None
                if got is not None and a.fresh:
                    got = _nonzero(*got)
                if got is not None:
                    total += self._memwrite(a, *got)
        if self.fresh_allocs:
            for a in self.allocs.values():
                a.fresh = False
            self.fresh_allocs = False
        self.rec.count_capture(time.perf_counter() - t0, total, nruns)
        return total

    def _memwrite(self, a: Alloc, runs: np.ndarray, data: np.ndarray) -> int:
        """The record(s) of `a`'s captured (runs, data): a memwrite for one run, a memwrite_runs
        for several; the bytes inline in the record (stored once, no hash: a capture is new
        data), at most MEMWRITE_PIECE per record."""
        delta = a.va - a.cpu
        if data.size > MEMWRITE_PIECE:
            pos, n = 0, 0
            while pos < data.size:
                got = self._data_slice(runs, pos, min(pos + MEMWRITE_PIECE, data.size))
                n += self._memwrite(a, got, data[pos:pos + MEMWRITE_PIECE])
                pos += MEMWRITE_PIECE
            return n
        if len(runs) == 1:          # one range: the plain memwrite every tool knows
            self.rec.write_data("memwrite", data, va=int(runs[0, 0]) + delta, size=int(data.size), alloc=a.handle)
        else:
            self.rec.write_data("memwrite_runs", data, va=int(runs[0, 0]) + delta, size=int(data.size),
                                runs=_run_table(runs), alloc=a.handle)
        return int(data.size)

    @staticmethod
    def _data_slice(runs: np.ndarray, d0: int, d1: int) -> np.ndarray:
        """The runs holding data bytes [d0, d1) (clipped)."""
        lens = runs[:, 1] - runs[:, 0]
        pos = np.cumsum(lens) - lens
        i0 = int(np.searchsorted(pos + lens, d0, side="right"))
        i1 = int(np.searchsorted(pos, d1, side="left"))
        sub = runs[i0:i1].copy()
        sub[0, 0] += d0 - pos[i0]
        sub[-1, 1] -= (pos[i1 - 1] + lens[i1 - 1]) - d1
        return sub

    def refresh_gpu_written(self, emu_only: bool = False) -> None:
        """After a call during which the GPU may have written memory that the tracker would report
        as CPU writes, take those ranges' contents as the new baseline: with the compare method,
        every range; on the emulated GPU (which runs inside doorbells and ioctls), USERPTR ranges,
        which it writes at their CPU address; on a real GPU (running asynchronously, so only
        after waits: `emu_only` skips it), the compare-tracked render-node mappings."""
        if emu_only and self.backend != "emu":
            return
        compare = self.rec.memtrack_method == "compare"
        if self.backend == "emu" and not compare and not self.userptr_tracked:
            return                          # nothing the emulated GPU writes is tracked
        for _, _, a in list(self.by_cpu.items):
            if a.tracked and (compare or (a.domain == "userptr") == (self.backend == "emu")):
                self.rec.refresh(a.cpu, a.cpu_len)

    # -- submission -------------------------------------------------------------------------------------
    def doorbell(self, addr: int, value: int) -> None:
        q = self.doorbells.get(addr)
        if q is None:
            t = self._now()
            self.inner.doorbell(addr, value)
            self._w("submit", t=t, queue_id=-1, engine="unknown", wptr_before=value, wptr_after=value,
                    dwords=b"", ibs=[], doorbell=addr, value=value,
                    error="doorbell address not mapped to a known queue")
            return
        with self._lock:
            try:
                submitted = self._submit(q, addr, value)
            except Exception as e:          # a recorder bug: reported, the doorbell still rings
                self.rec.problem("_submit", e)
                submitted = False
            self.inner.doorbell(addr, value)
            if submitted:
                self.gpu_dirty = True
                if self.userptr_tracked or self._compare:
                    self.rec.guard(self.refresh_gpu_written, True)
        if self._handed:
            self._wake()    # the GPU has its work: now the writer thread may write the capture

    def _submit(self, q: Queue, addr: int, value: int) -> bool:
        p = self._ptrs.get(q.wptr_addr)
        after = p.value if p is not None else self._u64(q.wptr_addr)
        if after is None:
            after = value
        before = q.wptr
        if after == before:
            self.rec.count("idle_doorbells")
            return False
        self.capture("submit")
        t = self._now()
        extra = {}
        nbytes, ring = (after - before) * q.unit, q.ring_size
        if nbytes < 0 or nbytes > ring:
            extra["error"] = (f"write pointer moved from {before} to {after}: more than the "
                              f"{ring}-byte ring (or backwards); recorded the whole ring")
            nbytes = ring if nbytes > 0 else 0
            pos = (after * q.unit - nbytes) % ring
        else:
            pos = (before * q.unit) % ring
        first = min(nbytes, ring - pos)
        base = self._rings.get(q, -1)
        if base == -1:                      # the ring's CPU address, while its mapping lasts
            a = self.by_va.find(q.ring_base)
            base = self._rings[q] = (a.cpu_of(q.ring_base) if a is not None and a.readable
                                     and q.ring_base + ring <= a.va + a.cpu_len else None)
        if base is not None:
            data = ctypes.string_at(base + pos, first)
            if nbytes > first:
                data += ctypes.string_at(base, nbytes - first)
        else:
            data = self._read(q.ring_base + pos, first) if first else b""
            if data is not None and nbytes > first:
                tail = self._read(q.ring_base, nbytes - first)
                data = None if tail is None else data + tail
        if data is None:
            extra["error"] = f"ring at {q.ring_base:#x} is not readable"
            data = b""
        ibs = []
        off, stride, ops = _IB_SCAN.get(q.engine, (0, 1, b""))
        if ops and data:                    # a byte scan rules out most streams without IBs
            units = data[off::stride]
            for op in ops:
                if op in units:
                    ibs = self._find_ibs(q, data)
                    break
        q.wptr = after
        q.submits += 1
        self._w("submit", t=t, queue_id=q.queue_id, engine=q.engine, wptr_before=before,
                wptr_after=after, dwords=data if len(data) <= 4096 else self.rec.blob(data),
                ibs=ibs, doorbell=addr, value=value, gpu_id=q.gpu_id, **extra)
        self.rec.stats["submits"] += 1
        return True

    def _find_ibs(self, q: Queue, data: bytes) -> list[dict]:
        """Indirect buffers the submitted packets reference, captured as blobs. A byte scan rules
        out streams that cannot hold an IB packet; only the others are decoded (with `follow`,
        which also reaches IBs referenced from IBs)."""
        if q.engine == "aql" and 0 not in data[0::64]:
            return []
        found: dict[tuple[int, int], dict] = {}

        def follow(addr: int, ndw: int):
            key = (addr, ndw)
            if key in found:
                return found[key].get("_data")
            b = self._read(addr, ndw * 4)
            ent = {"addr": addr, "size": ndw * 4,
                   "blob": self.rec.blob(b) if b is not None else None}
            if b is None:
                ent["error"] = "not readable"
            found[key] = dict(ent, _data=b)
            return b

        try:
            decode_stream(q.engine, data, q.family, follow=follow)
        except KfdtraceError:
            pass            # the packets are stored raw; a bad stream is the decoder's to report
        return [{k: v for k, v in e.items() if k != "_data"} for e in found.values()]

    # -- annotations --------------------------------------------------------------------------------------
    def annotate(self, kind: str, **fields) -> None:
        try:
            f = fields
            if kind == "signal":
                tl = f.get("timeline", f.get("addr", 0))
                self._w("signal", addr=tl + 8 if "timeline" in f else tl, value=int(f.get("value", 0)),
                        queue=f.get("queue"), timeline=tl, gpu_id=f.get("gpu_id"), engine=f.get("engine"))
            elif kind == "wait":
                tl = f.get("timeline", f.get("addr", 0))
                timeout = f.get("timeout")
                self._w("wait", addr=tl + 8 if "timeline" in f else tl, condition=f.get("condition", "ge"),
                        value=int(f.get("value", 0)),
                        timeout=int(timeout * 1e9) if isinstance(timeout, (int, float)) else None,
                        result=str(f.get("result", "?")), value_seen=f.get("value_seen"), timeline=tl)
                if self.gpu_dirty and f.get("result") == "ok":
                    self.checksums()
                if self._handed:
                    self._wake()        # a synchronization point: let the writer thread catch up
            else:
                self._annotate(kind, f)
        except Exception as e:          # a recorder bug: reported, never the program's problem
            self.rec.problem("annotate", e)
        if self._inner_annotates:
            self.inner.annotate(kind, **fields)

    def _annotate(self, kind: str, f: dict) -> None:
        if kind == "codeobj":
            data = f.get("data") or b""
            self._w("codeobj", blob=self.rec.blob(data), va=int(f.get("va", 0)),
                    size=int(f.get("size", len(data))), target=str(f.get("target", "")),
                    **{k: f[k] for k in ("sha256", "source", "gpu_id") if k in f})
        elif kind == "marker":
            self._w("marker", label=str(f.get("label", "")))
        else:
            if kind == "signal_pool":   # the driver's signal slots: the waits record their values
                a = self.by_va.find(int(f.get("va", 0)))
                if a is not None and a.role is None:
                    a.role = "signals"
                    self._mappings_changed()
                return                  # driver bookkeeping, not a user marker
            self._w("marker", label=f"annotation:{kind}",
                    fields={k: v for k, v in f.items() if isinstance(v, (int, str, bool, float, type(None)))})

    def checksums(self) -> int:
        """After a successful CPU wait that followed GPU work: crc32 checksums of the
        CPU-readable allocations the GPU may have written (not rings, queue pointers, EOP/CWSR
        areas, the event page, or the signal pools the driver declares: each wait records the value it
        saw), for replay to compare.

        The first pass covers each allocation whole. Later passes write records only for the
        page runs that changed since the memory was last checksummed (found by comparing with a
        copy, much cheaper than crc32 over everything: one memcmp for an unchanged allocation;
        where the GPU wrote one place last time, the rest then that place, since a GPU tends to
        write the same places at each submission; else halving with memcmp, or a numpy compare
        per page for large allocations), so the expected contents of every page at any wait are
        given by the latest checksum record covering it. Allocations larger than SHADOW_MAX keep
        no copy: they are checksummed whole when their crc32 changes."""
        if not self.gpu_dirty:
            return 0
        n = 0
        with self._lock:
            todo = self._sum_allocs
            if todo is None:
                todo = self._sum_allocs = [a for _, _, a in self.by_cpu.items if a.role is None and a.readable
                                           and a.domain not in ("doorbell", "mmio")]
            w, crc32 = self._w, zlib.crc32
            for a in todo:
                cpu, sh, size, hot = a.cpu, a.shadow_addr, a.cpu_len, a.hot
                if len(hot) == 1 and size <= 64 * PAGE:
                    # did only the pages that changed last time change? (each byte read once:
                    # the memory a pass reads is evicted from the program's caches)
                    lo, hi = hot[0][0] * PAGE, min(hot[0][1] * PAGE, size)
                    if (not lo or not _memcmp(cpu, sh, lo)) and \
                            (hi == size or not _memcmp(cpu + hi, sh + hi, size - hi)):
                        if _memcmp(cpu + lo, sh + lo, hi - lo):
                            mv = a.shadow_mv[lo:hi]
                            mv[:] = a.live_mv[lo:hi]
                            w("checksum", va=a.va + lo, size=hi - lo, algo="crc32",
                              digest=crc32(mv).to_bytes(4, "little"), alloc=a.handle)
                            n += 1
                        continue
                elif sh and not _memcmp(cpu, sh, size):
                    continue                    # unchanged since its last checksum
                for va, data in self._changed(a):
                    w("checksum", va=va, size=len(data), algo="crc32",
                      digest=zlib.crc32(data).to_bytes(4, "little"), alloc=a.handle)
                    n += 1
            busy = False
            for q in self.queues.values():      # the GPU may still write: check again next wait
                p = self._ptrs.get(q.rptr_addr)
                r = p.value if p is not None else self._u64(q.rptr_addr)
                if r is None or r < q.wptr:
                    busy = True
                    break
            self.gpu_dirty = busy
        return n

    def _changed(self, a: Alloc) -> list[tuple[int, object]]:
        """(GPU VA, bytes) runs of `a` to checksum now; updates the copy kept for next time.
        Called when `a` differs from its copy (or has none yet)."""
        if a.cpu_len > SHADOW_MAX:
            crc = zlib.crc32(a.buf)
            if crc == a.digest:
                return []
            a.digest = crc
            return [(a.va, a.buf)]
        if a.shadow is None:
            a.shadow = np.frombuffer(bytearray(a.buf), np.uint8)
            a.shadow_addr = a.shadow.ctypes.data
            a.shadow_mv = memoryview(a.shadow)
            a.live_mv = memoryview(a.buf).cast("B")
            npages = a.cpu_len // PAGE
            a.pages64 = np.frombuffer(a.buf, np.uint64, npages * PAGE // 8).reshape(npages, PAGE // 8)
            a.shadow64 = a.shadow[:npages * PAGE].view(np.uint64).reshape(npages, PAGE // 8)
            return [(a.va, a.shadow)]
        npages = -(-a.cpu_len // PAGE)
        if npages <= 64:        # few pages (usually one changed): halve with memcmp, no numpy
            runs = _hot_runs(a.cpu, a.shadow_addr, a.cpu_len, a.hot)
            if runs is None:
                runs = _runs_of(_differing_pages(a.cpu, a.shadow_addr, a.cpu_len))
            a.hot = runs
        else:
            cur, old = a.pages64, a.shadow64
            changed = np.zeros(npages, bool)
            for i in range(0, len(cur), 1024):      # bounded temporaries
                np.not_equal(cur[i:i + 1024], old[i:i + 1024]).any(axis=1, out=changed[i:i + 1024])
            if a.cpu_len % PAGE:                     # a partial last page
                tail = a.cpu_len // PAGE * PAGE
                changed[-1] = bool(_memcmp(a.cpu + tail, a.shadow_addr + tail, a.cpu_len - tail))
            runs = _runs(changed)
        out, mv = [], a.shadow_mv
        for i, j in runs:
            lo, hi = i * PAGE, min(j * PAGE, a.cpu_len)
            ctypes.memmove(a.shadow_addr + lo, a.cpu + lo, hi - lo)
            out.append((a.va + lo, mv[lo:hi]))
        return out

    def _u64(self, addr: int) -> int | None:
        """The u64 at GPU address `addr` (a queue pointer): through a cached ctypes view of its
        CPU mapping (dropped whenever a mapping changes), else read safely."""
        p = self._ptrs.get(addr)
        if p is not None:
            return p.value
        a = self.by_va.find(addr)
        cpu = a.cpu_of(addr) if a is not None and a.readable else None
        if cpu is not None and addr + 8 <= a.va + a.cpu_len:
            p = self._ptrs[addr] = ctypes.c_uint64.from_address(cpu)
            return p.value
        r = safe_read(addr, 8)
        return int.from_bytes(r, "little") if r is not None else None

    # -- lifetime ----------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        finally:
            with self._lock:
                for a in list(self.allocs.values()):
                    self._unmap_cpu(a)
                self.closed = True
            self.rec.port_closed(self)

    def describe(self) -> str:
        return f"recording({self.inner.describe()})"

    def __getattr__(self, name):
        # emulator introspection (log, faults, gpu_ids, run_gpu ...) stays reachable
        return getattr(self.inner, name)


__all__ = ["RecordingPort", "safe_read", "domain_of", "QUEUE_KINDS"]
