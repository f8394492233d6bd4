"""The pure-Python driver against the emulated GPU: the same code a real GPU would run."""
from __future__ import annotations

import errno

import numpy as np
import pytest

from kfdtrace.driver import KfdError, WaitTimeout, open_device
from kfdtrace.errors import GpuFault, KfdtraceError

FAMILIES = ["gfx942", "gfx1100"]


@pytest.fixture(params=FAMILIES)
def dev(request):
    d = open_device(0, backend="emu", gpu=request.param)
    yield d
    d.close()


def test_open_device_reports_topology_and_family(dev):
    assert dev.backend == "emu"
    assert dev.family.name in FAMILIES
    assert dev.gpu_id == dev.node.gpu_id and 0 < dev.gpu_id < 1 << 16
    assert dev.proc.version[0] == 1


def test_buffers_are_mapped_on_cpu_and_gpu_at_the_same_address(dev):
    for where in ("vram", "gtt", "host"):
        b = dev.alloc(10000, where)
        assert b.address % 4096 == 0
        v = b.view(np.uint32)
        v[:] = np.arange(len(v), dtype=np.uint32)
        assert b.read(8, offset=4) == np.array([1, 2], np.uint32).tobytes()
        b.free()
        with pytest.raises(KfdtraceError, match="freed"):
            b.view()


def test_vram_exhaustion_is_a_kfd_error_with_enomem():
    with open_device(0, backend="emu", gpu="gfx942") as d:
        with pytest.raises(KfdError) as e:
            d.alloc(64 << 30, "vram")
        assert e.value.errno == errno.ENOMEM
        assert "ALLOC_MEMORY_OF_GPU" in str(e.value)


def test_sdma_copy_fill_write(dev):
    n = 3 << 20
    a, b = dev.alloc(n, "gtt"), dev.alloc(n, "vram")
    data = np.random.default_rng(0).integers(0, 2**32, n // 4, dtype=np.uint32)
    a.view(np.uint32)[:] = data
    q, t = dev.sdma_queue(), dev.timeline()
    q.copy(b, a, n)
    q.fill(b, 0x01020304, 64, offset=128)
    q.write(b, [7, 8, 9], offset=4096)
    q.signal(t, 1)
    assert t.wait(1) == 1
    out = b.view(np.uint32)
    want = data.copy()
    want[32:48] = 0x01020304
    want[1024:1027] = [7, 8, 9]
    assert np.array_equal(out, want)


def test_timeline_orders_work_across_engines(dev):
    """SDMA → PM4 → AQL → SDMA, each stage waiting on the GPU for the previous one's value."""
    buf = dev.alloc(4096, "gtt")
    buf.view(np.uint32)[:] = 0
    s1, pm4q, aqlq, s2 = dev.sdma_queue(), dev.compute_queue(), dev.compute_queue(aql=True), dev.sdma_queue()
    t = dev.timeline()
    # Submit in reverse order, so only the GPU-side waits can make it come out right.
    s2.wait(t, 3)
    s2.fence(buf.address + 12, 4)
    s2.signal(t, 4)
    aqlq.wait(t, 2)
    aqlq.signal(t, 3)
    pm4q.wait(t, 1)
    pm4q.write_data(buf, [2], offset=4)
    pm4q.signal(t, 2)
    assert buf.view(np.uint32)[3] == 0           # nothing ran: everyone waits for 1
    s1.fence(buf.address, 1)
    s1.signal(t, 1)
    assert t.wait(4, timeout=5) == 4
    assert list(buf.view(np.uint32)[:4]) == [1, 2, 0, 4]


def test_ring_wraps_under_10000_submissions(dev):
    q = dev.sdma_queue(ring_size=4096)
    t = dev.timeline()
    for i in range(1, 10001):
        q.fence(t.value_addr, i)
        if i % 1000 == 0:
            assert t.wait(i) == i
    assert q.wptr > 10 * q.cap                  # wrapped many times
    assert q.rptr == q.wptr
    pm = dev.compute_queue(ring_size=1024)
    buf = dev.alloc(4096, "gtt")
    for i in range(3000):                        # 6-dword WRITE_DATA packets through 256 dwords
        pm.write_data(buf, [i])
    pm.signal(t, 10001)
    t.wait(10001)
    assert buf.view(np.uint32)[0] == 2999


def test_cpu_wait_times_out_naming_queue_packet_address_and_value(dev):
    q, gate, done = dev.sdma_queue(), dev.timeline(), dev.timeline()
    q.wait(gate, 5)
    q.signal(done, 1)
    with pytest.raises(WaitTimeout) as e:
        done.wait(1, timeout=0.2)
    msg = str(e.value)
    assert f"{done.value_addr:#x}" in msg and ">= 1" in msg
    assert "POLL_REGMEM" in msg and q.name in msg and f"{gate.value_addr:#x}" in msg
    gate.signal(5)                              # the CPU signal releases the queue
    assert done.wait(1, timeout=5) == 1


def test_gpu_page_fault_reports_the_address(dev):
    a = dev.alloc(4096, "gtt")
    q, t = dev.sdma_queue(), dev.timeline()
    bad = 0x7F00_0000_0000
    q.copy(a, bad, 256)
    q.signal(t, 1)
    with pytest.raises(GpuFault) as e:
        t.wait(1, timeout=5)
    assert e.value.address == bad
    assert f"{bad:#x}" in str(e.value)


def test_close_tears_everything_down_and_reports_no_leaks():
    d = open_device(0, backend="emu", gpu="gfx942")
    port = d.port
    d.alloc(1 << 20, "vram")
    d.sdma_queue()
    d.compute_queue(aql=True)
    d.timeline()
    d.close()
    assert port.leaks() == {} or not any(port.leaks().values())


def test_multi_gpu_peer_copy(monkeypatch):
    monkeypatch.setenv("KFDTRACE_EMU_GPUS", "2")
    d0 = open_device(0, backend="emu", gpu="gfx942")
    d1 = open_device(1, backend="emu", gpu="gfx942")
    try:
        assert d0.proc is d1.proc and d0.gpu_id != d1.gpu_id
        a, b = d0.alloc(1 << 16, "vram"), d1.alloc(1 << 16, "vram")
        a.view(np.uint32)[:] = 0xABCD
        q, t = d0.sdma_queue(), d0.timeline()
        q.copy(b, a, 1 << 16)
        q.signal(t, 1)
        t.wait(1)
        assert (b.view(np.uint32) == 0xABCD).all()
        q1 = d1.sdma_queue()                     # GPU 1 signals a timeline of GPU 0
        q1.signal(t, 2)
        assert t.wait(2) == 2
    finally:
        d1.close()
        d0.close()


def test_open_device_by_family_and_bad_index():
    with open_device(0, backend="emu", gpu="gfx1100") as d:
        assert d.family.name == "gfx1100"
    with pytest.raises(KfdtraceError, match="out of range"):
        open_device(3, backend="emu", gpu="gfx942")
