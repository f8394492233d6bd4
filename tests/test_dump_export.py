"""`kfdtrace dump` and `kfdtrace export` on recorded traces, and the sample traces in traces/."""
from __future__ import annotations

import io
import json
import os
import re
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from kfdtrace.cli import main as cli_main
from kfdtrace.port import set_port_wrapper
from kfdtrace.record.recorder import Recorder
from kfdtrace.trace import TraceReader

REPO = Path(__file__).resolve().parent.parent
SAMPLES = sorted((REPO / "traces").glob("*.trace"))
sys.path.insert(0, str(REPO / "tools"))
import make_sample_traces  # noqa: E402


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = cli_main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def aql_trace(tmp_path_factory):
    """An AQL queue dispatching vector_add (kernel found through kernel_object) and signalling
    through vendor PM4-IB packets (indirect buffers captured), plus a PM4 queue and markers."""
    import kfdtrace
    from kfdtrace.data import kernel_path
    from kfdtrace.driver import open_device

    mp = pytest.MonkeyPatch()
    mp.setenv("KFDTRACE_BACKEND", "emu")
    mp.setenv("KFDTRACE_EMU_GPUS", "1")
    mp.delenv("KFDTRACE_EMU_SEED", raising=False)
    path = tmp_path_factory.mktemp("aql") / "aql.trace"
    rec = Recorder(path, chunk_bytes=4096).start()     # many blocks: truncation keeps some
    rec.install()
    try:
        with open_device(0, gpu="gfx942") as dev:
            n = 1024
            prog = dev.load_program(kernel_path(dev.family.name, "O2"))
            a, b, c = (dev.alloc(n * 4, "gtt") for _ in range(3))
            a.view(np.float32)[:] = 1.5
            b.view(np.float32)[:] = 2.0
            q, t = dev.compute_queue(aql=True), dev.timeline()
            kfdtrace.mark("dispatch")
            q.dispatch(prog["vector_add"], grid=n // 256, block=256, args=(a, b, c, n))
            q.signal(t, 1)
            t.wait(1)
            assert (c.view(np.float32) == 3.5).all()
    finally:
        rec.finish()
        set_port_wrapper(None, None)
        mp.undo()
    return path


def test_dump_text_decodes_ioctls_packets_ibs_and_kernel_names(aql_trace):
    rc, out, err = run_cli("dump", aql_trace)
    assert rc == 0, err
    lines = out.splitlines()
    alloc = next(x for x in lines if " ioctl " in x and "ALLOC_MEMORY_OF_GPU(" in x and "flags=GTT|" in x)
    assert "va_addr=0x" in alloc and "-> handle=0x" in alloc
    create = next(x for x in lines if "CREATE_QUEUE(" in x)
    assert "queue_type=COMPUTE_AQL" in create
    dispatch = next(x for x in lines if "KERNEL_DISPATCH" in x)
    assert dispatch.startswith("          ") and "kernel=vector_add" in dispatch
    assert "grid=(1024,1,1)" in dispatch
    # the signal went through a PM4 IB: its packets follow, one level deeper, read from the blob
    i = next(k for k, x in enumerate(lines) if "PM4_IB" in x)
    assert "ib+0000 RELEASE_MEM" in lines[i + 1] and len(lines[i + 1]) - len(lines[i + 1].lstrip()) > \
        len(lines[i]) - len(lines[i].lstrip())
    assert any(" marker " in x and "label=dispatch" in x for x in lines)
    assert "UNKNOWN" not in out


def test_dump_filters_and_json(aql_trace):
    with TraceReader(aql_trace) as r:
        (q,) = [x["queue_id"] for x in r.records(kinds="queue_create")]
        n_submits = r.counts["submit"]
    rc, out, _ = run_cli("dump", aql_trace, "--kind", "submit", "--json")
    objs = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and len(objs) == n_submits and all(o["kind"] == "submit" for o in objs)
    pk = [p for o in objs for p in o["packets"]]
    kd = next(p for p in pk if p["name"] == "KERNEL_DISPATCH")
    assert kd["kernel"] == "vector_add" and kd["fields"]["grid_size_x"] == 1024
    ib = next(p for p in pk if p["depth"] == 1)
    assert ib["name"] == "RELEASE_MEM" and ib["engine"] == "pm4"
    assert {o["fields"]["queue_id"] for o in objs} == {q}
    rc, out, _ = run_cli("dump", aql_trace, "--queue", q + 100)
    assert rc == 0 and out == ""
    rc, out, _ = run_cli("dump", aql_trace, "--range", "2:5")
    assert [int(x.split()[0]) for x in out.splitlines() if re.match(r"\s*\d+\s+\d+\.\d+ ", x)] == [2, 3, 4]
    rc, out, _ = run_cli("dump", aql_trace, "--kind", "ioctl", "--range", ":40", "--json")
    dec = [json.loads(x) for x in out.splitlines()]
    assert dec and all("decoded" in o for o in dec)
    alloc = next(o for o in dec if o["fields"]["name"] == "AMDKFD_IOC_ALLOC_MEMORY_OF_GPU")
    assert alloc["decoded"]["out"]["fields"]["handle"] != 0


def test_export_perfetto(aql_trace, tmp_path):
    out = tmp_path / "x.json"
    rc, _, err = run_cli("export", aql_trace, "--format", "perfetto", "-o", out)
    assert rc == 0, err
    ev = json.loads(out.read_text())["traceEvents"]
    with TraceReader(aql_trace) as r:
        pid = r.header["pid"]
        n_ioctl, n_submit = r.counts["ioctl"], r.counts["submit"]
    ioctls = [e for e in ev if e.get("cat") == "ioctl"]
    assert len(ioctls) == n_ioctl and all(e["ph"] == "X" and e["pid"] == pid and e["dur"] > 0 for e in ioctls)
    subs = [e for e in ev if e.get("cat") == "submit"]
    assert len(subs) == n_submit and len({e["pid"] for e in subs}) == 1 and subs[0]["pid"] != pid
    assert any(e["name"] == "dispatch vector_add" for e in subs)
    names = {e["args"]["name"] for e in ev if e["ph"] == "M" and e["name"] == "thread_name"}
    assert any(n.startswith("queue ") and "compute_aql" in n for n in names)
    starts = {e["id"]: e for e in ev if e["ph"] == "s"}
    ends = {e["id"]: e for e in ev if e["ph"] == "f"}
    assert starts and set(starts) == set(ends)
    for fid, s in starts.items():
        assert s["pid"] != pid and ends[fid]["pid"] == pid and ends[fid]["ts"] >= s["ts"]
    waits = [e for e in ev if e.get("cat") == "wait"]
    assert waits and waits[0]["args"]["result"] == "ok"


def test_bad_input_is_a_message_not_a_traceback(tmp_path):
    junk = tmp_path / "junk.trace"
    junk.write_bytes(b"this is not a trace at all" * 10)
    for argv in (("dump", junk), ("export", junk, "-o", tmp_path / "o.json"), ("dump", tmp_path / "missing.trace")):
        rc, out, err = run_cli(*argv)
        assert rc == 2 and "Traceback" not in err and "error:" in err
    rc, _, err = run_cli("dump", junk)
    assert "not a kfdtrace trace" in err
    rc, _, err = run_cli("dump", SAMPLES[0] if SAMPLES else junk, "--range", "x:y")
    assert rc == 2 and "--range" in err


def test_truncated_recording_still_dumps(aql_trace, tmp_path):
    cut = tmp_path / "cut.trace"
    data = aql_trace.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])
    rc, out, err = run_cli("dump", cut)
    assert rc == 0 and out.splitlines()[0].split()[0] == "0"
    with TraceReader(cut) as r:
        assert r.recovered and len(out.splitlines()) >= len(r)


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_packet_of_every_sample_trace_decodes(path):
    assert os.path.getsize(path) <= 1 << 20
    assert make_sample_traces.check(str(path)) == []
    with TraceReader(path) as r:
        assert r.finalized and r.status == "finalized" and r.counts["submit"] > 0


def test_sample_traces_exist_for_every_example():
    assert {p.stem for p in SAMPLES} == set(make_sample_traces.SAMPLES)
