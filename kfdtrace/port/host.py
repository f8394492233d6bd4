"""The host port: the real /dev/kfd, render nodes and sysfs, through plain system calls.

Everything goes through libc via ctypes so that raw argument bytes reach the kernel unchanged
(the argument bytearray is passed by pointer and modified in place) and mmap accepts the
64-bit /dev/kfd offsets whose top bits are set (doorbells 0xC000…, events 0x8000…), which
Python's `mmap` module refuses. The small helpers here (`libc_mmap`, `libc_munmap`, the PROT_*
and MAP_* constants, `PAGE_SIZE`, `user_range_protection`) are reused by the emulated GPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import mmap as _mmap
import os
import platform
import threading

from kfdtrace.errors import PortError
from kfdtrace.port.base import Port

PAGE_SIZE = _mmap.PAGESIZE

# Linux generic values (x86-64 and arm64 share them)
PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0x0, 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_POPULATE, MAP_FIXED_NOREPLACE = 0x4000, 0x8000, 0x100000
MAP_FAILED = ctypes.c_void_p(-1).value

KFD_PATH = "/dev/kfd"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_mmap_fn = _libc.mmap
_mmap_fn.restype = ctypes.c_void_p
_mmap_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                     ctypes.c_int64]
_munmap_fn = _libc.munmap
_munmap_fn.restype = ctypes.c_int
_munmap_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_mprotect_fn = _libc.mprotect
_mprotect_fn.restype = ctypes.c_int
_mprotect_fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_ioctl_fn = _libc.ioctl
_ioctl_fn.restype = ctypes.c_int
_ioctl_fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]


class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_vm_readv = _libc.process_vm_readv
_vm_writev = _libc.process_vm_writev
for _f in (_vm_readv, _vm_writev):
    _f.restype = ctypes.c_ssize_t
    _f.argtypes = [ctypes.c_int, ctypes.POINTER(_iovec), ctypes.c_ulong, ctypes.POINTER(_iovec),
                   ctypes.c_ulong, ctypes.c_ulong]


def _signed64(v: int) -> int:
    """off_t is signed: /dev/kfd offsets with bit 63 set go in as negative numbers."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >> 63 else v


def _os_error(what: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{what}: {os.strerror(e)}")


def libc_mmap(addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
    """mmap(2) through libc. Returns the mapped address; raises OSError (with errno) on failure."""
    r = _mmap_fn(addr or None, length, prot, flags, fd, _signed64(offset))
    if r is None or r == MAP_FAILED:
        raise _os_error(f"mmap(addr={addr:#x}, length={length:#x}, prot={prot:#x}, "
                        f"flags={flags:#x}, fd={fd}, offset={offset & ((1 << 64) - 1):#x})")
    return r


def libc_munmap(addr: int, length: int) -> None:
    """munmap(2) through libc; raises OSError on failure."""
    if _munmap_fn(addr, length) != 0:
        raise _os_error(f"munmap(addr={addr:#x}, length={length:#x})")


def libc_mprotect(addr: int, length: int, prot: int) -> None:
    if _mprotect_fn(addr, length, prot) != 0:
        raise _os_error(f"mprotect(addr={addr:#x}, length={length:#x}, prot={prot:#x})")


def libc_ioctl(fd: int, request: int, arg: bytearray) -> int:
    """ioctl(2) with `arg` passed by pointer and modified in place; returns 0 or the errno."""
    if len(arg):
        buf = (ctypes.c_char * len(arg)).from_buffer(arg)
        r = _ioctl_fn(fd, request & 0xFFFFFFFF, ctypes.addressof(buf))
        del buf   # release the export so the caller may resize its bytearray
    else:
        r = _ioctl_fn(fd, request & 0xFFFFFFFF, None)
    return ctypes.get_errno() if r < 0 else 0


def user_range_protection(addr: int, length: int) -> str | None:
    """The protection ("rw", "r", "", …) that every page of [addr, addr+length) has in this
    process, from /proc/self/maps; None when part of the range is not mapped at all. Used to
    check USERPTR registrations the way the kernel's get_user_pages would."""
    end, pos, common = addr + max(length, 1), addr, {"r", "w"}
    with open("/proc/self/maps") as f:
        for line in f:
            rng, perms = line.split(None, 2)[:2]
            lo, hi = (int(x, 16) for x in rng.split("-"))
            if hi <= pos or lo > pos:
                continue
            common &= {c for c in perms[:2] if c != "-"}
            pos = hi
            if pos >= end:
                return "".join(sorted(common, key="rw".index))
    return None


def copy_from_user(addr: int, length: int) -> bytes | None:
    """Read `length` bytes at `addr` of this process the way the kernel's copy_from_user does:
    None (EFAULT) instead of a crash when the range is not readable. process_vm_readv on our
    own pid checks the page tables for us."""
    if length <= 0:
        return b""
    buf = ctypes.create_string_buffer(length)
    local, remote = _iovec(ctypes.addressof(buf), length), _iovec(addr, length)
    n = _vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return buf.raw if n == length else None


def copy_to_user(addr: int, data: bytes) -> bool:
    """Write `data` at `addr` of this process, or return False (EFAULT) if the range is not
    writable — copy_to_user's contract."""
    if not data:
        return True
    buf = ctypes.create_string_buffer(bytes(data), len(data))
    local, remote = _iovec(ctypes.addressof(buf), len(data)), _iovec(addr, len(data))
    n = _vm_writev(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return n == len(data)


# -- the doorbell store: a memory fence, then one 64-bit store ----------------------------------
_STORE_CODE = {
    # mfence; mov [rdi], rsi; ret
    "x86_64": bytes.fromhex("0faef0" "488937" "c3"),
    # dmb ish; str x1, [x0]; ret  (little-endian words)
    "aarch64": (0xD5033BBF).to_bytes(4, "little") + (0xF9000001).to_bytes(4, "little")
    + (0xD65F03C0).to_bytes(4, "little"),
}
_store_lock = threading.Lock()
_store_fn = None


def _fenced_store_fn():
    """A 3-instruction function (fence; 64-bit store; return) placed in an executable page.
    Python cannot emit a fence; ctypes calls are not one. Falls back to a plain ctypes store
    (ordered anyway on x86's TSO) where executable memory is refused."""
    global _store_fn
    with _store_lock:
        if _store_fn is None:
            code = _STORE_CODE.get(platform.machine().lower().replace("amd64", "x86_64")
                                   .replace("arm64", "aarch64"))
            fn = False
            if code:
                try:
                    page = libc_mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_ANONYMOUS)
                    ctypes.memmove(page, code, len(code))
                    libc_mprotect(page, PAGE_SIZE, PROT_READ | PROT_EXEC)
                    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64)(page)
                except OSError:
                    fn = False
            _store_fn = fn
        return _store_fn


def fenced_store64(addr: int, value: int) -> None:
    """Store the 64-bit `value` at `addr` after a full memory fence (the doorbell write)."""
    fn = _fenced_store_fn()
    if fn:
        fn(addr, value & 0xFFFFFFFFFFFFFFFF)
    else:
        ctypes.c_uint64.from_address(addr).value = value & 0xFFFFFFFFFFFFFFFF


# -- the port -----------------------------------------------------------------------------------
def host_kfd_available() -> bool:
    """True iff /dev/kfd exists and this process may open it."""
    try:
        fd = os.open(KFD_PATH, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _no_kfd_message(err: OSError) -> str:
    if err.errno == _errno.ENOENT:
        why = f"there is no {KFD_PATH} on this machine (no AMD GPU, or the amdgpu driver is not loaded)"
    elif err.errno in (_errno.EACCES, _errno.EPERM):
        why = (f"{KFD_PATH} exists but this user may not open it (add the user to the 'render' "
               "and 'video' groups)")
    else:
        why = f"{KFD_PATH} cannot be opened: {os.strerror(err.errno)}"
    return (f"the host KFD backend is not usable: {why}. Use the emulated GPU instead: "
            "--backend emu, or KFDTRACE_BACKEND=emu")


class HostPort(Port):
    """Real /dev/kfd, /dev/dri/renderD*, sysfs. Raises PortError when /dev/kfd cannot be opened."""

    backend = "kfd"

    def __init__(self):
        try:
            fd = os.open(KFD_PATH, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            raise PortError(_no_kfd_message(e)) from None
        os.close(fd)

    # files
    def open(self, path: str, flags: int = os.O_RDWR | os.O_CLOEXEC) -> int:
        return os.open(path, flags)

    def close(self, fd: int) -> None:
        os.close(fd)

    def read_file(self, path: str) -> bytes:
        with open(path, "rb", buffering=0) as f:
            return f.read()

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    # ioctl, memory, submission
    def ioctl(self, fd: int, request: int, arg: bytearray) -> int:
        return libc_ioctl(fd, request, arg)

    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1, offset: int = 0) -> int:
        return libc_mmap(addr, length, prot, flags, fd, offset)

    def munmap(self, addr: int, length: int) -> None:
        libc_munmap(addr, length)

    def doorbell(self, addr: int, value: int) -> None:
        fenced_store64(addr, value)

    def describe(self) -> str:
        try:
            nodes = self.listdir("/sys/devices/virtual/kfd/kfd/topology/nodes")
        except OSError:
            return "kfd (host /dev/kfd)"
        return f"kfd (host /dev/kfd, {len(nodes)} topology nodes)"


__all__ = ["HostPort", "host_kfd_available", "libc_mmap", "libc_munmap", "libc_mprotect",
           "libc_ioctl", "fenced_store64", "copy_from_user", "copy_to_user", "user_range_protection", "PAGE_SIZE", "PROT_NONE",
           "PROT_READ", "PROT_WRITE", "PROT_EXEC", "MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED",
           "MAP_ANONYMOUS", "MAP_NORESERVE", "MAP_POPULATE", "MAP_FIXED_NOREPLACE", "MAP_FAILED"]
