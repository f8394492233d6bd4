"""The project's exception types.

Every error a user can provoke with bad input derives from `KfdtraceError`, so the CLI can print
its message (which says what and where) instead of a traceback.
"""
from __future__ import annotations

import errno as _errno
import os


class KfdtraceError(Exception):
    """Base of every error kfdtrace reports to users."""


class KfdError(KfdtraceError):
    """An ioctl on /dev/kfd failed: carries the ioctl name, errno and a readable message."""

    def __init__(self, ioctl: str, errno: int, message: str = ""):
        self.ioctl = ioctl
        self.errno = errno
        name = _errno.errorcode.get(errno, str(errno))
        text = f"{ioctl} failed: {name} ({os.strerror(errno)})"
        if message:
            text += f": {message}"
        super().__init__(text)


class UnknownFamilyError(KfdtraceError):
    """A GPU family (gfx name, gfx_target_version or ELF mach) that the registry does not know."""


class TopologyError(KfdtraceError):
    """A KFD sysfs topology tree that cannot be parsed."""


class CodeObjectError(KfdtraceError):
    """An AMDGPU code object that is not valid (not ELF, wrong machine, truncated, no metadata)."""


class PacketError(KfdtraceError):
    """A packet that cannot be built (bad field value, unknown packet name)."""


class PortError(KfdtraceError):
    """A backend (port) that cannot be opened or used, e.g. no /dev/kfd on this machine."""


class GpuFault(KfdtraceError):
    """The (emulated) GPU faulted: page fault, illegal instruction, unsupported packet."""

    def __init__(self, message: str, *, queue: int | None = None, address: int | None = None):
        self.queue = queue
        self.address = address
        super().__init__(message)


class WaitTimeout(KfdtraceError):
    """A wait on the GPU timed out. The message names the queue, packet, address and value."""


class TraceError(KfdtraceError):
    """A trace file that is corrupt, truncated, or of an unsupported version.

    `offset` is the byte offset in the file where the problem was found (None if not applicable).
    """

    def __init__(self, message: str, offset: int | None = None, path: str | None = None):
        self.offset = offset
        self.path = path
        where = ""
        if path:
            where += f"{path}: "
        if offset is not None:
            where += f"at byte {offset}: "
        super().__init__(where + message)
