"""Contracts inside the emulated GPU, between the KFD model (kernel driver, memory, events) and the
engines (SDMA, PM4 command processor, AQL packet processor, scheduler, shader executor).

The KFD model (`kfdtrace.emu.kfd`) creates one `QueueContext` per CREATE_QUEUE and hands it to
`kfdtrace.emu.engines.make_engine(ctx)`; the scheduler (`kfdtrace.emu.engines.scheduler`) runs the
engines at packet granularity. Engines touch memory only through `ctx.mem` (GPU VA == CPU VA;
every access is checked against the live allocations) and report interrupts, faults and time
through the context.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class GpuPageFault(Exception):
    """Raised by GpuMemory when the GPU touches an address no allocation maps on this GPU."""

    def __init__(self, va: int, write: bool, size: int = 0):
        self.va = va
        self.write = write
        self.size = size
        super().__init__(f"GPU page fault: {'write' if write else 'read'} of {size} bytes at {va:#x}")


class GpuMemory(Protocol):
    """The GPU's view of the process address space (one per emulated GPU)."""

    def view(self, va: int, size: int, *, write: bool = False) -> np.ndarray:
        """A uint8 numpy view of [va, va+size) — zero copy; raises GpuPageFault."""

    def read(self, va: int, size: int) -> bytes: ...
    def write(self, va: int, data: bytes) -> None: ...
    def read_u32(self, va: int) -> int: ...
    def read_u64(self, va: int) -> int: ...
    def write_u32(self, va: int, value: int) -> None: ...
    def write_u64(self, va: int, value: int) -> None: ...


class QueueKind(enum.Enum):
    PM4 = "pm4"      # KFD_IOC_QUEUE_TYPE_COMPUTE: ring in dwords, 64-bit dword wptr/rptr
    AQL = "aql"      # KFD_IOC_QUEUE_TYPE_COMPUTE_AQL: 64-byte packets, packet-index pointers
    SDMA = "sdma"    # SDMA / SDMA_XGMI / SDMA_BY_ENG_ID: ring in bytes, byte wptr/rptr


class Step(enum.IntEnum):
    """What one engine step did."""
    RAN = 0        # executed (part of) a packet: progress was made
    IDLE = 1       # rptr == wptr: nothing to do
    BLOCKED = 2    # waiting on memory (WAIT_REG_MEM, POLL_REGMEM, AQL barrier) — no progress
    STOPPED = 3    # faulted or destroyed: will never run again


@dataclass
class DispatchInfo:
    """Everything a shader executor needs to run one dispatch (resolved by the PM4 or AQL engine)."""
    family: object                   # kfdtrace.abi.families.Family
    code_address: int                # VA of the first instruction
    rsrc1: int
    rsrc2: int
    rsrc3: int
    kernel_code_properties: int      # from the kernel descriptor (AQL) or 0 (PM4: derived from regs)
    grid_workgroups: tuple[int, int, int]
    workgroup_size: tuple[int, int, int]
    grid_size: tuple[int, int, int]  # in work-items (partial last workgroups allowed)
    user_sgprs: list[int]            # initial user SGPR values, in order
    wave32: bool
    lds_size: int                    # bytes per workgroup
    scratch_size: int = 0            # private bytes per work-item
    scratch_base: int = 0            # VA of scratch backing, 0 if none
    kernarg_address: int = 0
    dispatch_ptr: int = 0            # VA of the AQL packet, 0 for PM4
    queue_ptr: int = 0
    kernel_descriptor_address: int = 0
    kernel_name: str | None = None
    extra: dict = field(default_factory=dict)


class ShaderExecutor(Protocol):
    def dispatch(self, info: DispatchInfo, mem: GpuMemory) -> None:
        """Run every workgroup of the dispatch to completion. Raise GpuPageFault for a bad
        access and kfdtrace.errors.GpuFault for an unsupported instruction (with PC, kernel)."""


class QueueContext(Protocol):
    """What the KFD model gives an engine."""
    queue_id: int
    kind: QueueKind
    family: object          # kfdtrace.abi.families.Family
    gpu_id: int
    ring_base: int          # VA
    ring_size: int          # bytes
    wptr_addr: int          # VA of the 64-bit write pointer (units per kind)
    rptr_addr: int          # VA of the 64-bit read pointer (units per kind)
    mem: GpuMemory
    shader: ShaderExecutor

    def interrupt(self, ctxid: int) -> None:
        """An interrupt with this context id (a KFD event id): signals that event."""

    def clock(self) -> int:
        """The virtual GPU clock (ticks, 100 MHz)."""

    def fault(self, va: int, write: bool, message: str = "") -> None:
        """A GPU memory fault: stop the queue and raise a memory-exception event."""
