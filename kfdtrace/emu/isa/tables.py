"""THE instruction table of the emulated GPU: encodings, opcodes, operand shapes and semantics.

One table, two uses: `decode.py` turns machine code into `Inst` objects through it (and so the
disassembler prints from it), and `executor.py` runs those same objects through the semantics
hooks it names. An instruction that is not in this table is outside the documented coverage
(docs/isa-coverage.md): the disassembler prints it as `.long`, the executor raises GpuFault.

Two ISA variants are described:

* ``gfx9``  — CDNA3 (gfx942; gfx950 shares it), wave64;
* ``gfx11`` — RDNA3 (gfx1100–gfx1103, gfx115x), wave32 (wave64 mode also executes).

Opcode numbers come from the oracle, not from memory: every opcode below was obtained by
disassembling the opcode space of each encoding with ``llvm-mc-22 -disassemble -mcpu=gfx942``
and ``-mcpu=gfx1100``, and ``tests/test_isa_tables.py`` re-checks every row against llvm-mc.

Row layout: ``(fmt, gfx9 opcode, gfx11 opcode, mnemonic, kind, types, sem)``

* ``fmt``: native encoding (SOP1 SOP2 SOPK SOPC SOPP SMEM VOP1 VOP2 VOPC VOP3 VOP3P DS FLAT MUBUF
  VOPD). VOP1/VOP2/VOPC rows also exist in VOP3 form (opcode + the family's VOP3 offset) and are
  then printed with ``_e64``, unless the row's types string starts with ``!`` (no VOP3 form).
* opcode ``None``: not available on that family.
* ``mnemonic``: ``"gfx9name"`` or ``"gfx9name/gfx11name"`` when the families spell it differently.
* ``kind``: how the executor runs it and the disassembler lays out its operands (see executor).
* ``types``: ``"dst:src0,src1,..."`` operand types (b32 u32 i32 f32 b64 u64 i64 f64 b16 u16
  i16 f16); they fix register widths, how inline constants/literals are read, and numpy dtypes.
* ``sem``: the semantics hook: a numpy function for ALU kinds, a parameter tuple for memory
  kinds, a name for control flow.
"""
from __future__ import annotations

import numpy as np

u8, u16, u32, u64 = np.uint8, np.uint16, np.uint32, np.uint64
i32, i64 = np.int32, np.int64
f16, f32, f64 = np.float16, np.float32, np.float64

# ------------------------------------------------------------------------------------------------
# operand types
# ------------------------------------------------------------------------------------------------
#: type name -> (bytes, numpy dtype, is_float)
TYPES = {
    "b32": (4, u32, False), "u32": (4, u32, False), "i32": (4, i32, False), "f32": (4, f32, True),
    "b64": (8, u64, False), "u64": (8, u64, False), "i64": (8, i64, False), "f64": (8, f64, True),
    "b16": (2, u16, False), "u16": (2, u16, False), "i16": (2, np.int16, False),
    "f16": (2, f16, True),
}

# ------------------------------------------------------------------------------------------------
# semantics helpers (numpy, element-wise; arguments are arrays of the row's source dtypes)
# ------------------------------------------------------------------------------------------------
_SH32, _SH64 = u32(31), u64(63)


def _sh(x):
    return x.astype(u32) & _SH32


def _sh64(x):
    return x.astype(u64) & _SH64


def fma32(a, b, c):
    """Fused multiply-add in f32 with one rounding: the product is exact in f64, the sum is
    rounded to odd in f64 (TwoSum error term), then to nearest f32 — which is exact rounding."""
    a, b, c = (np.asarray(x, f32).astype(f64) for x in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    bits = s.view(u64) if s.ndim else np.asarray(s).view(u64)
    fix = (err != 0) & ((bits & u64(1)) == 0) & np.isfinite(s)
    if np.any(fix):
        s = np.where(fix, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
    return s.astype(f32)


def _cvt_f2i(x, lo, hi, dt):
    """Float -> integer: truncate toward zero, saturate, NaN -> 0 (VALU conversion rules)."""
    x = np.asarray(x, f64)
    r = np.trunc(np.nan_to_num(x, nan=0.0, posinf=hi, neginf=lo))
    return np.clip(r, lo, hi).astype(dt)


def cvt_u32(x):
    return _cvt_f2i(x, 0.0, 4294967295.0, u32)


def cvt_i32(x):
    return _cvt_f2i(x, -2147483648.0, 2147483647.0, i32)


def _sext(x, bits):
    x = x.astype(i64) & ((1 << bits) - 1)
    return np.where(x >= (1 << (bits - 1)), x - (1 << bits), x)


def bfe_u(x, off, width, nbits=32):
    """Bit-field extract: (x >> off[log2 nbits-1:0]) masked to `width` bits (width is already
    cut to its field by the caller: 5 bits for v_bfe, 7 for s_bfe; >= nbits means all)."""
    dt, sh = (u32, _SH32) if nbits == 32 else (u64, _SH64)
    x, off = x.astype(dt), off.astype(dt) & sh
    w = np.minimum(width.astype(u64), u64(nbits))
    mask = np.where(w >= 64, ~u64(0), (u64(1) << np.minimum(w, u64(63))) - u64(1))
    return ((x >> off).astype(u64) & mask).astype(dt)


def bfe_i(x, off, width, nbits=32):
    u = bfe_u(x, off, width, nbits).astype(u64)
    w = np.minimum(width.astype(u64), u64(nbits))
    top = np.where(w == 0, u64(0), w - u64(1))
    neg = (w != 0) & (((u >> top) & u64(1)) == 1)
    ext = np.where(neg, u | (~u64(0) << np.minimum(w, u64(63))), u)
    return ext.astype(u32 if nbits == 32 else u64)


def popcount(x):
    x = np.asarray(x).astype(u64)
    c = np.zeros(x.shape, u32)
    for shift in range(0, 64, 8):
        c += _POP8[((x >> u64(shift)) & u64(0xFF)).astype(np.intp)]
    return c


_POP8 = np.array([bin(i).count("1") for i in range(256)], u32)
_REV8 = np.array([int(f"{i:08b}"[::-1], 2) for i in range(256)], u64)


def brev(x, nbits=32):
    x = np.asarray(x).astype(u64)
    r = np.zeros(x.shape, u64)
    for i in range(nbits // 8):
        r |= _REV8[((x >> u64(8 * i)) & u64(0xFF)).astype(np.intp)] << u64(nbits - 8 - 8 * i)
    return r.astype(u32 if nbits == 32 else u64)


def clz(x, nbits=32):
    """Leading zeros; -1 (all ones) for 0 — v_ffbh_u32 / s_flbit_i32_b32 / s_clz_i32_u32."""
    x = np.asarray(x).astype(u64)
    n = np.zeros(x.shape, i64)
    y = x.copy()
    for s in (32, 16, 8, 4, 2, 1):
        if s >= nbits:
            continue
        m = y >> u64(nbits - s) == 0 if nbits == 64 else (y << u64(64 - nbits)) >> u64(64 - s) == 0
        n = np.where(m, n + s, n)
        y = np.where(m, y << u64(s), y)
    n = np.where((y >> u64(nbits - 1)) & u64(1) == 0, n + 1, n)
    return np.where(x == 0, -1, np.minimum(n, nbits)).astype(i32).view(u32)


def ctz(x, nbits=32):
    """Trailing zeros; -1 for 0 — v_ffbl_b32 / s_ff1_i32_b32 / s_ctz_i32_b32."""
    x = np.asarray(x).astype(u64)
    low = x & (~x + u64(1))                      # lowest set bit
    pos = np.zeros(x.shape, i64)
    for s in (32, 16, 8, 4, 2, 1):
        m = (low >> u64(s)) != 0
        pos = np.where(m, pos + s, pos)
        low = np.where(m, low >> u64(s), low)
    return np.where(x == 0, -1, pos).astype(i32).view(u32)


def cls(x, nbits=32):
    """Leading bits equal to the sign bit after it; -1 for 0 and -1 — v_ffbh_i32 / s_cls_i32."""
    dt = u32 if nbits == 32 else u64
    x = np.asarray(x).astype(dt)
    sign = (x >> dt(nbits - 1)) & dt(1)
    y = np.where(sign == 1, ~x, x)
    r = clz(y, nbits).view(i32)
    return np.where(r == -1, -1, r).astype(i32).view(u32)


def perm(a, b, sel):
    """v_perm_b32: each result byte picks a byte of {a,b} (a high) or a constant."""
    a, b, sel = (np.asarray(v).astype(u64) for v in (a, b, sel))
    src = (a << u64(32)) | b
    out = np.zeros(np.broadcast(a, b, sel).shape, u64)
    for i in range(4):
        s = (sel >> u64(8 * i)) & u64(0xFF)
        byte = (src >> ((s & u64(7)) * u64(8))) & u64(0xFF)
        sign = lambda k: np.where((src >> u64(k)) & u64(1) == 1, u64(0xFF), u64(0))  # noqa: E731
        byte = np.where(s == 8, sign(15), byte)
        byte = np.where(s == 9, sign(31), byte)
        byte = np.where(s == 10, sign(47), byte)
        byte = np.where(s == 11, sign(63), byte)
        byte = np.where(s == 12, u64(0), byte)
        byte = np.where(s >= 13, u64(0xFF), byte)
        out |= byte << u64(8 * i)
    return out.astype(u32)


def med3(a, b, c):
    return np.maximum(np.minimum(a, b), np.minimum(np.maximum(a, b), c))


def fmed3(a, b, c):
    return np.fmax(np.fmin(a, b), np.fmin(np.fmax(a, b), c))


def fract(x):
    x = np.asarray(x)
    one_below = np.nextafter(x.dtype.type(1), x.dtype.type(0))
    return np.where(np.isinf(x), np.nan, np.minimum(x - np.floor(x), one_below)).astype(x.dtype)


def _frexp_mant(x):
    m, _ = np.frexp(x)
    return np.where(np.isfinite(x), m, x).astype(np.asarray(x).dtype)


def _frexp_exp(x):
    _, e = np.frexp(x)
    return np.where(np.isfinite(x), e, 0).astype(i32)


def fclass(x, mask):
    """v_cmp_class: bit set in mask for the IEEE class of x (0 sNaN, 1 qNaN, 2 -inf, 3 -normal,
    4 -denormal, 5 -0, 6 +0, 7 +denormal, 8 +normal, 9 +inf)."""
    x = np.asarray(x)
    mask = np.asarray(mask).astype(u32)
    nbits = x.dtype.itemsize * 8
    ui = x.view(u32 if nbits == 32 else u64 if nbits == 64 else u16)
    quiet_bit = {32: 22, 64: 51, 16: 9}[nbits]
    neg = np.signbit(x)
    tiny = np.finfo(x.dtype).tiny
    cls_ = np.select(
        [np.isnan(x) & ((ui >> ui.dtype.type(quiet_bit)) & ui.dtype.type(1) == 0), np.isnan(x),
         np.isinf(x) & neg, (x == 0) & neg, (x == 0), np.abs(x) < tiny, np.isinf(x)],
        [0, 1, 2, 5, 6, 7, 9], default=8)
    cls_ = np.where((cls_ == 7) & neg, 4, cls_)
    cls_ = np.where((cls_ == 8) & neg, 3, cls_)
    return ((mask >> cls_.astype(u32)) & u32(1)) == 1


def _ldexp(a, b):
    return np.ldexp(a, np.clip(b.astype(i64), -2000, 2000).astype(np.int32)).astype(a.dtype)


def _sin(x):
    return np.sin(np.asarray(x, f64) * (2 * np.pi)).astype(np.asarray(x).dtype)


def _cos(x):
    return np.cos(np.asarray(x, f64) * (2 * np.pi)).astype(np.asarray(x).dtype)


def _mul24(a, b, signed, hi):
    x = _sext(a, 24) if signed else a.astype(i64) & 0xFFFFFF
    y = _sext(b, 24) if signed else b.astype(i64) & 0xFFFFFF
    p = x * y                                   # exact: at most 48 bits
    return ((p >> 32) if hi else p).astype(u32)


def mulhi_u32(a, b):
    return ((a.astype(u64) * b.astype(u64)) >> u64(32)).astype(u32)


def mulhi_i32(a, b):
    return ((a.astype(i64) * b.astype(i64)) >> 32).astype(u64).astype(u32)


# carry helpers: (result, carry/borrow bool)
def add_co(a, b):
    s = a.astype(u64) + b.astype(u64)
    return s.astype(u32), (s >> u64(32)) != 0


def sub_co(a, b):
    return (a - b).astype(u32), b.astype(u64) > a.astype(u64)


def addc(a, b, c):
    s = a.astype(u64) + b.astype(u64) + c.astype(u64)
    return s.astype(u32), (s >> u64(32)) != 0


def subb(a, b, c):
    t = b.astype(u64) + c.astype(u64)
    return (a.astype(u64) - t).astype(u32), t > a.astype(u64)


def mad_u64(a, b, c):
    p = a.astype(u64) * b.astype(u64)
    s = p + c
    return s, s < p


def mad_i64(a, b, c):
    p = a.astype(i64) * b.astype(i64)
    c = c.astype(i64)
    s = (p.view(u64) + c.view(u64)).view(i64)
    ovf = ((p ^ s) & (c ^ s)) < 0
    return s, (s < 0) != ovf


# -- scalar ALU: fn(a, b, scc) -> (result, new scc or None) -----------------------------------
def _nz(r):
    return r != 0


def s_add_i32(a, b, scc):
    r = (a + b).astype(u32)
    return r, (((a ^ r) & (b ^ r)) >> u32(31)) != 0


def s_sub_i32(a, b, scc):
    r = (a - b).astype(u32)
    return r, (((a ^ b) & (a ^ r)) >> u32(31)) != 0


def s_lshl_add(n):
    def f(a, b, scc):
        s = (a.astype(u64) << u64(n)) + b.astype(u64)
        return s.astype(u32), (s >> u64(32)) != 0
    return f


def s_bfm(nbits):
    dt, sh = (u32, _SH32) if nbits == 32 else (u64, _SH64)

    def f(a, b, scc):
        w = a.astype(u64) & u64(nbits - 1)
        mask = ((u64(1) << w) - u64(1)).astype(dt)
        return (mask << (b.astype(dt) & sh)).astype(dt), None
    return f


def s_absdiff(a, b, scc):
    r = np.abs(a.view(i32).astype(i64) - b.view(i32).astype(i64)).astype(u32)
    return r, r != 0


def s_addk(d, k, scc):
    return s_add_i32(d, k, scc)


# -- saveexec family: fn(src, exec) -> new exec ------------------------------------------------
SAVEEXEC = {
    "and": lambda s, e: s & e, "or": lambda s, e: s | e, "xor": lambda s, e: s ^ e,
    "andn2": lambda s, e: s & ~e, "orn2": lambda s, e: s | ~e, "nand": lambda s, e: ~(s & e),
    "nor": lambda s, e: ~(s | e), "xnor": lambda s, e: ~(s ^ e), "andn1": lambda s, e: ~s & e,
    "orn1": lambda s, e: ~s | e,
}

# -- comparisons ---------------------------------------------------------------------------------
FCMP = {  # name -> fn(a, b) -> bool
    "f": lambda a, b: np.zeros(np.broadcast(a, b).shape, bool),
    "lt": np.less, "eq": np.equal, "le": np.less_equal, "gt": np.greater,
    "lg": lambda a, b: (a < b) | (a > b), "ge": np.greater_equal,
    "o": lambda a, b: ~(np.isnan(a) | np.isnan(b)), "u": lambda a, b: np.isnan(a) | np.isnan(b),
    "nge": lambda a, b: ~(a >= b), "nlg": lambda a, b: ~((a < b) | (a > b)),
    "ngt": lambda a, b: ~(a > b), "nle": lambda a, b: ~(a <= b), "neq": lambda a, b: a != b,
    "nlt": lambda a, b: ~(a < b), "tru": lambda a, b: np.ones(np.broadcast(a, b).shape, bool),
}
ICMP = {
    "f": FCMP["f"], "lt": np.less, "eq": np.equal, "le": np.less_equal, "gt": np.greater,
    "ne": np.not_equal, "lg": np.not_equal, "ge": np.greater_equal, "t": FCMP["tru"],
}
_FCMP_ORDER = ("f", "lt", "eq", "le", "gt", "lg", "ge", "o", "u", "nge", "nlg", "ngt", "nle",
               "neq", "nlt", "tru")
_ICMP_ORDER = ("f", "lt", "eq", "le", "gt", "ne", "ge", "t")

# ------------------------------------------------------------------------------------------------
# the rows
# ------------------------------------------------------------------------------------------------
_ = None
L = lambda f: f  # noqa: E731  (marks a semantics lambda in the table for readability)

ROWS: list[tuple] = [
    # ---- SOP2 ------------------------------------------------------------------------------
    # fmt   gfx9  gfx11 mnemonic                       kind     types              semantics
    ("SOP2", 0x00, 0x00, "s_add_u32",                  "sop2", "u32:u32,u32",
     L(lambda a, b, c: add_co(a, b))),
    ("SOP2", 0x01, 0x01, "s_sub_u32",                  "sop2", "u32:u32,u32",
     L(lambda a, b, c: sub_co(a, b))),
    ("SOP2", 0x02, 0x02, "s_add_i32",                  "sop2", "i32:i32,i32", s_add_i32),
    ("SOP2", 0x03, 0x03, "s_sub_i32",                  "sop2", "i32:i32,i32", s_sub_i32),
    ("SOP2", 0x04, 0x04, "s_addc_u32",                 "sop2", "u32:u32,u32", addc),
    ("SOP2", 0x05, 0x05, "s_subb_u32",                 "sop2", "u32:u32,u32", subb),
    ("SOP2", 0x06, 0x12, "s_min_i32",                  "sop2", "i32:i32,i32",
     L(lambda a, b, c: (np.where(a.view(i32) < b.view(i32), a, b), a.view(i32) < b.view(i32)))),
    ("SOP2", 0x07, 0x13, "s_min_u32",                  "sop2", "u32:u32,u32",
     L(lambda a, b, c: (np.minimum(a, b), a < b))),
    ("SOP2", 0x08, 0x14, "s_max_i32",                  "sop2", "i32:i32,i32",
     L(lambda a, b, c: (np.where(a.view(i32) > b.view(i32), a, b), a.view(i32) > b.view(i32)))),
    ("SOP2", 0x09, 0x15, "s_max_u32",                  "sop2", "u32:u32,u32",
     L(lambda a, b, c: (np.maximum(a, b), a > b))),
    ("SOP2", 0x0A, 0x30, "s_cselect_b32",              "sop2", "b32:b32,b32",
     L(lambda a, b, c: (np.where(c, a, b), None))),
    ("SOP2", 0x0B, 0x31, "s_cselect_b64",              "sop2", "b64:b64,b64",
     L(lambda a, b, c: (np.where(c, a, b), None))),
    ("SOP2", 0x0C, 0x16, "s_and_b32",                  "sop2", "b32:b32,b32",
     L(lambda a, b, c: (a & b, _nz(a & b)))),
    ("SOP2", 0x0D, 0x17, "s_and_b64",                  "sop2", "b64:b64,b64",
     L(lambda a, b, c: (a & b, _nz(a & b)))),
    ("SOP2", 0x0E, 0x18, "s_or_b32",                   "sop2", "b32:b32,b32",
     L(lambda a, b, c: (a | b, _nz(a | b)))),
    ("SOP2", 0x0F, 0x19, "s_or_b64",                   "sop2", "b64:b64,b64",
     L(lambda a, b, c: (a | b, _nz(a | b)))),
    ("SOP2", 0x10, 0x1A, "s_xor_b32",                  "sop2", "b32:b32,b32",
     L(lambda a, b, c: (a ^ b, _nz(a ^ b)))),
    ("SOP2", 0x11, 0x1B, "s_xor_b64",                  "sop2", "b64:b64,b64",
     L(lambda a, b, c: (a ^ b, _nz(a ^ b)))),
    ("SOP2", 0x12, 0x22, "s_andn2_b32/s_and_not1_b32", "sop2", "b32:b32,b32",
     L(lambda a, b, c: (a & ~b, _nz(a & ~b)))),
    ("SOP2", 0x13, 0x23, "s_andn2_b64/s_and_not1_b64", "sop2", "b64:b64,b64",
     L(lambda a, b, c: (a & ~b, _nz(a & ~b)))),
    ("SOP2", 0x14, 0x24, "s_orn2_b32/s_or_not1_b32",   "sop2", "b32:b32,b32",
     L(lambda a, b, c: (a | ~b, _nz(a | ~b)))),
    ("SOP2", 0x15, 0x25, "s_orn2_b64/s_or_not1_b64",   "sop2", "b64:b64,b64",
     L(lambda a, b, c: (a | ~b, _nz(a | ~b)))),
    ("SOP2", 0x16, 0x1C, "s_nand_b32",                 "sop2", "b32:b32,b32",
     L(lambda a, b, c: (~(a & b), _nz(~(a & b))))),
    ("SOP2", 0x17, 0x1D, "s_nand_b64",                 "sop2", "b64:b64,b64",
     L(lambda a, b, c: (~(a & b), _nz(~(a & b))))),
    ("SOP2", 0x18, 0x1E, "s_nor_b32",                  "sop2", "b32:b32,b32",
     L(lambda a, b, c: (~(a | b), _nz(~(a | b))))),
    ("SOP2", 0x19, 0x1F, "s_nor_b64",                  "sop2", "b64:b64,b64",
     L(lambda a, b, c: (~(a | b), _nz(~(a | b))))),
    ("SOP2", 0x1A, 0x20, "s_xnor_b32",                 "sop2", "b32:b32,b32",
     L(lambda a, b, c: (~(a ^ b), _nz(~(a ^ b))))),
    ("SOP2", 0x1B, 0x21, "s_xnor_b64",                 "sop2", "b64:b64,b64",
     L(lambda a, b, c: (~(a ^ b), _nz(~(a ^ b))))),
    ("SOP2", 0x1C, 0x08, "s_lshl_b32",                 "sop2", "b32:b32,u32",
     L(lambda a, b, c: (a << _sh(b), _nz(a << _sh(b))))),
    ("SOP2", 0x1D, 0x09, "s_lshl_b64",                 "sop2", "b64:b64,u32",
     L(lambda a, b, c: (a << _sh64(b), _nz(a << _sh64(b))))),
    ("SOP2", 0x1E, 0x0A, "s_lshr_b32",                 "sop2", "b32:b32,u32",
     L(lambda a, b, c: (a >> _sh(b), _nz(a >> _sh(b))))),
    ("SOP2", 0x1F, 0x0B, "s_lshr_b64",                 "sop2", "b64:b64,u32",
     L(lambda a, b, c: (a >> _sh64(b), _nz(a >> _sh64(b))))),
    ("SOP2", 0x20, 0x0C, "s_ashr_i32",                 "sop2", "i32:i32,u32",
     L(lambda a, b, c: ((a.view(i32) >> _sh(b).astype(i32)).view(u32),
                        _nz(a.view(i32) >> _sh(b).astype(i32))))),
    ("SOP2", 0x21, 0x0D, "s_ashr_i64",                 "sop2", "i64:i64,u32",
     L(lambda a, b, c: ((a.view(i64) >> _sh64(b).astype(i64)).view(u64),
                        _nz(a.view(i64) >> _sh64(b).astype(i64))))),
    ("SOP2", 0x22, 0x2A, "s_bfm_b32",                  "sop2", "b32:b32,b32", s_bfm(32)),
    ("SOP2", 0x23, 0x2B, "s_bfm_b64",                  "sop2", "b64:b32,b32", s_bfm(64)),
    ("SOP2", 0x24, 0x2C, "s_mul_i32",                  "sop2", "i32:i32,i32",
     L(lambda a, b, c: ((a * b).astype(u32), None))),
    ("SOP2", 0x25, 0x26, "s_bfe_u32",                  "sop2", "u32:u32,u32",
     L(lambda a, b, c: (lambda r: (r, _nz(r)))(bfe_u(a, b, (b >> u32(16)) & u32(0x7F))))),
    ("SOP2", 0x26, 0x27, "s_bfe_i32",                  "sop2", "i32:i32,u32",
     L(lambda a, b, c: (lambda r: (r, _nz(r)))(bfe_i(a, b, (b >> u32(16)) & u32(0x7F))))),
    ("SOP2", 0x27, 0x28, "s_bfe_u64",                  "sop2", "u64:u64,u32",
     L(lambda a, b, c: (lambda r: (r, _nz(r)))(bfe_u(a, b, (b >> u32(16)) & u32(0x7F), 64)))),
    ("SOP2", 0x28, 0x29, "s_bfe_i64",                  "sop2", "i64:i64,u32",
     L(lambda a, b, c: (lambda r: (r, _nz(r)))(bfe_i(a, b, (b >> u32(16)) & u32(0x7F), 64)))),
    ("SOP2", 0x2A, 0x06, "s_absdiff_i32",              "sop2", "i32:i32,i32", s_absdiff),
    ("SOP2", 0x2C, 0x2D, "s_mul_hi_u32",               "sop2", "u32:u32,u32",
     L(lambda a, b, c: (mulhi_u32(a, b), None))),
    ("SOP2", 0x2D, 0x2E, "s_mul_hi_i32",               "sop2", "i32:i32,i32",
     L(lambda a, b, c: (mulhi_i32(a, b), None))),
    ("SOP2", 0x2E, 0x0E, "s_lshl1_add_u32",            "sop2", "u32:u32,u32", s_lshl_add(1)),
    ("SOP2", 0x2F, 0x0F, "s_lshl2_add_u32",            "sop2", "u32:u32,u32", s_lshl_add(2)),
    ("SOP2", 0x30, 0x10, "s_lshl3_add_u32",            "sop2", "u32:u32,u32", s_lshl_add(3)),
    ("SOP2", 0x31, 0x11, "s_lshl4_add_u32",            "sop2", "u32:u32,u32", s_lshl_add(4)),
    ("SOP2", 0x32, 0x32, "s_pack_ll_b32_b16",          "sop2", "b32:b32,b32",
     L(lambda a, b, c: ((a & u32(0xFFFF)) | (b << u32(16)), None))),
    ("SOP2", 0x33, 0x33, "s_pack_lh_b32_b16",          "sop2", "b32:b32,b32",
     L(lambda a, b, c: ((a & u32(0xFFFF)) | (b & u32(0xFFFF0000)), None))),
    ("SOP2", 0x34, 0x34, "s_pack_hh_b32_b16",          "sop2", "b32:b32,b32",
     L(lambda a, b, c: ((a >> u32(16)) | (b & u32(0xFFFF0000)), None))),
    ("SOP2", _,    0x35, "s_pack_hl_b32_b16",          "sop2", "b32:b32,b32",
     L(lambda a, b, c: ((a >> u32(16)) | (b << u32(16)), None))),

    # ---- SOPK (simm16) ---------------------------------------------------------------------
    ("SOPK", 0x00, 0x00, "s_movk_i32",                 "movk",  "i32", None),
    ("SOPK", 0x01, 0x02, "s_cmovk_i32",                "cmovk", "i32", None),
    *[("SOPK", 0x02 + j, 0x03 + j, f"s_cmpk_{c}_i32", "cmpk", "i32", ICMP[c])
      for j, c in enumerate(("eq", "lg", "gt", "ge", "lt", "le"))],
    *[("SOPK", 0x08 + j, 0x09 + j, f"s_cmpk_{c}_u32", "cmpk", "u32", ICMP[c])
      for j, c in enumerate(("eq", "lg", "gt", "ge", "lt", "le"))],
    ("SOPK", 0x0E, 0x0F, "s_addk_i32",                 "addk",  "i32", s_add_i32),
    ("SOPK", 0x0F, 0x10, "s_mulk_i32",                 "addk",  "i32",
     L(lambda a, b, c: ((a * b).astype(u32), None))),
    ("SOPK", 0x15, 0x14, "s_call_b64",                 "call",  "b64", None),
    ("SOPK", _,    0x18, "s_waitcnt_vscnt",            "waitk", "b32", None),
    ("SOPK", _,    0x19, "s_waitcnt_vmcnt",            "waitk", "b32", None),
    ("SOPK", _,    0x1A, "s_waitcnt_expcnt",           "waitk", "b32", None),
    ("SOPK", _,    0x1B, "s_waitcnt_lgkmcnt",          "waitk", "b32", None),

    # ---- SOP1 ------------------------------------------------------------------------------
    ("SOP1", 0x00, 0x00, "s_mov_b32",                  "sop1", "b32:b32", L(lambda a, c: (a, None))),
    ("SOP1", 0x01, 0x01, "s_mov_b64",                  "sop1", "b64:b64", L(lambda a, c: (a, None))),
    ("SOP1", 0x02, 0x02, "s_cmov_b32",                 "sop1d", "b32:b32",
     L(lambda a, d, c: (np.where(c, a, d), None))),
    ("SOP1", 0x03, 0x03, "s_cmov_b64",                 "sop1d", "b64:b64",
     L(lambda a, d, c: (np.where(c, a, d), None))),
    ("SOP1", 0x04, 0x1E, "s_not_b32",                  "sop1", "b32:b32", L(lambda a, c: (~a, _nz(~a)))),
    ("SOP1", 0x05, 0x1F, "s_not_b64",                  "sop1", "b64:b64", L(lambda a, c: (~a, _nz(~a)))),
    ("SOP1", 0x08, 0x04, "s_brev_b32",                 "sop1", "b32:b32", L(lambda a, c: (brev(a), None))),
    ("SOP1", 0x09, 0x05, "s_brev_b64",                 "sop1", "b64:b64",
     L(lambda a, c: (brev(a, 64), None))),
    ("SOP1", 0x0A, 0x16, "s_bcnt0_i32_b32",            "sop1", "i32:b32",
     L(lambda a, c: (lambda r: (r, _nz(r)))(32 - popcount(a)))),
    ("SOP1", 0x0B, 0x17, "s_bcnt0_i32_b64",            "sop1", "i32:b64",
     L(lambda a, c: (lambda r: (r, _nz(r)))(64 - popcount(a)))),
    ("SOP1", 0x0C, 0x18, "s_bcnt1_i32_b32",            "sop1", "i32:b32",
     L(lambda a, c: (lambda r: (r, _nz(r)))(popcount(a)))),
    ("SOP1", 0x0D, 0x19, "s_bcnt1_i32_b64",            "sop1", "i32:b64",
     L(lambda a, c: (lambda r: (r, _nz(r)))(popcount(a)))),
    ("SOP1", 0x0E, _,    "s_ff0_i32_b32",              "sop1", "i32:b32", L(lambda a, c: (ctz(~a), None))),
    ("SOP1", 0x0F, _,    "s_ff0_i32_b64",              "sop1", "i32:b64",
     L(lambda a, c: (ctz(~a, 64), None))),
    ("SOP1", 0x10, 0x08, "s_ff1_i32_b32/s_ctz_i32_b32", "sop1", "i32:b32", L(lambda a, c: (ctz(a), None))),
    ("SOP1", 0x11, 0x09, "s_ff1_i32_b64/s_ctz_i32_b64", "sop1", "i32:b64",
     L(lambda a, c: (ctz(a, 64), None))),
    ("SOP1", 0x12, 0x0A, "s_flbit_i32_b32/s_clz_i32_u32", "sop1", "i32:b32", L(lambda a, c: (clz(a), None))),
    ("SOP1", 0x13, 0x0B, "s_flbit_i32_b64/s_clz_i32_u64", "sop1", "i32:b64",
     L(lambda a, c: (clz(a, 64), None))),
    ("SOP1", 0x14, 0x0C, "s_flbit_i32/s_cls_i32",      "sop1", "i32:i32", L(lambda a, c: (cls(a), None))),
    ("SOP1", 0x15, 0x0D, "s_flbit_i32_i64/s_cls_i32_i64", "sop1", "i32:i64",
     L(lambda a, c: (cls(a, 64), None))),
    ("SOP1", 0x16, 0x0E, "s_sext_i32_i8",              "sop1", "i32:i32",
     L(lambda a, c: (_sext(a, 8).astype(u32), None))),
    ("SOP1", 0x17, 0x0F, "s_sext_i32_i16",             "sop1", "i32:i32",
     L(lambda a, c: (_sext(a, 16).astype(u32), None))),
    ("SOP1", 0x18, 0x10, "s_bitset0_b32",              "sop1d", "b32:u32",
     L(lambda a, d, c: (d & ~(u32(1) << _sh(a)), None))),
    ("SOP1", 0x19, 0x11, "s_bitset0_b64",              "sop1d", "b64:u32",
     L(lambda a, d, c: (d & ~(u64(1) << _sh64(a)), None))),
    ("SOP1", 0x1A, 0x12, "s_bitset1_b32",              "sop1d", "b32:u32",
     L(lambda a, d, c: (d | (u32(1) << _sh(a)), None))),
    ("SOP1", 0x1B, 0x13, "s_bitset1_b64",              "sop1d", "b64:u32",
     L(lambda a, d, c: (d | (u64(1) << _sh64(a)), None))),
    ("SOP1", 0x1C, 0x47, "s_getpc_b64",                "getpc", "b64", None),
    ("SOP1", 0x1D, 0x48, "s_setpc_b64",                "setpc", "b64", None),
    ("SOP1", 0x1E, 0x49, "s_swappc_b64",               "swappc", "b64", None),
    ("SOP1", 0x30, 0x15, "s_abs_i32",                  "sop1", "i32:i32",
     L(lambda a, c: (lambda r: (r, _nz(r)))(np.abs(a.view(i32).astype(i64)).astype(u32)))),
    *[("SOP1", o9, o11, f"s_{n9}_saveexec_b64" + (f"/s_{n11}_saveexec_b64" if n11 != n9 else ""),
       "saveexec", "b64:b64", SAVEEXEC[k]) for o9, o11, n9, n11, k in (
        (0x20, 0x21, "and", "and", "and"), (0x21, 0x23, "or", "or", "or"),
        (0x22, 0x25, "xor", "xor", "xor"), (0x23, 0x31, "andn2", "and_not1", "andn2"),
        (0x24, 0x33, "orn2", "or_not1", "orn2"), (0x25, 0x27, "nand", "nand", "nand"),
        (0x26, 0x29, "nor", "nor", "nor"), (0x27, 0x2B, "xnor", "xnor", "xnor"),
        (0x33, 0x2D, "andn1", "and_not0", "andn1"), (0x34, 0x2F, "orn1", "or_not0", "orn1"))],
    *[("SOP1", _, o11, f"s_{n}_saveexec_b32", "saveexec", "b32:b32", SAVEEXEC[k])
      for o11, n, k in ((0x20, "and", "and"), (0x22, "or", "or"), (0x24, "xor", "xor"),
                        (0x30, "and_not1", "andn2"), (0x32, "or_not1", "orn2"),
                        (0x26, "nand", "nand"), (0x28, "nor", "nor"), (0x2A, "xnor", "xnor"),
                        (0x2C, "and_not0", "andn1"), (0x2E, "or_not0", "orn1"))],
    ("SOP1", 0x35, 0x35, "s_andn1_wrexec_b64/s_and_not0_wrexec_b64", "wrexec", "b64:b64",
     SAVEEXEC["andn1"]),
    ("SOP1", 0x36, 0x37, "s_andn2_wrexec_b64/s_and_not1_wrexec_b64", "wrexec", "b64:b64",
     SAVEEXEC["andn2"]),
    ("SOP1", _,    0x34, "s_and_not0_wrexec_b32",      "wrexec", "b32:b32", SAVEEXEC["andn1"]),
    ("SOP1", _,    0x36, "s_and_not1_wrexec_b32",      "wrexec", "b32:b32", SAVEEXEC["andn2"]),
    ("SOP1", _,    0x4C, "s_sendmsg_rtn_b32",          "sendmsg_rtn", "b32", None),
    ("SOP1", _,    0x4D, "s_sendmsg_rtn_b64",          "sendmsg_rtn", "b64", None),

    # ---- SOPC ------------------------------------------------------------------------------
    *[("SOPC", j, j, f"s_cmp_{c}_i32", "sopc", ":i32,i32", ICMP[c])
      for j, c in enumerate(("eq", "lg", "gt", "ge", "lt", "le"))],
    *[("SOPC", 6 + j, 6 + j, f"s_cmp_{c}_u32", "sopc", ":u32,u32", ICMP[c])
      for j, c in enumerate(("eq", "lg", "gt", "ge", "lt", "le"))],
    ("SOPC", 0x0C, 0x0C, "s_bitcmp0_b32",              "sopc", ":b32,u32",
     L(lambda a, b: (a >> _sh(b)) & u32(1) == 0)),
    ("SOPC", 0x0D, 0x0D, "s_bitcmp1_b32",              "sopc", ":b32,u32",
     L(lambda a, b: (a >> _sh(b)) & u32(1) == 1)),
    ("SOPC", 0x0E, 0x0E, "s_bitcmp0_b64",              "sopc", ":b64,u32",
     L(lambda a, b: (a >> _sh64(b)) & u64(1) == 0)),
    ("SOPC", 0x0F, 0x0F, "s_bitcmp1_b64",              "sopc", ":b64,u32",
     L(lambda a, b: (a >> _sh64(b)) & u64(1) == 1)),
    ("SOPC", 0x12, 0x10, "s_cmp_eq_u64",               "sopc", ":u64,u64", np.equal),
    ("SOPC", 0x13, 0x11, "s_cmp_lg_u64",               "sopc", ":u64,u64", np.not_equal),

    # ---- SOPP (sem: the immediate's print style / behaviour) --------------------------------
    ("SOPP", 0x00, 0x00, "s_nop",                      "nop",     "dec", None),
    ("SOPP", 0x01, 0x30, "s_endpgm",                   "endpgm",  "", None),
    ("SOPP", 0x02, 0x20, "s_branch",                   "branch",  "", None),
    ("SOPP", 0x04, 0x21, "s_cbranch_scc0",             "cbranch", "", "scc0"),
    ("SOPP", 0x05, 0x22, "s_cbranch_scc1",             "cbranch", "", "scc1"),
    ("SOPP", 0x06, 0x23, "s_cbranch_vccz",             "cbranch", "", "vccz"),
    ("SOPP", 0x07, 0x24, "s_cbranch_vccnz",            "cbranch", "", "vccnz"),
    ("SOPP", 0x08, 0x25, "s_cbranch_execz",            "cbranch", "", "execz"),
    ("SOPP", 0x09, 0x26, "s_cbranch_execnz",           "cbranch", "", "execnz"),
    ("SOPP", 0x0A, 0x3D, "s_barrier",                  "barrier", "", None),
    ("SOPP", 0x0C, 0x09, "s_waitcnt",                  "nop",     "waitcnt", None),
    ("SOPP", 0x0D, 0x02, "s_sethalt",                  "halt",    "dec", None),
    ("SOPP", 0x0E, 0x03, "s_sleep",                    "nop",     "dec", None),
    ("SOPP", 0x0F, 0x35, "s_setprio",                  "nop",     "dec", None),
    ("SOPP", 0x10, 0x36, "s_sendmsg",                  "nop",     "sendmsg", None),
    ("SOPP", 0x12, 0x10, "s_trap",                     "trap",    "dec", None),
    ("SOPP", 0x13, 0x3C, "s_icache_inv",               "nop",     "", None),
    ("SOPP", 0x14, 0x38, "s_incperflevel",             "nop",     "dec", None),
    ("SOPP", 0x15, 0x39, "s_decperflevel",             "nop",     "dec", None),
    ("SOPP", _,    0x04, "s_set_inst_prefetch_distance", "nop",   "hex", None),
    ("SOPP", _,    0x05, "s_clause",                   "nop",     "hex", None),
    ("SOPP", _,    0x07, "s_delay_alu",                "nop",     "delay_alu", None),
    ("SOPP", _,    0x08, "s_waitcnt_depctr",           "nop",     "depctr", None),
    ("SOPP", _,    0x0A, "s_wait_idle",                "nop",     "", None),
    ("SOPP", _,    0x1F, "s_code_end",                 "code_end", "", None),

    # ---- SMEM ------------------------------------------------------------------------------
    ("SMEM", 0x00, 0x00, "s_load_dword/s_load_b32",    "sload", "", 1),
    ("SMEM", 0x01, 0x01, "s_load_dwordx2/s_load_b64",  "sload", "", 2),
    ("SMEM", 0x02, 0x02, "s_load_dwordx4/s_load_b128", "sload", "", 4),
    ("SMEM", 0x03, 0x03, "s_load_dwordx8/s_load_b256", "sload", "", 8),
    ("SMEM", 0x04, 0x04, "s_load_dwordx16/s_load_b512", "sload", "", 16),
    ("SMEM", 0x20, 0x21, "s_dcache_inv",               "snop", "", None),
    ("SMEM", _,    0x20, "s_gl1_inv",                  "snop", "", None),

    # ---- VOP2 (also VOP3 as _e64 unless types start with "!") ------------------------------
    ("VOP2", 0x00, 0x01, "v_cndmask_b32",              "cnd", "b32:b32,b32", None),
    ("VOP2", 0x01, 0x03, "v_add_f32",                  "alu", "f32:f32,f32", L(lambda a, b: a + b)),
    ("VOP2", 0x02, 0x04, "v_sub_f32",                  "alu", "f32:f32,f32", L(lambda a, b: a - b)),
    ("VOP2", 0x03, 0x05, "v_subrev_f32",               "alu", "f32:f32,f32", L(lambda a, b: b - a)),
    ("VOP2", 0x05, 0x08, "v_mul_f32",                  "alu", "f32:f32,f32", L(lambda a, b: a * b)),
    ("VOP2", 0x06, 0x09, "v_mul_i32_i24",              "alu", "i32:i32,i32",
     L(lambda a, b: _mul24(a, b, True, False))),
    ("VOP2", 0x07, 0x0A, "v_mul_hi_i32_i24",           "alu", "i32:i32,i32",
     L(lambda a, b: _mul24(a, b, True, True))),
    ("VOP2", 0x08, 0x0B, "v_mul_u32_u24",              "alu", "u32:u32,u32",
     L(lambda a, b: _mul24(a, b, False, False))),
    ("VOP2", 0x09, 0x0C, "v_mul_hi_u32_u24",           "alu", "u32:u32,u32",
     L(lambda a, b: _mul24(a, b, False, True))),
    ("VOP2", 0x0A, 0x0F, "v_min_f32",                  "alu", "f32:f32,f32", np.fmin),
    ("VOP2", 0x0B, 0x10, "v_max_f32",                  "alu", "f32:f32,f32", np.fmax),
    ("VOP2", 0x0C, 0x11, "v_min_i32",                  "alu", "i32:i32,i32", np.minimum),
    ("VOP2", 0x0D, 0x12, "v_max_i32",                  "alu", "i32:i32,i32", np.maximum),
    ("VOP2", 0x0E, 0x13, "v_min_u32",                  "alu", "u32:u32,u32", np.minimum),
    ("VOP2", 0x0F, 0x14, "v_max_u32",                  "alu", "u32:u32,u32", np.maximum),
    ("VOP2", 0x10, 0x19, "v_lshrrev_b32",              "alu", "b32:u32,b32", L(lambda a, b: b >> _sh(a))),
    ("VOP2", 0x11, 0x1A, "v_ashrrev_i32",              "alu", "i32:u32,i32",
     L(lambda a, b: b >> _sh(a).astype(i32))),
    ("VOP2", 0x12, 0x18, "v_lshlrev_b32",              "alu", "b32:u32,b32", L(lambda a, b: b << _sh(a))),
    ("VOP2", 0x13, 0x1B, "v_and_b32",                  "alu", "b32:b32,b32", L(lambda a, b: a & b)),
    ("VOP2", 0x14, 0x1C, "v_or_b32",                   "alu", "b32:b32,b32", L(lambda a, b: a | b)),
    ("VOP2", 0x15, 0x1D, "v_xor_b32",                  "alu", "b32:b32,b32", L(lambda a, b: a ^ b)),
    ("VOP2", 0x3D, 0x1E, "v_xnor_b32",                 "alu", "b32:b32,b32", L(lambda a, b: ~(a ^ b))),
    ("VOP2", 0x17, 0x2C, "v_fmamk_f32",                "mk",  "!f32:f32,f32,f32", fma32),
    ("VOP2", 0x18, 0x2D, "v_fmaak_f32",                "ak",  "!f32:f32,f32,f32", fma32),
    ("VOP2", 0x3B, 0x2B, "v_fmac_f32",                 "mac", "f32:f32,f32,f32", fma32),
    ("VOP2", 0x19, _,    "v_add_co_u32",               "co",  "u32:u32,u32", add_co),
    ("VOP2", 0x1A, _,    "v_sub_co_u32",               "co",  "u32:u32,u32", sub_co),
    ("VOP2", 0x1B, _,    "v_subrev_co_u32",            "co",  "u32:u32,u32", L(lambda a, b: sub_co(b, a))),
    ("VOP2", 0x1C, 0x20, "v_addc_co_u32/v_add_co_ci_u32", "cico", "u32:u32,u32", addc),
    ("VOP2", 0x1D, 0x21, "v_subb_co_u32/v_sub_co_ci_u32", "cico", "u32:u32,u32", subb),
    ("VOP2", 0x1E, 0x22, "v_subbrev_co_u32/v_subrev_co_ci_u32", "cico", "u32:u32,u32",
     L(lambda a, b, c: subb(b, a, c))),
    ("VOP2", 0x34, 0x25, "v_add_u32/v_add_nc_u32",     "alu", "u32:u32,u32", L(lambda a, b: a + b)),
    ("VOP2", 0x35, 0x26, "v_sub_u32/v_sub_nc_u32",     "alu", "u32:u32,u32", L(lambda a, b: a - b)),
    ("VOP2", 0x36, 0x27, "v_subrev_u32/v_subrev_nc_u32", "alu", "u32:u32,u32", L(lambda a, b: b - a)),
    ("VOP2", 0x1F, 0x32, "v_add_f16",                  "alu", "f16:f16,f16", L(lambda a, b: a + b)),
    ("VOP2", 0x20, 0x33, "v_sub_f16",                  "alu", "f16:f16,f16", L(lambda a, b: a - b)),
    ("VOP2", 0x21, 0x34, "v_subrev_f16",               "alu", "f16:f16,f16", L(lambda a, b: b - a)),
    ("VOP2", 0x22, 0x35, "v_mul_f16",                  "alu", "f16:f16,f16", L(lambda a, b: a * b)),
    ("VOP2", 0x2D, 0x39, "v_max_f16",                  "alu", "f16:f16,f16", np.fmax),
    ("VOP2", 0x2E, 0x3A, "v_min_f16",                  "alu", "f16:f16,f16", np.fmin),

    # ---- VOP1 ------------------------------------------------------------------------------
    ("VOP1", 0x00, 0x00, "v_nop",                      "vnop", "!", None),
    ("VOP1", 0x01, 0x01, "v_mov_b32",                  "alu", "b32:b32", L(lambda a: a)),
    ("VOP1", 0x02, 0x02, "v_readfirstlane_b32",        "rfl", "!b32:b32", None),
    ("VOP1", 0x03, 0x03, "v_cvt_i32_f64",              "alu", "i32:f64", cvt_i32),
    ("VOP1", 0x04, 0x04, "v_cvt_f64_i32",              "alu", "f64:i32", L(lambda a: a.astype(f64))),
    ("VOP1", 0x05, 0x05, "v_cvt_f32_i32",              "alu", "f32:i32", L(lambda a: a.astype(f32))),
    ("VOP1", 0x06, 0x06, "v_cvt_f32_u32",              "alu", "f32:u32", L(lambda a: a.astype(f32))),
    ("VOP1", 0x07, 0x07, "v_cvt_u32_f32",              "alu", "u32:f32", cvt_u32),
    ("VOP1", 0x08, 0x08, "v_cvt_i32_f32",              "alu", "i32:f32", cvt_i32),
    ("VOP1", 0x0A, 0x0A, "v_cvt_f16_f32",              "alu", "f16:f32", L(lambda a: a.astype(f16))),
    ("VOP1", 0x0B, 0x0B, "v_cvt_f32_f16",              "alu", "f32:f16", L(lambda a: a.astype(f32))),
    ("VOP1", 0x0C, 0x0C, "v_cvt_rpi_i32_f32/v_cvt_nearest_i32_f32", "alu", "i32:f32",
     L(lambda a: cvt_i32(np.floor(a.astype(f64) + 0.5)))),
    ("VOP1", 0x0D, 0x0D, "v_cvt_flr_i32_f32/v_cvt_floor_i32_f32", "alu", "i32:f32",
     L(lambda a: cvt_i32(np.floor(a.astype(f64))))),
    ("VOP1", 0x0F, 0x0F, "v_cvt_f32_f64",              "alu", "f32:f64", L(lambda a: a.astype(f32))),
    ("VOP1", 0x10, 0x10, "v_cvt_f64_f32",              "alu", "f64:f32", L(lambda a: a.astype(f64))),
    *[("VOP1", 0x11 + k, 0x11 + k, f"v_cvt_f32_ubyte{k}", "alu", "f32:u32",
       (lambda k: lambda a: ((a >> u32(8 * k)) & u32(0xFF)).astype(f32))(k)) for k in range(4)],
    ("VOP1", 0x15, 0x15, "v_cvt_u32_f64",              "alu", "u32:f64", cvt_u32),
    ("VOP1", 0x16, 0x16, "v_cvt_f64_u32",              "alu", "f64:u32", L(lambda a: a.astype(f64))),
    ("VOP1", 0x17, 0x17, "v_trunc_f64",                "alu", "f64:f64", np.trunc),
    ("VOP1", 0x18, 0x18, "v_ceil_f64",                 "alu", "f64:f64", np.ceil),
    ("VOP1", 0x19, 0x19, "v_rndne_f64",                "alu", "f64:f64", np.rint),
    ("VOP1", 0x1A, 0x1A, "v_floor_f64",                "alu", "f64:f64", np.floor),
    ("VOP1", 0x1B, 0x20, "v_fract_f32",                "alu", "f32:f32", fract),
    ("VOP1", 0x1C, 0x21, "v_trunc_f32",                "alu", "f32:f32", np.trunc),
    ("VOP1", 0x1D, 0x22, "v_ceil_f32",                 "alu", "f32:f32", np.ceil),
    ("VOP1", 0x1E, 0x23, "v_rndne_f32",                "alu", "f32:f32", np.rint),
    ("VOP1", 0x1F, 0x24, "v_floor_f32",                "alu", "f32:f32", np.floor),
    ("VOP1", 0x20, 0x25, "v_exp_f32",                  "alu", "f32:f32", np.exp2),
    ("VOP1", 0x21, 0x27, "v_log_f32",                  "alu", "f32:f32", np.log2),
    ("VOP1", 0x22, 0x2A, "v_rcp_f32",                  "alu", "f32:f32", L(lambda a: f32(1) / a)),
    ("VOP1", 0x23, 0x2B, "v_rcp_iflag_f32",            "alu", "f32:f32", L(lambda a: f32(1) / a)),
    ("VOP1", 0x24, 0x2E, "v_rsq_f32",                  "alu", "f32:f32", L(lambda a: f32(1) / np.sqrt(a))),
    ("VOP1", 0x25, 0x2F, "v_rcp_f64",                  "alu", "f64:f64", L(lambda a: 1.0 / a)),
    ("VOP1", 0x26, 0x31, "v_rsq_f64",                  "alu", "f64:f64", L(lambda a: 1.0 / np.sqrt(a))),
    ("VOP1", 0x27, 0x33, "v_sqrt_f32",                 "alu", "f32:f32", np.sqrt),
    ("VOP1", 0x28, 0x34, "v_sqrt_f64",                 "alu", "f64:f64", np.sqrt),
    ("VOP1", 0x29, 0x35, "v_sin_f32",                  "alu", "f32:f32", _sin),
    ("VOP1", 0x2A, 0x36, "v_cos_f32",                  "alu", "f32:f32", _cos),
    ("VOP1", 0x2B, 0x37, "v_not_b32",                  "alu", "b32:b32", L(lambda a: ~a)),
    ("VOP1", 0x2C, 0x38, "v_bfrev_b32",                "alu", "b32:b32", brev),
    ("VOP1", 0x2D, 0x39, "v_ffbh_u32/v_clz_i32_u32",   "alu", "u32:u32", clz),
    ("VOP1", 0x2E, 0x3A, "v_ffbl_b32/v_ctz_i32_b32",   "alu", "u32:b32", ctz),
    ("VOP1", 0x2F, 0x3B, "v_ffbh_i32/v_cls_i32",       "alu", "u32:i32", L(lambda a: cls(a.view(u32)))),
    ("VOP1", 0x30, 0x3C, "v_frexp_exp_i32_f64",        "alu", "i32:f64", _frexp_exp),
    ("VOP1", 0x31, 0x3D, "v_frexp_mant_f64",           "alu", "f64:f64", _frexp_mant),
    ("VOP1", 0x32, 0x3E, "v_fract_f64",                "alu", "f64:f64", fract),
    ("VOP1", 0x33, 0x3F, "v_frexp_exp_i32_f32",        "alu", "i32:f32", _frexp_exp),
    ("VOP1", 0x34, 0x40, "v_frexp_mant_f32",           "alu", "f32:f32", _frexp_mant),
    ("VOP1", 0x38, _,    "v_mov_b64",                  "alu", "b64:b64", L(lambda a: a)),
    ("VOP1", _,    0x1C, "v_mov_b16",                  "alu", "b16:b16", L(lambda a: a)),
    ("VOP1", _,    0x69, "v_not_b16",                  "alu", "b16:b16", L(lambda a: ~a)),
    ("VOP1", 0x52, _,    "v_accvgpr_mov_b32",          "accmov", "!b32:b32", None),

    # ---- VOP3 only -------------------------------------------------------------------------
    ("VOP3", 0x1C2, 0x20A, "v_mad_i32_i24",            "alu", "i32:i32,i32,i32",
     L(lambda a, b, c: (_mul24(a, b, True, False) + c.view(u32)))),
    ("VOP3", 0x1C3, 0x20B, "v_mad_u32_u24",            "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: _mul24(a, b, False, False) + c)),
    ("VOP3", 0x1C8, 0x210, "v_bfe_u32",                "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: bfe_u(a, b, c & u32(31)))),
    ("VOP3", 0x1C9, 0x211, "v_bfe_i32",                "alu", "i32:i32,u32,u32",
     L(lambda a, b, c: bfe_i(a.view(u32), b, c & u32(31)))),
    ("VOP3", 0x1CA, 0x212, "v_bfi_b32",                "alu", "b32:b32,b32,b32",
     L(lambda a, b, c: (a & b) | (~a & c))),
    ("VOP3", 0x1CB, 0x213, "v_fma_f32",                "alu", "f32:f32,f32,f32", fma32),
    ("VOP3", 0x1CE, 0x216, "v_alignbit_b32",           "alu", "b32:b32,b32,u16",
     L(lambda a, b, c: (((a.astype(u64) << u64(32)) | b) >> (c.astype(u64) & u64(31))).astype(u32))),
    ("VOP3", 0x1CF, 0x217, "v_alignbyte_b32",          "alu", "b32:b32,b32,u16",
     L(lambda a, b, c: (((a.astype(u64) << u64(32)) | b) >> ((c.astype(u64) & u64(3)) * u64(8)))
       .astype(u32))),
    ("VOP3", 0x1D0, 0x219, "v_min3_f32",               "alu", "f32:f32,f32,f32",
     L(lambda a, b, c: np.fmin(np.fmin(a, b), c))),
    ("VOP3", 0x1D1, 0x21A, "v_min3_i32",               "alu", "i32:i32,i32,i32",
     L(lambda a, b, c: np.minimum(np.minimum(a, b), c))),
    ("VOP3", 0x1D2, 0x21B, "v_min3_u32",               "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: np.minimum(np.minimum(a, b), c))),
    ("VOP3", 0x1D3, 0x21C, "v_max3_f32",               "alu", "f32:f32,f32,f32",
     L(lambda a, b, c: np.fmax(np.fmax(a, b), c))),
    ("VOP3", 0x1D4, 0x21D, "v_max3_i32",               "alu", "i32:i32,i32,i32",
     L(lambda a, b, c: np.maximum(np.maximum(a, b), c))),
    ("VOP3", 0x1D5, 0x21E, "v_max3_u32",               "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: np.maximum(np.maximum(a, b), c))),
    ("VOP3", 0x1D6, 0x21F, "v_med3_f32",               "alu", "f32:f32,f32,f32", fmed3),
    ("VOP3", 0x1D7, 0x220, "v_med3_i32",               "alu", "i32:i32,i32,i32", med3),
    ("VOP3", 0x1D8, 0x221, "v_med3_u32",               "alu", "u32:u32,u32,u32", med3),
    ("VOP3", 0x1E8, 0x2FE, "v_mad_u64_u32",            "mad64", "u64:u32,u32,u64", mad_u64),
    ("VOP3", 0x1E9, 0x2FF, "v_mad_i64_i32",            "mad64", "i64:i32,i32,i64", mad_i64),
    ("VOP3", 0x1ED, 0x244, "v_perm_b32",               "alu", "b32:b32,b32,b32", perm),
    ("VOP3", 0x1F3, 0x245, "v_xad_u32",                "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: (a ^ b) + c)),
    ("VOP3", 0x1FD, 0x246, "v_lshl_add_u32",           "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: (a << _sh(b)) + c)),
    ("VOP3", 0x1FE, 0x247, "v_add_lshl_u32",           "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: (a + b) << _sh(c))),
    ("VOP3", 0x1FF, 0x255, "v_add3_u32",               "alu", "u32:u32,u32,u32",
     L(lambda a, b, c: a + b + c)),
    ("VOP3", 0x200, 0x256, "v_lshl_or_b32",            "alu", "b32:b32,u32,b32",
     L(lambda a, b, c: (a << _sh(b)) | c)),
    ("VOP3", 0x201, 0x257, "v_and_or_b32",             "alu", "b32:b32,b32,b32",
     L(lambda a, b, c: (a & b) | c)),
    ("VOP3", 0x202, 0x258, "v_or3_b32",                "alu", "b32:b32,b32,b32",
     L(lambda a, b, c: a | b | c)),
    ("VOP3", _,     0x240, "v_xor3_b32",               "alu", "b32:b32,b32,b32",
     L(lambda a, b, c: a ^ b ^ c)),
    ("VOP3", 0x208, _,     "v_lshl_add_u64",           "alu", "u64:u64,u32,u64",
     L(lambda a, b, c: (a << _sh64(b)) + c)),
    ("VOP3", 0x280, 0x327, "v_add_f64",                "alu", "f64:f64,f64", L(lambda a, b: a + b)),
    ("VOP3", 0x281, 0x328, "v_mul_f64",                "alu", "f64:f64,f64", L(lambda a, b: a * b)),
    ("VOP3", 0x282, 0x329, "v_min_f64",                "alu", "f64:f64,f64", np.fmin),
    ("VOP3", 0x283, 0x32A, "v_max_f64",                "alu", "f64:f64,f64", np.fmax),
    ("VOP3", 0x284, 0x32B, "v_ldexp_f64",              "alu", "f64:f64,i32", _ldexp),
    ("VOP3", 0x285, 0x32C, "v_mul_lo_u32",             "alu", "u32:u32,u32", L(lambda a, b: a * b)),
    ("VOP3", 0x286, 0x32D, "v_mul_hi_u32",             "alu", "u32:u32,u32", mulhi_u32),
    ("VOP3", 0x287, 0x32E, "v_mul_hi_i32",             "alu", "i32:i32,i32", mulhi_i32),
    ("VOP3", 0x288, 0x31C, "v_ldexp_f32",              "alu", "f32:f32,i32", _ldexp),
    ("VOP3", 0x289, 0x360, "v_readlane_b32",           "rl",  "b32:b32,u32", None),
    ("VOP3", 0x28A, 0x361, "v_writelane_b32",          "wl",  "b32:b32,u32", None),
    ("VOP3", 0x28B, 0x31E, "v_bcnt_u32_b32",           "alu", "u32:b32,u32", L(lambda a, b: popcount(a) + b)),
    ("VOP3", 0x28C, 0x31F, "v_mbcnt_lo_u32_b32",       "mbcnt", "u32:b32,u32", 0),
    ("VOP3", 0x28D, 0x320, "v_mbcnt_hi_u32_b32",       "mbcnt", "u32:b32,u32", 32),
    ("VOP3", 0x28F, 0x33C, "v_lshlrev_b64",            "alu", "b64:u32,b64", L(lambda a, b: b << _sh64(a))),
    ("VOP3", 0x290, 0x33D, "v_lshrrev_b64",            "alu", "b64:u32,b64", L(lambda a, b: b >> _sh64(a))),
    ("VOP3", 0x291, 0x33E, "v_ashrrev_i64",            "alu", "i64:u32,i64",
     L(lambda a, b: b >> _sh64(a).astype(i64))),
    ("VOP3", 0x293, 0x31D, "v_bfm_b32",                "alu", "b32:u32,u32",
     L(lambda a, b: ((u32(1) << _sh(a)) - u32(1)) << _sh(b))),
    ("VOP3", _,     0x300, "v_add_co_u32",             "co",  "u32:u32,u32", add_co),
    ("VOP3", _,     0x301, "v_sub_co_u32",             "co",  "u32:u32,u32", sub_co),
    ("VOP3", _,     0x302, "v_subrev_co_u32",          "co",  "u32:u32,u32", L(lambda a, b: sub_co(b, a))),
    ("VOP3", _,     0x362, "v_and_b16",                "alu", "b16:b16,b16", L(lambda a, b: a & b)),
    ("VOP3", _,     0x363, "v_or_b16",                 "alu", "b16:b16,b16", L(lambda a, b: a | b)),
    ("VOP3", _,     0x364, "v_xor_b16",                "alu", "b16:b16,b16", L(lambda a, b: a ^ b)),
    ("VOP3", _,     0x303, "v_add_nc_u16",             "alu", "u16:u16,u16", L(lambda a, b: a + b)),
    ("VOP3", _,     0x304, "v_sub_nc_u16",             "alu", "u16:u16,u16", L(lambda a, b: a - b)),
    ("VOP3", _,     0x305, "v_mul_lo_u16",             "alu", "u16:u16,u16", L(lambda a, b: a * b)),
    ("VOP3", _,     0x326, "v_add_nc_i32",             "alu", "i32:i32,i32", L(lambda a, b: a + b)),
    ("VOP3", _,     0x325, "v_sub_nc_i32",             "alu", "i32:i32,i32", L(lambda a, b: a - b)),

    # ---- VOP3P (gfx942 accumulation registers) ---------------------------------------------
    ("VOP3P", 0x58, _,    "v_accvgpr_read_b32",        "accr", "b32:b32", None),
    ("VOP3P", 0x59, _,    "v_accvgpr_write_b32",       "accw", "b32:b32", None),

    # ---- MUBUF: cache maintenance (no caches are modelled: ordering no-ops) ----------------
    ("MUBUF", 0x28, _,    "buffer_wbl2",               "cache", "", None),
    ("MUBUF", 0x29, _,    "buffer_inv",                "cache", "", None),
    ("MUBUF", _,    0x2B, "buffer_gl0_inv",            "cache", "", None),
    ("MUBUF", _,    0x2C, "buffer_gl1_inv",            "cache", "", None),
]

# ---- VOPC: comparisons (cmpx writes EXEC) ---------------------------------------------------
for _t, _o9, _o11, _tab, _order in (
        ("f32", 0x40, 0x10, FCMP, _FCMP_ORDER), ("f64", 0x60, 0x20, FCMP, _FCMP_ORDER),
        ("i32", 0xC0, 0x40, ICMP, _ICMP_ORDER), ("u32", 0xC8, 0x48, ICMP, _ICMP_ORDER),
        ("i64", 0xE0, 0x50, ICMP, _ICMP_ORDER), ("u64", 0xE8, 0x58, ICMP, _ICMP_ORDER)):
    for _j, _c in enumerate(_order):
        _n11 = "t" if _c == "tru" else _c
        _name = f"v_cmp_{_c}_{_t}" + (f"/v_cmp_{_n11}_{_t}" if _n11 != _c else "")
        _xname = f"v_cmpx_{_c}_{_t}" + (f"/v_cmpx_{_n11}_{_t}" if _n11 != _c else "")
        _x9 = _o9 + _j + 0x10                     # gfx9: the cmpx block follows the cmp block
        ROWS.append(("VOPC", _o9 + _j, _o11 + _j, _name, "cmp", f":{_t},{_t}", _tab[_c]))
        ROWS.append(("VOPC", _x9, _o11 + _j + 0x80, _xname, "cmpx", f":{_t},{_t}", _tab[_c]))
for _t, _o9, _o11 in (("f32", 0x10, 0x7E), ("f64", 0x12, 0x7F)):
    ROWS.append(("VOPC", _o9, _o11, f"v_cmp_class_{_t}", "cmp", f":{_t},u32", fclass))
    ROWS.append(("VOPC", _o9 + 1, _o11 + 0x80, f"v_cmpx_class_{_t}", "cmpx", f":{_t},u32", fclass))

# ---- DS (LDS); sem = (operation, bytes, extra) -----------------------------------------------
_DS_ATOMICS = [  # (gfx9 op, gfx11 op, gfx9 name, gfx11 name, atomic, bytes)
    (0x00, 0x00, "ds_add_u32", "ds_add_u32", "add", 4), (0x01, 0x01, "ds_sub_u32", "ds_sub_u32", "sub", 4),
    (0x03, 0x03, "ds_inc_u32", "ds_inc_u32", "inc", 4), (0x04, 0x04, "ds_dec_u32", "ds_dec_u32", "dec", 4),
    (0x05, 0x05, "ds_min_i32", "ds_min_i32", "smin", 4), (0x06, 0x06, "ds_max_i32", "ds_max_i32", "smax", 4),
    (0x07, 0x07, "ds_min_u32", "ds_min_u32", "umin", 4), (0x08, 0x08, "ds_max_u32", "ds_max_u32", "umax", 4),
    (0x09, 0x09, "ds_and_b32", "ds_and_b32", "and", 4), (0x0A, 0x0A, "ds_or_b32", "ds_or_b32", "or", 4),
    (0x0B, 0x0B, "ds_xor_b32", "ds_xor_b32", "xor", 4), (0x15, 0x15, "ds_add_f32", "ds_add_f32", "fadd", 4),
    (0x12, 0x12, "ds_min_f32", "ds_min_f32", "fmin", 4), (0x13, 0x13, "ds_max_f32", "ds_max_f32", "fmax", 4),
    (0x40, 0x40, "ds_add_u64", "ds_add_u64", "add", 8), (0x41, 0x41, "ds_sub_u64", "ds_sub_u64", "sub", 8),
    (0x47, 0x47, "ds_min_u64", "ds_min_u64", "umin", 8), (0x48, 0x48, "ds_max_u64", "ds_max_u64", "umax", 8),
    (0x49, 0x49, "ds_and_b64", "ds_and_b64", "and", 8), (0x4A, 0x4A, "ds_or_b64", "ds_or_b64", "or", 8),
    (0x4B, 0x4B, "ds_xor_b64", "ds_xor_b64", "xor", 8),
]
for _o9, _o11, _n9, _n11, _a, _b in _DS_ATOMICS:
    _nm = _n9 if _n9 == _n11 else f"{_n9}/{_n11}"
    ROWS.append(("DS", _o9, _o11, _nm, "ds", "", ("atomic", _b, _a, False)))
    _r9 = "_".join(_n9.split("_")[:2]) + "_rtn_" + "_".join(_n9.split("_")[2:])
    _r11 = "_".join(_n11.split("_")[:2]) + "_rtn_" + "_".join(_n11.split("_")[2:])
    _rop11 = 0x79 if _n11 == "ds_add_f32" else _o11 + 0x20
    ROWS.append(("DS", _o9 + 0x20, _rop11, _r9 if _r9 == _r11 else f"{_r9}/{_r11}", "ds", "",
                 ("atomic", _b, _a, True)))
ROWS += [
    ("DS", 0x2D, 0x2D, "ds_wrxchg_rtn_b32/ds_storexchg_rtn_b32", "ds", "", ("atomic", 4, "swap", True)),
    ("DS", 0x6D, 0x6D, "ds_wrxchg_rtn_b64/ds_storexchg_rtn_b64", "ds", "", ("atomic", 8, "swap", True)),
    ("DS", 0x0D, 0x0D, "ds_write_b32/ds_store_b32",   "ds", "", ("store", 4, 0)),
    ("DS", 0x1E, 0x1E, "ds_write_b8/ds_store_b8",     "ds", "", ("store", 1, 0)),
    ("DS", 0x1F, 0x1F, "ds_write_b16/ds_store_b16",   "ds", "", ("store", 2, 0)),
    ("DS", 0x4D, 0x4D, "ds_write_b64/ds_store_b64",   "ds", "", ("store", 8, 0)),
    ("DS", 0xDE, 0xDE, "ds_write_b96/ds_store_b96",   "ds", "", ("store", 12, 0)),
    ("DS", 0xDF, 0xDF, "ds_write_b128/ds_store_b128", "ds", "", ("store", 16, 0)),
    ("DS", 0x54, 0xA0, "ds_write_b8_d16_hi/ds_store_b8_d16_hi", "ds", "", ("store", 1, 16)),
    ("DS", 0x55, 0xA1, "ds_write_b16_d16_hi/ds_store_b16_d16_hi", "ds", "", ("store", 2, 16)),
    ("DS", 0x0E, 0x0E, "ds_write2_b32/ds_store_2addr_b32", "ds", "", ("store2", 4, 1)),
    ("DS", 0x0F, 0x0F, "ds_write2st64_b32/ds_store_2addr_stride64_b32", "ds", "", ("store2", 4, 64)),
    ("DS", 0x4E, 0x4E, "ds_write2_b64/ds_store_2addr_b64", "ds", "", ("store2", 8, 1)),
    ("DS", 0x4F, 0x4F, "ds_write2st64_b64/ds_store_2addr_stride64_b64", "ds", "", ("store2", 8, 64)),
    ("DS", 0x36, 0x36, "ds_read_b32/ds_load_b32",     "ds", "", ("load", 4, "u")),
    ("DS", 0x39, 0x39, "ds_read_i8/ds_load_i8",       "ds", "", ("load", 1, "i")),
    ("DS", 0x3A, 0x3A, "ds_read_u8/ds_load_u8",       "ds", "", ("load", 1, "u")),
    ("DS", 0x3B, 0x3B, "ds_read_i16/ds_load_i16",     "ds", "", ("load", 2, "i")),
    ("DS", 0x3C, 0x3C, "ds_read_u16/ds_load_u16",     "ds", "", ("load", 2, "u")),
    ("DS", 0x76, 0x76, "ds_read_b64/ds_load_b64",     "ds", "", ("load", 8, "u")),
    ("DS", 0xFE, 0xFE, "ds_read_b96/ds_load_b96",     "ds", "", ("load", 12, "u")),
    ("DS", 0xFF, 0xFF, "ds_read_b128/ds_load_b128",   "ds", "", ("load", 16, "u")),
    ("DS", 0x5A, 0xA6, "ds_read_u16_d16/ds_load_u16_d16", "ds", "", ("load", 2, "d16")),
    ("DS", 0x5B, 0xA7, "ds_read_u16_d16_hi/ds_load_u16_d16_hi", "ds", "", ("load", 2, "d16hi")),
    ("DS", 0x37, 0x37, "ds_read2_b32/ds_load_2addr_b32", "ds", "", ("load2", 4, 1)),
    ("DS", 0x38, 0x38, "ds_read2st64_b32/ds_load_2addr_stride64_b32", "ds", "", ("load2", 4, 64)),
    ("DS", 0x77, 0x77, "ds_read2_b64/ds_load_2addr_b64", "ds", "", ("load2", 8, 1)),
    ("DS", 0x78, 0x78, "ds_read2st64_b64/ds_load_2addr_stride64_b64", "ds", "", ("load2", 8, 64)),
    ("DS", 0x3E, 0xB2, "ds_permute_b32",              "ds", "", ("permute", 4, False)),
    ("DS", 0x3F, 0xB3, "ds_bpermute_b32",             "ds", "", ("permute", 4, True)),
]

# ---- FLAT / GLOBAL / SCRATCH: one opcode space, segment chosen by the SEG field ------------
# sem = (operation, bytes, extra); the row applies to the segments listed in types
_FLAT = [  # gfx9, gfx11, gfx9 suffix, gfx11 suffix, op, bytes, extra, segments
    (0x10, 0x10, "load_ubyte", "load_u8", "load", 1, "u", "fgs"),
    (0x11, 0x11, "load_sbyte", "load_i8", "load", 1, "i", "fgs"),
    (0x12, 0x12, "load_ushort", "load_u16", "load", 2, "u", "fgs"),
    (0x13, 0x13, "load_sshort", "load_i16", "load", 2, "i", "fgs"),
    (0x14, 0x14, "load_dword", "load_b32", "load", 4, "u", "fgs"),
    (0x15, 0x15, "load_dwordx2", "load_b64", "load", 8, "u", "fgs"),
    (0x16, 0x16, "load_dwordx3", "load_b96", "load", 12, "u", "fgs"),
    (0x17, 0x17, "load_dwordx4", "load_b128", "load", 16, "u", "fgs"),
    (0x20, 0x1E, "load_ubyte_d16", "load_d16_u8", "load", 1, "d16u", "fgs"),
    (0x22, 0x1F, "load_sbyte_d16", "load_d16_i8", "load", 1, "d16i", "fgs"),
    (0x24, 0x20, "load_short_d16", "load_d16_b16", "load", 2, "d16u", "fgs"),
    (0x21, 0x21, "load_ubyte_d16_hi", "load_d16_hi_u8", "load", 1, "d16hiu", "fgs"),
    (0x23, 0x22, "load_sbyte_d16_hi", "load_d16_hi_i8", "load", 1, "d16hii", "fgs"),
    (0x25, 0x23, "load_short_d16_hi", "load_d16_hi_b16", "load", 2, "d16hiu", "fgs"),
    (0x18, 0x18, "store_byte", "store_b8", "store", 1, 0, "fgs"),
    (0x1A, 0x19, "store_short", "store_b16", "store", 2, 0, "fgs"),
    (0x1C, 0x1A, "store_dword", "store_b32", "store", 4, 0, "fgs"),
    (0x1D, 0x1B, "store_dwordx2", "store_b64", "store", 8, 0, "fgs"),
    (0x1E, 0x1C, "store_dwordx3", "store_b96", "store", 12, 0, "fgs"),
    (0x1F, 0x1D, "store_dwordx4", "store_b128", "store", 16, 0, "fgs"),
    (0x19, 0x24, "store_byte_d16_hi", "store_d16_hi_b8", "store", 1, 16, "fgs"),
    (0x1B, 0x25, "store_short_d16_hi", "store_d16_hi_b16", "store", 2, 16, "fgs"),
    (0x40, 0x33, "atomic_swap", "atomic_swap_b32", "atomic", 4, "swap", "fg"),
    (0x41, 0x34, "atomic_cmpswap", "atomic_cmpswap_b32", "atomic", 4, "cmpswap", "fg"),
    (0x42, 0x35, "atomic_add", "atomic_add_u32", "atomic", 4, "add", "fg"),
    (0x43, 0x36, "atomic_sub", "atomic_sub_u32", "atomic", 4, "sub", "fg"),
    (0x44, 0x38, "atomic_smin", "atomic_min_i32", "atomic", 4, "smin", "fg"),
    (0x45, 0x39, "atomic_umin", "atomic_min_u32", "atomic", 4, "umin", "fg"),
    (0x46, 0x3A, "atomic_smax", "atomic_max_i32", "atomic", 4, "smax", "fg"),
    (0x47, 0x3B, "atomic_umax", "atomic_max_u32", "atomic", 4, "umax", "fg"),
    (0x48, 0x3C, "atomic_and", "atomic_and_b32", "atomic", 4, "and", "fg"),
    (0x49, 0x3D, "atomic_or", "atomic_or_b32", "atomic", 4, "or", "fg"),
    (0x4A, 0x3E, "atomic_xor", "atomic_xor_b32", "atomic", 4, "xor", "fg"),
    (0x4B, 0x3F, "atomic_inc", "atomic_inc_u32", "atomic", 4, "inc", "fg"),
    (0x4C, 0x40, "atomic_dec", "atomic_dec_u32", "atomic", 4, "dec", "fg"),
    (0x4D, 0x56, "atomic_add_f32", "atomic_add_f32", "atomic", 4, "fadd", "fg"),
    (0x60, 0x41, "atomic_swap_x2", "atomic_swap_b64", "atomic", 8, "swap", "fg"),
    (0x61, 0x42, "atomic_cmpswap_x2", "atomic_cmpswap_b64", "atomic", 8, "cmpswap", "fg"),
    (0x62, 0x43, "atomic_add_x2", "atomic_add_u64", "atomic", 8, "add", "fg"),
    (0x63, 0x44, "atomic_sub_x2", "atomic_sub_u64", "atomic", 8, "sub", "fg"),
    (0x64, 0x45, "atomic_smin_x2", "atomic_min_i64", "atomic", 8, "smin", "fg"),
    (0x65, 0x46, "atomic_umin_x2", "atomic_min_u64", "atomic", 8, "umin", "fg"),
    (0x66, 0x47, "atomic_smax_x2", "atomic_max_i64", "atomic", 8, "smax", "fg"),
    (0x67, 0x48, "atomic_umax_x2", "atomic_max_u64", "atomic", 8, "umax", "fg"),
    (0x68, 0x49, "atomic_and_x2", "atomic_and_b64", "atomic", 8, "and", "fg"),
    (0x69, 0x4A, "atomic_or_x2", "atomic_or_b64", "atomic", 8, "or", "fg"),
    (0x6A, 0x4B, "atomic_xor_x2", "atomic_xor_b64", "atomic", 8, "xor", "fg"),
    (0x6B, 0x4C, "atomic_inc_x2", "atomic_inc_u64", "atomic", 8, "inc", "fg"),
    (0x6C, 0x4D, "atomic_dec_x2", "atomic_dec_u64", "atomic", 8, "dec", "fg"),
]
for _o9, _o11, _s9, _s11, _op, _b, _x, _segs in _FLAT:
    _nm = _s9 if _s9 == _s11 else f"{_s9}/{_s11}"
    ROWS.append(("FLAT", _o9, _o11, _nm, "flat", _segs, (_op, _b, _x)))

# ---- VOPD (gfx11 dual issue): X opcodes 0-13, Y opcodes 0-18 (same numbering) --------------
VOPD_OPS = {  # opcode -> (name, kind, sem)
    0: ("v_dual_fmac_f32", "mac", fma32), 1: ("v_dual_fmaak_f32", "ak", fma32),
    2: ("v_dual_fmamk_f32", "mk", fma32), 3: ("v_dual_mul_f32", "alu", lambda a, b: a * b),
    4: ("v_dual_add_f32", "alu", lambda a, b: a + b), 5: ("v_dual_sub_f32", "alu", lambda a, b: a - b),
    6: ("v_dual_subrev_f32", "alu", lambda a, b: b - a), 8: ("v_dual_mov_b32", "alu", lambda a: a),
    9: ("v_dual_cndmask_b32", "cnd", None), 10: ("v_dual_max_f32", "alu", np.fmax),
    11: ("v_dual_min_f32", "alu", np.fmin), 16: ("v_dual_add_nc_u32", "alu", lambda a, b: a + b),
    17: ("v_dual_lshlrev_b32", "alu", lambda a, b: b << _sh(a)),
    18: ("v_dual_and_b32", "alu", lambda a, b: a & b),
}
VOPD_TYPES = {0: "f32:f32,f32,f32", 1: "f32:f32,f32,f32", 2: "f32:f32,f32,f32", 3: "f32:f32,f32",
              4: "f32:f32,f32", 5: "f32:f32,f32", 6: "f32:f32,f32", 8: "b32:b32", 9: "b32:b32,b32",
              10: "f32:f32,f32", 11: "f32:f32,f32", 16: "u32:u32,u32", 17: "b32:u32,b32",
              18: "b32:b32,b32"}

#: opcode offsets of the VOP3 forms of VOPC / VOP2 / VOP1 instructions, per ISA
VOP3_OFFSETS = {"gfx9": {"VOPC": 0x000, "VOP2": 0x100, "VOP1": 0x140},
                "gfx11": {"VOPC": 0x000, "VOP2": 0x100, "VOP1": 0x180}}


class OpDef:
    """One instruction of one ISA in one encoding (what the decoder looks up by opcode)."""
    __slots__ = ("name", "fmt", "opcode", "kind", "types", "sem", "e64", "dst", "srcs", "segs")

    def __init__(self, name, fmt, opcode, kind, types, sem, e64=False):
        self.name, self.fmt, self.opcode, self.kind, self.sem, self.e64 = \
            name, fmt, opcode, kind, sem, e64
        t = types.lstrip("!")
        self.types = t
        self.segs = ""
        if kind == "flat":
            self.segs, self.dst, self.srcs = t, None, ()
        elif ":" in t:
            d, s = t.split(":")
            self.dst = d or None
            self.srcs = tuple(x for x in s.split(",") if x)
        else:
            self.dst, self.srcs = (t or None), ()

    def __repr__(self):
        return f"<OpDef {self.fmt} {self.opcode:#x} {self.name}>"


def _build(isa: str) -> dict[str, dict[int, OpDef]]:
    col = 1 if isa == "gfx9" else 2
    out: dict[str, dict[int, OpDef]] = {}
    for row in ROWS:
        fmt, opc, name, kind, types, sem = row[0], row[col], row[3], row[4], row[5], row[6]
        if opc is None:
            continue
        names = name.split("/")
        nm = names[0] if isa == "gfx9" or len(names) == 1 else names[1]
        tab = out.setdefault(fmt, {})
        if opc in tab:
            raise AssertionError(f"{isa} {fmt} opcode {opc:#x} twice: {tab[opc].name} and {nm}")
        tab[opc] = OpDef(nm, fmt, opc, kind, types, sem)
        if fmt in ("VOP1", "VOP2", "VOPC") and not types.startswith("!"):
            v3 = out.setdefault("VOP3", {})
            o3 = opc + VOP3_OFFSETS[isa][fmt]
            if o3 in v3:
                raise AssertionError(f"{isa} VOP3 opcode {o3:#x} twice: {v3[o3].name} and {nm}")
            v3[o3] = OpDef(nm, "VOP3", o3, kind, types, sem, e64=True)
    return out


#: ISA name -> encoding -> opcode -> OpDef
TABLES: dict[str, dict[str, dict[int, OpDef]]] = {isa: _build(isa) for isa in ("gfx9", "gfx11")}


def isa_for_family(family) -> str | None:
    """The ISA variant of a Family (or gfx name): "gfx9" (gfx940-class CDNA3/4), "gfx11"
    (RDNA3/3.5), or None when this executor has no tables for it."""
    name = getattr(family, "name", family)
    name = str(name).split(":")[0].lower()
    if name in ("gfx940", "gfx941", "gfx942", "gfx950"):
        return "gfx9"
    if name.startswith("gfx11"):
        return "gfx11"
    return None


def coverage() -> dict[str, dict[str, list[str]]]:
    """ISA -> encoding -> sorted mnemonics (VOP3 forms of VOP1/2/C rows listed once, natively;
    VOPD as its component operations)."""
    res: dict[str, dict[str, list[str]]] = {}
    for isa, tabs in TABLES.items():
        res[isa] = {fmt: sorted({d.name for d in t.values() if not d.e64}) for fmt, t in tabs.items()}
    res["gfx11"]["VOPD"] = sorted(n for n, _k, _s in VOPD_OPS.values())
    return res


def mnemonics(isa: str) -> dict[str, list[str]]:
    """Encoding -> the mnemonics of that ISA as printed (FLAT rows expanded to their flat_ /
    global_ / scratch_ forms; VOP1/VOP2/VOPC rows also decode in VOP3 form, as _e64)."""
    out: dict[str, list[str]] = {}
    for fmt, tab in TABLES[isa].items():
        names = set()
        for d in tab.values():
            if d.e64:
                continue
            if fmt == "FLAT":
                names.update(f"{seg}_{d.name}" for seg, c in
                             (("flat", "f"), ("global", "g"), ("scratch", "s")) if c in d.segs)
            else:
                names.add(d.name)
        out[fmt] = sorted(names)
    if isa == "gfx11":
        out["VOPD"] = sorted(n for n, _k, _s in VOPD_OPS.values())
    return out


_FMT_ORDER = ("SOP1", "SOP2", "SOPK", "SOPC", "SOPP", "SMEM", "VOP1", "VOP2", "VOP3", "VOP3P",
              "VOPC", "VOPD", "DS", "FLAT", "MUBUF")


def coverage_markdown() -> str:
    """The generated part of docs/isa-coverage.md (tests/test_isa_tables.py keeps it current)."""
    lines = []
    per = {isa: mnemonics(isa) for isa in ("gfx9", "gfx11")}
    lines.append("| encoding | gfx942 (gfx9 table) | gfx1100 (gfx11 table) |")
    lines.append("|---|---:|---:|")
    for fmt in _FMT_ORDER:
        a, b = len(per["gfx9"].get(fmt, [])), len(per["gfx11"].get(fmt, []))
        if a or b:
            lines.append(f"| {fmt} | {a} | {b} |")
    tot = {isa: sum(len(v) for v in per[isa].values()) for isa in per}
    e64 = {isa: sum(1 for t in TABLES[isa].values() for d in t.values() if d.e64) for isa in per}
    lines.append(f"| **total mnemonics** | **{tot['gfx9']}** | **{tot['gfx11']}** |")
    lines.append(f"| + VOP3 (_e64) forms of VOP1/VOP2/VOPC | {e64['gfx9']} | {e64['gfx11']} |")
    for isa, title in (("gfx9", "gfx942 (CDNA3, wave64)"), ("gfx11", "gfx1100 (RDNA3, wave32)")):
        lines.append("")
        lines.append(f"### {title}")
        for fmt in _FMT_ORDER:
            names = per[isa].get(fmt)
            if names:
                lines.append("")
                lines.append(f"**{fmt}** ({len(names)}): " + ", ".join(f"`{n}`" for n in names))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(coverage_markdown(), end="")
