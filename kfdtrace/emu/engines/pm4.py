"""The PM4 command processor: executes a compute (PM4) queue, and the PM4 indirect buffers of AQL
vendor packets (reference §3).

Ring and pointers: ring in dwords, 64-bit monotonic dword read/write pointers (§1.7). Packets are
parsed by `kfdtrace.packets.pm4` (the 0xFFFF1000 filler and type-2 headers are one-dword NOPs);
this module gives them meaning. Each queue has its own register file (absolute dword address →
value) written by SET_SH_REG / SET_UCONFIG_REG / SET_CONFIG_REG / WRITE_DATA / COPY_DATA and read
by DISPATCH_DIRECT, WAIT_REG_MEM and COPY_DATA.

What each packet does here:
  NOP (any form), ACQUIRE_MEM, PFP_SYNC_ME, INVALIDATE_TLBS, HDP_FLUSH, EVENT_WRITE (2 dwords)
      nothing: there are no caches, TLBs or pipelines to flush
  EVENT_WRITE (4 dwords, with an address)   writes the 64-bit GPU clock there
  RELEASE_MEM     DATA_SEL 1/2 = 32/64-bit data, 3 = GPU clock, 4 = system clock (the same
                  virtual clock); then INT_SEL 1/2/4 → ctx.interrupt(int_ctxid)
  WAIT_REG_MEM    memory or register; blocks until (value & mask) FUNCTION reference; the
                  write-wait-write operation (HDP flush idiom) completes at once
  WRITE_DATA      memory (DST_SEL 1/2/5) or registers (0); WR_ONE_ADDR
  COPY_DATA       register / memory / immediate / atomic-return / GPU or system clock →
                  register / memory, 32 or 64 bits
  DMA_DATA        memory copy or fill of BYTE_COUNT bytes (SAIC/DAIC: fixed source/destination)
  ATOMIC_MEM      TC atomic (COMMAND 1: CMPSWAP retried until it succeeds); the returned value
                  is what COPY_DATA SRC_SEL 6 reads
  INDIRECT_BUFFER run IB_SIZE dwords, then return; CHAIN (inside an IB) replaces the current IB;
                  VALID must be set (compute queues require it); IB1 and IB2 only
  DISPATCH_DIRECT / DISPATCH_INDIRECT   a DispatchInfo from the registers → ctx.shader.dispatch
Anything else (graphics packets, SET_CONTEXT_REG, GDS, type-0, unknown opcodes) is a GPU fault
naming the packet and its address.
"""
from __future__ import annotations

from kfdtrace.emu.base import DispatchInfo, QueueKind
from kfdtrace.emu.engines.core import (M32, M64, PUSHED, WORKGROUP_TICKS, RingEngine, aligned,
                                       compare_func, copy_mem, fill_mem, run_dispatch, tc_atomic,
                                       write_dwords)
from kfdtrace.errors import GpuFault
from kfdtrace.packets import pm4 as _pm4
from kfdtrace.packets import registers as _regs

R = {name: _regs.reg_addr(name) for name in (
    "COMPUTE_DISPATCH_INITIATOR", "COMPUTE_DIM_X", "COMPUTE_START_X", "COMPUTE_NUM_THREAD_X",
    "COMPUTE_PGM_LO", "COMPUTE_PGM_HI", "COMPUTE_DISPATCH_SCRATCH_BASE_LO",
    "COMPUTE_DISPATCH_SCRATCH_BASE_HI", "COMPUTE_PGM_RSRC1", "COMPUTE_PGM_RSRC2",
    "COMPUTE_TMPRING_SIZE", "COMPUTE_USER_DATA_0")}
USER_DATA_REGS = 16

# -- COMPUTE_* register fields the dispatch needs (reference §3.4 "Field notes"). The packets
# module names registers but does not describe their bit fields; these few are local. ---------
# LOCAL LAYOUT (register fields, not packets): PGM_RSRC2 USER_SGPR 5:1, LDS_SIZE 23:15;
# NUM_THREAD_FULL 15:0 (GFX12 12:0), NUM_THREAD_PARTIAL 31:16; TMPRING_SIZE WAVESIZE 24:12 (GFX9/10),
# 26:12 (GFX11), 29:12 (GFX12).
LDS_GRANULE = 512          # LLVM: "LDS is allocated in 128 dword blocks" (GFX7+)

_GRAPHICS = {"SET_CONTEXT_REG", "SET_CONTEXT_REG_INDEX", "CONTEXT_CONTROL", "CLEAR_STATE",
             "INDEX_BUFFER_SIZE", "DRAW_INDIRECT", "DRAW_INDEX_INDIRECT", "INDEX_BASE", "DRAW_INDEX_2",
             "INDEX_TYPE", "DRAW_INDIRECT_MULTI", "DRAW_INDEX_AUTO", "NUM_INSTANCES",
             "DRAW_INDEX_MULTI_AUTO", "DRAW_INDEX_OFFSET_2", "DRAW_PREAMBLE", "DRAW_INDEX_INDIRECT_MULTI",
             "STRMOUT_BUFFER_UPDATE", "LOAD_CONST_RAM", "WRITE_CONST_RAM", "DUMP_CONST_RAM",
             "INCREMENT_CE_COUNTER", "INCREMENT_DE_COUNTER", "WAIT_ON_CE_COUNTER",
             "WAIT_ON_DE_COUNTER_DIFF", "SWITCH_BUFFER", "INDIRECT_BUFFER_CNST", "SET_BASE"}
_MEMORY_DST = (1, 2, 5)    # WRITE_DATA / COPY_DATA destinations that are memory


class Pm4Engine(RingEngine):
    kind = QueueKind.PM4
    unit = 4
    max_ib_depth = 2
    engine_name = "PM4"

    def __init__(self, ctx):
        super().__init__(ctx)
        fam = self.family
        self.gfx = fam.gfx_major
        self.regs: dict[int, int] = {}
        self.atomic_return = 0
        self._rsrc3 = fam.pgm_rsrc3_reg
        nop = _nothing
        self._handlers = {
            "NOP": nop, "TYPE2_NOP": nop, "ACQUIRE_MEM": nop, "PFP_SYNC_ME": nop,
            "INVALIDATE_TLBS": nop, "HDP_FLUSH": nop,
            "SET_SH_REG": self._set_reg, "SET_SH_REG_INDEX": self._set_reg,
            "SET_UCONFIG_REG": self._set_reg, "SET_UCONFIG_REG_INDEX": self._set_reg,
            "SET_CONFIG_REG": self._set_reg,
            "RELEASE_MEM": self._release_mem, "WAIT_REG_MEM": self._wait_reg_mem,
            "WRITE_DATA": self._write_data, "COPY_DATA": self._copy_data, "DMA_DATA": self._dma_data,
            "ATOMIC_MEM": self._atomic_mem, "EVENT_WRITE": self._event_write,
            "INDIRECT_BUFFER": self._indirect_buffer, "DISPATCH_DIRECT": self._dispatch_direct,
            "DISPATCH_INDIRECT": self._dispatch_indirect,
        }

    def _decode(self, dwords, pos):
        return _pm4.decode_one(dwords, pos, self.family)

    def _execute(self, pkt, va, in_ib):
        h = self._handlers.get(pkt.name)
        if h is None or pkt.error:
            raise GpuFault(self._unsupported(pkt, va), address=va)
        return h(pkt.fields, va, in_ib)

    def _unsupported(self, pkt, va) -> str:
        op = (pkt.raw[0] >> 8) & 0xFF
        if pkt.name == "UNKNOWN":
            return f"PM4 {pkt.error} at {va:#x}"
        if pkt.name == "TYPE0":
            return f"PM4 type-0 register write at {va:#x}: not used on compute queues"
        if pkt.error:
            return f"PM4 {pkt.name} (opcode {op:#04x}) at {va:#x} is malformed: {pkt.error}"
        if pkt.name in _GRAPHICS:
            return f"PM4 {pkt.name} (opcode {op:#04x}) at {va:#x} is a graphics-ring packet: not " \
                   "valid on a compute queue"
        return f"PM4 {pkt.name} (opcode {op:#04x}) at {va:#x} is not supported by the emulated " \
               "command processor"

    # -- registers ------------------------------------------------------------------------------
    def _set_reg(self, f, va, in_ib):
        base = f["reg"]
        regs = self.regs
        for i, v in enumerate(f["values"]):
            regs[base + i] = v

    def read_reg(self, addr: int) -> int:
        return self.regs.get(addr, 0)

    # -- memory / sync --------------------------------------------------------------------------
    def _release_mem(self, f, va, in_ib):
        ds = f["data_sel"]
        if ds:
            if f["dst_sel"] > 1:
                raise GpuFault(f"PM4 RELEASE_MEM at {va:#x}: DST_SEL {f['dst_sel']} (queue write "
                               "pointer register / poll mask) is not supported", address=va)
            addr = f["addr"]
            if ds == 1:
                _aligned(addr, 4, "RELEASE_MEM", va)
                self.mem.write_u32(addr, f["data"] & M32)
            elif ds <= 4:
                _aligned(addr, 8, "RELEASE_MEM", va)
                self.mem.write_u64(addr, f["data"] if ds == 2 else self.ctx.clock())
            else:
                raise GpuFault(f"PM4 RELEASE_MEM at {va:#x}: DATA_SEL {ds} is not supported "
                               "(1 32-bit, 2 64-bit, 3 GPU clock, 4 system clock)", address=va)
        isel = f["int_sel"]
        if isel in (1, 2, 4):
            self.ctx.interrupt(f["int_ctxid"])
        elif isel > 4:
            raise GpuFault(f"PM4 RELEASE_MEM at {va:#x}: INT_SEL {isel} (conditional interrupt on a "
                           "compare) is not supported", address=va)

    def _wait_reg_mem(self, f, va, in_ib):
        sym, pred = compare_func(f["function"], "PM4 WAIT_REG_MEM", va)
        op = f["operation"]
        if op == 1:
            return None                    # write-wait-write: the HDP flush idiom; done at once
        if op == 2 or op > 3:
            raise GpuFault(f"PM4 WAIT_REG_MEM at {va:#x}: OPERATION {op} is reserved", address=va)
        space, addr, mask, ref = f["mem_space"], f["poll_addr"], f["mask"], f["reference"]
        if space == 1:
            _aligned(addr, 4, "WAIT_REG_MEM", va)
            value = self.mem.read_u32(addr)
        elif space == 0:
            addr &= 0x3FFFF
            value = self.read_reg(addr)
        else:
            raise GpuFault(f"PM4 WAIT_REG_MEM at {va:#x}: MEM_SPACE {space} is not supported "
                           "(0 register, 1 memory)", address=va)
        if pred(value & mask, ref):
            return None
        return self._block("PM4 WAIT_REG_MEM" + ("" if space else " (register)"), addr, ref, value,
                           mask, sym)

    def _write_data(self, f, va, in_ib):
        dst, data, sel, one = f["dst_addr"], f["data"], f["dst_sel"], f["wr_one_addr"]
        if not data:
            return None
        if sel == 0:
            reg = dst & 0x3FFFF
            for i, v in enumerate(data):
                self.regs[reg + (0 if one else i)] = v
        elif sel in _MEMORY_DST:
            _aligned(dst, 4, "WRITE_DATA", va)
            if one:
                self.mem.write_u32(dst, data[-1])
            else:
                write_dwords(self.mem, dst, data)
        else:
            raise GpuFault(f"PM4 WRITE_DATA at {va:#x}: DST_SEL {sel} is not supported "
                           "(0 register, 1/2/5 memory)", address=va)

    def _copy_data(self, f, va, in_ib):
        wide = f["count_sel"] == 1
        m = M64 if wide else M32
        src, sel = f["src_addr"], f["src_sel"]
        if sel == 0:
            r = src & 0x3FFFF
            value = self.read_reg(r) | (self.read_reg(r + 1) << 32 if wide else 0)
        elif sel in (1, 2):
            _aligned(src, 8 if wide else 4, "COPY_DATA source", va)
            value = self.mem.read_u64(src) if wide else self.mem.read_u32(src)
        elif sel == 5:
            value = src & m
        elif sel == 6:
            value = self.atomic_return & m
        elif sel in (9, 10):
            value = self.ctx.clock() & m
        else:
            raise GpuFault(f"PM4 COPY_DATA at {va:#x}: SRC_SEL {sel} is not supported (0 register, "
                           "1/2 memory, 5 immediate, 6 atomic return, 9/10 clock)", address=va)
        dst, dsel = f["dst_addr"], f["dst_sel"]
        if dsel == 0:
            r = dst & 0x3FFFF
            self.regs[r] = value & M32
            if wide:
                self.regs[r + 1] = value >> 32
        elif dsel in _MEMORY_DST:
            _aligned(dst, 8 if wide else 4, "COPY_DATA destination", va)
            if wide:
                self.mem.write_u64(dst, value)
            else:
                self.mem.write_u32(dst, value)
        else:
            raise GpuFault(f"PM4 COPY_DATA at {va:#x}: DST_SEL {dsel} is not supported "
                           "(0 register, 1/2/5 memory)", address=va)

    def _dma_data(self, f, va, in_ib):
        n = f["byte_count"]
        if n == 0:
            return None
        if f["sas"] or f["das"]:
            raise GpuFault(f"PM4 DMA_DATA at {va:#x}: register address spaces (SAS/DAS) are not "
                           "supported", address=va)
        ssel, dsel = f["src_sel"], f["dst_sel"]
        if ssel == 1 or dsel not in (0, 3):
            raise GpuFault(f"PM4 DMA_DATA at {va:#x}: SRC_SEL {ssel} / DST_SEL {dsel} is not "
                           "supported (GDS does not exist here)", address=va)
        src, dst, mem = f["src_addr"], f["dst_addr"], self.mem
        if ssel == 2:                      # DATA: dw2 is a 32-bit fill value
            pattern = src & M32
        elif f["saic"]:                    # fixed source address: its dword, repeated
            pattern = mem.read_u32(src)
        else:
            pattern = None
        if f["daic"]:                      # fixed destination: the last dword written stays
            last = pattern if pattern is not None else mem.read_u32(src + ((n - 1) & ~3))
            mem.write_u32(dst, last)
        elif pattern is not None:
            fill_mem(mem, dst, pattern, n)
        else:
            copy_mem(mem, dst, src, n)
        self.busy += n // 256

    def _atomic_mem(self, f, va, in_ib):
        old, ok = tc_atomic(self.mem, f["atomic"], f["addr"], f["src_data"], f["cmp_data"],
                            f"PM4 ATOMIC_MEM at {va:#x}")
        self.atomic_return = old
        if not ok and f["command"] == 1:
            return self._block("PM4 ATOMIC_MEM (loop until compare)", f["addr"], f["cmp_data"], old)
        return None

    def _event_write(self, f, va, in_ib):
        addr = f.get("addr")
        if addr is not None:
            self.mem.write_u64(addr, self.ctx.clock())

    # -- indirect buffers -----------------------------------------------------------------------
    def _indirect_buffer(self, f, va, in_ib):
        if not f["valid"]:
            raise GpuFault(f"PM4 INDIRECT_BUFFER at {va:#x}: the VALID bit (23) is not set; compute "
                           "queues require it", address=va)
        size = f["ib_size"]
        if f["chain"] and in_ib:           # CHAIN: the current IB ends here, the new one replaces it
            self._frames.pop()
        if size == 0:
            return None
        self._push_ib(f["ib_addr"], size, "PM4 INDIRECT_BUFFER")
        return PUSHED

    # -- dispatch -------------------------------------------------------------------------------
    def _dispatch_direct(self, f, va, in_ib):
        self._dispatch(f["dim_x"], f["dim_y"], f["dim_z"], f["dispatch_initiator"], f, va)

    def _dispatch_indirect(self, f, va, in_ib):
        # LOCAL WORKAROUND (packets has no DISPATCH_INDIRECT layout; decoded generically): the
        # compute-queue (MEC) form is count 2 = ADDR_LO, ADDR_HI, DISPATCH_INITIATOR (radv, mesa
        # "radv_cmd_buffer_uses_mec"); the buffer holds three u32 workgroup counts. The initiator
        # bits are decoded through the DISPATCH_DIRECT layout so they stay written once.
        body = f["body"]
        if len(body) != 3:
            raise GpuFault(f"PM4 DISPATCH_INDIRECT at {va:#x} has {len(body)} body dwords: only "
                           "the compute-queue form (address lo, hi, initiator) is supported; the "
                           "SET_BASE + offset form is for graphics rings", address=va)
        addr = body[0] | body[1] << 32
        _aligned(addr, 4, "DISPATCH_INDIRECT", va)
        dims = self.mem.read(addr, 12)
        dx, dy, dz = (int.from_bytes(dims[i:i + 4], "little") for i in (0, 4, 8))
        init = _pm4.decode_one([_pm4.header(0x15, 3), dx, dy, dz, body[2]], 0, self.family).fields
        self._dispatch(dx, dy, dz, body[2], init, va)

    def _dispatch(self, dx, dy, dz, initiator, init, va):
        regs, rd = self.regs, self.read_reg
        gfx = self.gfx
        regs[R["COMPUTE_DIM_X"]], regs[R["COMPUTE_DIM_X"] + 1], regs[R["COMPUTE_DIM_X"] + 2] = dx, dy, dz
        regs[R["COMPUTE_DISPATCH_INITIATOR"]] = initiator
        if not init.get("compute_shader_en", 1):
            raise GpuFault(f"PM4 DISPATCH at {va:#x}: DISPATCH_INITIATOR.COMPUTE_SHADER_EN is 0",
                           address=va)
        full_mask = 0x1FFF if gfx >= 12 else 0xFFFF
        nt = [rd(R["COMPUTE_NUM_THREAD_X"] + i) for i in range(3)]
        wg = tuple(v & full_mask for v in nt)
        if 0 in wg:
            raise GpuFault(f"PM4 DISPATCH at {va:#x}: workgroup size {wg} (COMPUTE_NUM_THREAD_X/Y/Z) "
                           "has a zero dimension", address=va)
        dims = (dx, dy, dz)
        if init.get("use_thread_dimensions"):
            grid = dims
            groups = tuple(-(-d // w) for d, w in zip(dims, wg))
        else:
            groups = dims
            partial = [(v >> 16) & 0xFFFF for v in nt] if init.get("partial_tg_en") else [0, 0, 0]
            grid = tuple(g * w if not p or not g else (g - 1) * w + p
                         for g, w, p in zip(groups, wg, partial))
        code = (rd(R["COMPUTE_PGM_HI"]) << 40) | (rd(R["COMPUTE_PGM_LO"]) << 8)
        rsrc1, rsrc2, rsrc3 = rd(R["COMPUTE_PGM_RSRC1"]), rd(R["COMPUTE_PGM_RSRC2"]), rd(self._rsrc3)
        n_user = (rsrc2 >> 1) & 0x1F
        if n_user > USER_DATA_REGS:
            raise GpuFault(f"PM4 DISPATCH at {va:#x}: COMPUTE_PGM_RSRC2.USER_SGPR = {n_user} exceeds "
                           f"the {USER_DATA_REGS} COMPUTE_USER_DATA registers", address=va)
        wave32 = gfx >= 10 and bool(init.get("cs_w32_en"))
        lanes = 32 if wave32 else 64
        tmpring = rd(R["COMPUTE_TMPRING_SIZE"])
        wavesize = (tmpring >> 12) & (0x1FFFF if gfx >= 12 else 0x7FFF if gfx == 11 else 0x1FFF)
        wave_bytes = wavesize << (8 if gfx >= 11 else 10)
        scratch_base = ((rd(R["COMPUTE_DISPATCH_SCRATCH_BASE_HI"]) << 32)
                        | rd(R["COMPUTE_DISPATCH_SCRATCH_BASE_LO"])) << 8
        start = tuple(rd(R["COMPUTE_START_X"] + i) for i in range(3))
        info = DispatchInfo(
            family=self.family, code_address=code, rsrc1=rsrc1, rsrc2=rsrc2, rsrc3=rsrc3,
            kernel_code_properties=(1 << 10) if wave32 else 0,
            grid_workgroups=groups, workgroup_size=wg, grid_size=grid,
            user_sgprs=[rd(R["COMPUTE_USER_DATA_0"] + i) for i in range(n_user)],
            wave32=wave32, lds_size=((rsrc2 >> 15) & 0x1FF) * LDS_GRANULE,
            scratch_size=wave_bytes // lanes, scratch_base=scratch_base,
            extra={"dispatch_initiator": initiator, "start": start, "tmpring_size": tmpring,
                   "packet_address": va, "queue_id": self.queue_id})
        if 0 in groups:
            return None                    # an empty grid: nothing runs
        run_dispatch(self.ctx, info)
        self.busy += WORKGROUP_TICKS * groups[0] * groups[1] * groups[2]
        return None


def _nothing(f, va, in_ib):
    return None


def _aligned(addr: int, n: int, packet: str, va: int) -> None:
    aligned(addr, n, f"PM4 {packet}", va)


__all__ = ["Pm4Engine"]
