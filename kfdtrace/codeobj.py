"""AMDGPU ELF code objects (HSA code object v3 … v6): metadata note, kernel descriptors, loadable
image, kernel-argument packing.

Layouts are those of the reference (`/work/shared/reference/amd-kfd.md` §6; LLVM AMDGPUUsage and
AMDHSAKernelDescriptor.h). The parser is meant for untrusted input (a code object pulled out of a
trace): every malformed byte string ends in `CodeObjectError` saying what is wrong and where.

Two views of the file are used, as a loader does: the *section* view (pyelftools: symbol tables,
the NT_AMDGPU_METADATA note) and the *segment* view (parsed here: PT_LOAD segments laid out by
vaddr, PT_DYNAMIC, the dynamic relocations applied for a load base).
"""
from __future__ import annotations

import io
import operator
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import msgpack
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection, SymbolTableSection

from kfdtrace.abi.families import Family, family_from_mach, get_family, parse_target_id
from kfdtrace.errors import CodeObjectError, KfdtraceError

__all__ = ["CodeObject", "Kernel", "KernelArg", "KernelDescriptor", "KernelArgError", "Relocation",
           "CodeObjectError"]

# --- ELF constants (reference §6; ELF gABI) --------------------------------------------------------
EM_AMDGPU = 224
ELFOSABI_AMDGPU_HSA, ELFOSABI_AMDGPU_PAL, ELFOSABI_AMDGPU_MESA3D = 64, 65, 66
ET_REL, ET_DYN = 1, 3
PT_LOAD, PT_DYNAMIC = 1, 2
PF_X = 1
NT_AMDGPU_METADATA = 32
EF_AMDGPU_MACH = 0x0FF
EF_AMDGPU_FEATURE_XNACK_V3, EF_AMDGPU_FEATURE_SRAMECC_V3 = 0x100, 0x200
EF_AMDGPU_FEATURE_XNACK_V4, EF_AMDGPU_FEATURE_SRAMECC_V4 = 0x300, 0xC00
EF_AMDGPU_GENERIC_VERSION_SHIFT = 24
_FEATURE_V4 = {0: "unsupported", 1: "any", 2: "off", 3: "on"}
DT_NULL, DT_STRTAB, DT_SYMTAB, DT_RELA, DT_RELASZ, DT_RELAENT, DT_SYMENT = 0, 5, 6, 7, 8, 9, 11
DT_REL, DT_RELSZ = 17, 18
SHN_UNDEF, SHN_ABS = 0, 0xFFF1
KD_SIZE = 64
MAX_IMAGE_SPAN = 1 << 28  # refuse to lay out more than 256 MiB: a corrupt p_memsz, not a kernel

# AMDGPU relocation types (AMDGPUUsage "AMDGPU ELF Relocation Records"); dynamic ones handled.
R_AMDGPU_NONE, R_AMDGPU_ABS32_LO, R_AMDGPU_ABS32_HI, R_AMDGPU_ABS64 = 0, 1, 2, 3
R_AMDGPU_REL32, R_AMDGPU_REL64, R_AMDGPU_ABS32 = 4, 5, 6
R_AMDGPU_REL32_LO, R_AMDGPU_REL32_HI, R_AMDGPU_RELATIVE64 = 10, 11, 13
RELOC_NAMES = {0: "R_AMDGPU_NONE", 1: "R_AMDGPU_ABS32_LO", 2: "R_AMDGPU_ABS32_HI",
               3: "R_AMDGPU_ABS64", 4: "R_AMDGPU_REL32", 5: "R_AMDGPU_REL64", 6: "R_AMDGPU_ABS32",
               7: "R_AMDGPU_GOTPCREL", 8: "R_AMDGPU_GOTPCREL32_LO", 9: "R_AMDGPU_GOTPCREL32_HI",
               10: "R_AMDGPU_REL32_LO", 11: "R_AMDGPU_REL32_HI", 13: "R_AMDGPU_RELATIVE64",
               14: "R_AMDGPU_REL16"}

# clang >= 20 emits each OpenCL kernel's body as a separate function that the kernel calls (at -O0
# the call survives); kernel_at() attributes code in it to the kernel.
OPENCL_IMPL_PREFIX = "__clang_ocl_kern_imp_"


class KernelArgError(CodeObjectError, ValueError):
    """Kernel arguments that cannot be packed (missing, unknown, wrong type or out of range)."""


# --- kernel descriptor bitfields (LLVM AMDHSAKernelDescriptor.h; reference §6) ---------------------
# Each field is (name, lo, hi) with an inclusive bit range: the same shape as
# Family.kd_rsrc3_fields.

def _rsrc1_table(gfx_major: int | None) -> tuple[tuple[str, int, int], ...]:
    """compute_pgm_rsrc1 fields. gfx_major None: GFX9–GFX11 names plus the GFX10+ bits."""
    g = 11 if gfx_major is None else gfx_major
    t = [("granulated_workitem_vgpr_count", 0, 5), ("granulated_wavefront_sgpr_count", 6, 9),
         ("priority", 10, 11), ("float_round_mode_32", 12, 13),
         ("float_round_mode_16_64", 14, 15), ("float_denorm_mode_32", 16, 17),
         ("float_denorm_mode_16_64", 18, 19), ("priv", 20, 20),
         ("enable_wg_rr_en" if g >= 12 else "enable_dx10_clamp", 21, 21), ("debug_mode", 22, 22),
         ("disable_perf" if g >= 12 else "enable_ieee_mode", 23, 23), ("bulky", 24, 24),
         ("cdbg_user", 25, 25)]
    if g >= 9:
        t.append(("fp16_ovfl", 26, 26))
    if g >= 10:
        t += [("wgp_mode", 29, 29), ("mem_ordered", 30, 30), ("fwd_progress", 31, 31)]
    return tuple(t)


def _rsrc2_table(gfx_major: int | None) -> tuple[tuple[str, int, int], ...]:
    """compute_pgm_rsrc2 fields; bit 6 and bit 31 change meaning on GFX12."""
    g = 11 if gfx_major is None else gfx_major
    t = [("enable_private_segment", 0, 0), ("user_sgpr_count", 1, 5),
         ("enable_dynamic_vgpr" if g >= 12 else "enable_trap_handler", 6, 6),
         ("enable_sgpr_workgroup_id_x", 7, 7), ("enable_sgpr_workgroup_id_y", 8, 8),
         ("enable_sgpr_workgroup_id_z", 9, 9), ("enable_sgpr_workgroup_info", 10, 10),
         ("enable_vgpr_workitem_id", 11, 12), ("enable_exception_address_watch", 13, 13),
         ("enable_exception_memory", 14, 14), ("granulated_lds_size", 15, 23),
         ("enable_exception_ieee_754_fp_invalid_operation", 24, 24),
         ("enable_exception_fp_denormal_source", 25, 25),
         ("enable_exception_ieee_754_fp_division_by_zero", 26, 26),
         ("enable_exception_ieee_754_fp_overflow", 27, 27),
         ("enable_exception_ieee_754_fp_underflow", 28, 28),
         ("enable_exception_ieee_754_fp_inexact", 29, 29),
         ("enable_exception_int_divide_by_zero", 30, 30)]
    if g >= 12:
        t.append(("wgp_takeover", 31, 31))
    return tuple(t)


KERNEL_CODE_PROPERTIES = (
    ("enable_sgpr_private_segment_buffer", 0, 0), ("enable_sgpr_dispatch_ptr", 1, 1),
    ("enable_sgpr_queue_ptr", 2, 2), ("enable_sgpr_kernarg_segment_ptr", 3, 3),
    ("enable_sgpr_dispatch_id", 4, 4), ("enable_sgpr_flat_scratch_init", 5, 5),
    ("enable_sgpr_private_segment_size", 6, 6), ("enable_wavefront_size32", 10, 10),
    ("uses_dynamic_stack", 11, 11))
KERNARG_PRELOAD = (("kernarg_preload_spec_length", 0, 6), ("kernarg_preload_spec_offset", 7, 15))

# User SGPRs in the order the hardware loads them (AMDGPUUsage "Initial Kernel Execution State"):
# (name, enabling kernel_code_properties bit, SGPR count). Preloaded kernargs follow.
USER_SGPRS = (("private_segment_buffer", 0, 4), ("dispatch_ptr", 1, 2), ("queue_ptr", 2, 2),
              ("kernarg_segment_ptr", 3, 2), ("dispatch_id", 4, 2), ("flat_scratch_init", 5, 2),
              ("private_segment_size", 6, 1))


def decode_fields(value: int, table: Iterable[tuple[str, int, int]]) -> dict[str, int]:
    """{name: bits lo..hi of value} for every field of a (name, lo, hi) table."""
    return {name: (value >> lo) & ((1 << (hi - lo + 1)) - 1) for name, lo, hi in table}


def _gfx_major(family: Family | str | None) -> int | None:
    return None if family is None else _as_family(family).gfx_major


def _as_family(family: Family | str) -> Family:
    try:
        return get_family(family)
    except KfdtraceError as e:
        raise CodeObjectError(str(e)) from None


@dataclass(frozen=True)
class KernelDescriptor:
    """The 64-byte kernel descriptor (`name.kd`) that an AQL dispatch packet points at."""
    raw: bytes
    group_segment_fixed_size: int
    private_segment_fixed_size: int
    kernarg_size: int
    kernel_code_entry_byte_offset: int  # signed: code VA = descriptor VA + this
    compute_pgm_rsrc3: int
    compute_pgm_rsrc1: int
    compute_pgm_rsrc2: int
    kernel_code_properties: int
    kernarg_preload: int

    _LAYOUT = struct.Struct("<III4xq20xIIIHH4x")

    @classmethod
    def from_bytes(cls, data: bytes) -> KernelDescriptor:
        data = bytes(data)
        if len(data) != KD_SIZE:
            raise CodeObjectError(f"kernel descriptor must be {KD_SIZE} bytes, got {len(data)}")
        return cls(data, *cls._LAYOUT.unpack(data))

    def rsrc1_fields(self, family: Family | str | None = None) -> dict[str, int]:
        """compute_pgm_rsrc1 decoded; names follow `family` (GFX12 renames bits 21/23)."""
        return decode_fields(self.compute_pgm_rsrc1, _rsrc1_table(_gfx_major(family)))

    def rsrc2_fields(self, family: Family | str | None = None) -> dict[str, int]:
        """compute_pgm_rsrc2 decoded (user_sgpr_count, enable_sgpr_workgroup_id_x, …)."""
        return decode_fields(self.compute_pgm_rsrc2, _rsrc2_table(_gfx_major(family)))

    def rsrc3_fields(self, family: Family | str) -> dict[str, int]:
        """compute_pgm_rsrc3 decoded with the family's layout (Family.kd_rsrc3_fields, names
        lower-cased like the other fields; empty where rsrc3 is reserved, e.g. gfx900)."""
        table = ((n.lower(), lo, hi) for n, lo, hi in _as_family(family).kd_rsrc3_fields)
        return decode_fields(self.compute_pgm_rsrc3, table)

    def properties_fields(self) -> dict[str, int]:
        """kernel_code_properties decoded (enable_sgpr_*, enable_wavefront_size32, …)."""
        return decode_fields(self.kernel_code_properties, KERNEL_CODE_PROPERTIES)

    def kernarg_preload_fields(self) -> dict[str, int]:
        return decode_fields(self.kernarg_preload, KERNARG_PRELOAD)

    @property
    def wave32(self) -> bool:
        return bool(self.kernel_code_properties >> 10 & 1)

    @property
    def user_sgpr_count(self) -> int:
        return self.compute_pgm_rsrc2 >> 1 & 0x1F

    def user_sgprs(self) -> list[tuple[str, int, int]]:
        """The user SGPRs the dispatch initialises: [(name, first SGPR, count)] in load order,
        ending with ("kernarg_preload", first, length) when kernargs are preloaded. They may
        total fewer than user_sgpr_count (LLVM reserves extra ones, e.g. GFX11 -O0 kernels load
        8 of 13): the system SGPRs (workgroup ids, …) always start at user_sgpr_count."""
        out, sgpr = [], 0
        for name, bit, count in USER_SGPRS:
            if self.kernel_code_properties >> bit & 1:
                out.append((name, sgpr, count))
                sgpr += count
        length = self.kernarg_preload & 0x7F
        if length:
            out.append(("kernarg_preload", sgpr, length))
        return out


# --- metadata ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelArg:
    """One entry of a kernel's `.args` metadata (None where the key is absent)."""
    name: str | None
    type_name: str | None
    offset: int
    size: int
    value_kind: str
    address_space: str | None = None
    access: str | None = None
    actual_access: str | None = None
    is_const: bool | None = None
    is_restrict: bool | None = None
    is_volatile: bool | None = None
    is_pipe: bool | None = None
    pointee_align: int | None = None

    @property
    def hidden(self) -> bool:
        return self.value_kind.startswith("hidden_")


class Relocation(NamedTuple):
    offset: int          # vaddr of the patched field (relative to the load base)
    type: int            # R_AMDGPU_*
    symbol: str | None   # None for symbol index 0 (STN_UNDEF)
    symbol_value: int    # st_value, 0 for STN_UNDEF
    symbol_defined: bool  # False: undefined (needs another object), True for ABS or section syms
    symbol_absolute: bool
    addend: int

    @property
    def type_name(self) -> str:
        return RELOC_NAMES.get(self.type, f"R_AMDGPU_{self.type}")


_POINTER_KINDS = {"global_buffer", "dynamic_shared_pointer", "image", "sampler", "pipe", "queue"}
_INT_TYPES = {"char": True, "uchar": False, "short": True, "ushort": False, "int": True,
              "uint": False, "long": True, "ulong": False, "bool": False, "size_t": False,
              "ptrdiff_t": True, "intptr_t": True, "uintptr_t": False,
              "unsigned char": False, "unsigned short": False, "unsigned int": False,
              "unsigned long": False, "signed char": True}
_FLOAT_FORMATS = {"half": "e", "float": "f", "double": "d"}


@dataclass
class Kernel:
    """One kernel: its metadata entry, descriptor and code range (vaddrs relative to load base)."""
    name: str
    symbol: str
    kernarg_size: int
    kernarg_align: int
    args: list[KernelArg]
    group_segment_fixed_size: int
    private_segment_fixed_size: int
    wavefront_size: int
    sgpr_count: int | None
    vgpr_count: int | None
    agpr_count: int | None
    max_flat_workgroup_size: int | None
    descriptor: KernelDescriptor
    descriptor_vaddr: int
    code_vaddr: int
    code_size: int
    uses_dynamic_stack: bool
    sgpr_spill_count: int | None = None
    vgpr_spill_count: int | None = None
    language: str | None = None
    kind: str | None = None
    uniform_work_group_size: bool | None = None
    workgroup_processor_mode: bool | None = None
    reqd_workgroup_size: tuple[int, int, int] | None = None
    impl_vaddr: int | None = None  # the __clang_ocl_kern_imp_<name> body function, if any
    impl_size: int = 0
    metadata: dict = field(default_factory=dict, repr=False)  # the raw `.amdhsa.kernels` entry

    @property
    def explicit_args(self) -> list[KernelArg]:
        return [a for a in self.args if not a.hidden]

    def contains(self, vaddr: int) -> bool:
        """Whether vaddr (base-relative) lies in the kernel's code or its OpenCL body function."""
        if self.code_vaddr <= vaddr < self.code_vaddr + self.code_size:
            return True
        return self.impl_vaddr is not None and self.impl_vaddr <= vaddr < self.impl_vaddr + self.impl_size

    def pack_args(self, *values: Any, grid: Any = None, block: Any = None,
                  grid_size: Any = None, global_offset: Any = (0, 0, 0),
                  hidden: dict[str, int] | None = None, **named: Any) -> bytes:
        """The kernarg segment (kernarg_size bytes) for a dispatch of this kernel.

        Explicit arguments come positionally (metadata order) or by name: pointers
        (global_buffer, …) as integer addresses (or objects with an integer `va`/`address`),
        by-value arguments by their OpenCL type (float → f32, uint → u32, float4 → 4×f32; a type
        it does not know from a Python int/float by size, or as exact-size bytes).

        The dispatch shape fills the code-object-v5 hidden arguments: `block` = work-items per
        work-group, and either `grid` = work-groups per dimension (as HIP's gridDim, what the
        driver dispatches) or `grid_size` = work-items per dimension (as the AQL packet's
        grid_size; the last work-group may then be partial). 1 to 3 values each. Then
        hidden_block_count_* = full work-groups, hidden_group_size_* = block,
        hidden_remainder_* = work-items of the partial work-group (0 if none),
        hidden_global_offset_* = global_offset, hidden_grid_dims = highest dimension > 1.
        Other hidden arguments (hidden_queue_ptr, hidden_hostcall_buffer, …) are 0 unless given
        in `hidden` by value_kind. Errors raise KernelArgError, naming the argument.
        """
        buf = bytearray(self.kernarg_size)
        explicit = self.explicit_args
        if len(values) > len(explicit):
            raise KernelArgError(f"kernel {self.name}: {len(values)} positional arguments given, "
                                 f"it takes {len(explicit)}")
        given: dict[int, Any] = dict(enumerate(values))
        by_name = {a.name: i for i, a in enumerate(explicit) if a.name}
        for key, value in named.items():
            if key not in by_name:
                known = ", ".join(by_name) or "none (no argument names in the metadata)"
                raise KernelArgError(f"kernel {self.name}: no argument named {key!r} "
                                     f"(arguments: {known})")
            if by_name[key] in given:
                raise KernelArgError(f"kernel {self.name}: argument {key!r} given twice")
            given[by_name[key]] = value
        missing = [a.name or f"#{i}" for i, a in enumerate(explicit) if i not in given]
        if missing:
            raise KernelArgError(f"kernel {self.name}: missing arguments {', '.join(missing)}")
        for i, arg in enumerate(explicit):
            self._put(buf, arg, _encode_arg(self.name, i, arg, given[i]))

        hv = dict(hidden or {})
        unknown = set(hv) - {a.value_kind for a in self.args if a.hidden}
        if unknown:
            raise KernelArgError(f"kernel {self.name}: has no hidden arguments {sorted(unknown)}")
        if grid is not None and grid_size is not None:
            raise KernelArgError(f"kernel {self.name}: give grid= (work-groups) or grid_size= "
                                 f"(work-items), not both")
        shape = grid if grid is not None else grid_size
        if (shape is None) != (block is None):
            raise KernelArgError(f"kernel {self.name}: give block= together with grid= or "
                                 f"grid_size= (or none of them)")
        if shape is not None:
            b = _dims(self.name, "block", block, 1)
            g = _dims(self.name, "grid" if grid is not None else "grid_size", shape, 1)
            items = tuple(n * s for n, s in zip(g, b)) if grid is not None else g
            o = _dims(self.name, "global_offset", global_offset, 0)
            for axis, c in enumerate("xyz"):
                hv.setdefault(f"hidden_block_count_{c}", items[axis] // b[axis])
                hv.setdefault(f"hidden_group_size_{c}", b[axis])
                hv.setdefault(f"hidden_remainder_{c}", items[axis] % b[axis])
                hv.setdefault(f"hidden_global_offset_{c}", o[axis])
            hv.setdefault("hidden_grid_dims", 3 if items[2] > 1 else 2 if items[1] > 1 else 1)
        for arg in self.args:
            if arg.hidden and arg.value_kind in hv:
                self._put(buf, arg, _encode_int(self.name, arg.value_kind, hv[arg.value_kind],
                                                arg.size, signed=False))
        return bytes(buf)

    def _put(self, buf: bytearray, arg: KernelArg, data: bytes) -> None:
        if arg.offset + len(data) > len(buf):
            raise KernelArgError(f"kernel {self.name}: argument {arg.name or arg.value_kind} at "
                                 f"offset {arg.offset} (+{len(data)}) exceeds kernarg_size "
                                 f"{len(buf)}")
        buf[arg.offset:arg.offset + len(data)] = data


def _dims(kernel: str, what: str, value: Any, pad: int) -> tuple[int, int, int]:
    """1 to 3 non-negative integers, padded to three with `pad` (1 for sizes, 0 for offsets)."""
    try:
        t = tuple(operator.index(v) for v in value)
    except TypeError:
        raise KernelArgError(f"kernel {kernel}: {what} must be 1 to 3 integers, got {value!r}") \
            from None
    if not 1 <= len(t) <= 3 or any(v < pad for v in t):
        raise KernelArgError(f"kernel {kernel}: {what} must be 1 to 3 integers >= {pad}, "
                             f"got {value!r}")
    return t + (pad,) * (3 - len(t))


def _encode_int(kernel: str, what: str, value: Any, size: int, signed: bool) -> bytes:
    """Little-endian `size`-byte integer. Signed slots also take the unsigned bit pattern."""
    try:
        v = operator.index(value)
    except TypeError:
        raise KernelArgError(f"kernel {kernel}: {what} needs an integer, got {value!r}") from None
    bits = 8 * size
    if not (-(1 << (bits - 1)) if signed else 0) <= v < (1 << bits):
        raise KernelArgError(f"kernel {kernel}: {what} = {v} does not fit "
                             f"{'a signed' if signed else 'an unsigned'} {size}-byte slot")
    return (v & ((1 << bits) - 1)).to_bytes(size, "little")


def _encode_arg(kernel: str, index: int, arg: KernelArg, value: Any) -> bytes:
    what = (f"argument {index} ({arg.name or '?'}: {arg.type_name or arg.value_kind}, "
            f"{arg.size} bytes at offset {arg.offset})")
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        if len(data) != arg.size:
            raise KernelArgError(f"kernel {kernel}: {what} given {len(data)} raw bytes")
        return data
    if arg.value_kind in _POINTER_KINDS:
        if not hasattr(value, "__index__"):
            value = getattr(value, "va", getattr(value, "address", value))
        return _encode_int(kernel, what, value, arg.size, signed=False)
    if arg.value_kind != "by_value":
        raise KernelArgError(f"kernel {kernel}: {what}: value kind {arg.value_kind!r} needs raw "
                             f"bytes")
    tname = (arg.type_name or "").strip()
    base = tname.rstrip("0123456789")
    count = int(tname[len(base):] or 1) if base in _FLOAT_FORMATS or base in _INT_TYPES else 1
    slots = 4 if count == 3 else count  # 3-vectors occupy four elements
    if base in _FLOAT_FORMATS or (base not in _INT_TYPES and isinstance(value, float)):
        fmt = _FLOAT_FORMATS.get(base) or {2: "e", 4: "f", 8: "d"}.get(arg.size)
        if fmt is None or struct.calcsize(fmt) * slots != arg.size:
            raise KernelArgError(f"kernel {kernel}: {what}: cannot pack a float into it")
        try:
            data = struct.pack(f"<{count}{fmt}", *_items(kernel, what, value, count))
        except (struct.error, TypeError, OverflowError) as e:
            raise KernelArgError(f"kernel {kernel}: {what}: {e}") from None
        return data.ljust(arg.size, b"\0")
    if base in _INT_TYPES or hasattr(value, "__index__"):
        if arg.size % slots:
            raise KernelArgError(f"kernel {kernel}: {what}: size is not {slots} elements")
        width = arg.size // slots
        data = b"".join(_encode_int(kernel, what, v, width, _INT_TYPES.get(base, True))
                        for v in _items(kernel, what, value, count))
        return data.ljust(arg.size, b"\0")
    raise KernelArgError(f"kernel {kernel}: {what}: give type {tname!r} as {arg.size} raw bytes")


def _items(kernel: str, what: str, value: Any, count: int) -> list:
    if count == 1:
        return [value]
    try:
        items = list(value)
    except TypeError:
        raise KernelArgError(f"kernel {kernel}: {what} needs {count} values") from None
    if len(items) != count:
        raise KernelArgError(f"kernel {kernel}: {what} needs {count} values, got {len(items)}")
    return items


# --- the code object -------------------------------------------------------------------------------
class _Segment(NamedTuple):
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
SHT_NULL, SHT_STRTAB, SHT_NOBITS = 0, 3, 8
_RELA = struct.Struct("<QQq")
_SYM = struct.Struct("<IBBHQQ")


class CodeObject:
    """A parsed AMDGPU HSA code object (ET_DYN, EM_AMDGPU, code object v3+)."""

    data: bytes
    source: str
    e_flags: int
    mach: int
    target: str
    target_id: str
    family: Family
    xnack: str
    sramecc: str
    generic_version: int
    abi_version: int
    code_object_version: int
    metadata: dict
    kernels: dict[str, Kernel]
    image_size: int
    relocations: list[Relocation]

    @classmethod
    def load(cls, path: str | Path) -> CodeObject:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise CodeObjectError(f"{path}: cannot read code object: {e.strerror or e}") from None
        return cls.from_bytes(data, source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> CodeObject:
        self = cls.__new__(cls)
        self.data, self.source = bytes(data), source
        try:
            self._parse()
        except CodeObjectError:
            raise
        except Exception as e:  # noqa: BLE001 - a corrupt file must never escape as anything else
            raise CodeObjectError(f"{source}: malformed code object: {type(e).__name__}: {e}") \
                from None
        return self

    def _err(self, message: str) -> CodeObjectError:
        return CodeObjectError(f"{self.source}: {message}")

    # -- parsing ---------------------------------------------------------------------------------
    def _parse(self) -> None:
        d = self.data
        if len(d) < 4 or d[:4] != b"\x7fELF":
            raise self._err(f"not an ELF file (starts with {d[:4]!r})")
        if len(d) < _EHDR.size:
            raise self._err(f"truncated: {len(d)} bytes, the ELF header alone is {_EHDR.size}")
        (ident, e_type, e_machine, _ver, _entry, phoff, shoff, e_flags, _ehsize, phentsize, phnum,
         shentsize, shnum, shstrndx) = _EHDR.unpack_from(d)
        if ident[4] != 2 or ident[5] != 1:
            raise self._err(f"not a little-endian ELF64 file (EI_CLASS {ident[4]}, "
                            f"EI_DATA {ident[5]} at byte 4)")
        if e_machine != EM_AMDGPU:
            raise self._err(f"wrong machine: e_machine {e_machine} at byte 18, expected "
                            f"EM_AMDGPU ({EM_AMDGPU})")
        osabi, self.abi_version = ident[7], ident[8]
        if osabi != ELFOSABI_AMDGPU_HSA:
            name = {ELFOSABI_AMDGPU_PAL: "AMDGPU_PAL", ELFOSABI_AMDGPU_MESA3D: "AMDGPU_MESA3D"}
            raise self._err(f"OS ABI {osabi} ({name.get(osabi, 'unknown')}) at byte 7: only "
                            f"HSA code objects (ELFOSABI_AMDGPU_HSA {ELFOSABI_AMDGPU_HSA}) load")
        self.code_object_version = self.abi_version + 2  # EI_ABIVERSION 0..4 = v2..v6
        if self.code_object_version < 3:
            raise self._err(f"code object v{self.code_object_version} (EI_ABIVERSION "
                            f"{self.abi_version}) has no msgpack metadata; v3+ is supported")
        if e_type != ET_DYN:
            kind = "a relocatable object (ET_REL): link it with ld.lld -shared first" \
                if e_type == ET_REL else f"e_type {e_type}"
            raise self._err(f"not a loadable code object: {kind}")
        self.e_flags = e_flags
        self.mach = e_flags & EF_AMDGPU_MACH
        if self.code_object_version == 3:
            self.xnack = "on" if e_flags & EF_AMDGPU_FEATURE_XNACK_V3 else "off"
            self.sramecc = "on" if e_flags & EF_AMDGPU_FEATURE_SRAMECC_V3 else "off"
        else:
            self.xnack = _FEATURE_V4[(e_flags & EF_AMDGPU_FEATURE_XNACK_V4) >> 8]
            self.sramecc = _FEATURE_V4[(e_flags & EF_AMDGPU_FEATURE_SRAMECC_V4) >> 10]
        self.generic_version = e_flags >> EF_AMDGPU_GENERIC_VERSION_SHIFT \
            if self.code_object_version >= 6 else 0
        try:
            self.family = family_from_mach(self.mach)
        except KfdtraceError as e:
            raise self._err(f"unknown GPU: EF_AMDGPU_MACH {self.mach:#x} in e_flags "
                            f"{e_flags:#x} ({e})") from None
        self.target = self.family.name

        self._segments = self._parse_segments(phoff, phentsize, phnum)
        loads = [s for s in self._segments if s.type == PT_LOAD]
        if not loads:
            raise self._err("no PT_LOAD segments: nothing to load")
        self.image_size = max(s.vaddr + s.memsz for s in loads)
        self._loads = loads

        self._check_sections(shoff, shentsize, shnum, shstrndx)
        elf = ELFFile(io.BytesIO(self.data))
        self._syms = self._parse_symbols(elf)
        self.metadata = self._parse_metadata(elf)
        self.target_id = self.metadata["amdhsa.target"]
        try:
            processor, features = parse_target_id(self.target_id)
        except KfdtraceError as e:
            raise self._err(f"amdhsa.target: {e}") from None
        if processor != self.target:
            raise self._err(f"amdhsa.target {self.target_id!r} names {processor}, but e_flags "
                            f"mach {self.mach:#x} is {self.target}")
        for feat, on in features.items():
            flag = getattr(self, feat, None)
            if flag is not None and flag != ("on" if on else "off"):
                raise self._err(f"amdhsa.target {self.target_id!r} says {feat}{'+-'[not on]} but "
                                f"e_flags {e_flags:#x} says {feat} {flag}")
        self.relocations = self._parse_relocations()
        self.kernels = {}
        for i, md in enumerate(self.metadata["amdhsa.kernels"]):
            k = self._parse_kernel(i, md)
            if k.name in self.kernels:
                raise self._err(f"amdhsa.kernels[{i}]: duplicate kernel name {k.name!r}")
            self.kernels[k.name] = k

    def _parse_segments(self, phoff: int, phentsize: int, phnum: int) -> list[_Segment]:
        if phnum and phentsize != _PHDR.size:
            raise self._err(f"e_phentsize {phentsize} at byte 54, expected {_PHDR.size}")
        end = phoff + phnum * _PHDR.size
        if end > len(self.data):
            raise self._err(f"truncated: program headers at {phoff:#x}..{end:#x} run past the "
                            f"end of the file ({len(self.data)} bytes)")
        segs = []
        for i in range(phnum):
            p_type, flags, offset, vaddr, _paddr, filesz, memsz, _align = \
                _PHDR.unpack_from(self.data, phoff + i * _PHDR.size)
            seg = _Segment(p_type, flags, offset, vaddr, filesz, memsz)
            if p_type in (PT_LOAD, PT_DYNAMIC):
                where = f"program header {i} (at {phoff + i * _PHDR.size:#x})"
                if offset + filesz > len(self.data):
                    raise self._err(f"truncated: {where} maps file bytes {offset:#x}..."
                                    f"{offset + filesz:#x}, the file has {len(self.data)}")
                if filesz > memsz:
                    raise self._err(f"{where}: p_filesz {filesz:#x} > p_memsz {memsz:#x}")
                if vaddr + memsz > MAX_IMAGE_SPAN:
                    raise self._err(f"{where}: segment ends at vaddr {vaddr + memsz:#x}, beyond "
                                    f"the {MAX_IMAGE_SPAN >> 20} MiB this loader lays out")
            segs.append(seg)
        return segs

    def _check_sections(self, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> None:
        """Bounds-check the section headers here, so a truncated file is reported as such."""
        if not shnum:
            return
        if shentsize != _SHDR.size:
            raise self._err(f"e_shentsize {shentsize} at byte 58, expected {_SHDR.size}")
        end = shoff + shnum * _SHDR.size
        if end > len(self.data):
            raise self._err(f"truncated: section headers at {shoff:#x}..{end:#x} run past the "
                            f"end of the file ({len(self.data)} bytes)")
        for i in range(shnum):
            _name, sh_type, _fl, _addr, offset, size, *_ = \
                _SHDR.unpack_from(self.data, shoff + i * _SHDR.size)
            if sh_type not in (SHT_NULL, SHT_NOBITS) and offset + size > len(self.data):
                raise self._err(f"truncated: section {i} (header at {shoff + i * _SHDR.size:#x}) "
                                f"covers bytes {offset:#x}..{offset + size:#x}, the file has "
                                f"{len(self.data)}")
        names_type = _SHDR.unpack_from(self.data, shoff + shstrndx * _SHDR.size)[1] \
            if shstrndx < shnum else None
        if names_type != SHT_STRTAB:
            raise self._err(f"e_shstrndx {shstrndx} at byte 62 is not a string table section "
                            f"({shnum} sections)")

    def _parse_symbols(self, elf: ELFFile) -> dict[str, tuple[int, int, str]]:
        syms: dict[str, tuple[int, int, str]] = {}
        for name in (".dynsym", ".symtab"):  # .symtab last: it is the complete one
            sec = elf.get_section_by_name(name)
            if not isinstance(sec, SymbolTableSection):
                continue
            for sym in sec.iter_symbols():
                shndx = sym["st_shndx"]
                if not sym.name or shndx in ("SHN_UNDEF", "SHN_ABS") or \
                        sym["st_info"]["type"] in ("STT_SECTION", "STT_FILE"):
                    continue
                syms[sym.name] = (sym["st_value"], sym["st_size"],
                                  sym["st_info"]["type"].removeprefix("STT_"))
        return syms

    def _parse_metadata(self, elf: ELFFile) -> dict:
        notes = []
        for sec in elf.iter_sections():
            if isinstance(sec, NoteSection):
                for note in sec.iter_notes():
                    if note["n_name"] == "AMDGPU" and note["n_type"] == NT_AMDGPU_METADATA:
                        desc = note["n_desc"]
                        notes.append((sec.name, note["n_offset"],
                                      desc if isinstance(desc, bytes) else note["n_descdata"]))
        if not notes:
            raise self._err(f"no AMDGPU metadata: no note named 'AMDGPU' of type "
                            f"NT_AMDGPU_METADATA ({NT_AMDGPU_METADATA})")
        if len(notes) > 1:
            raise self._err(f"{len(notes)} NT_AMDGPU_METADATA notes (at "
                            f"{', '.join(hex(n[1]) for n in notes)}); a code object has one")
        secname, off, desc = notes[0]
        where = f"metadata note in {secname} at {off:#x}"
        try:
            md = msgpack.unpackb(bytes(desc), raw=False, strict_map_key=False)
        except Exception as e:  # noqa: BLE001 - msgpack raises a zoo of types on bad input
            raise self._err(f"{where}: undecodable msgpack: {type(e).__name__}: {e}") from None
        if not isinstance(md, dict):
            raise self._err(f"{where}: metadata is a {type(md).__name__}, not a map")
        _need(self, md, "amdhsa.target", str, where)
        _need(self, md, "amdhsa.version", list, where)
        _need(self, md, "amdhsa.kernels", list, where)
        return md

    def _parse_relocations(self) -> list[Relocation]:
        dyn = [s for s in self._segments if s.type == PT_DYNAMIC]
        if not dyn:
            return []
        seg = dyn[0]
        tags: dict[int, int] = {}
        for pos in range(seg.offset, seg.offset + seg.filesz - 15, 16):
            tag, val = struct.unpack_from("<qQ", self.data, pos)
            if tag == DT_NULL:
                break
            tags.setdefault(tag, val)
        if DT_REL in tags and tags.get(DT_RELSZ):
            raise self._err("DT_REL relocations (without addends): AMDGPU uses DT_RELA only")
        if not tags.get(DT_RELASZ):
            return []
        rela, size, ent = tags.get(DT_RELA, 0), tags[DT_RELASZ], tags.get(DT_RELAENT, _RELA.size)
        if ent != _RELA.size or size % ent:
            raise self._err(f"PT_DYNAMIC: DT_RELAENT {ent} / DT_RELASZ {size} do not describe "
                            f"{_RELA.size}-byte Elf64_Rela entries")
        table = self._read_vaddr(rela, size, "DT_RELA relocation table")
        symtab, syment = tags.get(DT_SYMTAB), tags.get(DT_SYMENT, _SYM.size)
        relocs = []
        for i in range(size // ent):
            r_offset, r_info, addend = _RELA.unpack_from(table, i * ent)
            rtype, symidx = r_info & 0xFFFFFFFF, r_info >> 32
            where = f"dynamic relocation {i} (vaddr {rela + i * ent:#x})"
            if rtype not in (R_AMDGPU_NONE, R_AMDGPU_ABS32_LO, R_AMDGPU_ABS32_HI, R_AMDGPU_ABS64,
                             R_AMDGPU_REL32, R_AMDGPU_REL64, R_AMDGPU_ABS32, R_AMDGPU_REL32_LO,
                             R_AMDGPU_REL32_HI, R_AMDGPU_RELATIVE64):
                raise self._err(f"{where}: unsupported relocation type "
                                f"{RELOC_NAMES.get(rtype, rtype)}")
            width = 8 if rtype in (R_AMDGPU_ABS64, R_AMDGPU_REL64, R_AMDGPU_RELATIVE64) else 4
            if rtype != R_AMDGPU_NONE and r_offset + width > self.image_size:
                raise self._err(f"{where}: patches vaddr {r_offset:#x}, outside the "
                                f"{self.image_size:#x}-byte image")
            name, value, defined, absolute = None, 0, True, False
            if symidx:
                if symtab is None or syment != _SYM.size:
                    raise self._err(f"{where}: names symbol {symidx} but PT_DYNAMIC has no "
                                    f"usable DT_SYMTAB")
                st_name, _info, _other, shndx, value, _size = _SYM.unpack(
                    self._read_vaddr(symtab + symidx * _SYM.size, _SYM.size, f"{where} symbol"))
                name = self._dynstr(tags.get(DT_STRTAB), st_name)
                defined, absolute = shndx != SHN_UNDEF, shndx == SHN_ABS
            relocs.append(Relocation(r_offset, rtype, name, value, defined, absolute, addend))
        return relocs

    def _dynstr(self, strtab: int | None, index: int) -> str | None:
        if strtab is None:
            return None
        for seg in self._loads:
            if seg.vaddr <= strtab + index < seg.vaddr + seg.filesz:
                start = seg.offset + strtab + index - seg.vaddr
                end = self.data.find(b"\0", start, seg.offset + seg.filesz)
                return self.data[start:end if end >= 0 else seg.offset + seg.filesz] \
                    .decode("utf-8", "replace")
        return None

    def _read_vaddr(self, vaddr: int, size: int, what: str) -> bytes:
        """Bytes [vaddr, vaddr+size) of the unrelocated image (zero past a segment's file data)."""
        for seg in self._loads:
            if seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.memsz:
                start = seg.offset + vaddr - seg.vaddr
                chunk = self.data[start:min(start + size, seg.offset + seg.filesz)]
                return chunk.ljust(size, b"\0")
        raise self._err(f"{what} at vaddr {vaddr:#x} (+{size:#x}) is not inside one PT_LOAD "
                        f"segment")

    def _parse_kernel(self, i: int, md: Any) -> Kernel:
        where = f"amdhsa.kernels[{i}]"
        if not isinstance(md, dict):
            raise self._err(f"{where} is a {type(md).__name__}, not a map")
        name = _need(self, md, ".name", str, where)
        where = f"{where} ({name})"
        symbol = _need(self, md, ".symbol", str, where)
        if symbol not in self._syms:
            raise self._err(f"{where}: kernel descriptor symbol {symbol!r} is not in the symbol "
                            f"table")
        kd_vaddr = self._syms[symbol][0]
        if kd_vaddr % KD_SIZE:
            raise self._err(f"{where}: kernel descriptor at {kd_vaddr:#x} is not 64-byte aligned")
        kd = KernelDescriptor.from_bytes(self._read_vaddr(kd_vaddr, KD_SIZE,
                                                          f"{where} kernel descriptor {symbol}"))
        code = kd_vaddr + kd.kernel_code_entry_byte_offset
        exe = [s for s in self._loads if s.flags & PF_X and s.vaddr <= code < s.vaddr + s.filesz]
        if not exe:
            raise self._err(f"{where}: code entry {code:#x} (descriptor {kd_vaddr:#x} "
                            f"{kd.kernel_code_entry_byte_offset:+#x}) is not in an executable "
                            f"segment")
        code_size = self._func_size(code, name, exe[0])
        impl = self._syms.get(OPENCL_IMPL_PREFIX + name)
        args = []
        raw_args = md.get(".args", [])
        if not isinstance(raw_args, list):
            raise self._err(f"{where}: .args is a {type(raw_args).__name__}, not an array")
        for j, a in enumerate(raw_args):
            aw = f"{where}.args[{j}]"
            if not isinstance(a, dict):
                raise self._err(f"{aw} is a {type(a).__name__}, not a map")
            args.append(KernelArg(
                name=_opt(self, a, ".name", str, aw), type_name=_opt(self, a, ".type_name", str, aw),
                offset=_need(self, a, ".offset", int, aw), size=_need(self, a, ".size", int, aw),
                value_kind=_need(self, a, ".value_kind", str, aw),
                address_space=_opt(self, a, ".address_space", str, aw),
                access=_opt(self, a, ".access", str, aw),
                actual_access=_opt(self, a, ".actual_access", str, aw),
                is_const=_opt(self, a, ".is_const", bool, aw),
                is_restrict=_opt(self, a, ".is_restrict", bool, aw),
                is_volatile=_opt(self, a, ".is_volatile", bool, aw),
                is_pipe=_opt(self, a, ".is_pipe", bool, aw),
                pointee_align=_opt(self, a, ".pointee_align", int, aw)))
        kernarg_size = _need(self, md, ".kernarg_segment_size", int, where)
        for a in args:
            if a.offset < 0 or a.size < 0 or a.offset + a.size > kernarg_size:
                raise self._err(f"{where}: argument {a.name or a.value_kind} at {a.offset} "
                                f"(+{a.size}) lies outside kernarg_segment_size {kernarg_size}")
        wave = _need(self, md, ".wavefront_size", int, where)
        if wave not in (32, 64):
            raise self._err(f"{where}: .wavefront_size {wave} is neither 32 nor 64")
        reqd = _opt(self, md, ".reqd_workgroup_size", list, where)
        return Kernel(
            name=name, symbol=symbol, kernarg_size=kernarg_size,
            kernarg_align=_need(self, md, ".kernarg_segment_align", int, where), args=args,
            group_segment_fixed_size=_need(self, md, ".group_segment_fixed_size", int, where),
            private_segment_fixed_size=_need(self, md, ".private_segment_fixed_size", int, where),
            wavefront_size=wave, sgpr_count=_opt(self, md, ".sgpr_count", int, where),
            vgpr_count=_opt(self, md, ".vgpr_count", int, where),
            agpr_count=_opt(self, md, ".agpr_count", int, where),
            max_flat_workgroup_size=_opt(self, md, ".max_flat_workgroup_size", int, where),
            descriptor=kd, descriptor_vaddr=kd_vaddr, code_vaddr=code, code_size=code_size,
            uses_dynamic_stack=bool(_opt(self, md, ".uses_dynamic_stack", bool, where)
                                    or kd.kernel_code_properties >> 11 & 1),
            sgpr_spill_count=_opt(self, md, ".sgpr_spill_count", int, where),
            vgpr_spill_count=_opt(self, md, ".vgpr_spill_count", int, where),
            language=_opt(self, md, ".language", str, where),
            kind=_opt(self, md, ".kind", str, where),
            uniform_work_group_size=_flag(_opt(self, md, ".uniform_work_group_size", (bool, int),
                                               where)),
            workgroup_processor_mode=_flag(_opt(self, md, ".workgroup_processor_mode",
                                                (bool, int), where)),
            reqd_workgroup_size=tuple(reqd) if reqd is not None else None,
            impl_vaddr=impl[0] if impl and impl[2] == "FUNC" else None,
            impl_size=impl[1] if impl and impl[2] == "FUNC" else 0,
            metadata=md)

    def _func_size(self, code: int, name: str, seg: _Segment) -> int:
        """Size of the code at `code`: its FUNC symbol's st_size, else up to the next FUNC."""
        sym = self._syms.get(name)
        if sym and sym[0] == code and sym[1] and sym[2] == "FUNC":
            return sym[1]
        for v, size, typ in self._syms.values():
            if v == code and size and typ == "FUNC":
                return size
        later = [v for v, _, typ in self._syms.values() if typ == "FUNC" and v > code]
        return min(later + [seg.vaddr + seg.filesz]) - code

    # -- public API ------------------------------------------------------------------------------
    @property
    def symbols(self) -> dict[str, tuple[int, int, str]]:
        """Defined symbols: {name: (vaddr, size, type)} with type "FUNC", "OBJECT", "NOTYPE"…"""
        return dict(self._syms)

    def image(self, base: int = 0) -> bytes:
        """The loadable image (image_size bytes) as it sits in memory at load address `base`:
        PT_LOAD segments placed by vaddr, bss zeroed, dynamic relocations applied."""
        if base < 0 or base % 4096 or base + self.image_size > 1 << 64:
            raise self._err(f"load base {base:#x} must be a page-aligned 64-bit address")
        img = bytearray(self.image_size)
        for seg in self._loads:
            img[seg.vaddr:seg.vaddr + seg.filesz] = \
                self.data[seg.offset:seg.offset + seg.filesz]
        for i, r in enumerate(self.relocations):
            if r.type == R_AMDGPU_NONE:
                continue
            if r.symbol is not None and not r.symbol_defined:
                raise self._err(f"dynamic relocation {i} ({r.type_name} at {r.offset:#x}) needs "
                                f"undefined symbol {r.symbol!r}")
            s = r.symbol_value + (0 if r.symbol_absolute or r.symbol is None else base)
            p = base + r.offset
            value, width = {
                R_AMDGPU_RELATIVE64: (base + r.addend, 8), R_AMDGPU_ABS64: (s + r.addend, 8),
                R_AMDGPU_ABS32: (s + r.addend, 4),
                R_AMDGPU_ABS32_LO: ((s + r.addend) & 0xFFFFFFFF, 4),
                R_AMDGPU_ABS32_HI: ((s + r.addend) >> 32, 4),
                R_AMDGPU_REL64: (s + r.addend - p, 8), R_AMDGPU_REL32: (s + r.addend - p, 4),
                R_AMDGPU_REL32_LO: ((s + r.addend - p) & 0xFFFFFFFF, 4),
                R_AMDGPU_REL32_HI: ((s + r.addend - p) >> 32, 4)}[r.type]
            img[r.offset:r.offset + width] = (value & ((1 << (8 * width)) - 1)) \
                .to_bytes(width, "little")
        return bytes(img)

    def kernel_at(self, code_address: int, base: int = 0) -> Kernel | None:
        """The kernel whose code (or OpenCL body function) contains code_address, loaded at base."""
        vaddr = code_address - base
        for k in self.kernels.values():
            if k.code_vaddr <= vaddr < k.code_vaddr + k.code_size:
                return k
        for k in self.kernels.values():
            if k.contains(vaddr):
                return k
        return None

    def kernel_by_descriptor(self, descriptor_address: int, base: int = 0) -> Kernel | None:
        """The kernel whose descriptor sits at descriptor_address (what an AQL packet holds)."""
        for k in self.kernels.values():
            if k.descriptor_vaddr == descriptor_address - base:
                return k
        return None

    def __getitem__(self, name: str) -> Kernel:
        try:
            return self.kernels[name]
        except KeyError:
            raise CodeObjectError(f"{self.source}: no kernel {name!r} (kernels: "
                                  f"{', '.join(self.kernels)})") from None

    def __repr__(self) -> str:
        return (f"<CodeObject {self.source} {self.target_id} v{self.code_object_version} "
                f"kernels={list(self.kernels)}>")


def _need(co: CodeObject, md: dict, key: str, typ: type | tuple, where: str) -> Any:
    if key not in md:
        raise co._err(f"{where}: metadata key {key!r} missing")
    return _opt(co, md, key, typ, where)


def _opt(co: CodeObject, md: dict, key: str, typ: type | tuple, where: str) -> Any:
    v = md.get(key)
    if v is None:
        return None
    bad = not isinstance(v, typ) or (typ is int and isinstance(v, bool))
    if bad:
        want = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise co._err(f"{where}: metadata key {key!r} is {v!r}, expected {want}")
    return v


def _flag(v: bool | int | None) -> bool | None:
    return None if v is None else bool(v)
