"""The replay plan: a trace read once into what a replay executes and reasons about.

Every record becomes a `Step` in trace order; submissions get a `Submission` (ring bytes, indirect
buffers, decoded packets, the memory they touch, the values they signal and wait for). The
allocations, queues and events are derived from the ioctl records themselves (their argument
bytes, parsed with the ABI structs), not from the recorder's typed records, so any trace whose
ioctls are complete can be replayed. `validate()` is the pass that runs before anything is
submitted: every address a packet names must fall in an allocation that is live at that point.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from kfdtrace.abi import ioctl as abi
from kfdtrace.abi.families import get_family
from kfdtrace.errors import KfdtraceError, PacketError
from kfdtrace.packets import decode_stream, registers
from kfdtrace.trace import BlobRef, validate

M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
#: compare functions of WAIT_REG_MEM / POLL_REGMEM (reference §3.3, §4.3) and AQL BARRIER_VALUE (§5)
FUNCS = {0: "always", 1: "<", 2: "<=", 3: "==", 4: "!=", 5: ">=", 6: ">"}
AQL_CONDS = {0: "==", 1: "!=", 2: "<", 3: ">="}
#: the `condition` strings of `wait` records
CONDITIONS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "always": "always",
              "==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
TEST = {"always": lambda v, r: True, "<": lambda v, r: v < r, "<=": lambda v, r: v <= r,
        "==": lambda v, r: v == r, "!=": lambda v, r: v != r, ">=": lambda v, r: v >= r,
        ">": lambda v, r: v > r}
#: bytes per ring pointer unit (reference §1.7)
UNITS = {"pm4": 4, "sdma": 1, "aql": 64}
QUEUE_ENGINES = {abi.QueueType.COMPUTE: "pm4", abi.QueueType.SDMA: "sdma",
                 abi.QueueType.COMPUTE_AQL: "aql", abi.QueueType.SDMA_XGMI: "sdma",
                 abi.QueueType.SDMA_BY_ENG_ID: "sdma"}
#: record kinds that only describe or annotate: they do not split reorder windows
DATA_KINDS = {"memwrite", "memwrite_runs", "codeobj"}
QUIET_KINDS = {"signal", "marker", "alloc", "free", "queue_create", "queue_destroy", "event_wait",
               "error", "end"}


class ReplayRefused(KfdtraceError):
    """The trace cannot be replayed here (incompatible GPU, a packet outside every allocation,
    an address range already taken): nothing was submitted."""


# -- what the trace contains ---------------------------------------------------------------------
@dataclass(slots=True)
class AllocInfo:
    index: int            # allocation number in trace order (the `aI` of injection specs)
    handle: int
    gpu_id: int
    va: int
    size: int
    flags: int
    n: int                # record number of the ALLOC ioctl
    freed: int | None = None
    mmap_offset: int = 0

    @property
    def end(self) -> int:
        return self.va + self.size

    @property
    def domain(self) -> str:
        F = abi.AllocFlags
        for bit, name in ((F.VRAM, "vram"), (F.GTT, "gtt"), (F.USERPTR, "userptr"),
                          (F.DOORBELL, "doorbell"), (F.MMIO_REMAP, "mmio")):
            if self.flags & bit:
                return name
        return "?"

    def live_at(self, n: int) -> bool:
        return self.n < n and (self.freed is None or n < self.freed)

    def describe(self) -> str:
        return f"allocation a{self.index} ({self.domain}, {self.size:#x} bytes at {self.va:#x}, handle {self.handle:#x})"


@dataclass(slots=True)
class QueueInfo:
    key: int              # record number of its CREATE_QUEUE (queue ids are reused after destroy)
    queue_id: int
    gpu_id: int
    qtype: int
    engine: str
    ring_base: int
    ring_size: int
    wptr_addr: int
    rptr_addr: int
    doorbell_offset: int
    family: object
    destroyed: int | None = None
    submissions: list = field(default_factory=list)

    @property
    def unit(self) -> int:
        return UNITS[self.engine]

    @property
    def cap(self) -> int:
        return self.ring_size // self.unit

    @property
    def name(self) -> str:
        return f"queue {self.queue_id} ({self.engine})"


@dataclass(slots=True)
class EventInfo:
    event_id: int
    slot: int
    etype: int
    n: int
    page_handle: int = 0  # the signal-page BO (dGPU) this event's slot lives in


@dataclass(slots=True)
class SyncOp:
    """A value a packet writes (`signal`) or waits for (`wait`), located for patching: `ib` is
    None for ring bytes or the index into the submission's IBs; `dw` the packet's first dword (AQL:
    its byte offset // 4) in that buffer."""
    kind: str             # "signal" | "wait" | "interrupt"
    addr: int
    value: int
    func: str = "=="      # waits: compare function; signals: "write" or "dec" (AQL completion)
    mask: int = M32
    width: int = 4
    packet: str = ""
    index: int = 0        # index of the packet in `Submission.packets`
    ib: int | None = None
    dw: int = 0
    length: int = 0       # packet length in dwords

    def satisfied_by(self, value: int) -> bool:
        return TEST[self.func]((value & self.mask) & (M32 if self.width == 4 else M64),
                               self.value & (M32 if self.width == 4 else M64))

    def describe(self) -> str:
        if self.kind == "wait":
            m = f" & {self.mask:#x}" if self.mask not in (M32, M64) else ""
            return f"{self.packet} waits until mem[{self.addr:#x}]{m} {self.func} {self.value:#x}"
        if self.kind == "interrupt":
            return f"{self.packet} raises interrupt ctxid {self.value}"
        return f"{self.packet} writes {self.value:#x} to {self.addr:#x}" if self.func == "write" \
            else f"{self.packet} decrements the signal value at {self.addr:#x}"


@dataclass(slots=True)
class Access:
    """Memory a packet names: [addr, addr+size), read ('r'), written ('w') or executed ('x')."""
    field: str
    addr: int
    size: int
    mode: str
    packet: str
    index: int


@dataclass
class Submission:
    index: int            # submission number in trace order: the `S` of specs and reports
    n: int                # record number
    t: int
    queue: QueueInfo
    wptr_before: int
    wptr_after: int
    data: bytes
    ibs: list             # [(addr, size, bytes | None)]
    doorbell: int | None
    value: int | None
    pos: int = 0          # index of its step in Plan.steps
    _packets: list | None = None
    _accesses: list | None = None
    _syncs: list | None = None

    @property
    def engine(self) -> str:
        return self.queue.engine

    @property
    def family(self):
        return self.queue.family

    def ib_index(self, addr: int) -> int | None:
        return next((i for i, (a, _, _) in enumerate(self.ibs) if a == addr), None)

    @property
    def packets(self) -> list:
        """Decoded packets (ring, then each IB's packets after the packet that calls it)."""
        if self._packets is None:
            def follow(addr, ndw):
                i = self.ib_index(addr)
                return None if i is None or self.ibs[i][2] is None else self.ibs[i][2][:ndw * 4]
            try:
                self._packets = decode_stream(self.engine, self.data, self.family, follow=follow)
            except (PacketError, ValueError) as e:
                raise ReplayRefused(f"submission #{self.index} (record {self.n}, {self.queue.name}): "
                                    f"its packets cannot be decoded: {e}") from None
        return self._packets

    def where(self, p) -> tuple[int | None, int]:
        """(IB index or None, first dword) of decoded packet `p` in its buffer."""
        if p.depth == 0:
            return None, p.offset // 4 if self.engine == "aql" else p.offset
        parent = self.packets[p.parent]
        addr = parent.refs[0][1] if parent.refs else 0
        return self.ib_index(addr), p.offset

    @property
    def accesses(self) -> list[Access]:
        if self._accesses is None:
            self._accesses = [a for i, p in enumerate(self.packets) for a in packet_accesses(self, p, i)]
        return self._accesses

    @property
    def syncs(self) -> list[SyncOp]:
        if self._syncs is None:
            out = []
            for i, p in enumerate(self.packets):
                ib, dw = self.where(p)
                for op in packet_syncs(self.engine, p):
                    op.index, op.ib, op.dw, op.length = i, ib, dw, p.length
                    out.append(op)
            self._syncs = out
        return self._syncs

    @property
    def signals(self) -> list[SyncOp]:
        return [s for s in self.syncs if s.kind == "signal"]

    @property
    def waits(self) -> list[SyncOp]:
        return [s for s in self.syncs if s.kind == "wait"]

    def label(self) -> str:
        return f"submission #{self.index} (record {self.n}, {self.queue.name})"


@dataclass(slots=True)
class Step:
    kind: str
    n: int
    t: int
    fields: dict
    sub: Submission | None = None
    pos: int = 0          # index in Plan.steps


# -- packets: the memory they name and the values they signal and wait for -----------------------
def _pm4_accesses(p) -> list[tuple[str, int, int, str]]:
    f, name = p.fields, p.name
    if name == "RELEASE_MEM" and f.get("data_sel", 0) in (1, 2, 3, 4):
        return [("addr", f["addr"], 4 if f["data_sel"] == 1 else 8, "w")]
    if name == "WAIT_REG_MEM" and f.get("mem_space") == 1:
        return [("poll_addr", f["poll_addr"], 4, "r")]
    if name == "WRITE_DATA" and f.get("dst_sel") in (1, 2, 5):
        n = 1 if f.get("wr_one_addr") else max(1, len(f.get("data", ())))
        return [("dst_addr", f["dst_addr"], 4 * n, "w")]
    if name == "COPY_DATA":
        w = 8 if f.get("count_sel") else 4
        out = [("src_addr", f["src_addr"], w, "r")] if f.get("src_sel") in (1, 2) else []
        return out + ([("dst_addr", f["dst_addr"], w, "w")] if f.get("dst_sel") in (1, 2, 5) else [])
    if name == "DMA_DATA":
        n = max(1, f.get("byte_count", 1))
        out = [("src_addr", f["src_addr"], n, "r")] if f.get("src_sel") in (0, 3) else []
        return out + ([("dst_addr", f["dst_addr"], n, "w")] if f.get("dst_sel") in (0, 3) else [])
    if name == "ATOMIC_MEM":
        return [("addr", f["addr"], 8 if f.get("atomic", 0) >= 0x27 else 4, "w")]
    if name == "INDIRECT_BUFFER":
        return [("ib_addr", f["ib_addr"], 4 * f["ib_size"], "r")]
    if name in ("EVENT_WRITE", "MEM_SEMAPHORE") and f.get("addr"):
        return [("addr", f["addr"], 8, "w")]
    return []


def _sh_pairs(p, family) -> list[tuple[str, int, int, str]]:
    """Code and scratch addresses set through COMPUTE_PGM_LO/HI and the scratch base (>> 8)."""
    out = []
    base, vals = p.fields.get("reg", 0), p.fields.get("values", [])
    for reg, what, mode in (("COMPUTE_PGM_LO", "code", "x"),
                            ("COMPUTE_DISPATCH_SCRATCH_BASE_LO", "scratch", "w")):
        try:
            at = registers.reg_addr(reg, family) - base
        except (KeyError, ValueError, KfdtraceError):
            continue
        if 0 <= at and at + 1 < len(vals):
            addr = ((vals[at + 1] << 32) | vals[at]) << 8
            if addr:
                out.append((f"{reg} ({what})", addr, 4, mode))
    return out


def _sdma_accesses(p) -> list[tuple[str, int, int, str]]:
    f, name = p.fields, p.name
    if name == "COPY_LINEAR":
        n = f.get("byte_count", f.get("count", 0) + 1)
        return [("src_addr", f["src_addr"], n, "r"), ("dst_addr", f["dst_addr"], n, "w")]
    if name == "CONST_FILL":
        return [("dst_addr", f["dst_addr"], f.get("byte_count", f.get("count", 0) + 1), "w")]
    if name == "WRITE_UNTILED":
        return [("dst_addr", f["dst_addr"], 4 * max(1, len(f.get("data", ()))), "w")]
    if name == "FENCE":
        return [("addr", f["addr"], 4, "w")]
    if name == "POLL_REGMEM":
        return [("addr", f["addr"], 4, "r")] if f.get("mem_poll") else []
    if name in ("TIMESTAMP_GET", "TIMESTAMP_GET_GLOBAL"):
        return [("write_addr", f["write_addr"], 8, "w")]
    if name == "ATOMIC":
        return [("addr", f["addr"], 8, "w")]
    if name == "COND_EXE":
        return [("addr", f["addr"], 4, "r")]
    if name == "INDIRECT":
        return [("ib_addr", f["ib_addr"], 4 * f["ib_size"], "r")]
    if name in ("TRAP", "NOP", "DUMMY_TRAP", "TIMESTAMP_SET", "SRBM_WRITE", "PRE_EXE"):
        return []
    # other packets: every address field must at least start inside an allocation
    return [(k, v, 1, "r") for k, v in f.items() if k.endswith("addr") and isinstance(v, int) and v]


def _aql_accesses(p) -> list[tuple[str, int, int, str]]:
    f, name = p.fields, p.name
    out = []
    if name == "KERNEL_DISPATCH":
        out.append(("kernel_object", f["kernel_object"], 64, "x"))
        if f.get("kernarg_address"):
            out.append(("kernarg_address", f["kernarg_address"], 1, "r"))
    elif name in ("BARRIER_AND", "BARRIER_OR"):
        out += [(f"dep_signal[{i}]", s, 16, "r") for i, s in enumerate(f.get("dep_signal", ())) if s]
    elif name == "BARRIER_VALUE":
        out.append(("signal", f["signal"], 16, "r"))
    elif name == "PM4_IB":
        out.append(("ib_addr", f["ib_addr"], 4 * f["ib_size"], "r"))
    if f.get("completion_signal") and name not in ("INVALID", "UNKNOWN", "TRUNCATED"):
        out.append(("completion_signal", f["completion_signal"], 16, "w"))
    return out


def packet_accesses(sub: Submission, p, index: int) -> list[Access]:
    engine = "pm4" if p.depth and sub.engine == "aql" else sub.engine
    if p.name in ("TRUNCATED", "UNKNOWN") or p.error and not p.fields:
        return []
    if engine == "pm4":
        raw = _pm4_accesses(p) + (_sh_pairs(p, sub.family) if p.name == "SET_SH_REG" else [])
    elif engine == "sdma":
        raw = _sdma_accesses(p)
    else:
        raw = _aql_accesses(p)
    return [Access(fld, a, s, m, p.name, index) for fld, a, s, m in raw]


def packet_syncs(engine: str, p) -> list[SyncOp]:
    """Signals (values written to memory that something may wait for), waits and interrupts."""
    f, name, out = p.fields, p.name, []
    if p.depth and engine == "aql":
        engine = "pm4"
    if engine == "pm4":
        if name == "RELEASE_MEM":
            if f.get("data_sel") in (1, 2):
                w = 4 if f["data_sel"] == 1 else 8
                out.append(SyncOp("signal", f["addr"], f["data"] & (M32 if w == 4 else M64), "write",
                                  width=w, packet=name))
            if f.get("int_sel"):
                out.append(SyncOp("interrupt", 0, f.get("int_ctxid", 0), packet=name))
        elif name == "WRITE_DATA" and f.get("dst_sel") in (1, 2, 5):
            data = f.get("data", ())[:16]
            step = 0 if f.get("wr_one_addr") else 4
            out += [SyncOp("signal", f["dst_addr"] + step * i, v, "write", packet=name)
                    for i, v in enumerate(data)]
        elif name == "WAIT_REG_MEM" and f.get("mem_space") == 1:
            out.append(SyncOp("wait", f["poll_addr"], f["reference"], FUNCS.get(f["function"], "always"),
                              f["mask"], packet=name))
    elif engine == "sdma":
        if name == "FENCE":
            out.append(SyncOp("signal", f["addr"], f["data"], "write", packet=name))
        elif name == "WRITE_UNTILED":
            out += [SyncOp("signal", f["dst_addr"] + 4 * i, v, "write", packet=name)
                    for i, v in enumerate(f.get("data", ())[:16])]
        elif name == "POLL_REGMEM" and f.get("mem_poll"):
            out.append(SyncOp("wait", f["addr"], f["value"], FUNCS.get(f["func"], "always"), f["mask"],
                              packet=name))
        elif name in ("TRAP", "DUMMY_TRAP"):
            out.append(SyncOp("interrupt", 0, f.get("int_context", 0), packet=name))
    else:
        if name in ("BARRIER_AND", "BARRIER_OR"):
            out += [SyncOp("wait", s + 8, 0, "==", M64, 8, packet=name) for s in f.get("dep_signal", ()) if s]
        elif name == "BARRIER_VALUE" and f.get("signal"):
            out.append(SyncOp("wait", f["signal"] + 8, f["value"] & M64, AQL_CONDS.get(f["cond"], "=="),
                              f["mask"] & M64, 8, packet=name))
        if f.get("completion_signal") and name not in ("INVALID", "UNKNOWN", "TRUNCATED"):
            out.append(SyncOp("signal", f["completion_signal"] + 8, 0, "dec", M64, 8, packet=name))
    return out


# -- the plan ---------------------------------------------------------------------------------------
class Plan:
    """A trace, read once: steps in trace order, submissions, allocations, queues and events."""

    def __init__(self, reader):
        self.reader = reader
        self.path = reader.path
        self.header = reader.header
        self.gpus: list[dict] = list(self.header.get("gpus") or [])
        self.families: dict[int, object] = {}
        self._unknown: dict[int, str] = {}          # gpu_id -> why its family is unknown
        for g in self.gpus:
            key = g.get("gfx") or g.get("gfx_target_version")
            try:
                self.families[g["gpu_id"]] = get_family(key)
            except KfdtraceError as e:
                if isinstance(g.get("gpu_id"), int):
                    self._unknown[g["gpu_id"]] = str(e)
            except (KeyError, TypeError):
                pass
        self.steps: list[Step] = []
        self.submissions: list[Submission] = []
        self.allocs: list[AllocInfo] = []
        self.queues: list[QueueInfo] = []
        self.events: dict[int, EventInfo] = {}
        self.event_pages: dict[int, int] = {}       # signal-page BO handle -> its VA
        self.ioctl_counts: dict[str, int] = {}
        self._live_allocs: dict[int, AllocInfo] = {}
        self._live_queues: dict[int, QueueInfo] = {}
        self.status = reader.status
        self._load()
        self._index = sorted(self.allocs, key=lambda a: a.va)
        self._starts = [a.va for a in self._index]
        self._maxsize = max((a.size for a in self.allocs), default=0)

    # -- loading ----------------------------------------------------------------------------------
    def _load(self) -> None:
        for rec in self.reader.records():
            kind = rec.kind
            if kind in QUIET_KINDS:
                continue
            self._check_record(rec)
            step = Step(kind, rec.n, rec.t, rec.fields)
            if kind == "ioctl":
                self._ioctl(step)
            elif kind == "submit":
                self._submit(step)
            step.pos = len(self.steps)
            if step.sub is not None:
                step.sub.pos = step.pos
            self.steps.append(step)

    def _check_record(self, rec) -> None:
        """Refuse a record that does not conform to the trace schema (a damaged trace, or one
        written by another tool) before anything runs: every later step trusts its field types."""
        problems = validate(rec.kind, rec.fields)
        if rec.kind == "ioctl" and not problems:
            f = rec.fields
            short = f["name"].removeprefix("AMDKFD_IOC_")
            d = abi.lookup(f["request"]) if 0 <= f["request"] < 1 << 32 else None
            if short in abi.IOCTLS_BY_NAME and (d is None or d.name != short):
                problems.append(f"ioctl.name {f['name']!r} does not match its request {f['request']:#x} "
                                f"({abi.ioctl_name(f['request']) if d else 'not a KFD ioctl'})")
            for i, p in enumerate(f.get("payloads") or ()):
                if not (isinstance(p, dict) and all(p.get(k) is None or isinstance(p[k], (bytes, BlobRef))
                                                    for k in ("data_in", "data_out"))):
                    problems.append(f"ioctl.payloads[{i}]: expected {{data_in, data_out: bytes or blob}}, "
                                    f"got {p!r:.80}")
                    break
        if rec.kind == "submit" and not problems:
            for i, e in enumerate(rec.fields["ibs"]):
                if not (isinstance(e, dict) and type(e.get("addr")) is int and type(e.get("size")) is int
                        and e["size"] >= 0 and (e.get("blob") is None or isinstance(e["blob"], (BlobRef, bytes)))):
                    problems.append(f"submit.ibs[{i}]: expected {{addr: int, size: int, blob}}, got {e!r:.80}")
                    break
        if problems:
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise ReplayRefused(f"{self.path}: record {rec.n} ({rec.kind}) is malformed: {problems[0]}{more}")

    def _family(self, gpu_id: int):
        fam = self.families.get(gpu_id)
        if fam is None and gpu_id in self._unknown:
            raise ReplayRefused(f"{self.path}: GPU {gpu_id:#x} of the trace: {self._unknown[gpu_id]}; its "
                                "packets cannot be decoded or replayed by this kfdtrace")
        if fam is None:
            raise ReplayRefused(f"{self.path}: gpu_id {gpu_id:#x} used by the trace is not among the "
                                f"GPUs its header describes ({', '.join(hex(g) for g in self.families) or 'none'})")
        return fam

    def _ioctl(self, step: Step) -> None:
        f = step.fields
        name = str(f.get("name", "")).removeprefix("AMDKFD_IOC_")
        self.ioctl_counts[name] = self.ioctl_counts.get(name, 0) + 1
        f["_seq"] = self.ioctl_counts[name]
        if f.get("errno") or name not in ("ALLOC_MEMORY_OF_GPU", "FREE_MEMORY_OF_GPU", "CREATE_QUEUE",
                                          "DESTROY_QUEUE", "CREATE_EVENT"):
            return
        try:
            a_in = abi.parse_args(f["request"], f["arg_in"])
            a_out = abi.parse_args(f["request"], f["arg_out"])
        except KfdtraceError as e:
            raise ReplayRefused(f"{self.path}: record {step.n} ({name}): {e}") from None
        n = step.n
        if name == "ALLOC_MEMORY_OF_GPU":
            a = AllocInfo(len(self.allocs), a_out.handle, a_out.gpu_id, a_out.va_addr,
                          a_out.size, a_out.flags, n, mmap_offset=a_out.mmap_offset)
            self.allocs.append(a)
            self._live_allocs[a.handle] = a
        elif name == "FREE_MEMORY_OF_GPU":
            a = self._live_allocs.pop(a_in.handle, None)
            if a is not None:
                a.freed = n
        elif name == "CREATE_QUEUE":
            qt = int(a_out.queue_type)
            q = QueueInfo(n, a_out.queue_id, a_out.gpu_id, qt, QUEUE_ENGINES.get(qt, "?"),
                          a_out.ring_base_address, a_out.ring_size, a_out.write_pointer_address,
                          a_out.read_pointer_address, a_out.doorbell_offset, self._family(a_out.gpu_id))
            if q.engine == "?":
                raise ReplayRefused(f"{self.path}: record {n}: queue type {qt} is not one kfdtrace replays")
            self.queues.append(q)
            self._live_queues[q.queue_id] = q
        elif name == "DESTROY_QUEUE":
            q = self._live_queues.pop(a_in.queue_id, None)
            if q is not None:
                q.destroyed = n
        elif name == "CREATE_EVENT":
            page = a_in.event_page_offset
            if page and page in self._live_allocs:
                self.event_pages[page] = self._live_allocs[page].va
            ev = EventInfo(a_out.event_id, a_out.event_slot_index, a_in.event_type, n,
                           page or next(iter(self.event_pages), 0))
            self.events[ev.event_id] = ev

    def _submit(self, step: Step) -> bool:
        f = step.fields
        q = self._live_queues.get(f.get("queue_id"))
        if q is None:
            raise ReplayRefused(f"{self.path}: record {step.n}: submission to queue {f.get('queue_id')}, "
                                "which no CREATE_QUEUE in the trace created"
                                + (f" ({f['error']})" if f.get("error") else ""))
        if f.get("error"):
            raise ReplayRefused(f"{self.path}: record {step.n}: the recorder could not capture this "
                                f"submission to {q.name}: {f['error']}")
        r = self.reader
        ibs = [(e["addr"], e["size"], r.resolve(e["blob"]) if e.get("blob") is not None else None)
               for e in f.get("ibs") or ()]
        data = r.resolve(f["dwords"]) if f.get("dwords") is not None else b""
        sub = Submission(len(self.submissions), step.n, step.t, q, f["wptr_before"], f["wptr_after"],
                         bytes(data), ibs, f.get("doorbell"), f.get("value"))
        if (sub.wptr_after - sub.wptr_before) * q.unit != len(sub.data):
            raise ReplayRefused(f"{self.path}: {sub.label()}: {len(sub.data)} ring bytes recorded but the "
                                f"write pointer moved {sub.wptr_after - sub.wptr_before} units of {q.unit} bytes")
        q.submissions.append(sub)
        self.submissions.append(sub)
        step.sub = sub

    # -- queries ----------------------------------------------------------------------------------
    def alloc_at(self, addr: int, size: int = 1, n: int | None = None) -> AllocInfo | None:
        """The allocation holding [addr, addr+size), live at record `n` (any time if None)."""
        i = bisect.bisect_right(self._starts, addr) - 1
        while i >= 0:
            a = self._index[i]
            if a.va <= addr and addr + size <= a.end and (n is None or a.live_at(n)):
                return a
            if a.va + self._maxsize <= addr:
                break
            i -= 1
        return None

    def submission(self, index: int) -> Submission:
        if not 0 <= index < len(self.submissions):
            raise KfdtraceError(f"submission #{index} does not exist: {self.path} has "
                                f"{len(self.submissions)} submissions (#0..#{len(self.submissions) - 1})")
        return self.submissions[index]

    def family_names(self) -> list[str]:
        return [getattr(self.families.get(g.get("gpu_id")), "name", None) or str(g.get("gfx")) for g in self.gpus]

    def mailbox(self, addr: int) -> EventInfo | None:
        """The signal event whose mailbox slot is at `addr`, if any."""
        for ev in self.events.values():
            base = self.event_pages.get(ev.page_handle)
            if base is not None and ev.etype in (0, 5) and base + ev.slot * 8 == addr:
                return ev
        return None

    # -- validation ---------------------------------------------------------------------------------
    def validate(self) -> None:
        """Refuse (before anything is submitted) a trace whose packets name memory outside every
        allocation live at their submission: the replay would write or read someone else's memory."""
        problems = []
        for sub in self.submissions:
            for ib_addr, size, blob in sub.ibs:
                if blob is not None and self.alloc_at(ib_addr, size, sub.n) is None:
                    problems.append(f"{sub.label()}: indirect buffer [{ib_addr:#x}, +{size:#x}) is outside "
                                    "every allocation live at that point")
            for acc in sub.accesses:
                if self.alloc_at(acc.addr, max(1, acc.size), sub.n) is None:
                    holder = self.alloc_at(acc.addr, 1, sub.n)
                    why = (f"runs past the end of {holder.describe()}" if holder is not None
                           else "is outside every allocation live at that point")
                    p = sub.packets[acc.index]
                    problems.append(f"{sub.label()}, packet {acc.index} ({p.summary(sub.family)}): "
                                    f"{acc.field} {acc.addr:#x} (+{acc.size:#x} bytes) {why}")
                if len(problems) >= 20:
                    break
        if problems:
            more = "" if len(problems) < 20 else "\n  ... (first 20 shown)"
            raise ReplayRefused(f"{self.path}: refusing to replay: packets address memory the trace never "
                                f"allocated (nothing was submitted):\n  " + "\n  ".join(problems) + more)


__all__ = ["Plan", "Step", "Submission", "QueueInfo", "AllocInfo", "EventInfo", "SyncOp", "Access",
           "ReplayRefused", "packet_accesses", "packet_syncs", "CONDITIONS", "TEST", "M32", "M64"]
