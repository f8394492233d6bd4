"""User-mode queues: ring management, doorbells, and the packets each engine is driven with.

All three kinds share one ring writer: the position arithmetic differs only in the pointer unit
(PM4: dwords, SDMA: bytes, AQL: 64-byte packets; KFD §1.7) and in how the tail is padded before a
wrap (PM4: a NOP packet, SDMA: zero dwords which are 1-dword NOPs, AQL: never needed). Packets are
built from the declarative tables in `kfdtrace.packets`; nothing here spells out a bit layout.
"""
from __future__ import annotations

import contextlib
import ctypes
import operator
import struct
import time
from collections import deque

import numpy as np

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError, WaitTimeout
from kfdtrace.packets import aql, pm4, sdma

#: how long the driver waits for ring space (seconds) before reporting the queue as stuck
RING_TIMEOUT = 10.0

VGT_CACHE_FLUSH_AND_INV_TS_EVENT = 0x14   # §3.3 event type used by the kernel's fence idiom
EVENT_INDEX_EOP = 5
FUNC_GE = 5                                # WAIT_REG_MEM / POLL_REGMEM function ">="
AQL_HEADER_INVALID = 1


def acquire_fields(family) -> dict:
    """ACQUIRE_MEM over the whole address space with the kernel's mem_sync idiom (§3.3):
    GFX9 COHER_CNTL = SH_ICACHE|SH_KCACHE|TC|TCL1|TC_WB; GFX10+ GCR_CNTL = 0xC3B1."""
    common = dict(coher_size=0x00FF_FFFF_FFFF_FFFF, coher_base=0, poll_interval=0xA)
    if family.gfx_major == 9:
        return dict(common, sh_icache_action_ena=1, sh_kcache_action_ena=1, tc_action_ena=1,
                    tcl1_action_ena=1, tc_wb_action_ena=1)
    return dict(common, gcr_gl2_inv=1, gcr_gl2_wb=1, gcr_glm_inv=1, gcr_glm_wb=1, gcr_gl1_inv=1,
                gcr_glv_inv=1, gcr_glk_inv=1, gcr_gli_inv=1)


def release_fields(family) -> dict:
    """RELEASE_MEM cache actions of the kernel's fence idiom: write back L2 before the data write."""
    if family.gfx_major == 9:
        return dict(tcl1_action_ena=1, tc_action_ena=1, tc_wb_action_ena=1, tc_md_action_ena=1)
    return dict(gcr_seq=1, gcr_gl2_wb=1, gcr_glm_inv=1, gcr_glm_wb=1)


def _u64(addr: int) -> int:
    return ctypes.c_uint64.from_address(addr).value


def _set_u64(addr: int, value: int) -> None:
    ctypes.c_uint64.from_address(addr).value = value & 0xFFFF_FFFF_FFFF_FFFF


def _addr(x, offset: int = 0, size: int = 4, what: str = "packet") -> int:
    """A GPU address from a Buffer or an int. For a Buffer, [offset, offset + size) must lie
    inside it and it must not be freed: the GPU would otherwise read or write whatever memory
    follows it (or now lives at its address) without any fault. Plain ints go through unchecked."""
    if hasattr(x, "address"):
        if getattr(x, "freed", False):
            raise KfdtraceError(f"{what}: {x!r} was freed")
        if hasattr(x, "size") and (offset < 0 or size < 0 or offset + size > x.size):
            raise KfdtraceError(f"{what}: bytes [{offset:#x}, {offset + size:#x}) are outside {x!r}")
        return x.address + offset
    return int(x) + offset


def _positive(size, what: str) -> int:
    """`size` as an int (numpy integers too) if it is a positive byte count, else a clear error."""
    try:
        n = None if isinstance(size, bool) else operator.index(size)
    except TypeError:
        n = None
    if n is None or n <= 0:
        raise KfdtraceError(f"{what} size must be a positive number of bytes, got {size!r}")
    return n


class Queue:
    """A KFD user-mode queue. Subclasses set `kind`, `unit`, `qtype` and the packet builders."""

    kind = "?"
    unit = 1            # bytes per pointer unit
    qtype: int = -1

    def __init__(self, device, ring_size: int, engine: int | None = None):
        if ring_size & (ring_size - 1) or ring_size < 1024:
            raise KfdtraceError(f"ring size must be a power of two ≥ 1024 bytes, got {ring_size}")
        self.device, self.family, self.port = device, device.family, device.port
        self.ring_size = ring_size
        self.cap = ring_size // self.unit
        self._owned = []
        try:
            self._create(device, ring_size, engine)
        except BaseException:            # CREATE_QUEUE refused, or an allocation failed: no leaks
            for b in self._owned:
                b._destroy()
            raise
        self.name = f"{self.kind}{len([q for q in device.queues if q.kind == self.kind])}"
        self.destroyed = False
        device.queues.append(self)

    def _create(self, device, ring_size: int, engine: int | None) -> None:
        self.ring = self._alloc(ring_size, "gtt")
        self.ptrs = self._alloc(4096, "gtt")
        self._init_pointers()
        self.wptr = 0                  # in units, monotonic
        self._batch = 0
        self._pending = False
        self.submits = 0
        qtype = self.qtype
        kw = {}
        if self.kind in ("pm4", "aql"):
            self.eop = self._alloc(4096, "vram")
            kw.update(eop_buffer_address=self.eop.address, eop_buffer_size=4096)
            props = device.node.properties
            cwsr, ctl = props.get("cwsr_size", 0), props.get("ctl_stack_size", 0)
            if cwsr:
                self.cwsr = self._alloc(cwsr, "gtt")
                kw.update(ctx_save_restore_address=self.cwsr.address, ctx_save_restore_size=cwsr,
                          ctl_stack_size=ctl)
        if self.kind == "sdma" and engine is not None:
            qtype = abi.QueueType.SDMA_BY_ENG_ID
            kw["sdma_engine_id"] = engine
        r = device.proc.ioctl("CREATE_QUEUE", ring_base_address=self.ring.address,
                              write_pointer_address=self.wptr_addr, read_pointer_address=self.rptr_addr,
                              ring_size=ring_size, gpu_id=device.gpu_id, queue_type=int(qtype),
                              queue_percentage=100, queue_priority=7, **kw)
        self.queue_id = r.queue_id
        self.doorbell_offset = r.doorbell_offset
        self.doorbell = device._doorbell_address(r.doorbell_offset)

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} id={self.queue_id} on {self.device.name}>"

    # -- memory helpers --------------------------------------------------------------------------
    def _alloc(self, size, where):
        b = self.device.alloc(size, where, _internal=True)
        self._owned.append(b)
        return b

    def _init_pointers(self):
        self.rptr_addr, self.wptr_addr = self.ptrs.address, self.ptrs.address + 64

    @property
    def rptr(self) -> int:
        return _u64(self.rptr_addr)

    # -- the ring writer ---------------------------------------------------------------------------
    def _pad(self, n: int) -> np.ndarray:
        """`n` units of padding that the engine skips (subclasses)."""
        raise NotImplementedError

    def _wait_space(self, need: int) -> None:
        deadline = None
        spins = 0
        while self.cap - (self.wptr - self.rptr) < need:
            if self._pending:
                self._ring_doorbell()
            if deadline is None:
                deadline = time.monotonic() + RING_TIMEOUT
            elif time.monotonic() > deadline:
                raise WaitTimeout(f"ring full for {RING_TIMEOUT:.0f}s: {self.describe_stall()}")
            spins += 1
            self._check_stopped(spins)
            if spins > 8:
                time.sleep(min(0.001, 1e-5 * spins))
            self.port.doorbell(self.doorbell, self.wptr)    # let the GPU (or emulator) go on

    def _emit(self, units: np.ndarray) -> int:
        """Copy packets (an array of whole units, as bytes/uint32/uint8) into the ring at wptr;
        returns the wptr before. Pads to the end of the ring first if they would straddle it."""
        data = np.frombuffer(units.tobytes(), np.uint8)
        n = len(data) // self.unit
        if n > self.cap:
            raise KfdtraceError(f"{self!r}: {n} units of packets do not fit a {self.cap}-unit ring")
        pos = self.wptr % self.cap
        if pos + n > self.cap:
            pad = self.cap - pos
            self._wait_space(pad + n)
            self._write_at(pos, self._pad(pad))
            self.wptr += pad
            pos = 0
        else:
            self._wait_space(n)
        before = self.wptr
        self._write_at(pos, data)
        self.wptr += n
        self._pending = True
        if not self._batch:
            self._ring_doorbell()
        return before

    def _write_at(self, pos: int, data: np.ndarray) -> None:
        raw = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
        self.ring.view(np.uint8, len(raw), pos * self.unit)[:] = raw

    def _ring_doorbell(self) -> None:
        _set_u64(self.wptr_addr, self.wptr)
        self._pending = False
        self.submits += 1
        self.port.doorbell(self.doorbell, self.wptr)

    @contextlib.contextmanager
    def batch(self):
        """Write several operations, then ring the doorbell once."""
        self._batch += 1
        try:
            yield self
        finally:
            self._batch -= 1
            if not self._batch and self._pending:
                self._ring_doorbell()

    def submit_dwords(self, dwords) -> None:
        """Submit raw packet dwords as they are (for tools and tests)."""
        self._emit(np.asarray(dwords, dtype=np.uint32))

    # -- diagnostics ------------------------------------------------------------------------------
    def _check_stopped(self, spins: int) -> None:
        """While waiting for the engine to move on: a queue the GPU stopped (a fault) never will,
        so say so now (GpuFault) instead of after the whole timeout."""
        if spins % 256 == 0:          # ~4 times a second once the spin has slowed to sleeps
            self.device.check_fault()

    def describe_stall(self) -> str:
        """Which packet this queue is on (decoded), and what memory it waits for."""
        r, w = self.rptr, self.wptr
        where = f"queue {self.name} (id {self.queue_id}, {self.device.name}) rptr={r} wptr={w}"
        if r >= w:
            return where + " (idle)"
        try:
            pkt = self._packet_at(r)
        except Exception as e:          # a diagnostic must never hide the real error
            return where + f" (packet at rptr undecodable: {e})"
        text = f"{where} stuck at {pkt.summary(self.family)}"
        for key in ("poll_addr", "addr", "signal"):
            a = pkt.fields.get(key)
            if isinstance(a, int) and a:
                cur = self._peek(a)
                if cur is not None:
                    text += f"; memory at {a:#x} now holds {cur:#x}"
                break
        return text

    def _peek(self, addr: int) -> int | None:
        for b in list(self.device.buffers) + self._all_internal():
            if b.address <= addr < b.address + b.size - 3 and not b.freed:
                return int(b.view(np.uint32, 1, addr - b.address)[0])
        return None

    def _all_internal(self):
        out = []
        for q in self.device.queues:
            out += q._owned
        out += self.device._signal_pools
        return out

    def _packet_at(self, ptr: int):
        raise NotImplementedError

    # -- lifetime ---------------------------------------------------------------------------------
    def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        try:
            self.device.proc.ioctl("DESTROY_QUEUE", queue_id=self.queue_id)
        finally:
            if self in self.device.queues:
                self.device.queues.remove(self)
            for b in self._owned:
                b._destroy()

    # -- shared helpers -----------------------------------------------------------------------------
    def _prepare(self, *buffers) -> None:
        """Make sure every Buffer this queue's GPU touches is mapped on it (peer access)."""
        for b in buffers:
            if hasattr(b, "map_to") and b.device is not self.device:
                b.map_to(self.device)


class SdmaQueue(Queue):
    """An SDMA engine queue: copies, fills, fences, timestamps, timeline signal/wait."""

    kind, unit, qtype = "sdma", 1, abi.QueueType.SDMA

    def __init__(self, device, ring_size: int, engine: int | None = None):
        super().__init__(device, ring_size, engine)
        self.max_copy = 1 << min(self.family.copy_linear_count_bits, 30)   # count = bytes - 1
        self.max_fill = 1 << min(self.family.const_fill_count_bits, 30)

    def _pad(self, n):
        return np.zeros(n, np.uint8)        # zero dwords are 1-dword SDMA NOPs

    def _packet_at(self, ptr):
        ring = self.ring.view(np.uint32)
        return sdma.decode_one(ring, (ptr % self.cap) // 4, self.family)

    def _emit_dw(self, dwords) -> int:
        return self._emit(np.asarray(dwords, dtype=np.uint32))

    def copy(self, dst, src, size: int, dst_offset: int = 0, src_offset: int = 0) -> None:
        """Copy `size` bytes from `src` to `dst` (Buffers, possibly on another GPU, or addresses)."""
        size = _positive(size, "SDMA copy")
        d, s = _addr(dst, dst_offset, size, "SDMA copy dst"), _addr(src, src_offset, size, "SDMA copy src")
        self._prepare(dst, src)
        out = []
        for off in range(0, size, self.max_copy):
            n = min(self.max_copy, size - off)
            out += sdma.build("COPY_LINEAR", self.family, count=n, src_addr=s + off, dst_addr=d + off)
        self._emit_dw(out)

    def fill(self, dst, value: int, size: int, offset: int = 0) -> None:
        """Fill `size` bytes (a multiple of 4) at `dst` with the 32-bit `value`."""
        size = _positive(size, "SDMA fill")
        if size % 4:
            raise KfdtraceError(f"SDMA fill size must be a multiple of 4 bytes, got {size}")
        d = _addr(dst, offset, size, "SDMA fill")
        self._prepare(dst)
        out = []
        for off in range(0, size, self.max_fill):
            n = min(self.max_fill, size - off)
            out += sdma.build("CONST_FILL", self.family, dst_addr=d + off, src_data=value & 0xFFFFFFFF,
                              count=n)
        self._emit_dw(out)

    def write(self, dst, values, offset: int = 0) -> None:
        """Write dwords inline from the ring (WRITE_UNTILED)."""
        data = [int(v) & 0xFFFFFFFF for v in values]
        d = _addr(dst, offset, 4 * len(data), "SDMA write")
        self._prepare(dst)
        self._emit_dw(sdma.build("WRITE_UNTILED", self.family, dst_addr=d, data=data))

    def fence(self, addr, value: int) -> None:
        a = _addr(addr, 0, 4, "SDMA fence")
        self._prepare(addr)
        self._emit_dw(sdma.build("FENCE", self.family, addr=a, data=value & 0xFFFFFFFF))

    def timestamp(self, addr) -> None:
        """Write the 64-bit GPU timestamp at `addr` (8-byte aligned)."""
        a = _addr(addr, 0, 8, "SDMA timestamp")
        self._prepare(addr)
        self._emit_dw(sdma.build("TIMESTAMP_GET_GLOBAL", self.family, write_addr=a))

    def signal(self, timeline, value: int) -> None:
        """Set `timeline` to `value` when everything before has completed, then interrupt."""
        self._prepare(timeline.buffer, self.device.proc.event_page)
        f = self.family
        a = timeline.value_addr
        self._emit_dw(
            sdma.build("FENCE", f, addr=a, data=value & 0xFFFFFFFF)
            + sdma.build("FENCE", f, addr=a + 4, data=(value >> 32) & 0xFFFFFFFF)
            + sdma.build("FENCE", f, addr=timeline.mailbox, data=timeline.event_id)
            + sdma.build("TRAP", f, int_context=timeline.event_id))
        timeline._signalled_by(self, value)

    def wait(self, timeline, value: int) -> None:
        """Stall this queue until `timeline` ≥ `value` (low 32 bits compared, as POLL_REGMEM does)."""
        self._prepare(timeline.buffer)
        self._emit_dw(sdma.build("POLL_REGMEM", self.family, mem_poll=1, func=FUNC_GE,
                                 addr=timeline.value_addr, value=value & 0xFFFFFFFF, mask=0xFFFFFFFF,
                                 interval=10, retry_count=0xFFF))


class _ComputeMixin:
    """Kernel-argument memory and scratch shared by the PM4 and AQL compute queues."""

    KERNARG_SIZE = 256 << 10

    def _init_kernargs(self):
        self.kernargs = self._alloc(self.KERNARG_SIZE, "gtt")
        self.scratch = None
        self._ka_off = 0
        self._ka_live: deque[tuple[int, int, int]] = deque()  # (start, end, wptr after the dispatch)

    def _scratch(self, size: int) -> int:
        """Scratch (private segment) backing for this queue's dispatches, grown on demand. A
        larger buffer is only swapped in once the queue is idle (dispatches in flight use the old)."""
        if self.scratch is None or self.scratch.size < size:
            if self.scratch is not None:
                if self._pending:
                    self._ring_doorbell()
                self._wait_rptr(self.wptr)
                self._owned.remove(self.scratch)
                self.scratch._destroy()
            self.scratch = self._alloc(size, "vram")
        return self.scratch.address

    def _kernarg(self, data: bytes) -> int:
        """Place kernel arguments in the kernarg ring; wait for dispatches still reading a region
        before reusing it."""
        size = (len(data) + 63) & ~63
        if size > self.KERNARG_SIZE:
            raise KfdtraceError(f"kernel arguments of {len(data)} bytes exceed {self.KERNARG_SIZE}")
        if self._ka_off + size > self.KERNARG_SIZE:
            self._ka_off = 0
        start, end = self._ka_off, self._ka_off + size
        busy = [w for s, e, w in self._ka_live if s < end and start < e]
        if busy and max(busy) > self.rptr:
            if self._pending:
                self._ring_doorbell()
            self._wait_rptr(max(busy))
        rptr = self.rptr
        while self._ka_live and (self._ka_live[0][2] <= rptr
                                 or (self._ka_live[0][0] < end and start < self._ka_live[0][1])):
            self._ka_live.popleft()
        self.kernargs.write(data, start)
        self._ka_off = end
        return self.kernargs.address + start

    def _wait_rptr(self, target: int) -> None:
        deadline = time.monotonic() + RING_TIMEOUT
        spins = 0
        while self.rptr < target:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"kernel arguments still in use after {RING_TIMEOUT:.0f}s: "
                                  f"{self.describe_stall()}")
            spins += 1
            self._check_stopped(spins)
            if spins > 8:
                time.sleep(min(0.001, 1e-5 * spins))
            self.port.doorbell(self.doorbell, self.wptr)

    def _retire_kernarg(self, addr: int, size: int) -> None:
        start = addr - self.kernargs.address
        self._ka_live.append((start, start + ((size + 63) & ~63), self.wptr))


class Pm4Queue(_ComputeMixin, Queue):
    """A compute queue driven with PM4 packets (KFD_IOC_QUEUE_TYPE_COMPUTE)."""

    kind, unit, qtype = "pm4", 4, abi.QueueType.COMPUTE

    def __init__(self, device, ring_size: int):
        super().__init__(device, ring_size)
        self._init_kernargs()

    def _pad(self, n):
        if n == 1:
            return np.array(pm4.build("FILLER"), np.uint32)
        return np.array(pm4.build("NOP", count=n - 2, body=[0] * (n - 1)), np.uint32)

    def _packet_at(self, ptr):
        return pm4.decode_one(self.ring.view(np.uint32), ptr % self.cap, self.family)

    def _emit_dw(self, dwords) -> int:
        return self._emit(np.asarray(dwords, dtype=np.uint32))

    def _sh(self, reg: str, *values: int) -> list[int]:
        return pm4.build("SET_SH_REG", self.family, reg=reg, values=[v & 0xFFFFFFFF for v in values])

    def barrier(self) -> list[int]:
        """Cache invalidate/writeback before reading memory others wrote (ACQUIRE_MEM)."""
        return pm4.build("ACQUIRE_MEM", self.family, **acquire_fields(self.family))

    def dispatch(self, kernel, grid, block, args=(), **named) -> None:
        """Run `kernel` (a Program kernel) over `grid` workgroups of `block` work-items."""
        from kfdtrace.driver.program import dispatch_setup

        setup = dispatch_setup(self, kernel, grid, block, args, named)
        f = self.family
        pkts = self.barrier()
        pkts += self._sh("COMPUTE_PGM_LO", kernel.code_address >> 8, kernel.code_address >> 40)
        pkts += self._sh("COMPUTE_PGM_RSRC1", setup.rsrc1, setup.rsrc2)
        pkts += pm4.build("SET_SH_REG", f, reg="COMPUTE_PGM_RSRC3", values=[setup.rsrc3])
        pkts += self._sh("COMPUTE_TMPRING_SIZE", setup.tmpring)
        if setup.scratch_base:
            pkts += self._sh("COMPUTE_DISPATCH_SCRATCH_BASE_LO", setup.scratch_base >> 8,
                             setup.scratch_base >> 40)
        pkts += self._sh("COMPUTE_START_X", 0, 0, 0)
        pkts += self._sh("COMPUTE_NUM_THREAD_X", *setup.block)
        pkts += self._sh("COMPUTE_RESOURCE_LIMITS", 0)
        if setup.user_sgprs:
            pkts += self._sh("COMPUTE_USER_DATA_0", *setup.user_sgprs)
        initiator = 1 | (1 << 2)                                     # COMPUTE_SHADER_EN | FORCE_START_AT_000
        if setup.wave32:
            initiator |= 1 << 15                                     # CS_W32_EN
        pkts += pm4.build("DISPATCH_DIRECT", f, dim_x=setup.grid[0], dim_y=setup.grid[1],
                          dim_z=setup.grid[2], dispatch_initiator=initiator)
        self._emit_dw(pkts)
        self._retire_kernarg(*setup.region)

    def _release(self, addr: int, value: int, ctxid: int = 0, interrupt: bool = False) -> list[int]:
        return pm4.build("RELEASE_MEM", self.family, event_type=VGT_CACHE_FLUSH_AND_INV_TS_EVENT,
                         event_index=EVENT_INDEX_EOP, data_sel=2, int_sel=2 if interrupt else 0,
                         dst_sel=0, addr=addr, data=value, int_ctxid=ctxid,
                         **release_fields(self.family))

    def signal(self, timeline, value: int) -> None:
        self._prepare(timeline.buffer, self.device.proc.event_page)
        self._emit_dw(self._release(timeline.value_addr, value)
                      + pm4.build("RELEASE_MEM", self.family, event_type=VGT_CACHE_FLUSH_AND_INV_TS_EVENT,
                                  event_index=EVENT_INDEX_EOP, data_sel=1, int_sel=2, dst_sel=0,
                                  addr=timeline.mailbox, data=timeline.event_id,
                                  int_ctxid=timeline.event_id))
        timeline._signalled_by(self, value)

    def wait(self, timeline, value: int) -> None:
        self._prepare(timeline.buffer)
        self._emit_dw(pm4.build("WAIT_REG_MEM", self.family, function=FUNC_GE, mem_space=1,
                                poll_addr=timeline.value_addr, reference=value & 0xFFFFFFFF,
                                mask=0xFFFFFFFF, poll_interval=4) + self.barrier())

    def write_data(self, dst, values, offset: int = 0) -> None:
        data = [int(v) & 0xFFFFFFFF for v in values]
        d = _addr(dst, offset, 4 * len(data), "WRITE_DATA")
        self._prepare(dst)
        self._emit_dw(pm4.build("WRITE_DATA", self.family, dst_sel=5, wr_confirm=1, dst_addr=d, data=data))


class AqlQueue(_ComputeMixin, Queue):
    """A compute queue driven with AQL packets (KFD_IOC_QUEUE_TYPE_COMPUTE_AQL); pointers are
    amd_queue_t.read_dispatch_id/write_dispatch_id, as ROCr passes them (§5)."""

    kind, unit, qtype = "aql", 64, abi.QueueType.COMPUTE_AQL

    def __init__(self, device, ring_size: int):
        super().__init__(device, ring_size)
        self._init_kernargs()
        self.ibs = self._alloc(self.cap * 128, "gtt")   # one 128-byte PM4 IB per ring slot
        ring = self.ring.view(np.uint16)
        ring[0::32] = AQL_HEADER_INVALID                 # every slot starts INVALID
        q = self.ptrs
        struct.pack_into("<IIQQIIQ", memoryview(q.view(np.uint8)), 0, 0, 0, self.ring.address, 0,
                         self.cap, 0, self.queue_id)
        struct.pack_into("<I", memoryview(q.view(np.uint8)), 136, 128)

    def _init_pointers(self):
        # amd_queue_t: write_dispatch_id @56, read_dispatch_id @128
        self.rptr_addr, self.wptr_addr = self.ptrs.address + 128, self.ptrs.address + 56

    def _pad(self, n):
        raise AssertionError("AQL packets never straddle the ring end")

    def _packet_at(self, ptr):
        return aql.decode_one(self.ring.view(np.uint8), (ptr % self.cap) * 64)

    def _publish(self, packet: bytes) -> int:
        """Write the body, then the header last (the CP treats the slot as valid once the header
        is not INVALID), then bump the write index and ring."""
        body = np.frombuffer(packet, np.uint8).copy()
        header = body[:4].copy()
        body[:4] = np.frombuffer(struct.pack("<HH", AQL_HEADER_INVALID, 0), np.uint8)
        before = self._emit(body)
        slot = self.ring.view(np.uint8, 4, (before % self.cap) * 64)
        slot[:] = header
        return before

    def _emit(self, units):
        # publish is two-phase for AQL; the doorbell must come after the header store
        self._batch += 1
        try:
            before = super()._emit(units)
        finally:
            self._batch -= 1
        return before

    def _commit(self):
        if not self._batch and self._pending:
            self._ring_doorbell()

    def _pm4_ib(self, dwords: list[int]) -> bytes:
        """A vendor-specific AMD_AQL_FORMAT_PM4_IB packet running `dwords` from this slot's IB."""
        slot = self.wptr % self.cap
        if len(dwords) > 32:
            raise KfdtraceError("PM4 IB for one AQL slot is limited to 32 dwords")
        self.ibs.view(np.uint32, len(dwords), slot * 128)[:] = dwords
        return aql.build("PM4_IB", ib_addr=self.ibs.address + slot * 128, ib_size=len(dwords))

    def dispatch(self, kernel, grid, block, args=(), completion_signal: int = 0, **named) -> None:
        from kfdtrace.driver.program import dispatch_setup

        setup = dispatch_setup(self, kernel, grid, block, args, named)
        pkt = aql.build("KERNEL_DISPATCH", barrier=1, acquire_fence_scope=2, release_fence_scope=2,
                        dimensions=3, workgroup_size_x=setup.block[0], workgroup_size_y=setup.block[1],
                        workgroup_size_z=setup.block[2],
                        grid_size_x=setup.grid[0] * setup.block[0], grid_size_y=setup.grid[1] * setup.block[1],
                        grid_size_z=setup.grid[2] * setup.block[2],
                        private_segment_size=kernel.private_segment_size,
                        group_segment_size=kernel.group_segment_size,
                        kernel_object=kernel.descriptor_address, kernarg_address=setup.kernarg_address,
                        completion_signal=completion_signal)
        self._publish(pkt)
        self._retire_kernarg(*setup.region)
        self._commit()

    def signal(self, timeline, value: int) -> None:
        self._prepare(timeline.buffer, self.device.proc.event_page)
        f = self.family
        ib = pm4.build("RELEASE_MEM", f, event_type=VGT_CACHE_FLUSH_AND_INV_TS_EVENT,
                       event_index=EVENT_INDEX_EOP, data_sel=2, int_sel=0, dst_sel=0,
                       addr=timeline.value_addr, data=value, int_ctxid=0,
                       **release_fields(f))
        ib += pm4.build("RELEASE_MEM", f, event_type=VGT_CACHE_FLUSH_AND_INV_TS_EVENT,
                        event_index=EVENT_INDEX_EOP, data_sel=1, int_sel=2, dst_sel=0,
                        addr=timeline.mailbox, data=timeline.event_id, int_ctxid=timeline.event_id)
        self._publish(self._pm4_ib(ib))
        self._commit()
        timeline._signalled_by(self, value)

    def wait(self, timeline, value: int) -> None:
        self._prepare(timeline.buffer)
        ib = pm4.build("WAIT_REG_MEM", self.family, function=FUNC_GE, mem_space=1,
                       poll_addr=timeline.value_addr, reference=value & 0xFFFFFFFF,
                       mask=0xFFFFFFFF, poll_interval=4)
        self._publish(self._pm4_ib(ib))
        self._commit()
