"""A synthetic trace of a PM4 compute workload, for tests, fuzzing and benchmarks.

It is not a recording: the records are written directly, with the shapes the recorder writes,
argument bytes built with the project's KFD ABI structs (`kfdtrace.abi.ioctl`) and ring contents
built with its PM4 builder (`kfdtrace.packets.pm4`), so that readers, the TUI and the fuzzer
exercise realistic content before (and independently of) the recording port.
"""
from __future__ import annotations

import os
import struct
import zlib

from kfdtrace.abi import ioctl as A
from kfdtrace.abi.ioctl import AllocFlags
from kfdtrace.packets import pm4
from kfdtrace.trace.writer import TraceWriter

GPU_ID = 0x1A2B

SAMPLE_HEADER = {
    "backend": "emu",
    "kfd_version": {"major": 1, "minor": 17},
    "argv": ["kfdtrace", "record", "saxpy.py"],
    "script": {"path": "saxpy.py", "sha256": "5" * 64, "args": []},
    "gpus": [{"gpu_id": GPU_ID, "node": 1, "name": "navi31", "gfx": "gfx1100", "family": "RDNA3",
              "gfx_target_version": 110000}],
    "topology": {"generation_id": 1, "nodes": [{"gpu_id": 0, "name": "cpu"},
                                               {"gpu_id": GPU_ID, "name": "navi31",
                                                "properties": {"gfx_target_version": 110000, "simd_count": 192}}]},
    "memory_capture": {"method": "driver"},
}


def _pm4(name: str, **fields) -> bytes:
    dw = pm4.build(name, "gfx1100", **fields)
    return struct.pack(f"<{len(dw)}I", *dw)


def _ioctl(w: TraceWriter, name: str, args_in, args_out, **kw) -> int:
    request = A.request_for(name)
    return w.write("ioctl", fd=3, request=request, nr=A.ioc_nr(request), name=f"AMDKFD_IOC_{name}",
                   arg_in=bytes(args_in), arg_out=bytes(args_out), ret=0, errno=0, dur_ns=2500, **kw)


def _alloc(w: TraceWriter, va: int, size: int, flags: int, idr: int) -> int:
    handle = (GPU_ID << 32) | idr
    args = A.kfd_ioctl_alloc_memory_of_gpu_args(va_addr=va, size=size, gpu_id=GPU_ID, flags=flags)
    args_in = bytes(args)
    args.handle, args.mmap_offset = handle, 0x100000 * idr
    _ioctl(w, "ALLOC_MEMORY_OF_GPU", args_in, args)
    w.write("alloc", gpu_id=GPU_ID, handle=handle, va=va, size=size,
            domain="vram" if flags & AllocFlags.VRAM else "gtt", flags=int(flags), mmap_offset=0x100000 * idr)
    return handle


def write_workload(w: TraceWriter, iterations: int = 10, *, seed: int = 1) -> None:
    """Set up a device, a PM4 compute queue, buffers and a code object, then run `iterations`
    dispatches (each: kernel arguments memwrite, submit, doorbell, signal, CPU wait; every 8th a
    clock-counter ioctl and a checksum), then tear down. About 6 records per iteration."""
    rnd = (seed * 2654435761) & 0xFFFFFFFF
    w.write("open", path="/dev/kfd", fd=3, flags=os.O_RDWR | os.O_CLOEXEC, errno=0)
    _ioctl(w, "GET_VERSION", A.kfd_ioctl_get_version_args(), A.kfd_ioctl_get_version_args(1, 17))
    w.write("open", path="/dev/dri/renderD128", fd=4, flags=os.O_RDWR | os.O_CLOEXEC, errno=0)
    vm = A.kfd_ioctl_acquire_vm_args(drm_fd=4, gpu_id=GPU_ID)
    _ioctl(w, "ACQUIRE_VM", vm, vm)
    ring_va, code_va, args_va, out_va, sig_va = (0x7F0000000000 + k * 0x100000 for k in range(5))
    gtt_rw, F_ = AllocFlags.GTT | AllocFlags.WRITABLE, AllocFlags
    ring = _alloc(w, ring_va, 0x10000, gtt_rw, 1)
    code = _alloc(w, code_va, 0x10000, F_.VRAM | F_.EXECUTABLE, 2)
    args = _alloc(w, args_va, 0x1000, gtt_rw, 3)
    out = _alloc(w, out_va, 0x100000, F_.VRAM | F_.WRITABLE, 4)
    _alloc(w, sig_va, 0x1000, gtt_rw, 5)
    w.write("mmap", addr=args_va, length=0x1000, prot=3, flags=0x11, fd=4, offset=0x300000, result=args_va,
            errno=0, target="render")
    elf = b"\x7fELF\x02\x01\x01\x40" + bytes(range(256)) * 16  # stands in for a code object's bytes
    w.write("codeobj", blob=w.blob(elf), va=code_va, size=len(elf), target="amdgcn-amd-amdhsa--gfx1100")
    doorbell = A.kfd_mmap_offset(A.KFD_MMAP_TYPE_DOORBELL, GPU_ID, 0x18)
    cq = A.kfd_ioctl_create_queue_args(ring_base_address=ring_va, write_pointer_address=sig_va + 8,
                                       read_pointer_address=sig_va + 16, ring_size=0x10000, gpu_id=GPU_ID,
                                       queue_type=0, queue_percentage=100, queue_priority=7)
    cq_in = bytes(cq)
    cq.doorbell_offset, cq.queue_id = doorbell, 1
    _ioctl(w, "CREATE_QUEUE", cq_in, cq)
    w.write("queue_create", queue_id=1, gpu_id=GPU_ID, type="compute", ring_base=ring_va, ring_size=0x10000,
            wptr_addr=sig_va + 8, rptr_addr=sig_va + 16, doorbell_offset=doorbell, engine="pm4")
    w.write("mmap", addr=0, length=0x2000, prot=3, flags=0x1, fd=3, offset=doorbell & ~0x1FFF,
            result=0x7F1000000000, errno=0, target="kfd")
    w.write("marker", label="start")
    wptr = 0
    dispatch = (_pm4("SET_SH_REG", reg="COMPUTE_USER_DATA_0", values=[args_va & 0xFFFFFFFF, args_va >> 32])
                + _pm4("DISPATCH_DIRECT", dim_x=256, dim_y=1, dim_z=1, compute_shader_en=1))
    for i in range(iterations):
        rnd = (rnd * 1103515245 + 12345) & 0xFFFFFFFF
        kernarg = struct.pack("<QQIf", out_va, out_va + 0x40000, 0x10000, (rnd & 0xFFFF) / 7.0) + bytes(40)
        w.write("memwrite", va=args_va + (i % 32) * 64, size=len(kernarg), data=w.blob(kernarg), alloc=args)
        # the kernel's fence idiom (reference §3.3): CACHE_FLUSH_AND_INV_TS_EVENT, EOP, 32-bit data
        pkts = dispatch + _pm4("RELEASE_MEM", event_type=0x14, event_index=5, data_sel=1, addr=sig_va, data=i + 1)
        before, wptr = wptr, wptr + len(pkts) // 4
        w.write("submit", queue_id=1, engine="pm4", wptr_before=before, wptr_after=wptr, dwords=pkts, ibs=[],
                doorbell=0x7F1000000018, value=wptr)
        w.write("signal", addr=sig_va, value=i + 1, queue=1)
        w.write("wait", addr=sig_va, condition="ge", value=i + 1, timeout=1_000_000_000, result="ok",
                value_seen=i + 1)
        if i % 8 == 7:
            clk = A.kfd_ioctl_get_clock_counters_args(gpu_id=GPU_ID)
            clk_in = bytes(clk)
            clk.gpu_clock_counter, clk.cpu_clock_counter, clk.system_clock_freq = 1000 * i, 2000 * i, 10**8
            _ioctl(w, "GET_CLOCK_COUNTERS", clk_in, clk)
            w.write("checksum", va=out_va, size=0x1000, algo="crc32",
                    digest=struct.pack("<I", zlib.crc32(kernarg)))
    w.write("marker", label="done")
    dq = A.kfd_ioctl_destroy_queue_args(queue_id=1)
    _ioctl(w, "DESTROY_QUEUE", dq, dq)
    w.write("queue_destroy", queue_id=1)
    for h in (out, args, code, ring):
        fr = A.kfd_ioctl_free_memory_of_gpu_args(handle=h)
        _ioctl(w, "FREE_MEMORY_OF_GPU", fr, fr)
        w.write("free", handle=h, gpu_id=GPU_ID)
    w.write("munmap", addr=args_va, length=0x1000, errno=0)
    w.write("close", fd=4, errno=0, path="/dev/dri/renderD128")
    w.write("close", fd=3, errno=0, path="/dev/kfd")


def write_sample(path, iterations: int = 10, *, seed: int = 1, **writer_options) -> None:
    """Write a complete, finalized sample trace to `path`."""
    with TraceWriter(path, dict(SAMPLE_HEADER), **writer_options) as w:
        write_workload(w, iterations, seed=seed)
