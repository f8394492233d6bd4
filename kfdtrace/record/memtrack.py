"""Which bytes of the GPU-visible CPU mappings did the CPU write since the last capture?

Before each submission the recorder stores the CPU-written contents of GPU-visible memory. Copying
or comparing everything mapped costs time proportional to everything mapped; `WriteTracker` asks
the kernel instead, so a capture costs time proportional to what changed. Three methods, best
first (facts and struct layouts: /work/shared/reference/memory-tracking.md):

* ``uffd-wp+pagemap-scan`` (Linux >= 6.7): the ranges are registered with a userfaultfd in
  asynchronous write-protect mode (UFFD_FEATURE_WP_ASYNC | WP_UNPOPULATED): a write to a protected
  page is resolved by the kernel itself (no handler thread, the writer never blocks) and only
  leaves the page marked "written". `PAGEMAP_SCAN` with PM_SCAN_WP_MATCHING returns the written
  page ranges and write-protects them again in the same call, so nothing written between the scan
  and the re-arm can be lost. The bits live in the tracked mapping's own page tables: writes made
  through another mapping of the same pages (the emulated GPU's view of a memfd) or by DMA are not
  CPU writes through the tracked mapping and are, correctly, not seen.
* ``soft-dirty``: write 4 to /proc/self/clear_refs, read bit 55 of /proc/self/pagemap entries.
  Needs CONFIG_MEM_SOFT_DIRTY, so it is picked only when a self-test proves it works. Clearing is
  process-wide (one soft-dirty tracker per process) and not atomic with the read.
* ``compare``: a shadow copy per range, compared page by page with numpy. Always works; costs time
  proportional to the range. Used for device mappings (render-node mmaps of VRAM/GTT BOs, which
  uffd cannot register) and wherever the better methods fail.

What a collect costs beyond the kernel's scan is the copy of the written pages: `collect_runs`
gathers a range's pages with one numpy take into a reused, huge-page-backed staging buffer and
returns them with their runs as arrays (no bytes object per run); adjacent ranges are scanned
with one PAGEMAP_SCAN. `collect` gives the same as (address, bytes) runs.

Never crash the recorded program: every kernel failure degrades the affected range (or the whole
tracker) to ``compare`` and is explained in `stats`. A range whose state became unknown is
captured whole at the next collect (a superset is safe; a missed write is not). Misuse of the API
(a negative size, tracking after close) raises `MemTrackError`.
"""
from __future__ import annotations

import bisect
import ctypes
import errno as _errno
import mmap
import os
import platform
import sys
import threading
import time

import numpy as np

from kfdtrace.errors import KfdtraceError
from kfdtrace.port.host import libc_mmap, libc_munmap

PAGE = mmap.PAGESIZE
PAGE_SHIFT = PAGE.bit_length() - 1

UFFD_WP = "uffd-wp+pagemap-scan"
SOFT_DIRTY = "soft-dirty"
COMPARE = "compare"
METHODS = (UFFD_WP, SOFT_DIRTY, COMPARE)

# linux/userfaultfd.h
_SYS_USERFAULTFD = {"x86_64": 323, "aarch64": 282}.get(platform.machine())
UFFD_USER_MODE_ONLY = 1
USERFAULTFD_IOC_NEW = 0xAA00                    # _IO(0xAA, 0x00), on /dev/userfaultfd
UFFD_API = 0xAA
UFFDIO_API = 0xC018AA3F                         # _IOWR(0xAA, 0x3F, struct uffdio_api)
UFFDIO_REGISTER = 0xC020AA00                    # _IOWR(0xAA, 0x00, struct uffdio_register)
UFFDIO_UNREGISTER = 0x8010AA01                  # _IOR(0xAA, 0x01, struct uffdio_range)
UFFDIO_WRITEPROTECT = 0xC018AA06                # _IOWR(0xAA, 0x06, struct uffdio_writeprotect)
UFFD_FEATURE_WP_UNPOPULATED = 1 << 13
UFFD_FEATURE_WP_ASYNC = 1 << 15
UFFDIO_REGISTER_MODE_WP = 1 << 1
UFFDIO_WRITEPROTECT_MODE_WP = 1 << 0
# linux/fs.h
PAGEMAP_SCAN = 0xC0606610                       # _IOWR('f', 16, struct pm_scan_arg)
PM_SCAN_WP_MATCHING = 1 << 0
PM_SCAN_CHECK_WPASYNC = 1 << 1
PAGE_IS_WRITTEN = 1 << 1
PM_SOFT_DIRTY_BIT = 55                          # of a /proc/pid/pagemap entry
CLEAR_REFS_SOFT_DIRTY = b"4"

_u64 = ctypes.c_uint64


class _UffdioApi(ctypes.Structure):
    _fields_ = [("api", _u64), ("features", _u64), ("ioctls", _u64)]


class _UffdioRange(ctypes.Structure):
    _fields_ = [("start", _u64), ("len", _u64)]


class _UffdioRegister(ctypes.Structure):
    _fields_ = [("range", _UffdioRange), ("mode", _u64), ("ioctls", _u64)]


class _UffdioWriteprotect(ctypes.Structure):
    _fields_ = [("range", _UffdioRange), ("mode", _u64)]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", _u64), ("end", _u64), ("categories", _u64)]


class _PmScanArg(ctypes.Structure):
    _fields_ = [(n, _u64) for n in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages",
        "category_inverted", "category_mask", "category_anyof_mask", "return_mask")]


for _s, _n in ((_UffdioApi, 24), (_UffdioRange, 16), (_UffdioRegister, 32),
               (_UffdioWriteprotect, 24), (_PageRegion, 24), (_PmScanArg, 96)):
    assert ctypes.sizeof(_s) == _n, _s

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
_msync = _libc.msync
_msync.restype = ctypes.c_int
_msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_mmap, _munmap = libc_mmap, libc_munmap        # (the names bench/memtrack.py uses)
_MS_ASYNC = 1
_madvise = _libc.madvise
_madvise.restype = ctypes.c_int
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_MADV_HUGEPAGE = 14
_COMPARE_CHUNK_PAGES = 1024                     # 4 MiB per numpy compare: bounded temporaries


class MemTrackError(KfdtraceError):
    """The write tracker was used wrongly (negative size, unknown method, use after close)."""


class _Unavailable(Exception):
    """A method cannot be used here; the message says why (it goes into `stats`)."""


def _errname(e: int) -> str:
    return f"{_errno.errorcode.get(e, str(e))} ({os.strerror(e)})"


def _call(fn, *args) -> int:
    """Call a libc function; 0 on success, else the errno."""
    ctypes.set_errno(0)
    r = fn(*args)
    if r is not None and r < 0:
        return ctypes.get_errno() or _errno.EIO
    return 0


def _is_mapped(start: int, length: int) -> bool:
    """Whether every page of the range is mapped (msync(MS_ASYNC) fails with ENOMEM otherwise):
    the guard that keeps the compare path from reading an unmapped range and crashing."""
    return _msync(start, length, _MS_ASYNC) == 0


def _probe_pages(n: int) -> int:
    """n anonymous private read/write pages for a self-test (unmapped with `_unmap_probe`)."""
    try:
        return libc_mmap(0, n * PAGE, mmap.PROT_READ | mmap.PROT_WRITE,
                         mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    except OSError as e:
        raise _Unavailable(f"mmap of {n} probe pages failed: {_errname(e.errno)}") from None


def _unmap_probe(addr: int, n: int) -> None:
    """Unmap `_probe_pages`; a failure (cannot happen for our own mapping) is not the self-test's."""
    try:
        libc_munmap(addr, n * PAGE)
    except OSError:
        pass


_NO_RUNS = np.zeros((0, 2), np.int64)


def _page_runs(flags: np.ndarray) -> np.ndarray:
    """[first, last+1) index runs of the True entries of a per-page bool array, as (k, 2) int64."""
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return _NO_RUNS
    cut = np.flatnonzero(np.diff(idx) != 1)
    out = np.empty((cut.size + 1, 2), np.int64)
    out[0, 0], out[1:, 0] = idx[0], idx[cut + 1]
    out[:-1, 1], out[-1, 1] = idx[cut] + 1, idx[-1] + 1
    return out


def _clip_runs(runs: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """The sorted [start, end) rows of `runs` inside [lo, hi), clipped to it."""
    i0 = int(np.searchsorted(runs[:, 1], lo, side="right"))
    i1 = int(np.searchsorted(runs[:, 0], hi, side="left"))
    if i0 >= i1:
        return _NO_RUNS
    out = runs[i0:i1].copy()
    out[0, 0], out[-1, 1] = max(int(out[0, 0]), lo), min(int(out[-1, 1]), hi)
    return out


def _join_runs(runs: np.ndarray) -> np.ndarray:
    """Sorted [start, end) rows with those that touch merged."""
    if len(runs) < 2:
        return runs
    keep = np.ones(len(runs), bool)
    keep[1:] = runs[1:, 0] != runs[:-1, 1]
    starts = runs[keep, 0]
    ends = runs[np.r_[np.flatnonzero(keep)[1:] - 1, len(runs) - 1], 1]
    return np.stack([starts, ends], axis=1)


def gather(view: np.ndarray, runs: np.ndarray, out=None, base: int = 0) -> np.ndarray:
    """The bytes of `view` (uint8, a whole number of pages, starting at address `base`) at the
    page-aligned [start, end) address rows of `runs`, concatenated into `out` (an array, a
    function giving one of n bytes, or None: a new array): one numpy copy, however many runs
    (isolated pages are the common case: a take of page rows). Every numpy call costs a few
    microseconds here (the caches are cold before a submission), so they are kept few."""
    starts = runs[:, 0]
    lens = runs[:, 1] - starts
    nbytes = int(lens.sum())
    if out is None:
        out = np.empty(nbytes, np.uint8)
    elif callable(out):
        out = out(nbytes)
    if len(runs) <= 4:
        pos = 0
        for a, b in runs.tolist():
            out[pos:pos + b - a] = view[a - base:b - base]
            pos += b - a
        return out
    idx = starts >> PAGE_SHIFT          # page indices (a new array: modified in place below)
    if base:
        idx -= base >> PAGE_SHIFT
    if nbytes != len(runs) * PAGE:      # not single pages: a running arange restarted at each run
        lens >>= PAGE_SHIFT
        idx = np.repeat(idx - (np.cumsum(lens) - lens), lens)
        idx += np.arange(nbytes >> PAGE_SHIFT, dtype=np.int64)
    # mode="clip" (the indices are in range anyway) lets numpy write into `out` unbuffered
    view.reshape(-1, PAGE).take(idx, axis=0, out=out.reshape(-1, PAGE), mode="clip")
    return out


class _Staging:
    """Reusable buffers for gathered pages. A fresh buffer costs a page fault per page when
    first written (several microseconds each in a VM: as much as the copy itself), so buffers
    are kept and handed out again once nothing refers to them any more: the trace writer drops
    its reference when it has written the data, and every numpy view of a buffer refers to the
    array owning its memory, so that array's reference count tells (CPython). The buffers are
    2 MiB-aligned with MADV_HUGEPAGE: a copy into them takes a TLB miss per 2 MiB rather than
    per 4 KiB page, which in a VM saves a quarter of the copy's time. At most `limit` bytes
    are kept."""

    HUGE = 2 << 20

    def __init__(self, limit: int = 64 << 20):
        self.limit = limit
        self.bufs: list[tuple[np.ndarray, int, int]] = []   # (owner, aligned offset, size)

    def take(self, nbytes: int) -> np.ndarray:
        best = None
        for ent in self.bufs:           # 3 references: the tuple, `owner`, getrefcount's argument
            owner, skip, size = ent
            if size >= nbytes and sys.getrefcount(owner) <= 3 and (best is None or size < best[2]):
                best = ent
            owner = None
        if best is None:
            size = -(-nbytes // self.HUGE) * self.HUGE
            if nbytes > self.limit // 4 or sum(b[2] for b in self.bufs) + size > self.limit:
                return np.empty(nbytes, np.uint8)       # not kept
            owner = np.empty(size + self.HUGE, np.uint8)
            skip = -owner.ctypes.data % self.HUGE
            _madvise(owner.ctypes.data + skip, size, _MADV_HUGEPAGE)    # best effort
            owner[skip:skip + size:PAGE] = 0                    # fault it in now, not in a copy
            best = (owner, skip, size)
            self.bufs.append(best)
        return best[0][best[1]:best[1] + nbytes]


class _UffdWp:
    """One userfaultfd in async write-protect mode and the /proc/self/pagemap fd scanned with
    PAGEMAP_SCAN. The constructor self-tests the whole cycle on two scratch pages and raises
    `_Unavailable` with the reason when anything is missing."""

    VEC_LEN = 4096              # page_region entries per PAGEMAP_SCAN call (reused, 96 KiB)

    def __init__(self):
        self.fd = self.pagemap = -1
        self.fd = self._open_uffd()
        try:
            api = _UffdioApi(UFFD_API, UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED, 0)
            err = _call(_ioctl, self.fd, UFFDIO_API, ctypes.addressof(api))
            if err:
                raise _Unavailable(f"UFFDIO_API with WP_ASYNC|WP_UNPOPULATED failed: "
                                   f"{_errname(err)} (kernel older than 6.7?)")
            want = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED
            if api.features & want != want:
                raise _Unavailable(f"kernel lacks UFFD_FEATURE_WP_ASYNC/WP_UNPOPULATED "
                                   f"(features {api.features:#x})")
            try:
                self.pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise _Unavailable(f"cannot open /proc/self/pagemap: {e}") from None
            self._vec = (_PageRegion * self.VEC_LEN)()
            self._vec_np = np.frombuffer(self._vec, dtype=np.uint64).reshape(-1, 3)
            self._arg = _PmScanArg(size=96, vec=ctypes.addressof(self._vec),
                                   vec_len=self.VEC_LEN, category_mask=PAGE_IS_WRITTEN,
                                   return_mask=PAGE_IS_WRITTEN,
                                   flags=PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC)
            self._argp = ctypes.addressof(self._arg)
            self._self_test()
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open_uffd() -> int:
        flags = os.O_CLOEXEC | os.O_NONBLOCK
        why = []
        if _SYS_USERFAULTFD is not None:
            # USER_MODE_ONLY is what unprivileged_userfaultfd=0 still allows; async WP never
            # delivers a fault to user space, so it loses nothing here.
            for f in (flags, flags | UFFD_USER_MODE_ONLY):
                ctypes.set_errno(0)
                fd = _syscall(ctypes.c_long(_SYS_USERFAULTFD), ctypes.c_long(f))
                if fd >= 0:
                    return fd
                why.append(f"userfaultfd({f:#x}): {_errname(ctypes.get_errno())}")
        else:
            why.append(f"no userfaultfd syscall number for {platform.machine()}")
        try:
            dev = os.open("/dev/userfaultfd", os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            why.append(f"/dev/userfaultfd: {e.strerror}")
        else:
            try:
                ctypes.set_errno(0)
                fd = _ioctl(dev, USERFAULTFD_IOC_NEW, flags)
                if fd >= 0:
                    return fd
                why.append(f"USERFAULTFD_IOC_NEW: {_errname(ctypes.get_errno())}")
            finally:
                os.close(dev)
        try:
            with open("/proc/sys/vm/unprivileged_userfaultfd") as f:
                why.append(f"vm.unprivileged_userfaultfd={f.read().strip()}")
        except OSError:
            pass
        raise _Unavailable("; ".join(why))

    def _self_test(self) -> None:
        addr = _probe_pages(3)
        try:
            if self.register(addr, 3 * PAGE) or self.protect(addr, 3 * PAGE):
                raise _Unavailable("cannot register/write-protect anonymous probe pages")
            ctypes.memset(addr + PAGE, 0x5A, 8)
            try:
                first, second = self.scan(addr, addr + 3 * PAGE), self.scan(addr, addr + 3 * PAGE)
            except OSError as e:
                what = "kernel lacks PAGEMAP_SCAN (Linux >= 6.7)" \
                    if e.errno in (_errno.ENOTTY, _errno.EINVAL) else "PAGEMAP_SCAN failed"
                raise _Unavailable(f"{what}: {_errname(e.errno)}") from None
            first, second = first.tolist(), second.tolist()
            if first != [[addr + PAGE, addr + 2 * PAGE]] or second:
                raise _Unavailable(f"PAGEMAP_SCAN self-test: wrote page 1 of 3, scans reported "
                                   f"{[(s - addr) // PAGE for s, _ in first]} then "
                                   f"{[(s - addr) // PAGE for s, _ in second]}")
        finally:
            _unmap_probe(addr, 3)

    def register(self, start: int, length: int) -> int:
        reg = _UffdioRegister(_UffdioRange(start, length), UFFDIO_REGISTER_MODE_WP, 0)
        return _call(_ioctl, self.fd, UFFDIO_REGISTER, ctypes.addressof(reg))

    def unregister(self, start: int, length: int) -> int:
        rng = _UffdioRange(start, length)
        return _call(_ioctl, self.fd, UFFDIO_UNREGISTER, ctypes.addressof(rng))

    def protect(self, start: int, length: int) -> int:
        wp = _UffdioWriteprotect(_UffdioRange(start, length), UFFDIO_WRITEPROTECT_MODE_WP)
        return _call(_ioctl, self.fd, UFFDIO_WRITEPROTECT, ctypes.addressof(wp))

    def scan(self, start: int, end: int) -> np.ndarray:
        """Written page ranges in [start, end) as an int64 array of [start, end) rows, re-protected
        by the same call. CHECK_WPASYNC makes a VMA in the range that is no longer registered
        (the mapping was replaced behind our back) an EPERM instead of a silent skip. Raises
        OSError."""
        arg, parts = self._arg, []
        while start < end:
            arg.start, arg.end, arg.walk_end = start, end, 0
            n = _ioctl(self.pagemap, PAGEMAP_SCAN, self._argp)
            if n < 0:
                e = ctypes.get_errno() or _errno.EIO
                raise OSError(e, f"PAGEMAP_SCAN [{start:#x}, {end:#x}): {os.strerror(e)}")
            if n:
                parts.append(self._vec_np[:n, :2].astype(np.int64))     # the vector is reused
            if n < self.VEC_LEN or arg.walk_end <= start:
                break
            start = arg.walk_end
        if not parts:
            return _NO_RUNS
        if len(parts) == 1:
            return parts[0]
        return _join_runs(np.concatenate(parts))     # a run may be split across two calls

    def close(self) -> None:
        for name in ("fd", "pagemap"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)


_soft_dirty_owner: object | None = None           # clear_refs is process-wide: one user at a time
_soft_dirty_lock = threading.Lock()


class _SoftDirty:
    """Soft-dirty bits: read bit 55 of pagemap entries, clear them all with clear_refs. The paths
    are parameters only so a test can drive the decoding with a synthetic pagemap."""

    def __init__(self, pagemap: str = "/proc/self/pagemap",
                 clear_refs: str = "/proc/self/clear_refs", self_test: bool = True):
        self.fd = -1
        self.clear_refs = clear_refs
        try:
            self.fd = os.open(pagemap, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise _Unavailable(f"cannot open {pagemap}: {e.strerror}") from None
        try:
            if self_test:
                self._self_test()
        except BaseException:
            self.close()
            raise

    def _self_test(self) -> None:
        addr = _probe_pages(2)
        try:
            ctypes.memset(addr, 1, 2 * PAGE)
            try:
                self.clear()
                after_clear = self.dirty(addr, addr + 2 * PAGE).tolist()
                ctypes.memset(addr + PAGE, 2, 8)
                after_write = self.dirty(addr, addr + 2 * PAGE).tolist()
            except OSError as e:
                raise _Unavailable(f"soft-dirty self-test: {e}") from None
            if after_clear != [False, False] or after_write != [False, True]:
                raise _Unavailable(f"soft-dirty bits do not work (CONFIG_MEM_SOFT_DIRTY off?): "
                                   f"after clear {after_clear}, after writing page 1 "
                                   f"{after_write}")
        finally:
            _unmap_probe(addr, 2)

    def clear(self) -> None:
        fd = os.open(self.clear_refs, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, CLEAR_REFS_SOFT_DIRTY)
        finally:
            os.close(fd)

    def dirty(self, start: int, end: int) -> np.ndarray:
        """Per-page soft-dirty flags of [start, end). Raises OSError."""
        n = (end - start) // PAGE
        buf = bytearray(n * 8)
        view, off, got = memoryview(buf), start // PAGE * 8, 0
        while got < len(buf):
            k = os.preadv(self.fd, [view[got:]], off + got)
            if k <= 0:
                raise OSError(_errno.EIO, f"short pagemap read at {start + got // 8 * PAGE:#x}")
            got += k
        return (np.frombuffer(buf, dtype=np.uint64) >> PM_SOFT_DIRTY_BIT & 1).astype(bool)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Range:
    """One tracked, page-aligned range [start, end) and how it is tracked."""

    __slots__ = ("start", "end", "kind", "method", "initial", "shadow", "_view", "snapshots")

    def __init__(self, start: int, end: int, kind: str, method: str, initial: bool = True):
        self.start, self.end, self.kind, self.method = start, end, kind, method
        self.initial = initial          # capture all of it at the next collect
        self.shadow: np.ndarray | None = None    # compare: the bytes last captured
        self._view: np.ndarray | None = None
        self.snapshots: list[tuple[int, np.ndarray]] = []   # soft-dirty: refresh() contents

    @property
    def size(self) -> int:
        return self.end - self.start

    def view(self) -> np.ndarray:
        """The live bytes of the range (uint8, zero copy). Only touch after `_is_mapped`."""
        if self._view is None:
            self._view = np.frombuffer((ctypes.c_uint8 * self.size).from_address(self.start),
                                       dtype=np.uint8)
        return self._view

    def piece(self, start: int, end: int) -> "_Range":
        """The part [start, end) of this range, keeping its state (untrack of a middle part)."""
        p = _Range(start, end, self.kind, self.method, self.initial)
        if self.shadow is not None:
            p.shadow = self.shadow[start - self.start:end - self.start]
        for a, snap in self.snapshots:
            lo, hi = max(a, start), min(a + snap.size, end)
            if lo < hi:
                p.snapshots.append((lo, snap[lo - a:hi - a]))
        return p


def _new_stats(method: str) -> dict:
    return {
        "method": method,
        "probe": {UFFD_WP: "not probed", SOFT_DIRTY: "not probed"},
        "collects": 0,
        "per_method": {m: {"ranges": 0, "pages_scanned": 0, "pages_returned": 0,
                           "bytes_captured": 0, "time_s": 0.0, "detect_s": 0.0}
                       for m in METHODS},
        "fallbacks": [],            # {"addr", "size", "reason"}, the last 256
        "fallback_count": 0,
        "dropped": 0,               # ranges dropped because they were no longer mapped
    }


class WriteTracker:
    """Tracks CPU writes to GPU-visible CPU mappings; one per recording.

    `collect()` returns the (address, bytes) runs written through the tracked mappings since the
    previous collect and re-arms tracking in the same step. Thread-safe: every public method
    takes one lock. See the module docstring for the methods and their limits.
    """

    method: str
    stats: dict

    def __init__(self, prefer: str | None = None):
        if prefer is not None and prefer not in METHODS:
            raise MemTrackError(f"WriteTracker(prefer={prefer!r}): unknown method; "
                                f"use one of {', '.join(METHODS)}")
        self._lock = threading.RLock()
        self._ranges: list[_Range] = []          # sorted by start, disjoint
        self._starts: list[int] = []
        self._uffd: _UffdWp | None = None
        self._sd: _SoftDirty | None = None
        self._closed = False
        self._groups: dict | None = None         # ranges by method (see _group)
        self.slow = False                        # some range is tracked by compare or soft-dirty
        self._staging = _Staging()
        self.method = COMPARE
        self.stats = _new_stats(COMPARE)
        probe = self.stats["probe"]
        for m in ([prefer] if prefer else [UFFD_WP, SOFT_DIRTY]):
            try:
                if m == UFFD_WP:
                    self._uffd = _UffdWp()
                elif m == SOFT_DIRTY:
                    self._sd = self._claim_soft_dirty()
                else:
                    break
            except _Unavailable as e:
                probe[m] = str(e)
                continue
            except Exception as e:      # never let a probe take the recorded program down
                probe[m] = f"probe raised {type(e).__name__}: {e}"
                continue
            probe[m] = "ok"
            self.method = m
            break
        if prefer and self.method != prefer:
            self._fallback(0, 0, f"prefer={prefer!r} unavailable: {probe[prefer]}")
        self.stats["method"] = self.method

    def _claim_soft_dirty(self) -> _SoftDirty:
        global _soft_dirty_owner
        with _soft_dirty_lock:
            if _soft_dirty_owner is not None:
                raise _Unavailable("another WriteTracker uses soft-dirty (clearing is "
                                   "process-wide)")
            sd = _SoftDirty()
            _soft_dirty_owner = self
            return sd

    # -- bookkeeping ---------------------------------------------------------------------------
    def _fallback(self, addr: int, size: int, reason: str) -> None:
        fb = self.stats["fallbacks"]
        fb.append({"addr": addr, "size": size, "reason": reason})
        del fb[:-256]
        self.stats["fallback_count"] += 1

    def _account(self, method: str, scanned: int, returned: int, nbytes: int, dt: float) -> None:
        s = self.stats["per_method"][method]
        s["pages_scanned"] += scanned
        s["pages_returned"] += returned
        s["bytes_captured"] += nbytes
        s["time_s"] += dt

    def _detected(self, method: str, t0: float) -> None:
        """Account the part of a collect spent finding what changed (vs copying it out)."""
        self.stats["per_method"][method]["detect_s"] += time.perf_counter() - t0

    def _count_ranges(self) -> None:
        counts = dict.fromkeys(METHODS, 0)
        for r in self._ranges:
            counts[r.method] += 1
        for m, n in counts.items():
            self.stats["per_method"][m]["ranges"] = n
        self.slow = bool(counts[COMPARE] or counts[SOFT_DIRTY])

    def _group(self, method: str) -> list:
        """The ranges tracked by `method` (cached until a range is added, removed or degraded:
        a collect costs little more than its scans)."""
        if self._groups is None:
            self._groups = {m: [r for r in self._ranges if r.method == m] for m in METHODS}
            self._count_ranges()
        return self._groups[method]

    def _insert(self, r: _Range) -> None:
        i = bisect.bisect_left(self._starts, r.start)
        self._starts.insert(i, r.start)
        self._ranges.insert(i, r)
        self._groups = None

    def _overlapping(self, start: int, end: int) -> list[_Range]:
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        while i < len(self._ranges) and self._ranges[i].start < end:
            if self._ranges[i].end > start:
                out.append(self._ranges[i])
            i += 1
        return out

    def _remove(self, r: _Range) -> None:
        i = bisect.bisect_left(self._starts, r.start)
        del self._starts[i], self._ranges[i]
        self._groups = None

    @staticmethod
    def _bounds(addr: int, size: int, what: str) -> tuple[int, int]:
        if not isinstance(addr, int) or not isinstance(size, int) or addr < 0 or size < 0:
            raise MemTrackError(f"{what}(addr={addr!r}, size={size!r}): need integers >= 0")
        return addr & ~(PAGE - 1), (addr + size + PAGE - 1) & ~(PAGE - 1)

    def _degrade(self, r: _Range, reason: str) -> None:
        """Move a range to compare; what it holds is unknown, so it is captured whole next."""
        if r.method == UFFD_WP and self._uffd is not None:
            self._uffd.unregister(r.start, r.size)
        r.method, r.initial, r.shadow, r.snapshots = COMPARE, True, None, []
        self._groups = None
        self._fallback(r.start, r.size, reason)

    def _drop(self, r: _Range, why: str) -> None:
        self._remove(r)
        self.stats["dropped"] += 1
        self._fallback(r.start, r.size, f"dropped: {why}")

    # -- public API ----------------------------------------------------------------------------
    def track(self, addr: int, size: int, *, kind: str = "anon") -> None:
        """Start tracking [addr, addr+size) (widened to whole pages). Its current contents count
        as written at the next collect. A tracked range it overlaps is replaced (a MAP_FIXED
        mapping over a tracked one). kind="device" (a render-node mapping of a VRAM/GTT BO on a
        real GPU) always uses compare; other kinds are only labels."""
        start, end = self._bounds(addr, size, "track")
        if start == end:
            return
        with self._lock:
            if self._closed:
                raise MemTrackError(f"track({addr:#x}, {size:#x}): the WriteTracker is closed")
            self._untrack_locked(start, end)
            method = self.method
            if kind == "device" and method != COMPARE:
                method = COMPARE
                self._fallback(start, end - start, f"kind=device: {self.method} cannot track "
                                                   "device mappings")
            elif method == UFFD_WP:
                err = self._uffd.register(start, end - start)
                what = "UFFDIO_REGISTER"
                if not err:
                    err, what = self._uffd.protect(start, end - start), "UFFDIO_WRITEPROTECT"
                    if err:
                        self._uffd.unregister(start, end - start)
                if err:
                    method = COMPARE
                    self._fallback(start, end - start, f"{what} failed: {_errname(err)}")
            self._insert(_Range(start, end, kind, method))
            self._count_ranges()

    def untrack(self, addr: int, size: int) -> None:
        """Stop tracking [addr, addr+size) (whole pages); parts of ranges outside it stay."""
        start, end = self._bounds(addr, size, "untrack")
        with self._lock:
            if not self._closed and start < end:
                self._untrack_locked(start, end)
                self._count_ranges()

    def _untrack_locked(self, start: int, end: int) -> None:
        for r in self._overlapping(start, end):
            self._remove(r)
            lo, hi = max(r.start, start), min(r.end, end)
            if r.method == UFFD_WP:
                self._uffd.unregister(lo, hi - lo)   # fails harmlessly if already unmapped
            for a, b in ((r.start, lo), (hi, r.end)):
                if a < b:
                    self._insert(r.piece(a, b))

    def refresh(self, addr: int, size: int) -> None:
        """[addr, addr+size) was just written by the GPU/DMA (not the CPU): take its current
        contents as the baseline so they are not reported as CPU writes. CPU writes to those
        pages since the last collect are forgotten too (they cannot be told apart), so call it
        right after the non-CPU write. Needed where such writes go through the tracked mapping
        itself (the emulator writes USERPTR memory at its CPU address) or for compare ranges."""
        start, end = self._bounds(addr, size, "refresh")
        with self._lock:
            if self._closed:
                return
            for r in self._overlapping(start, end):
                lo, hi = max(r.start, start), min(r.end, end)
                try:
                    if r.method == UFFD_WP:
                        err = self._uffd.protect(lo, hi - lo)
                        if err:
                            self._degrade(r, f"refresh: UFFDIO_WRITEPROTECT failed: "
                                             f"{_errname(err)}")
                    elif r.initial or not _is_mapped(lo, hi - lo):
                        continue        # captured whole next time anyway / collect drops it
                    elif r.method == COMPARE and r.shadow is not None:
                        r.shadow[lo - r.start:hi - r.start] = r.view()[lo - r.start:hi - r.start]
                    elif r.method == SOFT_DIRTY:
                        r.snapshots.append(
                            (lo, r.view()[lo - r.start:hi - r.start].copy()))
                except Exception as e:
                    self._degrade(r, f"refresh raised {type(e).__name__}: {e}")

    def collect(self) -> list[tuple[int, bytes]]:
        """(address, bytes) runs written since the last collect, sorted, page granular, adjacent
        pages coalesced; tracking is re-armed in the same step. Never raises. (`collect_runs`
        is the same without a bytes object per run.)"""
        out: list[tuple[int, bytes]] = []
        for runs, data in self.collect_runs():
            pos = 0
            for a, b in runs.tolist():
                out.append((a, data[pos:pos + b - a].tobytes()))
                pos += b - a
        # runs of one range never touch (the kernel and _page_runs coalesce them); runs of two
        # ranges can only if the ranges are adjacent
        return _coalesce(out) if len(out) > 1 else out

    def collect_runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """What was written since the last collect, one (runs, data) pair per tracked range with
        writes, in address order: `runs` an int64 (k, 2) array of [start, end) page-aligned
        addresses (sorted, disjoint, not touching), `data` a uint8 array of their bytes,
        concatenated (gathered with one numpy copy into a reused staging buffer, which must not
        be written to). Tracking is re-armed in the same step. Never raises."""
        with self._lock:
            if self._closed:
                return []
            self.stats["collects"] += 1
            caps: list[tuple[np.ndarray, np.ndarray]] = []
            for method, fn in ((UFFD_WP, WriteTracker._collect_uffd), (SOFT_DIRTY, WriteTracker._collect_sd),
                               (COMPARE, WriteTracker._collect_compare)):
                todo = self._group(method)
                if not todo:
                    continue
                t0 = time.perf_counter()
                try:
                    got, scanned = fn(self, todo)
                except Exception as e:      # a bug or MemoryError: lose nothing, report it
                    for r in todo:
                        r.initial = True
                    self._fallback(0, 0, f"{method} collect raised {type(e).__name__}: {e}; "
                                         "its ranges are captured whole next time")
                    continue
                nbytes = 0
                for _, d in got:
                    nbytes += d.size
                self._account(method, scanned, nbytes // PAGE, nbytes, time.perf_counter() - t0)
                caps += got
            if self._groups is None:          # ranges degraded or dropped: count them now
                self._group(COMPARE)
            if len(caps) > 1:
                caps.sort(key=_first_address)
            return caps

    def _gather(self, r: _Range, runs: np.ndarray, absolute: bool = False) -> np.ndarray:
        """The bytes at the [start, end) rows `runs` of range `r` (offsets in it, or addresses
        if `absolute`), into a staging buffer."""
        return gather(r.view(), runs, self._staging.take, r.start if absolute else 0)

    def _collect_uffd(self, ranges: list[_Range]) -> tuple[list, int]:
        out, scanned, clock, detect = [], 0, time.perf_counter, 0.0
        i = 0
        while i < len(ranges):
            # adjacent ranges (buffers the driver placed back to back) are scanned in one call:
            # every VMA in between is one of them, so CHECK_WPASYNC still holds
            j = i + 1
            while j < len(ranges) and ranges[j].start == ranges[j - 1].end:
                j += 1
            group, i = ranges[i:j], j
            spans = None
            if len(group) > 1:
                try:
                    t0 = clock()
                    spans = self._uffd.scan(group[0].start, group[-1].end)
                    detect += clock() - t0
                except OSError:
                    # one of them lost its registration: scan them one by one to find it. The
                    # failed scan may already have re-armed pages before the bad VMA, and not
                    # said which: every range of the group is captured whole (a superset).
                    spans = None
                    for r in group:
                        r.initial = True
            for r in group:
                if spans is None:
                    try:
                        t0 = clock()
                        mine = self._uffd.scan(r.start, r.end)     # re-arms before the bytes are read
                        detect += clock() - t0
                    except OSError as e:
                        if e.errno == _errno.EPERM and not self._uffd.register(r.start, r.size) \
                                and not self._uffd.protect(r.start, r.size):
                            r.initial = True        # mapping was replaced: registered again, take all
                            self._fallback(r.start, r.size, "registration lost (mapping replaced "
                                                            "without untrack): re-registered")
                        else:
                            self._degrade(r, f"PAGEMAP_SCAN failed: {e}")
                            continue
                        mine = _NO_RUNS
                elif len(group) == 1 or not len(spans):
                    mine = spans
                elif spans[-1, 1] <= r.end and spans[0, 0] >= r.start:
                    mine, spans = spans, _NO_RUNS   # all of them in this range (the usual case)
                else:
                    mine = _clip_runs(spans, r.start, r.end)
                scanned += r.size
                if r.initial:
                    if not _is_mapped(r.start, r.size):
                        self._uffd.unregister(r.start, r.size)
                        self._drop(r, "no longer mapped (untrack before munmap)")
                        continue
                    mine, r.initial = np.array([[r.start, r.end]], np.int64), False
                if len(mine):
                    out.append((mine, self._gather(r, mine, True)))
        self.stats["per_method"][UFFD_WP]["detect_s"] += detect
        # ranges degraded above are picked up by the compare pass of this same collect
        return out, scanned // PAGE

    def _collect_sd(self, ranges: list[_Range]) -> tuple[list, int]:
        dirty: dict[int, np.ndarray] = {}
        t0 = time.perf_counter()
        for r in ranges:
            if not _is_mapped(r.start, r.size):
                self._drop(r, "no longer mapped (untrack before munmap)")
                continue
            try:
                dirty[id(r)] = self._sd.dirty(r.start, r.end)
            except OSError as e:
                self._degrade(r, f"pagemap read failed: {e}")
        try:
            self._sd.clear()        # re-arm; a write between the read and here is the known race
        except OSError as e:
            for r in ranges:
                if r.method == SOFT_DIRTY:
                    self._degrade(r, f"clear_refs failed: {e}")
            self.method = self.stats["method"] = COMPARE
            return [], 0
        self._detected(SOFT_DIRTY, t0)
        out, scanned = [], 0
        for r in ranges:
            d = dirty.get(id(r))
            if d is None or r.method != SOFT_DIRTY:
                continue
            scanned += d.size
            if r.initial:
                d[:], r.initial = True, False
            view = r.view()
            for a, snap in r.snapshots:         # pages refresh()ed: report only if changed since
                p0 = (a - r.start) // PAGE
                np_ = snap.size // PAGE
                live = view[a - r.start:a - r.start + snap.size].reshape(np_, PAGE)
                same = (live == snap.reshape(np_, PAGE)).all(axis=1)
                d[p0:p0 + np_] &= ~same
            r.snapshots = []
            runs = _page_runs(d) * PAGE
            if len(runs):
                out.append((runs + r.start, self._gather(r, runs)))
        return out, scanned

    def _collect_compare(self, ranges: list[_Range]) -> tuple[list, int]:
        out, scanned = [], 0
        for r in ranges:
            if not _is_mapped(r.start, r.size):
                self._drop(r, "no longer mapped (untrack before munmap)")
                continue
            view = r.view()
            scanned += r.size // PAGE
            if r.initial or r.shadow is None:
                data = view.copy()
                r.shadow = data.copy()
                r.initial = False
                out.append((np.array([[r.start, r.end]], np.int64), data))
                continue
            cur = view.view(np.uint64).reshape(-1, PAGE // 8)
            old = r.shadow.view(np.uint64).reshape(-1, PAGE // 8)
            t0 = time.perf_counter()
            changed = np.zeros(cur.shape[0], dtype=bool)
            tmp = np.empty((min(_COMPARE_CHUNK_PAGES, cur.shape[0]), PAGE // 8), dtype=bool)
            for i in range(0, cur.shape[0], _COMPARE_CHUNK_PAGES):
                j = min(i + _COMPARE_CHUNK_PAGES, cur.shape[0])
                t = tmp[:j - i]
                np.not_equal(cur[i:j], old[i:j], out=t)
                t.any(axis=1, out=changed[i:j])
            self._detected(COMPARE, t0)
            runs = _page_runs(changed) * PAGE
            if len(runs):
                data = self._gather(r, runs)    # read once: the shadow gets what is returned
                pos = 0
                for a, b in runs.tolist():
                    r.shadow[a:b] = data[pos:pos + b - a]
                    pos += b - a
                out.append((runs + r.start, data))
        return out, scanned

    def close(self) -> None:
        """Unregister everything and release the kernel objects; idempotent."""
        global _soft_dirty_owner
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._uffd is not None:
                for r in self._ranges:
                    if r.method == UFFD_WP:
                        self._uffd.unregister(r.start, r.size)
                self._uffd.close()      # closing the uffd also drops any registration left
            if self._sd is not None:
                self._sd.close()
                with _soft_dirty_lock:
                    if _soft_dirty_owner is self:
                        _soft_dirty_owner = None
            self._ranges, self._starts = [], []
            self._count_ranges()

    def __enter__(self) -> "WriteTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


def _first_address(cap: tuple[np.ndarray, np.ndarray]) -> int:
    return int(cap[0][0, 0])


def _coalesce(runs: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Join the sorted runs that touch."""
    out: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    start = end = None
    for a, b in runs:
        if parts and a == end:
            parts.append(b)
        else:
            if parts:
                out.append((start, parts[0] if len(parts) == 1 else b"".join(parts)))
            start, parts = a, [b]
        end = a + len(b)
    if parts:
        out.append((start, parts[0] if len(parts) == 1 else b"".join(parts)))
    return out
