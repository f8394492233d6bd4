"""The AQL packet processor: executes an HSA (AQL) queue the way the CP firmware does for ROCr
(reference §5).

Ring and pointers: 64-byte slots; the read/write pointers are 64-bit packet indices
(amd_queue_t.read_dispatch_id / write_dispatch_id), slot = index mod (ring_size / 64). A slot whose
header type is INVALID at rptr < wptr has been reserved but not yet published by its producer:
the queue waits (BLOCKED). Packets are parsed by `kfdtrace.packets.aql`; the barrier bit and the
acquire/release fence scopes are logical no-ops (execution is in order, memory is coherent).

  KERNEL_DISPATCH   reads the 64-byte kernel descriptor at kernel_object, builds a DispatchInfo
                    (code = descriptor + entry offset; wave32 from kernel_code_properties bit 10;
                    user SGPRs via kfdtrace.emu.isa.launch.aql_user_sgprs, the CP firmware's job)
                    and runs it on ctx.shader
  BARRIER_AND / OR  waits until all (AND) / any (OR) non-null dependency signals are 0
  BARRIER_VALUE     waits until (signal value & mask) COND value (EQ, NE, LT, GTE; signed)
  PM4_IB (vendor)   runs the embedded INDIRECT_BUFFER on the PM4 command processor of this
                    queue (the same code as PM4 queues), one PM4 packet per step
  anything else     (AGENT_DISPATCH, unknown types/formats) a GPU fault naming the packet

Completion, in the CP's order: the slot header is reset to INVALID and read_dispatch_id advances
(the producer may reuse the slot), then the completion signal (if any): profiling start/end
timestamps when the queue has AMD_QUEUE_PROPERTIES_ENABLE_PROFILING, an atomic decrement of its
value, and when event_mailbox_ptr is set, event_id is written to the mailbox and an interrupt
with that id raised.
"""
from __future__ import annotations

import numpy as np

from kfdtrace.codeobj import KD_SIZE, KernelDescriptor
from kfdtrace.emu.base import DispatchInfo, GpuPageFault, QueueKind
from kfdtrace.emu.engines.core import (BLOCKED, IDLE, M64, PACKET_TICKS, RAN, WORKGROUP_TICKS, Engine,
                                       run_dispatch)
from kfdtrace.emu.engines.pm4 import Pm4Engine
from kfdtrace.errors import CodeObjectError, GpuFault
from kfdtrace.packets import aql as _aql

# amd_signal_t (§5): value i64 @8, event_mailbox_ptr @16, event_id u32 @24, start_ts @32, end_ts @40
SIG_VALUE, SIG_MAILBOX, SIG_EVENT_ID, SIG_START_TS, SIG_END_TS = 8, 16, 24, 32, 40
# amd_queue_t (§5): read_dispatch_id @128 (ROCr passes its address as the KFD read pointer),
# read_dispatch_id_field_base_byte_offset u32 @136 (= 128: how the CP finds amd_queue_t),
# scratch_resource_descriptor u32[4] @144, scratch_backing_memory_location u64 @160,
# scratch_backing_memory_byte_size @168, queue_properties u32 @180 (ENABLE_PROFILING bit 3)
Q_READ_DISPATCH_ID, Q_SCRATCH_SRD, Q_SCRATCH_BASE, Q_SCRATCH_SIZE, Q_PROPERTIES = 128, 144, 160, 168, 180
PROFILING = 1 << 3
INVALID_HEADER = 1
_BV_CONDS = {0: ("==", lambda v, r: v == r), 1: ("!=", lambda v, r: v != r),
             2: ("<", lambda v, r: v < r), 3: (">=", lambda v, r: v >= r)}


def _i64(v: int) -> int:
    return v - (1 << 64) if v >> 63 else v


class AqlEngine(Engine):
    kind = QueueKind.AQL
    unit = 64

    def __init__(self, ctx):
        super().__init__(ctx)
        self.pm4 = Pm4Engine(ctx)          # runs PM4_IB vendor packets; keeps this queue's registers
        self._ring = None
        self._hdr = None                   # uint16 view of the ring (slot headers)
        self._slots = 0
        self.amd_queue = 0                 # VA of the amd_queue_t, 0 if the queue is not ROCr-shaped
        self._ib = None                    # (fields, slot VA, start clock) of a running PM4_IB packet

    def _bind_ring(self) -> None:
        ctx = self.ctx
        size = ctx.ring_size
        if size < 64 or size % 64:
            raise GpuFault(f"AQL queue {self.queue_id}: ring size {size} is not a whole number of "
                           "64-byte packets", address=ctx.ring_base)
        ring = self.mem.view(ctx.ring_base, size, write=True)
        self._ring = ring.view(np.uint32)
        self._hdr = ring.view(np.uint16)
        self._slots = size // 64
        self.pm4.rebind_frames()
        self.amd_queue = 0
        try:     # amd_queue_t: read_dispatch_id_field_base_byte_offset says where it starts
            off = self.mem.read_u32(ctx.rptr_addr + 8)
            if off == Q_READ_DISPATCH_ID:
                self.amd_queue = ctx.rptr_addr - off
        except GpuPageFault:
            pass

    def _step(self):
        if self._ib is not None:
            return self._step_pm4()
        wptr = int(self._wp[0])
        rptr = self.rptr
        if rptr == wptr:
            self._wait = None
            return IDLE
        if wptr < rptr:
            # (a write index more than a ring ahead is fine: ROCr producers reserve indices with
            # an atomic add on write_dispatch_id, then wait for space before writing the slot)
            raise GpuFault(f"write index {wptr} is behind the read index {rptr} (at "
                           f"{self.ctx.wptr_addr:#x}; AQL indices are monotonic)",
                           address=self.ctx.wptr_addr)
        slot = rptr % self._slots
        va = self.ctx.ring_base + slot * 64
        self.packet_va = va
        pkt = _aql.decode_one(self._ring[slot * 16:slot * 16 + 16], 0)
        name = self.last_packet = pkt.name
        f = pkt.fields
        start = self.ctx.clock()
        if name == "KERNEL_DISPATCH":
            self._dispatch(f, va, rptr)
        elif name in ("BARRIER_AND", "BARRIER_OR"):
            if not self._barrier_ready(name, f["dep_signal"]):
                return BLOCKED
        elif name == "BARRIER_VALUE":
            if not self._barrier_value_ready(f):
                return BLOCKED
        elif name == "PM4_IB" and not pkt.error:
            pm = self.pm4
            pm.packet_va = va
            if pm._indirect_buffer({"valid": f["valid"], "ib_size": f["ib_size"], "chain": 0,
                                    "ib_addr": f["ib_addr"]}, va, False) is not None:
                self._ib = (f, va, start)
                self._wait = None
                self.packets += 1
                return RAN
        elif name == "INVALID":
            return self._block("AQL slot not yet published (header INVALID)", va, INVALID_HEADER,
                               int(self._hdr[slot * 32]), 0xFF, "!=")
        else:
            what = pkt.error or (
                f"AQL vendor-specific packet with AMD format {f['amd_format']} is not supported (a "
                "zero header is not INVALID: producers must initialise slots to INVALID = 1)"
                if name == "VENDOR_SPECIFIC" else
                f"AQL {name} packets are not supported by the emulated packet processor")
            raise GpuFault(f"{what} (slot {slot} at {va:#x})", address=va)
        self._complete(f, va, start)
        self.packets += 1
        return RAN

    def _step_pm4(self):
        pm = self.pm4
        try:
            r = pm._step_ib()
        finally:
            self.busy += pm.busy
            pm.busy = 0
            self.last_packet = f"PM4_IB → {pm.last_packet}"
        if r is BLOCKED:
            self._wait = pm._wait._replace(kind=self.kind.name, queue=self.queue_id)
            return BLOCKED
        self.packets += 1
        self._wait = None
        if not pm._frames:                 # the IB returned: the AQL packet completes
            f, va, start = self._ib
            self._ib = None
            self.packet_va = va
            self._complete(f, va, start)
        return RAN

    # -- completion -----------------------------------------------------------------------------
    def _complete(self, f, va, start) -> None:
        slot = (va - self.ctx.ring_base) // 64
        self._hdr[slot * 32] = INVALID_HEADER
        self.rptr += 1
        self._rp[0] = self.rptr
        self._wait = None
        sig = f["completion_signal"]
        if sig:
            self.signal(sig, start, self.ctx.clock() + PACKET_TICKS + self.busy)

    def signal(self, sig: int, start: int, end: int) -> None:
        """Complete an amd_signal_t: timestamps (if profiling), value -= 1, mailbox + interrupt."""
        mem = self.mem
        if self.amd_queue and mem.read_u32(self.amd_queue + Q_PROPERTIES) & PROFILING:
            mem.write_u64(sig + SIG_START_TS, start)
            mem.write_u64(sig + SIG_END_TS, end)
        mem.write_u64(sig + SIG_VALUE, (mem.read_u64(sig + SIG_VALUE) - 1) & M64)
        mailbox = mem.read_u64(sig + SIG_MAILBOX)
        if mailbox:
            event_id = mem.read_u32(sig + SIG_EVENT_ID)
            mem.write_u32(mailbox, event_id)
            self.ctx.interrupt(event_id)

    # -- barriers -------------------------------------------------------------------------------
    def _barrier_ready(self, name: str, deps) -> bool:
        deps = [d for d in deps if d]
        if not deps:
            return True
        values = []
        for d in deps:
            v = _i64(self.mem.read_u64(d + SIG_VALUE))
            if v == 0 and name == "BARRIER_OR":
                return True
            values.append(v)
        if name == "BARRIER_AND" and all(v == 0 for v in values):
            return True
        i = next(i for i, v in enumerate(values) if v != 0)
        note = (f"{len(deps)} dependencies, {sum(v != 0 for v in values)} not yet 0"
                + (" (any one will do)" if name == "BARRIER_OR" else ""))
        self._block(f"AQL {name}", deps[i] + SIG_VALUE, 0, values[i] & M64, M64, "==", note)
        return False

    def _barrier_value_ready(self, f) -> bool:
        cond = _BV_CONDS.get(f["cond"])
        if cond is None:
            raise GpuFault(f"AQL BARRIER_VALUE at {self.packet_va:#x}: condition {f['cond']} is not "
                           "one of EQ 0, NE 1, LT 2, GTE 3", address=self.packet_va)
        addr = f["signal"] + SIG_VALUE
        v = _i64(self.mem.read_u64(addr))
        mask = f["mask"]
        if cond[1](v & mask, f["value"]):
            return True
        self._block("AQL BARRIER_VALUE", addr, f["value"] & M64, v & M64, mask & M64, cond[0])
        return False

    # -- kernel dispatch ------------------------------------------------------------------------
    def _dispatch(self, f, va, index) -> None:
        mem, fam = self.mem, self.family
        kd_va = f["kernel_object"]
        try:
            kd = KernelDescriptor.from_bytes(mem.read(kd_va, KD_SIZE))
        except CodeObjectError as e:      # pragma: no cover - read returns exactly 64 bytes
            raise GpuFault(f"AQL KERNEL_DISPATCH at {va:#x}: bad kernel descriptor at {kd_va:#x}: {e}",
                           address=kd_va) from None
        wg = (f["workgroup_size_x"], f["workgroup_size_y"], f["workgroup_size_z"])
        grid = (f["grid_size_x"], f["grid_size_y"], f["grid_size_z"])
        if 0 in wg:
            raise GpuFault(f"AQL KERNEL_DISPATCH at {va:#x}: workgroup size {wg} has a zero "
                           "dimension", address=va)
        wave32 = kd.wave32
        if wave32 and fam.gfx_major < 10:
            raise GpuFault(f"AQL KERNEL_DISPATCH at {va:#x}: the kernel at {kd_va:#x} is wave32 "
                           f"(kernel_code_properties bit 10) but {fam.name} runs wave64 only",
                           address=kd_va)
        if 0 in grid:
            return                         # an empty grid: nothing runs, the packet completes
        groups = tuple(-(-g // w) for g, w in zip(grid, wg))
        private = max(f["private_segment_size"], kd.private_segment_fixed_size)
        aq = self.amd_queue
        srd, scratch_base = [0, 0, 0, 0], 0
        if aq:
            srd = mem.view(aq + Q_SCRATCH_SRD, 16).view(np.uint32).tolist()
            scratch_base = mem.read_u64(aq + Q_SCRATCH_BASE)
        kernarg = f["kernarg_address"]
        pre = kd.kernarg_preload_fields()      # LENGTH / OFFSET in dwords of the kernarg segment
        n_pre = pre["kernarg_preload_spec_length"]
        preload = (mem.view(kernarg + 4 * pre["kernarg_preload_spec_offset"], 4 * n_pre)
                   .view(np.uint32).tolist() if n_pre else [])
        user = _user_sgprs(kd, fam, srd, va, aq, kernarg, index, scratch_base, private, preload)
        info = DispatchInfo(
            family=fam, code_address=kd_va + kd.kernel_code_entry_byte_offset,
            rsrc1=kd.compute_pgm_rsrc1, rsrc2=kd.compute_pgm_rsrc2, rsrc3=kd.compute_pgm_rsrc3,
            kernel_code_properties=kd.kernel_code_properties, grid_workgroups=groups,
            workgroup_size=wg, grid_size=grid, user_sgprs=user, wave32=wave32,
            lds_size=max(f["group_segment_size"], kd.group_segment_fixed_size),
            scratch_size=private, scratch_base=scratch_base, kernarg_address=kernarg,
            dispatch_ptr=va, queue_ptr=aq, kernel_descriptor_address=kd_va,
            extra={"dispatch_id": index, "dimensions": f["dimensions"], "queue_id": self.queue_id,
                   "kernarg_preload": preload})
        run_dispatch(self.ctx, info)
        self.busy += WORKGROUP_TICKS * groups[0] * groups[1] * groups[2]

    def _fault(self, va, write, message):
        if self._ib is not None:
            pm = self.pm4
            message += f" (PM4 {pm.last_packet} at {pm.packet_va:#x} in the IB of the PM4_IB packet)"
        return super()._fault(va, write, message)


def _user_sgprs(kd, fam, srd, dispatch_ptr, queue_ptr, kernarg, dispatch_id, scratch_base,
                private, preload) -> list[int]:
    """The CP firmware's part of a launch: the user SGPRs, in the ISA engineer's ABI order.
    Preloaded kernargs are passed as well (execution starts at the kernel entry, whose 256-byte
    compatibility preamble would load the same values itself)."""
    try:
        from kfdtrace.emu.isa.launch import aql_user_sgprs
    except ImportError as e:
        raise GpuFault(f"cannot set up the user SGPRs of the dispatch: kfdtrace.emu.isa.launch is "
                       f"not available ({e})", address=dispatch_ptr) from None
    return aql_user_sgprs(kd.kernel_code_properties, kd.compute_pgm_rsrc2, family=fam,
                          private_segment_buffer=srd, dispatch_ptr=dispatch_ptr,
                          queue_ptr=queue_ptr, kernarg_ptr=kernarg, dispatch_id=dispatch_id,
                          flat_scratch_init=scratch_base, private_segment_size=private,
                          kernarg_preload=preload)


__all__ = ["AqlEngine"]
