"""The TUI's view of a trace: an index built in one pass, packets decoded on demand.

No Textual here (tests and benchmarks use it headless). `TraceModel.load()` walks the records
once, keeping only what the views need: submissions (time, queue, where the ring bytes are),
CPU-lane events, ioctls, markers, signals, waits, memwrites and code objects. Each submission's
packet boundaries come from a cheap scan (no field decoding), so a million packets cost a few
flat numpy arrays — `p_sub`, `p_stream`, `p_off`, `p_len`, `p_code`, `p_depth`, `p_dw1` — and the
rows the packet list shows are decoded only when drawn (`packet(i)`, LRU-cached).

A packet's *code* identifies its kind without decoding: engine id << 24 | the header bits that
select the layout (PM4 IT opcode, or 0x100 | type for type-0/1/2 headers; SDMA op | sub-op << 8
| broadcast << 16; AQL type | vendor format << 8), plus `TRUNC` when it runs past its stream.
Packets of indirect buffers captured with a submission (`submit.ibs`) are indexed right after
the packet that calls them (`p_depth` + 1, `p_stream` = 1 + the IB's position in `ibs`).

`load()` may run in a worker thread while the UI reads: it appends a submission's packets before
publishing the new `n_packets`, and readers never look past `n_packets`.
"""
from __future__ import annotations

import bisect
import re
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from kfdtrace.abi import ioctl as abi
from kfdtrace.errors import KfdtraceError, TraceError
from kfdtrace.packets import aql, pm4, registers, sdma
from kfdtrace.packets.table import Packet, fmt_value
from kfdtrace.trace import TraceReader
from kfdtrace.trace.format import BlobRef
from kfdtrace.trace.reader import gpus_of

ENGINE_ID = {"pm4": 1, "sdma": 2, "aql": 3}
ENGINE_NAME = {v: k for k, v in ENGINE_ID.items()}
TRUNC = 1 << 23
CODE_MASK = TRUNC - 1
#: bytes per write-pointer unit (queue_create / submit wptr_* are in these units)
UNIT = {"pm4": 4, "sdma": 1, "aql": 64}
#: CPU-lane record kinds and the glyph the timeline draws for each (higher rank wins a cell)
CPU_KINDS = {"marker": 0, "wait": 1, "event_wait": 2, "signal": 3, "ioctl": 4, "memwrite": 5, "memwrite_runs": 5,
             "codeobj": 6, "mmap": 7, "munmap": 7, "open": 8, "close": 8, "error": 9, "checksum": 10}
CPU_KIND_NAMES = {}
for _k, _v in CPU_KINDS.items():
    CPU_KIND_NAMES.setdefault(_v, _k)

# packets that reference indirect buffers, from the tables (the recorder uses the same rule)
_PM4_IB_OPS = sorted({l.opcode for l in pm4.PACKETS if getattr(l, "refs", None)})
_SDMA_IB_OPS = sorted({l.op for l in sdma.PACKETS if getattr(l, "refs", None)})
_AQL_IB_FMTS = sorted({l.fmt for l in aql.PACKETS if getattr(l, "refs", None)})
_IB_CODES = np.array(sorted([1 << 24 | op for op in _PM4_IB_OPS]
                            + [2 << 24 | op | sub << 8 for op in _SDMA_IB_OPS for sub in range(256)]
                            + [3 << 24 | f << 8 for f in _AQL_IB_FMTS]), np.int64)
#: comparison functions: PM4 WAIT_REG_MEM / SDMA POLL_REGMEM function codes, AQL conditions, wait records
FUNCS = {0: "always", 1: "<", 2: "<=", 3: "==", 4: "!=", 5: ">=", 6: ">"}
AQL_CONDS = {0: "==", 1: "!=", 2: "<", 3: ">="}
WAIT_CONDS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=", "always": "always"}
_CMP = {"==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "always": lambda a, b: True}
_WAITERS = {("pm4", "WAIT_REG_MEM"), ("sdma", "POLL_REGMEM"), ("aql", "BARRIER_VALUE"), ("aql", "BARRIER_AND"),
            ("aql", "BARRIER_OR")}
_WRITERS = {("pm4", "RELEASE_MEM"), ("pm4", "WRITE_DATA"), ("sdma", "FENCE"), ("sdma", "WRITE_UNTILED")}


def _codes_of(pairs) -> np.ndarray:
    """The packet codes (see the module docstring) of (engine, packet name) pairs, from the tables."""
    out = []
    for eng, name in pairs:
        if eng == "pm4":
            out.append(1 << 24 | pm4.NAMES[name])
        elif eng == "sdma":
            for l in sdma.BY_NAME[name]:
                out.append(2 << 24 | l.op | l.sub << 8)
        else:
            l = aql.BY_NAME[name]
            out.append(3 << 24 | (l.fmt << 8 if l.type == 0 else l.type))
    return np.array(sorted(set(out)), np.int64)


_WAITER_CODES = _codes_of(_WAITERS)
_WRITER_CODES = _codes_of(_WRITERS)


# ------------------------------------------------------------------------------------------------
# boundary scans
# ------------------------------------------------------------------------------------------------
def _pm4_bounds(a: np.ndarray) -> np.ndarray:
    """Packet offsets of a PM4 stream. The length rule is the decoder's (pm4 module docstring):
    type-3 = COUNT + 2 except the one-dword NOP filler (COUNT 0x3FFF), type-0 = COUNT + 2, others 1;
    computed for every dword at once, then the chain is followed in a plain loop (one step per
    packet, cheaper than the speculative walkers of `pm4.scan` for ring-sized streams)."""
    n = len(a)
    if n <= 64:
        out, p, d = [], 0, a.tolist()
        while p < n:
            out.append(p)
            h = d[p]
            t = h >> 30
            if t == 3:
                c = (h >> 16) & 0x3FFF
                p += 1 if (c == 0x3FFF and (h >> 8) & 0xFF == 0x10) else c + 2
            else:
                p += ((h >> 16) & 0x3FFF) + 2 if t == 0 else 1
        return np.array(out, np.int64)
    t = a >> 30
    cnt = ((a >> 16) & 0x3FFF).astype(np.int64)
    ln = np.where((t == 3) | (t == 0), cnt + 2, 1)
    ln[(t == 3) & (cnt == 0x3FFF) & (((a >> 8) & 0xFF) == 0x10)] = 1
    lst = ln.tolist()
    out, p = [], 0
    app = out.append
    while p < n:
        app(p)
        p += lst[p]
    return np.array(out, np.int64)


def scan_stream(engine: str, a: np.ndarray, family=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets in dwords, codes, lengths in dwords) of every packet of one stream."""
    n = len(a)
    if n == 0:
        z = np.zeros(0, np.int64)
        return z, z.copy(), z.copy()
    if engine == "pm4":
        offs = _pm4_bounds(a)
        h = a[offs].astype(np.int64)
        ty = h >> 30
        code = np.where(ty == 3, (h >> 8) & 0xFF, 0x100 | ty)
        cnt = (h >> 16) & 0x3FFF
        ln = np.where((ty == 3) | (ty == 0), cnt + 2, 1)
        ln[(ty == 3) & (cnt == 0x3FFF) & (((h >> 8) & 0xFF) == 0x10)] = 1
    elif engine == "sdma":
        offs, ops, ln = sdma.scan(a, family)
        code = ops | (((a[offs].astype(np.int64) >> 27) & 1) << 16)
    elif engine == "aql":
        offs = np.arange(0, n, 16, dtype=np.int64)
        h = a[offs].astype(np.int64)
        ty = h & 0xFF
        code = ty | np.where(ty == 0, ((h >> 16) & 0xFF) << 8, 0)
        ln = np.full(len(offs), 16, np.int64)
    else:
        offs, ln = np.zeros(1, np.int64), np.array([n], np.int64)
        code = np.zeros(1, np.int64)
        engine = "pm4"
    code = code | (ENGINE_ID[engine] << 24)
    over = offs + ln > n
    if over.any():
        code[over] |= TRUNC
        ln = np.where(over, n - offs, ln)
    return offs, code, ln


def scan_batch(engine: str, arrays: list, family=None):
    """`scan_stream` over many streams at once: (offsets within each stream, codes, lengths, index
    of the stream, dword after each header). PM4 lengths are clamped at each stream's end, so the
    walk restarts exactly at every stream; SDMA streams are scanned together and any stream a
    packet would cross out of is rescanned on its own (exact either way)."""
    lens = np.array([len(x) for x in arrays], np.int64)
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    ends = starts + lens
    a = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    eid = ENGINE_ID.get(engine, 1)
    if engine == "pm4" or engine not in ENGINE_ID:
        n = len(a)
        t = a >> 30
        cnt = ((a >> 16) & 0x3FFF).astype(np.int64)
        ln = np.where((t == 3) | (t == 0), cnt + 2, 1)
        ln[(t == 3) & (cnt == 0x3FFF) & (((a >> 8) & 0xFF) == 0x10)] = 1
        room = np.repeat(ends, lens) - np.arange(n)
        lc = np.minimum(ln, room)
        lst = lc.tolist()
        out, p = [], 0
        app = out.append
        while p < n:
            app(p)
            p += lst[p]
        pos = np.array(out, np.int64)
        h = a[pos].astype(np.int64)
        ty = h >> 30
        code = np.where(ty == 3, (h >> 8) & 0xFF, 0x100 | ty) | (1 << 24)
        code = np.where(ln[pos] > lc[pos], code | TRUNC, code)
        length = lc[pos]
        which = np.searchsorted(starts, pos, side="right") - 1
    elif engine == "sdma":
        pos, ops, ln = sdma.scan(a, family) if len(a) else (np.zeros(0, np.int64),) * 3
        which = np.searchsorted(starts, pos, side="right") - 1
        bad = np.zeros(len(arrays), bool)
        bad[which[pos + ln > ends[which]]] = True
        bad[~np.isin(starts, pos) & (lens > 0)] = True
        keep = ~bad[which]
        pos, ops, ln, which = pos[keep], ops[keep], ln[keep], which[keep]
        code = ops | (((a[pos].astype(np.int64) >> 27) & 1) << 16) | (2 << 24)
        length = ln
        if bad.any():
            extra = [(j, *scan_stream("sdma", arrays[j], family)) for j in np.flatnonzero(bad).tolist()]
            pos = np.concatenate([pos] + [o + starts[j] for j, o, c, l in extra])
            code = np.concatenate([code] + [c for j, o, c, l in extra])
            length = np.concatenate([length] + [l for j, o, c, l in extra])
            which = np.concatenate([which] + [np.full(len(o), j, np.int64) for j, o, c, l in extra])
            order = np.argsort(pos, kind="stable")
            pos, code, length, which = pos[order], code[order], length[order], which[order]
    else:
        slots = -(-lens // 16)
        which = np.repeat(np.arange(len(arrays)), slots)
        first_slot = np.concatenate(([0], np.cumsum(slots)[:-1]))
        pos = starts[which] + (np.arange(len(which)) - first_slot[which]) * 16
        h = a[pos].astype(np.int64)
        ty = h & 0xFF
        code = (ty | np.where(ty == 0, ((h >> 16) & 0xFF) << 8, 0)) | (eid << 24)
        length = np.minimum(16, ends[which] - pos)
        code = np.where(length < 16, code | TRUNC, code)
    nxt = pos + 1
    ok = nxt < ends[which]
    dw1 = np.zeros(len(pos), np.uint32)
    dw1[ok] = a[nxt[ok]]
    return pos - starts[which], code, length, which, dw1


def as_u32(data: bytes) -> np.ndarray:
    whole = len(data) - len(data) % 4
    a = np.frombuffer(data, "<u4", whole // 4)
    if whole != len(data):   # a ragged tail (a damaged record): keep it as one more dword
        a = np.append(a, np.uint32(int.from_bytes(data[whole:], "little")))
    return a


# ------------------------------------------------------------------------------------------------
# data classes
# ------------------------------------------------------------------------------------------------
@dataclass
class Queue:
    qid: int
    engine: str
    type: str
    gpu_id: int | None
    family: object
    ring_base: int
    ring_size: int
    lane: int
    created: int | None = None
    destroyed: int | None = None
    submits: int = 0

    @property
    def label(self) -> str:
        return f"q{self.qid} {self.engine}" if self.qid >= 0 else "q? unknown"


@dataclass(slots=True)
class Sub:
    """One submission: the ring bytes between two write pointers, and the IBs they call."""
    n: int
    t: int
    qid: int
    engine: str
    wptr_before: int
    wptr_after: int
    dwords: object
    ibs: list
    first: int = 0
    count: int = 0
    error: str | None = None
    ib_engine: dict = field(default_factory=dict)   # ibs position -> engine of its packets


@dataclass(slots=True)
class Alloc:
    index: int
    handle: int
    gpu_id: int | None
    va: int
    size: int
    domain: str
    flags: int
    allocated: int | None
    freed: int | None
    memwrites: int = 0

    @property
    def end(self) -> int:
        return self.va + self.size


@dataclass(frozen=True)
class Filter:
    """What the packet list shows: None means "any". `names` are packet names (exact, upper case)
    or substrings; times are ns since the trace start."""
    queues: frozenset | None = None
    engines: frozenset | None = None
    names: tuple | None = None
    t0: int | None = None
    t1: int | None = None

    @property
    def active(self) -> bool:
        return any(x is not None for x in (self.queues, self.engines, self.names, self.t0, self.t1))

    def describe(self) -> str:
        parts = []
        if self.queues is not None:
            parts.append("queue " + ",".join(str(q) for q in sorted(self.queues)))
        if self.engines is not None:
            parts.append("engine " + ",".join(sorted(self.engines)))
        if self.names is not None:
            parts.append("kind " + ",".join(self.names))
        if self.t0 is not None or self.t1 is not None:
            parts.append(f"time {fmt_t(self.t0) if self.t0 is not None else '…'}–"
                         f"{fmt_t(self.t1) if self.t1 is not None else '…'}")
        return "; ".join(parts) or "none"


@dataclass(frozen=True)
class Target:
    """Something a view can select: a packet (global index), a record (number) or an allocation."""
    kind: str            # "packet" | "record" | "alloc"
    index: int

    def __str__(self) -> str:
        return f"{self.kind} {self.index}"


@dataclass
class SyncPoint:
    """A wait (addr, cond, value, mask) or a write of `value` to `addr`, at a packet or record."""
    target: Target
    order: tuple        # (record n, packet index) — trace order
    addr: int
    value: int
    cond: str = ""
    mask: int = 0xFFFF_FFFF_FFFF_FFFF
    what: str = ""

    def satisfied_by(self, value: int) -> bool:
        return _CMP.get(self.cond, _CMP["=="])(value & self.mask, self.value & self.mask)


@dataclass
class Line:
    """One line of a detail view: label, value, note, and an optional target to jump to."""
    label: str
    value: str = ""
    note: str = ""
    link: Target | None = None
    style: str = ""


@dataclass
class Section:
    title: str
    lines: list = field(default_factory=list)

    def add(self, *a, **kw) -> Line:
        ln = Line(*a, **kw)
        self.lines.append(ln)
        return ln


_FLAG_ABBR = {"WRITABLE": "W", "EXECUTABLE": "X", "COHERENT": "C", "EXT_COHERENT": "XC", "UNCACHED": "U",
              "AQL_QUEUE_MEM": "AQL", "PUBLIC": "P", "NO_SUBSTITUTE": "NS", "CONTIGUOUS": "CONT"}


def alloc_flags_short(flags: int) -> str:
    """KFD_IOC_ALLOC_MEM_FLAGS_* attributes (the domain is shown apart) as short letters."""
    names = abi.enum_text(abi.AllocFlags, flags).split("|")
    return ",".join(_FLAG_ABBR.get(n, n) for n in names if n not in ("VRAM", "GTT", "USERPTR", "DOORBELL",
                                                                        "MMIO_REMAP", "0")) or "-"


def fmt_t(t: int | None) -> str:
    """ns since the trace start → milliseconds with microsecond resolution."""
    return "-" if t is None else f"{t / 1e6:.3f}ms"


def fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return str(n)


def parse_time(text: str) -> int:
    """'1.5ms', '200us', '3s', '1500ns', '2.5' (ms) → ns."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ns|us|µs|ms|s)?\s*", text)
    if not m:
        raise ValueError(f"not a time: {text!r} (e.g. 1.5ms, 200us, 3s)")
    scale = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, None: 1e6}[m.group(2)]
    return int(float(m.group(1)) * scale)


def parse_int(text: str) -> int | None:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------
class TraceModel:
    """Everything the views show, derived from one TraceReader. Call `open()` then `load()`
    (both may run in a worker thread); `loaded` becomes True when the index is complete."""

    def __init__(self, path, *, report=None):
        self.path = str(path)
        self.reader: TraceReader | None = None
        self.report = report            # tui.report.Report or None
        self.loaded = False
        self.load_error: str | None = None
        self.subs: list[Sub] = []
        self.n_packets = 0
        self._firsts: list[int] = []
        self._parts: list[tuple] = []
        self._pending: list[tuple] = []
        self._pending_dw = 0
        self._progress = None
        self.queues: dict[int, Queue] = {}
        self.lanes: list[str] = ["CPU"]
        self.allocs: list[Alloc] = []
        self.cpu: list[tuple[int, int, int]] = []        # (t, n, kind rank)
        self.ioctls: list[tuple] = []                    # (n, t, name, ret, errno, dur_ns)
        self.markers: list[tuple[int, int, str]] = []    # (n, t, label)
        self.signals: list[tuple] = []                   # (n, t, addr, value, queue)
        self.waits: list[tuple] = []                     # (n, t, addr, cond, value, result)
        self.memwrites: list[tuple] = []                 # (n, va, size, data)
        self.codeobjs: list[tuple] = []                  # (n, va, size, blob, target)
        self.alloc_t: dict[int, int] = {}                # alloc/free record n -> t
        self.t_min = 0
        self.t_max = 0
        self.records_total = 0
        self.records_done = 0
        self._lock = threading.RLock()
        self._streams: OrderedDict = OrderedDict()
        self._packets: OrderedDict = OrderedDict()
        self._co_cache: dict = {}
        self._names: dict[int, str] = {}
        self._touch_cache: dict = {}
        self._families: dict = {}

    # -- opening and indexing ----------------------------------------------------------------------
    def open(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Open the trace (instant when finalized; a recovery scan otherwise)."""
        self.reader = r = TraceReader(self.path, progress=progress)
        self.records_total = len(r)
        self.t_min, self.t_max = r.t_min or 0, r.t_max or 0
        gpus = {g.get("gpu_id"): g for g in gpus_of(r.header)}
        self._gpus = gpus
        for q in r.queues:
            if type(q.get("queue_id", -1)) is not int or not all(type(q.get(k) or 0) is int
                                                                 for k in ("ring_base", "ring_size")):
                r.warnings.append(f"a queue of the index is malformed ({q!r:.80}): left out of the timeline")
                continue
            self._add_queue(q.get("queue_id", -1), q.get("engine") or "pm4", q.get("type") or "?",
                            q.get("gpu_id"), q.get("ring_base") or 0, q.get("ring_size") or 0,
                            q.get("created"), q.get("destroyed"))
        for i, a in enumerate(r.allocations):
            if not all(type(a.get(k) or 0) is int and 0 <= (a.get(k) or 0) < 1 << 64 for k in ("va", "size")):
                r.warnings.append(f"allocation {i} of the index has no usable va/size ({a.get('va')!r:.40}, "
                                  f"{a.get('size')!r:.40}): left out of the memory view")
                continue
            self.allocs.append(Alloc(len(self.allocs), a.get("handle", 0), a.get("gpu_id"), a.get("va") or 0, a.get("size") or 0,
                                     str(a.get("domain", "?")), a.get("flags") or 0, a.get("allocated"),
                                     a.get("freed"), a.get("memwrites") or 0))
        self._alloc_arrays()

    def _family(self, gpu_id):
        if gpu_id in self._families:
            return self._families[gpu_id]
        from kfdtrace.abi.families import get_family
        g = self._gpus.get(gpu_id)
        if g is None and len(self._gpus) == 1:
            g = next(iter(self._gpus.values()))
        fam = None
        for key in ((g or {}).get("gfx"), (g or {}).get("gfx_target_version")):
            if key:
                try:
                    fam = get_family(key)
                    break
                except KfdtraceError:
                    pass
        self._families[gpu_id] = fam
        return fam

    def _add_queue(self, qid, engine, qtype, gpu_id, ring_base, ring_size, created=None, destroyed=None) -> Queue:
        q = self.queues.get(qid)
        if q is None:
            engine = engine if engine in ENGINE_ID else "pm4"
            q = Queue(qid, engine, qtype, gpu_id, self._family(gpu_id), ring_base, ring_size, len(self.lanes),
                      created, destroyed)
            self.queues[qid] = q
            self.lanes.append(q.label)
        return q

    def _alloc_arrays(self) -> None:
        a = self.allocs
        self._a_va = np.array([x.va for x in a], np.uint64) if a else np.zeros(0, np.uint64)
        self._a_end = np.array([x.end for x in a], np.uint64) if a else np.zeros(0, np.uint64)

    def load(self, progress: Callable[[int, int], None] | None = None, every: int = 20_000) -> None:
        """Index every record (one pass). `progress(done, total)` is called every `every` records."""
        r = self.reader
        if r is None:
            self.open()
            r = self.reader
        total = len(r)
        self._progress = (lambda: progress(self.records_done, total)) if progress is not None else None
        try:
            self._load(r, progress, every, total)
        except TraceError as e:        # a damaged block in a finalized trace: keep what came before
            self.load_error = str(e)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, IndexError) as e:
            # a record whose fields are not what the recorder writes: keep what came before it
            self.load_error = f"record {self.records_done - 1} is malformed ({type(e).__name__}: {e})"
        self._finish()
        if progress is not None:
            progress(self.records_done, total)

    def _load(self, r: TraceReader, progress, every, total) -> None:
        cpu_app, kinds = self.cpu.append, CPU_KINDS
        t_min, t_max = None, None
        i = 0
        for rec in r.records():
            i += 1
            self.records_done = i
            k, t = rec.kind, rec.t
            if t_min is None or t < t_min:
                t_min = t
            if t_max is None or t > t_max:
                t_max = t
            f = rec.fields
            if k == "submit":
                self._add_sub(rec)
            elif k in kinds:
                if k != "signal" or f.get("queue") is None:
                    cpu_app((t, rec.n, kinds[k]))
                if k == "ioctl":
                    self.ioctls.append((rec.n, t, str(f.get("name", "?")), f.get("ret"), f.get("errno") or 0,
                                        f.get("dur_ns") or 0))
                elif k == "marker":
                    self.markers.append((rec.n, t, str(f.get("label", ""))))
                elif k == "signal":
                    self.signals.append((rec.n, t, _int(f.get("addr")), _int(f.get("value")), f.get("queue")))
                elif k == "wait":
                    self.waits.append((rec.n, t, _int(f.get("addr")), WAIT_CONDS.get(str(f.get("condition")), ">="),
                                       _int(f.get("value")), f.get("result")))
                elif k == "memwrite":
                    self.memwrites.append((rec.n, _int(f.get("va")), _int(f.get("size")), f.get("data")))
                elif k == "memwrite_runs":                  # one entry per run, bytes inline
                    try:
                        for va, data in r.memory_writes(rec):
                            self.memwrites.append((rec.n, va, len(data), data))
                    except KfdtraceError:
                        pass                                # shown as damaged in the detail pane
                elif k == "codeobj":
                    self.codeobjs.append((rec.n, _int(f.get("va")), _int(f.get("size")), f.get("blob"),
                                          str(f.get("target", ""))))
            elif k in ("alloc", "free"):
                self.alloc_t[rec.n] = t
            elif k == "queue_create" and f.get("queue_id") not in self.queues:
                self._add_queue(f.get("queue_id", -1), f.get("engine"), f.get("type", "?"), f.get("gpu_id"),
                                _int(f.get("ring_base")), _int(f.get("ring_size")), rec.n)
            if i % every == 0:
                self._flush()
                self.records_done = i
                if t_max is not None:
                    self.t_min, self.t_max = min(self.t_min, t_min), max(self.t_max, t_max)
                if progress is not None:
                    progress(i, total)
        self._flush()
        self.records_done = i
        if t_min is not None:
            self.t_min, self.t_max = min(self.t_min, t_min), max(self.t_max, t_max)

    def _add_sub(self, rec) -> None:
        """Queue a submission for the next batched boundary scan (`_flush`)."""
        f = rec.fields
        qid = f.get("queue_id", -1)
        q = self.queues.get(qid) or self._add_queue(qid, f.get("engine"), "?", f.get("gpu_id"), 0, 0)
        ibs = f.get("ibs") if isinstance(f.get("ibs"), list) else []
        s = Sub(rec.n, rec.t, qid, q.engine, _int(f.get("wptr_before")), _int(f.get("wptr_after")), f.get("dwords"),
                ibs, 0, 0, f.get("error"))
        try:
            a = self._stream_data(s, 0)[1]
        except (KfdtraceError, ValueError, TypeError) as e:
            s.error = f"cannot read the submitted bytes: {e}"
            a = np.zeros(0, np.uint32)
        self._pending.append((s, q, a))
        self._pending_dw += len(a) + 64
        if self._pending_dw >= 1 << 21:
            self._flush()

    def _flush(self) -> None:
        """Scan the pending submissions' rings in one batch per (engine, family) and publish them.

        Per-submission numpy calls would cost more than the scan itself for traces of many small
        submissions, so streams are concatenated; `scan_batch` keeps every packet inside its own
        submission. Submissions that call captured IBs are then re-spliced one by one."""
        pend, self._pending, self._pending_dw = self._pending, [], 0
        if not pend:
            return
        sub0 = len(self.subs)
        groups: dict = {}
        for j, (s, q, a) in enumerate(pend):
            if len(a):
                groups.setdefault((s.engine, id(q.family)), []).append(j)
        cols = [[] for _ in range(5)]
        for js in groups.values():
            s, q, _ = pend[js[0]]
            offs, code, ln, which, dw1 = scan_batch(s.engine, [pend[j][2] for j in js], q.family)
            for c, v in zip(cols, (offs, code, ln, np.asarray(js, np.int64)[which] + sub0, dw1)):
                c.append(v)
        if cols[0]:
            offs, code, ln, sub, dw1 = (np.concatenate(c) for c in cols)
            if len(groups) > 1:
                order = np.argsort(sub, kind="stable")
                offs, code, ln, sub, dw1 = offs[order], code[order], ln[order], sub[order], dw1[order]
        else:
            offs = code = ln = sub = np.zeros(0, np.int64)
            dw1 = np.zeros(0, np.uint32)
        stream = np.zeros(len(offs), np.int16)
        depth = np.zeros(len(offs), np.int8)
        cols = [offs, stream, ln, code, sub, depth, dw1]
        special = [j for j, (s, q, a) in enumerate(pend) if s.ibs]
        if special:
            bounds = np.searchsorted(sub, np.arange(sub0, sub0 + len(pend) + 1))
            if any(np.isin(code[bounds[j]:bounds[j + 1]] & ~TRUNC, _IB_CODES).any() for j in special):
                segs, prev = [], 0
                for j in special:
                    lo, hi = bounds[j], bounds[j + 1]
                    if not np.isin(code[lo:hi] & ~TRUNC, _IB_CODES).any():
                        continue
                    s, q, a = pend[j]
                    segs.append([c[prev:lo] for c in cols])
                    o, c_, l_, st, dp, d1 = self._splice_ibs(s, q, a, s.engine, offs[lo:hi], code[lo:hi],
                                                             ln[lo:hi], 0, 0)
                    segs.append([o, st, l_, c_, np.full(len(o), sub0 + j, np.int64), dp, d1])
                    prev = hi
                segs.append([c[prev:] for c in cols])
                cols = [np.concatenate([sg[i] for sg in segs]) for i in range(7)]
        part = (cols[0].astype(np.int32), cols[1].astype(np.int16), cols[2].astype(np.int32),
                cols[3].astype(np.int32), cols[4].astype(np.int32), cols[5].astype(np.int8),
                cols[6].astype(np.uint32))
        counts = np.bincount(part[4] - sub0, minlength=len(pend)).tolist() if len(part[4]) else [0] * len(pend)
        with self._lock:
            first = self.n_packets
            for (s, q, a), c in zip(pend, counts):
                s.first, s.count = first, c
                first += c
            self.subs.extend(p[0] for p in pend)
            if len(part[0]):
                self._parts.append(part)
                self._firsts.append(self.n_packets)
            self.n_packets = first
        if self._progress is not None and not self.loaded:
            self._progress()

    def _stream_data(self, s: Sub, k: int) -> tuple[str, np.ndarray, int | None]:
        """(engine, dwords, IB address) of stream k of a submission: 0 = ring bytes, k = ibs[k-1]."""
        r = self.reader
        if k == 0:
            data = r.resolve(s.dwords) if s.dwords is not None else b""
            return s.engine, as_u32(data), None
        ib = s.ibs[k - 1]
        blob = ib.get("blob") if isinstance(ib, dict) else None
        data = r.resolve(blob) if blob is not None else b""
        return s.ib_engine.get(k - 1, "pm4"), as_u32(data), _int(ib.get("addr"))

    def _splice_ibs(self, s, q, a, engine, offs, code, ln, k, depth):
        """Rows of stream k with the rows of every captured IB it calls inserted after the caller."""
        segs = []
        hits = np.flatnonzero(np.isin(code & ~TRUNC, _IB_CODES))
        prev = 0
        base = (offs, code, ln, np.full(len(offs), k, np.int16), np.full(len(offs), depth, np.int8), _dw1(a, offs))
        for j in hits.tolist():
            segs.append(tuple(x[prev:j + 1] for x in base))
            prev = j + 1
            pkt = _decode(engine, a, int(offs[j]), q.family)
            for kind, addr, size in pkt.refs:
                kk = _find_ib(s.ibs, addr)
                if kk is None or depth >= 4:
                    continue
                s.ib_engine[kk] = "sdma" if kind == "sdma_ib" else "pm4"
                ieng, ia, _ = self._stream_data(s, kk + 1)
                ia = ia[:size] if size else ia
                io, ic, il = scan_stream(ieng, ia, q.family)
                segs.append(self._splice_ibs(s, q, ia, ieng, io, ic, il, kk + 1, depth + 1))
        segs.append(tuple(x[prev:] for x in base))
        return tuple(np.concatenate([sg[i] for sg in segs]) for i in range(6))

    def _finish(self) -> None:
        with self._lock:
            parts = self._parts
            if parts:
                cat = [np.concatenate([p[i] for p in parts]) for i in range(7)]
            else:
                cat = [np.zeros(0, dt) for dt in (np.int32, np.int16, np.int32, np.int32, np.int32, np.int8, np.uint32)]
            self.p_off, self.p_stream, self.p_len, self.p_code, self.p_sub, self.p_depth, self.p_dw1 = cat
            self._parts = []
            self.sub_t = np.array([s.t for s in self.subs], np.int64)
            self.sub_n = np.array([s.n for s in self.subs], np.int64)
            self.sub_first = np.array(self._firsts, np.int64)
            self.sub_lane = np.array([self.queues[s.qid].lane for s in self.subs], np.int32)
            self.sub_engine = np.array([ENGINE_ID.get(s.engine, 1) for s in self.subs], np.int8)
            for s in self.subs:
                self.queues[s.qid].submits += 1
            cpu = np.array(self.cpu, np.int64).reshape(-1, 3)
            order = np.argsort(cpu[:, 0], kind="stable")
            self.cpu_t, self.cpu_n, self.cpu_kind = cpu[order, 0], cpu[order, 1], cpu[order, 2]
            mw = self.memwrites
            self.mw_n = np.array([m[0] for m in mw], np.int64)
            self.mw_va = np.array([m[1] for m in mw], np.uint64)
            self.mw_end = self.mw_va + np.array([m[2] for m in mw], np.uint64)
            self._wait_by_n = {w[0]: w for w in self.waits}
            self._signal_by_n = {sg[0]: sg for sg in self.signals}
            self.loaded = True

    # -- packets ------------------------------------------------------------------------------------
    def _cache_stream(self, key, value) -> None:
        with self._lock:
            self._streams[key] = value
            while len(self._streams) > 256:
                self._streams.popitem(last=False)

    def stream(self, sub: int, k: int) -> tuple[str, np.ndarray, int | None]:
        key = (sub, k)
        with self._lock:
            v = self._streams.get(key)
            if v is not None:
                self._streams.move_to_end(key)
                return v
        v = self._stream_data(self.subs[sub], k)
        self._cache_stream(key, v)
        return v

    def loc(self, i: int) -> tuple[int, int, int, int, int, int]:
        """(submission, stream, dword offset, length, code, depth) of packet i."""
        if self.loaded:
            return (int(self.p_sub[i]), int(self.p_stream[i]), int(self.p_off[i]), int(self.p_len[i]),
                    int(self.p_code[i]), int(self.p_depth[i]))
        with self._lock:
            b = bisect.bisect_right(self._firsts, i) - 1
            part, j = self._parts[b], i - self._firsts[b]
        return int(part[4][j]), int(part[1][j]), int(part[0][j]), int(part[2][j]), int(part[3][j]), int(part[5][j])

    def sub_of(self, i: int) -> int:
        return self.loc(i)[0]

    def packet(self, i: int) -> Packet:
        """Packet i, decoded (cached)."""
        with self._lock:
            p = self._packets.get(i)
            if p is not None:
                return p
        s, k, off, _, _, _ = self.loc(i)
        engine, a, _ = self.stream(s, k)
        p = _decode(engine, a, off, self.queues[self.subs[s].qid].family)
        with self._lock:
            self._packets[i] = p
            while len(self._packets) > 4096:
                self._packets.popitem(last=False)
        return p

    def family_of(self, i: int):
        return self.queues[self.subs[self.sub_of(i)].qid].family

    def where(self, i: int) -> str:
        """Where packet i sits: its byte offset in the ring, or in the IB that holds it."""
        s, k, off, _, _, _ = self.loc(i)
        sub = self.subs[s]
        if k:
            return f"ib+{off * 4:#x}"
        q = self.queues[sub.qid]
        pos = sub.wptr_before * UNIT.get(sub.engine, 4) + off * 4
        return f"{pos % q.ring_size if q.ring_size else pos:#07x}"

    def name_of_code(self, code: int) -> str:
        """The packet name for a code (from the first packet that has it)."""
        if code & TRUNC:
            return "TRUNCATED"
        name = self._names.get(code)
        if name is None:
            eng = ENGINE_NAME.get(code >> 24)
            low = code & 0xFFFFFF
            if eng == "pm4":
                name = pm4.OPCODES.get(low, "UNKNOWN") if low < 0x100 else \
                    {0x100: "TYPE0", 0x102: "TYPE2_NOP"}.get(low, "UNKNOWN")
            elif eng == "aql":
                name = aql.TYPES.get(low & 0xFF, "UNKNOWN") if low & 0xFF else \
                    aql.FORMATS.get(low >> 8, "VENDOR_SPECIFIC")
            else:
                hit = np.flatnonzero(self.p_code == code) if self.loaded else []
                name = self.packet(int(hit[0])).name if len(hit) else sdma.OPS.get(low & 0xFF, "UNKNOWN")
            self._names[code] = name
        return name

    def kinds(self) -> dict[str, int]:
        """Packet name → count (the filter dialog's choices)."""
        codes, counts = np.unique(self.p_code, return_counts=True)
        out: dict[str, int] = {}
        for c, k in zip(codes.tolist(), counts.tolist()):
            nm = self.name_of_code(c)
            out[nm] = out.get(nm, 0) + k
        return dict(sorted(out.items()))

    def codes_named(self, names) -> np.ndarray:
        """Codes whose packet name equals (or, for a name that is no exact one, contains) one of `names`."""
        codes = np.unique(self.p_code).tolist()
        all_names = {c: self.name_of_code(c) for c in codes}
        exact = {n.upper() for n in names} & set(all_names.values())
        out = []
        for c, nm in all_names.items():
            for want in names:
                w = want.upper()
                if nm == w or (w not in exact and w in nm):
                    out.append(c)
                    break
        return np.array(out, np.int64)

    # -- filtering ------------------------------------------------------------------------------------
    def rows(self, flt: Filter | None) -> np.ndarray | None:
        """Global packet indices that pass the filter, in order (None: every packet)."""
        if flt is None or not flt.active:
            return None
        ok_sub = np.ones(len(self.subs), bool)
        if flt.queues is not None:
            ok_sub &= np.isin(np.array([s.qid for s in self.subs]), list(flt.queues))
        if flt.engines is not None:
            ok_sub &= np.isin(self.sub_engine, [ENGINE_ID.get(e, 0) for e in flt.engines])
        if flt.t0 is not None:
            ok_sub &= self.sub_t >= flt.t0
        if flt.t1 is not None:
            ok_sub &= self.sub_t <= flt.t1
        mask = ok_sub[self.p_sub]
        if flt.names is not None:
            mask &= np.isin(self.p_code, self.codes_named(flt.names))
        return np.flatnonzero(mask)

    # -- lookups --------------------------------------------------------------------------------------
    def alloc_at(self, addr: int, n: int | None = None) -> Alloc | None:
        """The allocation holding `addr` (live at record n when given; else any)."""
        if not self.allocs or addr <= 0 or addr >= 1 << 64:
            return None
        hit = np.flatnonzero((self._a_va <= np.uint64(addr)) & (np.uint64(addr) < self._a_end))
        best = None
        for j in hit.tolist():
            a = self.allocs[j]
            live = n is None or ((a.allocated is None or a.allocated <= n) and (a.freed is None or n < a.freed))
            if live:
                return a
            best = best or a
        return best

    def alloc_note(self, addr: int, n: int | None = None) -> tuple[str, Target | None]:
        a = self.alloc_at(addr, n)
        if a is None:
            return "", None
        off = addr - a.va
        return (f"{a.domain} {fmt_size(a.size)} @ {a.va:#x}" + (f" +{off:#x}" if off else "")), Target("alloc", a.index)

    def memory(self, addr: int, size: int, before_n: int) -> bytes | None:
        """The bytes at [addr, addr+size) as the CPU last wrote them before record `before_n`
        (memwrites applied in order), or None if no memwrite covered all of them."""
        if not len(self.memwrites):
            return None
        hit = np.flatnonzero((self.mw_va < np.uint64(addr + size)) & (self.mw_end > np.uint64(addr))
                             & (self.mw_n < before_n))
        if not len(hit):
            return None
        buf = bytearray(size)
        have = np.zeros(size, bool)
        for j in hit.tolist():
            _, va, sz, data = self.memwrites[j]
            try:
                raw = self.reader.resolve(data)
            except (KfdtraceError, TypeError):
                continue
            lo, hi = max(addr, va), min(addr + size, va + len(raw))
            if lo < hi:
                buf[lo - addr:hi - addr] = raw[lo - va:hi - va]
                have[lo - addr:hi - addr] = True
        return bytes(buf) if have.all() else None

    def record(self, n: int):
        return self.reader.record(n)

    def sub_at_time(self, t: int) -> int:
        """Index of the first submission at or after t (clamped)."""
        s = int(np.searchsorted(self.sub_t, t)) if self.loaded else 0
        return min(s, len(self.subs) - 1)

    def packet_at_record(self, n: int) -> int | None:
        """The first packet of the submission record n (None if n is no submission)."""
        s = int(np.searchsorted(self.sub_n, n))
        if s < len(self.subs) and self.subs[s].n == n and self.subs[s].count:
            return self.subs[s].first
        return None

    def time_of(self, tgt: Target) -> int | None:
        if tgt.kind == "packet":
            return self.subs[self.sub_of(tgt.index)].t
        if tgt.kind == "record":
            try:
                return self.record(tgt.index).t
            except (IndexError, KfdtraceError):
                return None
        return None

    # -- markers -------------------------------------------------------------------------------------
    def marker_after(self, t: int, n: int, backward: bool = False) -> tuple | None:
        """The next (or previous) marker relative to the position (t, n)."""
        ms = self.markers
        if backward:
            cands = [m for m in ms if (m[1], m[0]) < (t, n)]
            return cands[-1] if cands else None
        for m in ms:
            if (m[1], m[0]) > (t, n):
                return m
        return None

    # -- code objects and dispatches ---------------------------------------------------------------------
    def codeobject_at(self, addr: int, before_n: int):
        """(CodeObject, load base) of the latest recorded code object whose image holds `addr`."""
        for n, va, size, blob, target in reversed(self.codeobjs):
            if n < before_n and va <= addr < va + max(size, 1):
                key = (n, va)
                co = self._co_cache.get(key)
                if co is None:
                    from kfdtrace.codeobj import CodeObject
                    try:
                        co = CodeObject.from_bytes(self.reader.resolve(blob), source=f"codeobj record {n}")
                    except KfdtraceError as e:
                        co = e
                    self._co_cache[key] = co
                return co, va
        return None, None

    def sh_state(self, i: int, limit: int = 20_000) -> dict[int, int]:
        """SH register values in effect at packet i: the latest SET_SH_REG of each register on the
        same queue, searched backwards up to `limit` packets."""
        s = self.sub_of(i)
        lane = self.queues[self.subs[s].qid].lane
        regs: dict[int, int] = {}
        j = i - 1
        lo = max(0, i - limit)
        set_sh = 1 << 24 | 0x76
        while j >= lo:
            sj = self.sub_of(j)
            if self.queues[self.subs[sj].qid].lane != lane:
                j = self.subs[sj].first - 1
                continue
            if self.loc(j)[4] == set_sh:
                p = self.packet(j)
                base = p.fields.get("reg")
                for k, v in enumerate(p.fields.get("values") or []):
                    regs.setdefault(base + k, v)
            j -= 1
        return regs

    def dispatch_info(self, i: int) -> dict | None:
        """Kernel, kernarg address and code address of a dispatch packet (PM4 DISPATCH_DIRECT or
        AQL KERNEL_DISPATCH), resolved through the recorded code objects."""
        p = self.packet(i)
        sub = self.subs[self.sub_of(i)]
        info: dict = {"kernel": None, "base": None, "co": None, "kernarg": None, "code": None, "error": None}
        if p.name == "KERNEL_DISPATCH":
            kd = p.fields.get("kernel_object", 0)
            co, base = self.codeobject_at(kd, sub.n)
            info["kernarg"] = p.fields.get("kernarg_address")
            if isinstance(co, KfdtraceError):
                info["error"] = str(co)
            elif co is not None:
                k = co.kernel_by_descriptor(kd, base)
                info.update(kernel=k, base=base, co=co, code=None if k is None else base + k.code_vaddr)
            return info
        if p.name not in ("DISPATCH_DIRECT", "DISPATCH_INDIRECT"):
            return None
        regs = self.sh_state(i)
        lo_a, hi_a = registers.reg_addr("COMPUTE_PGM_LO"), registers.reg_addr("COMPUTE_PGM_HI")
        if lo_a not in regs:
            info["error"] = "no COMPUTE_PGM_LO set on this queue before the dispatch"
            return info
        code = (regs[lo_a] | (regs.get(hi_a, 0) & 0xFF) << 32) << 8
        info["code"] = code
        co, base = self.codeobject_at(code, sub.n)
        if isinstance(co, KfdtraceError):
            info["error"] = str(co)
            return info
        if co is None:
            info["error"] = f"no recorded code object holds {code:#x}"
            return info
        k = co.kernel_at(code, base)
        info.update(kernel=k, base=base, co=co)
        if k is not None:
            ud0 = registers.reg_addr("COMPUTE_USER_DATA_0")
            for name, sgpr, count in k.descriptor.user_sgprs():
                if name == "kernarg_segment_ptr" and ud0 + sgpr in regs:
                    info["kernarg"] = regs[ud0 + sgpr] | regs.get(ud0 + sgpr + 1, 0) << 32
        info["regs"] = regs
        return info

    def kernel_args(self, kernel, kernarg: int | None, before_n: int) -> list[tuple[str, str, str, Target | None]]:
        """[(name, type, value, link)] of a kernel's arguments read from the recorded kernarg memory."""
        data = self.memory(kernarg, kernel.kernarg_size, before_n) if kernarg else None
        out = []
        for a in kernel.args:
            label = a.name or a.value_kind
            raw = data[a.offset:a.offset + a.size] if data is not None else None
            link = None
            if raw is None or len(raw) != a.size:
                val = "?"
            else:
                v = int.from_bytes(raw, "little")
                t = (a.type_name or "").rstrip()
                if a.value_kind in ("global_buffer", "dynamic_shared_pointer") or t.endswith("*"):
                    note, link = self.alloc_note(v, before_n)
                    val = f"{v:#x}" + (f"  → {note}" if note else "")
                elif t in ("float", "double") and a.size in (4, 8):
                    val = repr(struct.unpack("<f" if a.size == 4 else "<d", raw)[0])
                elif t.startswith(("int", "long", "short", "char")) and v >> (8 * a.size - 1):
                    val = str(v - (1 << 8 * a.size))
                else:
                    val = str(v) if v < 0x10000 else f"{v:#x}"
            out.append((label, a.type_name or a.value_kind, val, link))
        return out

    # -- detail views ------------------------------------------------------------------------------------
    def packet_detail(self, i: int, disasm_lines: int = 400) -> list[Section]:
        p = self.packet(i)
        s_idx, k, off, ln, code, depth = self.loc(i)
        sub = self.subs[s_idx]
        q = self.queues[sub.qid]
        fam = q.family
        head = Section(f"{p.name}  (packet {i})")
        head.add("queue", q.label, f"{q.type}, gpu {q.gpu_id}")
        head.add("submission", f"#{s_idx} (record {sub.n})", f"at {fmt_t(sub.t)}", Target("record", sub.n))
        head.add("offset", self.where(i), f"dword {off} of stream {k}" + (f", depth {depth}" if depth else ""))
        head.add("length", f"{ln} dwords")
        if p.error:
            head.add("error", p.error, style="error")
        if sub.error:
            head.add("submission error", str(sub.error), style="error")
        out = [head]
        if self.report is not None:
            items = self.report.items_for(self, i)
            if items:
                out.append(_report_section(items))
        fields = Section("fields")
        vals = dict(p.fields)
        if p.name.startswith("SET_") and "reg" in vals:
            base = vals.pop("reg")
            values = list(vals.pop("values", []))
            vals.pop("reg_offset", None)
            for kk, v in vals.items():
                fields.add(kk, fmt_value(v))
            for j, v in enumerate(values):
                addr = base + j
                name = registers.reg_name(addr, fam) if _fam_ok(fam) else registers.reg_name(addr)
                note, link = "", None
                if j + 1 < len(values):
                    pair = v | values[j + 1] << 32
                    note, link = self.alloc_note(pair, sub.n)
                    if note:
                        note = f"{{{name or hex(addr)}, next}} = {pair:#x} → {note}"
                fields.add(name or f"reg[{addr:#x}]", f"{v:#010x}", note, link)
        else:
            for kk, v in vals.items():
                if isinstance(v, (list, tuple)):
                    fields.add(kk, fmt_value(list(v)) if len(v) <= 8 else f"[{len(v)} values]")
                    if len(v) > 8 or kk in ("dep_signal", "arg"):
                        for j, x in enumerate(v[:64]):
                            note, link = self.alloc_note(x, sub.n) if x >= 0x10000 else ("", None)
                            fields.add(f"  [{j}]", fmt_value(x), note, link)
                    continue
                note, link = ("", None)
                if isinstance(v, int) and v >= 0x10000:
                    note, link = self.alloc_note(v, sub.n)
                fields.add(kk, fmt_value(v), note, link)
        for kind, addr, size in p.refs:
            note, link = self.alloc_note(addr, sub.n)
            fields.add(f"→ {kind}", f"{addr:#x} + {size} dwords", note, link)
        out.append(fields)
        sync = self.sync_point(Target("packet", i))
        if sync is not None:
            sec = Section("synchronization")
            if sync.cond:
                sec.add("waits for", f"*{sync.addr:#x} {sync.cond} {sync.value:#x}",
                        "" if sync.mask in (0xFFFFFFFF, 0xFFFF_FFFF_FFFF_FFFF) else f"mask {sync.mask:#x}")
                sec.add("", "w: jump to the signal that satisfies it", style="dim")
            else:
                sec.add("writes", f"{sync.value:#x} to {sync.addr:#x}")
                sec.add("", "w: jump to the wait it releases", style="dim")
            out.append(sec)
        if p.name in ("DISPATCH_DIRECT", "DISPATCH_INDIRECT", "KERNEL_DISPATCH"):
            out += self._dispatch_sections(i, sub, fam, disasm_lines)
        raw = Section("raw dwords")
        words = list(p.raw)
        for j in range(0, len(words), 4):
            raw.add(f"{j:3d}", " ".join(f"{w:08x}" for w in words[j:j + 4]), style="raw")
        out.append(raw)
        return out

    def _dispatch_sections(self, i, sub, fam, disasm_lines) -> list[Section]:
        info = self.dispatch_info(i)
        sec = Section("kernel")
        if info is None:
            return []
        out = [sec]
        if info.get("code") is not None:
            sec.add("code address", f"{info['code']:#x}")
        k = info.get("kernel")
        if info.get("error"):
            sec.add("", info["error"], style="error")
        if k is None:
            if not info.get("error"):
                sec.add("", "no kernel of the recorded code objects starts there", style="error")
            return out
        sec.add("kernel", k.name, f"{info['co'].target} code object at {info['base']:#x}")
        sec.add("descriptor", f"{info['base'] + k.descriptor_vaddr:#x}",
                f"sgprs {k.sgpr_count} vgprs {k.vgpr_count} wave{k.wavefront_size} lds {k.group_segment_fixed_size}")
        if info.get("kernarg") is not None:
            note, link = self.alloc_note(info["kernarg"], sub.n)
            sec.add("kernarg", f"{info['kernarg']:#x}", note, link)
        args = Section(f"arguments of {k.name}")
        hidden: dict[str, list[str]] = {}
        for name, typ, val, link in self.kernel_args(k, info.get("kernarg"), sub.n):
            if name.startswith("hidden_"):           # implicit arguments: one compact line
                stem = name[7:]
                key = stem[:-2] if stem[-2:] in ("_x", "_y", "_z") else stem
                hidden.setdefault(key, []).append(val)
            else:
                args.add(name, val, typ, link)
        if hidden:
            args.add("hidden", " ".join(f"{k}={','.join(v)}" for k, v in hidden.items()), style="dim")
        out.append(args)
        dis = Section(f"disassembly of {k.name}")
        try:
            from kfdtrace.emu.isa.disasm import disassemble_kernel
        except ImportError:
            dis.add("", "no disassembler in this kfdtrace (kfdtrace.emu.isa)", style="dim")
        else:
            try:
                parts = disassemble_kernel(info["co"], k.name)
                total, count = sum(len(x[2]) for x in parts), 0
                for label, addr, lines in parts:
                    if count >= disasm_lines:
                        break
                    dis.add(f"{label}:", f"{info['base'] + addr:#x}", style="label")
                    for line in lines[:disasm_lines - count]:
                        dis.add("", f"{info['base'] + line.address:#x}  {line.text}", style="asm")
                        count += 1
                if count < total:
                    dis.add("…", f"{total - count} more instructions", style="dim")
            except Exception as e:   # noqa: BLE001 - a disassembler failure must not break the view
                dis.add("", f"cannot disassemble: {e}", style="error")
        out.append(dis)
        return out

    def record_detail(self, n: int) -> list[Section]:
        try:
            rec = self.record(n)
        except (IndexError, KfdtraceError) as e:
            return [Section(f"record {n}", [Line("error", str(e), style="error")])]
        head = Section(f"{rec.kind}  (record {n})")
        head.add("time", fmt_t(rec.t), f"thread {rec.tid}")
        out = [head]
        f = rec.fields
        if rec.kind == "ioctl":
            out += self._ioctl_sections(rec)
        else:
            sec = Section("fields")
            for k, v in f.items():
                if isinstance(v, BlobRef):
                    sec.add(k, f"blob {v.hex()[:12]}…")
                elif isinstance(v, (bytes, bytearray)):
                    sec.add(k, v[:32].hex() + ("…" if len(v) > 32 else ""), f"{len(v)} bytes")
                elif isinstance(v, int) and not isinstance(v, bool) and v >= 0x10000:
                    note, link = self.alloc_note(v, n)
                    sec.add(k, f"{v:#x}", note, link)
                else:
                    sec.add(k, str(v))
            out.append(sec)
            if rec.kind == "submit":
                i = self.packet_at_record(n)
                if i is not None:
                    sec.add("packets", f"{self.subs[self.sub_of(i)].count}", "first packet", Target("packet", i))
        sync = self.sync_point(Target("record", n))
        if sync is not None:
            sec = Section("synchronization")
            if sync.cond:
                sec.add("waits for", f"*{sync.addr:#x} {sync.cond} {sync.value:#x}", "w: jump to its signal")
            else:
                sec.add("signals", f"{sync.value:#x} at {sync.addr:#x}", "w: jump to the wait it releases")
            out.append(sec)
        if self.report is not None:
            items = self.report.items_for_record(n)
            if items:
                out.insert(1, _report_section(items))
        return out

    def _ioctl_sections(self, rec) -> list[Section]:
        f = rec.fields
        sec = Section(str(f.get("name", "ioctl")))
        err = f.get("errno") or 0
        sec.add("result", f"ret {f.get('ret')}" + (f", errno {err}" if err else ""),
                f"{(f.get('dur_ns') or 0) / 1e3:.1f} µs", style="error" if err else "")
        sec.add("request", f"{_int(f.get('request')):#010x}", f"fd {f.get('fd')}")
        out = [sec]
        try:
            din = abi.decode_ioctl(_int(f.get("request")), bytes(f.get("arg_in") or b""))
            dout = abi.decode_ioctl(_int(f.get("request")), bytes(f.get("arg_out") or b""))
        except (KfdtraceError, ValueError, TypeError) as e:
            out.append(Section("arguments", [Line("", f"cannot decode: {e}", style="error")]))
            return out
        args = Section(f"arguments ({din.get('size')} bytes)")
        syms = {**din.get("symbols", {}), **dout.get("symbols", {})}
        if "fields" not in din:
            args.add("raw", str(din.get("raw", "")))
        else:
            for path, vin, vout in _flat_pairs(din["fields"], dout.get("fields", {})):
                note = syms.get(path, "")
                link = None
                if isinstance(vout, int) and vout >= 0x10000 and not note:
                    note, link = self.alloc_note(vout, rec.n)
                if vin == vout:
                    args.add(path, _fmt_arg(vin), note, link)
                else:
                    args.add(path, f"{_fmt_arg(vin)} → {_fmt_arg(vout)}", note, link, style="changed")
        for note in din.get("notes", []) + dout.get("notes", []):
            args.add("note", note, style="dim")
        out.append(args)
        for pl in f.get("payloads") or []:
            ps = Section(f"payload {pl.get('field')} @ {_int(pl.get('addr')):#x}")
            for key in ("data_in", "data_out"):
                d = pl.get(key)
                if d is None:
                    continue
                try:
                    raw = self.reader.resolve(d)
                except KfdtraceError as e:
                    ps.add(key, str(e), style="error")
                    continue
                ps.add(key, raw[:64].hex(" ", 4) + (" …" if len(raw) > 64 else ""), f"{len(raw)} bytes")
            out.append(ps)
        return out

    def alloc_detail(self, idx: int, limit: int = 200) -> list[Section]:
        a = self.allocs[idx]
        head = Section(f"allocation {a.handle:#x}")
        head.add("VA range", f"{a.va:#x} – {a.end:#x}", fmt_size(a.size))
        head.add("domain", a.domain, f"gpu {a.gpu_id}")
        head.add("flags", f"{a.flags:#x}", abi.enum_text(abi.AllocFlags, a.flags))
        t_alloc = self.time_of(Target("record", a.allocated)) if a.allocated is not None else None
        head.add("allocated", f"record {a.allocated}", fmt_t(t_alloc),
                 Target("record", a.allocated) if a.allocated is not None else None)
        if a.freed is not None:
            head.add("freed", f"record {a.freed}", fmt_t(self.time_of(Target("record", a.freed))),
                     Target("record", a.freed))
        else:
            head.add("freed", "never (live at the end of the trace)")
        out = [head]
        rings = [q for q in self.queues.values() if q.ring_base and a.va <= q.ring_base < a.end]
        for q in rings:
            head.add("ring of", q.label, f"{q.submits} submissions")
        mws = [m for m in self.memwrites if a.va <= m[1] < a.end]
        sec = Section(f"CPU writes ({len(mws)})")
        for n, va, size, _ in mws[:limit]:
            sec.add(f"record {n}", f"{va:#x} +{va - a.va:#x}", fmt_size(size), Target("record", n))
        out.append(sec)
        subs = self.touching(idx)
        sec = Section(f"submissions whose packets reference it ({len(subs)})")
        for s in subs[:limit]:
            sub = self.subs[s]
            sec.add(f"#{s}", self.queues[sub.qid].label, fmt_t(sub.t),
                    Target("packet", sub.first) if sub.count else Target("record", sub.n))
        if len(subs) > limit:
            sec.add("…", f"{len(subs) - limit} more")
        out.append(sec)
        return out

    def touching(self, idx: int) -> list[int]:
        """Submissions with a packet holding an address inside allocation idx (a 48-bit address
        in two consecutive dwords, low then high — how every packet table stores one), or whose
        ring the allocation is."""
        hit = self._touch_cache.get(idx)
        if hit is not None:
            return hit
        a = self.allocs[idx]
        lo, hi = np.uint64(a.va), np.uint64(a.end)
        out = []
        for s, sub in enumerate(self.subs):
            q = self.queues[sub.qid]
            if q.ring_base and a.va <= q.ring_base < a.end:
                out.append(s)
                continue
            for k in range(1 + len(sub.ibs)):
                _, d, ibaddr = self.stream(s, k)
                if ibaddr is not None and a.va <= ibaddr < a.end:
                    out.append(s)
                    break
                if len(d) < 2:
                    continue
                q64 = d[:-1].astype(np.uint64) | ((d[1:].astype(np.uint64) & np.uint64(0xFFFF)) << np.uint64(32))
                if ((q64 >= lo) & (q64 < hi)).any():
                    out.append(s)
                    break
        self._touch_cache[idx] = out
        return out

    # -- wait / signal ----------------------------------------------------------------------------------
    def sync_point(self, tgt: Target) -> SyncPoint | None:
        """The wait or signal a packet or record is, if any."""
        if tgt.kind == "packet":
            i = tgt.index
            s = self.sub_of(i)
            eng = ENGINE_NAME.get(self.loc(i)[4] >> 24)
            p = self.packet(i)
            pts = _packet_sync(eng, p, Target("packet", i), (self.subs[s].n, i))
            return pts[0] if pts else None
        if tgt.kind == "record":
            n = tgt.index
            w = self._wait_by_n.get(n)
            if w is not None:
                return SyncPoint(tgt, (n, -1), w[2], w[4], cond=w[3], what="CPU wait")
            sg = self._signal_by_n.get(n)
            if sg is not None:
                return SyncPoint(tgt, (n, -1), sg[2], sg[3], what="signal record")
        return None

    def _sync_iter(self, addr: int, writers: bool) -> Iterator[SyncPoint]:
        """Writers (or waiters) of `addr` in trace order: signal/wait records merged with the packets
        that write or poll it. Candidate packets are those of a writing/polling kind whose raw
        dwords hold the address's low dword (or, for AQL barriers, the signal object's), so only
        they are decoded; the iteration stops when the caller has what it needs."""
        if writers:
            recs = [SyncPoint(Target("record", n), (n, -1), a, v, what="signal record")
                    for n, t, a, v, qid in self.signals if a == addr]
        else:
            recs = [SyncPoint(Target("record", n), (n, -1), a, v, cond=cond, what="CPU wait")
                    for n, t, a, cond, v, res in self.waits if a == addr]
        codes = _WRITER_CODES if writers else _WAITER_CODES
        lo, sig_lo, hi16 = addr & 0xFFFF_FFFF, (addr - 8) & 0xFFFF_FFFF, (addr >> 32) & 0xFFFF
        ri = 0
        for s, sub in enumerate(self.subs):
            while ri < len(recs) and recs[ri].order < (sub.n, -1):
                yield recs[ri]
                ri += 1
            if not sub.count:
                continue
            sel = np.isin(self.p_code[sub.first:sub.first + sub.count], codes)
            if not sel.any():
                continue
            wanted = set((np.flatnonzero(sel) + sub.first).tolist())
            cands: list[int] = []
            for k in range(1 + len(sub.ibs)):
                eng, d, _ = self.stream(s, k)
                if len(d) < 2:
                    continue
                nxt = (d[1:] & 0xFFFF) == hi16
                pos = np.flatnonzero((((d[:-1] & 0xFFFF_FFFC) == (lo & 0xFFFF_FFFC)) | (d[:-1] == sig_lo)) & nxt)
                if len(pos):
                    cands += [i for i in self._packets_at(s, k, pos) if i in wanted]
            for i in sorted(cands):
                p = self.packet(i)
                for sp in _packet_sync(ENGINE_NAME.get(int(self.p_code[i]) >> 24), p, Target("packet", i), (sub.n, i)):
                    if sp.addr == addr and bool(sp.cond) != writers:
                        yield sp
        yield from recs[ri:]

    def _packets_at(self, s: int, k: int, pos: np.ndarray) -> list[int]:
        """Global indices of the packets of stream k of submission s that contain dword positions."""
        sub = self.subs[s]
        lo, hi = sub.first, sub.first + sub.count
        sel = np.arange(lo, hi)[self.p_stream[lo:hi] == k]
        if not len(sel):
            return []
        j = np.searchsorted(self.p_off[sel], pos, side="right") - 1
        return sorted(set(sel[j[j >= 0]].tolist()))

    def jump_sync(self, tgt: Target) -> tuple[Target | None, str]:
        """From a wait: the first write (in trace order) whose value satisfies it. From a write:
        the first wait it satisfies that no earlier write already satisfied. (target, message)."""
        if not self.loaded:
            return None, "still indexing the trace"
        sp = self.sync_point(tgt)
        if sp is None:
            return None, "not a wait or a signal (WAIT_REG_MEM, POLL_REGMEM, BARRIER_*, RELEASE_MEM, FENCE, " \
                         "WRITE_DATA, SDMA WRITE, wait/signal records)"
        if sp.cond:
            seen: list[int] = []
            for w in self._sync_iter(sp.addr, True):
                if sp.satisfied_by(w.value):
                    return w.target, f"{w.what or w.target} writes {w.value:#x} to {sp.addr:#x}, satisfying " \
                                     f"{sp.cond} {sp.value:#x}"
                seen = (seen + [w.value])[-4:]
            return None, f"no recorded signal satisfies *{sp.addr:#x} {sp.cond} {sp.value:#x} " \
                         f"(last values written: {', '.join(hex(v) for v in seen) or 'none'}) — this wait would hang"
        earlier = []             # earlier writes of other values (an equal one is this signal's packet)
        for w in self._sync_iter(sp.addr, True):
            if w.order >= sp.order:
                break
            if w.value != sp.value:
                earlier.append(w.value)
        fallback = None
        for wt in self._sync_iter(sp.addr, False):
            if wt.satisfied_by(sp.value):
                if not any(wt.satisfied_by(v) for v in earlier):
                    return wt.target, f"{wt.what or wt.target} waits for {wt.cond} {wt.value:#x} at {sp.addr:#x}"
                fallback = fallback or wt
        if fallback is not None:
            return fallback.target, f"{fallback.what} waits for {fallback.cond} {fallback.value:#x} at " \
                                    f"{sp.addr:#x} (an earlier write already satisfied it)"
        return None, f"no recorded wait on {sp.addr:#x} is satisfied by {sp.value:#x}"

    # -- search ----------------------------------------------------------------------------------------------
    def parse_query(self, text: str) -> dict:
        """'/' queries: `name:X` / `reg:X` / `addr:X` / `value:X`, or bare: a number is a value, a
        known register name is a register, anything else a packet-name substring."""
        text = text.strip()
        kind, _, arg = text.partition(":")
        kind = kind.lower()
        if kind not in ("name", "reg", "addr", "value") or not arg:
            kind, arg = "", text
        if not kind:
            if parse_int(arg) is not None:
                kind = "value"
            else:
                try:
                    registers.reg_addr(arg, self._any_family())
                    kind = "reg"
                except KfdtraceError:
                    kind = "name"
        q: dict = {"kind": kind, "text": arg}
        if kind in ("value", "addr"):
            v = parse_int(arg)
            if v is None:
                raise ValueError(f"{kind} search needs a number, got {arg!r}")
            q["value"] = v
            if kind == "addr":
                a = self.alloc_at(v)
                q["range"] = (a.va, a.end) if a is not None else (v, v + 1)
        elif kind == "reg":
            q["reg"] = registers.reg_addr(arg, self._any_family())
        return q

    def _any_family(self):
        for q in self.queues.values():
            if _fam_ok(q.family):
                return q.family
        return None

    def search_mask(self, q: dict) -> np.ndarray | None:
        """For name and register queries: every matching packet at once (vectorised)."""
        if q["kind"] == "name":
            return np.isin(self.p_code, self.codes_named([q["text"]]))
        if q["kind"] == "reg":
            reg = q["reg"]
            set_sh = (self.p_code == (1 << 24 | 0x76)) | (self.p_code == (1 << 24 | 0x9B))
            first = (self.p_dw1 & 0xFFFF).astype(np.int64) + registers.SH_BASE
            count = self.p_len.astype(np.int64) - 2
            return set_sh & (first <= reg) & (reg < first + count)
        return None

    def search(self, q: dict, start: int, rows: np.ndarray | None = None, backward: bool = False,
               cancel: Callable[[], bool] | None = None) -> int | None:
        """The next matching packet after `start` (before, if backward), among `rows` if given."""
        mask = self.search_mask(q)
        if mask is not None:
            if rows is not None:
                m = np.zeros(self.n_packets, bool)
                m[rows] = True
                mask &= m
            hits = np.flatnonzero(mask)
            if backward:
                j = np.searchsorted(hits, start) - 1
                return int(hits[j]) if j >= 0 else None
            j = np.searchsorted(hits, start, side="right")
            return int(hits[j]) if j < len(hits) else None
        return self._search_values(q, start, rows, backward, cancel)

    def _search_values(self, q, start, rows, backward, cancel) -> int | None:
        lo_v, hi_v = q["range"] if q["kind"] == "addr" else (q["value"], q["value"] + 1)
        allowed = None
        if rows is not None:
            allowed = np.zeros(self.n_packets, bool)
            allowed[rows] = True
        if not self.n_packets:
            return None
        s0 = self.sub_of(min(max(start, 0), self.n_packets - 1))
        order = range(s0, -1, -1) if backward else range(s0, len(self.subs))
        for s in order:
            if cancel is not None and cancel():
                return None
            sub = self.subs[s]
            cands: set[int] = set()
            for k in range(1 + len(sub.ibs)):
                _, d, _ = self.stream(s, k)
                if q["kind"] == "addr":
                    lo32, hi32 = lo_v & 0xFFFF_FFFF, hi_v - 1
                    hit = (d >= np.uint32(lo32 & 0xFFFF_FFFC)) & (d <= np.uint32((hi32 & 0xFFFF_FFFF) | 3)) \
                        if (lo_v >> 32) == ((hi_v - 1) >> 32) else np.ones(len(d), bool)
                else:
                    v = q["value"]
                    hit = (d == np.uint32(v & 0xFFFF_FFFF)) | ((d & np.uint32(0xFFFF_FFFC)) == np.uint32(v & 0xFFFF_FFFC))
                    if v >> 32:
                        hit |= d == np.uint32((v >> 32) & 0xFFFF_FFFF)
                pos = np.flatnonzero(hit)
                if len(pos):
                    cands.update(self._packets_at(s, k, pos))
            for i in sorted(cands, reverse=backward):
                if (i <= start if not backward else i >= start) or (allowed is not None and not allowed[i]):
                    continue
                if _fields_match(self.packet(i), lo_v, hi_v):
                    return i
        return None


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def _int(v) -> int:
    """An address, size or value field: an int in [0, 2**64), else 0 (a damaged record)."""
    return v if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1 << 64 else 0


def _fam_ok(fam) -> bool:
    return fam is not None and getattr(fam, "gfx_major", None) in registers.REGISTERS


def _dw1(a: np.ndarray, offs: np.ndarray) -> np.ndarray:
    idx = offs + 1
    ok = idx < len(a)
    out = np.zeros(len(offs), np.uint32)
    out[ok] = a[idx[ok]]
    return out


def _decode(engine: str, a: np.ndarray, off: int, family) -> Packet:
    try:
        if engine == "sdma":
            return sdma.decode_one(a, off, family)
        if engine == "aql":
            return aql.decode_one(a, off * 4, family)
        return pm4.decode_one(a, off, family)
    except KfdtraceError as e:
        raw = tuple(a[off:off + 16].tolist())
        return Packet(engine, off, "UNDECODABLE", 1, {}, raw, str(e))


def _find_ib(ibs: list, addr: int) -> int | None:
    for k, ib in enumerate(ibs):
        if isinstance(ib, dict) and ib.get("addr") == addr:
            return k
    return None


def _packet_sync(engine: str | None, p: Packet, tgt: Target, order: tuple) -> list[SyncPoint]:
    """The waits and writes a decoded packet performs."""
    f, nm = p.fields, p.name
    if p.error and nm in ("TRUNCATED", "UNDECODABLE"):
        return []
    if engine == "pm4" and nm == "WAIT_REG_MEM" and f.get("mem_space") == 1:
        return [SyncPoint(tgt, order, f.get("poll_addr", 0), f.get("reference", 0), FUNCS.get(f.get("function"), "=="),
                          f.get("mask", 0xFFFFFFFF), "WAIT_REG_MEM")]
    if engine == "sdma" and nm == "POLL_REGMEM" and f.get("mem_poll") == 1:
        return [SyncPoint(tgt, order, f.get("addr", 0), f.get("value", 0), FUNCS.get(f.get("func"), "=="),
                          f.get("mask", 0xFFFFFFFF), "POLL_REGMEM")]
    if engine == "aql" and nm == "BARRIER_VALUE":
        return [SyncPoint(tgt, order, f.get("signal", 0) + 8, f.get("value", 0) & (2**64 - 1),
                          AQL_CONDS.get(f.get("cond"), "=="), f.get("mask", -1) & (2**64 - 1), "BARRIER_VALUE")]
    if engine == "aql" and nm in ("BARRIER_AND", "BARRIER_OR"):
        return [SyncPoint(tgt, order, d + 8, 0, "==", 2**64 - 1, nm) for d in f.get("dep_signal", []) if d]
    if engine == "pm4" and nm == "RELEASE_MEM" and f.get("data_sel") in (1, 2):
        v = f.get("data", 0)
        return [SyncPoint(tgt, order, f.get("addr", 0), v & 0xFFFF_FFFF if f.get("data_sel") == 1 else v,
                          what="RELEASE_MEM")]
    if engine == "pm4" and nm == "WRITE_DATA":
        a = f.get("dst_addr", 0)
        return [SyncPoint(tgt, order, a + 4 * k, v, what="WRITE_DATA") for k, v in enumerate(f.get("data", [])[:64])]
    if engine == "sdma" and nm == "FENCE":
        return [SyncPoint(tgt, order, f.get("addr", 0), f.get("data", 0), what="FENCE")]
    if engine == "sdma" and nm == "WRITE_UNTILED":
        a = f.get("dst_addr", 0)
        return [SyncPoint(tgt, order, a + 4 * k, v, what="WRITE_UNTILED") for k, v in enumerate(f.get("data", [])[:64])]
    return []


def _report_section(items) -> Section:
    """The replay report's findings at a packet or record: kind, text, where, and links to what
    else they name (stuck queues, writers, the buffer, the CPU wait)."""
    sec = Section("replay report")
    for it in items:
        lines = it.message.split("\n")
        sec.add(it.kind + (f" ({it.subkind})" if it.subkind else ""), lines[0].strip(), it.where(), style="error")
        for more in lines[1:]:
            sec.add("", more.strip(), style="error")
        for label, tgt in it.related:
            sec.add("", label, str(tgt), tgt)
    return sec


def _fields_match(p: Packet, lo: int, hi: int) -> bool:
    for v in p.fields.values():
        if isinstance(v, (list, tuple)):
            if any(isinstance(x, int) and lo <= x < hi for x in v):
                return True
        elif isinstance(v, int) and lo <= v < hi:
            return True
    return any(lo <= addr < hi for _, addr, _ in p.refs)


def _flat_pairs(a, b, prefix: str = "") -> Iterator[tuple[str, object, object]]:
    if isinstance(a, dict):
        for k, v in a.items():
            yield from _flat_pairs(v, b.get(k) if isinstance(b, dict) else None, f"{prefix}.{k}" if prefix else k)
    elif isinstance(a, list) and len(a) <= 16:
        for i, v in enumerate(a):
            yield from _flat_pairs(v, b[i] if isinstance(b, list) and i < len(b) else None, f"{prefix}[{i}]")
    else:
        yield prefix, a, b


def _fmt_arg(v) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v) if v < 0x10000 else f"{v:#x}"
    if isinstance(v, list):
        return f"[{len(v)} items]"
    return str(v)
