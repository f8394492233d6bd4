"""SDMA packets: the table, decoder, boundary scan and builder.

Sources: reference §4 (vega10_sdma_pkt_open.h = v4 for every GFX9/CDNA part, navi10_sdma_pkt_open.h
= v5 for GFX10, sdma_v6_0_0_pkt_open.h = v6 for GFX11 and GFX12.0). For the sub-ops §4.2 only
names, lengths and address dwords come from the same headers' per-packet layouts (the
SDMA_PKT_*_offset values of vega10/navi10; for v6 AMD's packet-struct header with DW_n unions),
and PTEPDE_GEN's from sdma_v4_0_vm_set_pte_pde. Variant key = the packet generation (4, 5, 6);
no family means v4.

There is no length field: a packet's length is fixed per (op, sub-op) — with three exceptions
the table declares: NOP (1 + header COUNT), WRITE_UNTILED/WRITE_TILED (fixed part + COUNT+1 data
dwords) and the broadcast bit (header bit 27) of COPY LINEAR/TILED, which selects the longer
BROADCAST layouts. An all-zero dword is a one-dword NOP (ROCr pads ring tails with zeros). A
header the table does not know becomes a one-dword UNKNOWN packet so the walk can resync.

Field units: raw hardware values plus natural-unit extras, documented per packet:
  COPY_LINEAR/COPY_BROADCAST_LINEAR ``count`` = bytes − 1 (v4/v5 22 bits, v6 30 bits) and
  ``byte_count``; CONST_FILL ``count`` = bytes − 1 (FILLSIZE 0, kernel) or (dwords − 1) × 4
  (FILLSIZE 2, ROCr) and ``byte_count`` for those two fill sizes. ``build("COPY_LINEAR",
  count=n)`` and ``byte_count=n`` both mean n bytes (the builder takes natural units); a decoded
  ``fields`` dict (raw ``count`` plus ``byte_count``) rebuilds the same packet.
  WRITE_UNTILED ``count`` = dwords − 1, ``data`` the payload (the builder derives ``count``).
  NOP ``count`` = extra dwords (= len(``data``)).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from kfdtrace.errors import PacketError
from kfdtrace.packets.table import (followed_ibs, B, D, FIELD_META, SUMMARY, Compiled, Layout, Nat, P, Packet, Q, as_array,
                                    as_dwords, chain_offsets, compile_function, default_summary, ident, no_gc,
                                    resolve_family, sdma_key, truncated)

ENGINE = "sdma"
VARIANTS = (4, 5, 6)
V5P = (5, 6)
V45 = (4, 5)
BROADCAST = 1 << 27

OPS = {0: "NOP", 1: "COPY", 2: "WRITE", 4: "INDIRECT", 5: "FENCE", 6: "TRAP", 7: "SEM", 8: "POLL_REGMEM",
       9: "COND_EXE", 10: "ATOMIC", 11: "CONST_FILL", 12: "PTEPDE", 13: "TIMESTAMP", 14: "SRBM_WRITE",
       15: "PRE_EXE", 16: "DUMMY_TRAP/GPUVM_INV", 17: "GCR_REQ", 32: "DUMMY_TRAP"}
POLL_FUNCTIONS = {0: "always", 1: "<", 2: "<=", 3: "==", 4: "!=", 5: ">=", 6: ">"}


def _count_nat() -> Nat:
    def enc(v, ctx):
        if not isinstance(v, int) or v < 1:
            raise PacketError(f"byte count {v!r} must be a positive integer")
        return v - 1
    return Nat("byte_count", "count", "{count} + 1", enc, raw_alias=True)


def _fill_nat() -> Nat:
    # FILLSIZE 0: count = bytes - 1 (kernel); FILLSIZE 2: count = (dwords - 1) * 4 (ROCr)
    def enc(v, ctx):
        if not isinstance(v, int) or v < 1:
            raise PacketError(f"byte count {v!r} must be a positive integer")
        if ctx.get("fillsize", 0) == 2:
            if v % 4:
                raise PacketError(f"CONST_FILL with fillsize=2 fills whole dwords; byte_count={v} is not a multiple of 4")
            return v - 4
        return v - 1
    return Nat("byte_count", "count", "{count} + (4 if {fillsize} == 2 else 1)", enc,
               guard="{fillsize} in (0, 2)", raw_alias=True)


def S(name: str, op: int, sub: int, fields, *, sel: tuple[int, int] = (0, 0), any_sub: bool = False,
      length_fn: tuple[int, str] | None = None, **kw) -> Layout:
    """One SDMA layout. ``sel`` = (mask, value) on the header beyond op/sub-op (broadcast bit);
    ``length_fn`` = (dwords needed to know the length, expression over d0..dN)."""
    return Layout(name, fields, op=op, sub=sub, sel=sel, any_sub=any_sub, length_fn=length_fn, **kw)


_COPY_HDR = [B("encrypt", 0, 16), B("tmz", 0, 18), B("cpv", 0, 19, v=6)]
_COPY_COUNT = [B("count", 1, "21:0", v=V45), B("count", 1, "29:0", v=6)]
_WRITE_LEN = (4, "4 + (d3 & 0xFFFFF) + 1")

PACKETS: list[Layout] = [
    S("NOP", 0, 0, [B("count", 0, "29:16")], tail="data", tail_start=1, length_fn=(1, "1 + ((d0 >> 16) & 0x3FFF)")),
    # ---- COPY (op 1) ----
    S("COPY_LINEAR", 1, 0, [
        *_COPY_HDR, B("backwards", 0, 25, v=V5P), *_COPY_COUNT,
        B("dst_sw", 2, "17:16"), B("dst_cache_policy", 2, "20:18", v=6), B("src_sw", 2, "25:24"),
        B("src_cache_policy", 2, "28:26", v=6), Q("src_addr", 3), Q("dst_addr", 5)],
        sel=(BROADCAST, 0), length=7, nat=[_count_nat()]),
    S("COPY_BROADCAST_LINEAR", 1, 0, [
        *_COPY_HDR, *_COPY_COUNT, B("dst2_sw", 2, "9:8"), B("dst2_cache_policy", 2, "12:10", v=6),
        B("dst1_sw", 2, "17:16"), B("dst1_cache_policy", 2, "20:18", v=6), B("src_sw", 2, "25:24"),
        B("src_cache_policy", 2, "28:26", v=6), Q("src_addr", 3), Q("dst1_addr", 5), Q("dst2_addr", 7)],
        sel=(BROADCAST, BROADCAST), length=9, nat=[_count_nat()]),
    S("COPY_TILED", 1, 1, [B("tmz", 0, 18), B("detile", 0, 31), Q("tiled_addr", 1), Q("linear_addr", 8)],
      sel=(BROADCAST, 0), length=13),
    S("COPY_L2T_BROADCAST", 1, 1, [B("tmz", 0, 18), Q("tiled_addr0", 1), Q("tiled_addr1", 3),
                                   Q("linear_addr", 11)], sel=(BROADCAST, BROADCAST), length=16),
    S("COPY_SOA", 1, 3, [B("tmz", 0, 18), Q("sb_addr", 1), D("start_index", 3), D("count", 4),
                         B("stride", 5, "10:0"), Q("linear_addr", 6)], length=8),
    S("COPY_LINEAR_SUB_WIND", 1, 4, [B("tmz", 0, 18), B("elementsize", 0, "31:29"), Q("src_addr", 1),
                                     Q("dst_addr", 6)], length=13),
    S("COPY_TILED_SUB_WIND", 1, 5, [B("tmz", 0, 18), Q("tiled_addr", 1), Q("linear_addr", 7)], length=14, v=4),
    S("COPY_TILED_SUB_WIND", 1, 5, [B("tmz", 0, 18), Q("tiled_addr", 1), Q("linear_addr", 7),
                                    Q("meta_addr", 14)], length=17, v=V5P),
    S("COPY_T2T_SUB_WIND", 1, 6, [B("tmz", 0, 18), Q("src_addr", 1), Q("dst_addr", 7)], length=15, v=4),
    S("COPY_T2T_SUB_WIND", 1, 6, [B("tmz", 0, 18), Q("src_addr", 1), Q("dst_addr", 7), Q("meta_addr", 15)],
      length=18, v=V5P),
    S("COPY_DIRTY_PAGE", 1, 7, [B("tmz", 0, 18), B("all", 0, 31), B("count", 1, "21:0"), Q("src_addr", 3),
                                Q("dst_addr", 5)], length=7),
    S("COPY_LINEAR_PHY", 1, 8, [B("tmz", 0, 18), B("count", 1, "21:0"), Q("src_addr", 3), Q("dst_addr", 5)],
      length=7),
    S("COPY_LINEAR_BC", 1, 16, [B("count", 1, "21:0"), B("dst_sw", 2, "17:16"), B("src_sw", 2, "25:24"),
                                Q("src_addr", 3), Q("dst_addr", 5)], length=7, v=V5P),
    S("COPY_TILED_BC", 1, 17, [B("detile", 0, 31), Q("tiled_addr", 1), Q("linear_addr", 8)], length=13, v=V5P),
    S("COPY_LINEAR_SUB_WIND_BC", 1, 20, [B("elementsize", 0, "31:29"), Q("src_addr", 1), Q("dst_addr", 6)],
      length=13, v=V5P),
    S("COPY_TILED_SUB_WIND_BC", 1, 21, [B("detile", 0, 31), Q("tiled_addr", 1), Q("linear_addr", 7)],
      length=14, v=V5P),
    S("COPY_T2T_SUB_WIND_BC", 1, 22, [Q("src_addr", 1), Q("dst_addr", 7)], length=15, v=V5P),
    S("COPY_LINEAR_SUB_WIND_LARGE", 1, 36, [B("tmz", 0, 18), Q("src_addr", 1), Q("dst_addr", 9)],
      length=20, v=6),
    # ---- WRITE (op 2) ----
    S("WRITE_UNTILED", 2, 0, [
        B("encrypt", 0, 16), B("tmz", 0, 18), B("cpv", 0, 28, v=6), Q("dst_addr", 1), B("count", 3, "19:0"),
        B("sw", 3, "25:24"), B("cache_policy", 3, "28:26", v=6)], tail="data", tail_start=4, length_fn=_WRITE_LEN),
    S("WRITE_TILED", 2, 1, [B("tmz", 0, 18), Q("dst_addr", 1), B("count", 8, "19:0")], tail="data",
      tail_start=9, length_fn=(9, "9 + (d8 & 0xFFFFF) + 1")),
    S("WRITE_TILED_BC", 2, 17, [Q("dst_addr", 1), B("count", 8, "21:2")], tail="data", tail_start=9,
      length_fn=(9, "9 + ((d8 >> 2) & 0xFFFFF) + 1"), v=V5P),
    # ---- control ----
    S("INDIRECT", 4, 0, [B("vmid", 0, "19:16"), B("priv", 0, 31, v=V5P), Q("ib_addr", 1),
                         B("ib_size", 3, "19:0"), Q("csa_addr", 4)], length=6, refs=("sdma_ib", "ib_addr", "ib_size")),
    S("FENCE", 5, 0, [
        B("mtype", 0, "18:16", v=V5P), B("gcc", 0, 19, v=V5P), B("sys", 0, 20, v=V5P), B("snp", 0, 22, v=V5P),
        B("gpa", 0, 23, v=V5P), B("l2_policy", 0, "25:24", v=V5P), B("llc_policy", 0, 26, v=6),
        B("cpv", 0, 28, v=6), Q("addr", 1), D("data", 3)], length=4),
    S("TRAP", 6, 0, [B("int_context", 1, "27:0")], length=2),
    S("SEM", 7, 0, [B("write_one", 0, 29), B("signal", 0, 30), B("mailbox", 0, 31), Q("addr", 1)], length=3),
    S("POLL_REGMEM", 8, 0, [
        B("cache_policy", 0, "22:20", v=6), B("cpv", 0, 24, v=6), B("hdp_flush", 0, 26), B("func", 0, "30:28"),
        B("mem_poll", 0, 31), Q("addr", 1), D("value", 3), D("mask", 4), B("interval", 5, "15:0"),
        B("retry_count", 5, "27:16")], length=6),
    S("POLL_REG_WRITE_MEM", 8, 1, [P("src_reg", (1, "31:2", 2)), Q("dst_addr", 2)], length=4),
    S("POLL_DBIT_WRITE_MEM", 8, 2, [B("ea", 0, "17:16"), Q("dst_addr", 1), P("start_page_addr", (3, "31:4", 4)),
                                    D("page_num", 4)], length=5),
    S("POLL_MEM_VERIFY", 8, 3, [B("mode", 0, 31), D("pattern", 1), Q("cmp0_start_addr", 2), Q("cmp0_end_addr", 4),
                                Q("cmp1_start_addr", 6), Q("cmp1_end_addr", 8), Q("rec_addr", 10)], length=13),
    S("VM_INVALIDATION", 8, 4, [B("gfx_eng_id", 0, "20:16"), B("mm_eng_id", 0, "28:24"), D("invalidatereq", 1),
                                D("addressrangelo", 2), B("invalidateack", 3, "15:0"),
                                B("addressrangehi", 3, "20:16")], length=4, v=V5P),
    S("COND_EXE", 9, 0, [B("cache_policy", 0, "26:24", v=6), B("cpv", 0, 28, v=6), Q("addr", 1),
                         D("reference", 3), B("exec_count", 4, "13:0")], length=5),
    S("ATOMIC", 10, 0, [
        B("loop", 0, 16), B("tmz", 0, 18), B("cache_policy", 0, "22:20", v=6), B("cpv", 0, 24, v=6),
        B("atomic_op", 0, "31:25"), Q("addr", 1), Q("src_data", 3), Q("cmp_data", 5),
        B("loop_interval", 7, "12:0")], length=8, any_sub=True),
    S("CONST_FILL", 11, 0, [
        B("sw", 0, "17:16"), B("cache_policy", 0, "26:24", v=6), B("cpv", 0, 28, v=6), B("fillsize", 0, "31:30"),
        Q("dst_addr", 1), D("src_data", 3), B("count", 4, "21:0", v=V45), B("count", 4, "29:0", v=6)],
        length=5, nat=[_fill_nat()]),
    S("DATA_FILL_MULTI", 11, 1, [B("memlog_clr", 0, 31), D("byte_stride", 1), D("dma_count", 2),
                                 Q("dst_addr", 3), B("count", 5, "25:0")], length=6),
    S("PTEPDE_GEN", 12, 0, [Q("dst_addr", 1), Q("mask", 3), Q("init", 5), Q("incr", 7), B("count", 9, "18:0")],
      length=10),
    S("PTEPDE_COPY", 12, 1, [B("tmz", 0, 18), B("ptepde_op", 0, 31), Q("src_addr", 1), Q("dst_addr", 3),
                             Q("mask", 5), B("count", 7, "18:0")], length=8),
    S("PTEPDE_RMW", 12, 2, [Q("addr", 1), Q("mask", 3), Q("value", 5)], length=7, v=V45),
    S("PTEPDE_RMW", 12, 2, [Q("addr", 1), Q("mask", 3), Q("value", 5), D("num_of_pte", 7)], length=8, v=6),
    S("PTEPDE_COPY_BACKWARDS", 12, 3, [
        B("pte_size", 0, "29:28"), B("direction", 0, 30), B("ptepde_op", 0, 31), Q("src_addr", 1), Q("dst_addr", 3),
        B("mask_first_xfer", 5, "7:0"), B("mask_last_xfer", 5, "15:8"), B("count", 6, "16:0")], length=7),
    S("TIMESTAMP_SET", 13, 0, [Q("init_data", 1)], length=3),
    S("TIMESTAMP_GET", 13, 1, [B("l2_policy", 0, "25:24", v=6), B("llc_policy", 0, 26, v=6), B("cpv", 0, 28, v=6),
                               Q("write_addr", 1, lo_bits="31:3")], length=3),
    S("TIMESTAMP_GET_GLOBAL", 13, 2, [B("l2_policy", 0, "25:24", v=6), B("llc_policy", 0, 26, v=6),
                                      B("cpv", 0, 28, v=6), Q("write_addr", 1, lo_bits="31:3")], length=3),
    S("SRBM_WRITE", 14, 0, [B("byte_en", 0, "31:28"), B("reg", 1, "17:0"), D("data", 2)], length=3),
    S("PRE_EXE", 15, 0, [B("dev_sel", 0, "23:16"), B("exec_count", 1, "13:0")], length=2),
    S("DUMMY_TRAP", 16, 0, [B("int_context", 1, "27:0")], length=2, v=4),
    S("DUMMY_TRAP", 32, 0, [B("int_context", 1, "27:0")], length=2, v=V5P),
    S("GPUVM_INV", 16, 0, [
        B("per_vmid_inv_req", 1, "15:0"), B("flush_type", 1, "18:16"), B("l2_ptes", 1, 19), B("l2_pde0", 1, 20),
        B("l2_pde1", 1, 21), B("l2_pde2", 1, 22), B("l1_ptes", 1, 23), B("clr_protection_fault_status_addr", 1, 24),
        B("log_request", 1, 25), B("four_kilobytes", 1, 26), B("s", 2, 0), B("page_va_42_12", 2, "31:1"),
        B("page_va_47_43", 3, "5:0")], length=4, v=V5P),
    S("GCR_REQ", 17, 0, [
        P("base_va", (1, "31:7", 7), (2, "15:0", 32)), P("gcr_control", (2, "31:16", 0), (3, "2:0", 16)),
        P("limit_va", (3, "31:7", 7), (4, "15:0", 32)), B("vmid", 4, "27:24")], length=5, v=V5P),
    S("GCR_USER", 17, 1, [
        P("base_va", (1, "31:7", 7), (2, "15:0", 32)), P("gcr_control", (2, "31:16", 0), (3, "2:0", 16)),
        P("limit_va", (3, "31:7", 7), (4, "15:0", 32))], length=5, v=V5P),
]
BY_NAME: dict[str, list[Layout]] = {}
for _l in PACKETS:
    BY_NAME.setdefault(_l.name, []).append(_l)
FIELD_META[ENGINE] = {}
for _l in PACKETS:
    FIELD_META[ENGINE].setdefault(_l.name, {}).update({f.name: f for f in _l.fields})


# ------------------------------------------------------------------------------------------------
# Decoder generation
# ------------------------------------------------------------------------------------------------
_COMPILED: dict[tuple[int, int], Compiled] = {}
_TABLES: dict[int, dict[int, Callable]] = {}


def compiled(layout: Layout, key) -> Compiled:
    k = (id(layout), key)
    c = _COMPILED.get(k)
    if c is None:
        c = _COMPILED[k] = Compiled(layout, key, ENGINE)
    return c


def _gen_decoder(c: Compiled) -> Callable:
    fname = "dec_" + ident(c.name)
    lay = c.layout
    lines = [f"def {fname}(d, p, e, o):"]
    if lay.length_fn:
        need, expr = lay.length_fn
        lines.append(f"    if p + {need} > e: return _trunc({ENGINE!r}, d, p, e, o, {c.name!r}, {need})")
        for i in range(need):
            lines.append(f"    d{i} = d[p + {i}]")
        lines.append(f"    n = {expr}")
    else:
        lines.append(f"    n = {c.length}")
    lines.append(f"    if p + n > e: return _trunc({ENGINE!r}, d, p, e, o, {c.name!r}, n)")
    lines += c.body_code("n")
    lines.append(f"    return Packet({ENGINE!r}, o, {c.name!r}, n, f, raw, None, r)")
    return compile_function("\n".join(lines), fname, {"Packet": Packet, "_trunc": truncated})


def _unknown(d, p, e, o):
    h = d[p]
    return Packet(ENGINE, o, "UNKNOWN", 1, {"op": h & 0xFF, "sub_op": (h >> 8) & 0xFF}, (h,),
                  f"unknown SDMA op {h & 0xFF} sub-op {(h >> 8) & 0xFF} (header {h:#010x})")


def _table(key) -> dict[int, Callable]:
    """{op | sub << 8: decoder(d, p, end, offset)} for one generation."""
    t = _TABLES.get(key)
    if t is not None:
        return t
    if key not in VARIANTS:
        raise PacketError(f"no SDMA tables for packet generation {key}")
    groups: dict[int, list[Compiled]] = {}
    for lay in PACKETS:
        if lay.applies(key):
            subs = range(256) if lay.any_sub else (lay.sub,)
            for s in subs:
                groups.setdefault(lay.op | s << 8, []).append(compiled(lay, key))
    t = {}
    for k, cs in groups.items():
        if len(cs) == 1 and cs[0].layout.sel == (0, 0):
            t[k] = _gen_decoder(cs[0])
        else:
            t[k] = _selector([(c.layout.sel, _gen_decoder(c)) for c in cs])
    _TABLES[key] = t
    return t


def _selector(choices) -> Callable:
    def dec(d, p, e, o):
        h = d[p]
        for (mask, val), fn in choices:
            if h & mask == val:
                return fn(d, p, e, o)
        return _unknown(d, p, e, o)
    return dec


# ------------------------------------------------------------------------------------------------
# Public decoding API
# ------------------------------------------------------------------------------------------------
def decode_one(dwords, pos: int, family) -> Packet:
    """Decode the packet at dword ``pos`` (its ``offset`` is ``pos``). ``dwords`` may be a list
    (used in place) or a numpy array/bytes (only the packet's window is converted)."""
    tbl = _table(sdma_key(family))
    if isinstance(dwords, list):
        if not 0 <= pos < len(dwords):
            raise PacketError(f"SDMA position {pos} is outside the {len(dwords)}-dword stream")
        dec = tbl.get(dwords[pos] & 0xFFFF)
        return dec(dwords, pos, len(dwords), pos) if dec is not None else _unknown(dwords, pos, len(dwords), pos)
    arr = as_array(dwords)
    if not 0 <= pos < len(arr):
        raise PacketError(f"SDMA position {pos} is outside the {len(arr)}-dword stream")
    d = arr[pos:pos + 32].tolist()
    dec = tbl.get(d[0] & 0xFFFF)
    if dec is None:
        return _unknown(d, 0, len(d), pos)
    pkt = dec(d, 0, len(d), pos)
    if pkt.name == "TRUNCATED" and len(arr) - pos > len(d):   # a WRITE/NOP longer than the window
        d = arr[pos:].tolist()
        pkt = dec(d, 0, len(d), pos)
    return pkt


def decode(dwords, family=None, *, offset: int = 0, end: int | None = None, follow=None,
           max_depth: int = 4) -> list[Packet]:
    """Decode an SDMA stream (ring contents or an IB) from dword ``offset`` to ``end``. With
    ``follow(addr, ndwords)`` the packets of each INDIRECT buffer follow it (depth + 1)."""
    d = as_dwords(dwords)
    out: list[Packet] = []
    with no_gc():
        _walk(d, offset, len(d) if end is None else min(end, len(d)), _table(sdma_key(family)), out,
              follow, max_depth, 0, None)
    return out


def _walk(d, p, e, tbl, out, follow, max_depth, depth, parent) -> None:
    app = out.append
    get = tbl.get
    following = follow is not None and depth < max_depth
    while p < e:
        dec = get(d[p] & 0xFFFF)
        pkt = dec(d, p, e, p) if dec is not None else _unknown(d, p, e, p)
        if depth:
            pkt.depth = depth
            pkt.parent = parent
        app(pkt)
        if following and pkt.refs:
            idx = len(out) - 1
            for ib, n in followed_ibs(pkt, "sdma_ib", follow):
                _walk(ib, 0, n, tbl, out, follow, max_depth, depth + 1, idx)
        p += pkt.length


_LEN_TABLES: dict[int, np.ndarray] = {}
_CANDIDATE: dict[int, np.ndarray] = {}


def _len_table(key) -> np.ndarray:
    """Fixed length per 16-bit (op | sub << 8); 0 where the length needs more than the header."""
    t = _LEN_TABLES.get(key)
    if t is None:
        t = np.ones(1 << 16, np.int64)
        for lay in PACKETS:
            if lay.applies(key):
                subs = range(256) if lay.any_sub else (lay.sub,)
                for s in subs:
                    t[lay.op | s << 8] = 0 if (lay.length_fn or lay.sel != (0, 0)) else lay.length
        _LEN_TABLES[key] = t
        cand = t != 1                              # known (op, sub-op); every packet but NOP is > 1 dword
        cand[0] = False                            # zero dwords (NOP padding) are too common in bodies
        _CANDIDATE[key] = cand
    return t


def scan(dwords, family=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packet boundaries without decoding: (offsets, opcodes, lengths), int64 arrays. The length a
    packet would have at every dword position is computed at once (table lookup on op | sub-op,
    then the NOP/WRITE/broadcast rules on the positions that need them); the hop from packet to
    packet is `table.chain_offsets`. ``opcodes`` = op | sub_op << 8."""
    key = sdma_key(family)
    _len_table(key)
    a = as_array(dwords)
    n = len(a)
    if not n:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    k = (a & 0xFFFF).astype(np.int64)
    ln = _len_table(key)[k]
    special = np.flatnonzero(ln == 0)
    if len(special):
        ks = k[special]
        h = a[special].astype(np.int64)
        ls = np.ones(len(special), np.int64)

        def at(delta, m):                          # dword `delta` after each header (0 past the end)
            idx = special[m] + delta
            return np.where(idx < n, a[np.minimum(idx, n - 1)], 0).astype(np.int64)

        m = ks == 0x0000
        ls[m] = 1 + ((h[m] >> 16) & 0x3FFF)
        m = ks == 0x0001
        ls[m] = np.where(h[m] & BROADCAST, 9, 7)
        m = ks == 0x0101
        ls[m] = np.where(h[m] & BROADCAST, 16, 13)
        m = ks == 0x0002
        ls[m] = 5 + (at(3, m) & 0xFFFFF)
        m = ks == 0x0102
        ls[m] = 10 + (at(8, m) & 0xFFFFF)
        m = ks == 0x1102
        ls[m] = 10 + ((at(8, m) >> 2) & 0xFFFFF)
        ln[special] = ls
    offs = chain_offsets(ln, _CANDIDATE[key][k])   # walkers start on known non-NOP headers
    return offs, k[offs], ln[offs]


# ------------------------------------------------------------------------------------------------
# Builder
# ------------------------------------------------------------------------------------------------
def build(name: str, family=None, **fields) -> list[int]:
    """The dwords of one SDMA packet for ``family``'s packet generation (None: v4). Values are
    range-checked; fields of other generations (FENCE ``mtype`` on v4, …) are rejected."""
    fam = resolve_family(family)
    key = sdma_key(fam)
    uname = name.upper()
    where = f"SDMA {uname}"
    layouts = BY_NAME.get(uname)
    if not layouts:
        raise PacketError(f"unknown SDMA packet {name!r}; known: {', '.join(sorted(BY_NAME))}")
    lay = next((l for l in layouts if l.applies(key)), None)
    if lay is None:
        gens = sorted({v for l in layouts for v in (l.v or ())})
        raise PacketError(f"{where} does not exist in SDMA v{key} packets (only v{', v'.join(map(str, gens))})")
    c = compiled(lay, key)
    fields = dict(fields)
    if uname in ("WRITE_UNTILED", "WRITE_TILED", "WRITE_TILED_BC"):
        data = fields.get("data")
        if not data:
            raise PacketError(f"{where} needs data (a non-empty list of dwords)")
        if "count" in fields and fields["count"] != len(data) - 1:
            raise PacketError(f"{where}: count={fields['count']} contradicts {len(data)} data dwords (count = dwords - 1)")
        fields["count"] = len(data) - 1
    elif uname == "NOP":
        data = fields.get("data")
        if data is None:
            fields["data"] = [0] * fields.get("count", 0)
        elif "count" in fields and fields["count"] != len(data):
            raise PacketError(f"{where}: count={fields['count']} contradicts {len(data)} data dwords")
        fields["count"] = len(fields["data"])
    dws, given = c.encode(fields, {"family": fam}, where)
    dws[0] |= lay.op | (lay.sub << 8) | lay.sel[1]
    c.verify(dws, given, where)
    return dws


# ------------------------------------------------------------------------------------------------
# Summaries
# ------------------------------------------------------------------------------------------------
def summary(p: Packet, family=None) -> str:
    f = p.fields
    extra = []
    skip = []
    if p.name == "NOP":
        return "NOP" if p.length == 1 else f"NOP count={f.get('count')} ({p.length} dwords)"
    if "byte_count" in f:
        skip.append("count")
    if p.name == "POLL_REGMEM":
        extra.append(f"[{'mem' if f.get('mem_poll') else 'reg'} {POLL_FUNCTIONS.get(f.get('func'), '?')} value]")
    if p.name in ("WRITE_UNTILED", "WRITE_TILED", "WRITE_TILED_BC"):
        skip.append("count")
    return default_summary(p, skip=skip, extra=extra)


SUMMARY[ENGINE] = summary
