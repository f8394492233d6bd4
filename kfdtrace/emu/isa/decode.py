"""Machine code -> `Inst` objects, through the instruction table (tables.py).

Bit layouts were taken from the oracle (llvm-mc-22 --show-encoding / -disassemble for gfx942
and gfx1100), per encoding:

    SOP2   [31:30]=10  op[29:23] sdst[22:16] ssrc1[15:8] ssrc0[7:0]
    SOPK   [31:28]=1011 op[27:23] sdst[22:16] simm16[15:0]
    SOP1   [31:23]=1_0111_1101 sdst[22:16] op[15:8] ssrc0[7:0]
    SOPC   [31:23]=1_0111_1110 op[22:16] ssrc1[15:8] ssrc0[7:0]
    SOPP   [31:23]=1_0111_1111 op[22:16] simm16[15:0]
    VOP2   [31]=0 op[30:25] vdst[24:17] vsrc1[16:9] src0[8:0]
    VOP1   [31:25]=0111111 vdst[24:17] op[16:9] src0[8:0]
    VOPC   [31:25]=0111110 op[24:17] vsrc1[16:9] src0[8:0]
    VOP3   gfx9 [31:26]=110100, gfx11 110101: op[25:16] clamp[15] op_sel[14:11] abs[10:8]
           vdst[7:0] (VOP3B/SD: sdst[14:8]) | neg[31:29] omod[28:27] src2[26:18] src1[17:9] src0[8:0]
    VOP3P  gfx9 [31:23]=1_1010_0111, gfx11 [31:24]=1100_1100: op[22:16] (else like VOP3)
    VOPD   gfx11 [31:26]=110010 opX[25:22] opY[21:17] vsrc1X[16:9] srcX0[8:0] |
           vdstX[31:24] vdstY>>1[23:17] vsrc1Y[16:9] srcY0[8:0]
    SMEM   gfx9 [31:26]=110000 op[25:18] imm[17] glc[16] soe[14] sdata[12:6] sbase>>1[5:0] |
           soffset[31:25] offset[20:0];  gfx11 [31:26]=111101 op[25:18] glc[14] dlc[13] ...
    DS     [31:26]=110110 gfx9 op[24:17] gds[16] (acc[25]), gfx11 op[25:18] gds[17];
           offset1[15:8] offset0[7:0] | vdst[31:24] data1[23:16] data0[15:8] addr[7:0]
    FLAT   [31:26]=110111 op[24:18]; gfx9 sc1[25] nt[17] sc0[16] seg[15:14] sve[13] offset[12:0];
           gfx11 seg[17:16] slc[15] glc[14] dlc[13] offset[12:0] |
           vdst[31:24] sve(gfx11)[23] saddr[22:16] data[15:8] addr[7:0]
    MUBUF  [31:26]=111000 op gfx9 [24:18] gfx11 [25:18]

Scalar operand codes (8 bits; a 9-bit VALU source adds 256 for VGPRs): SGPRs, VCC 106/107,
TTMP 108-123, M0 124 (gfx9) / 125 (gfx11), NULL 124 (gfx11), EXEC 126/127, inline integers
128-208, apertures 235-238, inline floats 240-248, VCCZ/EXECZ/SCC 251-253, literal 255.
"""
from __future__ import annotations

import struct

from kfdtrace.emu.isa.tables import TABLES, TYPES, VOPD_OPS, VOPD_TYPES, OpDef

_FLOAT_CONSTS = {240: 0.5, 241: -0.5, 242: 1.0, 243: -1.0, 244: 2.0, 245: -2.0, 246: 4.0,
                 247: -4.0}
_INV2PI = {4: 0x3E22F983, 8: 0x3FC45F306DC9C882, 2: 0x3118}
_SPECIAL = {235: "src_shared_base", 236: "src_shared_limit", 237: "src_private_base",
            238: "src_private_limit", 239: "src_pops_exiting_wave_id", 251: "src_vccz",
            252: "src_execz", 253: "src_scc", 254: "src_lds_direct"}


class DecodeError(Exception):
    """Bytes that are not an instruction of the covered set. `what` names the encoding."""

    def __init__(self, what: str, size: int):
        self.what, self.size = what, size
        super().__init__(what)


def _fbits(x: float, nbytes: int) -> int:
    fmt = {2: "<e", 4: "<f", 8: "<d"}[nbytes]
    return int.from_bytes(struct.pack(fmt, x), "little")


class Operand:
    """A decoded operand. kind: 'v' VGPR, 'a' AGPR, 's' scalar register (index into the 128-entry
    scalar file: SGPRs, VCC, TTMP, M0, EXEC), 'null', 'c' constant (value = bits, `lit` when it
    came from a literal dword), 'x' special source (name), 'off' (no address register)."""
    __slots__ = ("kind", "reg", "n", "value", "lit", "typ", "neg", "abs", "hi", "name", "code")

    def __init__(self, kind, reg=0, n=1, value=0, lit=False, typ="b32", name=None, code=None):
        self.kind, self.reg, self.n, self.value, self.lit, self.typ = kind, reg, n, value, lit, typ
        self.neg = self.abs = self.hi = False
        self.name, self.code = name, code

    def __repr__(self):
        return f"<Operand {self.kind} {self.reg if self.kind != 'c' else hex(self.value)} n={self.n}>"


class Inst:
    """One decoded instruction. `op` is the table row (OpDef); operand fields depend on the
    encoding. `run` and `gen` are filled in by the executor (compiled closure, validation)."""
    __slots__ = ("pc", "size", "raw", "isa", "wave64", "fmt", "op", "name", "dst", "sdst", "srcs",
                 "clamp", "omod", "opsel", "imm", "fields", "dual", "run", "gen", "vmax", "amax")

    def __init__(self, pc, isa, wave64, fmt, op):
        self.pc, self.isa, self.wave64, self.fmt, self.op = pc, isa, wave64, fmt, op
        self.name = op.name if op else None
        self.dst = self.sdst = None
        self.srcs: list[Operand] = []
        self.clamp, self.omod, self.opsel, self.imm = False, 0, 0, 0
        self.fields: dict = {}
        self.dual = None
        self.run = None
        self.gen = -1
        self.vmax = self.amax = -1     # highest VGPR / AGPR index touched (executor fills in)

    @property
    def mnemonic(self) -> str:
        if self.op is None:
            return self.name
        return self.name + (("_e64" if self.op.e64 else "_e32") if self._suffixed() else "")

    def _suffixed(self) -> bool:
        op = self.op
        if op.e64:
            return True
        return self.fmt in ("VOP1", "VOP2", "VOPC") and op.kind not in ("mk", "ak", "rfl",
                                                                        "accmov", "vnop")


def _tsize(t: str | None) -> int:
    return TYPES[t][0] if t in TYPES else 4


class Decoder:
    """Decodes instructions of one ISA variant ("gfx9" / "gfx11") and wave size."""

    def __init__(self, isa: str, wave64: bool):
        self.isa, self.wave64 = isa, wave64
        self.tab = TABLES[isa]
        self.g11 = isa == "gfx11"
        self.m0 = 125 if self.g11 else 124
        self.lm = 2 if wave64 else 1        # registers in a lane mask

    # -- operands -------------------------------------------------------------------------------
    def scalar(self, code: int, n: int, typ: str, lit: int | None) -> Operand:
        """An 8-bit scalar-source code (also the low part of 9-bit VALU sources)."""
        nbytes = _tsize(typ)
        if code <= 123 or code in (126, 127):
            if code + n > 128:
                raise DecodeError(f"scalar register range s[{code}:{code + n - 1}]", 4)
            return Operand("s", code, n, typ=typ)
        if code == 124:
            return Operand("null", code, n, typ=typ) if self.g11 else Operand("s", code, 1, typ=typ)
        if code == 125 and self.g11:
            return Operand("s", code, 1, typ=typ)
        if 128 <= code <= 208:
            v = code - 128 if code <= 192 else 192 - code
            return Operand("c", value=v & ((1 << (8 * max(nbytes, 4))) - 1) if nbytes >= 4
                           else v & 0xFFFF, n=n, typ=typ, code=code)
        if 240 <= code <= 248:
            if code == 248:
                bits = _INV2PI[nbytes] if nbytes in _INV2PI else _INV2PI[4]
            else:
                bits = _fbits(_FLOAT_CONSTS[code], nbytes if nbytes in (2, 4, 8) else 4)
            return Operand("c", value=bits, n=n, typ=typ, code=code)
        if code == 255:
            if lit is None:
                raise DecodeError("literal constant missing", 4)
            v = lit
            if nbytes == 8:
                if typ == "f64":
                    v = lit << 32
                elif typ == "i64" and lit & 0x80000000:
                    v = lit | 0xFFFFFFFF00000000
            return Operand("c", value=v, n=n, lit=True, typ=typ, code=255)
        if code in _SPECIAL:
            return Operand("x", code, n, typ=typ, name=_SPECIAL[code])
        raise DecodeError(f"unsupported operand code {code}", 4)

    def sdst(self, code: int, n: int, typ: str, _lit=None) -> Operand:
        """A scalar destination: an SGPR-file register (or NULL), never a constant."""
        o = self.scalar(code, n, typ, None) if code < 128 else None
        if o is None or o.kind not in ("s", "null"):
            raise DecodeError(f"scalar destination code {code}", 4)
        return o

    def src9(self, code: int, n: int, typ: str, lit: int | None) -> Operand:
        if code >= 256:
            return Operand("v", code - 256, n, typ=typ)
        if self.g11 and code in (233, 234, 250) or not self.g11 and code in (249, 250):
            raise DecodeError("DPP/SDWA operand", 4)
        return self.scalar(code, n, typ, lit)

    @staticmethod
    def nregs(typ: str | None) -> int:
        return 2 if _tsize(typ) == 8 else 1

    # -- entry ----------------------------------------------------------------------------------
    def decode(self, buf, pc: int) -> Inst:
        """Decode the instruction at the start of `buf` (bytes-like, up to 12+ bytes)."""
        if len(buf) < 4:
            raise DecodeError("truncated instruction", len(buf))
        w = int.from_bytes(buf[0:4], "little")
        words = [w]

        def word(i):
            while len(words) <= i:
                j = len(words)
                if len(buf) < 4 * (j + 1):
                    raise DecodeError("truncated instruction", len(buf))
                words.append(int.from_bytes(buf[4 * j:4 * j + 4], "little"))
            return words[i]

        top2 = w >> 30
        if w >> 31 == 0:
            sub = (w >> 25) & 0x7F
            if sub == 0x3F:
                inst = self._vop1(w, word, pc)
            elif sub == 0x3E:
                inst = self._vopc(w, word, pc)
            else:
                inst = self._vop2(w, word, pc)
        elif top2 == 2:
            hi9 = (w >> 23) & 0x1FF
            if hi9 == 0x17D:
                inst = self._sop1(w, word, pc)
            elif hi9 == 0x17E:
                inst = self._sopc(w, word, pc)
            elif hi9 == 0x17F:
                inst = self._sopp(w, pc)
            elif w >> 28 == 0xB:
                inst = self._sopk(w, pc)
            else:
                inst = self._sop2(w, word, pc)
        else:
            t6 = w >> 26
            if self.g11:
                if t6 == 0x3D:
                    inst = self._smem(w, word(1), pc)
                elif t6 == 0x35:
                    inst = self._vop3(w, word, pc)
                elif w >> 24 == 0xCC:
                    inst = self._vop3p(w, word, pc)
                elif t6 == 0x32:
                    inst = self._vopd(w, word, pc)
                elif t6 == 0x36:
                    inst = self._ds(w, word(1), pc)
                elif t6 == 0x37:
                    inst = self._flat(w, word(1), pc)
                elif t6 == 0x38:
                    inst = self._mubuf(w, word(1), pc)
                else:
                    raise DecodeError(f"encoding {w >> 26:#08b}xx", 4)
            else:
                if t6 == 0x30:
                    inst = self._smem(w, word(1), pc)
                elif (w >> 23) & 0x1FF == 0x1A7:
                    inst = self._vop3p(w, word, pc)
                elif t6 == 0x34:
                    inst = self._vop3(w, word, pc)
                elif t6 == 0x36:
                    inst = self._ds(w, word(1), pc)
                elif t6 == 0x37:
                    inst = self._flat(w, word(1), pc)
                elif t6 == 0x38:
                    inst = self._mubuf(w, word(1), pc)
                else:
                    raise DecodeError(f"encoding {w >> 26:#08b}xx", 4)
        inst.raw = bytes(buf[:inst.size])
        return inst

    def _lookup(self, fmt: str, opc: int, size: int) -> OpDef:
        op = self.tab.get(fmt, {}).get(opc)
        if op is None:
            raise DecodeError(f"{fmt} opcode {opc:#x}", size)
        return op

    # -- scalar formats -------------------------------------------------------------------------
    def _ssrc(self, code, typ, word, litidx=1):
        lit = word(litidx) if code == 255 else None
        return self.scalar(code, self.nregs(typ), typ, lit)

    def _sop2(self, w, word, pc):
        op = self._lookup("SOP2", (w >> 23) & 0x7F, 4)
        i = Inst(pc, self.isa, self.wave64, "SOP2", op)
        s0, s1 = w & 0xFF, (w >> 8) & 0xFF
        i.srcs = [self._ssrc(s0, op.srcs[0], word), self._ssrc(s1, op.srcs[1], word)]
        i.dst = self.sdst((w >> 16) & 0x7F, self.nregs(op.dst), op.dst, None)
        i.size = 8 if 255 in (s0, s1) else 4
        return i

    def _sop1(self, w, word, pc):
        op = self._lookup("SOP1", (w >> 8) & 0xFF, 4)
        i = Inst(pc, self.isa, self.wave64, "SOP1", op)
        s0, d = w & 0xFF, (w >> 16) & 0x7F
        i.size = 4
        k = op.kind
        if k == "getpc":
            i.dst = self.sdst(d, 2, "b64", None)
        elif k == "setpc":
            i.srcs = [self.scalar(s0, 2, "b64", None)]
        elif k == "swappc":
            i.dst, i.srcs = self.sdst(d, 2, "b64", None), [self.scalar(s0, 2, "b64", None)]
        elif k == "sendmsg_rtn":
            i.dst, i.imm = self.sdst(d, self.nregs(op.dst), op.dst, None), s0
        else:
            i.dst = self.sdst(d, self.nregs(op.dst), op.dst, None)
            i.srcs = [self._ssrc(s0, op.srcs[0], word)]
            i.size = 8 if s0 == 255 else 4
        return i

    def _sopc(self, w, word, pc):
        op = self._lookup("SOPC", (w >> 16) & 0x7F, 4)
        i = Inst(pc, self.isa, self.wave64, "SOPC", op)
        s0, s1 = w & 0xFF, (w >> 8) & 0xFF
        i.srcs = [self._ssrc(s0, op.srcs[0], word), self._ssrc(s1, op.srcs[1], word)]
        i.size = 8 if 255 in (s0, s1) else 4
        return i

    def _sopk(self, w, pc):
        op = self._lookup("SOPK", (w >> 23) & 0x1F, 4)
        i = Inst(pc, self.isa, self.wave64, "SOPK", op)
        d = (w >> 16) & 0x7F
        i.imm = w & 0xFFFF
        i.dst = self.sdst(d, 2 if op.kind == "call" else 1, op.dst or "b32", None)
        i.size = 4
        return i

    def _sopp(self, w, pc):
        op = self._lookup("SOPP", (w >> 16) & 0x7F, 4)
        i = Inst(pc, self.isa, self.wave64, "SOPP", op)
        i.imm = w & 0xFFFF
        i.size = 4
        return i

    def _smem(self, w, w1, pc):
        op = self._lookup("SMEM", (w >> 18) & 0xFF, 8)
        i = Inst(pc, self.isa, self.wave64, "SMEM", op)
        i.size = 8
        sdata, sbase = (w >> 6) & 0x7F, (w & 0x3F) << 1
        f = i.fields
        if self.g11:
            f["glc"], f["dlc"] = bool(w >> 14 & 1), bool(w >> 13 & 1)
            off = w1 & 0x1FFFFF
            f["offset"] = off - (1 << 21) if off & (1 << 20) else off
            so = (w1 >> 25) & 0x7F
            f["soffset"] = None if so == 124 else self.scalar(so, 1, "b32", None)
        else:
            imm, soe = w >> 17 & 1, w >> 14 & 1
            f["glc"] = bool(w >> 16 & 1)
            off = w1 & 0x1FFFFF
            if imm:
                f["offset"] = off - (1 << 21) if off & (1 << 20) else off
                f["soffset"] = self.scalar((w1 >> 25) & 0x7F, 1, "b32", None) if soe else None
            else:
                f["offset"] = 0
                f["soffset"] = self.scalar(off & 0x7F, 1, "b32", None)
                f["soffset_only"] = True
        if op.kind == "sload":
            i.dst = Operand("s", sdata, op.sem, typ="b32")
            i.srcs = [Operand("s", sbase, 2, typ="b64")]
        return i

    def _mubuf(self, w, w1, pc):
        opc = (w >> 18) & (0xFF if self.g11 else 0x7F)
        op = self._lookup("MUBUF", opc, 8)
        i = Inst(pc, self.isa, self.wave64, "MUBUF", op)
        i.size = 8
        i.fields["bits"] = w
        return i

    # -- vector ALU -----------------------------------------------------------------------------
    def _t16(self, typ):
        return self.g11 and _tsize(typ) == 2

    def _vsrc8(self, code, typ):
        o = Operand("v", code, self.nregs(typ), typ=typ)
        if self._t16(typ):
            o.reg, o.hi = code & 0x7F, bool(code & 0x80)
        return o

    def _vdst8(self, code, typ):
        return self._vsrc8(code, typ)

    def _src0(self, code, typ, word, litidx):
        lit = word(litidx) if code == 255 else None
        o = self.src9(code, self.nregs(typ), typ, lit)
        if o.kind == "v" and self._t16(typ):
            o.reg, o.hi = o.reg & 0x7F, bool(o.reg & 0x80)
        return o

    def _vop2(self, w, word, pc):
        op = self._lookup("VOP2", (w >> 25) & 0x3F, 4)
        i = Inst(pc, self.isa, self.wave64, "VOP2", op)
        s0, v1, vd = w & 0x1FF, (w >> 9) & 0xFF, (w >> 17) & 0xFF
        k = op.kind
        t = op.srcs
        i.size = 8 if s0 == 255 or k in ("mk", "ak") else 4
        src0 = self._src0(s0, t[0], word, 1)
        src1 = self._vsrc8(v1, t[1])
        i.dst = self._vdst8(vd, op.dst)
        vcc = Operand("s", 106, self.lm, typ="b64" if self.wave64 else "b32")
        if k == "mk":
            i.srcs = [src0, Operand("c", value=word(1), lit=True, typ="f32", code=255), src1]
        elif k == "ak":
            i.srcs = [src0, src1, Operand("c", value=word(1), lit=True, typ="f32", code=255)]
        elif k == "mac":
            i.srcs = [src0, src1, self._vdst8(vd, op.dst)]
        elif k in ("cnd", "cico"):
            i.srcs = [src0, src1, vcc]
            if k == "cico":
                i.sdst = vcc
        elif k == "co":
            i.srcs, i.sdst = [src0, src1], vcc
        else:
            i.srcs = [src0, src1]
        return i

    def _vop1(self, w, word, pc):
        op = self._lookup("VOP1", (w >> 9) & 0xFF, 4)
        i = Inst(pc, self.isa, self.wave64, "VOP1", op)
        s0, vd = w & 0x1FF, (w >> 17) & 0xFF
        i.size = 8 if s0 == 255 else 4
        k = op.kind
        if k == "vnop":
            return i
        if k == "rfl":
            i.dst = self.sdst(vd, 1, "b32", None)
            i.srcs = [self._src0(s0, "b32", word, 1)]
        elif k == "accmov":
            i.dst = Operand("a", vd, 1)
            i.srcs = [Operand("a", s0 & 0xFF, 1)] if s0 >= 256 else [self._src0(s0, "b32", word, 1)]
        else:
            i.dst = self._vdst8(vd, op.dst)
            i.srcs = [self._src0(s0, op.srcs[0], word, 1)]
        return i

    def _vopc(self, w, word, pc):
        op = self._lookup("VOPC", (w >> 17) & 0xFF, 4)
        i = Inst(pc, self.isa, self.wave64, "VOPC", op)
        s0, v1 = w & 0x1FF, (w >> 9) & 0xFF
        i.size = 8 if s0 == 255 else 4
        i.srcs = [self._src0(s0, op.srcs[0], word, 1), self._vsrc8(v1, op.srcs[1])]
        vcc = Operand("s", 106, self.lm, typ="b64" if self.wave64 else "b32")
        if op.kind == "cmp" or not self.g11:
            i.sdst = vcc
        return i

    def _vop3(self, w, word, pc):
        opc = (w >> 16) & 0x3FF
        op = self._lookup("VOP3", opc, 8)
        w1 = word(1)
        i = Inst(pc, self.isa, self.wave64, "VOP3", op)
        k = op.kind
        codes = [w1 & 0x1FF, (w1 >> 9) & 0x1FF, (w1 >> 18) & 0x1FF]
        nused = {"cmp": 2, "cmpx": 2, "cnd": 3, "co": 2, "cico": 3, "mad64": 3, "rl": 2, "wl": 2,
                 "mac": 2, "mbcnt": 2}.get(k, len(op.srcs))
        has_lit = self.g11 and 255 in codes[:nused]
        lit = word(2) if has_lit else None
        i.size = 12 if has_lit else 8
        neg, absm = (w1 >> 29) & 7, (w >> 8) & 7
        i.opsel = (w >> 11) & 0xF
        i.omod = (w1 >> 27) & 3
        sd = (w >> 8) & 0x7F
        vd = w & 0xFF
        lmtyp = "b64" if self.wave64 else "b32"
        sdst_form = k in ("co", "cico", "mad64")
        i.clamp = bool(w >> 15 & 1)

        def src(j, typ, n=None):
            c = codes[j]
            if c == 255 and not self.g11:
                raise DecodeError("literal in VOP3 (gfx9)", 8)
            o = self.src9(c, n or self.nregs(typ), typ, lit)
            if not sdst_form and k not in ("rl", "wl"):
                o.neg, o.abs = bool(neg >> j & 1), bool(absm >> j & 1)
            elif sdst_form:
                o.neg = bool(neg >> j & 1)
            if self._t16(typ) or (not self.g11 and _tsize(typ) == 2):
                o.hi = bool(i.opsel >> j & 1)
            return o

        t = op.srcs
        if k == "cmp" or k == "cmpx":
            i.srcs = [src(0, t[0]), src(1, t[1])]
            if k == "cmp" or not self.g11:
                i.sdst = self.sdst(vd, self.lm, lmtyp, None)
        elif k == "cnd":
            i.srcs = [src(0, t[0]), src(1, t[1]), self.src9(codes[2], self.lm, lmtyp, lit)]
            i.dst = self._vdst3(vd, op.dst, i.opsel)
        elif k == "co":
            i.srcs = [src(0, t[0]), src(1, t[1])]
            i.sdst, i.dst = self.sdst(sd, self.lm, lmtyp, None), self._vdst3(vd, op.dst, 0)
        elif k == "cico":
            i.srcs = [src(0, t[0]), src(1, t[1]), self.src9(codes[2], self.lm, lmtyp, lit)]
            i.sdst, i.dst = self.sdst(sd, self.lm, lmtyp, None), self._vdst3(vd, op.dst, 0)
        elif k == "mad64":
            i.srcs = [src(0, t[0]), src(1, t[1]), src(2, t[2])]
            i.sdst, i.dst = self.sdst(sd, self.lm, lmtyp, None), Operand("v", vd, 2, typ=op.dst)
        elif k == "rl":
            i.srcs = [src(0, "b32"), src(1, "u32")]
            i.dst = self.sdst(vd, 1, "b32", None)
        elif k == "wl":
            i.srcs = [src(0, "b32"), src(1, "u32")]
            i.dst = Operand("v", vd, 1)
        elif k == "mac":
            i.srcs = [src(0, t[0]), src(1, t[1]), self._vdst3(vd, op.dst, i.opsel)]
            i.dst = self._vdst3(vd, op.dst, i.opsel)
        elif k in ("alu", "mbcnt"):
            i.srcs = [src(j, ty) for j, ty in enumerate(t)]
            i.dst = self._vdst3(vd, op.dst, i.opsel)
        else:
            raise DecodeError(f"VOP3 form of {op.name}", i.size)
        return i

    def _vdst3(self, vd, typ, opsel):
        o = Operand("v", vd, self.nregs(typ), typ=typ)
        if _tsize(typ) == 2:
            o.hi = bool(opsel >> 3 & 1)
        return o

    def _vop3p(self, w, word, pc):
        op = self._lookup("VOP3P", (w >> 16) & 0x7F, 8)
        w1 = word(1)
        i = Inst(pc, self.isa, self.wave64, "VOP3P", op)
        i.size = 8
        s0 = w1 & 0x1FF
        vd = w & 0xFF
        if op.kind == "accr":
            i.dst = Operand("v", vd, 1)
            i.srcs = [Operand("a", s0 & 0xFF, 1)] if s0 >= 256 else [self.src9(s0, 1, "b32", None)]
        elif op.kind == "accw":
            i.dst = Operand("a", vd, 1)
            i.srcs = [self.src9(s0, 1, "b32", None)]
        else:
            raise DecodeError(f"VOP3P {op.name}", 8)
        i.fields["bits"] = (w, w1)
        return i

    def _vopd(self, w, word, pc):
        w1 = word(1)
        ox, oy = (w >> 22) & 0xF, (w >> 17) & 0x1F
        if ox not in VOPD_OPS or oy not in VOPD_OPS or ox > 13:
            raise DecodeError(f"VOPD opcodes {ox}/{oy}", 8)
        srcx0, srcy0 = w & 0x1FF, w1 & 0x1FF
        nx, kx, semx = VOPD_OPS[ox]
        ny, ky, semy = VOPD_OPS[oy]
        has_lit = 255 in (srcx0, srcy0) or kx in ("mk", "ak") or ky in ("mk", "ak")
        lit = word(2) if has_lit else None
        vdx = w1 >> 24
        vdy = (((w1 >> 17) & 0x7F) << 1) | ((vdx & 1) ^ 1)
        parts = []
        for opc, name, kind, sem, s0, v1, vd in ((ox, nx, kx, semx, srcx0, (w >> 9) & 0xFF, vdx),
                                                  (oy, ny, ky, semy, srcy0, (w1 >> 9) & 0xFF, vdy)):
            od = OpDef(name, "VOPD", opc, kind, VOPD_TYPES[opc], sem)
            p = Inst(pc, self.isa, self.wave64, "VOPD", od)
            a = self.src9(s0, 1, "b32" if kind != "alu" else od.srcs[0], lit)
            b = Operand("v", v1, 1, typ="b32")
            K = Operand("c", value=lit or 0, lit=True, typ="f32", code=255)
            p.dst = Operand("v", vd, 1, typ=od.dst)
            if kind == "mk":
                p.srcs = [a, K, b]
            elif kind == "ak":
                p.srcs = [a, b, K]
            elif kind == "mac":
                p.srcs = [a, b, Operand("v", vd, 1, typ="f32")]
            elif kind == "cnd":
                p.srcs = [a, b, Operand("s", 106, self.lm, typ="b32")]
            elif len(od.srcs) == 1:
                p.srcs = [a]
            else:
                p.srcs = [a, b]
            parts.append(p)
        i = Inst(pc, self.isa, self.wave64, "VOPD", parts[0].op)
        i.name = parts[0].name
        i.dual = parts
        i.size = 12 if has_lit else 8
        return i

    # -- memory ---------------------------------------------------------------------------------
    def _ds(self, w, w1, pc):
        opc = (w >> 18) & 0xFF if self.g11 else (w >> 17) & 0xFF
        op = self._lookup("DS", opc, 8)
        i = Inst(pc, self.isa, self.wave64, "DS", op)
        i.size = 8
        f = i.fields
        f["offset0"], f["offset1"] = w & 0xFF, (w >> 8) & 0xFF
        f["gds"] = bool(w >> (17 if self.g11 else 16) & 1)
        if not self.g11 and w >> 25 & 1:
            raise DecodeError("DS with AGPR data (acc)", 8)
        f["addr"], f["data0"], f["data1"], f["vdst"] = w1 & 0xFF, (w1 >> 8) & 0xFF, \
            (w1 >> 16) & 0xFF, (w1 >> 24) & 0xFF
        return i

    def _flat(self, w, w1, pc):
        opc = (w >> 18) & 0x7F
        op = self._lookup("FLAT", opc, 8)
        f = {}
        if self.g11:
            seg = (w >> 16) & 3
            f["glc"], f["slc"], f["dlc"] = bool(w >> 14 & 1), bool(w >> 15 & 1), bool(w >> 13 & 1)
            sve = bool(w1 >> 23 & 1)
            null_saddr = 124
        else:
            seg = (w >> 14) & 3
            f["sc0"], f["sc1"], f["nt"] = bool(w >> 16 & 1), bool(w >> 25 & 1), bool(w >> 17 & 1)
            sve = bool(w >> 13 & 1)
            null_saddr = 0x7F
        segname = {0: "flat", 1: "scratch", 2: "global"}.get(seg)
        if segname is None or segname[0] not in op.segs:
            raise DecodeError(f"FLAT opcode {opc:#x} segment {seg}", 8)
        i = Inst(pc, self.isa, self.wave64, "FLAT", op)
        i.name = f"{segname}_{op.name}"
        i.size = 8
        off = w & 0x1FFF
        if segname == "flat" and not self.g11:
            off &= 0xFFF
        elif off & 0x1000 and (segname != "flat" or self.g11):
            off -= 0x2000
        f["seg"], f["offset"] = segname, off
        saddr = (w1 >> 16) & 0x7F
        f["saddr"] = None if saddr == null_saddr or segname == "flat" else saddr
        f["addr"], f["data"], f["vdst"] = w1 & 0xFF, (w1 >> 8) & 0xFF, (w1 >> 24) & 0xFF
        f["vaddr_used"] = sve if segname == "scratch" else True
        f["return"] = op.sem[0] == "load" or (op.sem[0] == "atomic" and
                                              (f["glc"] if self.g11 else f["sc0"]))
        i.fields = f
        return i
