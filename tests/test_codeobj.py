"""kfdtrace.codeobj on the real code objects in kfdtrace/data/kernels (clang-22 builds).

Expected values come from the kernel sources (argument lists), the reference (§6: e_flags mach,
descriptor layout) and LLVM's documented encodings (granulated register counts, hidden kernarg
layout); llvm-readelf-22, where installed, is an independent oracle for symbols and relocations.
"""
from __future__ import annotations

import math
import re
import shutil
import struct
import subprocess
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kfdtrace.abi.families import get_family
from kfdtrace.codeobj import CodeObject, KernelArgError, KernelDescriptor
from kfdtrace.data import KERNEL_NAMES, KERNEL_SOURCES, KERNELS_DIR, OPTS, TARGETS, kernel_path
from kfdtrace.errors import CodeObjectError

REPO = Path(__file__).resolve().parent.parent
FIXTURES = [(t, o) for t in TARGETS for o in OPTS]
MACH = {"gfx942": 0x4C, "gfx1100": 0x41, "gfx1201": 0x4E}   # reference §6 table
BASE = 0x7F12_3456_0000
_cache: dict[tuple[str, str], CodeObject] = {}


def load(target: str, opt: str) -> CodeObject:
    if (target, opt) not in _cache:
        _cache[target, opt] = CodeObject.load(kernel_path(target, opt))
    return _cache[target, opt]


def source_params(name: str) -> list[tuple[bool, bool, str, str]]:
    """(global?, const?, type, name) of each parameter, parsed from the kernel's source."""
    text = KERNEL_SOURCES[name].read_text()
    m = re.search(rf"kernel\s+void\s+{name}\s*\(([^)]*)\)", text)
    assert m, f"kernel {name} not found in {KERNEL_SOURCES[name]}"
    out = []
    for p in m.group(1).split(","):
        words = p.replace("*", " * ").split()
        typ = "".join(w for w in words[:-1] if w not in ("global", "const"))
        out.append(("global" in words, "const" in words, typ, words[-1]))
    return out


def kernarg(k, data: bytes, kind: str) -> int:
    arg = next(a for a in k.args if a.value_kind == kind)
    return int.from_bytes(data[arg.offset:arg.offset + arg.size], "little")


# --- fixtures and the data package ------------------------------------------------------------------
def test_data_package_layout():
    assert set(KERNEL_SOURCES) == set(KERNEL_NAMES)
    for name, path in KERNEL_SOURCES.items():
        assert path.is_file() and f"kernel void {name}(" in path.read_text()
    for t, o in FIXTURES:
        assert kernel_path(t, o).is_file()
        assert kernel_path(t, o, "matmul") == kernel_path(t, o)
    assert kernel_path("gfx1100") == KERNELS_DIR / "kernels-gfx1100-O2.hsaco"
    for bad in (dict(target="gfx90a"), dict(target="gfx942", opt="O3"),
                dict(target="gfx942", name="nope")):
        with pytest.raises(CodeObjectError):
            kernel_path(**bad)


@pytest.mark.parametrize("target,opt", FIXTURES)
def test_header_target_family(target, opt):
    co = load(target, opt)
    fam = get_family(target)
    assert (co.mach, co.target, co.family, co.e_flags & 0xFF) == (MACH[target], target, fam, MACH[target])
    assert co.target_id == f"amdgcn-amd-amdhsa--{target}"
    assert co.abi_version == 4 and co.code_object_version == 6       # clang-22 default: COV6
    assert co.metadata["amdhsa.version"] == [1, 2]                     # V5/V6 metadata version
    # gfx942 supports XNACK and SRAMECC, built for "any"; RDNA supports neither.
    assert (co.xnack, co.sramecc) == (("any", "any") if target == "gfx942" else
                                      ("unsupported", "unsupported"))
    assert set(co.kernels) == set(KERNEL_NAMES)
    assert co.image_size % 4096 == 0 and co.image_size == len(co.image())


@pytest.mark.parametrize("target,opt", FIXTURES)
def test_kernel_symbols_and_code_ranges(target, opt):
    co = load(target, opt)
    syms = co.symbols
    for name, k in co.kernels.items():
        assert k.symbol == f"{name}.kd"
        assert syms[k.symbol] == (k.descriptor_vaddr, 64, "OBJECT")
        assert k.descriptor_vaddr % 64 == 0
        assert syms[name] == (k.code_vaddr, k.code_size, "FUNC")
        assert k.code_vaddr % 256 == 0                    # kernel entry alignment
        assert k.code_vaddr == k.descriptor_vaddr + k.descriptor.kernel_code_entry_byte_offset
        # clang-22 OpenCL: the body is a separate function (called at -O0, inlined at -O2)
        impl = syms[f"__clang_ocl_kern_imp_{name}"]
        assert (k.impl_vaddr, k.impl_size, "FUNC") == impl and impl[1] > 0
    ranges = sorted((k.code_vaddr, k.code_vaddr + k.code_size) for k in co.kernels.values())
    assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:])), "kernel code ranges overlap"


@pytest.mark.skipif(not shutil.which("llvm-readelf-22"), reason="llvm-readelf-22 not installed")
@pytest.mark.parametrize("target,opt", [("gfx942", "O0"), ("gfx1201", "O2")])
def test_symbols_and_relocations_match_llvm_readelf(target, opt):
    co = load(target, opt)
    out = subprocess.run(["llvm-readelf-22", "-s", "-r", "--wide", str(kernel_path(target, opt))],
                         capture_output=True, text=True, check=True).stdout
    seen = {}
    for m in re.finditer(r"^\s*\d+: ([0-9a-f]{16})\s+(\d+) (FUNC|OBJECT)\s+\S+\s+\S+\s+\d+ (\S+)$",
                         out, re.M):
        seen[m.group(4)] = (int(m.group(1), 16), int(m.group(2)), m.group(3))
    assert seen and all(co.symbols[n] == v for n, v in seen.items())
    relocs = [(int(m.group(1), 16), int(m.group(2), 16))
              for m in re.finditer(r"^([0-9a-f]{16})\s+[0-9a-f]{16} R_AMDGPU_RELATIVE64\s+([0-9a-f]+)$",
                                   out, re.M)]
    assert relocs == [(r.offset, r.addend) for r in co.relocations]
    assert [r.type_name for r in co.relocations] == ["R_AMDGPU_RELATIVE64"] * 2


# --- metadata: arguments ----------------------------------------------------------------------------
OCL_SIZES = {"float": 4, "uint": 4, "int": 4}
HIDDEN_LAYOUT = {   # offsets relative to the first hidden argument (AMDGPUUsage, code object v5)
    "hidden_block_count_x": (0, 4), "hidden_block_count_y": (4, 4), "hidden_block_count_z": (8, 4),
    "hidden_group_size_x": (12, 2), "hidden_group_size_y": (14, 2), "hidden_group_size_z": (16, 2),
    "hidden_remainder_x": (18, 2), "hidden_remainder_y": (20, 2), "hidden_remainder_z": (22, 2),
    "hidden_global_offset_x": (40, 8), "hidden_global_offset_y": (48, 8),
    "hidden_global_offset_z": (56, 8), "hidden_grid_dims": (64, 2)}


@pytest.mark.parametrize("target,opt", FIXTURES)
def test_explicit_args_match_sources(target, opt):
    co = load(target, opt)
    for name, k in co.kernels.items():
        params = source_params(name)
        explicit = k.explicit_args
        assert [a.name for a in explicit] == [p[3] for p in params], name
        offset = 0
        for a, (is_global, is_const, typ, pname) in zip(explicit, params):
            if typ.endswith("*"):
                assert is_global
                want = ("global_buffer", 8, "global", typ)
                assert a.is_const is (True if is_const else None), (name, pname)
            else:
                want = ("by_value", OCL_SIZES[typ], None, typ)
            assert (a.value_kind, a.size, a.address_space, a.type_name) == want, (name, pname)
            offset = -(-offset // a.size) * a.size       # natural alignment
            assert a.offset == offset, (name, pname)
            offset += a.size
        hidden = [a for a in k.args if a.hidden]
        first = -(-offset // 8) * 8
        assert hidden[0].offset == first and hidden[0].value_kind == "hidden_block_count_x"
        for a in hidden:
            if a.value_kind in HIDDEN_LAYOUT:
                assert (a.offset - first, a.size) == HIDDEN_LAYOUT[a.value_kind], a
        assert max(a.offset + a.size for a in k.args) <= k.kernarg_size
        assert k.kernarg_align == 8


def test_vector_add_layout_from_brief():
    k = load("gfx1100", "O2").kernels["vector_add"]
    assert [(a.name, a.value_kind, a.offset, a.size) for a in k.explicit_args] == [
        ("a", "global_buffer", 0, 8), ("b", "global_buffer", 8, 8), ("c", "global_buffer", 16, 8),
        ("n", "by_value", 24, 4)]
    assert [a.is_const for a in k.explicit_args[:3]] == [True, True, None]


# --- descriptors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("target,opt", FIXTURES)
def test_descriptor_consistent_with_metadata(target, opt):
    co = load(target, opt)
    fam = co.family
    for name, k in co.kernels.items():
        kd = k.descriptor
        raw = co.image()[k.descriptor_vaddr:k.descriptor_vaddr + 64]
        assert kd.raw == raw and KernelDescriptor.from_bytes(raw) == kd
        assert kd.kernarg_size == k.kernarg_size
        assert kd.group_segment_fixed_size == k.group_segment_fixed_size
        assert kd.private_segment_fixed_size == k.private_segment_fixed_size
        assert k.group_segment_fixed_size >= 1024 if name == "reduce_sum" else \
            k.group_segment_fixed_size == 0
        r1, r2, props = kd.rsrc1_fields(fam), kd.rsrc2_fields(fam), kd.properties_fields()
        # wave size: metadata, descriptor bit 10 and the family agree
        assert k.wavefront_size == fam.wave_size == (32 if target != "gfx942" else 64)
        assert props["enable_wavefront_size32"] == kd.wave32 == (target != "gfx942")
        # user SGPRs: rsrc2.user_sgpr_count covers the SGPRs the enabled properties load; on
        # GFX11/12 LLVM reserves more (gfx1100 -O2: 15 for 2 loaded, so workgroup id x is s15)
        loaded = sum(n for _, _, n in kd.user_sgprs())
        assert r2["user_sgpr_count"] == kd.user_sgpr_count >= loaded
        if target == "gfx942":
            assert kd.user_sgpr_count == loaded
        assert props["enable_sgpr_kernarg_segment_ptr"] == 1
        assert "kernarg_segment_ptr" in [n for n, _, _ in kd.user_sgprs()]
        assert r2["enable_sgpr_workgroup_id_x"] == 1
        if name == "matmul":     # 2D: needs workgroup id y and workitem id y
            assert r2["enable_sgpr_workgroup_id_y"] == 1 and r2["enable_vgpr_workitem_id"] >= 1
        # -O0 keeps locals in scratch; -O2 needs none
        assert (k.private_segment_fixed_size > 0) == (opt == "O0") == bool(r2["enable_private_segment"])
        assert r2["granulated_lds_size"] == 0           # HSA: the CP uses the packet's size
        assert not k.uses_dynamic_stack and props["uses_dynamic_stack"] == 0
        # granulated register counts (LLVM encoding granules: VGPR 8 on gfx90a+/wave32, SGPR 8)
        assert r1["granulated_workitem_vgpr_count"] == max(0, math.ceil(k.vgpr_count / 8) - 1)
        if fam.gfx_major >= 10:
            assert r1["granulated_wavefront_sgpr_count"] == 0   # reserved on GFX10+
            assert r1["wgp_mode"] == k.workgroup_processor_mode is True
        else:
            assert r1["granulated_wavefront_sgpr_count"] == max(0, math.ceil(k.sgpr_count / 8) - 1)
            r3 = kd.rsrc3_fields(fam)
            # gfx90a+: AGPRs start after ceil(arch VGPRs / 4) * 4 registers
            arch = k.vgpr_count - (k.agpr_count or 0)
            assert r3["accum_offset"] == max(0, math.ceil(arch / 4) - 1)
            assert set(r3) == {"accum_offset", "tg_split"}
        if fam.gfx_major >= 12:
            assert "enable_wg_rr_en" in r1 and "enable_ieee_mode" not in r1
            assert set(kd.rsrc3_fields(fam)) == {"inst_pref_size", "glg_en", "image_op"}
        else:
            assert "enable_ieee_mode" in r1 and "enable_trap_handler" in r2


def test_descriptor_from_bytes_fields():
    raw = struct.pack("<III4xq20xIIIHH4x", 1024, 88, 288, -0x1234, 0x7, 0xE0AF0104, 0x1391,
                      0x041E, (3 << 7) | 5)
    kd = KernelDescriptor.from_bytes(raw)
    assert (kd.group_segment_fixed_size, kd.private_segment_fixed_size, kd.kernarg_size,
            kd.kernel_code_entry_byte_offset) == (1024, 88, 288, -0x1234)
    assert kd.rsrc2_fields()["user_sgpr_count"] == 8 and kd.wave32
    assert kd.rsrc1_fields("gfx1201")["enable_wg_rr_en"] == 1
    assert kd.rsrc1_fields("gfx1100")["enable_dx10_clamp"] == 1
    assert kd.rsrc3_fields("gfx942") == {"accum_offset": 7, "tg_split": 0}
    assert kd.kernarg_preload_fields() == {"kernarg_preload_spec_length": 5,
                                           "kernarg_preload_spec_offset": 3}
    assert kd.user_sgprs() == [("dispatch_ptr", 0, 2), ("queue_ptr", 2, 2),
                               ("kernarg_segment_ptr", 4, 2), ("dispatch_id", 6, 2),
                               ("kernarg_preload", 8, 5)]
    for bad in (raw[:63], raw + b"\0"):
        with pytest.raises(CodeObjectError):
            KernelDescriptor.from_bytes(bad)


# --- loader view: kernel_at, image, relocations --------------------------------------------------
@pytest.mark.parametrize("target,opt", FIXTURES)
def test_kernel_at(target, opt):
    co = load(target, opt)
    for k in co.kernels.values():
        assert co.kernel_at(BASE + k.code_vaddr, BASE) is k
        assert co.kernel_at(BASE + k.code_vaddr + k.code_size - 4, BASE) is k
        assert co.kernel_at(k.code_vaddr) is k                       # base 0
        assert co.kernel_at(BASE + k.impl_vaddr + 4, BASE) is k      # inside the body function
        assert co.kernel_at(BASE + k.descriptor_vaddr, BASE) is None  # .rodata, not code
        assert co.kernel_by_descriptor(BASE + k.descriptor_vaddr, BASE) is k
    assert co.kernel_at(BASE - 4, BASE) is None
    assert co.kernel_at(BASE + co.image_size, BASE) is None


@pytest.mark.parametrize("target,opt", FIXTURES)
def test_image_and_relocations(target, opt):
    co = load(target, opt)
    img0, img = co.image(0), co.image(BASE)
    assert len(img) == len(img0) == co.image_size
    # table_lookup's pointer table is the only thing the loader patches
    luts, even, odd = (co.symbols[n][0] for n in ("luts", "lut_even", "lut_odd"))
    assert [(r.offset, r.type_name, r.symbol, r.addend) for r in co.relocations] == [
        (luts, "R_AMDGPU_RELATIVE64", None, even), (luts + 8, "R_AMDGPU_RELATIVE64", None, odd)]
    assert struct.unpack_from("<2Q", img, luts) == (BASE + even, BASE + odd)
    assert struct.unpack_from("<2Q", img0, luts) == (even, odd)
    diff = [i for i in range(co.image_size) if img[i] != img0[i]]
    assert diff and all(luts <= i < luts + 16 for i in diff)
    assert struct.unpack_from("<4I", img, even) == (10, 20, 30, 40)
    assert struct.unpack_from("<4I", img, odd) == (1, 3, 5, 7)
    # code is the file's bytes at the vaddr the descriptor points to
    k = co.kernels["vector_add"]
    with open(kernel_path(target, opt), "rb") as f:
        data = f.read()
    text_off = data.find(img[k.code_vaddr:k.code_vaddr + k.code_size])
    assert text_off > 0 and k.code_size >= 16
    with pytest.raises(CodeObjectError):
        co.image(BASE + 1)                                   # not page aligned


# --- pack_args --------------------------------------------------------------------------------------
def test_pack_args_vector_add_hidden():
    k = load("gfx1100", "O2").kernels["vector_add"]
    buf = k.pack_args(0x1000, 0x2000, c=0x3000, n=1000, grid=(4, 1, 1), block=(256, 1, 1))
    assert len(buf) == k.kernarg_size
    assert struct.unpack_from("<QQQI", buf, 0) == (0x1000, 0x2000, 0x3000, 1000)
    got = {a.value_kind: kernarg(k, buf, a.value_kind) for a in k.args if a.hidden}
    assert got == {"hidden_block_count_x": 4, "hidden_block_count_y": 1, "hidden_block_count_z": 1,
                   "hidden_group_size_x": 256, "hidden_group_size_y": 1, "hidden_group_size_z": 1,
                   "hidden_remainder_x": 0, "hidden_remainder_y": 0, "hidden_remainder_z": 0,
                   "hidden_global_offset_x": 0, "hidden_global_offset_y": 0,
                   "hidden_global_offset_z": 0, "hidden_grid_dims": 1}
    covered = set()
    for a in k.args:
        covered.update(range(a.offset, a.offset + a.size))
    assert all(buf[i] == 0 for i in range(len(buf)) if i not in covered)
    # grid_size in work-items: 1000 = 3 full work-groups of 256 + a partial one of 232
    buf = k.pack_args(1, 2, 3, 1000, grid_size=(1000,), block=(256,), global_offset=(7,))
    assert (kernarg(k, buf, "hidden_block_count_x"), kernarg(k, buf, "hidden_remainder_x"),
            kernarg(k, buf, "hidden_global_offset_x")) == (3, 232, 7)
    assert k.pack_args(1, 2, 3, 4)[32:] == bytes(k.kernarg_size - 32)   # no shape: hidden = 0


def test_pack_args_types_and_2d():
    co = load("gfx942", "O0")
    s = co.kernels["saxpy"].pack_args(2.5, 0x10, 0x20, 7)
    assert struct.unpack_from("<f", s, 0)[0] == 2.5 and struct.unpack_from("<QQI", s, 8) == (0x10, 0x20, 7)
    m = co.kernels["matmul"]
    buf = m.pack_args(1, 2, 3, m=48, n=32, k=16, grid=(2, 3), block=(16, 16),
                      hidden={"hidden_queue_ptr": 0xABC000})
    assert struct.unpack_from("<III", buf, 24) == (48, 32, 16)
    assert [kernarg(m, buf, f"hidden_block_count_{c}") for c in "xyz"] == [2, 3, 1]
    assert [kernarg(m, buf, f"hidden_group_size_{c}") for c in "xyz"] == [16, 16, 1]
    assert kernarg(m, buf, "hidden_grid_dims") == 2 and kernarg(m, buf, "hidden_queue_ptr") == 0xABC000

    class Buf:
        address = 0xDEAD0000
    h = co.kernels["histogram"].pack_args(Buf(), 0x40, 0xFFFFFFFF, b"\x10\0\0\0")
    assert struct.unpack_from("<QQII", h, 0) == (0xDEAD0000, 0x40, 0xFFFFFFFF, 16)


@pytest.mark.parametrize("call", [
    lambda k: k.pack_args(1, 2, 3),                                   # missing n
    lambda k: k.pack_args(1, 2, 3, 4, 5),                             # too many
    lambda k: k.pack_args(1, 2, 3, n=4, m=5),                         # unknown name
    lambda k: k.pack_args(1, 2, 3, 4, n=4),                           # given twice
    lambda k: k.pack_args(1, 2, 3, -1),                               # uint out of range
    lambda k: k.pack_args(1, 2, 3, 1 << 32),
    lambda k: k.pack_args(-8, 2, 3, 4),                               # negative address
    lambda k: k.pack_args(1, 2, 3, 4.5),                              # float for uint
    lambda k: k.pack_args(1, 2, 3, b"\0\0"),                          # wrong raw size
    lambda k: k.pack_args(1, 2, 3, 4, grid=(4,)),                     # grid without block
    lambda k: k.pack_args(1, 2, 3, 4, grid=(4,), grid_size=(4,), block=(1,)),
    lambda k: k.pack_args(1, 2, 3, 4, grid=(0,), block=(64,)),
    lambda k: k.pack_args(1, 2, 3, 4, hidden={"hidden_nope": 1}),
])
def test_pack_args_errors(call):
    k = load("gfx1201", "O2").kernels["vector_add"]
    with pytest.raises(KernelArgError) as e:
        call(k)
    assert isinstance(e.value, CodeObjectError) and "vector_add" in str(e.value)


# --- bad input ---------------------------------------------------------------------------------------
def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def note_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the msgpack descriptor of the AMDGPU metadata note (Elf64_Nhdr: namesz,
    descsz, type; name padded to 4 bytes; then the descriptor)."""
    name = data.index(b"AMDGPU\0")
    namesz, descsz, ntype = struct.unpack_from("<III", data, name - 12)
    assert (namesz, ntype) == (7, 32)
    start = name + 8
    return start, start + descsz


@pytest.mark.parametrize("mutate,words", [
    (lambda d: b"", "not an ELF"),
    (lambda d: b"MZ\x90\x00" + d[4:], "not an ELF"),
    (lambda d: d[:40], "truncated"),
    (lambda d: d[:100], "truncated"),
    (lambda d: d[:len(d) // 2], "truncated"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: patched(d, 4, b"\x01"), "ELF64"),
    (lambda d: patched(d, 18, struct.pack("<H", 62)), "wrong machine"),
    (lambda d: patched(d, 7, b"\x41"), "OS ABI 65"),
    (lambda d: patched(d, 8, b"\x00"), "code object v2"),
    (lambda d: patched(d, 16, struct.pack("<H", 1)), "relocatable"),
    (lambda d: patched(d, 48, b"\xfe"), "unknown GPU"),                      # e_flags mach
    (lambda d: patched(d, 48, b"\x4e"), "names gfx1100"),                    # mach ≠ target id
    (lambda d: d.replace(b"AMDGPU\0", b"AMDGPX\0", 1), "no AMDGPU metadata"),
    (lambda d: d.replace(b"vector_add.kd", b"vector_adX.kd", 1), "vector_adX.kd"),
    (lambda d: patched(d, note_span(d)[0], b"\xc1"), "msgpack"),            # reserved byte
])
def test_bad_input_raises_code_object_error(mutate, words):
    data = kernel_path("gfx1100", "O2").read_bytes()
    with pytest.raises(CodeObjectError) as e:
        CodeObject.from_bytes(mutate(data), source="bad.hsaco")
    assert words in str(e.value) and str(e.value).startswith("bad.hsaco: ")


def test_load_missing_file(tmp_path):
    with pytest.raises(CodeObjectError, match="cannot read"):
        CodeObject.load(tmp_path / "nope.hsaco")


def test_metadata_problems_are_reported():
    data = kernel_path("gfx942", "O2").read_bytes()
    with pytest.raises(CodeObjectError, match="'amdhsa.kernels' missing"):
        CodeObject.from_bytes(data.replace(b"amdhsa.kernels", b"amdhsa.kernelz", 1))
    # a metadata value that is out of range for its key
    start, end = note_span(data)
    md = msgpack.unpackb(data[start:end], raw=False, strict_map_key=False)
    assert md["amdhsa.kernels"][0][".name"] == "vector_add"
    key = msgpack.packb(".wavefront_size") + msgpack.packb(64)
    at = data.index(key, start)
    bad = patched(data, at + len(key) - 1, b"\x21")           # wavefront size 64 -> 33
    with pytest.raises(CodeObjectError, match=r"amdhsa.kernels\[0\] \(vector_add\): .wavefront_size 33"):
        CodeObject.from_bytes(bad)


_FUZZ_BASE = {o: kernel_path("gfx942", o).read_bytes() for o in OPTS}


def _exercise(data: bytes) -> None:
    try:
        co = CodeObject.from_bytes(data)
    except CodeObjectError:
        return
    try:  # a file that parses must also load and answer lookups without surprises
        if co.image_size <= 1 << 20:      # (a flipped p_memsz may ask for up to 256 MiB)
            co.image(0x10000)
        for k in co.kernels.values():
            co.kernel_at(k.code_vaddr)
            k.descriptor.rsrc1_fields(co.family)
            k.descriptor.rsrc3_fields(co.family)
    except CodeObjectError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(opt=st.sampled_from(OPTS), data=st.data())
def test_fuzz_truncate_and_flip_only_code_object_error(opt, data):
    blob = bytearray(_FUZZ_BASE[opt])
    n = len(blob)
    hot = note_span(bytes(blob))[1]          # headers, program headers, notes: the parsed bytes
    cut = data.draw(st.one_of(st.none(), st.integers(0, n)), label="truncate")
    flips = data.draw(st.lists(st.tuples(st.one_of(st.integers(0, hot), st.integers(0, n - 1),
                                                   st.integers(n - 0x800, n - 1)),
                                         st.integers(0, 255)), max_size=6), label="flips")
    for pos, val in flips:
        blob[pos] = val
    _exercise(bytes(blob[:cut] if cut is not None else blob))


# --- deterministic rebuild --------------------------------------------------------------------------
def _committed_compiler() -> str:
    data = kernel_path("gfx942", "O2").read_bytes()
    m = re.search(rb"[\w ]*clang version [^\0]+", data)
    return m.group(0).decode() if m else "?"


@pytest.mark.skipif(not (shutil.which("clang-22") and shutil.which("ld.lld-22")),
                    reason="clang-22/ld.lld-22 not installed: cannot rebuild the code objects")
def test_rebuild_is_byte_identical(tmp_path):
    version = subprocess.run(["clang-22", "--version"], capture_output=True, text=True).stdout
    built_by = _committed_compiler()
    if built_by not in version:
        pytest.skip(f"installed clang-22 is {version.splitlines()[0]!r}, fixtures were built by "
                    f"{built_by!r}: other compiler builds emit other bytes")
    subprocess.run([str(REPO / "tools" / "build_kernels.sh"), str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for t, o in FIXTURES:
        rebuilt = (tmp_path / f"kernels-{t}-{o}.hsaco").read_bytes()
        assert rebuilt == kernel_path(t, o).read_bytes(), f"kernels-{t}-{o}.hsaco differs"
