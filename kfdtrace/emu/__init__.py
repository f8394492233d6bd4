"""The emulated GPU behind the port seam: a software /dev/kfd, render nodes and KFD sysfs tree.

`EmulatedPort` is what `kfdtrace.port.open_port("emu")` returns. It takes the same raw bytes the
host kernel would and answers with the kernel's semantics (kfd.py), backs GPU memory with real
host memory shared between the CPU mappings and the engines (memory.py), runs the queues' packets
on the engines of `kfdtrace.emu.engines` under one deterministic scheduler, and publishes a
topology the shared parser reads (sysfs.py). It keeps its own log of what the "kernel" did
(`port.log`) so record/replay tests can compare a trace against the ground truth.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

from kfdtrace.abi.families import Family, get_family
from kfdtrace.emu.kfd import FD_BASE, Gpu, KfdModel
from kfdtrace.emu.sysfs import Sysfs, build_topology
from kfdtrace.errors import PortError
from kfdtrace.port.base import Port

DEFAULT_VRAM = 4 << 30


class EmulatedPort(Port):
    """A software GPU machine.

    gpu:   family name ("gfx942", any row of the registry), a Family, or a sequence of them (or
           a comma-separated string, "gfx942,gfx1100") for a machine with mixed GPUs;
    gpus:  number of GPUs (default 1, or the length of a `gpu` sequence);
    vram:  bytes of VRAM per GPU (allocations beyond it fail with ENOMEM; host memory is only
           used as it is touched);
    seed:  scheduler seed — None = round robin; an int = seeded interleaving (same seed, same
           schedule);
    machine: which "machine" this is: another number gives other gpu_ids (other PCI buses) and
           other BO handle numbers, as a replay on another real machine would see;
    strict_interrupts: interrupts follow the kernel exactly (an interrupt whose event mailbox
           slot the GPU did not write signals nothing); by default the model writes the slot.

    Descriptors the port hands out are >= 10000; ioctl/mmap on smaller (real) descriptors go to
    the OS unchanged.
    """

    backend = "emu"

    def __init__(self, gpu: str | Family | Sequence[str | Family] = "gfx942", gpus: int | None = None,
                 vram: int = DEFAULT_VRAM, seed: int | None = None, machine: int = 0, *,
                 strict_interrupts: bool = False):
        if isinstance(gpu, str) and "," in gpu:
            gpu = [g.strip() for g in gpu.split(",") if g.strip()]
        if isinstance(gpu, (str, Family)):
            fams = [get_family(gpu)] * (1 if gpus is None else gpus)
        else:
            fams = [get_family(g) for g in gpu]
            if gpus is not None and gpus != len(fams):
                raise PortError(f"gpus={gpus} but {len(fams)} GPU families were given")
        if not 1 <= len(fams) <= 64:
            raise PortError(f"the emulated machine needs 1 to 64 GPUs, not {len(fams)}")
        if vram <= 0:
            raise PortError(f"emulated VRAM size must be positive, not {vram}")
        if machine < 0:
            raise PortError(f"machine must be a non-negative number, not {machine}")
        self.families = fams
        self.vram = vram
        self.seed = seed
        self.machine = machine
        self.topology = build_topology(fams, vram, machine)
        self.sysfs = Sysfs(self.topology)
        gpu_nodes = self.topology.gpus
        self.model = KfdModel([Gpu(i, n, f, vram) for i, (n, f) in enumerate(zip(gpu_nodes, fams))],
                              seed=seed, machine=machine, strict_interrupts=strict_interrupts)
        self._closed = False

    # -- introspection ------------------------------------------------------------------------------
    @property
    def log(self) -> list[dict]:
        """What the emulated kernel did, in order (ioctls with decoded arguments and errno,
        allocations, queues, mmaps, doorbells with queue and wptr, interrupts, event signals,
        faults, teardown)."""
        return self.model.log

    @property
    def faults(self) -> list[dict]:
        """GPU faults so far (queue, gpu_id, va, write, kind, message)."""
        return self.model.faults

    @property
    def gpu_ids(self) -> list[int]:
        return [g.gpu_id for g in self.model.gpus]

    @property
    def scheduler(self):
        return self.model.scheduler

    def leaks(self) -> dict:
        """{"allocations": [...], "queues": [...], "events": [...]} the program left: of the
        last KFD process if it was torn down, else what is alive now."""
        return self.model.leaks()

    def run_gpu(self, max_steps: int | None = None) -> bool:
        """Let the emulated GPU run (until no queue can progress, or `max_steps` packets); True
        if anything executed. Doorbells and ioctls do this already; a CPU that polls memory
        without calling the port may call it."""
        return self.model.run_gpu(max_steps)

    # -- Port ---------------------------------------------------------------------------------------
    def open(self, path: str, flags: int = os.O_RDWR | os.O_CLOEXEC) -> int:
        return self.model.open(os.path.normpath(path))

    def close(self, fd: int) -> None:
        self.model.close(fd)

    def read_file(self, path: str) -> bytes:
        return self.sysfs.read_file(path)

    def listdir(self, path: str) -> list[str]:
        return self.sysfs.listdir(path)

    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        return self.model.ioctl(fd, request, arg)

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        return self.model.mmap(addr, length, prot, flags, fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        self.model.munmap(addr, length)

    def doorbell(self, addr: int, value: int) -> None:
        self.model.doorbell(addr, value)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.model.shutdown()
        self.sysfs.close()

    def describe(self) -> str:
        names = {f.name for f in self.families}
        what = (f"{len(self.families)}x {self.families[0].name}" if len(names) == 1
                else ", ".join(f.name for f in self.families))
        ids = ", ".join(f"{g:#06x}" for g in self.gpu_ids)
        return (f"emu: {what} (gpu_ids {ids}), {self.vram >> 20} MiB VRAM each, "
                f"seed {self.seed}, machine {self.machine}")


__all__ = ["EmulatedPort", "FD_BASE"]
