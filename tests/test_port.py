"""The host port and backend selection, on a machine without /dev/kfd: what can be checked with
real system calls (ioctl bytes modified in place, errno, fixed mmaps, the doorbell store)."""
from __future__ import annotations

import ctypes
import errno
import os
import termios

import pytest

from kfdtrace.errors import PortError
from kfdtrace.port import host, open_port
from kfdtrace.port.host import (
    MAP_ANONYMOUS, MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_NORESERVE, MAP_PRIVATE, MAP_SHARED, PAGE_SIZE,
    PROT_NONE, PROT_READ, PROT_WRITE, HostPort, copy_from_user, copy_to_user, host_kfd_available,
    libc_mmap, libc_munmap, user_range_protection,
)

NO_KFD = not os.path.exists("/dev/kfd")


@pytest.mark.skipif(not NO_KFD, reason="this machine has /dev/kfd")
def test_no_kfd_is_a_clear_port_error():
    assert host_kfd_available() is False
    with pytest.raises(PortError) as exc:
        HostPort()
    text = str(exc.value)
    assert "/dev/kfd" in text and "--backend emu" in text and "KFDTRACE_BACKEND=emu" in text
    with pytest.raises(PortError, match="--backend emu"):
        open_port("kfd", wrap=False)


@pytest.mark.skipif(not NO_KFD, reason="this machine has /dev/kfd")
def test_auto_backend_falls_back_to_the_emulated_gpu():
    p = open_port("auto", gpu="gfx1100", vram=16 << 20, wrap=False)
    try:
        assert p.backend == "emu" and p.families[0].name == "gfx1100"
    finally:
        p.shutdown()


def _port() -> HostPort:
    """A HostPort without the /dev/kfd check, to exercise its system calls here."""
    return HostPort.__new__(HostPort)


def test_ioctl_errno_and_in_place_arguments():
    port = _port()
    fd = port.open("/dev/null")
    try:
        assert port.ioctl(fd, 0xC0184B0C, bytearray(24)) == errno.ENOTTY   # a KFD request on /dev/null
    finally:
        port.close(fd)
    r, w = os.pipe()
    try:
        os.write(w, b"12345")
        arg = bytearray(4)
        assert port.ioctl(r, termios.FIONREAD, arg) == 0                  # the kernel writes into arg
        assert int.from_bytes(arg, "little") == 5
        assert port.ioctl(r, termios.FIOCLEX, bytearray()) == 0              # _IO: no argument
    finally:
        os.close(r)
        os.close(w)
    assert port.ioctl(987654, termios.FIONREAD, bytearray(4)) == errno.EBADF


def test_fixed_mmap_and_munmap():
    port = _port()
    base = port.mmap(0, 16 * PAGE_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    try:
        assert user_range_protection(base, 16 * PAGE_SIZE) == ""
        a = port.mmap(base + 4 * PAGE_SIZE, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED)
        assert a == base + 4 * PAGE_SIZE and user_range_protection(a, 2 * PAGE_SIZE) == "rw"
        ctypes.memmove(a, b"fixed", 5)
        assert ctypes.string_at(a, 5) == b"fixed"
        with pytest.raises(OSError) as exc:
            port.mmap(a, PAGE_SIZE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE)
        assert exc.value.errno == errno.EEXIST
        port.munmap(a, 2 * PAGE_SIZE)
        assert user_range_protection(a, PAGE_SIZE) is None
        with pytest.raises(OSError) as exc:
            port.munmap(base + 1, PAGE_SIZE)                            # unaligned
        assert exc.value.errno == errno.EINVAL
    finally:
        libc_munmap(base, 16 * PAGE_SIZE)


def test_mmap_takes_kfd_style_offsets():
    """/dev/kfd offsets have bit 63 set; they go to the kernel as a negative off_t instead of
    overflowing in Python (a shared mapping of /dev/zero accepts the offset)."""
    fd = os.open("/dev/zero", os.O_RDWR)
    try:
        a = libc_mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0xC000_0000_0000_0000)
        assert user_range_protection(a, 8192) == "rw"   # (not touched: past shmem's size -> SIGBUS)
        libc_munmap(a, 8192)
        with pytest.raises(OSError) as exc:                          # a real failure: bad fd
            libc_mmap(0, 8192, PROT_READ, MAP_SHARED, 987654, 0x8000_0000_0000_0000)
        assert exc.value.errno == errno.EBADF and "0x8000000000000000" in str(exc.value)
    finally:
        os.close(fd)


def test_doorbell_store():
    port = _port()
    page = libc_mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    try:
        port.doorbell(page + 8, 0x1122_3344_5566_7788)
        port.doorbell(page + 16, (1 << 64) + 5)                        # a 64-bit store: wraps
        assert ctypes.c_uint64.from_address(page + 8).value == 0x1122_3344_5566_7788
        assert ctypes.c_uint64.from_address(page + 16).value == 5
        assert ctypes.c_uint64.from_address(page).value == 0           # neighbours untouched
        if os.uname().machine in ("x86_64", "aarch64"):
            assert host._store_fn                                      # the fenced-store stub is in use
    finally:
        libc_munmap(page, PAGE_SIZE)


def test_user_copies_fail_like_the_kernel():
    page = libc_mmap(0, PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
    try:
        assert copy_to_user(page, b"abc") and copy_from_user(page, 3) == b"abc"
        assert copy_from_user(16, 8) is None and not copy_to_user(16, b"x")
        host.libc_mprotect(page, PAGE_SIZE, PROT_READ)
        assert not copy_to_user(page, b"x") and copy_from_user(page, 3) == b"abc"
    finally:
        libc_munmap(page, PAGE_SIZE)


def test_sysfs_reads():
    port = _port()
    assert port.read_file("/proc/self/comm").strip()
    assert "self" in port.listdir("/proc")
    with pytest.raises(FileNotFoundError):
        port.read_file("/sys/devices/virtual/kfd/kfd/topology/generation_id" if NO_KFD else "/nonexistent")
