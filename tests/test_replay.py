"""Replay building blocks on synthetic inputs: the happens-before graph, reorder policies, fault
specs, id remapping (ioctl arguments, payloads, mmap offsets), packet editing, the compatibility
check and the validation pass."""
from __future__ import annotations

import ctypes
import struct
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi import ioctl as A
from kfdtrace.errors import KfdtraceError
from kfdtrace.packets import decode_stream, sdma
from kfdtrace.replay.engine import _Ranges, check_compat
from kfdtrace.replay.graph import HBGraph
from kfdtrace.replay.inject import InjectError, Patch, parse_spec
from kfdtrace.replay.plan import Plan, ReplayRefused
from kfdtrace.replay.remap import Remap, RemapError
from kfdtrace.replay.schedule import Policy, check_order, order_window, parse_policy, segments
from kfdtrace.trace import TraceReader, TraceWriter

FAM = "gfx942"
GPU = 0x1A2B
BASE = 0x7F00_0000_0000


def _ioctl(w, name, a_in, a_out=None, errno=0):
    req = A.request_for(name)
    w.write("ioctl", fd=3, request=req, nr=A.ioc_nr(req), name=f"AMDKFD_IOC_{name}", arg_in=bytes(a_in),
            arg_out=bytes(a_out if a_out is not None else a_in), ret=-1 if errno else 0, errno=errno, dur_ns=1)


def _dw(words) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


def synth(path, subs, *, waits=(), extra_alloc=True, event=None):
    """A trace with two SDMA queues (ids 0 and 1) on one gfx942, buffers at BASE.., and the given
    submissions [(queue_id, [packet dwords...])] and CPU waits [(after submission k, addr, value)]."""
    hdr = {"gpus": [{"gpu_id": GPU, "gfx": FAM, "gfx_target_version": 90402, "drm_render_minor": 128}]}
    with TraceWriter(path, hdr) as w:
        w.write("open", path="/dev/kfd", fd=3, flags=2, errno=0)
        for k in range(4 if extra_alloc else 3):       # rings (2), a timeline page, a data buffer
            a = A.kfd_ioctl_alloc_memory_of_gpu_args(va_addr=BASE + k * 0x100000, size=0x10000, gpu_id=GPU,
                                                     flags=int(A.AllocFlags.GTT))
            out = A.kfd_ioctl_alloc_memory_of_gpu_args.from_buffer_copy(bytes(a))
            out.handle, out.mmap_offset = (GPU << 32) | (k + 2), 0x1000_0000 * (k + 1)
            _ioctl(w, "ALLOC_MEMORY_OF_GPU", a, out)
        for q in (0, 1):
            ring = BASE + q * 0x100000
            a = A.kfd_ioctl_create_queue_args(ring_base_address=ring, write_pointer_address=BASE + 0x200000 + 64 * q,
                                              read_pointer_address=BASE + 0x200000 + 64 * q + 8, ring_size=0x10000,
                                              gpu_id=GPU, queue_type=1, queue_percentage=100)
            out = A.kfd_ioctl_create_queue_args.from_buffer_copy(bytes(a))
            out.queue_id, out.doorbell_offset = q, A.kfd_mmap_offset(3, GPU, 8 * q)
            _ioctl(w, "CREATE_QUEUE", a, out)
        if event is not None:          # a signal event whose slot lives in allocation a2 (dGPU style)
            a = A.kfd_ioctl_create_event_args(event_page_offset=(GPU << 32) | 4, event_type=0, auto_reset=1)
            out = A.kfd_ioctl_create_event_args.from_buffer_copy(bytes(a))
            out.event_page_offset, out.event_id, out.event_slot_index = A.KFD_MMAP_TYPE_EVENTS, event, event
            _ioctl(w, "CREATE_EVENT", a, out)
        wptr = {0: 0, 1: 0}
        waits = list(waits)
        for k, (q, words) in enumerate(subs):
            data = _dw(words)
            w.write("submit", queue_id=q, engine="sdma", wptr_before=wptr[q], wptr_after=wptr[q] + len(data),
                    dwords=data, ibs=[], doorbell=0x1000 + 8 * q, value=wptr[q] + len(data))
            wptr[q] += len(data)
            for after, addr, value in [x for x in waits if x[0] == k]:
                w.write("wait", addr=addr, condition="ge", value=value, timeout=10**9, result="ok", value_seen=value)
    return Plan(TraceReader(path))


T = BASE + 0x200000 + 0x800        # a timeline value slot
BUF = BASE + 0x300000


def copy(src, dst, n=64):
    return sdma.build("COPY_LINEAR", FAM, count=n, src_addr=src, dst_addr=dst)


def fence(addr, v):
    return sdma.build("FENCE", FAM, addr=addr, data=v)


def poll(addr, v):
    return sdma.build("POLL_REGMEM", FAM, mem_poll=1, func=5, addr=addr, value=v, mask=0xFFFFFFFF,
                      interval=10, retry_count=0xFFF)


# -- happens-before graph ------------------------------------------------------------------------------
def test_graph_edges(tmp_path):
    plan = synth(tmp_path / "g.trace", [
        (0, copy(BUF, BUF + 0x1000)),          # 0
        (0, fence(T, 1)),                      # 1 signals T=1
        (1, poll(T, 1)),                       # 2 waits T>=1  <- 1
        (1, copy(BUF + 0x1000, BUF + 0x2000)),  # 3
        (1, fence(T, 2)),                      # 4 writes T=2 after 1 wrote 1: order edge
        (0, poll(T, 5)),                       # 5 waits for a value nobody writes
        (1, poll(T + 8, 1)),                   # 6 waits for a value written later (forward)
        (0, fence(T + 8, 1)),                  # 7
    ], waits=[(4, T, 2)])
    g = HBGraph(plan)
    assert g.preds[1] == {0} and g.preds[3] == {2}
    assert g.preds[2] == {1}                                   # signal -> wait, on the same address/value
    assert 1 in g.preds[4]                                     # timeline values keep their order
    kinds = {(e.src, e.dst): e.kind for e in g.edges}
    assert kinds[(1, 2)] == "signal" and kinds[(1, 4)] == "order" and kinds[(0, 1)] == "queue"
    assert [w.value for w in g.unmatched[5]] == [5]
    assert [(w.value, p) for w, p in g.forward[6]] == [(1, 7)]
    cw = g.cpu_waits[0]
    assert (cw.producer, cw.op.value, cw.last_before) == (4, 2, 4)
    assert g.independent(0, 3) is False and g.independent(0, 2) is False and g.independent(5, 3)


def test_segments_and_policies(tmp_path):
    plan = synth(tmp_path / "p.trace", [(0, copy(BUF, BUF + 0x1000)), (0, fence(T, 1)),
                                        (1, copy(BUF + 0x2000, BUF + 0x3000)), (1, copy(BUF + 0x4000, BUF + 0x5000)),
                                        (0, copy(BUF + 0x6000, BUF + 0x7000))], waits=[(3, T, 1)])
    g = HBGraph(plan)
    windows = [x for kind, x in segments(plan) if kind == "window"]
    assert [[s.index for s in w.subs] for w in windows] == [[0, 1, 2, 3], [4]]
    w = windows[0].subs
    assert [s.index for s in order_window(w, g, parse_policy("recorded"))] == [0, 1, 2, 3]
    assert [s.index for s in order_window(w, g, parse_policy("reverse"))] == [2, 3, 0, 1]
    assert [s.index for s in order_window(w, g, parse_policy("delay:0:2"))] == [2, 3, 0, 1]
    assert [s.index for s in order_window(w, g, parse_policy("delay:0:1"))] == [2, 0, 1, 3]
    assert [s.index for s in order_window(w, g, parse_policy("delay:1:1"))] == [0, 1, 2, 3]
    import random
    seen = {tuple(s.index for s in order_window(w, g, Policy("random"), random.Random(k))) for k in range(40)}
    assert len(seen) == 6                      # every interleaving of two chains of two
    for o in seen:
        check_order([plan.submissions[i] for i in o], g)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(st.integers(0, 30), max_size=3)), min_size=1, max_size=25),
       st.sampled_from(["reverse", "random", "delay:1:2", "delay:0:0", "serialize"]), st.integers(0, 99))
def test_orders_respect_every_edge(spec, pol, seed):
    """Any DAG (edges only go forward, as the graph builds them), any policy: a permutation that
    keeps every edge."""
    import random
    subs = [SimpleNamespace(index=i, queue=SimpleNamespace(queue_id=q)) for i, (q, _) in enumerate(spec)]
    preds = [{p % i for p in ps} if i else set() for i, (_, ps) in enumerate(spec)]
    g = SimpleNamespace(preds=preds)
    out = order_window(subs, g, parse_policy(pol), random.Random(seed))
    assert sorted(s.index for s in out) == list(range(len(subs)))
    at = {s.index: k for k, s in enumerate(out)}
    assert all(at[p] < at[i] for i, ps in enumerate(preds) for p in ps)


def test_policy_parse_errors():
    assert parse_policy("delay:3:2") == Policy("delay", 3, 2)
    assert str(parse_policy("DELAY:0x3:2")) == "delay:3:2"
    for bad in ("sideways", "delay:1", "delay:x:2", "delay:1:-1"):
        with pytest.raises(KfdtraceError):
            parse_policy(bad)


# -- fault specs -------------------------------------------------------------------------------------
def test_fault_specs(tmp_path):
    plan = synth(tmp_path / "f.trace", [(0, copy(BUF, BUF + 0x1000)), (0, fence(T, 1))])
    f = parse_spec("ioctl:alloc_memory_of_gpu:2:ENOMEM", plan)
    assert (f.name, f.nth, f.errno) == ("ALLOC_MEMORY_OF_GPU", 2, 12)
    assert parse_spec("ioctl:CREATE_QUEUE:1:22", plan).errno == 22
    f = parse_spec("memflip:1:a3+0x10:7", plan)
    assert (f.sub, f.addr, f.bit) == (1, BASE + 0x300010, 7)
    assert (parse_spec("flip:0:2:31", plan).dword, parse_spec("delay-signal:1:4", plan).count) == (2, 4)
    assert parse_spec("pagefault:1:0x1000", plan).addr == 0x1000
    for bad, msg in [("explode:1", "unknown fault kind"), ("ioctl:NOPE:1:ENOMEM", "no KFD ioctl"),
                     ("ioctl:CREATE_QUEUE:3:EBUSY", "has 2"), ("ioctl:CREATE_QUEUE:1:EWHAT", "unknown errno"),
                     ("flip:9:0:0", "submission #9 does not exist"), ("flip:0:99:0", "has 7 dwords"),
                     ("flip:0:0:32", "not 0..31"), ("memflip:0:a9:0", "a9 does not exist"),
                     ("memflip:0:a3+0x10000:0", "outside"), ("memflip:0:0x10:8", "not 0..7"), ("hang", "takes")]:
        with pytest.raises(InjectError, match=msg):
            parse_spec(bad, plan)


# -- packet editing ----------------------------------------------------------------------------------
def test_patch_nop_flip_and_event_rebuild(tmp_path):
    words = poll(T, 3) + sdma.build("FENCE", FAM, addr=T, data=7) + sdma.build("TRAP", FAM, int_context=7)
    plan = synth(tmp_path / "e.trace", [(0, words)])
    sub = plan.submissions[0]
    patch = Patch(sub)
    wait = sub.waits[0]
    old = patch.nop(wait)
    assert old == _dw(poll(T, 3))
    trap = next(op for op in sub.syncs if op.kind == "interrupt")
    patch.rebuild(trap, int_context=0x41)
    fence_op = sub.signals[0]
    patch.rebuild(fence_op, addr=T + 0x40, data=0x41)
    pk = decode_stream("sdma", bytes(patch.ring), FAM)
    assert len(patch.ring) == len(sub.data)
    assert [p.name for p in pk[:6]] == ["NOP"] * 6                 # the 6-dword POLL_REGMEM, now NOPs
    fence_p = next(p for p in pk if p.name == "FENCE")
    assert (fence_p.fields["addr"], fence_p.fields["data"]) == (T + 0x40, 0x41)
    assert next(p for p in pk if p.name == "TRAP").fields["int_context"] == 0x41
    flipped = Patch(sub)
    flipped.flip(3, 4)                                              # POLL_REGMEM value 3 -> 0x13
    assert decode_stream("sdma", bytes(flipped.ring), FAM)[0].fields["value"] == 0x13
    assert bytes(flipped.ring)[24:] == sub.data[24:]
    # PM4: NOPs of every length decode as one packet of that length
    for n in (1, 2, 7):
        from kfdtrace.replay.inject import nop_dwords
        p = decode_stream("pm4", nop_dwords("pm4", n), FAM)
        assert len(p) == 1 and p[0].name == "NOP" and p[0].length == n


def test_event_ids_patched_in_packets(tmp_path):
    """The target handed out event 9 (slot 9) for the trace's event 5: the mailbox FENCE (address
    and data) and the TRAP's int_context follow; the timeline FENCE does not change."""
    from kfdtrace.replay.engine import Options, Replayer
    from kfdtrace.replay.report import Report
    page = BASE + 0x200000
    words = fence(T, 1) + fence(page + 5 * 8, 5) + sdma.build("TRAP", FAM, int_context=5)
    plan = synth(tmp_path / "ev.trace", [(0, words)], event=5)
    assert plan.mailbox(page + 40).event_id == 5 and plan.event_pages == {(GPU << 32) | 4: page}
    rp = Replayer(plan, HBGraph(plan), SimpleNamespace(backend="emu"), Options(), Report("t"))
    rp.remap = Remap({GPU: 0x7777})
    rp.remap.event, rp.remap.slot = {5: 9}, {5: 9}
    sub = plan.submissions[0]
    patch = Patch(sub)
    rp._patch_events(sub, patch)
    f1, f2, trap = decode_stream("sdma", bytes(patch.ring), FAM)
    assert (f1.fields["addr"], f1.fields["data"]) == (T, 1)
    assert (f2.fields["addr"], f2.fields["data"]) == (page + 9 * 8, 9)
    assert trap.fields["int_context"] == 9


# -- remapping -----------------------------------------------------------------------------------------
def test_remap_ioctl_arguments_and_payloads():
    r = Remap({0x1111: 0x2222, 0x3333: 0x4444})
    r.fd[10001] = 7
    # ALLOC learned -> FREE/MAP patched, the device-id array rebuilt with the target's gpu_ids
    req = A.request_for("ALLOC_MEMORY_OF_GPU")
    rec = A.kfd_ioctl_alloc_memory_of_gpu_args(va_addr=0x1000, size=0x2000, handle=(0x1111 << 32) | 2,
                                               mmap_offset=0x100000, gpu_id=0x1111, flags=int(A.AllocFlags.VRAM))
    new = A.kfd_ioctl_alloc_memory_of_gpu_args.from_buffer_copy(bytes(rec))
    new.handle, new.mmap_offset, new.gpu_id = (0x2222 << 32) | 0x42, 0x900000, 0x2222
    arg, _ = r.patch("ALLOC_MEMORY_OF_GPU", req, bytes(rec), None, lambda v: v, "t")
    assert A.parse_args(req, arg).gpu_id == 0x2222
    r.learn("ALLOC_MEMORY_OF_GPU", req, bytes(rec), bytes(new))
    ids = struct.pack("<2I", 0x1111, 0x3333)
    mreq = A.request_for("MAP_MEMORY_TO_GPU")
    m = A.kfd_ioctl_map_memory_to_gpu_args(handle=rec.handle, device_ids_array_ptr=0xDEAD000, n_devices=2)
    arg, keep = r.patch("MAP_MEMORY_TO_GPU", mreq, bytes(m),
                        [{"field": "device_ids_array_ptr", "addr": 0xDEAD000, "data_in": ids, "data_out": None}],
                        lambda v: v, "t")
    out = A.parse_args(mreq, arg)
    assert out.handle == new.handle
    assert out.device_ids_array_ptr == ctypes.addressof(keep[0][1])
    assert struct.unpack("<2I", ctypes.string_at(out.device_ids_array_ptr, 8)) == (0x2222, 0x4444)
    assert r.render_offset(0x2222, 0x100000 + 0x800, "t") == 0x900800
    # ACQUIRE_VM's drm_fd; WAIT_EVENTS event ids in the payload
    aq = A.kfd_ioctl_acquire_vm_args(drm_fd=10001, gpu_id=0x3333)
    arg, _ = r.patch("ACQUIRE_VM", A.request_for("ACQUIRE_VM"), bytes(aq), None, lambda v: v, "t")
    assert (A.parse_args(A.request_for("ACQUIRE_VM"), arg).drm_fd, A.parse_args(A.request_for("ACQUIRE_VM"), arg).gpu_id) == (7, 0x4444)
    ereq = A.request_for("CREATE_EVENT")
    ev_rec = A.kfd_ioctl_create_event_args(event_page_offset=A.KFD_MMAP_TYPE_EVENTS, event_id=3, event_slot_index=3)
    ev_new = A.kfd_ioctl_create_event_args(event_page_offset=A.KFD_MMAP_TYPE_EVENTS, event_id=9, event_slot_index=9)
    r.learn("CREATE_EVENT", ereq, bytes(ev_rec), bytes(ev_new))
    assert not r.events_identity and r.slot == {3: 9}
    data = (A.kfd_event_data * 2)()
    data[0].event_id, data[1].event_id = 3, 3
    wreq = A.request_for("WAIT_EVENTS")
    wa = A.kfd_ioctl_wait_events_args(events_ptr=0xBEEF, num_events=2, timeout=5)
    arg, keep = r.patch("WAIT_EVENTS", wreq, bytes(wa),
                        [{"field": "events_ptr", "addr": 0xBEEF, "data_in": bytes(data), "data_out": None}],
                        lambda v: v, "t")
    back = (A.kfd_event_data * 2).from_buffer_copy(ctypes.string_at(A.parse_args(wreq, arg).events_ptr, 96))
    assert [back[0].event_id, back[1].event_id] == [9, 9]
    # doorbells: the queue's slot in the target's slice, at the recorded mapping
    qreq = A.request_for("CREATE_QUEUE")
    q_rec = A.kfd_ioctl_create_queue_args(queue_id=1, doorbell_offset=A.kfd_mmap_offset(3, 0x1111, 0x8))
    q_new = A.kfd_ioctl_create_queue_args(queue_id=5, doorbell_offset=A.kfd_mmap_offset(3, 0x2222, 0x28))
    r.learn("CREATE_QUEUE", qreq, bytes(q_rec), bytes(q_new))
    assert r.kfd_offset(A.kfd_mmap_offset(3, 0x1111, 0), "t") == A.kfd_mmap_offset(3, 0x2222, 0)
    assert r.kfd_offset(A.kfd_mmap_offset(0, 0x3333, 0), "t") == A.kfd_mmap_offset(0, 0x4444, 0)
    assert r.doorbell(0x7000_0008, q_rec.doorbell_offset, "t") == 0x7000_0028
    dq = A.kfd_ioctl_destroy_queue_args(queue_id=1)
    arg, _ = r.patch("DESTROY_QUEUE", A.request_for("DESTROY_QUEUE"), bytes(dq), None, lambda v: v, "t")
    assert A.parse_args(A.request_for("DESTROY_QUEUE"), arg).queue_id == 5
    # an id whose creating call failed: the error says why
    r.missing("handle", 0x99, "its ALLOC_MEMORY_OF_GPU (record 7) failed: injected ENOMEM")
    with pytest.raises(RemapError, match="record 7.*ENOMEM"):
        r.patch("FREE_MEMORY_OF_GPU", A.request_for("FREE_MEMORY_OF_GPU"),
                bytes(A.kfd_ioctl_free_memory_of_gpu_args(handle=0x99)), None, lambda v: v, "t")
    with pytest.raises(RemapError, match="gpu_id 0x5555"):
        r.gpu_id(0x5555, "t")


def test_cpu_ranges():
    r = _Ranges()
    r.set(0x1000, 0x5000, 3)
    r.set(0x2000, 0x3000, 0)
    r.set(0x4000, 0x6000, 1)
    assert r.covers(0x1000, 0x1000, 3) and not r.covers(0x1000, 0x1001, 1)
    assert r.covers(0x3000, 0x3000, 1) and not r.covers(0x3000, 0x2000, 3)
    assert not r.covers(0x6000, 1, 1) and not r.covers(0x0, 1, 1)


# -- compatibility and validation -----------------------------------------------------------------------
def _node(gpu_id, gtv, minor=128):
    from kfdtrace.abi.topology import Node
    return Node(index=1, gpu_id=gpu_id, name="x", properties={"gfx_target_version": gtv, "simd_count": 4,
                                                              "drm_render_minor": minor})


def test_compat(tmp_path):
    plan = synth(tmp_path / "c.trace", [(0, copy(BUF, BUF + 0x1000))])
    gmap, minors, warn = check_compat(plan, [_node(0x7777, 90402, 129)], force=False)
    assert gmap == {GPU: 0x7777} and minors == {128: 129} and not warn
    with pytest.raises(ReplayRefused, match=r"recorded on gfx942.*target GPU 0 is gfx1100"):
        check_compat(plan, [_node(0x7777, 110000)], force=False)
    _, _, warn = check_compat(plan, [_node(0x7777, 110000)], force=True)
    assert "gfx942" in warn[0] and "gfx1100" in warn[0] and "--force" in warn[0]
    with pytest.raises(ReplayRefused, match="1 GPU.*has 0"):
        check_compat(plan, [], force=True)


def test_validation_refuses_packets_outside_allocations(tmp_path):
    ok = synth(tmp_path / "ok.trace", [(0, copy(BUF, BUF + 0x1000)), (1, fence(T, 1))])
    ok.validate()
    bad = synth(tmp_path / "bad.trace", [(0, copy(BUF, BUF + 0x1000)), (1, copy(BUF, 0x1234_5000, 0x100))])
    with pytest.raises(ReplayRefused) as e:
        bad.validate()
    msg = str(e.value)
    assert "submission #1" in msg and "COPY_LINEAR" in msg and "dst_addr 0x12345000" in msg
    over = synth(tmp_path / "over.trace", [(0, copy(BUF + 0xFF00, BUF, 0x200))])
    with pytest.raises(ReplayRefused, match="runs past the end of allocation a3"):
        over.validate()
