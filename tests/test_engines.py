"""Engines of the emulated GPU: SDMA, PM4, AQL and the scheduler, driven through fake queue
contexts over the real emulated memory (kfdtrace.emu.memory), with packets built by
kfdtrace.packets. Every test asserts on memory contents, pointer values, interrupts or faults."""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kfdtrace.abi.families import get_family
from kfdtrace.emu.base import QueueKind, Step
from kfdtrace.emu.engines import Scheduler, make_engine
from kfdtrace.emu.engines.core import PACKET_TICKS
from kfdtrace.emu.memory import AddressSpace, Allocation, Backing, GpuView
from kfdtrace.errors import GpuFault
from kfdtrace.packets import aql, pm4, sdma

GPU = 0x1234
M64 = (1 << 64) - 1


# ------------------------------------------------------------------------------------------------
# harness
# ------------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    """A QueueContext as the KFD model provides it, recording interrupts and faults."""
    machine: "Machine"
    queue_id: int
    kind: QueueKind
    family: object
    ring_base: int
    ring_size: int
    wptr_addr: int
    rptr_addr: int
    gpu_id: int = GPU
    mem: object = None
    shader: object = None
    interrupts: list = field(default_factory=list)
    faults: list = field(default_factory=list)

    def interrupt(self, ctxid):
        self.interrupts.append(ctxid)
        self.machine.log.append(("irq", self.queue_id, ctxid,
                                 self.machine.on_irq() if self.machine.on_irq else None))

    def clock(self):
        return self.machine.sched.clock

    def fault(self, va, write, message=""):
        self.faults.append((va, write, message))


class RecordingShader:
    """A ShaderExecutor that records each DispatchInfo and, like a kernel would, stores the grid
    size and first user SGPR at the address held in user SGPRs 0-1 (or the kernarg address)."""

    def __init__(self):
        self.infos = []

    def dispatch(self, info, mem):
        self.infos.append(info)
        out = info.kernarg_address or (info.user_sgprs[0] | info.user_sgprs[1] << 32
                                       if len(info.user_sgprs) >= 2 else 0)
        if out:
            mem.write(out, struct.pack("<4I", *info.grid_size, len(info.user_sgprs)))


class Machine:
    def __init__(self, family="gfx942", seed=None):
        self.family = get_family(family)
        self.space = AddressSpace()
        self.mem = GpuView(self.space, GPU)
        self.sched = Scheduler(seed)
        self.shader = RecordingShader()
        self.next_va = 0x7f0000000000
        self.log = []
        self.handle = 1
        self.on_irq = None          # called at each interrupt: what memory holds at that moment

    def alloc(self, size, writable=True, gap=True):
        va = self.next_va
        b = Backing(size, f"t{self.handle}")
        a = Allocation(self.handle, GPU, va, b.size, 0, "vram", backing=b, writable=writable)
        a.mapped.add(GPU)
        self.space.insert(a)
        self.handle += 1
        self.next_va += b.size + (0x10000 if gap else 0)   # an unmapped hole after each BO
        return va

    def free(self, va):
        a = self.space.find(va)
        self.space.remove(a)

    def u32(self, va):
        return self.mem.read_u32(va)

    def u64(self, va):
        return self.mem.read_u64(va)

    def queue(self, kind, ring_size=4096, qid=None, add=True):
        ring = self.alloc(ring_size)
        ptrs = self.alloc(4096)
        ctx = Ctx(self, len(self.sched.engines) if qid is None else qid, kind, self.family, ring,
                  ring_size, ptrs, ptrs + 8 if kind is not QueueKind.AQL else ptrs + 128,
                  mem=self.mem, shader=self.shader)
        if kind is QueueKind.AQL:    # an amd_queue_t around the pointers, as ROCr lays it out
            ctx.wptr_addr = ptrs + 56
            self.mem.write_u32(ptrs + 136, 128)
            for slot in range(ring_size // 64):    # ROCr starts every slot INVALID
                self.mem.write(ring + 64 * slot, b"\x01\x00")
        eng = make_engine(ctx)
        if add:
            self.sched.add(eng)
        return Q(self, ctx, eng)


class Q:
    """A queue plus a producer that writes packets into its ring and bumps its write pointer."""

    def __init__(self, m, ctx, eng):
        self.m, self.ctx, self.eng = m, ctx, eng
        self.kind = ctx.kind
        self.unit = {QueueKind.SDMA: 1, QueueKind.PM4: 4, QueueKind.AQL: 64}[ctx.kind]
        self.wptr = 0

    @property
    def rptr(self):
        return self.m.u64(self.ctx.rptr_addr)

    def put(self, *packets, run=True):
        """Append packets (dword lists, or 64-byte AQL packets) and ring the doorbell."""
        m, c = self.m, self.ctx
        for p in packets:
            if self.kind is QueueKind.AQL:
                va = c.ring_base + (self.wptr % (c.ring_size // 64)) * 64
                m.mem.write(va + 4, p[4:])          # body first, header last (publish)
                m.mem.write(va, p[:4])
                self.wptr += 1
            else:
                for dw in p:
                    m.mem.write_u32(c.ring_base + (self.wptr * self.unit) % c.ring_size, dw)
                    self.wptr += 4 // self.unit
        m.mem.write_u64(c.wptr_addr, self.wptr)
        if run:
            return m.sched.run()

    def pad_to_end(self, filler):
        """Fill the ring up to its end (producers pad instead of straddling the end)."""
        c = self.ctx
        while (self.wptr * self.unit) % c.ring_size:
            self.put([filler], run=False)


# ------------------------------------------------------------------------------------------------
# SDMA
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def m():
    return Machine("gfx942")


def test_sdma_copy_linear_and_byte_pointers(m):
    q = m.queue(QueueKind.SDMA)
    src, dst = m.alloc(1 << 16), m.alloc(1 << 16)
    data = np.random.default_rng(1).integers(0, 256, 50001, dtype=np.uint8).tobytes()
    m.mem.write(src + 3, data)
    q.put(sdma.build("COPY_LINEAR", "gfx942", byte_count=len(data), src_addr=src + 3, dst_addr=dst + 5))
    assert m.mem.read(dst + 5, len(data)) == data
    assert m.mem.read(dst, 5) == b"\0" * 5 and m.mem.read(dst + 5 + len(data), 4) == b"\0" * 4
    assert q.rptr == 7 * 4 == q.wptr          # byte pointers
    assert m.sched.clock >= PACKET_TICKS + len(data) // 256


def test_sdma_broadcast_copy_write_untiled_const_fill(m):
    q = m.queue(QueueKind.SDMA, qid=3)
    buf = m.alloc(8192)
    m.mem.write(buf, bytes(range(64)))
    q.put(sdma.build("COPY_BROADCAST_LINEAR", "gfx942", byte_count=64, src_addr=buf,
                     dst1_addr=buf + 1024, dst2_addr=buf + 2048),
          sdma.build("WRITE_UNTILED", "gfx942", dst_addr=buf + 4096, data=[0xDEADBEEF, 7, 8]),
          sdma.build("CONST_FILL", "gfx942", fillsize=2, byte_count=16, dst_addr=buf + 5000,
                     src_data=0xA1B2C3D4),
          sdma.build("CONST_FILL", "gfx942", fillsize=0, byte_count=7, dst_addr=buf + 6000,
                     src_data=0x04030201))
    assert m.mem.read(buf + 1024, 64) == bytes(range(64)) == m.mem.read(buf + 2048, 64)
    assert struct.unpack("<3I", m.mem.read(buf + 4096, 12)) == (0xDEADBEEF, 7, 8)
    assert struct.unpack("<4I", m.mem.read(buf + 5000, 16)) == (0xA1B2C3D4,) * 4
    assert m.u32(buf + 5016) == 0
    assert m.mem.read(buf + 6000, 8) == bytes([1, 2, 3, 4, 1, 2, 3, 0])


def test_sdma_fence_trap_interrupt_and_nop(m):
    q = m.queue(QueueKind.SDMA)
    slot = m.alloc(4096)
    q.put(sdma.build("NOP", "gfx942", count=3), [0],           # burst NOP + a zero-dword NOP
          sdma.build("FENCE", "gfx942", addr=slot + 8, data=0x55),
          sdma.build("TRAP", "gfx942", int_context=42))
    assert m.u32(slot + 8) == 0x55
    assert q.ctx.interrupts == [42]
    assert q.rptr == (4 + 1 + 4 + 2) * 4
    assert q.eng.packets == 4


def test_sdma_poll_regmem_blocks_and_resumes(m):
    q = m.queue(QueueKind.SDMA, qid=7)
    flag, out = m.alloc(4096), m.alloc(4096)
    m.mem.write_u32(flag, 0x104)
    q.put(sdma.build("POLL_REGMEM", "gfx942", func=5, mem_poll=1, addr=flag, value=0x200,
                     mask=0xFFF0, retry_count=0xFFF),
          sdma.build("FENCE", "gfx942", addr=out, data=9))
    assert q.eng.step() is Step.BLOCKED
    assert m.u32(out) == 0 and q.rptr == 0
    (w,) = m.sched.blocked()
    assert (w.queue, w.packet, w.address, w.value, w.last) == (7, "SDMA POLL_REGMEM", flag, 0x200, 0x104)
    assert (w.mask, w.func) == (0xFFF0, ">=") and "0x104" in str(w) and "POLL_REGMEM" in str(w)
    m.mem.write_u32(flag, 0x20F)                # (0x20F & 0xFFF0) = 0x200 >= 0x200
    m.sched.run()
    assert m.u32(out) == 9 and q.rptr == 40 and m.sched.blocked() == []


def test_sdma_poll_register_hdp_flush_completes_other_register_faults(m):
    q = m.queue(QueueKind.SDMA)
    out = m.alloc(4096)
    q.put(sdma.build("POLL_REGMEM", "gfx942", hdp_flush=1, func=3, mem_poll=0, addr=0x54A0 << 2,
                     value=1, mask=1, retry_count=0xFFF),
          sdma.build("FENCE", "gfx942", addr=out, data=1))
    assert m.u32(out) == 1
    q.put(sdma.build("POLL_REGMEM", "gfx942", func=3, mem_poll=0, addr=0x1000 << 2, value=1, mask=1))
    assert q.eng.stopped and "register polls" in q.ctx.faults[0][2]


@pytest.mark.parametrize("op,init,src,cmp,want", [
    (47, 5, M64, 0, 4),                       # ADD_RTN_64 with -1: ROCr's signal decrement
    (0x6F, 1 << 40, 3, 0, (1 << 40) + 3),     # ADD_64
    (0x10, 10, 3, 0, 7),                      # SUB_RTN_32
    (0x50, 0, 1, 0, 0xFFFFFFFF),              # SUB_32 wraps
    (0x08, 5, 99, 5, 99),                     # CMPSWAP_RTN_32, compare equal
    (0x08, 5, 99, 6, 5),                      # CMPSWAP_RTN_32, compare differs
    (0x68, 1 << 50, 7, 1 << 50, 7),           # CMPSWAP_64
    (0x07, 1, 0xABCD, 0, 0xABCD),             # SWAP_RTN_32
    (0x67, 1, 1 << 63, 0, 1 << 63),           # SWAP_64
    (0x18, 3, 10, 0, 4), (0x18, 10, 10, 0, 0),  # INC_RTN_32 (wraps at src)
    (0x19, 3, 10, 0, 2), (0x19, 0, 10, 0, 10),  # DEC_RTN_32 (reloads src at 0)
    (0x78, 7, 100, 0, 8),                     # INC_64
    (0x11, 0xFFFFFFFF, 3, 0, 0xFFFFFFFF),     # SMIN_RTN_32: -1 < 3
    (0x12, 0xFFFFFFFF, 3, 0, 3),              # UMIN_RTN_32
    (0x35, 0xF0F0, 0xFF00, 0, 0xF000), (0x36, 0xF0, 0x0F, 0, 0xFF), (0x37, 0xFF, 0x0F, 0, 0xF0),
])
def test_sdma_atomics(m, op, init, src, cmp, want):
    q = m.queue(QueueKind.SDMA)
    buf = m.alloc(4096)
    wide = op in (47, 0x6F, 0x68, 0x67, 0x78, 0x35, 0x36, 0x37)
    (m.mem.write_u64 if wide else m.mem.write_u32)(buf, init)
    q.put(sdma.build("ATOMIC", "gfx942", atomic_op=op, addr=buf, src_data=src, cmp_data=cmp))
    assert (m.u64 if wide else m.u32)(buf) == want
    assert not q.ctx.faults


def test_sdma_atomic_loop_blocks_until_compare_then_unsupported_op_faults(m):
    q = m.queue(QueueKind.SDMA)
    buf = m.alloc(4096)
    m.mem.write_u32(buf, 1)
    q.put(sdma.build("ATOMIC", "gfx942", atomic_op=0x08, loop=1, addr=buf, src_data=2, cmp_data=0))
    assert m.u32(buf) == 1 and m.sched.blocked()[0].value == 0 and m.sched.blocked()[0].last == 1
    m.mem.write_u32(buf, 0)
    m.sched.run()
    assert m.u32(buf) == 2 and q.rptr == 32
    q.put(sdma.build("ATOMIC", "gfx942", atomic_op=0x01, addr=buf))   # FCMPSWAP: float
    assert q.eng.stopped and "not an integer TC atomic" in q.ctx.faults[0][2]


def test_sdma_timestamps(m):
    q = m.queue(QueueKind.SDMA)
    buf = m.alloc(4096)
    m.sched.clock = 1000
    q.put(sdma.build("TIMESTAMP_GET_GLOBAL", "gfx942", write_addr=buf),
          sdma.build("TIMESTAMP_SET", "gfx942", init_data=1 << 40),
          sdma.build("TIMESTAMP_GET", "gfx942", write_addr=buf + 8))
    assert m.u64(buf) == 1000
    assert m.u64(buf + 8) == (1 << 40) + PACKET_TICKS   # one packet after SET


def test_sdma_indirect_buffer_then_return(m):
    q = m.queue(QueueKind.SDMA)
    buf, ib = m.alloc(4096), m.alloc(4096)
    body = sdma.build("FENCE", "gfx942", addr=buf, data=1) + sdma.build("FENCE", "gfx942", addr=buf + 4, data=2)
    m.mem.write(ib, struct.pack(f"<{len(body)}I", *body))
    q.put(sdma.build("INDIRECT", "gfx942", ib_addr=ib, ib_size=len(body)),
          sdma.build("FENCE", "gfx942", addr=buf + 8, data=3), run=False)
    assert q.eng.step() is Step.RAN and q.rptr == 0          # IB entered; rptr stays on INDIRECT
    assert q.eng.step() is Step.RAN and m.u32(buf) == 1 and q.rptr == 0
    assert q.eng.step() is Step.RAN and m.u32(buf + 4) == 2 and q.rptr == 24
    assert m.u32(buf + 8) == 0
    m.sched.run()
    assert m.u32(buf + 8) == 3 and q.rptr == 40


def test_sdma_indirect_nested_faults(m):
    q = m.queue(QueueKind.SDMA)
    ib = m.alloc(4096)
    inner = sdma.build("INDIRECT", "gfx942", ib_addr=ib, ib_size=6)
    m.mem.write(ib, struct.pack("<6I", *inner))
    q.put(sdma.build("INDIRECT", "gfx942", ib_addr=ib, ib_size=6))
    assert q.eng.stopped and "do not nest" in q.ctx.faults[0][2] and q.rptr == 0


def test_sdma_gcr_and_cond_exe(m):
    m = Machine("gfx1100")
    q = m.queue(QueueKind.SDMA)
    buf = m.alloc(4096)
    m.mem.write_u32(buf, 1)
    fence = lambda off, v: sdma.build("FENCE", "gfx1100", addr=buf + off, data=v)  # noqa: E731
    q.put(sdma.build("GCR_REQ", "gfx1100"),
          sdma.build("COND_EXE", "gfx1100", addr=buf, reference=1, exec_count=4), fence(8, 1),
          sdma.build("COND_EXE", "gfx1100", addr=buf, reference=2, exec_count=4), fence(12, 1),
          fence(16, 1))
    assert (m.u32(buf + 8), m.u32(buf + 12), m.u32(buf + 16)) == (1, 0, 1)
    assert q.rptr == q.wptr == (5 + 5 + 4 + 5 + 4 + 4) * 4


@pytest.mark.parametrize("name,kw,words", [
    ("SRBM_WRITE", dict(reg=5, data=1), "writes a register"),
    ("SEM", dict(addr=0x1000), "semaphore"),
    ("PTEPDE_GEN", dict(dst_addr=0x1000), "page tables"),
    ("COPY_TILED", dict(tiled_addr=0x1000), "not supported"),
])
def test_sdma_refused_packets_fault_with_name(m, name, kw, words):
    q = m.queue(QueueKind.SDMA, qid=2)
    q.put(sdma.build(name, "gfx942", **kw))
    assert q.eng.stopped and q.eng.step() is Step.STOPPED
    va, write, msg = q.ctx.faults[0]
    assert name in msg and words in msg and hex(q.ctx.ring_base) in msg and va == q.ctx.ring_base


def test_sdma_unknown_opcode_faults(m):
    q = m.queue(QueueKind.SDMA)
    q.put([0x00000063])
    assert q.eng.stopped and "unknown SDMA op 99" in q.ctx.faults[0][2]


def test_sdma_ring_wrap_with_zero_padding(m):
    q = m.queue(QueueKind.SDMA, ring_size=256)
    buf = m.alloc(4096)
    for i in range(40):                       # 40 × 16 bytes = 2.5 trips around the ring
        if (q.wptr % 256) + 16 > 256:
            q.pad_to_end(0)
        q.put(sdma.build("FENCE", "gfx942", addr=buf + 4 * i, data=i + 1))
    assert [m.u32(buf + 4 * i) for i in range(40)] == list(range(1, 41))
    assert q.rptr == q.wptr == 640             # monotonic bytes, not wrapped


def test_sdma_packet_straddling_ring_end_is_read_wrapped(m):
    q = m.queue(QueueKind.SDMA, ring_size=256)
    buf = m.alloc(4096)
    q.put(*[sdma.build("NOP", "gfx942")] * 60)        # 240 bytes: a FENCE now crosses the end
    q.put(sdma.build("FENCE", "gfx942", addr=buf, data=0x77))
    assert m.u32(buf) == 0x77 and q.rptr == 256


def test_sdma_page_fault_stops_engine_rptr_at_packet(m):
    q = m.queue(QueueKind.SDMA, qid=5)
    buf = m.alloc(4096)
    hole = buf + 4096 + 0x100                  # unmapped gap after the BO
    q.put(sdma.build("FENCE", "gfx942", addr=buf, data=1),
          sdma.build("FENCE", "gfx942", addr=hole, data=2),
          sdma.build("FENCE", "gfx942", addr=buf + 4, data=3))
    assert m.u32(buf) == 1 and m.u32(buf + 4) == 0
    assert q.eng.stopped and q.rptr == 16
    (va, write, msg) = q.ctx.faults[0]
    assert va == hole and write is True
    assert "FENCE" in msg and hex(q.ctx.ring_base + 16) in msg and "queue 5" in msg
    assert m.sched.run() is False and q.eng.step() is Step.STOPPED


def test_sdma_write_to_read_only_bo_faults(m):
    q = m.queue(QueueKind.SDMA)
    ro = m.alloc(4096, writable=False)
    q.put(sdma.build("FENCE", "gfx942", addr=ro, data=1))
    assert q.ctx.faults[0][:2] == (ro, True)


def test_sdma_incomplete_packet_waits_for_producer(m):
    q = m.queue(QueueKind.SDMA, qid=4)
    buf = m.alloc(4096)
    words = sdma.build("FENCE", "gfx942", addr=buf, data=5)
    for i, dw in enumerate(words):
        m.mem.write_u32(q.ctx.ring_base + 4 * i, dw)
    m.mem.write_u64(q.ctx.wptr_addr, 8)         # only half the packet submitted
    assert m.sched.run() is False and m.u32(buf) == 0 and q.rptr == 0
    assert "only 2 submitted" in str(m.sched.blocked()[0])
    m.mem.write_u64(q.ctx.wptr_addr, 16)
    m.sched.run()
    assert m.u32(buf) == 5 and m.sched.blocked() == []


def test_bad_write_pointer_faults(m):
    q = m.queue(QueueKind.SDMA)
    m.mem.write_u64(q.ctx.wptr_addr, 4096 + 64)      # more than a ring ahead
    m.sched.run()
    assert q.eng.stopped and "ahead of the read pointer" in q.ctx.faults[0][2]


def test_sdma_large_copy(m):
    q = m.queue(QueueKind.SDMA)
    n = 12 << 20
    src, dst = m.alloc(n), m.alloc(n)
    m.mem.view(src, n, write=True)[:] = np.arange(n, dtype=np.uint64).astype(np.uint8)
    chunk = 1 << 22                             # v4: 22-bit count → 4 MiB per packet
    q.put(*[sdma.build("COPY_LINEAR", "gfx942", byte_count=chunk, src_addr=src + o, dst_addr=dst + o)
            for o in range(0, n, chunk)])
    assert np.array_equal(m.mem.view(dst, n), m.mem.view(src, n))


# ------------------------------------------------------------------------------------------------
# PM4
# ------------------------------------------------------------------------------------------------
def sh(name, values, family="gfx942"):
    return pm4.build("SET_SH_REG", family, reg=name, values=values)


def kernel_setup(family, code, out, wg=(64, 1, 1), rsrc2_user=2, tmpring=0, partial=(0, 0, 0)):
    rsrc2 = (rsrc2_user << 1) | (3 << 15)        # USER_SGPR, LDS_SIZE = 3 × 512
    return [sh("COMPUTE_PGM_LO", [code >> 8 & 0xFFFFFFFF, code >> 40], family),
            sh("COMPUTE_PGM_RSRC1", [0x11, rsrc2], family),
            sh("COMPUTE_PGM_RSRC3", [0x7], family),
            sh("COMPUTE_NUM_THREAD_X", [w | p << 16 for w, p in zip(wg, partial)], family),
            sh("COMPUTE_TMPRING_SIZE", [tmpring], family),
            sh("COMPUTE_USER_DATA_0", [out & 0xFFFFFFFF, out >> 32, 0xCAFE], family)]


def test_pm4_dispatch_direct_from_registers(m):
    q = m.queue(QueueKind.PM4)
    out = m.alloc(4096)
    code = 0x7f1234567800
    q.put(*kernel_setup("gfx942", code, out, wg=(64, 2, 1), tmpring=(3 << 12) | 8),
          pm4.build("DISPATCH_DIRECT", "gfx942", dim_x=4, dim_y=3, dim_z=2, compute_shader_en=1))
    (info,) = m.shader.infos
    assert info.code_address == code
    assert (info.rsrc1, info.rsrc2 >> 1 & 0x1F, info.rsrc3) == (0x11, 2, 7)
    assert info.workgroup_size == (64, 2, 1) and info.grid_workgroups == (4, 3, 2)
    assert info.grid_size == (256, 6, 2)
    assert info.user_sgprs == [out & 0xFFFFFFFF, out >> 32]
    assert info.wave32 is False and info.lds_size == 3 * 512
    assert info.scratch_size == 3 * 1024 // 64          # WAVESIZE 3 × 1 KiB per wave64
    assert info.family is m.family and info.dispatch_ptr == 0
    assert struct.unpack("<4I", m.mem.read(out, 16)) == (256, 6, 2, 2)
    assert [q.eng.read_reg(0x2E01 + i) for i in range(3)] == [4, 3, 2]    # COMPUTE_DIM_X/Y/Z
    assert q.rptr == q.wptr


def test_pm4_dispatch_wave32_thread_dimensions_and_partial(m):
    m = Machine("gfx1100")
    q = m.queue(QueueKind.PM4)
    out = m.alloc(4096)
    q.put(*kernel_setup("gfx1100", 0x100000, out, wg=(32, 1, 1), tmpring=2 << 12),
          pm4.build("DISPATCH_DIRECT", "gfx1100", dim_x=100, dim_y=1, dim_z=1, compute_shader_en=1,
                    use_thread_dimensions=1, partial_tg_en=1, cs_w32_en=1))
    info = m.shader.infos[-1]
    assert info.wave32 and info.kernel_code_properties >> 10 & 1
    assert info.grid_size == (100, 1, 1) and info.grid_workgroups == (4, 1, 1)
    assert info.rsrc3 == 7 and info.scratch_size == 2 * 256 // 32   # GFX11: 256-byte units
    q.put(*kernel_setup("gfx1100", 0x100000, out, wg=(32, 1, 1), partial=(4, 0, 0)),
          pm4.build("DISPATCH_DIRECT", "gfx1100", dim_x=3, dim_y=1, dim_z=1, compute_shader_en=1,
                    partial_tg_en=1))
    info = m.shader.infos[-1]
    assert info.grid_workgroups == (3, 1, 1) and info.grid_size == (68, 1, 1) and not info.wave32


def test_pm4_dispatch_indirect(m):
    q = m.queue(QueueKind.PM4)
    out, args = m.alloc(4096), m.alloc(4096)
    m.mem.write(args, struct.pack("<3I", 5, 2, 1))
    q.put(*kernel_setup("gfx942", 0x200000, out),
          [pm4.header(0x16, 2), args & 0xFFFFFFFF, args >> 32, 1])
    assert m.shader.infos[-1].grid_workgroups == (5, 2, 1)
    assert struct.unpack("<3I", m.mem.read(out, 12)) == (320, 2, 1)


def test_pm4_dispatch_zero_workgroup_size_faults(m):
    q = m.queue(QueueKind.PM4)
    q.put(pm4.build("DISPATCH_DIRECT", "gfx942", dim_x=1, dim_y=1, dim_z=1, compute_shader_en=1))
    assert q.eng.stopped and "zero dimension" in q.ctx.faults[0][2]


def test_pm4_executor_fault_stops_queue(m):
    class Bad:
        def dispatch(self, info, mem):
            raise GpuFault("illegal instruction at pc 0x10", address=info.code_address + 0x10)
    q = m.queue(QueueKind.PM4)
    q.ctx.shader = Bad()
    q.put(*kernel_setup("gfx942", 0x300000, 0),
          pm4.build("DISPATCH_DIRECT", "gfx942", dim_x=1, dim_y=1, dim_z=1, compute_shader_en=1))
    assert q.eng.stopped and q.ctx.faults[0][0] == 0x300010
    assert "illegal instruction" in q.ctx.faults[0][2] and "DISPATCH_DIRECT" in q.ctx.faults[0][2]


def test_pm4_release_mem_data_and_interrupt(m):
    q = m.queue(QueueKind.PM4)
    buf = m.alloc(4096)
    m.sched.clock = 5000
    rel = lambda **kw: pm4.build("RELEASE_MEM", "gfx942", event_type=0x14, event_index=5, **kw)  # noqa
    m.on_irq = lambda: m.u64(buf + 8)
    q.put(rel(data_sel=1, int_sel=0, addr=buf, data=0x1_0000_0007),
          rel(data_sel=2, int_sel=2, addr=buf + 8, data=0x1234_5678_9ABC, int_ctxid=17),
          rel(data_sel=3, addr=buf + 16), rel(data_sel=4, addr=buf + 24),
          rel(data_sel=0, int_sel=1, int_ctxid=18))
    assert m.u32(buf) == 7 and m.u32(buf + 4) == 0
    assert m.u64(buf + 8) == 0x1234_5678_9ABC
    assert m.u64(buf + 16) == 5000 + 2 * PACKET_TICKS and m.u64(buf + 24) == 5000 + 3 * PACKET_TICKS
    assert q.ctx.interrupts == [17, 18]
    assert m.log[0] == ("irq", q.ctx.queue_id, 17, 0x1234_5678_9ABC)   # raised after the write
    q.put(rel(data_sel=1, int_sel=5, addr=buf))
    assert "INT_SEL 5" in q.ctx.faults[0][2]


def test_pm4_wait_reg_mem_memory_and_register(m):
    q = m.queue(QueueKind.PM4, qid=9)
    flag, out = m.alloc(4096), m.alloc(4096)
    q.put(pm4.build("WAIT_REG_MEM", "gfx942", function=3, mem_space=1, poll_addr=flag, reference=5,
                    mask=0xFF, poll_interval=4),
          pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=out, data=[1]))
    w = m.sched.blocked()[0]
    assert (w.queue, w.packet, w.address, w.value, w.last, w.mask) == (9, "PM4 WAIT_REG_MEM", flag, 5, 0, 0xFF)
    assert m.u32(out) == 0 and q.rptr == 0
    m.mem.write_u32(flag, 0x305)
    m.sched.run()
    assert m.u32(out) == 1
    # register space: COMPUTE_USER_DATA_3 set by SET_SH_REG, waited for with "!="
    reg = 0x2E43
    q.put(sh("COMPUTE_USER_DATA_3", [0]),
          pm4.build("WAIT_REG_MEM", "gfx942", function=4, mem_space=0, poll_addr=reg, reference=0,
                    mask=0xFFFFFFFF),
          pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=out, data=[2]))
    assert m.u32(out) == 1 and "register" in m.sched.blocked()[0].packet
    # HDP flush idiom (write, wait, write on registers) completes at once
    q2 = m.queue(QueueKind.PM4)
    q2.put(pm4.build("WAIT_REG_MEM", "gfx942", function=3, mem_space=0, operation=1, poll_addr=0x1234,
                     reference=1, mask=1),
           pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=out + 8, data=[3]))
    assert m.u32(out + 8) == 3


def test_pm4_write_data_copy_data_registers(m):
    q = m.queue(QueueKind.PM4)
    buf = m.alloc(4096)
    m.mem.write_u64(buf + 0x100, 0x1122334455667788)
    m.sched.clock = 777
    q.put(pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=buf, data=[1, 2, 3]),
          pm4.build("WRITE_DATA", "gfx942", dst_sel=2, wr_one_addr=1, dst_addr=buf + 16, data=[7, 8, 9]),
          pm4.build("WRITE_DATA", "gfx942", dst_sel=0, dst_addr=0x2E40, data=[0xAA, 0xBB]),
          pm4.build("COPY_DATA", "gfx942", src_sel=0, dst_sel=5, src_addr=0x2E41, dst_addr=buf + 20),
          pm4.build("COPY_DATA", "gfx942", src_sel=5, dst_sel=5, count_sel=1, src_addr=0xFEDCBA9876543210,
                    dst_addr=buf + 24),
          pm4.build("COPY_DATA", "gfx942", src_sel=2, dst_sel=5, count_sel=1, src_addr=buf + 0x100,
                    dst_addr=buf + 32),
          pm4.build("COPY_DATA", "gfx942", src_sel=1, dst_sel=0, count_sel=1, src_addr=buf + 0x100,
                    dst_addr=0x2E44),
          pm4.build("COPY_DATA", "gfx942", src_sel=9, dst_sel=5, count_sel=1, dst_addr=buf + 40))
    assert struct.unpack("<3I", m.mem.read(buf, 12)) == (1, 2, 3)
    assert m.u32(buf + 16) == 9 and m.u32(buf + 20) == 0xBB
    assert m.u64(buf + 24) == 0xFEDCBA9876543210 and m.u64(buf + 32) == 0x1122334455667788
    assert (q.eng.read_reg(0x2E44), q.eng.read_reg(0x2E45)) == (0x55667788, 0x11223344)
    assert m.u64(buf + 40) == 777 + 7 * PACKET_TICKS


def test_pm4_dma_data_copy_fill_and_atomic_mem(m):
    q = m.queue(QueueKind.PM4)
    buf = m.alloc(8192)
    m.mem.write(buf, bytes(range(100)))
    m.mem.write_u32(buf + 4000, 41)
    q.put(pm4.build("DMA_DATA", "gfx942", src_sel=0, dst_sel=0, src_addr=buf, dst_addr=buf + 1000,
                    byte_count=100),
          pm4.build("DMA_DATA", "gfx942", src_sel=2, dst_sel=3, src_addr=0x01020304, dst_addr=buf + 2000,
                    byte_count=10),
          pm4.build("ATOMIC_MEM", "gfx942", atomic=0x0F, addr=buf + 4000, src_data=1),
          pm4.build("COPY_DATA", "gfx942", src_sel=6, dst_sel=5, dst_addr=buf + 4004))
    assert m.mem.read(buf + 1000, 100) == bytes(range(100))
    assert m.mem.read(buf + 2000, 12) == bytes([4, 3, 2, 1] * 2 + [4, 3, 0, 0])
    assert m.u32(buf + 4000) == 42 and m.u32(buf + 4004) == 41     # atomic return data


def test_pm4_uconfig_config_registers_and_dma_data_fixed_addresses(m):
    q = m.queue(QueueKind.PM4)
    buf = m.alloc(4096)
    m.mem.write(buf, struct.pack("<4I", 10, 20, 30, 40))
    q.put(pm4.build("SET_UCONFIG_REG", "gfx942", reg=0xC010, values=[0x111, 0x222]),
          pm4.build("SET_CONFIG_REG", "gfx942", reg=0x2100, values=[0x333]),
          pm4.build("COPY_DATA", "gfx942", src_sel=0, dst_sel=5, count_sel=1, src_addr=0xC010,
                    dst_addr=buf + 64),
          pm4.build("COPY_DATA", "gfx942", src_sel=0, dst_sel=5, src_addr=0x2100, dst_addr=buf + 72),
          pm4.build("DMA_DATA", "gfx942", src_addr=buf + 4, dst_addr=buf + 128, byte_count=12, saic=1),
          pm4.build("DMA_DATA", "gfx942", src_addr=buf, dst_addr=buf + 256, byte_count=16, daic=1))
    assert m.u64(buf + 64) == 0x222_0000_0111 and m.u32(buf + 72) == 0x333
    assert struct.unpack("<4I", m.mem.read(buf + 128, 16)) == (20, 20, 20, 0)   # fixed source
    assert struct.unpack("<2I", m.mem.read(buf + 256, 8)) == (40, 0)            # fixed destination


def test_copies_across_adjacent_buffer_objects(m):
    q = m.queue(QueueKind.SDMA)
    a = m.alloc(4096, gap=False)
    b = m.alloc(4096)
    assert b == a + 4096
    m.mem.write(a + 4000, bytes(range(96)))
    m.mem.write(b + 200, bytes(range(100, 196)))
    q.put(sdma.build("COPY_LINEAR", "gfx942", byte_count=96, src_addr=a + 4000, dst_addr=a + 100),
          sdma.build("COPY_LINEAR", "gfx942", byte_count=96, src_addr=b + 200, dst_addr=a + 4050),
          sdma.build("CONST_FILL", "gfx942", fillsize=2, byte_count=64, dst_addr=a + 4064, src_data=7))
    assert m.mem.read(a + 100, 96) == bytes(range(96))          # source spans two BOs
    assert m.mem.read(a + 4050, 14) == bytes(range(100, 114))   # destination spans two BOs
    assert struct.unpack("<16I", m.mem.read(a + 4064, 64)) == (7,) * 16
    assert m.mem.read(b + 32, 18) == bytes(range(178, 196)) and not q.ctx.faults


def test_pm4_event_write_and_nops(m):
    q = m.queue(QueueKind.PM4)
    buf = m.alloc(4096)
    m.sched.clock = 100
    q.put([pm4.FILLER], [pm4.TYPE2_NOP], pm4.build("NOP", "gfx942", count=2),
          pm4.build("EVENT_WRITE", "gfx942", event_type=0x07, event_index=4),
          pm4.build("ACQUIRE_MEM", "gfx942", coher_cntl=0x28C00000),
          pm4.build("PFP_SYNC_ME", "gfx942"), pm4.build("INVALIDATE_TLBS", "gfx942"),
          [pm4.header(0x95, 0), 0],             # HDP_FLUSH
          pm4.build("EVENT_WRITE", "gfx942", event_type=0x04, event_index=5, addr=buf + 8))
    assert m.u64(buf + 8) == 100 + 8 * PACKET_TICKS and not q.ctx.faults
    assert q.rptr == q.wptr == 1 + 1 + 4 + 2 + 7 + 2 + 2 + 2 + 4


def test_pm4_indirect_buffer_chain_and_nesting(m):
    q = m.queue(QueueKind.PM4)
    buf, ib1, ib2, ib3 = m.alloc(4096), m.alloc(4096), m.alloc(4096), m.alloc(4096)
    order = buf + 0x800                       # ATOMIC INC_RTN + COPY_DATA records the order
    seq = lambda tag: [pm4.build("ATOMIC_MEM", "gfx942", atomic=0x0F, addr=order, src_data=1),  # noqa
                       pm4.build("COPY_DATA", "gfx942", src_sel=6, dst_sel=5, dst_addr=buf + 4 * tag)]
    ib = lambda a, n, chain=0: pm4.build("INDIRECT_BUFFER", "gfx942", ib_addr=a, ib_size=n, chain=chain)  # noqa

    def put_ib(va, packets):
        words = [w for p in packets for w in p]
        m.mem.write(va, struct.pack(f"<{len(words)}I", *words))
        return len(words)
    n3 = put_ib(ib3, seq(3))
    n2 = put_ib(ib2, seq(2))
    # IB1: tag 1, call IB2 (returns), chain to IB3 (does not return), then tag 9 (never runs)
    n1 = put_ib(ib1, seq(1) + [ib(ib2, n2), ib(ib3, n3, chain=1)] + seq(9))
    q.put(*seq(0), ib(ib1, n1), *seq(4))
    got = [m.u32(buf + 4 * t) for t in (0, 1, 2, 3, 4)]
    assert got == [0, 1, 2, 3, 4] and m.u32(buf + 36) == 0 and m.u32(order) == 5
    assert q.rptr == q.wptr and not q.ctx.faults
    # IB1 → IB2 → IB3 is deeper than IB2: fault, rptr stays on the ring's INDIRECT_BUFFER
    put_ib(ib2, [ib(ib3, n3)])
    start = q.wptr
    q.put(ib(ib1, put_ib(ib1, [ib(ib2, 4)])))
    assert q.eng.stopped and "nested deeper than 2" in q.ctx.faults[0][2] and q.rptr == start


def test_pm4_ib_without_valid_and_page_fault_inside_ib(m):
    q = m.queue(QueueKind.PM4)
    q.put(pm4.build("INDIRECT_BUFFER", "gfx942", ib_addr=0x1000, ib_size=4, valid=0))
    assert "VALID" in q.ctx.faults[0][2]
    q = m.queue(QueueKind.PM4)
    buf, ibva = m.alloc(4096), m.alloc(4096)
    hole = buf + 4096 + 64
    words = pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=buf, data=[1]) + \
        pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=hole, data=[2])
    m.mem.write(ibva, struct.pack(f"<{len(words)}I", *words))
    q.put(pm4.build("NOP", "gfx942"), pm4.build("INDIRECT_BUFFER", "gfx942", ib_addr=ibva, ib_size=len(words)))
    va, write, msg = q.ctx.faults[0]
    assert (va, write) == (hole, True) and m.u32(buf) == 1
    assert q.rptr == 2 and hex(ibva + 20) in msg           # rptr on the INDIRECT_BUFFER packet
    # an IB whose last packet runs past IB_SIZE faults too
    q = m.queue(QueueKind.PM4)
    q.put(pm4.build("INDIRECT_BUFFER", "gfx942", ib_addr=ibva, ib_size=3))
    assert "runs past the end of the indirect buffer" in q.ctx.faults[0][2]


@pytest.mark.parametrize("words,what", [
    (pm4.build("SET_CONTEXT_REG", "gfx942", reg=0xA000, values=[1]), "graphics-ring packet"),
    ([pm4.header(0x12, 0), 0], "CLEAR_STATE"),
    ([pm4.header(0x5A, 0), 0], "INTERRUPT (opcode 0x5a)"),
    ([pm4.header(0xEE, 0), 0], "unknown PM4 opcode 0xee"),
    ([0x00001000, 5], "type-0"),
])
def test_pm4_unsupported_packets_fault(m, words, what):
    q = m.queue(QueueKind.PM4, qid=6)
    q.put(pm4.build("NOP", "gfx942"), words)
    va, _, msg = q.ctx.faults[0]
    assert what in msg and va == q.ctx.ring_base + 8 and hex(va) in msg and q.rptr == 2


def test_pm4_ring_wrap_with_filler(m):
    q = m.queue(QueueKind.PM4, ring_size=256)       # 64 dwords
    buf = m.alloc(4096)
    for i in range(30):                              # WRITE_DATA is 5 dwords
        if q.wptr % 64 + 5 > 64:
            q.pad_to_end(pm4.FILLER)
        q.put(pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=buf + 4 * i, data=[i + 100]))
    assert [m.u32(buf + 4 * i) for i in range(30)] == [i + 100 for i in range(30)]
    assert q.rptr == q.wptr > 64                    # monotonic dword pointer


# ------------------------------------------------------------------------------------------------
# AQL
# ------------------------------------------------------------------------------------------------
def aql_setup(m, slots=8):
    q = m.queue(QueueKind.AQL, ring_size=64 * slots)
    sigs = m.alloc(4096)
    return q, sigs


def make_kd(m, entry=0x100, props=0b1011, rsrc2=(4 << 1), lds=0, private=0, preload=0):
    kd = m.alloc(4096)
    raw = struct.pack("<III4xq20xIIIHH4x", lds, private, 16, entry, 0x5, 0x00AC0040, rsrc2, props,
                      preload)
    m.mem.write(kd, raw)
    return kd


def signal(m, sigs, i, value=1, mailbox=0, event_id=0):
    s = sigs + 64 * i
    m.mem.write(s, struct.pack("<qqQI", 1, value, mailbox, event_id))
    return s


def dispatch_packet(kd, kernarg, sig=0, grid=(256, 1, 1), wg=(64, 1, 1), private=0, group=0):
    return aql.build("KERNEL_DISPATCH", dimensions=1, workgroup_size_x=wg[0], workgroup_size_y=wg[1],
                     workgroup_size_z=wg[2], grid_size_x=grid[0], grid_size_y=grid[1], grid_size_z=grid[2],
                     private_segment_size=private, group_segment_size=group, kernel_object=kd,
                     kernarg_address=kernarg, completion_signal=sig, barrier=1, acquire_fence_scope=2,
                     release_fence_scope=2)


def test_aql_kernel_dispatch_and_completion(m):
    pytest.importorskip("kfdtrace.emu.isa.launch")
    q, sigs = aql_setup(m)
    kd = make_kd(m, private=32, lds=1024)
    args = m.alloc(4096)
    s = signal(m, sigs, 0, value=1)
    q.put(dispatch_packet(kd, args, s, grid=(1000, 3, 1), wg=(64, 3, 1), private=16, group=512))
    (info,) = m.shader.infos
    assert info.code_address == kd + 0x100 and info.kernel_descriptor_address == kd
    assert (info.rsrc1, info.rsrc2, info.rsrc3) == (0x00AC0040, 4 << 1, 0x5)
    assert info.grid_size == (1000, 3, 1) and info.grid_workgroups == (16, 1, 1)
    assert info.workgroup_size == (64, 3, 1) and info.kernarg_address == args
    assert info.lds_size == 1024 and info.scratch_size == 32 and not info.wave32
    assert info.dispatch_ptr == q.ctx.ring_base and info.queue_ptr == q.ctx.rptr_addr - 128
    assert info.extra["dispatch_id"] == 0
    sg = info.user_sgprs                      # dispatch_ptr (bit 1) then kernarg ptr (bit 3)
    assert len(sg) == 8 and sg[4:6] == [q.ctx.ring_base & 0xFFFFFFFF, q.ctx.ring_base >> 32]
    assert sg[6:8] == [args & 0xFFFFFFFF, args >> 32]
    assert struct.unpack("<3I", m.mem.read(args, 12)) == (1000, 3, 1)
    assert m.u64(s + 8) == 0                   # completion signal decremented
    assert m.mem.read(q.ctx.ring_base, 2) == b"\x01\x00" and q.rptr == 1


def test_aql_kernarg_preload_and_queue_pointers(m):
    pytest.importorskip("kfdtrace.emu.isa.launch")
    q, _ = aql_setup(m)
    amd_queue = q.ctx.rptr_addr - 128
    m.mem.write(amd_queue + 144, struct.pack("<4IQ", 0xA, 0xB, 0xC, 0xD, 0x5000_0000))
    args = m.alloc(4096)
    m.mem.write(args, struct.pack("<6I", 10, 11, 12, 13, 14, 15))
    # private segment buffer (bit 0) + queue ptr (bit 2) + kernarg ptr (bit 3); preload 3 dwords
    # starting at kernarg dword 2
    kd = make_kd(m, props=0b1101, rsrc2=11 << 1, preload=3 | (2 << 7))
    q.put(dispatch_packet(kd, args))
    info = m.shader.infos[-1]
    sg = info.user_sgprs
    assert sg[:4] == [0xA, 0xB, 0xC, 0xD]                       # amd_queue_t scratch SRD
    assert sg[4:6] == [amd_queue & 0xFFFFFFFF, amd_queue >> 32]
    assert sg[6:8] == [args & 0xFFFFFFFF, args >> 32]
    assert sg[8:11] == [12, 13, 14] and info.extra["kernarg_preload"] == [12, 13, 14]
    assert info.scratch_base == 0x5000_0000 and info.queue_ptr == amd_queue


def test_aql_profiling_mailbox_and_interrupt(m):
    q, sigs = aql_setup(m)
    amd_queue = q.ctx.rptr_addr - 128
    m.mem.write_u32(amd_queue + 180, 1 << 3)        # AMD_QUEUE_PROPERTIES_ENABLE_PROFILING
    mailbox = m.alloc(4096)
    m.mem.write_u64(mailbox + 8 * 3, M64)
    s = signal(m, sigs, 1, value=5, mailbox=mailbox + 8 * 3, event_id=3)
    m.sched.clock = 10_000
    q.put(aql.build("BARRIER_AND", completion_signal=s))        # no deps: completes at once
    assert m.u64(s + 8) == 4 and q.ctx.interrupts == [3]
    assert m.u32(mailbox + 24) == 3
    start, end = m.u64(s + 32), m.u64(s + 40)
    assert start == 10_000 and end > start


def test_aql_barrier_and_or(m):
    q, sigs = aql_setup(m)
    a, b, done, done2 = (signal(m, sigs, i) for i in range(4))
    q.put(aql.build("BARRIER_AND", dep_signal=[a, 0, b], completion_signal=done))
    w = m.sched.blocked()[0]
    assert (w.packet, w.address, w.value, w.last) == ("AQL BARRIER_AND", a + 8, 0, 1)
    assert "2 not yet 0" in str(w) and m.u64(done + 8) == 1 and q.rptr == 0
    m.mem.write_u64(a + 8, 0)
    m.sched.run()
    assert m.sched.blocked()[0].address == b + 8 and m.u64(done + 8) == 1
    m.mem.write_u64(b + 8, 0)
    m.sched.run()
    assert m.u64(done + 8) == 0 and q.rptr == 1
    c, d = signal(m, sigs, 4), signal(m, sigs, 5)
    q.put(aql.build("BARRIER_OR", dep_signal=[c, d], completion_signal=done2))
    assert m.u64(done2 + 8) == 1
    m.mem.write_u64(d + 8, 0)
    m.sched.run()
    assert m.u64(done2 + 8) == 0 and q.rptr == 2


def test_aql_barrier_value(m):
    q, sigs = aql_setup(m)
    s, done = signal(m, sigs, 0, value=10), signal(m, sigs, 1)
    q.put(aql.build("BARRIER_VALUE", signal=s, value=3, mask=-1, cond=2, completion_signal=done))  # LT
    w = m.sched.blocked()[0]
    assert (w.address, w.value, w.last, w.func) == (s + 8, 3, 10, "<")
    m.mem.write_u64(s + 8, (-1) & M64)                # signed: -1 < 3
    m.sched.run()
    assert m.u64(done + 8) == 0 and q.rptr == 1


def test_aql_pm4_ib_runs_through_pm4_machinery(m):
    q, sigs = aql_setup(m)
    buf, ib = m.alloc(4096), m.alloc(4096)
    words = pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=buf, data=[0x11, 0x22]) + \
        pm4.build("RELEASE_MEM", "gfx942", event_type=0x14, event_index=5, data_sel=1, int_sel=2,
                  addr=buf + 8, data=0x33, int_ctxid=7)
    m.mem.write(ib, struct.pack(f"<{len(words)}I", *words))
    done = signal(m, sigs, 0)
    q.put(aql.build("PM4_IB", ib_addr=ib, ib_size=len(words), completion_signal=done), run=False)
    assert q.eng.step() is Step.RAN and q.rptr == 0            # IB entered
    assert q.eng.step() is Step.RAN and m.u32(buf + 4) == 0x22 and m.u64(done + 8) == 1
    assert q.eng.step() is Step.RAN and m.u32(buf + 8) == 0x33 and q.ctx.interrupts == [7]
    assert m.u64(done + 8) == 0 and q.rptr == 1
    # a fault inside the IB names the PM4 packet and stops the queue, rptr on the AQL packet
    words = pm4.build("WAIT_REG_MEM", "gfx942", function=3, mem_space=1, poll_addr=buf + 12,
                      reference=1, mask=1) + [pm4.header(0xEE, 0), 0]
    m.mem.write(ib, struct.pack(f"<{len(words)}I", *words))
    q.put(aql.build("PM4_IB", ib_addr=ib, ib_size=len(words)))
    w = m.sched.blocked()[0]
    assert w.kind == "AQL" and w.packet == "PM4 WAIT_REG_MEM" and w.address == buf + 12
    m.mem.write_u32(buf + 12, 1)
    m.sched.run()
    assert q.eng.stopped and q.rptr == 1
    assert "unknown PM4 opcode 0xee" in q.ctx.faults[0][2] and "PM4_IB" in q.ctx.faults[0][2]


def test_aql_unpublished_slot_blocks(m):
    q, sigs = aql_setup(m, slots=4)
    done = signal(m, sigs, 0)
    m.mem.write_u64(q.ctx.wptr_addr, 1)                       # reserved, header still INVALID
    m.mem.write(q.ctx.ring_base, struct.pack("<H", 1))
    assert m.sched.run() is False
    w = m.sched.blocked()[0]
    assert w.address == q.ctx.ring_base and w.last == 1 and "not yet published" in str(w)
    q.put(aql.build("BARRIER_AND", completion_signal=done))   # now publish slot 0
    assert m.u64(done + 8) == 0 and q.rptr == 1


def test_aql_reserved_indices_beyond_the_ring_are_not_an_error(m):
    q, sigs = aql_setup(m, slots=4)
    done = signal(m, sigs, 0, value=2)
    q.put(aql.build("BARRIER_AND", completion_signal=done))
    m.mem.write_u64(q.ctx.wptr_addr, 1 + 6)        # six more indices reserved, none published yet
    assert m.sched.run() is False and not q.ctx.faults and q.rptr == 1
    q.wptr = 1
    q.put(aql.build("BARRIER_AND", completion_signal=done), run=False)
    m.mem.write_u64(q.ctx.wptr_addr, 1 + 6)
    m.sched.run()
    assert m.u64(done + 8) == 0 and q.rptr == 2 and "not yet published" in str(m.sched.blocked()[0])
    m.mem.write_u64(q.ctx.wptr_addr, 1)             # behind the read index: a producer bug
    m.sched.run()
    assert "behind the read index" in q.ctx.faults[0][2]


def test_aql_ring_wrap_slots(m):
    q, sigs = aql_setup(m, slots=4)
    done = signal(m, sigs, 0, value=10)
    for i in range(10):
        q.put(aql.build("BARRIER_AND", completion_signal=done))
    assert m.u64(done + 8) == 0 and q.rptr == 10                # index, not slot
    assert all(m.mem.read(q.ctx.ring_base + 64 * s, 1) == b"\x01" for s in range(4))


def test_aql_unsupported_packets_fault(m):
    q, _ = aql_setup(m)
    q.put(aql.build("AGENT_DISPATCH", dispatch_type=1))
    assert q.eng.stopped and "AGENT_DISPATCH" in q.ctx.faults[0][2] and q.rptr == 0
    q2, _ = aql_setup(m)
    kd = make_kd(m, props=1 << 10)                             # a wave32 kernel on gfx942
    q2.put(dispatch_packet(kd, 0))
    assert "wave64 only" in q2.ctx.faults[0][2]


def test_aql_kernel_descriptor_page_fault(m):
    q, _ = aql_setup(m)
    q.put(dispatch_packet(0x10, 0))
    assert q.ctx.faults[0][0] == 0x10 and q.ctx.faults[0][1] is False and q.eng.stopped


# ------------------------------------------------------------------------------------------------
# scheduler
# ------------------------------------------------------------------------------------------------
def interleave_program(m, nq=2, n=12, seed=None):
    """Each queue i: n × (FENCE shared ← i+1, COPY shared → log_i[k]): the log shows who wrote
    last before each copy, i.e. the interleaving."""
    shared, logs = m.alloc(4096), m.alloc(4096)
    qs = [m.queue(QueueKind.SDMA, qid=10 + i) for i in range(nq)]
    for i, q in enumerate(qs):
        pk = []
        for k in range(n):
            pk += [sdma.build("FENCE", "gfx942", addr=shared, data=i + 1),
                   sdma.build("COPY_LINEAR", "gfx942", byte_count=4, src_addr=shared,
                              dst_addr=logs + 4 * (i * n + k))]
        q.put(*pk, run=False)
    return qs, logs


def test_round_robin_order_and_trace(m):
    qs, logs = interleave_program(m, n=3)
    m.sched.trace = []
    assert m.sched.run() is False
    assert [t[0] for t in m.sched.trace] == [10, 11] * 6
    # one packet per queue per turn: every copy sees the *other* queue's fence
    assert struct.unpack("<6I", m.mem.read(logs, 24)) == (2, 2, 2, 2, 2, 2)


def seeded_run(seed):
    m = Machine("gfx942", seed=seed)
    qs, logs = interleave_program(m)
    m.sched.trace = []
    m.sched.run()
    return m.sched.trace, m.mem.read(logs, 4 * 24)


def test_seeded_schedule_is_deterministic_and_seed_dependent():
    t1, log1 = seeded_run(1)
    t1b, log1b = seeded_run(1)
    t2, log2 = seeded_run(2)
    assert t1 == t1b and log1 == log1b
    assert t1 != t2 and log1 != log2
    assert sorted(t1) == sorted(t2)              # the same packets, another order


def test_run_until_and_max_steps(m):
    q = m.queue(QueueKind.SDMA)
    buf = m.alloc(4096)
    q.put(*[sdma.build("FENCE", "gfx942", addr=buf + 4 * i, data=1) for i in range(10)], run=False)
    assert m.sched.run(until=lambda: m.u32(buf + 12) == 1) is True
    assert m.u32(buf + 12) == 1 and m.u32(buf + 16) == 0
    assert m.sched.run(until=lambda: m.u32(buf) == 1) is True      # already true: no step
    assert m.u32(buf + 16) == 0
    assert m.sched.run(max_steps=2) is False and m.u32(buf + 20) == 1 and m.u32(buf + 24) == 0
    assert m.sched.run(until=lambda: False) is False and m.u32(buf + 36) == 1
    assert m.sched.packets == 10


def test_blocked_engine_retried_after_progress_elsewhere(m):
    a, b = m.queue(QueueKind.SDMA, qid=1), m.queue(QueueKind.PM4, qid=2)
    flag, out = m.alloc(4096), m.alloc(4096)
    a.put(sdma.build("POLL_REGMEM", "gfx942", func=3, mem_poll=1, addr=flag, value=7, mask=M64 >> 32),
          sdma.build("FENCE", "gfx942", addr=out, data=1), run=False)
    b.put(pm4.build("NOP", "gfx942", count=5), pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=flag, data=[7]),
          run=False)
    assert m.sched.run() is False
    assert m.u32(out) == 1 and m.sched.blocked() == []


def test_blocked_report_lists_every_waiter_and_clock(m):
    a, b = m.queue(QueueKind.SDMA, qid=1), m.queue(QueueKind.PM4, qid=2)
    f1, f2 = m.alloc(4096), m.alloc(4096)
    m.mem.write_u32(f2, 3)
    a.put(sdma.build("POLL_REGMEM", "gfx942", func=3, mem_poll=1, addr=f1, value=1, mask=1))
    b.put(pm4.build("WAIT_REG_MEM", "gfx942", function=6, mem_space=1, poll_addr=f2, reference=10,
                    mask=0xFFFFFFFF))
    ws = m.sched.blocked()
    assert [(w.queue, w.packet, w.address, w.value, w.last) for w in ws] == [
        (1, "SDMA POLL_REGMEM", f1, 1, 0), (2, "PM4 WAIT_REG_MEM", f2, 10, 3)]
    assert ws[0].packet_address == a.ctx.ring_base and "> 0xa" in str(ws[1])
    assert m.sched.describe_blocked().count("\n") == 1
    before = m.sched.clock
    assert m.sched.run() is False and m.sched.clock == before       # no progress, no time


def test_scheduler_remove_stop_suspend_and_rebind(m):
    q = m.queue(QueueKind.SDMA)
    buf = m.alloc(4096)
    q.eng.suspended = True
    q.put(sdma.build("FENCE", "gfx942", addr=buf, data=1))
    assert m.u32(buf) == 0
    q.eng.suspended = False
    m.sched.run()
    assert m.u32(buf) == 1
    other = m.alloc(4096)                        # address space changes: views are re-taken
    q.put(sdma.build("FENCE", "gfx942", addr=other, data=2))
    assert m.u32(other) == 2
    m.free(other)                                # the BO is gone: the next access faults
    q.put(sdma.build("FENCE", "gfx942", addr=other, data=3))
    assert q.ctx.faults and q.ctx.faults[0][0] == other
    q2 = m.queue(QueueKind.SDMA)
    q2.eng.stop()
    m.sched.remove(q2.eng)
    m.sched.remove(q2.eng)                       # unknown: ignored
    assert q2.eng not in m.sched.engines and q2.eng.step() is Step.STOPPED


def test_ring_buffer_unmapped_faults_on_first_step(m):
    q = m.queue(QueueKind.PM4)
    m.free(q.ctx.ring_base)
    m.mem.write_u64(q.ctx.wptr_addr, 4)
    m.sched.run()
    assert q.eng.stopped and q.ctx.faults[0][0] == q.ctx.ring_base


def test_make_engine_kinds(m):
    for kind, cls in ((QueueKind.SDMA, "SdmaEngine"), (QueueKind.PM4, "Pm4Engine"),
                      (QueueKind.AQL, "AqlEngine")):
        assert type(m.queue(kind, add=False).eng).__name__ == cls


# ------------------------------------------------------------------------------------------------
# property: any packet stream, any ring size, any publication points
# ------------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from([QueueKind.SDMA, QueueKind.PM4]), ring_log2=st.integers(7, 9),
       ops=st.lists(st.tuples(st.booleans(), st.integers(0, 12)), min_size=1, max_size=50),
       cuts=st.lists(st.integers(1, 40), min_size=1, max_size=30))
def test_stream_survives_wrap_straddle_and_partial_publication(kind, ring_log2, ops, cuts):
    """Packets straddling the ring end, wptr published mid-packet, many trips around the ring:
    every write lands, in order, and the read pointer ends at the write pointer."""
    m = Machine("gfx942")
    q = m.queue(kind, ring_size=1 << ring_log2)
    buf = m.alloc(4096)
    stream, expect, off = [], [], 0
    for is_write, k in ops:
        if is_write:
            data = list(range(off + 1, off + k + 2))
            stream += (sdma.build("WRITE_UNTILED", "gfx942", dst_addr=buf + 4 * off, data=data)
                       if kind is QueueKind.SDMA else
                       pm4.build("WRITE_DATA", "gfx942", dst_sel=5, dst_addr=buf + 4 * off, data=data))
            expect += data
            off += k + 1
        else:
            stream += (sdma.build("NOP", "gfx942", count=k) if kind is QueueKind.SDMA else
                       [pm4.FILLER] if k == 0 else pm4.build("NOP", "gfx942", count=k - 1))
    ring_dw, unit = (1 << ring_log2) // 4, q.unit
    pos, i = 0, 0                                   # dwords produced
    while pos < len(stream):
        n = cuts[i % len(cuts)]
        i += 1
        free = ring_dw - (pos - q.rptr * unit // 4)
        n = min(n, free, len(stream) - pos)
        for dw in stream[pos:pos + n]:
            m.mem.write_u32(q.ctx.ring_base + (pos % ring_dw) * 4, dw)
            pos += 1
        m.mem.write_u64(q.ctx.wptr_addr, pos * 4 // unit)
        m.sched.run()
    assert not q.ctx.faults
    assert [m.u32(buf + 4 * j) for j in range(len(expect))] == expect
    assert q.rptr == len(stream) * 4 // unit and m.sched.blocked() == []
