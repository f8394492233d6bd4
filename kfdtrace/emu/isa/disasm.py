"""Disassembler: `Inst` (decoded through tables.py, the executor's table) -> LLVM syntax text.

The syntax follows what llvm-objdump-22 prints for gfx942 / gfx1100, so that the text of every
instruction of the project's kernels matches it (tests/test_isa_disasm.py checks this).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from kfdtrace.emu.isa.decode import Decoder, DecodeError, Inst, Operand
from kfdtrace.emu.isa.tables import TYPES

_FLOAT_NAMES = {240: "0.5", 241: "-0.5", 242: "1.0", 243: "-1.0", 244: "2.0", 245: "-2.0",
                246: "4.0", 247: "-4.0", 248: "0.15915494"}
_INSTID = ("NO_DEP", "VALU_DEP_1", "VALU_DEP_2", "VALU_DEP_3", "VALU_DEP_4", "TRANS32_DEP_1",
           "TRANS32_DEP_2", "TRANS32_DEP_3", "FMA_ACCUM_CYCLE_1", "SALU_CYCLE_1", "SALU_CYCLE_2",
           "SALU_CYCLE_3")
_INSTSKIP = ("SAME", "NEXT", "SKIP_1", "SKIP_2", "SKIP_3", "SKIP_4")
#: gfx11 s_waitcnt_depctr fields: (name, lo bit, width, default)
_DEPCTR = (("hold_cnt", 7, 1, 1), ("sa_sdst", 0, 1, 1), ("va_vdst", 12, 4, 15),
           ("va_sdst", 9, 3, 7), ("va_ssrc", 8, 1, 1), ("va_vcc", 1, 1, 1), ("vm_vsrc", 2, 3, 7))
_MSG = {"gfx9": {1: "MSG_INTERRUPT", 2: "MSG_GS", 3: "MSG_GS_DONE", 4: "MSG_SAVEWAVE",
                 5: "MSG_STALL_WAVE_GEN", 6: "MSG_HALT_WAVES", 7: "MSG_ORDERED_PS_DONE",
                 8: "MSG_EARLY_PRIM_DEALLOC", 9: "MSG_GS_ALLOC_REQ", 10: "MSG_GET_DOORBELL",
                 15: "MSG_SYSMSG"},
        "gfx11": {1: "MSG_INTERRUPT", 3: "MSG_DEALLOC_VGPRS", 9: "MSG_GS_ALLOC_REQ",
                  128: "MSG_RTN_GET_DOORBELL", 129: "MSG_RTN_GET_DDID", 130: "MSG_RTN_GET_TMA",
                  131: "MSG_RTN_GET_REALTIME", 132: "MSG_RTN_SAVE_WAVE", 133: "MSG_RTN_GET_TBA"}}


def _range(prefix: str, r: int, n: int) -> str:
    return f"{prefix}{r}" if n == 1 else f"{prefix}[{r}:{r + n - 1}]"


def sreg_name(isa: str, code: int, n: int) -> str:
    """Name of a scalar-file register (range) as LLVM prints it."""
    pairs = {106: "vcc", 126: "exec"}
    if isa == "gfx9":
        pairs.update({102: "flat_scratch", 104: "xnack_mask"})
    if code in pairs and n <= 2:
        return pairs[code] + ("_lo" if n == 1 else "")
    if code - 1 in pairs and n == 1:
        return pairs[code - 1] + "_hi"
    if code == (125 if isa == "gfx11" else 124):
        return "m0"
    if code == 124 and isa == "gfx11":
        return "null"
    if 108 <= code <= 123:
        return _range("ttmp", code - 108, n)
    return _range("s", code, n)


def _inlinable32(v: int) -> bool:
    s = v - (1 << 32) if v & 0x80000000 else v
    if -16 <= s <= 64:
        return True
    return v in {struct.unpack("<I", struct.pack("<f", x))[0]
                 for x in (0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0)} | {0x3E22F983}


def operand_str(isa: str, o: Operand) -> str:
    k = o.kind
    if k == "v":
        if isa == "gfx11" and TYPES.get(o.typ, (4,))[0] == 2:
            s = f"v{o.reg}.{'h' if o.hi else 'l'}"
        else:
            s = _range("v", o.reg, o.n)
    elif k == "a":
        s = _range("a", o.reg, o.n)
    elif k == "s":
        s = sreg_name(isa, o.reg, o.n)
    elif k == "null":
        s = "null"
    elif k == "x":
        s = o.name
    elif k == "c":
        if o.lit:
            v = o.value >> 32 if o.typ == "f64" else o.value & 0xFFFFFFFF
            s = f"0x{v:x}"
            if TYPES.get(o.typ, (4,))[0] == 4 and _inlinable32(v):
                s = f"lit({s})"
        elif o.code in _FLOAT_NAMES:
            s = _FLOAT_NAMES[o.code]
        else:
            c = o.code
            s = str(c - 128 if c <= 192 else 192 - c)
    else:
        s = "off"
    if o.abs:
        s = f"|{s}|"
    if o.neg:
        s = f"-{s}"
    return s


def _waitcnt(isa: str, imm: int) -> str:
    if isa == "gfx9":
        vm, exp, lgkm = (imm & 0xF) | ((imm >> 14) & 3) << 4, (imm >> 4) & 7, (imm >> 8) & 0xF
        mx = (63, 7, 15)
    else:
        vm, exp, lgkm = (imm >> 10) & 0x3F, imm & 7, (imm >> 4) & 0x3F
        mx = (63, 7, 63)
    vals = (vm, exp, lgkm)
    parts = [f"{n}({v})" for n, v, m in zip(("vmcnt", "expcnt", "lgkmcnt"), vals, mx) if v != m]
    if not parts:
        parts = [f"{n}({v})" for n, v in zip(("vmcnt", "expcnt", "lgkmcnt"), vals)]
    return " ".join(parts)


def _sopp_operand(inst: Inst) -> str:
    style, imm, isa = inst.op.types, inst.imm, inst.isa
    k = inst.op.kind
    if k in ("branch", "cbranch"):
        return str(imm)
    if style == "dec":
        return str(imm)
    if style == "hex":
        return f"0x{imm:x}"
    if style == "waitcnt":
        return _waitcnt(isa, imm)
    if style == "sendmsg":
        return f"sendmsg({_MSG[isa].get(imm & 0xFF, imm & 0xFF)})"
    if style == "delay_alu":
        id0, skip, id1 = imm & 0xF, (imm >> 4) & 7, (imm >> 7) & 0xF
        parts = []
        if id0:
            parts.append(f"instid0({_INSTID[id0] if id0 < len(_INSTID) else id0})")
        if skip:
            parts.append(f"instskip({_INSTSKIP[skip] if skip < len(_INSTSKIP) else skip})")
        if id1:
            parts.append(f"instid1({_INSTID[id1] if id1 < len(_INSTID) else id1})")
        return " | ".join(parts) or "0"
    if style == "depctr":
        parts = [f"depctr_{n}({(imm >> lo) & ((1 << w) - 1)})" for n, lo, w, d in _DEPCTR
                 if (imm >> lo) & ((1 << w) - 1) != d]
        return " ".join(parts) or f"0x{imm:x}"
    return ""


def _opsel_str(inst: Inst, nsrc: int) -> str:
    if not inst.opsel:
        return ""
    bits = [(inst.opsel >> j) & 1 for j in range(nsrc)] + [(inst.opsel >> 3) & 1]
    return " op_sel:[" + ",".join(map(str, bits)) + "]"


def _vop_text(inst: Inst) -> str:
    """Operands of VOP1/VOP2/VOPC/VOP3/VOP3P instructions."""
    isa, op, k = inst.isa, inst.op, inst.op.kind
    S = lambda o: operand_str(isa, o)  # noqa: E731
    srcs = inst.srcs
    e64 = inst.fmt == "VOP3"
    if k == "vnop":
        return ""
    if k in ("cmp", "cmpx"):
        ops = ([S(inst.sdst)] if inst.sdst is not None else []) + [S(s) for s in srcs]
    elif k in ("co", "cico", "mad64"):
        ops = [S(inst.dst), S(inst.sdst)] + [S(s) for s in srcs]
    elif k == "mac":
        ops = [S(inst.dst)] + [S(s) for s in srcs[:2]]
    else:
        ops = [S(inst.dst)] + [S(s) for s in srcs]
    text = ", ".join(ops)
    if e64:
        if inst.clamp:
            text += " clamp"
        if inst.omod:
            text += {1: " mul:2", 2: " mul:4", 3: " div:2"}[inst.omod]
        sixteen = any(TYPES.get(t, (4,))[0] == 2 for t in (op.dst, *op.srcs) if t)
        if sixteen:
            n = len(op.srcs) if k != "mac" else 2
            text += _opsel_str(inst, n)
    return text


def _ds_text(inst: Inst) -> str:
    f, sem, isa = inst.fields, inst.op.sem, inst.isa
    what, size = sem[0], sem[1]
    n = max(1, size // 4)
    v = lambda r, m=1: _range("v", r, m)  # noqa: E731
    off16 = f["offset0"] | f["offset1"] << 8
    if what == "load":
        ops = [v(f["vdst"], n), v(f["addr"])]
    elif what == "store":
        ops = [v(f["addr"]), v(f["data0"], n)]
    elif what == "load2":
        ops = [v(f["vdst"], 2 * n), v(f["addr"])]
    elif what == "store2":
        ops = [v(f["addr"]), v(f["data0"], n), v(f["data1"], n)]
    elif what == "atomic":
        ops = ([v(f["vdst"], n)] if sem[3] else []) + [v(f["addr"]), v(f["data0"], n)]
    else:  # permute
        ops = [v(f["vdst"]), v(f["addr"]), v(f["data0"])]
    text = ", ".join(ops)
    if what in ("load2", "store2"):
        if f["offset0"]:
            text += f" offset0:{f['offset0']}"
        if f["offset1"]:
            text += f" offset1:{f['offset1']}"
    elif off16:
        text += f" offset:{off16}"
    if f["gds"]:
        text += " gds"
    return text


def _flat_text(inst: Inst) -> str:
    f, (what, size, extra), isa = inst.fields, inst.op.sem, inst.isa
    seg = f["seg"]
    n = max(1, size // 4)
    if what == "atomic" and extra == "cmpswap":
        dn = 2 * n
    else:
        dn = n
    v = _range
    if seg == "scratch":
        addr = v("v", f["addr"], 1) if f["vaddr_used"] else "off"
    elif seg == "global" and f["saddr"] is not None:
        addr = v("v", f["addr"], 1)
    else:
        addr = v("v", f["addr"], 2)
    saddr = None if seg == "flat" else (sreg_name(isa, f["saddr"], 1 if seg == "scratch" else 2)
                                        if f["saddr"] is not None else "off")
    if what == "load":
        ops = [v("v", f["vdst"], n), addr]
    elif what == "store":
        ops = [addr, v("v", f["data"], n)]
    else:
        ops = ([v("v", f["vdst"], n)] if f["return"] else []) + [addr, v("v", f["data"], dn)]
    if saddr is not None:
        ops.append(saddr)
    text = ", ".join(ops)
    if f["offset"]:
        text += f" offset:{f['offset']}"
    if isa == "gfx11":
        text += "".join(f" {b}" for b in ("glc", "slc", "dlc") if f[b])
    else:
        text += "".join(f" {b}" for b in ("sc0", "nt", "sc1") if f[b])
    return text


def _smem_text(inst: Inst) -> str:
    f, isa = inst.fields, inst.isa
    if inst.op.kind != "sload":
        return ""
    d = sreg_name(isa, inst.dst.reg, inst.dst.n)
    b = sreg_name(isa, inst.srcs[0].reg, 2)
    so = f.get("soffset")
    off = f["offset"]
    if f.get("soffset_only"):
        tail = operand_str(isa, so)
    elif isa == "gfx11":
        if so is not None and off:
            tail = f"{operand_str(isa, so)} offset:0x{off & 0x1FFFFF:x}"
        elif so is not None:
            tail = operand_str(isa, so)
        else:
            tail = f"0x{off & 0x1FFFFF:x}" if off else "null"
    else:
        tail = f"{operand_str(isa, so)} offset:0x{off & 0x1FFFFF:x}" if so is not None \
            else f"0x{off & 0x1FFFFF:x}"
    text = f"{d}, {b}, {tail}"
    if f.get("glc"):
        text += " glc"
    if f.get("dlc"):
        text += " dlc"
    return text


def inst_text(inst: Inst) -> str:
    """`mnemonic operands` of a decoded instruction, as llvm-objdump-22 prints it."""
    fmt, op, isa = inst.fmt, inst.op, inst.isa
    if fmt == "VOPD":
        return " :: ".join(inst_text_part(p) for p in inst.dual)
    k = op.kind
    S = lambda o: operand_str(isa, o)  # noqa: E731
    if fmt in ("SOP2", "SOPC"):
        ops = ([S(inst.dst)] if inst.dst is not None else []) + [S(s) for s in inst.srcs]
        text = ", ".join(ops)
    elif fmt == "SOP1":
        if k == "sendmsg_rtn":
            text = f"{S(inst.dst)}, sendmsg({_MSG[isa].get(inst.imm, inst.imm)})"
        else:
            text = ", ".join(([S(inst.dst)] if inst.dst is not None else []) +
                             [S(s) for s in inst.srcs])
    elif fmt == "SOPK":
        imm = inst.imm
        text = f"{S(inst.dst)}, 0x{imm:x}" if k != "call" else f"{S(inst.dst)}, {imm}"
    elif fmt == "SOPP":
        text = _sopp_operand(inst)
        if k == "endpgm" and inst.imm == 0:
            text = ""
    elif fmt == "SMEM":
        text = _smem_text(inst)
    elif fmt in ("VOP1", "VOP2", "VOPC", "VOP3", "VOP3P"):
        text = _vop_text(inst)
    elif fmt == "DS":
        text = _ds_text(inst)
    elif fmt == "FLAT":
        text = _flat_text(inst)
    elif fmt == "MUBUF":
        bits = inst.fields["bits"]
        text = " ".join(n for n, b in (("sc0", 14), ("nt", 17), ("sc1", 15))
                        if isa == "gfx9" and bits >> b & 1)
    else:
        text = ""
    return f"{inst.mnemonic} {text}".rstrip()


def inst_text_part(p: Inst) -> str:
    isa = p.isa
    ops = [operand_str(isa, p.dst)] + [operand_str(isa, s) for s in
                                       (p.srcs[:2] if p.op.kind in ("mac", "cnd") else p.srcs)]
    return f"{p.name} " + ", ".join(ops)


@dataclass
class Line:
    """One disassembled instruction (or an undecodable word, inst None)."""
    address: int
    raw: bytes
    inst: Inst | None
    text: str


def disassemble(code: bytes, base: int, isa: str, wave64: bool = False):
    """Yield a Line per instruction of `code` (loaded at `base`). Words outside the covered
    instruction set come out as `.long 0x...` lines, one dword each, as llvm-objdump does."""
    dec = Decoder(isa, wave64)
    off = 0
    while off < len(code):
        chunk = code[off:off + 16]
        try:
            inst = dec.decode(chunk, base + off)
            yield Line(base + off, inst.raw, inst, inst_text(inst))
            off += inst.size
        except DecodeError:
            raw = code[off:off + 4]
            yield Line(base + off, raw, None, f".long 0x{int.from_bytes(raw, 'little'):08x}")
            off += 4


# ------------------------------------------------------------------------------------------------
# code objects
# ------------------------------------------------------------------------------------------------
def _isa_of(co) -> str:
    from kfdtrace.emu.isa.tables import isa_for_family
    from kfdtrace.errors import CodeObjectError
    isa = isa_for_family(co.family)
    if isa is None:
        raise CodeObjectError(f"{co.source}: no instruction tables for {co.family.name} "
                              f"(the disassembler covers gfx942/gfx950 and gfx11xx)")
    return isa


def text_section(co) -> tuple[int, bytes]:
    """(address, bytes) of the code object's .text section."""
    import io

    from elftools.elf.elffile import ELFFile

    from kfdtrace.errors import CodeObjectError
    sec = ELFFile(io.BytesIO(co.data)).get_section_by_name(".text")
    if sec is None:
        raise CodeObjectError(f"{co.source}: no .text section")
    return sec["sh_addr"], sec.data()


def disassemble_text(co, wave64: bool | None = None):
    """Every instruction of .text (as llvm-objdump -d walks it). gfx11 defaults to wave32."""
    isa = _isa_of(co)
    addr, data = text_section(co)
    w64 = (isa == "gfx9") if wave64 is None else wave64
    return list(disassemble(data, addr, isa, w64))


def disassemble_kernel(co, name: str):
    """[(label, address, lines)] for a kernel's entry code and its OpenCL body function, decoded
    with the kernel's wave size."""
    isa = _isa_of(co)
    k = co[name]
    img = co.image(0)
    wave64 = isa == "gfx9" or not k.descriptor.wave32
    parts = [(k.name, k.code_vaddr, k.code_size)]
    if k.impl_vaddr is not None:
        parts.append((f"__clang_ocl_kern_imp_{k.name}", k.impl_vaddr, k.impl_size))
    return [(label, a, list(disassemble(img[a:a + n], a, isa, wave64))) for label, a, n in parts]


def format_line(line: Line) -> str:
    words = " ".join(f"{int.from_bytes(line.raw[i:i + 4], 'little'):08x}"
                     for i in range(0, len(line.raw), 4))
    return f"  {line.address:#010x}  {words:<26} {line.text}"
