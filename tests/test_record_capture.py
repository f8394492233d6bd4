"""Memory capture on the submission path: the (runs, data) helpers of the recording port against
byte-by-byte models, the checksum pass's page search, and a recording whose CPU writes scattered
pages between submissions, checked against what was in memory at each submission and replayed."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kfdtrace.port import set_port_wrapper
from kfdtrace.record import port as rp
from kfdtrace.record.recorder import Recorder
from kfdtrace.trace import TraceReader
from kfdtrace.trace import format as F

P = rp.PAGE
BASE = 0x7F00_0000_0000


@pytest.fixture(autouse=True)
def _emu(monkeypatch):
    monkeypatch.setenv("KFDTRACE_BACKEND", "emu")
    monkeypatch.delenv("KFDTRACE_EMU_SEED", raising=False)
    monkeypatch.setenv("KFDTRACE_EMU_GPUS", "1")
    yield
    set_port_wrapper(None, None)


@st.composite
def captures(draw, pages=24, aligned=True):
    """(runs, data) as the tracker returns them: sorted, disjoint [start, end) runs at BASE with
    random bytes (some pages all zero); page-aligned, or at any byte offsets."""
    unit = P if aligned else 1
    cuts = sorted(draw(st.sets(st.integers(0, pages * P // unit), min_size=2, max_size=16)))
    runs = np.array(cuts[:len(cuts) // 2 * 2], np.int64).reshape(-1, 2) * unit + BASE
    size = int((runs[:, 1] - runs[:, 0]).sum())
    data = np.random.default_rng(draw(st.integers(0, 2**32))).integers(1, 256, size, dtype=np.uint8)
    zero = draw(st.sets(st.integers(0, pages - 1), max_size=pages))
    pos = 0
    for a, b in runs.tolist():
        for p in zero:
            lo, hi = max(a, BASE + p * P), min(b, BASE + (p + 1) * P)
            if lo < hi:
                data[pos + lo - a:pos + hi - a] = 0
        pos += b - a
    return runs, data


SPAN = 32 * P


def image(runs, data) -> tuple[bytes, bytes]:
    """(which bytes of [BASE, BASE + SPAN) a capture covers, their values) as two byte maps."""
    mask, img, pos = np.zeros(SPAN, np.uint8), np.zeros(SPAN, np.uint8), 0
    for a, b in runs.tolist():
        mask[a - BASE:b - BASE] = 1
        img[a - BASE:b - BASE] = data[pos:pos + b - a]
        pos += b - a
    return mask.tobytes(), img.tobytes()


def well_formed(runs, data) -> None:
    assert runs.dtype == np.int64 and runs.ndim == 2 and runs.shape[1] == 2
    assert (runs[:, 1] > runs[:, 0]).all() and (runs[1:, 0] >= runs[:-1, 1]).all()
    assert int((runs[:, 1] - runs[:, 0]).sum()) == data.size


@settings(max_examples=150, deadline=None)
@given(captures(aligned=False), st.integers(BASE - 100, BASE + 25 * P), st.integers(0, 30 * P))
def test_cut_and_without_match_a_byte_model(cap, lo, length):
    runs, data = cap
    lo, hi = max(lo, BASE), min(lo + length, BASE + SPAN)
    mask, img = (np.frombuffer(x, np.uint8) for x in image(runs, data))
    inside = np.zeros(SPAN, np.uint8)
    inside[max(0, lo - BASE):max(0, hi - BASE)] = 1
    for got, keep in ((rp._cut(runs, data, lo, hi), mask & inside), (rp._without(runs, data, lo, hi), mask & ~inside)):
        assert (got is None) == (not keep.any())
        if got is not None:
            well_formed(*got)
            assert image(*got) == (keep.tobytes(), (img * keep).tobytes())


@settings(max_examples=100, deadline=None)
@given(st.one_of(captures(aligned=True), captures(aligned=False)))
def test_nonzero_drops_exactly_the_all_zero_pages(cap):
    runs, data = cap
    mask, img = (np.frombuffer(x, np.uint8) for x in image(runs, data))
    live = np.repeat(img.reshape(-1, P).any(axis=1), P).astype(np.uint8)     # pages not all zero
    keep = mask & live
    got = rp._nonzero(runs, data)
    assert (got is None) == (not keep.any())
    if got is not None:
        well_formed(*got)
        assert image(*got) == (keep.tobytes(), (img * keep).tobytes())


@settings(max_examples=100, deadline=None)
@given(captures(aligned=False))
def test_run_table_is_the_record_format(cap):
    runs, data = cap
    table = rp._run_table(runs)
    got = F.decode_runs(table, data.size)
    assert [(BASE + lo, BASE + hi) for lo, hi in got] == [(a - int(runs[0, 0]) + BASE, b - int(runs[0, 0]) + BASE)
                                                          for a, b in runs.tolist()]
    assert got[0][0] == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 64), st.data())
def test_page_search_of_the_checksum_pass(npages, draw):
    size = npages * P - draw.draw(st.sampled_from([0, 0, 1, 100, P - 1]))
    old = np.random.default_rng(npages).integers(0, 256, npages * P, dtype=np.uint8)
    cur = old.copy()
    changed = draw.draw(st.sets(st.integers(0, npages - 1), min_size=1))
    for p in changed:
        off = min(p * P + draw.draw(st.integers(0, P - 1)), size - 1)
        cur[off] ^= 0x5A
    changed = {min(p * P + 0, size - 1) // P for p in changed}
    truth = sorted(i for i in range(npages) if cur[i * P:min((i + 1) * P, size)].tobytes()
                   != old[i * P:min((i + 1) * P, size)].tobytes())
    ca, oa = cur.ctypes.data, old.ctypes.data
    assert sorted(rp._differing_pages(ca, oa, size)) == truth
    runs = rp._runs_of(truth)
    assert [p for lo, hi in runs for p in range(lo, hi)] == truth
    hot = draw.draw(st.lists(st.integers(0, npages - 1), max_size=3, unique=True))
    guess = rp._hot_runs(ca, oa, size, rp._runs_of(hot))
    if guess is not None:       # a guess is only ever given when it covers every change
        assert set(truth) <= {p for lo, hi in guess for p in range(lo, hi)}
        assert all(ctypes.c_int(rp._memcmp(ca + lo * P, oa + lo * P, min(hi * P, size) - lo * P)).value
                   for lo, hi in guess)
    if set(truth) <= set(hot) and len(rp._runs_of(hot)) == 1:
        assert guess == rp._runs_of(hot)


def test_scattered_cpu_writes_are_recorded_exactly_and_replayed(tmp_path):
    """The CPU writes a few scattered pages (and one byte past a page boundary) of a 1 MiB buffer
    before each submission; the GPU copies the buffer. Each submission's memwrite_runs give
    exactly the memory as it was at that doorbell (several runs: memwrite_runs records), and a
    replay restores it: the checksums of the GPU's copies match."""
    from kfdtrace.driver import open_device
    from kfdtrace.emu import EmulatedPort
    from kfdtrace.replay import load, replay

    size, snapshots = 1 << 20, []
    rec = Recorder(tmp_path / "s.trace").start()
    rec.install()
    try:
        with open_device() as dev:
            src, dst = dev.alloc(size, "gtt"), dev.alloc(size, "vram")
            view = src.view(np.uint8)
            q, t = dev.sdma_queue(), dev.timeline()
            rng = np.random.default_rng(17)
            for i in range(1, 7):
                for p in rng.choice(size // P, 12, replace=False):
                    view[p * P + int(rng.integers(P))] = i
                view[5 * P - 1:5 * P + 1] = 100 + i          # straddles pages 4 and 5
                snapshots.append(view.tobytes())
                q.copy(dst, src, size)
                q.signal(t, i)
                t.wait(i)
            src_va = src.address
    finally:
        rec.uninstall()
        rec.finish()
    with TraceReader(tmp_path / "s.trace") as r:
        mem, seen, dirty = bytearray(size), 0, False
        for m in r.records(kinds={"memwrite", "memwrite_runs", "submit"}):
            if m.kind == "submit":      # the first submission after the CPU's writes of a round
                if dirty:
                    assert bytes(mem) == snapshots[seen], f"memory at round {seen + 1}"
                    seen, dirty = seen + 1, False
                continue
            assert type(m["data"]) is bytes and m["alloc"] is not None
            for va, data in r.memory_writes(m):
                if src_va <= va < src_va + size:
                    mem[va - src_va:va - src_va + len(data)] = data
                    dirty = True
        assert seen == len(snapshots)
        later = [m for m in r.records(kinds={"memwrite", "memwrite_runs"}) if src_va <= m["va"] < src_va + size][1:]
        assert len(later) == 5 and all(m.kind == "memwrite_runs" and m["size"] <= 14 * P for m in later)
    plan = load(str(tmp_path / "s.trace"))
    port = EmulatedPort(gpu=plan.family_names(), machine=3)
    try:
        report = replay(plan, port=port)
        assert report.status == "matched", report.text()
        assert sum(s.kind == "checksum" for s in plan.steps) >= 6
    finally:
        port.shutdown()


def test_checksums_after_each_wait_cover_every_page_the_gpu_changed(tmp_path):
    """The GPU writes the same page at every submission (the pass's fast case), sometimes one
    more elsewhere, sometimes a different one: after each wait, the checksum records cover
    exactly the pages that changed since the last wait, with the crc32 of what is there."""
    import zlib

    from kfdtrace.driver import open_device

    pages, plan = 16, [{3}, {3}, {3, 9}, {3}, {12}, {0, 15}, {3}, {3, 4}]
    after = []
    rec = Recorder(tmp_path / "c.trace").start()
    rec.install()
    try:
        with open_device() as dev:
            src, dst = dev.alloc(4096, "gtt"), dev.alloc(pages * P, "gtt")
            q, t = dev.sdma_queue(), dev.timeline()
            s = src.view(np.uint8)
            for i, touched in enumerate(plan, 1):
                s[:] = i
                for p in sorted(touched):
                    q.copy(dst, src, 64, dst_offset=p * P + 8 * i)
                q.signal(t, i)
                t.wait(i)
                after.append(dst.view(np.uint8).tobytes())
            dst_va = dst.address
    finally:
        rec.uninstall()
        rec.finish()
    with TraceReader(tmp_path / "c.trace") as r:
        groups, cur = [], None
        for x in r.records(kinds={"wait", "checksum"}):
            if x.kind == "wait":
                cur = []
                groups.append(cur)
            elif cur is not None and dst_va <= x["va"] < dst_va + pages * P:
                cur.append(x)
    assert len(groups) == len(plan)
    prev = bytes(pages * P)
    for i, (group, now) in enumerate(zip(groups, after)):
        covered = set()
        for c in group:
            lo, hi = c["va"] - dst_va, c["va"] - dst_va + c["size"]
            assert c["digest"] == zlib.crc32(now[lo:hi]).to_bytes(4, "little")
            covered |= set(range(lo // P, -(-hi // P)))
        changed = {p for p in range(pages) if now[p * P:(p + 1) * P] != prev[p * P:(p + 1) * P]}
        assert changed <= covered and (i == 0 or covered == changed), f"wait {i + 1}"
        prev = now


@settings(max_examples=80, deadline=None)
@given(captures(aligned=False), st.integers(500, 3 * P))
def test_large_captures_are_split_into_records_of_at_most_a_piece(cap, piece):
    """Each record holds at most MEMWRITE_PIECE bytes; together they hold the capture exactly,
    a one-run piece as a memwrite, several runs as a memwrite_runs."""
    runs, data = cap
    out = []

    class Rec:
        def write_data(self, kind, payload, **f):
            out.append((kind, bytes(payload), f))

    class Port:
        rec = Rec()
        _data_slice = staticmethod(rp.RecordingPort._data_slice)
        _memwrite = rp.RecordingPort._memwrite

    class A:
        va, cpu, handle = BASE + 0x1000_0000, BASE, 5

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rp, "MEMWRITE_PIECE", piece)
        assert Port()._memwrite(A, runs, data) == data.size
    mask, img = np.zeros(SPAN, np.uint8), np.zeros(SPAN, np.uint8)
    for kind, payload, f in out:
        assert 0 < len(payload) == f["size"] <= piece and f["alloc"] == 5
        runs_f = [(0, len(payload))] if kind == "memwrite" else F.decode_runs(f["runs"], len(payload))
        assert (kind == "memwrite") == (len(runs_f) == 1)
        pos = 0
        for lo, hi in runs_f:
            a = f["va"] - 0x1000_0000 + lo - BASE
            assert not mask[a:a + hi - lo].any()            # no byte twice
            mask[a:a + hi - lo] = 1
            img[a:a + hi - lo] = np.frombuffer(payload[pos:pos + hi - lo], np.uint8)
            pos += hi - lo
    assert (mask.tobytes(), img.tobytes()) == image(runs, data)
