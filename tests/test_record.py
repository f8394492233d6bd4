"""The recording port, in process, against the emulated GPU's own log of what it did.

Every comparison is trace vs `EmulatedPort.log` (the emulated kernel's ground truth) or vs the
bytes the workload wrote, never the recorder's view of itself.
"""
from __future__ import annotations

import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import kfdtrace
from kfdtrace.abi import ioctl as abi
from kfdtrace.commands.dump import TraceDecoder
from kfdtrace.port import set_port_wrapper
from kfdtrace.record.recorder import Recorder
from kfdtrace.trace import BlobRef, TraceReader, validate

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


class Recording:
    """Record `fn()` in process: the trace, the recording ports and the emulated ports."""

    def __init__(self, path: Path, fn, **recorder_kw):
        self.path = path
        self.rec = Recorder(path, **recorder_kw).start()
        self.ports = []

        def wrap(p):
            rp = self.rec.wrap(p)
            self.ports.append(rp)
            return rp

        set_port_wrapper(wrap, self.rec)
        try:
            self.result = fn()
        finally:
            self.summary = self.rec.finish()
        self.reader = TraceReader(path)
        self.records = list(self.reader.records())

    def kind(self, k: str) -> list:
        return [r for r in self.records if r.kind == k]

    def memwrites(self) -> list[tuple[object, int, bytes]]:
        """(record, GPU VA, bytes) of every piece of CPU-written memory, in trace order."""
        return [(m, va, data) for m in self.records if m.kind in ("memwrite", "memwrite_runs")
                for va, data in self.reader.memory_writes(m)]

    @property
    def log(self) -> list[dict]:
        assert len(self.ports) == 1
        return self.ports[0].inner.log


@pytest.fixture(autouse=True)
def _emu(monkeypatch):
    monkeypatch.setenv("KFDTRACE_BACKEND", "emu")
    monkeypatch.delenv("KFDTRACE_EMU_SEED", raising=False)
    monkeypatch.setenv("KFDTRACE_EMU_GPUS", "1")
    yield
    set_port_wrapper(None, None)


def load_example(name: str, monkeypatch, **sizes):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    for k, v in sizes.items():
        assert hasattr(mod, k)
        setattr(mod, k, v)
    return mod


def blob_bytes(reader, v) -> bytes:
    return reader.blob(v) if isinstance(v, BlobRef) else bytes(v)


# -- the trace against the emulator's log ----------------------------------------------------------
@pytest.fixture(scope="module")
def sdma_copy(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("KFDTRACE_BACKEND", "emu")
    mp.setenv("KFDTRACE_EMU_GPUS", "1")
    mp.delenv("KFDTRACE_EMU_SEED", raising=False)
    try:
        mod = load_example("sdma_copy", mp, SIZE=64 << 10)
        r = Recording(tmp_path_factory.mktemp("rec") / "sdma_copy.trace", mod.main)
    finally:
        set_port_wrapper(None, None)
        mp.undo()
    return r


def test_every_record_conforms_to_the_schema_and_the_trace_is_finalized(sdma_copy):
    r = sdma_copy
    assert r.result == 0
    assert r.reader.finalized and r.reader.status == "finalized"
    for rec in r.records:
        assert validate(rec.kind, rec.fields) == [], (rec.n, rec.kind)
    h = r.reader.header
    assert h["backend"] == "emu" and h["kfd_version"]["major"] == 1
    assert h["gpus"][0]["gfx"] == "gfx942" and h["gpus"][0]["gpu_id"] == h["topology"]["nodes"][1]["gpu_id"]
    assert h["memory_capture"]["method"] == r.rec.memtrack_method


def test_ioctls_match_the_emulator_log(sdma_copy):
    r = sdma_copy
    logged = [e for e in r.log if e["op"] == "ioctl"]
    traced = r.kind("ioctl")
    assert [e["name"] for e in logged] == [t["name"].removeprefix("AMDKFD_IOC_") for t in traced]
    for e, t in zip(logged, traced):
        assert t["errno"] == e["errno"] and t["request"] == e["request"] and t["fd"] == e["fd"]
        if e.get("args_out") is not None:
            assert abi.struct_to_dict(abi.parse_args(t["request"], t["arg_out"])) == e["args_out"]
        if e.get("args_in") is not None:
            assert abi.struct_to_dict(abi.parse_args(t["request"], t["arg_in"])) == e["args_in"]
    # pointer payloads: MAP_MEMORY_TO_GPU's device id array holds the GPU's id
    maps = [t for t in traced if t["name"] == "AMDKFD_IOC_MAP_MEMORY_TO_GPU"]
    gpu = r.reader.header["gpus"][0]["gpu_id"]
    assert maps and all(struct.unpack("<I", t["payloads"][0]["data_in"]) == (gpu,) for t in maps)


def test_allocations_frees_and_queues_match_the_emulator_log(sdma_copy):
    r = sdma_copy
    logged = [(e["handle"], e["gpu_id"], e["va"], e["size"], e["kind"], e["flags"])
              for e in r.log if e["op"] == "alloc"]
    traced = [(a["handle"], a["gpu_id"], a["va"], a["size"], a["domain"], a["flags"]) for a in r.kind("alloc")]
    assert traced == logged and len(traced) >= 6
    assert [f["handle"] for f in r.kind("free")] == [e["handle"] for e in r.log if e["op"] == "free"]
    (lq,) = [e for e in r.log if e["op"] == "queue_create"]
    (tq,) = r.kind("queue_create")
    assert (tq["queue_id"], tq["ring_base"], tq["ring_size"], tq["wptr_addr"], tq["rptr_addr"],
            tq["doorbell_offset"], tq["type"].upper()) == \
        (lq["queue_id"], lq["ring"], lq["ring_size"], lq["wptr"], lq["rptr"], lq["doorbell_offset"], lq["type"])
    mm = [m for m in r.kind("mmap") if m.get("mapping") == "doorbell"]
    assert mm and mm[0]["queues"][0]["doorbell"] == r.kind("submit")[0]["doorbell"]


def test_submissions_match_the_doorbells_the_emulator_saw(sdma_copy):
    r = sdma_copy
    last, want = {}, []
    for e in r.log:
        if e["op"] == "doorbell" and e["wptr"] != last.get(e["queue_id"], 0):
            want.append((e["queue_id"], e["addr"], e["value"], e["wptr"]))
            last[e["queue_id"]] = e["wptr"]
    subs = r.kind("submit")
    assert [(s["queue_id"], s["doorbell"], s["value"], s["wptr_after"]) for s in subs] == want
    # the ring bytes between the pointers are contiguous and decode to what sdma_copy submitted
    assert all(a["wptr_after"] == b["wptr_before"] for a, b in zip(subs, subs[1:]))
    dec = TraceDecoder(r.reader)
    names = [[p.name for p in dec.submit_packets(s)[0]] for s in subs]
    assert names[0] == ["COPY_LINEAR"] and names[2] == ["CONST_FILL"]
    assert names[-1] == ["FENCE", "FENCE", "FENCE", "TRAP"]


def test_fence_values_match_the_interrupts_the_emulator_raised(sdma_copy):
    r = sdma_copy
    dec = TraceDecoder(r.reader)
    traps = [p.fields["int_context"] for s in r.kind("submit") for p in dec.submit_packets(s)[0]
             if p.name == "TRAP"]
    assert traps == [e["ctxid"] for e in r.log if e["op"] == "interrupt"]
    (sig,) = r.kind("signal")
    (wait,) = r.kind("wait")
    fences = {p.fields["addr"]: p.fields["data"] for s in r.kind("submit")
              for p in dec.submit_packets(s)[0] if p.name == "FENCE"}
    assert fences[sig["addr"]] == sig["value"] == 1 and sig["queue"] == r.kind("submit")[0]["queue_id"]
    assert wait["addr"] == sig["addr"] and wait["result"] == "ok" and wait["value_seen"] == 1
    assert wait.n > r.kind("submit")[-1].n


def test_memwrites_and_checksums_hold_the_workload_data(sdma_copy):
    r = sdma_copy
    size = 64 << 10
    data = np.random.default_rng(1).integers(0, 2**32, size // 4, dtype=np.uint32)
    src, vram, dst = r.kind("alloc")[:3]
    # the CPU filled src: its memwrite holds exactly that, before the first submission
    (mw,) = [m for m in r.kind("memwrite") if m["alloc"] == src["handle"]]
    assert r.reader.memory_writes(mw) == [(src["va"], data.tobytes())] and type(mw["data"]) is bytes
    assert mw.n < r.kind("submit")[0].n
    # GPU-written memory (vram, the userptr destination) is never a memwrite
    assert not [m for m, _, _ in r.memwrites() if m["alloc"] in (vram["handle"], dst["handle"])]
    # after the wait, the checksums describe what the GPU produced
    want = data.copy()
    want[-1024:] = 0xDEADBEEF
    sums = {(c["va"], c["size"]): c["digest"] for c in r.kind("checksum")}
    assert sums[(dst["va"], size)] == struct.pack("<I", zlib.crc32(want.tobytes()))
    assert sums[(vram["va"], size)] == struct.pack("<I", zlib.crc32(data.tobytes()))


def test_signal_pool_is_captured_but_not_checksummed(sdma_copy):
    """The driver declares its signal pools: the CPU-written signal slots still become memwrites,
    but no wait checksums the pool (each wait records the value it saw), while the data buffers
    are checksummed."""
    r = sdma_copy
    tl = r.kind("signal")[0]["timeline"]
    (pool,) = [a for a in r.kind("alloc") if a["va"] <= tl < a["va"] + a["size"]]
    assert [va for m, va, _ in r.memwrites() if m["alloc"] == pool["handle"]], "signal slot not captured"
    sums = r.kind("checksum")
    assert sums and not [c for c in sums if pool["va"] <= c["va"] < pool["va"] + pool["size"]]
    assert not [m for m in r.kind("marker") if "signal_pool" in m["label"]]


# -- memory capture, precisely ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [None, 3, 11])
def test_memwrite_holds_exactly_what_the_cpu_wrote(tmp_path, monkeypatch, seed):
    """Also with a seeded (asynchronous) emulated GPU, which runs submitted work during later
    ioctls: what it writes into USERPTR memory is never taken for CPU writes."""
    from kfdtrace.driver import open_device

    if seed is not None:
        monkeypatch.setenv("KFDTRACE_EMU_SEED", str(seed))

    def work():
        with open_device() as dev:
            src, dst, host = dev.alloc(8 * 4096, "gtt"), dev.alloc(8 * 4096, "vram"), dev.alloc(8 * 4096, "host")
            a = np.arange(8 * 1024, dtype=np.uint32)
            src.view(np.uint32)[:] = a
            q, t = dev.sdma_queue(), dev.timeline()
            q.copy(dst, src, 8 * 4096)
            q.copy(host, src, 8 * 4096)                 # the GPU writes USERPTR memory
            dev.alloc(4096, "gtt").free()               # ioctls while the copies may run
            q.signal(t, 1)
            t.wait(1)
            src.view(np.uint32)[3 * 1024 + 5] = 0xABCDEF01   # one word on page 3
            q.copy(dst, src, 4096, dst_offset=3 * 4096, src_offset=3 * 4096)
            q.signal(t, 2)
            t.wait(2)
            return src.address, host.address, q.ring.address, q.ring_size, q.wptr_addr

    r = Recording(tmp_path / "m.trace", work)
    src_va, host_va, ring, ring_size, wptr_addr = r.result
    mws = r.memwrites()
    subs = r.kind("submit")
    first = [(m, va, b) for m, va, b in mws if va == src_va]
    assert len(first) == 1 and first[0][2] == np.arange(8 * 1024, dtype=np.uint32).tobytes()
    page3 = [(m, va, b) for m, va, b in mws if m.n > subs[2].n and src_va <= va < src_va + 8 * 4096]
    assert len(page3) == 1 and page3[0][1] == src_va + 3 * 4096 and len(page3[0][2]) == 4096
    want = np.arange(3 * 1024, 4 * 1024, dtype=np.uint32)
    want[5] = 0xABCDEF01
    assert page3[0][2] == want.tobytes()
    assert page3[0][0].n < subs[3].n
    for _, lo, b in mws:                        # never the ring, the write pointer, GPU results
        hi = lo + len(b)
        assert hi <= ring or lo >= ring + ring_size
        assert not lo <= wptr_addr < hi
        assert hi <= host_va or lo >= host_va + 8 * 4096
    assert r.reader.notes["recorder"]["submits"] == len(subs) == 5


def test_pointer_page_bytes_outside_the_slots_become_memwrites(tmp_path):
    """The page holding a queue's read/write pointers is compared, not tracked: the pointers the
    driver and the GPU store at every submission are never a memwrite; other bytes the CPU writes
    there are (the segment between slots that holds them), before the submission that follows."""
    from kfdtrace.driver import open_device

    def work():
        with open_device() as dev:
            src, dst = dev.alloc(4096, "gtt"), dev.alloc(4096, "vram")
            q, t = dev.sdma_queue(), dev.timeline()
            for i in range(1, 4):
                if i == 3:
                    q.ptrs.view(np.uint32)[512:514] = (0x11223344, 0x55667788)   # offset 2048
                q.copy(dst, src, 256)
                q.signal(t, i)
                t.wait(i)
            return q.ptrs.address, q.wptr_addr, q.rptr_addr

    r = Recording(tmp_path / "p.trace", work)
    page, wptr_addr, rptr_addr = r.result
    # the segment between the write pointer's slot (offset 64) and the page end holds the change
    want = bytearray(4096)
    want[2048:2056] = struct.pack("<II", 0x11223344, 0x55667788)
    mine = [(m, va, b) for m, va, b in r.memwrites() if page <= va < page + 4096]
    assert [(va, b) for _, va, b in mine] == [(page + 72, bytes(want[72:]))]
    assert mine[-1][0].n < r.kind("submit")[-1].n
    for _, lo, b in mine:
        assert not lo <= wptr_addr < lo + len(b) and not lo <= rptr_addr < lo + len(b)


def test_markers_and_code_objects(tmp_path):
    from kfdtrace.driver import open_device

    def work():
        kfdtrace.mark("before")
        with open_device() as dev:
            dev.port.annotate("codeobj", va=0x1000, size=3, data=b"ELF", target="amdgcn-amd-amdhsa--gfx942",
                              sha256="x", source="k.hsaco", gpu_id=dev.gpu_id)
            kfdtrace.mark("inside")
        kfdtrace.mark("after")

    r = Recording(tmp_path / "mk.trace", work)
    assert [m["label"] for m in r.kind("marker")] == ["before", "inside", "after"]
    (co,) = r.kind("codeobj")
    assert r.reader.blob(co["blob"]) == b"ELF" and co["va"] == 0x1000 and co["source"] == "k.hsaco"
    assert kfdtrace.mark("not recording") is None


def test_wait_events_payloads_and_event_wait_summary(tmp_path):
    from kfdtrace.driver import open_device

    def work():
        with open_device() as dev:
            t = dev.timeline()
            t.signal(5)                                  # SET_EVENT from the CPU
            res, data = dev.proc.wait_events([t.event_id], 10)
            return t.event_id, res

    r = Recording(tmp_path / "we.trace", work)
    eid, res = r.result
    waits = [i for i in r.kind("ioctl") if i["name"] == "AMDKFD_IOC_WAIT_EVENTS"]
    assert waits, "no WAIT_EVENTS recorded"
    w = waits[-1]
    (p,) = w["payloads"]
    off = abi.kfd_event_data.event_id.offset
    assert p["field"] == "events_ptr" and struct.unpack_from("<I", p["data_in"], off)[0] == eid
    assert struct.unpack_from("<I", p["data_out"], off)[0] == eid
    ev = [e for e in r.kind("event_wait") if e.n == w.n + 1]
    assert ev and ev[0]["events"] == [eid] and ev[0]["result"] == res == abi.WaitResult.COMPLETE
    assert [s["value"] for s in r.kind("signal")] == [5] and r.kind("signal")[0]["queue"] is None


def test_submissions_across_the_ring_end_are_read_in_order(tmp_path):
    """A 1 KiB SDMA ring wraps many times: every submit holds the padding and packets exactly as
    the queue saw them (the emulator executed them all: the copies landed)."""
    from kfdtrace.driver import open_device

    def work():
        with open_device() as dev:
            src, dst = dev.alloc(4096, "gtt"), dev.alloc(4096, "vram")
            src.view(np.uint32)[:] = np.arange(1024, dtype=np.uint32)
            q, t = dev.sdma_queue(ring_size=1024), dev.timeline()
            for i in range(1, 41):
                q.copy(dst, src, 64, dst_offset=(i % 64) * 64, src_offset=(i % 64) * 64)
                q.signal(t, i)
                t.wait(i)
            return q.ring_size

    r = Recording(tmp_path / "wrap.trace", work)
    ring = r.result
    dec = TraceDecoder(r.reader)
    subs = r.kind("submit")
    wrapped = [s for s in subs if s["wptr_before"] // ring != s["wptr_after"] // ring]
    assert len(wrapped) >= 3
    copies = 0
    for s in subs:
        assert len(s["dwords"]) == s["wptr_after"] - s["wptr_before"]
        for p in dec.submit_packets(s)[0]:
            assert p.name in ("COPY_LINEAR", "FENCE", "TRAP", "NOP"), p.name
            if p.name == "COPY_LINEAR":
                copies += 1
                assert p.fields["byte_count"] == 64
    assert copies == 40
    # the emulator's doorbells agree, and the last one names the final write pointer
    dbs = [e for e in r.log if e["op"] == "doorbell"]
    assert dbs[-1]["wptr"] == subs[-1]["wptr_after"] and subs[-1]["wptr_after"] > 3 * ring
