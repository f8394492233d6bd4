"""PM4 (CP command processor) packets: the table, decoder, boundary scan and builder.

Sources: reference §3 (soc15d.h for GFX9, nvd.h for GFX10/11/12.0, the gfx_v*_0.c emitters, kfdtest
bitfield structs), Appendix A for the full opcode list. Variant key = gfx major (9, 10, 11, 12);
``None`` (no family) means "fields common to every family".

Walking a stream (§8 "Decoding rings"): a type-3 packet is COUNT+2 dwords (header bits 29:16),
except NOP with COUNT 0x3FFF (``0xFFFF1000``, amdgpu's ring filler) which is one dword; a type-2
header is a one-dword NOP; a type-0 packet (legacy register burst) is COUNT+2 dwords. The length
always comes from the header; a body whose length does not match its layout is decoded as far
as it goes and flagged — except where the layout itself is chosen by length (ACQUIRE_MEM is 7
dwords on GFX9 and 8 on GFX10+, whatever the family argument says; EVENT_WRITE is 2 or 4).

Field units: raw hardware values, with combined 64-bit ``*addr*`` fields (e.g. ``ib_addr`` is
the byte address whose bits 31:2 sit in IB_BASE_LO). Natural-unit extras: SET_*_REG ``reg``
(absolute dword address = ``reg_offset`` + range base; the builder also takes a register name).
NOP ``count`` is the raw header COUNT (``build("NOP", count=n)`` emits n+1 body dwords; 0x3FFF
emits the one-dword filler).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from kfdtrace.errors import PacketError
from kfdtrace.packets import registers
from kfdtrace.packets.table import (followed_ibs, B, D, FIELD_META, SUMMARY, Compiled, Field, Layout, Nat, Packet, Q,
                                    as_array, as_dwords, chain_offsets, compile_function, default_summary,
                                    fmt_value, gfx_key, ident, no_gc, resolve_family, truncated)

ENGINE = "pm4"
VARIANTS = (None, 9, 10, 11, 12)
GFX10P = (10, 11, 12)
FILLER = 0xFFFF1000          # PACKET3(NOP, 0x3FFF): one-dword NOP, inserted dword by dword
TYPE2_NOP = 0x80000000       # CP_PACKET2


def header(opcode: int, count: int, shader_type: int = 0, predicate: int = 0) -> int:
    """A type-3 header: COUNT = body dwords − 1."""
    return (3 << 30) | ((count & 0x3FFF) << 16) | ((opcode & 0xFF) << 8) | ((shader_type & 1) << 1) | (predicate & 1)


# ------------------------------------------------------------------------------------------------
# Opcodes (Appendix A: soc15d.h ∪ nvd.h). Values are identical wherever both headers define one.
# ------------------------------------------------------------------------------------------------
OPCODES: dict[int, str] = {
    0x10: "NOP", 0x11: "SET_BASE", 0x12: "CLEAR_STATE", 0x13: "INDEX_BUFFER_SIZE",
    0x15: "DISPATCH_DIRECT", 0x16: "DISPATCH_INDIRECT", 0x17: "INDIRECT_BUFFER_END",
    0x19: "INDIRECT_BUFFER_CNST_END", 0x1D: "ATOMIC_GDS", 0x1E: "ATOMIC_MEM", 0x1F: "OCCLUSION_QUERY",
    0x20: "SET_PREDICATION", 0x21: "REG_RMW", 0x22: "COND_EXEC", 0x23: "PRED_EXEC",
    0x24: "DRAW_INDIRECT", 0x25: "DRAW_INDEX_INDIRECT", 0x26: "INDEX_BASE", 0x27: "DRAW_INDEX_2",
    0x28: "CONTEXT_CONTROL", 0x2A: "INDEX_TYPE", 0x2C: "DRAW_INDIRECT_MULTI", 0x2D: "DRAW_INDEX_AUTO",
    0x2F: "NUM_INSTANCES", 0x30: "DRAW_INDEX_MULTI_AUTO", 0x32: "INDIRECT_BUFFER_PRIV",
    0x33: "INDIRECT_BUFFER_CNST", 0x34: "STRMOUT_BUFFER_UPDATE", 0x35: "DRAW_INDEX_OFFSET_2",
    0x36: "DRAW_PREAMBLE", 0x37: "WRITE_DATA", 0x38: "DRAW_INDEX_INDIRECT_MULTI", 0x39: "MEM_SEMAPHORE",
    0x3A: "DRAW_INDEX_MULTI_INST", 0x3B: "COPY_DW", 0x3C: "WAIT_REG_MEM", 0x3F: "INDIRECT_BUFFER",
    0x40: "COPY_DATA", 0x41: "CP_DMA", 0x42: "PFP_SYNC_ME", 0x43: "SURFACE_SYNC", 0x44: "ME_INITIALIZE",
    0x45: "COND_WRITE", 0x46: "EVENT_WRITE", 0x47: "EVENT_WRITE_EOP", 0x48: "EVENT_WRITE_EOS",
    0x49: "RELEASE_MEM", 0x4A: "PREAMBLE_CNTL", 0x50: "DMA_DATA", 0x51: "CONTEXT_REG_RMW",
    0x52: "GFX_CNTX_UPDATE", 0x53: "BLK_CNTX_UPDATE", 0x55: "INCR_UPDT_STATE", 0x58: "ACQUIRE_MEM",
    0x59: "REWIND", 0x5A: "INTERRUPT", 0x5B: "GEN_PDEPTE", 0x5C: "INDIRECT_BUFFER_PASID",
    0x5D: "PRIME_UTCL2", 0x5E: "LOAD_UCONFIG_REG", 0x5F: "LOAD_SH_REG", 0x60: "LOAD_CONFIG_REG",
    0x61: "LOAD_CONTEXT_REG", 0x62: "LOAD_COMPUTE_STATE", 0x63: "LOAD_SH_REG_INDEX",
    0x68: "SET_CONFIG_REG", 0x69: "SET_CONTEXT_REG", 0x6A: "SET_CONTEXT_REG_INDEX",
    0x71: "SET_VGPR_REG_DI_MULTI", 0x72: "SET_SH_REG_DI", 0x73: "SET_CONTEXT_REG_INDIRECT",
    0x74: "SET_SH_REG_DI_MULTI", 0x75: "GFX_PIPE_LOCK", 0x76: "SET_SH_REG", 0x77: "SET_SH_REG_OFFSET",
    0x78: "SET_QUEUE_REG", 0x79: "SET_UCONFIG_REG", 0x7A: "SET_UCONFIG_REG_INDEX", 0x7C: "FORWARD_HEADER",
    0x7D: "SCRATCH_RAM_WRITE", 0x7E: "SCRATCH_RAM_READ", 0x80: "LOAD_CONST_RAM", 0x81: "WRITE_CONST_RAM",
    0x83: "DUMP_CONST_RAM", 0x84: "INCREMENT_CE_COUNTER", 0x85: "INCREMENT_DE_COUNTER",
    0x86: "WAIT_ON_CE_COUNTER", 0x88: "WAIT_ON_DE_COUNTER_DIFF", 0x8B: "SWITCH_BUFFER",
    0x8C: "DISPATCH_DRAW_PREAMBLE", 0x8D: "DISPATCH_DRAW", 0x8E: "GET_LOD_STATS",
    0x8F: "DRAW_MULTI_PREAMBLE", 0x90: "FRAME_CONTROL", 0x91: "INDEX_ATTRIBUTES_INDIRECT",
    0x93: "WAIT_REG_MEM64", 0x94: "COND_PREEMPT", 0x95: "HDP_FLUSH", 0x96: "COPY_DATA_RB",
    0x98: "INVALIDATE_TLBS", 0x99: "AQL_PACKET", 0x9A: "DMA_DATA_FILL_MULTI", 0x9B: "SET_SH_REG_INDEX",
    0x9C: "DRAW_INDIRECT_COUNT_MULTI", 0x9D: "DRAW_INDEX_INDIRECT_COUNT_MULTI",
    0x9E: "DUMP_CONST_RAM_OFFSET", 0x9F: "LOAD_CONTEXT_REG_INDEX", 0xA0: "SET_RESOURCES",
    0xA1: "MAP_PROCESS", 0xA2: "MAP_QUEUES", 0xA3: "UNMAP_QUEUES", 0xA4: "QUERY_STATUS",
    0xA5: "RUN_LIST", 0xA6: "MAP_PROCESS_VM", 0xD2: "RUN_CLEANER_SHADER", 0xF0: "SET_Q_PREEMPTION_MODE",
}
#: other names Appendix A gives the same opcode values (soc15d.h vs nvd.h spellings)
ALIASES: dict[str, int] = {
    "INDIRECT_BUFFER_CONST": 0x33, "COND_INDIRECT_BUFFER_CNST": 0x33, "COND_INDIRECT_BUFFER": 0x3F,
    "DISPATCH_DRAW_PREAMBLE_ACE": 0x8C, "DISPATCH_DRAW_ACE": 0x8D,
}
NAMES: dict[str, int] = {**{n: op for op, n in OPCODES.items()}, **ALIASES}

#: VGT event types (soc21_enum.h numbering, same on all generations), for summaries
EVENT_TYPES: dict[int, str] = {
    0x04: "CACHE_FLUSH_TS", 0x06: "CACHE_FLUSH", 0x07: "CS_PARTIAL_FLUSH", 0x0F: "VS_PARTIAL_FLUSH",
    0x10: "PS_PARTIAL_FLUSH", 0x14: "CACHE_FLUSH_AND_INV_TS_EVENT", 0x16: "CACHE_FLUSH_AND_INV_EVENT",
    0x17: "PERFCOUNTER_START", 0x18: "PERFCOUNTER_STOP", 0x1B: "PERFCOUNTER_SAMPLE",
    0x28: "BOTTOM_OF_PIPE_TS", 0x2F: "CS_DONE", 0x30: "PS_DONE", 0x33: "THREAD_TRACE_START",
    0x34: "THREAD_TRACE_STOP", 0x35: "THREAD_TRACE_MARKER", 0x37: "THREAD_TRACE_FINISH",
}
WAIT_FUNCTIONS = {0: "always", 1: "<", 2: "<=", 3: "==", 4: "!=", 5: ">=", 6: ">"}

# ------------------------------------------------------------------------------------------------
# The table (bodies from reference §3.3; dword 0 is the header)
# ------------------------------------------------------------------------------------------------
HDR = [B("shader_type", 0, 1, sparse=True), B("predicate", 0, 0, sparse=True)]  # only when set


def L(name: str, fields, **kw) -> Layout:
    return Layout(name, HDR + list(fields), opcode=NAMES[name], **kw)


def _reg_nat(base: int) -> Nat:
    def enc(v, ctx):
        if isinstance(v, str):
            v = registers.reg_addr(v, ctx.get("family"))
        off = int(v) - base
        if not 0 <= off <= 0xFFFF:
            raise PacketError(f"register {int(v):#x} is outside this packet's range (base {base:#x})")
        return off
    return Nat("reg", "reg_offset", f"{{reg_offset}} + {base:#x}", enc)


def _set_reg(name: str, base: int, index: bool = False) -> Layout:
    f = [B("reg_offset", 1, "15:0")] + ([B("index", 1, "31:16")] if index else [])
    return L(name, f, tail="values", tail_start=2, nat=[_reg_nat(base)])


_RELEASE_MEM_GFX9 = [  # dw1 EOP cache-action bits (soc15d.h)
    B("tcl1_vol_action_ena", 1, 12, v=9, sparse=True), B("tc_vol_action_ena", 1, 13, v=9, sparse=True),
    B("tc_wb_action_ena", 1, 15, v=9, sparse=True), B("tcl1_action_ena", 1, 16, v=9, sparse=True),
    B("tc_action_ena", 1, 17, v=9, sparse=True), B("tc_nc_action_ena", 1, 19, v=9, sparse=True),
    B("tc_wc_action_ena", 1, 20, v=9, sparse=True), B("tc_md_action_ena", 1, 21, v=9, sparse=True),
]
_RELEASE_MEM_GFX10 = [  # dw1 GCR bits (nvd.h); GL2_RANGE and GCR_SEQ are 2-bit fields
    B(n, 1, b, v=GFX10P, sparse=True) for n, b in (
        ("gcr_glm_wb", 12), ("gcr_glm_inv", 13), ("gcr_glv_inv", 14), ("gcr_gl1_inv", 15), ("gcr_gl2_us", 16),
        ("gcr_gl2_range", "18:17"), ("gcr_gl2_discard", 19), ("gcr_gl2_inv", 20), ("gcr_gl2_wb", 21),
        ("gcr_seq", "23:22"))
]
_COHER_GFX9 = [  # ACQUIRE_MEM COHER_CNTL bits on GFX9
    ("tc_nc_action_ena", 3), ("tc_wc_action_ena", 4), ("tc_inv_metadata_action_ena", 5),
    ("tcl1_vol_action_ena", 15), ("tc_wb_action_ena", 18), ("tcl1_action_ena", 22), ("tc_action_ena", 23),
    ("cb_action_ena", 25), ("db_action_ena", 26), ("sh_kcache_action_ena", 27), ("sh_kcache_vol_action_ena", 28),
    ("sh_icache_action_ena", 29), ("sh_kcache_wb_action_ena", 30),
]
_GCR_CNTL = [  # ACQUIRE_MEM dw7 GCR_CNTL on GFX10/11/12.0 (also the SDMA GCR_REQ control bits)
    ("gcr_gli_inv", "1:0"), ("gcr_gl1_range", "3:2"), ("gcr_glm_wb", 4), ("gcr_glm_inv", 5), ("gcr_glk_wb", 6),
    ("gcr_glk_inv", 7), ("gcr_glv_inv", 8), ("gcr_gl1_inv", 9), ("gcr_gl2_us", 10), ("gcr_gl2_range", "12:11"),
    ("gcr_gl2_discard", 13), ("gcr_gl2_inv", 14), ("gcr_gl2_wb", 15), ("gcr_seq", "17:16"), ("gcr_range_is_pa", 18),
]
_INITIATOR = [  # DISPATCH_DIRECT dw4 DISPATCH_INITIATOR bits
    ("compute_shader_en", 0, None), ("partial_tg_en", 1, None), ("force_start_at_000", 2, None),
    ("ordered_append_enbl", 3, None), ("ordered_append_mode", 4, None), ("use_thread_dimensions", 5, None),
    ("order_mode", 6, None), ("scalar_l1_inv_vol", 10, None), ("vector_l1_inv_vol", 11, None),
    ("ping_pong_en", 12, (12,)), ("tunnel_enable", 13, GFX10P), ("restore", 14, GFX10P),
    ("cs_w32_en", 15, GFX10P), ("amp_shader_en", 16, GFX10P), ("disable_disp_prempt_en", 17, GFX10P),
    ("interleave_2d_en", 18, (12,)), ("ttrace_queue_id", "31:29", (12,)),
]

PACKETS: list[Layout] = [
    L("NOP", [B("count", 0, "29:16")], tail="body", tail_start=1),
    L("INDIRECT_BUFFER", [
        B("swap", 1, "1:0"), Q("ib_addr", 1, 2, lo_bits="31:2"), B("ib_size", 3, "19:0"), B("chain", 3, 20),
        B("pre_enb", 3, 21), B("valid", 3, 23, default=1), B("vmid", 3, "27:24"), B("cache_policy", 3, "29:28"),
        B("pre_resume", 3, 30), B("priv", 3, 31)],
        length=4, refs=("pm4_ib", "ib_addr", "ib_size"), other_lengths="COND_INDIRECT_BUFFER"),
    L("RELEASE_MEM", [
        B("event_type", 1, "5:0"), B("event_index", 1, "11:8"), *_RELEASE_MEM_GFX9, *_RELEASE_MEM_GFX10,
        B("cache_policy", 1, "26:25"), B("execute", 1, 28, v=(9, 10)), B("execute", 1, "29:28", v=(11, 12)),
        B("dst_sel", 2, "17:16"), B("int_sel", 2, "26:24"), B("data_sel", 2, "31:29"),
        Q("addr", 3), Q("data", 5), D("int_ctxid", 7)], length=8),
    L("ACQUIRE_MEM", [
        B("coher_cntl", 1, "30:0", view=True), *[B(n, 1, b, sparse=True) for n, b in _COHER_GFX9],
        B("engine_sel", 1, 31),
        # SIZE_HI is documented as bits 7:0 and BASE_HI as 23:0, but the kernel writes 0xFFFFFF to
        # SIZE_HI: keep whole dwords so every stream decodes and rebuilds bit-exactly
        Q("coher_size", 2), Q("coher_base", 4), B("poll_interval", 6, "15:0")], length=7, v=9),
    L("ACQUIRE_MEM", [
        D("coher_cntl", 1), Q("coher_size", 2), Q("coher_base", 4), B("poll_interval", 6, "15:0"),
        B("gcr_cntl", 7, "18:0", view=True), *[B(n, 7, b, sparse=True) for n, b in _GCR_CNTL]],
        length=8, v=GFX10P),
    L("WAIT_REG_MEM", [
        B("function", 1, "2:0"), B("mem_space", 1, "5:4"), B("operation", 1, "7:6"), B("engine", 1, 8),
        Q("poll_addr", 2), D("reference", 4), D("mask", 5), B("poll_interval", 6, "15:0"),
        B("optimize_ace_offload_mode", 6, 31)], length=7),
    _set_reg("SET_SH_REG", registers.SH_BASE),
    _set_reg("SET_SH_REG_INDEX", registers.SH_BASE, index=True),
    _set_reg("SET_UCONFIG_REG", registers.UCONFIG_BASE),
    _set_reg("SET_UCONFIG_REG_INDEX", registers.UCONFIG_BASE, index=True),
    _set_reg("SET_CONFIG_REG", registers.CONFIG_BASE),
    _set_reg("SET_CONTEXT_REG", registers.CONTEXT_BASE),
    _set_reg("SET_CONTEXT_REG_INDEX", registers.CONTEXT_BASE, index=True),
    L("DISPATCH_DIRECT", [
        D("dim_x", 1), D("dim_y", 2), D("dim_z", 3), Field("dispatch_initiator", [(4, 0, 32, 0)], view=True),
        *[B(n, 4, b, v=v, sparse=True) for n, b, v in _INITIATOR]], length=5),
    L("WRITE_DATA", [
        B("dst_sel", 1, "11:8"), B("wr_one_addr", 1, 16), B("wr_confirm", 1, 20), B("cache_policy", 1, "26:25"),
        B("engine_sel", 1, "31:30"), Q("dst_addr", 2)], tail="data", tail_start=4),
    L("COPY_DATA", [
        B("src_sel", 1, "3:0"), B("dst_sel", 1, "11:8"), B("src_cache_policy", 1, "14:13"), B("count_sel", 1, 16),
        B("wr_confirm", 1, 20), B("dst_cache_policy", 1, "26:25"), B("engine_sel", 1, "31:30"),
        Q("src_addr", 2), Q("dst_addr", 4)], length=6),
    L("DMA_DATA", [
        B("engine", 1, 0), B("src_cache_policy", 1, "14:13"), B("dst_sel", 1, "21:20"),
        B("dst_cache_policy", 1, "26:25"), B("src_sel", 1, "30:29"), B("cp_sync", 1, 31),
        Q("src_addr", 2), Q("dst_addr", 4), B("byte_count", 6, "25:0"), B("sas", 6, 26), B("das", 6, 27),
        B("saic", 6, 28), B("daic", 6, 29), B("raw_wait", 6, 30)], length=7),
    L("ATOMIC_MEM", [
        B("atomic", 1, "6:0"), B("command", 1, "9:8"), B("cache_policy", 1, "26:25"), B("engine_sel", 1, "31:30"),
        Q("addr", 2), Q("src_data", 4), Q("cmp_data", 6), B("loop_interval", 8, "12:0")], length=9),
    L("EVENT_WRITE", [B("event_type", 1, "5:0"), B("event_index", 1, "11:8")], length=2),
    L("EVENT_WRITE", [B("event_type", 1, "5:0"), B("event_index", 1, "11:8"),
                      Q("addr", 2, 3, lo_bits="31:3", hi_bits="15:0")], length=4),
    # 3 dwords, control bits share the ADDR_HI dword (gfx_v6_0/cik emit_semaphore: (hi & 0xffff) | sel)
    L("MEM_SEMAPHORE", [Q("addr", 1, 2, hi_bits="15:0"), B("use_mailbox", 2, 16), B("sel_signal_type", 2, 20),
                        B("sem_sel", 2, "31:29")], length=3),
    L("PFP_SYNC_ME", [D("dummy", 1)], length=2),
    L("INVALIDATE_TLBS", [B("dst_sel", 1, 0), B("all_hub", 1, 4), B("pasid", 1, "20:5"),
                          B("flush_type", 1, "31:29")], length=2),
    L("PRED_EXEC", [B("exec_count", 1, "13:0"), B("virtualxccid_select", 1, "31:24")], length=2),
]
BY_NAME: dict[str, list[Layout]] = {}
for _l in PACKETS:
    BY_NAME.setdefault(_l.name, []).append(_l)
for _ls in BY_NAME.values():
    _ls.sort(key=lambda l: l.fixed)

# field metadata for summaries (union over variants)
FIELD_META[ENGINE] = {}
for _l in PACKETS:
    FIELD_META[ENGINE].setdefault(_l.name, {}).update({f.name: f for f in _l.fields})
for _n in OPCODES.values():
    FIELD_META[ENGINE].setdefault(_n, {}).update({f.name: f for f in HDR})
FIELD_META[ENGINE]["UNKNOWN"] = {f.name: f for f in HDR}


# ------------------------------------------------------------------------------------------------
# Decoder generation: one table of 256 entry functions per variant, built on first use
# ------------------------------------------------------------------------------------------------
_COMPILED: dict[tuple[int, int | None], Compiled] = {}
_TABLES: dict[int | None, list[Callable]] = {}


def compiled(layout: Layout, key) -> Compiled:
    k = (id(layout), key)
    c = _COMPILED.get(k)
    if c is None:
        c = _COMPILED[k] = Compiled(layout, key, ENGINE)
    return c


def _mismatch(c: Compiled, why: str) -> Callable:
    def dec(d, p, n, o):
        return Packet(ENGINE, o, c.name, n, c.slow_fields(d, p, n), tuple(d[p:p + n]),
                      f"{c.name} is {n} dwords; {why}")
    return dec


def _gen_decoder(c: Compiled, exact: bool) -> Callable:
    """Straight-line decoder. ``exact``: the caller guarantees n matches (no check emitted)."""
    fname = "dec_" + ident(c.name)
    lines = [f"def {fname}(d, p, n, o):"]
    if not exact:
        if c.tail is None:
            lines.append(f"    if n != {c.length}: return _mm(d, p, n, o)")
        else:
            lines.append(f"    if n < {c.fixed}: return _mm(d, p, n, o)")
    lines += c.body_code("n")
    lines.append(f"    return Packet({ENGINE!r}, o, {c.name!r}, n, f, raw, None, r)")
    exp = f"{c.length} dwords" if c.tail is None else f"at least {c.fixed} dwords"
    return compile_function("\n".join(lines), fname,
                            {"Packet": Packet, "_mm": _mismatch(c, f"the layout has {exp}")})


def _hdr_flags(f: dict, h: int) -> dict:
    if h & 2:
        f["shader_type"] = 1
    if h & 1:
        f["predicate"] = 1
    return f


def _generic(name: str, error: str | None = None) -> Callable:
    def dec(d, p, n, o):
        h = d[p]
        return Packet(ENGINE, o, name, n, _hdr_flags({"body": d[p + 1:p + n]}, h), tuple(d[p:p + n]), error)
    return dec


def _unknown(d, p, n, o):
    h = d[p]
    return Packet(ENGINE, o, "UNKNOWN", n, _hdr_flags({"opcode": (h >> 8) & 0xFF, "body": d[p + 1:p + n]}, h),
                  tuple(d[p:p + n]), f"unknown PM4 opcode {(h >> 8) & 0xFF:#04x}")


def _entry(op: int, key) -> Callable:
    name = OPCODES.get(op)
    if name is None:
        return _unknown
    layouts = BY_NAME.get(name)
    if not layouts:
        return _generic(name)
    mine = [compiled(l, key) for l in layouts if l.applies(key)]
    # layouts of other families, chosen by length when COUNT disagrees with the family (§7.3)
    others = [compiled(l, key if l.applies(key) else min(l.v)) for l in layouts if not l.applies(key)]
    if len(mine) == 1 and not others and not layouts[0].keys.get("other_lengths"):
        return _gen_decoder(mine[0], exact=False)
    by_len: dict[int, Callable] = {}
    var = None
    for c in mine + others:
        if c.tail is None:
            by_len.setdefault(c.length, _gen_decoder(c, exact=True))
        elif var is None:
            var = (c.fixed, _gen_decoder(c, exact=True))
    alt = layouts[0].keys.get("other_lengths")
    if alt:
        fallback = _generic(alt)
    else:
        ref = (mine or others)[0]
        lens = sorted(by_len)
        fallback = _mismatch(ref, f"the layout has {' or '.join(map(str, lens))} dwords")
    get = by_len.get

    def entry(d, p, n, o):
        dec = get(n)
        if dec is not None:
            return dec(d, p, n, o)
        if var is not None and n >= var[0]:
            return var[1](d, p, n, o)
        return fallback(d, p, n, o)
    return entry


def _table(key) -> list[Callable]:
    t = _TABLES.get(key)
    if t is None:
        if key not in VARIANTS:
            raise PacketError(f"no PM4 tables for gfx major {key}")
        t = _TABLES[key] = [_entry(op, key) for op in range(256)]
    return t


def _non_type3(d, p, e, o, h) -> Packet:
    t = h >> 30
    if t == 0:
        c = (h >> 16) & 0x3FFF
        n = c + 2
        if p + n > e:
            return truncated(ENGINE, d, p, e, o, "TYPE0", n)
        return Packet(ENGINE, o, "TYPE0", n, {"reg_offset": h & 0xFFFF, "values": d[p + 1:p + n]},
                      tuple(d[p:p + n]))
    if t == 2:
        return Packet(ENGINE, o, "TYPE2_NOP", 1, {"pad": h & 0x3FFFFFFF}, (h,))
    return Packet(ENGINE, o, "UNKNOWN", 1, {"type": t}, (h,), f"PM4 type-{t} header {h:#010x}")


# ------------------------------------------------------------------------------------------------
# Public decoding API
# ------------------------------------------------------------------------------------------------
def decode_one(dwords, pos: int, family) -> Packet:
    """Decode the packet starting at dword ``pos`` (its ``offset`` is ``pos``). ``dwords`` may be a
    list (used in place) or a numpy array/bytes (only the packet's window is converted)."""
    tbl = _table(gfx_key(family))
    if isinstance(dwords, list):
        d, p, e = dwords, pos, len(dwords)
    else:
        arr = as_array(dwords)
        total = len(arr)
        d, p = arr[pos:pos + 32].tolist(), 0
        e = len(d)
        if d and _length(d[0]) > e < total - pos:   # longer than the window: take all of it
            d = arr[pos:pos + _length(d[0])].tolist()
            e = len(d)
    if not 0 <= p < e:
        raise PacketError(f"PM4 position {pos} is outside the stream")
    h = d[p]
    if h >> 30 != 3:
        return _non_type3(d, p, e, pos, h)
    op = (h >> 8) & 0xFF
    c = (h >> 16) & 0x3FFF
    n = 1 if (c == 0x3FFF and op == 0x10) else c + 2
    if p + n > e:
        return truncated(ENGINE, d, p, e, pos, OPCODES.get(op, f"opcode {op:#04x}"), n)
    return tbl[op](d, p, n, pos)


def _length(h: int) -> int:
    t = h >> 30
    if t == 3:
        c = (h >> 16) & 0x3FFF
        return 1 if (c == 0x3FFF and (h >> 8) & 0xFF == 0x10) else c + 2
    if t == 0:
        return ((h >> 16) & 0x3FFF) + 2
    return 1


def decode(dwords, family=None, *, offset: int = 0, end: int | None = None, follow=None,
           max_depth: int = 4) -> list[Packet]:
    """Decode every packet of a PM4 stream (ring contents or an IB) from dword ``offset`` to
    ``end``. With ``follow(addr, ndwords) -> dwords | None`` the packets of each
    INDIRECT_BUFFER are decoded too, right after it (``depth`` + 1, ``parent`` = its index),
    up to ``max_depth`` levels."""
    d = as_dwords(dwords)
    out: list[Packet] = []
    with no_gc():
        _walk(d, offset, len(d) if end is None else min(end, len(d)), _table(gfx_key(family)), out,
              family, follow, max_depth, 0, None)
    return out


def _walk(d, p, e, tbl, out, family, follow, max_depth, depth, parent) -> None:
    app = out.append
    following = follow is not None and depth < max_depth
    while p < e:
        h = d[p]
        if h >> 30 == 3:
            op = (h >> 8) & 0xFF
            n = ((h >> 16) & 0x3FFF) + 2
            if n == 0x4001 and op == 0x10:
                n = 1
            if p + n > e:
                pkt = truncated(ENGINE, d, p, e, p, OPCODES.get(op, f"opcode {op:#04x}"), n)
                n = pkt.length
            else:
                pkt = tbl[op](d, p, n, p)
        else:
            pkt = _non_type3(d, p, e, p, h)
            n = pkt.length
        if depth:
            pkt.depth = depth
            pkt.parent = parent
        app(pkt)
        if following and pkt.refs:
            _follow(pkt, len(out) - 1, out, tbl, family, follow, max_depth, depth)
        p += n


def _follow(pkt, idx, out, tbl, family, follow, max_depth, depth) -> None:
    for ib, n in followed_ibs(pkt, "pm4_ib", follow):
        _walk(ib, 0, n, tbl, out, family, follow, max_depth, depth + 1, idx)


def scan(dwords) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packet boundaries without decoding: (offsets, opcodes, lengths) as int64 arrays. Lengths
    come from the headers, computed for every dword position at once; the hop from packet to
    packet is done by `table.chain_offsets` (speculative lockstep walkers, exact). ``opcodes`` is
    the IT opcode of type-3 packets and -1 for type-0/1/2 headers; the last length may run past
    the end of a truncated stream."""
    a = as_array(dwords)
    if not len(a):
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    t = a >> 30
    cnt = (a >> 16) & 0x3FFF
    op = (a >> 8) & 0xFF
    t3 = t == 3
    ln = np.where(t3 | (t == 0), cnt + 2, 1).astype(np.int64)
    ln[t3 & (cnt == 0x3FFF) & (op == 0x10)] = 1
    offs = chain_offsets(ln, t3 & _KNOWN[op])      # walkers start on likely type-3 headers
    ops = np.where(t3[offs], op[offs].astype(np.int64), -1)
    return offs, ops, ln[offs]


_KNOWN = np.zeros(256, bool)
_KNOWN[list(OPCODES)] = True


# ------------------------------------------------------------------------------------------------
# Builder
# ------------------------------------------------------------------------------------------------
def build(name: str, family=None, **fields) -> list[int]:
    """The dwords of one packet. Field values are checked against the layout (range, alignment,
    family: e.g. GFX9 has no GCR_CNTL); unspecified fields are 0 (INDIRECT_BUFFER ``valid`` is 1).
    Variable parts: ``values`` (SET_*_REG, with ``reg`` = register name or absolute address),
    ``data`` (WRITE_DATA), ``body`` (NOP and opcodes decoded generically)."""
    fam = resolve_family(family)
    key = gfx_key(fam)
    uname = name.upper()
    where = f"PM4 {uname}"
    if uname in ("NOP", "FILLER"):
        return _build_nop(fields, where, filler=uname == "FILLER")
    if uname == "TYPE2_NOP":
        pad = fields.pop("pad", 0)
        if fields or not isinstance(pad, int) or not 0 <= pad <= 0x3FFFFFFF:
            raise PacketError(f"{where} takes only pad (30 bits)")
        return [TYPE2_NOP | pad]
    if uname == "TYPE0":
        values = list(fields.pop("values", []))
        off = fields.pop("reg_offset", 0)
        if fields or not values or not 0 <= off <= 0xFFFF or len(values) > 0x4000:
            raise PacketError(f"{where} takes reg_offset (16 bits) and 1..16384 values")
        return [((len(values) - 1) << 16) | off] + [int(v) & 0xFFFFFFFF for v in values]
    if uname not in NAMES:
        raise PacketError(f"unknown PM4 packet {name!r}")
    op = NAMES[uname]
    layouts = BY_NAME.get(uname)     # aliases (COND_INDIRECT_BUFFER, …) have no layout: generic
    if not layouts:  # named-only opcode: header + body
        body = fields.pop("body", None)
        st, pr = fields.pop("shader_type", 0), fields.pop("predicate", 0)
        if fields:
            raise PacketError(f"{where} is decoded generically; it takes only body, shader_type, predicate")
        if not body:
            raise PacketError(f"{where} needs a body (list of dwords)")
        return _finish([header(op, 0, st, pr)] + [int(x) & 0xFFFFFFFF for x in body], where)
    cands = [l for l in layouts if l.applies(key)]
    if not cands:
        fams = sorted({v for l in layouts for v in (l.v or ())})
        raise PacketError(f"{where}'s layout differs per family ({', '.join(f'gfx{v}' for v in fams)}: "
                          f"{', '.join(str(l.length) for l in layouts)} dwords); pass a family")
    c = None
    for lay in cands:  # the smallest layout that has every given field (EVENT_WRITE: 2 or 4 dwords)
        c = compiled(lay, key)
        if set(fields) <= set(c.by_name) | {n.name for n in c.nat} | ({c.tail} if c.tail else set()):
            break
    dws, given = c.encode(fields, {"family": fam}, where)
    dws[0] |= header(op, 0)
    dws = _finish(dws, where)
    c.verify(dws, given, where)
    return dws


def _finish(dws: list[int], where: str) -> list[int]:
    count = len(dws) - 2
    if not 0 <= count <= 0x3FFE:
        raise PacketError(f"{where}: {len(dws)} dwords does not fit a PM4 packet (2..16384)")
    dws[0] = (dws[0] & ~(0x3FFF << 16)) | (count << 16)
    return dws


def _build_nop(fields: dict, where: str, filler: bool) -> list[int]:
    st, pr = fields.pop("shader_type", 0), fields.pop("predicate", 0)
    count = fields.pop("count", None)
    body = fields.pop("body", None)
    if fields:
        raise PacketError(f"{where} takes count, body, shader_type, predicate; got {', '.join(fields)}")
    if filler or count == 0x3FFF:
        if body:
            raise PacketError(f"{where}: the COUNT 0x3FFF filler has no body")
        return [header(0x10, 0x3FFF, st, pr)]
    if body is None:
        count = 0 if count is None else count
        if not isinstance(count, int) or not 0 <= count <= 0x3FFE:
            raise PacketError(f"{where}: count={count!r} must be 0..0x3FFE (0x3FFF = one-dword filler)")
        body = [0] * (count + 1)
    body = [int(x) & 0xFFFFFFFF for x in body]
    if not body:
        raise PacketError(f"{where}: body must have at least one dword (or use count=0x3FFF)")
    if count is not None and count != len(body) - 1:
        raise PacketError(f"{where}: count={count} contradicts a {len(body)}-dword body")
    return _finish([header(0x10, 0, st, pr)] + body, where)


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------
_REG_PACKETS = {"SET_SH_REG", "SET_SH_REG_INDEX", "SET_UCONFIG_REG", "SET_UCONFIG_REG_INDEX",
                "SET_CONFIG_REG", "SET_CONTEXT_REG", "SET_CONTEXT_REG_INDEX"}


def summary(p: Packet, family=None) -> str:
    f = p.fields
    if p.name in _REG_PACKETS and "reg" in f:
        fam = family
        try:
            fam = resolve_family(family)
        except Exception:
            fam = None
        regs = []
        for i, v in enumerate(f.get("values", [])):
            addr = f["reg"] + i
            regs.append(f"{registers.reg_name(addr, fam) or f'reg[{addr:#x}]'}={fmt_value(v)}")
        extra = [f"index={f['index']}"] if f.get("index") else []
        return " ".join([p.name, *extra, *regs] + ([f"!! {p.error}"] if p.error else []))
    if p.name == "NOP":
        if p.length == 1:
            return "NOP (one-dword filler)"
        return f"NOP count={f.get('count')} ({p.length - 1} body dwords)"
    extra = []
    skip = []
    render = {"event_type": lambda v: f"{EVENT_TYPES[v]}({v:#x})" if v in EVENT_TYPES else hex(v)}
    if p.name == "WAIT_REG_MEM" and "function" in f:
        extra.append(f"[{'mem' if f.get('mem_space') == 1 else 'reg'} {WAIT_FUNCTIONS.get(f['function'], '?')} ref]")
    if p.name == "DISPATCH_DIRECT":
        skip.append("dispatch_initiator")
    if p.name == "ACQUIRE_MEM":
        skip += ["gcr_cntl", "coher_cntl"] if p.length == 8 else ["coher_cntl"]
    return default_summary(p, skip=skip, extra=extra, render=render)


SUMMARY[ENGINE] = summary
