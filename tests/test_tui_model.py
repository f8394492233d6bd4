"""The TUI's model (no Textual): index, boundary scans, decode on demand, dispatch resolution,
wait/signal matching, search, filters, allocations, recovery and the replay-report loader."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from kfdtrace.packets import decode_stream, pm4, sdma
from kfdtrace.trace import TraceReader, TraceWriter
from tui.demo import BASE, HEADER, write_demo
from tui.model import TRUNC, Filter, Target, TraceModel, parse_time, scan_batch
from tui.report import Report, ReportError

VA = {name: BASE + i * 0x10_0000 for i, name in enumerate(
    ("ring_pm4", "ring_sdma", "ring_aql", "ptrs", "code", "kernarg", "signals", "ib", "x", "y", "host"))}
UPLOADED, COMPUTED = VA["signals"] + 8, VA["signals"] + 0x48


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("tui") / "demo.trace"
    write_demo(p, 6)
    return p


@pytest.fixture(scope="module")
def demo(demo_path):
    m = TraceModel(demo_path)
    m.open()
    m.load()
    return m


def names(m, lo, hi):
    return [m.packet(i).name for i in range(lo, hi)]


# -- boundary scans ---------------------------------------------------------------------------------
def _pm4_stream(rng) -> np.ndarray:
    f = "gfx1100"
    pool = [pm4.build("NOP", f, count=3, body=[1, 2, 3, 4]), pm4.build("FILLER"),
            pm4.build("WAIT_REG_MEM", f, function=3, mem_space=1, poll_addr=0x1000, reference=1, mask=1),
            pm4.build("SET_SH_REG", f, reg="COMPUTE_PGM_LO", values=[1, 2]),
            pm4.build("RELEASE_MEM", f, event_type=0x14, event_index=5, data_sel=1, addr=0x2000, data=3),
            [0x80000000], [0x0002_0000 | 0x1234, 5, 6, 7]]          # type-2 NOP, type-0 burst
    out = []
    for _ in range(int(rng.integers(0, 40))):
        out += pool[int(rng.integers(len(pool)))] if rng.random() < 0.9 else [int(rng.integers(1 << 32))]
    cut = int(rng.integers(0, 4))                                    # a packet cut short at the end
    return np.array(out[:len(out) - cut] if cut < len(out) else out, np.uint32)


def _sdma_stream(rng) -> np.ndarray:
    f = "gfx1100"
    pool = [sdma.build("COPY_LINEAR", f, count=64, src_addr=0x1000, dst_addr=0x2000),
            sdma.build("FENCE", f, addr=0x3000, data=9), sdma.build("TRAP", f, int_context=2),
            sdma.build("WRITE_UNTILED", f, dst_addr=0x4000, data=[1, 2, 3]), [0],
            sdma.build("POLL_REGMEM", f, mem_poll=1, func=5, addr=0x5000, value=1, mask=1, interval=1)]
    out = []
    for _ in range(int(rng.integers(0, 30))):
        out += pool[int(rng.integers(len(pool)))] if rng.random() < 0.9 else [int(rng.integers(1 << 32))]
    return np.array(out[:max(0, len(out) - int(rng.integers(0, 3)))], np.uint32)


@pytest.mark.parametrize("engine", ["pm4", "sdma", "aql"])
def test_batch_scan_matches_the_packet_modules_scan(engine):
    """Many streams scanned at once give, stream by stream, exactly the packets module's boundaries
    (lengths clamped to the stream, TRUNC where a packet runs past it)."""
    rng = np.random.default_rng(7)
    for _ in range(20):
        if engine == "pm4":
            arrays = [_pm4_stream(rng) for _ in range(int(rng.integers(1, 12)))]
        elif engine == "sdma":
            arrays = [_sdma_stream(rng) for _ in range(int(rng.integers(1, 12)))]
        else:
            arrays = [rng.integers(0, 1 << 32, int(rng.integers(0, 80)), dtype=np.uint64).astype(np.uint32)
                      for _ in range(int(rng.integers(1, 8)))]
        arrays = [a for a in arrays if len(a)] or [np.array([0x80000000], np.uint32)]
        offs, code, ln, which, dw1 = scan_batch(engine, arrays, "gfx1100")
        for j, a in enumerate(arrays):
            sel = which == j
            if engine == "pm4":
                ro, _, rl = pm4.scan(a)
            elif engine == "sdma":
                ro, _, rl = sdma.scan(a, "gfx1100")
            else:
                ro = np.arange(0, len(a), 16)
                rl = np.full(len(ro), 16)
            assert offs[sel].tolist() == ro.tolist()
            assert ln[sel].tolist() == np.minimum(rl, len(a) - ro).tolist()
            assert ((code[sel] & TRUNC) != 0).tolist() == (ro + rl > len(a)).tolist()
            assert dw1[sel].tolist() == [int(a[o + 1]) if o + 1 < len(a) else 0 for o in ro.tolist()]


# -- index and decode ---------------------------------------------------------------------------------
def test_index_is_every_packet_of_every_submission_in_order(demo, demo_path):
    r = TraceReader(demo_path)
    subs = list(r.records(kinds="submit"))
    assert [s.n for s in demo.subs] == [s.n for s in subs]
    total = 0
    for s, rec in zip(demo.subs, subs):
        ibs = {ib["addr"]: r.blob(ib["blob"]) for ib in rec["ibs"]}
        want = decode_stream(rec["engine"], r.resolve(rec["dwords"]), "gfx1100",
                             follow=lambda addr, n: ibs.get(addr))
        assert s.first == total and s.count == len(want)
        got = [demo.packet(i) for i in range(s.first, s.first + s.count)]
        assert [(p.name, p.fields) for p in got] == [(p.name, p.fields) for p in want]
        assert [demo.loc(i)[5] for i in range(s.first, s.first + s.count)] == [p.depth for p in want]
        total += len(want)
    assert demo.n_packets == total == 140
    # the AQL queue's PM4 IB is indexed right after the PM4_IB packet that calls it
    i = names(demo, 0, demo.n_packets).index("PM4_IB")
    assert demo.packet(i + 1).name == "RELEASE_MEM" and demo.loc(i + 1)[5] == 1
    assert demo.where(i + 1) == "ib+0x0"
    assert demo.kinds()["FENCE"] == 18 and demo.kinds()["DISPATCH_DIRECT"] == 7
    assert demo.lanes == ["CPU", "q1 pm4", "q2 sdma", "q3 aql"]


def test_dispatch_detail_resolves_kernel_arguments_and_disassembly(demo):
    i = names(demo, 0, demo.n_packets).index("DISPATCH_DIRECT")
    info = demo.dispatch_info(i)
    assert info["kernel"].name == "saxpy" and info["base"] == VA["code"]
    assert info["kernarg"] == VA["kernarg"]
    args = {n: (v, link) for n, _, v, link in demo.kernel_args(info["kernel"], info["kernarg"], demo.subs[1].n)}
    assert args["alpha"][0] == "2.5" and args["n"][0] == "4096"
    assert args["x"][0].startswith(f"{VA['x']:#x}") and "vram" in args["x"][0]
    assert demo.allocs[args["x"][1].index].va == VA["x"]
    text = {sec.title: sec for sec in demo.packet_detail(i)}
    assert "disassembly of saxpy" in text
    asm = [ln.value for ln in text["disassembly of saxpy"].lines]
    assert any("s_endpgm" in a for a in asm) and asm[0].startswith(f"{VA['code'] + 0x4600:#x}")
    k = names(demo, 0, demo.n_packets).index("KERNEL_DISPATCH")
    info = demo.dispatch_info(k)
    assert info["kernel"].name == "fill"
    args = {n: v for n, _, v, _ in demo.kernel_args(info["kernel"], info["kernarg"], demo.subs[4].n)}
    assert args["value"] == "0xc0ffee01" and args["n"] == "1024"


def test_wait_jumps_to_the_signal_that_satisfies_it_and_back(demo):
    ns = names(demo, 0, demo.n_packets)
    w0 = ns.index("WAIT_REG_MEM")                       # compute waits for `uploaded` >= 1
    tgt, msg = demo.jump_sync(Target("packet", w0))
    p = demo.packet(tgt.index)
    assert p.name == "FENCE" and p.fields["addr"] == UPLOADED and p.fields["data"] == 1, msg
    back, _ = demo.jump_sync(tgt)
    assert back == Target("packet", w0)
    # the second compute wait (>= 2) is satisfied by the second upload, not the first
    w1 = ns.index("WAIT_REG_MEM", w0 + 1)
    tgt, _ = demo.jump_sync(Target("packet", w1))
    assert demo.packet(tgt.index).fields["data"] == 2
    # the last dispatch waits for a value nobody writes: a hang
    last = len(ns) - 1 - ns[::-1].index("WAIT_REG_MEM")
    tgt, msg = demo.jump_sync(Target("packet", last))
    assert tgt is None and "would hang" in msg and "0xb" in msg
    # a CPU wait record -> the RELEASE_MEM that writes its value; its signal record -> that wait
    n, t, addr, cond, value, result = demo.waits[0]
    tgt, _ = demo.jump_sync(Target("record", n))
    p = demo.packet(tgt.index)
    assert (p.name, p.fields["addr"], p.fields["data"]) == ("RELEASE_MEM", COMPUTED, value)
    sig = next(s for s in demo.signals if s[2] == UPLOADED and s[3] == 1)
    assert demo.jump_sync(Target("record", sig[0]))[0] == Target("packet", w0)
    assert demo.jump_sync(Target("packet", ns.index("COPY_LINEAR")))[0] is None


def test_search_by_name_register_value_and_address(demo):
    ns = names(demo, 0, demo.n_packets)
    q = demo.parse_query("dispatch")
    assert q["kind"] == "name"
    first = demo.search(q, -1)
    assert ns[first] == "DISPATCH_DIRECT"
    hits, i = [], -1
    while (i := demo.search(q, i)) is not None:
        hits.append(i)
    assert [ns[h] for h in hits] == [n for n in ns if "DISPATCH" in n] and len(hits) == 10
    assert demo.search(q, first, backward=True) is None
    assert demo.search(q, hits[-1], backward=True) == hits[-2]
    q = demo.parse_query("COMPUTE_PGM_RSRC3")
    hit = demo.search(q, -1)
    assert demo.packet(hit).fields["reg"] == 0x2E28 and ns[hit] == "SET_SH_REG"
    q = demo.parse_query(hex(UPLOADED))
    assert q["kind"] == "value"
    hit = demo.search(q, -1)
    assert demo.packet(hit).fields.get("addr") == UPLOADED
    q = demo.parse_query(f"addr:{VA['x'] + 0x10:#x}")            # anywhere in the x buffer
    hits, i = [], -1
    while (i := demo.search(q, i)) is not None:
        hits.append(i)
    assert hits and all(VA["x"] <= demo.packet(h).fields.get("dst_addr", 0) < VA["x"] + 0x4_0000 for h in hits)
    assert {ns[h] for h in hits} == {"COPY_LINEAR"} and len(hits) == 6
    assert demo.search(demo.parse_query("0x123456789"), -1) is None
    with pytest.raises(ValueError):
        demo.parse_query("addr:nowhere")


def test_filters(demo):
    rows = demo.rows(Filter(queues=frozenset({2})))
    assert len(rows) == sum(s.count for s in demo.subs if s.qid == 2)
    assert {demo.subs[demo.sub_of(int(i))].qid for i in rows} == {2}
    rows = demo.rows(Filter(names=("FENCE", "trap")))
    assert {demo.packet(int(i)).name for i in rows} == {"FENCE", "TRAP"} and len(rows) == 24
    rows = demo.rows(Filter(engines=frozenset({"aql"})))
    assert [demo.packet(int(i)).name for i in rows] == ["KERNEL_DISPATCH", "PM4_IB", "RELEASE_MEM"] * 3
    t1 = demo.subs[3].t
    rows = demo.rows(Filter(t1=t1))
    assert len(rows) == sum(s.count for s in demo.subs[:4])
    assert demo.rows(Filter()) is None
    assert parse_time("1.5ms") == 1_500_000 and parse_time("200us") == 200_000 and parse_time("2") == 2_000_000


def test_allocations_memory_and_touching_submissions(demo):
    x = next(a for a in demo.allocs if a.va == VA["x"])
    subs = demo.touching(x.index)
    assert subs and all(demo.subs[s].qid == 2 for s in subs)               # only the copies write x
    assert len(subs) == 6
    ring = next(a for a in demo.allocs if a.va == VA["ring_pm4"])
    assert demo.touching(ring.index) == [j for j, s in enumerate(demo.subs) if s.qid == 1]
    karg = demo.memory(VA["kernarg"], 24, demo.subs[1].n)
    assert struct.unpack("<fxxxxQQ", karg) == (2.5, VA["x"], VA["y"])
    assert demo.memory(VA["kernarg"], 24, 0) is None                        # not written yet
    sec = {s.title.split(" (")[0]: s for s in demo.alloc_detail(next(a.index for a in demo.allocs
                                                                       if a.va == VA["kernarg"]))}
    assert len(sec["CPU writes"].lines) == 9
    assert demo.alloc_at(VA["y"] + 5).va == VA["y"] and demo.alloc_at(1) is None


def test_recovered_trace_opens_with_what_could_be_read(demo_path, tmp_path):
    data = demo_path.read_bytes()
    cut = tmp_path / "cut.trace"
    cut.write_bytes(data[: len(data) * 2 // 3])
    m = TraceModel(cut)
    m.open()
    m.load()
    assert m.reader.recovered and m.reader.recovered_upto["reason"]
    assert m.n_packets < 140 or len(m.subs) <= 16
    assert all(m.packet(i).name for i in range(m.n_packets))


def test_damaged_submission_bytes_index_without_raising(tmp_path):
    p = tmp_path / "bad.trace"
    rel = pm4.build("RELEASE_MEM", "gfx1100", event_type=0x14, event_index=5, data_sel=1, addr=0x1000, data=1)
    with TraceWriter(p, dict(HEADER), flush_interval=None) as w:
        w.write("queue_create", queue_id=1, gpu_id=0x5A1D, type="compute", ring_base=0, ring_size=4096,
                wptr_addr=0, rptr_addr=0, doorbell_offset=0, engine="pm4")
        w.write("submit", queue_id=1, engine="pm4", wptr_before=0, wptr_after=9,
                dwords=struct.pack("<8I", *rel) + b"\xff\x00", ibs=[])                 # ragged tail
        w.write("submit", queue_id=1, engine="pm4", wptr_before=9, wptr_after=12,
                dwords=struct.pack("<5I", *rel[:5]), ibs=[])                           # cut packet
        w.write("submit", queue_id=7, engine="sdma", wptr_before=0, wptr_after=0, dwords=b"", ibs=[])
    m = TraceModel(p)
    m.open()
    m.load()
    assert [m.packet(i).name for i in range(m.n_packets)] == ["RELEASE_MEM", "TRUNCATED", "TRUNCATED"]
    assert m.packet(2).error and m.subs[2].count == 0 and "q7 sdma" in m.lanes


# -- replay report -----------------------------------------------------------------------------------
def test_report_loader_reads_replay_json_and_pins_findings(demo, tmp_path):
    """The shapes `kfdtrace replay --json` writes (docs/replay.md), plus tolerated variants."""
    q1 = [j for j, s in enumerate(demo.subs) if s.qid == 1]
    last, wait = q1[-1], demo.waits[-1][0]
    hung = max(i for i in range(demo.n_packets) if demo.packet(i).name == "WAIT_REG_MEM")
    x = next(a for a in demo.allocs if a.va == VA["x"])
    rep = Report.from_json({
        "status": "hang", "policy": "random", "seed": 3, "notes": ["a note"],
        "divergences": [{"kind": "divergence", "seq": 1, "message": "allocation a8 differs", "record": wait,
                         "t": 5, "after": 7, "buffer": VA["x"], "size": 0x4_0000, "alloc": x.handle,
                         "wait_record": wait, "writers": [0, 2], "appeared_after": 2}],
        "hangs": [{"kind": "hang", "message": "the CPU waited\n    queue 1 (pm4) stuck at WAIT_REG_MEM",
                   "record": wait, "queue": 1, "submission": last,
                   "packet": demo.packet(hung).summary("gfx1100"),
                   "stuck": [{"queue": 1, "rptr": demo.subs[last].wptr_before, "submission": last,
                              "packet": demo.packet(hung).summary("gfx1100")},
                             {"queue": 2, "rptr": demo.subs[2].wptr_before + 56, "submission": 2,
                              "packet": "not a packet of this trace"}]}],
        "errors": [{"kind": "error", "message": "ring not mapped", "record": demo.subs[3].n, "submission": 3,
                    "queue": 1}],
        "faults": [{"spec": "drop-signal:4", "kind": "drop-signal", "submission": 4,
                    "applied": {"record": demo.subs[4].n, "submission": 4, "queue": 3, "t": demo.subs[4].t},
                    "outcome": "hang detected", "detail": "the CPU waited"}],
    })
    assert [it.kind for it in rep.items] == ["divergence", "hang", "error", "fault"]
    assert rep.summary == "status hang, policy random, seed 3" and rep.notes == ["a note"]
    rep.resolve(demo)
    div, hang, err, fault = rep.items
    # a divergence: the checksum's CPU record, the submission it appeared after, writers, the buffer
    assert div.record == wait and div.sub == 2 and div.packet == demo.subs[2].first
    labels = dict(div.related)
    assert labels["buffer 0x7f3a00800000"] == Target("alloc", x.index)
    assert labels["written by #0"] == Target("packet", 0) and labels["appeared after #2"] == Target("packet",
                                                                                                  demo.subs[2].first)
    # a hang: pinned to the packet each stuck queue sat at (by summary, else by read pointer)
    assert hang.packet == hung and hang.title == "the CPU waited"
    sdma_stuck = demo.subs[2].first + 2                         # byte 56: after two 7-dword copies
    assert ("queue 2 stuck at", Target("packet", sdma_stuck)) in hang.related
    assert rep.items_for(demo, sdma_stuck) == [hang] and rep.items_for_record(wait) == [div, hang]
    assert err.packet == demo.subs[3].first and err.queue == 1
    assert (fault.subkind, fault.sub, fault.packet) == ("drop-signal", 4, demo.subs[4].first)
    assert fault.title == "drop-signal:4: hang detected — the CPU waited"
    demo.report = rep
    try:
        sec = {s.title: s for s in demo.record_detail(wait)}
    finally:
        demo.report = None
    text = [(ln.label, ln.value) for ln in sec["replay report"].lines]
    assert ("hang", "the CPU waited") in text and ("", "queue 1 (pm4) stuck at WAIT_REG_MEM") in text
    # tolerated variants
    top = Report.from_json([{"kind": "mismatch", "n": demo.subs[0].n, "at": {"queue": 2}}])
    top.resolve(demo)
    assert top.items[0].kind == "divergence" and top.items[0].packet == 0
    only_q = Report.from_json({"hangs": [{"queue": 1}]})
    only_q.resolve(demo)
    assert only_q.items[0].sub == last and only_q.items[0].message == "hang"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ReportError, match="not a JSON replay report"):
        Report.load(bad)
    with pytest.raises(ReportError):
        Report.from_json("text")


def test_a_real_recording_and_its_replay_report(tmp_path):
    """End to end with the project's recorder and replayer: record examples/overlap.py on the
    emulated gfx1100, replay it with a hang injected, and check what the TUI's model makes of both."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    trace, rep = tmp_path / "overlap.trace", tmp_path / "replay.json"
    env = {**os.environ, "KFDTRACE_BACKEND": "emu", "KFDTRACE_EMU_GPU": "gfx1100"}
    run = subprocess.run([sys.executable, "-m", "kfdtrace.cli", "record", "-q", "-o", str(trace),
                          str(root / "examples" / "overlap.py")], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    run = subprocess.run([sys.executable, "-m", "kfdtrace.cli", "replay", str(trace), "--backend", "emu",
                          "--gpu", "gfx1100", "--timeout", "0.5", "--inject", "hang:7", "--json", str(rep)],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    m = TraceModel(trace, report=Report.load(rep))
    m.open()
    m.load()
    m.report.resolve(m)
    ns = names(m, 0, m.n_packets)
    d = ns.index("DISPATCH_DIRECT")
    info = m.dispatch_info(d)
    assert info["kernel"].name == "saxpy"
    args = {n: v for n, _, v, _ in m.kernel_args(info["kernel"], info["kernarg"], m.subs[m.sub_of(d)].n)}
    assert args["alpha"] == "2.5" and args["n"] == str(1 << 14)
    w = ns.index("WAIT_REG_MEM")
    tgt, _ = m.jump_sync(Target("packet", w))
    sp = m.sync_point(Target("packet", w))
    wp = m.packet(tgt.index)
    assert wp.name in ("FENCE", "RELEASE_MEM") and wp.fields["addr"] == sp.addr and sp.satisfied_by(wp.fields["data"])
    hang = next(it for it in m.report.items if it.kind == "hang")
    assert hang.sub == 7 and hang.packet == m.subs[7].first            # the injected wait sat at its start
    fault = next(it for it in m.report.items if it.kind == "fault")
    assert fault.subkind == "hang" and fault.sub == 7 and "hang detected" in fault.title
