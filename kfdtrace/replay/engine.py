"""The replay engine: re-executes a trace against a port (a live GPU or the emulated one).

The replayer drives the port directly (not the driver): the trace is what crossed the port. In
order, it

1. checks the target: the trace's GPU families against the target's (refuses, or warns with
   --force), before touching the GPU;
2. reserves every address range the trace mapped or allocated (PROT_NONE, MAP_FIXED_NOREPLACE), so
   each allocation lands at its recorded VA and packets replay unmodified; a range in use is an
   error naming it;
3. replays the steps: opens and closes, every ioctl with its argument bytes remapped (`remap.py`),
   mmaps at their recorded addresses, the CPU's memory writes and code objects before the
   submissions that follow them, each submission written into the replay's own ring (with its
   own flow control: it waits for the read pointer, under a watchdog) and its doorbell rung;
4. at each recorded CPU wait, waits for the same condition under a watchdog (watching the GPU's
   memory-exception events too), compares the value seen and then the recorded checksums of the
   host-visible buffers;
5. whatever happened — success, divergence, hang, error, Ctrl-C — destroys its queues and events,
   unmaps and frees its memory, closes its files and releases the reserved ranges.

Submissions are grouped into windows between the other steps and ordered by the reorder policy
(`schedule.py`); faults (`inject.py`) are applied as their points are reached.
"""
from __future__ import annotations

import bisect
import ctypes
import errno as _errno
import hashlib
import os
import random
import signal
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

from kfdtrace.abi import ioctl as abi
from kfdtrace.abi.topology import read_topology
from kfdtrace.errors import KfdtraceError
from kfdtrace.packets import aql, pm4, sdma
from kfdtrace.replay.graph import HBGraph
from kfdtrace.replay.inject import Fault, Patch, fault_write, never_wait, unmapped_address
from kfdtrace.replay.plan import (DATA_KINDS, M32, M64, Plan, QueueInfo, ReplayRefused, Step, Submission,
                                  packet_syncs)
from kfdtrace.replay.remap import Remap, RemapError
from kfdtrace.replay.report import Report
from kfdtrace.replay.schedule import Policy, order_window, segments

PAGE = 4096
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x01, 0x02, 0x10, 0x20
MAP_NORESERVE, MAP_FIXED_NOREPLACE = 0x4000, 0x100000
EVENT_MEMORY, EVENT_HW_EXCEPTION = int(abi.EventType.MEMORY), int(abi.EventType.HW_EXCEPTION)
SIGNAL_TYPES = (int(abi.EventType.SIGNAL), int(abi.EventType.DEBUG_EVENT))
KICK_MS = 2                # WAIT_EVENTS slice while waiting for the GPU
MAX_SNAPSHOT = 64 << 20    # bytes of a mismatching buffer kept to locate the difference


class _Stop(Exception):
    """The replay cannot go on (hang, GPU fault, too many errors)."""


class _Interrupted(Exception):
    pass


def errname(e: int) -> str:
    return _errno.errorcode.get(e, str(e))


@dataclass
class Options:
    policy: Policy = field(default_factory=lambda: Policy("recorded"))
    seed: int | None = None
    timeout: float = 10.0                     # watchdog for every wait, seconds
    faults: list[Fault] = field(default_factory=list)
    drop_waits: list[int] = field(default_factory=list)
    force: bool = False
    progress: bool = False
    capture: dict | None = None               # {checksum record n: None} -> filled with bytes
    max_errors: int = 20


class _Ranges:
    """CPU protection of the replay's address space, as the replay mapped it."""

    def __init__(self):
        self.items: list[tuple[int, int, int]] = []
        self.starts: list[int] = []
        self.gen = 0

    def set(self, start: int, end: int, prot: int) -> None:
        out = []
        for s, e, p in self.items:
            if e <= start or s >= end:
                out.append((s, e, p))
                continue
            if s < start:
                out.append((s, start, p))
            if e > end:
                out.append((end, e, p))
        if prot:
            out.append((start, end, prot))
        out.sort()
        self.items, self.starts = out, [s for s, _, _ in out]
        self.gen += 1

    def covers(self, addr: int, size: int, need: int) -> bool:
        pos, end = addr, addr + max(size, 1)
        i = bisect.bisect_right(self.starts, pos) - 1
        while pos < end:
            if i < 0 or i >= len(self.items):
                return False
            s, e, p = self.items[i]
            if not s <= pos < e or p & need != need:
                return False
            pos, i = e, i + 1
        return True


@dataclass
class ReplayQueue:
    info: QueueInfo
    tgt_id: int
    tgt_doorbell_offset: int
    wptr: int = 0
    doorbell: int | None = None
    spans: list = field(default_factory=list)     # (wptr before, after, submission index)
    checked: int = -1                              # _Ranges generation its memory was checked at

    @property
    def name(self) -> str:
        return self.info.name


def check_compat(plan: Plan, nodes: list, force: bool) -> tuple[dict, dict, list[str]]:
    """Pair the trace's GPUs with the target's (in topology order). Returns (gpu_id map, render
    minor map, warnings); raises ReplayRefused when they cannot be paired or (without `force`)
    are of another family."""
    if not plan.gpus:
        raise ReplayRefused(f"{plan.path}: the trace header describes no GPU (was the recording's "
                            "topology probe successful?); cannot pair it with the target's GPUs")
    if len(nodes) < len(plan.gpus):
        raise ReplayRefused(f"the trace used {len(plan.gpus)} GPU(s) ({', '.join(plan.family_names())}) "
                            f"but the target has {len(nodes)} ({', '.join(_fam(n) for n in nodes)}); "
                            "use --gpus to give the emulated target more")
    gmap, minors, warnings, bad = {}, {}, [], []
    for i, g in enumerate(plan.gpus):
        node = nodes[i]
        rec_fam = plan.families.get(g["gpu_id"])
        rec_gtv = getattr(rec_fam, "gfx_target_version", g.get("gfx_target_version"))
        if rec_gtv != node.properties.get("gfx_target_version"):
            bad.append((i, getattr(rec_fam, "name", g.get("gfx")), _fam(node), g["gpu_id"], node.gpu_id))
        gmap[g["gpu_id"]] = node.gpu_id
        if g.get("drm_render_minor") is not None:
            minors[g["drm_render_minor"]] = node.drm_render_minor
    for i, rec, tgt, rid, tid in bad:
        text = (f"GPU {i}: the trace was recorded on {rec} (gpu_id {rid:#x}) but the target GPU {i} is "
                f"{tgt} (gpu_id {tid:#x})")
        if not force:
            raise ReplayRefused(text + ": packets, register offsets and kernel code are specific to a "
                                "GPU family; replay on a " + str(rec) + " or pass --force to try anyway")
        warnings.append(text + " (--force): PM4/SDMA packet layouts, register offsets, the kernels' "
                        "machine code and queue sizes may differ; the replay may fault or diverge")
    return gmap, minors, warnings


def _fam(node) -> str:
    try:
        return node.family.name
    except Exception:
        return f"gfx_target_version {node.properties.get('gfx_target_version')}"


class Replayer:
    def __init__(self, plan: Plan, graph: HBGraph, port, opts: Options, report: Report):
        self.plan, self.graph, self.port, self.opts, self.report = plan, graph, port, opts, report
        self.reader = plan.reader
        self.cpu = _Ranges()
        self.reserved: list[tuple[int, int]] = []
        self.fds: dict[int, int] = {}             # recorded fd -> replay fd
        self.fd_kind: dict[int, str] = {}         # replay fd -> "kfd" | "render"
        self.fd_gpu: dict[int, int] = {}          # replay render fd -> target gpu_id
        self.kfd: int | None = None
        self.allocs: dict[int, dict] = {}         # replay handle -> {va, size, gpus}
        self.queues: dict[int, ReplayQueue] = {}  # QueueInfo.key -> queue
        self.orphan_queues: list[int] = []        # replay queue ids with no recorded counterpart
        self.events: dict[int, int] = {}          # replay event id -> type
        self.remap: Remap | None = None
        self.data_steps = [st for st in plan.steps if st.kind in DATA_KINDS]
        self._data_i = 0
        self.held: list[dict] = []                # delay-signal: packets waiting to be submitted
        self.cpu_wait_at = {cw.pos: cw for cw in graph.cpu_waits}
        self.sub_faults: dict[int, list[Fault]] = {}
        self.ioctl_faults: dict[tuple[str, int], Fault] = {}
        for f in opts.faults:
            if f.kind == "ioctl":
                self.ioctl_faults[(f.name, f.nth)] = f
            else:
                self.sub_faults.setdefault(f.sub, []).append(f)
        self.drop_waits = set(opts.drop_waits)
        self.rng = random.Random(opts.seed if opts.seed is not None else 0)
        self.verified: dict[int, int] = {}        # buffer va -> replayed count when it last matched
        self.snapshots: dict[int, bytes] = {}     # checksum record n -> replay bytes (mismatches)
        self._codeobjs: dict[bytes, object] = {}
        self._covered = self._covered_waits()
        self._interrupted = False
        self._closing = False
        self._errors = 0
        self._progress = None
        self._task = None
        self._t0 = time.monotonic()

    # -- running ------------------------------------------------------------------------------------
    def run(self) -> Report:
        old = None
        if threading.current_thread() is threading.main_thread():
            old = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            try:
                self._start_progress()
                self._prepare()
                self._execute()
            except _Stop:
                pass
            except (_Interrupted, KeyboardInterrupt):
                self.report.interrupted = True
            finally:
                self._closing = True
                self._stop_progress()
                self._teardown()
        finally:
            if old is not None:
                signal.signal(signal.SIGINT, old)
            self.report.elapsed = time.monotonic() - self._t0
        return self.report

    def _on_sigint(self, signum, frame) -> None:
        if self._closing:
            return                    # teardown must finish: nothing may be left behind
        if self._interrupted:
            raise KeyboardInterrupt   # a second Ctrl-C: stop right where we are
        self._interrupted = True

    def _poll(self) -> None:
        if self._interrupted and not self._closing:
            raise _Interrupted

    def _start_progress(self) -> None:
        if not self.opts.progress or not self.plan.submissions:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        self._progress = Progress(TextColumn("replaying"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("submissions"), TimeElapsedColumn(),
                                  console=Console(stderr=True), transient=True)
        self._progress.start()
        self._task = self._progress.add_task("replay", total=len(self.plan.submissions))

    def _stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def _now(self) -> float:
        return round(time.monotonic() - self._t0, 6)

    # -- findings ---------------------------------------------------------------------------------------
    def _error(self, message: str, fatal: bool = False, **where) -> None:
        self.report.add("error", message, **where)
        self._errors += 1
        if fatal or self._errors >= self.opts.max_errors:
            if not fatal:
                self.report.note(f"stopped after {self._errors} errors")
            raise _Stop

    # -- preparation: target check, id maps, address reservations ---------------------------------------
    def _prepare(self) -> None:
        try:
            nodes = read_topology(reader=self.port).gpus
        except KfdtraceError as e:
            raise ReplayRefused(f"cannot read the target's KFD topology: {e}") from None
        gmap, minors, warnings = check_compat(self.plan, nodes, self.opts.force)
        for w in warnings:
            self.report.note(w)
        self.remap = Remap(gmap, minors)
        self.report.info["gpu_map"] = {hex(k): hex(v) for k, v in gmap.items()}
        self._reserve()

    def _reserve(self) -> None:
        spans = []
        for st in self.plan.steps:
            f = st.fields
            if st.kind == "mmap" and not f.get("errno") and isinstance(f.get("result"), int) and f["result"] > 0:
                spans.append((f["result"], f["result"] + f["length"]))
        spans += [(a.va, a.end) for a in self.plan.allocs if a.va]
        merged: list[list[int]] = []
        for s, e in sorted((s & ~(PAGE - 1), (e + PAGE - 1) & ~(PAGE - 1)) for s, e in spans):
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        for s, e in merged:
            try:
                r = self.port.mmap(s, e - s, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
                                   MAP_FIXED_NOREPLACE)
            except OSError as ex:
                raise ReplayRefused(f"cannot reserve [{s:#x}, {e:#x}) for the trace's memory at its recorded "
                                    f"addresses: {os.strerror(ex.errno or 0)} — the range is already in use in "
                                    "this process (nothing was submitted)") from None
            if r != s:
                self.port.munmap(r, e - s)
                raise ReplayRefused(f"cannot reserve [{s:#x}, {e:#x}) for the trace's memory: the range is "
                                    "already in use in this process (nothing was submitted)")
            self.reserved.append((s, e))
        self.report.info["reserved"] = [[hex(s), hex(e)] for s, e in self.reserved]

    # -- the main loop -------------------------------------------------------------------------------------
    def _execute(self) -> None:
        pol = self.opts.policy
        for kind, x in segments(self.plan):
            self._poll()
            if kind == "window":
                for sub in order_window(x.subs, self.graph, pol, self.rng):
                    self._submit(sub)
                self._apply_data(x.end)
                continue
            self._flush_held()
            self._apply_data(x.pos)
            handler = getattr(self, "_st_" + x.kind, None)
            if handler is not None:
                handler(x)
        self._flush_held()
        self._apply_data(len(self.plan.steps))

    # -- CPU memory ------------------------------------------------------------------------------------
    def _read(self, addr: int, size: int) -> bytes | None:
        if size < 0 or not self.cpu.covers(addr, size, PROT_READ):
            return None
        return ctypes.string_at(addr, size)

    def _read_int(self, addr: int, width: int) -> int | None:
        b = self._read(addr, width)
        return None if b is None else int.from_bytes(b, "little")

    def _write(self, addr: int, data, what: str, st: Step | None = None) -> bool:
        if not self.cpu.covers(addr, len(data), PROT_WRITE):
            a = self.plan.alloc_at(addr, 1)
            self._error(f"{what}: [{addr:#x}, +{len(data):#x}) is not mapped writable in the replay"
                        + (f" (it belongs to {a.describe()})" if a else ""),
                        record=st.n if st else None, t=st.t if st else None)
            return False
        ctypes.memmove(addr, bytes(data), len(data))
        return True

    def _apply_data(self, upto: int) -> None:
        """Apply the CPU memory writes and code objects recorded before step position `upto`."""
        steps = self.data_steps
        while self._data_i < len(steps) and steps[self._data_i].pos < upto:
            st = steps[self._data_i]
            self._data_i += 1
            f = st.fields
            if st.kind == "memwrite":
                self._write(f["va"], self.reader.resolve(f["data"]), f"memwrite (record {st.n})", st)
            elif st.kind == "memwrite_runs":        # every run, exactly as recorded
                for va, data in self.reader.memory_writes(st):
                    self._write(va, data, f"memwrite_runs (record {st.n})", st)
            else:
                self._codeobj(st)

    def _codeobj(self, st: Step) -> None:
        from kfdtrace.codeobj import CodeObject
        f = st.fields
        key = bytes(f["blob"])
        try:
            co = self._codeobjs.get(key)
            if co is None:
                co = self._codeobjs[key] = CodeObject.from_bytes(self.reader.resolve(f["blob"]),
                                                                 source=f"record {st.n}")
            image = co.image(f["va"])
        except KfdtraceError as e:
            self.report.note(f"code object of record {st.n} not restored from its blob ({e}); "
                             "the memory writes recorded with it are used")
            return
        if self.cpu.covers(f["va"], len(image), PROT_WRITE):
            ctypes.memmove(f["va"], image, len(image))

    # -- steps kept in trace order ----------------------------------------------------------------------
    def _st_open(self, st: Step) -> None:
        f = st.fields
        if f.get("fd", -1) < 0:
            return
        path = os.path.normpath(str(f["path"]))
        gpu = None
        if path.startswith("/dev/dri/renderD"):
            rec_minor = int(path[len("/dev/dri/renderD"):])
            minor = self.remap.render_minor.get(rec_minor, rec_minor)
            path = f"/dev/dri/renderD{minor}"
            gpu = next((t for r, t in self.remap.gpu.items()
                        if any(g.get("drm_render_minor") == rec_minor and g["gpu_id"] == r for g in self.plan.gpus)),
                       None)
        try:
            fd = self.port.open(path)
        except OSError as e:
            self._error(f"open {path} (record {st.n}) failed: {e}", fatal=path == "/dev/kfd", record=st.n, t=st.t)
            return
        self.fds[f["fd"]] = fd
        if path == "/dev/kfd":
            self.fd_kind[fd] = "kfd"
            self.kfd = fd if self.kfd is None else self.kfd
        else:
            self.fd_kind[fd] = "render"
            if gpu is not None:
                self.fd_gpu[fd] = gpu
        self.remap.fd[f["fd"]] = fd

    def _st_close(self, st: Step) -> None:
        fd = self.fds.pop(st.fields.get("fd"), None)
        if fd is None or st.fields.get("errno"):
            return
        if self.fd_kind.get(fd) == "kfd":
            self._release_resources()
            self.kfd = None if self.kfd == fd else self.kfd
        try:
            self.port.close(fd)
        except OSError as e:
            self._error(f"close (record {st.n}) failed: {e}", record=st.n)
        self.fd_kind.pop(fd, None)

    def _st_mmap(self, st: Step) -> None:
        f = st.fields
        if f.get("errno") or not isinstance(f.get("result"), int) or f["result"] <= 0:
            return
        addr, length, prot = f["result"], f["length"], f["prot"]
        flags = (f["flags"] & ~MAP_FIXED_NOREPLACE) | MAP_FIXED
        target, fd, off = f.get("target"), -1, 0
        what = f"mmap (record {st.n})"
        try:
            if target == "kfd":
                fd, off = self.fds[f["fd"]], self.remap.kfd_offset(f["offset"], what)
            elif target == "render":
                fd = self.fds[f["fd"]]
                off = self.remap.render_offset(self.fd_gpu.get(fd), f["offset"], what)
            elif target not in ("anon", None) and not flags & MAP_ANONYMOUS:
                self.report.note(f"{what}: mapping of a {target!r} descriptor is not replayed")
                return
        except KeyError:
            self._error(f"{what}: descriptor {f['fd']} was not opened in the replay", record=st.n, t=st.t)
            return
        except RemapError as e:
            self._error(str(e), record=st.n, t=st.t)
            return
        try:
            r = self.port.mmap(addr, length, prot, flags, fd, off)
        except OSError as e:
            self._error(f"{what} of {length:#x} bytes at {addr:#x} failed in the replay: {e}", record=st.n, t=st.t)
            self.cpu.set(addr, addr + length, 0)
            return
        self.cpu.set(r, r + length, prot & (PROT_READ | PROT_WRITE))

    def _st_munmap(self, st: Step) -> None:
        f = st.fields
        if f.get("errno"):
            return
        self._unmap_cpu(f["addr"], f["length"])

    def _unmap_cpu(self, addr: int, length: int) -> None:
        """Give a range back, keeping it reserved (PROT_NONE) while the replay runs."""
        try:
            self.port.mmap(addr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED)
        except OSError as e:
            self.report.note(f"re-reserving [{addr:#x}, +{length:#x}) failed: {e}")
        self.cpu.set(addr, addr + length, 0)

    # -- ioctls -------------------------------------------------------------------------------------------
    def _st_ioctl(self, st: Step) -> None:
        f = st.fields
        name = str(f.get("name", "")).removeprefix("AMDKFD_IOC_")
        d = abi.IOCTLS_BY_NAME.get(name)
        what = f"record {st.n} ({name})"
        if d is None:
            self.report.note(f"ioctls kfdtrace cannot decode (e.g. record {st.n}, request "
                             f"{f.get('request', 0):#x}) are not replayed")
            return
        fd = self.fds.get(f.get("fd"))
        if fd is None:
            self._error(f"{what}: descriptor {f.get('fd')} was not opened in the replay", record=st.n, t=st.t)
            return
        request, rec_err = f["request"], f.get("errno", 0)
        fault = self.ioctl_faults.get((name, f.get("_seq")))
        if fault is not None:
            fault.applied = {"record": st.n, "t": st.t, "seq": self.report.seq(), "replay_s": self._now(),
                             "ioctl": name, "call": f.get("_seq")}
            self._failed(name, request, f, f"its AMDKFD_IOC_{name} (record {st.n}) failed: injected "
                                            f"{errname(fault.errno)}")
            return
        if name == "WAIT_EVENTS":
            self._wait_events(st, fd)
            return
        try:
            arg, keep = self.remap.patch(name, request, f["arg_in"], f.get("payloads"), self._resolve, what)
        except RemapError as e:
            self._error(str(e), record=st.n, t=st.t)
            self._failed(name, request, f, f"{what} was not issued: {e}")
            return
        except KfdtraceError as e:
            self._error(f"{what}: cannot rebuild the arguments: {e}", record=st.n, t=st.t)
            return
        err = self.port.ioctl(fd, request, arg)
        if err != rec_err:
            if rec_err == 0:
                self._error(f"{what} failed in the replay with {errname(err)} ({os.strerror(err)}); it "
                            "succeeded when recorded", record=st.n, t=st.t)
                self._failed(name, request, f, f"its {name} (record {st.n}) failed in the replay with {errname(err)}")
            elif err == 0:
                self.report.add("divergence", f"{what} succeeded in the replay; it failed with "
                                f"{errname(rec_err)} when recorded", record=st.n, t=st.t)
            else:
                self.report.add("divergence", f"{what} failed with {errname(err)} in the replay, "
                                f"{errname(rec_err)} when recorded", record=st.n, t=st.t)
        if err == 0:
            if rec_err == 0:
                self.remap.learn(name, request, f["arg_out"], bytes(arg))
            self._track(name, request, bytes(arg), keep, st)

    def _resolve(self, v):
        return None if v is None else self.reader.resolve(v)

    def _failed(self, name: str, request: int, f: dict, why: str) -> None:
        """A call that created something failed: say why later uses of its id cannot be remapped."""
        try:
            out = abi.parse_args(request, f["arg_out"])
        except KfdtraceError:
            return
        if name == "ALLOC_MEMORY_OF_GPU":
            self.remap.missing("handle", out.handle, why)
        elif name == "CREATE_QUEUE":
            self.remap.missing("queue id", out.queue_id, why)
            self.remap.missing("doorbell offset", out.doorbell_offset, why)
        elif name == "CREATE_EVENT":
            self.remap.missing("event id", out.event_id, why)

    def _track(self, name: str, request: int, out: bytes, keep, st: Step) -> None:
        """Keep the replay's live resources (its own ids) for teardown."""
        a = abi.parse_args(request, out)
        if name == "ALLOC_MEMORY_OF_GPU":
            self.allocs[a.handle] = {"va": a.va_addr, "size": a.size, "gpus": set(), "flags": a.flags}
        elif name in ("MAP_MEMORY_TO_GPU", "UNMAP_MEMORY_FROM_GPU") and a.handle in self.allocs:
            ids = []
            for _, buf in keep:
                raw = bytes(buf)
                ids = list(struct.unpack(f"<{len(raw) // 4}I", raw[:len(raw) // 4 * 4]))
            gpus = self.allocs[a.handle]["gpus"]
            for g in ids[:a.n_success]:
                (gpus.add if name == "MAP_MEMORY_TO_GPU" else gpus.discard)(g)
        elif name == "FREE_MEMORY_OF_GPU":
            self.allocs.pop(a.handle, None)
        elif name == "CREATE_QUEUE":
            info = next((q for q in self.plan.queues if q.key == st.n), None)
            if info is None:          # failed when recorded, created here: only to be destroyed
                self.orphan_queues.append(a.queue_id)
            else:
                self.queues[info.key] = ReplayQueue(info, a.queue_id, a.doorbell_offset)
                self._init_aql_ring(self.queues[info.key])
        elif name == "DESTROY_QUEUE":
            for k, q in list(self.queues.items()):
                if q.tgt_id == a.queue_id:
                    del self.queues[k]
            if a.queue_id in self.orphan_queues:
                self.orphan_queues.remove(a.queue_id)
        elif name == "CREATE_EVENT":
            self.events[a.event_id] = int(a.event_type)
        elif name == "DESTROY_EVENT":
            self.events.pop(a.event_id, None)

    def _init_aql_ring(self, rq: ReplayQueue) -> None:
        """AQL slots start INVALID (the HSA queue protocol; the recorder never stores ring memory)."""
        q = rq.info
        if q.engine != "aql" or not self.cpu.covers(q.ring_base, q.ring_size, PROT_WRITE):
            return
        for off in range(0, q.ring_size, 64):
            struct.pack_into("<H", (ctypes.c_char * 2).from_address(q.ring_base + off), 0, 1)

    def _covered_waits(self) -> set[int]:
        """Positions of WAIT_EVENTS calls followed by a recorded CPU wait (before any other call or
        submission): the CPU wait is what is replayed for them."""
        out, steps = set(), self.plan.steps
        for i, st in enumerate(steps):
            if st.kind != "ioctl" or not str(st.fields.get("name", "")).endswith("WAIT_EVENTS"):
                continue
            for nxt in steps[i + 1:]:
                if nxt.kind == "wait":
                    out.add(st.pos)
                    break
                if nxt.kind == "submit" or (nxt.kind == "ioctl" and not str(nxt.fields.get("name", "")).endswith("WAIT_EVENTS")):
                    break
        return out

    def _wait_events(self, st: Step, fd: int) -> None:
        """A recorded WAIT_EVENTS: when a CPU wait record follows, that is replayed instead; a call
        that timed out when recorded is not repeated. One that completed is waited for again until
        it completes — or until no queue can signal anything any more (all idle, or stuck on waits
        that nothing pending can satisfy): an auto-reset event signalled twice before the first
        wait completes only one wait, so the GPU work it stood for is then already done."""
        f = st.fields
        try:
            rec = abi.parse_args(f["request"], f["arg_out"])
        except KfdtraceError:
            return
        if st.pos in self._covered or f.get("errno") or rec.wait_result != abi.WaitResult.COMPLETE:
            return
        what = f"record {st.n} (WAIT_EVENTS)"
        deadline = time.monotonic() + self.opts.timeout
        quiet = 0
        last = None
        while True:
            try:
                arg, keep = self.remap.patch("WAIT_EVENTS", f["request"], f["arg_in"], f.get("payloads"),
                                             self._resolve, what)
            except RemapError as e:
                self._error(str(e), record=st.n, t=st.t)
                return
            a = abi.parse_args(f["request"], arg)
            a.timeout = 10
            arg = bytearray(abi.pack_args(f["request"], a, bytes(arg)))
            err = self.port.ioctl(fd, f["request"], arg)
            if err == 0 and abi.parse_args(f["request"], arg).wait_result == abi.WaitResult.COMPLETE:
                return
            if err:
                self._error(f"{what} failed in the replay with {errname(err)}", record=st.n, t=st.t)
                return
            self._check_faults()
            self._poll()
            state = self._progress_state()
            quiet = quiet + 1 if state is not None and state == last else 0
            last = state
            if quiet >= 3:
                self.report.note(f"WAIT_EVENTS calls that completed when recorded were not repeated once no "
                                 f"queue could signal their events any more (first: record {st.n})")
                return
            if time.monotonic() > deadline:
                ids = [struct.unpack_from("<I", bytes(b), o + 40)[0] for _, b in keep
                       for o in range(0, len(b) - 47, 48)]
                self._hang(f"the CPU's WAIT_EVENTS at record {st.n} on events {ids} did not complete within "
                           f"{self.opts.timeout:g} s (it completed when recorded)", st)

    def _progress_state(self) -> tuple | None:
        """The queues' read pointers if none of them can make progress (each idle, or stopped at a
        wait whose condition is false), else None."""
        state = []
        for rq in self.queues.values():
            done = self._completed(rq)
            if done < rq.wptr:
                try:
                    _, waits = self._packet_at(rq, done)
                except Exception:
                    return None
                if not waits:
                    return None
            state.append((rq.info.key, done))
        return tuple(state)

    # -- submissions ----------------------------------------------------------------------------------------
    def _rq(self, sub: Submission) -> ReplayQueue | None:
        rq = self.queues.get(sub.queue.key)
        if rq is None:
            why = self.remap.why_missing.get(("queue id", sub.queue.queue_id), "")
            self._error(f"{sub.label()}: its queue does not exist in the replay "
                        f"(CREATE_QUEUE at record {sub.queue.key} " + (why.removeprefix("its ") if why else
                                                                       "failed or was not replayed") + ")",
                        record=sub.n, t=sub.t, submission=sub.index, queue=sub.queue.queue_id)
            return None
        if rq.checked != self.cpu.gen:
            q = rq.info
            for addr, size, what in ((q.ring_base, q.ring_size, "ring"), (q.wptr_addr, 8, "write pointer"),
                                     (q.rptr_addr, 8, "read pointer")):
                if not self.cpu.covers(addr, size, PROT_READ | PROT_WRITE):
                    self._error(f"{sub.label()}: the queue's {what} at {addr:#x} is not CPU-mapped in the replay",
                                record=sub.n, submission=sub.index, queue=q.queue_id)
                    return None
            rq.checked = self.cpu.gen
        if rq.doorbell is None:
            if sub.doorbell is None:
                self._error(f"{sub.label()}: the trace does not say which doorbell was rung", record=sub.n)
                return None
            try:
                rq.doorbell = self.remap.doorbell(sub.doorbell, sub.queue.doorbell_offset, sub.label())
            except RemapError as e:
                self._error(str(e), record=sub.n)
                return None
        return rq

    def _submit(self, sub: Submission) -> None:
        self._poll()
        self._apply_data(sub.pos)
        rq = self._rq(sub)
        if rq is None:
            return
        faults = self.sub_faults.get(sub.index)
        if faults or sub.ibs or sub.index in self.drop_waits or not self.remap.events_identity:
            patch = Patch(sub)
            try:
                self._patch(sub, rq, patch)
            except KfdtraceError as e:
                self._error(str(e), record=sub.n, submission=sub.index)
            for (addr, size, blob), buf in zip(sub.ibs, patch.ibs):
                if buf is not None:
                    self._write(addr, buf, f"{sub.label()}: indirect buffer", None)
            for fault in faults or ():
                if fault.kind == "memflip":
                    self._memflip(fault, sub)
            if not self.remap.events_identity and sub.engine == "aql":
                self._patch_signal_memory(sub)
            data, held = patch.units(), patch.held
        else:
            data, held = sub.data, b""
        self._ring(rq, data, sub.index, sub)
        self.report.order.append(sub.index)
        self.report.replayed += 1
        if held:
            fault = next(f for f in self.sub_faults[sub.index] if f.kind == "delay-signal")
            self.held.append({"rq": rq, "data": held, "left": fault.count, "fault": fault, "sub": sub})
        if self.opts.policy.name == "serialize" and sub.index not in self.graph.forward:
            self._wait_idle(rq, sub)
        if self._progress is not None:
            self._progress.advance(self._task)
        for h in list(self.held) if self.held else ():
            if h["sub"] is not sub:
                h["left"] -= 1
                if h["left"] <= 0:
                    self._release_held(h)

    def _release_held(self, h: dict) -> None:
        self.held.remove(h)
        h["fault"].applied["released_after"] = self.report.order[-1] if self.report.order else None
        self._ring(h["rq"], h["data"], None, h["sub"])

    def _flush_held(self) -> None:
        for h in list(self.held):
            self._release_held(h)

    def _patch(self, sub: Submission, rq: ReplayQueue, patch: Patch) -> None:
        """Event ids, dropped waits and injected faults, applied to the bytes about to be written."""
        if not self.remap.events_identity:
            self._patch_events(sub, patch)
        if sub.index in self.drop_waits:
            waits = sub.waits
            if not waits:
                self.report.note(f"--unsafe-drop-wait {sub.index}: {sub.label()} has no wait packet")
            done = set()
            for op in waits:
                if op.index not in done:
                    done.add(op.index)
                    patch.nop(op)
            self.report.info.setdefault("dropped_waits", []).append(
                {"submission": sub.index, "record": sub.n, "waits": [w.describe() for w in waits]})
        for fault in self.sub_faults.get(sub.index, ()):
            if fault.kind == "memflip":
                continue
            fault.applied = {"record": sub.n, "submission": sub.index, "queue": sub.queue.queue_id,
                             "t": sub.t, "seq": self.report.seq(), "replay_s": self._now()}
            if fault.kind == "flip":
                patch.flip(fault.dword, fault.bit)
            elif fault.kind in ("drop-signal", "delay-signal"):
                self._take_signals(sub, patch, fault)
            elif fault.kind == "hang":
                patch.prefix = never_wait(sub.engine, sub.queue) + patch.prefix
            elif fault.kind == "pagefault":
                addr = fault.addr if fault.addr is not None else unmapped_address(self.plan)
                fault.applied["address"] = addr
                patch.prefix = fault_write(sub.engine, sub.queue, addr) + patch.prefix

    def _take_signals(self, sub: Submission, patch: Patch, fault: Fault) -> None:
        ops = [op for op in sub.syncs if op.kind in ("signal", "interrupt")]
        if not ops:
            fault.detail = f"{sub.label()} signals nothing"
            return
        held, done = b"", set()
        for op in ops:
            key = (op.ib, op.dw)
            if key in done:
                continue
            done.add(key)
            if sub.engine == "aql" and op.ib is not None:
                # signals inside an AQL PM4 IB: move the whole AQL packet that calls the IB
                dw = sub.packets[sub.packets[op.index].parent].offset // 4
                if (None, dw) in done:
                    continue
                done.add((None, dw))
                held += bytes(patch.ring[dw * 4:dw * 4 + 64])
                patch.ring[dw * 4:dw * 4 + 64] = aql.build("BARRIER_AND")
            else:
                held += patch.drop_signal(op)
        fault.applied["packets"] = [op.describe() for op in ops]
        if fault.kind == "delay-signal":
            patch.held = held

    def _patch_events(self, sub: Submission, patch: Patch) -> None:
        """The target handed out other event ids/slots: patch the packets that carry them (TRAP
        int_context, RELEASE_MEM int_ctxid, the mailbox writes of FENCE/RELEASE_MEM)."""
        ev, slot = self.remap.event, self.remap.slot
        for op in sub.syncs:
            p = sub.packets[op.index]
            if op.kind == "interrupt" and ev.get(op.value, op.value) != op.value:
                key = "int_context" if p.name in ("TRAP", "DUMMY_TRAP") else "int_ctxid"
                patch.rebuild(op, **{key: ev[op.value]})
            elif op.kind == "signal" and op.func == "write":
                info = self.plan.mailbox(op.addr)
                if info is None or p.name not in ("FENCE", "RELEASE_MEM"):
                    continue
                base = self.plan.event_pages[info.page_handle]
                new_addr = base + slot.get(info.slot, info.slot) * 8
                new_data = ev.get(op.value, op.value) if op.value == info.event_id else op.value
                if (new_addr, new_data) != (op.addr, op.value):
                    patch.rebuild(op, addr=new_addr, data=new_data)

    def _patch_signal_memory(self, sub: Submission) -> None:
        """AQL completion signals carry the event id and mailbox in amd_signal_t (@24, @16)."""
        for op in sub.signals:
            if op.func != "dec":
                continue
            base = op.addr - 8
            eid = self._read_int(base + 24, 4)
            if eid is None or eid not in self.remap.event:
                continue
            info = self.plan.events.get(eid)
            new = self.remap.event[eid]
            self._write(base + 24, struct.pack("<I", new), f"{sub.label()}: completion signal event id")
            if info is not None and info.page_handle in self.plan.event_pages:
                page = self.plan.event_pages[info.page_handle]
                self._write(base + 16, struct.pack("<Q", page + self.remap.slot.get(info.slot, info.slot) * 8),
                            f"{sub.label()}: completion signal mailbox")

    def _memflip(self, fault: Fault, sub: Submission) -> None:
        fault.applied = {"record": sub.n, "submission": sub.index, "queue": sub.queue.queue_id, "t": sub.t,
                         "seq": self.report.seq(), "replay_s": self._now(), "address": fault.addr}
        b = self._read(fault.addr, 1)
        if b is None or not self._write(fault.addr, bytes([b[0] ^ (1 << fault.bit)]), f"--inject {fault.spec}"):
            fault.detail = f"{fault.addr:#x} is not CPU-mapped in the replay"
            return
        a = self.plan.alloc_at(fault.addr, 1, sub.n)
        fault.applied["allocation"] = a.describe() if a else None

    # -- rings -------------------------------------------------------------------------------------------
    def _queue_memory(self, rq: ReplayQueue, addr: int, size: int, what: str, need: int = PROT_READ) -> None:
        """A queue's ring or pointer must be CPU-mapped before the replay touches it: a trace that
        freed or unmapped it (a damaged or hand-made one) must not crash the process."""
        if not self.cpu.covers(addr, size, need):
            raise KfdtraceError(f"{rq.info.name}: its {what} [{addr:#x}, +{size:#x}) is not mapped "
                                f"{'writable ' if need & PROT_WRITE else ''}in the replay")

    def _rptr(self, rq: ReplayQueue) -> int:
        self._queue_memory(rq, rq.info.rptr_addr, 8, "read pointer")
        return int.from_bytes(ctypes.string_at(rq.info.rptr_addr, 8), "little")

    def _completed(self, rq: ReplayQueue) -> int:
        """Units the engine has consumed (monotonic), from a monotonic or a wrapping read pointer."""
        r, w, cap = self._rptr(rq), rq.wptr, rq.info.cap
        if w - cap <= r <= w:
            return r
        return w - ((w % cap - r % cap) % cap)

    def _ring(self, rq: ReplayQueue, data: bytes, index: int | None, sub: Submission) -> None:
        q = rq.info
        n = len(data) // q.unit
        if n * q.unit != len(data) or n > q.cap:
            self._error(f"{sub.label()}: {len(data)} bytes do not fit {q.name}'s {q.ring_size}-byte ring "
                        f"in {q.unit}-byte units", record=sub.n, submission=sub.index)
            return
        wb, wa = rq.wptr, rq.wptr + n
        try:
            self._queue_memory(rq, q.ring_base, q.ring_size, "ring", PROT_READ | PROT_WRITE)
            self._queue_memory(rq, q.wptr_addr, 8, "write pointer", PROT_READ | PROT_WRITE)
            self._queue_memory(rq, q.rptr_addr, 8, "read pointer")
            self._queue_memory(rq, rq.doorbell, 8, "doorbell", PROT_WRITE)
        except KfdtraceError as e:
            self._error(f"{sub.label()}: {e}", fatal=True, record=sub.n, submission=sub.index,
                        queue=q.queue_id)
        if self._completed(rq) < wa - q.cap:
            self._wait_until(lambda: self._completed(rq) >= wa - q.cap,
                             f"ring space on {q.name} for {sub.label()}", sub)
        pos = (wb * q.unit) % q.ring_size
        first = min(len(data), q.ring_size - pos)
        ctypes.memmove(q.ring_base + pos, data, first)
        if first < len(data):
            ctypes.memmove(q.ring_base, data[first:], len(data) - first)
        ctypes.c_uint64.from_address(q.wptr_addr).value = wa
        rq.wptr = wa
        rq.spans.append((wb, wa, sub.index if index is None else index))
        self.port.doorbell(rq.doorbell, wa)

    def _wait_idle(self, rq: ReplayQueue, sub: Submission) -> None:
        self._wait_until(lambda: self._completed(rq) >= rq.wptr, f"{sub.label()} to finish (serialize)", sub)

    def _wait_until(self, cond, what: str, sub: Submission | None, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (self.opts.timeout if timeout is None else timeout)
        while not cond():
            self._kick()
            self._poll()
            if time.monotonic() > deadline and not cond():
                self._hang(f"waited {self.opts.timeout:g} s for {what}", None, sub)

    def _kick(self) -> None:
        """Let the GPU run a little: WAIT_EVENTS on the live events (which also reveals GPU faults),
        or, with none, a cheap ioctl and a short sleep."""
        if self.kfd is None:
            time.sleep(KICK_MS / 1000)
            return
        ids = list(self.events)
        if not ids:
            self.port.ioctl(self.kfd, abi.AMDKFD_IOC_GET_VERSION, bytearray(8))
            time.sleep(KICK_MS / 1000)
            return
        self._check_faults(KICK_MS)

    def _check_faults(self, timeout_ms: int = 0) -> None:
        """WAIT_EVENTS on every live event; a memory-exception or HW-exception event that fired
        means the GPU faulted: that ends the replay with an error naming the address."""
        if self.kfd is None or not self.events:
            return
        ids = list(self.events)
        data = (abi.kfd_event_data * len(ids))()
        for i, e in enumerate(ids):
            data[i].event_id = e
        args = abi.kfd_ioctl_wait_events_args(events_ptr=ctypes.addressof(data), num_events=len(ids),
                                              wait_for_all=0, timeout=timeout_ms)
        buf = bytearray(bytes(args))
        if self.port.ioctl(self.kfd, abi.AMDKFD_IOC_WAIT_EVENTS, buf):
            return
        for i, e in enumerate(ids):
            t = self.events[e]
            m = data[i].memory_exception_data
            if t == EVENT_MEMORY and (m.va or m.failure.NotPresent or m.failure.ReadOnly or m.failure.NoExecute):
                kinds = [k for k in ("NotPresent", "ReadOnly", "NoExecute") if getattr(m.failure, k)]
                self._gpu_fault(f"GPU memory fault at address {m.va:#x} on gpu_id {m.gpu_id:#x} "
                                f"({', '.join(kinds) or 'fault'}), reported by memory-exception event {e}")
            if t == EVENT_HW_EXCEPTION and data[i].hw_exception_data.gpu_id:
                self._gpu_fault(f"GPU hardware exception on gpu_id {data[i].hw_exception_data.gpu_id:#x} "
                                f"(queue error), reported by event {e}")

    def _gpu_fault(self, message: str) -> None:
        where = {}
        faults = getattr(self.port, "faults", None)
        if faults:
            last = faults[-1]
            rq = next((q for q in self.queues.values() if q.tgt_id == last.get("queue_id")), None)
            if rq is not None:
                where["queue"] = rq.info.queue_id
                sub = self._sub_at(rq, self._completed(rq))
                where["submission"] = sub
                message += f"; {rq.name} stopped" + (f" in submission #{sub}" if sub is not None else "")
            if last.get("message"):
                message += f": {last['message']}"
        self._error(message, fatal=True, after=self.report.order[-1] if self.report.order else None, **where)

    @staticmethod
    def _sub_at(rq: ReplayQueue, ptr: int) -> int | None:
        for wb, wa, idx in rq.spans:
            if wb <= ptr < wa:
                return idx
        return None

    # -- CPU waits and checksums ----------------------------------------------------------------------------
    def _st_wait(self, st: Step) -> None:
        cw = self.cpu_wait_at.get(st.pos)
        if cw is None:
            return
        f, op = st.fields, cw.op
        recorded_ok = f.get("result") == "ok"
        limit = self.opts.timeout
        if not recorded_ok and f.get("timeout"):
            limit = min(limit, f["timeout"] / 1e9)
        if self._read(op.addr, op.width) is None:
            self._error(f"CPU wait (record {st.n}) on {op.addr:#x}: not CPU-mapped in the replay", record=st.n)
            return
        deadline = time.monotonic() + limit
        seen = self._read_int(op.addr, op.width)
        while not op.satisfied_by(seen):
            if time.monotonic() > deadline:
                break
            self._kick()
            self._poll()
            seen = self._read_int(op.addr, op.width)
        ok = op.satisfied_by(seen)
        where = {"record": st.n, "t": st.t, "after": cw.last_before, "addr": op.addr, "value": op.value,
                 "last": seen}
        if not ok:
            if recorded_ok:
                self._hang(f"the CPU waited {limit:g} s at record {st.n} for mem[{op.addr:#x}] {op.func} "
                           f"{op.value} (recorded: satisfied with {f.get('value_seen')}); last value seen "
                           f"{seen}" + self._producer_text(cw), st)
            self.report.note(f"the CPU wait at record {st.n} timed out as it did when recorded (value {seen})")
            return
        if not recorded_ok:
            self.report.add("divergence", f"the CPU wait at record {st.n} for mem[{op.addr:#x}] {op.func} "
                            f"{op.value} was satisfied in the replay (value {seen}); when recorded it ended with "
                            f"{f.get('result')!r} (value {f.get('value_seen')})", **where)
            return
        rec_seen = f.get("value_seen")
        if rec_seen is not None and seen != rec_seen:
            allowed = {op2.value & M32 for i, op2 in self.graph.signals.get(op.addr, ())
                       if cw.last_before is not None and i <= cw.last_before and op2.func == "write"}
            if (seen & M32) in allowed:
                self.report.note(f"CPU wait at record {st.n}: saw {seen}, recorded {rec_seen} — a value an "
                                 "earlier submission signals (the GPU got further before the CPU looked)")
            else:
                self.report.add("divergence", f"the CPU wait at record {st.n} on mem[{op.addr:#x}] saw {seen}; "
                                f"the recording saw {rec_seen}", **where)

    def _producer_text(self, cw) -> str:
        self.graph._build()
        if cw.producer is None:
            return "; no submission before the wait signals that value"
        sub = self.plan.submissions[cw.producer]
        replayed = cw.producer in set(self.report.order)
        return (f"; {sub.label()} signals it" + ("" if replayed else " (it was not submitted)"))

    def _st_checksum(self, st: Step) -> None:
        f = st.fields
        va, size, algo, digest = f["va"], f["size"], str(f.get("algo", "crc32")), bytes(f["digest"])
        data = self._read(va, size)
        if data is None:
            self._error(f"checksum (record {st.n}) of [{va:#x}, +{size:#x}): not CPU-mapped in the replay",
                        record=st.n, t=st.t)
            return
        if self.opts.capture is not None and st.n in self.opts.capture:
            self.opts.capture[st.n] = data
        if algo == "crc32":
            got = zlib.crc32(data).to_bytes(4, "little")
        elif algo.startswith("blake2b"):
            got = hashlib.blake2b(data, digest_size=len(digest)).digest()
        else:
            self.report.note(f"checksums with algorithm {algo!r} are not compared")
            return
        if got == digest:
            self.verified[va] = len(self.report.order)
            return
        a = self.plan.alloc_at(va, size, st.n) or self.plan.alloc_at(va, 1)
        buf = a.describe() if a else f"buffer [{va:#x}, +{size:#x})"
        since = self.verified.get(va, 0)
        writers = self._writers(va, size, self.report.order[since:])
        cw = next((c for c in reversed(self.graph.cpu_waits) if c.pos < st.pos), None)
        after = self.report.order[-1] if self.report.order else None
        msg = (f"{buf} differs from the recording at the CPU wait of record {cw.n if cw else '?'} "
               f"(checksum record {st.n}: {algo} {got.hex()}, recorded {digest.hex()})")
        page = _page_digests(f, data)
        if page is not None:
            msg += f"; first differing page at offset {page:#x} (per-page digests)"
        if writers:
            msg += "; written since it last matched by " + ", ".join(f"#{i}" for i, _ in writers)
            unordered = self._unordered(cw, [i for i, _ in writers])
            if unordered:
                msg += (f" (#{', #'.join(map(str, unordered))} not ordered before this CPU wait: the program "
                        "did not wait for it)")
        if size <= MAX_SNAPSHOT and len(self.snapshots) < 16:
            self.snapshots[st.n] = data
        self.report.add("divergence", msg, record=st.n, t=st.t, after=after, buffer=va, size=size,
                        alloc=a.handle if a else None, checksum_record=st.n, wait_record=cw.n if cw else None,
                        first_offset=page, writers=[i for i, _ in writers],
                        writer_packets={str(i): w for i, w in writers})

    def _unordered(self, cw, subs: list[int]) -> list[int]:
        """Those of `subs` that do not happen before the submission that satisfied CPU wait `cw`."""
        if cw is None:
            return []
        self.graph._build()
        if cw.producer is None:
            return []
        seen, todo = {cw.producer}, [cw.producer]
        while todo:
            for p in self.graph.preds[todo.pop()]:
                if p not in seen:
                    seen.add(p)
                    todo.append(p)
        return [i for i in subs if i not in seen]

    def _writers(self, va: int, size: int, order: list[int]) -> list[tuple[int, list[str]]]:
        """Replayed submissions whose packets write into [va, va+size) (dispatches: the kernel may
        write anywhere), with the packets."""
        out = []
        for i in order:
            sub = self.plan.submissions[i]
            hits = [f"{a.packet} {a.field} [{a.addr:#x}, +{a.size:#x})" for a in sub.accesses
                    if a.mode == "w" and a.addr < va + size and va < a.addr + a.size]
            hits += [p.name for p in sub.packets if p.name in ("DISPATCH_DIRECT", "DISPATCH_INDIRECT",
                                                                "KERNEL_DISPATCH")]
            if hits:
                out.append((i, hits))
        return out

    # -- hangs --------------------------------------------------------------------------------------------
    def _hang(self, what: str, st: Step | None, sub: Submission | None = None) -> None:
        stuck = self._diagnose()
        lines = [what]
        for s in stuck:
            lines.append(s["text"])
        sched = getattr(self.port, "scheduler", None)
        if sched is not None and hasattr(sched, "describe_blocked"):
            try:
                blocked = sched.describe_blocked()
            except Exception:       # a diagnostic must not hide the hang
                blocked = ""
            if blocked:
                lines.append("emulated GPU: " + blocked.replace("\n", "; "))
        first = next((s for s in stuck if s.get("waits")), stuck[0] if stuck else None)
        where = {"record": st.n if st else (sub.n if sub else None), "t": st.t if st else (sub.t if sub else None),
                 "after": self.report.order[-1] if self.report.order else None, "stuck": stuck}
        if first is not None:
            where.update(queue=first["queue"], submission=first.get("submission"), packet=first.get("packet"))
            if first.get("waits"):
                w = first["waits"][0]
                where.update(addr=w["addr"], value=w["value"], last=w["last"])
        self.report.add("hang", "\n    ".join(lines), **where)
        raise _Stop

    def _diagnose(self) -> list[dict]:
        """Every queue that has work left: the packet at its read pointer (decoded), the
        submission it belongs to, and the memory condition it waits for with the value there."""
        out = []
        for rq in self.queues.values():
            q = rq.info
            try:
                done = self._completed(rq)
            except Exception:
                continue
            if done >= rq.wptr:
                continue
            sub = self._sub_at(rq, done)
            ent = {"queue": q.queue_id, "engine": q.engine, "rptr": done, "wptr": rq.wptr, "submission": sub}
            try:
                pkt, waits = self._packet_at(rq, done)
            except Exception as e:        # never let the diagnostic hide the hang
                ent["text"] = f"{q.name}: read pointer {done}, write pointer {rq.wptr}; packet undecodable: {e}"
                out.append(ent)
                continue
            ent["packet"] = pkt.summary(q.family)
            ent["waits"] = waits
            text = (f"{q.name} stuck at {pkt.summary(q.family)} (read pointer {done}, write pointer {rq.wptr}"
                    + (f", submission #{sub}" if sub is not None else "") + ")")
            for w in waits:
                text += (f"; waits until mem[{w['addr']:#x}]{' & ' + hex(w['mask']) if w['mask'] not in (M32, M64) else ''}"
                         f" {w['func']} {w['value']:#x}, last seen "
                         + (f"{w['last']:#x}" if w["last"] is not None else "unreadable"))
            ent["text"] = text
            out.append(ent)
        return out

    def _packet_at(self, rq: ReplayQueue, ptr: int):
        q = rq.info
        self._queue_memory(rq, q.ring_base, q.ring_size, "ring")
        ring = ctypes.string_at(q.ring_base, q.ring_size)
        if q.engine == "aql":
            pkt = aql.decode_one(ring, (ptr % q.cap) * 64, q.family)
        else:
            dws = list(struct.unpack(f"<{q.ring_size // 4}I", ring))
            pos = (ptr * q.unit // 4) % (q.ring_size // 4)
            dws = dws[pos:] + dws[:pos]
            pkt = (pm4 if q.engine == "pm4" else sdma).decode_one(dws, 0, q.family)
        cands = [pkt]
        for kind, addr, size in pkt.refs:
            ib = self._read(addr, size * 4)
            if ib is not None:
                cands += pm4.decode(ib, q.family) if kind == "pm4_ib" else sdma.decode(ib, q.family)
        waits = []
        for p in cands:
            eng = q.engine if p is pkt else ("pm4" if q.engine == "aql" else q.engine)
            for op in packet_syncs(eng, p):
                if op.kind == "wait":
                    last = self._read_int(op.addr, op.width)
                    if last is None or not op.satisfied_by(last):
                        waits.append({"packet": p.name, "addr": op.addr, "value": op.value, "func": op.func,
                                      "mask": op.mask, "last": last})
        return pkt, waits

    # -- teardown ------------------------------------------------------------------------------------------
    def _release_resources(self) -> None:
        """Destroy what the replay still holds on the GPU: queues, events, memory mappings and
        allocations (each step on its own: one failure must not keep the rest alive)."""
        port = self.port
        kfd = self.kfd if self.kfd is not None else next((fd for fd, k in self.fd_kind.items() if k == "kfd"), None)
        if kfd is None:
            return
        problems = []

        def call(name: str, **fields) -> int:
            d = abi.IOCTLS_BY_NAME[name]
            buf = bytearray(bytes(d.struct(**fields)))
            return port.ioctl(kfd, d.request, buf)

        for qid in [rq.tgt_id for rq in self.queues.values()] + self.orphan_queues:
            err = call("DESTROY_QUEUE", queue_id=qid)
            if err:
                problems.append(f"DESTROY_QUEUE {qid}: {errname(err)}")
        self.queues.clear()
        self.orphan_queues.clear()
        for e in list(self.events):
            err = call("DESTROY_EVENT", event_id=e)
            if err:
                problems.append(f"DESTROY_EVENT {e}: {errname(err)}")
        self.events.clear()
        for h, a in list(self.allocs.items()):
            if a["va"] and self.cpu.covers(a["va"], 1, PROT_READ):
                self._unmap_cpu(a["va"], a["size"])
            if a["gpus"]:
                ids = (ctypes.c_uint32 * len(a["gpus"]))(*sorted(a["gpus"]))
                err = call("UNMAP_MEMORY_FROM_GPU", handle=h, device_ids_array_ptr=ctypes.addressof(ids),
                           n_devices=len(a["gpus"]), n_success=0)
                if err:
                    problems.append(f"UNMAP_MEMORY_FROM_GPU {h:#x}: {errname(err)}")
            err = call("FREE_MEMORY_OF_GPU", handle=h)
            if err and err != _errno.EPERM:      # EPERM: KFD's signal page, freed with the process
                problems.append(f"FREE_MEMORY_OF_GPU {h:#x}: {errname(err)}")
        self.allocs.clear()
        if problems:
            self.report.note("teardown: " + "; ".join(problems))

    def _teardown(self) -> None:
        try:
            self._release_resources()
        except Exception as e:          # keep going: files and reservations must still go
            self.report.note(f"teardown: {type(e).__name__}: {e}")
        for fd, kind in sorted(self.fd_kind.items(), key=lambda kv: kv[1] == "kfd"):
            try:
                self.port.close(fd)
            except OSError as e:
                self.report.note(f"teardown: close {fd}: {e}")
        self.fd_kind.clear()
        self.fds.clear()
        self.kfd = None
        for s, e in self.reserved:
            try:
                self.port.munmap(s, e - s)
            except OSError as ex:
                self.report.note(f"teardown: munmap [{s:#x}, {e:#x}): {ex}")
        self.reserved.clear()
        self.cpu = _Ranges()
        leaks = getattr(self.port, "leaks", None)
        if callable(leaks):
            try:
                self.report.teardown["leaks"] = leaks()
            except Exception as e:
                self.report.note(f"teardown: leaks(): {e}")


def _page_digests(f: dict, data: bytes) -> int | None:
    """With per-page digests in the checksum record (`pages`: list of crc32, `page_size`), the
    offset of the first page that differs."""
    pages, ps = f.get("pages"), f.get("page_size")
    if not pages or not ps:
        return None
    for i, d in enumerate(pages):
        want = d if isinstance(d, int) else int.from_bytes(bytes(d), "little")
        if zlib.crc32(data[i * ps:(i + 1) * ps]) != want:
            return i * ps
    return None


__all__ = ["Replayer", "Options", "check_compat", "ReplayQueue"]
