"""AQL (HSA) packets: 64-byte slots of an AQL queue (reference §5; hsa.h, hsa_ext_amd.h,
amd_aql_queue.cpp). The format is the same on every family; the family only matters for the
PM4 inside AMD_AQL_FORMAT_PM4_IB vendor packets.

Layouts are declared in dwords of the slot (dword i = bytes 4i..4i+3), with the byte offsets of
§5 in the comments. Offsets of decoded packets are byte offsets (slot × 64). ``value``/``mask`` of
a barrier-value packet are signed 64-bit (hsa_signal_value_t); everything else is unsigned.
"""
from __future__ import annotations

import struct
from typing import Callable

import numpy as np

from kfdtrace.errors import PacketError
from kfdtrace.packets import pm4
from kfdtrace.packets.table import (followed_ibs, B, D, FIELD_META, SUMMARY, Compiled, Field, Layout, Packet, Q,
                                    as_dwords, compile_function, default_summary, ident, no_gc, truncated)

ENGINE = "aql"
SLOT = 64
TYPES = {0: "VENDOR_SPECIFIC", 1: "INVALID", 2: "KERNEL_DISPATCH", 3: "BARRIER_AND", 4: "AGENT_DISPATCH",
         5: "BARRIER_OR"}
FORMATS = {1: "PM4_IB", 2: "BARRIER_VALUE", 3: "AIE_ERT"}   # AMD vendor packet AmdFormat
SCOPES = {0: "none", 1: "agent", 2: "system"}
CONDITIONS = {0: "==", 1: "!=", 2: "<", 3: ">="}
IB_HEADER = pm4.header(0x3F, 2)          # PM4 INDIRECT_BUFFER, count 2 (the embedded packet)

HDR = [B("barrier", 0, 8), B("acquire_fence_scope", 0, "10:9"), B("release_fence_scope", 0, "12:11")]
SIGNAL = Q("completion_signal", 14)      # @56


def A(name: str, type_: int, fields, fmt: int | None = None, refs=None) -> Layout:
    return Layout(name, HDR + list(fields), length=16, type=type_, fmt=fmt, refs=refs)


PACKETS: list[Layout] = [
    A("KERNEL_DISPATCH", 2, [
        Field("setup", [(0, 16, 16, 0)], view=True), B("dimensions", 0, "17:16"),      # @2
        B("workgroup_size_x", 1, "15:0"), B("workgroup_size_y", 1, "31:16"),          # @4 @6
        B("workgroup_size_z", 2, "15:0"), B("reserved0", 2, "31:16"),                 # @8 @10
        D("grid_size_x", 3), D("grid_size_y", 4), D("grid_size_z", 5),                # @12 @16 @20
        D("private_segment_size", 6), D("group_segment_size", 7),                     # @24 @28
        Q("kernel_object", 8), Q("kernarg_address", 10), Q("reserved2", 12), SIGNAL]),  # @32 @40 @48 @56
    A("BARRIER_AND", 3, [B("reserved0", 0, "31:16"), D("reserved1", 1), Q("dep_signal", 2, array=5),
                         Q("reserved2", 12), SIGNAL]),                                 # deps @8..@47
    A("BARRIER_OR", 5, [B("reserved0", 0, "31:16"), D("reserved1", 1), Q("dep_signal", 2, array=5),
                        Q("reserved2", 12), SIGNAL]),
    A("AGENT_DISPATCH", 4, [B("dispatch_type", 0, "31:16"), D("reserved0", 1), Q("return_address", 2),  # @2 @4 @8
                            Q("arg", 4, array=4), Q("reserved2", 12), SIGNAL]),        # arg @16..@47
    A("INVALID", 1, [B("reserved0", 0, "31:16")]),
    A("PM4_IB", 0, [                                                                   # ven_hdr @2 = 1
        B("reserved", 0, "31:24"), D("pm4_header", 1, default=IB_HEADER),               # PM4 IB @4..@19
        B("swap", 2, "1:0"), Q("ib_addr", 2, 3, lo_bits="31:2"), B("ib_size", 4, "19:0"), B("chain", 4, 20),
        B("valid", 4, 23, default=1), B("vmid", 4, "27:24"), B("cache_policy", 4, "29:28"),
        D("dw_cnt_remain", 5, default=0xA), SIGNAL], fmt=1, refs=("pm4_ib", "ib_addr", "ib_size")),  # @20 @56
    A("BARRIER_VALUE", 0, [B("reserved", 0, "31:24"), Q("signal", 2), Q("value", 4, signed=True),   # @8 @16
                           Q("mask", 6, signed=True), D("cond", 8), D("reserved1", 9),  # @24 @32 @36
                           Q("reserved2", 10), Q("reserved3", 12), SIGNAL], fmt=2),
]
BY_NAME = {l.name: l for l in PACKETS}
FIELD_META[ENGINE] = {l.name: {f.name: f for f in l.fields} for l in PACKETS}
FIELD_META[ENGINE]["VENDOR_SPECIFIC"] = {f.name: f for f in HDR}
FIELD_META[ENGINE]["AIE_ERT"] = {f.name: f for f in HDR}


def _compile(lay: Layout) -> tuple[Compiled, Callable]:
    c = Compiled(lay, None, ENGINE)
    fname = "dec_" + ident(c.name)
    lines = [f"def {fname}(d, p, o):", "    n = 16"] + c.body_code("16")
    if c.name == "PM4_IB":
        lines.append(f"    err = None if d1 == {IB_HEADER} else 'embedded PM4 header %#010x is not INDIRECT_BUFFER' % d1")
        lines.append("    if err: r = []")
    else:
        lines.append("    err = None")
    lines.append(f"    return Packet({ENGINE!r}, o, {c.name!r}, 16, f, raw, err, r)")
    return c, compile_function("\n".join(lines), fname, {"Packet": Packet})


_COMPILED: dict[str, tuple[Compiled, Callable]] = {l.name: _compile(l) for l in PACKETS}
_BY_TYPE: dict[int, Callable] = {l.type: _COMPILED[l.name][1] for l in PACKETS if l.type}
_BY_FORMAT: dict[int, Callable] = {l.fmt: _COMPILED[l.name][1] for l in PACKETS if l.type == 0}


def _generic(d, p, o, name, error=None, **extra) -> Packet:
    h = d[p]
    f = {"barrier": (h >> 8) & 1, "acquire_fence_scope": (h >> 9) & 3, "release_fence_scope": (h >> 11) & 3,
         **extra, "body": d[p + 1:p + 16]}
    return Packet(ENGINE, o, name, 16, f, tuple(d[p:p + 16]), error)


def _one(d: list, p: int, o: int) -> Packet:
    h = d[p]
    t = h & 0xFF
    if t == 0:
        fmt = (h >> 16) & 0xFF
        dec = _BY_FORMAT.get(fmt)
        if dec is not None:
            return dec(d, p, o)
        return _generic(d, p, o, FORMATS.get(fmt, "VENDOR_SPECIFIC"), amd_format=fmt)
    dec = _BY_TYPE.get(t)
    if dec is not None:
        return dec(d, p, o)
    return _generic(d, p, o, "UNKNOWN", f"unknown AQL packet type {t}", type=t)


def _slots(buf) -> list[int]:
    """Dwords of an AQL buffer; a trailing partial dword is kept (it ends a TRUNCATED packet)."""
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            return as_dwords(buf)
        buf = buf.tobytes()
    if isinstance(buf, list):
        return buf
    b = bytes(buf)
    whole = len(b) - len(b) % 4
    return np.frombuffer(b[:whole], "<u4").tolist() + ([int.from_bytes(b[whole:], "little")] if len(b) % 4 else [])


def decode_one(buf, slot_offset: int, family=None) -> Packet:
    """Decode the 64-byte packet at byte ``slot_offset`` (a multiple of 64 in a ring); only that
    slot of ``buf`` (bytes, numpy array or list of dwords) is converted."""
    if slot_offset % 4:
        raise PacketError(f"AQL packet offset {slot_offset} is not dword aligned")
    p = slot_offset // 4
    if isinstance(buf, list):
        d = buf
    elif isinstance(buf, np.ndarray) and buf.dtype == np.uint32:
        d, p = buf[p:p + 16].tolist(), 0
    else:
        raw = buf.tobytes() if isinstance(buf, np.ndarray) else buf
        d, p = _slots(raw[slot_offset:slot_offset + SLOT]), 0
    if not 0 <= p < len(d):
        raise PacketError(f"AQL packet offset {slot_offset} is outside the buffer")
    if p + 16 > len(d):
        return truncated(ENGINE, d, p, len(d), slot_offset, "AQL packet", 16)
    return _one(d, p, slot_offset)


def decode(buf, *, offset: int = 0, family=None, follow=None, end: int | None = None,
           max_depth: int = 4) -> list[Packet]:
    """Decode every 64-byte slot of ``buf`` (bytes or a numpy array) from byte ``offset``. INVALID
    slots are reported as INVALID packets. With ``follow(addr, ndwords)`` the PM4 of each
    PM4_IB vendor packet is decoded after it (depth 1, ``parent`` = its index)."""
    if offset % 4:
        raise PacketError(f"AQL offset {offset} is not dword aligned")
    d = _slots(buf)
    e = len(d) if end is None else min(len(d), end // 4)
    out: list[Packet] = []
    with no_gc():
        _walk(d, offset // 4, e, out, family, follow, max_depth)
    return out


def _walk(d: list, p: int, e: int, out: list, family, follow, max_depth: int) -> None:
    while p < e:
        if p + 16 > e:
            out.append(truncated(ENGINE, d, p, e, p * 4, "AQL packet", 16))
            break
        pkt = _one(d, p, p * 4)
        out.append(pkt)
        if pkt.refs and follow is not None and max_depth > 0:
            idx = len(out) - 1
            for ib, n in followed_ibs(pkt, None, follow):
                base = len(out)
                for child in pm4.decode(ib, family, end=n, follow=follow, max_depth=max_depth - 1):
                    child.depth += 1
                    child.parent = idx if child.parent is None else child.parent + base
                    out.append(child)
        p += 16


def build(name: str, family=None, **fields) -> bytes:
    """One 64-byte AQL packet. The header type (and vendor format) follow from ``name``; the
    PM4_IB packet defaults to the embedded IB header, VALID and dw_cnt_remain = 0xA (§3.3)."""
    uname = name.upper()
    lay = BY_NAME.get(uname)
    if lay is None:
        raise PacketError(f"unknown AQL packet {name!r}; known: {', '.join(BY_NAME)}")
    c, _ = _COMPILED[uname]
    where = f"AQL {uname}"
    dws, given = c.encode(fields, {"family": family}, where)
    dws[0] |= lay.type | ((lay.fmt or 0) << 16)
    c.verify(dws, given, where)
    return struct.pack("<16I", *dws)


def summary(p: Packet, family=None) -> str:
    f = p.fields
    extra = []
    if p.name not in ("TRUNCATED",) and "acquire_fence_scope" in f:
        extra.append(f"acq={SCOPES.get(f['acquire_fence_scope'], f['acquire_fence_scope'])}"
                     f" rel={SCOPES.get(f['release_fence_scope'], f['release_fence_scope'])}")
    skip = ["acquire_fence_scope", "release_fence_scope", "setup", "reserved0", "reserved1", "reserved2",
            "reserved3", "reserved"]
    if p.name == "KERNEL_DISPATCH":
        extra.append(f"grid=({f['grid_size_x']},{f['grid_size_y']},{f['grid_size_z']})"
                     f" wg=({f['workgroup_size_x']},{f['workgroup_size_y']},{f['workgroup_size_z']})")
        skip += [k for k in f if k.startswith(("grid_size", "workgroup_size"))]
    if p.name == "BARRIER_VALUE" and "cond" in f:
        extra.append(f"[(*signal & mask) {CONDITIONS.get(f['cond'], '?')} value]")
    if p.name in ("BARRIER_AND", "BARRIER_OR") and "dep_signal" in f:
        extra.append("deps=[" + ", ".join(hex(x) for x in f["dep_signal"] if x) + "]")
        skip.append("dep_signal")
    return default_summary(p, skip=skip, extra=extra)


SUMMARY[ENGINE] = summary
