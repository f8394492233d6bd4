"""The trace writer's fast paths: write_data (inline data without a copy) and the background
writer thread, and what happens on errors, kills and forks with them."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from kfdtrace.errors import TraceError
from kfdtrace.trace import TraceReader, TraceWriter
from kfdtrace.trace import format as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# bin8, bin16 and bin32 headers, kept in the record and as a separate piece (>= 64 KiB)
SIZES = [0, 5, 255, 256, 1000, 65535, 65536, 70_000, 300_000]
MODES = [dict(background=False), dict(background=True), dict(background=True, strict=False)]
MODE_IDS = ["sync", "background", "background-lax"]


def runs_of(size: int) -> bytes:
    return F.RUN.pack(0, size) if size else b""


def blocks(path) -> list:
    """(kind, raw payload) of every block after the header, in file order."""
    out = []
    with TraceReader(path) as r:
        off = r._data_start
        while off < r.size - F.TRAILER.size:
            b = r._read_block(off)
            out.append((b.kind, b.raw, b.count, b.first))
            off = b.end
    return out


def test_write_data_stores_what_write_with_bytes_stores(tmp_path):
    """Every R block payload is exactly the array32 header plus the records as msgpack packs
    them itself, whether `data` went through write() or write_data()."""
    path = tmp_path / "t.trace"
    rng = np.random.default_rng(5)
    datas = [rng.integers(0, 256, n, dtype=np.uint8) for n in SIZES]
    with TraceWriter(path, {}, codec="none", chunk_bytes=100_000, flush_interval=None) as w:
        for d in datas:
            w.write_data("memwrite_runs", d, va=0x1000, size=d.size, runs=runs_of(d.size), alloc=7)
            w.write("memwrite_runs", va=0x1000, size=d.size, runs=runs_of(d.size), alloc=7, data=d.tobytes())
        w.write_data("memwrite_runs", memoryview(datas[4].reshape(10, 100)), va=1, size=1000,
                     runs=runs_of(1000), alloc=None)      # a 2-D buffer is taken as its bytes
        with pytest.raises(ValueError, match="no data="):
            w.write_data("memwrite_runs", b"x", data=b"y")
        with pytest.raises(TypeError):
            w.write_data("memwrite_runs", datas[4][::2], va=1, size=500, runs=runs_of(500), alloc=None)
    packer = F.make_packer()
    with TraceReader(path) as r:
        recs = list(r.records())
        assert [x["data"] for x in recs[:-2:2]] == [d.tobytes() for d in datas] == [x["data"] for x in recs[1:-2:2]]
        assert recs[-2]["data"] == datas[4].tobytes() and recs[-2].fields == dict(recs[9].fields, va=1, alloc=None)
        for kind, raw, count, first in blocks(path):
            if kind == F.KIND_RECORDS:
                want = [packer.pack([x.kind, x.t, x.tid, x.fields]) for x in recs[first:first + count]]
                assert raw == b"\xdd" + count.to_bytes(4, "big") + b"".join(want)


def workload(w: TraceWriter, n: int = 300) -> list:
    """Records of several kinds, blobs and inline data; returns what each record should hold."""
    want, rng = [], np.random.default_rng(9)
    for i in range(n):
        if i % 37 == 0:
            ref = w.blob(bytes([i % 256]) * 3000)
            fields = dict(blob=ref, va=i, size=3000, target="t")
            w.write("codeobj", t=i, tid=1, **fields)
            want.append(("codeobj", fields))
        elif i % 11 == 0:
            d = rng.integers(0, 256, 4096 * (1 + i % 3), dtype=np.uint8)
            fields = dict(va=i << 12, size=d.size, runs=runs_of(d.size), alloc=i)
            w.write_data("memwrite_runs", d, **fields)
            want.append(("memwrite_runs", dict(fields, data=d.tobytes())))
        else:
            fields = dict(queue_id=1, engine="sdma", wptr_before=i, wptr_after=i + 1, dwords=bytes(i % 40), ibs=[])
            w.write("submit", t=i, tid=1, **fields)
            want.append(("submit", fields))
    return want


@pytest.mark.parametrize("opts", MODES, ids=MODE_IDS)
def test_every_mode_writes_the_same_trace(tmp_path, opts):
    path = tmp_path / "t.trace"
    with TraceWriter(path, {}, chunk_bytes=8192, flush_interval=None, **opts) as w:
        w.write("queue_create", t=0, tid=1, queue_id=1, gpu_id=2, type="sdma", ring_base=0, ring_size=4096,
                wptr_addr=8, rptr_addr=16, doorbell_offset=0, engine="sdma")
        want = workload(w)
    with TraceReader(path) as r:
        got = list(r.records())
        assert r.finalized and r.warnings == [] and len(got) == len(want) + 2 and len(r.chunks) > 3
        for (kind, fields), rec in zip(want, got[1:]):
            assert rec.kind == kind and {k: r.resolve(v) if k in ("blob",) else v for k, v in rec.fields.items()} \
                == {k: r.resolve(v) if k in ("blob",) else v for k, v in fields.items()}
        assert r.queues[0]["submits"] == sum(k == "submit" for k, _ in want)
        kinds = [k for k, _ in want]
        assert r.counts == {"queue_create": 1, "end": 1, **{k: kinds.count(k) for k in set(kinds)}}
        for c in r.chunks:              # the index agrees with the blocks, in every mode
            assert c.t_min <= c.t_max
        raws = [len(raw) for kind, raw, _, _ in blocks(path) if kind == F.KIND_RECORDS]
        assert max(raws) < 8192 + 3 * 12288 + 64 and sum(raws) > 8192 * 10


def test_flush_waits_for_the_writer_thread(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, flush_interval=None, background=True)
    for i in range(1000):
        w.write("signal", addr=i, value=i, queue=None)
    w.write_data("memwrite_runs", np.full(100_000, 7, np.uint8), va=0, size=100_000, runs=runs_of(100_000), alloc=None)
    w.flush()
    assert not w.pending
    with TraceReader(path) as r:         # still open: recovered from the blocks on disk
        assert r.recovered and len(r) == 1001 == len(w)
        assert r.record(1000)["data"] == bytes([7]) * 100_000
    w.close()


def test_records_are_written_in_place_and_large_data_by_the_thread_when_woken(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, chunk_bytes=1024, flush_interval=None, background=True)
    for i in range(200):
        w.write("signal", addr=i, value=i, queue=None)
    assert not w.pending                 # blocks of records: encoded right away
    with TraceReader(path) as r:
        assert len(r) == w._first > 150
    w.write_data("memwrite_runs", np.full(100_000, 1, np.uint8), va=0, size=100_000, runs=runs_of(100_000),
                 alloc=None)
    w.write("signal", addr=0, value=0, queue=None)
    with w._lock:
        w._flush_locked()
    assert len(w.pending) == 2           # large data, and the records after it, wait for the thread
    w.wake()
    deadline = time.monotonic() + 5
    while (w.pending or w._busy) and time.monotonic() < deadline:
        time.sleep(0.01)
    with TraceReader(path) as r:
        assert len(r) == w._first == 202 and r.record(200)["data"] == bytes([1]) * 100_000
    w.close()


def test_backpressure_bounds_what_waits(tmp_path):
    path = tmp_path / "t.trace"
    seen = []
    with TraceWriter(path, {}, chunk_bytes=16384, flush_interval=None, background=True,
                     wake_bytes=32768, max_pending=65536) as w:
        original = w._write_records

        def slow(*a):
            seen.append(w._queued)
            time.sleep(0.002)
            original(*a)
        w._write_records = slow
        for i in range(60):
            w.write_data("memwrite_runs", np.full(20_000, i, np.uint8), va=i, size=20_000, runs=runs_of(20_000),
                         alloc=None)
    assert max(seen) <= 65536 + 3 * 20_000
    with TraceReader(path) as r:
        assert [x["data"][:1] for x in r.records(kinds="memwrite_runs")] == [bytes([i]) for i in range(60)]


@pytest.mark.parametrize("strict", [True, False])
def test_write_errors_surface_or_go_to_on_error(tmp_path, strict):
    errors = []
    w = TraceWriter(tmp_path / "t.trace", {}, flush_interval=None, background=True, strict=strict,
                    on_error=None if strict else errors.append)
    w.write("marker", label="before")
    w._f.close()
    w._f = open("/dev/full", "wb", buffering=0)       # every later write of the file fails: ENOSPC
    w.write_data("memwrite_runs", np.zeros(4096, np.uint8), va=0, size=4096, runs=runs_of(4096), alloc=None)
    with pytest.raises(TraceError, match="No space left"):
        w.flush()
    if strict:
        with pytest.raises(TraceError, match="writing the trace failed"):
            w.write("marker", label="after")
    else:
        assert w.write("marker", label="after") == -1 and "No space left" in str(errors[-1])
        assert w.write_data("memwrite_runs", b"x", va=0, size=1, runs=runs_of(1), alloc=None) == -1
    with pytest.raises(TraceError):
        w.close()
    assert w.closed


KILLED = """
import os, signal, sys
import numpy as np
from kfdtrace.trace import TraceWriter
from kfdtrace.trace import format as F
w = TraceWriter(sys.argv[1], {"argv": ["killed"]}, flush_interval=None, background=True)
for i in range(400):
    if i % 100 == 0:
        w.flush()                        # records 0..299 reach the disk
    d = np.full(5000, i % 251, np.uint8)
    w.write_data("memwrite_runs", d, va=i, size=d.size, runs=F.RUN.pack(0, d.size), alloc=None)
    w.write("signal", addr=i, value=i, queue=None)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_background_writer_leaves_a_readable_prefix(tmp_path):
    path = tmp_path / "killed.trace"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(KILLED), str(path)], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == -signal.SIGKILL, p.stderr
    with TraceReader(path) as r:
        assert r.recovered and r.header["argv"] == ["killed"] and 600 <= len(r) < 800
        for rec in r.records():
            i = rec["va"] if rec.kind == "memwrite_runs" else rec["value"]
            assert rec.n // 2 == i and (rec.kind != "memwrite_runs" or rec["data"] == bytes([i % 251]) * 5000)


def test_forked_child_of_a_background_writer_stays_out(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, chunk_bytes=256, flush_interval=0.01, background=True)
    for i in range(50):
        w.write("marker", label=f"parent {i}")
    pid = os.fork()
    if pid == 0:                        # nothing here may wait for the parent's writer thread
        ok = w.write("marker", label="child") == -1 and w.write_data("memwrite_runs", b"x") == -1
        w.wake()
        w.note("k", 1)
        w.flush()
        w.close()
        os._exit(0 if ok and threading.active_count() == 1 else 1)
    assert os.waitpid(pid, 0)[1] == 0
    w.close()
    with TraceReader(path) as r:
        assert [x.get("label") for x in r.records()][-2:] == ["parent 49", None] and len(r) == 51


def test_background_writer_flushes_an_idle_buffer_by_itself(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, flush_interval=0.05, background=True)
    for i in range(3):
        w.write("marker", label=f"m{i}")
    def on_disk() -> int:
        with TraceReader(path) as r:
            return len(r)
    deadline = time.monotonic() + 5
    while on_disk() < 3 and time.monotonic() < deadline:     # no further writes: the thread flushes
        time.sleep(0.02)
    with TraceReader(path) as r:
        assert [x["label"] for x in r.records()] == ["m0", "m1", "m2"]
    w.close()
