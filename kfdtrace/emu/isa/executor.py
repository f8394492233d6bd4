"""The shader executor: runs real AMDGPU machine code (gfx942 wave64, gfx1100 wave32) with numpy.

Execution model (why it is fast enough):

* A *batch* is a set of whole workgroups. Every register file is one numpy array over all waves
  of the batch: SGPRs ``S[wave, 128]`` (the whole 8-bit scalar operand space: SGPRs, VCC, TTMP,
  M0, EXEC), VGPRs ``V[reg, wave, lane]`` (AGPRs of gfx942 live in the same unified file above
  ACCUM_OFFSET), ``SCC[wave]``, ``PC[wave]``, and a boolean EXEC mask mirror.
* The scheduler picks the lowest PC among runnable waves and executes that instruction for
  *all* waves sitting at it at once (``sel``). While every live wave shares one PC (no divergence
  between waves) ``sel`` is a slice and each instruction is a handful of numpy operations over
  ``waves × lanes`` elements. Lowest-PC-first reconverges waves after data-dependent loops.
* Barriers: a wave reaching ``s_barrier`` waits until every live wave of its workgroup is there
  (waves that ended do not count). LDS is one array per workgroup of the batch.
* Memory goes only through ``GpuMemory.view``: the lanes' addresses are covered by as few views
  as possible (one if they share an allocation; otherwise split at the largest address gaps),
  then gathered/scattered with numpy. An unmapped address raises ``GpuPageFault``.
* Scratch (private segment): per lane ``stride`` bytes (private_segment_size, at least the
  kernel descriptor's fixed size, plus 16 KiB when the kernel uses a dynamic stack). Backed by a
  numpy array of the executor when ``info.scratch_base`` is 0, else by GPU memory at
  ``scratch_base`` laid out lane-major: byte ``a`` of lane ``l`` of wave slot ``w`` of the batch
  is at ``scratch_base + ((w * wave_size + l) * stride) + a`` (slots are reused batch after
  batch, as hardware reuses wave slots; batches are cut to the slots that memory holds). Scratch instructions address it with the lane's private
  address; flat instructions reach it through the private aperture (2 << 48), LDS through the
  shared aperture (1 << 48), as KFD sets the apertures on gfx9+.
* Instructions are decoded once per (ISA, wave size, code address) and compiled into closures;
  the cache is re-validated against memory the first time each instruction runs in a dispatch.
"""
from __future__ import annotations

import numpy as np

from kfdtrace.emu.base import DispatchInfo, GpuMemory, GpuPageFault
from kfdtrace.emu.isa.decode import Decoder, DecodeError, Inst, Operand
from kfdtrace.emu.isa.disasm import inst_text
from kfdtrace.emu.isa.tables import TYPES, isa_for_family, popcount
from kfdtrace.errors import GpuFault

u8, u16, u32, u64, i32, i64 = np.uint8, np.uint16, np.uint32, np.uint64, np.int32, np.int64
ALL = slice(None)
SHARED_APERTURE = 1 << 48
PRIVATE_APERTURE = 2 << 48
_APERTURE_MASK = ~np.uint64(0xFFFFFFFF)
ENDPGM, BARRIER = "endpgm", "barrier"
#: bytes of VGPR/SGPR/scratch state a batch may hold before it is split (keeps memory bounded)
BATCH_BYTES = 96 << 20


class _Halt(Exception):
    """Internal: a fault raised by an instruction; the scheduler adds PC and kernel name."""


# ------------------------------------------------------------------------------------------------
# lane masks
# ------------------------------------------------------------------------------------------------
def mask_from_words(words: np.ndarray, lanes: int) -> np.ndarray:
    """(k, nwords) uint32 -> (k, lanes) bool, lane i = bit i."""
    w = np.ascontiguousarray(words, dtype=u32)
    bits = np.unpackbits(w.view(u8).reshape(w.shape[0], -1), axis=1, bitorder="little")
    return bits[:, :lanes].astype(bool)


def words_from_mask(mask: np.ndarray) -> np.ndarray:
    """(k, lanes) bool -> (k, lanes // 32) uint32."""
    packed = np.packbits(np.ascontiguousarray(mask), axis=1, bitorder="little")
    return np.ascontiguousarray(packed).view(u32)


# ------------------------------------------------------------------------------------------------
# per-batch state
# ------------------------------------------------------------------------------------------------
class Batch:
    """Register files and memories of the waves of a set of whole workgroups."""

    def __init__(self, ex: "Dispatch", nw: int, nwg: int):
        self.d = ex
        self.L = ex.L
        self.nw = nw
        self.S = np.zeros((nw, 128), u32)
        self.S64 = self.S.view(u64)
        self.V = np.zeros((ex.nvgpr, nw, self.L), u32)
        self.scc = np.zeros(nw, bool)
        self.exec = np.zeros((nw, self.L), bool)
        self.wg = np.zeros(nw, np.intp)
        self.nwg = nwg
        self.lds = np.zeros(max(nwg * ex.lds_size, 4), u8)
        self.scratch = None
        self.mem: GpuMemory = ex.mem

    # -- scalar file ---------------------------------------------------------------------------
    def refresh_exec(self, sel):
        words = self.S[sel, 126:128] if self.L == 64 else self.S[sel, 126:127]
        self.exec[sel] = mask_from_words(words, self.L)

    def lanemask(self, o: Operand, sel) -> np.ndarray:
        """Read a lane-mask operand (VCC, SGPR pair, constant) as (k, L) bool."""
        nwords = self.L // 32
        if o.kind == "s":
            if o.reg == 126:
                return self.exec[sel]
            return mask_from_words(self.S[sel, o.reg:o.reg + nwords], self.L)
        if o.kind == "c":
            k = self.S[sel, 0].shape[0]
            words = np.array([(o.value >> (32 * j)) & 0xFFFFFFFF for j in range(nwords)], u32)
            return mask_from_words(np.broadcast_to(words, (k, nwords)), self.L)
        if o.kind == "null":
            return np.zeros((self.S[sel, 0].shape[0], self.L), bool)
        raise _Halt(f"lane-mask operand {o.kind} not supported")

    def set_lanemask(self, o: Operand, sel, mask: np.ndarray):
        if o.kind == "null":
            return
        words = words_from_mask(mask)
        self.S[sel, o.reg:o.reg + words.shape[1]] = words
        if o.reg + words.shape[1] > 126:
            self.refresh_exec(sel)

    # -- scratch -------------------------------------------------------------------------------
    def scratch_array(self) -> np.ndarray:
        if self.scratch is None:
            d = self.d
            need = self.nw * self.L * d.scratch_stride
            if d.scratch_stride == 0:
                raise _Halt("scratch access, but the dispatch has no private segment "
                            "(private_segment_size 0)")
            if d.info.scratch_base:
                try:
                    self.scratch = self.mem.view(d.info.scratch_base, need, write=True)
                except GpuPageFault:
                    raise _Halt(f"scratch backing at {d.info.scratch_base:#x} does not hold "
                                f"{need} bytes ({self.nw} waves × {self.L} lanes × "
                                f"{d.scratch_stride} bytes)") from None
            else:
                self.scratch = np.zeros(need, u8)
        return self.scratch


# ------------------------------------------------------------------------------------------------
# operand access (compiled once per instruction)
# ------------------------------------------------------------------------------------------------
def _dtype(typ):
    return TYPES[typ][1] if typ in TYPES else u32


def _tbytes(typ):
    return TYPES[typ][0] if typ in TYPES else 4


def const_array(o: Operand, typ: str):
    nb = _tbytes(typ)
    if nb == 8:
        return np.array(o.value & 0xFFFFFFFFFFFFFFFF, u64).view(_dtype(typ))
    if nb == 2:
        return np.array(o.value & 0xFFFF, u16).view(_dtype(typ))
    return np.array(o.value & 0xFFFFFFFF, u32).view(_dtype(typ))


def _special(o: Operand, typ: str, st: Batch, sel, vector: bool):
    name = o.name
    if name == "src_scc":
        v = st.scc[sel].astype(u32)
    elif name == "src_vccz":
        v = (~st.lanemask(Operand("s", 106, st.L // 32), sel).any(axis=1)).astype(u32)
    elif name == "src_execz":
        v = (~st.exec[sel].any(axis=1)).astype(u32)
    else:
        base = {"src_shared_base": SHARED_APERTURE, "src_shared_limit": SHARED_APERTURE | 0xFFFFFFFF,
                "src_private_base": PRIVATE_APERTURE,
                "src_private_limit": PRIVATE_APERTURE | 0xFFFFFFFF}.get(name)
        if base is None:
            raise _Halt(f"operand {name} not supported")
        val = base if _tbytes(typ) == 8 else base >> 32
        return np.array(val, u64 if _tbytes(typ) == 8 else u32).view(_dtype(typ))
    v = v.astype(u64) if _tbytes(typ) == 8 else v
    v = v.view(_dtype(typ)) if _tbytes(typ) != 2 else v.astype(u16).view(_dtype(typ))
    return v[:, None] if vector else v


def vreader(o: Operand, typ: str, isa: str):
    """A function (st, sel) -> array broadcastable to (k, L) of dtype(typ) for a VALU source."""
    dt, nb = _dtype(typ), _tbytes(typ)
    k = o.kind
    if k == "c":
        c = const_array(o, typ)
        return lambda st, sel: c
    if k == "null":
        c = np.zeros((), dt)
        return lambda st, sel: c
    if k == "x":
        return lambda st, sel: _special(o, typ, st, sel, True)
    if k in ("v", "a"):
        r = o.reg
        acc = k == "a"
        if nb == 4:
            if dt is u32:
                return (lambda st, sel: st.V[st.d.acc_base + r][sel]) if acc else \
                    (lambda st, sel: st.V[r][sel])
            return (lambda st, sel: st.V[st.d.acc_base + r][sel].view(dt)) if acc else \
                (lambda st, sel: st.V[r][sel].view(dt))
        if nb == 8:
            def rd64(st, sel):
                lo, hi = st.V[r][sel], st.V[r + 1][sel]
                return (lo.astype(u64) | (hi.astype(u64) << u64(32))).view(dt)
            return rd64
        hi = o.hi
        if hi:
            return lambda st, sel: (st.V[r][sel] >> u32(16)).astype(u16).view(dt)
        return lambda st, sel: st.V[r][sel].astype(u16).view(dt)
    # scalar register
    r = o.reg
    if nb == 4:
        return lambda st, sel: st.S[sel, r].view(dt)[:, None]
    if nb == 8:
        if r % 2 == 0:
            return lambda st, sel: st.S64[sel, r // 2].view(dt)[:, None]
        return lambda st, sel: (st.S[sel, r].astype(u64) |
                                (st.S[sel, r + 1].astype(u64) << u64(32))).view(dt)[:, None]
    return lambda st, sel: st.S[sel, r].astype(u16).view(dt)[:, None]


def sreader(o: Operand, typ: str):
    """A function (st, sel) -> (k,) or 0-d array of raw unsigned bits (u32 / u64) for SALU."""
    nb = _tbytes(typ)
    k = o.kind
    if k == "c":
        c = np.array(o.value & (0xFFFFFFFFFFFFFFFF if nb == 8 else 0xFFFFFFFF), u64 if nb == 8 else u32)
        return lambda st, sel: c
    if k == "null":
        c = np.zeros((), u64 if nb == 8 else u32)
        return lambda st, sel: c
    if k == "x":
        t = "b64" if nb == 8 else "b32"
        return lambda st, sel: _special(o, t, st, sel, False)
    r = o.reg
    if nb == 8:
        if r % 2:
            return lambda st, sel: st.S[sel, r].astype(u64) | (st.S[sel, r + 1].astype(u64) << u64(32))
        return lambda st, sel: st.S64[sel, r // 2]
    return lambda st, sel: st.S[sel, r]


def swriter(o: Operand, typ: str):
    """A function (st, sel, value) writing a scalar destination (raw bits)."""
    nb = _tbytes(typ)
    if o.kind == "null":
        return lambda st, sel, v: None
    if o.kind != "s":
        raise DecodeError(f"scalar destination {o.kind}", 4)
    r = o.reg
    touches_exec = r + (2 if nb == 8 else 1) > 126
    if nb == 8:
        if r % 2:
            def w64odd(st, sel, v):
                v = np.asarray(v).astype(u64)
                st.S[sel, r] = (v & u64(0xFFFFFFFF)).astype(u32)
                st.S[sel, r + 1] = (v >> u64(32)).astype(u32)
            return w64odd
        if touches_exec:
            def w64x(st, sel, v):
                st.S64[sel, r // 2] = v
                st.refresh_exec(sel)
            return w64x

        def w64(st, sel, v):
            st.S64[sel, r // 2] = v
        return w64
    if touches_exec:
        def w32x(st, sel, v):
            st.S[sel, r] = v
            st.refresh_exec(sel)
        return w32x

    def w32(st, sel, v):
        st.S[sel, r] = v
    return w32


def _merge(st: Batch, reg: int, sel, new, ex):
    """Write `new` (broadcastable to (k, L), uint32) to VGPR `reg` in the lanes of `ex`."""
    if sel is ALL:
        np.copyto(st.V[reg], new, where=ex, casting="unsafe")
    else:
        cur = st.V[reg][sel]
        np.copyto(cur, new, where=ex, casting="unsafe")
        st.V[reg][sel] = cur


def vwriter(o: Operand, typ: str, isa: str):
    """A function (st, sel, value, ex) storing a VALU result (any dtype of typ's size)."""
    nb = _tbytes(typ)
    if o.kind == "a":
        r = o.reg
        return lambda st, sel, v, ex: _merge(st, st.d.acc_base + r, sel,
                                             np.asarray(v).view(u32) if np.asarray(v).dtype.itemsize == 4
                                             else np.asarray(v).astype(u32), ex)
    r = o.reg
    if nb == 4:
        def w32(st, sel, v, ex):
            v = np.asarray(v)
            if v.dtype != u32:
                v = v.view(u32) if v.dtype.itemsize == 4 else v.astype(u32)
            _merge(st, r, sel, v, ex)
        return w32
    if nb == 8:
        def w64(st, sel, v, ex):
            v = np.asarray(v)
            v = v.view(u64) if v.dtype.itemsize == 8 else v.astype(u64)
            _merge(st, r, sel, (v & u64(0xFFFFFFFF)).astype(u32), ex)
            _merge(st, r + 1, sel, (v >> u64(32)).astype(u32), ex)
        return w64
    hi = o.hi

    def w16(st, sel, v, ex):
        v = np.asarray(v)
        bits = (v.view(u16) if v.dtype.itemsize == 2 else v.astype(u16)).astype(u32)
        cur = st.V[r][sel]
        if hi:
            new = (cur & u32(0xFFFF)) | (bits << u32(16))
        elif isa == "gfx11":
            new = (cur & u32(0xFFFF0000)) | bits
        else:
            new = bits   # gfx9 16-bit VALU results zero the high half
        _merge(st, r, sel, np.broadcast_to(new, cur.shape), ex)
    return w16


# ------------------------------------------------------------------------------------------------
# instruction compilers, by kind
# ------------------------------------------------------------------------------------------------
def _fmods(rd, o: Operand, typ: str):
    if not (o.neg or o.abs) or not TYPES.get(typ, (0, 0, False))[2]:
        return rd
    a, n = o.abs, o.neg

    def f(st, sel):
        x = rd(st, sel)
        if a:
            x = np.abs(x)
        return -x if n else x
    return f


def _src_readers(inst: Inst, types):
    return [_fmods(vreader(o, t, inst.isa), o, t) for o, t in zip(inst.srcs, types)]


def _post(inst: Inst, typ: str):
    """Output modifiers (omod, clamp) for float results."""
    if not TYPES.get(typ, (0, 0, False))[2] or not (inst.clamp or inst.omod):
        if inst.clamp and not TYPES.get(typ, (0, 0, False))[2] and inst.op.kind == "alu":
            raise DecodeError(f"{inst.name} with integer clamp", inst.size)
        return None
    scale = {0: None, 1: 2.0, 2: 4.0, 3: 0.5}[inst.omod]
    dt = _dtype(typ)

    def post(r):
        r = np.asarray(r, dt)
        if scale:
            r = (r * dt(scale)).astype(dt)
        if inst.clamp:
            r = np.where(np.isnan(r), dt(0), np.clip(r, dt(0), dt(1))).astype(dt)
        return r
    return post


def c_alu(inst: Inst):
    op = inst.op
    reads = _src_readers(inst, op.srcs)
    fn = op.sem
    dt = _dtype(op.dst)
    wr = vwriter(inst.dst, op.dst, inst.isa)
    post = _post(inst, op.dst)
    n = len(reads)
    if n == 1:
        r0 = reads[0]

        def run(st, sel):
            res = fn(r0(st, sel))
            if post:
                res = post(res)
            wr(st, sel, np.asarray(res).astype(dt, copy=False), st.exec[sel])
    elif n == 2:
        r0, r1 = reads

        def run(st, sel):
            res = fn(r0(st, sel), r1(st, sel))
            if post:
                res = post(res)
            wr(st, sel, np.asarray(res).astype(dt, copy=False), st.exec[sel])
    else:
        def run(st, sel):
            res = fn(*[r(st, sel) for r in reads])
            if post:
                res = post(res)
            wr(st, sel, np.asarray(res).astype(dt, copy=False), st.exec[sel])
    return run


def c_mac(inst: Inst):
    """dst = fn(src0, src1, dst) — v_fmac (the accumulator is the destination register)."""
    op = inst.op
    reads = _src_readers(inst, op.srcs)
    wr = vwriter(inst.dst, op.dst, inst.isa)
    post = _post(inst, op.dst)
    fn, dt = op.sem, _dtype(op.dst)

    def run(st, sel):
        res = fn(*[r(st, sel) for r in reads])
        if post:
            res = post(res)
        wr(st, sel, np.asarray(res, dt), st.exec[sel])
    return run


def c_mbcnt(inst: Inst):
    reads = _src_readers(inst, inst.op.srcs)
    wr = vwriter(inst.dst, "u32", inst.isa)
    first = inst.op.sem

    def run(st, sel):
        lane = np.arange(st.L, dtype=u64)
        below = np.clip(lane.astype(i64) - first, 0, 32).astype(u64)
        mask = ((u64(1) << below) - u64(1)).astype(u32)
        a, b = reads[0](st, sel), reads[1](st, sel)
        wr(st, sel, popcount(a & mask) + b, st.exec[sel])
    return run


def _bitmods(rd, o: Operand):
    """abs/neg on an untyped 32-bit operand act on the f32 sign bit (v_cndmask_b32_e64)."""
    if not (o.neg or o.abs):
        return rd
    a, n = o.abs, o.neg

    def f(st, sel):
        x = np.asarray(rd(st, sel))
        if a:
            x = x & u32(0x7FFFFFFF)
        return x ^ u32(0x80000000) if n else x
    return f


def c_cnd(inst: Inst):
    r0, r1 = (_bitmods(vreader(o, "b32", inst.isa), o) for o in inst.srcs[:2])
    m = inst.srcs[2]
    wr = vwriter(inst.dst, "b32", inst.isa)

    def run(st, sel):
        cond = st.lanemask(m, sel)
        wr(st, sel, np.where(cond, r1(st, sel), r0(st, sel)).astype(u32), st.exec[sel])
    return run


def c_co(inst: Inst):
    """Carry-out ops: (dst, carry) = fn(src0, src1[, carry-in lanemask])."""
    op = inst.op
    reads = _src_readers(inst, op.srcs)
    wr = vwriter(inst.dst, op.dst, inst.isa)
    cin = inst.srcs[2] if op.kind == "cico" else None
    sdst, fn = inst.sdst, op.sem

    def run(st, sel):
        args = [r(st, sel) for r in reads]
        if cin is not None:
            args.append(st.lanemask(cin, sel).astype(u32))
        res, carry = fn(*args)
        ex = st.exec[sel]
        wr(st, sel, res, ex)
        st.set_lanemask(sdst, sel, np.broadcast_to(carry, ex.shape) & ex)
    return run


def c_mad64(inst: Inst):
    op = inst.op
    reads = _src_readers(inst, op.srcs)
    wr = vwriter(inst.dst, "u64", inst.isa)
    sdst, fn = inst.sdst, op.sem

    def run(st, sel):
        res, carry = fn(*[r(st, sel) for r in reads])
        ex = st.exec[sel]
        wr(st, sel, res, ex)
        st.set_lanemask(sdst, sel, np.broadcast_to(carry, ex.shape) & ex)
    return run


def c_cmp(inst: Inst):
    op = inst.op
    reads = _src_readers(inst, op.srcs)
    fn, sdst, x = op.sem, inst.sdst, op.kind == "cmpx"

    def run(st, sel):
        ex = st.exec[sel]
        res = np.broadcast_to(fn(reads[0](st, sel), reads[1](st, sel)), ex.shape) & ex
        if sdst is not None:
            st.set_lanemask(sdst, sel, res)
        if x:
            st.set_lanemask(Operand("s", 126), sel, res)
    return run


def c_readlane(inst: Inst):
    r0 = vreader(inst.srcs[0], "b32", inst.isa)
    lane = sreader(inst.srcs[1], "u32")
    wr = swriter(inst.dst, "b32")

    def run(st, sel):
        v = r0(st, sel)
        ln = np.broadcast_to(lane(st, sel), (v.shape[0],)).astype(np.intp) & (st.L - 1)
        wr(st, sel, v[np.arange(v.shape[0]), ln])
    return run


def c_writelane(inst: Inst):
    s0 = sreader(inst.srcs[0], "b32")
    lane = sreader(inst.srcs[1], "u32")
    r = inst.dst.reg

    def run(st, sel):
        cur = st.V[r][sel]                 # a view for ALL, a copy otherwise: write it back
        k = cur.shape[0]
        ln = np.broadcast_to(lane(st, sel), (k,)).astype(np.intp) & (st.L - 1)
        cur[np.arange(k), ln] = np.broadcast_to(s0(st, sel), (k,))
        if sel is not ALL:
            st.V[r][sel] = cur
    return run


def c_readfirstlane(inst: Inst):
    r0 = vreader(inst.srcs[0], "b32", inst.isa)
    wr = swriter(inst.dst, "b32")

    def run(st, sel):
        v = np.broadcast_to(r0(st, sel), st.exec[sel].shape)
        ex = st.exec[sel]
        first = np.where(ex.any(axis=1), ex.argmax(axis=1), 0)
        wr(st, sel, v[np.arange(v.shape[0]), first])
    return run


def c_acc(inst: Inst):
    """v_accvgpr_read/write/mov: copies between the VGPR and AGPR halves of the unified file."""
    rd = vreader(inst.srcs[0], "b32", inst.isa)
    wr = vwriter(inst.dst, "b32", inst.isa)

    def run(st, sel):
        wr(st, sel, rd(st, sel), st.exec[sel])
    return run


def c_vopd(inst: Inst):
    parts = []
    for p in inst.dual:
        k = p.op.kind
        if k == "cnd":
            r0, r1 = _src_readers(p, ("b32", "b32"))
            m = p.srcs[2]
            parts.append((lambda r0, r1, m: lambda st, sel: np.where(
                st.lanemask(m, sel), r1(st, sel), r0(st, sel)))(r0, r1, m))
        else:
            reads = _src_readers(p, p.op.srcs)
            parts.append((lambda reads, fn: lambda st, sel: fn(*[r(st, sel) for r in reads]))(
                reads, p.op.sem))
    writers = [(vwriter(p.dst, p.op.dst, p.isa), _dtype(p.op.dst)) for p in inst.dual]

    def run(st, sel):
        vals = [np.asarray(f(st, sel)) for f in parts]     # both read before either writes
        ex = st.exec[sel]
        for (w, dt), v in zip(writers, vals):
            w(st, sel, v.astype(dt, copy=False), ex)
    return run


# -- scalar ALU --------------------------------------------------------------------------------
def c_sop2(inst: Inst):
    op = inst.op
    a, b = (sreader(o, t) for o, t in zip(inst.srcs, op.srcs))
    wr = swriter(inst.dst, op.dst)
    fn = op.sem
    wide = _tbytes(op.dst) == 8
    dt = u64 if wide else u32

    def run(st, sel):
        res, scc = fn(a(st, sel), b(st, sel), st.scc[sel])
        wr(st, sel, np.asarray(res).astype(dt, copy=False))
        if scc is not None:
            st.scc[sel] = scc
    return run


def c_sop1(inst: Inst):
    op = inst.op
    a = sreader(inst.srcs[0], op.srcs[0])
    wr = swriter(inst.dst, op.dst)
    fn = op.sem
    dt = u64 if _tbytes(op.dst) == 8 else u32
    if op.kind == "sop1d":
        d = sreader(inst.dst, op.dst)

        def run(st, sel):
            res, scc = fn(a(st, sel), d(st, sel), st.scc[sel])
            wr(st, sel, np.asarray(res).astype(dt, copy=False))
        return run

    def run(st, sel):
        res, scc = fn(a(st, sel), st.scc[sel])
        wr(st, sel, np.asarray(res).astype(dt, copy=False))
        if scc is not None:
            st.scc[sel] = scc
    return run


def _typed(bits, typ):
    return np.asarray(bits).view(_dtype(typ)) if _tbytes(typ) in (4, 8) else bits


def c_sopc(inst: Inst):
    op = inst.op
    a, b = (sreader(o, t) for o, t in zip(inst.srcs, op.srcs))
    ta, tb = op.srcs
    fn = op.sem

    def run(st, sel):
        st.scc[sel] = fn(_typed(a(st, sel), ta), _typed(b(st, sel), tb))
    return run


def c_saveexec(inst: Inst):
    op = inst.op
    a = sreader(inst.srcs[0], op.srcs[0])
    wide = _tbytes(op.dst) == 8
    ex_rd = sreader(Operand("s", 126), "b64" if wide else "b32")
    ex_wr = swriter(Operand("s", 126), "b64" if wide else "b32")
    wr = swriter(inst.dst, op.dst)
    fn, wrexec = op.sem, op.kind == "wrexec"

    def run(st, sel):
        old = np.array(ex_rd(st, sel))
        new = fn(a(st, sel), old)
        if not wrexec:
            wr(st, sel, old)
        ex_wr(st, sel, new)
        if wrexec:
            wr(st, sel, new)
        st.scc[sel] = new != 0
    return run


def _simm(imm):
    return imm - 0x10000 if imm & 0x8000 else imm


def c_sopk(inst: Inst):
    k, imm = inst.op.kind, inst.imm
    if k == "waitk":
        return lambda st, sel: None
    wr = swriter(inst.dst, "b32")
    if k == "movk":
        v = np.array(_simm(imm) & 0xFFFFFFFF, u32)
        return lambda st, sel: wr(st, sel, v)
    d = sreader(inst.dst, "b32")
    if k == "cmovk":
        v = np.array(_simm(imm) & 0xFFFFFFFF, u32)
        return lambda st, sel: wr(st, sel, np.where(st.scc[sel], v, d(st, sel)))
    if k == "cmpk":
        signed = inst.op.dst == "i32"
        kv = np.array(_simm(imm), i32) if signed else np.array(imm, u32)
        fn = inst.op.sem

        def run(st, sel):
            st.scc[sel] = fn(d(st, sel).view(i32) if signed else d(st, sel), kv)
        return run
    if k == "addk":
        kv = np.array(_simm(imm) & 0xFFFFFFFF, u32)
        fn = inst.op.sem

        def run(st, sel):
            res, scc = fn(d(st, sel), kv, st.scc[sel])
            wr(st, sel, np.asarray(res).astype(u32))
            if scc is not None:
                st.scc[sel] = scc
        return run
    if k == "call":
        wr64 = swriter(inst.dst, "b64")
        pc, size = inst.pc, inst.size
        target = pc + size + 4 * _simm(imm)

        def run(st, sel):
            wr64(st, sel, np.array(pc + size, u64))
            return target
        return run
    raise DecodeError(f"SOPK kind {k}", 4)


def c_sopp(inst: Inst):
    k = inst.op.kind
    pc, size, imm = inst.pc, inst.size, inst.imm
    if k == "nop":
        return lambda st, sel: None
    if k == "endpgm":
        return lambda st, sel: ENDPGM
    if k == "barrier":
        return lambda st, sel: BARRIER
    target = pc + size + 4 * _simm(imm)
    if k == "branch":
        return lambda st, sel: target
    if k == "cbranch":
        cond = inst.op.sem
        nxt = pc + size

        def test(st, sel):
            if cond == "scc0":
                return ~st.scc[sel]
            if cond == "scc1":
                return st.scc[sel]
            if cond in ("execz", "execnz"):
                z = ~st.exec[sel].any(axis=1)
            else:
                z = ~st.lanemask(Operand("s", 106), sel).any(axis=1)
            return z if cond.endswith("z") and not cond.endswith("nz") else ~z

        def run(st, sel):
            t = test(st, sel)
            if t.all():
                return target
            if not t.any():
                return nxt
            return np.where(t, target, nxt)
        return run
    if k == "trap":
        def trap(st, sel):
            raise _Halt(f"s_trap {imm}: the kernel trapped (e.g. llvm.trap / abort)")
        return trap
    if k == "halt":
        def halt(st, sel):
            raise _Halt(f"s_sethalt {imm}: the wave halted itself")
        return halt
    if k == "code_end":
        def code_end(st, sel):
            raise _Halt("executed s_code_end padding (ran off the end of the kernel code)")
        return code_end
    raise DecodeError(f"SOPP kind {k}", 4)


def c_pc(inst: Inst):
    k, pc, size = inst.op.kind, inst.pc, inst.size
    if k == "getpc":
        wr = swriter(inst.dst, "b64")

        def getpc(st, sel):
            wr(st, sel, np.array(pc + size, u64))
        return getpc
    src = sreader(inst.srcs[0], "b64")
    if k == "setpc":
        return lambda st, sel: np.array(src(st, sel)).astype(np.int64)
    wr = swriter(inst.dst, "b64")

    def swappc(st, sel):
        t = np.array(src(st, sel)).astype(np.int64)
        wr(st, sel, np.array(pc + size, u64))
        return t
    return swappc


def c_sendmsg_rtn(inst: Inst):
    wr = swriter(inst.dst, inst.op.dst)
    msg = inst.imm

    def run(st, sel):
        if msg == 131:      # MSG_RTN_GET_REALTIME
            wr(st, sel, np.array(st.d.steps, u64 if _tbytes(inst.op.dst) == 8 else u32))
        else:               # doorbell id, DDID, TMA/TBA: none in the emulation
            wr(st, sel, np.array(0, u64 if _tbytes(inst.op.dst) == 8 else u32))
    return run


# ------------------------------------------------------------------------------------------------
# memory
# ------------------------------------------------------------------------------------------------
def _regions(mem: GpuMemory, addrs: np.ndarray, size: int, write: bool):
    """Cover `addrs` (1-D uint64, each accessing `size` bytes) with as few memory views as
    possible: [(view uint8, base address, index array or None for all)]. A range the memory
    cannot view in one piece (a hole, or several buffers for a write view) is split at its
    largest address gap, or halved when the addresses are evenly spaced, until each piece is
    one lane's access; that one raising means the lane faults (lowest address first)."""
    lo, hi = int(addrs.min()), int(addrs.max()) + size
    try:
        return [(mem.view(lo, hi - lo, write=write), lo, None)]
    except (GpuPageFault, GpuFault):
        if addrs.size == 1 or lo + size == hi:
            raise
    order = np.argsort(addrs, kind="stable")
    sa = addrs[order]
    out, stack = [], [(0, sa.size)]
    while stack:
        i, j = stack.pop()
        a0, a1 = int(sa[i]), int(sa[j - 1]) + size
        try:
            out.append((mem.view(a0, a1 - a0, write=write), a0, order[i:j]))
            continue
        except (GpuPageFault, GpuFault):
            gaps = np.diff(sa[i:j].astype(np.int64))
            if gaps.size == 0 or gaps.max() == 0:
                raise
            g = i + (int(gaps.argmax()) + 1 if gaps.max() != gaps.min() else (j - i) // 2)
            stack.append((g, j))
            stack.append((i, g))
    return out


def _byte_index(off: np.ndarray, size: int):
    return off[:, None].astype(np.intp) + np.arange(size, dtype=np.intp)


def gather(mem: GpuMemory, addrs: np.ndarray, size: int) -> np.ndarray:
    """(m,) addresses -> (m, size) uint8 loaded from GPU memory."""
    out = np.empty((addrs.size, size), u8)
    if addrs.size == 0:
        return out
    for view, base, idx in _regions(mem, addrs, size, False):
        a = addrs if idx is None else addrs[idx]
        off = (a - u64(base)).astype(np.intp)
        if size % 4 == 0 and base % 4 == 0 and not (off & 3).any():
            w = view[:view.size // 4 * 4].view(u32)
            data = w[_byte_index(off >> 2, size // 4)].view(u8)
        else:
            data = view[_byte_index(off, size)]
        if idx is None:
            out[:] = data
        else:
            out[idx] = data
    return out


def scatter(mem: GpuMemory, addrs: np.ndarray, data: np.ndarray):
    """Store (m, size) uint8 rows at (m,) addresses (later lanes win on overlap)."""
    if addrs.size == 0:
        return
    size = data.shape[1]
    for view, base, idx in _regions(mem, addrs, size, True):
        a = addrs if idx is None else addrs[idx]
        d = data if idx is None else data[idx]
        off = (a - u64(base)).astype(np.intp)
        if size % 4 == 0 and base % 4 == 0 and not (off & 3).any():
            w = view[:view.size // 4 * 4].view(u32)
            w[_byte_index(off >> 2, size // 4)] = np.ascontiguousarray(d).view(u32)
        else:
            view[_byte_index(off, size)] = d


_ATOMIC_UFUNC = {"add": np.add, "sub": np.subtract, "and": np.bitwise_and, "or": np.bitwise_or,
                 "xor": np.bitwise_xor, "umin": np.minimum, "umax": np.maximum,
                 "smin": np.minimum, "smax": np.maximum, "fadd": np.add, "fmin": np.fmin,
                 "fmax": np.fmax}


def _atomic_dtype(op, size):
    if op in ("smin", "smax"):
        return i32 if size == 4 else i64
    if op in ("fadd", "fmin", "fmax"):
        return np.float32 if size == 4 else np.float64
    return u32 if size == 4 else u64


def _atomic_apply(op, old, data, cmp=None):
    """The new value for one lane (vectorised over lanes without address conflicts)."""
    if op == "swap":
        return data
    if op == "cmpswap":
        return np.where(old == cmp, data, old)
    if op == "inc":
        return np.where(old >= data, old.dtype.type(0), old + old.dtype.type(1))
    if op == "dec":
        return np.where((old == 0) | (old > data), data, old - old.dtype.type(1))
    return _ATOMIC_UFUNC[op](old, data)


def atomic_rmw(arr: np.ndarray, idx: np.ndarray, op: str, data: np.ndarray, cmp=None,
               want_old: bool = True):
    """Apply an atomic to arr[idx] lane by lane in lane order (as if serialised); returns the
    value each lane saw before its update (when want_old). arr is a typed 1-D view, idx element
    indices."""
    if idx.size == 0:
        return data[:0]
    if not want_old and cmp is None and op in _ATOMIC_UFUNC:
        _ATOMIC_UFUNC[op].at(arr, idx, data)          # unbuffered: duplicates accumulate
        return None
    _, counts = np.unique(idx, return_counts=True)
    if counts.max() == 1:
        old = arr[idx].copy()
        arr[idx] = _atomic_apply(op, old, data, cmp)
        return old
    if op in ("add", "sub") and cmp is None:
        order = np.argsort(idx, kind="stable")
        sidx, sdata = idx[order], data[order].astype(arr.dtype)
        contrib = sdata if op == "add" else (np.zeros_like(sdata) - sdata)
        csum = np.cumsum(contrib, dtype=arr.dtype)            # wraps like the hardware
        excl = csum - contrib
        starts = np.searchsorted(sidx, sidx, side="left")
        old_sorted = arr[sidx] + (excl - excl[starts])
        old = np.empty_like(old_sorted)
        old[order] = old_sorted
        (np.add if op == "add" else np.subtract).at(arr, idx, data)
        return old
    old = np.empty(idx.size, arr.dtype)
    for j in range(idx.size):          # conflicting addresses with an order-dependent op
        i = idx[j]
        o = arr[i:i + 1].copy()
        old[j] = o[0]
        arr[i] = _atomic_apply(op, o, data[j:j + 1], None if cmp is None else cmp[j:j + 1])[0]
    return old


def atomic_memory(mem: GpuMemory, addrs: np.ndarray, op: str, size: int, data, cmp=None,
                  want_old: bool = True):
    dt = _atomic_dtype(op, size)
    old = np.empty(addrs.size, dt)
    if addrs.size == 0:
        return old
    if (addrs % u64(size)).any():
        raise _Halt(f"misaligned {size}-byte atomic")
    for view, base, idx in _regions(mem, addrs, size, True):
        a = addrs if idx is None else addrs[idx]
        d = data if idx is None else data[idx]
        c = None if cmp is None else (cmp if idx is None else cmp[idx])
        if base % size:
            raise _Halt(f"misaligned {size}-byte atomic")
        arr = view[:view.size // size * size].view(dt)
        res = atomic_rmw(arr, ((a - u64(base)) // u64(size)).astype(np.intp), op, d, c, want_old)
        if res is None:
            continue
        if idx is None:
            old[:] = res
        else:
            old[idx] = res
    return old


class _Lanes:
    """Active lanes of the selected waves: their (wave, lane) coordinates."""
    __slots__ = ("ex", "all", "k")

    def __init__(self, ex):
        self.ex = ex
        self.all = bool(ex.all())
        self.k = ex.shape[0]

    def pick(self, arr):
        """(k, L[, ...]) -> (m[, ...]) values of the active lanes."""
        arr = np.broadcast_to(arr, self.ex.shape + np.shape(arr)[2:]) if np.ndim(arr) >= 2 else \
            np.broadcast_to(arr, self.ex.shape)
        return arr.reshape((-1,) + arr.shape[2:]) if self.all else arr[self.ex]


def _store_vgprs(st: Batch, sel, lanes: _Lanes, first: int, words: np.ndarray):
    """Write (m, n) uint32 lane values to VGPRs first..first+n-1 of the active lanes."""
    for j in range(words.shape[1]):
        col = words[:, j]
        r = first + j
        if lanes.all:
            vals = col.reshape(lanes.k, st.L)
            if sel is ALL:
                st.V[r][...] = vals
            else:
                st.V[r][sel] = vals
        else:
            cur = st.V[r][sel]
            if sel is ALL:
                cur[lanes.ex] = col
            else:
                cur[lanes.ex] = col
                st.V[r][sel] = cur


def _lane_words(st: Batch, sel, lanes: _Lanes, first: int, n: int) -> np.ndarray:
    """(m, n) uint32 of VGPRs first.. of the active lanes."""
    return np.stack([lanes.pick(st.V[first + j][sel]) for j in range(n)], axis=1) if n else \
        np.zeros((0, 0), u32)


def _to_bytes(words: np.ndarray, size: int, hi16: bool = False) -> np.ndarray:
    if size >= 4:
        return np.ascontiguousarray(words).view(u8)[:, :size]
    w = words[:, 0] >> u32(16) if hi16 else words[:, 0]
    return np.ascontiguousarray(w.astype(u32)).view(u8).reshape(-1, 4)[:, :size]


def _load_words(st: Batch, sel, lanes: _Lanes, raw: np.ndarray, size: int, ext, vdst: int):
    """Convert loaded bytes to register values according to the load's extension."""
    if size >= 4:
        _store_vgprs(st, sel, lanes, vdst, np.ascontiguousarray(raw).view(u32))
        return
    v = np.zeros((raw.shape[0], 4), u8)
    v[:, :size] = raw
    val = v.view(u32)[:, 0]
    signed = ext in ("i", "d16i", "d16hii")
    if signed:
        bits = 8 * size
        val = ((val.astype(i64) ^ (1 << (bits - 1))) - (1 << (bits - 1))).astype(u32)
    if ext in ("u", "i"):
        _store_vgprs(st, sel, lanes, vdst, val[:, None])
        return
    cur = lanes.pick(st.V[vdst][sel])           # d16: keep the other half
    if ext.startswith("d16hi"):
        new = (cur & u32(0xFFFF)) | (val << u32(16))
    else:
        new = (cur & u32(0xFFFF0000)) | (val & u32(0xFFFF))
    _store_vgprs(st, sel, lanes, vdst, new[:, None])


def c_sload(inst: Inst):
    f = inst.fields
    base = sreader(inst.srcs[0], "b64")
    so = sreader(f["soffset"], "b32") if f.get("soffset") is not None else None
    off = f["offset"]
    n, d = inst.op.sem, inst.dst.reg

    def run(st, sel):
        k = st.S[sel, 0].shape[0]
        a = np.broadcast_to(base(st, sel), (k,)).astype(u64) + u64(off & 0xFFFFFFFFFFFFFFFF)
        if so is not None:
            a = a + np.broadcast_to(so(st, sel), (k,)).astype(u64)
        a &= ~u64(3)
        data = gather(st.mem, a, 4 * n).view(u32)
        st.S[sel, d:d + n] = data
        if d <= 127 < d + n or d <= 126 < d + n:
            st.refresh_exec(sel)
    return run


def _lds_index(st: Batch, sel, lanes: _Lanes, addr: np.ndarray, size: int):
    """Flat LDS byte index per active lane and the in-range mask (out of range: reads give 0,
    writes are dropped, as LDS bounds checking does)."""
    base = (st.wg[sel] * st.d.lds_size).astype(i64) if sel is not ALL else \
        (st.wg * st.d.lds_size).astype(i64)
    wgb = lanes.pick(np.broadcast_to(base[:, None], lanes.ex.shape))
    a = addr.astype(i64)
    ok = (a >= 0) & (a + size <= st.d.lds_size)
    return wgb + np.where(ok, a, 0), ok


def _local_gather(arr: np.ndarray, idx: np.ndarray, size: int) -> np.ndarray:
    if size % 4 == 0 and not (idx & 3).any():
        return arr[:arr.size // 4 * 4].view(u32)[_byte_index(idx >> 2, size // 4)].view(u8)
    return arr[_byte_index(idx, size)]


def _local_scatter(arr: np.ndarray, idx: np.ndarray, data: np.ndarray):
    size = data.shape[1]
    if size % 4 == 0 and not (idx & 3).any():
        arr[:arr.size // 4 * 4].view(u32)[_byte_index(idx >> 2, size // 4)] = \
            np.ascontiguousarray(data).view(u32)
    else:
        arr[_byte_index(idx, size)] = data


def _lane_wave_index(st: Batch, sel, lanes: _Lanes):
    """(m,) batch wave index of each active lane."""
    waves = np.arange(st.nw)[sel]
    return lanes.pick(np.broadcast_to(waves[:, None], lanes.ex.shape))


def _lane_number(st: Batch, lanes: _Lanes):
    """(m,) lane number of each active lane."""
    return lanes.pick(np.broadcast_to(np.arange(st.L), lanes.ex.shape))


class _Access:
    """Where the active lanes of a FLAT-family instruction go: global memory, LDS (shared
    aperture) or scratch (private aperture / scratch_* instructions)."""

    def __init__(self, st: Batch, sel, lanes: _Lanes, seg: str, addr: np.ndarray):
        self.parts = []          # (kind, active-lane index array or None, addresses)
        if seg in ("scratch", "global"):
            self.parts.append((seg, None, addr))
            return
        ap = addr & _APERTURE_MASK
        sh, pr = ap == u64(SHARED_APERTURE), ap == u64(PRIVATE_APERTURE)
        if not (sh.any() or pr.any()):
            self.parts.append(("global", None, addr))
            return
        for kind, m in (("global", ~(sh | pr)), ("lds", sh), ("scratch", pr)):
            if m.any():
                idx = np.nonzero(m)[0]
                a = addr[idx] if kind == "global" else (addr[idx] & u64(0xFFFFFFFF)).astype(i64)
                self.parts.append((kind, idx, a))

    @staticmethod
    def _local(st, sel, lanes, kind, idx, a, size):
        """(array, byte index per lane, in-range mask or None) for an LDS or scratch part."""
        wave = _lane_wave_index(st, sel, lanes)
        lane = _lane_number(st, lanes)
        if idx is not None:
            wave, lane = wave[idx], lane[idx]
        a = np.asarray(a).astype(i64)
        if kind == "lds":
            ok = (a >= 0) & (a + size <= st.d.lds_size)
            return st.lds, st.wg[wave].astype(i64) * st.d.lds_size + np.where(ok, a, 0), ok
        stride = st.d.scratch_stride
        arr = st.scratch_array()
        bad = (a < 0) | (a + size > stride)
        if bad.any():
            j = int(np.argmax(bad))
            raise _Halt(f"scratch access of {size} bytes at private address {int(a[j]):#x} "
                        f"outside the {stride}-byte private segment")
        return arr, (wave.astype(i64) * st.L + lane) * stride + a, None

    def load(self, st, sel, lanes, size):
        out = None
        for kind, idx, a in self.parts:
            if kind == "global":
                data = gather(st.mem, a, size)
            else:
                arr, li, ok = self._local(st, sel, lanes, kind, idx, a, size)
                data = _local_gather(arr, li, size)
                if ok is not None:
                    data[~ok] = 0
            if idx is None:
                return data
            if out is None:
                out = np.zeros((int(lanes.ex.sum()), size), u8)
            out[idx] = data
        return out

    def store(self, st, sel, lanes, data):
        size = data.shape[1]
        for kind, idx, a in self.parts:
            d = data if idx is None else data[idx]
            if kind == "global":
                scatter(st.mem, a, d)
            else:
                arr, li, ok = self._local(st, sel, lanes, kind, idx, a, size)
                if ok is not None:
                    li, d = li[ok], d[ok]
                _local_scatter(arr, li, d)


def c_flat(inst: Inst):
    f = inst.fields
    what, size, extra = inst.op.sem
    seg, off = f["seg"], f["offset"]
    n = max(1, size // 4)
    vaddr, vdata, vdst = f["addr"], f["data"], f["vdst"]
    saddr = f["saddr"]
    sad = sreader(Operand("s", saddr), "b64" if seg != "scratch" else "b32") \
        if saddr is not None else None
    vused = f["vaddr_used"]
    ret = f["return"]

    def addresses(st, sel, lanes):
        if seg == "scratch":
            a = st.V[vaddr][sel].astype(i64) if vused else np.zeros(lanes.ex.shape, i64)
            if sad is not None:
                a = a + sad(st, sel).astype(i64)[:, None]
            return lanes.pick(((a + off) & 0xFFFFFFFF).astype(i64))
        if sad is not None:
            a = sad(st, sel)[:, None] + st.V[vaddr][sel].astype(u64)
        else:
            a = st.V[vaddr][sel].astype(u64) | (st.V[vaddr + 1][sel].astype(u64) << u64(32))
        return lanes.pick(a + u64(off & 0xFFFFFFFFFFFFFFFF))

    def run(st, sel):
        ex = st.exec[sel]
        if not ex.any():
            return
        lanes = _Lanes(ex)
        addr = addresses(st, sel, lanes)
        acc = _Access(st, sel, lanes, seg, addr)
        if what == "load":
            raw = acc.load(st, sel, lanes, size)
            _load_words(st, sel, lanes, raw, size, extra, vdst)
        elif what == "store":
            words = _lane_words(st, sel, lanes, vdata, n)
            acc.store(st, sel, lanes, _to_bytes(words, size, hi16=extra == 16))
        else:
            if any(k != "global" for k, _i, _a in acc.parts):
                raise _Halt(f"{inst.name}: atomics on LDS/private apertures via FLAT")
            dt = _atomic_dtype(extra, size)
            words = _lane_words(st, sel, lanes, vdata, (2 if extra == "cmpswap" else 1) * n)
            if extra == "cmpswap":
                data = np.ascontiguousarray(words[:, :n]).view(dt)[:, 0]
                cmp = np.ascontiguousarray(words[:, n:]).view(dt)[:, 0]
            else:
                data, cmp = np.ascontiguousarray(words).view(dt)[:, 0], None
            old = atomic_memory(st.mem, addr, extra, size, data, cmp, want_old=ret)
            if ret:
                _store_vgprs(st, sel, lanes, vdst, np.ascontiguousarray(old).view(u32).reshape(-1, n))
    return run


def c_ds(inst: Inst):
    f = inst.fields
    sem = inst.op.sem
    what, size = sem[0], sem[1]
    n = max(1, size // 4)
    if f["gds"]:
        raise DecodeError("GDS access", 8)
    off16 = f["offset0"] | f["offset1"] << 8
    a_reg, d0, d1, vd = f["addr"], f["data0"], f["data1"], f["vdst"]

    def run(st, sel):
        ex = st.exec[sel]
        if not ex.any():
            return
        lanes = _Lanes(ex)
        base = lanes.pick(st.V[a_reg][sel]).astype(i64)
        if what in ("load", "store", "atomic"):
            li, ok = _lds_index(st, sel, lanes, base + off16, size)
            if what == "load":
                raw = _local_gather(st.lds, li, size)
                raw[~ok] = 0
                _load_words(st, sel, lanes, raw, size, "d16" if sem[2] == "d16" else
                            "d16hiu" if sem[2] == "d16hi" else sem[2], vd)
            elif what == "store":
                words = _lane_words(st, sel, lanes, d0, n)
                data = _to_bytes(words, size, hi16=sem[2] == 16)
                _local_scatter(st.lds, li[ok], data[ok])
            else:
                op, rtn = sem[2], sem[3]
                dt = _atomic_dtype(op, size)
                words = _lane_words(st, sel, lanes, d0, n)
                data = np.ascontiguousarray(words).view(dt)[:, 0]
                arr = st.lds[:st.lds.size // size * size].view(dt)
                res = atomic_rmw(arr, li[ok] // size, op, data[ok], want_old=rtn)
                if rtn:
                    old = np.zeros(data.shape, dt)
                    old[ok] = res
                    _store_vgprs(st, sel, lanes, vd, np.ascontiguousarray(old).view(u32).reshape(-1, n))
        elif what in ("load2", "store2"):
            stride = sem[2] * size
            a0, a1 = base + f["offset0"] * stride, base + f["offset1"] * stride
            l0, ok0 = _lds_index(st, sel, lanes, a0, size)
            l1, ok1 = _lds_index(st, sel, lanes, a1, size)
            if what == "load2":
                r0, r1 = _local_gather(st.lds, l0, size), _local_gather(st.lds, l1, size)
                r0[~ok0] = 0
                r1[~ok1] = 0
                words = np.concatenate([np.ascontiguousarray(r0).view(u32),
                                        np.ascontiguousarray(r1).view(u32)], axis=1)
                _store_vgprs(st, sel, lanes, vd, words)
            else:
                w0 = _to_bytes(_lane_words(st, sel, lanes, d0, n), size)
                w1 = _to_bytes(_lane_words(st, sel, lanes, d1, n), size)
                _local_scatter(st.lds, l0[ok0], w0[ok0])
                _local_scatter(st.lds, l1[ok1], w1[ok1])
        else:   # permute / bpermute within each wave
            backward = sem[2]
            idx = ((st.V[a_reg][sel].astype(i64) + off16) >> 2) & (st.L - 1)
            src = st.V[d0][sel]
            k = src.shape[0]
            rows = np.arange(k)[:, None]
            if backward:
                res = src[rows, idx]
            else:
                res = np.zeros_like(src)
                exm = st.exec[sel]
                rr = np.broadcast_to(rows, idx.shape)[exm]
                res[rr, idx[exm]] = src[exm]
            _store_vgprs(st, sel, lanes, vd, lanes.pick(res)[:, None])
    return run


COMPILERS = {
    "alu": c_alu, "mac": c_mac, "mk": c_alu, "ak": c_alu, "cnd": c_cnd, "co": c_co,
    "cico": c_co, "mad64": c_mad64, "cmp": c_cmp, "cmpx": c_cmp, "rl": c_readlane,
    "wl": c_writelane, "rfl": c_readfirstlane, "mbcnt": c_mbcnt, "accr": c_acc, "accw": c_acc,
    "accmov": c_acc, "vnop": lambda i: (lambda st, sel: None),
    "sop2": c_sop2, "sop1": c_sop1, "sop1d": c_sop1, "sopc": c_sopc, "saveexec": c_saveexec,
    "wrexec": c_saveexec, "movk": c_sopk, "cmovk": c_sopk, "cmpk": c_sopk, "addk": c_sopk,
    "call": c_sopk, "waitk": c_sopk, "getpc": c_pc, "setpc": c_pc, "swappc": c_pc,
    "sendmsg_rtn": c_sendmsg_rtn, "nop": c_sopp, "endpgm": c_sopp, "branch": c_sopp,
    "cbranch": c_sopp, "barrier": c_sopp, "trap": c_sopp, "halt": c_sopp, "code_end": c_sopp,
    "sload": c_sload, "snop": lambda i: (lambda st, sel: None),
    "cache": lambda i: (lambda st, sel: None), "flat": c_flat, "ds": c_ds,
}


def register_extent(inst: Inst) -> tuple[int, int]:
    """(highest VGPR, highest AGPR) index the instruction touches, -1 for none."""
    v = a = -1
    ops = []
    for part in (inst.dual or [inst]):
        ops += [o for o in (part.dst, part.sdst, *part.srcs) if o is not None]
    for o in ops:
        if o.kind == "v":
            v = max(v, o.reg + o.n - 1)
        elif o.kind == "a":
            a = max(a, o.reg + o.n - 1)
    f = inst.fields
    if inst.fmt in ("FLAT", "DS"):
        what, size = inst.op.sem[0], inst.op.sem[1]
        n = max(1, size // 4)
        if inst.fmt == "FLAT":
            if f["vaddr_used"]:
                wide = f["seg"] == "flat" or (f["seg"] == "global" and f["saddr"] is None)
                v = max(v, f["addr"] + (1 if wide else 0))
            if what != "load":
                v = max(v, f["data"] + (2 * n if inst.op.sem[2] == "cmpswap" else n) - 1)
            if what == "load" or f["return"]:
                v = max(v, f["vdst"] + n - 1)
        else:
            v = max(v, f["addr"])
            if what in ("store", "store2", "atomic", "permute"):
                v = max(v, f["data0"] + n - 1)
            if what == "store2":
                v = max(v, f["data1"] + n - 1)
            if what in ("load", "load2", "permute") or (what == "atomic" and inst.op.sem[3]):
                v = max(v, f["vdst"] + (2 * n if what == "load2" else n) - 1)
    return v, a


def compile_inst(inst: Inst):
    inst.vmax, inst.amax = register_extent(inst)
    if inst.fmt == "VOPD":
        return c_vopd(inst)
    comp = COMPILERS.get(inst.op.kind)
    if comp is None:
        raise DecodeError(f"{inst.op.kind} instructions", inst.size)
    return comp(inst)


# ------------------------------------------------------------------------------------------------
# programs (decoded code, cached per address)
# ------------------------------------------------------------------------------------------------
class Program:
    """Decoded + compiled instructions of one ISA/wave size, by PC (lazily, as executed)."""

    def __init__(self, isa: str, wave64: bool):
        self.decoder = Decoder(isa, wave64)
        self.insts: dict[int, Inst] = {}

    def fetch(self, mem: GpuMemory, pc: int, gen: int, kernel: str) -> Inst:
        inst = self.insts.get(pc)
        if inst is not None and inst.gen == gen:
            return inst
        buf = self._read(mem, pc)
        if inst is not None and bytes(buf[:inst.size]) == inst.raw:
            inst.gen = gen
            return inst
        try:
            inst = self.decoder.decode(buf, pc)
            inst.run = compile_inst(inst)
        except DecodeError as e:
            w = int.from_bytes(bytes(buf[:4]), "little")
            raise GpuFault(f"unsupported instruction at PC {pc:#x} in kernel {kernel}: "
                           f"{e.what} (encoding {w:08x}"
                           f"{' ' + bytes(buf[4:8]).hex() if len(buf) >= 8 else ''})",
                           address=pc) from None
        inst.gen = gen
        self.insts[pc] = inst
        return inst

    @staticmethod
    def _read(mem: GpuMemory, pc: int):
        for n in (16, 12, 8, 4):
            try:
                return bytes(mem.view(pc, n))
            except GpuPageFault:
                continue
        raise GpuFault(f"instruction fetch at PC {pc:#x}: address not mapped", address=pc)


# ------------------------------------------------------------------------------------------------
# dispatch
# ------------------------------------------------------------------------------------------------
def _bits(v: int, lo: int, hi: int) -> int:
    return (v >> lo) & ((1 << (hi - lo + 1)) - 1)


class Dispatch:
    """One dispatch in flight: geometry, register-file sizes, the batch loop and scheduler."""

    def __init__(self, exe: "NumpyShaderExecutor", info: DispatchInfo, mem: GpuMemory):
        self.info, self.mem, self.exe = info, mem, exe
        fam = info.family
        self.isa = isa_for_family(fam)
        self.kernel = info.kernel_name or f"<code at {info.code_address:#x}>"
        if self.isa is None:
            raise GpuFault(f"kernel {self.kernel}: no ISA tables for family "
                           f"{getattr(fam, 'name', fam)} (covered: gfx942/gfx950, gfx11xx)")
        self.wave64 = not info.wave32
        if self.isa == "gfx9" and info.wave32:
            raise GpuFault(f"kernel {self.kernel}: wave32 requested on a wave64-only family")
        self.L = 64 if self.wave64 else 32
        r1, r2, r3 = info.rsrc1, info.rsrc2, info.rsrc3
        g = _bits(r1, 0, 5)
        if self.isa == "gfx9":
            self.nvgpr = (g + 1) * 8                       # unified VGPR+AGPR file, granule 8
            self.acc_base = (_bits(r3, 0, 5) + 1) * 4
        else:
            self.nvgpr = (g + 1) * (4 if self.wave64 else 8)
            self.acc_base = self.nvgpr
        self.nvgpr = max(self.nvgpr, 1)
        self.user_sgpr_count = _bits(r2, 1, 5)
        lds_gran = _bits(r2, 15, 23) * 512
        self.lds_size = max(int(info.lds_size), lds_gran)
        dyn = 16384 if info.kernel_code_properties >> 11 & 1 else 0
        priv = max(int(info.scratch_size), int(info.extra.get("private_segment_fixed_size", 0)))
        self.scratch_stride = -(-(priv + dyn) // 16) * 16 if (priv or dyn or r2 & 1) else 0
        self.steps = 0            # scheduler steps (one instruction for a group of waves)
        self.wave_insts = 0       # wave-instructions issued (each covers wave_size lanes)
        self.max_steps = exe.max_steps

    # -- geometry ------------------------------------------------------------------------------
    def run(self):
        info = self.info
        gx, gy, gz = (max(0, int(v)) for v in info.grid_workgroups)
        bx, by, bz = (max(1, int(v)) for v in info.workgroup_size)
        if bx * by * bz > 1024:
            raise GpuFault(f"kernel {self.kernel}: workgroup size {bx}x{by}x{bz} exceeds 1024")
        gs = tuple(int(v) for v in info.grid_size) if info.grid_size and any(info.grid_size) \
            else (gx * bx, gy * by, gz * bz)
        nwg_total = gx * gy * gz
        if nwg_total == 0:
            return
        waves_per_wg = -(-(bx * by * bz) // self.L)
        per_wave = self.L * (4 * self.nvgpr + self.scratch_stride + 8) + 128 * 4
        per_wg = waves_per_wg * per_wave + self.lds_size
        wg_per_batch = max(1, min(nwg_total, BATCH_BYTES // max(per_wg, 1)))
        if self.scratch_stride and info.scratch_base:
            # scratch in GPU memory: a batch may only use as many wave slots as it holds
            slot = self.L * self.scratch_stride
            slots = self._scratch_capacity(nwg_total * waves_per_wg * slot) // slot
            if slots < waves_per_wg:
                raise GpuFault(f"kernel {self.kernel}: the scratch backing at "
                               f"{info.scratch_base:#x} holds {slots} wave slots of {slot} bytes; "
                               f"a workgroup needs {waves_per_wg}", address=info.scratch_base)
            wg_per_batch = min(wg_per_batch, slots // waves_per_wg)
        prog = self.exe.program(self.isa, self.wave64)
        gen = self.exe.next_gen()
        with np.errstate(all="ignore"):
            for w0 in range(0, nwg_total, wg_per_batch):
                w1 = min(nwg_total, w0 + wg_per_batch)
                st = self._make_batch(w0, w1, (gx, gy, gz), (bx, by, bz), gs)
                self._schedule(st, prog, gen)

    def _scratch_capacity(self, want: int) -> int:
        """Bytes of GPU memory viewable from scratch_base (up to `want`), found by bisection."""
        base = self.info.scratch_base

        def ok(n):
            try:
                self.mem.view(base, n, write=True)
                return True
            except (GpuPageFault, GpuFault):
                return False
        if ok(want):
            return want
        lo, hi = 0, want                  # ok(lo) (or lo == 0), not ok(hi)
        while hi - lo > 256:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        return lo

    def _make_batch(self, w0, w1, grid, block, gs) -> Batch:
        info, L = self.info, self.L
        gx, gy, gz = grid
        bx, by, bz = block
        lin = np.arange(w0, w1, dtype=np.int64)
        wx, wy, wz = lin % gx, (lin // gx) % gy, lin // (gx * gy)
        px = np.where(wx == gx - 1, gs[0] - (gx - 1) * bx, bx).clip(1, bx)
        py = np.where(wy == gy - 1, gs[1] - (gy - 1) * by, by).clip(1, by)
        pz = np.where(wz == gz - 1, gs[2] - (gz - 1) * bz, bz).clip(1, bz)
        nthr = px * py * pz
        nwav = -(-nthr // L)
        nw = int(nwav.sum())
        st = Batch(self, nw, w1 - w0)
        wave_wg = np.repeat(np.arange(w1 - w0), nwav)
        starts = np.repeat(np.cumsum(nwav) - nwav, nwav)
        wave_in_wg = np.arange(nw) - starts
        st.wg[:] = wave_wg
        t = (wave_in_wg.astype(u32) * u32(L))[:, None] + np.arange(L, dtype=u32)
        valid = t < nthr[wave_wg].astype(u32)[:, None]
        r2 = info.rsrc2
        tid = _bits(r2, 11, 12)
        if by == 1 and bz == 1:                  # 1-D workgroups: the id is the flat index
            v0 = t
        else:
            pxw = px[wave_wg].astype(u32)[:, None]
            pyw = py[wave_wg].astype(u32)[:, None]
            ty, tx = np.divmod(t, pxw)
            tz, ty = np.divmod(ty, pyw)
            v0 = tx | ((ty << u32(10)) if tid >= 1 else 0) | ((tz << u32(20)) if tid >= 2 else 0)
        all_valid = bool(valid.all())
        st.V[0] = v0 if all_valid else np.where(valid, v0, u32(0))
        us = list(info.user_sgprs)[:16]
        if us:
            st.S[:, :len(us)] = np.array([v & 0xFFFFFFFF for v in us], u32)
        s = self.user_sgpr_count
        for en, vals in ((r2 >> 7 & 1, wx), (r2 >> 8 & 1, wy), (r2 >> 9 & 1, wz)):
            if en:
                st.S[:, s] = vals[wave_wg].astype(u32)
                s += 1
        if r2 >> 10 & 1:        # workgroup info: first wave, waves in the workgroup
            st.S[:, s] = ((wave_in_wg == 0).astype(np.int64) << 31 | nwav[wave_wg]).astype(u32)
            s += 1
        if r2 & 1:              # scratch wave offset (per wave slot)
            st.S[:, s] = (np.arange(nw) * L * self.scratch_stride).astype(u32)
        if self.isa == "gfx9" and r2 & 1:   # architected flat scratch base (per wave)
            fs = int(info.scratch_base) + np.arange(nw, dtype=np.int64) * L * self.scratch_stride
            st.S64[:, 51] = fs.astype(u64)
        if all_valid:
            st.S[:, 126:126 + L // 32] = u32(0xFFFFFFFF)
            st.exec[:] = True
        else:
            words = words_from_mask(valid)
            st.S[:, 126:126 + words.shape[1]] = words
            st.exec[:] = valid
        st.pc0 = int(info.code_address)
        return st

    # -- scheduler -----------------------------------------------------------------------------
    def _schedule(self, st: Batch, prog: Program, gen: int):
        nw = st.nw
        pc = np.full(nw, st.pc0, np.int64)
        done = np.zeros(nw, bool)
        at_bar = np.zeros(nw, bool)
        uniform, cur = True, st.pc0
        alive_sel = ALL
        mem, kernel = self.mem, self.kernel
        vlimit = self.acc_base if self.isa == "gfx9" else self.nvgpr
        alimit = self.nvgpr - self.acc_base if self.isa == "gfx9" else 0
        while True:
            if uniform:
                p, sel = cur, alive_sel
            else:
                runnable = ~done & ~at_bar
                if not runnable.any():
                    if self._release(st, pc, done, at_bar):
                        continue
                    if done.all():
                        return
                    raise GpuFault(f"kernel {kernel}: all live waves wait at barriers that "
                                   f"can never complete", address=int(pc[~done][0]))
                p = int(pc[runnable].min())
                idx = np.nonzero(runnable & (pc == p))[0]
                sel = ALL if idx.size == nw else idx
            self.steps += 1
            self.wave_insts += nw if sel is ALL else len(sel)
            if self.steps > self.max_steps:
                raise GpuFault(f"kernel {kernel}: gave up after {self.max_steps} instruction "
                               f"steps (PC {p:#x}); infinite loop?", address=p)
            inst = prog.fetch(mem, p, gen, kernel)
            if inst.vmax >= vlimit or inst.amax >= alimit:
                raise GpuFault(f"kernel {kernel}: {inst_text(inst)} at PC {p:#x} uses a register "
                               f"beyond the {vlimit} VGPRs{f' / {alimit} AGPRs' if alimit else ''}"
                               f" the kernel allocates (COMPUTE_PGM_RSRC1)", address=p)
            try:
                r = inst.run(st, sel)
            except _Halt as e:
                raise GpuFault(f"kernel {kernel}: {inst_text(inst)} at PC {p:#x}: {e}",
                               address=p) from None
            except GpuPageFault as e:
                e.pc, e.kernel = p, kernel
                e.args = (f"{e.args[0]} (instruction {inst_text(inst)} at PC {p:#x}, kernel "
                          f"{kernel})",)
                raise
            except GpuFault:
                raise
            except Exception as e:  # noqa: BLE001 — never let an emulator bug escape raw
                raise GpuFault(f"kernel {kernel}: internal error executing {inst_text(inst)} at "
                               f"PC {p:#x}: {type(e).__name__}: {e}", address=p) from None
            nxt = p + inst.size
            if r is None:
                if uniform:
                    cur = nxt
                else:
                    pc[sel] = nxt
                continue
            if isinstance(r, str):
                if r == ENDPGM:
                    if uniform:
                        return
                    done[sel] = True
                    if at_bar.any():
                        self._release(st, pc, done, at_bar)
                else:  # barrier
                    if uniform:
                        cur = nxt
                        continue
                    at_bar[sel] = True
                    self._release(st, pc, done, at_bar)
                    continue
            elif isinstance(r, (int, np.integer)) or np.ndim(r) == 0:
                if uniform:
                    cur = int(r)
                    continue
                pc[sel] = int(r)
            else:
                t = np.asarray(r, np.int64)
                if uniform:
                    if (t == t[0]).all():
                        cur = int(t[0])
                        continue
                    if sel is ALL:
                        pc[:] = t
                    else:
                        pc[sel] = t
                    uniform = False
                    continue
                pc[sel] = t
            if uniform:
                continue
            # back to lock-step when every live wave is at one PC again
            if not at_bar.any():
                live = ~done
                pl = pc[live]
                if pl.size and (pl == pl[0]).all():
                    uniform, cur = True, int(pl[0])
                    alive_sel = ALL if pl.size == nw else np.nonzero(live)[0]

    @staticmethod
    def _release(st: Batch, pc, done, at_bar) -> bool:
        live = ~done
        at = at_bar & live
        if not at.any():
            return False
        n_live = np.bincount(st.wg[live], minlength=st.nwg)
        n_at = np.bincount(st.wg[at], minlength=st.nwg)
        ready = (n_at == n_live) & (n_at > 0)
        rel = at & ready[st.wg]
        if not rel.any():
            return False
        at_bar[rel] = False
        pc[rel] += 4
        return True


class NumpyShaderExecutor:
    """kfdtrace.emu.base.ShaderExecutor over numpy (see the module docstring)."""

    def __init__(self, *, max_steps: int = 20_000_000):
        self.max_steps = max_steps
        self._programs: dict[tuple[str, bool], Program] = {}
        self._gen = 0
        self.last_stats: dict = {}

    def program(self, isa: str, wave64: bool) -> Program:
        key = (isa, wave64)
        p = self._programs.get(key)
        if p is None:
            p = self._programs[key] = Program(isa, wave64)
        return p

    def next_gen(self) -> int:
        self._gen += 1
        return self._gen

    def dispatch(self, info: DispatchInfo, mem: GpuMemory) -> None:
        d = Dispatch(self, info, mem)
        try:
            d.run()
        finally:
            self.last_stats = {"steps": d.steps, "wave_instructions": d.wave_insts,
                               "lane_instructions": d.wave_insts * d.L if hasattr(d, "L") else 0}
