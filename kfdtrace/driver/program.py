"""Programs: AMDGPU code objects loaded into GPU memory, their kernels, and dispatch setup."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from kfdtrace.abi.dispatch import tmpring_size, user_sgprs
from kfdtrace.codeobj import CodeObject
from kfdtrace.errors import KfdtraceError

ENABLE_WAVEFRONT_SIZE32 = 1 << 10      # kernel_code_properties bit 10 (§6)
RSRC2_ENABLE_PRIVATE_SEGMENT = 1       # compute_pgm_rsrc2 bit 0
#: scratch waves the driver provisions for one dispatch (TMPRING_SIZE.WAVES is 12 bits)
MAX_SCRATCH_WAVES = 256


class Kernel:
    """A kernel of a loaded Program: its metadata and where its descriptor and code live."""

    def __init__(self, program: Program, meta):
        self.program, self.meta, self.name = program, meta, meta.name
        base = program.base
        self.descriptor = meta.descriptor
        self.descriptor_address = base + meta.descriptor_vaddr
        self.code_address = base + meta.code_vaddr
        self.private_segment_size = meta.private_segment_fixed_size
        self.group_segment_size = meta.group_segment_fixed_size
        self.wave32 = bool(self.descriptor.kernel_code_properties & ENABLE_WAVEFRONT_SIZE32)

    def __repr__(self):
        return f"<Kernel {self.name} code={self.code_address:#x} kd={self.descriptor_address:#x}>"


class Program:
    """A code object in executable GPU memory. `program["name"]` or `.kernel(name)`."""

    def __init__(self, device, code):
        if isinstance(code, (str, os.PathLike)):
            path = os.fspath(code)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise KfdtraceError(f"cannot read code object {path}: {e.strerror}") from None
            source = path
        else:
            data, source = bytes(code), "<bytes>"
        self.device, self.source = device, source
        self.codeobj = co = CodeObject.from_bytes(data, source=source)
        if co.family.name != device.family.name:
            raise KfdtraceError(f"{source}: code object is for {co.family.name}, but {device.name} "
                                f"is {device.family.name}")
        self.buffer = device.alloc(max(co.image_size, 256), "vram")
        self.base = self.buffer.address
        self.buffer.write(co.image(self.base))
        device.port.annotate("codeobj", va=self.base, size=co.image_size, data=data,
                             target=co.target, sha256=hashlib.sha256(data).hexdigest(),
                             source=source, gpu_id=device.gpu_id)
        self.kernels = {name: Kernel(self, k) for name, k in co.kernels.items()}

    def kernel(self, name: str) -> Kernel:
        try:
            return self.kernels[name]
        except KeyError:
            raise KfdtraceError(f"{self.source}: no kernel {name!r}; kernels: "
                                f"{', '.join(sorted(self.kernels))}") from None

    __getitem__ = kernel

    def free(self) -> None:
        self.buffer.free()


@dataclass
class DispatchSetup:
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    rsrc1: int
    rsrc2: int
    rsrc3: int
    tmpring: int
    scratch_base: int
    user_sgprs: list[int]
    wave32: bool
    kernarg_address: int      # where the kernel arguments start
    region: tuple[int, int]   # (address, bytes) of kernarg memory this dispatch reads


def _dim3(v, what: str) -> tuple[int, int, int]:
    t = (v,) if isinstance(v, int) else tuple(v)
    if not 1 <= len(t) <= 3 or any((not isinstance(x, int)) or x < 1 for x in t):
        raise KfdtraceError(f"{what} must be 1 to 3 positive integers, got {v!r}")
    return (t + (1, 1))[:3]


def dispatch_setup(queue, kernel: Kernel, grid, block, args, named) -> DispatchSetup:
    """Everything a compute queue needs to launch `kernel`: kernel arguments placed in the
    queue's kernarg memory, register values from the kernel descriptor, user SGPRs and scratch."""
    if kernel.program.device is not queue.device:
        raise KfdtraceError(f"{kernel!r} is loaded on {kernel.program.device.name}, "
                            f"not on {queue.device.name}")
    grid, block = _dim3(grid, "grid"), _dim3(block, "block")
    if block[0] * block[1] * block[2] > kernel.meta.max_flat_workgroup_size:
        raise KfdtraceError(f"block {block} exceeds {kernel.name}'s max workgroup size "
                            f"{kernel.meta.max_flat_workgroup_size}")
    for i, a in enumerate(list(args) + list(named.values())):
        if getattr(a, "freed", False):
            raise KfdtraceError(f"kernel {kernel.name}: argument {i} is {a!r}, which was freed")
        if hasattr(a, "map_to"):
            queue._prepare(a)
    values = [a.address if hasattr(a, "address") else a for a in args]
    named = {k: (v.address if hasattr(v, "address") else v) for k, v in named.items()}
    kernarg = kernel.meta.pack_args(*values, grid=grid, block=block, **named)
    kd = kernel.descriptor
    fam = queue.family
    wave = 32 if kernel.wave32 else 64
    tmpring, scratch_base = 0, 0
    if kernel.private_segment_size and kd.compute_pgm_rsrc2 & RSRC2_ENABLE_PRIVATE_SEGMENT:
        groups = grid[0] * grid[1] * grid[2]
        waves_per_group = -(-(block[0] * block[1] * block[2]) // wave)
        waves = min(MAX_SCRATCH_WAVES, groups * waves_per_group)
        tmpring, per_wave = tmpring_size(fam.gfx_major, waves, kernel.private_segment_size, wave)
        scratch_base = queue._scratch(per_wave * waves)
    # PM4 dispatches have no AQL packet: give kernels that read the dispatch packet one.
    dispatch_ptr = 0
    if queue.kind == "pm4":
        from kfdtrace.packets import aql
        pkt = aql.build("KERNEL_DISPATCH", dimensions=3, workgroup_size_x=block[0],
                        workgroup_size_y=block[1], workgroup_size_z=block[2],
                        grid_size_x=grid[0] * block[0], grid_size_y=grid[1] * block[1],
                        grid_size_z=grid[2] * block[2],
                        private_segment_size=kernel.private_segment_size,
                        group_segment_size=kernel.group_segment_size,
                        kernel_object=kernel.descriptor_address)
        blob = bytes(pkt) + bytes(kernarg)
        base = queue._kernarg(blob)
        dispatch_ptr, kernarg_address, region = base, base + 64, (base, len(blob))
    else:
        kernarg_address = queue._kernarg(bytes(kernarg))
        region = (kernarg_address, len(kernarg))
    sgprs = user_sgprs(kd.kernel_code_properties, kd.compute_pgm_rsrc2, dispatch_ptr=dispatch_ptr,
                       kernarg_ptr=kernarg_address,
                       private_segment_size=kernel.private_segment_size,
                       flat_scratch_init=scratch_base)
    return DispatchSetup(grid, block, kd.compute_pgm_rsrc1, kd.compute_pgm_rsrc2, kd.compute_pgm_rsrc3,
                         tmpring, scratch_base, sgprs, kernel.wave32, kernarg_address, region)
