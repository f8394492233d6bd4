"""The SDMA engine: executes an SDMA user queue (reference §4).

Ring and pointers: ring in bytes, 64-bit monotonic byte read/write pointers (§4.4); a zero dword
is a one-dword NOP (ROCr pads the ring tail with zeros). Packets are parsed by
`kfdtrace.packets.sdma` for the family's packet generation (v4 GFX9/CDNA, v5 GFX10, v6
GFX11/GFX12); this module only gives them meaning.

What each packet does here:
  COPY_LINEAR / COPY_BROADCAST_LINEAR  numpy copy of byte_count bytes (one or two destinations)
  WRITE_UNTILED                        the data dwords at dst_addr
  CONST_FILL                           the 32-bit pattern repeated over byte_count bytes
                                       (FILLSIZE 0: bytes − 1, FILLSIZE 2: (dwords − 1) × 4)
  FENCE                                32-bit write
  TRAP                                 ctx.interrupt(int_context)
  POLL_REGMEM                          memory: blocks until (mem & mask) FUNC value (retry count
                                       ignored: waits forever, as RETRY_COUNT 0xFFF does);
                                       register: the HDP-flush idiom (HDP_FLUSH=1) completes at
                                       once; any other register poll faults
  ATOMIC                               TC atomic (LOOP: CMPSWAP retried until it succeeds)
  TIMESTAMP_SET/GET/GET_GLOBAL         the engine's timestamp (settable) / the GPU clock
  INDIRECT                             run IB_SIZE dwords at IB_BASE, then return (no nesting)
  NOP, GCR_REQ, GCR_USER, DUMMY_TRAP,  nothing (caches and predication do not exist here;
  PRE_EXE                              PRE_EXE selects devices, and this queue has one)
  COND_EXE                             skips the next EXEC_COUNT dwords unless *addr == reference
  SRBM_WRITE, SEM, PTEPDE_*, GPUVM_INV, VM_INVALIDATION, POLL_*_WRITE_MEM, POLL_MEM_VERIFY,
  COPY_* (tiled, sub-window, …), DATA_FILL_MULTI, WRITE_TILED*, UNKNOWN
                                       a GPU fault naming the packet: privileged (kernel-only)
                                       packets and layouts the emulator does not implement
                                       must not pass silently.
"""
from __future__ import annotations

from kfdtrace.emu.base import QueueKind
from kfdtrace.emu.engines.core import (BYTES_PER_TICK, M32, PUSHED, RingEngine, aligned, compare_func,
                                       copy_mem, fill_mem, tc_atomic, write_dwords)
from kfdtrace.errors import GpuFault
from kfdtrace.packets import sdma as _sdma
from kfdtrace.packets.table import sdma_key

_PRIVILEGED = {
    "SRBM_WRITE": "writes a register (kernel-only)",
    "SEM": "is a legacy semaphore (not available to user queues)",
    "PTEPDE_GEN": "writes page tables (kernel-only)",
    "PTEPDE_COPY": "writes page tables (kernel-only)",
    "PTEPDE_RMW": "writes page tables (kernel-only)",
    "PTEPDE_COPY_BACKWARDS": "writes page tables (kernel-only)",
    "GPUVM_INV": "invalidates the GPUVM TLBs (kernel-only)",
    "VM_INVALIDATION": "invalidates the GPUVM TLBs (kernel-only)",
}


class SdmaEngine(RingEngine):
    kind = QueueKind.SDMA
    unit = 1
    max_ib_depth = 1
    engine_name = "SDMA"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.ts_offset = 0         # TIMESTAMP_SET: local timestamp = clock + ts_offset
        self._decode = self._fast_decoder()
        self._handlers = {
            "NOP": _nothing, "GCR_REQ": _nothing, "GCR_USER": _nothing, "DUMMY_TRAP": _nothing,
            "PRE_EXE": _nothing,
            "COPY_LINEAR": self._copy, "COPY_BROADCAST_LINEAR": self._copy_broadcast,
            "WRITE_UNTILED": self._write, "CONST_FILL": self._fill, "FENCE": self._fence,
            "TRAP": self._trap, "POLL_REGMEM": self._poll, "ATOMIC": self._atomic,
            "TIMESTAMP_SET": self._ts_set, "TIMESTAMP_GET": self._ts_get,
            "TIMESTAMP_GET_GLOBAL": self._ts_get_global, "INDIRECT": self._indirect,
            "COND_EXE": self._cond_exe,
        }

    def _decode(self, dwords, pos):
        return _sdma.decode_one(dwords, pos, self.family)

    def _fast_decoder(self):
        """`sdma.decode_one` for numpy views, minus its per-call argument normalisation: the
        generation's decoder table is looked up once (packets' own table, keyed by op | sub-op
        << 8). Anything unusual (lists, unknown headers, long packets) goes to decode_one."""
        table = getattr(_sdma, "_table", None)
        if table is None:                  # pragma: no cover - packets without the table
            return self._decode
        tbl = table(sdma_key(self.family)).get
        decode_one, fam = _sdma.decode_one, self.family

        def decode(arr, pos):
            if type(arr) is list:
                return decode_one(arr, pos, fam)
            d = arr[pos:pos + 32].tolist()
            dec = tbl(d[0] & 0xFFFF)
            if dec is None:
                return decode_one(arr, pos, fam)
            pkt = dec(d, 0, len(d), pos)
            if pkt.name == "TRUNCATED" and len(arr) - pos > len(d):
                return decode_one(arr, pos, fam)
            return pkt
        return decode

    def _execute(self, pkt, va, in_ib):
        h = self._handlers.get(pkt.name)
        if h is None:
            raise GpuFault(self._unsupported(pkt, va), address=va)
        return h(pkt.fields, va, in_ib)

    def _unsupported(self, pkt, va) -> str:
        if pkt.name in _PRIVILEGED:
            return (f"SDMA {pkt.name} at {va:#x} {_PRIVILEGED[pkt.name]}: refused on a user queue")
        if pkt.name == "UNKNOWN":
            return f"SDMA {pkt.error} at {va:#x}"
        return (f"SDMA {pkt.name} at {va:#x} is not supported by the emulated SDMA engine "
                f"(header {pkt.raw[0]:#010x})")

    # -- packets ------------------------------------------------------------------------------
    def _copy(self, f, va, in_ib):
        n = f["byte_count"]
        copy_mem(self.mem, f["dst_addr"], f["src_addr"], n)
        self.busy += n // BYTES_PER_TICK

    def _copy_broadcast(self, f, va, in_ib):
        n = f["byte_count"]
        copy_mem(self.mem, f["dst1_addr"], f["src_addr"], n)
        copy_mem(self.mem, f["dst2_addr"], f["src_addr"], n)
        self.busy += 2 * n // BYTES_PER_TICK

    def _write(self, f, va, in_ib):
        write_dwords(self.mem, f["dst_addr"], f["data"])

    def _fill(self, f, va, in_ib):
        n = f.get("byte_count")
        if n is None:
            raise GpuFault(f"SDMA CONST_FILL at {va:#x}: FILLSIZE {f['fillsize']} is not supported "
                           "(0 = byte count, 2 = dword fill)", address=va)
        fill_mem(self.mem, f["dst_addr"], f["src_data"], n)
        self.busy += n // BYTES_PER_TICK

    def _fence(self, f, va, in_ib):
        addr = f["addr"]
        if addr & 3:
            aligned(addr, 4, "SDMA FENCE", va)
        self.mem.write_u32(addr, f["data"])

    def _trap(self, f, va, in_ib):
        self.ctx.interrupt(f["int_context"])

    def _poll(self, f, va, in_ib):
        sym, pred = compare_func(f["func"], "SDMA POLL_REGMEM", va)
        if not f["mem_poll"]:
            if f["hdp_flush"]:
                return None            # HDP flush request/done registers: done at once
            raise GpuFault(f"SDMA POLL_REGMEM at {va:#x} polls register {f['addr'] >> 2:#x}: "
                           "register polls other than the HDP-flush idiom are not emulated",
                           address=va)
        addr, mask, ref = f["addr"], f["mask"], f["value"]
        aligned(addr, 4, "SDMA POLL_REGMEM", va)
        value = self.mem.read_u32(addr)
        if pred(value & mask, ref):
            return None
        return self._block("SDMA POLL_REGMEM", addr, ref, value, mask, sym)

    def _atomic(self, f, va, in_ib):
        old, ok = tc_atomic(self.mem, f["atomic_op"], f["addr"], f["src_data"], f["cmp_data"],
                            "SDMA ATOMIC")
        if not ok and f["loop"]:
            return self._block("SDMA ATOMIC (loop until compare)", f["addr"], f["cmp_data"], old)
        return None

    def _ts_set(self, f, va, in_ib):
        self.ts_offset = f["init_data"] - self.ctx.clock()

    def _ts_get(self, f, va, in_ib):
        self.mem.write_u64(f["write_addr"], (self.ctx.clock() + self.ts_offset) & ((1 << 64) - 1))

    def _ts_get_global(self, f, va, in_ib):
        self.mem.write_u64(f["write_addr"], self.ctx.clock())

    def _indirect(self, f, va, in_ib):
        if in_ib:
            raise GpuFault(f"SDMA INDIRECT at {va:#x} inside an indirect buffer: SDMA IBs do not "
                           "nest", address=va)
        size = f["ib_size"]
        if size == 0:
            return None
        addr = f["ib_addr"]
        if addr & 0x1F:
            raise GpuFault(f"SDMA INDIRECT at {va:#x}: IB base {addr:#x} is not 32-byte aligned",
                           address=va)
        self._push_ib(addr, size, "SDMA INDIRECT")
        return PUSHED

    def _cond_exe(self, f, va, in_ib):
        if self.mem.read_u32(f["addr"]) != f["reference"] & M32:
            self._skip = f["exec_count"]


def _nothing(f, va, in_ib):
    return None


__all__ = ["SdmaEngine"]
