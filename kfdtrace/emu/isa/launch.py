"""Launch glue: the hardware ABI's user SGPRs for AQL dispatches, a numpy-backed GpuMemory, and
`dispatch_kernel` to run a kernel of a code object directly (tests, benchmarks, tools).

User SGPR order (AMDGPUUsage "Initial Kernel Execution State", SGPR Register Set Up Order): the
enabled ones of private segment buffer (4), dispatch ptr (2), queue ptr (2), kernarg segment
ptr (2), dispatch id (2), flat scratch init (2), preloaded kernargs, private segment size (1), as
enabled by kernel_code_properties bits 0..6; at most 16 are loaded. The SPI then places the
system SGPRs (workgroup id X/Y/Z, workgroup info, scratch wave offset) right after the first
COMPUTE_PGM_RSRC2.USER_SGPR_COUNT SGPRs, and the work-item ids in v0 (packed 10:10:10 on gfx90a+,
gfx940+ and gfx11+) — the executor does that part from rsrc2.
"""
from __future__ import annotations

import bisect

import numpy as np

from kfdtrace.abi.dispatch import user_sgprs
from kfdtrace.emu.base import DispatchInfo, GpuPageFault
from kfdtrace.errors import GpuFault, KfdtraceError

_executor = None


def aql_user_sgprs(kernel_code_properties: int, rsrc2: int, *, family=None, **values) -> list[int]:
    """The user SGPRs the CP loads for an AQL dispatch: `kfdtrace.abi.dispatch.user_sgprs` (the
    same ABI the driver programs for PM4 dispatches); `family` is accepted for ABI variants."""
    return user_sgprs(kernel_code_properties, rsrc2, **values)


def default_executor():
    """The process-wide ShaderExecutor (numpy; programs are cached across dispatches)."""
    global _executor
    if _executor is None:
        from kfdtrace.emu.isa.executor import NumpyShaderExecutor
        _executor = NumpyShaderExecutor()
    return _executor


class ArrayMemory:
    """A GpuMemory over numpy arrays mapped at chosen addresses (tests, tools, benchmarks).
    A view must lie inside one region; anything else raises GpuPageFault."""

    def __init__(self):
        self._starts: list[int] = []
        self._regions: list[tuple[int, np.ndarray, bool]] = []

    def map(self, va: int, size_or_array, *, writable: bool = True) -> np.ndarray:
        arr = np.zeros(int(size_or_array), np.uint8) if np.isscalar(size_or_array) else \
            np.ascontiguousarray(size_or_array).view(np.uint8).reshape(-1)
        i = bisect.bisect_left(self._starts, va)
        if i < len(self._starts) and self._starts[i] < va + arr.size or \
                i and self._regions[i - 1][0] + self._regions[i - 1][1].size > va:
            raise ValueError(f"region at {va:#x} overlaps an existing one")
        self._starts.insert(i, va)
        self._regions.insert(i, (va, arr, writable))
        return arr

    def unmap(self, va: int) -> None:
        i = self._starts.index(va)
        del self._starts[i], self._regions[i]

    def view(self, va: int, size: int, *, write: bool = False) -> np.ndarray:
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            base, arr, writable = self._regions[i]
            if va + size <= base + arr.size and (writable or not write):
                return arr[va - base:va - base + size]
        raise GpuPageFault(va, write, size)

    def read(self, va: int, size: int) -> bytes:
        return bytes(self.view(va, size))

    def write(self, va: int, data: bytes) -> None:
        self.view(va, len(data), write=True)[:] = np.frombuffer(bytes(data), np.uint8)

    def read_u32(self, va: int) -> int:
        return int(self.view(va, 4).view(np.uint32)[0])

    def read_u64(self, va: int) -> int:
        return int(self.view(va, 8).view(np.uint64)[0])

    def write_u32(self, va: int, value: int) -> None:
        self.view(va, 4, write=True).view(np.uint32)[0] = value

    def write_u64(self, va: int, value: int) -> None:
        self.view(va, 8, write=True).view(np.uint64)[0] = value


def dispatch_info(codeobj, kernel_name: str, base: int, *, grid=None, block=(1, 1, 1),
                  grid_size=None, kernarg_address: int, dispatch_ptr: int = 0, queue_ptr: int = 0,
                  dispatch_id: int = 0, scratch_base: int = 0, dynamic_lds: int = 0,
                  private_segment_size: int | None = None) -> DispatchInfo:
    """A DispatchInfo for `kernel_name` of `codeobj` loaded (codeobj.image(base)) at `base`.
    Give `grid` (workgroups per dimension) or `grid_size` (work-items; the last workgroup of a
    dimension may then be partial), as in Kernel.pack_args."""
    k = codeobj[kernel_name]
    kd = k.descriptor
    b = tuple(block) + (1,) * (3 - len(tuple(block)))
    if (grid is None) == (grid_size is None):
        raise KfdtraceError("dispatch_kernel: give grid= (workgroups) or grid_size= (work-items)")
    if grid is not None:
        g = tuple(grid) + (1,) * (3 - len(tuple(grid)))
        items = tuple(n * s for n, s in zip(g, b))
    else:
        items = tuple(grid_size) + (1,) * (3 - len(tuple(grid_size)))
        g = tuple(-(-n // s) for n, s in zip(items, b))
    priv = k.private_segment_fixed_size if private_segment_size is None else private_segment_size
    user = aql_user_sgprs(kd.kernel_code_properties, kd.compute_pgm_rsrc2, family=codeobj.family,
                          private_segment_buffer=None, dispatch_ptr=dispatch_ptr,
                          queue_ptr=queue_ptr, kernarg_ptr=kernarg_address,
                          dispatch_id=dispatch_id, flat_scratch_init=scratch_base,
                          private_segment_size=priv)
    return DispatchInfo(
        family=codeobj.family, code_address=base + k.code_vaddr, rsrc1=kd.compute_pgm_rsrc1,
        rsrc2=kd.compute_pgm_rsrc2, rsrc3=kd.compute_pgm_rsrc3,
        kernel_code_properties=kd.kernel_code_properties, grid_workgroups=g, workgroup_size=b,
        grid_size=items, user_sgprs=user, wave32=bool(kd.kernel_code_properties >> 10 & 1),
        lds_size=k.group_segment_fixed_size + dynamic_lds, scratch_size=priv,
        scratch_base=scratch_base, kernarg_address=kernarg_address, dispatch_ptr=dispatch_ptr,
        queue_ptr=queue_ptr, kernel_descriptor_address=base + k.descriptor_vaddr,
        kernel_name=kernel_name)


def dispatch_kernel(codeobj, kernel_name: str, mem, base: int, *, grid=None, block=(1, 1, 1),
                    grid_size=None, kernarg_address: int, executor=None, **kw) -> DispatchInfo:
    """Run one kernel of `codeobj` (its image already at `base` in `mem`, its kernarg segment at
    `kernarg_address`) to completion. Returns the DispatchInfo it used."""
    info = dispatch_info(codeobj, kernel_name, base, grid=grid, block=block, grid_size=grid_size,
                         kernarg_address=kernarg_address, **kw)
    (executor or default_executor()).dispatch(info, mem)
    return info


__all__ = ["aql_user_sgprs", "default_executor", "ArrayMemory", "dispatch_info",
           "dispatch_kernel", "GpuFault"]
