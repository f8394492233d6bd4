"""A realistic multi-queue trace for the TUI's tests, benchmark and README screenshot.

Not a recording: records are written directly with the shapes the recording port writes
(`kfdtrace/record/port.py`), but everything in them is real: ioctl argument bytes are the KFD ABI
structs, packets are built by `kfdtrace.packets.*.build`, the code object is one of the project's
clang-built kernels (so dispatches resolve to kernel names, arguments and disassembly), and the
signal/wait values follow the driver's timeline idioms (`kfdtrace/driver/queues.py`): an SDMA queue
uploads chunks and signals a timeline, a PM4 compute queue waits for it (WAIT_REG_MEM), runs saxpy
and signals a second timeline (RELEASE_MEM), an AQL queue dispatches `fill` and signals through a
PM4 indirect buffer, and the CPU waits. Times are explicit, so the file is deterministic.

`write_demo(path, iterations, hang=True)` ends with a compute wait that no recorded signal
satisfies, which is what a hang looks like in a trace.
"""
from __future__ import annotations

import os
import struct

from kfdtrace.abi import ioctl as A
from kfdtrace.abi.ioctl import AllocFlags as AF
from kfdtrace.codeobj import CodeObject
from kfdtrace.data import kernel_path
from kfdtrace.packets import aql, pm4, sdma
from kfdtrace.trace.writer import TraceWriter

GPU_ID = 0x5A1D
GFX = "gfx1100"
EVENT_INDEX_EOP, CACHE_FLUSH_AND_INV_TS = 5, 0x14
FUNC_GE = 5
BASE = 0x7F3A00000000

#: fixed header keys, so that the file (and the UI's screenshots) do not depend on where it is written
HEADER = {
    "backend": "emu", "kfd_version": {"major": 1, "minor": 17},
    "argv": ["kfdtrace", "record", "examples/overlap.py"], "host": "demo", "kernel": "6.8.0-demo",
    "machine": "x86_64", "created": "2025-01-01T00:00:00.000+00:00", "created_ns": 1735689600 * 10**9,
    "pid": 4242, "cwd": "/work", "python": "3.11.7", "trace_id": "d" * 32,
    "script": {"path": "examples/overlap.py", "sha256": "0" * 64, "args": []},
    "gpus": [{"gpu_id": GPU_ID, "node": 1, "name": "navi31", "gfx": GFX, "family": "RDNA3",
              "gfx_target_version": 110000}],
    "memory_capture": {"method": "driver"},
}


def _dw(words) -> bytes:
    return struct.pack(f"<{len(words)}I", *words)


class _Clock:
    """Deterministic record times: each record a few microseconds after the previous one."""

    def __init__(self, t: int = 250_000):
        self.t = t

    def __call__(self, step: int = 3_000) -> int:
        self.t += step
        return self.t


class Demo:
    """Writes the demo workload into a TraceWriter (see the module docstring)."""

    def __init__(self, w: TraceWriter):
        self.w, self.clock = w, _Clock()
        self.co = CodeObject.load(kernel_path(GFX, "O2"))
        self.fam = GFX

    # -- record helpers ---------------------------------------------------------------------------
    def rec(self, kind: str, step: int = 3_000, **fields) -> int:
        return self.w.write(kind, t=self.clock(step), tid=4242, **fields)

    def ioctl(self, name: str, args_in, args_out, step: int = 3_000, **kw) -> int:
        request = A.request_for(name)
        return self.rec("ioctl", step, fd=3, request=request, nr=A.ioc_nr(request), name=f"AMDKFD_IOC_{name}",
                        arg_in=bytes(args_in), arg_out=bytes(args_out), ret=0, errno=0, dur_ns=4_000, **kw)

    def alloc(self, idr: int, va: int, size: int, flags: int) -> int:
        handle = (GPU_ID << 32) | idr
        a = A.kfd_ioctl_alloc_memory_of_gpu_args(va_addr=va, size=size, gpu_id=GPU_ID, flags=int(flags))
        a_in = bytes(a)
        a.handle, a.mmap_offset = handle, 0x10_0000 * idr
        self.ioctl("ALLOC_MEMORY_OF_GPU", a_in, a)
        domain = "vram" if flags & AF.VRAM else "userptr" if flags & AF.USERPTR else "gtt"
        self.rec("alloc", 1_000, gpu_id=GPU_ID, handle=handle, va=va, size=size, domain=domain, flags=int(flags),
                 mmap_offset=0x10_0000 * idr)
        m = A.kfd_ioctl_map_memory_to_gpu_args(handle=handle, device_ids_array_ptr=0x7FFD_0000_1000, n_devices=1)
        m_in = bytes(m)
        m.n_success = 1
        self.ioctl("MAP_MEMORY_TO_GPU", m_in, m, payloads=[{"field": "device_ids_array_ptr", "addr": 0x7FFD_0000_1000,
                                                            "data_in": struct.pack("<I", GPU_ID), "data_out": None}])
        return handle

    def queue(self, qid: int, qtype: int, tname: str, engine: str, ring: int, ptrs: int) -> None:
        door = A.kfd_mmap_offset(A.KFD_MMAP_TYPE_DOORBELL, GPU_ID, 8 * qid)
        cq = A.kfd_ioctl_create_queue_args(ring_base_address=ring, write_pointer_address=ptrs,
                                           read_pointer_address=ptrs + 8, ring_size=0x1_0000, gpu_id=GPU_ID,
                                           queue_type=qtype, queue_percentage=100, queue_priority=7)
        c_in = bytes(cq)
        cq.doorbell_offset, cq.queue_id = door, qid
        self.ioctl("CREATE_QUEUE", c_in, cq)
        self.rec("queue_create", 1_000, queue_id=qid, gpu_id=GPU_ID, type=tname, ring_base=ring, ring_size=0x1_0000,
                 wptr_addr=ptrs, rptr_addr=ptrs + 8, doorbell_offset=door, engine=engine)

    def submit(self, qid: int, engine: str, data: bytes, unit: int, step: int = 6_000, ibs=()) -> int:
        before = self.wptr[qid]
        self.wptr[qid] = after = before + len(data) // unit
        dw = data if len(data) <= 256 else self.w.blob(data)
        return self.rec("submit", step, queue_id=qid, engine=engine, wptr_before=before, wptr_after=after, dwords=dw,
                        ibs=list(ibs), doorbell=0x7F10_0000_0000 + 8 * qid, value=after, gpu_id=GPU_ID)

    # -- the workload -----------------------------------------------------------------------------
    def run(self, iterations: int, hang: bool) -> None:
        f, rec = self.fam, self.rec
        rec("open", path="/dev/kfd", fd=3, flags=os.O_RDWR | os.O_CLOEXEC, errno=0)
        self.ioctl("GET_VERSION", A.kfd_ioctl_get_version_args(), A.kfd_ioctl_get_version_args(1, 17))
        rec("open", path="/dev/dri/renderD128", fd=4, flags=os.O_RDWR | os.O_CLOEXEC, errno=0)
        vm = A.kfd_ioctl_acquire_vm_args(drm_fd=4, gpu_id=GPU_ID)
        self.ioctl("ACQUIRE_VM", vm, vm)
        va = {name: BASE + i * 0x10_0000 for i, name in enumerate(
            ("ring_pm4", "ring_sdma", "ring_aql", "ptrs", "code", "kernarg", "signals", "ib", "x", "y", "host"))}
        gtt, vram = AF.GTT | AF.WRITABLE, AF.VRAM | AF.WRITABLE
        sizes = {"x": 0x4_0000, "y": 0x4_0000, "host": 0x8_0000, "code": 0x1_0000}
        flags = {"code": AF.VRAM | AF.EXECUTABLE, "x": vram, "y": vram, "host": gtt | AF.COHERENT,
                 "ring_aql": gtt | AF.AQL_QUEUE_MEM, "signals": gtt | AF.UNCACHED}
        self.handles = {k: self.alloc(i + 1, v, sizes.get(k, 0x1_0000), flags.get(k, gtt))
                        for i, (k, v) in enumerate(va.items())}
        self.va = va
        image = self.co.data
        rec("codeobj", blob=self.w.blob(image), va=va["code"], size=self.co.image_size,
            target="amdgcn-amd-amdhsa--gfx1100")
        ev = A.kfd_ioctl_create_event_args(event_type=0, auto_reset=1, node_id=1)
        ev_in = bytes(ev)
        ev.event_id, ev.event_slot_index, ev.event_page_offset = 7, 7, 0x8000_0000_0000
        self.ioctl("CREATE_EVENT", ev_in, ev)
        self.queue(1, 0, "compute", "pm4", va["ring_pm4"], va["ptrs"])
        self.queue(2, 1, "sdma", "sdma", va["ring_sdma"], va["ptrs"] + 0x100)
        self.queue(3, 2, "compute_aql", "aql", va["ring_aql"], va["ptrs"] + 0x200)
        self.wptr = {1: 0, 2: 0, 3: 0}
        uploaded, computed, filled = va["signals"], va["signals"] + 0x40, va["signals"] + 0x80
        mailbox = va["signals"] + 0x1000 - 64
        saxpy, fill = self.co["saxpy"], self.co["fill"]
        chunk = 0x4000
        rec("marker", label="setup done")
        for i in range(iterations):
            rec("marker", 20_000, label=f"chunk {i}")
            src = va["host"] + (i % 8) * chunk
            rec("memwrite", va=src, size=chunk, data=self.w.blob(bytes([(i * 7 + k) & 0xFF for k in range(256)]) * 64),
                alloc=self.handles["host"])
            # SDMA: (wait until compute released the buffers) copy in, signal `uploaded` (64-bit, mailbox, trap)
            s = []
            if i >= 2:
                s += sdma.build("POLL_REGMEM", f, mem_poll=1, func=FUNC_GE, addr=computed + 8, value=i - 1,
                                mask=0xFFFFFFFF, interval=10, retry_count=0xFFF)
            s += sdma.build("COPY_LINEAR", f, count=chunk, src_addr=src, dst_addr=va["x"] + (i % 2) * chunk)
            s += sdma.build("COPY_LINEAR", f, count=chunk, src_addr=src + 0x4_0000, dst_addr=va["y"] + (i % 2) * chunk)
            s += sdma.build("FENCE", f, addr=uploaded + 8, data=i + 1)
            s += sdma.build("FENCE", f, addr=uploaded + 12, data=0)
            s += sdma.build("FENCE", f, addr=mailbox, data=7)
            s += sdma.build("TRAP", f, int_context=7)
            self.submit(2, "sdma", _dw(s), 1)
            rec("signal", 500, addr=uploaded + 8, value=i + 1, queue=2, timeline=uploaded, gpu_id=GPU_ID, engine="sdma")
            # PM4: wait for the upload, dispatch saxpy, release `computed`
            karg = va["kernarg"] + (i % 16) * 0x200
            args = saxpy.pack_args(2.5, va["x"] + (i % 2) * chunk, va["y"] + (i % 2) * chunk, chunk // 4,
                                   grid=(chunk // 4 // 256, 1, 1), block=(256, 1, 1))
            rec("memwrite", va=karg, size=len(args), data=self.w.blob(args), alloc=self.handles["kernarg"])
            self.submit(1, "pm4", _dw(self.dispatch(saxpy, karg, (chunk // 4 // 256, 1, 1),
                                                    wait=(uploaded + 8, i + 1), signal=(computed + 8, i + 1),
                                                    mailbox=mailbox)), 4)
            rec("signal", 500, addr=computed + 8, value=i + 1, queue=1, timeline=computed, gpu_id=GPU_ID, engine="pm4")
            if i % 2 == 1:       # AQL: fill, then a PM4 IB that releases `filled`
                fargs = fill.pack_args(va["y"], 0xC0FFEE00 + i, 1024, grid=(4, 1, 1), block=(256, 1, 1))
                fk = va["kernarg"] + 0x4000 + (i % 8) * 0x200
                rec("memwrite", va=fk, size=len(fargs), data=self.w.blob(fargs), alloc=self.handles["kernarg"])
                kd = aql.build("KERNEL_DISPATCH", barrier=1, acquire_fence_scope=2, release_fence_scope=2,
                               dimensions=1, workgroup_size_x=256, workgroup_size_y=1, workgroup_size_z=1,
                               grid_size_x=1024, grid_size_y=1, grid_size_z=1,
                               private_segment_size=0, group_segment_size=fill.group_segment_fixed_size,
                               kernel_object=va["code"] + fill.descriptor_vaddr, kernarg_address=fk)
                ib = pm4.build("RELEASE_MEM", f, event_type=CACHE_FLUSH_AND_INV_TS, event_index=EVENT_INDEX_EOP,
                               data_sel=2, int_sel=0, dst_sel=0, addr=filled + 8, data=i + 1, int_ctxid=0)
                ib_va = va["ib"] + (i % 16) * 128
                ibp = aql.build("PM4_IB", ib_addr=ib_va, ib_size=len(ib))
                self.submit(3, "aql", kd + ibp, 64, ibs=[{"addr": ib_va, "size": 4 * len(ib),
                                                          "blob": self.w.blob(_dw(ib))}])
                rec("signal", 500, addr=filled + 8, value=i + 1, queue=3, timeline=filled, gpu_id=GPU_ID, engine="aql")
            # CPU: sleep in WAIT_EVENTS until `computed` reaches i + 1
            we = A.kfd_ioctl_wait_events_args(events_ptr=0x7FFD_0000_2000, num_events=1, wait_for_all=1, timeout=1000)
            we_in = bytes(we)
            self.ioctl("WAIT_EVENTS", we_in, we, step=40_000)
            rec("event_wait", 500, events=[7], result=0, timeout=1000, wait_all=True)
            rec("wait", 500, addr=computed + 8, condition="ge", value=i + 1, timeout=10**10, result="ok",
                value_seen=i + 1, timeline=computed)
            if i % 4 == 3:
                rec("checksum", va=va["y"], size=0x4_0000, algo="crc32", digest=struct.pack("<I", 0x1234_0000 + i))
        if hang:
            rec("marker", 20_000, label="last dispatch (never completes)")
            self.submit(1, "pm4", _dw(self.dispatch(saxpy, va["kernarg"], (16, 1, 1),
                                                    wait=(uploaded + 8, iterations + 5),
                                                    signal=(computed + 8, iterations + 1), mailbox=mailbox)), 4)
            rec("wait", 1_000_000, addr=computed + 8, condition="ge", value=iterations + 1, timeout=10**9,
                result="timeout", value_seen=iterations, timeline=computed)
        rec("marker", 20_000, label="teardown")
        for qid in (1, 2, 3):
            dq = A.kfd_ioctl_destroy_queue_args(queue_id=qid)
            self.ioctl("DESTROY_QUEUE", dq, dq)
            rec("queue_destroy", 500, queue_id=qid)
        for h in reversed(self.handles.values()):
            fr = A.kfd_ioctl_free_memory_of_gpu_args(handle=h)
            self.ioctl("FREE_MEMORY_OF_GPU", fr, fr, step=1_000)
            rec("free", 500, handle=h, gpu_id=GPU_ID)
        rec("close", fd=4, errno=0, path="/dev/dri/renderD128")
        rec("close", fd=3, errno=0, path="/dev/kfd")
        rec("end", status="finalized", exit_status=0)

    def dispatch(self, kernel, kernarg: int, grid, *, wait, signal, mailbox) -> list[int]:
        """The PM4 a compute queue emits for wait + dispatch + signal (driver/queues.py's sequence)."""
        f = self.fam
        code = self.va["code"] + kernel.code_vaddr
        kd = kernel.descriptor

        def sh(reg, *values):
            return pm4.build("SET_SH_REG", f, reg=reg, values=[v & 0xFFFFFFFF for v in values])
        p = pm4.build("WAIT_REG_MEM", f, function=FUNC_GE, mem_space=1, poll_addr=wait[0], reference=wait[1],
                      mask=0xFFFFFFFF, poll_interval=4)
        p += pm4.build("ACQUIRE_MEM", f, coher_size=0xFFFFFFFFFF, gcr_cntl=0x3C3F0)
        p += sh("COMPUTE_PGM_LO", code >> 8, code >> 40)
        p += sh("COMPUTE_PGM_RSRC1", kd.compute_pgm_rsrc1, kd.compute_pgm_rsrc2)
        p += pm4.build("SET_SH_REG", f, reg="COMPUTE_PGM_RSRC3", values=[kd.compute_pgm_rsrc3])
        p += sh("COMPUTE_TMPRING_SIZE", 0)
        p += sh("COMPUTE_START_X", 0, 0, 0)
        p += sh("COMPUTE_NUM_THREAD_X", 256, 1, 1)
        p += sh("COMPUTE_RESOURCE_LIMITS", 0)
        p += sh("COMPUTE_USER_DATA_0", *_user_data(kd, kernarg))
        p += pm4.build("DISPATCH_DIRECT", f, dim_x=grid[0], dim_y=grid[1], dim_z=grid[2],
                       dispatch_initiator=1 | 1 << 2 | (1 << 15 if kd.wave32 else 0))
        p += pm4.build("RELEASE_MEM", f, event_type=CACHE_FLUSH_AND_INV_TS, event_index=EVENT_INDEX_EOP, data_sel=2,
                       int_sel=0, dst_sel=0, addr=signal[0], data=signal[1], int_ctxid=0)
        p += pm4.build("RELEASE_MEM", f, event_type=CACHE_FLUSH_AND_INV_TS, event_index=EVENT_INDEX_EOP, data_sel=1,
                       int_sel=2, dst_sel=0, addr=mailbox, data=7, int_ctxid=7)
        return p


def _user_data(kd, kernarg: int) -> list[int]:
    """COMPUTE_USER_DATA_* values: the user SGPRs the descriptor enables (codeobj's layout), with
    the kernarg segment pointer filled in and the others zero."""
    regs = [0] * max((sgpr + count for _, sgpr, count in kd.user_sgprs()), default=0)
    for name, sgpr, count in kd.user_sgprs():
        if name == "kernarg_segment_ptr":
            regs[sgpr:sgpr + 2] = [kernarg & 0xFFFFFFFF, kernarg >> 32]
    return regs


def write_demo(path, iterations: int = 6, *, hang: bool = True, **writer_options) -> None:
    """Write the demo trace (about 20 records per iteration) to `path`, finalized."""
    w = TraceWriter(path, dict(HEADER), flush_interval=None, **writer_options)
    try:
        Demo(w).run(iterations, hang)
    finally:
        w.close()


async def _screenshot(out: str, size=(150, 44)) -> None:
    """The README screenshot: the demo trace with a PM4 dispatch selected."""
    import tempfile
    from pathlib import Path

    from tui.app import KfdtraceApp
    from tui.model import Target
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "bug.trace"
        write_demo(p, 6)
        app = KfdtraceApp(p)
        async with app.run_test(size=size) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            m = app.model
            app.jump(Target("packet", [i for i in range(m.n_packets) if m.packet(i).name == "DISPATCH_DIRECT"][1]))
            app.say("w: wait→signal  ·  /: search  ·  f: filter  ·  ?: every key")
            await pilot.pause()
            Path(out).write_text(app.export_screenshot(title="kfdtrace view bug.trace"))


if __name__ == "__main__":
    # python3 -m tui.demo bug.trace        write the demo trace
    # python3 -m tui.demo --svg docs/tui.svg   regenerate the README screenshot
    import asyncio
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--svg":
        asyncio.run(_screenshot(sys.argv[2]))
    elif len(sys.argv) == 2:
        write_demo(sys.argv[1])
    else:
        sys.exit("usage: python3 -m tui.demo TRACE | --svg OUT.svg")
