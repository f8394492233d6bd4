"""The project's real kernels (clang-22, gfx942 wave64 / gfx1100 wave32, -O0 and -O2) run through the
numpy shader executor and give the numpy-computed results, on grids with partial workgroups."""
from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction

import numpy as np
import pytest

from kfdtrace.codeobj import CodeObject
from kfdtrace.data import KERNEL_SOURCES, kernel_path
from kfdtrace.emu.base import GpuPageFault
from kfdtrace.emu.isa.launch import ArrayMemory, aql_user_sgprs, dispatch_kernel
from kfdtrace.errors import GpuFault

TARGETS = ("gfx942", "gfx1100")
OPTS = ("O2", "O0")
BASE, KARG = 0x1_0000_0000, 0x2_0000_0000
_COS: dict = {}


def codeobj(target, opt):
    if (target, opt) not in _COS:
        _COS[target, opt] = CodeObject.load(kernel_path(target, opt))
    return _COS[target, opt]


class Rig:
    """A code object loaded into an ArrayMemory plus buffers at fixed addresses."""

    def __init__(self, target, opt):
        self.co = codeobj(target, opt)
        self.mem = ArrayMemory()
        self.mem.map(BASE, np.frombuffer(self.co.image(BASE), np.uint8).copy())
        self.next = 0x3_0000_0000

    def buf(self, array) -> int:
        va = self.next
        self.next += (array.nbytes + 0xFFFF) & ~0xFFFF or 0x10000
        self.mem.map(va, array.view(np.uint8).reshape(-1))
        return va

    def run(self, name, *args, grid_size, block, **kw):
        k = self.co.kernels[name]
        karg = np.frombuffer(k.pack_args(*args, grid_size=grid_size, block=block), np.uint8)
        self.mem.map(KARG, karg.copy())
        try:
            dispatch_kernel(self.co, name, self.mem, BASE, grid_size=grid_size, block=block,
                            kernarg_address=KARG, **kw)
        finally:
            self.mem.unmap(KARG)


def f32_round(fr: Fraction) -> np.float32:
    """Correctly rounded (nearest even) float32 of an exact rational (normal range)."""
    if fr == 0:
        return np.float32(0)
    sign, fr = (-1, -fr) if fr < 0 else (1, fr)
    e = fr.numerator.bit_length() - fr.denominator.bit_length()
    if Fraction(2) ** e > fr:
        e -= 1
    e = max(e, -126)
    scaled = fr / Fraction(2) ** (e - 23)
    q, r = divmod(scaled.numerator, scaled.denominator)
    if 2 * r > scaled.denominator or (2 * r == scaled.denominator and q & 1):
        q += 1
    return np.float32(sign * q * 2.0 ** (e - 23))


def fma_ref(a, b, c):
    return np.array([f32_round(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                     for x, y, z in zip(np.ravel(a), np.ravel(b), np.ravel(c))], np.float32)


params = pytest.mark.parametrize("target,opt", [(t, o) for t in TARGETS for o in OPTS])
rng = np.random.default_rng(1234)


@params
def test_vector_add(target, opt):
    r = Rig(target, opt)
    n = 1000                                  # 4 workgroups of 256, the last one partial
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    c = np.full(n + 64, -7.0, np.float32)     # guard elements past n must stay untouched
    r.run("vector_add", r.buf(a), r.buf(b), r.buf(c), n, grid_size=(n,), block=(256,))
    np.testing.assert_array_equal(c[:n], a + b)
    assert (c[n:] == -7.0).all()


@params
def test_saxpy_is_fused(target, opt):
    r = Rig(target, opt)
    n = 333
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    alpha = np.float32(1.0 / 3.0)
    want = fma_ref(np.full(n, alpha), x, y)
    r.run("saxpy", float(alpha), r.buf(x), r.buf(y), n, grid_size=(n,), block=(64,))
    np.testing.assert_array_equal(y, want)


@params
def test_fill(target, opt):
    r = Rig(target, opt)
    n = 777
    d = np.zeros(n + 5, np.uint32)
    r.run("fill", r.buf(d), 0xDEADBEEF, n, grid_size=(n,), block=(128,))
    assert (d[:n] == 0xDEADBEEF).all() and (d[n:] == 0).all()


def reduce_ref(x, n, wg):
    groups = -(-n // wg)
    t = np.zeros((groups, wg), np.float32)
    t.reshape(-1)[:n] = x[:n]
    s = 128
    lid = np.arange(wg)
    while s > 0:
        m = (lid < s) & (lid + s < wg)
        t[:, m] = t[:, m] + t[:, lid[m] + s]
        s >>= 1
    return t[:, 0]


@params
@pytest.mark.parametrize("wg", [256, 96])
def test_reduce_sum_lds_barrier(target, opt, wg):
    r = Rig(target, opt)
    n = 1000
    groups = -(-n // wg)
    x = rng.standard_normal(groups * wg).astype(np.float32)
    out = np.zeros(groups, np.float32)
    r.run("reduce_sum", r.buf(x), r.buf(out), n, grid_size=(groups * wg,), block=(wg,))
    np.testing.assert_array_equal(out, reduce_ref(x, n, wg))


@params
def test_matmul_2d_partial(target, opt):
    r = Rig(target, opt)
    m, n, k = 19, 37, 13
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    c = np.zeros((m, n), np.float32)
    r.run("matmul", r.buf(a), r.buf(b), r.buf(c), m, n, k, grid_size=(n, m), block=(16, 8))
    want = np.zeros((m, n), np.float32)
    for p in range(k):                        # one fused multiply-add per step, p = 0..k-1
        want = fma_ref(np.repeat(a[:, p:p + 1], n, 1), np.repeat(b[p:p + 1], m, 0), want) \
            .reshape(m, n)
    np.testing.assert_array_equal(c, want)


@params
def test_histogram_global_atomics(target, opt):
    r = Rig(target, opt)
    n, nbins = 3000, 37
    data = rng.integers(0, 1 << 31, n, dtype=np.uint32)
    data[:500] = 5                            # heavy contention on one bin
    bins = np.zeros(nbins, np.uint32)
    r.run("histogram", r.buf(data), r.buf(bins), n, nbins, grid_size=(n,), block=(192,))
    np.testing.assert_array_equal(bins, np.bincount(data % nbins, minlength=nbins))


def divergent_ref(v):
    out = np.zeros(v.size, np.uint32)
    for i, x in enumerate(v.tolist()):
        if x < 0:
            acc = (-x) & 0xFFFFFFFF
        elif x & 1:
            acc = (3 * x + 1) & 0xFFFFFFFF
        else:
            acc = x // 2
        for t in range(x & 15):
            acc = (acc * 5 + t) & 0xFFFFFFFF
            if acc & 0x100:
                acc ^= 0x55
        out[i] = acc
    return out.view(np.int32)


@params
def test_divergent_exec_masking(target, opt):
    r = Rig(target, opt)
    n = 700
    v = rng.integers(-(1 << 31), 1 << 31, n, dtype=np.int64).astype(np.int32)
    v[:40] = np.arange(-20, 20)
    out = np.zeros(n, np.int32)
    r.run("divergent", r.buf(v), r.buf(out), n, grid_size=(n,), block=(128,))
    np.testing.assert_array_equal(out, divergent_ref(v))


@params
def test_table_lookup_relocated_pointers(target, opt):
    r = Rig(target, opt)
    n = 300
    v = rng.integers(0, 1 << 32, n, dtype=np.uint32)
    out = np.zeros(n, np.uint32)
    r.run("table_lookup", r.buf(v), r.buf(out), n, grid_size=(n,), block=(64,))
    luts = np.array([[10, 20, 30, 40], [1, 3, 5, 7]], np.uint32)
    np.testing.assert_array_equal(out, luts[v & 1, (v >> 1) & 3])


@pytest.mark.parametrize("target", TARGETS)
def test_page_fault_reports_address(target):
    r = Rig(target, "O2")
    n = 256
    a = np.ones(n, np.float32)
    bad = 0x7_0000_0000                       # never mapped
    with pytest.raises(GpuPageFault) as ei:
        r.run("vector_add", r.buf(a), r.buf(a.copy()), bad, n, grid_size=(n,), block=(64,))
    assert ei.value.va == bad and ei.value.write
    short = np.zeros(100, np.float32)         # output buffer too small: lane 100 faults
    va = r.buf(short)
    with pytest.raises(GpuPageFault) as ei:
        r.run("vector_add", r.buf(a), r.buf(a.copy()), va, n, grid_size=(n,), block=(64,))
    assert ei.value.va == va + short.nbytes   # the first byte past the buffer
    assert "vector_add" in str(ei.value) and "global_store" in str(ei.value)


def test_unsupported_instruction_is_a_gpu_fault():
    r = Rig("gfx1100", "O2")
    k = r.co.kernels["fill"]
    pc = BASE + k.code_vaddr
    r.mem.write(pc, (0xBF800000).to_bytes(4, "little") + (0xF0000000).to_bytes(4, "little"))
    with pytest.raises(GpuFault) as ei:
        r.run("fill", r.buf(np.zeros(64, np.uint32)), 1, 64, grid_size=(64,), block=(64,))
    msg = str(ei.value)
    assert f"{pc + 4:#x}" in msg and "fill" in msg and "f0000000" in msg


def test_trap_is_a_gpu_fault():
    r = Rig("gfx942", "O2")
    k = r.co.kernels["fill"]
    r.mem.write(BASE + k.code_vaddr, (0xBF920002).to_bytes(4, "little"))   # s_trap 2
    with pytest.raises(GpuFault, match=r"s_trap 2.*fill|fill.*s_trap 2"):
        r.run("fill", r.buf(np.zeros(64, np.uint32)), 1, 64, grid_size=(64,), block=(64,))


def test_aql_user_sgprs_order():
    kcp = 0b1011110                            # dispatch, queue, kernarg, id, private size
    got = aql_user_sgprs(kcp, 13 << 1, family="gfx1100", private_segment_buffer=None,
                         dispatch_ptr=0x1_2345_6789, queue_ptr=0xA_0000_0004,
                         kernarg_ptr=0xB_0000_0008, dispatch_id=7, flat_scratch_init=0,
                         private_segment_size=86)
    assert got == [0x23456789, 1, 4, 0xA, 8, 0xB, 7, 0, 88, 0, 0, 0, 0]
    psb = aql_user_sgprs(0b1001, 6 << 1, family="gfx942", private_segment_buffer=(1, 2, 3, 4),
                         dispatch_ptr=0, queue_ptr=0, kernarg_ptr=0x5_0000_0010, dispatch_id=0,
                         flat_scratch_init=0, private_segment_size=0)
    assert psb == [1, 2, 3, 4, 0x10, 5]


CLANG, LLD = shutil.which("clang-22"), shutil.which("ld.lld-22")


@pytest.mark.skipif(not (CLANG and LLD), reason="clang-22 / ld.lld-22 not installed")
def test_gfx1100_wave64_mode(tmp_path):
    """RDNA3 also runs wave64 code (built here with -mwavefrontsize64): lane masks are SGPR
    pairs, VCC is vcc not vcc_lo, 64 lanes per wave."""
    src = KERNEL_SOURCES["vector_add"].parent
    obj, hsaco = tmp_path / "k.o", tmp_path / "k.hsaco"
    subprocess.run([CLANG, "-x", "cl", "-Xclang", "-finclude-default-header", "-target",
                    "amdgcn-amd-amdhsa", "-mcpu=gfx1100", "-mwavefrontsize64", "-nogpulib", "-O2",
                    "-cl-kernel-arg-info", "-c", str(src / "kernels.cl"), "-o", str(obj)],
                   check=True, capture_output=True, cwd=src)
    subprocess.run([LLD, "-shared", "--no-undefined", str(obj), "-o", str(hsaco)], check=True)
    _COS["gfx1100-w64", "O2"] = co = CodeObject.load(hsaco)
    assert not co.kernels["vector_add"].descriptor.wave32
    test_vector_add("gfx1100-w64", "O2")
    test_reduce_sum_lds_barrier("gfx1100-w64", "O2", 96)
    test_divergent_exec_masking("gfx1100-w64", "O2")
    test_histogram_global_atomics("gfx1100-w64", "O2")


@pytest.mark.parametrize("target", TARGETS)
def test_scratch_in_gpu_memory(target):
    """With DispatchInfo.scratch_base set, -O0 spills go to that GPU memory, lane-major per wave
    slot; a backing smaller than the grid runs in several batches, one too small for a workgroup
    is a GpuFault."""
    r = Rig(target, "O0")
    L = 64 if target == "gfx942" else 32
    k = r.co.kernels["vector_add"]
    stride = -(-k.private_segment_fixed_size // 16) * 16
    scratch = np.zeros(4 * L * stride, np.uint8)          # 4 wave slots for a 16-wave grid
    sva = r.buf(scratch)
    n = 16 * L - 5
    a, b = rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    c = np.zeros(n, np.float32)
    r.run("vector_add", r.buf(a), r.buf(b), r.buf(c), n, grid_size=(n,), block=(2 * L,),
          scratch_base=sva)
    np.testing.assert_array_equal(c, a + b)
    assert scratch.any()                                   # the spills landed in GPU memory
    small = r.buf(np.zeros(L * stride, np.uint8))          # one slot, workgroups need two
    with pytest.raises(GpuFault, match="holds 1 wave slots"):
        r.run("vector_add", r.buf(a), r.buf(b), r.buf(c), n, grid_size=(n,), block=(2 * L,),
              scratch_base=small)
