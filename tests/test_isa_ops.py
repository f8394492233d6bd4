"""Single instructions, assembled with llvm-mc-22 and run through the executor: each snippet leaves
values in registers/memory and stores them to an output buffer, compared with values computed
here independently (Python integers / numpy)."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

from kfdtrace.emu.base import DispatchInfo
from kfdtrace.emu.isa.executor import NumpyShaderExecutor
from kfdtrace.emu.isa.launch import ArrayMemory
from kfdtrace.errors import GpuFault

MC = shutil.which("llvm-mc-22")
pytestmark = pytest.mark.skipif(MC is None, reason="llvm-mc-22 is not installed")
CPU = {"gfx9": "gfx942", "gfx11": "gfx1100"}
CODE, OUT, BUF = 0x1_0000_0000, 0x2_0000_0000, 0x3_0000_0000
M32 = 0xFFFFFFFF


def asm(isa: str, text: str) -> bytes:
    p = subprocess.run([MC, "-arch=amdgcn", f"-mcpu={CPU[isa]}", "--show-encoding"],
                       input=text, capture_output=True, text=True)
    if p.returncode or "error" in p.stderr:
        raise AssertionError(p.stderr)
    return b"".join(bytes(int(x, 16) for x in m.group(1).split(","))
                    for m in re.finditer(r"encoding: \[([^\]]*)\]", p.stdout))


def run(isa: str, text: str, *, nout=256, groups=1, block=None, buf=None, scratch=64, lds=4096):
    """Run `text` (+ s_endpgm) with s[0:1] = OUT, s[2:3] = BUF, s4 = workgroup id, v0 = lane;
    returns (out uint32 array, buf array)."""
    L = 64 if isa == "gfx9" else 32
    code = asm(isa, text + "\ns_endpgm\n")
    mem = ArrayMemory()
    mem.map(CODE, np.frombuffer(code + b"\0" * 64, np.uint8).copy())
    out = np.zeros(nout, np.uint32)
    mem.map(OUT, out.view(np.uint8))
    b = np.zeros(1024, np.uint32) if buf is None else buf
    mem.map(BUF, b.view(np.uint8))
    block = block or L
    info = DispatchInfo(
        family=CPU[isa], code_address=CODE, rsrc1=7, rsrc2=(4 << 1) | (1 << 7) | 1,
        rsrc3=11, kernel_code_properties=0 if isa == "gfx9" else 1 << 10,
        grid_workgroups=(groups, 1, 1), workgroup_size=(block, 1, 1),
        grid_size=(groups * block, 1, 1), user_sgprs=[OUT & M32, OUT >> 32, BUF & M32, BUF >> 32],
        wave32=isa == "gfx11", lds_size=lds, scratch_size=scratch, kernel_name="snippet")
    NumpyShaderExecutor().dispatch(info, mem)
    return out, b


def f2u(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


ISAS = pytest.mark.parametrize("isa", ["gfx9", "gfx11"])
STORE = {"gfx9": "global_store_dword", "gfx11": "global_store_b32"}


def store_s(isa, regs):
    """Store scalar registers to out[0..]: all lanes write the same value."""
    lines = ["v_mov_b32 v31, 0"]
    for j, r in enumerate(regs):
        lines += [f"v_mov_b32 v30, {r}", f"{STORE[isa]} v31, v30, s[0:1] offset:{4 * j}"]
    return "\n".join(lines)


def store_v(isa, regs, L):
    """Store VGPRs lane by lane: register j to out[j*L + lane]."""
    add = "v_add_nc_u32" if isa == "gfx11" else "v_add_u32"
    lines = ["v_lshlrev_b32 v31, 2, v0"]
    for r in regs:
        lines += [f"{STORE[isa]} v31, v{r}, s[0:1]", f"{add} v31, {4 * L}, v31"]
    return "\n" + "\n".join(lines)


@ISAS
def test_scalar_alu(isa):
    g11 = isa == "gfx11"
    text = f"""
    s_mov_b32 s10, 0xfffffff0
    s_mov_b32 s11, 1
    s_add_u32 s12, s10, 0x20
    s_addc_u32 s13, s11, 0
    s_mov_b32 s14, 0xabcd1234
    s_bfe_u32 s14, s14, 0x80004
    s_mov_b32 s15, 0x4000c
    s_mov_b32 s16, 0xf000
    s_bfe_i32 s15, s16, s15
    s_bcnt1_i32_b32 s16, 0xf0f0
    {"s_ctz_i32_b32" if g11 else "s_ff1_i32_b32"} s17, 0x100
    s_cmp_lt_i32 -5, 3
    s_cselect_b32 s18, 111, 0
    s_lshl_b64 s[20:21], s[10:11], 4
    s_sub_u32 s22, 3, 5
    s_subb_u32 s23, 10, 2
    s_mul_hi_u32 s24, 0x80000000, 6
    s_ashr_i32 s25, 0x80000000, 4
    s_bitcmp1_b32 s25, 31
    s_cselect_b32 s26, 1, 2
    s_max_i32 s27, -7, 3
    s_min_u32 s28, -7, 3
    {"s_and_not1_b32" if g11 else "s_andn2_b32"} s29, 0xff, 0x0f
    s_movk_i32 s30, 0x8001
    s_abs_i32 s31, -9
    s_sext_i32_i8 s32, 0x80
    s_bfm_b32 s33, 5, 3
    s_lshl2_add_u32 s34, 3, 4
    s_not_b32 s35, 0
    s_brev_b32 s36, 1
    s_addk_i32 s36, 0x10
    """ + store_s(isa, [f"s{r}" for r in range(12, 37)])
    out, _ = run(isa, text)
    want = [0x10, 2, 0x23, M32, 8, 8, 111, 0, 0xFFFFFF00, 0x1F, 0xFFFFFFFE, 7, 3, 0xF8000000, 1,
            3, 3, 0xF0, 0xFFFF8001, 9, 0xFFFFFF80, 0xF8, 16, 0xFFFFFFFF, 0x80000010]
    assert out[:len(want)].tolist() == want


@ISAS
def test_vector_alu(isa):
    L = 64 if isa == "gfx9" else 32
    g11 = isa == "gfx11"
    sd = "s[20:21]" if not g11 else "s20"
    lane = np.arange(L, dtype=np.int64)
    text = f"""
    s_mov_b32 s10, 0x9e3779b9
    s_mov_b32 s12, 5
    s_mov_b32 s13, 0xffffffff
    v_mov_b32 v2, s12
    v_mov_b32 v3, s13
    v_mad_u64_u32 v[4:5], {sd}, v0, s10, v[2:3]
    v_subrev_{"nc_" if g11 else ""}u32 v6, 8, v0
    s_mov_b32 s14, -3
    v_mov_b32 v8, 7
    v_mov_b32 v9, 0
    v_mad_i64_i32 v[10:11], {sd}, v6, s14, v[8:9]
    v_lshlrev_b32 v12, 27, v0
    v_bfe_i32 v13, v12, 28, 4
    v_alignbit_b32 v14, v0, v12, 4
    s_mov_b32 s15, 0x0c060501
    v_perm_b32 v15, v0, v12, s15
    v_cvt_f32_i32 v16, v6
    s_mov_b32 s16, 0x4e6e6b28
    v_mul_f32 v16, s16, v16
    v_cvt_i32_f32 v17, v16
    v_cvt_u32_f32 v18, v16
    v_mul_hi_i32 v19, v6, s10
    v_ashrrev_i64 v[20:21], 3, v[10:11]
    v_cmp_gt_u32 {"vcc_lo" if g11 else "vcc"}, 5, v0
    v_mov_b32 v22, 100
    v_cndmask_b32 v22, v22, v0, vcc{"_lo" if g11 else ""}
    v_cvt_f32_i32 v2, v6
    v_cmp_lt_i32 {"vcc_lo" if g11 else "vcc"}, 3, v0
    v_cndmask_b32_e64 v3, -v2, |v2|, {"vcc_lo" if g11 else "vcc"}
    v_mbcnt_lo_u32_b32 v23, -1, 0
    v_mbcnt_hi_u32_b32 v23, -1, v23
    v_min3_i32 v24, v6, 3, -2
    v_clz_i32_u32 v25, v0
    v_mul_f32 v26, 0.15915494, v16
    v_fract_f32 v26, v26
    v_ldexp_f32 v27, v16, -2
    v_rndne_f32 v28, v26
    v_xad_u32 v29, v0, s10, 7
    """.replace("v_clz_i32_u32", "v_clz_i32_u32" if g11 else "v_ffbh_u32")
    regs = [4, 5, 10, 11, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 3]
    text += store_v(isa, regs, L)
    out, _ = run(isa, text, nout=len(regs) * L)
    got = {r: out[j * L:(j + 1) * L].astype(np.int64) for j, r in enumerate(regs)}
    mad = (lane.astype(np.uint64) * np.uint64(0x9E3779B9) + np.uint64(0xFFFFFFFF00000005)) \
        .astype(object)
    assert (got[4] == mad & M32).all() and (got[5] == (mad >> 32) & M32).all()
    mi = (lane - 8) * -3 + 7
    assert (got[10] == mi & M32).all() and (got[11] == (mi >> 32) & M32).all()
    sh = (lane << 27) & M32
    assert (got[13] == np.where((sh >> 31) & 1, ((sh >> 28) & 15) - 16, (sh >> 28) & 15) & M32).all()
    assert (got[14] == (((lane << 32) | sh) >> 4) & M32).all()
    src = (lane << 32) | sh
    perm = sum(((src >> (8 * s)) & 0xFF) << (8 * i) for i, s in enumerate((1, 5, 6))) | (0 << 24)
    assert (got[15] == perm).all()
    f = (np.arange(L, dtype=np.float32) - np.float32(8)) * np.float32(1e9)
    assert (got[17] == np.clip(np.trunc(f.astype(np.float64)), -2**31, 2**31 - 1)
            .astype(np.int64) & M32).all()
    assert (got[18] == np.clip(np.trunc(f.astype(np.float64)), 0, 2**32 - 1)).all()
    assert (got[19] == (((lane - 8) * (0x9E3779B9 - (1 << 32))) >> 32) & M32).all()
    assert (got[20] == (mi >> 3) & M32).all() and (got[21] == (mi >> 35) & M32).all()
    assert (got[22] == np.where(lane < 5, lane, 100)).all()
    assert (got[23] == lane).all()
    assert (got[24] == np.minimum(np.minimum(lane - 8, 3), -2) & M32).all()
    clz = np.array([32 - int(x).bit_length() if x else -1 for x in lane]) & M32
    assert (got[25] == clz).all()
    g = f * np.uint32(0x3E22F983).view(np.float32)
    fr = (g - np.floor(g)).astype(np.float32)
    assert (got[26] == fr.view(np.uint32)).all()
    assert (got[27] == (f * np.float32(0.25)).view(np.uint32)).all()
    assert (got[28] == np.rint(fr).astype(np.float32).view(np.uint32)).all()
    assert (got[29] == ((lane ^ 0x9E3779B9) + 7) & M32).all()
    lf = (lane - 8).astype(np.float32)
    assert (got[3] == np.where(lane > 3, np.abs(lf), -lf).view(np.uint32)).all()


@ISAS
def test_carry_chain_and_lanes(isa):
    L = 64 if isa == "gfx9" else 32
    g11 = isa == "gfx11"
    lane = np.arange(L, dtype=np.int64)
    vcc = "vcc_lo" if g11 else "vcc"
    add = "v_add_co_u32" if g11 else "v_add_co_u32_e32"
    addc = "v_add_co_ci_u32_e32" if g11 else "v_addc_co_u32_e32"
    text = f"""
    s_mov_b32 s10, 0xfffffff8
    v_mov_b32 v2, s10
    {add} v3, {vcc}, v0, v2
    v_mov_b32 v4, 5
    {addc} v4, {vcc}, 0, v4, {vcc}
    v_readlane_b32 s12, v3, 9
    v_mov_b32 v5, 0
    v_writelane_b32 v5, s12, 3
    v_readfirstlane_b32 s13, v0
    v_mov_b32 v6, s13
    """
    if g11:
        text = text.replace(f"{add} v3, {vcc}, v0, v2", f"v_add_co_u32 v3, {vcc}, v0, v2")
    regs = [3, 4, 5, 6]
    text += store_v(isa, regs, L)
    out, _ = run(isa, text, nout=len(regs) * L)
    got = {r: out[j * L:(j + 1) * L].astype(np.int64) for j, r in enumerate(regs)}
    s = lane + 0xFFFFFFF8
    assert (got[3] == s & M32).all() and (got[4] == 5 + (s >> 32)).all()
    assert (got[5] == np.where(lane == 3, 1, 0)).all() and (got[6] == 0).all()


@ISAS
def test_lds_permute_and_atomics(isa):
    L = 64 if isa == "gfx9" else 32
    g11 = isa == "gfx11"
    n = {"write": "ds_store_b32" if g11 else "ds_write_b32",
         "read2": "ds_load_2addr_stride64_b32" if g11 else "ds_read2st64_b32",
         "read": "ds_load_b32" if g11 else "ds_read_b32"}
    block = 2 * L                                     # two waves, barrier between them
    text = f"""
    v_lshlrev_b32 v1, 2, v0
    v_mul_u32_u24 v2, v0, 3
    {n['write']} v1, v2
    v_add_{"nc_" if g11 else ""}u32 v3, {4 * block}, v1
    {n['write']} v3, v0
    s_waitcnt lgkmcnt(0)
    s_barrier
    v_sub_{"nc_" if g11 else ""}u32 v4, {4 * block - 4}, v1
    {n['read']} v5, v4
    v_mov_b32 v6, 0
    v_mov_b32 v7, 1
    ds_add_rtn_u32 v8, v6, v7 offset:2048
    v_sub_{"nc_" if g11 else ""}u32 v9, {4 * L - 4}, v1
    ds_bpermute_b32 v10, v9, v0
    s_waitcnt lgkmcnt(0)
    s_barrier
    {n['read']} v11, v6 offset:2048
    s_waitcnt lgkmcnt(0)
    """
    regs = [5, 8, 10, 11]
    text += "\n".join(f"{STORE[isa]} v1, v{r}, s[0:1] offset:{j * 4 * block}"
                      for j, r in enumerate(regs))
    out, _ = run(isa, text, nout=len(regs) * block, block=block)
    got = {r: out[j * block:(j + 1) * block] for j, r in enumerate(regs)}
    t = np.arange(block)
    assert (got[5] == 3 * (block - 1 - t)).all()
    assert sorted(got[8].tolist()) == list(range(block))   # each lane saw a distinct old value
    assert (got[10] == (t // L) * L + (L - 1 - t % L)).all()   # reversed within each wave
    assert (got[11] == block).all()


@ISAS
def test_global_atomics_with_return(isa):
    L = 64 if isa == "gfx9" else 32
    g11 = isa == "gfx11"
    ret = "glc" if g11 else "sc0"
    cmp_ = "global_atomic_cmpswap_b32" if g11 else "global_atomic_cmpswap"
    inc = "global_atomic_inc_u32" if g11 else "global_atomic_inc"
    fadd = "global_atomic_add_f32"
    text = f"""
    v_lshlrev_b32 v1, 2, v0
    v_mov_b32 v2, 0
    v_mov_b32 v3, 1000
    {inc} v4, v2, v3, s[2:3] {ret}
    v_mov_b32 v6, v0
    v_mov_b32 v7, 7
    {cmp_} v8, v1, v[6:7], s[2:3] offset:64 {ret}
    v_mov_b32 v9, 0.5
    {fadd} v2, v9, s[2:3] offset:4
    s_waitcnt vmcnt(0)
    """
    regs = [4, 8]
    text += "\n".join(f"{STORE[isa]} v1, v{r}, s[0:1] offset:{j * 4 * L}" for j, r in enumerate(regs))
    buf = np.zeros(1024, np.uint32)
    buf[16:16 + L] = np.where(np.arange(L) % 2, 7, 9)     # cmpswap swaps where the value is 7
    out, b = run(isa, text, nout=2 * L, buf=buf)
    assert sorted(out[:L].tolist()) == list(range(L)) and b[0] == L
    assert (out[L:2 * L] == np.where(np.arange(L) % 2, 7, 9)).all()
    assert (b[16:16 + L] == np.where(np.arange(L) % 2, np.arange(L), 9)).all()
    assert b[1:2].view(np.float32)[0] == 0.5 * L


@ISAS
def test_scratch_and_flat_apertures(isa):
    L = 64 if isa == "gfx9" else 32
    g11 = isa == "gfx11"
    st = "scratch_store_b32" if g11 else "scratch_store_dword"
    ld = "scratch_load_b32" if g11 else "scratch_load_dword"
    fst = "flat_store_b32" if g11 else "flat_store_dword"
    fld = "flat_load_b32" if g11 else "flat_load_dword"
    dsr = "ds_load_b32" if g11 else "ds_read_b32"
    text = f"""
    v_lshlrev_b32 v1, 2, v0
    v_add_{"nc_" if g11 else ""}u32 v2, 11, v0
    s_mov_b32 s20, 8
    {st} off, v2, s20 offset:4
    v_mov_b32 v3, 12
    {ld} v4, v3, off
    s_mov_b64 s[22:23], src_shared_base
    v_mov_b32 v6, s22
    v_mov_b32 v7, s23
    v_add_{"nc_" if g11 else ""}u32 v6, v6, v1
    {fst} v[6:7], v0
    s_waitcnt vmcnt(0) lgkmcnt(0)
    {dsr} v7, v1
    s_mov_b64 s[24:25], src_private_base
    v_mov_b32 v8, 16
    v_mov_b32 v9, s25
    {fld} v10, v[8:9]
    s_waitcnt vmcnt(0) lgkmcnt(0)
    """
    regs = [4, 7, 10]
    text += "\n".join(f"{STORE[isa]} v1, v{r}, s[0:1] offset:{j * 4 * L}" for j, r in enumerate(regs))
    out, _ = run(isa, text, nout=3 * L)
    lane = np.arange(L)
    assert (out[:L] == 11 + lane).all()             # private byte 12 of each lane
    assert (out[L:2 * L] == lane).all()             # FLAT store into LDS via the shared aperture
    assert (out[2 * L:] == 0).all()                 # private address 16 (never written)


def test_scratch_out_of_range_faults():
    with pytest.raises(GpuFault, match=r"scratch access .* outside the 64-byte private segment"):
        run("gfx11", "v_mov_b32 v1, 0\nscratch_store_b32 off, v1, off offset:64", scratch=64)
