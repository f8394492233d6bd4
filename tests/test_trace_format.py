"""The trace format: round trips, flushing, finalizing, index seeking, recovery, versioning, `info`."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from kfdtrace.commands import info as info_cmd
from kfdtrace.errors import TraceError
from kfdtrace.trace import FORMAT_VERSION, KINDS, MAGIC, BlobRef, Record, TraceReader, TraceWriter, validate
from kfdtrace.trace import format as F
from kfdtrace.trace.sample import GPU_ID, SAMPLE_HEADER, write_sample

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODECS = ["none", "zlib", pytest.param("zstd", marks=pytest.mark.skipif(not F.HAVE_ZSTD, reason="no zstd module"))]


def samples(w: TraceWriter) -> list[tuple[str, dict]]:
    """One realistic record of every kind (blobs stored through `w`)."""
    code, ib, mem = w.blob(b"\x7fELF" + bytes(300)), w.blob(bytes(range(64)) * 4), w.blob(b"\x11" * 4096)
    return [
        ("open", dict(path="/dev/kfd", fd=3, flags=0o2000002, errno=0)),
        ("ioctl", dict(fd=3, request=0xC0284B16, nr=0x16, name="AMDKFD_IOC_ALLOC_MEMORY_OF_GPU",
                       arg_in=bytes(40), arg_out=bytes(range(40)), ret=0, errno=0, dur_ns=1234,
                       payloads=[{"field": "device_ids_array_ptr", "addr": 0x7000, "data_in": b"\x2b\x1a\0\0",
                                  "data_out": None}])),
        ("mmap", dict(addr=0, length=0x2000, prot=3, flags=1, fd=3, offset=0xC000000000000000, result=0x7F00_0000,
                      errno=0, target="kfd")),
        ("munmap", dict(addr=0x7F00_0000, length=0x2000, errno=0)),
        ("alloc", dict(gpu_id=GPU_ID, handle=(GPU_ID << 32) | 7, va=0x7F0000200000, size=1 << 20, domain="vram",
                       flags=0x80000001, mmap_offset=0x100000)),
        ("queue_create", dict(queue_id=2, gpu_id=GPU_ID, type="sdma", ring_base=0x7F0000000000, ring_size=4096,
                              wptr_addr=0x7F0000001000, rptr_addr=0x7F0000001008,
                              doorbell_offset=0xC000000000000000 | (GPU_ID << 46) | 0x10, engine="sdma")),
        ("memwrite", dict(va=0x7F0000200000, size=4096, data=mem, alloc=(GPU_ID << 32) | 7)),
        ("memwrite_runs", dict(va=0x7F0000201000, size=4104, runs=F.RUN.pack(0, 4096) + F.RUN.pack(0x3000, 0x3008),
                               data=b"\x22" * 4096 + b"\x33" * 8, alloc=(GPU_ID << 32) | 7)),
        ("codeobj", dict(blob=code, va=0x7F0000300000, size=304, target="amdgcn-amd-amdhsa--gfx1100")),
        ("submit", dict(queue_id=2, engine="sdma", wptr_before=0, wptr_after=64, dwords=b"\x00" * 16 + b"\x01" * 48,
                        ibs=[{"addr": 0x7F0000400000, "size": 256, "blob": ib}], doorbell=0x7F1000000010, value=64)),
        ("submit", dict(queue_id=2, engine="sdma", wptr_before=64, wptr_after=320, dwords=ib, ibs=[])),
        ("signal", dict(addr=0x7F0000500000, value=1, queue=2)),
        ("wait", dict(addr=0x7F0000500000, condition="ge", value=1, timeout=10**9, result="ok", value_seen=1,
                      queue=2)),
        ("event_wait", dict(events=[1, 2], result=0, timeout=1000, wait_all=True)),
        ("checksum", dict(va=0x7F0000200000, size=4096, algo="crc32", digest=b"\xde\xad\xbe\xef")),
        ("marker", dict(label="phase 1 ✓")),
        ("queue_destroy", dict(queue_id=2)),
        ("free", dict(handle=(GPU_ID << 32) | 7, gpu_id=GPU_ID)),
        ("close", dict(fd=3, errno=0, path="/dev/kfd")),
        ("error", dict(text="Traceback ...\nValueError: boom", type="ValueError")),
    ]


def fields_of(recs, kind):
    return next(f for k, f in recs if k == kind)


def write_samples(path, **opts) -> list[tuple[str, dict]]:
    with TraceWriter(path, {"backend": "emu"}, **opts) as w:
        recs = samples(w)
        for kind, fields in recs:
            w.write(kind, **fields)
    return recs


def many(path, n=400, **opts) -> None:
    """n signal records (value = 3n) in small chunks, with a blob every 10th record."""
    opts.setdefault("chunk_bytes", 512)
    with TraceWriter(path, {}, flush_interval=None, **opts) as w:
        for i in range(n):
            if i % 10 == 0:
                w.write("memwrite", va=i, size=8, data=w.blob(i.to_bytes(8, "little")), alloc=None)
            else:
                w.write("signal", addr=0x1000 + i, value=3 * i, queue=None)


def test_every_kind_has_a_sample_that_conforms(tmp_path):
    w = TraceWriter(tmp_path / "s.trace", {}, flush_interval=None)
    recs = samples(w)
    assert {k for k, _ in recs} | {"end"} == set(KINDS)
    for kind, fields in recs:
        assert validate(kind, fields) == [], kind
    assert validate("signal", {"addr": 1, "value": "x", "queue": None}) == ["signal.value: expected int, got str"]
    assert validate("memwrite", {"va": 1, "size": 1, "data": 16, "alloc": None}) == [
        "memwrite.data: expected bytes|blob, got int"]
    runs = dict(fields_of(recs, "memwrite_runs"))
    for bad, why in ((dict(size=4105), "cover 4104 bytes, size says 4105"), (dict(runs=b"\0" * 15), "multiple of 16"),
                     (dict(runs=F.RUN.pack(0, 4096) + F.RUN.pack(8, 16)), "not after the previous"),
                     (dict(runs=F.RUN.pack(0, 4096) + F.RUN.pack(0x3008, 0x3000)), "is empty"),
                     (dict(data=b"\0" * 4100), "4100 bytes, size says 4104")):
        assert why in " ".join(validate("memwrite_runs", dict(runs, **bad))), why
    assert validate("nope", {}) == ["unknown record kind 'nope'"]
    w.close()


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_all_kinds(tmp_path, codec):
    path = tmp_path / "t.trace"
    recs = write_samples(path, codec=codec, chunk_bytes=256)
    with TraceReader(path) as r:
        assert r.finalized and not r.recovered and r.status == "finalized" and r.warnings == []
        assert r.version == FORMAT_VERSION and r.header["backend"] == "emu" and r.header["format"] == "1.1"
        assert r.header["tool"] == "kfdtrace" and r.header["pid"] == os.getpid()
        got = list(r.records())
        assert len(got) == len(r) == len(recs) + 1 and len(r.chunks) > 1
        assert [g.n for g in got] == list(range(len(got)))
        for (kind, fields), rec in zip(recs, got):
            assert isinstance(rec, Record) and rec.kind == kind and rec.fields == fields
            assert rec.tid == threading.get_native_id()
        assert all(a.t <= b.t for a, b in zip(got, got[1:]))
        assert got[-1].kind == "end" and got[-1]["status"] == "finalized" and got[-1]["exit_status"] is None
        sub_inline, sub_blob = [g for g in got if g.kind == "submit"]
        assert type(sub_inline["dwords"]) is bytes and type(sub_blob["dwords"]) is BlobRef
        assert r.blob(sub_blob["dwords"]) == bytes(range(64)) * 4 == r.blob(sub_inline["ibs"][0]["blob"])
        assert r.resolve(sub_blob["dwords"]) == bytes(range(64)) * 4 and r.resolve(sub_inline["dwords"]) == fields_of(
            recs, "submit")["dwords"]
        assert r.blob(got[[k for k, _ in recs].index("memwrite")]["data"]) == b"\x11" * 4096
        mw = [k for k, _ in recs].index("memwrite")
        assert r.memory_writes(got[mw]) == [(0x7F0000200000, b"\x11" * 4096)]
        assert r.memory_writes(got[mw + 1]) == [(0x7F0000201000, b"\x22" * 4096), (0x7F0000204000, b"\x33" * 8)]
        with pytest.raises(TraceError, match=r"record 1 \(marker\)"):
            r.memory_writes(Record(1, "marker", 0, 0, {"label": "x"}))
        bad = Record(7, "memwrite_runs", 0, 0, dict(fields_of(recs, "memwrite_runs"), runs=F.RUN.pack(0, 8)))
        with pytest.raises(TraceError, match="record 7 .*runs cover 8 bytes"):
            r.memory_writes(bad)
        assert r.record(2) == got[2] and r.record(2)["prot"] == 3


def test_blobs_are_stored_once(tmp_path):
    data = os.urandom(50_000)
    sizes = []
    for copies in (1, 3):
        path = tmp_path / f"b{copies}.trace"
        with TraceWriter(path, {"argv": []}, codec="none") as w:
            refs = {w.blob(data) for _ in range(copies)}
            w.write("memwrite", va=0, size=len(data), data=refs.pop(), alloc=None)
            assert not refs
        sizes.append(path.stat().st_size)
        with TraceReader(path) as r:
            assert r.blob_stats == {"count": 1, "bytes": 50_000, "refs": copies - 1}
            assert r.blob(r.record(0)["data"]) == data
    assert abs(sizes[1] - sizes[0]) < 100  # three stores of 50 kB cost the same as one


def test_large_blob_and_missing_blob(tmp_path):
    big = os.urandom(300_000)
    with TraceWriter(tmp_path / "t.trace", {}, chunk_bytes=1024) as w:
        ref = w.blob(big)
        w.write("codeobj", blob=ref, va=0, size=len(big), target="x")
    with TraceReader(tmp_path / "t.trace") as r:
        assert r.blob(r.record(0)["blob"]) == big and r.has_blob(ref)
        with pytest.raises(TraceError, match="not in this trace") as e:
            r.blob(b"\0" * 16)
        assert e.value.offset is not None


def test_flush_by_size(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, chunk_bytes=300, flush_interval=None)
    for i in range(200):
        w.write("signal", addr=i, value=i, queue=None)
    with TraceReader(path) as r:  # read while the writer is still open: only flushed chunks exist
        assert r.recovered and 0 < len(r) < 200 and len(r) == w._first
        assert [x["value"] for x in r.records()] == list(range(len(r)))
        assert len(r.chunks) >= 10 and r.recovered_upto["reason"] == "end of file"
    w.close()
    with TraceReader(path) as r:
        assert len(r) == 201 and r.finalized


@pytest.mark.parametrize("interval", [0.05, None])
def test_flush_by_time_even_when_idle(tmp_path, interval):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, flush_interval=interval)
    for i in range(3):
        w.write("marker", label=f"m{i}")
    time.sleep(0.3)  # no further writes: only the background timer can flush
    with TraceReader(path) as r:
        assert [x["label"] for x in r.records()] == (["m0", "m1", "m2"] if interval else [])
    w.close()


def test_close_status_idempotent_and_write_after_close(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {})
    w.write("marker", label="a")
    w.close("error", exit_status=3)
    size = path.stat().st_size
    w.close()  # no-op
    assert path.stat().st_size == size and w.closed and w.status == "error"
    with pytest.raises(TraceError, match="already closed"):
        w.write("marker", label="b")
    with TraceReader(path) as r:
        assert (r.status, r.exit_status, r.finalized) == ("error", 3, True)
        assert r.record(1).kind == "end" and r.record(1)["status"] == "error" and r.record(1)["exit_status"] == 3


def test_context_manager_records_the_exception(tmp_path):
    path = tmp_path / "t.trace"
    with pytest.raises(ZeroDivisionError):
        with TraceWriter(path, {}) as w:
            w.write("marker", label="before")
            1 / 0
    with TraceReader(path) as r:
        kinds = [x.kind for x in r.records()]
        assert kinds == ["marker", "error", "end"] and r.status == "error"
        assert "ZeroDivisionError" in r.record(1)["text"] and r.record(1)["type"] == "ZeroDivisionError"


def test_writer_checks_records(tmp_path):
    w = TraceWriter(tmp_path / "t.trace", {})
    with pytest.raises(ValueError, match="unknown record kind 'ioclt'"):
        w.write("ioclt", fd=1)
    with pytest.raises(ValueError, match="lacks field.*value"):
        w.write("signal", addr=1, queue=None)
    with pytest.raises(TypeError, match="signal record"):
        w.write("signal", addr=1, value=object(), queue=None)
    assert w.write("signal", addr=1, value=2, queue=None) == 0  # failed writes consumed no number
    assert w.write("signal", addr=(1 << 64) - 1, value=-5, queue=(3,)) == 1
    w.close()
    with TraceReader(tmp_path / "t.trace") as r:
        assert r.record(1).fields == {"addr": (1 << 64) - 1, "value": -5, "queue": [3]}


def test_index_is_used_for_seeking(tmp_path):
    path = tmp_path / "t.trace"
    many(path)
    with TraceReader(path) as r:
        first, last = r.chunks[0], r.chunks[-2]
    data = bytearray(path.read_bytes())
    data[first.offset + F.BLOCK.size + 3] ^= 0xFF  # corrupt the first records block only
    path.write_bytes(data)
    with TraceReader(path) as r:  # the index is intact: open does not touch the records blocks
        assert r.finalized and len(r) == 401
        n = last.first + 1
        got = list(r.records(start=n, stop=n + 3))
        assert [g.n for g in got] == [n, n + 1, n + 2]
        assert [g["value"] for g in got if g.kind == "signal"] == [3 * k for k in range(n, n + 3) if k % 10]
        assert r.record(n).n == n
        with pytest.raises(TraceError, match="bad CRC") as e:
            list(r.records())
        assert e.value.offset == first.offset


def test_kind_filter_and_ranges(tmp_path):
    path = tmp_path / "t.trace"
    many(path)
    with TraceReader(path) as r:
        mw = list(r.records(kinds="memwrite"))
        assert [m.n for m in mw] == list(range(0, 400, 10))
        assert [r.blob(m["data"]) for m in mw] == [i.to_bytes(8, "little") for i in range(0, 400, 10)]
        assert [x.n for x in r.records(kinds={"signal", "end"}, start=395)] == [395, 396, 397, 398, 399, 400]
        assert list(r.records(start=1000)) == [] and list(r.records(start=5, stop=5)) == []
        assert r.counts == {"memwrite": 40, "signal": 360, "end": 1}
        with pytest.raises(IndexError):
            r.record(401)


def test_summary_queues_allocations_and_recovered_equal_finalized(tmp_path):
    path = tmp_path / "t.trace"
    write_sample(path, iterations=30, chunk_bytes=2048)
    with TraceReader(path) as r:
        fin = r.info()
        size_index = r._index_offset
    assert fin["gpus"][0]["gfx"] == "gfx1100" and fin["memory_capture"] == {"method": "driver"}
    (q,) = fin["queues"]
    assert (q["queue_id"], q["type"], q["engine"], q["submits"]) == (1, "compute", "pm4", 30)
    assert q["destroyed"] is not None and q["destroyed"] > q["created"]
    args = [a for a in fin["allocations"] if a["va"] == 0x7F0000200000][0]
    assert (args["memwrites"], args["memwrite_bytes"], args["domain"]) == (30, 30 * 64, "gtt")
    assert sum(1 for a in fin["allocations"] if a["freed"] is None) == 1
    os.truncate(path, size_index)  # drop the index and trailer: a recovery scan must rebuild the same
    with TraceReader(path) as r:
        rec = r.info()
    assert rec["recovered"] and not rec["finalized"] and rec["recovered_upto"]["offset"] == size_index
    for key in ("records", "counts", "queues", "allocations", "duration_ns"):
        assert rec[key] == fin[key], key
    assert rec["blobs"]["count"] == fin["blobs"]["count"] and rec["blobs"]["bytes"] == fin["blobs"]["bytes"]


def test_recover_file_truncated_mid_chunk(tmp_path):
    path = tmp_path / "t.trace"
    many(path)
    with TraceReader(path) as r:
        chunks, before = r.chunks, list(r.records())
    k = len(chunks) // 2
    os.truncate(path, chunks[k].offset + F.BLOCK.size + 10)
    with TraceReader(path) as r:
        assert r.recovered and not r.finalized and r.status == "recovered"
        assert len(r) == chunks[k].first and list(r.records()) == before[:chunks[k].first]
        up = r.recovered_upto
        assert up["offset"] == chunks[k].offset and up["record"] == chunks[k].first - 1
        assert "truncated block" in up["reason"] and any("did not finalize" in w for w in r.warnings)
        last_mw = 10 * ((len(r) - 1) // 10)
        assert [r.blob(x["data"]) for x in r.records(kinds="memwrite")][-1] == last_mw.to_bytes(8, "little")


def test_recovery_stops_at_a_bad_crc_and_says_so(tmp_path):
    path = tmp_path / "t.trace"
    many(path)
    with TraceReader(path) as r:
        chunks, index = r.chunks, r._index_offset
    data = bytearray(path.read_bytes()[:index])  # no index, no trailer: as if the recorder was killed
    k = 5
    data[chunks[k].offset + F.BLOCK.size + 1] ^= 0x40
    path.write_bytes(data)
    with TraceReader(path) as r:
        assert len(r) == chunks[k].first and r.recovered_upto["offset"] == chunks[k].offset
        assert "bad CRC" in r.recovered_upto["reason"] and "bad CRC" in r.warnings[-1]
        assert [x.n for x in r.records()] == list(range(chunks[k].first))


KILLED_WRITER = """
import os, signal, sys
from kfdtrace.trace import TraceWriter
w = TraceWriter(sys.argv[1], {"argv": ["killed"]}, chunk_bytes=1 << 20, flush_interval=None)
for i in range(160):
    if i % 40 == 0:
        w.flush()                       # records 0..119 reach the disk
    w.write("memwrite", va=i, size=4, data=w.blob(i.to_bytes(4, "little")), alloc=None)
os.kill(os.getpid(), signal.SIGKILL)     # records 120..159 were still buffered
"""


def _run(script: str, *args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=60, **kw)


def test_damaged_index_falls_back_to_recovery(tmp_path):
    path = tmp_path / "t.trace"
    many(path)
    with TraceReader(path) as r:
        before, index = list(r.records()), r._index_offset
    data = bytearray(path.read_bytes())
    data[index + F.BLOCK.size + 5] ^= 0x10
    path.write_bytes(data)
    with TraceReader(path) as r:
        assert r.recovered and list(r.records()) == before and r.recovered_upto["offset"] == index
        assert "index is unreadable" in r.warnings[0] and "bad CRC in index block" in r.warnings[0]


def test_recover_after_sigkill(tmp_path):
    path = tmp_path / "killed.trace"
    p = _run(KILLED_WRITER, path)
    assert p.returncode == -signal.SIGKILL, p.stderr
    with TraceReader(path) as r:
        assert r.recovered and r.header["argv"] == ["killed"] and len(r) == 120
        assert [r.blob(x["data"]) for x in r.records()] == [i.to_bytes(4, "little") for i in range(120)]
        assert r.recovered_upto == {"offset": path.stat().st_size, "record": 119, "reason": "end of file"}
        assert r.counts == {"memwrite": 120}


FINALIZING = """
import os, signal, sys, time
from kfdtrace.trace import TraceWriter
from kfdtrace.trace.writer import finalize_on_exit
w = finalize_on_exit(TraceWriter(sys.argv[1], {}, flush_interval=None))
w.write("marker", label="started")
how = sys.argv[2]
if how == "raise":
    raise RuntimeError("script failed")
if how in ("SIGTERM", "SIGINT"):
    os.kill(os.getpid(), getattr(signal, how))
    time.sleep(5)
w.write("marker", label="finished")
"""


@pytest.mark.parametrize("how, returncode, status, last_kinds", [
    ("normal", 0, "finalized", ["marker", "marker", "end"]),
    ("raise", 1, "error", ["marker", "error", "end"]),
    ("SIGTERM", -signal.SIGTERM, "terminated", ["marker", "end"]),
    ("SIGINT", -signal.SIGINT, "interrupted", ["marker", "end"]),
])
def test_finalize_on_exit(tmp_path, how, returncode, status, last_kinds):
    path = tmp_path / "t.trace"
    p = _run(FINALIZING, path, how)
    assert p.returncode == returncode, p.stderr
    with TraceReader(path) as r:
        assert r.finalized and r.status == status
        assert [x.kind for x in r.records()] == last_kinds
        if how == "raise":
            assert "RuntimeError: script failed" in r.record(1)["text"] and "script failed" in p.stderr


def test_signal_during_write_is_deferred_until_the_record_is_complete(tmp_path):
    path = tmp_path / "t.trace"
    script = """
    import os, signal, sys
    from kfdtrace.trace import TraceWriter
    from kfdtrace.trace.format import Summary
    from kfdtrace.trace.writer import finalize_on_exit
    w = finalize_on_exit(TraceWriter(sys.argv[1], {}, flush_interval=None))
    class SignalInside(Summary):
        def add(self, *a):               # the signal lands while write() holds the writer's lock
            os.kill(os.getpid(), signal.SIGTERM)
            super().add(*a)
    w._summary = SignalInside()
    w.write("marker", label="inside")
    w.write("marker", label="never")
    """
    p = _run(script, path)
    assert p.returncode == -signal.SIGTERM, p.stderr
    with TraceReader(path) as r:
        assert r.status == "terminated" and [x.kind for x in r.records()] == ["marker", "end"]


def test_forked_child_does_not_write(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, flush_interval=None)
    w.write("marker", label="parent 1")
    pid = os.fork()
    if pid == 0:
        code = 0 if w.write("marker", label="child") == -1 else 1
        w.close()
        os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    w.write("marker", label="parent 2")
    w.close()
    with TraceReader(path) as r:
        assert [x.get("label") for x in r.records()] == ["parent 1", "parent 2", None]


def test_concurrent_writers(tmp_path):
    path = tmp_path / "t.trace"
    w = TraceWriter(path, {}, chunk_bytes=4096, flush_interval=0.01)

    def worker(k):
        for i in range(500):
            w.write("signal", addr=k, value=i, queue=None)
            if i % 50 == 0:
                w.blob(bytes([k]) * 100)
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    w.close()
    with TraceReader(path) as r:
        recs = list(r.records(kinds="signal"))
        assert len(recs) == 2000 and r.blob_stats["count"] == 4
        for k in range(4):
            mine = [x for x in recs if x["addr"] == k]
            assert [x["value"] for x in mine] == list(range(500)) and len({x.tid for x in mine}) == 1
        assert len({x.tid for x in recs}) == 4


def test_unknown_kind_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "t.trace"
    with TraceWriter(path, {}, strict=False) as w:
        w.write("marker", label="a")
        w.write("gpu_reset", engine="gfx", reason=7)  # a kind from a future format
        w.write("marker", label="b")
        w.write("gpu_reset", engine="sdma", reason=8)
    with TraceReader(path) as r:
        assert [x.get("label") for x in r.records()] == ["a", "b", None]
        assert len(r) == 5 and r.counts["gpu_reset"] == 2
        assert len(r.warnings) == 1 and "'gpu_reset'" in r.warnings[0] and "2 record" in r.warnings[0]
        assert r.record(1).kind == "gpu_reset" and r.record(1)["reason"] == 7
        assert [x.n for x in r.records(include_unknown=True)] == [0, 1, 2, 3, 4]
        assert r.info()["unknown_kinds"] == ["gpu_reset"]


def _patch_version(path, major, minor):
    data = bytearray(path.read_bytes())
    data[8:12] = major.to_bytes(2, "little") + minor.to_bytes(2, "little")
    path.write_bytes(data)


def test_newer_major_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "t.trace"
    many(path, n=10)
    _patch_version(path, 2, 3)
    with pytest.raises(TraceError) as e:
        TraceReader(path)
    assert "2.3" in str(e.value) and "1.1" in str(e.value) and e.value.offset == 8 and e.value.path == str(path)


def test_newer_minor_is_read_with_a_warning(tmp_path):
    path = tmp_path / "t.trace"
    many(path, n=10)
    _patch_version(path, 1, 7)
    with TraceReader(path) as r:
        assert len(r) == 11 and r.version == (1, 7)
        assert any("1.7" in w and "newer" in w for w in r.warnings)


@pytest.mark.parametrize("content, match", [
    (b"", "too short"), (b"hello world" * 10, "not a kfdtrace trace"),
    (MAGIC + b"\x01\0\0\0\0\0\0\0" + bytes(200), "no block here"),
], ids=["empty", "text", "no-header"])
def test_not_a_trace(tmp_path, content, match):
    path = tmp_path / "x.trace"
    path.write_bytes(content)
    with pytest.raises(TraceError, match=match) as e:
        TraceReader(path)
    assert e.value.offset is not None
    with pytest.raises(TraceError, match="cannot open"):
        TraceReader(tmp_path / "missing.trace")


def _info(*argv, capsys) -> tuple[str, str]:
    p = argparse.ArgumentParser()
    info_cmd.add_parser(p.add_subparsers())
    args = p.parse_args(["info", *map(str, argv)])
    assert args.func(args) == 0
    cap = capsys.readouterr()
    return cap.out, cap.err


def test_info_command(tmp_path, capsys):
    path = tmp_path / "t.trace"
    write_sample(path, iterations=25, chunk_bytes=1024)
    out, err = _info(path, capsys=capsys)
    assert "status      finalized" in out and "KFD         1.17 (emu backend)" in out
    assert "kfdtrace record saxpy.py" in out and "sha256 " + "5" * 64 in out
    assert "capture method driver" in out and err == ""
    gpu_line = [ln for ln in out.splitlines() if ln.strip().startswith(str(GPU_ID))][0]
    assert gpu_line.split() == [str(GPU_ID), "1", "gfx1100", "RDNA3", "navi31"]
    assert "  submit         25" in out and "  end            1" in out
    qline = [ln for ln in out.splitlines() if ln.startswith("  1 ")][0].split()
    assert qline[:4] == ["1", str(GPU_ID), "compute", "pm4"] and qline[7] == "25"
    assert "allocations (5: gtt 3 = 72.0 KiB, vram 2 = 1.1 MiB)" in out

    js, _ = _info(path, "--json", capsys=capsys)
    data = json.loads(js)
    with TraceReader(path) as r:
        assert data["counts"] == r.counts and data["records"] == len(r) and data["finalized"] is True
        assert data["duration_ns"] == r.t_max > 0 and len(data["allocations"]) == 5

    with TraceReader(path) as r:
        cut = r.chunks[3].offset + 40
    os.truncate(path, cut)
    out, err = _info(path, capsys=capsys)
    with TraceReader(path) as r:
        n = len(r)
    assert f"recovered (no usable index): {n} records, up to byte {cut - 40} of {cut}" in out
    assert "scan stopped" in out and "truncated block" in out
    assert "warning: no usable index (no trailer: the recorder did not finalize" in err


def test_info_progress_bar_only_for_large_recovery_scans(tmp_path):
    calls = []
    path = tmp_path / "t.trace"
    many(path, n=300)
    with TraceReader(path, progress=lambda d, t: calls.append((d, t))) as r:
        assert r.finalized and calls == []  # finalized: no scan, no progress
    os.truncate(path, path.stat().st_size - 1)
    with TraceReader(path, progress=lambda d, t: calls.append((d, t))) as r:
        size = path.stat().st_size
        assert r.recovered and calls[-1] == (size, size) and len(calls) > len(r.chunks)
        assert all(a[0] <= b[0] for a, b in zip(calls, calls[1:]))


def test_info_gpus_from_topology_when_the_header_has_no_gpu_list(tmp_path, capsys):
    path = tmp_path / "t.trace"
    topo = {"nodes": [{"gpu_id": 0, "name": "cpu", "properties": {"gfx_target_version": 0}},
                      {"gpu_id": 4660, "name": "aqua_vanjaram", "properties": {"gfx_target_version": 90402}}]}
    with TraceWriter(path, {"topology": topo, "argv": ["x"]}):
        pass
    out, _ = _info(path, capsys=capsys)
    assert [ln.split() for ln in out.splitlines() if ln.startswith("  4660")] == \
        [["4660", "1", "gfx942", "CDNA3", "aqua_vanjaram"]]
