"""Replay end to end: the examples recorded on the emulated GPU, then replayed — in a fresh process,
on an emulated GPU that is another machine (other gpu_ids and BO handles) — faithfully, on another
family, reordered, with faults injected, hung, interrupted, and refused."""
from __future__ import annotations

import glob
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from kfdtrace.emu import EmulatedPort
from kfdtrace.packets import decode_stream
from kfdtrace.replay import explore, load, replay
from kfdtrace.replay.plan import ReplayRefused
from kfdtrace.trace import BlobRef, TraceReader, TraceWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ["sdma_copy", "race", "timeline", "overlap", "multi_gpu"]
ENV = {**os.environ, "PYTHONPATH": ROOT, "KFDTRACE_BACKEND": "emu"}
ENV.pop("KFDTRACE_EMU_SEED", None)

RECORD_ALL = textwrap.dedent("""
    import os, sys
    from kfdtrace.record.runner import run_script
    out, root = sys.argv[1], sys.argv[2]
    for ex in sys.argv[3:]:
        os.environ["KFDTRACE_EMU_GPUS"] = "2" if ex == "multi_gpu" else "1"
        code, _ = run_script(os.path.join(root, "examples", ex + ".py"), [], output=os.path.join(out, ex + ".trace"),
                             on_signals=False, quiet=True)
        print(ex, code)
    # an asynchronous emulated GPU (schedule seed): the driver's CPU waits go through WAIT_EVENTS
    os.environ["KFDTRACE_EMU_SEED"], os.environ["KFDTRACE_EMU_GPUS"] = "3", "1"
    code, _ = run_script(os.path.join(root, "examples", "timeline.py"), [],
                         output=os.path.join(out, "timeline_async.trace"), on_signals=False, quiet=True)
    print("timeline_async", code)
""")


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("recorded")
    r = subprocess.run([sys.executable, "-c", RECORD_ALL, str(d), ROOT, *EXAMPLES], env=ENV,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    codes = dict(line.split() for line in r.stdout.splitlines() if line.split()[0] in EXAMPLES + ["timeline_async"])
    assert set(codes) == set(EXAMPLES) | {"timeline_async"}, r.stdout
    return {ex: str(d / f"{ex}.trace") for ex in EXAMPLES + ["timeline_async"]}


def rewrite(src: str, dst: str, edit) -> None:
    """Copy a trace record by record; `edit(kind, fields)` may change fields in place, or return
    False to leave the record out."""
    r = TraceReader(src)
    with TraceWriter(dst, dict(r.header)) as w:
        def conv(v):
            if isinstance(v, BlobRef):
                return w.blob(r.blob(v))
            if isinstance(v, list):
                return [conv(x) for x in v]
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            return v
        for rec in r.records():
            if rec.kind == "end":
                continue
            f = {k: conv(v) for k, v in rec.fields.items()}
            if edit(rec.kind, f) is False:
                continue
            w.write(rec.kind, t=rec.t, tid=rec.tid, **f)


def subs_of(path):
    """(submission index, record fields, decoded packets) of every submission."""
    out = []
    r = TraceReader(path)
    for rec in r.records(kinds="submit"):
        out.append((len(out), rec.fields, decode_stream(rec.fields["engine"], r.resolve(rec.fields["dwords"]),
                                                        "gfx942")))
    return out


# -- faithful replay ----------------------------------------------------------------------------------
REPLAY_ALL = textwrap.dedent("""
    import json, sys
    from kfdtrace.emu import EmulatedPort
    from kfdtrace.replay import replay, load
    out = {}
    for path in sys.argv[1:]:
        plan = load(path)
        port = EmulatedPort(gpu=plan.family_names(), machine=3)
        rep = replay(plan, port=port)
        out[path] = {"status": rep.status, "findings": [f["message"] for f in rep.findings],
                     "gpu_map": rep.info["gpu_map"], "leaks": port.leaks(), "replayed": rep.replayed,
                     "submissions": len(plan.submissions), "checksums": sum(s.kind == "checksum" for s in plan.steps)}
        port.shutdown()
    print(json.dumps(out))
""")


def test_every_example_and_sample_trace_replays_on_another_machine(traces):
    samples = sorted(glob.glob(os.path.join(ROOT, "traces", "*.trace")))
    paths = list(traces.values()) + samples
    r = subprocess.run([sys.executable, "-c", REPLAY_ALL, *paths], env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    for path in paths:
        got = res[path]
        assert got["status"] == "matched", (path, got["findings"])
        assert got["replayed"] == got["submissions"] > 0
        assert got["checksums"] > 0 or path in samples     # there was something to compare
        assert all(k != v for k, v in got["gpu_map"].items())   # other gpu_ids on the target
        assert got["leaks"] == {"allocations": [], "queues": [], "events": []}
    assert len(res[traces["multi_gpu"]]["gpu_map"]) == 2


def test_other_family_refused_then_forced(traces):
    with pytest.raises(ReplayRefused, match=r"recorded on gfx942.*target GPU 0 is gfx1100.*--force"):
        replay(traces["sdma_copy"], backend="emu", gpu="gfx1100")
    rep = replay(traces["sdma_copy"], backend="emu", gpu="gfx1100", force=True)
    assert rep.status == "matched", rep.text()
    assert any("gfx942" in n and "gfx1100" in n and "--force" in n for n in rep.notes)


def test_recorded_event_waits_and_shifted_event_ids(traces, tmp_path):
    """A recording on an asynchronous GPU holds WAIT_EVENTS calls. With its CPU-wait records they are
    replayed as those waits; without them (a trace of a runtime that does not annotate), each call
    that completed when recorded is waited for again. The target here already has an event, so
    every event id of the trace is another one in the replay (remapped in DESTROY_EVENT, WAIT_EVENTS)."""
    from kfdtrace.abi import ioctl as A
    src = traces["timeline_async"]
    assert any(f["name"].endswith("WAIT_EVENTS") for f in (r.fields for r in TraceReader(src).records(kinds="ioctl")))
    bare = str(tmp_path / "bare.trace")
    rewrite(src, bare, lambda kind, f: kind != "wait")
    assert not list(TraceReader(bare).records(kinds="wait"))
    for path in (src, bare):
        port = EmulatedPort(gpu="gfx942", machine=2)
        kfd = port.open("/dev/kfd")
        ev = bytearray(bytes(A.kfd_ioctl_create_event_args(event_type=int(A.EventType.MEMORY), node_id=1)))
        assert port.ioctl(kfd, A.AMDKFD_IOC_CREATE_EVENT, ev) == 0
        mine = A.kfd_ioctl_create_event_args.from_buffer_copy(ev).event_id
        rep = replay(path, port=port, timeout=2)
        assert rep.status == "matched", rep.text()
        if path == bare:      # the replay signalled the auto-reset event before the first call
            assert any("not repeated once no queue could signal" in n for n in rep.notes), rep.notes
        assert any(e["op"] == "event_destroy" and e["event_id"] == mine + 1 for e in port.log)  # remapped
        leaks = port.leaks()
        assert leaks["events"] == [{"event_id": mine, "type": int(A.EventType.MEMORY)}] and not leaks["queues"]
        port.close(kfd)
        port.shutdown()


# -- hangs, Ctrl-C ------------------------------------------------------------------------------------
def _unsatisfiable(traces, tmp_path) -> tuple[str, int, int]:
    """timeline.trace with the download queue's wait for value 2 changed to wait for 7."""
    src = traces["timeline"]
    idx, f, pk = next((i, f, p) for i, f, p in subs_of(src) if p[0].name == "POLL_REGMEM")
    words = list(struct.unpack(f"<{len(f['dwords']) // 4}I", f["dwords"]))
    assert words[3] == 2                      # POLL_REGMEM dw3 = reference value (reference §4.3)
    words[3] = 7
    n = f["queue_id"]
    dst = str(tmp_path / "hang.trace")
    count = {"k": 0}

    def edit(kind, fields):
        if kind == "submit":
            if count["k"] == idx:
                fields["dwords"] = struct.pack(f"<{len(words)}I", *words)
            count["k"] += 1
    rewrite(src, dst, edit)
    return dst, n, idx


def test_unsatisfiable_wait_is_a_hang_naming_queue_and_value(traces, tmp_path):
    path, queue, idx = _unsatisfiable(traces, tmp_path)
    port = EmulatedPort(gpu="gfx942", machine=2)
    rep = replay(path, port=port, timeout=0.5)
    assert rep.status == "hang" and rep.exit_status == 2
    h = rep.hangs[0]
    assert (h["queue"], h["submission"], h["addr"] % 8, h["value"], h["last"]) == (queue, idx, 0, 7, 2)
    assert "POLL_REGMEM" in h["packet"] and "last seen 0x2" in h["message"]
    assert port.leaks() == {"allocations": [], "queues": [], "events": []}


def test_ctrl_c_tears_down(traces, tmp_path):
    path, _, _ = _unsatisfiable(traces, tmp_path)
    out = tmp_path / "r.json"
    p = subprocess.Popen([sys.executable, "-m", "kfdtrace.cli", "replay", path, "--backend", "emu", "--timeout", "60",
                          "--json", str(out)], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30          # the trace's address ranges reserved: the replay is running
    while time.monotonic() < deadline and p.poll() is None:
        with open(f"/proc/{p.pid}/maps") as fh:
            if any(line.startswith("200000000000-") for line in fh):
                break
        time.sleep(0.05)
    time.sleep(0.5)                           # into the wait that never completes (60 s watchdog)
    assert p.poll() is None
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    rep = json.loads(out.read_text())
    assert rep["status"] == "interrupted" and rep["replayed"] > 0
    assert rep["teardown"]["leaks"] == {"allocations": [], "queues": [], "events": []}
    assert "INTERRUPTED" in stdout


# -- refusal ---------------------------------------------------------------------------------------
def test_packet_outside_every_allocation_is_refused_before_anything(traces, tmp_path):
    src, dst = traces["sdma_copy"], str(tmp_path / "wild.trace")
    wild = 0x6000_0000_0000
    state = {"k": 0}

    def edit(kind, fields):
        if kind == "submit":
            if state["k"] == 1:               # the second copy: its destination points nowhere
                w = list(struct.unpack(f"<{len(fields['dwords']) // 4}I", fields["dwords"]))
                w[5], w[6] = wild & 0xFFFFFFFF, wild >> 32      # COPY_LINEAR dst_addr at dw5/dw6 (§4.3)
                fields["dwords"] = struct.pack(f"<{len(w)}I", *w)
            state["k"] += 1
    rewrite(src, dst, edit)
    port = EmulatedPort(gpu="gfx942", machine=1)
    with pytest.raises(ReplayRefused) as e:
        replay(dst, port=port)
    msg = str(e.value)
    assert "submission #1" in msg and "COPY_LINEAR" in msg and f"{wild:#x}" in msg and "nothing was submitted" in msg
    assert not [x for x in port.log if x["op"] in ("open", "doorbell", "alloc", "queue_create")]
    port.shutdown()


# -- reordering ---------------------------------------------------------------------------------------
def _dispatch(path) -> int:
    return next(i for i, f, p in subs_of(path) if any(x.name == "DISPATCH_DIRECT" for x in p))


def test_policies_on_race(traces):
    race, k = traces["race"], _dispatch(traces["race"])
    assert replay(race, backend="emu", policy="serialize").status == "matched"
    rep = replay(race, backend="emu", policy="reverse")
    assert rep.status == "diverged" and rep.order[0] == k and rep.exit_status == 1
    y = next(d for d in rep.divergences if d["writers"] == [k])             # y: only the dispatch writes it
    assert y["first_offset"] is not None and y["appeared_after"] == k        # located against a faithful replay
    assert y["differing_bytes"] > 0 and y["replay_bytes"] != y["recorded_bytes"]


def test_explore_finds_the_race_and_its_seed_reproduces_it(traces):
    res = explore(traces["race"], 4, timeout=0.3)
    assert res["baseline"] == "matched"
    assert res["diverging"], res["runs"]
    run = next(r for r in res["runs"] if r["status"] == "diverged")
    assert f"--reorder random --seed {run['seed']}" in run["command"]
    again = replay(traces["race"], backend="emu", policy="random", seed=run["seed"], timeout=0.3, locate=False)
    assert (again.status, again.order) == (run["status"], run["order"])
    assert [f["message"].split("\n")[0] for f in again.findings] == run["findings"]
    k = _dispatch(traces["race"])
    assert any(f"written since it last matched by #{k}" in f for f in run["findings"])   # the dispatch


def test_unsafe_drop_wait_confirms_a_race(traces):
    """timeline.py orders upload -> compute with a GPU wait: every reordering keeps it (matched);
    without the wait, the same reordering lets the kernel read the inputs before they land."""
    path = traces["timeline"]
    idx = next(i for i, f, p in subs_of(path) if any(x.name == "WAIT_REG_MEM" for x in p))
    assert replay(path, backend="emu", policy="reverse").status == "matched"
    dropped = replay(path, backend="emu", policy="reverse", drop_waits=[idx + 1], timeout=0.5, locate=False)
    assert dropped.info["dropped_waits"][0]["submission"] == idx + 1 and "no wait packet" in " ".join(dropped.notes)
    dropped = replay(path, backend="emu", policy="reverse", drop_waits=[idx], timeout=0.5, locate=False)
    assert dropped.info["dropped_waits"][0]["waits"][0].startswith("WAIT_REG_MEM waits until")
    assert dropped.status == "diverged", dropped.text()
    assert dropped.order.index(idx + 1) < dropped.order.index(idx - 1)       # the dispatch went first


# -- fault injection ------------------------------------------------------------------------------------
FAULTS = [
    ("ioctl:ALLOC_MEMORY_OF_GPU:3:ENOMEM", "error surfaced", "has no counterpart"),
    ("drop-signal:{sig}", "hang detected", "the CPU waited"),
    ("delay-signal:{up}:2", "none", ""),
    ("flip:{copy}:1:4", "divergence", "differs from the recording"),
    ("memflip:{copy}:{src}+0x40:1", "divergence", "first differing byte at offset 0x40"),
    ("pagefault:{copy}", "error surfaced", "GPU memory fault"),
    ("hang:{copy}", "hang detected", "stuck at POLL_REGMEM"),
]


@pytest.mark.parametrize("spec,outcome,text", FAULTS, ids=[f[0].split(":")[0] for f in FAULTS])
def test_each_fault_kind_has_its_outcome(traces, spec, outcome, text):
    path = traces["timeline"]
    plan = load(path)
    subs = subs_of(path)
    copy = next(i for i, f, p in subs if p[0].name == "COPY_LINEAR")          # an upload: a_h -> a
    sig = next(i for i, f, p in subs if p[-1].name == "TRAP" and f["queue_id"] == subs[-1][1]["queue_id"])
    up = next(i for i, f, p in subs if p[-1].name == "TRAP")                   # the upload's signal
    src_va = subs[copy][2][0].fields["src_addr"]
    src = f"a{next(a.index for a in plan.allocs if a.va == src_va)}"
    spec = spec.format(copy=copy, sig=sig, up=up, src=src)
    port = EmulatedPort(gpu="gfx942", machine=1)
    rep = replay(path, port=port, inject=[spec], timeout=0.4)
    f = rep.faults[0]
    assert f.applied is not None and f.outcome == outcome, (spec, f.outcome, f.detail, rep.text())
    assert text in (f.detail if outcome != "none" else "") or text in rep.text()
    assert rep.exit_status == {"none": 0, "divergence": 1}.get(outcome, 2)
    d = rep.to_dict()["faults"][0]
    assert d["spec"] == spec and d["outcome"] == outcome
    if f.kind != "ioctl":
        assert d["applied"]["submission"] is not None and d["applied"]["record"] is not None
    if f.kind == "delay-signal":
        assert d["applied"]["released_after"] is not None and d["applied"]["released_after"] != up
    assert port.leaks() == {"allocations": [], "queues": [], "events": []}


# -- the command ----------------------------------------------------------------------------------------
def test_cli_json_and_exit_status(traces, tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "kfdtrace.cli", "replay", traces["race"], "--reorder", "reverse",
                        "--json", str(out)], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    rep = json.loads(out.read_text())
    assert rep["status"] == "diverged" and rep["policy"] == "reverse" and rep["order"][0] == _dispatch(traces["race"])
    d = rep["divergences"][0]
    assert {"record", "t", "after", "buffer", "first_offset", "writers"} <= set(d)
    assert "DIVERGENCE" in r.stdout
