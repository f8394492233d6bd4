"""WriteTracker: every method returns exactly the pages the CPU wrote through the tracked mapping,
with their current bytes, and degrades to compare (with a reason) instead of failing."""
from __future__ import annotations

import ctypes
import errno
import mmap
import os
import random
import threading

import numpy as np
import pytest

from kfdtrace.port.host import libc_mmap, libc_munmap
from kfdtrace.record import memtrack as mt
from kfdtrace.record.memtrack import COMPARE, SOFT_DIRTY, UFFD_WP, MemTrackError, WriteTracker

P = mt.PAGE
PROT_NONE, MAP_FIXED = 0, 0x10
MADV_HUGEPAGE = 14
_madvise = mt._libc.madvise
_madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def _map(size, flags, fd=-1, addr=None, prot=mmap.PROT_READ | mmap.PROT_WRITE):
    a = libc_mmap(addr or 0, size, prot, flags | (MAP_FIXED if addr else 0), fd, 0)
    return a


class Mapping:
    """A test mapping at a fixed address. kind "memfd" is the emulated GPU's setup: a memfd
    mapped MAP_SHARED at a chosen address for the CPU, plus the emulator's own second mapping
    of it (`emu`, a numpy array) through which the "GPU" writes."""

    def __init__(self, kind: str, pages: int):
        self.kind, self.size = kind, pages * P
        self.fd, self.emu, self._emu_mm = -1, None, None
        if kind == "private":       # 2 MiB aligned so transparent huge pages can back it
            raw = _map(self.size + (2 << 20), mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                       prot=PROT_NONE)
            self.addr = (raw + (2 << 20) - 1) & ~((2 << 20) - 1)
            libc_munmap(raw, self.size + (2 << 20))
            _map(self.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, addr=self.addr)
            _madvise(self.addr, self.size, MADV_HUGEPAGE)
        elif kind == "shared-anon":
            self.addr = _map(self.size, mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        elif kind == "memfd":
            self.fd = os.memfd_create("memtrack-test", os.MFD_CLOEXEC)
            os.ftruncate(self.fd, self.size)
            self._emu_mm = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED)
            self.emu = np.frombuffer(self._emu_mm, dtype=np.uint8)
            reserve = _map(self.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=PROT_NONE)
            self.addr = _map(self.size, mmap.MAP_SHARED, self.fd, addr=reserve)
        else:
            raise ValueError(kind)
        self.cpu = np.frombuffer((ctypes.c_uint8 * self.size).from_address(self.addr), np.uint8)

    def close(self):
        self.cpu = self.emu = None
        libc_munmap(self.addr, self.size)
        if self._emu_mm is not None:
            self._emu_mm.close()
            os.close(self.fd)


@pytest.fixture
def mappings():
    made = []

    def make(kind="memfd", pages=64):
        m = Mapping(kind, pages)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def _tracker(method):
    t = WriteTracker(prefer=method)
    if t.method != method:
        reason = t.stats["probe"][method]
        t.close()
        pytest.skip(f"{method} unavailable here: {reason}")
    return t


def _pages(runs, base):
    """{page index: bytes} of collect() output, checking runs are sorted, disjoint, coalesced."""
    out, prev_end = {}, -1
    for a, b in runs:
        assert a % P == 0 and len(b) % P == 0 and len(b) > 0
        assert a > prev_end, "runs must be sorted and adjacent runs coalesced"
        prev_end = a + len(b)
        for i in range(len(b) // P):
            out[(a - base) // P + i] = b[i * P:(i + 1) * P]
    return out


def _scribble(m, rng, n):
    """n CPU writes through the tracked mapping (whole pages, single bytes, writes straddling a
    page boundary), each changing the bytes; returns the set of pages written."""
    written = set()
    for _ in range(n):
        shape = rng.choice(("byte", "page", "straddle"))
        npg = m.size // P
        if shape == "byte":
            off, ln = rng.randrange(m.size), 1
        elif shape == "page":
            off, ln = rng.randrange(npg) * P, P
        else:
            off, ln = rng.randrange(1, npg) * P - rng.randrange(1, 8), 8 + rng.randrange(8)
            ln = min(ln, m.size - off)
        m.cpu[off:off + ln] ^= np.uint8(rng.randrange(1, 256))
        written.update(range(off // P, (off + ln - 1) // P + 1))
    return written


def _soft_dirty_works() -> bool:
    """An independent check of the soft-dirty bit (not the tracker's probe)."""
    a = _map(P, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        ctypes.memset(a, 1, P)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("4")
        ctypes.memset(a, 2, 1)
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(a // P * 8)
            return bool(int.from_bytes(f.read(8), "little") >> 55 & 1)
    except OSError:
        return False
    finally:
        libc_munmap(a, P)


METHODS = [UFFD_WP, SOFT_DIRTY, COMPARE]
KINDS = ["private", "shared-anon", "memfd"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_exact_pages_over_rounds(method, kind, mappings):
    m = mappings(kind, pages=1024 if kind == "private" else 64)      # private: 4 MiB (THP)
    m.cpu[:] = np.arange(m.size, dtype=np.uint64).astype(np.uint8)  # populate, known contents
    t = _tracker(method)
    try:
        t.track(m.addr, m.size)
        first = t.collect()                        # the initial contents, whole
        assert first == [(m.addr, m.cpu.tobytes())]
        assert t.collect() == []                   # nothing changed
        rng = random.Random(f"{method}{kind}")
        for rnd in range(4):
            written = _scribble(m, rng, 1 + rnd * 6)
            got = _pages(t.collect(), m.addr)
            assert set(got) == written, f"round {rnd}"
            for i, data in got.items():
                assert data == m.cpu[i * P:(i + 1) * P].tobytes()
            assert t.collect() == [], f"round {rnd}: re-armed"
        s = t.stats["per_method"][method]
        assert s["ranges"] == 1 and s["pages_returned"] == s["bytes_captured"] // P > m.size // P
        assert s["pages_scanned"] >= 2 * (m.size // P) and s["time_s"] > 0
    finally:
        t.close()


def test_default_picks_best_working_method():
    t = WriteTracker()
    try:
        if t.stats["probe"][UFFD_WP] == "ok":
            assert t.method == UFFD_WP
        else:
            assert t.method in (SOFT_DIRTY, COMPARE) and t.stats["probe"][UFFD_WP]
        assert t.stats["method"] == t.method
    finally:
        t.close()


def test_soft_dirty_probe_matches_the_kernel(monkeypatch):
    works = _soft_dirty_works()
    def no_uffd():
        raise mt._Unavailable("disabled by test")
    monkeypatch.setattr(mt, "_UffdWp", no_uffd)
    t = WriteTracker()
    try:
        assert t.stats["probe"][UFFD_WP] == "disabled by test"
        assert t.method == (SOFT_DIRTY if works else COMPARE)
        if not works:
            assert "soft-dirty bits do not work" in t.stats["probe"][SOFT_DIRTY]
    finally:
        t.close()
    forced = WriteTracker(prefer=SOFT_DIRTY)
    try:
        assert forced.method == (SOFT_DIRTY if works else COMPARE)
        if not works:
            assert forced.stats["fallbacks"][0]["reason"].startswith("prefer='soft-dirty' unav")
    finally:
        forced.close()


def test_gpu_writes_through_the_emulator_mapping_are_not_cpu_writes(mappings):
    m = mappings("memfd", 32)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, m.size)
        t.collect()
        m.emu[5 * P:7 * P] = 0xAB              # the emulated GPU writes pages 5-6
        assert t.collect() == []
        m.emu[9 * P + 3] = 0x11                # GPU writes page 9, CPU writes page 9 and 20
        m.cpu[9 * P + 100] = 0x22
        m.cpu[20 * P] = 0x33
        got = _pages(t.collect(), m.addr)
        assert set(got) == {9, 20}
        assert got[9][3] == 0x11 and got[9][100] == 0x22 and got[20][0] == 0x33
        assert bytes(m.cpu[5 * P:7 * P]) == b"\xab" * 2 * P   # same pages, other mapping
    finally:
        t.close()


def test_compare_refresh_hides_gpu_writes(mappings):
    m = mappings("memfd", 32)
    t = WriteTracker(prefer=COMPARE)
    try:
        t.track(m.addr, m.size)
        t.collect()
        m.emu[5 * P:7 * P] = 0xAB              # compare sees every change: the recorder says
        t.refresh(m.addr + 5 * P, 2 * P)       # it was the GPU
        assert t.collect() == []
        m.emu[3 * P] = 1
        m.cpu[12 * P] = 2
        t.refresh(m.addr + 3 * P, 1)
        assert set(_pages(t.collect(), m.addr)) == {12}
    finally:
        t.close()


def test_uffd_refresh_rearms_writes_through_the_tracked_mapping(mappings):
    """USERPTR: the emulated GPU writes at the CPU address, i.e. through the tracked mapping."""
    m = mappings("private", 64)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, m.size)
        t.collect()
        m.cpu[2 * P:4 * P] = 7                 # the "GPU" writes pages 2-3 ...
        t.refresh(m.addr + 2 * P, 2 * P)       # ... and the recorder says so
        m.cpu[10 * P] = 1                      # a real CPU write
        assert set(_pages(t.collect(), m.addr)) == {10}
        m.cpu[2 * P] = 8                       # later CPU writes to refreshed pages still count
        assert set(_pages(t.collect(), m.addr)) == {2}
    finally:
        t.close()


@pytest.mark.parametrize("method", [UFFD_WP, COMPARE])
def test_untrack_whole_and_middle(method, mappings):
    m = mappings("memfd", 32)
    t = _tracker(method)
    try:
        t.track(m.addr, m.size)
        t.collect()
        t.untrack(m.addr + 8 * P, 8 * P)       # a hole in the middle: two pieces remain
        for i in (1, 9, 15, 20):
            m.cpu[i * P] ^= 1
        assert set(_pages(t.collect(), m.addr)) == {1, 20}
        assert t.stats["per_method"][method]["ranges"] == 2
        t.untrack(m.addr, m.size)
        m.cpu[0] ^= 1
        m.cpu[30 * P] ^= 1
        assert t.collect() == [] and t.stats["per_method"][method]["ranges"] == 0
        if method == UFFD_WP:                  # the registration is gone: another uffd may take it
            t2 = WriteTracker(prefer=UFFD_WP)
            try:
                t2.track(m.addr, m.size)
                assert t2.stats["per_method"][UFFD_WP]["ranges"] == 1, t2.stats["fallbacks"]
            finally:
                t2.close()
    finally:
        t.close()


def test_device_kind_uses_compare_alongside_uffd(mappings):
    dev, anon = mappings("memfd", 16), mappings("shared-anon", 16)
    t = _tracker(UFFD_WP)
    try:
        t.track(dev.addr, dev.size, kind="device")
        t.track(anon.addr, anon.size)
        pm = t.stats["per_method"]
        assert pm[COMPARE]["ranges"] == 1 and pm[UFFD_WP]["ranges"] == 1
        assert "kind=device" in t.stats["fallbacks"][-1]["reason"]
        t.collect()
        dev.cpu[3 * P + 1] ^= 0xFF
        anon.cpu[4 * P] ^= 0xFF
        got = t.collect()
        assert _pages([r for r in got if r[0] == dev.addr + 3 * P], dev.addr).keys() == {3}
        assert {a for a, _ in got} == {dev.addr + 3 * P, anon.addr + 4 * P}
    finally:
        t.close()


def test_registration_failure_falls_back_to_compare(mappings, monkeypatch):
    m = mappings("memfd", 16)
    t = _tracker(UFFD_WP)
    try:
        monkeypatch.setattr(t._uffd, "register", lambda start, length: errno.EINVAL)
        t.track(m.addr, m.size)
        assert t.stats["per_method"][COMPARE]["ranges"] == 1
        assert t.stats["fallbacks"][-1]["reason"].startswith("UFFDIO_REGISTER failed: EINVAL")
        assert t.method == UFFD_WP             # only that range fell back
        assert t.collect() == [(m.addr, m.cpu.tobytes())]
        m.cpu[7 * P + 9] ^= 1
        assert set(_pages(t.collect(), m.addr)) == {7}
    finally:
        t.close()


def test_genuine_registration_failures(mappings):
    """A range another userfaultfd already holds (EBUSY) and a MAP_DROPPABLE one (EINVAL)."""
    m = mappings("memfd", 8)
    t1, t2 = _tracker(UFFD_WP), _tracker(UFFD_WP)
    drop = None
    try:
        t1.track(m.addr, m.size)
        t2.track(m.addr, m.size)
        assert "EBUSY" in t2.stats["fallbacks"][-1]["reason"]
        assert t2.stats["per_method"][COMPARE]["ranges"] == 1
        t1.collect(), t2.collect()
        m.cpu[P] ^= 1
        assert set(_pages(t1.collect(), m.addr)) == set(_pages(t2.collect(), m.addr)) == {1}
        try:
            drop = libc_mmap(0, 4 * P, 3, 0x08 | mmap.MAP_ANONYMOUS, -1, 0)    # MAP_DROPPABLE
        except OSError:
            pytest.skip("MAP_DROPPABLE not supported")
        t1.track(drop, 4 * P)
        assert t1.stats["per_method"][COMPARE]["ranges"] == 1
        assert "UFFDIO_REGISTER failed: EINVAL" in t1.stats["fallbacks"][-1]["reason"]
    finally:
        t1.close(), t2.close()
        if drop:
            libc_munmap(drop, 4 * P)


def test_scan_failure_degrades_without_losing_writes(mappings, monkeypatch):
    m = mappings("memfd", 16)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, m.size)
        t.collect()
        m.cpu[2 * P] ^= 1

        def broken(start, end):
            raise OSError(errno.EIO, "injected")
        monkeypatch.setattr(t._uffd, "scan", broken)
        assert t.collect() == [(m.addr, m.cpu.tobytes())]   # state unknown: captured whole
        assert "PAGEMAP_SCAN failed" in t.stats["fallbacks"][-1]["reason"]
        m.cpu[5 * P] ^= 1                                   # now tracked by compare
        assert set(_pages(t.collect(), m.addr)) == {5}
    finally:
        t.close()


def test_replaced_mapping_is_reregistered(mappings):
    m = mappings("memfd", 16)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, m.size)
        t.collect()
        _map(m.size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, addr=m.addr)  # MAP_FIXED over it
        m.cpu[P] = 3
        assert t.collect() == [(m.addr, m.cpu.tobytes())]
        assert "re-registered" in t.stats["fallbacks"][-1]["reason"]
        m.cpu[6 * P] = 4
        assert set(_pages(t.collect(), m.addr)) == {6}
    finally:
        t.close()


@pytest.mark.parametrize("method", [UFFD_WP, COMPARE])
def test_no_exception_escapes(method, mappings):
    t = _tracker(method)
    try:
        hole = _map(4 * P, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        libc_munmap(hole, 4 * P)                # an address range with nothing mapped
        t.track(hole, 4 * P)
        assert t.collect() == []
        m = mappings("memfd", 4)
        t.track(m.addr, m.size)
        libc_munmap(m.addr, m.size)             # unmapped without untrack: must not crash
        m.addr = _map(P, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)   # let close() unmap this
        m.size = P
        assert t.collect() == []
        assert t.stats["dropped"] >= 1
        with pytest.raises(MemTrackError, match="size"):
            t.track(m.addr, -1)
        with pytest.raises(MemTrackError, match="unknown method"):
            WriteTracker(prefer="magic")
    finally:
        t.close()
    assert t.collect() == []
    with pytest.raises(MemTrackError, match="closed"):
        t.track(0x10000, P)


def test_track_replaces_overlap_and_unaligned_bounds(mappings):
    m = mappings("shared-anon", 16)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr + 100, 3 * P)           # widened to pages 0..3
        assert t.collect() == [(m.addr, m.cpu[:4 * P].tobytes())]
        t.track(m.addr + 2 * P, 8 * P)         # overlaps: pages 0-1 stay, 2-9 new (initial)
        got = _pages(t.collect(), m.addr)
        assert set(got) == set(range(2, 10))
        m.cpu[1 * P] ^= 1
        m.cpu[9 * P] ^= 1
        m.cpu[12 * P] ^= 1
        assert set(_pages(t.collect(), m.addr)) == {1, 9}
    finally:
        t.close()


def test_concurrent_collects_lose_nothing(mappings):
    m = mappings("memfd", 256)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, m.size)
        t.collect()
        rng = random.Random(7)
        seen: list[int] = []
        lock = threading.Lock()
        stop = threading.Event()

        def collector():
            while not stop.is_set():
                pages = _pages(t.collect(), m.addr)
                with lock:
                    seen.extend(pages)
        threads = [threading.Thread(target=collector) for _ in range(3)]
        for th in threads:
            th.start()
        written = set()
        for _ in range(400):
            i = rng.randrange(256)
            m.cpu[i * P] ^= 1
            written.add(i)
        stop.set()
        for th in threads:
            th.join()
        seen.extend(_pages(t.collect(), m.addr))
        assert set(seen) == written
    finally:
        t.close()


def test_soft_dirty_data_path_with_synthetic_pagemap(tmp_path, mappings):
    """The soft-dirty decoding, refresh and clear_refs sequencing, driven by a synthetic pagemap
    (the bit does not work on this machine's kernel, so real bits cannot be produced here)."""
    m = mappings("shared-anon", 16)
    pagemap, clear = tmp_path / "pagemap", tmp_path / "clear_refs"
    clear.write_bytes(b"")
    base = m.addr // P * 8

    def set_dirty(*pages):
        with open(pagemap, "r+b" if pagemap.exists() else "w+b") as f:
            for i in range(16):
                f.seek(base + i * 8)
                f.write(((1 << 55 | 1 << 63 | 0x1234) if i in pages else 1 << 63)
                        .to_bytes(8, "little"))
    set_dirty()
    t = WriteTracker(prefer=COMPARE)
    t._sd = mt._SoftDirty(str(pagemap), str(clear), self_test=False)
    t.method = SOFT_DIRTY
    try:
        t.track(m.addr, m.size)
        assert t.collect() == [(m.addr, m.cpu.tobytes())]
        assert clear.read_bytes() == b"4"
        assert t.collect() == []
        m.cpu[2 * P:4 * P] = 9
        m.cpu[7 * P] = 5
        set_dirty(2, 3, 7)
        got = t.collect()
        assert [(a - m.addr) // P for a, _ in got] == [2, 7] and len(got[0][1]) == 2 * P
        assert got[0][1] == m.cpu[2 * P:4 * P].tobytes()
        m.cpu[7 * P] = 6                       # a "GPU" write through the tracked mapping
        t.refresh(m.addr + 7 * P, P)
        set_dirty(7, 8)
        m.cpu[8 * P] = 1
        assert set(_pages(t.collect(), m.addr)) == {8}      # 7 unchanged since refresh
        t.refresh(m.addr + 7 * P, P)
        m.cpu[7 * P + 1] = 1                   # CPU writes after the refresh still count
        assert set(_pages(t.collect(), m.addr)) == {7, 8}
        assert t.stats["per_method"][SOFT_DIRTY]["pages_scanned"] == 5 * 16
    finally:
        t.close()


def test_adjacent_ranges_coalesce_across_methods(mappings):
    m = mappings("memfd", 16)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, 8 * P, kind="device")  # compare
        t.track(m.addr + 8 * P, 8 * P)         # uffd
        assert t.collect() == [(m.addr, m.cpu.tobytes())]
        m.cpu[7 * P + 4] ^= 1
        m.cpu[8 * P + 4] ^= 1
        assert t.collect() == [(m.addr + 7 * P, m.cpu[7 * P:9 * P].tobytes())]
    finally:
        t.close()


def test_scan_loops_when_the_region_vector_fills(mappings, monkeypatch):
    monkeypatch.setattr(mt._UffdWp, "VEC_LEN", 3)
    m = mappings("memfd", 128)
    t = _tracker(UFFD_WP)
    try:
        t.track(m.addr, m.size)
        t.collect()
        written = set(range(0, 128, 3)) | {50, 51, 52}       # 40 regions, 3 per call
        for i in written:
            m.cpu[i * P] ^= 1
        got = _pages(t.collect(), m.addr)
        assert set(got) == written and t.collect() == []
    finally:
        t.close()


# -- collect_runs: one copy per range, staging buffers, adjacent ranges scanned together ------------
@pytest.mark.parametrize("method", [UFFD_WP, COMPARE])
def test_collect_runs_gathers_exactly_the_written_pages(method, mappings):
    m = mappings("memfd", 256)
    t = _tracker(method)
    rng = np.random.default_rng(3)
    try:
        t.track(m.addr, m.size)
        ((runs, data),) = t.collect_runs()                   # first: the whole range, one run
        assert runs.tolist() == [[m.addr, m.addr + m.size]] and data.tobytes() == m.cpu.tobytes()
        del data
        for rnd in range(6):
            pages = set(rng.choice(256, 40, replace=False).tolist()) | {10, 11, 12}     # some adjacent
            for p in pages:
                m.cpu[p * P + int(rng.integers(P))] ^= np.uint8(1 + rnd)
            ((runs, data),) = t.collect_runs()
            got = {(a - m.addr) // P + i for a, b in runs.tolist() for i in range((b - a) // P)}
            assert got == pages, f"round {rnd}"
            assert (runs % P == 0).all() and (runs[1:, 0] > runs[:-1, 1]).all()     # sorted, not touching
            want = b"".join(m.cpu[a - m.addr:b - m.addr].tobytes() for a, b in runs.tolist())
            assert data.tobytes() == want
            del data                                      # the staging buffer is free again
        assert len(t._staging.bufs) == 1                  # ... and was reused every round
        assert t.collect_runs() == []
    finally:
        t.close()


def test_adjacent_ranges_are_scanned_together_and_a_replaced_one_is_still_caught(mappings, monkeypatch):
    m = mappings("memfd", 32)
    t = _tracker(UFFD_WP)
    calls = []
    scan = t._uffd.scan
    monkeypatch.setattr(t._uffd, "scan", lambda a, b: calls.append((a, b)) or scan(a, b))
    try:
        half = m.addr + 16 * P
        t.track(m.addr, 16 * P)
        t.track(half, 16 * P)
        t.collect_runs()
        calls.clear()
        for p in (3, 15, 16, 20):                         # a run across the boundary of the two
            m.cpu[p * P] ^= 1
        caps = t.collect_runs()
        assert calls == [(m.addr, m.addr + 32 * P)]       # one scan for both
        assert [r.tolist() for r, _ in caps] == [[[m.addr + 3 * P, m.addr + 4 * P], [m.addr + 15 * P, half]],
                                                 [[half, half + P], [half + 4 * P, half + 5 * P]]]
        # the second range's mapping is replaced behind the tracker's back (no untrack)
        fd = os.memfd_create("replaced", os.MFD_CLOEXEC)
        os.ftruncate(fd, 16 * P)
        _map(16 * P, mmap.MAP_SHARED, fd, addr=half)
        os.close(fd)
        m.cpu[16 * P + 5] = 9
        m.cpu[2 * P] ^= 1
        calls.clear()
        caps = t.collect_runs()     # EPERM for the pair, which may have re-armed page 2 unseen:
        assert len(calls) >= 3 and calls[0] == (m.addr, m.addr + 32 * P)   # one by one, and
        assert [r.tolist() for r, _ in caps] == [[[m.addr, half]], [[half, half + 16 * P]]]  # both whole
        assert caps[0][1].tobytes() == m.cpu[:16 * P].tobytes() and caps[1][1].tobytes() == m.cpu[16 * P:].tobytes()
        assert "re-registered" in t.stats["fallbacks"][-1]["reason"]
    finally:
        t.close()


def test_gather_takes_runs_of_any_shape():
    rng = np.random.default_rng(11)
    view = rng.integers(0, 256, 200 * P, dtype=np.uint8)
    for trial in range(60):
        k = int(rng.integers(1, 30))
        cuts = np.sort(rng.choice(200, 2 * k, replace=False))
        runs = cuts.reshape(-1, 2).astype(np.int64) * P
        if trial % 3 == 0:
            runs[:, 1] = runs[:, 0] + P                   # single pages
        got = mt.gather(view, runs)
        assert got.tobytes() == b"".join(view[a:b].tobytes() for a, b in runs.tolist())
        out = np.zeros(got.size + 7, np.uint8)[:got.size]
        assert mt.gather(view, runs, out) is out and out.tobytes() == got.tobytes()
        base, sizes = 0x7F12_3450_0000, []          # address rows, a staging function for `out`
        by_addr = mt.gather(view, runs + base, lambda n: sizes.append(n) or np.zeros(n, np.uint8), base)
        assert by_addr.tobytes() == got.tobytes() and sizes == [got.size]


def test_staging_buffers_are_handed_out_again_only_when_free():
    st = mt._Staging(limit=16 << 20)
    a = st.take(3 << 20)
    b = st.take(1 << 20)
    assert len(st.bufs) == 2 and a.base is not b.base
    view = memoryview(a[100:200])                       # a view keeps it busy
    del a
    c = st.take(3 << 20)
    assert len(st.bufs) == 3
    del view, c
    d = st.take(2 << 20)                                # the smallest free one that fits
    assert len(st.bufs) == 3 and d.size == 2 << 20 and d.base.size >= 2 << 20
    assert d.ctypes.data % st.HUGE == 0
    big = st.take(8 << 20)                              # more than a quarter of the limit: not kept
    assert len(st.bufs) == 3 and big.size == 8 << 20
