"""The port: the one narrow seam through which everything that crosses the KFD boundary passes.

Three implementations stand behind it: the host port (real /dev/kfd, render nodes, sysfs), the
emulated port (a software GPU, `kfdtrace.emu`), and the recording port (wraps either and writes a
trace). The pure-Python driver and the replayer talk to nothing else.

Conventions every implementation follows:

* Raw argument bytes cross the port. `ioctl()` takes the full request number (as the kernel sees
  it: dir | size | 'K' | nr) and a mutable buffer of `_IOC_SIZE(request)` bytes; on return the
  buffer holds what the kernel copied out. The return value is 0 or a positive errno — the
  kernel's errno values, never exceptions, so that recording and replay see exactly what the
  caller saw.
* Pointers inside argument structs (device-id arrays, event data arrays, apertures) are addresses
  in this process; GPU virtual address == CPU virtual address (KFD lets userspace choose VAs).
* `mmap()` is the POSIX call (with MAP_FIXED support); `doorbell()` is the 64-bit store to a
  mapped doorbell address that submits a queue's packets.
"""
from __future__ import annotations

import abc
import os


class Port(abc.ABC):
    #: "kfd" for the host port, "emu" for the emulated GPU
    backend: str = "?"

    # -- files: device nodes and sysfs ---------------------------------------------------------
    @abc.abstractmethod
    def open(self, path: str, flags: int = os.O_RDWR | os.O_CLOEXEC) -> int:
        """Open a device node (/dev/kfd, /dev/dri/renderD*) and return a file descriptor.
        Raises OSError (with the errno) if it cannot be opened."""

    @abc.abstractmethod
    def close(self, fd: int) -> None:
        """Close a descriptor returned by open()."""

    @abc.abstractmethod
    def read_file(self, path: str) -> bytes:
        """Read a whole (sysfs) file. Raises FileNotFoundError/OSError like the OS would."""

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """List a (sysfs) directory."""

    # -- ioctl ------------------------------------------------------------------------------
    @abc.abstractmethod
    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        """Issue ioctl `request` on `fd` with argument bytes `arg`, modified in place.
        Returns 0 on success or a positive errno."""

    # -- memory ------------------------------------------------------------------------------
    @abc.abstractmethod
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        """mmap(2). Returns the mapped address; raises OSError on failure."""

    @abc.abstractmethod
    def munmap(self, addr: int, length: int) -> None:
        """munmap(2). Raises OSError on failure."""

    # -- submission -----------------------------------------------------------------------------
    @abc.abstractmethod
    def doorbell(self, addr: int, value: int) -> None:
        """Store the 64-bit `value` at the mapped doorbell address `addr` (submits work)."""

    # -- annotations ------------------------------------------------------------------------------
    def annotate(self, kind: str, **fields) -> None:
        """Driver-side facts that do not cross the OS boundary but a trace needs (a CPU wait and
        the value it saw, a timeline signal, a code object loaded, a user marker). The host and
        emulated ports ignore them; the recording port writes them as records."""

    # -- lifetime ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Release everything the port holds (called once, when the last user closes it)."""

    def describe(self) -> str:
        """One line for humans: which backend, which GPUs."""
        return self.backend
